"""Cascades: a small model first, some requests escalated to a bigger one on a higher tier."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aigrid_sim
from aigrid_sim.errors import ConfigError
from aigrid_sim.results.billing import billing
from aigrid_sim.sim.cascade import CascadeSpec

SMALL = ["world.cities.max_cities=400", "duration_s=10", "workload.rate_rps=300",
         "drain_s=120", "output.figures=false"]
PRICES = ("tenants=[{name: voice, apps: [voice_agent], "
          "prices: {edge: {in_per_m: 1.0, out_per_m: 4.0}, regional: {in_per_m: 3.0, "
          "out_per_m: 9.0}, core: {in_per_m: 10.0, out_per_m: 30.0}}}]")


def cascade(**kw) -> str:
    body = ", ".join(f"{k}: {v}" for k, v in kw.items())
    return f"+workload.apps.0.cascade={{{body}}}"


def _conserved(r) -> None:
    s = r.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
    assert len(r.requests) == s["requests"]
    assert set(r.requests["status"].astype(str)) <= {"ok", "rejected", "failed", "in_flight"}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["fixed", "length", "difficulty"]),
       fraction=st.floats(0.0, 1.0), length=st.integers(50, 2000),
       threshold=st.floats(0.05, 0.95), to_tier=st.sampled_from(["regional", "core"]),
       policy=st.sampled_from(["cheapest_feasible", "least_loaded", "latency_aware"]))
def test_cascade_conserves_requests_and_bills_both_attempts(mode, fraction, length, threshold,
                                                             to_tier, policy):
    """Property: one request each, escalations on the bigger model, both attempts paid."""
    r = aigrid_sim.run("global_agent", SMALL + [
        PRICES, f"policy={policy}",
        cascade(to_tier=to_tier, mode=mode, fraction=fraction, length_tokens=length,
                threshold=threshold)])
    _conserved(r)
    df = r.requests
    voice = df[df["app"] == "voice_agent"]
    others = df[df["app"] != "voice_agent"]
    assert (others["cascade"].astype(str) == "").all()
    assert (voice["cascade"].astype(str) != "").all()
    caps = dict(zip(r.world.site_id, r.world.site_capability.tolist(), strict=True))
    need = 2 if to_tier == "regional" else 3
    esc = voice[voice["cascade"] == "escalated"]
    assert len(esc) == r.summary["cascade"]["escalated"]
    # the first attempt answered on a small model, then a trip home; the second, if served,
    # on a model of the cascade's capability, after the first attempt's whole time
    assert esc["edge_tier"].notna().all() and (esc["edge_ms"] > 0).all()
    done = esc[esc["status"] == "ok"]
    assert all(caps[s] >= need for s in done["site"])
    assert (done["latency_ms"] >= done["edge_ms"] + done["network_ms"] - 1e-6).all()
    assert (done["extra_ms"] >= done["edge_ms"] - 1e-6).all()
    # cost: both services (the edge attempt's part included in cost_usd)
    assert (esc["edge_cost_usd"] > 0).all()
    assert (esc["cost_usd"] >= esc["edge_cost_usd"]).all()
    # revenue: both attempts' tokens, each at its own tier's price
    price = {"edge": (1.0, 4.0), "regional": (3.0, 9.0), "core": (10.0, 30.0)}

    def rev(tier, tin, tout):
        p = price[str(tier)]
        return (tin * p[0] + tout * p[1]) / 1e6

    expect = 0.0
    for row in voice.itertuples():
        if row.status == "ok":
            expect += rev(row.tier, row.in_tokens, row.out_tokens)
        if row.cascade == "escalated":
            expect += rev(row.edge_tier, row.in_tokens, row.out_tokens)
    bill = r.summary["tenants"]["by_tenant"]["voice"]
    assert bill["revenue_usd"] == pytest.approx(expect, rel=1e-9)
    # the streamed bill is the one computed from the whole table
    assert billing(df, r.sites, [t for t in aigrid_sim.api.config_of(
        "global_agent", SMALL + [PRICES]).tenants])["by_tenant"]["voice"]["revenue_usd"] == \
        pytest.approx(expect, rel=1e-9)
    # sites: the GPU time of both attempts is in the sites' used cost
    assert r.sites["used_cost_usd"].sum() == pytest.approx(df["cost_usd"].sum(), rel=1e-9)


def test_fixed_fraction_escalates_that_share():
    """Escalated share of the small model's answers: within a 99.9 % binomial interval."""
    f = 0.3
    r = aigrid_sim.run("global_agent", SMALL + ["policy=least_loaded",
                                                cascade(to_tier="regional", fraction=f)])
    _conserved(r)
    c = r.summary["cascade"]
    n = c["escalated"] + c["by_path"]["edge_only"]["completed"]
    assert n > 500
    half = 3.3 * math.sqrt(f * (1 - f) / n)
    assert abs(c["escalation_rate"] - f) < half


