"""The article's headline, reproduced: a centralised AI factory against the three-tier grid.

Runs ``ai_factory`` (every GPU in three core sites, ``policy=centralised``) and ``global_agent``
(edge + regional + core, ``policy=cheapest_feasible``) on the same users and apps, and prints, for
users in Tokyo, London, Sao Paulo, Lagos, Sydney and New York, the p50/p95 of what each app's
users wait for: time to first token of a voice-agent turn, and the whole answer of a
recommendation. Then the cost of each setup.

Usage: ``python -m aigrid_sim.headline [--duration 300] [--seed 1] [key=value ...]``
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import aigrid_sim

CITIES = ["Tokyo", "London, GB", "São Paulo", "Lagos", "Sydney, AU", "New York City"]
SETUPS = [("AI factory", "ai_factory"), ("AI grid", "global_agent")]
VIEWS = [("voice_agent", "ttft_ms", "voice turn, time to first token"),
         ("recommend", "latency_ms", "recommendation, whole answer")]


def compare(duration_s: float = 300.0, seed: int = 1, extra: list[str] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-city latency table and per-setup cost table."""
    rows, costs = [], []
    for label, scenario in SETUPS:
        r = aigrid_sim.run(scenario, [f"duration_s={duration_s}", f"seed={seed}",
                                      *(extra or [])])
        req = r.requests
        ok = req[req["status"] == "ok"]
        for app, col, _ in VIEWS:
            for city in CITIES:
                x = ok.loc[(ok["origin"] == city) & (ok["app"] == app), col].to_numpy()
                rows.append({"setup": label, "app": app, "city": city, "n": len(x),
                             "p50": np.percentile(x, 50) if len(x) else np.nan,
                             "p95": np.percentile(x, 95) if len(x) else np.nan})
        s = r.summary
        costs.append({"setup": label, "scenario": scenario, "policy": s["policy"],
                      "gpus": int(r.sites["gpus"].sum()), "requests": s["requests"],
                      "slo_attainment": s["slo_attainment"], "cost_usd": s["cost_usd"],
                      "cost_per_1k_requests_usd": s["cost_per_1k_requests_usd"]})
    return pd.DataFrame(rows), pd.DataFrame(costs)


def markdown(lat: pd.DataFrame, cost: pd.DataFrame) -> str:
    """The comparison as Markdown tables."""
    out = []
    for app, _, title in VIEWS:
        out += [f"**{title}** (ms, p50 / p95)", "",
                "| city | " + " | ".join(label for label, _ in SETUPS) + " |",
                "|---|" + "---|" * len(SETUPS)]
        for city in CITIES:
            cells = []
            for label, _ in SETUPS:
                r = lat[(lat.setup == label) & (lat.app == app) & (lat.city == city)].iloc[0]
                cells.append(f"{r.p50:,.0f} / {r.p95:,.0f} (n={r.n})")
            out.append(f"| {city} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["| setup | policy | GPUs | requests | SLO met | cost $ | $ per 1,000 requests |",
            "|---|---|---|---|---|---|---|"]
    for c in cost.itertuples():
        out.append(f"| {c.setup} | {c.policy} | {c.gpus:,} | {c.requests:,} | "
                   f"{100 * c.slo_attainment:.1f} % | {c.cost_usd:,.0f} | "
                   f"{c.cost_per_1k_requests_usd:.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    ap = argparse.ArgumentParser(prog="python -m aigrid_sim.headline",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for both runs")
    a = ap.parse_args(argv)
    print(markdown(*compare(a.duration, a.seed, a.overrides)))


if __name__ == "__main__":
    main()
