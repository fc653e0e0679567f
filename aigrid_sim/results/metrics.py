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

from aigrid_sim.outcomes import Reason, Status
from aigrid_sim.sim.engine import Records
from aigrid_sim.workload.stream import RequestStream
from aigrid_sim.world.build import Tier, World

STATUS_LABELS = [s.label for s in Status]
# Labels by code (codes may skip numbers: unused ones get a placeholder label).
REASON_LABELS = [Reason(v).label if v in Reason._value2member_map_ else f"unused_{v}"
                 for v in range(max(Reason) + 1)]
TIER_LABELS = [t.label for t in Tier]


def requests_table(world: World, stream: RequestStream, rec: Records,
                   id0: int | np.ndarray = 0) -> pd.DataFrame:
    """One row per request (the ``requests.parquet`` contract of DESIGN.md section 4).

    ``id0`` is the ``request_id`` of the first row (a block of a streamed run), or every row's
    ``request_id`` (an array: a block handed over out of order).
    """
    n = len(stream)
    site = rec.site.astype(np.int64)
    routed = site >= 0
    s0 = np.where(routed, site, 0)
    network_ms = np.full(n, np.nan)  # only routed pairs: a big world computes what it is asked
    network_ms[routed] = world.rtt_ms[stream.origin[routed], site[routed]]
    net = ~np.isnan(rec.net_ms)  # the network changed during the run (link cuts): as recorded
    network_ms[net] = rec.net_ms[net]
    # The last attempt left its origin extra_s after arrival (0 unless it failed over).
    t_site = stream.t + rec.extra_s + network_ms / 2000.0
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
    # Replica sites record the time per output token after the first (NaN for 1-token answers).
    replica = np.zeros(n, dtype=bool)
    if routed.any():
        fixed_site = np.array([d.fixed for d in world.site_deployment])
        replica = routed & ~fixed_site[s0] & gen
    if rec.tpot_s is not None:
        tpot_ms[replica] = rec.tpot_s[replica] * 1000.0
    slo_ms = np.array([a.slo_ms for a in stream.apps])[stream.app]
    on_ttft = np.array([a.slo_on_ttft for a in stream.apps])[stream.app]
    metric = np.where(on_ttft, ttft_ms, latency_ms)
    slo_met = ok & (metric <= slo_ms)
    price = np.array([d.price_per_slot_second for d in world.site_deployment])
    gpu_share = np.array([d.gpus_per_replica / d.max_batch for d in world.site_deployment])
    used = np.where(started, rec.service_s, 0.0)
    cost_usd = np.where(routed, used * price[s0], 0.0)
    gpu_s = used * np.where(routed, gpu_share[s0], 0.0)
    site_names = np.array(world.site_id + [""], dtype=object)
    tiers = np.where(routed, world.site_tier[s0], -1)
    cascade = None
    if any(getattr(a, "cascade", False) for a in stream.apps):
        # The small model's attempt of escalated requests: its tier, time and GPU cost (part of
        # the request's cost_usd and gpu_s, which cover both attempts).
        from aigrid_sim.sim.cascade import PATH_OF_CODE, PATHS

        es = rec.esc_site.astype(np.int64)
        esc = es >= 0
        e0 = np.where(esc, es, 0)
        e_used = np.where(esc & ~np.isnan(rec.esc_service_s), rec.esc_service_s, 0.0)
        edge_cost = np.where(esc, e_used * price[e0], 0.0)
        cost_usd = cost_usd + edge_cost
        gpu_s = gpu_s + np.where(esc, e_used * gpu_share[e0], 0.0)
        cascade = {
            "cascade": pd.Categorical.from_codes(PATH_OF_CODE[rec.cascade.astype(np.int64)],
                                                 categories=list(PATHS)),
            "edge_tier": pd.Categorical.from_codes(np.where(esc, world.site_tier[e0], -1),
                                                   categories=TIER_LABELS),
            "edge_ms": rec.esc_s * 1000.0,
            "edge_cost_usd": edge_cost,
        }
    table = pd.DataFrame({
        "request_id": np.asarray(id0, np.int64) if np.ndim(id0) else
        np.arange(id0, id0 + n, dtype=np.int64),
        "arrival_s": stream.t,
        "origin": pd.Categorical.from_codes(stream.origin, categories=world.origin_name),
        # The city's place, so a request can be mapped without the world (float32: ~1 m).
        "origin_lat": np.asarray(world.origin_lat, np.float32)[stream.origin],
        "origin_lon": np.asarray(world.origin_lon, np.float32)[stream.origin],
        "region": np.array(world.origin_region, dtype=object)[stream.origin],
        "app": pd.Categorical.from_codes(stream.app.astype(np.int64),
                                         categories=[a.name for a in stream.apps]),
        "capability": np.array([a.capability for a in stream.apps], dtype=np.int8)[stream.app],
        "tier": pd.Categorical.from_codes(tiers, categories=TIER_LABELS),
        "site": site_names[np.where(routed, site, len(world.site_id))],
        "status": pd.Categorical.from_codes(rec.status.astype(np.int64), categories=STATUS_LABELS),
        "reason": pd.Categorical.from_codes(rec.reason.astype(np.int64), categories=REASON_LABELS),
        "attempts": rec.attempts,
        "failed_over": rec.site0 >= 0,
        "first_tier": pd.Categorical.from_codes(
            np.where(rec.site0 >= 0, world.site_tier[np.maximum(rec.site0, 0)], tiers),
            categories=TIER_LABELS),
        "extra_ms": extra_ms,
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
        "gpu_s": gpu_s,
        "cost_usd": cost_usd,
        "preemptions": rec.preemptions if rec.preemptions is not None else np.zeros(n, np.int16),
        "prefill_tokens": rec.prefill_tokens if rec.prefill_tokens is not None
        else np.zeros(n, np.int32),
        "cached_tokens": rec.cached_tokens if rec.cached_tokens is not None
        else np.zeros(n, np.int32),
    })
    if cascade is not None:
        for k, v in cascade.items():
            table[k] = v
    return table


