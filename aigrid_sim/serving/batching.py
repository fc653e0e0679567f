"""Continuous batching on one replica: a per-iteration reference and the engine's approximation.

The engine (:mod:`aigrid_sim.sim.engine`) fixes a generative request's service time when it is
admitted, with no event per token::

    service = in_tokens * s_pre + out_tokens * (tpot[b] + s_pre * sum_{j != i} in_j / out_j)

where ``s_pre`` is the prefill time per input token, ``tpot[b]`` the decode step time of a batch of
``b`` sequences (``b`` = the batch the request joins) and the sum runs over the other sequences in
the batch. The last term charges the prefill stalls: while request ``i`` decodes, every other
sequence ``j`` finishes about once per ``out_j`` of ``i``'s tokens and the request that takes its
place is prefilled, holding the whole replica for ``in_j * s_pre``. Without it, prefill would be
free for everyone but the request itself, and a replica full of short-output, long-prompt
requests (voice turns, RAG) would look several times faster than it is. At saturation with fixed
lengths ``I``/``O`` it gives ``O / (I * s_pre + O * tpot[B] / B)`` output tokens per second, the
formula the catalogue is calibrated with.

:func:`simulate_iterations` is the finer model it approximates: iteration-level continuous
batching as in vLLM or TensorRT-LLM's in-flight batching. At each iteration boundary waiting
requests join (FIFO, up to ``max_batch``) and are prefilled in one iteration that stalls the
batch; otherwise the batch decodes one token per sequence in ``tpot[b]``. The first output token
comes out of the prefill. Runs of identical decode steps between events are taken in one jump, so
it costs O(requests) Python steps, not O(tokens). :func:`simulate_admission` applies the engine's
rule to one replica with a FIFO queue, for comparisons without building a world;
``tests/test_batching.py`` checks that the engine matches it and measures both against the
reference.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from aigrid_sim.serving.catalog import Deployment


@dataclass
class ReplicaTrace:
    """Per-request times on one replica (seconds; NaN for requests that never started).

    Attributes:
        t_start: Admission into the batch (service start).
        t_first: First output token (end of prefill).
        t_done: Last output token.
        batch: Sequences in the batch right after admission (this one included).
    """

    t_start: np.ndarray
    t_first: np.ndarray
    t_done: np.ndarray
    batch: np.ndarray

    @property
    def service_s(self) -> np.ndarray:
        """Time in the batch: admission to last token."""
        return self.t_done - self.t_start


def _check(arrival_s, in_tokens, out_tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(arrival_s, dtype=float)
    i = np.asarray(in_tokens, dtype=float)
    o = np.asarray(out_tokens, dtype=float)
    if not (len(t) == len(i) == len(o)):
        raise ValueError("arrival_s, in_tokens and out_tokens must have the same length")
    if len(t) and (np.any(np.diff(t) < 0) or np.any(o < 1) or np.any(i < 0)):
        raise ValueError("arrivals must be sorted, out_tokens >= 1 and in_tokens >= 0")
    return t, i, o


def simulate_iterations(dep: Deployment, arrival_s, in_tokens, out_tokens) -> ReplicaTrace:
    """Iteration-level continuous batching of one replica (the reference model).

    Args:
        dep: The replica's deployment (prefill rate, ``tpot_s`` table, ``max_batch``).
        arrival_s: Arrival times at the replica, sorted.
        in_tokens: Input tokens per request.
        out_tokens: Output tokens per request (>= 1).

    Returns:
        Per-request times; every request is served (the queue is unbounded).
    """
    t_arr, n_in, n_out = _check(arrival_s, in_tokens, out_tokens)
    n = len(t_arr)
    spt, tpot, cap = dep.prefill_s_per_token, dep.tpot_s, dep.max_batch
    t_start = np.full(n, np.nan)
    t_first = np.full(n, np.nan)
    t_done = np.full(n, np.nan)
    batch = np.zeros(n, dtype=np.int32)
    waiting: deque[int] = deque()
    run_ids: list[int] = []
    run_left: list[float] = []  # decode steps still to do
    nxt = 0
    t = 0.0
    while nxt < n or waiting or run_ids:
        while nxt < n and t_arr[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if not run_ids and not waiting:
            t = t_arr[nxt]
            continue
        if waiting and len(run_ids) < cap:
            # Prefill iteration: everyone admitted at this boundary, the batch stalls.
            joined = []
            while waiting and len(run_ids) + len(joined) < cap:
                joined.append(waiting.popleft())
            t0 = t
            t = t0 + spt * float(sum(n_in[k] for k in joined))
            b = len(run_ids) + len(joined)
            for k in joined:
                t_start[k], t_first[k], batch[k] = t0, t, b
                if n_out[k] <= 1:
                    t_done[k] = t
                else:
                    run_ids.append(k)
                    run_left.append(n_out[k] - 1)
            continue
        # Decode steps: identical until a sequence ends or a waiting request can join.
        b = len(run_ids)
        dt = tpot[b]
        steps = min(run_left)
        if b < cap and nxt < n:
            steps = min(steps, max(1, math.ceil((t_arr[nxt] - t) / dt - 1e-12)))
        t += steps * dt
        keep_ids, keep_left = [], []
        for k, left in zip(run_ids, run_left, strict=True):
            left -= steps
            if left <= 0:
                t_done[k] = t
            else:
                keep_ids.append(k)
                keep_left.append(left)
        run_ids, run_left = keep_ids, keep_left
    return ReplicaTrace(t_start, t_first, t_done, batch)


def simulate_admission(dep: Deployment, arrival_s, in_tokens, out_tokens, *,
                       stall: bool = True, prefill_wait: bool = False) -> ReplicaTrace:
    """The engine's admission-time rule on one replica with a FIFO queue.

    Args:
        dep: The replica's deployment.
        arrival_s: Arrival times, sorted.
        in_tokens: Input tokens per request.
        out_tokens: Output tokens per request (>= 1).
        stall: Charge the prefill stalls of the other sequences (the engine does); False gives
            the plain ``prefill + out x tpot[b]`` rule, for comparison.
        prefill_wait: Also make a request wait for the prefills admitted before it (FIFO on the
            replica) or, if none, half a decode step, as the engine does (TTFT within 0.68-0.96
            of the per-iteration model below saturation instead of 0.25-0.71; see
            tests/test_batching.py).

    Returns:
        Per-request times (``t_first`` = admission + own prefill).
    """
    t_arr, n_in, n_out = _check(arrival_s, in_tokens, out_tokens)
    n = len(t_arr)
    spt, tpot, cap = dep.prefill_s_per_token, dep.tpot_s, dep.max_batch
    t_start = np.full(n, np.nan)
    t_first = np.full(n, np.nan)
    t_done = np.full(n, np.nan)
    batch = np.zeros(n, dtype=np.int32)
    ends: list[tuple[float, int]] = []  # (done time, request) of sequences in the batch
    waiting: deque[int] = deque()
    ratio_sum = 0.0
    prefill_free = 0.0

    def start(k: int, now: float) -> None:
        nonlocal ratio_sum, prefill_free
        b = len(ends) + 1
        extra = spt * ratio_sum if stall else 0.0
        pre = n_in[k] * spt
        wait = 0.0
        if prefill_wait:
            wait = (prefill_free - now if prefill_free > now
                    else (0.5 * tpot[b - 1] if b > 1 else 0.0))
            prefill_free = now + wait + pre
        t_start[k], t_first[k], batch[k] = now, now + wait + pre, b
        t_done[k] = now + wait + pre + n_out[k] * (tpot[b] + extra)
        ratio_sum += n_in[k] / n_out[k]
        heapq.heappush(ends, (t_done[k], k))

    for k in range(n):
        now = t_arr[k]
        while ends and ends[0][0] <= now:
            te, j = heapq.heappop(ends)
            ratio_sum = ratio_sum - n_in[j] / n_out[j] if ends else 0.0
            if waiting:
                start(waiting.popleft(), te)
        if len(ends) < cap:
            start(k, now)
        else:
            waiting.append(k)
    while ends:
        te, j = heapq.heappop(ends)
        ratio_sum = ratio_sum - n_in[j] / n_out[j] if ends else 0.0
        if waiting:
            start(waiting.popleft(), te)
    return ReplicaTrace(t_start, t_first, t_done, batch)


def capacity_rps(dep: Deployment, mean_in: float, mean_out: float) -> float:
    """Requests per second a saturated replica serves at the given mean token counts."""
    return dep.legacy_saturation_out_tok_s(mean_in, mean_out) / mean_out
