"""The built-in routing policies.

Each is a small class: parameters checked in ``__init__``, a decision in ``choose``. They skip
sites that are down (as far as the view knows) and reject with ``NO_CAPABLE_SITE`` only when no
candidate site can serve the request's capability.
"""

from __future__ import annotations

from aigrid_sim.sim.policies.base import BasePolicy, Reject, Request, register
from aigrid_sim.sim.policies.view import GridView
from aigrid_sim.world.build import Tier

_TIERS = (int(Tier.EDGE), int(Tier.REGIONAL), int(Tier.CORE))


@register("centralised")
class Centralised(BasePolicy):
    """Everything to the nearest core site: the centralised "AI factory" baseline."""

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        for s in view.tier_candidates(request.origin, request.capability, Tier.CORE):
            if view.is_up(s) and s != request.avoid:
                return s
        return Reject.NO_CAPABLE_SITE


@register("nearest_capable")
class NearestCapable(BasePolicy):
    """The nearest up site whose model reaches the request's capability, whatever its load."""

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        for s in view.candidates(request.origin, request.capability):
            if view.is_up(s) and s != request.avoid:
                return s
        return Reject.NO_CAPABLE_SITE


@register("cheapest_feasible")
class CheapestFeasible(BasePolicy):
    """The article's orchestrator: the cheapest tier that meets latency and capability.

    Tiers are tried cheapest first (edge, regional, core); within a tier, the nearest site whose
    predicted latency (:meth:`GridView.predict_ms`) meets the request's SLO wins. When no site
    meets it, the request goes to the site with the lowest predicted latency
    (``fallback="best"``) or is rejected (``fallback="reject"``).

    Args:
        fallback: ``"best"`` or ``"reject"``.
        per_tier: How many nearest sites of each tier to consider.
    """

    def __init__(self, fallback: str = "best", per_tier: int = 3):
        if fallback not in ("best", "reject"):
            raise ValueError(f"fallback must be 'best' or 'reject', got {fallback!r}")
        if per_tier < 1:
            raise ValueError(f"per_tier must be >= 1, got {per_tier}")
        self.fallback = fallback
        self.per_tier = per_tier

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        best, best_ms = -1, float("inf")
        slo = request.slo_ms
        o, cap, k = request.origin, request.capability, self.per_tier
        for tier in _TIERS:
            for s in view.tier_candidates(o, cap, tier)[:k]:
                if not view.is_up(s) or s == request.avoid:
                    continue
                ms = view.predict_ms(request, s)
                if ms <= slo:
                    return s
                if ms < best_ms:
                    best, best_ms = s, ms
        if best < 0:
            return Reject.NO_CAPABLE_SITE
        return best if self.fallback == "best" else Reject.POLICY


@register("least_loaded")
class LeastLoaded(BasePolicy):
    """The least loaded ((busy + queued) / slots) of the k nearest capable up sites.

    Args:
        k: Candidates considered (at most ``routing.k_nearest``).
    """

    def __init__(self, k: int = 4):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        best, best_load = -1, float("inf")
        for s in view.candidates(request.origin, request.capability)[:self.k]:
            if view.is_up(s) and s != request.avoid:
                load = view.load(s)
                if load < best_load:
                    best, best_load = s, load
        return best if best >= 0 else Reject.NO_CAPABLE_SITE


@register("power_of_two")
class PowerOfTwo(BasePolicy):
    """Two random sites among the k nearest capable up sites; the less loaded wins.

    Args:
        k: Candidates sampled from (at most ``routing.k_nearest``).
    """

    def __init__(self, k: int = 4):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k

    def bind(self, view: GridView) -> None:  # noqa: D102
        self._rand = view.random("power_of_two").random

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        cands = [s for s in view.candidates(request.origin, request.capability)[:self.k]
                 if view.is_up(s) and s != request.avoid]
        n = len(cands)
        if n == 0:
            return Reject.NO_CAPABLE_SITE
        if n == 1:
            return cands[0]
        r = self._rand
        i = int(r() * n)
        j = int(r() * (n - 1))
        j += j >= i
        a, b = cands[i], cands[j]
        return a if view.load(a) <= view.load(b) else b


@register("latency_aware")
class LatencyAware(BasePolicy):
    """The lowest predicted latency among the k nearest capable up sites, whatever the cost.

    With ``routing.staleness_s > 0`` the loads it sees are that old.

    Args:
        k: Candidates considered (at most ``routing.k_nearest``).
    """

    def __init__(self, k: int = 8):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        best, best_ms = -1, float("inf")
        for s in view.candidates(request.origin, request.capability)[:self.k]:
            if view.is_up(s) and s != request.avoid:
                ms = view.predict_ms(request, s)
                if ms < best_ms:
                    best, best_ms = s, ms
        return best if best >= 0 else Reject.NO_CAPABLE_SITE
