"""The standard figures, drawn from result tables only (never from the simulation).

matplotlib is imported lazily (it costs ~0.8 s) and with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TIER_COLOURS = {"edge": "#2a9d8f", "regional": "#e9c46a", "core": "#e76f51"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf_by_tier(reqs: pd.DataFrame, path: Path) -> Path:
    """Empirical CDF of end-to-end latency and TTFT of completed requests, one line per tier."""
    plt = _plt()
    ok = reqs[reqs["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, col, title in ((axes[0], "latency_ms", "End-to-end latency"),
                           (axes[1], "ttft_ms", "Time to first token")):
        for tier, colour in TIER_COLOURS.items():
            x = np.sort(ok.loc[ok["tier"] == tier, col].to_numpy())
            if len(x):
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colour,
                        label=f"{tier} (n={len(x):,})")
        x = np.sort(ok[col].to_numpy())
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), color="black", ls="--", lw=1,
                    label="all")
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of completed requests")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def world_utilisation(sites: pd.DataFrame, path: Path) -> Path:
    """Sites on a longitude/latitude map, marker per tier, coloured by utilisation."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 5.5))
    vmax = max(float(sites["utilisation"].max()), 1e-6)
    markers = {"edge": ("o", 14), "regional": ("s", 40), "core": ("*", 220)}
    sc = None
    for tier, (m, size) in markers.items():
        s = sites[sites["tier"] == tier]
        if len(s):
            sc = ax.scatter(s["lon"], s["lat"], c=s["utilisation"], cmap="viridis", vmin=0,
                            vmax=vmax, marker=m, s=size, edgecolors="k", linewidths=0.3,
                            label=f"{tier} ({len(s)})")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="utilisation (busy slots / slots)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 75)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("Sites by tier, coloured by utilisation")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def is_time_varying(reqs: pd.DataFrame, bins: int = 30, threshold: float = 3.0) -> bool:
    """Whether the arrival rate varies beyond Poisson noise.

    The index of dispersion (variance / mean) of arrival counts in ``bins`` equal bins is ~1 for
    a constant-rate Poisson stream (the chi-square test with 29 degrees of freedom puts 3.0 at
    p < 1e-7); diurnal swings, bursts, flash crowds and real traces push it higher.
    """
    t = reqs["arrival_s"].to_numpy(float)
    if len(t) < 10 * bins or not np.isfinite(t).all() or t.max() <= t.min():
        return False
    counts = np.histogram(t, bins=bins, range=(0.0, float(t.max())))[0]
    return bool(counts.var(ddof=1) / max(counts.mean(), 1e-12) > threshold)


