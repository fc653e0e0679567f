"""The per-city table (cities.parquet), the maps and the plotting API (ax in, Figure out)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigrid_sim.results import cities as cmod


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.floats(-1e6, 1e6) | st.just(float("nan"))),
                min_size=0, max_size=80))
def test_group_percentiles_equal_numpy_per_group(pairs):
    """One sort for all groups gives np.percentile of each group."""
    codes = np.array([c for c, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=float)
    got = cmod.group_percentiles(codes, values, 8, (0, 50, 95, 100))
    for g in range(8):
        x = values[(codes == g) & ~np.isnan(values)] if len(pairs) else np.array([])
        want = np.percentile(x, [0, 50, 95, 100]) if len(x) else np.full(4, np.nan)
        np.testing.assert_allclose(got[:, g], want, rtol=1e-12, atol=1e-9)


def test_city_table_adds_up_to_the_summary(small_run):
    """Counts add up to summary.json; columns, order, coordinates and tier shares."""
    r = small_run
    c = r.cities
    assert list(c.columns[:len(cmod.BASE_COLUMNS)]) == list(cmod.BASE_COLUMNS)
    apps = [a.name for a in r.config.workload.apps] if hasattr(r.config.workload, "apps") \
        else list(r.summary["by_app"])
    assert set(cmod.app_columns(apps)) <= set(c.columns)
    assert len(c) == r.world.n_origins == r.summary["origins"]
    assert c["origin"].tolist() == r.world.origin_name
    np.testing.assert_allclose(c["lat"], r.world.origin_lat)
    assert c["weight"].sum() == pytest.approx(1.0)
    s = r.summary
    assert c["requests"].sum() == s["measured_requests"]
    assert c["completed"].sum() + c["rejected"].sum() + c["failed"].sum() <= c["requests"].sum()
    ended = c["completed"] + c["rejected"] + c["failed"]
    assert c["slo_met"].sum() / ended.sum() == pytest.approx(s["slo_attainment"], rel=1e-12)
    for app, block in s["by_app"].items():
        assert c[f"requests_{app}"].sum() == block["requests"]
    # Each request carries its city's place (float32, within a metre).
    where = c.set_index("origin").loc[r.requests["origin"].astype(str)]
    np.testing.assert_allclose(r.requests["origin_lat"], where["lat"], atol=1e-4)
    np.testing.assert_allclose(r.requests["origin_lon"], where["lon"], atol=1e-4)
    shares = c[["share_edge", "share_regional", "share_core"]].sum(axis=1)
    np.testing.assert_allclose(shares[c["requests"] > 0], 1.0, atol=1e-12)


def test_city_percentiles_are_those_of_the_citys_requests(small_run):
    """Each city's p50/p95 (overall and per app) and main tier, from its own requests."""
    r = small_run
    c = r.cities.set_index("origin")
    req = r.requests
    ok = req[(req["status"] == "ok") & (req["arrival_s"] >= r.config.warmup_s)]
    busiest = ok["origin"].value_counts().index[:5]
    for city in busiest:
        d = ok[ok["origin"] == city]
        assert c.loc[city, "ttft_p95_ms"] == pytest.approx(np.percentile(d["ttft_ms"], 95))
        assert c.loc[city, "latency_p50_ms"] == pytest.approx(np.percentile(d["latency_ms"], 50))
        for app, g in d.groupby("app", observed=True):
            assert c.loc[city, f"ttft_p95_ms_{app}"] == pytest.approx(
                np.percentile(g["ttft_ms"], 95))
        top = d["tier"].value_counts().idxmax()
        assert c.loc[city, "tier"] == top


def test_city_table_rejects_unknown_origins():
    """A request from a city the world does not have is an error that names it."""
    origins = pd.DataFrame({"origin": ["A"], "country": ["X"], "region": ["R"], "lat": [0.0],
                            "lon": [0.0], "population": [1.0]})
    reqs = pd.DataFrame({"arrival_s": [0.0], "origin": ["B"], "app": ["a"], "tier": ["edge"],
                         "status": ["ok"], "slo_met": [True], "ttft_ms": [1.0],
                         "latency_ms": [1.0], "network_ms": [1.0], "queue_ms": [0.0]})
    with pytest.raises(ValueError, match="'B'"):
        cmod.city_table(reqs, origins)


