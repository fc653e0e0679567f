"""Faults: conservation under random failures, detection, fail-over, link cuts, determinism."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import dijkstra

import aigrid_sim
from aigrid_sim.api import config_of, make_stream
from aigrid_sim.config import (
    FaultsConfig,
    LinkCutConfig,
    OutageConfig,
    RandomFailuresConfig,
    TierFailuresConfig,
)
from aigrid_sim.errors import ConfigError
from aigrid_sim.outcomes import Reason, Status
from aigrid_sim.results.metrics import fault_summary, requests_table, sites_table
from aigrid_sim.sim.engine import Engine
from aigrid_sim.sim.faults import build_schedule, cut_link, private_network, restore_link
from aigrid_sim.sim.policies import make_policy
from aigrid_sim.world.build import build_world, shortest_rtt

# A small real grid: 150 cities, a few seconds of busy traffic, one GPU per edge PoP.
BASE = ["world.cities.max_cities=150", "duration_s=6", "workload.rate_rps=400", "drain_s=30",
        "output.figures=false", "world.edge.gpus=1", "world.edge.max_queue=4"]


@lru_cache(maxsize=1)
def _world():
    return build_world(config_of("global_agent", BASE))


@lru_cache(maxsize=1)
def _busy_sites() -> tuple[str, ...]:
    """The 25 sites that serve most requests without faults (faults there actually bite)."""
    eng, _ = _engine(FaultsConfig())
    counts = np.bincount(eng.records.site[eng.records.site >= 0], minlength=_world().n_sites)
    return tuple(_world().site_id[s] for s in np.argsort(-counts, kind="stable")[:25])


class Spy:
    """Wraps a policy and logs every decision as (time, site, attempt, request id)."""

    def __init__(self, inner):
        self.inner = inner
        self.log: list[tuple[float, int, int, int]] = []

    def bind(self, view):
        self.inner.bind(view)

    def choose(self, request, view):
        s = self.inner.choose(request, view)
        self.log.append((view.now, s, request.attempt, request.id))
        return s


def _engine(faults: FaultsConfig, overrides=(), policy: str = "nearest_capable", spy=False):
    cfg = config_of("global_agent", BASE + [f"policy={policy}", *overrides])
    cfg.faults = faults
    world = _world()
    stream = make_stream(cfg, world)
    horizon = cfg.duration_s + cfg.drain_s
    sched = build_schedule(faults, world, cfg.seed, horizon)
    pol = make_policy(cfg.policy, cfg.routing.params)
    if spy:
        pol = Spy(pol)
    eng = Engine(world, stream, pol, seed=cfg.seed, k_nearest=cfg.routing.k_nearest,
                 staleness_s=cfg.routing.staleness_s, horizon_s=horizon, faults=sched)
    eng.run()
    return eng, sched


def _tables(eng, sched, duration_s=6.0):
    reqs = requests_table(eng.world, eng.stream, eng.records)
    sites = sites_table(eng.world, eng.records, duration_s, reqs)
    return reqs, sites


def check_engine_state(eng) -> None:
    """Every request ends ok/rejected/failed or is in flight; no slot held by an ended request."""
    rec = eng.records
    assert set(np.unique(rec.status)) <= {int(s) for s in Status}
    counts = np.bincount(rec.status, minlength=4)
    assert counts.sum() == len(eng.stream)
    held = set()
    for s in range(eng.world.n_sites):
        ids = eng.in_service_ids(s)
        waiting = eng.waiting_ids(s)
        assert eng.busy[s] == len(ids)
        if eng.pools[s] is None:
            assert len(ids) <= max(eng.slots[s], 0)
        else:
            eng.pools[s].check()  # KV memory and sequence caps
        assert all(rec.status[i] == Status.IN_FLIGHT for i in ids)
        assert all(rec.status[i] == Status.IN_FLIGHT for i in waiting)
        assert not (held & set(ids)) and not (set(ids) & set(waiting))
        held |= set(ids)
        if not eng.alive[s]:
            assert eng.busy[s] == 0 and not waiting
    failed = rec.status == Status.FAILED
    assert np.isin(rec.reason[failed], [Reason.SITE_DOWN, Reason.RETRIES_EXHAUSTED]).all()
    # A completed request's latency includes the time its failed attempts lost.
    ok = rec.status == Status.OK
    assert (rec.extra_s[ok] >= 0).all()
    assert ((rec.site0[ok] >= 0) == (rec.attempts[ok] > 1)).all()


# ----------------------------------------------------------------------------- conservation

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**31), detection=st.sampled_from([0.0, 0.7, 2.0]),
       retries=st.integers(0, 3), policy=st.sampled_from(["nearest_capable", "least_loaded",
                                                          "cheapest_feasible"]))
def test_conservation_under_random_faults(data, seed, detection, retries, policy):
    """Random outages (whole and partial), link cuts and MTBF failures: nothing is lost."""
    busy = _busy_sites()
    outages = [OutageConfig(site=data.draw(st.sampled_from(busy)),
                            start_s=data.draw(st.floats(0.0, 8.0)),
                            duration_s=data.draw(st.one_of(st.none(), st.floats(0.01, 10.0))),
                            fraction=data.draw(st.sampled_from([1.0, 1.0, 0.5, 0.25])))
               for _ in range(data.draw(st.integers(0, 6)))]
    world = _world()
    links = []
    for _ in range(data.draw(st.integers(0, 2))):
        a = world.site_id.index(data.draw(st.sampled_from(busy)))
        b = data.draw(st.sampled_from(sorted(world.graph.neighbors(a))))
        links.append(LinkCutConfig(a=world.site_id[a], b=world.site_id[b],
                                   start_s=data.draw(st.floats(0.0, 6.0)),
                                   duration_s=data.draw(st.one_of(st.none(),
                                                                  st.floats(0.1, 5.0)))))
    mtbf = data.draw(st.sampled_from([None, 20.0]))
    rnd = RandomFailuresConfig(edge=TierFailuresConfig(mtbf_s=mtbf, mttr_s=3.0),
                               regional=TierFailuresConfig(mtbf_s=mtbf, mttr_s=3.0))
    faults = FaultsConfig(outages=outages, links=links, random=rnd, detection_s=detection,
                          retries=retries, retry_delay_s=data.draw(st.sampled_from([0.0, 0.2])))
    try:
        eng, sched = _engine(faults, [f"seed={seed}", "load=3"], policy=policy)
    except ConfigError:
        reject()  # link cuts that would split the graph are refused up front
    check_engine_state(eng)
    reqs, sites = _tables(eng, sched)
    u = sites["utilisation"]
    assert ((u >= 0) & (u <= 1 + 1e-9)).all()
    ok = reqs[reqs["status"] == "ok"]
    assert (ok["queue_ms"] >= 0).all()
    assert (ok["latency_ms"] >= ok["network_ms"] + ok["service_ms"] + ok["extra_ms"] - 1e-6).all()
    if sched.active:
        f = fault_summary(reqs, sites, sched.table, window_s=6.0)
        assert f["failed"] == int((reqs["status"] == "failed").sum())
        assert f["during_outage"]["requests"] + f["outside_outage"]["requests"] == len(reqs)
        assert f["during_outage"]["requests"] >= int(reqs["failed_over"].sum())
        assert all(0.0 <= a <= 1.0 for a in f["availability"].values())


# ----------------------------------------------------------------------------- detection

def _outage_run(site: str, detection: float, start: float = 2.5, duration: float = 3.0,
                retries: int = 2):
    faults = FaultsConfig(outages=[OutageConfig(site=site, start_s=start, duration_s=duration)],
                          detection_s=detection, retries=retries)
    eng, sched = _engine(faults, ["load=3"], spy=True)
    return eng, eng.policy.log, eng.world.site_id.index(site)


def test_failed_site_gets_no_new_requests_with_zero_detection_delay():
    site = _busy_sites()[0]
    eng, log, s = _outage_run(site, 0.0)
    check_engine_state(eng)
    sent = [t for t, x, _, _ in log if x == s]
    assert any(t < 2.5 for t in sent) and any(t >= 5.5 for t in sent)  # used before and after
    assert not [t for t in sent if 2.5 <= t < 5.5]
    # The requests there (queued, in service, or on their way) when it failed did fail over.
    assert (eng.records.site0 == s).sum() > 0


def test_failed_site_gets_no_new_requests_once_detected():
    site = _busy_sites()[0]
    eng, log, s = _outage_run(site, 1.0)  # fails at 2.5, health checks at 3.0, 4.0, ...
    check_engine_state(eng)
    sent = [t for t, x, _, _ in log if x == s]
    blind = {i for t, x, _, i in log if x == s and 2.5 <= t < 3.0}
    assert blind, "the policy keeps sending there until the health check notices"
    assert not [t for t in sent if 3.0 <= t < 5.5]
    # Every request sent there blind bounced off the dead site: it failed over or, out of
    # retries (sent back to the same undetected site), failed there.
    rec = eng.records
    ids = np.array(sorted(blind))
    assert (rec.site0[ids] == s).all()
    assert ((rec.attempts[ids] > 1) | (rec.status[ids] == Status.FAILED)).all()


def test_passive_detection_stops_traffic_at_the_first_failure():
    """With passive detection the requests caught at the failure mark the site down at once."""
    site = _busy_sites()[0]
    faults = FaultsConfig(outages=[OutageConfig(site=site, start_s=1.5, duration_s=3.0)],
                          detection_s=1.0, passive_detection=True)
    eng, _ = _engine(faults, ["load=3"], spy=True)
    s = eng.world.site_id.index(site)
    assert (eng.records.site0 == s).sum() > 0
    sent = [t for t, x, _, _ in eng.policy.log if x == s]
    assert not [t for t in sent if 1.5 <= t < 5.0]
    # ... and it is seen up again at the first health check after its repair (t = 5).
    assert [t for t in sent if t >= 5.0]
    check_engine_state(eng)


def test_detection_delay_costs_latency():
    site = _busy_sites()[0]
    e0, _, _ = _outage_run(site, 0.0)
    e2, _, _ = _outage_run(site, 2.0)
    assert (e2.records.site0 >= 0).sum() > (e0.records.site0 >= 0).sum()


def test_no_retries_means_failed_with_site_down():
    site = _busy_sites()[0]
    eng, _, s = _outage_run(site, 0.0, retries=0)
    rec = eng.records
    failed = rec.status == Status.FAILED
    assert failed.sum() > 0
    assert (rec.reason[failed] == Reason.SITE_DOWN).all()
    assert (rec.site[failed] == s).all()
    assert (rec.attempts[failed] == 1).all()
    check_engine_state(eng)


def test_retry_budget_is_respected():
    """Every site down at once: no request is tried more than retries + 1 times.

    (A fail-over avoids the site that just failed it, so exhausting the budget needs the next
    choice to be down as well.)
    """
    faults = FaultsConfig(outages=[OutageConfig(tier=t, start_s=2.0, duration_s=3.0)
                                   for t in ("edge", "regional", "core")],
                          detection_s=1.5, retries=1)
    eng, _ = _engine(faults, ["load=3"])
    rec = eng.records
    assert rec.attempts.max() <= 2
    ex = rec.reason == Reason.RETRIES_EXHAUSTED
    assert ex.any() and (rec.attempts[ex] == 2).all()
    check_engine_state(eng)


def test_partial_outage_halves_concurrency():
    """One 8-server site (mmc) overloaded, losing half its GPUs for 100 s: at most 4 busy then.

    The preempted requests fail over (here back to the same site, the only one), and every
    request is still accounted for.
    """
    r = aigrid_sim.run("mmc", ["arrival_rate=12", "requests=3000", "drain_s=50",
                               "faults.outages=[{site: mmc, start_s: 100, duration_s: 100,"
                               " fraction: 0.5}]"])
    rec = r.records
    started = ~np.isnan(rec.t_start)
    a, b = rec.t_start[started], rec.t_start[started] + rec.service_s[started]
    busy = [((a <= t) & (b > t)).sum() for t in np.linspace(100 + 1e-6, 200 - 1e-6, 400)]
    assert max(busy) == 4
    assert max(((a <= t) & (b > t)).sum() for t in np.linspace(1, 100 - 1e-6, 400)) == 8
    assert max(((a <= t) & (b > t)).sum() for t in np.linspace(200 + 1e-6, 250, 400)) == 8
    caught = rec.site0 == 0
    assert 2 <= caught.sum() <= 6  # about half the 8 in service at t=100 were preempted
    assert (rec.wasted_s[caught] > 0).all()
    s = r.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
    assert r.faults.loc[0, "gpus_lost"] == 4
    assert s["faults"]["availability"]["core"] == pytest.approx(1 - 4 * 100 / (8 * 250), rel=1e-3)


# ----------------------------------------------------------------------------- link cuts

def _paths_using(world, a: int, b: int) -> np.ndarray:
    """O x S: does the origin's best route to the site use link a-b (via predecessor trees)?"""
    import networkx as nx

    adj = nx.to_scipy_sparse_array(world.graph, nodelist=range(world.n_sites), weight="rtt_ms",
                                   format="csr")
    src = np.unique(world.attach_site)
    dist, pred = dijkstra(adj, directed=False, indices=src, return_predecessors=True)
    row = {int(x): k for k, x in enumerate(src)}
    uses = np.zeros((len(src), world.n_sites), dtype=bool)
    for k in range(len(src)):
        for t in range(world.n_sites):
            v = t
            while pred[k, v] >= 0:
                u = pred[k, v]
                if {u, v} == {a, b}:
                    uses[k, t] = True
                    break
                v = u
    n_o = world.n_origins
    via = world.attach_ms[:, :, None] + dist[[row[int(x)] for x in world.attach_site.ravel()]] \
        .reshape(n_o, -1, world.n_sites)
    best = world.attach_site[np.arange(n_o)[:, None], via.argmin(axis=1)]  # O x S entry site
    return uses[np.vectorize(row.get)(best), np.arange(world.n_sites)[None, :]]


