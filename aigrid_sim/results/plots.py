"""The standard figures, drawn from result tables only (never from the simulation).

Every plot function takes the tables it draws and an optional matplotlib ``ax`` (a sequence of
axes for the figures with several panels) and returns the ``Figure``, so notebooks can compose
them; writing files is the results layer's job (:func:`aigrid_sim.results.rundir.save_figure`,
:func:`aigrid_sim.results.rundir.write_figures`, the sweep report). Passing a path where the
``ax`` goes (the old call style, ``plot(table, "x.png")``) still writes that PNG and returns
its path.

matplotlib is imported lazily (it costs ~0.8 s), with the non-interactive Agg backend unless
a backend was already chosen (a notebook's inline backend is kept).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

TIER_COLOURS = {"edge": "#2a9d8f", "regional": "#e9c46a", "core": "#e76f51"}
TIER_MARKERS = {"edge": "o", "regional": "s", "core": "*"}


def _plt():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, n: int = 1, **subplots):
    """``(fig, ax)`` for one panel or ``(fig, [axes])`` for ``n``: the given ones or new ones.

    ``subplots`` go to ``plt.subplots`` (``nrows``, ``ncols``, ``figsize``...) when ``ax`` is
    None.
    """
    if ax is None:
        fig, axes = _plt().subplots(**subplots)
        return fig, (axes if n == 1 else list(np.ravel(axes)))
    if n == 1:
        return ax.figure, ax
    axes = list(np.ravel(ax))
    if len(axes) != n:
        raise ValueError(f"this figure has {n} panels: pass {n} axes, got {len(axes)}")
    return axes[0].figure, axes


def _layout(fig, own: bool, **margins) -> None:
    """Fixed margins on a figure this module made; one the caller made is left as it is.

    Fixed margins, because ``tight_layout`` costs a full layout pass (~0.3 s a figure).
    """
    if own:
        fig.subplots_adjust(**margins)


def _legacy_path(func):
    """Old call style ``plot(table, path)``: draw, write the PNG, close, return the path."""
    names = list(inspect.signature(func).parameters)
    pos = names.index("ax")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        path = kwargs.pop("path", None)
        if path is None and len(args) > pos and isinstance(args[pos], (str, Path)):
            path, args = args[pos], args[:pos] + (None,) + args[pos + 1:]
        if path is None and isinstance(kwargs.get("ax"), (str, Path)):
            path = kwargs.pop("ax")
        if path is None:
            return func(*args, **kwargs)
        from aigrid_sim.results.rundir import save_figure

        return save_figure(func(*args, **kwargs), Path(path))
    return wrapper


def log_ms_axis(axis) -> None:
    """A log-scale axis labelled in plain numbers (10, 100, 1,000), not mathtext powers of ten.

    Plain labels read better and skip matplotlib's mathtext parser; minor ticks only at 2 and
    5 (tick objects are what a log axis costs to lay out).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))  # few ticks: cheap to lay out

    def minor(v, _):  # label 2 and 5 too when the axis spans less than two decades
        lo, hi = sorted(axis.get_view_interval())
        if not (lo > 0 and hi / lo < 100):
            return ""
        return f"{v:,.0f}" if v >= 1 else f"{v:g}"

    axis.set_minor_formatter(FuncFormatter(minor))


