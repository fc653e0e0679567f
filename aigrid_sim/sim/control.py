"""The AI Grid control plane around a routing policy: sovereignty and tenant quotas.

NVIDIA's AI Grid reference design puts a control plane in front of the orchestrator: it keeps
each request inside its data-residency area, throttles tenants to their quotas, and only then
lets the routing decision stand. :class:`ControlPlane` does exactly that, around *any* policy:

- **Sovereignty.** An app (or its tenant) lists areas (:mod:`aigrid_sim.world.areas`). A request
  from a city inside one of them may only be served by a site inside the same area. The view the
  policy sees is scoped to the request: ``candidates()`` and ``tier_candidates()`` offer only
  allowed sites, so every policy, built-in or user-written, honours the rule without knowing it.
  A decision outside the area is a bug in the policy and stops the run
  (a one-line error naming the policy); a request with no capable site in its area is
  rejected with reason ``sovereignty``.
- **Quotas.** A tenant may have token buckets per tier (or per site of a tier): ``rate_rps``
  sustained, ``burst`` at once. A request whose chosen tier has no token left is rejected with
  reason ``quota`` (throttled); a fail-over retry pays again. A tenant may also cap its
  requests held at once per tier (or per site): ``max_concurrency``; a request routed there
  while the tenant holds that many is throttled the same way (reason ``quota``).

The wrapper is built only when a scenario uses one of these features, so a run without them
pays nothing on its per-request path (:func:`wrap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aigrid_sim.errors import ConfigError
from aigrid_sim.sim.policies.base import Reject, Request, RoutingPolicy
from aigrid_sim.sim.policies.view import GridView
from aigrid_sim.world import areas as areamod
from aigrid_sim.world.build import Tier, World


@dataclass
class Rules:
    """What the control plane enforces, resolved against the world and the stream's apps.

    Attributes:
        app_area: Per app: per origin, the index of the area its requests must stay in
            (``-1``: unconstrained), or None when the app has no residency rule.
        area_names: Name of each area index.
        area_sites: Per area index, the sites inside it (a boolean mask over sites).
        app_tenant: Per app, the index of its tenant (``-1``: none).
        tenant_names: Tenant names by index.
        tenant_priority: Tenant priorities by index.
        buckets: Per (tenant, tier): ``(rate_rps, burst, per_site)``.
        concurrency: Per (tenant, tier): ``(max_concurrency, per_site)``.
    """

    app_area: list[np.ndarray | None]
    area_names: list[str]
    area_sites: list[np.ndarray]
    app_tenant: list[int]
    tenant_names: list[str]
    tenant_priority: list[int]
    buckets: dict[tuple[int, int], tuple[float, float, bool]]
    concurrency: dict[tuple[int, int], tuple[int, bool]] | None = None

    @property
    def sovereign(self) -> bool:
        """Whether any app has a residency rule."""
        return any(a is not None for a in self.app_area)


def build_rules(cfg, world: World, app_names: list[str]) -> Rules | None:
    """The control-plane rules of a run, or None when it uses no control-plane feature.

    Raises:
        ConfigError: an area with demand but no site inside it able to serve the app.
    """
    tenants = list(cfg.tenants)
    apps = {a.name: a for a in cfg.workload.apps}
    tenant_of = {app: i for i, t in enumerate(tenants) for app in t.apps}
    if not tenants and not any(a.sovereignty for a in cfg.workload.apps):
        return None
    country = np.array([c or "" for c in world.origin_country], dtype=object)
    site_country = np.array([c or "" for c in world.site_country], dtype=object)
    area_names: list[str] = []
    area_sites: list[np.ndarray] = []
    area_index: dict[str, int] = {}
    app_area: list[np.ndarray | None] = []
    for ai, name in enumerate(app_names):
        a = apps.get(name)
        rule = list(a.sovereignty) if a is not None else []
        key = f"workload.apps[{ai}].sovereignty"
        if not rule and name in tenant_of:
            ti = tenant_of[name]
            rule, key = list(tenants[ti].sovereignty), f"tenants[{ti}].sovereignty"
        if not rule:
            app_area.append(None)
            continue
        per_origin = np.full(world.n_origins, -1, dtype=np.int32)
        for j, area in enumerate(rule):
            members = areamod.resolve(area, f"{key}[{j}]")
            if area not in area_index:
                area_index[area] = len(area_names)
                area_names.append(area)
                area_sites.append(np.isin(site_country, list(members)))
            idx = area_index[area]
            inside = np.isin(country, list(members)) & (per_origin < 0)
            per_origin[inside] = idx
            if inside.any():
                cap = a.capability if a is not None else 1
                ok = area_sites[idx] & (world.site_capability >= cap)
                if not ok.any():
                    raise ConfigError(
                        f"key '{key}[{j}]': app {name!r} must stay in {area!r}, which has "
                        f"{int(inside.sum())} origin cities but no site serving capability "
                        f"{cap}; add a site there or drop the rule")
                big = _cascade_capability(a, world)
                if big is not None and not (area_sites[idx]
                                            & (world.site_capability >= big)).any():
                    raise ConfigError(
                        f"key '{key}[{j}]': app {name!r} must stay in {area!r}, but its "
                        f"escalated requests (workload.apps cascade) need capability {big} and "
                        f"no site in {area!r} hosts it; add one there or drop the rule")
        app_area.append(per_origin)
    buckets: dict[tuple[int, int], tuple[float, float, bool]] = {}
    conc: dict[tuple[int, int], tuple[int, bool]] = {}
    for ti, t in enumerate(tenants):
        for q in t.quotas:
            key = (ti, int(Tier[q.tier.upper()]))
            if q.rate_rps is not None:
                buckets[key] = (float(q.rate_rps), float(q.burst), bool(q.per_site))
            if q.max_concurrency is not None:
                conc[key] = (int(q.max_concurrency), bool(q.per_site))
    return Rules(app_area, area_names, area_sites,
                 [tenant_of.get(n, -1) for n in app_names], [t.name for t in tenants],
                 [int(t.priority) for t in tenants], buckets, conc or None)


def _cascade_capability(app, world: World) -> int | None:
    """The capability an app's escalated requests need, or None (no cascade, or no such tier)."""
    c = getattr(app, "cascade", None)
    if app is None or c is None or not c.to_tier:
        return None
    if c.capability is not None:
        return int(c.capability)
    tier = int(Tier[c.to_tier.upper()])
    at = np.asarray(world.site_capability)[np.asarray(world.site_tier) == tier]
    big = int(at.max()) if len(at) else 0
    return big if big > app.capability else None


