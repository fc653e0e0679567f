"""The Python entry point: ``aigrid_sim.run(scenario, overrides)`` and what it returns.

It composes the scenario exactly as the CLI does, builds the world and the request stream,
simulates, and returns tables and the summary. It writes nothing unless given ``out_dir``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from aigrid_sim import config as cfgmod
from aigrid_sim.errors import ConfigError
from aigrid_sim.sim import cascade as cascademod
from aigrid_sim.sim import control
from aigrid_sim.sim.engine import Engine, Records
from aigrid_sim.sim.faults import FaultSchedule, build_schedule
from aigrid_sim.sim.policies import load_plugins, make_policy
from aigrid_sim.sim.policies.base import plugins_allowed
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
        cities: One row per origin city (``cities.parquet``, :mod:`aigrid_sim.results.cities`):
            place, demand, requests, SLO met, TTFT and latency p50/p95 overall and per app,
            serving tier mix. Built from ``requests`` on first use (exact percentiles); a run
            that does not keep its requests takes it from its online summary (sketched).
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
    _cities: pd.DataFrame | None = field(default=None, repr=False)
    online: object = field(default=None, repr=False)

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

        return trace_stream(cfg, world.origin_weight, world.origin_utc_offset_h,
                            world.origin_name)
    return generate_stream(cfg, world.origin_weight, world.origin_utc_offset_h,
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
    # The control plane (sovereignty, tenant quotas) only when a scenario uses it.
    names = [a.name for a in stream.apps]
    rules = control.build_rules(cfg, world, names)
    policy = control.wrap(policy, rules)
    # Cascades (escalation to a bigger model) only when an app is served as one.
    policy = cascademod.wrap(policy, cascademod.build_cascades(cfg, world, names), cfg.seed)
    horizon = cfg.duration_s + cfg.drain_s
    if faults is None:
        faults = build_schedule(cfg.faults, world, cfg.seed, horizon)
    engine = Engine(world, stream, policy, seed=cfg.seed, k_nearest=cfg.routing.k_nearest,
                    staleness_s=cfg.routing.staleness_s, horizon_s=horizon, progress=progress,
                    faults=faults)
    control.prioritise(engine, rules)  # tenants' priorities order the queues, if they differ
    if isinstance(policy, cascademod.Cascade):
        policy.attach(engine)
    return world, stream, engine.run(), horizon


def make_windows(cfg: cfgmod.SimConfig, world: World) -> tuple[list, object, dict]:
    """A run's arrivals window by window: ``(apps, iterator of windows, stream info)``.

    Synthetic arrivals are drawn block by block as the run goes
    (:mod:`aigrid_sim.workload.windows`); a replayed trace is read whole and cut into windows.
    """
    from aigrid_sim.workload.generate import app_specs
    from aigrid_sim.workload.windows import SyntheticArrivals, split, windows

    w = cfg.output.window_s
    if cfg.workload.arrivals.kind == "closed":  # the engine releases them: one window
        stream = make_stream(cfg, world)
        return stream.apps, [stream], dict(stream.info)
    if cfg.workload.arrivals.kind == "trace":
        stream = make_stream(cfg, world)
        if stream.prefix_ids is not None:  # prefix ids index requests: one window
            return stream.apps, [stream], dict(stream.info)
        return stream.apps, split(stream, w), dict(stream.info)
    proc = SyntheticArrivals(cfg, world.origin_population, world.origin_utc_offset_h,
                             region=world.origin_region, country=world.origin_country,
                             names=world.origin_name)
    return app_specs(cfg.workload.apps), windows(proc.blocks(), w), proc.info()


#: Runs expected to have at most this many requests keep them in memory even when writing.
KEEP_MAX_REQUESTS = 2_000_000


def keeps_requests(cfg: cfgmod.SimConfig, out_dir, keep_requests: bool | None) -> bool:
    """Whether a run keeps every request in memory (see :func:`run_config`)."""
    if keep_requests is not None:
        return bool(keep_requests)
    from aigrid_sim.results.resources import expected_requests

    return cfg.output.requests == "all" and (
        out_dir is None or (expected_requests(cfg) <= KEEP_MAX_REQUESTS
                            and cfg.output.requests_order == "arrival"))


def run_config(dcfg: DictConfig, *, out_dir: str | Path | None = None,
               progress: Callable[..., None] | None = None,
               world: World | None = None,
               plugins: list[str] | tuple[str, ...] | None = None,
               keep_requests: bool | None = None) -> RunResult:
    """Run an already composed config (what the CLI and :func:`run` call).

    The run streams: arrivals come window by window, ended requests go to the online summary
    and (``output.requests``) to ``requests.parquet`` in the run folder as the run goes.

    Args:
        dcfg: The composed config.
        out_dir: Write the run folder under this directory (atomically).
        progress: ``progress(now_s, requests_so_far)`` called about 200 times.
        world: A world already built from this config.
        plugins: Modules of your own (policies) to import first: the opt-in a scenario file
            cannot give itself (see :func:`aigrid_sim.sim.policies.allow_plugins`).
        keep_requests: Keep every request in memory for ``RunResult.requests`` / ``.records`` /
            ``.stream``. None = when ``output.requests`` is ``all`` and either nothing is
            written or the run is small (at most :data:`KEEP_MAX_REQUESTS` expected requests).
            Otherwise ``RunResult.requests`` is an empty table and ``records``/``stream`` None.
    """
    with plugins_allowed(plugins):
        return _run_config(dcfg, out_dir=out_dir, progress=progress, world=world,
                           keep_requests=keep_requests)


def _run_config(dcfg: DictConfig, *, out_dir, progress, world, keep_requests) -> RunResult:
    from aigrid_sim.results import rundir
    from aigrid_sim.results.online import OnlineSummary, time_bin_s
    from aigrid_sim.results.sink import RequestSink
    from aigrid_sim.workload.windows import concat

    t0 = time.perf_counter()
    cfg = cfgmod.validate(dcfg)
    keep = keeps_requests(cfg, out_dir, keep_requests)
    preflight(cfg, out_dir=out_dir, keep_requests=keep)
    world = world or build_world(cfg)
    horizon = cfg.duration_s + cfg.drain_s
    schedule = build_schedule(cfg.faults, world, cfg.seed, horizon)
    load_plugins(cfg.plugins)
    policy = make_policy(cfg.policy, cfg.routing.params)
    out = cfg.output
    apps, wins, info = make_windows(cfg, world)
    # The control plane (sovereignty, tenant quotas) only when a scenario uses it.
    names = [a.name for a in apps]
    rules = control.build_rules(cfg, world, names)
    policy = control.wrap(policy, rules)
    # Cascades (escalation to a bigger model) only when an app is served as one.
    policy = cascademod.wrap(policy, cascademod.build_cascades(cfg, world, names), cfg.seed)
    online = OnlineSummary(world, [a.name for a in apps], warmup_s=cfg.warmup_s,
                           window_s=cfg.duration_s, time_origin_s=cfg.start_utc_h * 3600.0,
                           time_bin_s=time_bin_s(cfg.duration_s, out.time_bin_s),
                           horizon_s=horizon,
                           faults=schedule.table if schedule.active else None)
    if cfg.tenants:  # the tenants' bill, block by block (no requests table needed)
        from aigrid_sim.results.billing import Bill

        online.bill = Bill(cfg.tenants)
    resolved = OmegaConf.create(OmegaConf.to_container(dcfg, resolve=True))
    if "hydra" in resolved:
        del resolved["hydra"]
    final = tmp = None
    if out_dir is not None:
        final, tmp = rundir.begin_run(Path(out_dir), resolved)
    sink = RequestSink(world, apps, online,
                       path=tmp / "requests.parquet" if tmp is not None else None,
                       mode=out.requests, sample_fraction=out.sample_fraction, keep=keep,
                       order=out.requests_order)
    try:
        engine = Engine(world, concat([], apps), policy, seed=cfg.seed,
                        k_nearest=cfg.routing.k_nearest, staleness_s=cfg.routing.staleness_s,
                        horizon_s=horizon, progress=progress, faults=schedule, windows=wins,
                        sink=sink)
        control.prioritise(engine, rules)  # tenants' priorities order the queues, if they differ
        engine.track_busy([(0.0, cfg.duration_s), (cfg.warmup_s, cfg.duration_s)])
        if isinstance(policy, cascademod.Cascade):
            policy.attach(engine)
        engine.run()
        online.set_replica_busy(*engine.replica_busy_s())
        sink.close()
        sites = online.sites_table(world)
        summary = online.summary(sites)
        if schedule.active:
            summary["faults"] = online.fault_summary(sites, schedule.table,
                                                     detection_s=schedule.detection_s,
                                                     retries=schedule.retries)
        info["requests"] = sink.rows
        if online.bill is not None:
            summary["tenants"] = online.bill.result(sites)
        if keep:
            stream, rec, reqs = sink.result()
        else:
            stream = rec = None
            reqs = pd.DataFrame()
        summary.update({
            "scenario": cfg.name, "policy": cfg.policy, "seed": cfg.seed, "load": cfg.load,
            "duration_s": cfg.duration_s, "warmup_s": cfg.warmup_s,
            "start_utc_h": cfg.start_utc_h, "sites": world.n_sites,
            "origins": world.n_origins, "stream": info,
            "output_requests": {"mode": out.requests, "rows_written": sink.rows_written,
                                **({"order": "end"} if out.requests != "none"
                                   and out.requests_order == "end" else {}),
                                **({"sample_fraction": out.sample_fraction}
                                   if out.requests == "sample" else {})},
            "provisioned": {**(world.provisioned or {}), "gpus": int(world.site_gpus.sum())},
            "wall_s": time.perf_counter() - t0,
        })
        result = RunResult(reqs, sites, summary, resolved, world, stream, rec,
                           faults=schedule.table if schedule.active else None)
        result.online = online
        if not keep:  # else exact, from the requests kept (the property, on first use)
            result.cities = online.cities_table(world)
        if tmp is not None:
            result.out_dir = rundir.finish_run(result, tmp, final, online,
                                               figures=out.figures,
                                               replace=not out.resume)
    except BaseException:
        sink.abort()
        if tmp is not None:
            rundir.abort_run(tmp)
        raise
    return result


def run(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = (), *,
        out_dir: str | Path | None = None,
        plugins: list[str] | tuple[str, ...] | None = None) -> RunResult:
    """Run a scenario by name with Hydra-style overrides; write nothing unless ``out_dir`` is given.

    ``plugins`` names modules of your own policies to import (``plugins=["my_policies"]``); a
    scenario file or an override cannot import code by itself.

    Example:
        >>> r = run("global_agent", ["policy=centralised", "duration_s=30"])  # doctest: +SKIP
        >>> r.summary["latency_ms"]["p95"]  # doctest: +SKIP
    """
    return run_config(cfgmod.compose(scenario, list(overrides)), out_dir=out_dir, plugins=plugins)


def config_of(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = ()
              ) -> cfgmod.SimConfig:
    """The validated, typed config of a scenario (handy in notebooks and tests)."""
    return cfgmod.validate(cfgmod.compose(scenario, list(overrides)))



# ----------------------------------------------------------------------------- preflight
#
# Checks that need a registry, the catalogue or the machine, run where the run is assembled and
# before anything is built: the policy resolves, GPU counts are whole replicas, the run fits in
# memory, no component would schedule an absurd number of events, and the output folder can be
# written. The CLI runs them before Hydra starts (so a sweep fails before its first job).

BYTES_PER_REQUEST = 800  # stream + records + requests table, measured (DESIGN.md s.6: ~0.8 GB/M)
BYTES_PER_CANDIDATE = 40  # arrival candidates before thinning (time, origin, uniforms)
MEMORY_ENV = "AIGRID_MAX_MEMORY_GB"  # the budget; default: the machine's available memory
HELD_WINDOWS = 4  # windows of requests a streamed run holds at once (in flight, buffered)
EVENT_FLOOR = 1_000_000  # a periodic process may always tick this often over a run...
EVENTS_PER_REQUEST = 2  # ...or twice per expected request, whichever is larger


@dataclass
class Estimate:
    """What a run would need, from its config alone (upper bounds)."""

    requests: float
    candidates: float
    origins: int
    sites: int
    world_bytes: float
    stream_bytes: float
    key: str  # the key that drives the request count

    @property
    def total_bytes(self) -> float:
        """World, stream and records together."""
        return self.world_bytes + self.stream_bytes


def memory_budget() -> float:
    """Bytes a run may use: ``$AIGRID_MAX_MEMORY_GB`` or 90 % of the available memory."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise ConfigError(f"${MEMORY_ENV}: expected a number of GB (got {env!r})") from None
        if not (math.isfinite(gb) and gb > 0):
            raise ConfigError(f"${MEMORY_ENV}: expected a number of GB > 0 (got {env!r})")
        return gb * 1e9
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.9 * int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return 0.9 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _data_rows(name: str) -> int:
    from importlib import resources

    with resources.files("aigrid_sim").joinpath(f"data/{name}").open("rb") as f:
        return max(0, sum(1 for _ in f) - 1)


