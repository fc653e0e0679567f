"""Output analysis for simulation runs, and an exact FIFO reference queue.

* :func:`mean_ci` - Student-t confidence interval across independent replications.
* :func:`batch_means_ci` - the same from one long (already warmed-up) run, by batch means.
* :func:`within_ci` - does an interval (optionally widened) cover an expected value?
* :func:`fifo_waits` - the exact waiting times of a first-come-first-served c-server queue fed
  with given arrival and service times. Feeding the simulator and this function the same random
  input is the strictest check of a simulated queue.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from scipy import stats as _sps

__all__ = ["batch_means_ci", "fifo_waits", "mean_ci", "within_ci"]


def _check_confidence(confidence) -> float:
    conf = float(confidence)
    if not 0.0 < conf < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return conf


def _t_half_width(x: np.ndarray, conf: float) -> float:
    n = x.size
    sd = float(np.std(x, ddof=1))
    return float(_sps.t.ppf(0.5 + conf / 2.0, n - 1)) * sd / math.sqrt(n)


def mean_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t confidence half-width across independent replications.

    Args:
        samples: One value per independent replication (1-D array-like, at least 2 finite values).
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``(mean, half_width)``: the interval is ``mean +- half_width``.

    Raises:
        ValueError: On fewer than 2 samples, non-finite samples or a bad confidence level.
    """
    conf = _check_confidence(confidence)
    x = np.asarray(samples, dtype=float).ravel()
    if x.size < 2:
        raise ValueError(f"need at least 2 replications for a confidence interval, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must all be finite")
    return float(np.mean(x)), _t_half_width(x, conf)


def batch_means_ci(values, n_batches: int = 20, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and confidence half-width from one long run by the method of batch means.

    The series is cut into ``n_batches`` contiguous batches of equal size; the batch means are
    treated as approximately independent and a Student-t interval with ``n_batches - 1`` degrees
    of freedom is built on them. The warm-up must already be removed. If the length is not a
    multiple of ``n_batches`` the few leftover values at the *start* are dropped (they are the
    ones closest to the warm-up).

    Args:
        values: Output series of one run, in time order (1-D array-like, finite).
        n_batches: Number of batches (>= 2); 10-30 is usual.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``(mean, half_width)`` where ``mean`` is the mean of the batch means.

    Raises:
        ValueError: If ``n_batches < 2``, the series is shorter than ``n_batches``, it holds
            non-finite values, or the confidence level is bad.
    """
    conf = _check_confidence(confidence)
    if isinstance(n_batches, bool) or int(n_batches) != n_batches or n_batches < 2:
        raise ValueError(f"n_batches must be an integer >= 2, got {n_batches!r}")
    k = int(n_batches)
    x = np.asarray(values, dtype=float).ravel()
    if x.size < k:
        raise ValueError(f"need at least n_batches = {k} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must all be finite")
    m = x.size // k
    means = x[x.size - k * m :].reshape(k, m).mean(axis=1)
    return float(np.mean(means)), _t_half_width(means, conf)


def within_ci(estimate, half_width, expected, rel_slack: float = 0.0) -> bool:
    """Whether ``expected`` lies in ``estimate +- (half_width + rel_slack * |expected|)``.

    Args:
        estimate: Point estimate (centre of the interval).
        half_width: Confidence half-width (>= 0).
        expected: The value the interval should cover (e.g. an analytic result).
        rel_slack: Extra tolerance relative to ``|expected|`` (>= 0), for known small model
            biases.

    Returns:
        True if the (widened) interval covers ``expected``.

    Raises:
        ValueError: If ``half_width`` or ``rel_slack`` is negative or NaN.
    """
    hw = float(half_width)
    slack = float(rel_slack)
    if not hw >= 0.0:
        raise ValueError(f"half_width must be >= 0, got {half_width!r}")
    if not slack >= 0.0:
        raise ValueError(f"rel_slack must be >= 0, got {rel_slack!r}")
    exp = float(expected)
    return bool(abs(float(estimate) - exp) <= hw + slack * abs(exp))


def fifo_waits(arrival_times, service_times, c: int) -> np.ndarray:
    """Exact waiting times of a FIFO (first-come-first-served) queue with ``c`` identical servers.

    Kiefer-Wolfowitz recursion: a min-heap holds the times at which each server next becomes
    free (initially all servers are idle); customer ``n`` starts at
    ``max(arrival_n, earliest free time)`` and that server is then busy until start + service.
    Runs in ``O(n log c)``.

    Args:
        arrival_times: Arrival instants, non-decreasing (1-D array-like, finite). Customers are
            served in this order.
        service_times: Service durations, same length, >= 0.
        c: Number of servers (integer >= 1).

    Returns:
        Array of waiting times in queue (start of service minus arrival), one per customer,
        float64, all >= 0.

    Raises:
        ValueError: On mismatched lengths, decreasing arrivals, negative or non-finite inputs,
            or ``c < 1``.
    """
    if isinstance(c, bool) or int(c) != c or c < 1:
        raise ValueError(f"c (number of servers) must be an integer >= 1, got {c!r}")
    c = int(c)
    arr = np.asarray(arrival_times, dtype=float).ravel()
    svc = np.asarray(service_times, dtype=float).ravel()
    if arr.shape != svc.shape:
        raise ValueError(
            f"arrival_times and service_times differ in length: {arr.size} vs {svc.size}"
        )
    if not (np.all(np.isfinite(arr)) and np.all(np.isfinite(svc))):
        raise ValueError("arrival_times and service_times must be finite")
    if np.any(svc < 0):
        raise ValueError("service_times must be >= 0")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError("arrival_times must be non-decreasing (customers are served FIFO)")
    n = arr.size
    waits = np.zeros(n)
    if n == 0:
        return waits
    if c >= n:
        return waits

    free = [-math.inf] * c  # a valid heap: every server idle from the beginning of time
    out = [0.0] * n
    replace = heapq.heapreplace
    for i, (t, s) in enumerate(zip(arr.tolist(), svc.tolist(), strict=True)):
        f = free[0]
        if f > t:
            out[i] = f - t
            replace(free, f + s)
        else:
            replace(free, t + s)
    waits[:] = out
    return waits