class ControlPlane:
    """Sovereignty and quotas around a routing policy (see the module docstring).

    Args:
        policy: The routing policy that decides among the allowed sites.
        rules: What to enforce (:func:`build_rules`).
    """

    def __init__(self, policy: RoutingPolicy, rules: Rules):
        self.policy = policy
        self.rules = rules
        self.name = getattr(policy, "name", type(policy).__name__)
        self._tokens: dict[tuple, list[float]] = {}
        self._held: dict[tuple, dict[int, int]] = {}  # concurrency: slot -> site, per bucket

    def bind(self, view: GridView) -> None:
        """Scope the view to each request's area, then bind the inner policy."""
        if self.rules.sovereign:  # candidate lists within each request's area (choose)
            view._area_sites = self.rules.area_sites
        self._view = view
        self._tiers = view.tiers
        if self.rules.concurrency:  # who is still held: the engine's per-request state
            self._rec = view._e.records
            self._app = view._e._app
        self.policy.bind(view)

    def choose(self, request: Request, view: GridView) -> int:
        """The inner policy's decision, within the request's area and its tenant's quota."""
        r = self.rules
        rule = r.app_area[request.app]
        area = -1 if rule is None else int(rule[request.origin])
        if rule is not None:
            view._area = area
        try:
            s = self.policy.choose(request, view)
        finally:
            if rule is not None:
                view._area = -1
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            return s  # the engine's fence reports it
        if s < 0:
            if area >= 0 and s == Reject.NO_CAPABLE_SITE:
                return Reject.SOVEREIGNTY
            return s
        if area >= 0 and not (0 <= s < len(r.area_sites[area]) and r.area_sites[area][s]):
            raise ConfigError(
                f"policy {self.name!r} sent request {request.id} (app {request.app}, must stay "
                f"in {r.area_names[area]!r}) to site {view.site_ids[s]!r} outside that area")
        tenant = r.app_tenant[request.app]
        if tenant >= 0 and (r.buckets or r.concurrency):
            tier = int(self._tiers[s])
            held = None
            if r.concurrency:
                cspec = r.concurrency.get((tenant, tier))
                if cspec is not None:
                    held = self._room(tenant, tier, s, cspec)
                    if held is None:
                        return Reject.QUOTA
            spec = r.buckets.get((tenant, tier))
            if spec is not None and not self._take(tenant, tier, s, spec, view.now):
                return Reject.QUOTA
            if held is not None:
                held[request.id] = s
        return s

    def _room(self, tenant: int, tier: int, site: int, spec) -> dict | None:
        """The requests the tenant holds in this concurrency bucket, or None if it is full.

        A request holds its place from the decision that routed it here until it ends (its
        status leaves ``in_flight``) or is routed elsewhere (a fail-over, an escalation). Places
        are given back lazily: the bucket is swept only when it looks full.
        """
        limit, per_site = spec
        key = (tenant, tier, site if per_site else -1)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
        if len(held) >= limit:
            rec = self._rec
            status, where = rec.status, rec.site
            app, owner = self._app, self.rules.app_tenant
            for i, hs in list(held.items()):
                if status[i] != 0 or where[i] != hs or owner[app[i]] != tenant:
                    del held[i]
            if len(held) >= limit:
                return None
        return held

    def _take(self, tenant: int, tier: int, site: int, spec, now: float) -> bool:
        rate, burst, per_site = spec
        key = (tenant, tier, site if per_site else -1)
        b = self._tokens.get(key)
        if b is None:
            b = self._tokens[key] = [burst, now]
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        return False


def priority_levels(rules: Rules | None) -> list[int] | None:
    """Per app, its queue level (0: the highest priority); None when all priorities are equal.

    Apps no tenant owns have priority 0.
    """
    if rules is None:
        return None
    prio = [rules.tenant_priority[t] if t >= 0 else 0 for t in rules.app_tenant]
    order = sorted(set(prio), reverse=True)
    if len(order) < 2:
        return None
    return [order.index(p) for p in prio]


def prioritise(engine, rules: Rules | None) -> None:
    """Order the engine's waiting queues by tenant priority, if the priorities differ."""
    levels = priority_levels(rules)
    if levels is not None:
        engine.set_priorities(levels)


def wrap(policy: RoutingPolicy, rules: Rules | None) -> RoutingPolicy:
    """``policy`` behind a control plane, or ``policy`` itself when there are no rules."""
    return policy if rules is None else ControlPlane(policy, rules)