def test_link_cut_raises_exactly_the_pairs_whose_path_used_it():
    world = _world()
    # The backbone link carrying the most origin-site routes among the busy sites' links.
    busy = [world.site_id.index(x) for x in _busy_sites()[:6]]
    best, best_n = None, -1
    for a in busy:
        for b in world.graph.neighbors(a):
            n = int(_paths_using(world, a, b).sum())
            if n > best_n:
                best, best_n = (a, b), n
    a, b = best
    used = _paths_using(world, a, b)
    w = private_network(world)
    before_sites, before = world.site_rtt_ms.copy(), world.rtt_ms.copy()
    attrs = cut_link(w, a, b)
    raised = w.rtt_ms > before + 1e-9
    assert used.sum() > 0
    np.testing.assert_array_equal(raised, used)
    assert not (w.rtt_ms < before - 1e-9).any()  # a cut never shortens anything
    # Only-what-changed recomputation agrees with recomputing everything.
    full = shortest_rtt(w.graph, w.n_sites)
    np.testing.assert_allclose(w.site_rtt_ms, full, rtol=0, atol=1e-9)
    np.testing.assert_allclose(w.rtt_ms, w.origin_rtt(full), rtol=0, atol=1e-9)
    # The caller's world is untouched, and restoring the link gives the original network back.
    np.testing.assert_array_equal(world.rtt_ms, before)
    assert world.graph.has_edge(a, b)
    restore_link(w, a, b, attrs)
    np.testing.assert_allclose(w.site_rtt_ms, before_sites, rtol=0, atol=1e-9)
    np.testing.assert_allclose(w.rtt_ms, before, rtol=0, atol=1e-9)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_incremental_network_matches_full_recompute(data):
    """Any sequence of cuts and restores leaves exactly the all-pairs shortest paths."""
    import networkx as nx

    world = _world()
    w = private_network(world)
    edges = sorted(world.graph.edges)
    removed: dict = {}
    for _ in range(data.draw(st.integers(1, 6))):
        if removed and data.draw(st.booleans()):
            e = data.draw(st.sampled_from(sorted(removed)))
            restore_link(w, *e, removed.pop(e))
        else:
            e = data.draw(st.sampled_from(edges))
            if e in removed:
                continue
            g = w.graph.copy()
            g.remove_edge(*e)
            if not nx.is_connected(g):
                continue
            removed[e] = cut_link(w, *e)
        full = shortest_rtt(w.graph, w.n_sites)
        np.testing.assert_allclose(w.site_rtt_ms, full, rtol=0, atol=1e-9)
        np.testing.assert_allclose(w.rtt_ms, w.origin_rtt(full), rtol=0, atol=1e-9)


