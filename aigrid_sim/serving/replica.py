"""The replicas of one site, batching as vLLM v1 / TensorRT-LLM in-flight batching, event-cheap.

What a replica does (the scheduler of ``vllm/v1/core/sched/scheduler.py``, one step at a time):

- **Admission** is bounded by KV-cache memory and by ``max_num_seqs``, not by a slot count,
  FIFO from the site's waiting queue, keeping free a 1 % watermark (``kv_capacity_tokens``,
  paged in ``block_tokens`` blocks). Two rules (``Deployment.admission``):

  - ``forecast`` (the default): a request is admitted only if the KV held stays within memory
    at every future step, given every request's output length (``max_tokens``, which
    benchmarks set to the output length). KV held grows by one token per sequence per step and
    drops at each completion, so it peaks just before one: :func:`peak_fits` checks those
    peaks. Such a replica never runs out of memory and never preempts; it fills memory as far
    as the staggering of the running sequences allows. TensorRT-LLM's default
    (``GUARANTEED_NO_EVICT``) also never evicts but reserves every sequence's whole output at
    once, which admits fewer.
  - ``vllm``: a request is admitted when its prompt's blocks fit, less the blocks the running
    sequences will add before the next of them completes; when memory runs out the newest
    sequence is preempted (below). Identical requests then come in waves that preempt each
    other.

  A request whose prompt plus output can never fit is refused at once (:attr:`Admit.TOO_LONG`).
- **Each step** carries one decode token for every decoding sequence, then prefill chunks of the
  admitted prompts, FIFO, up to ``max_num_batched_tokens`` tokens in all (chunked prefill). Its
  wall time is ``step.step_s(new tokens, context tokens held)``
  (:mod:`aigrid_sim.serving.steptime`). The last prefill chunk of a prompt emits the first
  output token.
- **Preemption** (``vllm`` admission; a ``forecast`` replica never gets there): decode tokens
  grow the KV held by one token per sequence per step; when the next step would not fit,
  evictable prefix-cache blocks are dropped first (LRU), then the newest running sequence is
  preempted (recompute, as vLLM does): its blocks are freed and it goes back to the head of the
  queue, to be prefilled again (prompt + tokens generated so far).
- **Prefix caching** (:mod:`aigrid_sim.serving.prefix_cache`): leading prompt units already
  cached are not prefilled again; cached units share the KV budget.

**Event-cheap.** Between two changes of a replica's batch (an admission, the end of a prefill, a
completion, a preemption) every step has the same composition: ``D`` decodes plus a fixed prefill
chunk, with the context growing by the step's tokens. The time of ``k`` such steps is then a
closed form (exact for a step time linear in the context), so the replica needs *one* pending
event: the next change, projected in whole steps (the virtual time of processor-sharing queues:
the step counter ``V`` is the decodes' common clock, and a sequence ending ``f`` tokens from now
ends at ``V + f`` whatever the batch does meanwhile). An arrival between changes brings the
replica to the end of the step in progress (work is never split inside a step, as in a real
engine), is admitted there, and the next change is projected again; an event made stale by that
is ignored (version numbers). There is no event per token or per step. Memory accounting holds
at every change: block-rounded KV held never exceeds ``kv_capacity_tokens``.

The engine (:mod:`aigrid_sim.sim.engine`) uses a :class:`ReplicaPool` per generative site through
:meth:`~ReplicaPool.arrive`, :meth:`~ReplicaPool.set_alive` and the callbacks it passes in;
:func:`aigrid_sim.serving.batching.simulate_iterations` is the step-by-step reference it is
tested against.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from enum import IntEnum
from operator import itemgetter
from typing import Any

import numpy as np

from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.prefix_cache import PrefixCache

INF = math.inf
KINF = 1 << 60  # "no change ahead", in steps (an int, for compiled code)
_fourth, _fifth = itemgetter(3), itemgetter(4)
NAN = math.nan
WATERMARK = 0.01  # share of the KV budget kept free when admitting into a busy replica


class Admit(IntEnum):
    """What :meth:`ReplicaPool.arrive` did with a request."""

    STARTED = 0  # admitted into a replica's batch
    QUEUED = 1  # waiting at the site
    FULL = 2  # the site's queue is full
    TOO_LONG = 3  # its context can never fit in a replica's KV cache
    DOWN = 4  # the site has no replica alive


# The same codes as plain ints for the hot path (an IntEnum member costs ~0.2 us to look up).
_STARTED, _QUEUED, _FULL, _TOO_LONG, _DOWN = (int(a) for a in Admit)


class Spec:
    """The numbers of a deployment the scheduler needs (read once from a ``Deployment``).

    Args:
        dep: A generative :class:`~aigrid_sim.serving.catalog.Deployment` with ``step``,
            ``kv_capacity_tokens``, ``block_tokens``, ``max_num_seqs`` and
            ``max_num_batched_tokens``.
        where: Names the deployment in errors.

    Raises:
        ConfigError: a KV budget of zero, or a token budget below the sequence cap.
    """

    __slots__ = ("step_s", "form", "cap", "block", "max_seqs", "budget", "ctx_slope", "watermark",
                 "forecast")

    def __init__(self, dep, where: str = "site"):
        step = dep.step
        self.cap = int(dep.kv_capacity_tokens)
        self.block = int(dep.block_tokens)
        self.max_seqs = int(dep.max_num_seqs)
        self.budget = int(dep.max_num_batched_tokens)
        self.step_s, self.form = _fit_step(step)
        name = f"{dep.model.name} on {dep.gpus_per_replica} x {dep.gpu.name}"
        if self.cap < self.block:
            raise ConfigError(f"{where}: {name} has a KV budget of {self.cap} tokens after its "
                              f"weights: no request fits; use more GPUs per replica or another GPU")
        if self.max_seqs < 1 or self.budget < 1:
            raise ConfigError(f"{where}: {name}: max_num_seqs ({self.max_seqs}) and "
                              f"max_num_batched_tokens ({self.budget}) must be >= 1")
        # Every running sequence's decode token must fit a step's token budget (vLLM requires
        # max_num_batched_tokens >= max_num_seqs): the budget caps the sequences.
        self.max_seqs = min(self.max_seqs, self.budget)
        # Attention cost per context token: the step time is linear in the context.
        self.ctx_slope = (self.step_s(1.0, 1e6) - self.step_s(1.0, 0.0)) / 1e6
        self.watermark = int(WATERMARK * self.cap)
        self.forecast = dep.admission == "forecast"


def _fit_step(step) -> tuple[Any, tuple[int, float, float, float, float]]:
    """``step.step_s`` as a closure over its constants, and as ``(kind, a, b, w, c)``.

    Tries ``a + b new + c ctx`` (kind 0) and ``a + max(w, b new) + c ctx`` (kind 1) with the
    constants read off the model, and uses the first that gives the same times (to 1e-12) as
    ``step.step_s`` on a spread of batches: the scheduler then computes step times inline
    (:meth:`ReplicaPool._step`, the same operations in the same order as the closure, so the
    same times to the last bit). Kind 2: neither fits; ``step.step_s`` itself is called.
    """
    f = step.step_s
    probe = [(1, 10), (7, 300), (64, 5_000), (512, 40_000), (2048, 100_000), (8192, 1_000_000)]
    a0 = f(0.0, 0.0)
    bn = f(1e4, 0.0) - f(0.0, 0.0)
    c = (f(0.0, 1e6) - a0) / 1e6
    b0 = bn / 1e4

    def linear(new, ctx, a=a0, b=b0, c=c):
        return a + b * new + c * ctx

    w = getattr(step, "weights_s", None)
    tk = getattr(step, "token_s", None)
    oh = getattr(step, "overhead_s", 0.0)

    def roofline(new, ctx, w=w, tk=tk, oh=oh, c=c):
        d = tk * new
        return oh + (d if d > w else w) + c * ctx

    cands: list[tuple[Any, tuple[int, float, float, float, float]]] = [
        (linear, (0, float(a0), float(b0), 0.0, float(c)))]
    if w is not None and tk is not None:
        cands.append((roofline, (1, float(oh), float(tk), float(w), float(c))))
    for g, form in cands:
        try:
            if all(abs(g(a, b) - f(a, b)) <= 1e-12 * abs(f(a, b)) for a, b in probe):
                return g, form
        except TypeError:
            continue
    return f, (2, 0.0, 0.0, 0.0, 0.0)


def peak_fits(over: int, ends: list) -> bool:
    """Whether KV held, ``over`` above the memory now (<= 0), stays at or below it from now on.

    ``ends`` holds ``(step, tokens)`` for every sequence held: the step (from now) it emits its
    last token and the tokens it holds then. Each sequence grows by one token per step until
    then, and nothing else joins: KV held then rises between ends and drops at each, so its
    peaks are just before the ends. Sorts ``ends`` in place.
    """
    ends.sort()
    g = len(ends)
    u = over
    kp = 0
    for k, a in ends:
        u += g * (k - kp)
        if u > 0:
            return False
        u -= a
        g -= 1
        kp = k
    return True


def _profile_fits(fc: tuple, end: int, B: int, R: int) -> bool:
    """Whether a newcomer keeps the KV forecast ``fc`` within ``R`` tokens.

    The newcomer holds ``B + x`` tokens at step ``x <= end``; ``fc`` is
    :meth:`ReplicaPool._profile`'s. Checked just before every end up to its own, and its own.
    """
    xs, pm, sb, n = fc
    j = int(xs.searchsorted(end, "right"))
    if j and int(pm[j - 1]) + B > R:
        return False
    j = int(xs.searchsorted(end, "left"))
    return int(sb[j]) + (n - j) * end + B + end <= R


class Seq:
    """A request admitted into a replica's batch."""

    __slots__ = ("i", "priv", "ctx0", "left", "v0", "units", "dead", "gen", "t1", "ttft", "fa",
                 "fe")

    def __init__(self, i: int, priv: int, ctx0: int, left: int, units, gen: int, t1: float,
                 ttft: float):
        self.i = i
        self.priv = priv  # private KV tokens at the end of prefill (prompt not in shared units)
        self.ctx0 = ctx0  # context tokens at the end of prefill
        self.left = left  # prompt tokens still to prefill
        self.v0 = -1  # step counter when decoding started (-1 while prefilling)
        self.units = units  # prefix units referenced
        self.dead = False
        self.gen = gen  # output tokens emitted so far
        self.t1 = t1  # first admission (service start), kept here so the hot path reads no array
        self.ttft = ttft  # first admission to first token (NaN until then)
        self.fa = -1  # step counter at its last token as the scheduler assumes it (max_tokens)
        self.fe = -1  # its last-token step as the replica's KV forecast assumed it (prefilling)


