"""Fit the serving model's physical constants to published measurements; write the residuals.

Usage (from the repository root)::

    python scripts/calibrate_serving.py            # fit, rewrite catalog.yaml and docs/inference.md
    python scripts/calibrate_serving.py --check    # only print the residuals of the catalogue
    python scripts/calibrate_serving.py --dry-run  # fit and print, write nothing
    python scripts/calibrate_serving.py --kv-accounting reserve   # the alternative KV rule, dry

What is fitted (everything else in ``aigrid_sim/data/catalog.yaml`` is a sourced or derived
figure): per GPU type, the efficiencies ``bandwidth`` (weight reads), ``compute`` (dense FLOPs),
``attention`` (KV reads) and, where a model spans several GPUs, ``interconnect`` (all-reduce), all
shared by every model on that GPU; per deployment with measurements of its own, a per-step
overhead. The L40S has two measurements, so its attention efficiency is tied to its bandwidth
efficiency (the same GDDR6 reads) and its step overhead is the 8B-on-H100 one, as for the other
deployments without measurements of their own (``SAME_OVERHEAD``).

The fit minimises the log-ratio of model to published value over all fitted points (soft-L1 loss,
NIM's concurrency-1 latencies weighted x3), from fixed starting values: the result is
deterministic. The input length of MLPerf's CNN/DailyMail set is derived first, from the H200 fit
on TensorRT-LLM's tables alone (``datasets.mlperf_cnn_dailymail.isl_reference``).

``--kv-accounting reserve`` fits the same constants with another memory rule in the closed
form: every held sequence reserves its whole ``isl + osl`` from admission (TensorRT-LLM's
``GUARANTEED_NO_EVICT`` capacity scheduler) instead of the KV it holds. It writes nothing: it
shows how much worse the published tables fit under that rule (docs/inference.md).

Held-out error: each ISL/OSL mix of the TensorRT-LLM tables is removed from the fit in turn (all
deployments at once), the constants refitted and the removed points predicted; likewise each NIM
measurement. Points listed under ``validation`` are never fitted.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigrid_sim.serving import calibration as cal  # noqa: E402
from aigrid_sim.serving.catalog import Catalog, Deployment  # noqa: E402

CATALOG = ROOT / "aigrid_sim" / "data" / "catalog.yaml"
DOC = ROOT / "docs" / "inference.md"
BEGIN, END = "<!-- calibration:begin -->", "<!-- calibration:end -->"

# Deployments without enough measurements of their own take another's step overhead.
SAME_OVERHEAD = {
    ("llama-3.1-8b-fp8", "L40S"): ("llama-3.1-8b-fp8", "H100"),
    ("llama-3.1-8b-fp8", "RTXPRO6000"): ("llama-3.1-8b-fp8", "H100"),
    ("llama-3.1-8b-fp4", "RTXPRO6000"): ("llama-3.1-8b-fp8", "H100"),
    ("llama-3.1-8b-fp8", "H200"): ("llama-3.1-8b-fp8", "H100"),
}
TIED = {"L40S": {"attention": "bandwidth"}}  # efficiency tied to another of the same GPU
WEIGHT = {"saturation": 1.0, "ttft": 3.0, "itl": 3.0, "tpot_at_rate": 1.0}
OVERHEAD_MAX_MS = 20.0  # a step overhead above this is not a fixed per-step cost
EFF0 = {"bandwidth": 0.8, "compute": 0.5, "attention": 0.8, "interconnect": 0.7}


class Problem:
    """The parameter vector <-> catalogue mapping."""

    def __init__(self, raw: dict):
        self.raw = raw
        cat = Catalog(raw)
        self.pairs = [(m, g) for m, g in cat.pairs() if not cat.speed_entry(m, g).get("fixed")]
        fitted = [p for p in cal.points(cat) if p.fitted]
        gpus = sorted({p.gpu for p in fitted})
        self.eff_keys: list[tuple[str, str]] = []
        for g in gpus:
            tp = any(int(cat.speed_entry(m, gg)["gpus_per_replica"]) > 1
                     for m, gg in self.pairs if gg == g)
            for k in ("bandwidth", "compute", "attention") + (("interconnect",) if tp else ()):
                if k not in TIED.get(g, {}):
                    self.eff_keys.append((g, k))
        own = {(p.model, p.gpu) for p in fitted}
        self.overheads = [d for d in self.pairs if d in own and d not in SAME_OVERHEAD]

    def x0(self) -> np.ndarray:
        """Fixed starting values (the fit is deterministic)."""
        return np.array([EFF0[k] for _, k in self.eff_keys] + [1.0] * len(self.overheads))

    def bounds(self):
        """Efficiencies in [0.05, 1]; step overheads in [0, OVERHEAD_MAX_MS] ms."""
        lo = [0.05] * len(self.eff_keys) + [0.0] * len(self.overheads)
        hi = [1.0] * len(self.eff_keys) + [OVERHEAD_MAX_MS] * len(self.overheads)
        return lo, hi

    def apply(self, x, raw: dict | None = None) -> dict:
        """A copy of the raw catalogue with the parameters ``x`` written in (ties included)."""
        r = copy.deepcopy(self.raw if raw is None else raw)
        i = 0
        for g, k in self.eff_keys:
            r["gpus"][g].setdefault("efficiency", {})[k] = float(x[i])
            i += 1
        for g, ties in TIED.items():
            for k, src in ties.items():
                r["gpus"][g]["efficiency"][k] = r["gpus"][g]["efficiency"][src]
        ov = {}
        for m, g in self.overheads:
            ov[(m, g)] = float(x[i])
            r["models"][m]["speeds"][g]["step_overhead_ms"] = float(x[i])
            i += 1
        for (m, g), ref in SAME_OVERHEAD.items():
            if g in r["models"].get(m, {}).get("speeds", {}) and ref in ov:
                r["models"][m]["speeds"][g]["step_overhead_ms"] = ov[ref]
        return r


def _residual_vector(raw: dict, keep) -> np.ndarray:
    cat = Catalog(raw)
    cache: dict = {}
    out = []
    for p in cal.points(cat):
        if p.fitted and keep(p):
            v = cal.predict(cat, p, cache)
            # A rate the model cannot sustain (infinite TPOT) counts as 100x too slow.
            r = math.log(v / p.published) if math.isfinite(v) else math.log(100.0)
            out.append(WEIGHT[p.kind] * r)
    return np.array(out)


def fit(prob: Problem, keep=lambda p: True, x0=None) -> np.ndarray:
    """Least-squares fit of the parameters over the points ``keep`` accepts."""
    lo, hi = prob.bounds()
    start = np.clip(prob.x0() if x0 is None else x0, lo, hi)
    res = least_squares(lambda x: _residual_vector(prob.apply(x), keep), start,
                        bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale="jac")
    return res.x


def derive_isl(raw: dict, name: str) -> float:
    """Input length of dataset ``name`` at which its reference deployment meets its figure."""
    ds = raw["datasets"][name]
    ref = ds["isl_reference"]
    dep = Catalog(raw).deployment(ref["model"], ref["gpu"], where="calibration")
    lo, hi = 16.0, float(dep.kv_context_tokens) * 4
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if dep.saturation_out_tok_s(mid, ds["osl"]) > ref["out_tok_s"]:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def rounded(raw: dict) -> dict:
    """The constants as written to the catalogue (4 significant decimals)."""
    r = copy.deepcopy(raw)
    for g in r["gpus"].values():
        if "efficiency" in g:
            g["efficiency"] = {k: round(float(v), 4) for k, v in g["efficiency"].items()}
    for m in r["models"].values():
        for sp in (m.get("speeds") or {}).values():
            if "step_overhead_ms" in sp:
                sp["step_overhead_ms"] = round(float(sp["step_overhead_ms"]), 3)
    for ds in (r.get("datasets") or {}).values():
        ds["isl"] = int(round(ds["isl"]))
    return r


def write_catalog(raw: dict) -> None:
    """Rewrite the fitted numbers in catalog.yaml in place, keeping every comment."""
    lines = CATALOG.read_text().splitlines(keepends=True)
    section = top = sub = None
    out = []
    for line in lines:
        m0 = re.match(r"^(\w[\w-]*):", line)
        if m0:
            section = m0.group(1)
        m1 = re.match(r"^  (\S+):", line)
        if m1:
            top = m1.group(1)
        m2 = re.match(r"^      (\S+):", line)
        if m2:
            sub = m2.group(1)
        if section == "gpus" and line.strip().startswith("efficiency:") and \
                "efficiency" in raw["gpus"][top]:
            eff = raw["gpus"][top]["efficiency"]
            body = ", ".join(f"{k}: {eff[k]:g}" for k in
                             ("bandwidth", "compute", "attention", "interconnect") if k in eff)
            line = re.sub(r"\{.*?\}", "{" + body + "}", line, count=1)
        elif section == "models" and line.strip().startswith("step_overhead_ms:"):
            v = raw["models"][top]["speeds"][sub]["step_overhead_ms"]
            line = re.sub(r"step_overhead_ms: [0-9.eE+-]+", f"step_overhead_ms: {v:g}", line)
        elif section == "datasets" and re.match(r"^    isl: ", line):
            line = re.sub(r"isl: [0-9.]+", f"isl: {raw['datasets'][top]['isl']}", line)
        out.append(line)
    text = "".join(out)
    tmp = CATALOG.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(CATALOG)


def _fmt(p: cal.Point, v: float) -> str:
    if p.kind == "saturation":
        return f"{v:,.0f}"
    return f"{v * 1000:.1f} ms"


def table(cat: Catalog, held: dict) -> str:
    """Markdown: per-deployment summaries, then every point with its errors."""
    res = cal.residuals(cat)
    rows = ["| deployment | ISL/OSL | measure | source | published | model | error | "
            "held-out error |", "|---|---|---|---|---|---|---|---|"]
    for p, v, e in res:
        kind = {"saturation": "out tok/s", "ttft": "TTFT, conc. 1", "itl": "ITL, conc. 1",
                "tpot_at_rate": f"TPOT at {p.rate_rps:g} req/s"}[p.kind]
        if not p.fitted:
            kind += " (not fitted)"
        h = held.get(p)
        hs = f"{h:+.1%}" if h is not None else ("n/a" if p.fitted else f"{e:+.1%}")
        n = p.gpu if not p.engine else f"{p.gpu}*"
        rows.append(f"| {p.model} {n} | {p.isl:.0f}/{p.osl:.0f} | {kind} | {p.source} | "
                    f"{_fmt(p, p.published)} | {_fmt(p, v)} | {e:+.1%} | {hs} |")
    summ = cal.summary(res)
    srows = ["| deployment | points | median abs. error | max abs. error | held-out median | "
             "held-out max |", "|---|---|---|---|---|---|"]
    for (m, g), s in summ.items():
        hv = [abs(held[p]) if p in held else abs(e) for p, _, e in res
              if p.kind == "saturation" and (p.model, p.gpu) == (m, g)
              and (p in held or not p.fitted)]
        hm = f"{statistics.median(hv):.1%}" if hv else "n/a"
        hx = f"{max(hv):.1%}" if hv else "n/a"
        srows.append(f"| {m} {g} | {s['n']} | {s['median']:.1%} | {s['max']:.1%} | {hm} | {hx} |")
    return "\n".join(srows) + "\n\n" + "\n".join(rows) + "\n"


def constants_table(cat: Catalog) -> str:
    """Markdown: the fitted efficiencies and each deployment's step-time constants."""
    rows = ["| GPU | bandwidth | compute | attention | interconnect |", "|---|---|---|---|---|"]
    for g, spec in cat.gpus.items():
        e = spec.efficiency
        if e:
            rows.append(f"| {g} | " + " | ".join(f"{e[k]:.3f}" if k in e else "-" for k in
                                               ("bandwidth", "compute", "attention",
                                                "interconnect")) + " |")
    rows += ["", "| deployment | step overhead ms | KV capacity tokens | step ms (1 decode, "
             "no context) | per token us | per context token ns |",
             "|---|---|---|---|---|---|"]
    for m, g in cat.pairs():
        d = cat.deployment(m, g)
        if d.fixed:
            continue
        s = d.step
        rows.append(f"| {m} {g} x{d.gpus_per_replica} | {s.overhead_s * 1000:.3f} | "
                    f"{d.kv_capacity_tokens:,} | {s.step_s(1, 0) * 1000:.2f} | "
                    f"{s.token_s * 1e6:.2f} | {s.ctx_s * 1e9:.2f} |")
    return "\n".join(rows) + "\n"


