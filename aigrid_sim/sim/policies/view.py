"""The read-only window a routing policy has on the grid.

Static facts (tiers, capabilities, round-trip times, candidate lists) are precomputed once;
live state (busy slots, queue lengths, which sites are up) is read from the engine through
methods, optionally from a snapshot refreshed every ``staleness_s`` seconds, as a real orchestrator
would see it. Nothing here lets a policy change the grid.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from aigrid_sim import rng as rngs
from aigrid_sim.world.build import Tier

INF = float("inf")
TIERS = (int(Tier.EDGE), int(Tier.REGIONAL), int(Tier.CORE))  # cheapest first

if TYPE_CHECKING:
    from aigrid_sim.serving.replica import ReplicaPool
    from aigrid_sim.sim.engine import Engine
    from aigrid_sim.sim.policies.base import Request


class GridView:
    """Read-only view of the grid for policies.

    ``cascades``: per app, its cascade (:class:`aigrid_sim.sim.cascade.CascadeSpec`: where an
    escalated request goes, ``p_escalate(in_tokens)``) or None; None when no app is a cascade.

    Args:
        engine: The engine whose state this view reads.
        k_nearest: How many candidate sites per origin, capability (and tier) to precompute.
    """

    def __init__(self, engine: Engine, k_nearest: int):
        w = engine.world
        self.cascades: Any = None
        self._e = engine
        self._k = k_nearest
        self._rtt: Any = w.rtt_ms
        self.n_sites = w.n_sites
        self.n_origins = w.n_origins
        self.site_ids: tuple[str, ...] = tuple(w.site_id)
        self.tiers: tuple[Tier, ...] = tuple(Tier(t) for t in w.site_tier)
        self.capabilities: tuple[int, ...] = tuple(int(c) for c in w.site_capability)
        self.slots: tuple[int, ...] = tuple(int(s) for s in w.site_slots)
        self.apps: Any = engine.stream.apps
        self.site_countries: tuple[str, ...] = tuple(c or "" for c in w.site_country)
        self.origin_countries: tuple[str, ...] = tuple(c or "" for c in w.origin_country)
        self._cand: dict[int, list[tuple[int, ...]]] = {}
        self._tier_cand: dict[int, list[tuple[int, ...]]] = {}  # key: capability * 8 + tier
        self._busy: list[int] = engine.busy
        self._queue_len: Any = engine.queue_len
        self._up: list[bool] = engine.up
        # For latency predictions: the replica pools of generative sites (their own estimate
        # from the step model and the batch they hold), the apps' mean tokens and work.
        self._pools: list[ReplicaPool | None] = engine.pools
        self._slots: list[int] = engine.seen_slots  # capacity as last seen (partial outages)
        self._mean_in = [a.mean_in_tokens if a.generative else 0.0 for a in self.apps]
        self._mean_out = [a.mean_out_tokens if a.generative else 0.0 for a in self.apps]
        self._mean_work = [0.0 if a.generative else a.mean_work_s for a in self.apps]
        self._gen: list[bool] = [bool(a.generative) for a in self.apps]
        self._cost: list[list[float]] | None = None
        # Residency (the control plane, :func:`aigrid_sim.sim.control.ControlPlane.bind`): the
        # sites of each area (``_area_sites``, None: no area rules) and the current request's
        # area (``_area``, -1: none). Within an area, candidate lists hold its sites only.
        self._area = -1
        self._area_sites: Any = None
        self._scoped: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}

    # ---- static facts
    @property
    def now(self) -> float:
        """Simulated time, seconds."""
        return self._e.env.now

    def rtt_ms(self, origin: int, site: int) -> float:
        """Round trip between an origin and a site on the current network, ms."""
        return self._rtt.item(origin, site)

    def random(self, name: str) -> random.Random:
        """A random stream for a policy, seeded from the run's seed and ``name``."""
        return rngs.py_random(self._e.seed, f"policy/{name}")

    def _nearest(self, capability: int, tier: int | None,
                 allowed: np.ndarray | None = None) -> list[tuple[int, ...]]:
        # The world answers nearest-site questions without an origins x sites matrix when it is
        # big (k-d tree and bounded shortest paths); lists of tuples keep the per-request path
        # to plain indexing. Built on first use, one list per (capability, tier) asked for.
        ok = np.asarray(self.capabilities) >= capability
        if tier is not None:
            ok &= np.asarray([int(t) for t in self.tiers]) == tier
        if allowed is not None:
            ok &= allowed
        return _tuples(self._e.world.nearest_sites(np.flatnonzero(ok), self._k)[0])

    def candidates(self, origin: int, capability: int) -> tuple[int, ...]:
        """The k nearest sites (by RTT) whose model reaches ``capability``, nearest first.

        Includes sites that are down; check :meth:`is_up`.
        """
        if self._area >= 0:
            return self._in_area(origin, capability, -1)
        c = self._cand.get(capability)
        if c is None:
            c = self._cand[capability] = self._nearest(capability, None)
        return c[origin]

    def tier_candidates(self, origin: int, capability: int, tier: int) -> tuple[int, ...]:
        """Like :meth:`candidates`, restricted to one tier."""
        if self._area >= 0:
            return self._in_area(origin, capability, int(tier))
        key = capability * 8 + tier
        c = self._tier_cand.get(key)
        if c is None:
            c = self._tier_cand[key] = self._nearest(capability, int(tier))
        return c[origin]

    def _in_area(self, origin: int, capability: int, tier: int) -> tuple[int, ...]:
        # The current request's area only; lists per area built on first use, nearest first,
        # exactly like the unscoped ones.
        key = (capability, self._area, tier)
        c = self._scoped.get(key)
        if c is None:
            c = self._scoped[key] = self._nearest(capability, tier if tier >= 0 else None,
                                                  self._area_sites[self._area])
        return c[origin]

    def invalidate(self) -> None:
        """Forget candidate lists (the engine calls this when the network changes)."""
        self._rtt = self._e.world.rtt_ms
        self._cand.clear()
        self._tier_cand.clear()
        self._scoped.clear()

    # ---- live state
    def busy(self, site: int) -> int:
        """Requests in service at a site (sequences in its replicas' batches, fixed jobs)."""
        return self._busy[site]

    def queued(self, site: int) -> int:
        """Requests waiting at a site (not yet admitted into a batch or a slot)."""
        return self._queue_len(site)

    def load(self, site: int) -> float:
        """(in service + waiting) / slots (slots as last seen: partial outages count).

        A generative site's slots are its replicas x the catalogue's nominal batch
        (``Deployment.max_batch``: sequences of ``kv_context_tokens`` that fit), so 1.0 means
        about as many requests as its KV memory holds at the nominal context.
        """
        slots = self._slots[site]
        return (self._busy[site] + self._queue_len(site)) / slots if slots else float("inf")

    def cost_usd(self, app: int, site: int) -> float:
        """Expected GPU cost of one request of ``app`` at ``site`` when busy, USD (static)."""
        c = self._cost
        if c is None:
            deps = self._e.world.site_deployment
            c = self._cost = [[cost_per_request_usd(d, a) for d in deps] for a in self.apps]
        return c[app][site]

    def prefix_units(self, request_id: int) -> tuple:
        """A request's shared prompt-prefix units, ``((unit id, tokens), ...)`` in prompt order.

        From a trace's ``hash_ids`` or its app's system prompt; empty when it has none. What a
        router can read from the request itself (not where the units are cached).
        """
        units = getattr(self._e, "_units", None)
        return units(request_id) if units is not None else ()

    def is_up(self, site: int) -> bool:
        """Whether the site is up, as far as the orchestrator knows."""
        return self._up[site]

    def predict_ms(self, request: Request, site: int) -> float:
        """Predicted latency of ``request`` at ``site`` in its SLO's metric (TTFT or end-to-end).

        Round trip + the site's estimate. A generative site answers from its replicas' state
        (:meth:`aigrid_sim.serving.replica.ReplicaPool.predict_s`: the prefill steps ahead of it at
        the step time of the batch it joins, the app's mean output for end-to-end targets, and a
        wait for completions when it would queue). A slot-model site: M/M/c-like, no wait while a
        slot is free, else (queue ahead + 1) x mean work / slots.
        """
        slots = self._slots[site]
        if not slots:  # every replica known to be lost
            return float("inf")
        a = request.app
        pool = self._pools[site]
        if pool is not None:
            if self._gen[a]:
                own = pool.predict_s(request.in_tokens, self._mean_out[a], request.slo_on_ttft)
            else:
                own = pool.predict_s(0, 0, True, self._mean_work[a])
        else:
            work = self._mean_work[a]
            busy = self._busy[site]
            own = work if busy < slots else work + (self._queue_len(site) + 1) * work / slots
        return self._rtt.item(request.origin, site) + 1000.0 * own

    def first_within_slo(self, request: Request, per_tier: int) -> tuple[int, int]:
        """The cheapest tier's nearest site predicted to meet the request's SLO.

        Tiers are tried cheapest first (edge, regional, core), within each its ``per_tier``
        nearest capable sites that are up (and not ``request.avoid``), nearest first; the first
        whose :meth:`predict_ms` meets ``request.slo_ms`` wins. A site whose round trip alone
        reaches the best prediction so far is skipped (it can neither meet the SLO nor beat it).

        Returns:
            ``(site meeting the SLO, -1)``, or ``(-1, the site with the lowest prediction)``
            when none does (``(-1, -1)``: no candidate at all).
        """
        best = -1
        best_ms = INF
        slo = request.slo_ms
        o = request.origin
        cap = request.capability
        avoid = request.avoid
        for tier in TIERS:
            cands = self.tier_candidates(o, cap, tier)
            n = len(cands)
            for j in range(per_tier if per_tier < n else n):
                s = cands[j]
                if not self._up[s] or s == avoid:
                    continue
                if best >= 0 and self._rtt.item(o, s) >= best_ms:
                    continue
                ms = self.predict_ms(request, s)
                if ms <= slo:
                    return s, -1
                if ms < best_ms:
                    best = s
                    best_ms = ms
        return -1, best


def _tuples(index: np.ndarray) -> list[tuple[int, ...]]:
    """One tuple of site indices per origin (row)."""
    return [tuple(r) for r in index.tolist()]


def cost_per_request_usd(deployment, app) -> float:
    """Expected GPU cost of one request of ``app`` on a busy replica of ``deployment``, USD.

    A saturated replica's dollars per second divided by the requests per second it then serves:
    for generative apps from the serving model's saturation throughput at the app's mean token
    counts, for fixed-work apps from the slot price and the mean work.
    """
    if not app.generative or deployment.fixed:
        return deployment.price_per_slot_second * app.mean_work_s
    per_s = deployment.gpu.price_per_hour * deployment.gpus_per_replica / 3600.0
    out = max(app.mean_out_tokens, 1.0)
    return per_s * out / deployment.saturation_out_tok_s(max(app.mean_in_tokens, 1.0), out)
