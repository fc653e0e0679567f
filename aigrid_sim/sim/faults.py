"""Faults: site outages (whole or partial), link cuts and random failures, and their injection.

Three parts, kept apart:

* **Construction** -- :func:`build_schedule` resolves the ``faults:`` config against a world: which
  sites each outage selects (a site, a metro, a country, a tier), random per-tier failures drawn
  from the run seed (exponential up and down times), and link cuts checked against the latency
  graph. Overlapping outages of one site are merged into a piecewise-constant count of replicas
  lost, so the engine sees one capacity change per boundary. The result is a
  :class:`FaultSchedule` with a table of every interval (written as ``faults.parquet``).
* **Network** -- :func:`cut_link` / :func:`restore_link` change a private copy of the world's
  latency matrices in place, recomputing only what changed: a cut re-runs Dijkstra only from the
  sites on one side of the pairs whose shortest path used the link
  (``d[x,u] + w + d[v,y] == d[x,y]``) and only the origins entering the grid where distances
  changed; a restored link can only shorten paths, which is exact in one vectorised step.
* **Injection** -- :func:`inject` is the SimPy process that applies the schedule to an engine at
  the right times; :func:`health_checks` copies the true state of the sites into what policies
  see every ``detection_s`` seconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import dijkstra

from aigrid_sim import rng as rngs
from aigrid_sim.config import TIERS, FaultsConfig
from aigrid_sim.errors import ConfigError
from aigrid_sim.world.build import CONTINENTS, Tier, World, read_data
from aigrid_sim.world.geo import great_circle_km

if TYPE_CHECKING:
    from aigrid_sim.sim.engine import Engine

# Relative tolerance for "this pair's shortest path used the link" (float sums of RTTs).
_TOL = 1e-9

TABLE_COLUMNS = ["kind", "target", "tier", "region", "start_s", "end_s", "gpus_lost", "gpus",
                 "source"]


class Change(IntEnum):
    """What a timeline entry does."""

    CAPACITY = 0  # a site's lost replicas change (payload: site, replicas lost)
    CUT = 1  # a link is cut (payload: site a, site b)
    RESTORE = 2  # a cut link is restored


@dataclass
class FaultSchedule:
    """Every fault of a run, resolved against its world.

    Attributes:
        timeline: ``(time_s, Change, x, y)`` sorted by time: for ``CAPACITY`` x is the site and y
            the replicas it has lost from then on (0 = fully up again); for ``CUT``/``RESTORE``
            x and y are the link's sites.
        table: One row per interval (see :data:`TABLE_COLUMNS`): ``kind`` is ``site`` (whole or
            partial outage; ``gpus_lost`` of ``gpus``) or ``link``; ``region`` is the continent
            of the site (of both ends for a link, joined by ``|``); times clipped to the horizon.
        detection_s: Health-check period (0 = policies see failures at once).
        passive_detection: A request that fails at a dead site marks it down for policies at
            once (as a load balancer ejects an endpoint on a connection error); it is seen up
            again at the next health check after its repair.
        retries: Fail-overs allowed per request.
        retry_delay_s: Back-off before a caught request is sent again.
    """

    timeline: list[tuple[float, Change, int, int]] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TABLE_COLUMNS))
    detection_s: float = 0.0
    passive_detection: bool = False
    retries: int = 2
    retry_delay_s: float = 0.0

    @property
    def active(self) -> bool:
        """Whether anything fails during the run."""
        return bool(self.timeline)

    @property
    def has_links(self) -> bool:
        """Whether the network changes during the run."""
        return any(c != Change.CAPACITY for _, c, _, _ in self.timeline)


# ----------------------------------------------------------------------------- construction


def site_regions(world: World) -> list[str]:
    """The continent of each site (as in ``World.origin_region``; ``Unknown`` if no country)."""
    cont = read_data("world_countries.csv").set_index("iso2").continent_code.to_dict()
    return [CONTINENTS.get(cont.get(c, ""), "Unknown") if c else "Unknown"
            for c in world.site_country]


def _select(o, i: int, world: World) -> np.ndarray:
    key = f"faults.outages[{i}]"
    mask = np.ones(world.n_sites, dtype=bool)
    if o.site is not None:
        if o.site not in world.site_id:
            raise ConfigError(f"key '{key}.site': unknown site {o.site!r}; site ids look like "
                              f"{', '.join(world.site_id[:3])} (see sites.parquet of a run)")
        mask &= np.arange(world.n_sites) == world.site_id.index(o.site)
    if o.metro is not None:
        if o.metro in world.origin_name:
            j = world.origin_name.index(o.metro)
            lat, lon = world.origin_lat[j], world.origin_lon[j]
        elif o.metro in world.site_id:
            j = world.site_id.index(o.metro)
            lat, lon = world.site_lat[j], world.site_lon[j]
        else:
            raise ConfigError(f"key '{key}.metro': {o.metro!r} is neither a city of this world "
                              f"nor a site id")
        mask &= great_circle_km(lat, lon, world.site_lat, world.site_lon) <= o.radius_km
    if o.country is not None:
        mask &= np.array([c == o.country for c in world.site_country])
    if o.tier is not None:
        mask &= world.site_tier == int(Tier[o.tier.upper()])
    if not mask.any():
        raise ConfigError(f"key '{key}': selects no site of this world")
    return np.flatnonzero(mask)


def _end(start: float, duration: float | None, horizon: float) -> float:
    return horizon if duration is None else min(start + duration, horizon)


def build_schedule(cfg: FaultsConfig, world: World, seed: int, horizon_s: float
                   ) -> FaultSchedule:
    """Resolve the ``faults:`` config against ``world`` for a run ending at ``horizon_s``.

    Raises:
        ConfigError: an unknown site, city or link, an outage that selects no site, or link
            cuts that would cut the latency graph in two.
    """
    S = world.n_sites
    replicas = [world.replicas(s) for s in range(S)]
    raw: list[list[tuple[float, float, int, str]]] = [[] for _ in range(S)]
    for i, o in enumerate(cfg.outages):
        if o.start_s >= horizon_s:
            continue
        end = _end(o.start_s, o.duration_s, horizon_s)
        for s in _select(o, i, world):
            r = replicas[s]
            lost = r if o.fraction >= 1 else min(r, max(1, round(o.fraction * r)))
            raw[s].append((o.start_s, end, lost, f"outages[{i}]"))
    for tier in TIERS:
        tc = getattr(cfg.random, tier)
        if tc.mtbf_s is None:
            continue
        for s in np.flatnonzero(world.site_tier == int(Tier[tier.upper()])):
            g = rngs.generator(seed, f"faults/random/{world.site_id[s]}")
            t = float(g.exponential(tc.mtbf_s))
            while t < horizon_s:
                d = float(g.exponential(tc.mttr_s))
                raw[s].append((t, min(t + d, horizon_s), replicas[s], "random"))
                t += d + float(g.exponential(tc.mtbf_s))

    regions = site_regions(world)
    timeline: list[tuple[float, Change, int, int]] = []
    rows: list[dict] = []
    gpus_per = [world.site_deployment[s].gpus_per_replica for s in range(S)]
    for s in range(S):
        if not raw[s]:
            continue
        cuts = sorted({t for a, b, _, _ in raw[s] for t in (a, b)})
        prev, seg = 0, None
        for t in cuts:
            lost = min(replicas[s], sum(n for a, b, n, _ in raw[s] if a <= t < b))
            if lost == prev:
                continue
            timeline.append((t, Change.CAPACITY, int(s), int(lost)))
            if seg is not None:
                rows.append({**seg, "end_s": t})
            seg = None if lost == 0 else {
                "kind": "site", "target": world.site_id[s], "tier": Tier(world.site_tier[s]).label,
                "region": regions[s], "start_s": t, "gpus_lost": lost * gpus_per[s],
                "gpus": int(world.site_gpus[s]),
                "source": ",".join(sorted({src for a, b, _, src in raw[s] if a <= t < b}))}
            prev = lost
        if seg is not None:
            rows.append({**seg, "end_s": horizon_s})

    links: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    for i, lk in enumerate(cfg.links):
        key = f"faults.links[{i}]"
        ends = []
        for side, sid in (("a", lk.a), ("b", lk.b)):
            if sid not in world.site_id:
                raise ConfigError(f"key '{key}.{side}': unknown site {sid!r}")
            ends.append(world.site_id.index(sid))
        a, b = min(ends), max(ends)
        if not world.graph.has_edge(a, b):
            nbrs = sorted(world.site_id[n] for n in world.graph.neighbors(ends[0]))
            raise ConfigError(f"key '{key}': {lk.a!r} and {lk.b!r} are not linked; "
                              f"{lk.a!r} links to {nbrs}")
        if lk.start_s < horizon_s:
            links.setdefault((a, b), []).append(
                (lk.start_s, _end(lk.start_s, lk.duration_s, horizon_s), f"links[{i}]"))
    if links:
        g = world.graph.copy()
        g.remove_edges_from(links)
        if not nx.is_connected(g):
            raise ConfigError("key 'faults.links': cutting these links together would split the "
                              "latency graph; cut fewer links or keep a detour")
    for (a, b), ivs in sorted(links.items()):
        ivs.sort()
        merged: list[list] = []
        for st, en, src in ivs:  # union of overlapping cuts of the same link
            if merged and st <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], en)
                merged[-1][2] += "," + src
            else:
                merged.append([st, en, src])
        for st, en, src in merged:
            timeline.append((st, Change.CUT, a, b))
            if en < horizon_s:
                timeline.append((en, Change.RESTORE, a, b))
            rows.append({"kind": "link", "target": f"{world.site_id[a]}|{world.site_id[b]}",
                         "tier": f"{Tier(world.site_tier[a]).label}|"
                                 f"{Tier(world.site_tier[b]).label}",
                         "region": "|".join(sorted({regions[a], regions[b]})),
                         "start_s": st, "end_s": en, "gpus_lost": 0, "gpus": 0, "source": src})
    # Repairs before failures at the same instant; otherwise site order (deterministic).
    timeline.sort(key=lambda e: (e[0], e[1] == Change.CUT, e[2], e[3]))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if len(table):
        table = table.sort_values(["start_s", "kind", "target"], kind="stable",
                                  ignore_index=True)
    table = table.astype({"start_s": float, "end_s": float, "gpus_lost": np.int64,
                          "gpus": np.int64})
    return FaultSchedule(timeline, table, cfg.detection_s, cfg.passive_detection, cfg.retries,
                         cfg.retry_delay_s)


# ----------------------------------------------------------------------------- network


def private_network(world: World) -> World:
    """A shallow copy of ``world`` whose graph and latency matrices may be changed freely."""
    w = copy.copy(world)
    w.graph = world.graph.copy()
    w.site_rtt_ms = None if world.site_rtt_ms is None else world.site_rtt_ms.copy()
    w.rtt_ms = world.rtt_ms.copy()
    return w


def _sparse_changed(world: World) -> None:
    """A big world (no dense matrices): its round trips are re-derived from the changed graph."""
    adj = nx.to_scipy_sparse_array(world.graph, nodelist=range(world.n_sites), weight="rtt_ms",
                                   format="csr")
    world.rtt_ms.set_graph(adj)


def _update_origins(world: World, changed: np.ndarray) -> None:
    """Recompute the origin x site round trips that depend on a changed site pair.

    ``changed`` (S x S) marks the pairs whose ``site_rtt_ms`` changed; the round trip from origin
    ``o`` to site ``y`` depends only on ``site_rtt_ms[k, y]`` for its attachment sites ``k``.
    """
    rows = changed.any(axis=1)
    if not rows.any():
        return
    hit = np.flatnonzero(rows[world.attach_site].any(axis=1))
    if not len(hit):
        return
    att = world.attach_site[hit]
    o, y = np.nonzero(changed[att].any(axis=1))
    via = world.attach_ms[hit[o]] + world.site_rtt_ms[att[o], y[:, None]]
    world.rtt_ms[hit[o], y] = via.min(axis=1)


def cut_link(world: World, a: int, b: int) -> dict:
    """Remove link ``a``-``b`` from ``world`` (a private copy) and update its latencies in place.

    The pairs whose shortest path used the link are ``x -> a -> b -> y`` with
    ``d[x,a] + w + d[b,y] == d[x,b]`` (or the same through ``b -> a``); every such pair has one end
    on each side of the link, so Dijkstra is re-run only from the smaller side's sites, and the
    origin x site matrix only for the origins entering the grid at a site whose distances
    changed. A big world without dense matrices (:class:`~aigrid_sim.world.latency.SparseRtt`)
    forgets what it derived from the graph and recomputes it as the run asks.

    Returns:
        The removed edge's attributes (for :func:`restore_link`).
    """
    g, d = world.graph, world.site_rtt_ms
    attrs = dict(g.edges[a, b])
    w = attrs["rtt_ms"]
    g.remove_edge(a, b)
    if d is None:
        _sparse_changed(world)
        return attrs
    tol = _TOL * max(1.0, float(d.max()))
    used = d[:, [a]] + w + d[[b], :] <= d + tol  # x ... a - b ... y was a shortest path
    side_a, side_b = np.flatnonzero(used.any(axis=1)), np.flatnonzero(used.any(axis=0))
    src = side_a if len(side_a) <= len(side_b) else side_b
    if len(src):
        adj = nx.to_scipy_sparse_array(g, nodelist=range(world.n_sites), weight="rtt_ms",
                                       format="csr")
        new = dijkstra(adj, directed=False, indices=src)
        changed = np.zeros(d.shape, dtype=bool)
        changed[src] = np.abs(new - d[src]) > tol
        changed |= changed.T
        d[src, :] = new
        d[:, src] = new.T
        _update_origins(world, changed)
    return attrs


def restore_link(world: World, a: int, b: int, attrs: dict) -> None:
    """Put link ``a``-``b`` back into ``world`` and update its latencies in place (exact)."""
    world.graph.add_edge(a, b, **attrs)
    d = world.site_rtt_ms
    if d is None:
        _sparse_changed(world)
        return
    w = attrs["rtt_ms"]
    new = np.minimum(d, np.minimum(d[:, [a]] + w + d[[b], :], d[:, [b]] + w + d[[a], :]))
    changed = new < d
    d[:] = new
    _update_origins(world, changed)


# ----------------------------------------------------------------------------- injection


def inject(engine: Engine, schedule: FaultSchedule):
    """SimPy process: apply ``schedule`` to ``engine`` at the scheduled times."""
    env = engine.env
    removed: dict[tuple[int, int], dict] = {}
    for t, change, x, y in schedule.timeline:
        dt = t - env.now
        if dt > 0:
            yield env.timeout(dt)
        if change == Change.CAPACITY:
            engine.set_lost_replicas(x, y)
        elif change == Change.CUT:
            removed[(x, y)] = cut_link(engine.world, x, y)
            engine.network_changed()
        else:
            restore_link(engine.world, x, y, removed.pop((x, y)))
            engine.network_changed()


def health_checks(engine: Engine, every_s: float):
    """SimPy process: policies learn the true state of the sites every ``every_s`` seconds.

    They learn which sites are really up and how much capacity each has left.
    """
    up, alive = engine.up, engine.alive
    seen, slots = engine.seen_slots, engine.slots
    while True:
        up[:] = alive
        seen[:] = slots
        yield engine.env.timeout(every_s)
