"""Structured configuration: the schema every scenario is checked against, and composition.

Scenarios live in the Hydra config tree ``aigrid_sim/scenarios/`` (package data, composed from
``pkg://aigrid_sim.scenarios``; ``config.yaml`` holds the defaults, ``scenario/NAME.yaml`` overrides
only what differs). A user's own scenario folder is searched too (see :func:`compose`). :func:`compose` builds a run's config the same
way the CLI does; :func:`validate` turns it into a typed :class:`SimConfig` or raises one
:class:`~aigrid_sim.errors.ConfigError` naming the key and what is allowed.

A scenario may declare extra top-level knobs of its own (``mmc`` has ``servers``, ``arrival_rate``,
...) provided it uses them through interpolation (``${servers}``) elsewhere in its config; any other
unknown key is an error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aigrid_sim.errors import ConfigError

# Arithmetic for scenario files: `duration_s: ${aigrid.div:${requests},${arrival_rate}}`.
OmegaConf.register_new_resolver("aigrid.div", lambda a, b: float(a) / float(b), replace=True)
OmegaConf.register_new_resolver("aigrid.mul", lambda a, b: float(a) * float(b), replace=True)
# `kind: ${aigrid.closed_if:${concurrency}}`: a closed loop when a concurrency is given.
OmegaConf.register_new_resolver("aigrid.closed_if",
                                lambda c: "closed" if int(c) > 0 else "poisson", replace=True)

# ----------------------------------------------------------------------------- schema


@dataclass
class CitiesConfig:
    """Where demand comes from: real cities (GeoNames cities15000).

    ``min_population`` >= 100,000 reads the bundled 100k table (6,204 cities); a lower threshold
    (down to 15,000) reads the 15k table (34,006 cities).
    """

    min_population: int = 100_000
    max_cities: int | None = None  # keep the N most populous (faster tests); 0 = only world.origins
    countries: list[str] | None = None  # ISO alpha-2 filter; None = the whole world
    access_ms: float = 5.0  # last-mile round trip from a user to the Internet
    pops_per_city: int = 2  # users reach the grid through their N nearest edge PoPs


@dataclass
class TierConfig:
    """What every site of a tier runs."""

    gpu: str = "H100"
    model: str = "llama-3.3-70b-fp8"
    gpus: int = 8
    max_queue: int = 256  # requests waiting per site before new ones are rejected
    max_batch: int | None = None  # sequences per replica; None = the catalogue's


@dataclass
class EdgeConfig(TierConfig):
    """Edge tier: real Cloudflare PoPs (340 metros), a PoP in every big city, or your own CSV."""

    # cloudflare (the real PoPs) | cities (one PoP per city >= min_population) | file (the CSV
    # at `file`: id, lat, lon[, country, gpus, gpu, model, max_queue, max_batch])
    source: str = "cloudflare"
    file: str | None = None
    min_population: int = 1_000_000
    pops: list[str] | None = None  # IATA codes to keep (source cloudflare); None = all
    countries: list[str] | None = None  # ISO alpha-2 filter


@dataclass
class RegionalConfig(TierConfig):
    """Regional tier: real cloud regions, one per metro area."""

    providers: list[str] = field(default_factory=lambda: ["aws", "gcp", "azure"])
    regions: list[str] | None = None  # "provider:region_code" list; None = all of providers
    merge_km: float = 100.0  # regions closer than this are one metro: keep the first


@dataclass
class CoreConfig(TierConfig):
    """Core tier: a handful of large AI factories at named cloud regions."""

    sites: list[str] = field(default_factory=lambda: ["aws:us-east-1"])


@dataclass
class SiteConfig:
    """One explicitly placed site (``world.topology: custom`` or extra sites)."""

    id: str = "site"
    tier: str = "core"
    lat: float = 0.0
    lon: float = 0.0
    country: str | None = None
    gpu: str = "generic"
    model: str = "fixed-service"
    gpus: int = 1
    max_queue: int = 1_000_000
    max_batch: int | None = None  # sequences per replica; None = the catalogue's


@dataclass
class OriginConfig:
    """One explicitly placed origin of demand (``world.topology: custom``)."""

    name: str = "origin"
    lat: float = 0.0
    lon: float = 0.0
    country: str | None = None
    population: float = 1.0
    utc_offset_h: float = 0.0  # used when timezone is null
    timezone: str | None = None  # IANA zone ("Europe/Paris"): offset at start_date, DST included


@dataclass
class GraphConfig:
    """The latency graph between sites."""

    neighbours: int = 4  # each site links to its k nearest sites
    mesh_tiers: list[str] = field(default_factory=lambda: ["regional", "core"])  # full mesh


@dataclass
class WorldConfig:
    """Sites, origins and the network between them."""

    topology: str = "grid"  # grid (real PoPs/regions/cities) | custom (sites/origins below)
    catalog: str | None = None  # your GPU/model catalogue YAML; None = the shipped one
    network: str = "geo"  # geo (RTT model) | zero (no network delay; queueing studies)
    # auto: a dense origins x sites RTT matrix for small worlds, per-origin nearest sites for big
    # ones (thousands of sites); dense | sparse force one (same candidates, same round trips).
    rtt_matrix: str = "auto"
    cities: CitiesConfig = field(default_factory=CitiesConfig)
    edge: EdgeConfig = field(default_factory=lambda: EdgeConfig(
        gpu="L40S", model="llama-3.1-8b-fp8", gpus=1, max_queue=64))
    regional: RegionalConfig = field(default_factory=lambda: RegionalConfig(
        gpu="H100", model="llama-3.3-70b-fp8", gpus=4, max_queue=512))
    core: CoreConfig = field(default_factory=lambda: CoreConfig(
        sites=["aws:us-east-1", "azure:westeurope", "gcp:asia-northeast1"],
        gpu="H200", model="llama-3.1-405b-fp8", gpus=32, max_queue=4096))
    sites: list[SiteConfig] = field(default_factory=list)
    origins: list[OriginConfig] = field(default_factory=list)
    graph: GraphConfig = field(default_factory=GraphConfig)
    # Per-site GPU counts that override the tier's (capacity plans): {site_id: gpus}.
    site_gpus: dict[str, int] | None = None
    # Per-site GPU counts a scenario ships (its capacity plan); site_gpus overrides these.
    sized_gpus: dict[str, int] | None = None


@dataclass
class ServiceConfig:
    """Service time of an app: from tokens on the site's model, or a fixed distribution."""

    kind: str = "tokens"  # tokens | exponential | deterministic | lognormal
    mean_s: float = 0.0  # for the fixed kinds
    cv: float = 1.0  # coefficient of variation (lognormal)


