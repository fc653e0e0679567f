"""Synthetic request streams: who asks (city, by population), when (Poisson, follow-the-sun) and what.

Generation is vectorised: arrival times come from a non-homogeneous Poisson process sampled by
thinning (candidates at the peak rate, each kept with probability rate(t)/peak), which is exact for
any rate shape; apps and token counts are drawn in bulk. No Python object per request.
"""

from __future__ import annotations

import numpy as np

from aigrid_sim import rng as rngs
from aigrid_sim.config import AppConfig, SimConfig
from aigrid_sim.workload.stream import AppSpec, RequestStream

# Default hourly shape of demand by local hour (mean 1): quiet before dawn, rising through the
# morning, an evening peak around 20:00 -- the usual shape of consumer chat/voice traffic.
DEFAULT_DIURNAL = np.array([
    0.55, 0.42, 0.34, 0.30, 0.30, 0.36, 0.52, 0.75, 0.95, 1.08, 1.15, 1.18,
    1.20, 1.20, 1.18, 1.17, 1.20, 1.28, 1.40, 1.52, 1.58, 1.48, 1.16, 0.82,
])


def app_specs(apps: list[AppConfig]) -> list[AppSpec]:
    """Turn app configs into the specs the engine and policies use."""
    return [AppSpec(a.name, a.capability, a.slo_ms, a.slo_on == "ttft",
                    a.service.kind == "tokens", a.tokens.in_mean, a.tokens.out_mean,
                    a.service.mean_s) for a in apps]


def diurnal_curve(curve: list[float] | None) -> np.ndarray:
    """The 24 hourly multipliers, normalised to mean 1."""
    c = DEFAULT_DIURNAL if curve is None else np.asarray(curve, dtype=float)
    return c / c.mean()


def diurnal_factor(curve: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
    """Multiplier at fractional local hours, linearly interpolated between hour centres."""
    h = np.mod(local_hour - 0.5, 24.0)
    i = np.floor(h).astype(np.int64)
    frac = h - i
    return curve[i] * (1 - frac) + curve[(i + 1) % 24] * frac


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
                              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (sorted) and origin indices for a run.

    Each origin's rate is ``rate_rps * load * population share * diurnal(local hour)``.
    """
    T = cfg.duration_s
    weights = population / population.sum()
    total = cfg.workload.rate_rps * cfg.load
    kind = cfg.workload.arrivals.kind
    curve = diurnal_curve(cfg.workload.arrivals.curve) if kind == "diurnal" else np.ones(24)
    peak = curve.max()
    n = rng.poisson(total * peak * T)
    t = np.sort(rng.uniform(0.0, T, n))
    origin = rng.choice(len(weights), size=n, p=weights).astype(np.int32)
    if kind == "diurnal":
        local = cfg.start_utc_h + t / 3600.0 + utc_offset_h[origin]
        keep = rng.uniform(0.0, peak, n) < diurnal_factor(curve, local)
        t, origin = t[keep], origin[keep]
    if cfg.max_requests is not None:
        t, origin = t[:cfg.max_requests], origin[:cfg.max_requests]
    return t, origin


def generate_stream(cfg: SimConfig, population: np.ndarray,
                    utc_offset_h: np.ndarray) -> RequestStream:
    """The synthetic request stream of a run: arrivals, apps, token counts, fixed work."""
    t, origin = arrival_times_and_origins(
        cfg, population, utc_offset_h, rngs.generator(cfg.seed, "arrivals"))
    return assign_apps(cfg, t, origin)


def assign_apps(cfg: SimConfig, t: np.ndarray, origin: np.ndarray,
                in_tokens: np.ndarray | None = None,
                out_tokens: np.ndarray | None = None) -> RequestStream:
    """Draw each request's app and its work (tokens or fixed service time).

    Token counts given by a trace replace the drawn ones for generative apps.
    """
    apps = cfg.workload.apps
    n = len(t)
    share = np.array([a.share for a in apps], dtype=float)
    app = rngs.generator(cfg.seed, "apps").choice(len(apps), size=n, p=share / share.sum())
    app = app.astype(np.int16)
    tin = np.zeros(n, dtype=np.int32)
    tout = np.zeros(n, dtype=np.int32)
    work = np.zeros(n)
    for k, a in enumerate(apps):
        idx = np.flatnonzero(app == k)
        r = rngs.generator(cfg.seed, f"work/{a.name}")
        if a.service.kind == "tokens":
            if in_tokens is not None:
                tin[idx] = in_tokens[idx]
                tout[idx] = out_tokens[idx]
            else:
                tin[idx] = lognormal_ints(r, a.tokens.in_mean, a.tokens.in_cv, len(idx),
                                          a.tokens.in_max)
                tout[idx] = lognormal_ints(r, a.tokens.out_mean, a.tokens.out_cv, len(idx),
                                           a.tokens.out_max)
        else:
            work[idx] = service_draws(r, a, len(idx))
    return RequestStream(t.astype(np.float64), origin.astype(np.int32), app, tin, tout, work,
                         app_specs(apps))
