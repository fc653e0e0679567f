"""Online summary: sketch quantiles against exact ones and against ddsketch, merging, cities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ddsketch import DDSketch

from aigrid_sim.results.online import ALPHA, CITY_ALPHA, GroupedSketch, OnlineSummary
from aigrid_sim.results.report import merge_state_frames, summary_from_state


def _data(seed=0, groups=7, n=40_000):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    # latencies over five decades, some exact zeros (no queue wait)
    v = rng.lognormal(np.log(50.0) + g * 0.7, 1.5, n)
    v[rng.random(n) < 0.05] = 0.0
    return g, v


@pytest.mark.parametrize("alpha", [ALPHA, CITY_ALPHA])
def test_sketch_quantiles_within_stated_relative_accuracy(alpha):
    g, v = _data()
    sk = GroupedSketch(7, alpha)
    for part in np.array_split(np.arange(len(v)), 9):  # fed in blocks, as a run does
        sk.add(g[part], v[part])
    qs = (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999)
    est = sk.quantiles(qs)
    for k in range(7):
        x = np.sort(v[g == k])
        for i, q in enumerate(qs):
            exact = x[int(np.floor(q * (len(x) - 1)))]  # the value at DDSketch's rank
            assert abs(est[i, k] - exact) <= alpha * exact + 1e-12, (k, q, est[i, k], exact)


def test_sketch_agrees_with_ddsketch_library():
    g, v = _data(1, groups=3, n=5000)
    sk = GroupedSketch(3, ALPHA)
    sk.add(g, v)
    for k in range(3):
        ref = DDSketch(ALPHA)
        for x in v[g == k]:
            ref.add(float(x)) if x >= 0.01 else ref.add(0.0)
        ours = sk.to_ddsketch(k)
        for q in (0.1, 0.5, 0.95, 0.99):
            a = sk.quantiles((q,), np.array([k]))[0, 0]
            assert a == pytest.approx(ours.get_quantile_value(q), rel=1e-12)
            # the library, fed value by value: same bin but for float ties at a bin edge
            assert a == pytest.approx(ref.get_quantile_value(q), rel=2.5 * ALPHA)
        assert ours.count == pytest.approx(ref.count)


def test_empty_groups_and_nan_values():
    sk = GroupedSketch(3)
    sk.add(np.array([0, 0, 2]), np.array([np.nan, 5.0, 1e12]))
    q = sk.quantiles((0.5,))
    assert np.isnan(q[0, 1]) and q[0, 0] == pytest.approx(5.0, rel=ALPHA)
    assert q[0, 2] == pytest.approx(1e7, rel=ALPHA)  # above MAX_MS: the top bin


def _online(run, reqs):
    o = OnlineSummary(run.world, [a.name for a in run.stream.apps], warmup_s=0.0,
                      window_s=run.config.duration_s,
                      time_origin_s=run.config.start_utc_h * 3600.0,
                      horizon_s=run.config.duration_s + run.config.drain_s)
    o.update(reqs)
    return o


def test_merging_per_region_sketches_equals_one_runs(small_run):
    """Regions that do not interact: their runs' states merge into the whole run's."""
    r = small_run
    reqs = r.requests
    whole = _online(r, reqs).state_frame()
    parts = [_online(r, g).state_frame()
             for _, g in reqs.groupby("region", observed=True)]
    merged = merge_state_frames(parts)
    key = ["dim", "group", "metric", "key"]
    # (the per-site rows are left out: here every part shares the whole world's sites, where
    # separate region runs would each have their own)
    skip = ["meta", "site_window", "site_info"]
    a = whole[~whole["dim"].isin(skip)].sort_values(key).reset_index(drop=True)
    b = merged[~merged["dim"].isin(skip)].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], b[key], check_dtype=False)
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-12)  # counts exact, sums to ulp
    counts = ~a["metric"].isin(["latency_ms", "ttft_ms", "network_ms", "queue_ms", "cost_usd",
                                "tokens", "extra_ms", "tpot_ms"]) & (a["dim"] != "total")
    assert (a.loc[counts, "value"].to_numpy() == b.loc[counts, "value"].to_numpy()).all()
    s1 = summary_from_state(whole)
    s2 = summary_from_state(pd.concat([merged[~merged["dim"].isin(skip)],
                                       whole[whole["dim"].isin(skip)]]))
    for k in ("requests", "completed", "rejected", "failed", "in_flight"):
        assert s1[k] == s2[k] == r.summary[k]
    assert s2["latency_ms"]["p95"] == s1["latency_ms"]["p95"]
    assert s2["by_region"] == s1["by_region"]


def test_summary_quantiles_match_exact_within_accuracy(small_run):
    r = small_run
    ok = r.requests[r.requests["status"] == "ok"]
    for col in ("latency_ms", "ttft_ms"):
        x = np.sort(ok[col].to_numpy())
        for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            exact = x[int(np.floor(q * (len(x) - 1)))]
            assert abs(r.summary[col][key] - exact) <= ALPHA * exact + 1e-9
        assert r.summary[col]["mean"] == pytest.approx(x.mean(), rel=1e-9)
    assert r.summary["sketch"]["relative_accuracy"] == ALPHA


def test_online_cities_table_agrees_with_the_exact_one(small_run):
    r = small_run
    online = r.online.cities_table(r.world)
    reqs = r.requests
    ok = reqs[reqs["status"] == "ok"]
    # per city counts are exact; percentiles within the city sketches' accuracy
    n = reqs.groupby("origin", observed=False).size().reindex(online["origin"]).fillna(0)
    assert (online["requests"].to_numpy() == n.to_numpy()).all()
    for name, g in list(ok.groupby("origin", observed=True))[:200]:
        row = online[online["origin"] == name].iloc[0]
        x = np.sort(g["latency_ms"].to_numpy())
        exact = x[int(np.floor(0.95 * (len(x) - 1)))]
        assert abs(row["latency_p95_ms"] - exact) <= CITY_ALPHA * exact + 1e-9
    try:
        from aigrid_sim.results.cities import city_table, origins_frame
    except ImportError:
        return
    ref = city_table(reqs, origins_frame(r.world))
    assert list(online.columns) == list(ref.columns)
    for col in ("requests", "completed", "rejected", "failed", "slo_met"):
        assert (online[col].to_numpy() == ref[col].to_numpy()).all(), col
    for col in ("slo_attainment", "share_edge", "share_regional", "share_core"):
        np.testing.assert_allclose(online[col], ref[col], rtol=1e-12, equal_nan=True)


def test_quantiles_do_not_depend_on_the_slice_of_groups(monkeypatch):
    """Quantiles are computed a slice of groups at a time (memory); any slice gives the same."""
    from aigrid_sim.results import online

    rng = np.random.default_rng(1)
    sk = online.GroupedSketch(1000)
    g = rng.integers(0, 1000, 200_000)
    v = rng.lognormal(5, 2, 200_000)
    v[::50] = 0.0  # the zero bin
    keep = g % 3 != 0  # a third of the groups stay empty (NaN)
    sk.add(g[keep], v[keep])
    some = np.arange(0, 1000, 7)
    monkeypatch.setattr(online, "SLICE_GROUPS", 10**9)
    whole, whole_some = sk.quantiles((0.5, 0.95, 0.99)), sk.quantiles((0.5,), some)
    monkeypatch.setattr(online, "SLICE_GROUPS", 7)
    assert np.array_equal(sk.quantiles((0.5, 0.95, 0.99)), whole, equal_nan=True)
    assert np.array_equal(sk.quantiles((0.5,), some), whole_some, equal_nan=True)
    assert np.isnan(whole).any() and (sk.zeros > 0).any()
