"""Round trips between origins and sites, and each origin's nearest sites, at any world size.

A user enters the grid at one of its attachment PoPs ``a_j`` (round trip ``m_j``) and then
follows the shortest path on the latency graph, so its round trip to site ``s`` is::

    rtt(o, s) = min_j  m_j + D(a_j, s)          D = shortest-path RTT on the graph

Small worlds keep ``rtt`` as a dense origins x sites matrix (:attr:`World.rtt_ms` is then an
``ndarray``), computed once from the all-pairs matrix ``D``. That costs n_o(origins x sites)
memory and n_o(sites^2) shortest paths: 1.45 GB and minutes at 34,000 cities and 5,000 PoPs.
Big worlds use :class:`SparseRtt` instead, which answers the same two questions -- the round
trip of one (origin, site) pair, and each origin's k nearest sites among a set -- exactly, while
computing only the shortest paths they need:

- sites of small groups (a tier, or a capability within a tier, with at most
  :data:`COLUMN_SITES_MAX` sites: the regional and core tiers) get their column ``D(., s)``
  from one Dijkstra run each;
- for the big groups (thousands of PoPs), a Dijkstra run from each attachment PoP stops at a
  radius ``L_a`` chosen so that it settles at least k sites of the group. Since
  ``rtt(o, s) > m_j + L_{a_j}`` for every site beyond the radius of ``a_j``, the sites found
  within ``B_o = min_j (m_j + L_{a_j})`` include the k nearest, and their round trips are exact;
- any other pair (a policy that looks far away) is answered from a full Dijkstra run from the
  origin's attachment PoPs, cached.

Both forms give the same candidates; the round trips agree to the last bit or two (a path's
length summed from either end).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

#: Sites of a group (tier x capability) this small get an exact column of shortest paths each.
COLUMN_SITES_MAX = 256
#: Dijkstra runs from this many sources at a time (bounds the dense scratch array).
_CHUNK = 256
#: Up to this many origins x small-group sites, their round trips are kept as one matrix.
_COLUMNS_CELLS_MAX = 8_000_000


def nearest_dense(rtt: np.ndarray, sites: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per origin (row of ``rtt``): up to ``k`` of ``sites`` ordered by round trip.

    Returns:
        ``(index, rtt_ms)``, shape (origins, min(k, len(sites))).
    """
    sites = np.asarray(sites, dtype=np.int64)
    if len(sites) == 0:
        return np.zeros((rtt.shape[0], 0), np.int64), np.zeros((rtt.shape[0], 0))
    k = min(k, len(sites))
    sub = rtt[:, sites]
    part = np.argpartition(sub, k - 1, axis=1)[:, :k] if k < len(sites) else \
        np.broadcast_to(np.arange(len(sites)), sub.shape)
    order = np.take_along_axis(part, np.argsort(np.take_along_axis(sub, part, 1), 1,
                                                kind="stable"), 1)
    return sites[order], np.take_along_axis(sub, order, 1)


