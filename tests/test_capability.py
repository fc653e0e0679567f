"""Capability routing: every policy respects it; unservable requests end no_capable_site."""

from __future__ import annotations

import pytest

from aigrid_sim.api import config_of, make_stream
from aigrid_sim.results.metrics import requests_table
from aigrid_sim.sim.engine import Engine
from aigrid_sim.sim.policies import Reject, Request, available_policies, make_policy
from aigrid_sim.world.build import build_world

BUILTIN = ["centralised", "nearest_capable", "cheapest_feasible", "least_loaded",
           "power_of_two", "latency_aware"]
SMALL = ["world.cities.max_cities=120", "duration_s=10", "workload.rate_rps=200",
         "output.figures=false", "drain_s=60"]


@pytest.fixture(scope="module")
def grid():
    cfg = config_of("global_agent", SMALL)
    world = build_world(cfg)
    return cfg, world, make_stream(cfg, world)


def _engine(grid, policy):
    cfg, world, stream = grid
    return Engine(world, stream, make_policy(policy), seed=cfg.seed,
                  k_nearest=cfg.routing.k_nearest, horizon_s=cfg.duration_s + cfg.drain_s)


@pytest.mark.parametrize("policy", BUILTIN)
def test_every_policy_serves_each_request_at_a_capable_site(grid, policy):
    cfg, world, stream = grid
    e = _engine(grid, policy)
    rec = e.run()
    q = requests_table(world, stream, rec)
    routed = q[q["site"] != ""]
    cap = dict(zip(world.site_id, world.site_capability, strict=True))
    assert (routed["site"].map(cap) >= routed["capability"]).all()
    assert set(routed["capability"]) == {1, 2, 3}


@pytest.mark.parametrize("policy", BUILTIN)
def test_capability_without_an_up_site_is_rejected_no_capable_site(grid, policy):
    """The core (the only capability-3 tier) is down as the orchestrator sees it."""
    cfg, world, stream = grid
    e = _engine(grid, policy)
    core = [s for s in range(world.n_sites) if world.site_capability[s] >= 3]
    assert core
    for s in core:
        e.up[s] = False
    rec = e.run()
    q = requests_table(world, stream, rec)
    frontier = q[q["capability"] == 3]
    assert len(frontier) > 0
    assert (frontier["status"] == "rejected").all()
    assert (frontier["reason"] == "no_capable_site").all()
    others = q[q["capability"] < 3]
    if policy != "centralised":  # centralised sends everything to the (down) core
        assert (others["reason"] != "no_capable_site").all()
        assert (others["status"] == "ok").mean() > 0.5


@pytest.mark.parametrize("policy", sorted(set(available_policies()) & set(BUILTIN)))
def test_policy_level_choice_respects_capability(grid, policy):
    e = _engine(grid, policy)
    view = e.view
    for cap in (1, 2, 3):
        for origin in range(0, e.world.n_origins, 7):
            s = e.policy.choose(Request(0, 0.0, origin, 0, cap, 1e9, False, 100), view)
            assert s >= 0 and view.capabilities[s] >= cap
    # A capability nothing offers: every policy says no_capable_site.
    s = e.policy.choose(Request(0, 0.0, 0, 0, 4, 1e9, False, 100), view)
    assert s == Reject.NO_CAPABLE_SITE