@dataclass
class TokensConfig:
    """Token counts of a generative app (lognormal with the given mean and CV)."""

    in_mean: float = 500.0
    in_cv: float = 1.0
    out_mean: float = 100.0
    out_cv: float = 1.0
    in_max: int = 32_768
    out_max: int = 4_096


@dataclass
class AppConfig:
    """A request class: its traffic share, the capability it needs and its latency target."""

    name: str = "default"
    share: float = 1.0
    capability: int = 1
    slo_ms: float = 1000.0
    slo_on: str = "e2e"  # e2e (whole response) | ttft (time to first token)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    # Leading prompt tokens every request of the app shares (a system prompt): cached per
    # replica (prefix caching); prompts are at least this + 1 tokens long. 0 = none.
    system_prompt_tokens: int = 0


@dataclass
class MMPPStateConfig:
    """One state of a Markov-modulated Poisson process."""

    rate: float = 1.0  # relative rate (all states are rescaled so the long-run mean is 1)
    mean_sojourn_s: float = 60.0  # mean time spent in the state per visit


@dataclass
class MMPPConfig:
    """Bursty arrivals: the rate follows a continuous-time Markov chain (no states = off)."""

    states: list[MMPPStateConfig] = field(default_factory=list)
    transitions: list[list[float]] | None = None  # jump matrix; None = to any other uniformly
    scope: str = "global"  # global (one chain for the world) | region (one chain per region)


@dataclass
class FlashCrowdConfig:
    """A region's (or countries', cities') rate multiplied by ``factor`` for a window."""

    region: str | None = None  # continent as in requests.parquet `region` ("Europe", ...)
    countries: list[str] | None = None  # ISO alpha-2 codes
    cities: list[str] | None = None  # origin names; all three None = everywhere
    start_s: float = 0.0  # the ramp up begins
    ramp_up_s: float = 60.0
    duration_s: float = 300.0  # plateau at `factor`
    ramp_down_s: float = 60.0
    factor: float = 3.0


