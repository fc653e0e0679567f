"""Routing policies on small custom worlds where the right answer is known."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import aigrid_sim
from aigrid_sim.errors import ConfigError
from aigrid_sim.sim.policies import available_policies, make_policy

# Three sites on the equator: an edge PoP next to the user, a regional site ~1,100 km away and a
# core ~5,500 km away; one origin at longitude 0.
SITES = ("world.sites=["
         "{id: e, tier: edge, lat: 0, lon: 0.5, gpu: L40S, model: llama-3.1-8b-fp8, gpus: 1,"
         " max_queue: 8},"
         "{id: r, tier: regional, lat: 0, lon: 10, gpu: H100, model: llama-3.3-70b-fp8, gpus: 2,"
         " max_queue: 64},"
         "{id: c, tier: core, lat: 0, lon: 50, gpu: H200, model: llama-3.1-405b-fp8, gpus: 8,"
         " max_queue: 64}]")
ORIGIN = "world.origins=[{name: here, lat: 0, lon: 0, population: 1, utc_offset_h: 0}]"
BASE = ["world.topology=custom", SITES, ORIGIN, "workload.arrivals.kind=poisson",
        "output.figures=false", "duration_s=60"]


def app(cap: int, slo_ms: float = 5000, rate: float = 1.0) -> list[str]:
    return [f"workload.rate_rps={rate}", "workload.apps=[{name: a, share: 1, capability: "
            f"{cap}, slo_ms: {slo_ms}, slo_on: ttft}}]"]


def sites_used(policy: str, cap: int, **kw) -> dict:
    r = aigrid_sim.run("global_agent", BASE + app(cap, **kw) + [f"policy={policy}"])
    return r.requests["site"].value_counts().to_dict()


def test_centralised_sends_everything_to_the_core():
    assert set(sites_used("centralised", 1)) == {"c"}


def test_nearest_capable_follows_capability():
    assert set(sites_used("nearest_capable", 1)) == {"e"}
    assert set(sites_used("nearest_capable", 2)) == {"r"}
    assert set(sites_used("nearest_capable", 3)) == {"c"}


def test_cheapest_feasible_climbs_tiers_only_when_needed():
    assert set(sites_used("cheapest_feasible", 1, slo_ms=5000)) == {"e"}
    # An overloaded edge (1 GPU, queue 8) at 400 req/s: predicted TTFT misses, traffic spills up.
    used = sites_used("cheapest_feasible", 1, slo_ms=200, rate=400)
    assert used.get("e", 0) > 0 and used.get("r", 0) + used.get("c", 0) > 0


def test_least_loaded_and_power_of_two_spread_load():
    for p in ("least_loaded", "power_of_two"):
        used = sites_used(p, 1, rate=400)
        assert len(used) >= 2, (p, used)


def test_policy_params_are_checked():
    with pytest.raises(ConfigError, match="fallback"):
        make_policy("cheapest_feasible", {"fallback": "pray"})
    with pytest.raises(ConfigError, match="takes no"):
        make_policy("least_loaded", {"kk": 2})
    assert make_policy("least_loaded", {"k": 2}).k == 2


def test_user_policy_from_own_module(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(textwrap.dedent("""
        from aigrid_sim.sim.policies import BasePolicy, register, Reject

        @register("core_or_nothing")
        class CoreOrNothing(BasePolicy):
            def choose(self, request, view):
                for s in view.tier_candidates(request.origin, request.capability, 2):
                    return s
                return Reject.NO_CAPABLE_SITE
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    r = aigrid_sim.run("global_agent", BASE + app(1) + [
        "plugins=[my_policies]", "policy=core_or_nothing"], plugins=["my_policies"])
    assert set(r.requests["site"]) == {"c"}
    assert "core_or_nothing" in available_policies()
    r2 = aigrid_sim.run("global_agent", BASE + app(1) + ["policy=my_policies:CoreOrNothing"])
    assert set(r2.requests["site"]) == {"c"}
    sys.modules.pop("my_policies", None)


def test_power_of_two_is_reproducible():
    a = sites_used("power_of_two", 1, rate=300)
    b = sites_used("power_of_two", 1, rate=300)
    assert a == b


def test_stale_load_changes_decisions_but_keeps_invariants():
    live = aigrid_sim.run("global_agent", BASE + app(1, rate=400) + ["policy=least_loaded"])
    stale = aigrid_sim.run("global_agent", BASE + app(1, rate=400) + [
        "policy=least_loaded", "routing.staleness_s=5"])
    assert not np.array_equal(live.requests["site"].to_numpy(), stale.requests["site"].to_numpy())
    s = stale.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
