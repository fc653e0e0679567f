"""The run summary built online: exact counts and sums, and mergeable quantile sketches.

A streamed run hands each block of ended requests to :meth:`OnlineSummary.update`; the console
table, ``summary.json``, ``cities.parquet``, the per-site table and the figures are then built
from these accumulators, never from a whole-run array. Memory depends on the number of groups
(tiers, apps, regions, cities, time bins, sites), not on the number of requests.

Groups (*dims*): ``all``; ``tier``, ``app``, ``region`` (of the origin); ``city`` and
``city_app``; ``time`` (time bin x tier, for the figures); ``fault`` (requests from regions a
fault touched, during and outside it); ``spill`` (app x first tier, for the fail-over cost);
``move`` (first tier x final tier); ``site``. Every dim has exact counters (requests, completed,
rejected, failed, SLO met, ...), sums (latency, cost, tokens, ...) and, for latencies,
DDSketch-style log histograms (:class:`GroupedSketch`).

Sketches: DDSketch's logarithmic mapping (``ddsketch.LogarithmicMapping``) with relative
accuracy :data:`ALPHA` (1 %) for the run-wide, tier, app, region and time-bin latencies and
:data:`CITY_ALPHA` (2 %) for the per-city ones (6,000-34,000 cities). A quantile read from a
sketch is within that relative error of *a value of the data at that rank* (DDSketch's
guarantee; ``tests/results/test_online.py`` checks it against exact percentiles). Values below
:data:`MIN_MS` count as zero (reported as 0), values above :data:`MAX_MS` in the top bin.
Histograms are dense per group and filled with ``numpy.bincount``, one call per block of
requests, so the per-request engine path does no summary work.

Requests arriving before ``warmup_s`` count in the run totals (``requests``, ``completed``, ...)
but not in latencies, SLO attainment or any per-group figure, as in
:func:`aigrid_sim.results.metrics.summarise`.

The accumulators are written to the run folder as a tidy table (``sketches.parquet``: dim,
group label, metric, bin, count) so that runs split by time slice or by region merge into one
summary (:func:`merge_states`, ``aigrid-sim-report --merge``): merging is a sum of counts per
label and bin, which is exact for the counters and loses nothing more for the sketches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from aigrid_sim.results.metrics import TIER_LABELS

#: Relative accuracy of the run-wide, per-tier, per-app, per-region and per-time-bin sketches.
ALPHA = 0.01
#: Relative accuracy of the per-city sketches.
CITY_ALPHA = 0.02
#: Smallest latency a sketch resolves, ms (below counts as 0).
MIN_MS = 0.01
#: Largest latency a sketch resolves, ms (above counts in the top bin).
MAX_MS = 1e7
#: Width of the time bins of the figures and of merged time slices, simulated seconds.
TIME_BIN_S = 60.0
SLICE_GROUPS = 4096  # sketch groups coded into one part of sketches.parquet at a time


def time_bin_s(duration_s: float, given: float | None = None) -> float:
    """The time bin of a run: ``given``, else 60 s, or about ``duration_s / 60`` below an hour."""
    if given:
        return float(given)
    for b in (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0):
        if duration_s / b <= 60:
            return b
    return TIME_BIN_S

COUNTERS = ("requests", "completed", "rejected", "failed", "ended", "slo_met", "failed_over",
            "failed_over_ok")
SUMS = ("latency_ms", "ttft_ms", "network_ms", "queue_ms", "cost_usd", "tokens", "extra_ms",
        "tpot_ms")
STATUS_CODES = {"in_flight": 0, "ok": 1, "rejected": 2, "failed": 3}


class GroupedSketch:
    """DDSketch log histograms for ``n`` groups at once (dense; filled in bulk).

    Bins follow ``ddsketch.LogarithmicMapping(alpha)``: value ``v`` goes to key
    ``ceil(log2(v) * multiplier)``, and a key reads back as the mapping's value, so quantiles
    equal those of a :class:`ddsketch.DDSketch` fed the same values, up to float ties at bin
    edges (:meth:`to_ddsketch` builds one).
    """

    def __init__(self, n: int, alpha: float = ALPHA):
        self.alpha = alpha
        self.mapping = LogarithmicMapping(alpha)
        self.kmin = self.mapping.key(MIN_MS)
        self.kmax = self.mapping.key(MAX_MS)
        self.nb = self.kmax - self.kmin + 1
        self.counts = np.zeros((n, self.nb), np.uint32)
        self.zeros = np.zeros(n, np.int64)

    @property
    def n(self) -> int:
        """Number of groups."""
        return len(self.zeros)

    def keys(self, values: np.ndarray) -> np.ndarray:
        """Bin keys of positive values (vectorised ``mapping.key``)."""
        m = self.mapping._multiplier
        k = np.ceil(np.log2(values) * m).astype(np.int64)
        return np.clip(k, self.kmin, self.kmax)

    def add(self, groups: np.ndarray, values: np.ndarray) -> None:
        """Add ``values[i]`` to group ``groups[i]`` (NaN values and negative groups skipped)."""
        ok = ~np.isnan(values) & (groups >= 0)
        g, v = groups[ok].astype(np.int64), values[ok]
        small = v < MIN_MS
        if small.any():
            self.zeros += np.bincount(g[small], minlength=self.n)[:self.n]
            g, v = g[~small], v[~small]
        if len(v):
            code = g * self.nb + (self.keys(v) - self.kmin)
            flat = self.counts.reshape(-1)
            if flat.size <= 1 << 18:  # few groups: one dense bincount
                flat += np.bincount(code, minlength=flat.size).astype(np.uint32)
            else:  # many groups (cities): count the distinct bins only
                code, c = np.unique(code, return_counts=True)
                flat[code] += c.astype(np.uint32)  # codes are unique: a plain fancy-index add

    def add_counts(self, groups: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> None:
        """Add raw bin counts (key ``None``-like ``-2**31`` = the zero bin): for merging."""
        zero = keys == ZERO_KEY
        np.add.at(self.zeros, groups[zero], counts[zero])
        k = np.clip(keys[~zero], self.kmin, self.kmax) - self.kmin
        np.add.at(self.counts, (groups[~zero], k), counts[~zero].astype(np.uint32))

    def total(self) -> np.ndarray:
        """Values per group."""
        return self.counts.sum(axis=1, dtype=np.int64) + self.zeros

    def quantiles(self, qs, groups: np.ndarray | None = None) -> np.ndarray:
        """Quantiles ``qs`` (0-1) per group (rows ``groups``); NaN for an empty group.

        DDSketch's rule: rank ``q (count - 1)``; the zero bin first; then the lowest key whose
        cumulative count exceeds the rank, read back as the mapping's value for that key.
        """
        c = self.counts if groups is None else self.counts[groups]
        z = self.zeros if groups is None else self.zeros[groups]
        out = np.full((len(qs), len(z)), np.nan)
        used = np.flatnonzero(c.any(axis=0))
        rows = np.flatnonzero(c.any(axis=1) | (z > 0))
        if not len(rows):
            return out
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        # A slice of groups at a time: the cumulative counts of a city x app sketch would
        # otherwise take about 100 MB at once.
        for a in range(0, len(rows), SLICE_GROUPS):
            part = rows[a:a + SLICE_GROUPS]
            zp = z[part]
            cum = np.cumsum(c[part, lo:hi], axis=1, dtype=np.int64)  # groups, bins with values
            tot = cum[:, -1] + zp
            for i, q in enumerate(qs):
                rank = q * (tot - 1)
                # first bin whose cumulative count exceeds the rank (past the zero bin)
                idx = (cum <= (rank - zp)[:, None]).sum(axis=1)
                idx = np.minimum(idx, hi - lo - 1) + lo
                vals = self._value(idx + self.kmin)
                out[i, part] = np.where(rank < zp, 0.0, vals)
        return out

    def _value(self, keys: np.ndarray) -> np.ndarray:
        m = self.mapping
        return np.power(2.0, (keys - m._offset) / m._multiplier) * (2.0 / (1.0 + m.gamma))

    def to_ddsketch(self, g: int) -> DDSketch:
        """Group ``g`` as a ``ddsketch.DDSketch`` (same mapping and bins)."""
        s = DDSketch(self.alpha)
        nz = np.flatnonzero(self.counts[g])
        for k, c in zip(nz + self.kmin, self.counts[g][nz], strict=True):
            s._store.add(int(k), float(c))
        s._zero_count = float(self.zeros[g])
        s._count = float(self.counts[g].sum() + self.zeros[g])
        return s

    def coded(self, lo: int = 0, hi: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-zero bins as arrays ``group index, key, count`` (zero bin: key ``ZERO_KEY``).

        Only groups ``lo`` to ``hi`` (all by default): a big sketch is coded a slice at a time.
        """
        counts = self.counts[lo:hi]
        g, k = np.nonzero(counts)
        zg = np.flatnonzero(self.zeros[lo:hi])
        cnt = counts[g, k]
        if lo:
            g += lo
            zg += lo
        return (np.concatenate([g, zg]),
                np.concatenate([k + self.kmin, np.full(len(zg), ZERO_KEY)]).astype(np.int64),
                np.concatenate([cnt, self.zeros[zg]]).astype(np.int64))


