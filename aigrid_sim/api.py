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
from aigrid_sim.results.metrics import fault_summary, requests_table, sites_table, summarise
from aigrid_sim.sim.engine import Engine, Records
from aigrid_sim.sim.faults import FaultSchedule, build_schedule
from aigrid_sim.sim.policies import load_plugins, make_policy
from aigrid_sim.workload import RequestStream, generate_stream
from aigrid_sim.world.build import World, build_world  # noqa: F401 (re-exported for bench)


@dataclass
class RunResult:
    """Everything a run produced.

    Attributes:
        requests: One row per request (see ``aigrid_sim.results.metrics``).
        sites: One row per site.
        summary: The run summary (``summary.json``).
        config: The fully resolved config (an OmegaConf ``DictConfig``).
        world: The world the run used.
        stream: The request stream it replayed.
        records: The raw per-request records.
        out_dir: The run folder, if one was written.
        faults: One row per outage or link cut (``aigrid_sim.sim.faults.TABLE_COLUMNS``); empty
            when nothing failed.
        cities: One row per origin city (``cities.parquet``, :mod:`aigrid_sim.results.cities`):
            place, demand, requests, SLO met, TTFT and latency p50/p95 overall and per app,
            serving tier mix. Built from ``requests`` on first use.
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
    _cities: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def cities(self) -> pd.DataFrame:
        """The per-city table (built from ``requests`` and the world's origins, then kept)."""
        if self._cities is None:
            from aigrid_sim.results.cities import cities_of_run

            self._cities = cities_of_run(self.requests, self.world,
                                         warmup_s=float(self.config.get("warmup_s", 0.0)))
        return self._cities

    @cities.setter
    def cities(self, table: pd.DataFrame | None) -> None:
        self._cities = table


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


def run_config(dcfg: DictConfig, *, out_dir: str | Path | None = None,
               progress: Callable[[float], None] | None = None,
               world: World | None = None) -> RunResult:
    """Run an already composed config (what the CLI and :func:`run` call)."""
    t0 = time.perf_counter()
    cfg = cfgmod.validate(dcfg)
    world = world or build_world(cfg)
    schedule = build_schedule(cfg.faults, world, cfg.seed, cfg.duration_s + cfg.drain_s)
    world, stream, rec, _ = simulate(cfg, world=world, progress=progress, faults=schedule)
    reqs = requests_table(world, stream, rec)
    sites = sites_table(world, rec, cfg.duration_s, reqs)
    summary = summarise(reqs, sites, warmup_s=cfg.warmup_s, window_s=cfg.duration_s)
    if schedule.active:
        summary["faults"] = fault_summary(reqs, sites, schedule.table, warmup_s=cfg.warmup_s,
                                          window_s=cfg.duration_s,
                                          detection_s=schedule.detection_s,
                                          retries=schedule.retries)
    summary.update({
        "scenario": cfg.name, "policy": cfg.policy, "seed": cfg.seed, "load": cfg.load,
        "duration_s": cfg.duration_s, "sites": world.n_sites, "origins": world.n_origins,
        "stream": dict(stream.info), "wall_s": time.perf_counter() - t0,
        "provisioned": {**(world.provisioned or {}), "gpus": int(world.site_gpus.sum())},
    })
    resolved = OmegaConf.create(OmegaConf.to_container(dcfg, resolve=True))
    if "hydra" in resolved:
        del resolved["hydra"]
    result = RunResult(reqs, sites, summary, resolved, world, stream, rec,
                       faults=schedule.table if schedule.active else None)
    if out_dir is not None:
        from aigrid_sim.results.rundir import write_run
        result.out_dir = write_run(result, Path(out_dir), figures=cfg.output.figures)
    return result


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

