"""Coordinates, great-circle distance and the round-trip-time model.

Everything here is vectorised over numpy arrays (scalars work too). The round-trip-time model is
propagation in fibre over the great-circle distance, times a path-inflation factor, plus a fixed
term; it never returns less than the speed-of-light-in-fibre floor.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088
#: Light in fibre covers about 200 km per millisecond (refractive index ~1.47), one way.
FIBRE_KM_PER_MS = 199.86

# First-cut parameters; refitted on measured RTTs by scripts/fit_rtt.py.
_INFLATION = 1.5
_BASE_MS = 4.0


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


def estimate_rtt_ms(lat1, lon1, lat2, lon2, country1=None, country2=None) -> np.ndarray:
    """Estimate the round-trip time in ms between two places (vectorised, broadcasts).

    Args:
        lat1: Latitude of the first place(s), degrees.
        lon1: Longitude of the first place(s), degrees.
        lat2: Latitude of the second place(s), degrees.
        lon2: Longitude of the second place(s), degrees.
        country1: Optional ISO 3166-1 alpha-2 code(s) of the first place(s).
        country2: Optional ISO 3166-1 alpha-2 code(s) of the second place(s).

    Returns:
        Round-trip time in milliseconds, never below :func:`fibre_floor_ms` of the distance.
    """
    d = great_circle_km(lat1, lon1, lat2, lon2)
    floor = fibre_floor_ms(d)
    return np.maximum(floor, _BASE_MS + _INFLATION * floor)
