"""Tenant priorities: higher priority is admitted first, FIFO within a priority."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aigrid_sim
from aigrid_sim.serving.queues import PriorityQueue
from aigrid_sim.sim import control

# Two identical chat apps of two tenants share the edge PoPs of 400 cities, overloaded.
APP = ("{name: %s, share: 0.5, capability: 1, slo_ms: 1000.0, slo_on: ttft, "
       "tokens: {in_mean: 800.0, in_cv: 0.8, out_mean: 150.0, out_cv: 0.6, in_max: 8192, "
       "out_max: 1024}}")
BASE = ["world.cities.max_cities=400", "duration_s=10", "drain_s=300", "workload.rate_rps=3000",
        "world.sized_gpus=null",
        "policy=nearest_capable", "output.figures=false", "world.edge.max_queue=100000",
        f"workload.apps=[{APP % 'gold'},{APP % 'bronze'}]"]


def tenants(gold: int, bronze: int) -> str:
    return (f"tenants=[{{name: premium, apps: [gold], priority: {gold}}}, "
            f"{{name: best_effort, apps: [bronze], priority: {bronze}}}]")


def _wait(r, app: str) -> float:
    df = r.requests
    ok = df[(df["app"] == app) & (df["status"] == "ok")]
    return float(ok["queue_ms"].mean())


def test_premium_waits_less_under_overload():
    """Mean queue wait of the premium tenant, prioritised vs equal priorities: 95 % CI < 0."""
    diffs, gaps = [], []
    for seed in (1, 2, 3, 4):
        prio = aigrid_sim.run("global_agent", BASE + [tenants(1, 0), f"seed={seed}"])
        same = aigrid_sim.run("global_agent", BASE + [tenants(0, 0), f"seed={seed}"])
        s = prio.summary
        assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
        assert _wait(same, "gold") > 50.0  # the overload makes queues
        diffs.append(_wait(prio, "gold") - _wait(same, "gold"))
        gaps.append(_wait(prio, "gold") - _wait(prio, "bronze"))
    for d in (np.array(diffs), np.array(gaps)):
        half = 3.182 * d.std(ddof=1) / np.sqrt(len(d))  # t(0.975, 3)
        assert d.mean() + half < 0, d


def test_equal_priorities_keep_the_plain_queues():
    """All priorities equal (or no tenants): no priority queue is installed."""
    cfg = aigrid_sim.api.config_of("global_agent", BASE + [tenants(2, 2)])
    from aigrid_sim.world.build import build_world

    w = build_world(cfg)
    rules = control.build_rules(cfg, w, ["gold", "bronze"])
    assert control.priority_levels(rules) is None
    assert control.priority_levels(None) is None
    cfg = aigrid_sim.api.config_of("global_agent", BASE + [tenants(0, 5)])
    assert control.priority_levels(control.build_rules(cfg, w, ["gold", "bronze"])) == [1, 0]


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["append", "appendleft", "popleft", "displace"]),
                              st.integers(0, 2)), max_size=60))
def test_priority_queue_is_fifo_within_a_level(ops):
    """Against a model: one deque per level, highest level first."""
    app = list(range(3))  # request i belongs to app i % 3 ... set per op below
    level_of_app = [2, 0, 1]
    app_of: list[int] = []
    q = PriorityQueue(level_of_app, app_of, 3)
    model = [deque(), deque(), deque()]
    for op, a in ops:
        if op == "popleft":
            if not len(q):
                with pytest.raises(IndexError):
                    q.popleft()
                continue
            head = q[0]
            got = q.popleft()
            want = next(m for m in model if m).popleft()
            assert got == want == head
        elif op == "displace":  # a newcomer of app a: the newest of the lowest level below
            i = len(app_of)
            app_of.append(a)
            lower = [m for lv, m in enumerate(model) if lv > level_of_app[a] and m]
            want = lower[-1].pop() if lower else -1
            assert q.displace(i) == want
        else:
            i = len(app_of)
            app_of.append(a)
            getattr(q, op)(i)
            getattr(model[level_of_app[a]], op)(i)
        assert len(q) == sum(len(m) for m in model)
        assert list(q) == [i for m in model for i in m]
    del app


def test_unused_features_install_nothing_on_the_request_path():
    """Unused features leave the request path alone (decided when the run is built).

    No cascade, equal priorities, no concurrency quota: plain deques, the engine's own
    completion callback, the bare policy.
    """
    from aigrid_sim.api import config_of
    from aigrid_sim.sim import cascade as cascademod
    from aigrid_sim.sim.engine import Engine
    from aigrid_sim.sim.policies import make_policy
    from aigrid_sim.sim.policies.builtin import CheapestFeasible
    from aigrid_sim.workload import generate_stream
    from aigrid_sim.world.build import build_world

    cfg = config_of("global_agent", ["world.cities.max_cities=50", "duration_s=1"])
    w = build_world(cfg)
    stream = generate_stream(cfg, w.origin_weight, w.origin_utc_offset_h)
    names = [a.name for a in stream.apps]
    rules = control.build_rules(cfg, w, names)
    assert rules is None and cascademod.build_cascades(cfg, w, names) is None
    policy = cascademod.wrap(control.wrap(make_policy(cfg.policy), rules), None, 1)
    assert type(policy) is CheapestFeasible
    e = Engine(w, stream, policy)
    control.prioritise(e, rules)
    assert all(type(q) is deque for q in e.queues)
    pools = [p for p in e.pools if p is not None]
    assert pools and all(type(p.queue) is deque and p._done == e._served for p in pools)
    assert "choose" not in vars(policy)  # cheapest_feasible kept its plain choose


def test_a_full_queue_displaces_lower_priorities():
    """Waiting room of 30 per site, overloaded: premium newcomers take best effort's places.

    Premium is refused only when the queue holds premium alone; best effort loses places it
    already had (``displaced``); every request is accounted for.
    """
    small = [x for x in BASE if not x.startswith("world.edge.max_queue")] + \
        ["world.edge.max_queue=30"]
    prio = aigrid_sim.run("global_agent", small + [tenants(1, 0)])
    same = aigrid_sim.run("global_agent", small + [tenants(0, 0)])
    for r in (prio, same):
        s = r.summary
        assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
    df, dq = prio.requests, same.requests
    rej = df["status"] == "rejected"
    gold, bronze = df["app"] == "gold", df["app"] == "bronze"
    assert (rej & gold & (df["reason"] == "displaced")).sum() == 0
    assert (rej & bronze & (df["reason"] == "displaced")).sum() > 100
    assert (dq["reason"] == "displaced").sum() == 0  # equal priorities: plain queues
    # premium is refused far less than with equal priorities, best effort far more
    gold_same = ((dq["status"] == "rejected") & (dq["app"] == "gold")).mean()
    assert (rej & gold).mean() < 0.25 * gold_same
    assert (rej & bronze).mean() > ((dq["status"] == "rejected") & (dq["app"] == "bronze")).mean()