class Replica:
    """The state of one replica (see the module docstring); the pool does the work."""

    __slots__ = ("k", "t0", "V", "D", "P", "C", "U", "nseq", "running", "dec", "pre", "cache",
                 "nf", "nl", "kf", "k1", "k_next", "t_next", "t_pend", "version", "dec_count",
                 "alive", "since", "preemptions", "G", "Gp", "fc", "fc_add", "fc_v")

    def __init__(self, k: int):
        self.k = k
        self.t0 = 0.0  # time of the state: a step boundary
        self.V = 0  # steps done (the decodes' clock)
        self.D = 0  # decoding sequences
        self.P = 0  # prompt tokens still to prefill, over the prefilling sequences
        self.C = 0  # context tokens held (what attention reads)
        self.U = 0  # KV tokens held, upper bound in whole blocks (private + cached units)
        self.nseq = 0  # sequences in the batch (+ fixed-work jobs)
        self.running: dict[int, Seq] = {}  # in admission order (newest last)
        # heap of (end step, tie, Seq, priv - v0, assumed end step) of decoding sequences (dead
        # ones left lazily)
        self.dec: list = []
        self.pre: deque[Seq] = deque()  # prefilling sequences, FIFO
        self.cache = PrefixCache()
        self.nf = 0  # tokens per full step of the current interval
        self.nl = 0  # tokens of its last step (the one ending a prefill)
        self.kf = KINF  # full steps before that last step
        self.k1 = KINF  # steps to the end of the head prefill
        self.k_next = KINF  # steps to the next change
        self.t_next = INF  # end of the current interval (k_next steps from t0)
        self.t_pend = INF  # time of the pending (valid) event, INF if none
        self.version = 0
        self.dec_count = 0
        self.alive = True
        self.since = 0.0  # when the batch last became non-empty (busy time, see busy_windows)
        self.preemptions = 0
        self.G = 0  # sum of the decoding sequences' assumed last steps (their growth: G - D V)
        self.Gp = 0  # output tokens the prefilling sequences may still produce (max_tokens)
        # The KV forecast of the running sequences (forecast admission; see _profile): built
        # when needed, then kept while it stays an upper bound: fc_add tokens held by
        # sequences admitted since (or ending later than it assumed). Built at step fc_v, it is
        # exact while fc_add is 0 and the step counter has not moved (nothing can end then).
        self.fc: tuple | None = None
        self.fc_add = 0
        self.fc_v = 0


