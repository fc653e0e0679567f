"""``aigrid-sim-report --merge`` carries tenants' bills and the serving counters.

Merging the states of runs (per seed, or per region of one run) must give what one run holding
all their requests would report: the bill of the concatenated requests tables, and preemptions,
prefix-cache hits and output tokens added up.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import aigrid_sim
from aigrid_sim import config as cfgmod
from aigrid_sim.results.billing import BILL_FIELDS, Bill, billing
from aigrid_sim.results.online import OnlineSummary
from aigrid_sim.results.report import merge_runs, merge_state_frames, summary_from_state

# multi_tenant's two apps, the voice agent with a shared 256-token system prompt (cache hits)
APPS = ("workload.apps=["
        "{name: voice_agent, share: 0.75, capability: 1, slo_ms: 100.0, slo_on: ttft, "
        "system_prompt_tokens: 256, tokens: {in_mean: 400.0, in_cv: 0.8, out_mean: 60.0, "
        "out_cv: 0.6, in_max: 8192, out_max: 1024}}, "
        "{name: summarise, share: 0.25, capability: 2, slo_ms: 60000.0, slo_on: e2e, "
        "tokens: {in_mean: 4000.0, in_cv: 0.7, out_mean: 400.0, out_cv: 0.5, in_max: 32768, "
        "out_max: 2048}}]")
SMALL_TENANTS = ["world.cities.max_cities=300", "duration_s=6", "drain_s=300",
                 "output.figures=false", APPS]
ADDITIVE = ("requests", "completed", "throttled", "in_tokens", "out_tokens", "revenue_usd",
            "penalty_usd", "used_cost_usd")


def _assert_bills_equal(got: dict, want: dict) -> None:
    assert list(got["by_tenant"]) == list(want["by_tenant"])
    assert list(got["by_tier"]) == list(want["by_tier"])
    pairs = [(got["total"], want["total"])]
    pairs += [(got["by_tier"][t], want["by_tier"][t]) for t in want["by_tier"]]
    for name, w in want["by_tenant"].items():
        g = got["by_tenant"][name]
        pairs.append((g, w))
        assert list(g["by_tier"]) == list(w["by_tier"])
        pairs += [(g["by_tier"][t], w["by_tier"][t]) for t in w["by_tier"]]
    for g, w in pairs:
        for k, v in w.items():
            if k == "by_tier":
                continue
            if v is None or isinstance(v, int):
                assert g[k] == v, k
            else:
                assert g[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    runs = [aigrid_sim.run("multi_tenant", SMALL_TENANTS + [f"seed={s}"], out_dir=out)
            for s in (1, 2)]
    return out, runs


def test_merged_seeds_bill_as_one_run_of_all_their_requests(two_seeds):
    out, runs = two_seeds
    m = merge_runs(out)
    assert m["runs"] == 2
    s = m["summary"]
    reqs = pd.concat([r.requests for r in runs], ignore_index=True)
    sites = pd.concat([r.sites for r in runs], ignore_index=True)
    tenants = cfgmod.validate(runs[0].config).tenants
    _assert_bills_equal(s["tenants"], billing(reqs, sites, tenants))
    # ... and the additive lines are the sums of the two runs' own bills
    for k in ADDITIVE:
        assert s["tenants"]["total"][k] == pytest.approx(
            sum(r.summary["tenants"]["total"][k] for r in runs), rel=1e-12)
    assert s["tenants"]["total"]["penalty_usd"] > 0 and s["tenants"]["total"]["revenue_usd"] > 0
    # written: the merged folder's summary.json has the bill too
    on_disk = json.loads((m["out"] / "summary.json").read_text())
    assert on_disk["tenants"]["total"]["requests"] == len(reqs)


def test_merged_seeds_add_serving_counters(two_seeds):
    out, runs = two_seeds
    s = merge_runs(out)["summary"]
    reqs = pd.concat([r.requests for r in runs], ignore_index=True)
    ok = reqs["status"] == "ok"
    assert s["preemptions"] == sum(r.summary["preemptions"] for r in runs) \
        == int(reqs["preemptions"].sum())
    hits, pre = reqs["cached_tokens"].sum(), reqs["prefill_tokens"].sum()
    assert hits > 0
    assert s["prefix_cache"]["hit_rate"] == pytest.approx(hits / pre, rel=1e-12)
    for app, g in reqs.groupby("app", observed=True):
        if g["prefill_tokens"].sum():
            assert s["prefix_cache"]["by_app"][app] == pytest.approx(
                g["cached_tokens"].sum() / g["prefill_tokens"].sum(), rel=1e-12)
    assert s["output_tokens"] == pytest.approx(float(reqs.loc[ok, "out_tokens"].sum()))
    # one span over both runs (same hours): first arrival to last token
    arr = reqs.loc[ok, "arrival_s"].to_numpy()
    end = arr + reqs.loc[ok, "latency_ms"].to_numpy() / 1000.0
    assert s["output_tok_s"] == pytest.approx(s["output_tokens"] / (end.max() - arr.min()),
                                              rel=1e-9)
    tp = reqs.loc[ok, "tpot_ms"].dropna()
    assert s["tpot_ms"]["mean"] == pytest.approx(tp.mean(), rel=1e-9)


def test_merged_regions_equal_the_whole_run(two_seeds):
    """Requests split by region, each part summarised alone, merge into the whole's figures."""
    _, runs = two_seeds
    r = runs[0]
    cfg = cfgmod.validate(r.config)

    def online(reqs):
        o = OnlineSummary(r.world, [a.name for a in r.stream.apps], window_s=cfg.duration_s,
                          time_origin_s=cfg.start_utc_h * 3600.0,
                          horizon_s=cfg.duration_s + cfg.drain_s)
        o.bill = Bill(cfg.tenants)
        o.update(reqs)
        return o

    whole = online(r.requests)
    parts = [online(g).state_frame() for _, g in r.requests.groupby("region", observed=True)]
    assert len(parts) > 2
    # every part here shares the whole world's sites (separate region runs would each have
    # their own): the per-site rows come from the whole run, as in test_online
    skip = ["meta", "site_window", "site_info"]
    wf = whole.state_frame()
    mf = merge_state_frames(parts)
    merged = summary_from_state(pd.concat([mf[~mf["dim"].isin(skip)],
                                           wf[wf["dim"].isin(skip)]]))
    ref = summary_from_state(wf)
    _assert_bills_equal(merged["tenants"], ref["tenants"])
    for k in ("preemptions", "output_tokens", "output_tok_s", "tpot_ms"):
        assert merged[k] == pytest.approx(ref[k], rel=1e-12), k
    pc, pr = merged["prefix_cache"], ref["prefix_cache"]
    assert pc["hit_rate"] == pytest.approx(pr["hit_rate"], rel=1e-12)
    for k in ("by_app", "by_site"):
        assert pc[k].keys() == pr[k].keys() and len(pr[k]) > 0
        assert pc[k] == pytest.approx(pr[k], rel=1e-12)
    back = OnlineSummary.from_state(merge_state_frames(parts)).merged_bill
    for f in BILL_FIELDS:  # the accumulators themselves, group by group
        np.testing.assert_allclose(back.acc[f], whole.bill.acc[f], rtol=1e-12)


def test_a_slice_state_bills_its_measured_requests_only(two_seeds):
    """Time slices overlap by their warm-up: what they merge is billed after it only."""
    _, runs = two_seeds
    r = runs[0]
    cfg = cfgmod.validate(r.config)
    warm = 2.0
    o = OnlineSummary(r.world, [a.name for a in r.stream.apps], warmup_s=warm,
                      window_s=cfg.duration_s, horizon_s=cfg.duration_s + cfg.drain_s)
    o.bill = Bill(cfg.tenants)
    o.update(r.requests)
    measured = r.requests[r.requests["arrival_s"] >= warm]
    assert 0 < len(measured) < len(r.requests)
    back = OnlineSummary.from_state(o.state_frame()).merged_bill
    want = Bill(cfg.tenants).update(measured)
    for f in BILL_FIELDS:
        np.testing.assert_allclose(back.acc[f], want.acc[f], rtol=1e-12)
    # the run's own bill still covers every request, as the in-memory table does
    assert o.bill.acc["requests"].sum() == len(r.requests)
