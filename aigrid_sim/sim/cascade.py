"""Prompt-aware tiering and escalation: an app served as a cascade of two models.

The AI Grid's "right model, right location": a small model (usually at the edge) answers
first, and the requests it cannot answer well are **escalated** to a bigger model on a higher
tier. An app opts in with ``workload.apps[*].cascade`` (:class:`aigrid_sim.config.CascadeConfig`):

- ``to_tier``: the tier escalated requests go to; ``capability``: what they need there (by
  default the biggest model of that tier, which must be bigger than the app's own).
- Which requests escalate (``mode``): a ``fixed`` fraction (a Bernoulli draw per request), the
  prompts longer than ``length_tokens`` (``length``), or the requests whose ``difficulty``,
  drawn per request from ``Beta(alpha, beta)``, leaves the small model's confidence
  ``1 - difficulty`` below ``threshold`` (``difficulty``). The draws come from the run's own
  ``cascade`` random stream (:mod:`aigrid_sim.rng`), one per request in arrival order.

**Life of an escalated request.** Its first attempt is routed like any request of the app
(capability of the app). When the small model has its last token, the answer travels back to
the origin; there the request is sent again, needing ``capability``, and routed by the same
policy (with what is left of its SLO as the target), paying a second trip and a second service.
Its latency is the first attempt's full time (trips, wait, service) plus the second's; its cost
is both services' GPU time; its tenant is billed both attempts' tokens (the first at the small
model's tier). It is still one request, which ends ``ok``, ``rejected``, ``failed`` or
``in_flight`` like any other. A first attempt that a policy sent straight to a site hosting
``capability`` (a *direct* request) is not escalated.

**What policies see.** ``view.cascades`` (per app: a :class:`CascadeSpec` or None; None when
no app is a cascade) with :meth:`CascadeSpec.p_escalate`: the chance a request escalates given
what a router knows before the answer (its prompt length and the app's difficulty
distribution, not the draw). ``cheapest_feasible`` uses it (its rule is in its docstring).

Requests carry their path (``records.cascade``): 0 not a cascade app, 1 small model only (its
answer stands), 2 small model, to be escalated when it answers, 3 escalated, 5 and 6 direct
(the draw 1 or 2 kept, + 4). Nothing of this runs for an app without a cascade: the wrapper
and the completion hook exist only when one is configured (:func:`wrap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aigrid_sim import rng as rngs
from aigrid_sim.errors import ConfigError
from aigrid_sim.sim.policies.base import Request, RoutingPolicy
from aigrid_sim.world.build import Tier, World

NONE, SMALL, SMALL_ESCALATE, ESCALATED, DIRECT = 0, 1, 2, 3, 4
#: Path label of each ``records.cascade`` code (requests table column ``cascade``).
PATHS = ("", "edge_only", "escalated", "direct")
PATH_OF_CODE = np.array([0, 1, 1, 2, 0, 3, 3], dtype=np.int64)


@dataclass
class CascadeSpec:
    """One app's cascade, resolved against the world (see the module docstring)."""

    app: int
    name: str
    tier: int
    capability: int
    mode: str
    fraction: float
    length_tokens: int
    alpha: float
    beta: float
    threshold: float

    def __post_init__(self):
        # P(confidence 1 - d < threshold) = P(d > 1 - threshold), d ~ Beta(alpha, beta)
        from scipy.special import betainc

        self._p_difficulty = float(1.0 - betainc(self.alpha, self.beta, 1.0 - self.threshold))

    def p_escalate(self, in_tokens: int) -> float:
        """The chance a request with this prompt escalates, as a router can know it beforehand."""
        if self.mode == "length":
            return 1.0 if in_tokens > self.length_tokens else 0.0
        if self.mode == "fixed":
            return self.fraction
        return self._p_difficulty

    def draw(self, rnd, in_tokens: int) -> bool:
        """Whether this request escalates (its small-model answer is not good enough)."""
        if self.mode == "length":
            return in_tokens > self.length_tokens
        if self.mode == "fixed":
            return rnd.random() < self.fraction
        return 1.0 - rnd.betavariate(self.alpha, self.beta) < self.threshold