def graph_csr(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> sp.csr_array:
    """Symmetric sparse adjacency of ``n`` nodes with edges ``a[i] - b[i]`` of weight ``w[i]``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    w = np.asarray(w, dtype=float)
    return sp.coo_array((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()


class SparseRtt:
    """Origin x site round trips without the dense matrix (see the module docstring).

    Looks like the dense matrix where the engine and policies use it: ``item(o, s)`` (one pair,
    a dict lookup), ``rtt[origins, sites]`` (vectorised) and ``shape``.

    Args:
        adj: Symmetric sparse adjacency of the latency graph, RTT in ms (:func:`graph_csr`).
        attach_site: Origins x p: the PoPs each origin enters the grid through.
        attach_ms: Origins x p: the round trip to each.
        group: Per site, a group label (tier x capability); small groups get exact columns.
    """

    def __init__(self, adj: sp.csr_array, attach_site: np.ndarray, attach_ms: np.ndarray,
                 group: np.ndarray):
        self._adj = adj
        self._att = np.asarray(attach_site, dtype=np.int64)
        self._att_ms = np.asarray(attach_ms, dtype=float)
        self._group = np.asarray(group)
        n_o, S = self._att.shape[0], adj.shape[0]
        self.shape = (n_o, S)
        self.ndim = 2
        self._n_sites = S
        _, inv, counts = np.unique(self._group, return_inverse=True, return_counts=True)
        self._is_col = counts[inv.reshape(-1)] <= COLUMN_SITES_MAX
        self._att_list = self._att.tolist()
        self._att_ms_list = self._att_ms.tolist()
        self._reset()

    def _reset(self) -> None:
        self._sssp: dict[int, np.ndarray] = {}  # site -> shortest paths from it to every site
        self._near: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # src -> nodes, d, L
        self._cand: dict[tuple[bytes, int], tuple[np.ndarray, np.ndarray]] = {}
        self._far: dict[tuple[bytes, int], tuple[np.ndarray, np.ndarray]] = {}
        self._colmat: np.ndarray | None = None  # origins x every small-group site
        # Round trips known so far, keyed by origin x n_sites + site: every candidate list's,
        # and pairs asked for one by one.
        self._pairs: dict[int, float] = {}

    def copy(self) -> SparseRtt:
        """An independent copy (same graph; fresh caches), for a run that changes the network."""
        new = object.__new__(SparseRtt)
        new.__dict__.update(self.__dict__)
        new._adj = self._adj.copy()
        new._reset()
        return new

    def set_graph(self, adj: sp.csr_array) -> None:
        """The latency graph changed (a link cut or restored): forget everything derived."""
        self._adj = adj
        self._reset()

    # ------------------------------------------------------------------ single pairs
    def _from(self, s: int) -> np.ndarray:
        """Shortest-path RTT from site ``s`` to every site (one Dijkstra run, cached)."""
        d = self._sssp.get(s)
        if d is None:
            d = self._sssp[s] = dijkstra(self._adj, directed=False, indices=s)
        return d

    def _exact(self, o: int, s: int) -> float:
        att, ms = self._att_list[o], self._att_ms_list[o]
        if self._is_col[s]:
            col = self._from(s)
            return min(m + col.item(a) for a, m in zip(att, ms, strict=True))
        return min(m + self._from(a).item(s) for a, m in zip(att, ms, strict=True))

    def item(self, o: int, s: int) -> float:
        """Round trip from origin ``o`` to site ``s``, ms (what ``ndarray.item`` gives)."""
        try:  # the per-request path: one dict lookup
            return self._pairs[o * self._n_sites + s]
        except KeyError:
            v = self._pairs[o * self._n_sites + s] = self._exact(o, s)
            return v

    def __getitem__(self, key) -> np.ndarray:
        o, s = key
        o = np.asarray(o, dtype=np.int64)
        s = np.asarray(s, dtype=np.int64)
        o, s = np.broadcast_arrays(o, s)
        flat = o.ravel() * self.shape[1] + s.ravel()
        uniq, inv = np.unique(flat, return_inverse=True)
        S = self.shape[1]
        vals = np.array([self.item(k // S, k % S) for k in uniq.tolist()], dtype=float)
        return vals[inv.reshape(-1)].reshape(o.shape)

    # ------------------------------------------------------------------ nearest sites
    def _column_rtt(self, sites: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Exact round trips (origins[rows] x sites) by the column formula."""
        cols = np.column_stack([self._from(int(s)) for s in sites]) if len(sites) else \
            np.zeros((self.shape[1], 0))
        att, ms = self._att[rows], self._att_ms[rows]
        out = ms[:, 0, None] + cols[att[:, 0]]
        for j in range(1, att.shape[1]):
            np.minimum(out, ms[:, j, None] + cols[att[:, j]], out=out)
        return out

    def nearest(self, sites: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per origin: the ``k`` sites of ``sites`` with the lowest round trip, nearest first.

        Returns:
            ``(index, rtt_ms)``, shape (origins, min(k, len(sites))).
        """
        sites = np.unique(np.asarray(sites, dtype=np.int64))
        key = (sites.tobytes(), k)
        hit = self._cand.get(key)
        if hit is not None:
            return hit
        n_o = self.shape[0]
        k = min(k, len(sites))
        if k == 0:
            return np.zeros((n_o, 0), np.int64), np.zeros((n_o, 0))
        col = sites[self._is_col[sites]]
        far = sites[~self._is_col[sites]]
        parts = []
        if len(col):
            every = np.flatnonzero(self._is_col)
            if n_o * len(every) <= _COLUMNS_CELLS_MAX:  # one matrix for every small group
                if self._colmat is None:
                    self._colmat = self._column_rtt(every)
                ci, cv = nearest_dense(self._colmat, np.searchsorted(every, col), k)
                parts.append((every[ci], cv))
            else:
                step = max(1, 4_000_000 // max(1, len(col)))
                idx, val = [], []
                for i in range(0, n_o, step):
                    r = self._column_rtt(col, slice(i, i + step))
                    ci, cv = nearest_dense(r, np.arange(len(col)), k)
                    idx.append(col[ci])
                    val.append(cv)
                parts.append((np.concatenate(idx), np.concatenate(val)))
        if len(far):
            fkey = (far.tobytes(), k)
            hit = self._far.get(fkey)
            if hit is None:
                hit = self._far[fkey] = self._nearest_far(far, k)
            parts.append(hit)
        if len(parts) == 1:
            idx, val = parts[0]
        else:  # the k best of the two, by (rtt, site)
            idx = np.concatenate([p[0] for p in parts], axis=1)
            val = np.concatenate([p[1] for p in parts], axis=1)
            order = np.lexsort((idx, val), axis=-1)[:, :k]
            idx, val = np.take_along_axis(idx, order, 1), np.take_along_axis(val, order, 1)
        idx = np.ascontiguousarray(idx)
        val = np.ascontiguousarray(val)
        self._cand[key] = (idx, val)
        keys = np.arange(n_o)[:, None] * self._n_sites + idx
        self._pairs.update(zip(keys.ravel().tolist(), val.ravel().tolist(), strict=True))
        return idx, val

    def _grow(self, sources: np.ndarray, far: np.ndarray, k: int) -> None:
        """Run bounded Dijkstra from ``sources`` until each settles ``k`` sites of ``far``."""
        in_far = np.zeros(self.shape[1], dtype=bool)
        in_far[far] = True
        todo: dict[int, float] = {}  # source -> radius to search next
        for a in sources.tolist():
            got = self._near.get(a)
            if got is None:
                todo[a] = 0.0
            elif np.isfinite(got[2]) and in_far[got[0]].sum() < k:
                todo[a] = 2.0 * got[2]
        if not todo:
            return
        # First radius: from a few full runs, the distance at which a source settles 2k + 1 of
        # the group (upper quartile); sources that settle fewer search twice as far.
        fresh = [a for a, r in todo.items() if r == 0.0]
        if fresh:
            probe = np.asarray(fresh)[np.linspace(0, len(fresh) - 1,
                                                  min(16, len(fresh))).astype(int)]
            radius = [np.sort(self._from(a)[far])[min(len(far) - 1, 2 * k)]
                      for a in probe.tolist()]
            first = float(np.quantile(radius, 0.75)) * (1 + 1e-9) + 1e-9
            todo.update({a: first for a in fresh})
        while todo:
            nxt: dict[int, float] = {}
            for limit in sorted(set(todo.values())):
                group = np.array([a for a, r in todo.items() if r == limit], dtype=np.int64)
                for i in range(0, len(group), _CHUNK):
                    src = group[i:i + _CHUNK]
                    d = dijkstra(self._adj, directed=False, indices=src, limit=limit)
                    fin = np.isfinite(d)
                    complete = fin.all(axis=1)
                    short = ~complete & ((fin & in_far).sum(axis=1) < k)
                    rows, cols = np.nonzero(fin)
                    cut = np.searchsorted(rows, np.arange(len(src) + 1))
                    vals = d[rows, cols]
                    for row, a in enumerate(src.tolist()):
                        lo, hi = cut[row], cut[row + 1]
                        self._near[a] = (cols[lo:hi], vals[lo:hi],
                                         np.inf if complete[row] else limit)
                    nxt.update((a, 2.0 * limit) for a in src[short].tolist())
            todo = nxt

    def _nearest_far(self, far: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of ``far`` (a big group) per origin, from bounded searches."""
        n_o, p = self._att.shape
        k = min(k, len(far))
        self._grow(np.unique(self._att), far, k)
        in_far = np.zeros(self.shape[1], dtype=bool)
        in_far[far] = True
        src = np.unique(self._att)
        pos = np.full(self.shape[1], -1, dtype=np.int64)
        pos[src] = np.arange(len(src))
        nodes, dists, lims = [], [], np.empty(len(src))
        for i, a in enumerate(src.tolist()):
            n, d, lim = self._near[a]
            keep = in_far[n]
            n, d = n[keep], d[keep]
            if len(d) > k:  # the radius of the k-th site is enough: every site within it is here
                lim = np.partition(d, k - 1)[k - 1]
                keep = d <= lim
                n, d = n[keep], d[keep]
            nodes.append(n)
            dists.append(d)
            lims[i] = lim
        lens = np.array([len(n) for n in nodes], dtype=np.int64)
        ptr = np.r_[0, np.cumsum(lens)]
        node, dist = np.concatenate(nodes), np.concatenate(dists)
        bound = np.min(self._att_ms + lims[pos[self._att]], axis=1)  # B_o
        oo, ss, vv = [], [], []
        for j in range(p):
            r = pos[self._att[:, j]]
            n = lens[r]
            total = int(n.sum())
            first = np.repeat(ptr[r] - np.r_[0, np.cumsum(n)[:-1]], n)
            e = first + np.arange(total)
            o = np.repeat(np.arange(n_o), n)
            v = self._att_ms[o, j] + dist[e]
            keep = v <= bound[o]
            oo.append(o[keep])
            ss.append(node[e][keep])
            vv.append(v[keep])
        o, s, v = np.concatenate(oo), np.concatenate(ss), np.concatenate(vv)
        # One value per (origin, site): the best entry point.
        S = self.shape[1]
        pair = o * S + s
        order = np.argsort(pair, kind="stable")
        pair, v = pair[order], v[order]
        start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        v = np.minimum.reduceat(v, start)
        o, s = pair[start] // S, pair[start] % S
        # Per origin, by round trip then site index: the k first.
        order = np.argsort(v, kind="stable")
        order = order[np.argsort(o[order], kind="stable")]
        o, s, v = o[order], s[order], v[order]
        first = np.searchsorted(o, np.arange(n_o))
        rank = np.arange(len(o)) - first[o]
        keep = rank < k
        o, s, v, rank = o[keep], s[keep], v[keep], rank[keep]
        if np.bincount(o, minlength=n_o).min() < k:  # cannot happen: every source settled k
            raise RuntimeError("nearest-site search found fewer than k sites for an origin")
        idx = np.empty((n_o, k), dtype=np.int64)
        val = np.empty((n_o, k))
        idx[o, rank] = s
        val[o, rank] = v
        return idx, val
