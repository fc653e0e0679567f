"""Interactive HTML reports: one self-contained file per run or sweep, drawn with plotly.

A report opens in any browser with no network: plotly.js is inlined once (4.8 MB), the
maps are plain longitude/latitude axes with the bundled Natural Earth country outlines drawn as
one line trace (:mod:`aigrid_sim.results.basemap`; no topojson, no tiles, no CDN), and there is
no hand-written JavaScript, only plotly figures and a few lines of HTML and CSS.

What a run's report holds (``report.html`` in the run folder):

* the summary (requests, SLO met, latency, cost);
* the city map: one marker per origin city (``cities.parquet``), coloured by p95 time to first
  token of the busiest app (buttons switch to all apps pooled and to SLO met), sized by share
  of demand, with city, country, requests, p50/p95 TTFT and latency, SLO met and serving tier
  mix on hover;
* the site map: one marker per site, sized by GPUs, coloured by utilisation (log scale);
* the latency and TTFT CDFs per tier.

To stay small, nothing is drawn per request: maps use the per-city and per-site tables, and
each CDF line is thinned to at most :data:`CDF_POINTS` order statistics evenly spaced in rank
(exact at every vertex, :func:`aigrid_sim.results.plots.ecdf`). The default run's report is
about 6 MB, of which 4.8 MB is plotly.js.

A sweep's report (``aigrid-sim-report``) holds the latency-cost frontier (one point per
configuration; its swept parameters, seeds, SLO met and rejections on hover) and the latency
CDF per configuration.

Figures are built as plain plotly figure dicts and serialised without plotly's per-element
validation (which costs seconds on 6,000 hover texts); plotly is imported only when a report
is written.
"""

from __future__ import annotations

import html as _html
import math

import numpy as np
import pandas as pd

#: Points per CDF line (order statistics evenly spaced in rank).
CDF_POINTS = 400

#: Most cities drawn on the interactive map (about 0.2 kB each): a world with more keeps the
#: cities with the most requests, and the page says so; every city stays in cities.parquet.
MAX_CITY_MARKERS = 20_000

TIER_COLOURS = {"edge": "#2a9d8f", "regional": "#e9c46a", "core": "#e76f51"}
TIER_SYMBOLS = {"edge": "circle", "regional": "square", "core": "star"}
SEA, LAND_LINE = "#dfeaf2", "#8c8c8c"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 1.2em 2em;
       color: #222; max-width: 1250px; }
