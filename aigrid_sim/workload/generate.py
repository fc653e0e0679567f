"""Synthetic request streams: who asks, when and what.

Who: cities, by population; when: Poisson, follow-the-sun, bursts, flash crowds.

Generation is vectorised: arrival times come from a non-homogeneous Poisson process sampled by
thinning (candidates at the peak rate, each kept with probability rate(t)/peak), which is exact for
any rate shape; apps and token counts are drawn in bulk. No Python object per request. The rate
shapes (diurnal curve, MMPP, flash crowds) are in :mod:`aigrid_sim.workload.processes`.
"""

from __future__ import annotations

import numpy as np

from aigrid_sim import rng as rngs
from aigrid_sim.config import AppConfig, SimConfig
from aigrid_sim.errors import ConfigError
from aigrid_sim.workload.processes import (
    MMPP,
    SERVEGEN_DIURNAL,
    FlashCrowd,
    diurnal_curve,
    diurnal_factor,
)
from aigrid_sim.workload.stream import AppSpec, RequestStream

# The default hourly shape of demand by local hour (kept under its old name): see processes.py.
DEFAULT_DIURNAL = SERVEGEN_DIURNAL

__all__ = ["DEFAULT_DIURNAL", "diurnal_curve", "diurnal_factor", "generate_stream",
           "assign_apps", "arrival_times_and_origins", "app_specs"]


def app_specs(apps: list[AppConfig]) -> list[AppSpec]:
    """Turn app configs into the specs the engine and policies use."""
    return [AppSpec(a.name, a.capability, a.slo_ms, a.slo_on == "ttft",
                    a.service.kind == "tokens", a.tokens.in_mean, a.tokens.out_mean,
                    a.service.mean_s, int(getattr(a, "system_prompt_tokens", 0) or 0),
                    bool(getattr(getattr(a, "cascade", None), "to_tier", None)),
                    int(getattr(a, "max_tokens", 0) or 0))
            for a in apps]


def lognormal_ints(rng: np.random.Generator, mean: float, cv: float, n: int,
                   hi: int) -> np.ndarray:
    """Integer draws >= 1 from a lognormal with the given mean and coefficient of variation."""
    s2 = np.log1p(cv * cv)
    x = rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)
    return np.clip(np.rint(x), 1, hi).astype(np.int32)


def service_draws(rng: np.random.Generator, app: AppConfig, n: int) -> np.ndarray:
    """Fixed service times (s) for a non-generative app."""
    s = app.service
    if s.kind == "exponential":
        return rng.exponential(s.mean_s, n)
    if s.kind == "deterministic":
        return np.full(n, s.mean_s)
    if s.kind == "lognormal":
        s2 = np.log1p(s.cv * s.cv)
        return rng.lognormal(np.log(s.mean_s) - s2 / 2, np.sqrt(s2), n)
    raise ValueError(f"not a fixed service kind: {s.kind}")


