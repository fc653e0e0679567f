"""How much does splitting a long run into time slices change its summary?

Runs one scenario once over ``hours`` slices of ``--slice-s`` seconds (an hour by default) and
again as those slices (``slice.index=0..hours-1``, ``slice.length_s``) with each warm-up in
``--warmups``, merges each set of slices' sketches (what ``aigrid-sim-report --merge`` does),
and prints the merged figures against the single run's: counts, latency and TTFT percentiles,
SLO attainment and utilisation. ``--extra`` passes overrides to every run (e.g. a smaller
world near saturation).

Usage::

    python scripts/slicing_error.py --hours 4 --load 0.1 --warmups 0,300,600 [--seed 1]
    python scripts/slicing_error.py --hours 2 --slice-s 600 --load 0.4 --warmups 0,300 \
        --reference-warmup 300 \
        --extra 'world.cities.countries=[DE,FR]' 'world.edge.countries=[DE,FR]'

The numbers in docs/streaming.md and docs/scale.md come from this script (commands there).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from aigrid_sim import api, config
from aigrid_sim.results.online import read_state
from aigrid_sim.results.report import merge_state_frames, summary_from_state


def _state(overrides: list[str], out: Path) -> tuple[dict, pd.DataFrame]:
    r = api.run_config(config.compose("global_agent", overrides), out_dir=out,
                       keep_requests=False)
    return r.summary, read_state(r.out_dir / "sketches.parquet")


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=int, default=4, help="number of slices")
    ap.add_argument("--slice-s", type=float, default=3600.0, help="slice length, s")
    ap.add_argument("--load", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference-warmup", type=float, default=0.0,
                    help="the single run also starts this many seconds early (left out of its "
                         "metrics), so that it is not itself cold at its start")
    ap.add_argument("--warmups", default="0,300,600")
    ap.add_argument("--extra", nargs="*", default=[])
    a = ap.parse_args(argv)
    base = [f"load={a.load}", f"seed={a.seed}", "output.requests=none", "output.figures=false",
            *a.extra]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ref_ov = [f"duration_s={a.hours * a.slice_s:g}"] if not a.reference_warmup else [
            "slice.index=0", f"slice.length_s={a.hours * a.slice_s:g}",
            f"slice.warmup_s={a.reference_warmup:g}"]
        single, st = _state(base + ref_ov, d / "single")
        ref = summary_from_state(st)
        rows.append(_row("single run", ref))
        for w in (float(x) for x in a.warmups.split(",")):
            frames = []
            for h in range(a.hours):
                _, f = _state(base + [f"slice.index={h}", f"slice.warmup_s={w}",
                                      f"slice.length_s={a.slice_s:g}"], d / f"w{w:g}")
                frames.append(f)
            merged = summary_from_state(merge_state_frames(frames))
            rows.append(_row(f"{a.hours} slices, warm-up {w:g} s", merged, ref))
    print(pd.DataFrame(rows).to_string(index=False))


def _row(label: str, s: dict, ref: dict | None = None) -> dict:
    out = {"run": label, "requests": s["measured_requests"]}
    for m in ("latency_ms", "ttft_ms"):
        for q in ("p50", "p95", "p99"):
            v = s[m][q]
            out[f"{m[:-3]} {q}"] = f"{v:,.1f}" if ref is None else \
                f"{v:,.1f} ({100 * (v / ref[m][q] - 1):+.1f}%)"
    v = s["slo_attainment"]
    out["SLO met"] = f"{100 * v:.2f}%" if ref is None else \
        f"{100 * v:.2f}% ({100 * (v - ref['slo_attainment']):+.2f} pt)"
    u = s["utilisation"]
    out["util"] = f"{100 * u:.2f}%" if ref is None else \
        f"{100 * u:.2f}% ({100 * (u / ref['utilisation'] - 1):+.1f}%)"
    return out


if __name__ == "__main__":
    main()