def ecdf(x, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of ``x`` (NaN dropped) at up to ``points`` order statistics.

    The order statistics are evenly spaced in rank and always include the smallest and the
    largest value, so a drawn line is the exact CDF at each vertex; thinning 290,000 values to
    2,000 changes nothing visible and draws 100 times faster.

    Returns:
        ``(values, fractions)``: sorted values and the share of values at or below each.
    """
    x = np.sort(np.asarray(x, float))
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return x, x
    return _thin(x, points)


def tier_ecdfs(reqs: pd.DataFrame, points: int = 2000,
               columns: tuple[str, ...] = ("latency_ms", "ttft_ms")) -> dict:
    """Thinned CDFs (:func:`ecdf`) of completed requests per tier and for all, per column.

    One sort per column serves every tier (a tier's values are a subsequence of the sorted
    whole), and the result can feed both the PNG and the HTML report.

    Returns:
        ``{column: {"edge" | "regional" | "core" | "all": (values, fractions, n)}}``; a tier
        with no completed request is left out.
    """
    ok = (reqs["status"] == "ok").to_numpy()
    tier = pd.Categorical(reqs["tier"], categories=list(TIER_COLOURS)).codes[ok]
    out: dict = {}
    for col in columns:
        v = reqs[col].to_numpy(float)[ok]
        keep = ~np.isnan(v)
        order = np.argsort(v[keep])
        v, t = v[keep][order], tier[keep][order]
        lines = {}
        for i, name in enumerate(TIER_COLOURS):
            x = v[t == i]
            if len(x):
                lines[name] = (*_thin(x, points), len(x))
        if len(v):
            lines["all"] = (*_thin(v, points), len(v))
        out[col] = lines
    return out


def _thin(x: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``x`` at up to ``points`` order statistics evenly spaced in rank, with its CDF."""
    n = len(x)
    idx = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(np.int64))
    return x[idx], (idx + 1) / n


@_legacy_path
def latency_cdf_by_tier(reqs: pd.DataFrame | None, ax=None, *, cdfs: dict | None = None):
    """Empirical CDF of end-to-end latency and TTFT of completed requests, one line per tier.

    Args:
        reqs: The requests table (None when ``cdfs`` is given).
        ax: Two axes (latency, TTFT); None = a new figure.
        cdfs: The lines, from :func:`tier_ecdfs` (computed from ``reqs`` when None).

    Returns:
        The figure.
    """
    cdfs = cdfs if cdfs is not None else tier_ecdfs(reqs)
    own = ax is None
    fig, axes = _axes(ax, 2, nrows=1, ncols=2, figsize=(11, 4.2), sharey=True)
    for ax, col, title in ((axes[0], "latency_ms", "End-to-end latency"),
                           (axes[1], "ttft_ms", "Time to first token")):
        lines = cdfs.get(col, {})
        for tier, colour in TIER_COLOURS.items():
            if tier in lines:
                x, f, n = lines[tier]
                ax.plot(x, f, color=colour, label=f"{tier} (n={n:,})")
        if "all" in lines:
            x, f, _ = lines["all"]
            ax.plot(x, f, color="black", ls="--", lw=1, label="all")
        ax.set_xscale("log")
        log_ms_axis(ax.xaxis)
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of completed requests")
    axes[0].legend(loc="lower right", fontsize=8)
    _layout(fig, own, left=0.065, right=0.99, bottom=0.13, top=0.92, wspace=0.05)
    return fig


#: Utilisation colour scale of the site map: logarithmic from 0.1 % to 100 %, so the edge's
#: lightly used PoPs (0.1-10 %) are told apart as well as the busy core (50-70 %).
UTIL_RANGE = (1e-3, 1.0)


