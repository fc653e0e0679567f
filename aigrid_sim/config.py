"""Structured configuration: the schema every scenario is checked against, and composition.

Scenarios live in the Hydra config tree ``aigrid_sim/scenarios/`` (package data, composed from
``pkg://aigrid_sim.scenarios``; ``config.yaml`` holds the defaults, ``scenario/NAME.yaml`` overrides
only what differs). A user's own scenario folder is searched too (see :func:`compose`).
:func:`compose` builds a run's config the same way the CLI does; :func:`validate` turns it into a
typed :class:`SimConfig` or raises one
:class:`~aigrid_sim.errors.ConfigError` naming the key and what is allowed.

A scenario may declare extra top-level knobs of its own (``mmc`` has ``servers``, ``arrival_rate``,
...) provided it uses them through interpolation (``${servers}``) elsewhere in its config; any other
unknown key is an error.
"""

from __future__ import annotations

import dataclasses
import math
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
    # RTT model of every edge between two sites: backbone (private cloud/CDN backbone) |
    # internet (the public-Internet model users get; for comparison studies).
    site_path: str = "backbone"


@dataclass
class WorldConfig:
    """Sites, origins and the network between them."""

    topology: str = "grid"  # grid (real PoPs/regions/cities) | custom (sites/origins below)
    catalog: str | None = None  # your GPU/model catalogue YAML; None = the shipped one
    network: str = "geo"  # geo (RTT model) | zero (no network delay; queueing studies)
    # serving: a regional study (cities.countries set) keeps only the sites on its continents
    # (and the nearest site of a tier left empty); all: every site the tier filters keep
    keep_sites: str = "serving"
    # auto: a dense origins x sites RTT matrix for small worlds, per-origin nearest sites for big
    # ones (thousands of sites); dense | sparse force one (same candidates, same round trips).
    rtt_matrix: str = "auto"
    # Admission of every replica's scheduler: forecast (admits only what fits at every future
    # step, never preempts) | vllm (admits on free memory, preempts by recompute); None = the
    # catalogue's (forecast).
    admission: str | None = None
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
class DifficultyConfig:
    """A cascade app's per-request difficulty: Beta(alpha, beta) on [0, 1]."""

    alpha: float = 2.0
    beta: float = 5.0


@dataclass
class CascadeConfig:
    """Serve an app as a cascade: a small model answers first, some requests are escalated.

    The first attempt needs the app's ``capability`` (the small model, usually at the edge);
    an escalated request is sent again, after the first answer is back at its origin, to a site
    hosting ``capability`` (by default the biggest model of ``to_tier``), paying both trips and
    both services (aigrid_sim/sim/cascade.py).
    """

    to_tier: str | None = None  # tier escalated requests go to (null = no cascade): regional | core
    capability: int | None = None  # escalated requests need this; null = the biggest at to_tier
    mode: str = "fixed"  # fixed | length | difficulty
    fraction: float = 0.2  # fixed: share of requests escalated (drawn per request)
    length_tokens: int = 2000  # length: prompts longer than this are escalated
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    threshold: float = 0.7  # difficulty: escalated when the confidence 1 - difficulty is below


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
    # The max_tokens its clients declare: what a replica's `forecast` admission plans each
    # request's output with (a request producing more is planned at its own length). None =
    # each request's own output length, as a benchmark sets max_tokens.
    max_tokens: int | None = None
    # Data residency: areas (ISO country code, group such as EU, or continent); a request from
    # a city inside one of them is served only by sites inside that same area.
    sovereignty: list[str] = field(default_factory=list)
    # Prompt-aware escalation: a small model first, some requests escalated (CascadeConfig).
    cascade: CascadeConfig = field(default_factory=CascadeConfig)


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
    # Where requests come from: internet_users (population x share online, World Bank/ITU) |
    # population. See aigrid_sim.world.demand.
    demand: str = "internet_users"
    # Optional CSV of your own weights: columns weight + country (ISO alpha-2) or city.
    demand_csv: str | None = None
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
class SliceConfig:
    """One time slice of a longer study (e.g. hour ``index`` of a day), with a warm-up overlap.

    With ``index`` set, the run covers ``[index * length_s - warmup_s, (index + 1) * length_s)``
    of the day that starts at ``start_utc_h``: its ``start_utc_h``, ``duration_s`` and
    ``warmup_s`` are set from these (``aigrid-sim --multirun slice.index=range(0,24)``, then
    ``aigrid-sim-report DIR --merge``).
    """

    index: int | None = None
    length_s: float = 3600.0
    warmup_s: float = 600.0


