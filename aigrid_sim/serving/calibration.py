"""Published measurements in the catalogue, and the model's residuals against them.

Each (model, GPU) speed entry of ``data/catalog.yaml`` may list:

- ``published``: saturation throughputs (output tokens/s at fixed ISL/OSL, max load) the
  constants are fitted to;
- ``validation``: saturation throughputs that are *not* fitted (reported, held out);
- ``latency``: latency measurements, fitted: time to first token and inter-token latency of a
  lone request (``ttft_ms``, ``itl_ms`` at concurrency 1), or the mean time per output token at a
  given request rate (``tpot_ms`` with ``rate_rps``).

A point may name a ``dataset`` (``datasets:`` in the catalogue) instead of ``isl``/``osl``, and
the ``engine`` settings the measurement ran with (``max_num_seqs``, ``max_num_batched_tokens``,
``usable_memory_fraction``). ``scripts/calibrate_serving.py`` fits the constants and writes the
residual table of ``docs/inference.md``; ``tests/serving/test_residuals.py`` recomputes the
residuals from the catalogue.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from aigrid_sim.serving.catalog import Catalog, Deployment

KINDS = ("saturation", "ttft", "itl", "tpot_at_rate")


@dataclass(frozen=True)
class Point:
    """One published measurement.

    Attributes:
        model: Catalogue model.
        gpu: Catalogue GPU.
        kind: ``saturation`` (out tok/s), ``ttft``/``itl`` (s, concurrency 1) or
            ``tpot_at_rate`` (s, at ``rate_rps``).
        isl: Input tokens.
        osl: Output tokens.
        published: The measured value (tokens/s or seconds).
        fitted: True if the calibration fits it, False if held out.
        source: Short source label.
        engine: Engine settings of the measurement (``(key, value)`` pairs).
        rate_rps: Request rate of a ``tpot_at_rate`` point.
    """

    model: str
    gpu: str
    kind: str
    isl: float
    osl: float
    published: float
    fitted: bool
    source: str = ""
    engine: tuple = field(default=())
    rate_rps: float = 0.0

    @property
    def label(self) -> str:
        """``isl/osl`` with the kind when it is not a saturation throughput."""
        mix = f"{self.isl:.0f}/{self.osl:.0f}"
        return mix if self.kind == "saturation" else f"{mix} {self.kind}"


def points(cat: Catalog) -> list[Point]:
    """Every published measurement in the catalogue, in catalogue order."""
    out: list[Point] = []
    for m, g in cat.pairs():
        sp = cat.speed_entry(m, g)
        if sp.get("fixed"):
            continue
        src_default = "TensorRT-LLM perf-overview [S10]"
        for key, fitted in (("published", True), ("validation", False)):
            for p in sp.get(key) or ():
                isl, osl = cat.lengths(p)
                out.append(Point(m, g, "saturation", isl, osl, float(p["out_tok_s"]), fitted,
                                 str(p.get("source", src_default)),
                                 tuple(sorted((p.get("engine") or {}).items()))))
        for p in sp.get("latency") or ():
            isl, osl = cat.lengths(p)
            eng = tuple(sorted((p.get("engine") or {}).items()))
            src = str(p.get("source", "NVIDIA NIM [S11]"))
            if "ttft_ms" in p:
                out.append(Point(m, g, "ttft", isl, osl, float(p["ttft_ms"]) / 1000, True, src,
                                 eng))
            if "itl_ms" in p:
                out.append(Point(m, g, "itl", isl, osl, float(p["itl_ms"]) / 1000, True, src,
                                 eng))
            if "tpot_ms" in p:
                out.append(Point(m, g, "tpot_at_rate", isl, osl, float(p["tpot_ms"]) / 1000,
                                 True, src, eng, float(p["rate_rps"])))
    return out


def predict(cat: Catalog, p: Point, _cache: dict | None = None) -> float:
    """The model's value for a published point (same unit as ``p.published``)."""
    key = (p.model, p.gpu, p.engine)
    dep: Deployment | None = _cache.get(key) if _cache is not None else None
    if dep is None:
        dep = cat.deployment(p.model, p.gpu, where="calibration", engine=dict(p.engine))
        if _cache is not None:
            _cache[key] = dep
    if p.kind == "saturation":
        return dep.saturation_out_tok_s(p.isl, p.osl)
    if p.kind == "ttft":
        return dep.ttft_alone_s(p.isl)
    if p.kind == "itl":
        return dep.itl_alone_s(p.isl, p.osl)
    return dep.loaded_tpot_s(p.isl, p.osl, p.rate_rps)


def residuals(cat: Catalog) -> list[tuple[Point, float, float]]:
    """``(point, model value, relative error model/published - 1)`` for every point."""
    cache: dict = {}
    out = []
    for p in points(cat):
        v = predict(cat, p, cache)
        out.append((p, v, v / p.published - 1.0))
    return out


def summary(res: list[tuple[Point, float, float]]) -> dict[tuple[str, str], dict]:
    """Per deployment: median and max absolute error of its saturation points, and count."""
    by: dict[tuple[str, str], list[float]] = {}
    for p, _, e in res:
        if p.kind == "saturation":
            by.setdefault((p.model, p.gpu), []).append(abs(e))
    return {k: {"median": statistics.median(v), "max": max(v), "n": len(v)}
            for k, v in by.items()}