def busy_slot_seconds(world: World, rec: Records, t0: float, t1: float) -> np.ndarray:
    """Per site: slot-seconds of service falling inside ``[t0, t1]``."""
    started = ~np.isnan(rec.service_s) & (rec.site >= 0)
    a = np.clip(rec.t_start[started], t0, t1)
    b = np.clip(rec.t_start[started] + rec.service_s[started], t0, t1)
    busy = np.bincount(rec.site[started], weights=b - a, minlength=world.n_sites)
    if rec.esc_site is not None and (rec.esc_site >= 0).any():  # cascades' first attempts
        e = (rec.esc_site >= 0) & ~np.isnan(rec.esc_service_s)
        a = np.clip(rec.esc_t_start[e], t0, t1)
        b = np.clip(rec.esc_t_start[e] + rec.esc_service_s[e], t0, t1)
        busy += np.bincount(rec.esc_site[e], weights=b - a, minlength=world.n_sites)
    return busy


def sites_table(world: World, rec: Records, window_s: float, reqs: pd.DataFrame) -> pd.DataFrame:
    """One row per site: tier, place, GPUs, requests, busy time, utilisation, cost.

    Utilisation and provisioned cost are over the arrival window ``[0, window_s]``.
    """
    site_idx = rec.site
    routed = site_idx >= 0
    cost = reqs["cost_usd"].to_numpy()
    used = np.bincount(site_idx[routed], weights=cost[routed], minlength=world.n_sites)
    if "edge_cost_usd" in reqs:  # cascades: the small model's attempt is its own site's
        edge = reqs["edge_cost_usd"].to_numpy()
        es = rec.esc_site >= 0
        used -= np.bincount(site_idx[routed], weights=edge[routed], minlength=world.n_sites)
        used += np.bincount(rec.esc_site[es], weights=edge[es], minlength=world.n_sites)
    return sites_table_from(
        world, window_s, busy_slot_seconds(world, rec, 0.0, window_s),
        np.bincount(site_idx[routed], minlength=world.n_sites),
        np.bincount(site_idx[routed & (rec.status == Status.OK)], minlength=world.n_sites),
        used)


