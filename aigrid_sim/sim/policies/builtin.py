"""The built-in routing policies.

Each is a small class: parameters checked in ``__init__``, a decision in ``choose``. They skip
sites that are down (as far as the view knows) and reject with ``NO_CAPABLE_SITE`` only when no
candidate site can serve the request's capability.
"""

from __future__ import annotations

from aigrid_sim.sim.policies.base import BasePolicy, Reject, Request, register
from aigrid_sim.sim.policies.view import TIERS, GridView
from aigrid_sim.world.build import Tier


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

    **Cascades** (apps served as a small model first, :mod:`aigrid_sim.sim.cascade`): with
    ``cascade_aware`` (the default), a first attempt is sent straight to the big model
    (capability of the cascade) when the cascade is dearer in expectation: with ``p`` the
    chance it escalates (``CascadeSpec.p_escalate``: from its prompt length, or the app's
    fraction or difficulty distribution), ``c_small`` and ``c_big`` the expected GPU cost of
    the request on the cheapest small and big model, the cascade costs ``c_small + p c_big``
    against ``c_big`` direct, so it goes direct when ``p > 1 - c_small / c_big``. A prompt
    certain to escalate (``mode: length``) then never pays the small model's trip and service.

    Args:
        fallback: ``"best"`` or ``"reject"``.
        per_tier: How many nearest sites of each tier to consider.
        cascade_aware: Route cascades' first attempts by the rule above (else always the
            small model first).
    """

    def __init__(self, fallback: str = "best", per_tier: int = 3, cascade_aware: bool = True):
        if fallback not in ("best", "reject"):
            raise ValueError(f"fallback must be 'best' or 'reject', got {fallback!r}")
        if per_tier < 1:
            raise ValueError(f"per_tier must be >= 1, got {per_tier}")
        self.fallback = fallback
        self.per_tier = per_tier
        self.cascade_aware = bool(cascade_aware)

    def bind(self, view: GridView) -> None:  # noqa: D102
        BasePolicy.bind(self, view)
        specs = getattr(view, "cascades", None)
        if not (self.cascade_aware and specs):
            return
        # Per cascade app: the escalation chance above which a first attempt goes direct.
        caps = view.capabilities
        self._cascades = specs
        self._direct_p = []
        for spec in specs:
            if spec is None:
                self._direct_p.append(2.0)
                continue
            a = spec.app
            cap0 = view.apps[a].capability
            small = [view.cost_usd(a, s) for s in range(view.n_sites)
                     if cap0 <= caps[s] < spec.capability]
            big = [view.cost_usd(a, s) for s in range(view.n_sites) if caps[s] >= spec.capability]
            c_small, c_big = (min(small) if small else 0.0), min(big)
            self._direct_p.append(1.0 - c_small / c_big if small and c_big > 0 else 0.0)
        self.choose = self._choose_cascade

    def _choose_cascade(self, request: Request, view: GridView) -> int:
        spec = self._cascades[request.app]
        if spec is not None and request.capability < spec.capability and \
                spec.p_escalate(request.in_tokens) > self._direct_p[request.app]:
            request.capability = spec.capability
        return CheapestFeasible.choose(self, request, view)

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        s, best = view.first_within_slo(request, self.per_tier)  # the rule above, compiled
        if s >= 0:
            return s
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


@register("kpi_weighted")
class KpiWeighted(BasePolicy):
    """The AI Grid reference design's KPI-aware orchestrator: a weighted score per candidate.

    Among the ``per_tier`` nearest up sites of each tier (within the request's residency area
    when it has one: the view offers only those), the site with the lowest score wins::

        score = w_latency * predicted_ms / slo_ms
              + w_cost    * cost_usd(app, site) / cost_usd(app, cheapest candidate)
              + w_local   * (site outside the origin's country)

    ``predicted_ms`` is :meth:`GridView.predict_ms` (TTFT or end-to-end, as the SLO),
    ``cost_usd`` the expected GPU cost of the request at that site
    (:meth:`GridView.cost_usd`). A candidate predicted to miss the SLO by more than
    ``max_slo_ratio`` is skipped while another meets it. Sweeping the weights traces the
    latency-cost curve between ``latency_aware`` (cost weight 0) and the cheapest tier.

    Args:
        w_latency: Weight of predicted latency relative to the SLO.
        w_cost: Weight of cost relative to the cheapest candidate.
        w_local: Penalty for serving outside the origin's country (soft sovereignty).
        per_tier: Nearest sites of each tier considered.
        max_slo_ratio: Candidates predicted above this multiple of the SLO are a last resort.
    """

    def __init__(self, w_latency: float = 1.0, w_cost: float = 1.0, w_local: float = 0.0,
                 per_tier: int = 3, max_slo_ratio: float = 1.0):
        for k, v in (("w_latency", w_latency), ("w_cost", w_cost), ("w_local", w_local),
                     ("max_slo_ratio", max_slo_ratio)):
            if not (isinstance(v, (int, float)) and v >= 0 and v < float("inf")):
                raise ValueError(f"{k} must be a finite number >= 0, got {v!r}")
        if per_tier < 1:
            raise ValueError(f"per_tier must be >= 1, got {per_tier}")
        self.w_latency, self.w_cost, self.w_local = float(w_latency), float(w_cost), \
            float(w_local)
        self.per_tier, self.max_slo_ratio = int(per_tier), float(max_slo_ratio)

    def bind(self, view: GridView) -> None:  # noqa: D102
        self._site_country = view.site_countries
        self._origin_country = view.origin_countries

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        o, cap, a = request.origin, request.capability, request.app
        cands = [s for tier in TIERS for s in view.tier_candidates(o, cap, tier)[:self.per_tier]
                 if view.is_up(s) and s != request.avoid]
        if not cands:
            return Reject.NO_CAPABLE_SITE
        slo = request.slo_ms
        ms = [view.predict_ms(request, s) for s in cands]
        cost = [view.cost_usd(a, s) for s in cands]
        cheapest = min(cost) or 1.0
        home = self._origin_country[o]
        feasible = any(m <= slo * self.max_slo_ratio for m in ms)
        best, best_score = -1, float("inf")
        for s, m, c in zip(cands, ms, cost, strict=True):
            if feasible and m > slo * self.max_slo_ratio:
                continue
            score = self.w_latency * m / slo + self.w_cost * c / cheapest
            if self.w_local and self._site_country[s] != home:
                score += self.w_local
            if score < best_score:
                best, best_score = s, score
        return best


class PrefixDirectory:
    """A router's estimate of where prompt prefixes are cached: recently routed units per site.

    This is what a real router can know (llm-d's prefix scorer, SGLang's router): which prefix
    units (a trace's ``hash_ids`` blocks, an app's system prompt) it recently sent to each site,
    kept ``ttl_s`` seconds and at most ``max_units`` per site (least recently routed dropped
    first). It is *not* the replicas' true cache contents, which the router cannot see.

    Args:
        ttl_s: How long a routed unit is assumed to stay cached.
        max_units: Units remembered per site.
    """

    def __init__(self, ttl_s: float, max_units: int):
        from collections import OrderedDict

        self._new = OrderedDict
        self.ttl_s = ttl_s
        self.max_units = max_units
        self._sites: dict[int, OrderedDict] = {}

    def cached_tokens(self, site: int, units, now: float) -> int:
        """Prompt tokens of the leading ``units`` believed cached at ``site``."""
        d = self._sites.get(site)
        if d is None:
            return 0
        hit = 0
        old = now - self.ttl_s
        for u, n in units:
            t = d.get(u)
            if t is None or t < old:
                break
            hit += n
        return hit

    def record(self, site: int, units, now: float) -> None:
        """``units`` were just routed to ``site``."""
        d = self._sites.get(site)
        if d is None:
            d = self._sites[site] = self._new()
        for u, _ in units:
            d[u] = now
            d.move_to_end(u)
        while len(d) > self.max_units:
            d.popitem(last=False)


@register("prefix_affinity")
class PrefixAffinity(BasePolicy):
    """Send a request where its prompt prefix is likely cached, within the SLO and a load bound.

    Among the ``k`` nearest capable up sites whose predicted latency meets the SLO, each scores
    ``w_cache x (cached share of the prompt) - w_load x load`` (as llm-d's prefix and load
    scorers combine), where the cached share comes from a routing-side
    :class:`PrefixDirectory`, not from the replicas. A site loaded above ``max_load``
    ((running + waiting) / capacity as the view sees it) is passed over while another candidate
    is below it: bounded-load affinity, so a popular prefix cannot pile onto one site. With no
    candidate predicted to meet the SLO, all candidates are scored (a cached prefix shortens the
    prefill the prediction assumes); requests without prefix units go to the least-loaded one.

    Args:
        k: Nearest capable sites considered.
        w_cache: Weight of the cached share of the prompt.
        w_load: Weight of the site's load.
        max_load: Load above which a site is skipped while another is below.
        ttl_s: How long the directory assumes a routed prefix stays cached.
        max_units: Prefix units remembered per site.
    """

    def __init__(self, k: int = 4, w_cache: float = 1.0, w_load: float = 0.5,
                 max_load: float = 1.0, ttl_s: float = 300.0, max_units: int = 20_000):
        for name, v in (("w_cache", w_cache), ("w_load", w_load), ("max_load", max_load),
                        ("ttl_s", ttl_s)):
            if not (isinstance(v, (int, float)) and 0 <= v < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if k < 1 or max_units < 1:
            raise ValueError(f"k and max_units must be >= 1, got {k} and {max_units}")
        self.k, self.w_cache, self.w_load, self.max_load = int(k), float(w_cache), \
            float(w_load), float(max_load)
        self.ttl_s, self.max_units = float(ttl_s), int(max_units)

    def bind(self, view: GridView) -> None:  # noqa: D102
        self.directory = PrefixDirectory(self.ttl_s, self.max_units)

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        cands = [s for s in view.candidates(request.origin, request.capability)[:self.k]
                 if view.is_up(s) and s != request.avoid]
        if not cands:
            return Reject.NO_CAPABLE_SITE
        ms = [view.predict_ms(request, s) for s in cands]
        # Sites predicted to meet the SLO; when none is, all of them (a cached prefix shortens
        # the prefill the prediction assumes, so affinity still pays).
        ok = [s for s, m in zip(cands, ms, strict=True) if m <= request.slo_ms] or cands
        units = view.prefix_units(request.id)
        loads = [view.load(s) for s in ok]
        if not units:
            return ok[loads.index(min(loads))]
        now = view.now
        under = [x <= self.max_load for x in loads]
        bounded = any(under)
        tokens = max(request.in_tokens, 1)
        d = self.directory
        best, best_score = -1, float("-inf")
        for s, load, fits in zip(ok, loads, under, strict=True):
            if bounded and not fits:
                continue
            score = self.w_cache * d.cached_tokens(s, units, now) / tokens - self.w_load * load
            if score > best_score:
                best, best_score = s, score
        d.record(best, units, now)
        return best