@dataclass
class PriceConfig:
    """What a tenant pays per million tokens served at one tier, USD."""

    in_per_m: float = 0.0
    out_per_m: float = 0.0


@dataclass
class QuotaConfig:
    """A tenant's admission quota per tier (or per site of a tier): a rate, a concurrency, or both.

    ``rate_rps``/``burst`` is a token bucket; ``max_concurrency`` caps the tenant's requests held
    at once (routed there and not yet ended). At least one of ``rate_rps`` and
    ``max_concurrency`` must be given.
    """

    tier: str = "edge"
    rate_rps: float | None = None  # sustained requests per second admitted (null: no rate cap)
    burst: float = 1.0  # bucket size, requests
    max_concurrency: int | None = None  # requests held at once (null: no concurrency cap)
    per_site: bool = False  # one bucket per site of the tier (else one for the whole tier)


@dataclass
class TenantConfig:
    """A tenant of the grid: the apps it owns, its quotas, priority, residency and prices."""

    name: str = "tenant"
    apps: list[str] = field(default_factory=list)
    priority: int = 0  # higher is admitted first (own queue order inside each priority)
    sovereignty: list[str] = field(default_factory=list)  # applies to its apps that set none
    quotas: list[QuotaConfig] = field(default_factory=list)
    prices: dict[str, PriceConfig] = field(default_factory=dict)  # tier -> price
    sla_penalty_usd: float = 0.0  # per request that misses its SLO (not counting throttled)


@dataclass
class OutputConfig:
    """Where and what a run writes."""

    dir: str = "results"
    write: bool = True
    figures: bool = True
    resume: bool = True  # skip a run whose complete folder already exists
    progress: bool | None = None  # None: a bar on a terminal, a line a minute in a log
    requests: str = "all"  # requests.parquet: all | sample | none (summary stays exact/sketched)
    sample_fraction: float = 0.01  # share of requests written when requests=sample
    requests_order: str = "arrival"  # rows of requests.parquet: arrival | end (less memory)
    window_s: float = 60.0  # arrivals generated and ended requests flushed every this many s
    time_bin_s: float | None = None  # online summary time bins; None = 60 s (< 1 h runs: finer)


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
    slice: SliceConfig = field(default_factory=SliceConfig)  # one slice of a longer study
    tenants: list[TenantConfig] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # the scenario's own knobs


TIERS = ("edge", "regional", "core")
EDGE_SOURCES = ("cloudflare", "cities", "file")
SERVICE_KINDS = ("tokens", "exponential", "deterministic", "lognormal")
ARRIVAL_KINDS = ("poisson", "diurnal", "trace", "closed")
TRACE_FORMATS = ("azure", "mooncake", "servegen")
TIME_UNITS = ("datetime", "s", "ms", "us")
REQUEST_MODES = ("all", "sample", "none")
REQUEST_ORDERS = ("arrival", "end")

# ----------------------------------------------------------------------------- domains
#
# Every leaf key's domain, declared once. Keys are dotted paths; ``[]`` stands for any list
# index and ``*`` for any key of a free-form mapping. A key not listed gets the generic checks
# only: numbers finite, floats within +-MAX_ABS_FLOAT, integers within +-MAX_ABS_INT. Adding a
# key to the schema = one line here (tests/test_config_fuzz.py checks every leaf has one).


