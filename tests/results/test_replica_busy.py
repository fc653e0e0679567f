"""Replica busy time: the share of replica time with a non-empty batch (``replica_busy``).

At low load a replica's requests barely interact, so the number in service is that of an
M/G/infinity queue and the replica is busy with probability ``1 - exp(-lambda E[S])``, with
``E[S]`` the mean time in the batch (the requests' latency: no network in the ``replica``
scenario). Measured (rates 0.5 and 2 requests/s, 4,000 requests of 200/50 tokens, 8B on L40S):
0.311 against 0.316 and 0.770 against 0.791; the small shortfall is the run's edges (busy time is
counted in the arrival window only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import aigrid_sim
from aigrid_sim.results.online import OnlineSummary, read_state
from aigrid_sim.results.report import summary_from_state


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_low_load_replica_is_busy_as_an_infinite_server_queue(rate):
    r = aigrid_sim.run("replica", [
        "model=llama-3.1-8b-fp8", "gpu=L40S", "gpus=1", "isl=200", "osl=50",
        "concurrency=0", "requests=4000", f"arrival_rate={rate}"])
    s = r.summary
    ok = r.requests[r.requests["status"] == "ok"]
    lam = s["requests"] / s["duration_s"]
    expected = 1.0 - math.exp(-lam * ok["latency_ms"].mean() / 1000.0)
    assert s["replica_busy"] == pytest.approx(expected, rel=0.05)
    assert s["replica_busy"] > 20 * s["utilisation"]  # slots held: a different, far lower figure
    row = r.sites.iloc[0]
    assert row["replicas"] == 1
    assert row["replica_busy_s"] == pytest.approx(s["replica_busy"] * s["duration_s"])


def test_replica_busy_is_a_share_and_survives_the_state_table(tmp_path):
    r = aigrid_sim.run("global_agent", ["duration_s=30", "output.figures=false"],
                       out_dir=tmp_path)
    s = r.summary
    busy = r.sites["replica_busy"].to_numpy(float)
    gen = r.sites["replicas"].to_numpy(float) > 0
    assert gen.any() and np.all((busy[gen] >= 0) & (busy[gen] <= 1 + 1e-12))
    assert 0 < s["replica_busy"] <= 1
    for tier, b in s["by_tier"].items():
        assert 0 <= b["replica_busy"] <= 1, tier
    # sketches.parquet carries it (measured window = whole run: no warm-up here)
    back = summary_from_state(read_state(r.out_dir / "sketches.parquet"))
    assert back["replica_busy"] == pytest.approx(s["replica_busy"], rel=1e-9)
    for tier, b in s["by_tier"].items():
        assert back["by_tier"][tier]["replica_busy"] == pytest.approx(b["replica_busy"],
                                                                       rel=1e-9)
    assert isinstance(OnlineSummary.sites_from_state(read_state(
        r.out_dir / "sketches.parquet"))["replica_busy_s"].sum(), float)
