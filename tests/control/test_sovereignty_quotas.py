"""The control plane: data residency is never violated, quotas are never exceeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aigrid_sim
from aigrid_sim.api import config_of
from aigrid_sim.errors import ConfigError
from aigrid_sim.world import areas

SMALL = ["world.cities.max_cities=400", "duration_s=10", "workload.rate_rps=300",
         "drain_s=60", "output.figures=false"]
POLICIES = ["cheapest_feasible", "nearest_capable", "least_loaded", "power_of_two",
            "latency_aware", "centralised", "kpi_weighted"]


def _site_country(r) -> dict[str, str]:
    return dict(zip(r.world.site_id, [c or "" for c in r.world.site_country], strict=True))


def _origin_country(r) -> dict[str, str]:
    return dict(zip(r.world.origin_name, [c or "" for c in r.world.origin_country], strict=True))


def _violations(r, app: str, rule: list[str]) -> int:
    """Requests of ``app`` from inside an area of ``rule`` served outside that area."""
    sc, oc = _site_country(r), _origin_country(r)
    df = r.requests[(r.requests["app"] == app) & (r.requests["site"] != "")]
    bad = 0
    for origin, site in zip(df["origin"].astype(str), df["site"], strict=True):
        for name in rule:  # the first area that holds the origin is its area
            members = areas.resolve(name, "test")
            if oc[origin] in members:
                bad += sc[site] not in members
                break
    return bad


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(POLICIES),
       rule=st.sampled_from([["EU"], ["IN"], ["EU", "IN"], ["US", "Europe"], ["JP", "GCC"]]))
def test_no_request_is_ever_served_outside_its_area(policy, rule):
    """Property: whatever the policy and the areas, residency holds for every request."""
    ov = SMALL + [f"policy={policy}", f"+workload.apps.0.sovereignty=[{','.join(rule)}]"]
    r = aigrid_sim.run("global_agent", ov)
    assert _violations(r, "voice_agent", rule) == 0
    s = r.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]


def test_residency_changes_where_requests_go():
    """Without the rule some EU requests of the app leave the EU; with it none do."""
    ov = SMALL + ["policy=latency_aware"]
    free = aigrid_sim.run("global_agent", ov + ["workload.rate_rps=3000"])
    rule = aigrid_sim.run("global_agent", ov + ["workload.rate_rps=3000",
                                                "+workload.apps.2.sovereignty=[EU]"])
    assert _violations(free, "reasoning", ["EU"]) > 0
    assert _violations(rule, "reasoning", ["EU"]) == 0


def test_area_without_capable_site_is_reported_before_the_run():
    with pytest.raises(ConfigError, match=r"workload.apps\[3\].sovereignty\[0\].*no site"):
        aigrid_sim.run("global_agent", SMALL + ["+workload.apps.3.sovereignty=[NG]"])


@pytest.mark.parametrize("value, match", [
    ("[XX]", r"workload.apps\[0\].sovereignty\[0\].*unknown area 'XX'"),
    ("[EU,Atlantis]", r"sovereignty\[1\].*unknown area 'Atlantis'"),
])
def test_unknown_area_is_one_clear_line(value, match):
    with pytest.raises(ConfigError, match=match):
        aigrid_sim.run("global_agent", SMALL + [f"+workload.apps.0.sovereignty={value}"])


TENANTS = ("tenants=[{name: voice, apps: [voice_agent], priority: 1, "
           "quotas: [{tier: edge, rate_rps: %s, burst: %s}]}]")


@pytest.mark.parametrize("rate, burst", [(20.0, 5.0), (50.0, 1.0)])
def test_rate_quota_is_never_exceeded(rate, burst):
    """Admissions of the tenant at the edge never exceed rate x t + burst over any prefix."""
    r = aigrid_sim.run("global_agent", SMALL + [TENANTS % (rate, burst),
                                                "policy=nearest_capable"])
    df = r.requests
    mine = df[(df["app"] == "voice_agent")]
    throttled = mine[mine["reason"] == "quota"]
    admitted = mine[(mine["tier"] == "edge") & (mine["reason"] != "quota")].sort_values(
        "arrival_s")
    assert len(throttled) > 0
    # token bucket: admitted by time t <= burst + rate * t (arrival ~ decision time, +1e-9)
    t = admitted["arrival_s"].to_numpy() + admitted["extra_ms"].to_numpy() / 1000.0
    k = np.arange(1, len(t) + 1)
    assert np.all(k <= burst + rate * t + 1e-6)
    assert r.summary["reasons"].get("quota", 0) == len(throttled)


@pytest.mark.parametrize("tenants, match", [
    ("[{name: a, apps: []}]", r"tenants\[0\].apps.*owns no apps"),
    ("[{name: a, apps: [nope]}]", r"tenants\[0\].apps.*unknown app 'nope'"),
    ("[{name: a, apps: [voice_agent], quotas: [{tier: edge, rate_rps: -1}]}]",
     r"tenants\[0\].quotas\[0\].rate_rps"),
    ("[{name: a, apps: [voice_agent], prices: {edge: {in_per_m: inf}}}]",
     r"tenants\[0\].prices.edge.in_per_m"),
    ("[{name: a, apps: [voice_agent], prices: {moon: {in_per_m: 1}}}]",
     r"tenants\[0\].prices.moon.*unknown tier"),
    ("[{name: a, apps: [voice_agent], sovereignty: [ZZ]}]",
     r"tenants\[0\].sovereignty\[0\].*unknown area"),
    ("[{name: a, apps: [voice_agent]}, {name: b, apps: [voice_agent]}]",
     r"tenants\[1\].apps.*already belongs"),
])
def test_bad_tenant_config_is_one_clear_line(tenants, match):
    with pytest.raises(ConfigError, match=match):
        config_of("global_agent", SMALL + [f"tenants={tenants}"])


def _max_held(r, app: str, tier: str, per_site: bool) -> int:
    """Most requests of ``app`` held at once at ``tier`` (per site if ``per_site``).

    A request holds its place from its routing decision to the end of its time at the site
    (last token, or refused there); one still in flight holds it to the end of the run.
    """
    df = r.requests
    rec = r.records
    m = ((df["app"] == app) & (df["tier"] == tier) & (df["reason"] != "quota")).to_numpy()
    start = df["arrival_s"].to_numpy() + rec.extra_s
    ok = (df["status"] == "ok").to_numpy()
    end = np.where(ok, rec.t_start + rec.service_s,
                   start + df["network_ms"].to_numpy() / 2000.0)
    end = np.where((df["status"] == "in_flight").to_numpy(), np.inf, end)
    groups = df["site"].to_numpy() if per_site else np.zeros(len(df))
    worst = 0
    for g in np.unique(groups[m]):
        k = m & (groups == g)
        # ends sort before starts at the same instant (1 ns of float slack)
        ev = np.concatenate([np.stack([start[k], np.ones(k.sum())], 1),
                             np.stack([end[k] - 1e-9, -np.ones(k.sum())], 1)])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
        worst = max(worst, int(np.cumsum(ev[:, 1]).max()))
    return worst


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.integers(0, 60), per_site=st.booleans(),
       policy=st.sampled_from(["nearest_capable", "cheapest_feasible", "least_loaded"]),
       rate=st.sampled_from([None, 40.0]))
def test_concurrency_quota_is_never_exceeded(limit, per_site, policy, rate):
    """Property: the tenant never holds more than max_concurrency requests at the tier."""
    q = f"{{tier: edge, max_concurrency: {limit}, per_site: {str(per_site).lower()}"
    q += "}" if rate is None else f", rate_rps: {rate}, burst: 5}}"
    r = aigrid_sim.run("global_agent", SMALL + [
        f"tenants=[{{name: voice, apps: [voice_agent], quotas: [{q}]}}]", f"policy={policy}"])
    s = r.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
    assert _max_held(r, "voice_agent", "edge", per_site) <= limit
    if limit <= 10 and not per_site:
        assert s["reasons"].get("quota", 0) > 0
    if limit == 0:  # nothing of the tenant is ever served at the edge
        v = r.requests[r.requests["app"] == "voice_agent"]
        assert not (v["tier"] == "edge").any()


def test_concurrency_quota_binds_when_a_rate_quota_would_not():
    """Without the cap the tenant holds more at once than the cap allows; with it, never."""
    free = aigrid_sim.run("global_agent", SMALL + ["policy=nearest_capable"])
    held = _max_held(free, "voice_agent", "edge", False)
    cap = held // 2
    r = aigrid_sim.run("global_agent", SMALL + [
        "policy=nearest_capable",
        f"tenants=[{{name: voice, apps: [voice_agent], quotas: [{{tier: edge, "
        f"max_concurrency: {cap}}}]}}]"])
    assert _max_held(r, "voice_agent", "edge", False) <= cap < held
    assert r.summary["tenants"]["by_tenant"]["voice"]["throttled"] > 0


@pytest.mark.parametrize("quota, match", [
    ("{tier: edge, max_concurrency: -1}", r"tenants\[0\].quotas\[0\].max_concurrency.*>= 0"),
    ("{tier: edge}", r"tenants\[0\].quotas\[0\]'?:? a quota needs rate_rps"),
    ("{tier: edge, rate_rps: -3}", r"tenants\[0\].quotas\[0\].rate_rps"),
])
def test_bad_quota_is_one_clear_line(quota, match):
    with pytest.raises(ConfigError, match=match):
        config_of("global_agent", SMALL + [
            f"tenants=[{{name: a, apps: [voice_agent], quotas: [{quota}]}}]"])
