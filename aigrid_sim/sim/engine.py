"""The SimPy model: the request lifecycle on the grid, written into flat per-request records.

Life of a request (times in seconds; the SimPy environment owns the clock)::

    arrival --policy--> travel one way --> wait at the site --> service --> travel back

**Events.** The engine's own events (arrivals, the end of a trip to a site, a replica's next batch
change, a fixed job's end, a fail-over's retry) are kept in one heap and run by a single SimPy
process, :meth:`Engine._loop`. It runs them inline, advancing ``env.now`` itself, as long as no
other SimPy event (a fault, a health check, a view refresh, the progress tick, the horizon) is due
first; otherwise it yields a timeout to that event's time and carries on after it. The order of
events is exactly SimPy's (time, then scheduling order), at a fraction of SimPy's cost per event
(about 1 us instead of 3 us: no Event object, no callback list), which pays for the serving
physics. The trip back is pure arithmetic since nothing can happen to a response on its way home.

**Serving.** A site whose model generates tokens is a
:class:`~aigrid_sim.serving.replica.ReplicaPool`:
replicas batching as vLLM / TensorRT-LLM do (KV-cache memory, chunked prefill, preemption, prefix
cache), event-cheap; the engine only calls ``arrive`` / ``set_alive`` and is told when a request has
its last token, and never computes token timings itself. A site running a fixed-service model
(``mmc``, the queueing-theory checks) keeps the slot model: ``busy[s]`` of ``slots[s]`` slots in
use, the rest wait FIFO in ``queues[s]`` up to ``max_queue[s]``, each job holding its slot for its
fixed work.

Faults (:mod:`aigrid_sim.sim.faults`) change a site's capacity or the network while the run goes on.
``alive[s]`` is the truth, ``up[s]`` what policies see (copied from ``alive`` at once, or at the
next health check when ``faults.detection_s > 0``). A request caught by a failure -- queued or in
service at a site that goes down or loses replicas, or arriving at a dead site it was sent to --
fails over: the news travels back to its origin (one way), then after ``retry_delay_s`` the policy
chooses again, and the time lost is added to its latency (``extra_s``); past ``retries`` fail-overs
it ends ``failed``. Its pending completion event is made stale (it is ignored when it comes).
"""

from __future__ import annotations

import gc
import heapq
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

import numpy as np
import simpy
from simpy.events import Timeout

from aigrid_sim import rng as rngs
from aigrid_sim.errors import ConfigError
from aigrid_sim.outcomes import Reason, Status
from aigrid_sim.serving.replica import Admit, ReplicaPool, Spec
from aigrid_sim.sim import faults as faultmod
from aigrid_sim.sim.policies.base import Reject, Request, RoutingPolicy
from aigrid_sim.sim.policies.view import GridView
from aigrid_sim.sim.records import Records  # noqa: F401  (re-exported: engine.Records)
from aigrid_sim.workload.stream import RequestStream
from aigrid_sim.world.build import World

#: Why a request was rejected, by the policy's (or control plane's) return code.
_REJECT_REASON = {Reject.NO_CAPABLE_SITE: Reason.NO_CAPABLE_SITE, Reject.POLICY: Reason.POLICY,
                  Reject.SOVEREIGNTY: Reason.SOVEREIGNTY, Reject.QUOTA: Reason.QUOTA}

INF = float("inf")
# Codes as plain ints on the hot path (an IntEnum member costs ~0.2 us to look up).
_OK = int(Status.OK)
_QUEUED, _FULL, _TOO_LONG = int(Admit.QUEUED), int(Admit.FULL), int(Admit.TOO_LONG)