@dataclass
class ArrivalsConfig:
    """How requests arrive in time."""

    kind: str = "diurnal"  # poisson | diurnal | trace (replay the `trace:` section) | closed
    # Hourly multipliers by local hour 0..23 (normalised to mean 1); None = the shipped curve.
    curve: list[float] | None = None
    mmpp: MMPPConfig = field(default_factory=MMPPConfig)  # bursts on top of poisson/diurnal
    flash_crowds: list[FlashCrowdConfig] = field(default_factory=list)
    # kind closed: this many clients each send their next request when the last one ends
    # (a benchmark's fixed concurrency); needs max_requests.
    concurrency: int = 0


@dataclass
class WorkloadConfig:
    """Global traffic: total mean rate, arrival process and apps."""

    rate_rps: float = 1000.0  # mean requests per second worldwide at load 1.0
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    apps: list[AppConfig] = field(default_factory=lambda: [AppConfig()])


@dataclass
class TraceColumnsConfig:
    """Column names of a trace file; None = the format's own name."""

    time: str | None = None
    time_unit: str | None = None  # datetime | s | ms | us
    in_tokens: str | None = None
    out_tokens: str | None = None
    origin: str | None = None  # a column of origin (city) names, if the trace has one
    rate: str | None = None  # rate-series formats (servegen): requests per second


@dataclass
class TraceConfig:
    """Trace replay (``workload.arrivals.kind: trace``)."""

    path: str | None = None  # CSV file; None = the bundled Azure 2023 conversation trace
    format: str = "azure"  # azure | mooncake | servegen
    columns: TraceColumnsConfig = field(default_factory=TraceColumnsConfig)
    start_s: float = 0.0  # window start, seconds after the trace's first timestamp
    end_s: float | None = None  # window end (exclusive); None = the end of the trace
    speedup: float = 1.0  # 60 = an hour of trace in a simulated minute
    scale: float = 1.0  # rate scaling: < 1 thins, > 1 superposes shifted copies (x load)
    repeat: int = 1  # play the window this many times back to back
    skip_bad_rows: bool = False  # skip malformed rows (counted in the summary) instead of failing


@dataclass
class RoutingConfig:
    """Settings shared by policies; ``params`` go to the chosen policy's constructor."""

    k_nearest: int = 8  # candidate sites per origin and capability
    staleness_s: float = 0.0  # load seen by policies is refreshed every this many seconds
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutageConfig:
    """A scheduled outage: every site matching all the given selectors, from ``start_s``.

    Give at least one of ``site``, ``metro``, ``country`` or ``tier``.
    """

    site: str | None = None  # a site id, e.g. regional-aws-eu-central-1
    metro: str | None = None  # a city of the world (or a site id): every site within radius_km
    radius_km: float = 100.0
    country: str | None = None  # ISO alpha-2
    tier: str | None = None  # edge | regional | core
    start_s: float = 0.0
    duration_s: float | None = None  # None = until the end of the run
    fraction: float = 1.0  # share of each site's GPUs lost (1 = the whole site; < 1 partial)


@dataclass
class LinkCutConfig:
    """A cut of one link of the latency graph (between two site ids) from ``start_s``."""

    a: str = ""
    b: str = ""
    start_s: float = 0.0
    duration_s: float | None = None  # None = until the end of the run


@dataclass
class TierFailuresConfig:
    """Random whole-site failures of one tier: up ~ Exp(mtbf_s), then down ~ Exp(mttr_s)."""

    mtbf_s: float | None = None  # mean time between failures per site; None = never fails
    mttr_s: float = 1800.0  # mean time to repair


@dataclass
class RandomFailuresConfig:
    """Random failures per tier (seeded from the run seed)."""

    edge: TierFailuresConfig = field(default_factory=TierFailuresConfig)
    regional: TierFailuresConfig = field(default_factory=TierFailuresConfig)
    core: TierFailuresConfig = field(default_factory=TierFailuresConfig)


