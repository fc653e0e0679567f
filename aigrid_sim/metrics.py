"""From records to tables and summaries: pure functions, no simulation.

Glossary (per request *r*, times in ms): ``network`` = round trip origin-site on the graph;
``queue`` = wait for a slot at the site; ``service`` = time holding a slot (prefill + decode, or
fixed work); ``latency`` = network + queue + service (+ time lost to failed attempts);
``ttft`` = network + queue + prefill (time to first token); ``tpot`` = per-output-token time;
``slo_met`` = the request completed and its SLO metric (ttft or latency) is within ``slo_ms``.
SLO attainment counts rejected and failed requests as misses and leaves in-flight ones out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aigrid_sim.engine import Records
from aigrid_sim.outcomes import Reason, Status
from aigrid_sim.workload.stream import RequestStream
from aigrid_sim.world import Tier, World

STATUS_LABELS = [s.label for s in Status]
REASON_LABELS = [r.label for r in Reason]
TIER_LABELS = [t.label for t in Tier]


def requests_table(world: World, stream: RequestStream, rec: Records) -> pd.DataFrame:
    """One row per request (the ``requests.parquet`` contract of DESIGN.md section 4)."""
    n = len(stream)
    site = rec.site.astype(np.int64)
    routed = site >= 0
    s0 = np.where(routed, site, 0)
    network_ms = np.where(routed, world.rtt_ms[stream.origin, s0], np.nan)
    t_site = stream.t + network_ms / 2000.0
    ok = rec.status == Status.OK
    # Clip float round-off (t_start and t_site are the same instant when no wait).
    queue_ms = np.maximum((rec.t_start - t_site) * 1000.0, 0.0)
    service_ms = rec.service_s * 1000.0
    extra_ms = rec.extra_s * 1000.0
    latency_ms = np.where(ok, network_ms + queue_ms + service_ms + extra_ms, np.nan)
    gen = np.array([a.generative for a in stream.apps])[stream.app]
    ttft_ms = np.where(ok, np.where(gen, network_ms + queue_ms + rec.prefill_s * 1000.0
                                    + extra_ms, latency_ms), np.nan)
    tpot_ms = np.full(n, np.nan)
    started = ~np.isnan(rec.service_s)
    g = started & gen
    if g.any():
        tpot_ms[g] = (rec.service_s[g] - rec.prefill_s[g]) / np.maximum(stream.out_tokens[g], 1) \
            * 1000.0
    slo_ms = np.array([a.slo_ms for a in stream.apps])[stream.app]
    on_ttft = np.array([a.slo_on_ttft for a in stream.apps])[stream.app]
    metric = np.where(on_ttft, ttft_ms, latency_ms)
    slo_met = ok & (metric <= slo_ms)
    price = np.array([d.price_per_slot_second for d in world.site_deployment])
    gpu_share = np.array([d.gpus_per_replica / d.max_batch for d in world.site_deployment])
    used = np.where(started, rec.service_s, 0.0)
    cost_usd = np.where(routed, used * price[s0], 0.0)
    site_names = np.array(world.site_id + [""], dtype=object)
    tiers = np.where(routed, world.site_tier[s0], -1)
    return pd.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": stream.t,
        "origin": pd.Categorical.from_codes(stream.origin, categories=world.origin_name),
        "region": np.array(world.origin_region, dtype=object)[stream.origin],
        "app": pd.Categorical.from_codes(stream.app.astype(np.int64),
                                         categories=[a.name for a in stream.apps]),
        "capability": np.array([a.capability for a in stream.apps], dtype=np.int8)[stream.app],
        "tier": pd.Categorical.from_codes(tiers, categories=TIER_LABELS),
        "site": site_names[np.where(routed, site, len(world.site_id))],
        "status": pd.Categorical.from_codes(rec.status.astype(np.int64), categories=STATUS_LABELS),
        "reason": pd.Categorical.from_codes(rec.reason.astype(np.int64), categories=REASON_LABELS),
        "attempts": rec.attempts,
        "in_tokens": stream.in_tokens,
        "out_tokens": stream.out_tokens,
        "batch": rec.batch,
        "network_ms": network_ms,
        "queue_ms": queue_ms,
        "service_ms": service_ms,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "slo_ms": slo_ms,
        "slo_met": slo_met,
        "gpu_s": used * np.where(routed, gpu_share[s0], 0.0),
        "cost_usd": cost_usd,
    })


def busy_slot_seconds(world: World, rec: Records, t0: float, t1: float) -> np.ndarray:
    """Per site: slot-seconds of service falling inside ``[t0, t1]``."""
    started = ~np.isnan(rec.service_s) & (rec.site >= 0)
    a = np.clip(rec.t_start[started], t0, t1)
    b = np.clip(rec.t_start[started] + rec.service_s[started], t0, t1)
    return np.bincount(rec.site[started], weights=b - a, minlength=world.n_sites)


def sites_table(world: World, rec: Records, window_s: float, reqs: pd.DataFrame) -> pd.DataFrame:
    """One row per site: tier, place, GPUs, requests, busy time, utilisation, cost.

    Utilisation and provisioned cost are over the arrival window ``[0, window_s]``.
    """
    t = world.sites_table()
    busy = busy_slot_seconds(world, rec, 0.0, window_s)
    price_gpu_h = np.array([d.gpu.price_per_hour for d in world.site_deployment])
    site_idx = rec.site
    routed = site_idx >= 0
    t["requests"] = np.bincount(site_idx[routed], minlength=world.n_sites)
    t["completed"] = np.bincount(site_idx[routed & (rec.status == Status.OK)],
                                 minlength=world.n_sites)
    t["busy_slot_s"] = busy
    t["utilisation"] = busy / (t["slots"].to_numpy() * window_s) if window_s > 0 else 0.0
    t["price_per_gpu_hour"] = price_gpu_h
    t["cost_usd"] = world.site_gpus * price_gpu_h * window_s / 3600.0
    t["used_cost_usd"] = np.bincount(site_idx[routed], weights=reqs["cost_usd"].to_numpy()[routed],
                                     minlength=world.n_sites)
    return t


def _pcts(x: np.ndarray) -> dict:
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"mean": float(x.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _attain(df: pd.DataFrame) -> float | None:
    ended = df["status"].isin(["ok", "rejected", "failed"])
    n = int(ended.sum())
    return float(df["slo_met"][ended].sum() / n) if n else None


def _group_block(df: pd.DataFrame) -> dict:
    return {
        "requests": int(len(df)),
        "completed": int((df["status"] == "ok").sum()),
        "latency_ms": _pcts(df["latency_ms"].to_numpy()),
        "ttft_ms": _pcts(df["ttft_ms"].to_numpy()),
        "slo_attainment": _attain(df),
    }


def summarise(reqs: pd.DataFrame, sites: pd.DataFrame, *, warmup_s: float = 0.0,
              window_s: float) -> dict:
    """The run summary (``summary.json``; DESIGN.md section 4).

    Counts cover every request (they add up to ``requests``); latency, SLO and by-group figures
    cover requests arriving after ``warmup_s``.
    """
    status = reqs["status"]
    m = reqs[reqs["arrival_s"] >= warmup_s]
    ok = m[m["status"] == "ok"]
    cost = float(sites["cost_usd"].sum())
    completed = int((status == "ok").sum())
    tokens = float((ok["in_tokens"] + ok["out_tokens"]).sum())
    by_tier = {}
    for tier in TIER_LABELS:
        st = sites[sites["tier"] == tier]
        if st.empty:
            continue
        block = _group_block(m[m["tier"] == tier])
        slots = st["slots"].to_numpy()
        block["utilisation"] = float((st["busy_slot_s"].sum()) / (slots.sum() * window_s)) \
            if window_s > 0 else 0.0
        block["cost_usd"] = float(st["cost_usd"].sum())
        block["sites"] = int(len(st))
        block["gpus"] = int(st["gpus"].sum())
        by_tier[tier] = block
    reasons = reqs.loc[reqs["reason"] != "", "reason"].value_counts()
    return {
        "requests": int(len(reqs)),
        "completed": completed,
        "rejected": int((status == "rejected").sum()),
        "failed": int((status == "failed").sum()),
        "in_flight": int((status == "in_flight").sum()),
        "measured_requests": int(len(m)),
        "latency_ms": _pcts(ok["latency_ms"].to_numpy()),
        "ttft_ms": _pcts(ok["ttft_ms"].to_numpy()),
        "network_ms": _pcts(ok["network_ms"].to_numpy()),
        "queue_ms": _pcts(ok["queue_ms"].to_numpy()),
        "slo_attainment": _attain(m),
        "cost_usd": cost,
        "used_cost_usd": float(reqs["cost_usd"].sum()),
        "cost_per_1k_requests_usd": cost / completed * 1000.0 if completed else None,
        "cost_per_million_tokens_usd": cost / tokens * 1e6 if tokens else None,
        "utilisation": float(sites["busy_slot_s"].sum() / (sites["slots"].sum() * window_s))
        if window_s > 0 else 0.0,
        "reasons": {str(k): int(v) for k, v in reasons.items() if v},
        "by_tier": by_tier,
        "by_region": {str(r): _group_block(g) for r, g in m.groupby("region", observed=True)},
        "by_app": {str(a): _group_block(g) for a, g in m.groupby("app", observed=True)},
    }


def by_origin(reqs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Latency of requests from the named origins (cities): requests, p50, p95, SLO attainment."""
    rows = []
    for name in names:
        d = reqs[reqs["origin"] == name]
        lat = d.loc[d["status"] == "ok", "latency_ms"].to_numpy()
        ttft = d.loc[d["status"] == "ok", "ttft_ms"].to_numpy()
        rows.append({
            "origin": name, "requests": len(d),
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else np.nan,
            "p95_ms": float(np.percentile(lat, 95)) if len(lat) else np.nan,
            "ttft_p50_ms": float(np.percentile(ttft, 50)) if len(ttft) else np.nan,
            "network_p50_ms": float(d.loc[d["status"] == "ok", "network_ms"].median())
            if len(lat) else np.nan,
            "slo_attainment": _attain(d),
        })
    return pd.DataFrame(rows)