@dataclass(frozen=True)
class Dom:
    """The values a key accepts: a numeric range, a set of names, or a non-empty list/string."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    nonempty: bool = False  # lists and strings (None stays allowed where the type allows it)
    note: str = ""  # why, shown after the rule

    def error(self, v: Any) -> str | None:
        """Why ``v`` is outside the domain, or None."""
        if v is None:
            return None
        if self.choices is not None:
            return None if v in self.choices else \
                f"must be one of {', '.join(map(str, self.choices))} (got {v!r})"
        if self.nonempty and isinstance(v, (str, list, tuple, dict)) and len(v) == 0:
            return "must not be empty" + (" (give null for the default)" if
                                          isinstance(v, (list, tuple)) else "")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            low = self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo))
            high = self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi))
            if low or high:
                parts = []
                if self.lo is not None:
                    parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
                if self.hi is not None:
                    parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
                note = f": {self.note}" if self.note else ""
                return f"must be {' and '.join(parts)}{note} (got {v})"
        return None


POS = Dom(lo=0, lo_open=True)  # > 0
NONNEG = Dom(lo=0)  # >= 0
ONE_UP = Dom(lo=1)  # >= 1
ANY = Dom()  # generic checks only (free text, flags)
NONEMPTY = Dom(nonempty=True)


def one_of(*names: str) -> Dom:
    """A key that takes one of ``names``."""
    return Dom(choices=tuple(names))


MAX_ABS_FLOAT = 1e12  # seconds (31,700 years), requests per second, ms, km, ...
MAX_ABS_INT = 2**31 - 1  # GPUs, tokens, queue lengths, counts

GPUS = Dom(lo=0, lo_open=True, note="a site needs GPUs")
_TIER = {"gpu": NONEMPTY, "model": NONEMPTY, "gpus": GPUS, "max_queue": NONNEG,
         "max_batch": ONE_UP}
_FLASH = {"region": NONEMPTY, "countries": NONEMPTY, "cities": NONEMPTY, "start_s": NONNEG,
          "ramp_up_s": NONNEG, "duration_s": NONNEG, "ramp_down_s": NONNEG, "factor": NONNEG}

DOMAINS: dict[str, Dom] = {
    "seed": Dom(0, 2**63 - 1), "duration_s": POS, "load": NONNEG,
    "policy": NONEMPTY, "start_utc_h": Dom(0, 24, hi_open=True), "warmup_s": NONNEG,
    "drain_s": NONNEG, "max_requests": ONE_UP, "start_date": NONEMPTY,
    "plugins": ANY, "plugins[]": NONEMPTY,
    "name": NONEMPTY, "params.*": ANY,
    # world
    "world.topology": one_of("grid", "custom"), "world.catalog": NONEMPTY,
    "world.rtt_matrix": one_of("auto", "dense", "sparse"),
    "world.admission": one_of("forecast", "vllm"),
    "world.edge.source": one_of(*EDGE_SOURCES), "world.edge.file": NONEMPTY,
    "world.edge.min_population": ONE_UP,
    "world.network": one_of("geo", "zero"),
    "world.keep_sites": one_of("serving", "all"),
    "world.cities.min_population": NONNEG,
    "world.cities.max_cities": NONNEG,  # 0 = only world.origins
    "world.cities.countries": ANY, "world.cities.countries[]": NONEMPTY,
    "world.cities.access_ms": NONNEG,
    "world.cities.pops_per_city": Dom(1, 20, note="users enter the grid at their few nearest PoPs"),
    **{f"world.{t}.{k}": d for t in TIERS for k, d in _TIER.items()},
    # [] = no site of the tier (ai_factory has no edge and no regional sites)
    "world.edge.pops": ANY, "world.edge.pops[]": NONEMPTY,
    "world.edge.countries": ANY, "world.edge.countries[]": NONEMPTY,
    "world.regional.providers": ANY, "world.regional.providers[]": NONEMPTY,
    "world.regional.regions": ANY, "world.regional.regions[]": NONEMPTY,
    "world.regional.merge_km": NONNEG,
    "world.core.sites": NONEMPTY, "world.core.sites[]": NONEMPTY,
    "world.sites[].id": NONEMPTY, "world.sites[].tier": one_of(*TIERS),
    "world.sites[].lat": Dom(-90, 90), "world.sites[].lon": Dom(-180, 180),
    "world.sites[].country": NONEMPTY, "world.sites[].gpu": NONEMPTY,
    "world.sites[].model": NONEMPTY, "world.sites[].gpus": GPUS,
    "world.sites[].max_queue": NONNEG, "world.sites[].max_batch": ONE_UP,
    "world.origins[].name": NONEMPTY, "world.origins[].lat": Dom(-90, 90),
    "world.origins[].lon": Dom(-180, 180), "world.origins[].country": NONEMPTY,
    "world.origins[].population": NONNEG, "world.origins[].utc_offset_h": Dom(-14, 14),
    "world.origins[].timezone": NONEMPTY,
    "world.graph.site_path": one_of("backbone", "internet"),
    "world.graph.neighbours": ONE_UP, "world.graph.mesh_tiers[]": one_of(*TIERS),
    "world.site_gpus.*": GPUS, "world.sized_gpus.*": GPUS,
    # containers (their items have their own lines)
    **{k: ANY for k in ("world.sites", "world.origins", "world.site_gpus", "world.sized_gpus",
                        "world.graph.mesh_tiers", "workload.arrivals.curve",
                        "workload.arrivals.flash_crowds", "workload.arrivals.mmpp.states",
                        "workload.arrivals.mmpp.transitions", "faults.outages", "faults.links")},
    # workload
    "workload.demand": one_of("population", "internet_users"),
    "workload.demand_csv": NONEMPTY,
    "workload.rate_rps": NONNEG, "workload.arrivals.kind": one_of(*ARRIVAL_KINDS),
    "workload.arrivals.curve[]": NONNEG,
    "workload.arrivals.mmpp.states[].rate": NONNEG,
    "workload.arrivals.mmpp.states[].mean_sojourn_s": POS,
    "workload.arrivals.mmpp.transitions[][]": NONNEG,
    "workload.arrivals.mmpp.scope": one_of("global", "region"),
    "workload.arrivals.concurrency": NONNEG,  # 0 = open loop; kind closed needs >= 1
    **{f"workload.arrivals.flash_crowds[].{k}": d for k, d in _FLASH.items()},
    "workload.arrivals.flash_crowds[].countries[]": NONEMPTY,
    "workload.arrivals.flash_crowds[].cities[]": NONEMPTY,
    "workload.apps": NONEMPTY, "workload.apps[].name": NONEMPTY, "workload.apps[].share": POS,
    "workload.apps[].capability": ONE_UP, "workload.apps[].slo_ms": POS,
    "workload.apps[].slo_on": one_of("e2e", "ttft"),
    "workload.apps[].service.kind": one_of(*SERVICE_KINDS),
    "workload.apps[].service.mean_s": NONNEG, "workload.apps[].service.cv": NONNEG,
    "workload.apps[].tokens.in_mean": ONE_UP, "workload.apps[].tokens.in_cv": NONNEG,
    "workload.apps[].tokens.out_mean": ONE_UP, "workload.apps[].tokens.out_cv": NONNEG,
    "workload.apps[].tokens.in_max": ONE_UP, "workload.apps[].tokens.out_max": ONE_UP,
    "workload.apps[].system_prompt_tokens": NONNEG, "workload.apps[].max_tokens": ONE_UP,
    "workload.apps[].sovereignty": ANY, "workload.apps[].sovereignty[]": NONEMPTY,
    "workload.apps[].cascade.to_tier": one_of("regional", "core"),
    "workload.apps[].cascade.capability": ONE_UP,
    "workload.apps[].cascade.mode": one_of("fixed", "length", "difficulty"),
    "workload.apps[].cascade.fraction": Dom(0, 1), "workload.apps[].cascade.length_tokens": NONNEG,
    "workload.apps[].cascade.difficulty.alpha": POS, "workload.apps[].cascade.difficulty.beta": POS,
    "workload.apps[].cascade.threshold": Dom(0, 1),
    # tenants (cross-key rules in _check_tenants)
    "tenants": ANY, "tenants[].name": NONEMPTY, "tenants[].apps": ANY,
    "tenants[].apps[]": NONEMPTY, "tenants[].priority": ANY, "tenants[].sovereignty": ANY,
    "tenants[].sovereignty[]": NONEMPTY, "tenants[].quotas": ANY,
    "tenants[].quotas[].tier": one_of(*TIERS), "tenants[].quotas[].rate_rps": NONNEG,
    "tenants[].quotas[].burst": ONE_UP, "tenants[].quotas[].per_site": ANY,
    "tenants[].quotas[].max_concurrency": NONNEG,
    "tenants[].prices": ANY, "tenants[].sla_penalty_usd": NONNEG,
    # trace
    "trace.path": NONEMPTY, "trace.format": one_of(*TRACE_FORMATS),
    **{f"trace.columns.{k}": NONEMPTY for k in ("time", "in_tokens", "out_tokens", "origin",
                                                "rate")},
    "trace.columns.time_unit": one_of(*TIME_UNITS), "trace.start_s": NONNEG,
    "trace.end_s": POS, "trace.speedup": POS, "trace.scale": NONNEG, "trace.repeat": ONE_UP,
    "trace.skip_bad_rows": ANY,
    # routing
    "routing.k_nearest": ONE_UP, "routing.staleness_s": NONNEG, "routing.params.*": ANY,
    # faults
    "faults.outages[].site": NONEMPTY, "faults.outages[].metro": NONEMPTY,
    "faults.outages[].radius_km": NONNEG, "faults.outages[].country": NONEMPTY,
    "faults.outages[].tier": one_of(*TIERS), "faults.outages[].start_s": NONNEG,
    "faults.outages[].duration_s": POS, "faults.outages[].fraction": Dom(0, 1, lo_open=True),
    "faults.links[].a": NONEMPTY, "faults.links[].b": NONEMPTY,
    "faults.links[].start_s": NONNEG, "faults.links[].duration_s": POS,
    **{f"faults.random.{t}.{k}": POS for t in TIERS for k in ("mtbf_s", "mttr_s")},
    "faults.detection_s": NONNEG, "faults.passive_detection": ANY,
    "faults.retries": Dom(0, 100), "faults.retry_delay_s": NONNEG,
    # output
    "output.dir": NONEMPTY, "output.write": ANY, "output.figures": ANY, "output.resume": ANY,
    "output.progress": ANY, "output.requests": Dom(choices=REQUEST_MODES),
    "output.requests_order": Dom(choices=REQUEST_ORDERS),
    "output.sample_fraction": Dom(0, 1, lo_open=True), "output.window_s": POS,
    "output.time_bin_s": POS, "slice.index": NONNEG, "slice.length_s": POS,
    "slice.warmup_s": NONNEG,
}

_INDEX = re.compile(r"\[\d+\]")


def domain_of(path: str) -> Dom | None:
    """The declared domain of a concrete key path (``workload.apps[2].share``), if any."""
    pattern = _INDEX.sub("[]", path)
    d = DOMAINS.get(pattern)
    if d is None and "." in pattern:  # free-form mappings: world.site_gpus.<id>
        head, _, _ = pattern.rpartition(".")
        d = DOMAINS.get(head + ".*")
    return d


def leaves(obj: Any, path: str = "") -> Any:
    """Yield ``(path, value)`` for every leaf of a typed config (lists and mappings included)."""
    import dataclasses

    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from leaves(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(obj, (list, tuple)):
        yield path, obj
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(obj, dict):
        yield path, obj
        for k, v in obj.items():
            yield from leaves(v, f"{path}.{k}")
    else:
        yield path, obj


def check_domains(c: SimConfig) -> None:
    """The one pass over every key: finite numbers, magnitudes, declared domains.

    Raises:
        ConfigError: naming the first key outside its domain.
    """
    for path, v in leaves(c):
        if isinstance(v, float):
            _need(math.isfinite(v), path, f"must be a finite number (got {v})")
            _need(abs(v) <= MAX_ABS_FLOAT, path, f"must be within +-{MAX_ABS_FLOAT:g} (got {v:g})")
        elif isinstance(v, int) and not isinstance(v, bool) and path != "seed":
            _need(abs(v) <= MAX_ABS_INT, path, f"must be within +-{MAX_ABS_INT:,} (got {v:,})")
        d = domain_of(path)
        if d is not None:
            why = d.error(v)
            if why:
                raise ConfigError(f"key '{path}': {why}")


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
                names = ", ".join(sorted(q.stem for q in (shipped / sub).glob("*.yaml")))
                raise ConfigError(
                    f"{p}: a shipped {sub} has this name and takes precedence; rename yours "
                    f"(shipped: {names})"
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
    check_config_tree(scenarios_dir())
    if user is not None:
        check_config_tree(user)
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


# What a scenario file may set under ``hydra:``: how a sweep runs (launcher, sweeper, sweep
# folders). Anything else there (callbacks, job.env_set, a _target_ outside hydra_plugins) could
# run code or change the environment, so it is refused. The root config.yaml may also name the
# job, set the help text and where a single run's Hydra output goes.
HYDRA_ALLOWED = frozenset({"launcher", "sweeper", "sweep"})
HYDRA_ALLOWED_ROOT = HYDRA_ALLOWED | {"job", "help", "run", "output_subdir"}
HYDRA_JOB_ALLOWED = frozenset({"name", "chdir"})
HYDRA_GROUPS_ALLOWED = frozenset({"launcher", "sweeper", "job_logging", "hydra_logging"})
_TREE_OK: dict[tuple[str, int, float], bool] = {}


def check_config_tree(cdir: Path) -> None:
    """Refuse ``hydra.*`` settings a scenario file must not give itself (see HYDRA_ALLOWED).

    Checks every YAML file of the config tree (cached per file and modification time).

    Raises:
        ConfigError: naming the file and the key.
    """
    import yaml

    for f in sorted(Path(cdir).rglob("*.y*ml")):
        st = f.stat()
        k = (str(f), st.st_size, st.st_mtime)
        if k in _TREE_OK:
            continue
        try:
            doc = yaml.safe_load(f.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{f}: not valid YAML ({str(e).splitlines()[0]})") from None
        check_hydra_section(doc, str(f), root=f.parent == Path(cdir) and f.stem == "config")
        _TREE_OK[k] = True


def check_hydra_section(doc: Any, where: str, root: bool = False) -> None:
    """Refuse hydra keys, hydra config groups and ``_target_`` values a scenario cannot set."""
    if not isinstance(doc, dict):
        return
    for entry in doc.get("defaults") or []:
        items = entry.items() if isinstance(entry, dict) else [(entry, None)]
        for key, _ in items:
            key = str(key).replace("override ", "").strip().lstrip("/")
            if key.startswith("hydra/") and key.split("/")[1] not in HYDRA_GROUPS_ALLOWED:
                raise ConfigError(f"{where}: defaults entry '{key}' is not allowed in a scenario "
                                  f"file (only hydra/launcher and hydra/sweeper)")
    h = doc.get("hydra")
    if h is None:
        _no_targets(doc, where, "")
        return
    if not isinstance(h, dict):
        raise ConfigError(f"{where}: key 'hydra' must be a mapping")
    allowed = HYDRA_ALLOWED_ROOT if root else HYDRA_ALLOWED
    for k, v in h.items():
        if k not in allowed:
            raise ConfigError(f"{where}: key 'hydra.{k}' is not allowed in a scenario file; "
                              f"only hydra.{', hydra.'.join(sorted(allowed))}")
        if k == "job" and isinstance(v, dict):
            bad = sorted(set(v) - HYDRA_JOB_ALLOWED)
            if bad:
                raise ConfigError(f"{where}: key 'hydra.job.{bad[0]}' is not allowed in a "
                                  f"scenario file")
    _no_targets(doc, where, "")


def _no_targets(node: Any, where: str, path: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if k == "_target_" and not (isinstance(v, str) and v.startswith("hydra_plugins.")
                                        and p.startswith("hydra.")):
                raise ConfigError(f"{where}: key '{p}' ({v!r}) is not allowed: a scenario file "
                                  f"cannot name code to instantiate")
            _no_targets(v, where, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _no_targets(v, where, f"{path}[{i}]")


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
        key = _full_key(data, getattr(e, "full_key", None) or "", getattr(e, "value", None))
        reason = str(e).split("\n")[0]
        if "not in" in reason:
            reason = "unknown key"
        raise ConfigError(f"key '{key}': {reason}") from None
    for key, items in records.items():
        setattr(sim.world, key, items)
    _check(sim)
    _apply_slice(sim)
    return sim


def _apply_slice(c: SimConfig) -> None:
    """Turn ``slice.index`` into the slice's start, duration and warm-up (see SliceConfig)."""
    sl = c.slice
    if sl.index is None:
        return
    _need(sl.index >= 0, "slice.index", f"must be >= 0 (got {sl.index})")
    _need(sl.length_s > 0, "slice.length_s", f"must be > 0 (got {sl.length_s})")
    _need(sl.warmup_s >= 0, "slice.warmup_s", f"must be >= 0 (got {sl.warmup_s})")
    start = sl.index * sl.length_s - sl.warmup_s
    c.start_utc_h = c.start_utc_h + start / 3600.0
    c.duration_s = sl.length_s + sl.warmup_s
    c.warmup_s = sl.warmup_s


