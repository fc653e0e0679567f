"""The AI factory's cost against its SLO attainment: the planned factory scaled down.

The headline compares the grid with the factory as the capacity planner sized it. Near the
network floor the planner's per-app targets cost the factory most of its GPUs, so this script
shows the whole curve: ``ai_factory`` with every core site's planned GPUs times each factor
(rounded to whole 8-GPU replicas), each run as the headline runs it (300 s at 1,000 requests/s,
19:00 UTC, seed 1), with SLO attainment per app and cost per 1,000 requests, and the grid's row
for comparison. Deterministic: the same table on every run.

Usage (from the repo root)::

    .venv/bin/python scripts/factory_curve.py [--factors 1.0 0.6 0.4 0.25 0.15]
"""

from __future__ import annotations

import argparse

from aigrid_sim import api, config

APPS = ("voice_agent", "recommend", "reasoning", "frontier")


def row(name: str, gpus: int, s: dict) -> str:
    """One markdown row: setup, GPUs, SLO met overall and per app, $ per 1,000 requests."""
    apps = s.get("by_app", {})
    per_app = " | ".join(f"{100 * apps[a]['slo_attainment']:.1f} %" if a in apps else "-"
                         for a in APPS)
    return (f"| {name} | {gpus:,} | {100 * s['slo_attainment']:.1f} % | {per_app} | "
            f"{s['cost_per_1k_requests_usd']:.3f} |")


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.6, 0.4, 0.25, 0.15])
    a = ap.parse_args()
    planned = dict(config.compose("ai_factory", []).world.sized_gpus)
    common = ["output.figures=false", "output.requests=none"]
    print("| setup | GPUs | SLO met | " + " | ".join(APPS) + " | $ per 1,000 requests |")
    print("|---|---:|---:|" + "---:|" * len(APPS) + "---:|")
    grid = api.run("global_agent", common)
    print(row("AI grid (planned)", int(sum(grid.sites["gpus"])), grid.summary), flush=True)
    for f in a.factors:
        sized = {k: max(8, round(v * f / 8) * 8) for k, v in planned.items()}
        r = api.run("ai_factory", common + [f"world.sized_gpus.{k}={v}" for k, v in sized.items()])
        name = "AI factory (planned)" if f == 1.0 else f"AI factory x {f:g}"
        print(row(name, sum(sized.values()), r.summary), flush=True)


if __name__ == "__main__":
    main()