_ROWS: dict[str, int] = {}


def _rows(name: str) -> int:
    if name not in _ROWS:
        _ROWS[name] = _data_rows(name)
    return _ROWS[name]


def estimate(cfg: cfgmod.SimConfig, keep_requests: bool = True) -> Estimate:
    """Upper bounds on the requests, arrival candidates and memory of a run, before building.

    A streamed run that does not keep its requests (``keep_requests=False``) holds about
    :data:`HELD_WINDOWS` windows of requests and one block of arrival candidates at a time.
    """
    w = cfg.world
    if w.topology == "custom":
        origins, edge, sites = len(w.origins), 0, len(w.sites)
    else:
        origins = _rows("cities_100k.csv")
        if w.cities.max_cities is not None:
            origins = min(origins, w.cities.max_cities)
        edge = len(w.edge.pops) if w.edge.pops else _rows("cdn_pops_cloudflare.csv")
        sites = edge + _rows("cloud_regions.csv") + len(w.core.sites) + len(w.sites)
    attach = max(1, min(w.cities.pops_per_city, edge or 1))
    # origin x attach x site tensor while the RTT matrix is built, plus the matrices themselves
    world_bytes = 8.0 * (origins * attach * sites * 2 + origins * sites * 2 + sites * sites * 3)
    horizon = cfg.duration_s
    a = cfg.workload.arrivals
    if a.kind == "trace":
        from aigrid_sim.workload.traces import resolve_path

        try:
            size = resolve_path(cfg.trace).stat().st_size
        except (ConfigError, OSError):
            size = 0
        rows = size / 16.0  # the smallest plausible row: "t,in,out\n"
        factor = cfg.trace.scale * cfg.load
        requests = rows * cfg.trace.repeat * max(1.0, math.ceil(factor))
        candidates, key = requests, "trace.repeat" if cfg.trace.repeat > 1 else "trace.scale"
    else:
        peak = 1.0
        if a.kind == "diurnal":
            curve = a.curve or [1.0]
            peak = max(curve) / (sum(curve) / len(curve)) if a.curve else 2.0
        if a.mmpp.states:
            rates = [st.rate for st in a.mmpp.states]
            peak *= max(rates) / max(1e-12, min(r for r in rates if r > 0) if any(rates) else 1)
        for fc in a.flash_crowds:
            peak *= max(1.0, fc.factor)
        mean = cfg.workload.rate_rps * cfg.load * horizon
        requests = mean
        candidates = mean * peak
        key = "workload.rate_rps" if cfg.workload.rate_rps * cfg.load > 1e4 else "duration_s"
    if cfg.max_requests is not None:
        requests = min(requests, cfg.max_requests)
    if not keep_requests and cfg.workload.arrivals.kind != "trace":
        from aigrid_sim.workload.windows import BLOCK_S

        held = min(1.0, HELD_WINDOWS * max(cfg.output.window_s, BLOCK_S) / cfg.duration_s)
        requests_held, candidates = requests * held, candidates * min(
            1.0, BLOCK_S / cfg.duration_s)
    else:
        requests_held = requests
    stream_bytes = requests_held * BYTES_PER_REQUEST + candidates * BYTES_PER_CANDIDATE
    return Estimate(requests, candidates, origins, sites, world_bytes, stream_bytes, key)