@dataclass
class FaultsConfig:
    """Site outages, link cuts and how requests caught by them fail over (off by default)."""

    outages: list[OutageConfig] = field(default_factory=list)
    links: list[LinkCutConfig] = field(default_factory=list)
    random: RandomFailuresConfig = field(default_factory=RandomFailuresConfig)
    detection_s: float = 0.0  # health checks every this many seconds (0 = failures seen at once)
    passive_detection: bool = False  # a request bouncing off a dead site marks it down at once
    retries: int = 2  # fail-overs allowed per request; then it ends failed
    retry_delay_s: float = 0.0  # back-off before a caught request is sent again


@dataclass
class OutputConfig:
    """Where and what a run writes."""

    dir: str = "results"
    write: bool = True
    figures: bool = True
    resume: bool = True  # skip a run whose complete folder already exists
    progress: bool | None = None  # None = only on a terminal


@dataclass
class SimConfig:
    """A whole run."""

    seed: int = 1
    duration_s: float = 300.0  # simulated seconds of arrivals
    load: float = 1.0  # multiplier on every arrival rate
    policy: str = "cheapest_feasible"
    start_utc_h: float = 19.0  # UTC hour of day at simulated time 0
    # Calendar day of simulated time 0 (ISO date): sets each city's UTC offset from its IANA
    # zone, daylight saving included (aigrid_sim.world.demand).
    start_date: str = "2026-01-15"
    warmup_s: float = 0.0  # requests arriving earlier are recorded but left out of metrics
    drain_s: float = 120.0  # simulated time after the last arrival; later ends are in_flight
    max_requests: int | None = None  # stop generating after this many requests
    plugins: list[str] = field(default_factory=list)  # modules imported first (user policies)
    name: str = "default"  # scenario name, for run folders
    world: WorldConfig = field(default_factory=WorldConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    params: dict[str, Any] = field(default_factory=dict)  # the scenario's own knobs


TIERS = ("edge", "regional", "core")
EDGE_SOURCES = ("cloudflare", "cities", "file")
SERVICE_KINDS = ("tokens", "exponential", "deterministic", "lognormal")
ARRIVAL_KINDS = ("poisson", "diurnal", "trace", "closed")
TRACE_FORMATS = ("azure", "mooncake", "servegen")
TIME_UNITS = ("datetime", "s", "ms", "us")

# ----------------------------------------------------------------------------- composition


SCENARIOS_PKG = "aigrid_sim.scenarios"
SCENARIOS_SEARCH_PATH = f"pkg://{SCENARIOS_PKG}"


def scenarios_dir() -> Path:
    """The shipped Hydra config tree (``aigrid_sim/scenarios/``, package data)."""
    from importlib.resources import files

    return Path(str(files(SCENARIOS_PKG)))


def user_scenarios_dir(config_dir: Path | str | None = None) -> Path | None:
    """A user's own scenario folder: ``config_dir`` if given, else ``$AIGRID_SCENARIOS``, else None.

    The folder has the shipped tree's layout (``scenario/NAME.yaml``, optionally ``apps/NAME.yaml``)
    and adds to it; it cannot replace a shipped file, so its scenarios need names of their own.

    Raises:
        ConfigError: the folder does not exist, or one of its scenarios has a shipped name.
    """
    given = config_dir if config_dir is not None else os.environ.get("AIGRID_SCENARIOS") or None
    if given is None:
        return None
    src = "AIGRID_SCENARIOS" if config_dir is None else "--config-dir"
    d = Path(given).expanduser().resolve()
    if not d.is_dir():
        raise ConfigError(f"{src} {str(given)!r}: no such folder (expected a folder holding "
                          "scenario/NAME.yaml files)")
    shipped = scenarios_dir()
    for sub in ("scenario", "apps"):
        for p in sorted((d / sub).glob("*.yaml")):
            if (shipped / sub / p.name).exists():
                raise ConfigError(
                    f"{p}: a shipped {sub} has this name and takes precedence; rename yours "
                    f"(shipped: {', '.join(sorted(q.stem for q in (shipped / sub).glob('*.yaml')))})"
                )
    return d


def available_scenarios(config_dir: Path | str | None = None) -> list[str]:
    """Names of the scenarios: the shipped ones plus those in the user's folder."""
    names = {p.stem for p in (scenarios_dir() / "scenario").glob("*.yaml")}
    user = user_scenarios_dir(config_dir)
    if user is not None:
        names |= {p.stem for p in (user / "scenario").glob("*.yaml")}
    return sorted(names)


def compose(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = (),
            config_dir: Path | str | None = None) -> DictConfig:
    """Compose a run's config as the CLI would (without Hydra's own ``hydra`` node).

    Hydra searches the shipped tree (``pkg://aigrid_sim.scenarios``), then ``config_dir`` (or
    ``$AIGRID_SCENARIOS``), a folder of your own scenarios: the same search path as
    ``aigrid-sim --config-dir FOLDER``.

    Raises:
        ConfigError: unknown scenario or key, or a malformed override.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException

    user = user_scenarios_dir(config_dir)
    if scenario not in available_scenarios(user):
        raise ConfigError(
            f"unknown scenario {scenario!r}; available: {', '.join(available_scenarios(user))}"
        )
    extra = [] if user is None else [f"hydra.searchpath=[file://{user}]"]
    try:
        with initialize_config_module(config_module=SCENARIOS_PKG, version_base=None):
            cfg = hydra_compose("config", overrides=[*extra, f"scenario={scenario}", *overrides])
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(clean_hydra_message(f"{e}\n{e.__cause__ or ''}")) from None
    return cfg


def clean_hydra_message(msg: str) -> str:
    """Shorten Hydra's override errors to the part a user needs."""
    m = re.search(r"Could not override '([^']+)'", msg) or \
        re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        hint = (f"; to add a parameter to a free-form section use '+{key}=...'"
                if ".params." in key else ". Check the spelling")
        return f"unknown key '{key}'{hint}"
    return msg.split("\n")[0]


# ----------------------------------------------------------------------------- validation

_INTERP = re.compile(r"\$\{\s*([A-Za-z_]\w*)")


def _referenced_top_keys(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for v in node.values():
            _referenced_top_keys(v, out)
    elif isinstance(node, list):
        for v in node:
            _referenced_top_keys(v, out)
    elif isinstance(node, str):
        out.update(_INTERP.findall(node))
    return out


def validate(cfg: DictConfig | dict) -> SimConfig:
    """Check a composed config against the schema and the rules below; return it typed.

    Raises:
        ConfigError: naming the key and what is allowed.
    """
    if isinstance(cfg, DictConfig):
        raw = OmegaConf.to_container(cfg, resolve=False)
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"cannot resolve config: {e}") from None
    else:
        raw = data = dict(cfg)
    raw.pop("hydra", None)
    data.pop("hydra", None)
    data.pop("defaults", None)
    known = set(SimConfig.__dataclass_fields__)
    referenced = _referenced_top_keys(raw, set())
    params = dict(data.get("params") or {})
    for key in list(data):
        if key not in known:
            if key in referenced:
                params[key] = data.pop(key)
            else:
                raise ConfigError(
                    f"unknown key '{key}'; top-level keys are: {', '.join(sorted(known))}"
                )
    data["params"] = params
    records = _take_records(data)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SimConfig), data)
        sim: SimConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        reason = str(e).split("\n")[0]
        if "not in" in reason:
            reason = "unknown key"
        raise ConfigError(f"key '{key}': {reason}") from None
    for key, items in records.items():
        setattr(sim.world, key, items)
    _check(sim)
    return sim


