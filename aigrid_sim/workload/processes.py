"""Arrival-rate shapes: follow-the-sun diurnal curve, Markov-modulated bursts and flash crowds.

Every shape here is a vectorised *rate multiplier* ``m(t, origin) >= 0`` together with an upper
bound ``max m``. The thinning generator in :mod:`aigrid_sim.workload.generate` draws candidate
arrivals at ``base rate x product of the bounds`` and keeps each with probability
``product of multipliers / product of bounds``, which samples the modulated Poisson process
exactly. An MMPP is a Poisson process whose rate follows a continuous-time Markov chain; given
the chain's path, thinning against the path's rate is exact.

The analytic moments the tests compare against (:func:`mmpp_stationary`, :func:`mmpp_idc`) live
here too, next to the samplers they describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aigrid_sim.errors import ConfigError

# Default follow-the-sun curve: mean-1 multipliers by local hour 0..23, shaped like ServeGen's
# daily pattern. Derived by scripts/derive_servegen_diurnal.py from ServeGen's m-small rate series
# (Alibaba Cloud Model Studio, 14 days of 10-minute windows, Apache-2.0): each day divided by its
# mean, the median over days per hour, renormalised. Quiet 01:00-06:00 (0.64 x mean), a morning
# rise to a working-day plateau, an evening peak at 20:00-21:00 (1.45 x mean).
SERVEGEN_DIURNAL = np.array([
    0.825, 0.695, 0.714, 0.681, 0.640, 0.659, 0.737, 0.816, 1.032, 1.083, 1.126, 1.121,
    1.077, 1.057, 1.057, 1.057, 1.051, 1.023, 1.037, 1.207, 1.446, 1.437, 1.325, 1.096,
])


# ----------------------------------------------------------------------------- diurnal


def diurnal_curve(curve: list[float] | np.ndarray | None) -> np.ndarray:
    """The 24 hourly multipliers, normalised to mean 1 (``None`` = :data:`SERVEGEN_DIURNAL`)."""
    c = SERVEGEN_DIURNAL if curve is None else np.asarray(curve, dtype=float)
    return c / c.mean()


def diurnal_factor(curve: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
    """Multiplier at fractional local hours, linearly interpolated between hour centres.

    Hour ``h`` of ``curve`` is the value at ``h + 0.5`` (the middle of that hour); in between
    the curve is a periodic piecewise-linear function, so its mean over a day is ``curve.mean()``.
    """
    h = np.mod(local_hour - 0.5, 24.0)
    i = np.floor(h).astype(np.int64) % 24
    frac = h - np.floor(h)
    return curve[i] * (1 - frac) + curve[(i + 1) % 24] * frac


# ----------------------------------------------------------------------------- MMPP


@dataclass(frozen=True)
class MMPP:
    """A Markov-modulated rate multiplier.

    Attributes:
        rates: Relative rate in each state, normalised so the stationary mean is 1 (the run's
            ``rate_rps`` stays the long-run mean rate).
        mean_sojourn_s: Mean time spent in each state per visit, seconds.
        jump: Jump-chain matrix: ``jump[i, j]`` is the probability of moving to ``j`` on leaving
            ``i`` (zero diagonal, rows sum to 1).
    """

    rates: np.ndarray
    mean_sojourn_s: np.ndarray
    jump: np.ndarray

    @classmethod
    def build(cls, rates: list[float], mean_sojourn_s: list[float],
              transitions: list[list[float]] | None = None,
              key: str = "workload.arrivals.mmpp") -> MMPP:
        """Check the parameters and normalise the rates to stationary mean 1.

        Args:
            rates: Relative rate per state (>= 0, not all 0).
            mean_sojourn_s: Mean sojourn per state (> 0).
            transitions: Optional jump matrix; ``None`` = leave to any other state uniformly.
            key: Config key named in errors.

        Raises:
            ConfigError: naming the key and what is expected.
        """
        r = np.asarray(rates, dtype=float)
        s = np.asarray(mean_sojourn_s, dtype=float)
        k = len(r)
        if k < 2:
            raise ConfigError(f"key '{key}.states': an MMPP needs at least 2 states (got {k})")
        if np.any(r < 0) or r.sum() <= 0:
            raise ConfigError(f"key '{key}.states': rates must be >= 0 and not all 0 (got "
                              f"{r.tolist()})")
        if np.any(s <= 0):
            raise ConfigError(f"key '{key}.states': mean_sojourn_s must be > 0 (got {s.tolist()})")
        if transitions is None:
            p = (np.ones((k, k)) - np.eye(k)) / (k - 1)
        else:
            p = np.asarray(transitions, dtype=float)
            if p.shape != (k, k) or np.any(p < 0) or np.any(np.diag(p) != 0) \
                    or not np.allclose(p.sum(axis=1), 1.0):
                raise ConfigError(f"key '{key}.transitions': must be a {k}x{k} matrix of "
                                  f"probabilities with zero diagonal and rows summing to 1")
        pi = _stationary(p, s)
        mean = float(pi @ r)
        if mean <= 0:
            raise ConfigError(f"key '{key}': the stationary mean rate is 0")
        return cls(r / mean, s, p)

    @property
    def stationary(self) -> np.ndarray:
        """Long-run fraction of time in each state."""
        return _stationary(self.jump, self.mean_sojourn_s)

    @property
    def peak(self) -> float:
        """The largest multiplier."""
        return float(self.rates.max())

    def path(self, rng: np.random.Generator, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
        """A stationary sample path on ``[0, horizon_s]``.

        The first state is drawn from the stationary distribution and its first sojourn from
        the full exponential (memoryless, so the path is stationary from time 0).

        Returns:
            ``(starts, states)``: the time each piece starts (``starts[0] == 0``) and its state.
        """
        k = len(self.rates)
        state0 = int(rng.choice(k, p=self.stationary))
        uniform = np.allclose(self.jump, (np.ones((k, k)) - np.eye(k)) / (k - 1))
        states = [np.array([state0])]
        ends = []
        t_end = 0.0
        cur = state0
        chunk = max(64, int(2 * horizon_s / self.mean_sojourn_s.min()) + 16)
        chunk = min(chunk, 1 << 20)
        while True:
            if uniform:
                # Leaving to any other state uniformly: next = cur + U{1..k-1} (mod k).
                steps = rng.integers(1, k, size=chunk)
                nxt = (cur + np.cumsum(steps)) % k
            else:
                u = rng.uniform(size=chunk)
                cum = np.cumsum(self.jump, axis=1)
                nxt = np.empty(chunk, dtype=np.int64)
                c = cur
                for i in range(chunk):
                    c = int(np.searchsorted(cum[c], u[i], side="right"))
                    c = min(c, k - 1)
                    nxt[i] = c
            seq = np.concatenate([[cur], nxt[:-1]])
            hold = rng.exponential(self.mean_sojourn_s[seq])
            e = t_end + np.cumsum(hold)
            ends.append(e)
            states.append(nxt)
            t_end = float(e[-1])
            cur = int(nxt[-1])
            if t_end >= horizon_s:
                break
        ends_all = np.concatenate(ends)
        st = np.concatenate(states)[:len(ends_all)]
        n = int(np.searchsorted(ends_all, horizon_s, side="left")) + 1
        starts = np.concatenate([[0.0], ends_all[:n - 1]])
        return starts, st[:n]

    def multiplier(self, starts: np.ndarray, states: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The multiplier along a path at times ``t``."""
        i = np.searchsorted(starts, t, side="right") - 1
        return self.rates[states[np.clip(i, 0, len(states) - 1)]]