def sites_table_from(world: World, window_s: float, busy: np.ndarray, requests: np.ndarray,
                     completed: np.ndarray, used_cost: np.ndarray, *,
                     replicas: np.ndarray | None = None,
                     replica_busy: np.ndarray | None = None) -> pd.DataFrame:
    """The per-site table from per-site totals (what a streamed run accumulates).

    With ``replicas`` and ``replica_busy`` (seconds in ``[0, window_s]`` with at least one
    sequence or job in a replica's batch, summed over the site's replicas) it also has
    ``replica_busy_s`` and ``replica_busy``: the share of replica time with work, what keeps
    the GPUs stepping (``utilisation`` is the share of sequence slots held, much lower when
    replicas batch hundreds of sequences). NaN for fixed-slot sites.
    """
    t = world.sites_table()
    price_gpu_h = np.array([d.gpu.price_per_hour for d in world.site_deployment])
    t["requests"] = np.asarray(requests, np.int64)
    t["completed"] = np.asarray(completed, np.int64)
    t["busy_slot_s"] = busy
    t["utilisation"] = busy / (t["slots"].to_numpy() * window_s) if window_s > 0 else 0.0
    if replica_busy is not None:
        reps = np.asarray(replicas, float)
        t["replicas"] = reps
        t["replica_busy_s"] = np.where(reps > 0, replica_busy, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            t["replica_busy"] = np.where(reps > 0, replica_busy / (reps * window_s), np.nan) \
                if window_s > 0 else np.nan
    t["price_per_gpu_hour"] = price_gpu_h
    t["cost_usd"] = world.site_gpus * price_gpu_h * window_s / 3600.0
    t["used_cost_usd"] = used_cost
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


def _hit_rate(df: pd.DataFrame) -> float | None:
    """Prompt tokens served from prefix caches / prompt tokens admitted (None if none)."""
    if "prefill_tokens" not in df:
        return None
    pre = float(df["prefill_tokens"].sum())
    return float(df["cached_tokens"].sum()) / pre if pre > 0 else None


def _group_block(df: pd.DataFrame) -> dict:
    return {
        "requests": int(len(df)),
        "completed": int((df["status"] == "ok").sum()),
        "latency_ms": _pcts(df["latency_ms"].to_numpy()),
        "ttft_ms": _pcts(df["ttft_ms"].to_numpy()),
        "slo_attainment": _attain(df),
        "prefix_cache_hit_rate": _hit_rate(df),
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
        "failed_over": int(reqs["failed_over"].sum()) if "failed_over" in reqs else 0,
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
        "tpot_ms": _pcts(ok["tpot_ms"].to_numpy()),
        "output_tokens": float(ok["out_tokens"].sum()),
        "output_tok_s": _output_rate(ok),
        "preemptions": int(reqs["preemptions"].sum()) if "preemptions" in reqs else 0,
        "prefix_cache": _cache_block(m, sites),
        "by_tier": by_tier,
        "by_region": {str(r): _group_block(g) for r, g in m.groupby("region", observed=True)},
        "by_app": {str(a): _group_block(g) for a, g in m.groupby("app", observed=True)},
    }


def _output_rate(ok: pd.DataFrame) -> float | None:
    """Output tokens per second of completed requests (a benchmark's throughput).

    Measured over the span from their first arrival to their last completion.
    """
    if ok.empty:
        return None
    t0 = float(ok["arrival_s"].min())
    t1 = float((ok["arrival_s"] + ok["latency_ms"] / 1000.0).max())
    return float(ok["out_tokens"].sum()) / (t1 - t0) if t1 > t0 else None


def _cache_block(m: pd.DataFrame, sites: pd.DataFrame) -> dict:
    """Prefix-cache hit rate overall, per app and per site (sites that cached anything)."""
    out = {"hit_rate": _hit_rate(m), "by_app": {}, "by_site": {}}
    if "prefill_tokens" not in m:
        return out
    for a, g in m.groupby("app", observed=True):
        out["by_app"][str(a)] = _hit_rate(g)
    if "cached_tokens" in sites:
        hit = sites[sites["cached_tokens"] > 0]
        out["by_site"] = {str(s): float(r)
                          for s, r in zip(hit["site"], hit["cache_hit_rate"], strict=True)}
    return out


def fault_availability(sites: pd.DataFrame, faults: pd.DataFrame, window_s: float
                       ) -> tuple[float, dict]:
    """Provisioned cost of GPU time lost to outages, and GPU-time availability per tier."""
    f = faults
    ws = f[f["kind"] == "site"] if len(f) else f
    price_s = dict(zip(sites["site"], sites["price_per_gpu_hour"] / 3600.0, strict=True))
    tier_of = dict(zip(sites["site"], sites["tier"], strict=True))
    lost_gpu_s = {t: 0.0 for t in TIER_LABELS}
    idle_cost = 0.0
    for target, a, b, g in zip(ws.get("target", []), ws.get("start_s", []), ws.get("end_s", []),
                               ws.get("gpus_lost", []), strict=True):
        over = max(0.0, min(float(b), window_s) - max(float(a), 0.0))
        lost_gpu_s[tier_of[target]] += g * over
        idle_cost += g * over * price_s[target]
    availability = {}
    for tier in TIER_LABELS:
        gpus = float(sites.loc[sites["tier"] == tier, "gpus"].sum())
        if gpus > 0 and window_s > 0:
            availability[tier] = 1.0 - lost_gpu_s[tier] / (gpus * window_s)
    return idle_cost, availability


def during_outage(reqs: pd.DataFrame, faults: pd.DataFrame,
                  nearest: np.ndarray | None = None) -> np.ndarray:
    """Per request: was it touched by a fault?

    A request is touched if it failed over, or if at its arrival its chosen site or its nearest
    capable site (``nearest``: one site id per request, when given) was down, whole or in part,
    or was an end of a cut link. An outage elsewhere in its region does not count: with some
    site down somewhere at every moment, that would put almost every request "during an outage".
    """
    n = len(reqs)
    out = (reqs["failed_over"].to_numpy(dtype=bool).copy() if "failed_over" in reqs
           else np.zeros(n, dtype=bool))
    if faults is None or faults.empty or n == 0:
        return out
    spans: dict[str, list[tuple[float, float]]] = {}
    for target, a, b in zip(faults["target"], faults["start_s"], faults["end_s"], strict=True):
        for part in str(target).split("|"):  # a link cut touches both of its ends
            spans.setdefault(part, []).append((float(a), float(b)))
    names = list(spans)
    starts_ends = []
    for name in names:
        iv = sorted(spans[name])
        starts, ends = [], []
        for a, b in iv:  # union of the intervals
            if starts and a <= ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        starts_ends.append((np.asarray(starts), np.asarray(ends)))
    t = reqs["arrival_s"].to_numpy(dtype=float)
    columns = [reqs["site"].astype(str).to_numpy()]
    if nearest is not None:
        columns.append(np.asarray(nearest).astype(str))
    for ids in columns:
        codes = pd.Index(names).get_indexer(ids)  # -1: a site that never failed
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        for k, (starts, ends) in enumerate(starts_ends):
            lo, hi = np.searchsorted(sc, k, "left"), np.searchsorted(sc, k, "right")
            if lo == hi:
                continue
            idx = order[lo:hi]
            j = np.searchsorted(starts, t[idx], side="right") - 1
            out[idx] |= (j >= 0) & (t[idx] < ends[np.maximum(j, 0)])
    return out


def nearest_capable(rtt_ms: np.ndarray, site_capability: np.ndarray, site_id: list[str],
                    origin: np.ndarray, capability: np.ndarray) -> np.ndarray:
    """Per request: the id of the capable site nearest its origin (``""`` if none is capable).

    ``rtt_ms`` is a world's ``rtt_ms``: the dense matrix, or a big world's
    :class:`~aigrid_sim.world.latency.SparseRtt` (asked for each origin's nearest capable site).
    """
    dense = isinstance(rtt_ms, np.ndarray)
    rtt = np.asarray(rtt_ms, dtype=float) if dense else rtt_ms
    cap = np.asarray(site_capability)
    ids = np.array(list(site_id) + [""], dtype=object)
    out = np.full(len(origin), len(site_id), dtype=np.int64)
    for c in np.unique(capability):
        ok = cap >= c
        if not ok.any():
            continue
        best = np.where(ok[None, :], rtt, np.inf).argmin(axis=1) if dense else \
            rtt.nearest(np.flatnonzero(ok), 1)[0][:, 0]
        mine = capability == c
        out[mine] = best[origin[mine]]
    return ids[out]


def fault_summary(reqs: pd.DataFrame, sites: pd.DataFrame, faults: pd.DataFrame, *,
                  warmup_s: float = 0.0, window_s: float, detection_s: float = 0.0,
                  retries: int = 0, nearest: np.ndarray | None = None) -> dict:
    """The ``faults`` block of ``summary.json``: what failures cost in requests, latency and money.

    * ``failed`` / ``failed_over``: requests that ended failed / that lost a site at least once
      (``failed_over_completed``: of those, completed elsewhere).
    * ``availability``: per tier, 1 - GPU-seconds lost to outages / GPU-seconds provisioned over
      the arrival window ``[0, window_s]`` (a partial outage counts its share of GPUs).
    * ``during_outage`` / ``outside_outage``: requests a fault touched (:func:`during_outage`:
      they failed over, or their chosen or nearest capable site, ``nearest``, was down at
      arrival) and all the others: latency percentiles and SLO attainment.
    * ``extra_cost_usd``: ``idle_capacity`` = provisioned cost of the GPU time that was down
      (paid for, unusable); ``spillover`` = for completed fail-overs, their cost minus the mean cost
      of the same app completed without fail-over on the tier they were first sent to; ``total``.
    * ``spillover``: fail-overs completed, counted by ``first tier->final tier``.
    """
    f = faults if faults is not None else pd.DataFrame(columns=["kind"])
    idle_cost, availability = fault_availability(sites, f, window_s)
    m = reqs[reqs["arrival_s"] >= warmup_s]
    keep = reqs["arrival_s"].to_numpy() >= warmup_s
    during = during_outage(m, f, None if nearest is None else np.asarray(nearest)[keep])
    outside = ~during
    fo = m[m["failed_over"] & (m["status"] == "ok")]
    clean = m[~m["failed_over"] & (m["status"] == "ok")]
    ref = clean.groupby(["app", "tier"], observed=True)["cost_usd"].mean()
    spill_cost, moves = 0.0, {}
    if len(fo):
        keys = list(zip(fo["app"], fo["first_tier"], strict=True))
        base = np.array([ref.get(k, c) for k, c in zip(keys, fo["cost_usd"], strict=True)],
                        dtype=float)
        spill_cost = float((fo["cost_usd"].to_numpy() - base).sum())
        moves = {f"{a}->{b}": int(n) for (a, b), n in
                 fo.groupby(["first_tier", "tier"], observed=True).size().items() if n}
    return {
        "site_outages": int((f["kind"] == "site").sum()) if len(f) else 0,
        "link_cuts": int((f["kind"] == "link").sum()) if len(f) else 0,
        "detection_s": detection_s,
        "retries": retries,
        "failed": int((reqs["status"] == "failed").sum()),
        "failed_over": int(reqs["failed_over"].sum()),
        "failed_over_completed": int((reqs["failed_over"] & (reqs["status"] == "ok")).sum()),
        "extra_ms_failed_over": _pcts(fo["extra_ms"].to_numpy()),
        "availability": availability,
        "during_outage": _group_block(m[during]),
        "outside_outage": _group_block(m[outside]),
        "extra_cost_usd": {"idle_capacity": idle_cost, "spillover": spill_cost,
                           "total": idle_cost + spill_cost},
        "spillover": moves,
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


def littles_law(reqs: pd.DataFrame, horizon_s: float, t0: float = 0.0,
                t1: float | None = None) -> pd.DataFrame:
    """Per site, both sides of Little's law ``L = lambda W`` over the window ``[t0, t1]``.

    A request is *at* its site from the moment it reaches it (``arrival_s`` plus half its
    ``network_ms``) until its service ends (``+ queue_ms + service_ms``); a request still waiting
    or in service when the run stopped counts until ``horizon_s``. Requests turned away at the
    door (``rejected``) and ``failed`` ones are left out, and so is the time a request that failed
    over spent at the sites it left (the records keep only its last site): with faults, the law
    holds only at sites that had none. ``L`` is the time-average number at the
    site, integrated exactly from these intervals; ``lambda`` counts requests reaching the site
    inside the window per second and ``W`` is their mean time at the site. Over a window that
    starts empty and ends after every request has left, ``L == lambda W`` holds exactly; otherwise
    requests straddling the window's ends make the difference.

    Args:
        reqs: The requests table (:func:`requests_table` or ``requests.parquet``).
        horizon_s: When the run's clock stopped (duration plus drain), seconds.
        t0: Start of the window, seconds.
        t1: End of the window (default ``horizon_s``).

    Returns:
        One row per site that received requests: ``site, arrivals, lam_per_s, w_s, l_mean,
        lam_w``.
    """
    t1 = horizon_s if t1 is None else t1
    if not t1 > t0:
        raise ValueError(f"the window must have t1 > t0 (got t0={t0}, t1={t1})")
    status = reqs["status"].astype(str).to_numpy()
    keep = np.isin(status, ("ok", "in_flight")) & (reqs["site"].to_numpy() != "")
    d = reqs.loc[keep]
    enter = d["arrival_s"].to_numpy() + d["network_ms"].to_numpy() / 2000.0
    if "extra_ms" in d:  # a request that failed over left for its last site this much later
        enter = enter + d["extra_ms"].to_numpy() / 1000.0
    stay_s = (d["queue_ms"].to_numpy() + d["service_ms"].to_numpy()) / 1000.0
    leave = np.minimum(np.where(np.isnan(stay_s), horizon_s, enter + stay_s), horizon_s)
    there = enter <= horizon_s  # still travelling to the site when the run stopped: not there
    site = d["site"].to_numpy()[there]
    enter, leave = enter[there], leave[there]
    overlap = np.clip(np.minimum(leave, t1) - np.maximum(enter, t0), 0.0, None)
    inside = (enter >= t0) & (enter < t1)
    span = t1 - t0
    frame = pd.DataFrame({"site": site, "overlap": overlap, "inside": inside,
                          "stay": np.where(inside, leave - enter, 0.0)})
    g = frame.groupby("site", sort=True)
    out = pd.DataFrame({"arrivals": g["inside"].sum().astype(np.int64),
                        "area": g["overlap"].sum(), "stay": g["stay"].sum()})
    out["lam_per_s"] = out["arrivals"] / span
    out["w_s"] = np.where(out["arrivals"] > 0, out["stay"] / out["arrivals"].clip(lower=1), 0.0)
    out["l_mean"] = out["area"] / span
    out["lam_w"] = out["lam_per_s"] * out["w_s"]
    return out.drop(columns=["area", "stay"]).reset_index()
