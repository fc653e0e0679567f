"""Closed-form queueing results used to validate the simulator and to size capacity.

All functions are pure and work on plain Python scalars (numpy scalars are accepted too). They
return Python floats or ints and raise :class:`ValueError` with a readable message on invalid input:
fewer than one server, negative or non-finite rates, or a load at which the requested quantity is
infinite (``rho >= 1``).

Notation: ``lam`` is the arrival rate, ``mu`` the service rate of one server, ``c`` the number of
servers, ``a = lam / mu`` the offered load in Erlangs and ``rho = a / c`` the utilisation. Times
come out in the reciprocal unit of the rates (per-second rates give seconds).

The Erlang B value is computed with the recursion ``B(0) = 1``,
``B(k) = a B(k-1) / (k + a B(k-1))``, which involves no factorials or powers and stays accurate
for hundreds of servers and loads near saturation; Erlang C is derived from it.
"""

from __future__ import annotations

import math
import operator

__all__ = [
    "erlang_b",
    "erlang_c",
    "erlang_c_servers_for_target",
    "md1_mean_wait",
    "mg1_mean_wait",
    "mm1_mean_wait",
    "mmc_mean_queue_len",
    "mmc_mean_sojourn",
    "mmc_mean_wait",
    "mmc_wait_quantile",
]

#: Default upper bound on the number of servers searched by :func:`erlang_c_servers_for_target`.
DEFAULT_MAX_SERVERS = 100_000


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _servers(c) -> int:
    """Return ``c`` as an int after checking it is an integer >= 1."""
    if isinstance(c, bool):
        raise ValueError(f"c (number of servers) must be an integer >= 1, got {c!r}")
    try:
        n = operator.index(c)
    except TypeError:
        if isinstance(c, float) and c.is_integer():
            n = int(c)
        else:
            raise ValueError(f"c (number of servers) must be an integer >= 1, got {c!r}") from None
    if n < 1:
        raise ValueError(f"c (number of servers) must be an integer >= 1, got {c!r}")
    return n