def _gb(b: float) -> str:
    if b < 1e9:
        return f"{b / 1e6:,.0f} MB"
    return f"{b / 1e9:,.1f} GB" if b < 1e15 else f"{b / 1e9:.2g} GB"


def check_resources(cfg: cfgmod.SimConfig, keep_requests: bool = True) -> Estimate:
    """Stop a run that would not fit in memory, with one line naming the key to change.

    Raises:
        ConfigError: naming what the run would need and which key drives it.
    """
    est = estimate(cfg, keep_requests)
    budget = memory_budget()
    if est.world_bytes > budget:
        key = ("world.cities.pops_per_city" if cfg.world.cities.pops_per_city > 2
               else "world.cities.max_cities")
        raise ConfigError(
            f"key '{key}': the world ({est.origins:,} cities x {est.sites:,} sites, "
            f"{min(cfg.world.cities.pops_per_city, est.sites):,} entry PoPs each) would need "
            f"~{_gb(est.world_bytes)} of memory, {_gb(budget)} available (${MEMORY_ENV} sets "
            f"the budget); lower world.cities.pops_per_city or world.cities.max_cities")
    if est.total_bytes > budget:
        raise ConfigError(
            f"key '{est.key}': the run would generate ~{est.requests:,.3g} requests and need "
            f"~{_gb(est.total_bytes)} of memory, {_gb(budget)} available (${MEMORY_ENV} "
            f"sets the budget); lower " + ", ".join(dict.fromkeys([est.key, "duration_s", "load"]))
            + ", or set max_requests"
            + ("; or write a run folder (out_dir=..., or the aigrid-sim command) with "
               "output.requests=all|sample|none so requests stream to disk"
               if keep_requests else ""))
    return est


