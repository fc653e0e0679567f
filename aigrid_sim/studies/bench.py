"""``aigrid-sim-bench``: how fast the engine is, against a minimal hand-written SimPy model.

Runs the reference scenario (``global_agent`` on the full real-world grid: 340 PoPs, 72 regional
sites, 3 cores, 6,204 cities) for N requests and, in the same process, a minimal
process-per-customer M/M/c SimPy model (c = 8, rho = 0.9) for the same number of customers, and
prints requests per second of each and their ratio. ``--memory`` also measures the peak resident
memory of a 1,000,000-request run in a fresh subprocess.

``--world big`` instead measures a 5,000-PoP, 34,006-city world
(:mod:`aigrid_sim.studies.bench_world`).

``--streamed 1000000,10000000`` runs whole streamed runs (arrivals window by window, online
summary, ``requests.parquet`` written as the run goes) in fresh processes and prints wall time,
requests per second and peak memory of each.

The engine and the minimal model run in ``--rounds`` interleaved pairs (default 3); the ratio
printed is the median pair's, with the spread of all pairs.

Usage: ``aigrid-sim-bench [--requests 200000] [--rounds 3] [--memory] [--memory-requests 1000000]
[--world big] [--streamed N[,N...]] [--streamed-requests all|sample|none]
[--streamed-order arrival|end]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import simpy


def minimal_mmc(n: int, c: int = 8, rho: float = 0.9, seed: int = 1) -> float:
    """Wall seconds for a minimal process-per-customer M/M/c SimPy model of ``n`` customers."""
    rng = np.random.default_rng(seed)
    mu = 1.0
    lam = rho * c * mu
    inter = rng.exponential(1 / lam, n).tolist()
    service = rng.exponential(1 / mu, n).tolist()
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=c)
    waits = [0.0] * n

    def customer(i):
        t = env.now
        with servers.request() as req:
            yield req
            waits[i] = env.now - t
            yield env.timeout(service[i])

    def source():
        for i in range(n):
            yield env.timeout(inter[i])
            env.process(customer(i))

    t0 = time.perf_counter()
    env.process(source())
    env.run()
    return time.perf_counter() - t0


def simulator(n: int, seed: int = 1) -> dict:
    """Build the reference world and stream, then time the engine alone on ``n`` requests."""
    from aigrid_sim import api, config

    t0 = time.perf_counter()
    cfg = config.validate(config.compose("global_agent", [
        f"max_requests={n}", f"duration_s={n / 700:.0f}", f"seed={seed}"]))
    world = api.build_world(cfg)
    t1 = time.perf_counter()
    stream = api.make_stream(cfg, world)
    t2 = time.perf_counter()
    _, _, rec, _ = api.simulate(cfg, world=world, stream=stream)
    t3 = time.perf_counter()
    return {"requests": len(stream), "world_s": t1 - t0, "stream_s": t2 - t1,
            "engine_s": t3 - t2, "sites": world.n_sites, "origins": world.n_origins}


def streamed(n: int, seed: int = 1, requests: str = "none", out_dir: str | None = None,
             extra: tuple[str, ...] = ()) -> dict:
    """A whole streamed run of ``n`` requests (windows, online summary, ``output.requests``).

    Returns wall seconds of the run (world build included, figures off) and the summary.
    """
    from aigrid_sim import api, config

    dcfg = config.compose("global_agent", [
        f"max_requests={n}", f"duration_s={n / 700:.0f}", f"seed={seed}",
        f"output.requests={requests}", "output.figures=false", *extra])
    t0 = time.perf_counter()
    r = api.run_config(dcfg, out_dir=out_dir, keep_requests=False)
    return {"requests": r.summary["requests"], "wall_s": time.perf_counter() - t0,
            "engine_free_wall_s": r.summary["wall_s"]}


def _streamed_child(n: int, requests: str, order: str = "arrival") -> None:
    import resource
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = streamed(n, requests=requests, out_dir=d if requests != "none" else None,
                       extra=(f"output.requests_order={order}",))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**out, "peak_rss_mb": peak_kb / 1024}))


def _peak_rss_child(n: int) -> None:
    import resource

    from aigrid_sim import api, config
    from aigrid_sim.results.metrics import requests_table

    cfg = config.validate(config.compose("global_agent", [
        f"max_requests={n}", f"duration_s={n / 700:.0f}"]))
    world, stream, rec, _ = api.simulate(cfg)
    requests_table(world, stream, rec)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"requests": len(stream), "peak_rss_mb": peak_kb / 1024}))


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    ap = argparse.ArgumentParser(prog="aigrid-sim-bench", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--memory", action="store_true", help="also measure peak memory")
    ap.add_argument("--memory-requests", type=int, default=1_000_000)
    ap.add_argument("--streamed", default=None, metavar="N[,N...]",
                    help="also run whole streamed runs of N requests (output.requests per "
                         "--streamed-requests) each in a fresh process: wall time, requests/s "
                         "and peak memory (e.g. 1000000,10000000)")
    ap.add_argument("--streamed-requests", default="all", choices=["all", "sample", "none"],
                    help="output.requests of the --streamed runs (all: written to a temporary "
                         "run folder)")
    ap.add_argument("--streamed-order", default="arrival", choices=["arrival", "end"],
                    help="output.requests_order of the --streamed runs (end: rows written as "
                         "requests end)")
    ap.add_argument("--world", choices=["default", "big"], default="default",
                    help="big: build time and memory of a 5,000-PoP, 34,006-city world and the "
                         "engine's speed on it against the default world")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the two models (the ratio is their median); "
                         "also for --world big")
    ap.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_streamed_child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.world == "big":
        from aigrid_sim.studies import bench_world

        bench_world.main(requests=a.requests, rounds=a.rounds)
        return
    if a._child:
        _peak_rss_child(a._child)
        return
    if a._streamed_child:
        _streamed_child(a._streamed_child, a.streamed_requests, a.streamed_order)
        return
    # Interleaved rounds: each pair runs back to back, so a machine busy with something else
    # slows both models alike; the ratio of each pair is the figure, its median the headline.
    rounds = []
    for _ in range(max(a.rounds, 1)):
        sim = simulator(a.requests)
        mm = minimal_mmc(sim["requests"])
        rounds.append((sim["requests"] / sim["engine_s"], sim["requests"] / mm, sim))
    ratios = sorted(r[0] / r[1] for r in rounds)
    sim_rate, mm_rate, sim = sorted(rounds, key=lambda r: r[0] / r[1])[(len(rounds) - 1) // 2]
    from aigrid_sim import _native

    print(f"engine build: {_native.MODE} (setup.py; AIGRID_SIM_PURE=1 for the pure-Python one)")
    print(f"reference world: {sim['sites']} sites, {sim['origins']:,} cities; "
          f"build {sim['world_s']:.2f} s, stream {sim['stream_s']:.2f} s")
    if len(rounds) > 1:
        print("rounds (engine req/s, minimal SimPy req/s, ratio): " + "; ".join(
            f"{e:,.0f}, {m:,.0f}, {e / m:.2f}" for e, m, _ in rounds))
    print(f"{'model (median round)':<44}{'requests':>10}{'wall s':>9}{'req/s':>10}")
    print(f"{'aigrid-sim engine (global_agent, full grid)':<44}{sim['requests']:>10,}"
          f"{sim['requests'] / sim_rate:>9.2f}{sim_rate:>10,.0f}")
    print(f"{'minimal SimPy M/M/8, rho 0.9':<44}{sim['requests']:>10,}"
          f"{sim['requests'] / mm_rate:>9.2f}{mm_rate:>10,.0f}")
    print(f"ratio (aigrid-sim / minimal SimPy): {sim_rate / mm_rate:.2f}"
          + (f" (median of {len(rounds)} interleaved rounds, {ratios[0]:.2f}-{ratios[-1]:.2f})"
             if len(rounds) > 1 else ""))
    if a.memory:
        out = subprocess.run([sys.executable, "-m", "aigrid_sim.studies.bench", "--_child",
                              str(a.memory_requests)], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"peak memory, {m['requests']:,} requests (simulate + requests table): "
              f"{m['peak_rss_mb']:,.0f} MB")
    if a.streamed:
        print(f"streamed runs (output.requests={a.streamed_requests}, "
              f"output.requests_order={a.streamed_order}, figures off; whole run "
              f"incl. world build, one process each):")
        print(f"{'requests':>12}{'wall s':>9}{'req/s':>10}{'peak MB':>9}")
        for n in (int(float(x)) for x in a.streamed.split(",")):
            out = subprocess.run([sys.executable, "-m", "aigrid_sim.studies.bench",
                                  "--_streamed_child", str(n), "--streamed-requests",
                                  a.streamed_requests, "--streamed-order", a.streamed_order],
                                 capture_output=True, text=True,
                                 check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{m['requests']:>12,}{m['wall_s']:>9.1f}{m['requests'] / m['wall_s']:>10,.0f}"
                  f"{m['peak_rss_mb']:>9,.0f}")


if __name__ == "__main__":
    main()