def arrival_times_and_origins(cfg: SimConfig, population: np.ndarray, utc_offset_h: np.ndarray,
                              rng: np.random.Generator, *,
                              region: list[str] | None = None,
                              country: list[str | None] | None = None,
                              names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (sorted) and origin indices for a run.

    Each origin's rate is ``rate_rps * load * population share * diurnal(local hour)
    * mmpp(t) * flash crowds(t)`` (diurnal only for kind ``diurnal``; the MMPP and flash-crowd
    factors only if configured). ``region``, ``country`` and ``names`` describe the origins
    (needed by flash crowds aimed at them and by a per-region MMPP).

    Raises:
        ConfigError: a flash crowd or per-region MMPP that the origins cannot satisfy.
    """
    T = cfg.duration_s
    weights = population / population.sum()
    total = cfg.workload.rate_rps * cfg.load
    arr = cfg.workload.arrivals
    kind = arr.kind
    if kind == "closed":
        # A closed loop: every request is placed at 0; the engine releases request k + c when
        # request k ends (c = concurrency) and writes its real arrival time.
        n = int(cfg.max_requests)
        return np.zeros(n), rng.choice(len(weights), size=n, p=weights).astype(np.int32)
    curve = diurnal_curve(arr.curve) if kind == "diurnal" else np.ones(24)
    mmpp = (MMPP.build([s.rate for s in arr.mmpp.states],
                       [s.mean_sojourn_s for s in arr.mmpp.states], arr.mmpp.transitions)
            if arr.mmpp.states else None)
    crowds = [(FlashCrowd(f.start_s, f.ramp_up_s, f.duration_s, f.ramp_down_s, f.factor),
               _crowd_origins(i, f, len(weights), region, country, names))
              for i, f in enumerate(arr.flash_crowds)]
    peak = curve.max()
    modulated = mmpp is not None or bool(crowds)
    if mmpp is not None:
        peak *= mmpp.peak
    for fc, _ in crowds:
        peak *= fc.peak
    n = rng.poisson(total * peak * T)
    t = np.sort(rng.uniform(0.0, T, n))
    origin = rng.choice(len(weights), size=n, p=weights).astype(np.int32)
    if kind == "diurnal" and not modulated:
        local = cfg.start_utc_h + t / 3600.0 + utc_offset_h[origin]
        keep = rng.uniform(0.0, peak, n) < diurnal_factor(curve, local)
        t, origin = t[keep], origin[keep]
    elif modulated:
        m = np.ones(n)
        if kind == "diurnal":
            m *= diurnal_factor(curve, cfg.start_utc_h + t / 3600.0 + utc_offset_h[origin])
        if mmpp is not None:
            m *= _mmpp_multiplier(cfg, mmpp, t, origin, region)
        for fc, mask in crowds:
            hit = mask[origin]
            m[hit] *= fc.multiplier(t[hit])
        keep = rng.uniform(0.0, peak, n) < m
        t, origin = t[keep], origin[keep]
    if cfg.max_requests is not None:
        t, origin = t[:cfg.max_requests], origin[:cfg.max_requests]
    return t, origin


def _mmpp_multiplier(cfg: SimConfig, mmpp: MMPP, t: np.ndarray, origin: np.ndarray,
                     region: list[str] | None) -> np.ndarray:
    """The MMPP factor of each candidate: one chain for the world, or one per region."""
    T = cfg.duration_s
    if cfg.workload.arrivals.mmpp.scope == "global":
        starts, states = mmpp.path(rngs.generator(cfg.seed, "arrivals/mmpp"), T)
        return mmpp.multiplier(starts, states, t)
    if region is None:
        raise ConfigError("key 'workload.arrivals.mmpp.scope': 'region' needs origins with "
                          "regions (a world), none were given")
    regions, code = np.unique(np.asarray(region, dtype=object).astype(str), return_inverse=True)
    out = np.empty(len(t))
    rc = code[origin]
    for k, name in enumerate(regions):
        idx = np.flatnonzero(rc == k)
        starts, states = mmpp.path(rngs.generator(cfg.seed, f"arrivals/mmpp/{name}"), T)
        out[idx] = mmpp.multiplier(starts, states, t[idx])
    return out


def _crowd_origins(i: int, f, n: int, region: list[str] | None, country: list[str | None] | None,
                   names: list[str] | None) -> np.ndarray:
    """Boolean mask of the origins a flash crowd hits (any of region / countries / cities)."""
    key = f"workload.arrivals.flash_crowds[{i}]"
    if f.region is None and f.countries is None and f.cities is None:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    for attr, values, wanted in (("region", region, [f.region] if f.region is not None else None),
                                 ("countries", country, f.countries),
                                 ("cities", names, f.cities)):
        if wanted is None:
            continue
        if values is None:
            raise ConfigError(f"key '{key}.{attr}': origins carry no {attr} here")
        vals = np.asarray([str(v) for v in values], dtype=object)
        missing = sorted(set(wanted) - set(vals.tolist()))
        if missing:
            avail = sorted(set(vals.tolist()))
            hint = f"; available: {', '.join(avail)}" if len(avail) <= 12 else ""
            raise ConfigError(f"key '{key}.{attr}': no origin matches {missing}{hint}")
        mask |= np.isin(vals, list(wanted))
    return mask


def generate_stream(cfg: SimConfig, population: np.ndarray, utc_offset_h: np.ndarray, *,
                    region: list[str] | None = None, country: list[str | None] | None = None,
                    names: list[str] | None = None) -> RequestStream:
    """The synthetic request stream of a run: arrivals, apps, token counts, fixed work.

    The concatenation of the blocks of :class:`aigrid_sim.workload.windows.SyntheticArrivals`,
    so a streamed run (window by window) sees exactly these requests. ``region``, ``country``
    and ``names`` (per origin) are needed only by flash crowds aimed at them and by a
    per-region MMPP.
    """
    arr = cfg.workload.arrivals
    if arr.kind == "closed":  # a closed loop: the engine releases the requests (see below)
        t, origin = arrival_times_and_origins(
            cfg, population, utc_offset_h, rngs.generator(cfg.seed, "arrivals"),
            region=region, country=country, names=names)
        stream = assign_apps(cfg, t, origin)
        stream.info.update({"source": "synthetic", "arrivals": arr.kind,
                            "requests": int(len(t)), "concurrency": int(arr.concurrency)})
        return stream
    from aigrid_sim.workload.windows import SyntheticArrivals, concat

    proc = SyntheticArrivals(cfg, population, utc_offset_h, region=region, country=country,
                             names=names)
    stream = concat(list(proc.blocks()), app_specs(cfg.workload.apps), proc.info())
    stream.info.update(proc.info())
    stream.info["requests"] = int(len(stream))
    return stream


def assign_apps(cfg: SimConfig, t: np.ndarray, origin: np.ndarray,
                in_tokens: np.ndarray | None = None,
                out_tokens: np.ndarray | None = None, key: str = "") -> RequestStream:
    """Draw each request's app and its work (tokens or fixed service time).

    Token counts given by a trace replace the drawn ones for generative apps. ``key`` is appended
    to the names of the random streams (``apps<key>``, ``work/<app><key>``): each block of a
    windowed stream draws from its own (:mod:`aigrid_sim.workload.windows`).
    """
    apps = cfg.workload.apps
    n = len(t)
    share = np.array([a.share for a in apps], dtype=float)
    app = rngs.generator(cfg.seed, f"apps{key}").choice(len(apps), size=n, p=share / share.sum())
    app = app.astype(np.int16)
    tin = np.zeros(n, dtype=np.int32)
    tout = np.zeros(n, dtype=np.int32)
    work = np.zeros(n)
    for k, a in enumerate(apps):
        idx = np.flatnonzero(app == k)
        r = rngs.generator(cfg.seed, f"work/{a.name}{key}")
        if a.service.kind == "tokens":
            if in_tokens is not None:
                tin[idx] = in_tokens[idx]
                tout[idx] = out_tokens[idx]
            else:
                tin[idx] = lognormal_ints(r, a.tokens.in_mean, a.tokens.in_cv, len(idx),
                                          a.tokens.in_max)
                tout[idx] = lognormal_ints(r, a.tokens.out_mean, a.tokens.out_cv, len(idx),
                                           a.tokens.out_max)
                sys_tokens = int(getattr(a, "system_prompt_tokens", 0) or 0)
                if sys_tokens:  # every prompt starts with the shared system prompt
                    tin[idx] = np.maximum(tin[idx], sys_tokens + 1)
        else:
            work[idx] = service_draws(r, a, len(idx))
    return RequestStream(t.astype(np.float64), origin.astype(np.int32), app, tin, tout, work,
                         app_specs(apps))