def test_difficulty_rate_matches_its_distribution():
    """With mode difficulty, the rate is P(1 - d < threshold), d ~ Beta(alpha, beta)."""
    r = aigrid_sim.run("global_agent", SMALL + ["policy=least_loaded", cascade(
        to_tier="core", mode="difficulty", threshold=0.6,
        difficulty="{alpha: 2.0, beta: 3.0}")])
    spec = CascadeSpec(0, "voice_agent", 3, 3, "difficulty", 0.0, 0, 2.0, 3.0, 0.6)
    p = spec.p_escalate(100)
    # Beta(2, 3): CDF 6x^2 - 8x^3 + 3x^4, 0.5248 at 0.4, so P(d > 0.4) = 0.4752
    assert p == pytest.approx(0.4752, abs=1e-9)
    c = r.summary["cascade"]
    n = c["escalated"] + c["by_path"]["edge_only"]["completed"]
    assert abs(c["escalation_rate"] - p) < 3.3 * math.sqrt(p * (1 - p) / n)


def test_cheapest_feasible_sends_certain_escalations_direct():
    """With mode length, cascade-aware cheapest_feasible sends no long prompt to the small model."""
    ov = SMALL + [cascade(to_tier="regional", mode="length", length_tokens=400)]
    aware = aigrid_sim.run("global_agent", ov)
    naive = aigrid_sim.run("global_agent", ov + ["+routing.params.cascade_aware=false"])
    for r in (aware, naive):
        _conserved(r)
    va = aware.requests[aware.requests["app"] == "voice_agent"]
    vn = naive.requests[naive.requests["app"] == "voice_agent"]
    long_a = va[va["in_tokens"] > 400]
    assert len(long_a) > 50
    assert aware.summary["cascade"]["escalated"] == 0
    assert (long_a["cascade"] == "direct").all()
    assert naive.summary["cascade"]["escalated"] == int((vn["in_tokens"] > 400).sum()) - \
        int(((vn["in_tokens"] > 400) & (vn["cascade"] == "direct")).sum()) - \
        int(((vn["in_tokens"] > 400) & (vn["status"] != "ok") & (vn["cascade"] == "edge_only")
             ).sum())
    # going direct saves the small model's trip and service: lower latency for long prompts
    la = long_a[long_a["status"] == "ok"]["latency_ms"].median()
    ln = vn[(vn["in_tokens"] > 400) & (vn["status"] == "ok")]["latency_ms"].median()
    assert la < ln


def test_same_seed_same_escalations_whatever_the_windows():
    """The draws follow arrival order: a streamed run in 1.5 s windows escalates the same ones."""
    ov = SMALL + [cascade(to_tier="regional", mode="difficulty")]
    a = aigrid_sim.run("global_agent", ov)
    b = aigrid_sim.run("global_agent", ov + ["output.window_s=1.5"])
    assert a.summary["cascade"]["escalated"] > 100
    assert a.requests["cascade"].equals(b.requests["cascade"])
    assert np.array_equal(a.requests["latency_ms"].to_numpy(), b.requests["latency_ms"].to_numpy(),
                          equal_nan=True)


def test_no_cascade_no_columns_no_wrapper():
    r = aigrid_sim.run("global_agent", SMALL)
    assert "cascade" not in r.requests and "cascade" not in r.summary


@pytest.mark.parametrize("value, match", [
    ("{to_tier: regional}", r"workload.apps\[2\].cascade.to_tier.*no site of that tier hosts "
                            r"a model bigger"),
    ("{to_tier: regional, capability: 3}", r"workload.apps\[2\].cascade.to_tier.*needing "
                                           r"capability 3"),
    ("{to_tier: edge}", r"workload.apps\[2\].cascade.to_tier.*must be one of"),
    ("{to_tier: core, fraction: 1.5}", r"workload.apps\[2\].cascade.fraction"),
    ("{to_tier: core, capability: 1}", r"workload.apps\[2\].cascade.capability.*above"),
])
def test_bad_cascade_is_one_clear_line(value, match):
    # app 2 is `reasoning` (capability 2): regional hosts nothing bigger
    with pytest.raises(ConfigError, match=match):
        aigrid_sim.run("global_agent", SMALL + [f"+workload.apps.2.cascade={value}"])