h1 { font-size: 1.45em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
p.note { color: #555; font-size: 0.9em; margin-top: 0.2em; }
table.summary { border-collapse: collapse; font-size: 0.9em; }
table.summary td, table.summary th { padding: 3px 10px; border-bottom: 1px solid #ddd;
       text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
"""


def _scatter(**kw) -> dict:
    """A plotly scatter trace as a plain dict (SVG, not WebGL: draws without a GPU)."""
    return {"type": "scatter", **kw}


def _r(values, decimals: int) -> list:
    """Numbers rounded for the page (JSON text): 0.01 ms or 1e-5 of a CDF is plenty."""
    return [None if v != v else v for v in np.round(np.asarray(values, float), decimals).tolist()]


def _scale(name: str) -> list:
    """A named plotly.py colour scale as explicit stops (plotly.js knows only a few by name)."""
    import plotly.colors as pc

    for module in (pc.sequential, pc.diverging):
        colours = getattr(module, name, None)
        if colours:
            return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]
    raise ValueError(f"unknown colour scale {name!r}")


def _figure(data: list[dict], layout: dict) -> dict:
    # plotly.js's own defaults, no plotly.py template: loading one costs 0.3 s of imports.
    return {"data": data, "layout": {"font": {"family": "Helvetica, Arial, sans-serif"},
                                     **layout}}


# ----------------------------------------------------------------------------- building blocks


def _basemap_trace():
    from aigrid_sim.results import basemap

    lon, lat = basemap.outline_lonlat()
    return _scatter(x=lon, y=lat, mode="lines", line={"color": LAND_LINE, "width": 0.6},
                    hoverinfo="skip", showlegend=False, name="countries")


def _map_layout(title: str, height: int = 560) -> dict:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}},
        "height": height, "margin": {"l": 40, "r": 20, "t": 60, "b": 40},
        "plot_bgcolor": SEA, "paper_bgcolor": "white",
        "xaxis": {"range": [-180, 180], "showgrid": False, "zeroline": False,
                  "title": "longitude", "constrain": "domain"},
        "yaxis": {"range": [-58, 78], "showgrid": False, "zeroline": False,
                  "title": "latitude", "scaleanchor": "x", "scaleratio": 1},
        "legend": {"orientation": "h", "y": -0.12},
        "hoverlabel": {"align": "left"},
    }


def _log_colorbar(title: str, lo: float, hi: float, fmt) -> dict:
    """A colour bar for colours given as log10(value): ticks at 1-2-5 steps, labelled plainly."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1,
                                          math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo <= t <= hi] or [lo, hi]
    return {"title": {"text": title, "side": "right"}, "tickvals": [math.log10(t) for t in ticks],
            "ticktext": [fmt(t) for t in ticks], "len": 0.85}


def _ms(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"


def _pct(v: float) -> str:
    return f"{100 * v:.3g} %"


def _text(v, fmt="{:,.0f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _div(fig: dict, first: bool) -> str:
    """A figure as an HTML ``<div>``; the first one of a page carries plotly.js inline."""
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=first, config=PLOTLY_CONFIG,
                       default_width="100%", validate=False)


def _page(title: str, sections: list[tuple[str, str, str]], intro: str = "", *,
          maps: bool = True) -> str:
    """A whole HTML document: title, intro, then ``(heading, note, body)`` sections."""
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
             f"<title>{_html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_html.escape(title)}</h1>", intro]
    for heading, note, body in sections:
        parts.append(f"<h2>{_html.escape(heading)}</h2>")
        if note:
            parts.append(f"<p class='note'>{note}</p>")
        parts.append(body)
    parts.append("<p class='note'>Made by aigrid-sim. "
                 + ("Country outlines: Natural Earth 1:110m (public domain). " if maps else "")
                 + "Charts: plotly.js, inlined; the file needs no network.</p></body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- run figures


def busiest_app(cities: pd.DataFrame) -> str | None:
    """The app with the most requests in a cities table (None without per-app columns)."""
    apps = {c[len("requests_"):]: cities[c].sum() for c in cities.columns
            if c.startswith("requests_")}
    return max(apps, key=apps.get) if apps else None


def city_figure(cities: pd.DataFrame, sites: pd.DataFrame | None = None):
    """The city map: one marker per city, coloured by p95 TTFT, hover with the city's numbers.

    Cities with no completed request are one grey trace, so every city has exactly one marker.
    Buttons switch the colour between the busiest app's p95 TTFT, all apps' p95 TTFT and the
    share of requests meeting their SLO. Beyond :data:`MAX_CITY_MARKERS` cities, only the
    busiest are drawn.
    """
    if len(cities) > MAX_CITY_MARKERS:
        cities = cities.nlargest(MAX_CITY_MARKERS, "requests", keep="first")
    app = busiest_app(cities)
    col_app = f"ttft_p95_ms_{app}" if app else "ttft_p95_ms"
    v_app = cities[col_app].to_numpy(float)
    have = np.isfinite(v_app) & (v_app > 0)
    c = cities[have]
    nod = cities[~have]
    w = cities["weight"].to_numpy(float)
    size = 3 + 14 * np.sqrt(w / max(float(w.max()), 1e-12))

    def hover(d: pd.DataFrame) -> dict:
        """Hover of city markers: numbers in one float array, name and tier mix as text.

        The float array is sent compactly (base64) and formatted by plotly; the name goes in
        ``text`` and the serving tier mix in ``hovertext``.
        """
        shares = d[["share_edge", "share_regional", "share_core"]].to_numpy(float)
        mix = [" / ".join(f"{t} {100 * s:.0f} %" for t, s in zip(
                   ("edge", "regional", "core"), row, strict=True) if s == s and s > 0.005)
               or "none" for row in shares.tolist()]
        nan = np.full(len(d), np.nan)
        data = np.column_stack([
            d["requests"], 100 * d["slo_attainment"].to_numpy(float),
            d["ttft_p50_ms"], d["ttft_p95_ms"], d["latency_p50_ms"], d["latency_p95_ms"],
            d[f"ttft_p50_ms_{app}"] if app else nan, d[col_app],
            d["network_p50_ms"], d["queue_p95_ms"]]).astype(float).round(1)  # short JSON
        name = ("<b>" + d["origin"].astype(str) + "</b> " + d["country"].astype(str)).tolist()
        tpl = ("%{text}<br>%{customdata[0]:,} requests, SLO met %{customdata[1]:.1f} %<br>"
               + (f"{app} TTFT p50 / p95: %{{customdata[6]:,.0f}} / %{{customdata[7]:,.0f}} ms"
                  "<br>" if app else "")
               + "TTFT p50 / p95 (all apps): %{customdata[2]:,.0f} / %{customdata[3]:,.0f} ms<br>"
               "latency p50 / p95: %{customdata[4]:,.0f} / %{customdata[5]:,.0f} ms<br>"
               "network p50 %{customdata[8]:,.0f} ms, queue p95 %{customdata[9]:,.0f} ms<br>"
               "served by %{hovertext}<extra></extra>")
        return {"customdata": data, "text": name, "hovertext": mix, "hovertemplate": tpl}

    colours = {
        f"p95 TTFT, {app}" if app else "p95 TTFT": np.log10(c[col_app].to_numpy(float)),
        "p95 TTFT, all apps": np.log10(np.maximum(c["ttft_p95_ms"].to_numpy(float), 1e-3)),
        "SLO met": c["slo_attainment"].to_numpy(float),
    }
    bars = {}
    for name, v in colours.items():
        if name == "SLO met":
            bars[name] = ({"title": {"text": "SLO met", "side": "right"}, "tickformat": ".0%",
                           "len": 0.85}, 0.0, 1.0, _scale("RdYlGn"), False)
        else:
            lo, hi = np.nanpercentile(v, [1, 99.5]) if len(v) else (0.0, 1.0)
            bars[name] = (_log_colorbar(f"{name} (ms)", 10 ** lo, 10 ** hi, _ms), lo, hi,
                          _scale("Magma"), True)
    first = next(iter(colours))
    bar, lo, hi, scale, rev = bars[first]
    h = hover(c)
    traces = [_basemap_trace()]
    if sites is not None:
        traces.append(_scatter(
            x=sites["lon"], y=sites["lat"], mode="markers", name="sites",
            marker={"symbol": [TIER_SYMBOLS.get(t, "circle") + "-open" for t in sites["tier"]],
                    "size": 6, "color": "#444", "line": {"width": 0.8}},
            hovertext=sites["site"], hoverinfo="text", visible="legendonly"))
    order = np.argsort(colours[first], kind="stable")  # worst drawn last, on top
    traces.append(_scatter(
        x=_r(c["lon"].to_numpy()[order], 3), y=_r(c["lat"].to_numpy()[order], 3), mode="markers",
        name=f"cities ({len(c):,})",
        marker={"color": _r(colours[first][order], 4), "colorscale": scale,
                "reversescale": rev, "cmin": lo, "cmax": hi, "size": _r(size[have][order], 1),
                "colorbar": bar,
                "line": {"width": 0}, "opacity": 0.9},
        customdata=h["customdata"][order], text=[h["text"][i] for i in order],
        hovertext=[h["hovertext"][i] for i in order], hovertemplate=h["hovertemplate"],
        meta="cities"))
    city_trace = len(traces) - 1
    if len(nod):
        traces.append(_scatter(
            x=nod["lon"], y=nod["lat"], mode="markers", name=f"no completed request ({len(nod)})",
            marker={"color": "#9e9e9e", "symbol": "x-thin-open", "size": 6, "line": {"width": 1}},
            **hover(nod), meta="cities"))
    buttons = []
    for name, v in colours.items():
        bar, lo, hi, scale, rev = bars[name]
        buttons.append({"label": name, "method": "restyle", "args": [
            {"marker.color": [_r(v[order], 4)], "marker.cmin": lo, "marker.cmax": hi,
             "marker.colorscale": scale, "marker.reversescale": rev, "marker.colorbar": bar},
            [city_trace]]})
    layout = _map_layout(f"{len(cities):,} cities: what their users get (size = share of "
                         "demand; hover for details)", 600)
    layout["updatemenus"] = [{"buttons": buttons, "type": "buttons", "direction": "right",
                              "x": 1.0, "xanchor": "right", "y": 1.085, "yanchor": "top",
                              "showactive": True, "font": {"size": 11}}]
    return _figure(traces, layout)


def site_figure(sites: pd.DataFrame):
    """The site map: one marker per site, sized by GPUs, coloured by utilisation (log scale)."""
    from aigrid_sim.results.plots import UTIL_RANGE

    traces = [_basemap_trace()]
    lo, hi = (math.log10(x) for x in UTIL_RANGE)
    bar = _log_colorbar("utilisation", UTIL_RANGE[0], UTIL_RANGE[1], _pct)
    for tier in ("edge", "regional", "core"):
        s = sites[sites["tier"] == tier]
        if s.empty:
            continue
        u = s["utilisation"].to_numpy(float)
        size = {"edge": 5, "regional": 8, "core": 13}[tier] + 2 * np.sqrt(
            np.maximum(s["gpus"].to_numpy(float), 1.0))
        data = np.column_stack([
            s["site"].astype(str), s["country"].fillna("").astype(str),
            s["gpus"].map("{:,}".format), s.get("gpu", pd.Series([""] * len(s))).astype(str),
            s.get("model", pd.Series([""] * len(s))).astype(str),
            [f"{100 * x:.2f} %" for x in u], s["requests"].map("{:,}".format),
            [f"${x:,.2f}" for x in s["cost_usd"]]]).astype(object)
        traces.append(_scatter(
            x=s["lon"], y=s["lat"], mode="markers", name=f"{tier} ({len(s)} sites, "
                                                         f"{int(s['gpus'].sum()):,} GPUs)",
            marker={"symbol": TIER_SYMBOLS[tier], "size": size,
                    "color": np.log10(np.clip(u, *UTIL_RANGE)), "cmin": lo, "cmax": hi,
                    "colorscale": _scale("Plasma"), "colorbar": bar if tier == "edge" else None,
                    "showscale": tier == "edge", "line": {"width": 0.5, "color": "black"}},
            customdata=data.tolist(), meta="sites",
            hovertemplate=("<b>%{customdata[0]}</b> %{customdata[1]} (" + tier + ")<br>"
                           "%{customdata[2]} x %{customdata[3]}, %{customdata[4]}<br>"
                           "utilisation %{customdata[5]}<br>%{customdata[6]} requests, "
                           "cost %{customdata[7]}<extra></extra>")))
    return _figure(traces, _map_layout("Sites: size = GPUs, colour = utilisation (log scale; "
                                       "idle sites at the bottom of the scale)"))


def cdf_figure(reqs: pd.DataFrame | None, *, cdfs: dict | None = None) -> dict:
    """Latency and TTFT CDFs of completed requests, per tier and all (thinned lines).

    ``cdfs`` are the lines of :func:`aigrid_sim.results.plots.tier_ecdfs` (computed from
    ``reqs`` when None).
    """
    from aigrid_sim.results.plots import tier_ecdfs

    cdfs = cdfs if cdfs is not None else tier_ecdfs(reqs, CDF_POINTS)
    traces = []
    for col_i, col in enumerate(("latency_ms", "ttft_ms"), 1):
        lines = cdfs.get(col, {})
        for name, colour in [*TIER_COLOURS.items(), ("all", "black")]:
            if name not in lines:
                continue
            x, f, n = lines[name]
            traces.append(_scatter(
                x=_r(x, 2), y=_r(f, 5), mode="lines", name=f"{name} (n={n:,})",
                xaxis=f"x{col_i}", yaxis="y", legendgroup=name, showlegend=col_i == 1,
                line={"color": colour, "width": 1.5, "dash": "dash" if name == "all" else "solid"},
                hovertemplate=f"{name}: %{{y:.1%}} of requests within %{{x:,.0f}} ms"
                              "<extra></extra>"))
    axis = {"type": "log", "title": {"text": "ms, log scale"}}
    layout = {
        "height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.22}, "hovermode": "closest",
        "xaxis": {**axis, "domain": [0.0, 0.48]},
        "xaxis2": {**axis, "domain": [0.52, 1.0]},
        "yaxis": {"title": {"text": "fraction of completed requests"}, "range": [0, 1.01]},
        "annotations": [
            {"text": t, "x": x, "y": 1.06, "xref": "paper", "yref": "paper", "showarrow": False,
             "font": {"size": 14}}
            for t, x in (("End-to-end latency", 0.24), ("Time to first token", 0.76))],
    }
    for t in traces:  # plotly names the first x axis "x", not "x1"
        t["xaxis"] = "x" if t["xaxis"] == "x1" else t["xaxis"]
    return _figure(traces, layout)


def _summary_table(summary: dict) -> str:
    lat, tt = summary.get("latency_ms") or {}, summary.get("ttft_ms") or {}
    rows = [("all", summary.get("requests"), summary.get("slo_attainment"), lat, tt,
             summary.get("utilisation"), summary.get("cost_usd"))]
    for tier, b in (summary.get("by_tier") or {}).items():
        rows.append((tier, b.get("requests"), b.get("slo_attainment"), b.get("latency_ms") or {},
                     b.get("ttft_ms") or {}, b.get("utilisation"), b.get("cost_usd")))
    head = ("<table class='summary'><tr><th></th><th>requests</th><th>SLO met</th>"
            "<th>latency p50</th><th>p95</th><th>TTFT p50</th><th>p95</th><th>utilisation</th>"
            "<th>cost $</th></tr>")
    body = "".join(
        f"<tr><td>{_html.escape(str(n))}</td><td>{_text(r)}</td>"
        f"<td>{_text(None if s is None else 100 * s, '{:.1f} %')}</td>"
        f"<td>{_text(la.get('p50'))}</td><td>{_text(la.get('p95'))}</td>"
        f"<td>{_text(t.get('p50'), '{:,.1f}')}</td><td>{_text(t.get('p95'))}</td>"
        f"<td>{_text(None if u is None else 100 * u, '{:.1f} %')}</td>"
        f"<td>{_text(c, '{:,.2f}')}</td></tr>"
        for n, r, s, la, t, u, c in rows)
    per1k = summary.get("cost_per_1k_requests_usd")
    return head + body + "</table>" + (
        f"<p class='note'>${per1k:.3f} per 1,000 completed requests; latency in ms.</p>"
        if per1k is not None else "")


def run_html(reqs: pd.DataFrame | None, sites: pd.DataFrame, cities: pd.DataFrame,
             summary: dict, *, title: str | None = None, cdfs: dict | None = None) -> str:
    """The HTML text of a run's interactive report (module docstring).

    ``cdfs``: the latency lines (:func:`aigrid_sim.results.plots.tier_ecdfs`), when the caller
    has them already; otherwise computed from ``reqs``.
    """
    from aigrid_sim.results.plots import tier_ecdfs

    cdfs = cdfs if cdfs is not None else tier_ecdfs(reqs, CDF_POINTS)
    title = title or (f"aigrid-sim: {summary.get('scenario', 'run')}, policy="
                      f"{summary.get('policy', '?')}, seed={summary.get('seed', '?')}")
    sections = [
        ("Summary", "", _summary_table(summary)),
        ("Cities", ("One marker per origin city (cities.parquet). " if len(cities)
                    <= MAX_CITY_MARKERS else
                    f"The {MAX_CITY_MARKERS:,} cities with the most requests, of "
                    f"{len(cities):,} (all are in cities.parquet). ")
         + "Buttons switch the colour; the legend shows the sites too. Drag to zoom, "
           "double-click to reset.",
         _div(city_figure(cities, sites), True)),
        ("Sites", "One marker per site (sites.parquet).", _div(site_figure(sites), False)),
        ("Latency", "Each line is thinned to at most "
                    f"{max((len(v[0]) for c in cdfs.values() for v in c.values()), default=0):,} "
                    "order statistics, evenly spaced in rank (exact at every point).",
         _div(cdf_figure(None, cdfs=cdfs), False)),
    ]
    return _page(title, sections)


# ----------------------------------------------------------------------------- sweep figures


def frontier_figure(agg: pd.DataFrame, *, x: str = "latency_p95_ms",
                    y: str = "cost_per_1k_requests_usd", xlabel: str = "p95 latency (ms)",
                    colour_by: str | None = "policy", front: str = "pareto",
                    params: list[str] | None = None):
    """Cost per 1,000 requests against latency, one point per configuration, Pareto frontier.

    Hover shows each point's configuration (its swept parameters), seeds, SLO met, rejections
    and the confidence half-widths.
    """
    traces = []
    groups = list(dict.fromkeys(agg[colour_by])) if colour_by and colour_by in agg else [None]
    params = [p for p in (params or []) if p in agg.columns]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    for i, g in enumerate(groups):
        d = agg if g is None else agg[agg[colour_by] == g]
        lines = []
        for r in d.to_dict("records"):
            t = [f"<b>{_html.escape(str(r['config']))}</b>"]
            t += [f"{p} = {_html.escape(str(r[p]))}" for p in params]
            t.append(f"{xlabel}: {_text(r.get(x))}" + (
                f" ± {_text(r.get(x + '_ci'))}" if _finite(r.get(x + "_ci")) else ""))
            t.append(f"$ per 1,000 requests: {_text(r.get(y), '{:.3f}')}" + (
                f" ± {_text(r.get(y + '_ci'), '{:.3f}')}" if _finite(r.get(y + "_ci")) else ""))
            if "slo_attainment" in r:
                t.append(f"SLO met: {_text(100 * r['slo_attainment'], '{:.1f} %')}")
            if "reject_rate" in r:
                t.append(f"rejected: {_text(100 * r['reject_rate'], '{:.2f} %')}")
            t.append(f"seeds: {r.get('seeds', 1)}" + (", on the Pareto frontier"
                                                      if r.get(front) else ""))
            lines.append("<br>".join(t))
        err = {}
        for axis, col in (("error_x", x), ("error_y", y)):
            if f"{col}_ci" in d:
                err[axis] = {"type": "data", "array": np.nan_to_num(d[f"{col}_ci"].to_numpy(
                    float)), "visible": True, "thickness": 1}
        traces.append(_scatter(
            x=d[x], y=d[y], mode="markers", name=str(g) if g is not None else "configurations",
            marker={"size": 10, "color": palette[i % len(palette)],
                    "line": {"width": [2 if f else 0 for f in d[front]], "color": "black"}},
            hovertext=lines, hoverinfo="text", **err))
    f = agg[agg[front]].sort_values(x)
    if len(f):
        traces.append(_scatter(x=f[x], y=f[y], mode="lines",
                               line={"shape": "hv", "color": "black"},
                               name="Pareto frontier", hoverinfo="skip"))
    return _figure(traces, {
        "height": 520, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "title": {"text": "Latency-cost trade-off (lower left is better; hover a point for its "
                          "configuration)", "x": 0.01},
        "xaxis": {"type": "log", "title": {"text": f"{xlabel}, log scale"}},
        "yaxis": {"title": {"text": "cost per 1,000 completed requests ($)"}}})


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def group_cdf_figure(samples: dict, xlabel: str = "end-to-end latency"):
    """Latency CDF per configuration (seeds pooled), thinned lines."""
    from aigrid_sim.results.plots import ecdf

    traces = []
    for label, values in samples.items():
        x, f = ecdf(values, CDF_POINTS)
        if len(x):
            traces.append(_scatter(x=_r(x, 2), y=_r(f, 5), mode="lines", name=str(label),
                                     hovertemplate=f"{_html.escape(str(label))}: %{{y:.1%}} "
                                                   "within %{x:,.0f} ms<extra></extra>"))
    return _figure(traces, {
        "height": 460, "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "legend": {"font": {"size": 10}},
        "xaxis": {"type": "log", "title": {"text": f"{xlabel} (ms, log scale)"}},
        "yaxis": {"title": {"text": "fraction of completed requests"}, "range": [0, 1.01]}})


def sweep_html(agg: pd.DataFrame, samples: dict, *, n_runs: int, params: list[str],
               x: str = "latency_p95_ms", xlabel: str = "p95 latency (ms)",
               cdf_label: str = "end-to-end latency", title: str | None = None) -> str:
    """The HTML text of a sweep's interactive report (module docstring)."""
    title = title or f"aigrid-sim sweep: {len(agg)} configurations, {n_runs} runs"
    colour_by = "policy" if "policy" in agg.columns else None
    sections = [
        ("Latency-cost frontier", "One point per configuration (mean across seeds, bars = 95 % "
                                  "confidence half-widths); black ring and line = Pareto frontier.",
         _div(frontier_figure(agg, x=x, xlabel=xlabel, colour_by=colour_by, params=params),
              True)),
        ("Latency by configuration", f"Completed requests, seeds pooled (at most 20,000 values "
                                     f"per run), each line thinned to {CDF_POINTS} points.",
         _div(group_cdf_figure(samples, cdf_label), False)),
    ]
    return _page(title, sections, maps=False)
