"""Resident memory around each step of a streamed run's end: what sets the peak, and how it grows.

A sampler thread reads the process's RSS every 50 ms; the steps after the engine (closing
``requests.parquet``, the sites, summary and per-city tables, ``sketches.parquet``, the rest of
the run folder) are wrapped to print RSS before, the peak during and RSS after each, with its
time. Run it at two durations to see which step grows with the run.

Usage::

    python scripts/memory_phases.py --duration 500                  # about 0.5 M requests
    python scripts/memory_phases.py --duration 10300 --requests all  # about 9.4 M, 6-7 min
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time


def rss_mb() -> float:
    """Resident set size of this process, MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> int:
    """Run ``global_agent`` streamed to a temporary folder and print each end step's memory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=500.0, help="simulated seconds")
    ap.add_argument("--requests", default="all", choices=["all", "sample", "none"],
                    help="output.requests")
    ap.add_argument("--order", default="end", choices=["arrival", "end"],
                    help="output.requests_order")
    a = ap.parse_args(argv)

    from aigrid_sim import api, config
    from aigrid_sim.results import online, rundir, sink

    peak = [0.0]
    marks: list[tuple] = []

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()

    def wrap(owner, name: str) -> None:
        f = getattr(owner, name)

        def timed(*args, **kw):
            before = peak[0] = rss_mb()
            t = time.perf_counter()
            out = f(*args, **kw)
            marks.append((name, before, max(peak[0], rss_mb()), rss_mb(),
                          time.perf_counter() - t))
            return out
        setattr(owner, name, timed)

    for name in ("write_table", "write_arrow", "write_arrow_parts", "finish_run"):
        wrap(rundir, name)
    for name in ("sites_table", "summary", "cities_table"):
        wrap(online.OnlineSummary, name)
    wrap(sink.RequestSink, "close")
    dcfg = config.compose("global_agent", [
        f"duration_s={a.duration:g}", f"output.requests={a.requests}",
        f"output.requests_order={a.order}", "output.figures=false"])
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        during = rss_mb()
        r = api.run_config(dcfg, out_dir=d, keep_requests=False)
    print(f"{r.summary['requests']:,} requests, {time.perf_counter() - t0:.0f} s "
          f"(RSS {during:.0f} MB before the run)")
    print(f"{'step':<18} {'before':>8} {'peak':>8} {'after':>8}  seconds")
    for name, before, top, after, secs in marks:
        print(f"{name:<18} {before:8.0f} {top:8.0f} {after:8.0f}  {secs:.2f}")
    print(f"process peak (ru_maxrss): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