class Engine:
    """One simulation: a world, a request stream and a routing policy.

    Requests live in *slots*: rows of the per-request columns (``records`` and the lists the hot
    path reads). A run given one stream puts request ``i`` in slot ``i`` and keeps every row,
    as before. A streamed run (``windows=``) loads one window of arrivals at a time into free
    slots; whenever a window is loaded, the requests that have ended, from the oldest on up to
    the first still in flight, are handed to ``sink`` in request order and their slots are
    reused. Memory then follows the requests in flight, not the requests simulated, and the
    per-request path is the same code either way (slots are plain list and array indices).

    Args:
        world: The world (sites, origins, latency).
        stream: The requests, sorted by arrival time. With ``windows``, only its ``apps`` are
            read (pass an empty stream with the run's apps).
        policy: A bound-able routing policy.
        seed: The run seed (for policies' random streams).
        k_nearest: Candidate sites per origin precomputed for policies.
        staleness_s: Policies see load refreshed this often (0 = live).
        horizon_s: Stop the clock here; unfinished requests stay ``in_flight``.
        progress: Optional callable ``progress(now_s, requests_loaded)`` called about 200 times
            during the run.
        faults: Optional fault schedule (:func:`aigrid_sim.sim.faults.build_schedule`).
        windows: Optional iterable of time-sorted streams, one window after another, instead
            of ``stream``'s requests (a streamed run; needs ``horizon_s`` and ``sink``).
        sink: ``sink(stream, records, first_id)``, called with consecutive blocks of ended
            requests (in request order) while a streamed run goes and with the rest at its end.
            A sink with ``unordered = True`` (a summary alone, no table) takes the ended
            requests as soon as they end, ``first_id`` then being an array of their ids, and
            their slots are reused one by one: memory follows the requests in flight even
            when a few long requests outlive many windows.
    """

    def __init__(self, world: World, stream: RequestStream, policy: RoutingPolicy, *,
                 seed: int = 0, k_nearest: int = 8, staleness_s: float = 0.0,
                 horizon_s: float | None = None, progress=None,
                 faults: faultmod.FaultSchedule | None = None,
                 windows: Iterable[RequestStream] | None = None,
                 sink: Callable[[RequestStream, Records, int], None] | None = None):
        self.faults: Any = faults if faults is not None and faults.active else None
        self._log_net = self.faults is not None and self.faults.has_links
        if self._log_net:  # link cuts change the latencies: never touch the caller's world
            world = faultmod.private_network(world)
        self.world = world
        self.stream = stream
        self.policy = policy
        self.seed = seed
        self.env = simpy.Environment()
        n, S = len(stream), world.n_sites
        if windows is not None and (horizon_s is None or sink is None):
            raise ValueError("a streamed run (windows=) needs horizon_s and sink")
        self.horizon_s = float(horizon_s if horizon_s is not None else
                               (stream.t[-1] if n else 0.0))
        self._windows: Any = windows if windows is not None else [stream]
        self._sink: Any = sink
        # [first id, first slot, rows, rows flushed, window]; unordered sinks:
        # [ids, slots and rows in the window of the requests not handed over yet, window]
        self._segments: deque = deque()
        self._free: list[int] = []  # free slots, unordered sinks
        self.n_loaded = 0  # requests loaded so far (ids 0 .. n_loaded - 1)
        self.records = Records.empty(n if windows is None else 0)
        # The engine's own events, run by _loop: a heap of their times (one entry per event) and
        # what is due at each time, ``(fn, arg)``, or a deque of them when several events share
        # a time, in the order they were scheduled (SimPy's order: time, then scheduling). Floats
        # compare several times faster than (time, order, ...) tuples in the heap's sifts.
        self._heap: list[float] = []
        self._due: dict[float, Any] = {}
        self._seq = 0  # tokens of slot-model jobs (in_service)
        deps = world.site_deployment
        self.slots = [int(x) for x in world.site_slots]
        self.replicas = [world.replicas(s) for s in range(S)]
        self.max_queue = [int(x) for x in world.site_max_queue]
        self.capability = [int(x) for x in world.site_capability]
        self.busy = [0] * S
        self.queues: list[Any] = [deque() for _ in range(S)]  # slot-model sites (or priority)
        self.in_service: list[dict] = [{} for _ in range(S)]  # slot model: id -> token
        self.up = [True] * S  # as policies see it
        self.seen_slots = list(self.slots)  # capacity as policies see it (partial outages)
        self.alive = [True] * S  # the truth
        apps = stream.apps
        for s, d in enumerate(deps):
            if d.fixed and any(a.generative for a in apps):
                gen = [a.name for a in apps if a.generative]
                raise ConfigError(
                    f"site {world.site_id[s]!r} hosts {d.model.name!r}, which has no token speeds, "
                    f"but apps {gen} are generative; give those sites a generative model")
        self._progress: Any = progress
        self._rtt: Any = world.rtt_ms
        # Per-request columns the hot path reads, as Python lists (fast scalar access), one
        # entry per slot; filled window by window (_load).
        self._t: list[float] = []
        self._origin: list[int] = []
        self._app: list[int] = []
        self._in: list[int] = []
        self._out: list[int] = []
        self._work: list[float] = []
        self._app_cap: list[int] = [int(a.capability) for a in apps]
        self._app_slo: list[float] = [float(a.slo_ms) for a in apps]
        self._app_ttft: list[bool] = [bool(a.slo_on_ttft) for a in apps]
        self._app_gen: list[bool] = [bool(a.generative) for a in apps]
        # Closed loop (arrivals.kind=closed): the first `concurrency` requests arrive at 0, each
        # end (served, rejected or failed) releases the next one at that instant.
        self._closed_stream = windows[0] if isinstance(windows, list) and windows else stream
        info = self._closed_stream.info
        self._closed = int(info.get("concurrency", 0) or 0)
        self._displace = False  # full queues displace lower priorities (set_priorities)
        self._busy_windows: tuple = ()  # replica busy time kept in these windows (track_busy)
        n_all = len(windows[0]) if isinstance(windows, list) and windows else n
        self._next_closed = min(self._closed, n_all) if self._closed else n_all
        # Generative sites: one replica pool each (the serving interface).
        one = isinstance(windows, list) and len(windows) == 1  # slot = request id
        # Unordered sinks: slots reused one by one (decided here; the arrival path is the same)
        self._scatter = (windows is not None and not one and not self._closed
                         and bool(getattr(sink, "unordered", False)))
        units = _prefix_units(windows[0] if one else stream, self._app,  # type: ignore[index]
                              streamed=windows is not None and not one)
        self._units = units  # what a router can read of a request's prefix (GridView.prefix_units)
        fixed_req = None
        if not all(self._app_gen):
            gen_app = self._app_gen
            fixed_req = _FixedJobs(self._app, gen_app)
        self.pools: list[ReplicaPool | None] = [None] * S
        self._enter_fn = self._enter  # bound once (the heap holds it per trip to a site)
        now = self._now
        app_max = [getattr(a, "max_tokens", 0) or 0 for a in apps]
        max_tokens = _MaxTokens(self._app, app_max, self._out) if any(app_max) else None
        specs: dict[int, Spec] = {}
        for s, d in enumerate(deps):
            if d.fixed:
                continue
            sp = specs.get(id(d))
            if sp is None:
                sp = specs[id(d)] = Spec(d, where=f"site {world.site_id[s]!r}")
            self.pools[s] = ReplicaPool(
                sp, self.replicas[s], self.max_queue[s], self._in, self._out, self.records,
                self._at, now, self._served, self.busy, s, units=units, work=self._work,
                is_fixed=fixed_req, max_tokens=max_tokens)
        self.view = GridView(self, k_nearest)
        if staleness_s > 0:
            self._seen_busy = list(self.busy)
            self._seen_qlen = [0] * S
            self.view._busy = self._seen_busy
            self.view._queue_len = self._seen_qlen.__getitem__  # type: ignore[assignment]
            self.env.process(self._refresh_view(staleness_s))
        policy.bind(self.view)

    # ------------------------------------------------------------------ running
    def run(self) -> Records:
        """Run to the horizon and return the records."""
        self.env.process(self._loop())
        if self.faults is not None:
            f = self.faults
            self._retries = f.retries
            self._retry_delay = f.retry_delay_s
            self._passive = f.passive_detection
            self._nominal = (list(self.replicas), list(self.slots), list(self.max_queue))
            self._lost = [0] * self.world.n_sites
            self._preempt = rngs.py_random(self.seed, "faults/preempt")
            self.env.process(faultmod.inject(self, f))
            if f.detection_s > 0:
                self.env.process(faultmod.health_checks(self, f.detection_s))
        if self._progress is not None:
            self.env.process(self._tick())
        # The world, the stream and the candidate lists are long-lived: out of the collector's
        # sight while the run goes, its full collections stop rescanning them (about 7 % of
        # the run's time on the default world).
        gc.freeze()
        try:
            self.env.run(until=self.horizon_s + 1e-9)
        finally:
            gc.unfreeze()
        for p in self.pools:
            if p is not None and p.busy_windows:
                p.close_busy(self.env.now)
        if self._sink is not None:
            self.flush(final=True)
        return self.records

    def track_busy(self, windows) -> None:
        """Keep each replica pool's busy time within each ``(start, end)`` window (before run)."""
        self._busy_windows = tuple(windows)
        for p in self.pools:
            if p is not None:
                p.track_busy(windows)

    def replica_busy_s(self) -> tuple[np.ndarray, np.ndarray]:
        """Replicas per site (0 for fixed-slot sites) and their busy seconds per window.

        Returns:
            ``(replicas, busy)``: busy has shape (sites, windows of :meth:`track_busy`).
        """
        n = len(self._busy_windows)
        reps = np.zeros(self.world.n_sites)
        busy = np.zeros((self.world.n_sites, n))
        for s, p in enumerate(self.pools):
            if p is not None:
                reps[s] = len(p.reps)
                busy[s] = p.busy_s
        return reps, busy

    def queue_len(self, s: int) -> int:
        """Requests waiting at site ``s``."""
        p = self.pools[s]
        return len(self.queues[s]) if p is None else len(p.queue)

    def in_service_ids(self, s: int) -> list[int]:
        """Requests in service at site ``s`` (in a replica's batch, or holding a slot)."""
        p = self.pools[s]
        if p is None:
            return list(self.in_service[s])
        ids = [i for r in p.reps if r.alive for i in r.running]
        return ids + list(p.where)

    def waiting_ids(self, s: int) -> list[int]:
        """Requests waiting at site ``s``."""
        p = self.pools[s]
        return list(self.queues[s] if p is None else p.queue)

    def preemptions(self) -> list[int]:
        """Preemptions per site (0 for slot-model sites)."""
        return [p.preemptions if p is not None else 0 for p in self.pools]

    def cache_tokens(self) -> tuple[list[int], list[int]]:
        """Prefix-cache hits and misses (prompt tokens) per site."""
        hits, misses = [], []
        for p in self.pools:
            h = m = 0
            if p is not None:
                for r in p.reps:
                    h += r.cache.hits
                    m += r.cache.misses
            hits.append(h)
            misses.append(m)
        return hits, misses

    def _now(self) -> float:
        return self.env._now

    def _at(self, t: float, fn, arg) -> None:
        """Run ``fn(arg)`` at time ``t`` (an engine event; after those already due then)."""
        due = self._due
        d = due.get(t)
        if d is None:
            due[t] = (fn, arg)
        elif type(d) is tuple:
            due[t] = deque((d, (fn, arg)))
        else:
            d.append((fn, arg))
        heapq.heappush(self._heap, t)

    def _pop(self, t: float) -> None:
        """Run the first event due at ``t`` (the heap's top, just popped)."""
        due = self._due
        d = due[t]
        if type(d) is tuple:
            del due[t]
            d[0](d[1])
            return
        e = d.popleft()
        if not d:
            del due[t]
        e[0](e[1])

    def _refresh_view(self, every: float) -> Generator[Any, Any, None]:
        busy = self.busy
        seen_b, seen_q = self._seen_busy, self._seen_qlen
        S = self.world.n_sites
        qlen = self.queue_len
        while True:
            seen_b[:] = busy
            seen_q[:] = [qlen(s) for s in range(S)]
            yield self.env.timeout(every)

    def _tick(self) -> Generator[Any, Any, None]:
        step = max(self.horizon_s / 200.0, 1e-9)
        while True:
            self._progress(self.env.now, self.n_loaded)
            yield self.env.timeout(step)

    def _loop(self) -> Generator[Any, Any, None]:
        """Run the engine's events in time order, yielding to SimPy whenever it has one due first.

        Arrivals are read from the stream in order; every other engine event is in the heap.
        Ties go to the heap first, then arrivals, then SimPy's own events.
        """
        env = self.env
        heap = self._heap
        pop = heapq.heappop
        peek = env.peek
        p: float = peek()
        t: float
        ta: float
        for w in self._windows:
            if not len(w):
                continue
            order, t_list = self._load(w)  # slot and arrival time of the window's requests
            t_arr: list[float] = t_list
            first = order.start if isinstance(order, range) else -1  # slots first, first + 1, ...
            nxt = 0
            end = min(self._closed, len(w)) if self._closed else len(w)
            while nxt < end:
                ta = t_arr[nxt]
                if heap:
                    t = heap[0]
                    if t <= ta:
                        if t >= p:
                            yield Timeout(env, p - env._now)
                            p = peek()
                            continue
                        env._now = t
                        pop(heap)
                        self._pop(t)
                        continue
                if ta >= p:
                    yield Timeout(env, p - env._now)
                    p = peek()
                    continue
                env._now = ta
                i: int = first + nxt if first >= 0 else order[nxt]
                nxt += 1
                self._arrive(i)
        # Every arrival is in: run the rest of the engine's events.
        while True:
            if heap:
                t = heap[0]
                if t >= p:
                    yield Timeout(env, p - env._now)
                    p = peek()
                    continue
                env._now = t
                pop(heap)
                self._pop(t)
            else:
                if p == INF:
                    return
                yield Timeout(env, p - env._now)
                p = peek()

    # ------------------------------------------------------------------ record lifecycle
    _STREAM_LISTS = (("_t", "t"), ("_origin", "origin"), ("_app", "app"), ("_in", "in_tokens"),
                     ("_out", "out_tokens"), ("_work", "work_s"))

    def _load(self, w: RequestStream) -> tuple:
        """Flush what has ended, put window ``w`` into free slots.

        Returns the slot of each of its requests and their arrival times, by position.
        """
        if self._sink is not None:
            self.flush()
        n = len(w)
        if self._scatter:
            return self._load_scattered(w, n)
        p = self._free_slots(n)
        for attr, col in self._STREAM_LISTS:
            getattr(self, attr)[p:p + n] = getattr(w, col).tolist()
        if self._sink is not None:
            self.records.clear(p, p + n)
        self._segments.append([self.n_loaded, p, n, 0, w])
        self.n_loaded += n
        t = self._t if p == 0 and n == len(self._t) else self._t[p:p + n]
        return range(p, p + n), t

    def _load_scattered(self, w: RequestStream, n: int) -> tuple:
        """Window ``w`` into any ``n`` free slots (unordered sinks); grows the columns if needed."""
        free = self._free
        if len(free) < n:
            cap = len(self._t)
            grow = max(n - len(free), cap // 2)
            for attr, _ in self._STREAM_LISTS:
                getattr(self, attr).extend([0] * grow)
            self.records.grow(cap + grow - len(self.records.site))
            free.extend(range(cap + grow - 1, cap - 1, -1))
        slots = np.sort(np.array(free[len(free) - n:], np.int64))
        del free[len(free) - n:]
        # Free slots come in runs (most requests end in order): one slice per run.
        cuts = np.flatnonzero(np.diff(slots) != 1) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [n]])
        cols = [(getattr(self, attr), getattr(w, col).tolist())
                for attr, col in self._STREAM_LISTS]
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            s0 = int(slots[a])
            for lst, vals in cols:
                lst[s0:s0 + b - a] = vals[a:b]
        self.records.clear_rows(slots)
        self._segments.append([np.arange(self.n_loaded, self.n_loaded + n), slots,
                               np.arange(n), w])
        self.n_loaded += n
        return slots.tolist(), cols[0][1]

    def _free_slots(self, n: int) -> int:
        """First of ``n`` consecutive free slots: after the newest window, else from 0, else new.

        Slots of a window are freed when all its requests are flushed. New slots are appended
        (never moved), so the slot of a request in flight never changes.
        """
        cap = len(self._t)
        segs = self._segments

        def free(a: int) -> bool:
            return a + n <= cap and all(a + n <= s[1] or s[1] + s[2] <= a for s in segs)

        if segs:
            after = segs[-1][1] + segs[-1][2]
            if free(after):
                return after
        if free(0):
            return 0
        grow = max(n, cap // 2)
        for attr, _ in self._STREAM_LISTS:
            getattr(self, attr).extend([0] * grow)
        if self._sink is not None or cap + grow > len(self.records.site):
            self.records.grow(cap + grow - len(self.records.site))
        return cap

    def flush(self, final: bool = False) -> None:
        """Hand the ended requests, oldest first up to the first still in flight, to the sink.

        ``final`` hands over every remaining request (those still in flight as ``in_flight``).
        Unordered sinks get every ended request at once, and its slot is free again.
        """
        if self._scatter:
            return self._flush_scattered(final)
        rec = self.records
        segs = self._segments
        while segs:
            seg = segs[0]
            gid, slot, n, done, w = seg
            if final:
                k = n - done
                if self._closed:  # a closed loop's unreleased requests never arrived
                    k = max(0, min(k, self._next_closed - slot - done))
            else:
                busy = np.flatnonzero(rec.status[slot + done:slot + n] == Status.IN_FLIGHT)
                k = int(busy[0]) if len(busy) else n - done
            if k:
                a = slot + done
                part = RequestStream(w.t[done:done + k], w.origin[done:done + k],
                                     w.app[done:done + k], w.in_tokens[done:done + k],
                                     w.out_tokens[done:done + k], w.work_s[done:done + k],
                                     w.apps, w.info)
                self._sink(part, rec.take(a, a + k), gid + done)
                seg[3] = done = done + k
            if done < n:
                return
            segs.popleft()

    def _flush_scattered(self, final: bool) -> None:
        rec = self.records
        keep: deque = deque()
        for seg in self._segments:
            ids, slots, pos, w = seg
            ended = np.ones(len(slots), bool) if final else \
                rec.status[slots] != Status.IN_FLIGHT
            if not ended.any():
                keep.append(seg)
                continue
            self._sink(_rows(w, pos[ended]), rec.take_rows(slots[ended]), ids[ended])
            self._free.extend(slots[ended].tolist())
            left = ~ended
            if left.any():
                pos = pos[left]
                if 2 * len(pos) < len(w):  # a few long requests left: keep only their rows
                    w, pos = _rows(w, pos), np.arange(len(pos))
                keep.append([ids[left], slots[left], pos, w])
        self._segments = keep

    def _arrive(self, i: int, attempt: int = 0) -> None:
        a = self._app[i]
        req = Request(i, self._t[i], self._origin[i], a, self._app_cap[a], self._app_slo[a],
                      self._app_ttft[a], self._in[i], attempt,
                      int(self.records.site[i]) if attempt else -1)
        s = self.policy.choose(req, self.view)
        rec = self.records
        if s < 0:
            rec.status[i] = Status.REJECTED
            rec.reason[i] = _REJECT_REASON.get(s, Reason.POLICY)  # type: ignore[call-overload]
            if self._closed:
                self._release()
            return
        if self.capability[s] < req.capability:
            raise RuntimeError(
                f"policy {getattr(self.policy, 'name', self.policy)!r} sent request {i} needing "
                f"capability {req.capability} to site {self.world.site_id[s]!r} "
                f"(capability {self.capability[s]})")
        rec.site[i] = s
        rec.attempts[i] = attempt + 1
        one_way = self._rtt.item(self._origin[i], s) * 0.0005
        if self._log_net:
            rec.net_ms[i] = one_way * 2000.0
        if one_way > 0:
            self._at(self.env._now + one_way, self._enter_fn, (i, s))
        else:
            self._enter((i, s))

    def _enter(self, arg: tuple[int, int]) -> None:
        """Request ``i`` reaches site ``s`` (``arg = (i, s)``, as the event heap passes it)."""
        i, s = arg
        pool = self.pools[s]
        if pool is not None:
            code = pool.arrive(i)
            if code <= _QUEUED:
                return
            rec = self.records
            if code == _FULL:
                rec.status[i] = Status.REJECTED
                rec.reason[i] = Reason.QUEUE_FULL
            elif code == _TOO_LONG:
                rec.status[i] = Status.REJECTED
                rec.reason[i] = Reason.CONTEXT_TOO_LONG
            else:  # sent to a dead site (before its failure was detected)
                self._fail_over(i, s)
                return
            if self._closed:
                self._release()
            return
        if self.busy[s] < self.slots[s]:
            self._start(i, s)
        elif len(self.queues[s]) < self.max_queue[s]:
            self.queues[s].append(i)
        elif not self.alive[s]:  # sent to a dead site (before its failure was detected)
            self._fail_over(i, s)
        elif self._displace and (v := self.queues[s].displace(i)) >= 0:
            self._displaced(v)
            self.queues[s].append(i)
        else:
            self.records.status[i] = Status.REJECTED
            self.records.reason[i] = Reason.QUEUE_FULL
            if self._closed:
                self._release()

    def set_priorities(self, level_of_app: list[int]) -> None:
        """Order every waiting queue by level (0 first), FIFO within a level; before the run.

        Tenants' priorities (:func:`aigrid_sim.sim.control.prioritise`); a run without them
        keeps its plain deques.
        """
        from aigrid_sim.serving.queues import PriorityQueue

        n = max(level_of_app) + 1
        self.queues = [PriorityQueue(level_of_app, self._app, n) for _ in self.queues]
        self._displace = True
        for p in self.pools:
            if p is not None:
                p.queue = PriorityQueue(level_of_app, self._app, n)
                p._displaced = self._displaced

    def hook_served(self, hook: Callable[[int], None]) -> None:
        """Tell ``hook(i)`` instead of :meth:`_served` when request ``i`` has its last token.

        For a cascade (:mod:`aigrid_sim.sim.cascade`), set before the run; the hook calls
        :meth:`_served` when the request really ends.
        """
        for p in self.pools:
            if p is not None:
                p._done = hook

    def _displaced(self, i: int) -> None:
        """Request ``i`` lost its place in a full queue to a higher-priority one: rejected."""
        self.records.status[i] = Status.REJECTED
        self.records.reason[i] = Reason.DISPLACED
        if self._closed:
            self._release()

    def _served(self, i: int) -> None:
        """Request ``i`` has its last token (called by its site's replica pool)."""
        self.records.status[i] = _OK
        if self._closed:
            self._release()

    def _release(self) -> None:
        """Closed loop: a client's request ended; it sends its next one now."""
        k = self._next_closed
        if k >= len(self._t):
            return
        self._next_closed = k + 1
        now = self.env._now
        self._t[k] = now
        self._closed_stream.t[k] = now
        self._at(now, self._arrive, k)

    # ------------------------------------------------------------------ slot model (fixed work)
    def _start(self, i: int, s: int) -> None:
        self.busy[s] += 1
        rec = self.records
        now = self.env._now
        svc = self._work[i]
        rec.t_start[i] = now
        rec.service_s[i] = svc
        rec.prefill_s[i] = 0.0
        rec.batch[i] = 1
        tok = self._seq
        self._seq = tok + 1
        self.in_service[s][i] = tok
        self._at(now + svc, self._done, (i, s, tok))

    def _done(self, arg) -> None:
        i, s, tok = arg
        ins = self.in_service[s]
        if ins.get(i) != tok:
            return  # interrupted by a failure meanwhile
        del ins[i]
        self.records.status[i] = _OK
        if self._closed:
            self._release()
        self.busy[s] -= 1
        q = self.queues[s]
        if q:
            self._start(q.popleft(), s)

    # ------------------------------------------------------------------ faults
    def network_changed(self) -> None:
        """The latency matrices changed in place (a link cut or restored): refresh the view."""
        self.view.invalidate()

    def set_lost_replicas(self, s: int, lost: int) -> None:
        """From now on, site ``s`` has ``lost`` of its replicas out of service (0 = fully up).

        Losing every replica takes the site down: its queued and in-service requests fail over.
        Losing some drops the batches of the lost replicas (generative sites: the last replicas;
        slot-model sites: their share of the busy slots, picked at random from the run seed),
        whose requests fail over; the queue stays. Regaining replicas starts queued requests.
        """
        replicas0, slots0, queue0 = self._nominal
        alive = replicas0[s] - lost
        before = replicas0[s] - self._lost[s]
        self._lost[s] = lost
        pool = self.pools[s]
        if pool is not None:
            self.alive[s] = alive > 0
            self.replicas[s] = max(alive, 0)
            self.slots[s] = slots0[s] // replicas0[s] * max(alive, 0)
            self.max_queue[s] = queue0[s]
            pool.max_queue = queue0[s]
            for i in pool.set_alive(max(alive, 0)):
                self._lose(i, s)
        elif alive <= 0:
            self.alive[s] = False
            self.slots[s] = 0
            self.max_queue[s] = -1  # _enter's fast path then falls through to the dead-site check
            for i in list(self.in_service[s]):
                self._interrupt(i, s)
            q = self.queues[s]
            while q:
                self._fail_over(q.popleft(), s)
        else:
            self.alive[s] = True
            self.replicas[s] = alive
            self.slots[s] = slots = slots0[s] // replicas0[s] * alive
            self.max_queue[s] = queue0[s]
            busy = self.busy[s]
            if alive < before and busy:
                n = max(busy - slots, round(busy * (before - alive) / before))
                for i in self._preempt.sample(list(self.in_service[s]), min(n, busy)):
                    self._interrupt(i, s)
            q = self.queues[s]
            while q and self.busy[s] < slots:
                self._start(q.popleft(), s)
        if self.faults.detection_s == 0:
            self.up[s] = self.alive[s]
            self.seen_slots[s] = self.slots[s]

    def _lose(self, i: int, s: int) -> None:
        """Request ``i`` lost its place at generative site ``s`` (queued or in a batch)."""
        rec = self.records
        if not np.isnan(rec.t_start[i]):
            rec.wasted_s[i] += self.env._now - rec.t_start[i]
            rec.t_start[i] = rec.service_s[i] = rec.prefill_s[i] = rec.tpot_s[i] = np.nan
            rec.batch[i] = 0
        self._fail_over(i, s)

    def _interrupt(self, i: int, s: int) -> None:
        """Stop request ``i``'s service at site ``s``: free the slot, drop the completion, retry."""
        del self.in_service[s][i]
        self.busy[s] -= 1
        rec = self.records
        rec.wasted_s[i] += self.env._now - rec.t_start[i]
        rec.t_start[i] = rec.service_s[i] = rec.prefill_s[i] = np.nan
        rec.batch[i] = 0
        self._fail_over(i, s)

    def _fail_over(self, i: int, s: int) -> None:
        """Request ``i`` lost site ``s``: send it again when its origin hears of it, or fail."""
        rec = self.records
        if rec.site0[i] < 0:
            rec.site0[i] = s
        if self._passive and not self.alive[s]:
            self.up[s] = False
        attempts = int(rec.attempts[i])
        if attempts > self._retries:
            rec.status[i] = Status.FAILED
            rec.reason[i] = Reason.RETRIES_EXHAUSTED if self._retries else Reason.SITE_DOWN
            if self._closed:
                self._release()
            return
        delay = self._rtt.item(self._origin[i], s) * 0.0005 + self._retry_delay
        rec.extra_s[i] = self.env._now + delay - self._t[i]
        self._at(self.env._now + delay, self._retry, i)

    def _retry(self, i: int) -> None:
        self._arrive(i, int(self.records.attempts[i]))


def _rows(w: RequestStream, q: np.ndarray) -> RequestStream:
    """Rows ``q`` of a window (no prefix ids: windows of streamed synthetic arrivals)."""
    return RequestStream(w.t[q], w.origin[q], w.app[q], w.in_tokens[q], w.out_tokens[q],
                         w.work_s[q], w.apps, w.info)


class _MaxTokens:
    """``m[i]``: request ``i``'s max_tokens (its app's, or its own output if that is longer)."""

    __slots__ = ("app", "app_max", "out")

    def __init__(self, app: list, app_max: list, out: list):
        self.app = app
        self.app_max = app_max
        self.out = out

    def __getitem__(self, i: int) -> int:
        m = self.app_max[self.app[i]]
        o = self.out[i]
        return m if m > o else o


class _FixedJobs:
    """``fixed[i]``: whether the request in slot ``i`` is a fixed-work job (not generative)."""

    __slots__ = ("_app", "_gen")

    def __init__(self, app: list, gen: list):
        self._app = app
        self._gen = gen

    def __getitem__(self, i: int) -> bool:
        return not self._gen[self._app[i]]


def _prefix_units(stream: RequestStream, app: list, streamed: bool = False):
    """``units(i)``: the shared prefix units of the request in slot ``i``, or None if none.

    A trace's ``hash_ids`` (``stream.prefix_ids``/``prefix_off``, one id per
    ``stream.prefix_block_tokens``-token block; runs given one stream, where slot = request) and
    an app's system prompt (one unit per app). ``app`` is the engine's per-slot app list.
    """
    sys_tokens = [getattr(a, "system_prompt_tokens", 0) for a in stream.apps]
    ids = None if streamed else getattr(stream, "prefix_ids", None)
    if ids is None and not any(sys_tokens):
        return None
    per_app = [(((-1 - k, n - n % 16),) if n >= 16 else ()) for k, n in enumerate(sys_tokens)]
    if ids is None:
        return lambda i: per_app[app[i]]
    off = stream.prefix_off.tolist()  # type: ignore[union-attr]
    flat = ids.tolist()
    size = int(stream.prefix_block_tokens)
    tin = stream.in_tokens.tolist()

    def units(i: int):
        a, b = off[i], off[i + 1]
        if a == b:
            return per_app[app[i]]
        p = tin[i]
        out = []
        for k in range(b - a):
            n = p - k * size
            n = size if n > size else n - n % 16
            if n <= 0:
                break
            out.append((flat[a + k], n))
        return tuple(out)
    return units