def check_events(cfg: cfgmod.SimConfig, est: Estimate) -> None:
    """Refuse periodic processes that would schedule an absurd number of events.

    A process that ticks every ``x`` seconds over the horizon ``H`` schedules ``H / x`` events;
    more than ``max(1e6, 2 x requests)`` of them is refused, naming the key and its smallest
    sensible value.

    Raises:
        ConfigError: naming the key.
    """
    horizon = cfg.duration_s + cfg.drain_s
    budget = max(EVENT_FLOOR, EVENTS_PER_REQUEST * est.requests)
    periodic = [("routing.staleness_s", cfg.routing.staleness_s, 1),
                ("faults.detection_s", cfg.faults.detection_s, 1)]
    for i, st in enumerate(cfg.workload.arrivals.mmpp.states):
        scope = 1 if cfg.workload.arrivals.mmpp.scope == "global" else 8
        periodic.append((f"workload.arrivals.mmpp.states[{i}].mean_sojourn_s",
                         st.mean_sojourn_s, scope))
    for tier in cfgmod.TIERS:
        rf = getattr(cfg.faults.random, tier)
        if rf.mtbf_s is not None:
            n = est.sites if tier == "edge" else max(1, est.sites // 4)
            periodic.append((f"faults.random.{tier}.mtbf_s", rf.mtbf_s, n))
            periodic.append((f"faults.random.{tier}.mttr_s", rf.mttr_s, n))
    for key, every, copies in periodic:
        if every and every > 0:
            events = horizon / every * copies
            if events > budget:
                least = horizon * copies / budget
                raise ConfigError(
                    f"key '{key}': {every:g} s would schedule ~{events:,.3g} events over the "
                    f"{horizon:,.0f} s run (budget {budget:,.3g}); use >= {least:.3g} s"
                    + (" or 0" if key in ("routing.staleness_s", "faults.detection_s") else ""))


def check_replicas(cfg: cfgmod.SimConfig) -> None:
    """GPU counts must be whole replicas: 3 GPUs of a 2-GPU model would bill an idle GPU.

    Raises:
        ConfigError: naming the key, the model and its replica size.
    """
    from aigrid_sim.serving.catalog import Catalog

    w = cfg.world
    source = w.catalog or "aigrid_sim/data/catalog.yaml"
    try:
        cat = Catalog.from_file(w.catalog) if w.catalog else Catalog.default()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (a malformed catalogue, in one line)
        raise ConfigError(f"key 'world.catalog': {source}: malformed ({_one_line(e)})") from None
    tiers = [] if w.topology == "custom" else [(f"world.{t}", getattr(w, t)) for t in cfgmod.TIERS]
    tiers += [(f"world.sites[{i}]", s) for i, s in enumerate(w.sites)]
    for key, t in tiers:
        try:
            dep = cat.deployment(t.model, t.gpu, where=key, max_batch=t.max_batch)
            figures = _numbers(dep)
            figures["price_per_slot_second"] = dep.price_per_slot_second
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"key 'world.catalog': {source}: {t.model} on {t.gpu}: malformed "
                              f"entry ({_one_line(e)})") from None
        for name, v in figures.items():  # what the engine and the bill use: finite, >= 0
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"key 'world.catalog': {source}: {t.model} on {t.gpu}: "
                                  f"{name} must be a finite number >= 0 (got {v})")
        if dep.gpus_per_replica < 1 or dep.max_batch < 1:
            raise ConfigError(f"key 'world.catalog': {source}: {t.model} on {t.gpu}: "
                              f"gpus_per_replica and max_batch must be >= 1")
        g = dep.gpus_per_replica
        if t.gpus % g:
            what = "cannot hold one replica" if t.gpus < g else "is not a whole number of replicas"
            raise ConfigError(
                f"key '{key}.gpus': {t.gpus} GPUs {what} of {t.model} on {t.gpu} ({g} GPUs "
                f"each); must be a multiple of {g}")


