"""One replica, two ways: the per-iteration reference and the engine's event-cheap replica.

:func:`simulate_iterations` is the reference: the scheduler of vLLM v1 / TensorRT-LLM in-flight
batching run one step at a time, with exact paged KV accounting. Before each step, every decoding
sequence whose next token opens a new block gets one; if the blocks are not there, evictable
prefix-cache blocks are dropped (LRU) and then the newest running sequence is preempted
(recompute: back to the head of the queue, prompt + generated tokens to prefill again), and no
request is admitted in that step. Then waiting requests are admitted FIFO while their prompt's
blocks fit and ``max_num_seqs`` allows, keeping free a 1 % watermark and (unless the replica is
empty) either, with the ``forecast`` admission, room for every running sequence's growth up to
each future completion (:func:`~aigrid_sim.serving.replica.peak_fits`, each sequence bounded
by its tokens plus a block), or, with the ``vllm`` admission, the blocks the decodes will add
until the next of them completes.
The step carries one token per decoding sequence, then prefill chunks FIFO up to
``max_num_batched_tokens``, and takes ``step.step_s(new tokens, context held)``; a prompt's last
chunk emits its first output token. Requests reaching the replica during a step join at its end.

:func:`simulate_replica` runs the engine's :class:`~aigrid_sim.serving.replica.ReplicaPool` (one
replica, same inputs) with a minimal event loop, so the two can be compared request by request
without building a world. The event-cheap replica differs from the reference in one
approximation: it bounds each sequence's KV by its tokens plus a block (it does not track block
boundaries between batch changes), so with the ``vllm`` admission it preempts slightly earlier
when memory is short. The
measured differences on TTFT, TPOT and latency are in ``tests/serving/test_event_cheap.py`` and
``docs/inference.md``.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from aigrid_sim.serving.prefix_cache import PrefixCache
from aigrid_sim.serving.replica import WATERMARK, ReplicaPool, Spec, peak_fits


@dataclass
class ReplicaTrace:
    """Per-request times on one replica (seconds; NaN for requests that never started).

    Attributes:
        t_start: First admission into the batch.
        t_first: First output token.
        t_done: Last output token.
        batch: Sequences in the batch right after its first admission (this one included).
        preemptions: Times each request was preempted.
        cached_tokens: Prompt tokens served from the prefix cache (over its admissions).
        prefill_tokens: Prompt tokens admitted (recomputations included).
        steps: Steps the replica ran (reference only; 0 for the event-cheap replica).
        max_kv_tokens: Most KV held at any step boundary, tokens in whole blocks.
    """

    t_start: np.ndarray
    t_first: np.ndarray
    t_done: np.ndarray
    batch: np.ndarray
    preemptions: np.ndarray
    cached_tokens: np.ndarray
    prefill_tokens: np.ndarray
    steps: int = 0
    max_kv_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    @property
    def service_s(self) -> np.ndarray:
        """Time in the batch: first admission to last token."""
        return self.t_done - self.t_start

    @property
    def ttft_s(self) -> np.ndarray:
        """Arrival at the replica to first token needs the arrivals: see :func:`metrics`."""
        return self.t_first - self.t_start

    def metrics(self, arrival_s, out_tokens) -> dict[str, np.ndarray]:
        """TTFT, TPOT (after the first token) and latency per request, from arrival, seconds."""
        t = np.asarray(arrival_s, float)
        o = np.asarray(out_tokens, float)
        tpot = np.where(o > 1, (self.t_done - self.t_first) / np.maximum(o - 1, 1), np.nan)
        return {"ttft": self.t_first - t, "tpot": tpot, "latency": self.t_done - t}


def _check(arrival_s, in_tokens, out_tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(arrival_s, dtype=float)
    i = np.asarray(in_tokens, dtype=np.int64)
    o = np.asarray(out_tokens, dtype=np.int64)
    if not (len(t) == len(i) == len(o)):
        raise ValueError("arrival_s, in_tokens and out_tokens must have the same length")
    if len(t) and (np.any(np.diff(t) < 0) or np.any(o < 1) or np.any(i < 0)):
        raise ValueError("arrivals must be sorted, out_tokens >= 1 and in_tokens >= 0")
    return t, i, o


def _units_fn(units):
    if units is None:
        return None
    return units.__getitem__ if not callable(units) else units


def _forecast(running, gen, n_out, cached: int, evictable: int, cap: int, need: int,
              left: int, rem: int, B: int, M: int) -> bool:
    """The ``forecast`` admission of the reference.

    Whether KV held stays within ``cap`` at every future step if a request holding ``need``
    tokens now, with ``left`` prompt tokens to prefill and ``rem`` output tokens to come, joins
    (:func:`~aigrid_sim.serving.replica.peak_fits`). Each running sequence is bounded by its
    tokens + ``B - 1``, as the event-cheap replica does.
    """
    decoding = sum(1 for q in running if q["left"] == 0)
    room = max(M - decoding, 1)
    held = cached + need
    ends = []
    cum = 0
    for q in running:
        i = q["i"]
        h = q["priv_now"] + B - 1
        held += h
        if q["left"] == 0:
            k = int(n_out[i] - gen[i])
        else:  # prefilling: counted as growing from now
            cum += q["left"]
            k = -(-cum // room) + int(n_out[i] - gen[i]) - 1
        ends.append((k, h + k))
    k = -(-(cum + left) // room) + rem - 1
    ends.append((k, need + k))
    return peak_fits(held - cap - evictable, ends)


def simulate_iterations(dep, arrival_s, in_tokens, out_tokens, *, units=None) -> ReplicaTrace:
    """Step-by-step continuous batching of one replica (the reference model).

    Args:
        dep: The replica's deployment (``step``, ``kv_capacity_tokens``, ``block_tokens``,
            ``max_num_seqs``, ``max_num_batched_tokens``).
        arrival_s: Arrival times at the replica, sorted.
        in_tokens: Prompt tokens per request.
        out_tokens: Output tokens per request (>= 1).
        units: Optional prefix units per request (a sequence, or a function of the index):
            ``((unit id, tokens), ...)`` with tokens in whole blocks.

    Returns:
        Per-request times; every request is served (the queue is unbounded).

    Raises:
        ValueError: bad arrays, or a request that can never fit in the KV cache.
    """
    t_arr, n_in, n_out = _check(arrival_s, in_tokens, out_tokens)
    sp = Spec(dep)
    B, M, cap_blocks = sp.block, sp.budget, sp.cap // sp.block
    wm_blocks = int(WATERMARK * sp.cap) // B
    step_s = sp.step_s
    ufn = _units_fn(units)
    n = len(t_arr)
    big = np.flatnonzero(n_in + n_out + B > sp.cap)
    if len(big):
        raise ValueError(f"request {int(big[0])} ({n_in[big[0]]} + {n_out[big[0]]} tokens) can "
                         f"never fit in the KV cache ({sp.cap} tokens)")
    tr = ReplicaTrace(*(np.full(n, np.nan) for _ in range(3)), np.zeros(n, np.int32),
                      np.zeros(n, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64))
    cache = PrefixCache()
    waiting: deque[int] = deque()
    gen = np.zeros(n, dtype=np.int64)
    running: list[dict] = []  # admission order; each: i, p, priv, left, units, blocks
    used = 0  # private blocks of running sequences
    nxt = 0
    t = 0.0
    steps = 0
    max_kv = 0

    def free_blocks() -> int:
        return cap_blocks - used - cache.tokens // B

    def release(q: dict) -> None:
        nonlocal used
        used -= q["blocks"]
        if q["units"]:
            cache.release(q["units"])

    while nxt < n or waiting or running:
        while nxt < n and t_arr[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if not running and not waiting:
            t = t_arr[nxt]
            continue
        # 1. Blocks for this step's decode tokens; evict, then preempt the newest if short.
        preempted = False
        while True:
            need = sum(1 for q in running if q["left"] == 0 and q["priv_now"] % B == 0)
            short = need - free_blocks()
            if short <= 0:
                break
            if cache.evictable:
                cache.evict(short * B)
                continue
            q = running.pop()
            release(q)
            tr.preemptions[q["i"]] += 1
            waiting.appendleft(q["i"])
            preempted = True
        # 2. Admissions (none in a step that preempted).
        if not preempted:
            while waiting and len(running) < sp.max_seqs:
                i = waiting[0]
                p = int(n_in[i] + gen[i])
                us = ufn(i) if ufn is not None else None
                if us:
                    hit, new, held = cache.match(us)
                    shared = sum(u[1] for u in us)
                else:
                    hit = new = held = shared = 0
                if hit >= p:
                    hit = max(p - 1, 0)
                blocks = -(-(p - shared) // B)
                avail = free_blocks() + (cache.evictable - held) // B
                if running:
                    avail -= wm_blocks
                    if not sp.forecast:
                        # The running sequences' growth until the next completion.
                        dec = [int(n_out[q["i"]] - gen[q["i"]]) for q in running
                               if q["left"] == 0]
                        k = min(dec) if dec else min(int(n_out[q["i"]] - gen[q["i"]])
                                                     for q in running)
                        avail -= -(-len(running) * k // B)
                if blocks + new // B > avail:
                    break
                if running and sp.forecast and not _forecast(
                        running, gen, n_out, cache.tokens, cache.evictable - held,
                        sp.cap - wm_blocks * B, p - shared + B - 1 + new, p - hit,
                        int(n_out[i] - gen[i]), B, M):
                    break
                waiting.popleft()
                if us:
                    cache.acquire(us)
                cache.hits += hit
                cache.misses += p - hit
                over = blocks - free_blocks()
                if over > 0:
                    cache.evict(over * B)
                used += blocks
                running.append({"i": i, "p": p, "priv_now": p - shared, "left": p - hit,
                                "units": us, "blocks": blocks, "ctx": hit})
                if np.isnan(tr.t_start[i]):
                    tr.t_start[i] = t
                    tr.batch[i] = len(running)
                tr.cached_tokens[i] += hit
                tr.prefill_tokens[i] += p
        if not running:
            if nxt < n:
                t = max(t, t_arr[nxt])
            continue
        # 3. The step: decodes first, then prefill chunks FIFO under the token budget.
        budget = M
        new_tokens = 0
        for q in running:
            if q["left"] == 0:
                new_tokens += 1
                budget -= 1
        chunks = []
        for q in running:
            if q["left"] > 0 and budget > 0:
                c = min(q["left"], budget)
                budget -= c
                new_tokens += c
                chunks.append((q, c))
        ctx = sum(q["ctx"] for q in running) + new_tokens
        dt = step_s(new_tokens, ctx) if new_tokens else 0.0
        t += dt
        steps += 1
        done = []
        for q in running:
            i = q["i"]
            if q["left"] == 0:  # decoded one token
                q["ctx"] += 1
                q["priv_now"] += 1
                nb = -(-q["priv_now"] // B)
                if nb > q["blocks"]:
                    used += nb - q["blocks"]
                    q["blocks"] = nb
                gen[i] += 1
                if gen[i] >= n_out[i]:
                    tr.t_done[i] = t
                    done.append(q)
        for q, c in chunks:
            q["left"] -= c
            q["ctx"] += c
            if q["left"] == 0:
                i = q["i"]
                gen[i] += 1
                if np.isnan(tr.t_first[i]):
                    tr.t_first[i] = t
                if gen[i] >= n_out[i]:
                    tr.t_done[i] = t
                    done.append(q)
        max_kv = max(max_kv, (used + cache.tokens // B) * B)
        for q in done:
            running.remove(q)
            release(q)
        if not chunks and not any(q["left"] == 0 for q in running) and not done:
            # Nothing ran (cannot happen with budget >= max_num_seqs); avoid a spin.
            if nxt < n:
                t = max(t, t_arr[nxt])
    tr.steps = steps
    tr.max_kv_tokens = max_kv
    tr.cache_hits, tr.cache_misses = cache.hits, cache.misses
    return tr


class StandalonePool:
    """A :class:`ReplicaPool` outside the engine: its own records, clock and event heap.

    What the step-by-step comparison (:func:`simulate_replica`) and the planner's site replay
    (:func:`aigrid_sim.studies.plan.replay_site`) feed arrivals to. ``rec`` holds the columns the
    pool writes (as the engine's records); ``pool_args`` go to :class:`ReplicaPool`.
    """

    def __init__(self, dep, n: int, replicas: int, max_queue: int, in_tokens, out_tokens, *,
                 done=None, **pool_args):
        nan = np.full(n, np.nan)
        self.rec = SimpleNamespace(
            t_start=nan.copy(), prefill_s=nan.copy(), service_s=nan.copy(), tpot_s=nan.copy(),
            batch=np.zeros(n, np.int32), preemptions=np.zeros(n, np.int32),
            cached_tokens=np.zeros(n, np.int64), prefill_tokens=np.zeros(n, np.int64))
        self._heap: list = []
        self._order = 0
        self.now = 0.0
        self.pool = ReplicaPool(Spec(dep), replicas, max_queue, in_tokens, out_tokens, self.rec,
                                self._at, lambda: self.now, done or (lambda i: None), [0], 0,
                                **pool_args)

    def _at(self, t, fn, arg) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, fn, arg))

    def run(self, arrival_s: list, arrived=None, after=None) -> None:
        """Request ``i`` arrives at ``arrival_s[i]`` (sorted); run every event to the end.

        ``arrived(i, code)`` is told each :meth:`ReplicaPool.arrive` code; ``after()`` runs after
        every event (arrival or pool event). Ties go to the pool's events first.
        """
        heap, pool, n, nxt = self._heap, self.pool, len(arrival_s), 0
        while nxt < n or heap:
            if heap and (nxt >= n or heap[0][0] <= arrival_s[nxt]):
                t, _, fn, arg = heapq.heappop(heap)
                self.now = t
                fn(arg)
            else:
                self.now = arrival_s[nxt]
                code = pool.arrive(nxt)
                if arrived is not None:
                    arrived(nxt, code)
                nxt += 1
            if after is not None:
                after()


def simulate_replica(dep, arrival_s, in_tokens, out_tokens, *, units=None,
                     check: bool = False, max_tokens=None) -> ReplicaTrace:
    """The engine's event-cheap replica (:class:`ReplicaPool` of one replica) on the same inputs.

    Args:
        dep: The replica's deployment.
        arrival_s: Arrival times, sorted.
        in_tokens: Prompt tokens per request.
        out_tokens: Output tokens per request (>= 1).
        units: Optional prefix units per request (as :func:`simulate_iterations`).
        check: Check the memory invariants after every event (slow; tests).
        max_tokens: Optional max_tokens per request (>= its output): what a ``forecast``
            replica plans with (:class:`~aigrid_sim.serving.replica.ReplicaPool`).

    Returns:
        Per-request times.
    """
    t_arr, n_in, n_out = _check(arrival_s, in_tokens, out_tokens)
    n = len(t_arr)
    done = np.zeros(n, dtype=bool)

    def served(i):
        done[i] = True

    sp = Spec(dep)
    mt = None
    if max_tokens is not None:
        mt = np.asarray(max_tokens, dtype=np.int64)
        if mt.shape != n_out.shape or (mt < n_out).any():
            raise ValueError("max_tokens must give each request at least its output tokens")
        mt = mt.tolist()
    run = StandalonePool(dep, n, 1, 1 << 62, n_in.tolist(), n_out.tolist(), done=served,
                         units=_units_fn(units), max_tokens=mt)
    pool, rec = run.pool, run.rec
    max_kv = [0]

    def arrived(i, code):
        if code > 1:
            raise ValueError(f"request {i} ({n_in[i]} + {n_out[i]} tokens) can never "
                             f"fit in the KV cache ({sp.cap} tokens)")

    def after():
        pool.check()
        kv = pool.kv_blocks(pool.reps[0]) * sp.block
        if kv > max_kv[0]:
            max_kv[0] = kv

    run.run(t_arr.tolist(), arrived, after if check else None)
    max_kv = max_kv[0]
    t_first = rec.t_start + rec.prefill_s
    t_done = rec.t_start + rec.service_s
    c = pool.reps[0].cache
    return ReplicaTrace(rec.t_start, t_first, t_done, rec.batch, rec.preemptions,
                        rec.cached_tokens, rec.prefill_tokens, 0, max_kv, c.hits, c.misses)


def lone_request_s(dep, in_tokens: int, out_tokens: int) -> tuple[float, float]:
    """Time to first and to last token of a request alone on an idle replica, seconds.

    Its prompt is prefilled in chunks of ``max_num_batched_tokens`` (the last emits the first
    token), then it decodes ``out_tokens - 1`` steps, the context growing by one token each.
    """
    sp = Spec(dep)
    st = sp.step_s
    t = 0.0
    done = 0
    while done < in_tokens:
        c = min(sp.budget, in_tokens - done)
        done += c
        t += st(c, done)
    first = t
    for k in range(1, int(out_tokens)):
        t += st(1, in_tokens + k)
    return first, t


def capacity_rps(dep, mean_in: float, mean_out: float) -> float:
    """Requests per second a saturated replica serves at the given mean token counts."""
    return dep.saturation_out_tok_s(mean_in, mean_out) / mean_out


def error_table(ref: ReplicaTrace, ev: ReplicaTrace, arrival_s, out_tokens,
                warmup: float = 0.1) -> dict[str, dict[str, float]]:
    """Relative error of the event-cheap replica against the reference, mean and p99.

    Requests of the first ``warmup`` share are left out. Returns
    ``{metric: {"mean": err, "p99": err}}`` with ``err = event / reference - 1``.
    """
    a = ref.metrics(arrival_s, out_tokens)
    b = ev.metrics(arrival_s, out_tokens)
    k = int(len(arrival_s) * warmup)
    out = {}
    for m in ("ttft", "tpot", "latency"):
        x, y = a[m][k:], b[m][k:]
        ok = ~np.isnan(x) & ~np.isnan(y)
        x, y = x[ok], y[ok]
        out[m] = {"mean": float(y.mean() / x.mean() - 1.0) if len(x) else math.nan,
                  "p99": float(np.percentile(y, 99) / np.percentile(x, 99) - 1.0)
                  if len(x) else math.nan}
    return out
