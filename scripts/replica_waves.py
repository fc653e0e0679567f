"""How full a saturated replica keeps its KV memory, against the fluid steady state.

Usage: ``python scripts/replica_waves.py [--lifetimes 32] [--admission forecast|vllm]``

For the KV-bound 1000/1000 deployments of ``tests/serving/test_saturation.py``: one replica of
the engine's :class:`~aigrid_sim.serving.replica.ReplicaPool` (no world), Poisson arrivals at
1.3x the catalogue's saturation rate for ``lifetimes`` x the steady state's sequences, fixed
tokens. Between 30 % and 90 % of the run it prints the time average, minimum and maximum of the
KV held (the replica's block-rounded upper bound, over its memory) and the time-averaged batch,
next to the fluid steady state's batch (``Deployment.steady_state``), which assumes the batch's
sequences perfectly staggered and the memory full.
"""

from __future__ import annotations

import argparse

import numpy as np

from aigrid_sim.serving.batching import StandalonePool
from aigrid_sim.serving.catalog import Catalog

CASES = [("8B H100", "llama-3.1-8b-fp8", "H100"), ("70B H100 TP2", "llama-3.3-70b-fp8", "H100"),
         ("405B H200 TP8", "llama-3.1-405b-fp8", "H200")]


def profile(model: str, gpu: str, lifetimes: int, admission: str, isl: int = 1000,
            osl: int = 1000, seed: int = 1) -> dict:
    """KV held and batch over the middle of a saturated run of one replica."""
    cat = Catalog.default()
    cat.admission_override = admission
    dep = cat.deployment(model, gpu)
    ss = dep.steady_state(isl, osl)
    n = int(max(lifetimes * ss.sequences, 400))
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(osl / (1.3 * ss.out_tok_s), n))
    run = StandalonePool(dep, n, 1, 1 << 62, [isl] * n, [osl] * n)
    r = run.pool.reps[0]
    samples: list[tuple[float, int, int]] = []
    run.run(t.tolist(), None, lambda: samples.append((run.now, r.U, r.nseq)))
    s = np.array(samples, dtype=float)
    end = s[:, 0].max()
    m = (s[:, 0] > 0.3 * end) & (s[:, 0] < 0.9 * end)
    tt = s[m, 0]
    dt = np.diff(tt, append=tt[-1])  # each state holds until the next event
    kv = s[m, 1] / dep.kv_capacity_tokens
    return {"kv_mean": float((kv * dt).sum() / dt.sum()), "kv_min": float(kv.min()),
            "kv_max": float(kv.max()), "batch": float((s[m, 2] * dt).sum() / dt.sum()),
            "fluid_batch": float(ss.sequences), "requests": n}


def main() -> None:
    """Print the table (markdown)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lifetimes", type=int, default=32)
    ap.add_argument("--admission", choices=["forecast", "vllm"], default="forecast")
    a = ap.parse_args()
    print("| deployment (1000/1000) | KV held, time average | min - max | batch, time average "
          "| fluid batch |")
    print("|---|---|---|---|---|")
    for name, model, gpu in CASES:
        p = profile(model, gpu, a.lifetimes, a.admission)
        print(f"| {name} | {p['kv_mean']:.1%} | {p['kv_min']:.1%} - {p['kv_max']:.1%} | "
              f"{p['batch']:,.0f} | {p['fluid_batch']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