def _full_key(data: Any, key: str, value: Any) -> str:
    """The full path of a bad value: OmegaConf names keys inside list items relative to the item."""
    if not key:
        return key

    def walk(node: Any, path: str):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}]")
        else:
            yield path, node

    hits = [p for p, v in walk(data, "") if (p == key or p.endswith("." + key))
            and (str(v) == str(value) or value is None)]
    return hits[0] if len(hits) >= 1 and key not in hits else key


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
    """Domains of every key, then the rules that tie keys together."""
    check_domains(c)
    from aigrid_sim.world.demand import parse_start_date

    c.start_date = parse_start_date(c.start_date).isoformat()  # ConfigError naming the key
    w = c.world
    e = w.edge
    _need(e.source != "file" or bool(e.file), "world.edge.file",
          "needs a CSV path when world.edge.source is 'file'")
    _need(e.file is None or e.source == "file", "world.edge.file",
          f"is read only with world.edge.source=file (source is {e.source!r})")
    _need(e.pops is None or e.source == "cloudflare", "world.edge.pops",
          f"selects Cloudflare PoPs by IATA code; it needs world.edge.source=cloudflare "
          f"(source is {e.source!r}; use world.edge.countries to filter)")
    if w.topology == "custom":
        _need(bool(w.origins), "world.origins", "a custom world needs at least one origin")
    if c.workload.arrivals.curve is not None:
        curve = c.workload.arrivals.curve
        _need(len(curve) == 24 and sum(curve) > 0, "workload.arrivals.curve",
              "must be 24 non-negative hourly multipliers, not all zero")
    _check_arrivals(c)
    wl = c.workload
    names = [a.name for a in wl.apps]
    _need(len(set(names)) == len(names), "workload.apps", f"app names must be unique: {names}")
    for i, a in enumerate(wl.apps):
        k = f"workload.apps[{i}]"
        if a.service.kind != "tokens":
            _need(a.service.mean_s > 0, f"{k}.service.mean_s",
                  f"must be > 0 for service.kind {a.service.kind!r} (got {a.service.mean_s})")
            _need(a.slo_on == "e2e", f"{k}.slo_on", "must be 'e2e' for non-generative apps")
        else:
            _need(a.tokens.in_mean <= a.tokens.in_max, f"{k}.tokens.in_mean",
                  f"must be <= tokens.in_max ({a.tokens.in_max}) (got {a.tokens.in_mean})")
            _need(a.tokens.out_mean <= a.tokens.out_max, f"{k}.tokens.out_mean",
                  f"must be <= tokens.out_max ({a.tokens.out_max}) (got {a.tokens.out_mean})")
        if a.max_tokens is not None:
            _need(a.service.kind == "tokens", f"{k}.max_tokens",
                  "only generative apps (service.kind: tokens) produce tokens")
        sp = a.system_prompt_tokens
        _need(sp >= 0, f"{k}.system_prompt_tokens", f"must be >= 0 (got {sp})")
        if sp:
            _need(a.service.kind == "tokens", f"{k}.system_prompt_tokens",
                  "only generative apps (service.kind: tokens) have prompts")
            _need(sp < a.tokens.in_mean and sp < a.tokens.in_max, f"{k}.system_prompt_tokens",
                  f"a prefix longer than the prompt: {sp} tokens, but tokens.in_mean is "
                  f"{a.tokens.in_mean:g} (and in_max {a.tokens.in_max})")
        if a.cascade.to_tier:
            kc = f"{k}.cascade"
            _need(a.service.kind == "tokens", f"{kc}.to_tier",
                  "only generative apps (service.kind: tokens) can be served as a cascade")
            cc = a.cascade.capability
            _need(cc is None or cc > a.capability, f"{kc}.capability",
                  f"must be above the app's capability {a.capability} (a bigger model; got {cc})")
    _check_faults(c.faults)
    o = c.output
    _need(o.requests in REQUEST_MODES, "output.requests",
          f"must be one of {REQUEST_MODES} (got {o.requests!r})")
    _need(0 < o.sample_fraction <= 1, "output.sample_fraction",
          f"must be in (0, 1] (got {o.sample_fraction})")
    _need(o.requests_order in REQUEST_ORDERS, "output.requests_order",
          f"must be one of {REQUEST_ORDERS} (got {o.requests_order!r})")
    _need(o.window_s > 0, "output.window_s", f"must be > 0 (got {o.window_s})")
    _need(o.time_bin_s is None or o.time_bin_s > 0, "output.time_bin_s",
          f"must be > 0 or null (got {o.time_bin_s})")
    _check_tenants(c)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _check_tenants(c: SimConfig) -> None:
    """Sovereignty areas, tenants, quotas and prices (aigrid_sim/sim/control.py applies them)."""
    from aigrid_sim.world import areas

    for i, a in enumerate(c.workload.apps):
        for j, name in enumerate(a.sovereignty):
            areas.resolve(name, f"workload.apps[{i}].sovereignty[{j}]")
    apps = {a.name for a in c.workload.apps}
    owner: dict[str, str] = {}
    names = [t.name for t in c.tenants]
    _need(len(set(names)) == len(names), "tenants", f"tenant names must be unique: {names}")
    for i, t in enumerate(c.tenants):
        k = f"tenants[{i}]"
        _need(bool(t.apps), f"{k}.apps", f"tenant {t.name!r} owns no apps; list at least one")
        for app in t.apps:
            _need(app in apps, f"{k}.apps", f"unknown app {app!r}; apps: {sorted(apps)}")
            _need(app not in owner, f"{k}.apps",
                  f"app {app!r} already belongs to tenant {owner.get(app)!r}")
            owner[app] = t.name
        for j, name in enumerate(t.sovereignty):
            areas.resolve(name, f"{k}.sovereignty[{j}]")
        for j, q in enumerate(t.quotas):
            kq = f"{k}.quotas[{j}]"
            _need(q.tier in TIERS, f"{kq}.tier", f"must be one of {TIERS} (got {q.tier!r})")
            _need(q.rate_rps is not None or q.max_concurrency is not None, kq,
                  "a quota needs rate_rps (requests per second) or max_concurrency (requests "
                  "at once), or both")
            _need(q.rate_rps is None or (_finite(q.rate_rps) and q.rate_rps >= 0),
                  f"{kq}.rate_rps", f"must be a finite number >= 0 (got {q.rate_rps})")
            _need(q.max_concurrency is None or q.max_concurrency >= 0,
                  f"{kq}.max_concurrency", f"must be an integer >= 0 (got {q.max_concurrency})")
            _need(_finite(q.burst) and q.burst >= 1, f"{kq}.burst",
                  f"must be a finite number >= 1 (got {q.burst})")
        for tier, p in t.prices.items():
            kp = f"{k}.prices.{tier}"
            _need(tier in TIERS, kp, f"unknown tier {tier!r}; tiers: {TIERS}")
            for f_ in ("in_per_m", "out_per_m"):
                v = getattr(p, f_)
                _need(_finite(v) and v >= 0, f"{kp}.{f_}", f"must be a finite price >= 0 (got {v})")
        _need(_finite(t.sla_penalty_usd) and t.sla_penalty_usd >= 0, f"{k}.sla_penalty_usd",
              f"must be a finite amount >= 0 (got {t.sla_penalty_usd})")