#: Lists of flat records converted without OmegaConf: its structured merge costs about 10 ms
#: per item (45 s for 4,600 inline sites), a direct conversion a few microseconds.
_RECORD_LISTS = {"sites": SiteConfig, "origins": OriginConfig}


def _take_records(data: dict) -> dict[str, list]:
    """Remove ``world.sites`` / ``world.origins`` from ``data``; return them as dataclasses."""
    world = data.get("world")
    out: dict[str, list] = {}
    if not isinstance(world, dict):
        return out
    for key, cls in _RECORD_LISTS.items():
        rows = world.get(key)
        if isinstance(rows, list) and rows:
            out[key] = _records(rows, cls, f"world.{key}")
            world[key] = []
    return out


def _records(rows: list, cls: type, key: str) -> list:
    """Items of a list of flat records as ``cls`` dataclasses, with OmegaConf's type rules."""
    fields = [f.name for f in dataclasses.fields(cls)]
    conv = {f.name: _converter(str(f.type)) for f in dataclasses.fields(cls)}
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ConfigError(f"key '{key}[{i}]': must be a mapping with keys "
                              f"{', '.join(fields)} (got {r!r})")
        kw = {}
        for k, v in r.items():
            c = conv.get(k)
            if c is None:
                raise ConfigError(f"key '{key}[{i}].{k}': unknown key; {cls.__name__} has "
                                  f"{', '.join(fields)}")
            try:
                kw[k] = c(v)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"key '{key}[{i}].{k}': {e}") from None
        out.append(cls(**kw))
    return out