def check_output(cfg: cfgmod.SimConfig, out_dir: str | Path | None) -> None:
    """The output folder exists or can be made, and is writable, before the run.

    Raises:
        ConfigError: naming ``output.dir``.
    """
    if out_dir is None:
        return
    from aigrid_sim.results.rundir import check_writable

    check_writable(Path(out_dir))


def preflight(cfg: cfgmod.SimConfig, *, out_dir: str | Path | None = None,
              keep_requests: bool | None = None) -> Estimate:
    """Every assembly-time check, before anything is built (see the section comment).

    ``keep_requests``: whether the run keeps every request in memory (as :func:`run_config`
    decides when None); otherwise it streams and holds only a few windows of requests. A run
    that writes ``requests.parquet`` also needs the disk space for it
    (:func:`aigrid_sim.results.resources.check_disk`).

    Raises:
        ConfigError: the first problem, in one line naming the key.
    """
    from aigrid_sim.results.resources import check_disk

    load_plugins(cfg.plugins)
    make_policy(cfg.policy, cfg.routing.params)
    check_replicas(cfg)
    keep = keeps_requests(cfg, out_dir, keep_requests)
    est = check_resources(cfg, keep_requests=keep)
    check_events(cfg, est)
    check_output(cfg, out_dir)
    check_disk(cfg, out_dir=out_dir)
    return est


def _one_line(e: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(type(e), e)[-1].strip()


def _numbers(obj: object) -> dict[str, float]:
    """The numeric fields of a dataclass (tuples of numbers: each element), for sanity checks."""
    import dataclasses

    out: dict[str, float] = {}
    if not dataclasses.is_dataclass(obj):
        return out
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)):
            out[f.name] = float(v)
        elif isinstance(v, (tuple, list, np.ndarray)) and len(v) and all(
                isinstance(x, (int, float, np.integer, np.floating)) for x in v):
            bad = [float(x) for x in v if not (math.isfinite(x) and x >= 0)]
            out[f.name] = bad[0] if bad else 0.0
        elif dataclasses.is_dataclass(v):
            out.update({f"{f.name}.{k}": x for k, x in _numbers(v).items()})
    return out
