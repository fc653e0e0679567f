"""``aigrid-sim-bench --world big``: how fast a big world builds, and the engine's speed on it.

The big world is the default scenario (``global_agent``) with demand from every city of the
bundled GeoNames list (34,006 cities, ``world.cities.min_population=0``) and one edge PoP in
every city of at least 122,000 people (5,011 PoPs, ``world.edge.source=cities``), plus the
default regional and core sites. The benchmark reports:

- the big world's config check, build and candidate lists (what a run does before its first
  request), each timed, with the peak resident memory of a fresh process that only builds it;
- the engine's requests per second on the default world and on the big world, in the same
  process, in interleaved rounds on the same number of requests (medians).

Usage: ``aigrid-sim-bench --world big [--requests 100000] [--rounds 3]``
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

#: Overrides that turn the default scenario's world into the big one.
BIG_WORLD = ("world.cities.min_population=0", "world.edge.source=cities",
             "world.edge.min_population=122000")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_big(overrides: tuple[str, ...] = BIG_WORLD) -> dict:
    """Check the config, build the world and its candidate lists; time each step."""
    import numpy as np

    from aigrid_sim import api

    t0 = time.perf_counter()
    cfg = api.config_of("global_agent", list(overrides))
    t1 = time.perf_counter()
    world = api.build_world(cfg)
    t2 = time.perf_counter()
    caps = world.site_capability
    for c in sorted({a.capability for a in cfg.workload.apps}):  # what GridView computes
        ok = np.flatnonzero(caps >= c)
        world.nearest_sites(ok, cfg.routing.k_nearest)
        for t in range(3):
            world.nearest_sites(ok[world.site_tier[ok] == t], cfg.routing.k_nearest)
    t3 = time.perf_counter()
    edge = int((world.site_tier == 0).sum())
    return {"sites": world.n_sites, "edge_sites": edge, "origins": world.n_origins,
            "dense": world.dense, "config_s": t1 - t0, "build_s": t2 - t1,
            "candidates_s": t3 - t2, "peak_rss_mb": _peak_rss_mb()}


def _engine_s(cfg, world, stream) -> float:
    from aigrid_sim.sim.engine import Engine
    from aigrid_sim.sim.policies import make_policy

    policy = make_policy(cfg.policy, cfg.routing.params)
    eng = Engine(world, stream, policy, seed=cfg.seed, k_nearest=cfg.routing.k_nearest,
                 staleness_s=cfg.routing.staleness_s, horizon_s=cfg.duration_s + cfg.drain_s)
    for c in sorted({a.capability for a in cfg.workload.apps}):  # candidate lists: not timed
        for t in range(3):
            eng.view.tier_candidates(0, c, t)
        eng.view.candidates(0, c)
    t0 = time.perf_counter()
    eng.run()
    return time.perf_counter() - t0


def engine_rates(n: int, rounds: int) -> dict:
    """Requests per second of the engine on the default and the big world (medians)."""
    from aigrid_sim import api

    runs = {}
    for name, extra in (("default", ()), ("big", BIG_WORLD)):
        cfg = api.config_of("global_agent", [f"max_requests={n}", f"duration_s={n / 700:.0f}",
                                             *extra])
        world = api.build_world(cfg)
        runs[name] = (cfg, world, api.make_stream(cfg, world))
    times: dict[str, list[float]] = {"default": [], "big": []}
    for _ in range(rounds):
        for name, (cfg, world, stream) in runs.items():
            times[name].append(_engine_s(cfg, world, stream))
    out = {}
    for name, ts in times.items():
        reqs = len(runs[name][2])
        out[name] = {"requests": reqs, "engine_s": statistics.median(ts),
                     "rps": reqs / statistics.median(ts), "rounds_s": ts}
    return out


def main(argv: list[str] | None = None, *, requests: int = 100_000, rounds: int = 3) -> None:
    """Print the big-world benchmark (called by ``aigrid-sim-bench --world big``)."""
    if argv and argv[0] == "--_build":
        print(json.dumps(build_big()))
        return
    out = subprocess.run([sys.executable, "-m", "aigrid_sim.studies.bench_world", "--_build"],
                         capture_output=True, text=True, check=True)
    b = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"big world: {b['edge_sites']:,} edge PoPs ({b['sites']:,} sites), "
          f"{b['origins']:,} origin cities, {'dense' if b['dense'] else 'sparse'} RTT")
    print(f"  config check {b['config_s']:.2f} s, build {b['build_s']:.2f} s, candidate lists "
          f"{b['candidates_s']:.2f} s; peak memory of that process {b['peak_rss_mb']:,.0f} MB")
    r = engine_rates(requests, rounds)
    print(f"{'engine (same process, median of ' + str(rounds) + ')':<40}{'requests':>10}"
          f"{'wall s':>9}{'req/s':>10}")
    for name in ("default", "big"):
        x = r[name]
        print(f"{name + ' world':<40}{x['requests']:>10,}{x['engine_s']:>9.2f}{x['rps']:>10,.0f}")
    print(f"ratio (big / default): {r['big']['rps'] / r['default']['rps']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