def _converter(typ: str):
    """A function converting a YAML value to ``typ`` ("str", "float", "int", "... | None")."""
    optional = typ.replace(" ", "").endswith("|None")
    base = typ.split("|")[0].strip()

    def conv(v: Any) -> Any:
        if v is None:
            if optional:
                return None
            raise ValueError("must not be null")
        if isinstance(v, (dict, list)):
            raise ValueError(f"must be a {base}, not a {type(v).__name__}")
        if base == "str":
            return str(v)
        if isinstance(v, bool):
            raise ValueError(f"must be a {base} (got {v!r})")
        if base == "float":
            try:
                return float(v)
            except ValueError:
                raise ValueError(f"must be a number (got {v!r})") from None
        if base == "int":
            if isinstance(v, int):
                return v
            if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
                return int(v)
            raise ValueError(f"must be an integer (got {v!r})")
        return v

    return conv


def _need(cond: bool, key: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"key '{key}': {what}")


def _check(c: SimConfig) -> None:
    _need(c.duration_s > 0, "duration_s", f"must be > 0 (got {c.duration_s})")
    _need(c.load >= 0, "load", f"must be >= 0 (got {c.load})")
    _need(c.warmup_s >= 0, "warmup_s", f"must be >= 0 (got {c.warmup_s})")
    _need(c.drain_s >= 0, "drain_s", f"must be >= 0 (got {c.drain_s})")
    _need(0 <= c.seed < 2**63, "seed", f"must be a non-negative integer (got {c.seed})")
    _need(c.max_requests is None or c.max_requests > 0, "max_requests", "must be > 0 or null")
    from aigrid_sim.world.demand import parse_start_date

    c.start_date = parse_start_date(c.start_date).isoformat()  # ConfigError naming the key
    w = c.world
    _need(w.topology in ("grid", "custom"), "world.topology", "must be 'grid' or 'custom'")
    _need(w.network in ("geo", "zero"), "world.network", "must be 'geo' or 'zero'")
    _need(w.rtt_matrix in ("auto", "dense", "sparse"), "world.rtt_matrix",
          f"must be 'auto', 'dense' or 'sparse' (got {w.rtt_matrix!r})")
    e = w.edge
    _need(e.source in EDGE_SOURCES, "world.edge.source",
          f"must be one of {EDGE_SOURCES} (got {e.source!r})")
    _need(e.source != "file" or bool(e.file), "world.edge.file",
          "needs a CSV path when world.edge.source is 'file'")
    _need(e.file is None or e.source == "file", "world.edge.file",
          f"is read only with world.edge.source=file (source is {e.source!r})")
    _need(e.pops is None or e.source == "cloudflare", "world.edge.pops",
          f"selects Cloudflare PoPs by IATA code; it needs world.edge.source=cloudflare "
          f"(source is {e.source!r}; use world.edge.countries to filter)")
    _need(e.min_population >= 1, "world.edge.min_population", "must be >= 1")
    for tier in TIERS:
        t: TierConfig = getattr(w, tier)
        _need(t.gpus > 0, f"world.{tier}.gpus", f"must be > 0: a site needs GPUs (got {t.gpus})")
        _need(t.max_queue >= 0, f"world.{tier}.max_queue", "must be >= 0")
    for i, s in enumerate(w.sites):
        _need(s.gpus > 0, f"world.sites[{i}].gpus", f"must be > 0 (site {s.id!r} got {s.gpus})")
        _need(s.tier in TIERS, f"world.sites[{i}].tier", f"must be one of {TIERS}")
        _need(s.max_queue >= 0, f"world.sites[{i}].max_queue", "must be >= 0")
    for key in ("sized_gpus", "site_gpus"):
        for sid, g in (getattr(w, key) or {}).items():
            _need(g > 0, f"world.{key}.{sid}", f"must be > 0: a site needs GPUs (got {g})")
    _need(w.cities.max_cities is None or w.cities.max_cities >= 0, "world.cities.max_cities",
          "must be >= 0 or null")
    _need(w.cities.access_ms >= 0, "world.cities.access_ms", "must be >= 0")
    _need(w.cities.pops_per_city >= 1, "world.cities.pops_per_city", "must be >= 1")
    wl = c.workload
    _need(wl.rate_rps >= 0, "workload.rate_rps", f"must be >= 0 (got {wl.rate_rps})")
    _need(wl.arrivals.kind in ARRIVAL_KINDS, "workload.arrivals.kind",
          f"must be one of {ARRIVAL_KINDS} (got {wl.arrivals.kind!r})")
    if wl.arrivals.curve is not None:
        _need(len(wl.arrivals.curve) == 24 and min(wl.arrivals.curve) >= 0
              and sum(wl.arrivals.curve) > 0, "workload.arrivals.curve",
              "must be 24 non-negative hourly multipliers, not all zero")
    _check_arrivals(c)
    _need(len(wl.apps) > 0, "workload.apps", "needs at least one app")
    names = [a.name for a in wl.apps]
    _need(len(set(names)) == len(names), "workload.apps", f"app names must be unique: {names}")
    for i, a in enumerate(wl.apps):
        k = f"workload.apps[{i}]"
        _need(a.share > 0, f"{k}.share", f"must be > 0 (app {a.name!r} got {a.share})")
        _need(a.capability >= 1, f"{k}.capability", "must be >= 1")
        _need(a.slo_ms > 0, f"{k}.slo_ms", "must be > 0")
        _need(a.slo_on in ("e2e", "ttft"), f"{k}.slo_on", "must be 'e2e' or 'ttft'")
        _need(a.service.kind in SERVICE_KINDS, f"{k}.service.kind",
              f"must be one of {SERVICE_KINDS} (got {a.service.kind!r})")
        if a.service.kind != "tokens":
            _need(a.service.mean_s > 0, f"{k}.service.mean_s", "must be > 0")
            _need(a.slo_on == "e2e", f"{k}.slo_on", "must be 'e2e' for non-generative apps")
        else:
            _need(a.tokens.in_mean >= 1 and a.tokens.out_mean >= 1, f"{k}.tokens",
                  "in_mean and out_mean must be >= 1")
        sp = a.system_prompt_tokens
        _need(sp >= 0, f"{k}.system_prompt_tokens", f"must be >= 0 (got {sp})")
        if sp:
            _need(a.service.kind == "tokens", f"{k}.system_prompt_tokens",
                  "only generative apps (service.kind: tokens) have prompts")
            _need(sp < a.tokens.in_mean and sp < a.tokens.in_max, f"{k}.system_prompt_tokens",
                  f"a prefix longer than the prompt: {sp} tokens, but tokens.in_mean is "
                  f"{a.tokens.in_mean:g} (and in_max {a.tokens.in_max})")
        _need(a.service.cv >= 0, f"{k}.service.cv", "must be >= 0")
    r = c.routing
    _need(r.k_nearest >= 1, "routing.k_nearest", "must be >= 1")
    _need(r.staleness_s >= 0, "routing.staleness_s", "must be >= 0")
    from aigrid_sim.sim.policies import load_plugins, make_policy  # late: policies import config

    load_plugins(c.plugins)
    make_policy(c.policy, r.params)  # unknown policy or parameters -> ConfigError
    _check_faults(c.faults)