ZERO_KEY = -(2 ** 31)


@dataclass
class Dim:
    """One way of grouping requests: labels, counters, sums and sketches per group."""

    name: str
    labels: list[str]
    alpha: float = ALPHA
    sketched: tuple[str, ...] = ("latency_ms", "ttft_ms")
    counters: dict = field(default_factory=dict)
    sums: dict = field(default_factory=dict)
    sketches: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.labels)
        self.counters = {c: np.zeros(n, np.int64) for c in COUNTERS}
        self.sums = {s: np.zeros(n) for s in SUMS}
        self.sketches = {m: GroupedSketch(n, self.alpha) for m in self.sketched}
        self.index = {lab: i for i, lab in enumerate(self.labels)}

    def count(self, name: str, groups: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count requests per group (rows ``mask``; negative groups skipped)."""
        g = groups if mask is None else groups[mask]
        g = g[g >= 0]
        self.counters[name] += np.bincount(g, minlength=len(self.labels))[:len(self.labels)]

    def add(self, name: str, groups: np.ndarray, values: np.ndarray, mask=None) -> None:
        """Add ``values`` to the sum ``name`` per group (NaN values skipped)."""
        g, v = (groups, values) if mask is None else (groups[mask], values[mask])
        ok = (g >= 0) & ~np.isnan(v)
        self.sums[name] += np.bincount(g[ok], weights=v[ok], minlength=len(self.labels))[
            :len(self.labels)]

    def block(self, i: int, q: np.ndarray | None = None) -> dict:
        """The summary block of group ``i`` (as :func:`metrics._group_block`)."""
        c = self.counters
        out = {"requests": int(c["requests"][i]), "completed": int(c["completed"][i])}
        for m in ("latency_ms", "ttft_ms"):
            out[m] = self.pcts(m, i)
        e = int(c["ended"][i])
        out["slo_attainment"] = float(c["slo_met"][i] / e) if e else None
        return out

    def pcts(self, m: str, i: int) -> dict:
        """``mean, p50, p95, p99`` of metric ``m`` in group ``i`` (None when empty)."""
        sk = self.sketches[m]
        n = int(sk.total()[i])
        if n == 0:
            return {"mean": None, "p50": None, "p95": None, "p99": None}
        q = sk.quantiles((0.5, 0.95, 0.99), np.array([i]))[:, 0]
        return {"mean": float(self.sums[m][i] / n), "p50": float(q[0]), "p95": float(q[1]),
                "p99": float(q[2])}


class OnlineSummary:
    """Accumulators of a run's ended requests, fed block by block.

    Args:
        world: The run's world (origins, sites).
        app_names: The run's apps, in order.
        warmup_s: Requests arriving earlier count only in the run totals.
        window_s: The arrival window (``duration_s``): utilisation and provisioned cost.
        time_origin_s: Absolute time of the run's t = 0 (``start_utc_h * 3600``): time bins are
            numbered from there so that time slices of a day line up.
        time_bin_s: Width of the time bins.
        faults: The run's fault table (``aigrid_sim.sim.faults``), or None.
    """

    def __init__(self, world, app_names: list[str], *, warmup_s: float = 0.0,
                 window_s: float, time_origin_s: float = 0.0, time_bin_s: float = TIME_BIN_S,
                 faults: pd.DataFrame | None = None, horizon_s: float | None = None):
        self.warmup_s = float(warmup_s)
        self.window_s = float(window_s)
        self.time_origin_s = float(time_origin_s)
        self.time_bin_s = float(time_bin_s)
        self.apps = list(app_names)
        self.faults = faults if faults is not None and len(faults) else None
        regions = sorted(set(map(str, world.origin_region)))
        self.region_of_origin = np.array([regions.index(str(r)) for r in world.origin_region],
                                         np.int64)
        self.city_names = [str(n) for n in world.origin_name]
        self.n_sites = world.n_sites
        self.site_tier = np.asarray(world.site_tier, np.int64)
        horizon = float(horizon_s if horizon_s is not None else window_s)
        self.bin0 = int(math.floor(self.time_origin_s / self.time_bin_s))
        nbins = int(math.floor((self.time_origin_s + horizon) / self.time_bin_s)) - self.bin0 + 1
        A = len(self.apps)
        self.dims = {
            "all": Dim("all", ["all"], sketched=("latency_ms", "ttft_ms", "network_ms",
                                                  "queue_ms", "extra_ms", "tpot_ms")),
            "tier": Dim("tier", list(TIER_LABELS)),
            "app": Dim("app", self.apps),
            "region": Dim("region", regions),
            "city": Dim("city", self.city_names, CITY_ALPHA,
                        ("latency_ms", "ttft_ms", "network_ms", "queue_ms")),
            "city_app": Dim("city_app", [f"{c}|{a}" for c in self.city_names for a in self.apps],
                            CITY_ALPHA),
            # time bin x (all, edge, regional, core, no site)
            "time": Dim("time", [f"{self.bin0 + b}|{t}" for b in range(nbins)
                                 for t in ("all", *TIER_LABELS, "none")], ALPHA,
                        ("latency_ms",)),
            "fault": Dim("fault", ["during", "outside"]),
            "spill": Dim("spill", [f"{a}|{t}" for a in self.apps for t in TIER_LABELS],
                         sketched=()),
            "move": Dim("move", [f"{a}->{b}" for a in TIER_LABELS for b in TIER_LABELS],
                        sketched=()),
            "site": Dim("site", list(world.site_id), sketched=()),
        }
        self._A = A
        self.totals = {k: 0 for k in ("requests", "completed", "rejected", "failed",
                                      "in_flight", "failed_over", "failed_over_completed",
                                      "measured_requests")}
        self.used_cost_usd = 0.0
        # Serving figures (replicas): preemptions, output tokens and their span, prefix cache.
        self.serving = {"preemptions": 0, "output_tokens": 0.0, "t0": math.inf, "t1": -math.inf,
                        "prefill_app": {}, "cached_app": {}, "prefill_site": {},
                        "cached_site": {}}
        self.reasons: dict[str, int] = {}
        # Per site (all requests): routed, completed, busy slot-seconds in [0, window_s] and in
        # the measured window [warmup_s, window_s], and the cost of the GPU time used.
        self.site_requests = np.zeros(self.n_sites, np.int64)
        self.site_completed = np.zeros(self.n_sites, np.int64)
        self.site_busy = np.zeros(self.n_sites)
        self.site_busy_measured = np.zeros(self.n_sites)
        self.site_used_cost = np.zeros(self.n_sites)
        # Replica busy time (replica-seconds with a non-empty batch) in the same two windows,
        # and the replicas it is over; from the engine at the end (set_replica_busy). Sites
        # of the fixed-slot model have none (0 replicas here).
        self.site_replicas = np.zeros(self.n_sites)
        self.site_replica_busy = None
        self.site_replica_busy_measured = np.zeros(self.n_sites)
        self.site_ids = [str(x) for x in world.site_id]
        self.site_slots = np.asarray(world.site_slots, float)
        self.site_gpus = np.asarray(world.site_gpus, float)
        self.site_price_h = np.array([d.gpu.price_per_hour for d in world.site_deployment])
        self.city_tier = np.zeros((len(self.city_names), len(TIER_LABELS)), np.int64)
        self._world = world
        self.bill = None  # a Bill to feed (runs with tenants), set by the caller
        self._bill_measured = None  # its measured part, when there is a warm-up

    # ------------------------------------------------------------------ feeding
    def update(self, reqs: pd.DataFrame, rec=None) -> None:
        """Add a block of ended requests (rows of the requests table; ``rec``: their records)."""
        if not len(reqs):
            return
        if self.bill is not None:  # tenants' bill (aigrid_sim.results.billing.Bill)
            self.bill.update(reqs)
            if self.warmup_s > 0:  # what merged runs add up: the measured requests only
                if self._bill_measured is None:
                    from aigrid_sim.results.billing import Bill

                    self._bill_measured = Bill(self.bill.tenants)
                self._bill_measured.update(reqs[reqs["arrival_s"].to_numpy(float)
                                                >= self.warmup_s])
        status = np.asarray(reqs["status"].cat.codes, np.int64)
        tier = np.asarray(reqs["tier"].cat.codes, np.int64)  # -1 = no site
        cost = reqs["cost_usd"].to_numpy(float)
        fo = reqs["failed_over"].to_numpy(bool)
        T = self.totals
        sc = np.bincount(status, minlength=4)
        T["requests"] += len(reqs)
        T["in_flight"] += int(sc[0])
        T["completed"] += int(sc[1])
        T["rejected"] += int(sc[2])
        T["failed"] += int(sc[3])
        T["failed_over"] += int(fo.sum())
        T["failed_over_completed"] += int((fo & (status == 1)).sum())
        self.used_cost_usd += float(cost.sum())
        rc = reqs["reason"]
        rcodes = np.bincount(np.asarray(rc.cat.codes, np.int64), minlength=len(rc.cat.categories))
        for lab, n in zip(rc.cat.categories, rcodes, strict=False):
            if lab != "" and n:
                self.reasons[str(lab)] = self.reasons.get(str(lab), 0) + int(n)
        if rec is not None:
            self._update_sites(rec, status, cost, reqs)
        m = reqs["arrival_s"].to_numpy(float) >= self.warmup_s
        if not m.any():
            return
        if not m.all():
            reqs, status, tier, fo, cost = reqs[m], status[m], tier[m], fo[m], cost[m]
        T["measured_requests"] += len(reqs)
        n = len(reqs)
        origin = np.asarray(reqs["origin"].cat.codes, np.int64)
        app = np.asarray(reqs["app"].cat.codes, np.int64)
        ok = status == 1
        ended = status > 0
        slo = reqs["slo_met"].to_numpy(bool) & ended
        lat = np.where(ok, reqs["latency_ms"].to_numpy(float), np.nan)
        ttft = np.where(ok, reqs["ttft_ms"].to_numpy(float), np.nan)
        net = np.where(ok, reqs["network_ms"].to_numpy(float), np.nan)
        que = np.where(ok, reqs["queue_ms"].to_numpy(float), np.nan)
        tokens = np.where(ok, (reqs["in_tokens"].to_numpy(float)
                               + reqs["out_tokens"].to_numpy(float)), np.nan)
        tbin = np.floor((self.time_origin_s + reqs["arrival_s"].to_numpy(float))
                        / self.time_bin_s).astype(np.int64) - self.bin0
        ntime = len(self.dims["time"].labels) // 5
        tbin = np.clip(tbin, 0, ntime - 1)
        codes = {
            "all": np.zeros(n, np.int64),
            "tier": tier,
            "app": app,
            "region": self.region_of_origin[origin],
            "city": origin,
            "city_app": origin * self._A + app,
        }
        routed = tier >= 0
        np.add.at(self.city_tier, (origin[routed], tier[routed]), 1)
        for name, g in codes.items():
            self._feed(self.dims[name], g, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens,
                       status)
        # time: every request in "all" and in its tier (or "none")
        dt = self.dims["time"]
        tcol = np.where(tier >= 0, tier + 1, 4)
        for g in (tbin * 5, tbin * 5 + tcol):
            self._feed(dt, g, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens, status)
        if self.faults is not None:
            self._update_faults(reqs, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens,
                                app, tier, status)
        extra = np.where(fo & ok, reqs["extra_ms"].to_numpy(float), np.nan)
        self.dims["all"].sketches["extra_ms"].add(codes["all"], extra)
        self.dims["all"].add("extra_ms", codes["all"], extra)
        self._update_serving(reqs, ok, lat, codes["all"])
        if "cascade" in reqs:  # cascades: latency and cost per path (edge only, escalated...)
            if "cascade" not in self.dims:
                from aigrid_sim.sim.cascade import PATHS

                self.dims["cascade"] = Dim("cascade", list(PATHS[1:]))
            path = np.asarray(reqs["cascade"].cat.codes, np.int64) - 1
            self._feed(self.dims["cascade"], path, ok, ended, slo, fo, lat, ttft, net, que,
                       cost, tokens, status)

    def _update_serving(self, reqs: pd.DataFrame, ok: np.ndarray, lat: np.ndarray,
                        all_codes: np.ndarray) -> None:
        """TPOT sketch, preemptions, output tokens and span, prefix-cache tokens by app and site."""
        sv = self.serving
        if "tpot_ms" in reqs:
            tpot = np.where(ok, reqs["tpot_ms"].to_numpy(float), np.nan)
            self.dims["all"].sketches["tpot_ms"].add(all_codes, tpot)
            self.dims["all"].add("tpot_ms", all_codes, tpot)
        if ok.any():
            arr = reqs["arrival_s"].to_numpy(float)
            sv["output_tokens"] += float(reqs["out_tokens"].to_numpy(float)[ok].sum())
            # absolute times (from the day's start), so time slices merge by min / max
            sv["t0"] = min(sv["t0"], self.time_origin_s + float(arr[ok].min()))
            sv["t1"] = max(sv["t1"], self.time_origin_s + float((arr + lat / 1000.0)[ok].max()))
        if "preemptions" not in reqs:
            return
        sv["preemptions"] += int(reqs["preemptions"].sum())
        pre = reqs["prefill_tokens"].to_numpy(float)
        hit = reqs["cached_tokens"].to_numpy(float)
        for key, col in (("app", "app"), ("site", "site")):
            labels = reqs[col].astype(str).to_numpy()
            for lab in np.unique(labels[pre > 0]):
                m = labels == lab
                sv[f"prefill_{key}"][lab] = sv[f"prefill_{key}"].get(lab, 0.0) + pre[m].sum()
                sv[f"cached_{key}"][lab] = sv[f"cached_{key}"].get(lab, 0.0) + hit[m].sum()

    def serving_summary(self) -> dict:
        """``tpot_ms``, ``output_tokens``, ``output_tok_s``, ``preemptions``, ``prefix_cache``."""
        sv = self.serving
        pa, ca = sv["prefill_app"], sv["cached_app"]
        total = sum(pa.values())
        span = sv["t1"] - sv["t0"]
        return {
            "tpot_ms": self.dims["all"].pcts("tpot_ms", 0),
            "output_tokens": sv["output_tokens"],
            "output_tok_s": sv["output_tokens"] / span if span > 0 else None,
            "preemptions": sv["preemptions"],
            "prefix_cache": {
                "hit_rate": sum(ca.values()) / total if total else None,
                "by_app": {a: ca[a] / v for a, v in pa.items() if v},
                "by_site": {s: sv["cached_site"][s] / v for s, v in sv["prefill_site"].items()
                            if v and sv["cached_site"][s] > 0},
            },
        }

    def _feed(self, d: Dim, g, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens,
              status) -> None:
        d.count("requests", g)
        d.count("completed", g, ok)
        d.count("rejected", g, status == 2)
        d.count("failed", g, status == 3)
        d.count("ended", g, ended)
        d.count("slo_met", g, slo)
        d.count("failed_over", g, fo)
        d.count("failed_over_ok", g, fo & ok)
        for name, v in (("latency_ms", lat), ("ttft_ms", ttft), ("network_ms", net),
                        ("queue_ms", que), ("cost_usd", cost), ("tokens", tokens)):
            d.add(name, g, v)
        for name, v in (("latency_ms", lat), ("ttft_ms", ttft), ("network_ms", net),
                        ("queue_ms", que)):
            if name in d.sketches:
                d.sketches[name].add(g, v)

    def _update_sites(self, rec, status: np.ndarray, cost: np.ndarray, reqs=None) -> None:
        S = self.n_sites
        site = rec.site.astype(np.int64)
        routed = site >= 0
        self.site_requests += np.bincount(site[routed], minlength=S)
        self.site_completed += np.bincount(site[routed & (status == 1)], minlength=S)
        started = ~np.isnan(rec.service_s) & routed
        a0, s0, g = rec.t_start[started], rec.service_s[started], site[started]
        if reqs is not None and "edge_cost_usd" in reqs:
            # Cascades: an escalated request's small-model attempt used its own site.
            edge = reqs["edge_cost_usd"].to_numpy(float)
            cost = cost - edge
            es = rec.esc_site.astype(np.int64)
            e = es >= 0
            self.site_used_cost += np.bincount(es[e], weights=edge[e], minlength=S)
            e &= ~np.isnan(rec.esc_service_s)
            a0 = np.concatenate([a0, rec.esc_t_start[e]])
            s0 = np.concatenate([s0, rec.esc_service_s[e]])
            g = np.concatenate([g, es[e]])
        self.site_used_cost += np.bincount(site[routed], weights=cost[routed], minlength=S)
        for t0, acc in ((0.0, self.site_busy), (self.warmup_s, self.site_busy_measured)):
            a = np.clip(a0, t0, self.window_s)
            b = np.clip(a0 + s0, t0, self.window_s)
            acc += np.bincount(g, weights=b - a, minlength=S)

    def _update_faults(self, reqs, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens, app,
                       tier, status) -> None:
        from aigrid_sim.results.metrics import during_outage, nearest_capable

        w = self._world
        nearest = nearest_capable(w.rtt_ms, w.site_capability, w.site_id,
                                  np.asarray(reqs["origin"].cat.codes, np.int64),
                                  reqs["capability"].to_numpy())
        during = during_outage(reqs, self.faults, nearest)
        d = self.dims["fault"]
        g = np.where(during, 0, 1)  # touched by a fault, or not (metrics.fault_summary)
        self._feed(d, g, ok, ended, slo, fo, lat, ttft, net, que, cost, tokens, status)
        first = np.asarray(reqs["first_tier"].cat.codes, np.int64)
        sp = self.dims["spill"]
        key = np.where(first >= 0, app * len(TIER_LABELS) + first, -1)
        # clean completions (reference cost) in "requests"/"cost_usd"; fail-overs in
        # "failed_over_ok" and "extra_ms" (their cost)
        sp.count("requests", np.where(ok & ~fo, key, -1))
        sp.add("cost_usd", np.where(ok & ~fo, key, -1), cost)
        sp.count("failed_over_ok", np.where(ok & fo, key, -1))
        sp.add("extra_ms", np.where(ok & fo, key, -1), cost)
        mv = self.dims["move"]
        mv.count("requests", np.where(ok & fo & (first >= 0) & (tier >= 0), first * 3 + tier, -1))

    def set_replica_busy(self, replicas: np.ndarray, busy: np.ndarray) -> None:
        """Replica busy seconds per site in ``[0, window_s]`` and ``[warmup_s, window_s]``.

        Args:
            replicas: Replicas per site (0 for fixed-slot sites: not counted).
            busy: Shape (sites, 2): the two windows (:meth:`Engine.replica_busy_s`).
        """
        self.site_replicas = np.asarray(replicas, float)
        self.site_replica_busy = np.asarray(busy[:, 0], float)
        self.site_replica_busy_measured = np.asarray(busy[:, 1], float)

    # ------------------------------------------------------------------ reading
    def sites_table(self, world) -> pd.DataFrame:
        """The per-site table (``sites.parquet``) from the accumulators."""
        from aigrid_sim.results.metrics import sites_table_from

        return sites_table_from(world, self.window_s, self.site_busy, self.site_requests,
                                self.site_completed, self.site_used_cost,
                                replicas=self.site_replicas if self.site_replica_busy is not None
                                else None, replica_busy=self.site_replica_busy)

    def summary(self, sites: pd.DataFrame) -> dict:
        """The run summary (the ``summary.json`` contract; quantiles from the sketches)."""
        T = self.totals
        al = self.dims["all"]
        window_s = self.window_s
        cost = float(sites["cost_usd"].sum())
        completed = T["completed"]
        tokens = float(al.sums["tokens"][0])
        by_tier = {}
        dt = self.dims["tier"]
        for i, tier in enumerate(TIER_LABELS):
            st = sites[sites["tier"] == tier]
            if st.empty:
                continue
            block = dt.block(i)
            block["utilisation"] = _util(st, window_s)
            busy = _replica_busy(st, window_s)
            if busy is not None:
                block["replica_busy"] = busy
            block["cost_usd"] = float(st["cost_usd"].sum())
            block["sites"] = int(len(st))
            block["gpus"] = int(st["gpus"].sum())
            by_tier[tier] = block
        e = int(al.counters["ended"][0])
        out = {
            "requests": T["requests"], "completed": completed, "rejected": T["rejected"],
            "failed": T["failed"], "in_flight": T["in_flight"], "failed_over": T["failed_over"],
            "measured_requests": T["measured_requests"],
            "latency_ms": al.pcts("latency_ms", 0), "ttft_ms": al.pcts("ttft_ms", 0),
            "network_ms": al.pcts("network_ms", 0), "queue_ms": al.pcts("queue_ms", 0),
            "slo_attainment": float(al.counters["slo_met"][0] / e) if e else None,
            "cost_usd": cost, "used_cost_usd": self.used_cost_usd,
            "cost_per_1k_requests_usd": cost / completed * 1000.0 if completed else None,
            "cost_per_million_tokens_usd": cost / tokens * 1e6 if tokens else None,
            "utilisation": _util(sites, window_s),
            **({"replica_busy": b} if (b := _replica_busy(sites, window_s)) is not None else {}),
            "reasons": {k: v for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])},
            "by_tier": by_tier,
            "by_region": self._blocks("region"),
            "by_app": self._blocks("app"),
            "sketch": self.sketch_info(),
        }
        if getattr(self, "serving", None) is not None:  # old states carry no serving counters
            out.update(self.serving_summary())
        if getattr(self, "merged_bill", None) is not None:  # a state's bill (merged runs)
            out["tenants"] = self.merged_bill.result(sites)
        if "cascade" in self.dims:
            out["cascade"] = self.cascade_summary()
        return out

    def cascade_summary(self) -> dict:
        """Cascades: escalation rate, and requests, latency, TTFT and cost per path.

        ``escalation_rate`` = escalated / (escalated + edge-only requests whose small model
        answered): the share of the small model's answers that were escalated.
        """
        d = self.dims["cascade"]
        c = d.counters
        by_path = {}
        for i, lab in enumerate(d.labels):
            b = d.block(i)
            n = b["requests"]
            cost = float(d.sums["cost_usd"][i])
            b["cost_usd"] = cost
            b["cost_per_1k_requests_usd"] = cost / n * 1000.0 if n else None
            by_path[lab] = b
        esc = int(c["requests"][d.index["escalated"]])
        answered = esc + int(c["completed"][d.index["edge_only"]])
        return {"requests": int(c["requests"].sum()), "escalated": esc,
                "escalation_rate": esc / answered if answered else None, "by_path": by_path}

    def sketch_info(self) -> dict:
        """How the quantiles were estimated (``summary.json`` ``sketch``)."""
        return {"kind": "ddsketch", "relative_accuracy": ALPHA,
                "relative_accuracy_cities": CITY_ALPHA, "min_ms": MIN_MS, "max_ms": MAX_MS,
                "time_bin_s": self.time_bin_s}

    def _blocks(self, dim: str) -> dict:
        d = self.dims[dim]
        return {lab: d.block(i) for i, lab in enumerate(d.labels)
                if d.counters["requests"][i] > 0}

    def fault_summary(self, sites: pd.DataFrame, faults: pd.DataFrame, *, detection_s: float,
                      retries: int) -> dict:
        """The ``faults`` block of ``summary.json`` (as :func:`metrics.fault_summary`)."""
        from aigrid_sim.results.metrics import fault_availability

        fd = self.dims["fault"]
        sp = self.dims["spill"]
        # Spill-over cost: fail-overs' cost minus the mean cost of the same app done cleanly on
        # the tier it was first sent to (its own cost when there is no clean reference).
        n_clean = sp.counters["requests"]
        ref = np.divide(sp.sums["cost_usd"], n_clean, out=np.zeros(len(n_clean)),
                        where=n_clean > 0)
        n_fo = sp.counters["failed_over_ok"]
        spill = float(np.sum(np.where(n_clean > 0, sp.sums["extra_ms"] - n_fo * ref, 0.0)))
        idle_cost, availability = fault_availability(sites, faults, self.window_s)
        mv = self.dims["move"]
        moves = {lab: int(n) for lab, n in zip(mv.labels, mv.counters["requests"], strict=True)
                 if n}
        return {
            "site_outages": int((faults["kind"] == "site").sum()),
            "link_cuts": int((faults["kind"] == "link").sum()),
            "detection_s": detection_s, "retries": retries,
            "failed": self.totals["failed"], "failed_over": self.totals["failed_over"],
            "failed_over_completed": self.totals["failed_over_completed"],
            "extra_ms_failed_over": self.dims["all"].pcts("extra_ms", 0)
            if self.dims["all"].sketches["extra_ms"].total()[0] else
            {"mean": None, "p50": None, "p95": None, "p99": None},
            "availability": availability,
            "during_outage": fd.block(0), "outside_outage": fd.block(1),
            "extra_cost_usd": {"idle_capacity": idle_cost, "spillover": spill,
                               "total": idle_cost + spill},
            "spillover": moves,
        }

    # ------------------------------------------------------------------ cities
    def cities_table(self, world) -> pd.DataFrame:
        """The per-city table (``cities.parquet``) from the accumulators.

        Same columns as :func:`aigrid_sim.results.cities.city_table`; percentiles from the
        city sketches.
        """
        n = len(self.city_names)
        pop = np.asarray(world.origin_population, float)
        c = self.dims["city"]
        cc = c.counters
        out = {
            "origin": self.city_names,
            "country": np.array([x or "" for x in world.origin_country], dtype=object),
            "region": np.array([str(r) for r in world.origin_region], dtype=object),
            "lat": np.asarray(world.origin_lat, float),
            "lon": np.asarray(world.origin_lon, float),
            "population": pop,
            "weight": pop / pop.sum() if pop.sum() > 0 else np.full(n, 1.0 / max(n, 1)),
            "requests": cc["requests"].copy(), "completed": cc["completed"].copy(),
            "rejected": cc["rejected"].copy(), "failed": cc["failed"].copy(),
            "slo_met": cc["slo_met"].copy(),
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            out["slo_attainment"] = np.where(cc["ended"] > 0, cc["slo_met"] / cc["ended"],
                                             np.nan)
        for m in ("ttft_ms", "latency_ms", "network_ms", "queue_ms"):
            p50, p95 = c.sketches[m].quantiles((0.5, 0.95))
            stem = m[:-3]
            out[f"{stem}_p50_ms"], out[f"{stem}_p95_ms"] = p50, p95
        routed = self.city_tier.sum(axis=1)
        shares = []
        for k, t in enumerate(TIER_LABELS):
            with np.errstate(invalid="ignore", divide="ignore"):
                sh = np.where(routed > 0, self.city_tier[:, k] / np.maximum(routed, 1), np.nan)
            out[f"share_{t}"] = sh
            shares.append(np.nan_to_num(sh, nan=-1.0))
        best = np.argmax(np.vstack(shares), axis=0)
        out["tier"] = np.where(routed > 0, np.array(TIER_LABELS, dtype=object)[best], None)
        table = pd.DataFrame(out)
        table["tier"] = pd.Categorical(table["tier"], categories=list(TIER_LABELS))
        ca = self.dims["city_app"]
        A = self._A
        per_app = {}
        q = {m: ca.sketches[m].quantiles((0.5, 0.95)) for m in ("ttft_ms", "latency_ms")}
        for j, a in enumerate(self.apps):
            rows = np.arange(n) * A + j
            per_app[f"requests_{a}"] = ca.counters["requests"][rows]
            e = ca.counters["ended"][rows]
            with np.errstate(invalid="ignore", divide="ignore"):
                per_app[f"slo_attainment_{a}"] = np.where(
                    e > 0, ca.counters["slo_met"][rows] / np.maximum(e, 1), np.nan)
            for m in ("ttft_ms", "latency_ms"):
                per_app[f"{m[:-3]}_p50_ms_{a}"] = q[m][0][rows]
                per_app[f"{m[:-3]}_p95_ms_{a}"] = q[m][1][rows]
        return pd.concat([table, pd.DataFrame(per_app)], axis=1)

    # ------------------------------------------------------------------ state (merging)
    def state_frame(self) -> pd.DataFrame:
        """Every accumulator as a tidy table: ``dim, group, metric, key, value``.

        Counters and sums have ``key = -1``; sketch bins have metric ``sketch:<metric>`` and the
        DDSketch bin key (``ZERO_KEY`` for the zero bin). ``dim = "meta"`` rows carry the
        settings (accuracy, bin width, warm-up, windows) and ``dim = "total"`` the run totals.
        Summing ``value`` over equal ``dim, group, metric, key`` merges runs. The same rows
        as :meth:`state_table`, with plain string columns.
        """
        return state_to_frame(self.state_table())

    def state_table(self):
        """:meth:`state_frame` as a ``pyarrow.Table`` with dictionary-encoded labels.

        What ``sketches.parquet`` holds (:meth:`state_parts`, in one table).
        """
        import pyarrow as pa

        return pa.concat_tables(list(self.state_parts())).unify_dictionaries().combine_chunks()

    def state_parts(self, slice_groups: int = SLICE_GROUPS):
        """:meth:`state_table` in parts (``pyarrow.Table`` each, same schema), one at a time.

        A day's run has millions of sketch bins (cities x keys, time bins x keys); as
        dictionary indices they take about 24 bytes a row. Written part by part
        (:func:`aigrid_sim.results.rundir.write_arrow_parts`), only one part and the sketch
        slice behind it are in memory at once: the end-of-run peak no longer grows with the
        bins a long run fills. A sketch is coded ``slice_groups`` groups at a time.
        """
        import pyarrow as pa

        parts: list = []

        def coded(dim, groups, labels, metric, keys, values):
            """Rows of ``dim`` whose groups are indices ``groups`` into ``labels``."""
            n = len(groups)
            parts.append(pa.table({
                "dim": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, np.int32)), pa.array([dim], pa.string())),
                "group": pa.DictionaryArray.from_arrays(
                    pa.array(np.asarray(groups, np.int32)),
                    labels if isinstance(labels, pa.Array)
                    else pa.array([str(x) for x in labels], pa.string())),
                "metric": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, np.int32)), pa.array([metric], pa.string())),
                "key": pa.array(np.asarray(keys, np.int64)),
                "value": pa.array(np.asarray(values, np.float64))}))

        def rows(dim, groups, metric, keys, values):
            groups = list(groups)
            coded(dim, np.arange(len(groups)), groups, metric, keys, values)

        for name, d in self.dims.items():
            labels = pa.array([str(x) for x in d.labels], pa.string())  # once per dim
            for c, v in (*d.counters.items(), *d.sums.items()):
                nz = np.flatnonzero(v)
                coded(name, nz, labels, c, np.full(len(nz), -1), v[nz])
            for m, sk in d.sketches.items():
                for lo in range(0, max(sk.n, 1), slice_groups):
                    g, k, cnt = sk.coded(lo, lo + slice_groups)
                    coded(name, g, labels, f"sketch:{m}", k, cnt)
                    yield from parts
                    parts.clear()
            yield from parts
            parts.clear()
        T = dict(self.totals)
        T["used_cost_usd"] = self.used_cost_usd
        rows("total", list(T), "value", np.full(len(T), -1), list(T.values()))
        if self.reasons:
            rows("reason", list(self.reasons), "value", np.full(len(self.reasons), -1),
                 list(self.reasons.values()))
        nz = np.flatnonzero(self.city_tier.sum(axis=1))
        for k, t in enumerate(TIER_LABELS):
            rows("city_tier", np.asarray(self.city_names, dtype=object)[nz], t,
                 np.full(len(nz), -1), self.city_tier[nz, k])
        # Sites over the measured window [warmup_s, window_s]: what merged runs add up.
        meas = max(self.window_s - self.warmup_s, 0.0)
        sid = np.asarray(self.site_ids, dtype=object)
        for metric, v in (("busy_slot_s", self.site_busy_measured),
                          ("slot_s", self.site_slots * meas),
                          ("cost_usd", self.site_gpus * self.site_price_h * meas / 3600.0),
                          ("requests", self.site_requests), ("completed", self.site_completed),
                          ("replica_busy_s", self.site_replica_busy_measured),
                          ("replica_s", self.site_replicas * meas)):
            rows("site_window", sid, metric, np.full(len(sid), -1), v)
        for metric, v in (("slots", self.site_slots), ("gpus", self.site_gpus),
                          ("tier", self.site_tier.astype(float))):
            rows("site_info", sid, metric, np.full(len(sid), -1), v)
        sv = self.serving
        if sv is not None:  # serving counters: t0 merges by min, t1 by max, the rest by sum
            scal = {"preemptions": sv["preemptions"], "output_tokens": sv["output_tokens"]}
            if sv["t1"] >= sv["t0"]:
                scal.update(t0=sv["t0"], t1=sv["t1"])
            rows("serving", list(scal), "value", np.full(len(scal), -1),
                 [float(v) for v in scal.values()])
            for key in ("app", "site"):
                labs = list(sv[f"prefill_{key}"])
                for what in ("prefill", "cached"):
                    d = sv[f"{what}_{key}"]
                    rows(f"prefix_{key}", labs, what, np.full(len(labs), -1),
                         [float(d.get(lab, 0.0)) for lab in labs])
        bill = self._bill_measured if self.warmup_s > 0 else self.bill
        if self.bill is not None and bill is None:  # a warm-up and nothing measured yet
            from aigrid_sim.results.billing import Bill

            bill = Bill(self.bill.tenants)
        if bill is not None:  # group "tenant|tier", tier 3 = no site; every tenant, in order
            from aigrid_sim.results.billing import TIERS

            labels = np.array([f"{n}|{t}" for n in bill.names for t in (*TIERS, "none")],
                              dtype=object)
            for k, v in bill.acc.items():
                v = v.ravel()
                nz = np.flatnonzero(v)
                rows("bill", labels[nz], k, np.full(len(nz), -1), v[nz])
            rows("bill_tenant", bill.names, "order", np.full(len(bill.names), -1),
                 np.zeros(len(bill.names)))
        meta = {"alpha": ALPHA, "city_alpha": CITY_ALPHA, "time_bin_s": self.time_bin_s,
                "runs": 1.0, "measured_s": meas}
        rows("meta", list(meta), "value", np.full(len(meta), -1), list(meta.values()))
        yield from parts

    @classmethod
    def from_state(cls, frame: pd.DataFrame) -> OnlineSummary:
        """The accumulators of a state table (:meth:`state_frame`, or several merged).

        Only what :meth:`summary` and the figures read is restored (no world).
        """
        self = cls.__new__(cls)
        self.bill = None
        f = frame
        m = f[f["dim"] == "meta"]
        meta = dict(zip(m["group"], m["value"], strict=True))
        self.time_bin_s = float(meta.get("time_bin_s", TIME_BIN_S))
        self.warmup_s, self.window_s, self.time_origin_s = 0.0, 1.0, 0.0
        self.meta = meta
        tot = f[f["dim"] == "total"]
        self.totals = {g: int(v) for g, v in zip(tot["group"], tot["value"], strict=True)
                       if g != "used_cost_usd"}
        self.used_cost_usd = float(tot.loc[tot["group"] == "used_cost_usd", "value"].sum())
        rs = f[f["dim"] == "reason"]
        self.reasons = {g: int(v) for g, v in zip(rs["group"], rs["value"], strict=True)}
        self.dims = {}
        fixed = {"tier": list(TIER_LABELS), "cascade": ["edge_only", "escalated", "direct"]}
        for name in ("all", "tier", "app", "region", "city", "city_app", "time", "fault",
                     "spill", "move", "cascade"):
            d = f[f["dim"] == name]
            if name == "cascade" and d.empty:
                continue
            labels = fixed.get(name) or list(dict.fromkeys(d["group"]))
            if name == "time":
                labels = _time_labels(labels)
            sketched = tuple(sorted({m[7:] for m in d["metric"].unique()
                                     if m.startswith("sketch:")}))
            if name == "all":
                sketched = ("latency_ms", "ttft_ms", "network_ms", "queue_ms", "extra_ms",
                            "tpot_ms")
            elif name in ("tier", "app", "region", "fault", "city_app", "cascade"):
                sketched = ("latency_ms", "ttft_ms")
            dim = Dim(name, labels, CITY_ALPHA if name.startswith("city") else ALPHA,
                      sketched)
            for metric, part in d.groupby("metric", sort=False):
                gi = d.loc[part.index, "group"].map(dim.index).to_numpy(np.int64)
                vals = part["value"].to_numpy()
                if metric.startswith("sketch:"):
                    dim.sketches[metric[7:]].add_counts(gi, part["key"].to_numpy(np.int64),
                                                        vals.astype(np.int64))
                elif metric in dim.counters:
                    np.add.at(dim.counters[metric], gi, vals.astype(np.int64))
                elif metric in dim.sums:
                    np.add.at(dim.sums[metric], gi, vals)
            self.dims[name] = dim
        if "time" in self.dims and self.dims["time"].labels:
            self.bin0 = int(str(self.dims["time"].labels[0]).split("|")[0])
        else:
            self.bin0 = 0
        self.serving = _serving_from_state(f)
        self.merged_bill = _bill_from_state(f)
        return self

    @staticmethod
    def sites_from_state(frame: pd.DataFrame) -> pd.DataFrame:
        """Per site of a state table: tier, slots, GPUs and the measured-window totals."""
        info = frame[frame["dim"] == "site_info"].pivot_table(
            index="group", columns="metric", values="value", aggfunc="max", sort=False)
        win = frame[frame["dim"] == "site_window"].pivot_table(
            index="group", columns="metric", values="value", aggfunc="sum", sort=False)
        t = info.join(win, how="left").fillna(0.0).reset_index().rename(
            columns={"group": "site"})
        t["tier"] = np.array(TIER_LABELS, dtype=object)[t["tier"].astype(int)]
        return t


def _serving_from_state(f: pd.DataFrame) -> dict | None:
    """The serving counters of a state table (None for states written before they were kept)."""
    sv = f[f["dim"] == "serving"]
    if not len(sv):
        return None
    v = dict(zip(sv["group"], sv["value"], strict=True))
    out = {"preemptions": int(v.get("preemptions", 0)),
           "output_tokens": float(v.get("output_tokens", 0.0)),
           "t0": float(v.get("t0", math.inf)), "t1": float(v.get("t1", -math.inf))}
    for key in ("app", "site"):
        p = f[f["dim"] == f"prefix_{key}"]
        for what in ("prefill", "cached"):
            q = p[p["metric"] == what]
            out[f"{what}_{key}"] = dict(zip(q["group"], q["value"].astype(float), strict=True))
    return out


def _bill_from_state(f: pd.DataFrame):
    """The tenants' bill of a state table (a ``Bill`` holding its sums), or None."""
    from aigrid_sim.results.billing import BILL_FIELDS, Bill

    bt = f[f["dim"] == "bill_tenant"]
    if not len(bt):
        return None
    bill = Bill.__new__(Bill)
    bill.names = list(dict.fromkeys(bt["group"]))
    n = len(bill.names)
    row = {name: i for i, name in enumerate(bill.names)}
    bill.acc = {}
    b = f[f["dim"] == "bill"]
    for metric, part in b.groupby("metric", sort=False):
        acc = bill.acc.setdefault(metric, np.zeros((n, 4)))
        ten, tier = zip(*(str(g).rsplit("|", 1) for g in part["group"]), strict=True)
        i = np.array([row[t] for t in ten], np.int64)
        k = np.array([("edge", "regional", "core", "none").index(t) for t in tier], np.int64)
        np.add.at(acc, (i, k), part["value"].to_numpy(float))
    for metric in BILL_FIELDS:
        bill.acc.setdefault(metric, np.zeros((n, 4)))
    return bill


def _time_labels(labels: list[str]) -> list[str]:
    """Every time-bin label from the first to the last bin present (5 columns per bin)."""
    bins = sorted({int(str(lab).split("|")[0]) for lab in labels})
    if not bins:
        return []
    return [f"{b}|{t}" for b in range(bins[0], bins[-1] + 1)
            for t in ("all", *TIER_LABELS, "none")]


def _replica_busy(sites: pd.DataFrame, window_s: float) -> float | None:
    """Replica busy seconds over replica-seconds (``replica_s`` when given: merged runs).

    None when the table has no replica busy time (fixed-slot sites only, or not kept).
    """
    if "replica_busy_s" not in sites:
        return None
    rs = sites["replica_s"].to_numpy(float) if "replica_s" in sites else \
        sites["replicas"].to_numpy(float) * window_s
    ok = rs > 0
    return float(sites["replica_busy_s"].to_numpy(float)[ok].sum() / rs[ok].sum()) \
        if ok.any() else None


def _util(sites: pd.DataFrame, window_s: float) -> float:
    """Busy slot-seconds over slot-seconds (``slot_s`` when given: merged runs)."""
    slot_s = float(sites["slot_s"].sum()) if "slot_s" in sites else \
        float(sites["slots"].sum()) * window_s
    return float(sites["busy_slot_s"].sum() / slot_s) if slot_s > 0 else 0.0


def state_to_frame(table) -> pd.DataFrame:
    """A state table (``pyarrow``, dictionary-encoded labels) as pandas with string columns."""
    import pyarrow as pa

    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[name] = col.to_numpy(zero_copy_only=False)
    return pd.DataFrame(cols)


def read_state(path) -> pd.DataFrame:
    """A run's ``sketches.parquet`` as the table :meth:`OnlineSummary.state_frame` gives."""
    import pyarrow.parquet as pq

    return state_to_frame(pq.read_table(path))