def _finite(name: str, x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


def _nonneg(name: str, x) -> float:
    v = _finite(name, x)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {x!r}")
    return v


def _positive(name: str, x) -> float:
    v = _finite(name, x)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return v


def _check_stable(rho: float) -> None:
    if rho >= 1.0:
        raise ValueError(f"rho = {rho:.6g} >= 1: the queue is unstable")


# --------------------------------------------------------------------------------------------
# Erlang B / Erlang C
# --------------------------------------------------------------------------------------------


def _erlang_b_raw(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        ab = a * b
        b = ab / (k + ab)
    return b


def _erlang_c_from_b(c: int, a: float, b: float) -> float:
    # C = c B / (c - a (1 - B)); the denominator is > a B > 0 whenever a < c.
    if a == 0.0:
        return 0.0
    return c * b / (c - a * (1.0 - b))


def erlang_b(c, a) -> float:
    """Blocking probability of the M/M/c/c loss system (Erlang B formula).

    Args:
        c: Number of servers (integer >= 1).
        a: Offered load ``lam / mu`` in Erlangs (>= 0). Any finite load is allowed, a loss
            system is always stable.

    Returns:
        The probability that an arriving customer finds all ``c`` servers busy and is lost.

    Raises:
        ValueError: If ``c < 1`` or ``a`` is negative or not finite.
    """
    n = _servers(c)
    a = _nonneg("a (offered load)", a)
    return _erlang_b_raw(n, a)


def erlang_c(c, a) -> float:
    """Probability that an arriving customer has to wait in an M/M/c queue (Erlang C formula).

    Computed from Erlang B as ``C = c B / (c - a (1 - B))``.

    Args:
        c: Number of servers (integer >= 1).
        a: Offered load ``lam / mu`` in Erlangs, ``0 <= a < c``.

    Returns:
        ``P(W > 0)``, the probability that all servers are busy at an arrival instant.

    Raises:
        ValueError: If ``c < 1``, ``a`` is negative or not finite, or ``a >= c`` (unstable).
    """
    n = _servers(c)
    a = _nonneg("a (offered load)", a)
    _check_stable(a / n)
    return _erlang_c_from_b(n, a, _erlang_b_raw(n, a))


# --------------------------------------------------------------------------------------------
# M/M/c
# --------------------------------------------------------------------------------------------


def _mmc_args(c, lam, mu) -> tuple[int, float, float]:
    n = _servers(c)
    lam = _nonneg("lam (arrival rate)", lam)
    mu = _positive("mu (service rate)", mu)
    _check_stable(lam / (n * mu))
    return n, lam, mu


def mmc_mean_wait(c, lam, mu) -> float:
    """Mean waiting time in queue ``W_q`` of an M/M/c queue.

    ``W_q = C(c, a) / (c mu - lam)`` with ``a = lam / mu``.

    Args:
        c: Number of servers (integer >= 1).
        lam: Arrival rate (>= 0).
        mu: Service rate of one server (> 0).

    Returns:
        Mean time spent waiting before service starts (excluding service).

    Raises:
        ValueError: On invalid arguments or if ``rho = lam / (c mu) >= 1``.
    """
    n, lam, mu = _mmc_args(c, lam, mu)
    return erlang_c(n, lam / mu) / (n * mu - lam)


def mmc_mean_queue_len(c, lam, mu) -> float:
    """Mean number of customers waiting (not in service) in an M/M/c queue, ``L_q = lam W_q``.

    Args:
        c: Number of servers (integer >= 1).
        lam: Arrival rate (>= 0).
        mu: Service rate of one server (> 0).

    Returns:
        The time-average queue length ``L_q``.

    Raises:
        ValueError: On invalid arguments or if ``rho >= 1``.
    """
    n, lam, mu = _mmc_args(c, lam, mu)
    return lam * mmc_mean_wait(n, lam, mu)


def mmc_mean_sojourn(c, lam, mu) -> float:
    """Mean time in system (wait plus service) of an M/M/c queue, ``W = W_q + 1 / mu``.

    Args:
        c: Number of servers (integer >= 1).
        lam: Arrival rate (>= 0).
        mu: Service rate of one server (> 0).

    Returns:
        The mean sojourn (response) time.

    Raises:
        ValueError: On invalid arguments or if ``rho >= 1``.
    """
    n, lam, mu = _mmc_args(c, lam, mu)
    return mmc_mean_wait(n, lam, mu) + 1.0 / mu


def mmc_wait_quantile(c, lam, mu, q) -> float:
    """Quantile of the waiting time in queue of an FCFS M/M/c queue.

    The waiting time has an atom at zero of mass ``1 - C`` and tail
    ``P(W > t) = C exp(-(c mu - lam) t)``, so the ``q``-quantile is 0 when ``q <= 1 - C`` and
    ``ln(C / (1 - q)) / (c mu - lam)`` otherwise.

    Args:
        c: Number of servers (integer >= 1).
        lam: Arrival rate (>= 0).
        mu: Service rate of one server (> 0).
        q: Probability level, ``0 <= q < 1`` (e.g. 0.99 for the 99th percentile).

    Returns:
        The smallest ``t >= 0`` with ``P(W <= t) >= q``.

    Raises:
        ValueError: On invalid arguments, ``q`` outside ``[0, 1)``, or ``rho >= 1``.
    """
    n, lam, mu = _mmc_args(c, lam, mu)
    q = _finite("q (quantile level)", q)
    if not 0.0 <= q < 1.0:
        raise ValueError(f"q (quantile level) must satisfy 0 <= q < 1, got {q!r}")
    pwait = erlang_c(n, lam / mu)
    tail = 1.0 - q
    if pwait <= tail:
        return 0.0
    return math.log(pwait / tail) / (n * mu - lam)


# --------------------------------------------------------------------------------------------
# M/G/1 family
# --------------------------------------------------------------------------------------------


def mg1_mean_wait(lam, mean_s, second_moment_s2) -> float:
    """Mean waiting time in queue of an M/G/1 queue (Pollaczek-Khinchine formula).

    ``W_q = lam E[S^2] / (2 (1 - rho))`` with ``rho = lam E[S]``.

    Args:
        lam: Arrival rate (>= 0).
        mean_s: Mean service time ``E[S]`` (> 0).
        second_moment_s2: Second moment of the service time ``E[S^2]``; must be at least
            ``E[S]^2`` (for exponential service it is ``2 / mu^2``, for deterministic ``s^2``).

    Returns:
        Mean time spent waiting before service starts.

    Raises:
        ValueError: On negative or non-finite arguments, ``E[S^2] < E[S]^2``, or ``rho >= 1``.
    """
    lam = _nonneg("lam (arrival rate)", lam)
    mean_s = _positive("mean_s (mean service time)", mean_s)
    s2 = _nonneg("second_moment_s2 (E[S^2])", second_moment_s2)
    if s2 < mean_s * mean_s * (1.0 - 1e-12):
        raise ValueError(
            f"second_moment_s2 = {s2!r} is below mean_s**2 = {mean_s * mean_s!r}; "
            "E[S^2] >= E[S]^2 for any distribution"
        )
    rho = lam * mean_s
    _check_stable(rho)
    return lam * s2 / (2.0 * (1.0 - rho))


def md1_mean_wait(lam, service_s) -> float:
    """Mean waiting time in queue of an M/D/1 queue (constant service time ``service_s``).

    Half the M/M/1 value at the same load: ``W_q = rho s / (2 (1 - rho))``.

    Args:
        lam: Arrival rate (>= 0).
        service_s: The constant service time (> 0).

    Returns:
        Mean time spent waiting before service starts.

    Raises:
        ValueError: On invalid arguments or if ``rho = lam * service_s >= 1``.
    """
    service_s = _positive("service_s (service time)", service_s)
    return mg1_mean_wait(lam, service_s, service_s * service_s)


def mm1_mean_wait(lam, mu) -> float:
    """Mean waiting time in queue of an M/M/1 queue, ``W_q = rho / (mu - lam)``.

    Args:
        lam: Arrival rate (>= 0).
        mu: Service rate (> 0).

    Returns:
        Mean time spent waiting before service starts.

    Raises:
        ValueError: On invalid arguments or if ``rho = lam / mu >= 1``.
    """
    lam = _nonneg("lam (arrival rate)", lam)
    mu = _positive("mu (service rate)", mu)
    rho = lam / mu
    _check_stable(rho)
    return rho / (mu - lam)


# --------------------------------------------------------------------------------------------
# sizing
# --------------------------------------------------------------------------------------------


def erlang_c_servers_for_target(
    lam,
    mu,
    target_wait_s=None,
    target_pwait=None,
    max_c: int = DEFAULT_MAX_SERVERS,
) -> int:
    """Smallest number of M/M/c servers meeting a mean-wait and/or probability-of-wait target.

    Both the mean wait ``W_q`` and the probability of waiting ``C(c, a)`` decrease as servers are
    added at a fixed arrival rate, so the answer is found by walking up from the smallest stable
    ``c`` (the first integer above ``a = lam / mu``), updating Erlang B incrementally.

    Args:
        lam: Arrival rate (>= 0).
        mu: Service rate of one server (> 0).
        target_wait_s: If given, require ``W_q <= target_wait_s`` (same time unit as ``1 / mu``).
        target_pwait: If given, require ``P(W > 0) <= target_pwait`` (a probability in [0, 1]).
        max_c: Give up (ValueError) if no ``c <= max_c`` meets the targets.

    Returns:
        The minimal integer ``c >= 1`` meeting every given target.

    Raises:
        ValueError: If no target is given, an argument is invalid, a target can only be met with
            infinitely many servers (zero wait at positive load), or ``max_c`` is too small.
    """
    lam = _nonneg("lam (arrival rate)", lam)
    mu = _positive("mu (service rate)", mu)
    max_c = _servers(max_c)
    if target_wait_s is None and target_pwait is None:
        raise ValueError("give at least one of target_wait_s or target_pwait")
    if target_wait_s is not None:
        target_wait_s = _nonneg("target_wait_s", target_wait_s)
    if target_pwait is not None:
        target_pwait = _nonneg("target_pwait", target_pwait)
        if target_pwait > 1.0:
            raise ValueError(f"target_pwait must be a probability in [0, 1], got {target_pwait!r}")

    a = lam / mu
    if a == 0.0:
        return 1
    if target_wait_s == 0.0 or target_pwait == 0.0:
        raise ValueError(
            "a zero waiting target cannot be met by finitely many servers at positive load"
        )

    c_min = math.floor(a) + 1  # smallest c with a < c
    if c_min > max_c:
        raise ValueError(
            f"offered load a = {a:.6g} Erlangs needs more than max_c = {max_c} servers "
            "just to be stable"
        )
    b = _erlang_b_raw(c_min - 1, a)
    for c in range(c_min, max_c + 1):
        ab = a * b
        b = ab / (c + ab)
        pwait = _erlang_c_from_b(c, a, b)
        ok = True
        if target_pwait is not None and pwait > target_pwait:
            ok = False
        if ok and target_wait_s is not None and pwait / (c * mu - lam) > target_wait_s:
            ok = False
        if ok:
            return c
    raise ValueError(f"no c <= max_c = {max_c} meets the target(s); raise max_c")
