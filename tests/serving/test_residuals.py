"""Calibration residuals, recomputed from the catalogue: the targets of issue 10 and the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigrid_sim.serving import calibration as cal
from aigrid_sim.serving.catalog import Catalog

CAT = Catalog.default()
RES = cal.residuals(CAT)
DOC = Path(__file__).resolve().parents[2] / "docs" / "inference.md"


def test_every_published_point_is_used():
    """TensorRT-LLM tables at every ISL/OSL (20000/2000 and 128/128 included), NIM, MLPerf."""
    mixes = {(p.isl, p.osl) for p, _, _ in RES if "TensorRT-LLM" in p.source}
    assert {(128.0, 128.0), (20000.0, 2000.0), (2048.0, 128.0)} <= mixes
    kinds = {p.kind for p, _, _ in RES}
    assert kinds == {"saturation", "ttft", "itl", "tpot_at_rate"}
    assert any("MLPerf" in p.source and p.gpu == "L40S" for p, _, _ in RES)
    assert len(RES) >= 78


@pytest.mark.parametrize("dep,s", sorted(cal.summary(RES).items()))
def test_saturation_error_targets_per_deployment(dep, s):
    """Median absolute error <= 15 % per deployment, no point worse than 40 %."""
    assert s["median"] <= 0.15, dep
    assert s["max"] <= 0.40, dep


def test_nim_latency_at_concurrency_one_within_15_percent():
    """TTFT and inter-token latency of a lone request against NVIDIA NIM's table."""
    lat = [(p, e) for p, _, e in RES if p.kind in ("ttft", "itl")]
    assert len(lat) >= 4
    for p, e in lat:
        assert abs(e) <= 0.15, (p.label, e)


def test_the_docs_show_every_point_with_the_catalogues_numbers():
    """docs/inference.md is what scripts/calibrate_serving.py writes from this catalogue."""
    doc = DOC.read_text()
    for p, v, e in RES:
        if p.kind == "saturation":
            cell = f"| {p.published:,.0f} | {v:,.0f} | {e:+.1%} |"
        else:
            cell = f"| {p.published * 1000:.1f} ms | {v * 1000:.1f} ms | {e:+.1%} |"
        assert cell in doc, (p, cell)