def test_link_cut_in_a_run_takes_the_detour():
    world = _world()
    s = world.site_id.index(_busy_sites()[0])
    # Cut the link from the busiest site that the most routes use, for the whole run.
    b = max(world.graph.neighbors(s), key=lambda x: _paths_using(world, s, x).sum())
    faults = FaultsConfig(links=[LinkCutConfig(a=world.site_id[s], b=world.site_id[b])])
    before = world.rtt_ms.copy()
    eng, sched = _engine(faults)
    np.testing.assert_array_equal(world.rtt_ms, before)  # the engine worked on a copy
    reqs, _ = _tables(eng, sched)
    ok = reqs[reqs["status"] == "ok"]
    site_idx = pd.Index(world.site_id).get_indexer(ok["site"])
    origin = eng.stream.origin[ok.index.to_numpy()]
    np.testing.assert_allclose(ok["network_ms"], eng.world.rtt_ms[origin, site_idx], rtol=1e-12)
    detoured = eng.world.rtt_ms[origin, site_idx] > before[origin, site_idx] + 1e-9
    assert detoured.any()
    assert len(sched.table) == 1 and sched.table.loc[0, "kind"] == "link"


# ----------------------------------------------------------------------------- determinism, API

FAULTY = BASE + [
    "load=3", "faults.detection_s=0.5", "faults.retries=1",
    "faults.random.edge.mtbf_s=30", "faults.random.edge.mttr_s=2",
    "faults.random.regional.mtbf_s=60", "faults.random.regional.mttr_s=3",
    "faults.outages=[{tier: core, start_s: 2.0, duration_s: 2.0, fraction: 0.5}]",
]


