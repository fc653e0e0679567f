"""Tenants' bills: token revenue, SLA penalties, GPU cost and margin, per tenant and per tier.

A pure function of the requests and sites tables and the tenants' price plans
(``tenants[*].prices``, ``tenants[*].sla_penalty_usd``):

- **revenue** of a completed request = ``in_tokens x in_per_m + out_tokens x out_per_m`` / 1e6 at
  the price of the tier that served it (its tenant's plan); requests that did not complete pay
  nothing;
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


def billing(reqs: pd.DataFrame, sites: pd.DataFrame, tenants) -> dict:
    """The ``tenants`` block of ``summary.json``.

    Args:
        reqs: The requests table (``app``, ``tier``, ``status``, ``reason``, ``in_tokens``,
            ``out_tokens``, ``slo_met``, ``cost_usd``, ``gpu_s``).
        sites: The sites table (``tier``, ``cost_usd``).
        tenants: The ``tenants`` config list (name, apps, prices, sla_penalty_usd).

    Returns:
        ``{"by_tenant": {name: {...}}, "by_tier": {tier: {...}}, "total": {...}}``.
    """
    owner = {app: t.name for t in tenants for app in t.apps}
    plans = {t.name: t for t in tenants}
    app = reqs["app"].astype(str).to_numpy()
    tenant = np.array([owner.get(a, NO_TENANT) for a in app], dtype=object)
    tier = reqs["tier"].astype(str).to_numpy()
    ok = (reqs["status"] == "ok").to_numpy()
    throttled = (reqs["reason"] == "quota").to_numpy()
    missed = ~reqs["slo_met"].to_numpy(bool) & ~throttled & \
        (reqs["status"] != "in_flight").to_numpy()
    tin = reqs["in_tokens"].to_numpy(float)
    tout = reqs["out_tokens"].to_numpy(float)
    used = reqs["cost_usd"].to_numpy(float)
    revenue = np.zeros(len(reqs))
    penalty = np.zeros(len(reqs))
    for name, t in plans.items():
        mine = tenant == name
        for tr, p in (t.prices or {}).items():
            m = mine & ok & (tier == tr)
            revenue[m] = (tin[m] * p.in_per_m + tout[m] * p.out_per_m) / 1e6
        penalty[mine & missed] = t.sla_penalty_usd
    tier_cost = sites.groupby("tier", observed=True)["cost_usd"].sum()
    tier_used = pd.Series(used).groupby(tier).sum()
    share = np.zeros(len(reqs))
    for tr, prov in tier_cost.items():
        m = tier == str(tr)
        u = float(tier_used.get(str(tr), 0.0))
        if u > 0:
            share[m] = used[m] / u * float(prov)

    def block(m: np.ndarray) -> dict:
        n = int(m.sum())
        done = int((m & ok).sum())
        met = int((m & ~missed & ~throttled & (reqs["status"] != "in_flight").to_numpy()).sum())
        judged = int((m & ~throttled & (reqs["status"] != "in_flight").to_numpy()).sum())
        rev, pen, cost = float(revenue[m].sum()), float(penalty[m].sum()), float(share[m].sum())
        return {"requests": n, "completed": done, "throttled": int((m & throttled).sum()),
                "slo_attainment": met / judged if judged else None,
                "in_tokens": int(tin[m & ok].sum()), "out_tokens": int(tout[m & ok].sum()),
                "revenue_usd": rev, "penalty_usd": pen, "gpu_cost_usd": cost,
                "used_cost_usd": float(used[m].sum()), "margin_usd": rev - pen - cost}

    names = [t.name for t in tenants] + ([NO_TENANT] if (tenant == NO_TENANT).any() else [])
    by_tenant = {}
    for name in names:
        mine = tenant == name
        b = block(mine)
        b["by_tier"] = {tr: block(mine & (tier == tr)) for tr in ("edge", "regional", "core")
                        if (mine & (tier == tr)).any()}
        by_tenant[name] = b
    by_tier = {tr: block(tier == tr) for tr in ("edge", "regional", "core") if (tier == tr).any()}
    return {"by_tenant": by_tenant, "by_tier": by_tier, "total": block(np.ones(len(reqs), bool))}


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