def test_run_folder_has_cities_map_and_report(tmp_path, small_overrides):
    """The run folder holds cities.parquet, the maps and a self-contained report.html."""
    import aigrid_sim
    from aigrid_sim.results.rundir import load_run

    r = aigrid_sim.run("global_agent", [*small_overrides, "output.figures=true"],
                       out_dir=tmp_path)
    names = {p.name for p in r.out_dir.iterdir()}
    assert {"cities.parquet", "cities_map.png", "sites_utilisation_map.png",
            "report.html"} <= names
    back = load_run(r.out_dir)
    pd.testing.assert_frame_equal(back["cities"], r.cities)
    html = (r.out_dir / "report.html").read_text()
    # plotly.js is inline: no script, style sheet or image is loaded from anywhere.
    assert "<script" in html and not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    size = (r.out_dir / "report.html").stat().st_size
    assert size < 10e6


def test_plot_functions_take_ax_and_return_the_figure(small_run, tmp_path):
    """Plot functions draw on given axes and return the Figure; the old path style still writes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aigrid_sim.results import plots

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    assert plots.city_map(small_run.cities, ax=axes[0, 0], app="voice_agent") is fig
    assert plots.site_map(small_run.sites, ax=axes[0, 1]) is fig
    assert plots.latency_cdf_by_tier(small_run.requests, ax=axes[1]) is fig
    with pytest.raises(ValueError, match="2 panels"):
        plots.latency_cdf_by_tier(small_run.requests, ax=[axes[0, 0]])
    own = plots.city_map(small_run.cities, metric="slo_attainment")
    assert isinstance(own, matplotlib.figure.Figure) and own is not fig
    plt.close("all")
    # The old call style still writes the file and returns its path.
    p = plots.latency_cdf_by_tier(small_run.requests, tmp_path / "cdf.png")
    assert p == tmp_path / "cdf.png" and p.stat().st_size > 10_000


def test_latency_cost_key_names_every_frontier_point():
    """Frontier points are numbered on the plot and named in the key."""
    import matplotlib

    matplotlib.use("Agg")
    from aigrid_sim.results import plots

    agg = pd.DataFrame({
        "config": [f"policy=p{i}, world.regional.gpus={8 * i}" for i in range(6)],
        "policy": [f"p{i % 2}" for i in range(6)],
        "latency_p95_ms": [100, 101, 102, 200, 300, 400.0],
        "cost_per_1k_requests_usd": [5, 4.9, 4.8, 3, 2, 1.0],
        "pareto": [True] * 6})
    fig = plots.latency_cost_curve(agg)
    key = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(all(c in k for c in agg["config"]) for k in key)
    numbers = [t.get_text() for t in fig.axes[0].texts]
    assert numbers == [str(i) for i in range(1, 7)]


def test_basemap_outlines_are_the_bundled_natural_earth():
    """The bundled outlines: 288 rings, 10,643 points, with their source."""
    from aigrid_sim.results import basemap

    rings = basemap.rings()
    assert len(rings) == 288 and sum(len(r) for r in rings) == 10_643
    lon, lat = basemap.outline_lonlat()
    assert len(lon) == len(lat) == 10_643 + 288
    finite = [v for v in lat if v is not None]
    assert -90 <= min(finite) and max(finite) <= 84
    assert "Natural Earth" in basemap.source()


def test_sweep_report_writes_html_with_each_configuration(tmp_path, small_overrides):
    """aigrid-sim-report writes report.html naming every configuration."""
    import aigrid_sim
    from aigrid_sim.results import report

    for policy in ("cheapest_feasible", "centralised"):
        aigrid_sim.run("global_agent", [*small_overrides, f"policy={policy}", "duration_s=5"],
                       out_dir=tmp_path)
    rep = report.write_report(tmp_path)
    html = (tmp_path / "report" / "report.html").read_text()
    for label in rep["by_config"]["config"]:
        assert json.dumps(label)[1:-1] in html
    assert (tmp_path / "report" / "latency_cost.png").stat().st_size > 10_000


def test_html_city_map_keeps_the_busiest_cities_beyond_the_cap(small_run, monkeypatch):
    """A world with more cities than the page holds draws the busiest ones and says so."""
    from aigrid_sim.results import html

    monkeypatch.setattr(html, "MAX_CITY_MARKERS", 100)
    fig = html.city_figure(small_run.cities)
    drawn = sum(len(t["x"]) for t in fig["data"] if t.get("meta") == "cities")
    assert drawn == 100
    page = html.run_html(small_run.requests, small_run.sites, small_run.cities,
                         small_run.summary)
    assert f"The 100 cities with the most requests, of {len(small_run.cities):,}" in page
