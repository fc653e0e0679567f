"""Prefix caching on one replica: shared prompt blocks, kept in the KV budget, evicted LRU.

A request's prompt may start with *prefix units*: runs of whole KV blocks that other requests
share. A Mooncake trace names them with ``hash_ids`` (one id per 512-token block of the prompt,
chained: equal ids at equal positions mean equal prefixes); a synthetic app with a
``system_prompt_tokens`` shares one unit, its system prompt, between all its requests. As in
vLLM's prefix caching, a request reuses the leading units already in the cache (its first miss
ends the match), computes the rest, and the units it computed are cached for the next request.

A unit is *in use* while a running sequence references it and *evictable* otherwise; both live in
the replica's KV budget (:attr:`PrefixCache.tokens`), and evictable units are dropped least
recently used first when memory is needed (:meth:`PrefixCache.evict`). Units are whole blocks, so
the budget is exact. The owner (:class:`aigrid_sim.serving.replica.ReplicaPool`) does the memory
arithmetic; this class only keeps the units, their reference counts and the hit/miss counters.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """The prefix units cached on one replica.

    Attributes:
        tokens: KV tokens held by cached units (in use + evictable).
        evictable: KV tokens held by units no running sequence references.
        hits: Prompt tokens served from the cache (over every admission).
        misses: Prompt tokens computed (over every admission); ``hits + misses`` is every prompt
            token admitted, recomputations after a preemption included.
    """

    __slots__ = ("_used", "_free", "tokens", "evictable", "hits", "misses")

    def __init__(self) -> None:
        self._used: dict[int, list] = {}  # unit id -> [tokens, references]
        self._free: OrderedDict[int, int] = OrderedDict()  # unit id -> tokens, LRU first
        self.tokens = 0
        self.evictable = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._used) + len(self._free)

    def match(self, units) -> tuple[int, int, int]:
        """What admitting a request with these units would hit and add.

        Args:
            units: ``(unit id, tokens)`` pairs, in prompt order.

        Returns:
            ``(hit tokens of the leading cached units, tokens of units not cached,
            evictable tokens among the units it would reference)``.
        """
        used, free = self._used, self._free
        hit = new = held = 0
        leading = True
        for u, n in units:
            e = used.get(u)
            if e is not None:
                if leading:
                    hit += e[0] if e[0] < n else n
            else:
                f = free.get(u)
                if f is None:
                    leading = False
                    new += n
                else:
                    held += f
                    if leading:
                        hit += f if f < n else n
        return hit, new, held

    def acquire(self, units) -> None:
        """Reference the units (insert the ones not cached): a sequence holding them starts."""
        used, free = self._used, self._free
        for u, n in units:
            e = used.get(u)
            if e is not None:
                e[1] += 1
                continue
            f = free.pop(u, None)
            if f is None:
                used[u] = [n, 1]
                self.tokens += n
            else:
                used[u] = [f, 1]
                self.evictable -= f

    def release(self, units) -> None:
        """Drop a sequence's references; units nobody references become evictable (MRU)."""
        used, free = self._used, self._free
        for u, _ in units:
            e = used[u]
            e[1] -= 1
            if e[1] == 0:
                del used[u]
                free[u] = e[0]
                self.evictable += e[0]

    def evict(self, tokens: int) -> int:
        """Evict least recently used evictable units until ``tokens`` are freed (or none left).

        Returns:
            Tokens freed.
        """
        free = self._free
        got = 0
        while got < tokens and free:
            _, n = free.popitem(last=False)
            got += n
        self.tokens -= got
        self.evictable -= got
        return got

    def check(self) -> None:
        """Assert the bookkeeping is consistent (tests)."""
        assert self.tokens == sum(e[0] for e in self._used.values()) + sum(self._free.values())
        assert self.evictable == sum(self._free.values())
        assert all(e[1] > 0 for e in self._used.values())
