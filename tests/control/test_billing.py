"""Tenants' revenue, penalties, GPU cost and margin, checked by hand on tiny tables."""

from __future__ import annotations

import pandas as pd
import pytest

from aigrid_sim.config import PriceConfig, TenantConfig
from aigrid_sim.results.billing import NO_TENANT, billing


def _reqs():
    return pd.DataFrame({
        "app": ["chat", "chat", "chat", "batch", "batch", "other"],
        "tier": ["edge", "regional", "edge", "core", "", "edge"],
        "status": ["ok", "ok", "rejected", "ok", "rejected", "ok"],
        "reason": ["", "", "queue_full", "", "quota", ""],
        "in_tokens": [1000, 2000, 500, 10_000, 100, 50],
        "out_tokens": [100, 200, 50, 1_000, 10, 5],
        "slo_met": [True, False, False, True, False, True],
        "cost_usd": [0.01, 0.03, 0.0, 0.5, 0.0, 0.01],
    })


def _sites():
    return pd.DataFrame({"tier": ["edge", "regional", "core"], "cost_usd": [1.0, 2.0, 4.0]})


TENANTS = [
    TenantConfig(name="premium", apps=["chat"], sla_penalty_usd=0.5,
                 prices={"edge": PriceConfig(in_per_m=1.0, out_per_m=4.0),
                         "regional": PriceConfig(in_per_m=2.0, out_per_m=8.0)}),
    TenantConfig(name="batch", apps=["batch"], sla_penalty_usd=1.0,
                 prices={"core": PriceConfig(in_per_m=0.5, out_per_m=1.5)}),
]


def test_revenue_penalty_cost_and_margin_by_hand():
    b = billing(_reqs(), _sites(), TENANTS)
    p = b["by_tenant"]["premium"]
    # revenue: edge 1000*1 + 100*4 = 1400 ; regional 2000*2 + 200*8 = 5600 -> 7000 / 1e6
    assert p["revenue_usd"] == pytest.approx(7000 / 1e6)
    # penalty: the regional one missed, the rejected one missed -> 2 x 0.5
    assert p["penalty_usd"] == pytest.approx(1.0)
    # GPU cost: edge provisioned $1 shared by used cost 0.01 (chat) : 0.01 (other) -> 0.5;
    # regional $2 all chat's -> 2.0
    assert p["gpu_cost_usd"] == pytest.approx(2.5)
    assert p["margin_usd"] == pytest.approx(7000 / 1e6 - 1.0 - 2.5)
    assert p["slo_attainment"] == pytest.approx(1 / 3)
    q = b["by_tenant"]["batch"]
    # one completed at core: 10000*0.5 + 1000*1.5 = 6500; the throttled one pays no penalty
    assert q["revenue_usd"] == pytest.approx(6500 / 1e6)
    assert q["penalty_usd"] == 0.0 and q["throttled"] == 1
    assert q["gpu_cost_usd"] == pytest.approx(4.0)
    # apps of no tenant carry their share of cost, so the tenants' costs add up to the run's
    assert b["by_tenant"][NO_TENANT]["gpu_cost_usd"] == pytest.approx(0.5)
    assert sum(t["gpu_cost_usd"] for t in b["by_tenant"].values()) == pytest.approx(7.0)
    assert b["by_tenant"]["premium"]["by_tier"]["regional"]["revenue_usd"] == \
        pytest.approx(5600 / 1e6)


def test_streamed_bill_without_requests_table_equals_the_in_memory_one(tmp_path):
    """output.requests=none, several windows: the bill is accumulated online, same numbers."""
    import json

    import aigrid_sim
    from aigrid_sim.api import config_of

    ov = ["duration_s=20", "drain_s=60", "world.cities.max_cities=300", "output.window_s=4",
          "output.figures=false", "+workload.apps.0.cascade={to_tier: regional, fraction: 0.3}"]
    mem = aigrid_sim.run("multi_tenant", ov)
    expect = billing(mem.requests, mem.sites, config_of("multi_tenant", ov).tenants)
    streamed = aigrid_sim.run("multi_tenant", ov + ["output.requests=none"], out_dir=tmp_path)
    assert streamed.requests.empty and streamed.records is None
    summary = json.loads((streamed.out_dir / "summary.json").read_text())
    got = summary["tenants"]
    # the cascade block too: same escalations, same requests per path
    assert summary["cascade"]["escalated"] == mem.summary["cascade"]["escalated"] > 0
    assert {k: v["requests"] for k, v in summary["cascade"]["by_path"].items()} == \
        {k: v["requests"] for k, v in mem.summary["cascade"]["by_path"].items()}
    assert expect["by_tenant"]["voice_co"]["revenue_usd"] > 0
    assert expect["by_tenant"]["batch_co"]["throttled"] > 0

    def same(a, b):
        if isinstance(a, dict):
            assert set(a) == set(b)
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
        else:
            assert a == b

    same(expect, got)