def _check_faults(f: FaultsConfig) -> None:
    for i, o in enumerate(f.outages):
        _need(any(x is not None for x in (o.site, o.metro, o.country, o.tier)),
              f"faults.outages[{i}]", "needs at least one of site, metro, country, tier")
    for i, link in enumerate(f.links):
        _need(link.a != link.b, f"faults.links[{i}]", "needs two different site ids a and b")


def _check_arrivals(c: SimConfig) -> None:
    """Bursts, flash crowds and trace replay settings."""
    a = c.workload.arrivals
    if a.kind == "closed":
        _need(a.concurrency >= 1, "workload.arrivals.concurrency",
              f"must be >= 1 for arrivals.kind=closed (got {a.concurrency})")
        _need(c.max_requests is not None and c.max_requests >= 1, "max_requests",
              "a closed loop (arrivals.kind=closed) needs max_requests >= 1")
    mm = a.mmpp
    _need(len(mm.states) != 1, "workload.arrivals.mmpp.states",
          "needs at least 2 states (or none to switch bursts off)")
    if mm.states:
        _need(sum(st.rate for st in mm.states) > 0, "workload.arrivals.mmpp.states",
              "rates must not all be 0")
    if mm.transitions is not None:
        n = len(mm.states)
        _need(len(mm.transitions) == n and all(len(r) == n for r in mm.transitions),
              "workload.arrivals.mmpp.transitions", f"must be a {n} x {n} matrix (one row and "
              "column per state)")
    t = c.trace
    if a.kind == "trace":
        _need(not mm.states and not a.flash_crowds, "workload.arrivals",
              "mmpp and flash_crowds modulate synthetic arrivals; they cannot be combined with "
              "kind 'trace' (use trace.scale / trace.speedup)")
    _need(t.end_s is None or t.end_s > t.start_s, "trace.end_s",
          f"must be > trace.start_s ({t.start_s}) or null (got {t.end_s})")
