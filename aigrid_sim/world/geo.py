"""Coordinates, great-circle distance and the two round-trip-time (RTT) models.

This module owns every network-latency number the simulator derives from geography. Everything is
vectorised over numpy arrays with broadcasting (scalars work too). :func:`estimate_rtt_ms` has two
kinds of path:

* ``path="internet"`` (below): a user, or any host on the public Internet, to a server;
* ``path="backbone"`` (:class:`BackboneModel`): between data-centre sites on a cloud/CDN private
  backbone, with no access terms and no Internet hubs.

Internet path
-------------

The Internet RTT model is fitted on measured Internet RTTs (WonderProxy, July 2020) by
``scripts/fit_rtt.py``, which writes ``aigrid_sim/data/rtt_params.json``; that file is read once,
lazily. For places a and b in countries A and B, with ``floor`` = :func:`fibre_floor_ms` (light in
fibre on the great circle)::

    path = great circle a -> b, except that a side whose country has a hub detours through it:
           a -> hub(A) -> hub(B) -> b, capped at max_detour x the great circle
    infl = max(1, infl_3000km + infl_log_slope * ln(path / 3000 km))
    RTT  = max(floor(a, b), infl * floor(path) + access(A) + access(B))

Hubs are real interconnection cities (Frankfurt, Miami, Tokyo...) through which a country reaches
either everything abroad or only other regions (``hub_for``; Asia and Oceania count as one
region). They produce the long tail of detours, e.g. Nairobi-Dar es Salaam through Europe.
``access`` is a country's fixed overhead: last mile, congestion, and international bottlenecks no
hub explains; within one country only ``min(access, domestic_access_ms)`` applies, since domestic
traffic skips the international part. Countries absent from the measurements take their
continent's fitted access and hub. A place without a usable code gets the no-code access term and
no hub; when neither place has one, an inflation curve fitted without country information is used.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np

EARTH_RADIUS_KM = 6371.0088
#: Light in fibre covers about 200 km per millisecond (refractive index ~1.47), one way.
FIBRE_KM_PER_MS = 199.86

_DATA = Path(__file__).resolve().parents[1] / "data"
PARAMS_PATH = _DATA / "rtt_params.json"
BACKBONE_PARAMS_PATH = _DATA / "backbone_params.json"
#: ``path`` values of :func:`estimate_rtt_ms`.
PATHS = ("internet", "backbone")
#: Continent codes of ``world_countries.csv`` with fitted fallback parameters.
CONTINENTS = ("AF", "AS", "EU", "NA", "OC", "SA")
#: Region of each continent for hubs that serve "other regions" only: Asia and Oceania form one
#: region (Asia-Pacific) because their traffic to each other rarely detours through the US.
REGION = np.array([0, 1, 2, 3, 1, 4])
_N_CODES = 26 * 26  # slot of every "AA".."ZZ" code; one more slot for missing/unknown codes
_UNKNOWN = _N_CODES
#: Paths shorter than this use the inflation of this length (the log would diverge).
_MIN_PATH_KM = 10.0


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle (haversine) distance in km between points given in degrees; broadcasts."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def fibre_floor_ms(distance_km) -> np.ndarray:
    """Round-trip time of light in fibre along the great circle: the floor no path can beat."""
    return 2.0 * np.asarray(distance_km, dtype=float) / FIBRE_KM_PER_MS


def code_index(codes) -> np.ndarray | int:
    """Map ISO 3166-1 alpha-2 codes to slots 0..675 ("AA".."ZZ"), anything else to 676.

    Works on scalars and arrays of str or object (None, NaN, "", "USA" all become "unknown")
    without a Python-level loop, so millions of codes take milliseconds.

    Args:
        codes: None, a code, or an array-like of codes (case-insensitive).

    Returns:
        An int for None or a scalar code, else an int array of the input's shape.
    """
    if codes is None:
        return _UNKNOWN
    arr = np.asarray(codes)
    if arr.dtype.kind not in "U":
        arr = arr.astype(str)  # None -> "None", nan -> "nan": both invalid below
    # Three UCS-4 characters per code: a valid code has two letters and nothing after them.
    chars = np.ascontiguousarray(arr, dtype="<U3").reshape(-1).view(np.uint32).reshape(-1, 3)
    chars = chars.astype(np.int64)
    chars[:, :2] -= 32 * ((chars[:, :2] >= 97) & (chars[:, :2] <= 122))  # lower -> upper case
    c0, c1 = chars[:, 0] - 65, chars[:, 1] - 65
    valid = (c0 >= 0) & (c0 < 26) & (c1 >= 0) & (c1 < 26) & (chars[:, 2] == 0)
    idx = np.where(valid, c0 * 26 + c1, _UNKNOWN).reshape(arr.shape)
    return int(idx) if idx.ndim == 0 else idx


class RttModel:
    """The fitted RTT model as lookup tables indexed by :func:`code_index` slots.

    Args:
        params: The content of ``rtt_params.json`` (see ``scripts/fit_rtt.py``).
    """

    def __init__(self, params: dict):
        self.params = params
        self.infl = (float(params["infl_3000km"]), float(params["infl_log_slope"]))
        self.max_detour = float(params["max_detour"])
        self.domestic_access = float(params["domestic_access_ms"])
        nc = params["no_codes"]
        self.infl_no_codes = (float(nc["infl_3000km"]), float(nc["infl_log_slope"]))
        n = _N_CODES + 1
        # Unknown slots (no code, not an ISO code, Antarctica) keep the no-code access and no hub.
        self.access = np.full(n, float(nc["access_ms"]))
        hub_lat, hub_lon = np.full(n, np.nan), np.full(n, np.nan)
        self.has_entry = np.zeros(n, dtype=bool)
        self.hub_abroad = np.zeros(n, dtype=bool)  # False: hub only towards other regions
        self.region = np.full(n, -1)
        for iso2, cont in country_continents().items():
            entry = params["countries"].get(iso2) or params["continents"].get(cont)
            if entry is None:
                continue
            i = code_index(iso2)
            self.has_entry[i] = True
            self.region[i] = REGION[CONTINENTS.index(cont)]
            self.access[i] = entry["access_ms"]
            if entry["hub"] is not None:
                hub_lat[i], hub_lon[i] = params["hubs"][entry["hub"]]
                self.hub_abroad[i] = entry["hub_for"] == "abroad"
        self.hub_xyz = unit_xyz(hub_lat, hub_lon)  # NaN rows: no hub

    def __call__(self, lat1, lon1, lat2, lon2, country1=None, country2=None) -> np.ndarray:
        """Estimate RTTs in ms; same contract as :func:`estimate_rtt_ms`."""
        # The floor comes from exactly the call a user would make, so the clip holds bit for bit.
        direct_km = great_circle_km(lat1, lon1, lat2, lon2)
        i1, i2 = code_index(country1), code_index(country2)
        lat1, lon1, lat2, lon2, i1, i2, direct_km = np.broadcast_arrays(
            lat1, lon1, lat2, lon2, i1, i2, direct_km)
        abroad = i1 != i2
        other = self.region[i1] != self.region[i2]
        # A side detours through its hub for pairs abroad that its hub_for covers.
        hub1 = np.where(abroad & (self.hub_abroad[i1] | other), self.hub_xyz[:, i1], np.nan)
        hub2 = np.where(abroad & (self.hub_abroad[i2] | other), self.hub_xyz[:, i2], np.nan)
        if np.isnan(hub1[0]).all() and np.isnan(hub2[0]).all():
            path_km = direct_km  # nothing detours: skip the unit vectors
        else:
            path_km = routed_path_km(unit_xyz(lat1, lon1), unit_xyz(lat2, lon2), hub1, hub2,
                                     direct_km, self.max_detour)
        # Two places without usable codes: the curve fitted without any country information.
        blind = ~self.has_entry[i1] & ~self.has_entry[i2]
        infl = [np.where(blind, nc, c) for c, nc in zip(self.infl, self.infl_no_codes, strict=True)]
        a1, a2 = self.access[i1], self.access[i2]
        # Within one country only the domestic share of the access term applies: the rest is
        # the international bottleneck (e.g. China's border, West Africa's submarine cables).
        domestic = ~abroad & self.has_entry[i1]
        access_sum = np.where(domestic, 2 * np.minimum(a1, self.domestic_access), a1 + a2)
        rtt = predict_ms(direct_km, path_km, access_sum, *infl)
        return rtt if rtt.ndim else rtt[()]


def unit_xyz(lat, lon) -> np.ndarray:
    """Unit vectors (stacked on a new first axis of length 3) of points given in degrees."""
    la, lo = np.radians(lat), np.radians(lon)
    c = np.cos(la)
    return np.stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)])


def _chord_km(p, q):
    # Great circle from the chord between unit vectors: a third of the haversine's cost.
    chord = np.sqrt(((p - q) ** 2).sum(axis=0))
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord / 2, 1.0))


def routed_path_km(p1, p2, hub1, hub2, direct_km, max_detour=np.inf) -> np.ndarray:
    """Length of the path p1 -> hub1 -> hub2 -> p2, where a NaN hub means "no detour there".

    Args:
        p1: Unit vectors (:func:`unit_xyz`) of the first places, shape (3, ...).
        p2: Unit vectors of the second places.
        hub1: Unit vectors of the first places' hubs, NaN where that side goes direct.
        hub2: Same for the second places.
        direct_km: Great-circle distances p1 -> p2, returned where neither side detours.
        max_detour: Cap on the path as a multiple of ``direct_km``.

    Returns:
        Path lengths in km, shaped like ``direct_km``.
    """
    r1, r2 = ~np.isnan(hub1[0]), ~np.isnan(hub2[0])
    g1 = np.where(r1, hub1, p1)
    g2 = np.where(r2, hub2, p2)
    legs = _chord_km(p1, g1) + _chord_km(g1, g2) + _chord_km(g2, p2)
    return np.where(r1 | r2, np.minimum(legs, max_detour * direct_km), direct_km)


def predict_ms(direct_km, path_km, access_sum, infl_3000km, infl_log_slope):
    """Core RTT formula shared by the model and the fit (see the module docstring).

    Args:
        direct_km: Great-circle distance between the two places.
        path_km: Length of the routed path (>= ``direct_km``).
        access_sum: Sum of the two places' access terms, ms.
        infl_3000km: Path inflation at 3,000 km.
        infl_log_slope: Change of the inflation per e-fold of path length.

    Returns:
        RTT in ms, never below the fibre floor of ``direct_km``.
    """
    # Short paths wiggle more relative to their length (metro rings, regional backhaul).
    log_len = np.log(np.maximum(path_km, _MIN_PATH_KM) / 3000.0)
    infl = np.maximum(1.0, infl_3000km + infl_log_slope * log_len)
    rtt = infl * fibre_floor_ms(path_km) + access_sum
    return np.maximum(fibre_floor_ms(direct_km), rtt)


@functools.cache
def country_continents() -> dict[str, str]:
    """ISO alpha-2 code -> continent code (AF, AN, AS, EU, NA, OC, SA), from world_countries.csv."""
    with open(_DATA / "world_countries.csv", newline="", encoding="utf-8") as f:
        return {row["iso2"]: row["continent_code"] for row in csv.DictReader(f)}


@functools.cache
def default_model() -> RttModel:
    """The model of the shipped ``rtt_params.json``, built on first use and cached."""
    return RttModel(json.loads(PARAMS_PATH.read_text(encoding="utf-8")))


class BackboneModel:
    """RTT between data-centre sites over a private cloud/CDN backbone (``path="backbone"``).

    Fitted by ``scripts/fit_backbone.py`` on the measured round trips between AWS regions
    (cloudping.co p50 over a year, ``cloud_rtt_aws.csv``), written to ``backbone_params.json``.
    For sites a and b::

        path = great circle a -> b, except between two backbone regions (continents), where
               each side leaves its region through that region's gateway, if it has one:
               a -> gateway(A) -> gateway(B) -> b (capped at max_detour x the great circle)
        hops = 1 + number of gateways passed
        infl = max(1, infl_3000km + infl_log_slope * ln(path / 3000 km))
        RTT  = max(floor(a, b), infl * floor(path) + hop_ms * hops)

    A site's backbone region is its country's continent (``world_countries.csv``), except the
    few countries in ``region_overrides`` whose long-haul cables land elsewhere (Israel's land in
    Europe). Gateways are fitted per continent among the cable-landing / interconnection cities
    of :data:`aigrid_sim.world.rtt_fit.HUBS`: they are where long-haul traffic leaves a continent
    on the backbone (Cape Town reaches Asia through Europe), not where the public Internet of a
    country detours. Sites without a usable country code take the great circle, no gateway.

    Args:
        params: The content of ``backbone_params.json``.
    """

    def __init__(self, params: dict):
        self.params = params
        self.infl = (float(params["infl_3000km"]), float(params["infl_log_slope"]))
        self.hop_ms = float(params["hop_ms"])
        self.max_detour = float(params["max_detour"])
        conts = list(params["gateways"])
        n = _N_CODES + 1
        self.region = np.full(n, -1)  # -1: unknown (no gateway, never "other region")
        overrides = params.get("region_overrides", {})
        for iso2, cont in country_continents().items():
            cont = overrides.get(iso2, cont)
            if cont in conts:
                self.region[code_index(iso2)] = conts.index(cont)
        gw_lat = [params["gateways"][c][0] if params["gateways"][c] else np.nan for c in conts]
        gw_lon = [params["gateways"][c][1] if params["gateways"][c] else np.nan for c in conts]
        # One extra NaN column: the "gateway" of unknown places.
        self.gw_xyz = unit_xyz(np.r_[gw_lat, np.nan], np.r_[gw_lon, np.nan])

    def __call__(self, lat1, lon1, lat2, lon2, country1=None, country2=None) -> np.ndarray:
        """Estimate backbone RTTs in ms; same contract as :func:`estimate_rtt_ms`."""
        direct_km = great_circle_km(lat1, lon1, lat2, lon2)
        r1, r2 = self.region[code_index(country1)], self.region[code_index(country2)]
        lat1, lon1, lat2, lon2, r1, r2, direct_km = np.broadcast_arrays(
            lat1, lon1, lat2, lon2, r1, r2, direct_km)
        cross = (r1 != r2) & (r1 >= 0) & (r2 >= 0)
        g1 = np.where(cross, self.gw_xyz[:, r1], np.nan)
        g2 = np.where(cross, self.gw_xyz[:, r2], np.nan)
        if np.isnan(g1[0]).all() and np.isnan(g2[0]).all():
            path_km, hops = direct_km, 1.0
        else:
            path_km = routed_path_km(unit_xyz(lat1, lon1), unit_xyz(lat2, lon2), g1, g2,
                                     direct_km, self.max_detour)
            hops = 1.0 + ~np.isnan(g1[0]) + ~np.isnan(g2[0])
        rtt = predict_ms(direct_km, path_km, self.hop_ms * hops, *self.infl)
        return rtt if rtt.ndim else rtt[()]


@functools.cache
def default_backbone() -> BackboneModel:
    """The model of the shipped ``backbone_params.json``, built on first use and cached."""
    return BackboneModel(json.loads(BACKBONE_PARAMS_PATH.read_text(encoding="utf-8")))


def estimate_rtt_ms(lat1, lon1, lat2, lon2, country1=None, country2=None,
                    path: str = "internet") -> np.ndarray:
    """Estimate the round-trip time in ms between two places (vectorised, broadcasts).

    Args:
        lat1: Latitude of the first place(s), degrees.
        lon1: Longitude of the first place(s), degrees.
        lat2: Latitude of the second place(s), degrees.
        lon2: Longitude of the second place(s), degrees.
        country1: Optional ISO 3166-1 alpha-2 code(s) of the first place(s).
        country2: Optional ISO 3166-1 alpha-2 code(s) of the second place(s).
        path: ``"internet"`` (public Internet, e.g. a user to a PoP: the WonderProxy fit with
            access terms and hubs) or ``"backbone"`` (between data-centre sites on a private
            backbone: :class:`BackboneModel`).

    Returns:
        Round-trip time in milliseconds, never below :func:`fibre_floor_ms` of the distance.
        Without codes the estimate is coarser (Internet: no per-country access terms or hubs;
        backbone: no continental gateways).

    Raises:
        ValueError: an unknown ``path``.
    """
    if path == "internet":
        return default_model()(lat1, lon1, lat2, lon2, country1, country2)
    if path == "backbone":
        return default_backbone()(lat1, lon1, lat2, lon2, country1, country2)
    raise ValueError(f"path must be one of {PATHS}, got {path!r}")