def write_doc(text: str) -> None:
    """Replace the text between the calibration markers of docs/inference.md."""
    doc = DOC.read_text()
    if BEGIN not in doc:
        raise SystemExit(f"{DOC}: no '{BEGIN}' marker")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(head + BEGIN + "\n" + text + END + tail)
    tmp.replace(DOC)


def use_kv_accounting(rule: str) -> None:
    """Make every deployment's saturation throughput follow the KV rule ``rule`` (this process)."""

    def saturation_out_tok_s(self: Deployment, isl: float, osl: float) -> float:
        return self.steady_state(isl, osl, kv_accounting=rule).out_tok_s

    Deployment.saturation_out_tok_s = saturation_out_tok_s


def main(argv=None) -> int:
    """Fit, write the catalogue and the docs table (or only print residuals with --check)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only print the current residuals")
    ap.add_argument("--no-held-out", action="store_true", help="skip the held-out refits")
    ap.add_argument("--dry-run", action="store_true",
                    help="fit and print the tables; write neither catalog.yaml nor the docs")
    ap.add_argument("--kv-accounting", choices=("fluid", "reserve"), default="fluid",
                    help="the closed form's KV rule (reserve: each sequence reserves isl + osl "
                         "from admission; implies --dry-run)")
    a = ap.parse_args(argv)
    if a.kv_accounting != "fluid":
        use_kv_accounting(a.kv_accounting)
        a.dry_run = True
    raw = yaml.safe_load(CATALOG.read_text())
    if a.check:
        cat = Catalog(raw, str(CATALOG))
        print(table(cat, {}))
        return 0
    prob = Problem(raw)
    # Stage 1: without the dataset-dependent points, then derive the datasets' input lengths.
    uses_ds = set()
    for m, g in prob.pairs:
        sp = raw["models"][m]["speeds"][g]
        for key in ("published", "latency"):
            for pt in sp.get(key) or ():
                if "dataset" in pt:
                    uses_ds.add((m, g))

    def no_dataset(p):
        return (p.model, p.gpu) not in uses_ds

    x1 = fit(prob, keep=no_dataset)
    r1 = prob.apply(x1)
    for name in raw.get("datasets") or {}:
        isl = derive_isl(r1, name)
        raw["datasets"][name]["isl"] = isl
        print(f"dataset {name}: derived isl = {isl:.0f}")
    prob = Problem(raw)
    # Stage 2: everything.
    x = fit(prob, x0=x1)
    final = rounded(prob.apply(x))
    if a.dry_run:
        cat = Catalog(final, "(fitted, not written)")
    else:
        write_catalog(final)
        cat = Catalog(yaml.safe_load(CATALOG.read_text()), str(CATALOG))
    held: dict = {}
    if not a.no_held_out:
        pts = [p for p in cal.points(cat) if p.fitted]
        folds = sorted({(p.isl, p.osl) for p in pts if p.kind == "saturation"
                        and "TensorRT-LLM" in p.source})
        groups = [[p for p in pts if p.kind == "saturation" and "TensorRT-LLM" in p.source
                   and (p.isl, p.osl) == f] for f in folds]
        groups += [[p for p in pts if p.kind in ("ttft", "itl") and (p.model, p.gpu, p.isl)
                    == key] for key in sorted({(p.model, p.gpu, p.isl) for p in pts
                                               if p.kind in ("ttft", "itl")})]
        for grp in groups:
            out = set(grp)
            xh = fit(prob, keep=lambda p, out=out: p not in out, x0=x)
            hc = Catalog(prob.apply(xh))
            for p in grp:
                held[p] = cal.predict(hc, p) / p.published - 1.0
            print(f"held out {grp[0].label if grp else ''}: "
                  + ", ".join(f"{held[p]:+.1%}" for p in grp))
    text = ("Fitted constants (`aigrid_sim/data/catalog.yaml`):\n\n" + constants_table(cat)
            + f"\nMLPerf CNN/DailyMail mean input length, derived: "
              f"{cat._raw['datasets']['mlperf_cnn_dailymail']['isl']} tokens.\n\n"
            + "Residuals (`*` = the measurement's own engine settings):\n\n" + table(cat, held))
    if not a.dry_run:
        write_doc(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