def build_cascades(cfg, world: World, app_names: list[str]) -> list[CascadeSpec | None] | None:
    """Per app of the stream, its cascade (or None); None when no app is a cascade.

    Raises:
        ConfigError: a target tier with no site hosting a model bigger than the app's (or the
            ``capability`` asked for), naming the key.
    """
    apps = {a.name: (i, a) for i, a in enumerate(cfg.workload.apps)}
    caps = np.asarray(world.site_capability)
    tiers = np.asarray(world.site_tier)
    out: list[CascadeSpec | None] = []
    for ai, name in enumerate(app_names):
        i, a = apps.get(name, (-1, None))
        c = getattr(a, "cascade", None)
        if c is None or not c.to_tier:
            out.append(None)
            continue
        key = f"workload.apps[{i}].cascade"
        tier = int(Tier[c.to_tier.upper()])
        at = caps[tiers == tier]
        if c.capability is None:
            biggest = int(at.max()) if len(at) else 0
            if biggest <= a.capability:
                raise ConfigError(
                    f"key '{key}.to_tier': app {name!r} escalates to tier {c.to_tier!r}, but "
                    + (f"no site of that tier hosts a model bigger than the app's (capability "
                       f"{a.capability}; the tier's biggest is {biggest})" if len(at) else
                       "the world has no site of that tier")
                    + "; pick another tier or add a bigger model there")
            need = biggest
        else:
            need = int(c.capability)
            if not (at >= need).any():
                raise ConfigError(
                    f"key '{key}.to_tier': app {name!r} escalates to tier {c.to_tier!r} needing "
                    f"capability {need}, but no site of that tier hosts one (the tier's biggest "
                    f"is {int(at.max()) if len(at) else 'none: no site'}); lower "
                    f"{key}.capability or pick another tier")
        out.append(CascadeSpec(ai, name, tier, need, c.mode, float(c.fraction),
                               int(c.length_tokens), float(c.difficulty.alpha),
                               float(c.difficulty.beta), float(c.threshold)))
    return out if any(s is not None for s in out) else None


class Cascade:
    """Routes a cascade's attempts around a policy and escalates when the small model answers.

    Args:
        policy: The routing policy (possibly behind the control plane).
        specs: Per app, its :class:`CascadeSpec` or None.
        seed: The run seed (the ``cascade`` random stream).
    """

    def __init__(self, policy: RoutingPolicy, specs: list[CascadeSpec | None], seed: int):
        self.policy = policy
        self.specs = specs
        self.name = getattr(policy, "name", type(policy).__name__)
        self._rnd = rngs.py_random(seed, "cascade")
        self.escalations = 0

    def bind(self, view) -> None:
        """Show the cascades to the policy (``view.cascades``), then bind it."""
        view.cascades = self.specs
        self._caps = view.capabilities
        self._view = view
        self.policy.bind(view)

    def attach(self, engine) -> None:
        """Hook the engine's completions (call after the engine is built, before it runs)."""
        self._e = engine
        self._rec = engine.records
        self._served = engine._served
        engine.hook_served(self.served)

    def choose(self, request: Request, view) -> int:
        """Route a cascade app's attempt: the small model first, the big one when escalated."""
        spec = self.specs[request.app]
        if spec is None:
            return self.policy.choose(request, view)
        i = request.id
        cas = self._rec.cascade
        code = int(cas[i])
        if code == ESCALATED:
            request.capability = spec.capability
            # Its target is what is left of its SLO (at least 1 ms: a spent one is missed).
            left = request.slo_ms - (view.now - request.arrival_s) * 1000.0
            request.slo_ms = left if left > 1.0 else 1.0
            return self.policy.choose(request, view)
        if code == NONE:
            code = SMALL_ESCALATE if spec.draw(self._rnd, request.in_tokens) else SMALL
        elif code > DIRECT:  # a direct attempt failed over: decide afresh
            code -= DIRECT
        s = self.policy.choose(request, view)
        if s >= 0 and self._caps[s] >= spec.capability:
            code += DIRECT
        cas[i] = code
        return s

    def served(self, i: int) -> None:
        """Request ``i`` has its last token: it ends, or its small-model answer is escalated."""
        rec = self._rec
        if rec.cascade[i] != SMALL_ESCALATE:
            self._served(i)
            return
        e = self._e
        now = e.env._now
        s = int(rec.site[i])
        back = now + e._rtt.item(e._origin[i], s) * 0.0005
        rec.esc_site[i] = s
        rec.esc_t_start[i] = rec.t_start[i]
        rec.esc_service_s[i] = rec.service_s[i]
        rec.esc_s[i] = rec.extra_s[i] = back - e._t[i]
        rec.t_start[i] = rec.service_s[i] = rec.prefill_s[i] = rec.tpot_s[i] = math.nan
        rec.batch[i] = 0
        rec.cached_tokens[i] = 0
        # On its way home it holds no site: a tenant's concurrency place at the small model's
        # site is free from now (the control plane sweeps places whose request left the site).
        rec.site[i] = -1
        rec.cascade[i] = ESCALATED
        self.escalations += 1
        e._at(back, e._arrive, i)


def wrap(policy: RoutingPolicy, specs: list[CascadeSpec | None] | None,
         seed: int) -> RoutingPolicy:
    """``policy`` behind a :class:`Cascade`, or ``policy`` itself when no app is a cascade."""
    return policy if specs is None else Cascade(policy, specs, seed)