@_legacy_path
def site_map(sites: pd.DataFrame, ax=None):
    """Sites on a world map with coastlines: marker per tier, size by GPUs, colour by utilisation.

    The colour scale is logarithmic (:data:`UTIL_RANGE`); an idle site is drawn hollow.

    Args:
        sites: The sites table (``tier, lat, lon, gpus, utilisation``).
        ax: Axes to draw on; None = a new figure.

    Returns:
        The figure.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    from aigrid_sim.results import basemap

    own = ax is None
    fig, ax = _axes(ax, figsize=(11, 4.3))
    basemap.draw(ax)
    norm = LogNorm(*UTIL_RANGE, clip=True)
    cmap = "plasma"
    sc = None
    handles = []
    for tier in ("edge", "regional", "core"):
        s = sites[sites["tier"] == tier]
        if s.empty:
            continue
        u = s["utilisation"].to_numpy(float)
        size = _gpu_size(s["gpus"].to_numpy(float), tier)
        busy = u > 0
        sc = ax.scatter(s["lon"][busy], s["lat"][busy], c=np.maximum(u[busy], UTIL_RANGE[0]),
                        cmap=cmap, norm=norm, marker=TIER_MARKERS[tier], s=size[busy],
                        edgecolors="k", linewidths=0.3, zorder=3 + ("edge", "regional",
                                                                     "core").index(tier))
        if (~busy).any():
            ax.scatter(s["lon"][~busy], s["lat"][~busy], facecolors="none", edgecolors="#555",
                       marker=TIER_MARKERS[tier], s=size[~busy], linewidths=0.5, zorder=3)
        handles.append(Line2D([], [], ls="", marker=TIER_MARKERS[tier], mfc="#bbbbbb", mec="k",
                              ms=7 if tier != "core" else 11,
                              label=f"{tier}: {len(s)} sites, {int(s['gpus'].sum()):,} GPUs"))
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax, shrink=0.8, pad=0.01, extend="min")
        cb.set_label("utilisation (busy slots / slots), log scale")
        cb.set_ticks([1e-3, 1e-2, 0.1, 1.0], labels=["0.1 %", "1 %", "10 %", "100 %"])
    basemap.frame(ax)
    ax.set_title("Sites by tier: size = GPUs, colour = utilisation (hollow = idle)")
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    _layout(fig, own, left=0.045, right=0.99, bottom=0.075, top=0.925)
    return fig


def _gpu_size(gpus: np.ndarray, tier: str) -> np.ndarray:
    """Marker area (points^2): the tier's base size, growing with the square root of GPUs."""
    base = {"edge": 3.0, "regional": 4.5, "core": 9.0}[tier]
    return (base + 1.3 * np.sqrt(np.maximum(gpus, 1.0))) ** 2


def world_utilisation(sites: pd.DataFrame, ax=None):
    """Old name of :func:`site_map`."""
    return site_map(sites, ax)


#: What a city map can colour by: column -> (label, log scale).
CITY_METRICS = {
    "ttft_p95_ms": ("p95 time to first token (ms)", True),
    "ttft_p50_ms": ("median time to first token (ms)", True),
    "latency_p95_ms": ("p95 end-to-end latency (ms)", True),
    "latency_p50_ms": ("median end-to-end latency (ms)", True),
    "slo_attainment": ("share of requests meeting their SLO", False),
}


def busiest_app(cities: pd.DataFrame) -> str | None:
    """The app with the most requests in a cities table (None if it has no per-app columns)."""
    apps = {c[len("requests_"):]: cities[c].sum() for c in cities.columns
            if c.startswith("requests_")}
    return max(apps, key=apps.get) if apps else None


