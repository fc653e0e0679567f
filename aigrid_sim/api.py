"""The Python entry point: ``aigrid_sim.run(scenario, overrides)`` and what it returns.

It composes the scenario exactly as the CLI does, builds the world and the request stream,
simulates, and returns tables and the summary. It writes nothing unless given ``out_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from aigrid_sim import config as cfgmod
from aigrid_sim.sim.engine import Engine, Records
from aigrid_sim.sim.faults import FaultSchedule, build_schedule
from aigrid_sim.sim.policies import load_plugins, make_policy
from aigrid_sim.workload import RequestStream, generate_stream
from aigrid_sim.world.build import World, build_world  # noqa: F401 (re-exported for bench)


@dataclass
class RunResult:
    """Everything a run produced.

    Attributes:
        requests: One row per request (see ``aigrid_sim.results.metrics``); empty when not
            kept in memory (``run_config(keep_requests=...)``; read ``requests.parquet``).
        sites: One row per site.
        summary: The run summary (``summary.json``).
        config: The fully resolved config (an OmegaConf ``DictConfig``).
        world: The world the run used.
        stream: The request stream it replayed (None when not kept in memory).
        records: The raw per-request records (None when not kept in memory).
        out_dir: The run folder, if one was written.
        faults: One row per outage or link cut (``aigrid_sim.sim.faults.TABLE_COLUMNS``); empty
            when nothing failed.
        online: The online summary (:class:`aigrid_sim.results.online.OnlineSummary`).
    """

    requests: pd.DataFrame
    sites: pd.DataFrame
    summary: dict
    config: DictConfig
    world: World = field(repr=False)
    stream: RequestStream = field(repr=False)
    records: Records = field(repr=False)
    out_dir: Path | None = None
    faults: pd.DataFrame | None = field(default=None, repr=False)
    online: object = field(default=None, repr=False)


def make_stream(cfg: cfgmod.SimConfig, world: World) -> RequestStream:
    """The request stream of a run: a replayed trace (``arrivals.kind: trace``) or synthetic."""
    if cfg.workload.arrivals.kind == "trace":
        from aigrid_sim.workload.traces import trace_stream

        return trace_stream(cfg, world.origin_population, world.origin_utc_offset_h,
                            world.origin_name)
    return generate_stream(cfg, world.origin_population, world.origin_utc_offset_h,
                           region=world.origin_region, country=world.origin_country,
                           names=world.origin_name)


def simulate(cfg: cfgmod.SimConfig, *, world: World | None = None,
             stream: RequestStream | None = None,
             progress: Callable[[float], None] | None = None,
             faults: FaultSchedule | None = None) -> tuple[World, RequestStream, Records, float]:
    """Build (unless given) and simulate; returns world, stream, records and the horizon.

    ``faults`` defaults to the schedule of ``cfg.faults`` (nothing fails unless configured).
    """
    load_plugins(cfg.plugins)
    policy = make_policy(cfg.policy, cfg.routing.params)
    world = world or build_world(cfg)
    stream = stream if stream is not None else make_stream(cfg, world)
    horizon = cfg.duration_s + cfg.drain_s
    if faults is None:
        faults = build_schedule(cfg.faults, world, cfg.seed, horizon)
    engine = Engine(world, stream, policy, seed=cfg.seed, k_nearest=cfg.routing.k_nearest,
                    staleness_s=cfg.routing.staleness_s, horizon_s=horizon, progress=progress,
                    faults=faults)
    return world, stream, engine.run(), horizon


def make_windows(cfg: cfgmod.SimConfig, world: World) -> tuple[list, object, dict]:
    """A run's arrivals window by window: ``(apps, iterator of windows, stream info)``.

    Synthetic arrivals are drawn block by block as the run goes
    (:mod:`aigrid_sim.workload.windows`); a replayed trace is read whole and cut into windows.
    """
    from aigrid_sim.workload.generate import app_specs
    from aigrid_sim.workload.windows import SyntheticArrivals, split, windows

    w = cfg.output.window_s
    if cfg.workload.arrivals.kind == "trace":
        stream = make_stream(cfg, world)
        return stream.apps, split(stream, w), dict(stream.info)
    proc = SyntheticArrivals(cfg, world.origin_population, world.origin_utc_offset_h,
                             region=world.origin_region, country=world.origin_country,
                             names=world.origin_name)
    return app_specs(cfg.workload.apps), windows(proc.blocks(), w), proc.info()


def run_config(dcfg: DictConfig, *, out_dir: str | Path | None = None,
               progress: Callable[..., None] | None = None,
               world: World | None = None, keep_requests: bool | None = None) -> RunResult:
    """Run an already composed config (what the CLI and :func:`run` call).

    The run streams: arrivals come window by window, ended requests go to the online summary
    and (``output.requests``) to ``requests.parquet`` in the run folder as the run goes.

    Args:
        dcfg: The composed config.
        out_dir: Write the run folder under this directory (atomically).
        progress: ``progress(now_s, requests_so_far)`` called about 200 times.
        world: A world already built from this config.
        keep_requests: Keep every request in memory for ``RunResult.requests`` / ``.records`` /
            ``.stream``. None = when ``output.requests`` is ``all`` and either nothing is
            written or the run is small (at most :data:`KEEP_MAX_REQUESTS` expected requests).
            Otherwise ``RunResult.requests`` is an empty table and ``records``/``stream`` None.
    """
    from aigrid_sim.results import rundir
    from aigrid_sim.results.online import OnlineSummary
    from aigrid_sim.results.resources import check_resources, expected_requests
    from aigrid_sim.results.sink import RequestSink

    t0 = time.perf_counter()
    cfg = cfgmod.validate(dcfg)
    check_resources(cfg, keep_requests=keep_requests, out_dir=out_dir)
    world = world or build_world(cfg)
    horizon = cfg.duration_s + cfg.drain_s
    schedule = build_schedule(cfg.faults, world, cfg.seed, horizon)
    load_plugins(cfg.plugins)
    policy = make_policy(cfg.policy, cfg.routing.params)
    out = cfg.output
    if keep_requests is None:
        keep_requests = out.requests == "all" and (
            out_dir is None or expected_requests(cfg) <= KEEP_MAX_REQUESTS)
    apps, wins, info = make_windows(cfg, world)
    online = OnlineSummary(world, [a.name for a in apps], warmup_s=cfg.warmup_s,
                           window_s=cfg.duration_s, time_origin_s=cfg.start_utc_h * 3600.0,
                           time_bin_s=out.time_bin_s, horizon_s=horizon,
                           faults=schedule.table if schedule.active else None)
    resolved = OmegaConf.create(OmegaConf.to_container(dcfg, resolve=True))
    if "hydra" in resolved:
        del resolved["hydra"]
    final = tmp = None
    if out_dir is not None:
        final, tmp = rundir.begin_run(Path(out_dir), resolved)
    sink = RequestSink(world, apps, online,
                       path=tmp / "requests.parquet" if tmp is not None else None,
                       mode=out.requests, sample_fraction=out.sample_fraction,
                       keep=keep_requests)
    try:
        from aigrid_sim.workload.windows import concat

        engine = Engine(world, concat([], apps), policy, seed=cfg.seed,
                        k_nearest=cfg.routing.k_nearest, staleness_s=cfg.routing.staleness_s,
                        horizon_s=horizon, progress=progress, faults=schedule, windows=wins,
                        sink=sink)
        engine.run()
        sink.close()
        sites = online.sites_table(world)
        summary = online.summary(sites)
        if schedule.active:
            summary["faults"] = online.fault_summary(sites, schedule.table,
                                                     detection_s=schedule.detection_s,
                                                     retries=schedule.retries)
        info["requests"] = sink.rows
        summary.update({
            "scenario": cfg.name, "policy": cfg.policy, "seed": cfg.seed, "load": cfg.load,
            "duration_s": cfg.duration_s, "warmup_s": cfg.warmup_s,
            "start_utc_h": cfg.start_utc_h, "sites": world.n_sites,
            "origins": world.n_origins, "stream": info,
            "output_requests": {"mode": out.requests, "rows_written": sink.rows_written,
                                **({"sample_fraction": out.sample_fraction}
                                   if out.requests == "sample" else {})},
            "wall_s": time.perf_counter() - t0,
        })
        if keep_requests:
            stream, rec, reqs = sink.result()
        else:
            stream = rec = None
            reqs = pd.DataFrame()
        result = RunResult(reqs, sites, summary, resolved, world, stream, rec,
                           faults=schedule.table if schedule.active else None)
        result.online = online
        if tmp is not None:
            result.out_dir = rundir.finish_run(result, tmp, final, online,
                                               figures=out.figures)
    except BaseException:
        sink.abort()
        if tmp is not None:
            rundir.abort_run(tmp)
        raise
    return result


#: Runs expected to have at most this many requests keep them in memory even when writing.
KEEP_MAX_REQUESTS = 2_000_000


def run(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = (), *,
        out_dir: str | Path | None = None) -> RunResult:
    """Run a scenario by name with Hydra-style overrides; write nothing unless ``out_dir`` is given.

    Example:
        >>> r = run("global_agent", ["policy=centralised", "duration_s=30"])  # doctest: +SKIP
        >>> r.summary["latency_ms"]["p95"]  # doctest: +SKIP
    """
    return run_config(cfgmod.compose(scenario, list(overrides)), out_dir=out_dir)


def config_of(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = ()
              ) -> cfgmod.SimConfig:
    """The validated, typed config of a scenario (handy in notebooks and tests)."""
    return cfgmod.validate(cfgmod.compose(scenario, list(overrides)))