def _stationary(jump: np.ndarray, mean_sojourn_s: np.ndarray) -> np.ndarray:
    """Time-stationary distribution of a semi-Markov chain: jump-chain stationary x sojourn."""
    k = len(mean_sojourn_s)
    a = np.vstack([jump.T - np.eye(k), np.ones(k)])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    nu = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(nu, 0, None) * mean_sojourn_s
    return pi / pi.sum()


def mmpp_idc(rate: tuple[float, float], mean_sojourn_s: tuple[float, float],
             window_s: float) -> float:
    """Index of dispersion of counts ``Var N(t) / E N(t)`` of a stationary 2-state MMPP.

    With absolute rates ``l1, l2``, switching rates ``r1 = 1/s1``, ``r2 = 1/s2``, ``r = r1 + r2``,
    ``pi1 = r2 / r`` and mean ``m = pi1 l1 + pi2 l2``, the rate's autocovariance is
    ``(l1 - l2)^2 pi1 pi2 exp(-r u)``, which gives

    ``IDC(t) = 1 + 2 (l1 - l2)^2 pi1 pi2 / (m r) * (1 - (1 - exp(-r t)) / (r t))``.

    Args:
        rate: Absolute arrival rates in the two states (per second).
        mean_sojourn_s: Mean sojourn in each state (seconds).
        window_s: Counting window ``t``.
    """
    l1, l2 = rate
    r1, r2 = 1.0 / mean_sojourn_s[0], 1.0 / mean_sojourn_s[1]
    r = r1 + r2
    p1, p2 = r2 / r, r1 / r
    m = p1 * l1 + p2 * l2
    x = r * window_s
    return 1.0 + 2.0 * (l1 - l2) ** 2 * p1 * p2 / (m * r) * (1.0 - (1.0 - np.exp(-x)) / x)