def rate_and_p95_over_time(reqs: pd.DataFrame, path: Path, bins: int | None = None) -> Path:
    """Request rate and p95 latency over time, by tier (time-varying runs).

    Top: arrivals per second in each time bin, split by the tier that served (or was chosen
    for) each request, rejected-before-routing requests apart, and the total. Bottom: p95 of
    end-to-end latency of completed requests arriving in each bin, per tier and overall; a bin
    with fewer than 10 completed requests of a tier leaves a gap.

    Args:
        reqs: The requests table.
        path: PNG to write.
        bins: Number of time bins; None = up to 60, at least ~200 requests per bin.
    """
    plt = _plt()
    span, nb, edges, width, b = _time_bins(reqs, bins, 60)
    minutes = span > 1200
    scale = 60.0 if minutes else 1.0
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    tier = reqs["tier"].astype(object).to_numpy()
    status = reqs["status"].astype(str).to_numpy()
    lat = reqs["latency_ms"].to_numpy(float)
    ok = status == "ok"
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    total = np.bincount(b, minlength=nb) / width
    ax1.plot(mid, total, color="black", lw=1.4, ls="--", zorder=3, label="all arrivals")
    for name, colour in TIER_COLOURS.items():
        sel = tier == name
        if sel.any():
            ax1.plot(mid, np.bincount(b[sel], minlength=nb) / width, color=colour,
                     label=f"{name}")
    unrouted = pd.isna(reqs["tier"]).to_numpy()
    if unrouted.any():
        ax1.plot(mid, np.bincount(b[unrouted], minlength=nb) / width, color="grey", ls="--",
                 label="no site (rejected)")
    ax1.set_ylabel("requests per second")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Arrival rate and p95 latency over time, by tier")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="upper left", ncol=5)

    _plot_p95_by_tier(ax2, mid, b, nb, lat, ok, tier)
    ax2.set_yscale("log")
    ax2.set_ylabel("p95 end-to-end latency (ms, log)")
    ax2.set_xlabel(f"arrival time ({'min' if minutes else 's'}); bins of {width:.3g} s")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _time_bins(reqs: pd.DataFrame, bins: int | None, most: int):
    """Equal time bins over [0, last arrival] (at least ~200 requests a bin) and each request's.

    Returns:
        ``(span, nb, edges, width, b)``: ``b`` is each request's bin index.
    """
    t = reqs["arrival_s"].to_numpy(float)
    span = float(t.max()) if len(t) else 1.0
    span = span if span > 0 else 1.0
    nb = bins or int(np.clip(len(t) // 200, 5, most))
    edges = np.linspace(0.0, span, nb + 1)
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, nb - 1)
    return span, nb, edges, edges[1] - edges[0], b


def _binned_p95(b: np.ndarray, values: np.ndarray, nb: int, min_n: int = 10) -> np.ndarray:
    """p95 of ``values`` in each of ``nb`` bins (bin index ``b``); NaN where fewer than min_n."""
    out = np.full(nb, np.nan)
    order = np.argsort(b, kind="stable")
    bs, vs = b[order], values[order]
    cuts = np.searchsorted(bs, np.arange(nb + 1))
    for i in range(nb):
        x = vs[cuts[i]:cuts[i + 1]]
        if len(x) >= min_n:
            out[i] = np.percentile(x, 95)
    return out


def _plot_p95_by_tier(ax, mid, b, nb, lat, ok, tier) -> None:
    """Binned p95 latency of completed requests: all (dashed) and one line per tier."""
    ax.plot(mid, _binned_p95(b[ok], lat[ok], nb), color="black", lw=1.4, ls="--", zorder=3,
            label="all")
    for name, colour in TIER_COLOURS.items():
        sel = ok & (tier == name)
        if sel.any():
            ax.plot(mid, _binned_p95(b[sel], lat[sel], nb), color=colour, marker=".", label=name)


def _union(intervals) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def faults_over_time(reqs: pd.DataFrame, faults: pd.DataFrame, sites: pd.DataFrame, path: Path,
                     bins: int | None = None) -> Path:
    """p95 latency, failed and failed-over requests, and capacity down over time, outages shaded.

    Top: p95 end-to-end latency of completed requests arriving in each time bin, overall and per
    tier (bins with fewer than 10 completed requests left empty). Middle: requests per bin that
    ended ``failed`` and that failed over at least once. Bottom: share of each tier's GPUs down
    (whole and partial site outages). Red shading: some site was (at least partly) down; blue
    hatching: a link was cut. Everything is read from ``requests.parquet``, ``sites.parquet`` and
    ``faults.parquet``.

    Args:
        reqs: The requests table.
        faults: The faults table (``faults.parquet``).
        sites: The sites table (GPUs per tier).
        path: PNG to write.
        bins: Number of time bins; None = up to 80, at least ~200 requests per bin.
    """
    plt = _plt()
    span, nb, edges, width, b = _time_bins(reqs, bins, 80)
    scale = 3600.0 if span > 4 * 3600 else (60.0 if span > 1200 else 1.0)
    unit = {3600.0: "h", 60.0: "min", 1.0: "s"}[scale]
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    status = reqs["status"].astype(str).to_numpy()
    tier = reqs["tier"].astype(object).to_numpy()
    lat = reqs["latency_ms"].to_numpy(float)
    ok = status == "ok"
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1.4]})

    _plot_p95_by_tier(ax1, mid, b, nb, lat, ok, tier)
    ax1.set_yscale("log")
    ax1.set_ylabel("p95 latency (ms, log)")
    ax1.set_title("Faults: p95 latency, failed requests and capacity down over time")
    failed = np.bincount(b[status == "failed"], minlength=nb)
    over = np.bincount(b[reqs["failed_over"].to_numpy(bool)], minlength=nb) \
        if "failed_over" in reqs else np.zeros(nb)
    ax2.bar(mid, failed, width=width / scale * 0.9, color="#c0392b", label="failed")
    ax2.plot(mid, over, color="#34495e", marker=".", label="failed over (>= 1 retry)")
    ax2.set_ylabel("requests per bin\n(by arrival time)")
    ax2.set_ylim(bottom=0)
    site_rows = faults[faults["kind"] == "site"]
    link_rows = faults[faults["kind"] == "link"]
    grid = np.linspace(0.0, span, 600)
    for name, colour in TIER_COLOURS.items():
        total = float(sites.loc[sites["tier"] == name, "gpus"].sum())
        rows = site_rows[site_rows["tier"] == name]
        if total <= 0 or rows.empty:
            continue
        down = np.zeros_like(grid)
        for a, e, g in zip(rows["start_s"], rows["end_s"], rows["gpus_lost"]):
            down += np.where((grid >= a) & (grid < e), g, 0.0)
        ax3.step(grid / scale, 100.0 * down / total, where="post", color=colour, label=name)
    ax3.set_ylabel("GPUs down (%)")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel(f"arrival time ({unit}); bins of {width / scale:.3g} {unit}")
    for ax in (ax1, ax2, ax3):
        for a, e in _union(zip(site_rows["start_s"], site_rows["end_s"])):
            ax.axvspan(a / scale, min(e, span) / scale, color="#e74c3c", alpha=0.12, lw=0)
        for a, e in _union(zip(link_rows["start_s"], link_rows["end_s"])):
            ax.axvspan(a / scale, min(e, span) / scale, facecolor="none", edgecolor="#2980b9",
                       hatch="//", alpha=0.35, lw=0)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlim(0, span / scale)
    n_site, n_link = len(site_rows), len(link_rows)
    ax1.legend(fontsize=8, loc="best", ncol=4,
               title=f"{n_site} site outage(s), {n_link} link cut(s)", title_fontsize=8)
    ax2.legend(fontsize=8, loc="upper left")
    if n_site:
        ax3.legend(fontsize=8, loc="upper left", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def standard_figures(reqs: pd.DataFrame, sites: pd.DataFrame, folder: Path, *,
                     time_varying: bool | None = None,
                     faults: pd.DataFrame | None = None) -> list[Path]:
    """Draw every standard figure of a run into ``folder``.

    ``rate_over_time.png`` is drawn for time-varying runs: ``time_varying=None`` decides from
    the arrivals (:func:`is_time_varying`). ``faults_over_time.png`` is drawn for runs with
    faults (a non-empty ``faults`` table, i.e. ``faults.parquet``).
    """
    out = [latency_cdf_by_tier(reqs, folder / "latency_cdf_by_tier.png"),
           world_utilisation(sites, folder / "sites_utilisation_map.png")]
    if time_varying or (time_varying is None and is_time_varying(reqs)):
        out.append(rate_and_p95_over_time(reqs, folder / "rate_over_time.png"))
    if faults is not None and len(faults):
        out.append(faults_over_time(reqs, faults, sites, folder / "faults_over_time.png"))
    return out


# ----------------------------------------------------------------------------- sweep figures
# Drawn by aigrid_sim.report from the gathered sweep tables (never from a simulation).


def _group_colours(labels) -> dict:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def latency_cdf_by_group(samples: dict, path: Path, xlabel: str = "end-to-end latency") -> Path:
    """Empirical CDF of latency, one line per configuration (seeds pooled).

    Args:
        samples: ``{label: latencies in ms}`` (completed requests).
        path: PNG to write.
        xlabel: What the latency is.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    colours = _group_colours(list(samples))
    for label, x in samples.items():
        x = np.sort(np.asarray(x, float))
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colours[label], label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"{xlabel} (ms, log scale)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_title(f"{xlabel[0].upper() + xlabel[1:]} by configuration")
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_by_group_ci(agg: pd.DataFrame, metrics: list, path: Path) -> Path:
    """One panel per metric: mean per configuration with its confidence interval across seeds.

    Args:
        agg: One row per configuration with ``config``, ``seeds``, each metric column and its
            ``<metric>_ci`` half-width (NaN when there is a single seed: no error bar).
        metrics: ``[(column, axis label), ...]``.
        path: PNG to write.
    """
    plt = _plt()
    n = len(agg)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 1.2 + 0.45 * n + 1.5),
                             squeeze=False)
    colours = _group_colours(list(agg["config"]))
    y = np.arange(n)
    for ax, (col, label) in zip(axes[0], metrics):
        m = agg[col].to_numpy(float)
        hw = agg[f"{col}_ci"].to_numpy(float)
        ax.barh(y, m, xerr=np.where(np.isnan(hw), 0.0, hw), capsize=4,
                color=[colours[c] for c in agg["config"]], alpha=0.85)
        ax.set_yticks(y, agg["config"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    seeds = sorted(set(int(s) for s in agg["seeds"]))
    fig.suptitle("Mean across seeds with 95 % confidence intervals "
                 f"({'/'.join(map(str, seeds))} seeds per configuration)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cost_curve(agg: pd.DataFrame, path: Path, *, x: str = "latency_p95_ms",
                       y: str = "cost_per_1k_requests_usd", xlabel: str = "p95 latency (ms)",
                       colour_by: str | None = "policy", front: str = "pareto") -> Path:
    """Cost per 1,000 requests against p95 latency, one point per configuration, Pareto front.

    Args:
        agg: One row per configuration with ``config``, ``x``, ``y`` (and ``<x>_ci``/``<y>_ci``
            error bars when present) and a boolean ``front`` column marking the frontier.
        path: PNG to write.
        x: Latency column.
        y: Cost column.
        xlabel: Label of the latency axis.
        colour_by: Column that picks the colour (e.g. the policy); None = one colour.
        front: Boolean column of the points on the Pareto frontier.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    groups = list(dict.fromkeys(agg[colour_by])) if colour_by and colour_by in agg else [None]
    colours = _group_colours(groups)
    for g in groups:
        d = agg if g is None else agg[agg[colour_by] == g]
        xe = d[f"{x}_ci"].to_numpy(float) if f"{x}_ci" in d else None
        ye = d[f"{y}_ci"].to_numpy(float) if f"{y}_ci" in d else None
        ax.errorbar(d[x], d[y], xerr=None if xe is None else np.nan_to_num(xe),
                    yerr=None if ye is None else np.nan_to_num(ye), fmt="o", ms=6,
                    color=colours[g], capsize=3, label=g if g is not None else "runs", alpha=0.85)
    f = agg[agg[front]].sort_values(x)
    if len(f):
        ax.step(f[x], f[y], where="post", color="black", lw=1.4, label="Pareto frontier")
        ax.scatter(f[x], f[y], s=110, facecolors="none", edgecolors="black", linewidths=1.4)
        for r in f.itertuples(index=False):
            d = r._asdict()
            ax.annotate(str(d["config"]), (d[x], d[y]), fontsize=7, xytext=(5, 5),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"{xlabel}, log scale")
    ax.set_ylabel("cost per 1,000 completed requests ($)")
    ax.set_title("Latency-cost trade-off (lower left is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- streamed runs
# Drawn from the online summary's counters and sketches (no per-request array).


def _sketch_cdf(sk, g: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, cumulative fraction)`` of group ``g`` of a grouped sketch (bin by bin)."""
    c = sk.counts[g].astype(np.int64)
    nz = np.flatnonzero(c)
    tot = int(c.sum() + sk.zeros[g])
    if tot == 0:
        return np.zeros(0), np.zeros(0)
    x = sk._value(nz + sk.kmin)
    y = (np.cumsum(c[nz]) + sk.zeros[g]) / tot
    return x, y


def latency_cdf_online(online, path: Path) -> Path:
    """CDF of end-to-end latency and TTFT of completed requests per tier, from the sketches."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    tiers, al = online.dims["tier"], online.dims["all"]
    for ax, col, title in ((axes[0], "latency_ms", "End-to-end latency"),
                           (axes[1], "ttft_ms", "Time to first token")):
        for i, (tier, colour) in enumerate(TIER_COLOURS.items()):
            x, y = _sketch_cdf(tiers.sketches[col], i)
            if len(x):
                n = int(tiers.sketches[col].total()[i])
                ax.step(x, y, where="post", color=colour, label=f"{tier} (n={n:,})")
        x, y = _sketch_cdf(al.sketches[col], 0)
        if len(x):
            ax.step(x, y, where="post", color="black", ls="--", lw=1, label="all")
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of completed requests")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"(DDSketch bins, relative accuracy {online.sketch_info()['relative_accuracy']:.0%})",
                 fontsize=8, y=0.99)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _time_series(online, most: int):
    """Coarsen the online time bins to at most ``most``: edges (s from t = 0) and groups."""
    d = online.dims["time"]
    nb = len(d.labels) // 5
    used = np.flatnonzero(d.counters["requests"].reshape(nb, 5)[:, 0])
    if not len(used):
        return None
    last = int(used[-1]) + 1
    step = max(1, int(np.ceil(last / most)))
    nbins = int(np.ceil(last / step))
    t0 = online.bin0 * online.time_bin_s - online.time_origin_s
    edges = t0 + np.arange(nbins + 1) * step * online.time_bin_s
    return d, nb, step, nbins, edges


def _coarse(values: np.ndarray, nb: int, col: int, step: int, nbins: int) -> np.ndarray:
    v = values.reshape(nb, 5)[:, col][:nbins * step]
    v = np.concatenate([v, np.zeros(nbins * step - len(v), v.dtype)])
    return v.reshape(nbins, step).sum(axis=1)


def _coarse_p95(d, nb: int, col: int, step: int, nbins: int, min_n: int = 10) -> np.ndarray:
    sk = d.sketches["latency_ms"]
    out = np.full(nbins, np.nan)
    for b in range(nbins):
        rows = [(b * step + k) * 5 + col for k in range(step) if b * step + k < nb]
        c = sk.counts[rows].sum(axis=0, dtype=np.int64)
        z = int(sk.zeros[rows].sum())
        tot = int(c.sum()) + z
        if tot >= min_n:
            rank = 0.95 * (tot - 1)
            if rank < z:
                out[b] = 0.0
            else:
                k = int(np.searchsorted(np.cumsum(c), rank - z, side="right"))
                out[b] = float(sk._value(np.array([min(k, sk.nb - 1) + sk.kmin]))[0])
    return out


def rate_over_time_online(online, path: Path, most: int = 60) -> Path | None:
    """Arrival rate and p95 latency over time by tier, from the online time bins."""
    ts = _time_series(online, most)
    if ts is None:
        return None
    d, nb, step, nbins, edges = ts
    plt = _plt()
    width = edges[1] - edges[0]
    span = edges[-1]
    scale = 3600.0 if span > 4 * 3600 else (60.0 if span > 1200 else 1.0)
    unit = {3600.0: "h", 60.0: "min", 1.0: "s"}[scale]
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    req = d.counters["requests"]
    ax1.plot(mid, _coarse(req, nb, 0, step, nbins) / width, color="black", lw=1.4, ls="--",
             zorder=3, label="all arrivals")
    for k, (name, colour) in enumerate(TIER_COLOURS.items()):
        y = _coarse(req, nb, k + 1, step, nbins)
        if y.any():
            ax1.plot(mid, y / width, color=colour, label=name)
    y = _coarse(req, nb, 4, step, nbins)
    if y.any():
        ax1.plot(mid, y / width, color="grey", ls="--", label="no site (rejected)")
    ax1.set_ylabel("requests per second")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Arrival rate and p95 latency over time, by tier")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="upper left", ncol=5)
    ax2.plot(mid, _coarse_p95(d, nb, 0, step, nbins), color="black", lw=1.4, ls="--", zorder=3,
             label="all")
    for k, (name, colour) in enumerate(TIER_COLOURS.items()):
        if _coarse(d.counters["completed"], nb, k + 1, step, nbins).any():
            ax2.plot(mid, _coarse_p95(d, nb, k + 1, step, nbins), color=colour, marker=".",
                     label=name)
    ax2.set_yscale("log")
    ax2.set_ylabel("p95 end-to-end latency (ms, log)")
    ax2.set_xlabel(f"arrival time ({unit}); bins of {width / scale:.3g} {unit}")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def is_time_varying_online(online, bins: int = 30, threshold: float = 3.0) -> bool:
    """:func:`is_time_varying` on the online time bins (arrival counts per bin)."""
    ts = _time_series(online, bins)
    if ts is None:
        return False
    d, nb, step, nbins, _ = ts
    counts = _coarse(d.counters["requests"], nb, 0, step, nbins).astype(float)
    if counts.sum() < 10 * bins or nbins < 5:
        return False
    return bool(counts.var(ddof=1) / max(counts.mean(), 1e-12) > threshold)


def faults_over_time_online(online, faults: pd.DataFrame, sites: pd.DataFrame, path: Path,
                            most: int = 80) -> Path | None:
    """p95 latency, failed and failed-over requests and capacity down over time (online bins)."""
    ts = _time_series(online, most)
    if ts is None:
        return None
    d, nb, step, nbins, edges = ts
    plt = _plt()
    width = edges[1] - edges[0]
    span = edges[-1]
    scale = 3600.0 if span > 4 * 3600 else (60.0 if span > 1200 else 1.0)
    unit = {3600.0: "h", 60.0: "min", 1.0: "s"}[scale]
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1.4]})
    ax1.plot(mid, _coarse_p95(d, nb, 0, step, nbins), color="black", lw=1.4, ls="--",
             label="all")
    for k, (name, colour) in enumerate(TIER_COLOURS.items()):
        if _coarse(d.counters["completed"], nb, k + 1, step, nbins).any():
            ax1.plot(mid, _coarse_p95(d, nb, k + 1, step, nbins), color=colour, marker=".",
                     label=name)
    ax1.set_yscale("log")
    ax1.set_ylabel("p95 latency (ms, log)")
    ax1.set_title("Faults: p95 latency, failed requests and capacity down over time")
    ax2.bar(mid, _coarse(d.counters["failed"], nb, 0, step, nbins), width=width / scale * 0.9,
            color="#c0392b", label="failed")
    ax2.plot(mid, _coarse(d.counters["failed_over"], nb, 0, step, nbins), color="#34495e",
             marker=".", label="failed over (>= 1 retry)")
    ax2.set_ylabel("requests per bin\n(by arrival time)")
    ax2.set_ylim(bottom=0)
    site_rows = faults[faults["kind"] == "site"]
    link_rows = faults[faults["kind"] == "link"]
    grid = np.linspace(0.0, span, 600)
    for name, colour in TIER_COLOURS.items():
        total = float(sites.loc[sites["tier"] == name, "gpus"].sum())
        rows = site_rows[site_rows["tier"] == name]
        if total <= 0 or rows.empty:
            continue
        down = np.zeros_like(grid)
        for a, e, g in zip(rows["start_s"], rows["end_s"], rows["gpus_lost"]):
            down += np.where((grid >= a) & (grid < e), g, 0.0)
        ax3.step(grid / scale, 100.0 * down / total, where="post", color=colour, label=name)
    ax3.set_ylabel("GPUs down (%)")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel(f"arrival time ({unit}); bins of {width / scale:.3g} {unit}")
    for ax in (ax1, ax2, ax3):
        for a, e in _union(zip(site_rows["start_s"], site_rows["end_s"])):
            ax.axvspan(a / scale, min(e, span) / scale, color="#e74c3c", alpha=0.12, lw=0)
        for a, e in _union(zip(link_rows["start_s"], link_rows["end_s"])):
            ax.axvspan(a / scale, min(e, span) / scale, facecolor="none", edgecolor="#2980b9",
                       hatch="//", alpha=0.35, lw=0)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlim(0, span / scale)
    ax1.legend(fontsize=8, loc="best", ncol=4,
               title=f"{len(site_rows)} site outage(s), {len(link_rows)} link cut(s)",
               title_fontsize=8)
    ax2.legend(fontsize=8, loc="upper left")
    if len(site_rows):
        ax3.legend(fontsize=8, loc="upper left", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def online_figures(online, sites: pd.DataFrame, folder: Path, *,
                   faults: pd.DataFrame | None = None,
                   time_varying: bool | None = None) -> list[Path]:
    """The standard figures of a run from its online summary (see :func:`standard_figures`)."""
    out = [latency_cdf_online(online, folder / "latency_cdf_by_tier.png"),
           world_utilisation(sites, folder / "sites_utilisation_map.png")]
    if time_varying or (time_varying is None and is_time_varying_online(online)):
        p = rate_over_time_online(online, folder / "rate_over_time.png")
        if p is not None:
            out.append(p)
    if faults is not None and len(faults):
        p = faults_over_time_online(online, faults, sites, folder / "faults_over_time.png")
        if p is not None:
            out.append(p)
    return out