def test_cascade_of_a_fixed_work_app_is_refused():
    with pytest.raises(ConfigError, match=r"workload.apps\[1\].cascade.to_tier.*generative"):
        aigrid_sim.run("global_agent", SMALL + ["+workload.apps.1.cascade={to_tier: core}"])


def test_bad_cascade_exits_2_on_the_cli(tmp_path):
    p = subprocess.run([sys.executable, "-m", "aigrid_sim.cli", "scenario=global_agent",
                        *SMALL, "+workload.apps.2.cascade={to_tier: regional}",
                        f"output.dir={tmp_path}"], capture_output=True, text=True)
    assert p.returncode == 2
    lines = [x for x in p.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and "workload.apps[2].cascade.to_tier" in lines[0]


def test_cascade_target_outside_a_residency_area_is_reported_before_the_run():
    """Indian voice turns must stay in India, but no core (405B) site is there."""
    with pytest.raises(ConfigError, match=r"workload.apps\[0\].sovereignty\[0\].*escalated "
                                          r"requests.*capability 3"):
        aigrid_sim.run("global_agent", SMALL + ["+workload.apps.0.sovereignty=[IN]",
                                                cascade(to_tier="core")])


def test_cascade_with_residency_serves_both_attempts_inside_the_area():
    r = aigrid_sim.run("global_agent", SMALL + ["+workload.apps.0.sovereignty=[EU]",
                                                cascade(to_tier="regional", fraction=0.9)])
    _conserved(r)
    from aigrid_sim.world import areas

    eu = areas.resolve("EU", "x")
    sc = dict(zip(r.world.site_id, [c or "" for c in r.world.site_country], strict=True))
    oc = dict(zip(r.world.origin_name, [c or "" for c in r.world.origin_country], strict=True))
    df = r.requests
    v = df[(df["app"] == "voice_agent") & df["origin"].astype(str).map(oc).isin(eu)]
    esc = v[(v["cascade"] == "escalated") & (v["site"] != "")]
    assert len(esc) > 20, len(esc)
    assert esc["site"].map(sc).isin(eu).all()


def test_console_prints_the_escalation_rate_and_each_path():
    from aigrid_sim.cli import summary_table

    r = aigrid_sim.run("global_agent", SMALL + [cascade(to_tier="regional", fraction=0.4)])
    c = r.summary["cascade"]
    text = summary_table(r.summary)
    assert f"{c['escalated']:,} escalated" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()
            and line.split()[0] in ("edge_only", "escalated", "direct")}
    assert set(rows) >= {"edge_only", "escalated"}
    assert f"{c['by_path']['escalated']['requests']:,}" in rows["escalated"]


def test_escalated_first_attempt_frees_its_concurrency_place_on_the_way_home():
    """An escalated request's edge concurrency place ends with its small-model answer.

    Not at the end of its trip home: the cap is never exceeded when places end at the answer,
    and places are reused during trips home (counted to the end of the trip, the cap would be
    exceeded). Without the release the second count stays within the cap too.
    """
    cap = 10
    r = aigrid_sim.run("global_agent", SMALL + [
        "policy=nearest_capable", cascade(to_tier="regional", mode="fixed", fraction=1.0),
        f"tenants=[{{name: voice, apps: [voice_agent], quotas: [{{tier: edge, "
        f"max_concurrency: {cap}}}]}}]"])
    _conserved(r)
    df, rec = r.requests, r.records
    esc = (df["cascade"] == "escalated").to_numpy()
    assert esc.sum() > 100 and r.summary["reasons"].get("quota", 0) > 0
    start = df["arrival_s"].to_numpy()
    answer = rec.esc_t_start[esc] + rec.esc_service_s[esc]  # the small model's last token
    home = start[esc] + rec.esc_s[esc]  # its answer back at the user

    def most(ends):
        ev = np.concatenate([np.stack([start[esc], np.ones(esc.sum())], 1),
                             np.stack([ends - 1e-9, -np.ones(esc.sum())], 1)])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
        return int(np.cumsum(ev[:, 1]).max())

    assert most(answer) <= cap < most(home)
