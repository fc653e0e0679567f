"""Error of the event-cheap replica against the per-iteration reference (docs/inference.md).

Usage: ``python scripts/event_cheap_error.py [--requests 3000]``

For two catalogue deployments and workloads (lognormal tokens), Poisson arrivals at rho x the
catalogue's saturation rate: relative error (event-cheap / reference - 1) of TTFT, TPOT (after the
first token) and end-to-end latency, mean and p99, requests after the first 10 %; preemptions of
each; wall seconds of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aigrid_sim.serving.batching import error_table, simulate_iterations, simulate_replica
from aigrid_sim.serving.catalog import Catalog
from aigrid_sim.workload.generate import lognormal_ints

CASES = [("8B L40S, voice 400/60", "llama-3.1-8b-fp8", "L40S", 400, 0.8, 60, 0.6),
         ("70B H100 TP2, reasoning 1500/300", "llama-3.3-70b-fp8", "H100", 1500, 1.0, 300, 0.8)]


def main() -> None:
    """Print the table (markdown)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    a = ap.parse_args()
    print("| workload | rho | TTFT mean / p99 | TPOT mean / p99 | latency mean / p99 | "
          "preemptions (ref / event) | wall s (ref / event) |")
    print("|---|---|---|---|---|---|---|")
    for label, model, gpu, isl, icv, osl, ocv in CASES:
        dep = Catalog.default().deployment(model, gpu)
        r = np.random.default_rng(1)
        n = a.requests
        i = lognormal_ints(r, isl, icv, n, 32768)
        o = lognormal_ints(r, osl, ocv, n, 4096)
        cap_rps = dep.saturation_out_tok_s(isl, osl) / osl
        gaps = r.exponential(1.0, n)
        for rho in (0.3, 0.6, 0.9, 1.2):
            t = np.cumsum(gaps / (rho * cap_rps))
            t0 = time.perf_counter()
            ref = simulate_iterations(dep, t, i, o)
            t1 = time.perf_counter()
            ev = simulate_replica(dep, t, i, o)
            t2 = time.perf_counter()
            e = error_table(ref, ev, t, o)
            cells = " | ".join(f"{100 * e[m]['mean']:+.1f} % / {100 * e[m]['p99']:+.1f} %"
                               for m in ("ttft", "tpot", "latency"))
            print(f"| {label if rho == 0.3 else ''} | {rho} | {cells} | "
                  f"{int(ref.preemptions.sum())} / {int(ev.preemptions.sum())} | "
                  f"{t1 - t0:.1f} / {t2 - t1:.1f} |")


if __name__ == "__main__":
    main()