def _check_faults(f: FaultsConfig) -> None:
    _need(f.detection_s >= 0, "faults.detection_s", f"must be >= 0 (got {f.detection_s})")
    _need(0 <= f.retries <= 100, "faults.retries", f"must be 0..100 (got {f.retries})")
    _need(f.retry_delay_s >= 0, "faults.retry_delay_s", f"must be >= 0 (got {f.retry_delay_s})")
    for i, o in enumerate(f.outages):
        k = f"faults.outages[{i}]"
        _need(any(x is not None for x in (o.site, o.metro, o.country, o.tier)), k,
              "needs at least one of site, metro, country, tier")
        _need(o.tier is None or o.tier in TIERS, f"{k}.tier", f"must be one of {TIERS}")
        _need(o.start_s >= 0, f"{k}.start_s", f"must be >= 0 (got {o.start_s})")
        _need(o.duration_s is None or o.duration_s > 0, f"{k}.duration_s", "must be > 0 or null")
        _need(0 < o.fraction <= 1, f"{k}.fraction", f"must be in (0, 1] (got {o.fraction})")
        _need(o.radius_km >= 0, f"{k}.radius_km", "must be >= 0")
    for i, link in enumerate(f.links):
        k = f"faults.links[{i}]"
        _need(bool(link.a) and bool(link.b) and link.a != link.b, k,
              "needs two different site ids a and b")
        _need(link.start_s >= 0, f"{k}.start_s", f"must be >= 0 (got {link.start_s})")
        _need(link.duration_s is None or link.duration_s > 0, f"{k}.duration_s",
              "must be > 0 or null")
    for tier in TIERS:
        t: TierFailuresConfig = getattr(f.random, tier)
        _need(t.mtbf_s is None or t.mtbf_s > 0, f"faults.random.{tier}.mtbf_s",
              "must be > 0 or null")
        _need(t.mttr_s > 0, f"faults.random.{tier}.mttr_s", f"must be > 0 (got {t.mttr_s})")


