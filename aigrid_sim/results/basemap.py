"""Country outlines for the maps, from the bundled Natural Earth 1:110m countries (no network).

``aigrid_sim/data/ne_110m_countries.json`` is Natural Earth's public-domain 1:110m admin-0
countries (177 countries, 288 rings, 10,643 points), made by ``scripts/make_coastlines.py``.
Maps are drawn in plain longitude/latitude (equirectangular), so the outlines are lines on
ordinary axes: matplotlib draws them as one collection, plotly as one line trace.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

DATA_FILE = "ne_110m_countries.json"
LAND = "#f1efe9"
BORDER = "#9a9a9a"


@functools.cache
def _load() -> dict:
    with resources.files("aigrid_sim").joinpath(f"data/{DATA_FILE}").open(
            "r", encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def rings() -> tuple[np.ndarray, ...]:
    """Every outline ring as an ``(n, 2)`` array of (lon, lat) degrees, closed."""
    return tuple(np.asarray(r, float).reshape(-1, 2) / 100.0
                 for c in _load()["countries"] for r in c["rings"])


@functools.cache
def outline_lonlat() -> tuple[list, list]:
    """All rings as two flat lists with ``None`` between rings (one plotly line trace)."""
    lon: list = []
    lat: list = []
    for r in rings():
        lon += r[:, 0].round(2).tolist() + [None]
        lat += r[:, 1].round(2).tolist() + [None]
    return lon, lat


def source() -> str:
    """Where the outlines come from (for captions and credits)."""
    return _load()["source"]


def draw(ax, *, land: str = LAND, border: str = BORDER, lw: float = 0.4) -> None:
    """Land filled and country borders drawn on a matplotlib lon/lat ``ax``, under the data."""
    from matplotlib.collections import PolyCollection

    ax.add_collection(PolyCollection(rings(), facecolors=land, edgecolors=border,
                                     linewidths=lw, zorder=0))
    ax.set_facecolor("#dfeaf2")  # sea


def frame(ax, *, lat: tuple[float, float] = (-58, 78)) -> None:
    """World extent, equal degrees on both axes, light graticule."""
    ax.set_xlim(-180, 180)
    ax.set_ylim(*lat)
    ax.set_aspect("equal")
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-60, 61, 30))
    ax.tick_params(labelsize=7, colors="#555555")
    ax.grid(alpha=0.25, lw=0.5)
