"""Tenants' bills: token revenue, SLA penalties, GPU cost and margin, per tenant and per tier.

A pure function of the requests and sites tables and the tenants' price plans
(``tenants[*].prices``, ``tenants[*].sla_penalty_usd``):

- **revenue** of a completed request = ``in_tokens x in_per_m + out_tokens x out_per_m`` / 1e6 at
  the price of the tier that served it (its tenant's plan); requests that did not complete pay
  nothing; an escalated request of a cascade also pays its small-model attempt's tokens at
  that attempt's tier (it was served);
- **penalty** = ``sla_penalty_usd`` for every request of the tenant that missed its SLO, except
  those its own quota throttled (the contract allowed them to be refused);
- **GPU cost** = the provisioned GPU cost of each tier (idle time included, from the sites table)
  shared among tenants in proportion to the GPU-seconds their requests used there
  (``used_cost_usd`` is the busy part alone);
- **margin** = revenue - penalty - GPU cost.

Requests of apps no tenant owns are billed to ``(no tenant)`` at price zero, so the tenants'
GPU costs add up to the run's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_TENANT = "(no tenant)"


TIERS = ("edge", "regional", "core")
_COUNTS = ("requests", "completed", "throttled", "met", "judged")
_SUMS = ("in_tokens", "out_tokens", "revenue_usd", "penalty_usd", "used_cost_usd")
#: What a bill adds up per (tenant, tier): runs merge by adding them (``sketches.parquet``).
BILL_FIELDS = _COUNTS + _SUMS


class Bill:
    """The bill accumulated block by block (a streamed run feeds it every block of requests).

    Everything it keeps is a sum per (tenant, tier): counts, tokens, revenue, penalties and the
    GPU cost used; the provisioned GPU cost is shared out at the end (:meth:`result`), so the
    bill of a streamed run equals the one computed from the whole requests table.

    An escalated request of a cascade (``cascade`` column ``escalated``) is billed both
    attempts: its small-model attempt's tokens at the price of that attempt's tier
    (``edge_tier``) and its GPU cost (``edge_cost_usd``) to that tier; the request itself counts
    once, at the tier of its last attempt.

    Args:
        tenants: The ``tenants`` config list (name, apps, prices, sla_penalty_usd).
    """

    def __init__(self, tenants):
        self.tenants = list(tenants)
        self.names = [t.name for t in self.tenants] + [NO_TENANT]
        self._owner = {app: i for i, t in enumerate(self.tenants) for app in t.apps}
        n = len(self.names)
        # price per token [tenant, tier] (in, out); the penalty per tenant
        self._pin = np.zeros((n, 4))
        self._pout = np.zeros((n, 4))
        self._pen = np.zeros(n)
        for i, t in enumerate(self.tenants):
            for tr, p in (t.prices or {}).items():
                self._pin[i, TIERS.index(tr)] = p.in_per_m / 1e6
                self._pout[i, TIERS.index(tr)] = p.out_per_m / 1e6
            self._pen[i] = t.sla_penalty_usd
        self.acc = {k: np.zeros((n, 4)) for k in _COUNTS + _SUMS}

    def update(self, reqs: pd.DataFrame) -> Bill:
        """Add a block of rows of the requests table."""
        if not len(reqs):
            return self
        apps = reqs["app"].astype(str).to_numpy()
        none = len(self.names) - 1
        ten = np.array([self._owner.get(a, none) for a in apps], dtype=np.int64)
        tier = _tier_codes(reqs["tier"])
        status = reqs["status"].astype(str).to_numpy()
        ok = status == "ok"
        judged = ~(reqs["reason"].astype(str).to_numpy() == "quota") & (status != "in_flight")
        throttled = reqs["reason"].astype(str).to_numpy() == "quota"
        met = reqs["slo_met"].to_numpy(bool) & judged
        tin = reqs["in_tokens"].to_numpy(float)
        tout = reqs["out_tokens"].to_numpy(float)
        used = reqs["cost_usd"].to_numpy(float)
        rev = np.where(ok, tin * self._pin[ten, tier] + tout * self._pout[ten, tier], 0.0)
        A = self.acc
        shape = A["requests"].shape
        g = np.ravel_multi_index((ten, tier), shape)

        def add(key, values):
            A[key] += np.bincount(g, weights=values, minlength=A[key].size).reshape(shape)

        if "edge_cost_usd" in reqs:  # cascades: the small model's attempt of escalated ones
            edge_cost = reqs["edge_cost_usd"].to_numpy(float)
            used = used - edge_cost
            et = _tier_codes(reqs["edge_tier"])
            esc = et < 3
            ge = np.ravel_multi_index((ten[esc], et[esc]), shape)
            for key, v in (("in_tokens", tin[esc]), ("out_tokens", tout[esc]),
                           ("revenue_usd", tin[esc] * self._pin[ten[esc], et[esc]]
                            + tout[esc] * self._pout[ten[esc], et[esc]]),
                           ("used_cost_usd", edge_cost[esc])):
                A[key] += np.bincount(ge, weights=v, minlength=A[key].size).reshape(shape)
        add("requests", np.ones(len(reqs)))
        add("completed", ok.astype(float))
        add("throttled", throttled.astype(float))
        add("met", met.astype(float))
        add("judged", judged.astype(float))
        add("in_tokens", np.where(ok, tin, 0.0))
        add("out_tokens", np.where(ok, tout, 0.0))
        add("revenue_usd", rev)
        add("penalty_usd", np.where(judged & ~met, self._pen[ten], 0.0))
        add("used_cost_usd", used)
        return self

    def result(self, sites: pd.DataFrame) -> dict:
        """The ``tenants`` block of ``summary.json`` (see :func:`billing`)."""
        A = self.acc
        prov = np.zeros(4)
        for tr, c in sites.groupby("tier", observed=True)["cost_usd"].sum().items():
            if str(tr) in TIERS:
                prov[TIERS.index(str(tr))] = float(c)
        tier_used = A["used_cost_usd"].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(tier_used > 0, A["used_cost_usd"] / tier_used * prov, 0.0)

        def block(rows, cols) -> dict:
            def tot(k):
                return float(A[k][np.ix_(rows, cols)].sum())

            judged = int(round(tot("judged")))
            rev, pen = tot("revenue_usd"), tot("penalty_usd")
            cost = float(share[np.ix_(rows, cols)].sum())
            return {"requests": int(round(tot("requests"))),
                    "completed": int(round(tot("completed"))),
                    "throttled": int(round(tot("throttled"))),
                    "slo_attainment": tot("met") / judged if judged else None,
                    "in_tokens": int(round(tot("in_tokens"))),
                    "out_tokens": int(round(tot("out_tokens"))),
                    "revenue_usd": rev, "penalty_usd": pen, "gpu_cost_usd": cost,
                    "used_cost_usd": tot("used_cost_usd"), "margin_usd": rev - pen - cost}

        def used_tier(rows, k) -> bool:
            return bool(A["requests"][rows, k].sum() > 0 or A["used_cost_usd"][rows, k].sum()
                        or A["in_tokens"][rows, k].sum())

        every = list(range(4))
        n = len(self.names)
        by_tenant = {}
        for i, name in enumerate(self.names):
            if i == n - 1 and not A["requests"][i].sum():
                continue
            b = block([i], every)
            b["by_tier"] = {tr: block([i], [k]) for k, tr in enumerate(TIERS)
                            if used_tier([i], k)}
            by_tenant[name] = b
        rows = list(range(n))
        by_tier = {tr: block(rows, [k]) for k, tr in enumerate(TIERS) if used_tier(rows, k)}
        return {"by_tenant": by_tenant, "by_tier": by_tier, "total": block(rows, every)}


def _tier_codes(col) -> np.ndarray:
    """Tier index per row (3: no tier)."""
    t = col.astype(str).to_numpy()
    out = np.full(len(t), 3, np.int64)
    for k, tr in enumerate(TIERS):
        out[t == tr] = k
    return out


def billing(reqs: pd.DataFrame, sites: pd.DataFrame, tenants) -> dict:
    """The ``tenants`` block of ``summary.json``, from a whole requests table.

    Args:
        reqs: The requests table (``app``, ``tier``, ``status``, ``reason``, ``in_tokens``,
            ``out_tokens``, ``slo_met``, ``cost_usd``; cascades: ``edge_tier``,
            ``edge_cost_usd``).
        sites: The sites table (``tier``, ``cost_usd``).
        tenants: The ``tenants`` config list (name, apps, prices, sla_penalty_usd).

    Returns:
        ``{"by_tenant": {name: {...}}, "by_tier": {tier: {...}}, "total": {...}}``.
    """
    return Bill(tenants).update(reqs).result(sites)


def billing_lines(b: dict) -> list[str]:
    """Console lines for the ``tenants`` block of a summary."""
    lines = [f"{'tenant':<16}{'requests':>9}{'throttled':>10}{'SLO met':>9}{'revenue $':>11}"
             f"{'penalty $':>10}{'GPU $':>9}{'margin $':>10}"]
    for name, t in b["by_tenant"].items():
        slo = t["slo_attainment"]
        lines.append(f"{name[:15]:<16}{t['requests']:>9,}{t['throttled']:>10,}"
                     f"{'-' if slo is None else f'{100 * slo:.1f} %':>9}"
                     f"{t['revenue_usd']:>11,.2f}{t['penalty_usd']:>10,.2f}"
                     f"{t['gpu_cost_usd']:>9,.2f}{t['margin_usd']:>10,.2f}")
    return lines
