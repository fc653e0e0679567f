"""The run's interactive HTML report, opened in a real headless browser with the network off.

Chromium comes from the Debian packages (``apt-get install chromium``, done by ``.ci/run``) and
is driven by Playwright. The page must draw with zero console errors and zero network requests
beyond the file itself, and the city map must hold exactly one marker per row of
``cities.parquet``. A screenshot is kept in ``tests/artifacts/`` (gitignored).

Without Chromium the test skips, saying so, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# Markers drawn in the SVG for the traces whose ``meta`` is the given tag (d3 binds each trace
# group <g class="trace"> to its trace), and the number of points in those traces' data.
COUNT = """([plot, meta]) => {
    const gd = document.querySelectorAll('.js-plotly-plot')[plot];
    let points = 0, data = 0;
    gd.querySelectorAll('g.scatterlayer > g.trace').forEach(g => {
        const t = g.__data__ && g.__data__[0] && g.__data__[0].trace;
        if (t && t.meta === meta) points += g.querySelectorAll('path.point').length; });
    gd.data.forEach(t => { if (t.meta === meta) data += t.x.length; });
    return [points, data];
}"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (skip, or fail under CI, when missing)."""
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = ("no Chromium on PATH (apt-get install chromium)" if exe is None else
               "the playwright package is not installed" if sync_playwright is None else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {missing}")
        pytest.skip(f"browser test skipped: {missing}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder of the default scenario, shortened, with its figures and report."""
    import aigrid_sim

    # The default scenario, shortened: every one of its 6,204 cities is on the map.
    r = aigrid_sim.run("global_agent", ["duration_s=20", "warmup_s=0", "output.figures=true"],
                       out_dir=tmp_path_factory.mktemp("html"))
    return r.out_dir


def _open(browser, path: Path, name: str):
    """Open ``path`` offline; returns (page, console errors, non-file requests)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file:"):
            return r.continue_()
        requests.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    return page, errors, requests


def test_run_report_draws_offline_with_one_marker_per_city(browser, run_folder):
    """The run report: < 10 MB, no console error, no request, one marker per city and site."""
    html = run_folder / "report.html"
    size_mb = html.stat().st_size / 1e6
    assert size_mb < 10, f"report.html is {size_mb:.1f} MB"
    cities = pd.read_parquet(run_folder / "cities.parquet")
    sites = pd.read_parquet(run_folder / "sites.parquet")
    page, errors, requests = _open(browser, html, "run_report.png")
    assert errors == []
    assert requests == []
    plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
    assert plots == 3  # city map, site map, CDFs
    # Markers drawn in the SVG of the traces that hold cities (plotly keeps one <g class=trace>
    # per trace, in data order), and the data behind them.
    drawn = page.evaluate(COUNT, [0, "cities"])
    assert drawn == [len(cities), len(cities)]
    drawn_sites = page.evaluate(COUNT, [1, "sites"])
    assert drawn_sites == [len(sites), len(sites)]
    # Hover text carries the city's numbers: the first city marker's hover names a city.
    first = page.evaluate("""() => {
        const gd = document.querySelectorAll('.js-plotly-plot')[0];
        const t = gd.data.find(t => t.meta === 'cities');
        return t.text[0].replace(/<[^>]+>/g, "").trim();
    }""")
    names = zip(cities["origin"], cities["country"], strict=True)
    assert first in {f"{o} {c}".strip() for o, c in names}


def test_sweep_report_draws_offline(browser, run_folder, tmp_path):
    """The sweep report of two runs: frontier and CDFs, offline, no console error."""
    import aigrid_sim
    from aigrid_sim.results import report

    root = tmp_path / "sweep"
    for policy in ("cheapest_feasible", "centralised"):
        aigrid_sim.run("global_agent", ["duration_s=10", f"policy={policy}",
                                        "output.figures=false"], out_dir=root)
    rep = report.write_report(root)
    html = root / "report" / "report.html"
    assert html in rep["files"]
    page, errors, requests = _open(browser, html, "sweep_report.png")
    assert errors == [] and requests == []
    n = page.evaluate("""() => document.querySelectorAll('.js-plotly-plot')[0]
        .querySelectorAll('g.scatterlayer g.trace path.point').length""")
    assert n == 2  # one point per configuration