@_legacy_path
def city_map(cities: pd.DataFrame, ax=None, *, metric: str = "ttft_p95_ms",
             app: str | None = None, sites: pd.DataFrame | None = None, vmax: float | None = None):
    """Cities on a world map with coastlines, coloured by what their users get.

    Args:
        cities: The cities table (``cities.parquet``).
        ax: Axes to draw on; None = a new figure.
        metric: A column stem of :data:`CITY_METRICS`.
        app: Colour by this app's column (``<metric>_<app>``); None = all apps pooled.
        sites: When given, the sites are drawn under the cities as small grey marks.
        vmax: Top of the colour scale (None = from the data; fix it to compare two maps).

    Returns:
        The figure.
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import FuncFormatter

    from aigrid_sim.results import basemap

    if metric not in CITY_METRICS:
        raise ValueError(f"metric must be one of {sorted(CITY_METRICS)}, got {metric!r}")
    label, log = CITY_METRICS[metric]
    col = metric if app is None else f"{metric}_{app}"
    if col not in cities:
        raise ValueError(f"the cities table has no column {col!r}")
    own = ax is None
    fig, ax = _axes(ax, figsize=(11, 4.3))
    basemap.draw(ax)
    if sites is not None:
        for tier, m in TIER_MARKERS.items():
            s = sites[sites["tier"] == tier]
            ax.scatter(s["lon"], s["lat"], marker=m, s=12 if tier != "core" else 60,
                       facecolors="none", edgecolors="#333333", linewidths=0.5, zorder=2)
    v = cities[col].to_numpy(float)
    have = np.isfinite(v)
    order = np.argsort(np.where(have, v, -np.inf), kind="stable")  # worst drawn on top
    o = order[have[order]]
    if log:
        lo = max(np.nanpercentile(v, 1) if have.any() else 1.0, 1e-3)
        hi = vmax or (np.nanpercentile(v, 99.5) if have.any() else 10.0)
        norm = LogNorm(lo, max(hi, lo * 1.01), clip=True)
        cmap = "magma_r"
    else:
        norm = Normalize(0.0, vmax or 1.0, clip=True)
        cmap = "RdYlGn"
    size = 3 + 40 * np.sqrt(cities["weight"].to_numpy(float) /
                            max(float(cities["weight"].max()), 1e-12))
    sc = ax.scatter(cities["lon"].to_numpy()[o], cities["lat"].to_numpy()[o], c=v[o], s=size[o],
                    cmap=cmap, norm=norm, edgecolors="none", alpha=0.9, zorder=3)
    if (~have).any():
        ax.scatter(cities["lon"][~have], cities["lat"][~have], s=4, c="#bbbbbb", marker="x",
                   linewidths=0.5, zorder=3, label=f"no completed request ({int((~have).sum())})")
        ax.legend(loc="lower left", fontsize=8)
    cb = fig.colorbar(sc, ax=ax, shrink=0.8, pad=0.01,
                      extend="both" if log else "neither")
    cb.set_label(label + (", log scale" if log else ""))
    if log:
        log_ms_axis(cb.ax.yaxis)
        cb.ax.yaxis.set_minor_formatter(FuncFormatter(  # 20, 50, 200, 500 as well
            lambda v, _: f"{v:,.0f}" if f"{v:.0e}"[0] in "25" else ""))
    basemap.frame(ax)
    what = label if app is None else f"{label}, {app}"
    ax.set_title(f"{len(cities):,} cities by {what} (size = share of demand)")
    _layout(fig, own, left=0.045, right=0.99, bottom=0.075, top=0.925)
    return fig


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


@_legacy_path
def rate_and_p95_over_time(reqs: pd.DataFrame, ax=None, bins: int | None = None):
    """Request rate and p95 latency over time, by tier (time-varying runs).

    Top: arrivals per second in each time bin, split by the tier that served (or was chosen
    for) each request, rejected-before-routing requests apart, and the total. Bottom: p95 of
    end-to-end latency of completed requests arriving in each bin, per tier and overall; a bin
    with fewer than 10 completed requests of a tier leaves a gap.

    Args:
        reqs: The requests table.
        ax: Two axes (rate, p95); None = a new figure.
        bins: Number of time bins; None = up to 60, at least ~200 requests per bin.

    Returns:
        The figure.
    """
    span, nb, edges, width, b = _time_bins(reqs, bins, 60)
    minutes = span > 1200
    scale = 60.0 if minutes else 1.0
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    tier = reqs["tier"].astype(object).to_numpy()
    status = reqs["status"].astype(str).to_numpy()
    lat = reqs["latency_ms"].to_numpy(float)
    ok = status == "ok"
    own = ax is None
    fig, (ax1, ax2) = _axes(ax, 2, nrows=2, ncols=1, figsize=(11, 6.5), sharex=True)
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
    log_ms_axis(ax2.yaxis)
    ax2.set_ylabel("p95 end-to-end latency (ms, log)")
    ax2.set_xlabel(f"arrival time ({'min' if minutes else 's'}); bins of {width:.3g} s")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8, loc="upper left", ncol=4)
    if own:
        fig.tight_layout()
    return fig


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


def _fault_panels(axes, mid, failed, over, faults: pd.DataFrame, sites: pd.DataFrame,
                  span: float, scale: float, unit: str, width: float) -> None:
    """The fault figure's two lower panels, the outage spans on all three, and the legends.

    The middle panel has failed and failed-over requests per bin, the bottom one the GPUs down
    per tier; site outages are shaded and link cuts hatched on every panel.
    """
    ax1, ax2, ax3 = axes
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
        for a, e, g in zip(rows["start_s"], rows["end_s"], rows["gpus_lost"], strict=True):
            down += np.where((grid >= a) & (grid < e), g, 0.0)
        ax3.step(grid / scale, 100.0 * down / total, where="post", color=colour, label=name)
    ax3.set_ylabel("GPUs down (%)")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel(f"arrival time ({unit}); bins of {width / scale:.3g} {unit}")
    for ax in axes:
        for a, e in _union(zip(site_rows["start_s"], site_rows["end_s"], strict=True)):
            ax.axvspan(a / scale, min(e, span) / scale, color="#e74c3c", alpha=0.12, lw=0)
        for a, e in _union(zip(link_rows["start_s"], link_rows["end_s"], strict=True)):
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


@_legacy_path
def faults_over_time(reqs: pd.DataFrame, faults: pd.DataFrame, sites: pd.DataFrame, ax=None,
                     bins: int | None = None):
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
        ax: Three axes (p95, failed, GPUs down); None = a new figure.
        bins: Number of time bins; None = up to 80, at least ~200 requests per bin.

    Returns:
        The figure.
    """
    span, nb, edges, width, b = _time_bins(reqs, bins, 80)
    scale = 3600.0 if span > 4 * 3600 else (60.0 if span > 1200 else 1.0)
    unit = {3600.0: "h", 60.0: "min", 1.0: "s"}[scale]
    mid = (edges[:-1] + edges[1:]) / 2 / scale
    status = reqs["status"].astype(str).to_numpy()
    tier = reqs["tier"].astype(object).to_numpy()
    lat = reqs["latency_ms"].to_numpy(float)
    ok = status == "ok"
    own = ax is None
    fig, (ax1, ax2, ax3) = _axes(ax, 3, nrows=3, ncols=1, figsize=(11, 8), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 2, 1.4]})

    _plot_p95_by_tier(ax1, mid, b, nb, lat, ok, tier)
    ax1.set_yscale("log")
    log_ms_axis(ax1.yaxis)
    ax1.set_ylabel("p95 latency (ms, log)")
    ax1.set_title("Faults: p95 latency, failed requests and capacity down over time")
    failed = np.bincount(b[status == "failed"], minlength=nb)
    over = np.bincount(b[reqs["failed_over"].to_numpy(bool)], minlength=nb) \
        if "failed_over" in reqs else np.zeros(nb)
    _fault_panels((ax1, ax2, ax3), mid, failed, over, faults, sites, span, scale, unit, width)
    if own:
        fig.tight_layout()
    return fig