# ----------------------------------------------------------------------------- flash crowds


@dataclass(frozen=True)
class FlashCrowd:
    """A rate multiplied by ``factor`` for a window, with linear ramps up and down.

    The multiplier is 1 before ``start_s``, climbs linearly to ``factor`` over ``ramp_up_s``,
    holds for ``duration_s``, falls back to 1 over ``ramp_down_s``, and is 1 after.

    Attributes:
        start_s: When the ramp up begins (simulated seconds).
        ramp_up_s: Length of the ramp up.
        duration_s: Length of the plateau at ``factor``.
        ramp_down_s: Length of the ramp down.
        factor: Multiplier at the plateau (>= 0; below 1 is a dip).
    """

    start_s: float
    ramp_up_s: float
    duration_s: float
    ramp_down_s: float
    factor: float

    @property
    def peak(self) -> float:
        """The largest multiplier this crowd applies."""
        return max(self.factor, 1.0)

    @property
    def end_s(self) -> float:
        """When the multiplier is back to 1."""
        return self.start_s + self.ramp_up_s + self.duration_s + self.ramp_down_s

    def profile(self, t: np.ndarray) -> np.ndarray:
        """Fraction of the way to the plateau at ``t`` (0 outside, 1 on the plateau)."""
        t = np.asarray(t, dtype=float)
        top = self.start_s + self.ramp_up_s
        fall = top + self.duration_s
        up = (np.clip((t - self.start_s) / self.ramp_up_s, 0.0, 1.0) if self.ramp_up_s > 0
              else (t >= self.start_s).astype(float))
        down = (np.clip((self.end_s - t) / self.ramp_down_s, 0.0, 1.0) if self.ramp_down_s > 0
                else (t < fall).astype(float))
        return np.minimum(up, down)

    def multiplier(self, t: np.ndarray) -> np.ndarray:
        """``1 + (factor - 1) * profile(t)``."""
        return 1.0 + (self.factor - 1.0) * self.profile(t)

    def mean_multiplier(self, t0: float, t1: float, steps: int = 20_001) -> float:
        """Average multiplier over ``[t0, t1]`` (trapezoid rule on a piecewise-linear profile)."""
        t = np.linspace(t0, t1, steps)
        y = self.multiplier(t)
        return float(np.sum((y[1:] + y[:-1]) * np.diff(t)) / 2.0 / (t1 - t0))
