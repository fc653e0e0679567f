"""The SimPy model: the request lifecycle on the grid, written into flat per-request records.

Life of a request (times in seconds; the SimPy environment owns the clock)::

    arrival --policy--> travel one way --> wait for a slot --> service --> travel back

Each arrival is one step of a single driver process; the trip out and the service are SimPy
timeouts with callbacks rather than one process per request (about twice as fast, see DESIGN.md
section 6), and the trip back is pure arithmetic since nothing can happen to a response on its
way home. Slots are counted per site: ``busy[s]`` of ``slots[s]`` (replicas x max batch) are in
use, the rest wait FIFO in ``queues[s]`` up to ``max_queue[s]``.

Faults (:mod:`aigrid_sim.sim.faults`) change a site's capacity or the network while the run goes on.
``alive[s]`` is the truth, ``up[s]`` what policies see (copied from ``alive`` at once, or at the
next health check when ``faults.detection_s > 0``). A request caught by a failure -- queued or in
service at a site that goes down or loses replicas, or arriving at a dead site it was sent to --
fails over: the news travels back to its origin (one way), then after ``retry_delay_s`` the policy
chooses again, and the time lost is added to its latency (``extra_s``); past ``retries`` fail-overs
it ends ``failed``. Completion timeouts cannot be cancelled in SimPy, so an interrupted request's
completion callback is removed from its timeout and its slot is released at once.

A generative request's service time is fixed at admission from the batch it joins: prefill of its
input tokens (after waiting for earlier prefills or half the decode step in progress), plus its
output tokens at the per-token time of that batch size, plus the stalls while the batch's other
sequences are replaced and prefilled (no event per token; the
approximation and its error against a per-iteration model are in
:mod:`aigrid_sim.serving.batching` and its tests).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import simpy
from simpy.events import Timeout

from aigrid_sim import rng as rngs
from aigrid_sim.errors import ConfigError
from aigrid_sim.outcomes import Reason, Status
from aigrid_sim.sim import faults as faultmod
from aigrid_sim.sim.policies.base import Reject, Request, RoutingPolicy
from aigrid_sim.sim.policies.view import GridView
from aigrid_sim.workload.stream import RequestStream
from aigrid_sim.world.build import World

#: Why a request was rejected, by the policy's (or control plane's) return code.
_REJECT_REASON = {Reject.NO_CAPABLE_SITE: Reason.NO_CAPABLE_SITE, Reject.POLICY: Reason.POLICY,
                  Reject.SOVEREIGNTY: Reason.SOVEREIGNTY, Reject.QUOTA: Reason.QUOTA}


@dataclass
class Records:
    """One row per request, filled in place during the run (times in seconds from the start).

    ``t_start``/``service_s`` are NaN for requests that never started service (or whose service
    was interrupted by a failure).
    """

    site: np.ndarray  # int32, -1 if never routed
    status: np.ndarray  # int8 Status
    reason: np.ndarray  # int8 Reason
    t_start: np.ndarray  # service start
    service_s: np.ndarray  # service time
    prefill_s: np.ndarray  # prefill part of the service time
    batch: np.ndarray  # int16: sequences in the replica's batch when admitted
    extra_s: np.ndarray  # time lost to failed attempts (fail-over), added to latency
    attempts: np.ndarray  # int8: sites tried
    site0: np.ndarray  # int32: first site that failed under the request (-1 if none)
    wasted_s: np.ndarray  # slot-seconds of service lost to failures
    net_ms: np.ndarray  # round trip of the last attempt when the network changed (else NaN)

    @classmethod
    def empty(cls, n: int) -> Records:
        """Records for ``n`` requests, all in flight and unrouted."""
        nan = np.full(n, np.nan)
        return cls(np.full(n, -1, np.int32), np.zeros(n, np.int8), np.zeros(n, np.int8),
                   nan, nan.copy(), nan.copy(), np.zeros(n, np.int16), np.zeros(n),
                   np.zeros(n, np.int8), np.full(n, -1, np.int32), np.zeros(n), nan.copy())

    # The record lifecycle of a streamed run (rows are slots, reused once flushed). Written
    # over the dataclass fields, so a column added above needs nothing here.
    def columns(self) -> list[str]:
        """Names of the per-request columns."""
        return list(self.__dataclass_fields__)

    def clear(self, a: int, b: int) -> None:
        """Reset rows ``a:b`` to the state of :meth:`empty` (in flight, unrouted)."""
        blank = type(self).empty(1)
        for name in self.columns():
            getattr(self, name)[a:b] = getattr(blank, name)[0]

    def grow(self, n: int) -> None:
        """Append ``n`` empty rows (arrays are replaced; the object stays the same)."""
        more = type(self).empty(n)
        for name in self.columns():
            setattr(self, name, np.concatenate([getattr(self, name), getattr(more, name)]))

    def take(self, a: int, b: int) -> Records:
        """A copy of rows ``a:b``."""
        return type(self)(**{name: getattr(self, name)[a:b].copy() for name in self.columns()})

    @classmethod
    def concat(cls, parts: list[Records]) -> Records:
        """Rows of several records, one after the other."""
        if not parts:
            return cls.empty(0)
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts])
                      for name in parts[0].columns()})


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
    """

    def __init__(self, world: World, stream: RequestStream, policy: RoutingPolicy, *,
                 seed: int = 0, k_nearest: int = 8, staleness_s: float = 0.0,
                 horizon_s: float | None = None, progress=None,
                 faults: faultmod.FaultSchedule | None = None,
                 windows: Iterable[RequestStream] | None = None,
                 sink: Callable[[RequestStream, Records, int], None] | None = None):
        self.faults = faults if faults is not None and faults.active else None
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
        self._windows = windows if windows is not None else [stream]
        self._sink = sink
        self._segments: deque = deque()  # [first id, first slot, rows, rows flushed, window]
        self.n_loaded = 0  # requests loaded so far (ids 0 .. n_loaded - 1)
        self.records = Records.empty(n if windows is None else 0)
        deps = world.site_deployment
        self.slots = [int(x) for x in world.site_slots]
        self.replicas = [world.replicas(s) for s in range(S)]
        self.max_queue = [int(x) for x in world.site_max_queue]
        self.capability = [int(x) for x in world.site_capability]
        self.spt = [d.prefill_s_per_token for d in deps]
        self.tpot = [d.tpot_s for d in deps]
        self.busy = [0] * S
        # Per site: sum of in/out tokens of the generative requests in service (prefill stalls).
        self.in_per_out = [0.0] * S
        # Per site: when the prefills admitted so far will be done (first-token waits).
        self.prefill_free = [0.0] * S
        self.queues: list[deque] = [deque() for _ in range(S)]
        self.in_service: list[dict] = [{} for _ in range(S)]  # request id -> completion event
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
        # Mean prefill seconds of each app at each site, for policies' latency predictions.
        self.est_prefill_s = [[(a.mean_in_tokens * d.prefill_s_per_token) if a.generative else 0.0
                               for a in apps] for d in deps]
        self.view = GridView(self, k_nearest)
        if staleness_s > 0:
            self._seen_busy = list(self.busy)
            self._seen_qlen = [0] * S
            self.view._busy = self._seen_busy
            self.view._queue_len = self._seen_qlen.__getitem__
            self.env.process(self._refresh_view(staleness_s))
        policy.bind(self.view)
        self._progress = progress
        self._rtt = world.rtt_ms
        # Per-request columns the hot path reads, as Python lists (fast scalar access), one
        # entry per slot; filled window by window (_load).
        self._t: list = []
        self._origin: list = []
        self._app: list = []
        self._in: list = []
        self._out: list = []
        self._work: list = []
        self._app_cap = [a.capability for a in apps]
        self._app_slo = [a.slo_ms for a in apps]
        self._app_ttft = [a.slo_on_ttft for a in apps]
        self._app_gen = [a.generative for a in apps]

    # ------------------------------------------------------------------ running
    def run(self) -> Records:
        """Run to the horizon and return the records."""
        self.env.process(self._arrivals())
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
        self.env.run(until=self.horizon_s + 1e-9)
        if self._sink is not None:
            self.flush(final=True)
        return self.records

    def queue_len(self, s: int) -> int:
        """Requests waiting at site ``s``."""
        return len(self.queues[s])

    def _refresh_view(self, every: float):
        busy, qs = self.busy, self.queues
        seen_b, seen_q = self._seen_busy, self._seen_qlen
        while True:
            seen_b[:] = busy
            seen_q[:] = [len(q) for q in qs]
            yield self.env.timeout(every)

    def _tick(self):
        step = max(self.horizon_s / 200.0, 1e-9)
        while True:
            self._progress(self.env.now, self.n_loaded)
            yield self.env.timeout(step)

    def _arrivals(self):
        env = self.env
        t = self._t
        arrive = self._arrive
        for w in self._windows:
            if not len(w):
                continue
            p = self._load(w)
            for i in range(p, p + len(w)):
                dt = t[i] - env.now
                if dt > 0:
                    yield Timeout(env, dt)
                arrive(i)

    # ------------------------------------------------------------------ record lifecycle
    _STREAM_LISTS = (("_t", "t"), ("_origin", "origin"), ("_app", "app"), ("_in", "in_tokens"),
                     ("_out", "out_tokens"), ("_work", "work_s"))

    def _load(self, w: RequestStream) -> int:
        """Flush what has ended, put window ``w`` into free slots; returns its first slot."""
        if self._sink is not None:
            self.flush()
        n = len(w)
        p = self._free_slots(n)
        for attr, col in self._STREAM_LISTS:
            getattr(self, attr)[p:p + n] = getattr(w, col).tolist()
        if self._sink is not None:
            self.records.clear(p, p + n)
        self._segments.append([self.n_loaded, p, n, 0, w])
        self.n_loaded += n
        return p

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
        """
        rec = self.records
        segs = self._segments
        while segs:
            seg = segs[0]
            gid, slot, n, done, w = seg
            if final:
                k = n - done
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

    def _arrive(self, i: int, attempt: int = 0) -> None:
        a = self._app[i]
        req = Request(i, self._t[i], self._origin[i], a, self._app_cap[a], self._app_slo[a],
                      self._app_ttft[a], self._in[i], attempt,
                      int(self.records.site[i]) if attempt else -1)
        s = self.policy.choose(req, self.view)
        rec = self.records
        if s < 0:
            rec.status[i] = Status.REJECTED
            rec.reason[i] = _REJECT_REASON.get(s, Reason.POLICY)
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
            ev = Timeout(self.env, one_way, (i, s))
            ev.callbacks.append(self._at_site)
        else:
            self._enter(i, s)

    def _at_site(self, ev) -> None:
        i, s = ev._value
        self._enter(i, s)

    def _enter(self, i: int, s: int) -> None:
        if self.busy[s] < self.slots[s]:
            self._start(i, s)
        elif len(self.queues[s]) < self.max_queue[s]:
            self.queues[s].append(i)
        elif not self.alive[s]:  # sent to a dead site (before its failure was detected)
            self._fail_over(i, s)
        else:
            self.records.status[i] = Status.REJECTED
            self.records.reason[i] = Reason.QUEUE_FULL

    def _start(self, i: int, s: int) -> None:
        b = self.busy[s] + 1
        self.busy[s] = b
        batch = (b - 1) // self.replicas[s] + 1
        rec = self.records
        now = self.env.now
        if self._app_gen[self._app[i]]:
            spt = self.spt[s]
            pre = self._in[i] * spt
            # Decode at the batch's step time, plus the stalls while the others' successors are
            # prefilled: sum_j in_j/out_j prefill tokens per own token over the replica's other
            # sequences (aigrid_sim/batching.py measures this against a per-iteration model).
            r = self.in_per_out[s] if b > 1 else 0.0
            stall = spt * r * (batch - 1) / (b - 1) if b > 1 else 0.0
            out = self._out[i] or 1
            # Its first token also waits for the prefills admitted before it (FIFO; a site's
            # replicas prefill in parallel) or, if none is pending, for half the decode step in
            # progress on its replica.
            free = self.prefill_free[s]
            wait = free - now if free > now else (0.5 * self.tpot[s][batch - 1] if batch > 1
                                                  else 0.0)
            self.prefill_free[s] = now + wait + pre / self.replicas[s]
            pre += wait
            svc = pre + out * (self.tpot[s][batch] + stall)
            self.in_per_out[s] = r + self._in[i] / out
        else:
            pre = 0.0
            svc = self._work[i]
        rec.t_start[i] = now
        rec.service_s[i] = svc
        rec.prefill_s[i] = pre
        rec.batch[i] = batch
        ev = Timeout(self.env, svc, (i, s))
        ev.callbacks.append(self._done)
        self.in_service[s][i] = ev

    def _done(self, ev) -> None:
        i, s = ev._value
        del self.in_service[s][i]
        self.records.status[i] = Status.OK
        self.busy[s] -= 1
        if self._app_gen[self._app[i]]:
            self.in_per_out[s] -= self._in[i] / (self._out[i] or 1)
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
        Losing some preempts the in-service requests of the lost replicas (their share of the
        busy slots, picked at random from the run seed) and they fail over; the queue stays.
        Regaining replicas starts queued requests on the freed slots.
        """
        replicas0, slots0, queue0 = self._nominal
        alive = replicas0[s] - lost
        before = replicas0[s] - self._lost[s]
        self._lost[s] = lost
        if alive <= 0:
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

    def _interrupt(self, i: int, s: int) -> None:
        """Stop request ``i``'s service at site ``s``: free the slot, drop the completion, retry."""
        ev = self.in_service[s].pop(i)
        ev.callbacks.remove(self._done)
        self.busy[s] -= 1
        if self._app_gen[self._app[i]]:  # undo its share of the batch's prefill stalls
            self.in_per_out[s] -= self._in[i] / (self._out[i] or 1)
        rec = self.records
        rec.wasted_s[i] += self.env.now - rec.t_start[i]
        rec.t_start[i] = rec.service_s[i] = rec.prefill_s[i] = np.nan
        rec.batch[i] = 0
        self._fail_over(i, s)

    def _fail_over(self, i: int, s: int) -> None:
        """Request ``i`` lost site ``s``: resend it once the news reaches its origin, or fail."""
        rec = self.records
        if rec.site0[i] < 0:
            rec.site0[i] = s
        if self._passive and not self.alive[s]:
            self.up[s] = False
        attempts = int(rec.attempts[i])
        if attempts > self._retries:
            rec.status[i] = Status.FAILED
            rec.reason[i] = Reason.RETRIES_EXHAUSTED if self._retries else Reason.SITE_DOWN
            return
        delay = self._rtt.item(self._origin[i], s) * 0.0005 + self._retry_delay
        rec.extra_s[i] = self.env.now + delay - self._t[i]
        ev = Timeout(self.env, delay, i)
        ev.callbacks.append(self._retry)

    def _retry(self, ev) -> None:
        i = ev._value
        self._arrive(i, int(self.records.attempts[i]))
