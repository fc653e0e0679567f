"""Nearest-place searches on the sphere with a k-d tree (``scipy.spatial.cKDTree``).

Places become 3-D unit vectors; the straight-line (chord) distance between two unit vectors
grows with the great-circle distance, so the k nearest by chord are the k nearest on the
globe. A query asks the tree for a few more neighbours than needed, recomputes their distances
with the haversine of :func:`aigrid_sim.world.geo.great_circle_km` and sorts by (distance, index):
the answer is exactly that of a brute-force stable sort of the full distance matrix, at
O(n log n) instead of O(queries x places) time and memory.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from aigrid_sim.world.geo import great_circle_km

#: Neighbours asked of the tree beyond ``k``: room for ties and chord/haversine round-off.
_EXTRA = 4


def unit_vectors(lat, lon) -> np.ndarray:
    """Unit vectors, shape (n, 3), of points given in degrees."""
    la, lo = np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float))
    c = np.cos(la)
    return np.column_stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)])


class SphereIndex:
    """A k-d tree over places on the globe.

    Args:
        lat: Latitudes of the places, degrees.
        lon: Longitudes of the places, degrees.
    """

    def __init__(self, lat, lon):
        self.lat = np.asarray(lat, dtype=float)
        self.lon = np.asarray(lon, dtype=float)
        self.n = len(self.lat)
        self._tree = cKDTree(unit_vectors(self.lat, self.lon)) if self.n else None

    def nearest(self, lat, lon, k: int, *, exclude: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest places to each query point, nearest first (ties: lower index).

        Args:
            lat: Latitudes of the query points, degrees (1-D).
            lon: Longitudes of the query points, degrees.
            k: Places per query (at most the number of places, less one with ``exclude``).
            exclude: Optional place index per query to leave out (a place's own index when the
                queries are the places themselves).

        Returns:
            ``(index, km)``, both of shape (queries, k): place indices and great-circle
            distances, sorted by distance then index.
        """
        lat = np.asarray(lat, dtype=float)
        lon = np.asarray(lon, dtype=float)
        avail = self.n - (exclude is not None)
        if k > avail or k < 0:
            raise ValueError(f"k={k} but only {avail} places can be returned")
        if k == 0 or len(lat) == 0:
            return np.zeros((len(lat), 0), np.int64), np.zeros((len(lat), 0))
        kk = min(self.n, k + _EXTRA + (exclude is not None))
        _, idx = self._tree.query(unit_vectors(lat, lon), kk)
        idx = np.asarray(idx, dtype=np.int64).reshape(len(lat), kk)
        km = great_circle_km(lat[:, None], lon[:, None], self.lat[idx], self.lon[idx])
        if exclude is not None:
            km = np.where(idx == np.asarray(exclude)[:, None], np.inf, km)
        order = np.lexsort((idx, km), axis=-1)[:, :k]
        return np.take_along_axis(idx, order, 1), np.take_along_axis(km, order, 1)