def test_same_seed_same_faults_identical_results():
    a = aigrid_sim.run("global_agent", FAULTY + ["seed=3"])
    b = aigrid_sim.run("global_agent", FAULTY + ["seed=3"])
    c = aigrid_sim.run("global_agent", FAULTY + ["seed=4"])
    pd.testing.assert_frame_equal(a.requests, b.requests)
    pd.testing.assert_frame_equal(a.faults, b.faults)
    assert json.dumps(a.summary["faults"]) == json.dumps(b.summary["faults"])
    assert a.summary["faults"]["failed_over"] > 0
    assert not a.faults[a.faults["source"] == "random"].equals(
        c.faults[c.faults["source"] == "random"])


def test_no_faults_no_fault_block(small_run):
    assert "faults" not in small_run.summary and small_run.faults is None
    assert small_run.summary["failed_over"] == 0
    assert not small_run.requests["failed_over"].any()


def test_run_folder_has_faults_table_and_figure(tmp_path):
    from aigrid_sim.cli import summary_table
    from aigrid_sim.results.rundir import load_run

    r = aigrid_sim.run("global_agent", FAULTY + ["output.figures=true"], out_dir=tmp_path)
    assert (r.out_dir / "faults.parquet").exists()
    assert (r.out_dir / "faults_over_time.png").stat().st_size > 10_000
    back = load_run(r.out_dir)
    pd.testing.assert_frame_equal(back["faults"], r.faults)
    text = summary_table(back["summary"])
    assert "failed over" in text and "availability" in text


