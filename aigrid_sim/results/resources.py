"""What a run will need, estimated from its config before anything is built.

A streamed run holds the requests in flight, the online summary's accumulators and the world;
its memory does not grow with the number of requests. What does grow with it:

* keeping every request in memory (``aigrid_sim.run()`` without ``out_dir`` and
  ``output.requests=all``): about :data:`BYTES_PER_KEPT_REQUEST` bytes per request (stream,
  records, requests table and the concatenation that builds them);
* ``requests.parquet`` on disk with ``output.requests=all`` (or ``sample``): about
  :data:`PARQUET_BYTES_PER_ROW` bytes per written row.

:func:`check_resources` raises a one-line :class:`~aigrid_sim.errors.ConfigError` when either
exceeds what the machine has, saying how much the run would need and what to change. The
constants are measured (README, performance section).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aigrid_sim.errors import ConfigError

#: Peak bytes per request of a run that keeps every request in memory (measured: README).
BYTES_PER_KEPT_REQUEST = 800
#: Bytes per row of ``requests.parquet`` (snappy; measured on global_agent: README).
PARQUET_BYTES_PER_ROW = 75
#: Memory of a streamed run besides the requests kept: world, summary, requests in flight.
BASE_BYTES = 600 * 2**20


def expected_requests(cfg) -> float:
    """Expected number of requests of a run (``max_requests`` caps it).

    Synthetic arrivals: ``rate_rps x load x duration_s`` times the mean flash-crowd multiplier
    (diurnal curves and MMPPs have mean 1). A replayed trace: ``max_requests`` or 0 (unknown
    before the file is read).
    """
    arr = cfg.workload.arrivals
    if arr.kind == "trace":
        return float(cfg.max_requests or 0)
    from aigrid_sim.workload.processes import FlashCrowd

    n = cfg.workload.rate_rps * cfg.load * cfg.duration_s
    for f in arr.flash_crowds:
        fc = FlashCrowd(f.start_s, f.ramp_up_s, f.duration_s, f.ramp_down_s, f.factor)
        n *= fc.mean_multiplier(0.0, cfg.duration_s, steps=2001)
    if cfg.max_requests is not None:
        n = min(n, cfg.max_requests)
    return float(n)


def machine_memory_bytes() -> int:
    """Physical memory of this machine (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def estimate(cfg, *, keep_requests: bool | None = None, out_dir: str | Path | None = None
             ) -> dict:
    """Estimated requests, peak memory and disk of a run (bytes).

    Args:
        cfg: The validated config.
        keep_requests: As :func:`aigrid_sim.api.run_config` (None = its default rule).
        out_dir: Where the run folder goes (None = nothing written).
    """
    from aigrid_sim.api import KEEP_MAX_REQUESTS

    n = expected_requests(cfg)
    mode = cfg.output.requests
    if keep_requests is None:
        keep_requests = mode == "all" and (out_dir is None or n <= KEEP_MAX_REQUESTS)
    rows = 0.0
    if out_dir is not None:
        rows = n if mode == "all" else (n * cfg.output.sample_fraction if mode == "sample"
                                        else 0.0)
    memory = BASE_BYTES + (n * BYTES_PER_KEPT_REQUEST if keep_requests else 0.0)
    return {"requests": n, "keep_requests": bool(keep_requests), "memory_bytes": memory,
            "disk_bytes": rows * PARQUET_BYTES_PER_ROW, "rows_written": rows}


def _gb(x: float) -> str:
    return f"{x / 2**30:,.1f} GB"


def check_resources(cfg, *, keep_requests: bool | None = None,
                    out_dir: str | Path | None = None) -> dict:
    """Stop before the run if it would need more memory or disk than the machine has.

    Raises:
        ConfigError: one line with the estimate, what the machine has and what to change.
    """
    est = estimate(cfg, keep_requests=keep_requests, out_dir=out_dir)
    mem = machine_memory_bytes()
    if mem and est["memory_bytes"] > mem:
        raise ConfigError(
            f"key 'output.requests': this run would hold about {est['requests']:,.0f} requests "
            f"in memory, about {_gb(est['memory_bytes'])}, more than this machine's "
            f"{_gb(mem)}; write a run folder (out_dir=..., or the aigrid-sim command) so "
            f"requests stream to disk, or set output.requests=sample|none")
    if out_dir is not None and est["disk_bytes"] > 0:
        root = Path(out_dir)
        probe = next((p for p in (root, *root.parents) if p.exists()), Path("."))
        free = shutil.disk_usage(probe).free
        if est["disk_bytes"] > free:
            raise ConfigError(
                f"key 'output.requests': requests.parquet would take about "
                f"{_gb(est['disk_bytes'])} ({est['rows_written']:,.0f} rows), more than the "
                f"{_gb(free)} free under {probe}; set output.requests=sample (with "
                f"output.sample_fraction) or none")
    return est