def _check_arrivals(c: SimConfig) -> None:
    """Bursts, flash crowds and trace replay settings."""
    a = c.workload.arrivals
    if a.kind == "closed":
        _need(a.concurrency >= 1, "workload.arrivals.concurrency",
              f"must be >= 1 for arrivals.kind=closed (got {a.concurrency})")
        _need(c.max_requests is not None and c.max_requests >= 1, "max_requests",
              "a closed loop (arrivals.kind=closed) needs max_requests >= 1")
    mm = a.mmpp
    _need(mm.scope in ("global", "region"), "workload.arrivals.mmpp.scope",
          f"must be 'global' or 'region' (got {mm.scope!r})")
    _need(len(mm.states) != 1, "workload.arrivals.mmpp.states",
          "needs at least 2 states (or none to switch bursts off)")
    for i, st in enumerate(mm.states):
        k = f"workload.arrivals.mmpp.states[{i}]"
        _need(st.rate >= 0, f"{k}.rate", f"must be >= 0 (got {st.rate})")
        _need(st.mean_sojourn_s > 0, f"{k}.mean_sojourn_s",
              f"must be > 0 (got {st.mean_sojourn_s})")
    if mm.states:
        _need(sum(st.rate for st in mm.states) > 0, "workload.arrivals.mmpp.states",
              "rates must not all be 0")
    for i, f in enumerate(a.flash_crowds):
        k = f"workload.arrivals.flash_crowds[{i}]"
        _need(f.factor >= 0, f"{k}.factor", f"must be >= 0 (got {f.factor})")
        for name in ("ramp_up_s", "duration_s", "ramp_down_s"):
            v = getattr(f, name)
            _need(v >= 0, f"{k}.{name}", f"must be >= 0 (got {v})")
    t = c.trace
    if a.kind == "trace":
        _need(t.format in TRACE_FORMATS, "trace.format",
              f"must be one of {TRACE_FORMATS} (got {t.format!r})")
        _need(not mm.states and not a.flash_crowds, "workload.arrivals",
              "mmpp and flash_crowds modulate synthetic arrivals; they cannot be combined with "
              "kind 'trace' (use trace.scale / trace.speedup)")
    _need(t.columns.time_unit is None or t.columns.time_unit in TIME_UNITS,
          "trace.columns.time_unit", f"must be one of {TIME_UNITS} (got {t.columns.time_unit!r})")
    _need(t.start_s >= 0, "trace.start_s", f"must be >= 0 (got {t.start_s})")
    _need(t.end_s is None or t.end_s > t.start_s, "trace.end_s",
          f"must be > trace.start_s ({t.start_s}) or null (got {t.end_s})")
    _need(t.speedup > 0, "trace.speedup", f"must be > 0 (got {t.speedup})")
    _need(t.scale >= 0, "trace.scale", f"must be >= 0 (got {t.scale})")
    _need(t.repeat >= 1, "trace.repeat", f"must be >= 1 (got {t.repeat})")