@pytest.mark.parametrize("override, key", [
    ("faults.outages=[{site: nowhere}]", "faults.outages[0].site"),
    ("faults.outages=[{start_s: 1.0}]", "faults.outages[0]"),
    ("faults.outages=[{tier: edge, fraction: 1.5}]", "faults.outages[0].fraction"),
    ("faults.outages=[{metro: Atlantis}]", "faults.outages[0].metro"),
    ("faults.links=[{a: edge-LHR, b: edge-SYD}]", "faults.links[0]"),
    ("faults.retries=-1", "faults.retries"),
    ("faults.random.core.mtbf_s=0", "faults.random.core.mtbf_s"),
])
def test_bad_fault_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        aigrid_sim.run("global_agent", BASE + [override])


def test_outage_selectors():
    world = _world()
    cfg = FaultsConfig(outages=[OutageConfig(country="DE", tier="edge", start_s=1.0),
                                OutageConfig(metro="London", radius_km=60.0, start_s=2.0,
                                             duration_s=1.0)])
    t = build_schedule(cfg, world, 1, 10.0).table
    de = t[t["source"] == "outages[0]"]
    expect = {x for x, c, tier in zip(world.site_id, world.site_country, world.site_tier,
                                      strict=True) if c == "DE" and tier == 0}
    assert set(de["target"]) == expect and len(expect) > 0
    assert (de["end_s"] == 10.0).all()
    london = t[t["source"].str.contains("outages\\[1\\]")]
    assert "edge-LHR" in set(london["target"])
    assert not set(london["target"]) & {x for x in world.site_id if "SYD" in x}