def standard_figures(reqs: pd.DataFrame, sites: pd.DataFrame, folder: Path, *,
                     time_varying: bool | None = None,
                     faults: pd.DataFrame | None = None,
                     cities: pd.DataFrame | None = None) -> list[Path]:
    """Old entry point of :func:`aigrid_sim.results.rundir.write_figures` (same arguments)."""
    from aigrid_sim.results.rundir import write_figures

    return write_figures(reqs, sites, Path(folder), time_varying=time_varying, faults=faults,
                         cities=cities)


# ----------------------------------------------------------------------------- sweep figures
# Drawn by aigrid_sim.report from the gathered sweep tables (never from a simulation).


def _group_colours(labels) -> dict:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


@_legacy_path
def latency_cdf_by_group(samples: dict, ax=None, xlabel: str = "end-to-end latency"):
    """Empirical CDF of latency, one line per configuration (seeds pooled).

    Args:
        samples: ``{label: latencies in ms}`` (completed requests).
        ax: Axes to draw on; None = a new figure.
        xlabel: What the latency is.

    Returns:
        The figure.
    """
    own = ax is None
    fig, ax = _axes(ax, figsize=(8.5, 4.8))
    colours = _group_colours(list(samples))
    for label, x in samples.items():
        x = np.asarray(x, float)
        if len(x):
            ax.plot(*ecdf(x), color=colours[label], label=label)
    ax.set_xscale("log")
    log_ms_axis(ax.xaxis)
    ax.set_xlabel(f"{xlabel} (ms, log scale)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_title(f"{xlabel[0].upper() + xlabel[1:]} by configuration")
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    if own:
        fig.tight_layout()
    return fig


@_legacy_path
def metric_by_group_ci(agg: pd.DataFrame, metrics: list, ax=None):
    """One panel per metric: mean per configuration with its confidence interval across seeds.

    Args:
        agg: One row per configuration with ``config``, ``seeds``, each metric column and its
            ``<metric>_ci`` half-width (NaN when there is a single seed: no error bar).
        metrics: ``[(column, axis label), ...]``.
        ax: One axes per metric; None = a new figure.

    Returns:
        The figure.
    """
    n = len(agg)
    own = ax is None
    fig, axes = _axes(ax, len(metrics), nrows=1, ncols=len(metrics),
                      figsize=(5.2 * len(metrics), 1.2 + 0.45 * n + 1.5), squeeze=False)
    axes = list(np.ravel(axes))
    colours = _group_colours(list(agg["config"]))
    y = np.arange(n)
    for ax, (col, label) in zip(axes, metrics, strict=False):
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
    if own:
        fig.tight_layout()
    return fig


@_legacy_path
def latency_cost_curve(agg: pd.DataFrame, ax=None, *, x: str = "latency_p95_ms",
                       y: str = "cost_per_1k_requests_usd", xlabel: str = "p95 latency (ms)",
                       colour_by: str | None = "policy", front: str = "pareto"):
    """Cost per 1,000 requests against p95 latency, one point per configuration, Pareto front.

    Points on the frontier are numbered on the plot and named in a key beside it (long
    configuration labels next to clustered points would overlap and could not be read).

    Args:
        agg: One row per configuration with ``config``, ``x``, ``y`` (and ``<x>_ci``/``<y>_ci``
            error bars when present) and a boolean ``front`` column marking the frontier.
        ax: Axes to draw on; None = a new figure with the key in a panel on its right (with
            ``ax`` given, the key is drawn to the right of it).
        x: Latency column.
        y: Cost column.
        xlabel: Label of the latency axis.
        colour_by: Column that picks the colour (e.g. the policy); None = one colour.
        front: Boolean column of the points on the Pareto frontier.

    Returns:
        The figure.
    """
    own = ax is None
    if own:
        fig, (ax, key_ax) = _plt().subplots(1, 2, figsize=(11.5, 5.2),
                                            gridspec_kw={"width_ratios": [2.3, 1]})
        key_ax.axis("off")
    else:
        fig, key_ax = ax.figure, None
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
    lines = []
    if len(f):
        ax.step(f[x], f[y], where="post", color="black", lw=1.4, label="Pareto frontier")
        ax.scatter(f[x], f[y], s=110, facecolors="none", edgecolors="black", linewidths=1.4)
        for i, r in enumerate(f.itertuples(index=False), 1):
            d = r._asdict()
            # Numbers alternate above-right / below-left so neighbours on the staircase do
            # not cover each other.
            up = i % 2 == 1
            ax.annotate(str(i), (d[x], d[y]), fontsize=8, fontweight="bold",
                        xytext=(6, 6) if up else (-6, -6), textcoords="offset points",
                        ha="left" if up else "right", va="bottom" if up else "top")
            name = textwrap.fill(str(d["config"]), 44, subsequent_indent="    ")
            lines.append(f"{i:>2}  {name}\n    {_num(d[x])} ms, ${d[y]:.3f}")
    ax.set_xscale("log")
    log_ms_axis(ax.xaxis)
    ax.set_xlabel(f"{xlabel}, log scale")
    ax.set_ylabel("cost per 1,000 completed requests ($)")
    ax.set_title("Latency-cost trade-off (lower left is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if lines:
        text = "Pareto frontier\n\n" + "\n".join(lines)
        if key_ax is not None:
            key_ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=7.5, family="monospace",
                        transform=key_ax.transAxes)
        else:
            ax.text(1.02, 1.0, text, va="top", ha="left", fontsize=7, family="monospace",
                    transform=ax.transAxes, clip_on=False)
    if own:
        fig.tight_layout()
    return fig


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


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


def _time_axis(edges: np.ndarray):
    """``(bin width s, span s, scale, unit, bin mid-points in unit)`` of a time-bin axis."""
    width = edges[1] - edges[0]
    span = edges[-1]
    scale = 3600.0 if span > 4 * 3600 else (60.0 if span > 1200 else 1.0)
    unit = {3600.0: "h", 60.0: "min", 1.0: "s"}[scale]
    return width, span, scale, unit, (edges[:-1] + edges[1:]) / 2 / scale


def _p95_by_tier_online(ax, d, nb: int, step: int, nbins: int, mid: np.ndarray) -> None:
    """p95 latency per coarse time bin: all requests (dashed) and each tier that completed any."""
    ax.plot(mid, _coarse_p95(d, nb, 0, step, nbins), color="black", lw=1.4, ls="--", zorder=3,
            label="all")
    for k, (name, colour) in enumerate(TIER_COLOURS.items()):
        if _coarse(d.counters["completed"], nb, k + 1, step, nbins).any():
            ax.plot(mid, _coarse_p95(d, nb, k + 1, step, nbins), color=colour, marker=".",
                    label=name)


def rate_over_time_online(online, path: Path, most: int = 60) -> Path | None:
    """Arrival rate and p95 latency over time by tier, from the online time bins."""
    ts = _time_series(online, most)
    if ts is None:
        return None
    d, nb, step, nbins, edges = ts
    plt = _plt()
    width, span, scale, unit, mid = _time_axis(edges)
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
    _p95_by_tier_online(ax2, d, nb, step, nbins, mid)
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
    width, span, scale, unit, mid = _time_axis(edges)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1.4]})
    _p95_by_tier_online(ax1, d, nb, step, nbins, mid)
    ax1.set_yscale("log")
    ax1.set_ylabel("p95 latency (ms, log)")
    ax1.set_title("Faults: p95 latency, failed requests and capacity down over time")
    _fault_panels((ax1, ax2, ax3), mid, _coarse(d.counters["failed"], nb, 0, step, nbins),
                  _coarse(d.counters["failed_over"], nb, 0, step, nbins), faults, sites, span,
                  scale, unit, width)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def online_cdfs(online, columns: tuple[str, ...] = ("latency_ms", "ttft_ms")) -> dict:
    """The lines of :func:`tier_ecdfs` from the online summary's sketches (bin by bin)."""
    out: dict = {}
    for col in columns:
        lines = {}
        for i, name in enumerate(TIER_COLOURS):
            sk = online.dims["tier"].sketches[col]
            x, y = _sketch_cdf(sk, i)
            if len(x):
                lines[name] = (x, y, int(sk.total()[i]))
        sk = online.dims["all"].sketches[col]
        x, y = _sketch_cdf(sk, 0)
        if len(x):
            lines["all"] = (x, y, int(sk.total()[0]))
        out[col] = lines
    return out


def online_figures(online, sites: pd.DataFrame, folder: Path, *,
                   faults: pd.DataFrame | None = None, cities: pd.DataFrame | None = None,
                   cdfs: dict | None = None, time_varying: bool | None = None) -> list[Path]:
    """The standard figures of a run from its online summary (as ``rundir.write_figures``)."""
    from aigrid_sim.results.rundir import save_figure

    folder = Path(folder)
    cdfs = cdfs if cdfs is not None else online_cdfs(online)
    out = [save_figure(latency_cdf_by_tier(None, cdfs=cdfs), folder / "latency_cdf_by_tier.png"),
           save_figure(site_map(sites), folder / "sites_utilisation_map.png")]
    if cities is not None and len(cities):
        app = busiest_app(cities)
        out.append(save_figure(city_map(cities, metric="ttft_p95_ms", app=app),
                               folder / "cities_map.png"))
    if time_varying or (time_varying is None and is_time_varying_online(online)):
        p = rate_over_time_online(online, folder / "rate_over_time.png")
        if p is not None:
            out.append(p)
    if faults is not None and len(faults):
        p = faults_over_time_online(online, faults, sites, folder / "faults_over_time.png")
        if p is not None:
            out.append(p)
    return out
