"""What a streamed run's output will need, estimated from its config before anything is built.

A streamed run holds the requests in flight, the online summary's accumulators and the world;
its memory does not grow with the number of requests (the memory check, which also covers runs
that keep every request in memory, is :func:`aigrid_sim.api.preflight`). What does grow with
it is ``requests.parquet`` on disk with ``output.requests=all`` (or ``sample``): about
:data:`PARQUET_BYTES_PER_ROW` bytes per written row. :func:`check_disk` raises a one-line
:class:`~aigrid_sim.errors.ConfigError` when that exceeds the free space.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aigrid_sim.errors import ConfigError

#: Bytes per row of ``requests.parquet`` (snappy; global_agent: 1.5 MB for 17,596 rows = 86).
PARQUET_BYTES_PER_ROW = 86


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


def check_disk(cfg, *, out_dir: str | Path | None = None) -> float:
    """Stop before the run if ``requests.parquet`` would not fit on the disk; its size (bytes).

    Memory is checked by :func:`aigrid_sim.api.preflight` (which knows whether the run keeps
    its requests in memory or streams them).

    Raises:
        ConfigError: one line with the estimate, the free space and what to change.
    """
    if out_dir is None or cfg.output.requests == "none":
        return 0.0
    n = expected_requests(cfg)
    rows = n if cfg.output.requests == "all" else n * cfg.output.sample_fraction
    need = rows * PARQUET_BYTES_PER_ROW
    root = Path(out_dir)
    probe = next((p for p in (root, *root.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    if need > free:
        raise ConfigError(
            f"key 'output.requests': requests.parquet would take about {need / 1e9:,.1f} GB "
            f"({rows:,.0f} rows), more than the {free / 1e9:,.1f} GB free under {probe}; set "
            f"output.requests=sample (with output.sample_fraction) or none")
    return need