class ReplicaPool:
    """The replicas of one generative site and its FIFO waiting queue.

    Args:
        spec: The deployment's :class:`Spec`.
        replicas: Replicas at the site.
        max_queue: Waiting room (requests).
        in_tokens: Prompt tokens per request id (a list).
        out_tokens: Output tokens per request id (a list; 0 is served as 1).
        rec: Per-request arrays written in place: ``t_start`` (first admission), ``prefill_s``
            (first token - first admission), ``service_s`` (last token - first admission),
            ``batch``, ``preemptions``, ``cached_tokens``, ``prefill_tokens``, ``tpot_s``.
        at: ``at(t, fn, arg)`` schedules ``fn(arg)`` at time ``t`` (the engine's clock).
        now: Returns the current time.
        done: ``done(i)`` is called when request ``i`` has its last token.
        busy: The engine's per-site list of requests in service (kept up to date here).
        site: This site's index in ``busy``.
        units: Optional ``units(i)``: request ``i``'s prefix units, ``((id, tokens), ...)``.
        work: Optional fixed service time per request id (non-generative apps: a job that holds
            a sequence slot for that long and does not take part in the steps).
        max_tokens: Optional ``max_tokens[i]``: the most output tokens request ``i`` may
            produce, as its client declared (>= its output): what the ``forecast`` admission
            plans with. None: each request's own output length (as a benchmark sets it).
    """

    def __init__(self, spec: Spec, replicas: int, max_queue: int, in_tokens, out_tokens, rec,
                 at, now, done, busy: list, site: int, units=None, work=None, is_fixed=None,
                 max_tokens=None):
        self.spec = spec
        self.reps = [Replica(k) for k in range(replicas)]
        self.alive_reps = list(self.reps)
        self.n_alive = replicas
        self.max_queue = max_queue
        self.queue: Any = deque()  # a deque, or a PriorityQueue (tenants' priorities)
        self.resume: dict[int, int] = {}  # preempted request -> output tokens already emitted
        self.where: dict[int, tuple] = {}  # fixed-work job -> (replica, token, start time)
        self._in: list[int] = in_tokens
        self._out: list[int] = out_tokens
        # What the scheduler knows of each request's output: its max_tokens (>= its output).
        self._fore: Any = max_tokens if max_tokens is not None else out_tokens
        self._work: Any = work
        self._is_fixed: Any = is_fixed
        self._units: Any = units
        self.rec: Any = rec
        self._at: Any = at
        self._now: Any = now
        self._done: Any = done
        # Priority queues only: _displaced(i) rejects request i, displaced from the full queue.
        self._displaced: Any = None
        self._busy: list[int] = busy
        self._s: int = site
        self._wake = self.wake
        self._tok = 0
        # Replica busy time: replica-seconds with at least one sequence (or fixed job) in the
        # batch, clipped to each window of busy_windows (set by the engine; none: not kept).
        self.busy_windows: tuple = ()
        self.busy_s: list[float] = []
        self._st: Any = spec.step_s
        kind, a, b, w, c = spec.form
        self._kind = kind
        self._sa = a
        self._sb = b
        self._sw = w
        self._sc = c
        self._cap = spec.cap
        self._b1 = spec.block - 1
        self._budget = spec.budget
        self.preemptions = 0

    # ------------------------------------------------------------------ public
    @property
    def waiting(self) -> int:
        """Requests waiting at the site."""
        return len(self.queue)

    def arrive(self, i: int) -> int:
        """Request ``i`` reaches the site now: admit it, queue it, or refuse it.

        Returns:
            An :class:`Admit` code, as a plain int (cheaper on the hot path; equal to the member).
        """
        if not self.n_alive:
            return _DOWN
        sp = self.spec
        fixed = self._is_fixed is not None and self._is_fixed[i]
        if not fixed:
            o = self._fore[i]
            if self._in[i] + (o if o > 1 else 1) + sp.block > sp.cap:
                return _TOO_LONG
        q = self.queue
        if not q:
            reps = self.alive_reps
            best = reps[0]
            bn = best.nseq
            if bn and len(reps) > 1:  # the first least busy replica (an idle one ends the search)
                for r in reps:
                    if r.nseq < bn:
                        best, bn = r, r.nseq
                        if not bn:
                            break
            if best.nseq < sp.max_seqs:
                now = self._now()
                if fixed:  # holds a sequence slot, takes no part in the steps
                    self._start_fixed(best, i, now)
                    return _STARTED
                if best.k_next == KINF:
                    if best.t0 < now:
                        best.t0 = now
                elif not self._sync(best, now):
                    # It arrives during the step that ends with the replica's next change:
                    # it waits for that boundary, where the change's event admits it.
                    q.append(i)
                    return _QUEUED
                ok = self._admit(best, i)
                self._project(best)
                if ok:
                    return _STARTED
        if len(q) >= self.max_queue:
            if self._displaced is None:
                return _FULL
            v = q.displace(i, self.resume)
            if v < 0:
                return _FULL
            self._displaced(v)
        q.append(i)
        return _QUEUED

    def wake(self, arg) -> None:
        """The projected next change of a replica is due (stale versions are ignored)."""
        r: Replica = arg[0]
        if arg[1] != r.version:
            return
        r.t_pend = INF
        k = r.k_next
        if k <= r.kf:  # no prefill ends: the common case, inline
            r.t0 = r.t_next
            r.V += k
            D = r.D
            U = r.U + D * k
            if U > self._cap:
                U -= r.cache.evict(U - self._cap)
            r.U = U
            nf = r.nf
            r.C += k * nf
            if r.pre:
                took = k * (nf - D)
                r.pre[0].left -= took
                r.P -= took
        else:
            self._advance(r, k)
        self._settle(r)

    def _start_fixed(self, r: Replica, i: int, t: float) -> None:
        if not r.nseq:
            r.since = t
        r.nseq += 1
        self._busy[self._s] += 1
        rec = self.rec
        rec.t_start[i] = t
        rec.batch[i] = r.nseq
        self._tok += 1
        self.where[i] = (r, self._tok, t)
        self._at(t + self._work[i], self.fixed_done, (i, self._tok))

    def fixed_done(self, arg) -> None:
        """A fixed-work job's time is up: free its sequence slot."""
        i, tok = arg
        w = self.where.get(i)
        if w is None or w[1] != tok:
            return  # interrupted meanwhile
        del self.where[i]
        r: Replica = w[0]
        now = self._now()
        r.nseq -= 1
        if not r.nseq:
            self._idle(r, now)
        self._busy[self._s] -= 1
        rec = self.rec
        rec.service_s[i] = now - w[2]
        rec.prefill_s[i] = 0.0
        self._done(i)
        if self.queue:
            if r.k_next == KINF:
                if r.t0 < now:
                    r.t0 = now
            elif not self._sync(r, now):
                return  # the replica's next change is at the end of this step: it pulls then
            self._settle(r)

    def set_alive(self, alive: int) -> list[int]:
        """From now on ``alive`` replicas are in service (the others lost, e.g. a fault).

        Lost replicas drop their batch (returned, for fail-over) and their cache; regained ones
        start empty. With none alive the waiting queue is returned too.

        Returns:
            The request ids that lost their place here, in a deterministic order.
        """
        now = self._now()
        out: list[int] = []
        self.n_alive = alive
        for r in self.reps[alive:]:
            if r.alive:
                r.alive = False
                r.version += 1
                out.extend(r.running)
                out.extend(i for i, w in self.where.items() if w[0] is r)
                self._reset(r)
        for i in out:
            self.where.pop(i, None)
            self.resume.pop(i, None)
        for r in self.reps[:alive]:
            if not r.alive:
                r.alive = True
                r.t0 = now
                r.V = 0
        if alive <= 0:
            out.extend(self.queue)
            for i in self.queue:
                self.resume.pop(i, None)
            self.queue.clear()
        else:
            for r in self.reps[:alive]:
                if r.nseq == 0:
                    r.t0 = now
                    self._pull(r)
                    self._project(r)
        self.alive_reps = [r for r in self.reps if r.alive]
        self._busy[self._s] = sum(r.nseq for r in self.alive_reps)
        return out

    def predict_s(self, in_tokens: float, out_tokens: float, ttft: bool,
                  work: float = 0.0) -> float:
        """Expected seconds from arrival to first token (``ttft``) or to the last token.

        Args:
            in_tokens: Prompt tokens.
            out_tokens: Output tokens expected (used for end-to-end targets and queue waits).
            ttft: Predict the first token (else the last).
            work: A fixed-work job's time instead (``in_tokens = out_tokens = 0``).
        """
        reps = self.alive_reps
        if not reps:
            return INF
        best = reps[0]
        bn = best.nseq
        if bn and len(reps) > 1:  # the first least busy replica (an idle one ends the search)
            for r in reps:
                if r.nseq < bn:
                    best, bn = r, r.nseq
                    if not bn:
                        break
        D = best.D
        room = self._budget - D
        if room < 1:
            room = 1
        P = best.P + in_tokens
        new = D + (P if P < room else room)
        step = self._step(new, best.C + new)
        pre_steps = -(-P // room) if P > 0 else 1
        if work:
            own = work
        else:
            own = (pre_steps + 0.5) * step
            if not ttft:
                own += out_tokens * self._step(D + 1, best.C + D * (in_tokens + out_tokens))
        q = len(self.queue)
        if q or bn >= self.spec.max_seqs:
            # Wait for (queue + 1) completions; a replica completes about D sequences per mean
            # residence of out_tokens steps.
            run = 0
            for r in reps:
                run += r.D + len(r.pre)
            own += (q + 1) * (out_tokens + pre_steps) * step / (run or 1)
        return own

    def _idle(self, r: Replica, t: float) -> None:
        """``r``'s batch became empty at ``t``: add its busy stretch to each window."""
        a = r.since
        for w, (lo, hi) in enumerate(self.busy_windows):
            b = t if t < hi else hi
            a0 = a if a > lo else lo
            if b > a0:
                self.busy_s[w] += b - a0

    def track_busy(self, windows) -> None:
        """Keep replica busy time within each ``(start, end)`` of ``windows`` (before a run)."""
        self.busy_windows = tuple((float(a), float(b)) for a, b in windows)
        self.busy_s = [0.0] * len(self.busy_windows)

    def close_busy(self, t: float) -> None:
        """Count the busy stretches still open at ``t`` (the end of a run)."""
        for r in self.reps:
            if r.alive and r.nseq:
                self._idle(r, t)
                r.since = t

    # ------------------------------------------------------------------ the scheduler
    def _step(self, new: float, ctx: float) -> float:
        """Wall time of a step: ``new`` tokens, ``ctx`` context tokens held (``spec.form``)."""
        if self._kind == 0:
            return self._sa + self._sb * new + self._sc * ctx
        if self._kind == 1:
            d = self._sb * new
            return self._sa + (d if d > self._sw else self._sw) + self._sc * ctx
        return self._st(new, ctx)

    def _T(self, r: Replica, k: int) -> float:
        """Wall time of the next ``k`` steps of ``r``'s current interval."""
        if k <= r.kf:
            return k * self._step(r.nf, r.C + r.nf * (k + 1) * 0.5) if k else 0.0
        kf = r.kf
        c = r.C + kf * r.nf
        t = kf * self._step(r.nf, r.C + r.nf * (kf + 1) * 0.5) if kf else 0.0
        return t + self._step(r.nl, c + r.nl)

    def _sync(self, r: Replica, now: float) -> bool:
        """Bring ``r`` to the first step boundary at or after ``now``, if no change happens there.

        Returns:
            False (and ``r`` untouched) when that boundary is the replica's next change: the
            change is handled by its own event, at its time, never earlier.
        """
        dt = now - r.t0
        if dt <= 0.0:
            return True
        kn = r.k_next
        if kn == KINF:
            r.t0 = now
            return True
        if now >= r.t_next:
            return False
        # Smallest k with T(k) >= dt: solve the quadratic of the full steps, then adjust.
        nf = r.nf
        a = self._step(nf, r.C + nf)  # first step
        b = self.spec.ctx_slope * nf
        if b > 0.0:
            k = int(math.ceil((math.sqrt(a * a + 2.0 * b * dt) - a) / b - 1e-9))
        else:
            k = int(math.ceil(dt / a - 1e-9))
        if k < 1:
            k = 1
        if k >= kn:
            k = kn
        while k > 1 and self._T(r, k - 1) >= dt:
            k -= 1
        while k < kn and self._T(r, k) < dt:
            k += 1
        if k >= kn:
            return False
        self._advance(r, k)
        return True

    def _advance(self, r: Replica, k: int) -> None:
        """Run ``k`` steps of the current interval (``k <= k_next``): clocks, KV, prefill."""
        if k == r.k_next:
            t = r.t_next
        else:
            t = r.t0 + self._T(r, k)
        r.t0 = t
        r.V += k
        r.U += r.D * k
        if r.U > self.spec.cap:  # decodes grew into evictable cache blocks: evict them now
            r.U -= r.cache.evict(r.U - self.spec.cap)
        if k <= r.kf:
            r.C += k * r.nf
            if r.pre and k:
                took = k * (r.nf - r.D)
                r.pre[0].left -= took
                r.P -= took
            return
        # The last step of the interval ends the head prefill; later prompts take what is left.
        full = r.kf
        r.C += full * r.nf + r.nl
        pre = r.pre
        head = pre[0]
        took = full * (r.nf - r.D)
        head.left -= took
        r.P -= took
        budget = r.nl - r.D
        r.P -= budget
        ended = []
        while budget > 0 and pre:
            s = pre[0]
            if s.left <= budget:
                budget -= s.left
                s.left = 0
                pre.popleft()
                ended.append(s)
            else:
                s.left -= budget
                budget = 0
        for s in ended:
            self._prefilled(r, s)

    def _prefilled(self, r: Replica, s: Seq) -> None:
        """``s`` finished its prefill at ``r.t0``: it emits a token and starts decoding."""
        i = s.i
        gen = s.gen
        f = self._fore[i]
        r.Gp -= f - gen
        gen += 1
        s.gen = gen
        if gen == 1:
            s.ttft = self.rec.prefill_s[i] = r.t0 - s.t1
        o = self._out[i]
        V = s.v0 = r.V
        r.D += 1  # undone by _finish if this was its last token
        if gen >= o:
            self._finish(r, s)
            return
        r.dec_count += 1
        s.fa = fa = V + f - gen
        r.G += fa
        if r.fc is not None and fa > s.fe:  # it may end later than the forecast assumed
            r.fc_add += s.priv + self._b1 + fa - V
        heapq.heappush(r.dec, (V + o - gen, r.dec_count, s, s.priv - V, fa))

    def _finish(self, r: Replica, s: Seq) -> None:
        """``s`` emitted its last token at ``r.t0``."""
        i = s.i
        steps = r.V - s.v0
        r.D -= 1
        if s.fa >= 0:
            r.G -= s.fa
        r.nseq -= 1
        if not r.nseq:
            self._idle(r, r.t0)
        del r.running[i]
        r.U -= s.priv + self._b1 + steps
        r.C -= s.ctx0 + steps
        if s.units:
            r.cache.release(s.units)
        self._busy[self._s] -= 1
        rec = self.rec
        t1 = s.t1
        rec.service_s[i] = r.t0 - t1
        o = self._out[i]
        if o > 1:
            rec.tpot_s[i] = (r.t0 - t1 - s.ttft) / (o - 1)
        self._done(i)

    def _settle(self, r: Replica, project: bool = True) -> None:
        """At a step boundary: completions, memory (evict, preempt), admissions, next change."""
        dec = r.dec
        if dec:
            V = r.V
            pop = heapq.heappop
            while dec and dec[0][0] <= V:
                s: Seq = pop(dec)[2]
                if not s.dead:
                    self._finish(r, s)
            while dec and dec[0][2].dead:
                pop(dec)
        cap = self._cap
        preempted = False
        D = r.D
        if r.U > cap:  # growth used evictable cache blocks: evict them now
            r.U -= r.cache.evict(r.U - cap)
        if D and cap - r.U < D:  # the next step would not fit
            if r.cache.evictable:
                r.U -= r.cache.evict(D * (self._b1 + 1))
            while r.D and cap - r.U < r.D:
                self._preempt(r)
                preempted = True
        if not preempted and self.queue:
            self._pull(r)
        if project:
            self._project(r)

    def _preempt(self, r: Replica) -> None:
        """Preempt the newest running sequence of ``r`` (recompute): back to the queue's head."""
        i = next(reversed(r.running))
        s = r.running.pop(i)
        if s.v0 < 0:  # still prefilling
            r.pre.remove(s)
            r.Gp -= self._fore[i] - s.gen
            r.P -= s.left
            r.U -= s.priv + self.spec.block - 1
            r.C -= s.ctx0 - s.left
        else:
            steps = r.V - s.v0
            r.D -= 1
            s.dead = True
            if s.fa >= 0:
                r.G -= s.fa
            r.U -= s.priv + self.spec.block - 1 + steps
            r.C -= s.ctx0 + steps
        if s.units:
            r.cache.release(s.units)
        r.nseq -= 1
        if not r.nseq:
            self._idle(r, r.t0)
        self._busy[self._s] -= 1
        r.preemptions += 1
        self.preemptions += 1
        self.rec.preemptions[i] += 1
        self.resume[i] = s.gen
        self.queue.appendleft(i)

    def _pull(self, r: Replica) -> None:
        """Admit waiting requests into ``r`` (FIFO) while they fit."""
        q = self.queue
        fixed = self._is_fixed
        while q and r.nseq < self.spec.max_seqs:
            i = q[0]
            if fixed is not None and fixed[i]:
                self._start_fixed(r, i, r.t0)
            elif not self._admit(r, i):
                break
            q.popleft()

    def _admit(self, r: Replica, i: int) -> bool:
        """Admit request ``i`` into ``r`` at ``r.t0`` if its prompt's KV fits."""
        sp = self.spec
        resume = self.resume
        fresh = not resume or i not in resume
        gen = 0 if fresh else resume[i]
        p = self._in[i] + gen
        units = self._units(i) if self._units is not None else None
        if units:
            hit, new, held = r.cache.match(units)
            shared = 0
            for u in units:
                shared += u[1]
            if hit >= p:
                hit = p - 1 if p > 0 else 0
        else:
            hit = new = held = shared = 0
        priv = p - shared
        need = priv + sp.block - 1 + new
        free = sp.cap - r.U + r.cache.evictable - held
        if r.nseq:
            free -= sp.watermark
            if sp.forecast:
                over = need - free
                if over > 0:
                    return False
                # Fast: KV held stays within memory even if every sequence grew to its end
                # before any of them ended. Else forecast the peak.
                room = self._budget - r.D
                if room < 1:
                    room = 1
                kpre = -(-(r.P + p - hit) // room)  # steps to the end of its prefill, at most
                rem = self._fore[i] - gen
                if (over + r.G - r.D * r.V + r.Gp + rem + (len(r.pre) + 1) * kpre > 0
                        and not self._fits_ahead(r, over, need, r.V + kpre + rem - 1)):
                    return False
                if r.fc is not None:  # held by the forecast's bound from now on
                    r.fc_add += need + kpre + rem - 1
                    fe = r.V + kpre + rem - 1
                else:
                    fe = -1
            else:
                # Leave room for the running sequences' growth until the next completion.
                if r.dec:
                    free -= (r.D + len(r.pre)) * (r.dec[0][0] - r.V)
                elif r.pre:
                    out = self._out
                    free -= len(r.pre) * min(out[q.i] - q.gen for q in r.pre)
                if need > free:
                    return False
        elif need > free:
            return False
        else:
            r.fc = None  # an empty replica: no forecast to keep
        U = r.U + need
        c = r.cache
        if units:
            c.acquire(units)
            c.hits += hit
            c.misses += p - hit
        else:
            c.misses += p
        if U > sp.cap:  # make room: evict least recently used cached blocks
            U -= c.evict(U - sp.cap)
        r.U = U
        left = p - hit
        rec = self.rec
        if fresh:
            s = Seq(i, priv, p, left, units, gen, r.t0, NAN)
            rec.t_start[i] = r.t0
            rec.batch[i] = r.nseq + 1
            rec.prefill_tokens[i] = p
        else:
            s = Seq(i, priv, p, left, units, gen, float(rec.t_start[i]), float(rec.prefill_s[i]))
            del resume[i]
            rec.prefill_tokens[i] += p
        r.running[i] = s
        if r.fc is not None:
            s.fe = fe
        if not r.nseq:
            r.since = r.t0
        r.nseq += 1
        r.C += hit
        r.P += left
        r.pre.append(s)
        r.Gp += self._fore[i] - gen
        self._busy[self._s] += 1
        if hit:
            rec.cached_tokens[i] += hit
        if left == 0:  # nothing to compute (empty prompt): the next step decodes
            r.pre.pop()
            self._prefilled(r, s)
        return True

    def _fits_ahead(self, r: Replica, over: int, need: int, end: int) -> bool:
        """Whether ``r``'s KV held stays within memory at every future step if a request joins.

        The request holds ``need`` tokens now (``over`` above the memory, <= 0), grows by one a
        step and ends at step ``end`` (the step counter ``V``'s scale). The running sequences'
        forecast (:meth:`_profile`) is reused while it bounds them; when that bound is too loose
        it is rebuilt, and the answer is then exact (:func:`peak_fits` on the same ends).
        """
        V = r.V
        B = need - V  # its tokens held at step x <= end: B + x
        R = need - over + r.U - r.cache.tokens  # memory for private tokens
        fc = r.fc
        if fc is not None:
            if _profile_fits(fc, end, B + r.fc_add, R):
                return True
            if not r.fc_add and r.fc_v == V:  # exact: nothing changed since it was built
                return False
        fc = r.fc = self._profile(r)
        r.fc_add = 0
        r.fc_v = V
        return _profile_fits(fc, end, B, R)

    def _profile(self, r: Replica) -> tuple:
        """The private KV held by ``r``'s running sequences just before each of their ends.

        A sequence ending at step ``E`` and holding ``B + x`` tokens at step ``x <= E`` (``B``
        a constant: it grows by one a step; a prefilling one counts as growing from now, an upper
        bound) makes KV held just before step ``x`` the sum of ``B + x`` over the sequences with
        ``E >= x``: a function of the sequences alone, not of the time. Returns the sorted ends,
        the prefix maximum of that sum plus ``x`` (a newcomer's growth) at each end, the suffix
        sums of ``B`` (one past the end: 0) and the number of sequences.
        """
        V = r.V
        b1 = self._b1
        dec = r.dec
        if len(dec) == r.D:  # no dead entry
            ends = list(map(_fifth, dec))
            held = list(map(_fourth, dec))
        else:
            ends = [e[4] for e in dec if not e[2].dead]
            held = [e[3] for e in dec if not e[2].dead]
        room = self._budget - r.D
        if room < 1:
            room = 1
        out = self._fore
        cum = 0
        for s in r.pre:
            cum += s.left
            s.fe = e = V + (-(-cum // room)) + out[s.i] - s.gen - 1
            ends.append(e)
            held.append(s.priv - V)
        n = len(ends)
        E = np.array(ends, dtype=np.int64)
        order = np.argsort(E, kind="stable")
        E = E[order]
        B = np.array(held, dtype=np.int64)[order] + b1
        sb = np.zeros(n + 1, np.int64)
        sb[:n] = np.cumsum(B[::-1])[::-1]
        pm = np.maximum.accumulate(sb[:n] + E * np.arange(n + 1, 1, -1)) if n else sb[:0]
        return E, pm, sb, n

    def _project(self, r: Replica) -> None:
        """Project ``r``'s next change and schedule its event."""
        D = r.D
        budget = self._budget
        pre = r.pre
        if pre and budget > D:
            room = budget - D
            k = (pre[0].left + room - 1) // room
            r.k1 = k
            kf = k - 1
            rest = r.P - kf * room
            nl = D + (rest if rest < room else room)
            nf = budget
        else:
            k = kf = KINF
            r.k1 = KINF
            nf = nl = D
        r.kf = kf
        r.nf = nf
        r.nl = nl
        dec = r.dec
        if dec:
            k2 = dec[0][0] - r.V
            if k2 < k:
                k = k2
        if D:
            k3 = (self._cap - r.U + r.cache.evictable) // D
            if k3 < k:
                k = k3 if k3 > 1 else 1
        r.k_next = k
        if k == KINF:
            r.t_next = INF
            if r.t_pend != INF:
                r.version += 1
                r.t_pend = INF
            return
        C = r.C
        if k <= kf:
            t = r.t0 + k * self._step(nf, C + nf * (k + 1) * 0.5)
        else:
            T = self._step(nl, C + kf * nf + nl)
            if kf:
                T += kf * self._step(nf, C + nf * (kf + 1) * 0.5)
            t = r.t0 + T
        r.t_next = t
        if t != r.t_pend:
            r.t_pend = t
            v = r.version + 1
            r.version = v
            self._at(t, self._wake, (r, v))

    def _reset(self, r: Replica) -> None:
        """Empty a lost replica."""
        if r.nseq:
            self._idle(r, self._now())
        self._busy[self._s] -= r.nseq
        r.running.clear()
        r.dec.clear()
        r.pre.clear()
        r.cache = PrefixCache()
        r.D = r.P = r.C = r.U = r.nseq = r.G = r.Gp = 0
        r.fc = None
        r.k_next = r.k1 = r.kf = KINF
        r.t_next = r.t_pend = INF

    # ------------------------------------------------------------------ checks (tests)
    def kv_blocks(self, r: Replica) -> int:
        """Exact KV blocks ``r`` holds now (its state time): private blocks + cached units."""
        b = self.spec.block
        total = 0
        for s in r.running.values():
            steps = r.V - s.v0 if s.v0 >= 0 else 0
            total += -(-(s.priv + steps) // b)
        return total + r.cache.tokens // b

    def check(self) -> None:
        """Assert the memory invariants of every replica (tests)."""
        sp = self.spec
        for r in self.reps:
            if not r.alive:
                continue
            r.cache.check()
            assert r.U <= sp.cap, (r.U, sp.cap)
            assert self.kv_blocks(r) * sp.block <= r.U + sp.block * 0, (self.kv_blocks(r), r.U)
            assert r.nseq <= sp.max_seqs
            assert r.D == sum(1 for s in r.running.values() if s.v0 >= 0)
            assert r.G == sum(s.fa for s in r.running.values() if s.v0 >= 0), r.G
            assert r.Gp == sum(self._fore[s.i] - s.gen for s in r.pre), r.Gp
