"""Little's law, L = lambda W, at every site of real runs.

``lambda`` and ``W`` come from the requests table a user gets (:func:`metrics.littles_law`); ``L``
is read from the engine's live state (requests waiting plus in service at each site) at Poisson
instants. Over a window that starts and ends with the grid empty the law is an identity of the
sample path, so the only allowed difference is the sampling error of ``L``: each site must lie
within a Bonferroni-corrected 99 % normal interval (``|z| <= z_limit``, about 4 for 150 sites).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aigrid_sim import config as cfgmod
from aigrid_sim.api import make_stream
from aigrid_sim.results.metrics import littles_law, requests_table
from aigrid_sim.sim.engine import Engine
from aigrid_sim.sim.policies import make_policy
from aigrid_sim.studies.validate import little_check_run, sample_occupancy
from aigrid_sim.world.build import build_world

SMALL = ["world.cities.max_cities=200", "duration_s=20", "workload.rate_rps=200",
         "drain_s=300", "output.figures=false"]
OVERLOAD = ["policy=nearest_capable", "world.edge.pops=[FRA,IAD,SIN]", "world.edge.max_queue=2",
            "workload.rate_rps=1500", "duration_s=10", "drain_s=1000"]


@pytest.mark.parametrize("extra", [
    [],  # the orchestrator, default capacity
    ["policy=least_loaded", "seed=3"],
    # Three overloaded edge sites with a waiting room of 2: many queue_full rejections.
    OVERLOAD + ["seed=4"],
])
def test_littles_law_every_site(extra):
    res = little_check_run("global_agent", SMALL + extra)
    t = res.table
    assert len(t) >= 9 and res.samples > 2000
    bad = t[~t["ok"]]
    assert bad.empty, f"outside |z| <= {res.z_limit:.2f}:\n{bad.to_string()}"
    # The busiest sites are measured sharply (so the check has power) ...
    top = t.nlargest(5, "lam_w")
    assert (top["l_se"] * res.z_limit < 0.15 * top["lam_w"]).all()
    # ... and all sites together agree within 99 %.
    assert abs(res.total_sampled - t["lam_w"].sum()) <= 2.576 * res.total_se


def test_engine_state_equals_records_at_every_instant():
    """The count read from the engine equals the count implied by the records, sample by sample."""
    cfg = cfgmod.validate(cfgmod.compose("global_agent", SMALL + OVERLOAD))
    world = build_world(cfg)
    stream = make_stream(cfg, world)
    eng = Engine(world, stream, make_policy(cfg.policy, cfg.routing.params), seed=cfg.seed,
                 horizon_s=cfg.duration_s + cfg.drain_s)
    times, counts = sample_occupancy(eng, 20.0, cfg.seed)
    rec = eng.run()
    req = requests_table(world, stream, rec)
    assert (req["reason"] == "queue_full").sum() > 1000
    # Completed requests, and those still waiting or in service when the clock stopped.
    held = req["status"].isin(["ok", "in_flight"]).to_numpy() & (req["site"] != "").to_numpy()
    d = req[held]
    enter = d["arrival_s"].to_numpy() + d["network_ms"].to_numpy() / 2000.0
    stay = (d["queue_ms"].to_numpy() + d["service_ms"].to_numpy()) / 1000.0
    leave = np.where(np.isnan(stay), np.inf, enter + stay)
    site = pd.Index(world.site_id).get_indexer(d["site"])
    x = np.asarray(counts)
    assert x.sum() > 1000
    for k in np.linspace(0, len(times) - 1, 300).astype(int):
        t = times[k]
        there = (enter <= t) & (leave > t)
        np.testing.assert_array_equal(np.bincount(site[there], minlength=world.n_sites), x[k])


def _table(rows):
    return pd.DataFrame(rows, columns=["arrival_s", "network_ms", "queue_ms", "service_ms",
                                       "site", "status"])


def test_littles_law_function_by_hand():
    # Site a: one request at the site from 1 to 4 s (2 ms round trip -> arrives 1 ms later);
    # site b: one from 2 to 3 s and one still waiting when the run stops at 10 s.
    reqs = _table([
        (0.999, 2.0, 1000.0, 2000.0, "a", "ok"),
        (2.0, 0.0, 0.0, 1000.0, "b", "ok"),
        (5.0, 0.0, np.nan, np.nan, "b", "in_flight"),
        (6.0, 0.0, np.nan, np.nan, "b", "rejected"),
        (7.0, np.nan, np.nan, np.nan, "", "rejected"),
    ])
    t = littles_law(reqs, horizon_s=10.0).set_index("site")
    assert t.loc["a", "arrivals"] == 1 and t.loc["b", "arrivals"] == 2
    np.testing.assert_allclose(t.loc["a", "l_mean"], 3.0 / 10.0)
    np.testing.assert_allclose(t.loc["b", "l_mean"], (1.0 + 5.0) / 10.0)
    np.testing.assert_allclose(t["lam_w"], t["l_mean"])  # starts and ends empty (censored at 10)
    # A window [2.5, 4.5]: a is there 1.5 s of 2, arrived before the window (lambda = 0);
    # b's first request straddles the start, its second arrives after the window.
    w = littles_law(reqs, horizon_s=10.0, t0=2.5, t1=4.5).set_index("site")
    np.testing.assert_allclose(w.loc["a", "l_mean"], 1.5 / 2.0)
    np.testing.assert_allclose(w.loc["b", "l_mean"], 0.5 / 2.0)
    assert w["arrivals"].sum() == 0 and (w["lam_w"] == 0).all()
    with pytest.raises(ValueError, match="t1 > t0"):
        littles_law(reqs, horizon_s=10.0, t0=5.0, t1=5.0)


def test_littles_law_on_a_finished_run_is_exact(small_run):
    """Over the whole run (all requests finished) the records satisfy L = lambda W exactly."""
    r = small_run
    assert r.summary["in_flight"] == 0
    horizon = r.summary["duration_s"] + float(r.config["drain_s"])
    t = littles_law(r.requests, horizon)
    np.testing.assert_allclose(t["l_mean"], t["lam_w"], rtol=1e-9, atol=1e-12)
    ok = r.requests[r.requests["status"] == "ok"]
    assert t["arrivals"].sum() == len(ok)