def test_scenarios_resolve():
    for name in ("regional_outage", "random_failures"):
        cfg = config_of(name, ["world.cities.max_cities=50"])
        world = build_world(cfg)
        sched = build_schedule(cfg.faults, world, cfg.seed, cfg.duration_s + cfg.drain_s)
        assert sched.active


def test_fail_over_does_not_return_to_the_site_that_failed_it():
    """Before health checks notice, a retried request still avoids the site that just failed it."""
    site = _busy_sites()[0]
    eng, _, s = _outage_run(site, 10.0)  # detection far later than the outage's start
    rec = eng.records
    retried = (rec.site0 == s) & (rec.attempts == 2)
    assert retried.sum() > 0
    assert (rec.site[retried] != s).all()
    check_engine_state(eng)


class _LoadSpy:
    """Wraps a policy and logs (time, site, load as the view shows it) at each decision."""

    def __init__(self, inner):
        self.inner, self.log = inner, []

    def bind(self, view):
        self.inner.bind(view)

    def choose(self, request, view):
        s = self.inner.choose(request, view)
        if s >= 0:
            self.log.append((view.now, view._slots[s]))
        return s


@pytest.mark.parametrize("detection", [0.0, 30.0])
def test_policies_see_a_partial_outage_once_it_is_detected(detection):
    """Half of a site's GPUs lost at t=100: the view's capacity halves at detection, not before."""
    cfg = config_of("mmc", ["arrival_rate=6", "requests=2000"])
    cfg.faults = FaultsConfig(outages=[OutageConfig(site="mmc", start_s=100.0, duration_s=100.0,
                                                    fraction=0.5)], detection_s=detection)
    world = build_world(cfg)
    stream = make_stream(cfg, world)
    horizon = cfg.duration_s + cfg.drain_s
    sched = build_schedule(cfg.faults, world, cfg.seed, horizon)
    spy = _LoadSpy(make_policy(cfg.policy, cfg.routing.params))
    Engine(world, stream, spy, seed=cfg.seed, horizon_s=horizon, faults=sched).run()
    seen = {round(t, 6): c for t, c in spy.log}
    seen_at = lambda lo, hi: {c for t, c in seen.items() if lo <= t < hi}  # noqa: E731
    noticed = 100.0 if detection == 0 else 120.0  # health checks at 0, 30, 60, 90, 120, ...
    assert seen_at(0, 100) == {8}
    assert seen_at(noticed, 200) == {4}
    if detection:
        assert seen_at(100, noticed) == {8}  # not yet noticed
