"""The per-city results table (``cities.parquet``): what latency each city's users get.

One row per origin city of the world, in the world's origin order, built from the requests
table (pure function of it and of the origins' place and demand). Columns (DESIGN.md s.4):

* where: ``origin`` (the city's name, as in ``requests.parquet``), ``country`` (ISO 3166
  alpha-2, may be empty in custom worlds), ``region`` (continent), ``lat``, ``lon``;
* demand: ``population`` and ``weight`` (the city's share of the world's demand before the
  time of day: population / total population);
* counts: ``requests`` (arriving after ``warmup_s``), ``completed``, ``rejected``, ``failed``,
  ``slo_met`` (requests that met their SLO) and ``slo_attainment`` (``slo_met`` over the
  requests that ended: ok, rejected or failed; NaN when none did);
* latency of completed requests, ms: ``ttft_p50_ms``, ``ttft_p95_ms``, ``latency_p50_ms``,
  ``latency_p95_ms``; its parts ``network_p50_ms``, ``network_p95_ms``, ``queue_p50_ms``,
  ``queue_p95_ms`` (round trip to the serving site; wait for a slot);
* serving tier mix: ``share_edge``, ``share_regional``, ``share_core`` (share of the city's
  routed requests each tier served) and ``tier`` (the tier that served most of them);
* per app ``<app>`` of the run: ``requests_<app>``, ``slo_attainment_<app>``,
  ``ttft_p50_ms_<app>``, ``ttft_p95_ms_<app>``, ``latency_p50_ms_<app>``,
  ``latency_p95_ms_<app>``.

Percentiles are numpy's default (linear interpolation), the same as ``summary.json``'s; a city
with no completed request has NaN percentiles. Requests arriving before ``warmup_s`` are left
out, as in the summary's latency and per-group blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TIERS = ("edge", "regional", "core")

#: The columns every cities table has, in order (per-app columns follow them).
BASE_COLUMNS = (
    "origin", "country", "region", "lat", "lon", "population", "weight",
    "requests", "completed", "rejected", "failed", "slo_met", "slo_attainment",
    "ttft_p50_ms", "ttft_p95_ms", "latency_p50_ms", "latency_p95_ms",
    "network_p50_ms", "network_p95_ms", "queue_p50_ms", "queue_p95_ms",
    "share_edge", "share_regional", "share_core", "tier",
)

#: Per-app column stems: the column is ``f"{stem}_{app}"``.
APP_STEMS = ("requests", "slo_attainment", "ttft_p50_ms", "ttft_p95_ms", "latency_p50_ms",
             "latency_p95_ms")


def app_columns(apps: Sequence[str]) -> list[str]:
    """The per-app columns of a cities table for ``apps``, in order."""
    return [f"{stem}_{a}" for a in apps for stem in APP_STEMS]


def group_percentiles(codes: np.ndarray, values: np.ndarray, n: int,
                      qs: Sequence[float], *, by_value: np.ndarray | None = None) -> np.ndarray:
    """Percentiles of ``values`` within each group ``0..n-1`` (``codes``), NaN values ignored.

    One sort for all groups (numpy's linear interpolation, as ``np.percentile``), so 6,000
    cities x 300,000 requests take tens of milliseconds, not one ``np.percentile`` per city.

    Args:
        codes: Group of each value (``0..n-1``; negative = in no group).
        values: The values.
        n: Number of groups.
        qs: Percentiles, 0-100.
        by_value: ``np.argsort(values)``, when the caller has it (several groupings of the same
            values then share the costly float sort).

    Returns:
        Array ``(len(qs), n)``; NaN for a group with no finite value.
    """
    values = np.asarray(values, float)
    codes = np.asarray(codes)
    order = np.argsort(values) if by_value is None else by_value
    order = order[~np.isnan(values[order]) & (codes[order] >= 0)]
    key = codes[order]
    if n <= 2**16:
        key = key.astype(np.uint16)  # numpy sorts 16-bit integers stably by radix: O(n)
    order = order[np.argsort(key, kind="stable")]  # by group, by value within each group
    v = values[order]
    counts = np.bincount(codes[order], minlength=n)[:n]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full((len(qs), n), np.nan)
    has = counts > 0
    if not has.any():
        return out
    for i, q in enumerate(qs):
        pos = (counts[has] - 1) * (q / 100.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts[has] - 1)
        frac = pos - lo
        a, b = v[starts[has] + lo], v[starts[has] + hi]
        out[i, has] = a + (b - a) * frac
    return out


def city_table(reqs: pd.DataFrame, origins: pd.DataFrame, *, warmup_s: float = 0.0
               ) -> pd.DataFrame:
    """The cities table (module docstring) of a requests table.

    Args:
        reqs: The requests table (``requests.parquet``): ``arrival_s, origin, app, tier,
            status, slo_met, ttft_ms, latency_ms, network_ms, queue_ms``.
        origins: One row per origin city: ``origin, country, region, lat, lon, population``
            (:func:`origins_frame` of the world).
        warmup_s: Requests arriving earlier are left out.

    Returns:
        One row per row of ``origins``, in the same order.
    """
    n = len(origins)
    names = origins["origin"].astype(str).tolist()
    after = reqs["arrival_s"].to_numpy(float) >= warmup_s
    m = reqs if after.all() else reqs[after]
    codes = _codes(m["origin"], names)
    if (codes < 0).any():
        bad = m["origin"].astype(str).to_numpy()[codes < 0][0]
        raise ValueError(f"requests from origin {bad!r}, which is not among the origins")
    status = _codes(m["status"], ["ok", "rejected", "failed", "in_flight"])
    ok = status == 0
    rejected, failed = status == 1, status == 2
    ended = ok | rejected | failed
    slo = m["slo_met"].to_numpy(bool)
    pop = origins["population"].to_numpy(float)
    out = {
        "origin": names,
        "country": origins["country"].fillna("").astype(str).to_numpy(),
        "region": origins["region"].astype(str).to_numpy(),
        "lat": origins["lat"].to_numpy(float),
        "lon": origins["lon"].to_numpy(float),
        "population": pop,
        "weight": pop / pop.sum() if pop.sum() > 0 else np.full(n, 1.0 / max(n, 1)),
    }

    def count(mask):
        return np.bincount(codes[mask], minlength=n).astype(np.int64)

    out["requests"] = np.bincount(codes, minlength=n).astype(np.int64)
    out["completed"] = count(ok)
    out["rejected"] = count(rejected)
    out["failed"] = count(failed)
    out["slo_met"] = count(slo & ended)
    n_ended = count(ended)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["slo_attainment"] = np.where(n_ended > 0, out["slo_met"] / n_ended, np.nan)
    values, orders = {}, {}
    for col in ("ttft", "latency", "network", "queue"):
        values[col] = np.where(ok, m[f"{col}_ms"].to_numpy(float), np.nan)
        orders[col] = np.argsort(values[col])  # shared by the per-city and per-app groupings
        p50, p95 = group_percentiles(codes, values[col], n, (50, 95), by_value=orders[col])
        out[f"{col}_p50_ms"], out[f"{col}_p95_ms"] = p50, p95
    tier = _codes(m["tier"], TIERS)
    routed = count(tier >= 0)
    shares = []
    for i, t in enumerate(TIERS):
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(routed > 0, count(tier == i) / routed, np.nan)
        out[f"share_{t}"] = s
        shares.append(np.nan_to_num(s, nan=-1.0))
    best = np.argmax(np.vstack(shares), axis=0)
    out["tier"] = np.where(routed > 0, np.array(TIERS, dtype=object)[best], None)
    table = pd.DataFrame(out)
    table["tier"] = pd.Categorical(table["tier"], categories=list(TIERS))
    app = m["app"]
    apps = [str(a) for a in (app.cat.categories if hasattr(app, "cat") else pd.unique(app))]
    app_code = _codes(app, apps)
    per_app = {}
    both = np.where(app_code >= 0, app_code * n + codes, -1)  # (app, city) groups
    pct = {col: group_percentiles(both, values[col], n * len(apps), (50, 95),
                                  by_value=orders[col]).reshape(2, len(apps), n)
           for col in ("ttft", "latency")}
    for k, a in enumerate(apps):
        mine = app_code == k
        per_app[f"requests_{a}"] = count(mine)
        e = count(mine & ended)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_app[f"slo_attainment_{a}"] = np.where(e > 0, count(mine & ended & slo) / e,
                                                      np.nan)
        for col in ("ttft", "latency"):
            per_app[f"{col}_p50_ms_{a}"], per_app[f"{col}_p95_ms_{a}"] = pct[col][:, k]
    table = pd.concat([table, pd.DataFrame(per_app)[app_columns(apps)]], axis=1)
    return table


def _codes(col: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Each value's index in ``categories`` (-1 if missing or absent); cheap for categoricals."""
    index = pd.Index([str(c) for c in categories])
    if isinstance(col.dtype, pd.CategoricalDtype):
        lookup = np.append(index.get_indexer(col.cat.categories.astype(str)), -1)
        return lookup[col.cat.codes.to_numpy()]  # code -1 (missing) picks the appended -1
    return index.get_indexer(col.astype(object).where(col.notna(), None).map(
        lambda v: None if v is None else str(v)))


def origins_frame(world) -> pd.DataFrame:
    """The world's origin cities as a table: ``origin, country, region, lat, lon, population``."""
    return pd.DataFrame({
        "origin": list(world.origin_name),
        "country": [c or "" for c in world.origin_country],
        "region": list(world.origin_region),
        "lat": np.asarray(world.origin_lat, float),
        "lon": np.asarray(world.origin_lon, float),
        "population": np.asarray(world.origin_population, float),
    })


def cities_of_run(reqs: pd.DataFrame, world, *, warmup_s: float = 0.0) -> pd.DataFrame:
    """The cities table of a run: :func:`city_table` of its requests over its world's origins."""
    return city_table(reqs, origins_frame(world), warmup_s=warmup_s)
