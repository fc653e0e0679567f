"""The world a run happens in: sites with GPU pools, origins of demand, the latency between them.

Construction only: :func:`build_world` reads the bundled real-world data (Cloudflare PoPs, cloud
regions, GeoNames cities) or a user's site table, places the three tiers, joins the sites in a
networkx latency graph and derives the origin x site round trips implied by shortest paths on
that graph: a dense matrix for small worlds, a :class:`~aigrid_sim.world.latency.SparseRtt` for
big ones (thousands of sites, tens of thousands of cities). Nearest-place searches use a k-d
tree (:mod:`aigrid_sim.world.index`), so no step costs origins x sites. Nothing here changes
during a run.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources

import networkx as nx
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components, dijkstra

from aigrid_sim.config import SimConfig, TierConfig
from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.catalog import Catalog, Deployment
from aigrid_sim.world.demand import demand_weights, start_instant, utc_offsets_h
from aigrid_sim.world.geo import estimate_rtt_ms, fibre_floor_ms, great_circle_km
from aigrid_sim.world.index import SphereIndex
from aigrid_sim.world.latency import SparseRtt, graph_csr, nearest_dense
from aigrid_sim.world.sites import city_pops, read_sites_csv


class Tier(IntEnum):
    """Site tiers, cheapest first."""

    EDGE = 0
    REGIONAL = 1
    CORE = 2

    @property
    def label(self) -> str:
        """Lower-case name used in configs and result files."""
        return self.name.lower()


CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America", "AN": "Antarctica"}


def read_data(name: str) -> pd.DataFrame:
    """A CSV shipped in ``aigrid_sim/data`` (ISO code ``NA`` = Namibia is kept, not missing)."""
    with resources.files("aigrid_sim").joinpath(f"data/{name}").open("r", encoding="utf-8") as f:
        return pd.read_csv(f, keep_default_na=False, na_values=[""])


#: Worlds with at most this many sites, and origins x sites cells, keep dense RTT matrices.
DENSE_SITES_MAX = 2000
DENSE_CELLS_MAX = 20_000_000


@dataclass
class World:
    """Sites, origins, the latency graph and the origin x site round trips.

    Site arrays are indexed by site number ``0..S-1``; origin arrays by origin number ``0..O-1``.
    ``rtt_ms`` is a dense origins x sites ``ndarray`` for small worlds and a
    :class:`~aigrid_sim.world.latency.SparseRtt` for big ones; both answer ``rtt_ms.item(o, s)``
    and ``rtt_ms[origins, sites]``. ``site_rtt_ms`` (all-pairs shortest paths) exists only with
    the dense form (``None`` otherwise).
    """

    site_id: list[str]
    site_tier: np.ndarray  # int8 Tier values
    site_lat: np.ndarray
    site_lon: np.ndarray
    site_country: list[str | None]
    site_gpus: np.ndarray
    site_deployment: list[Deployment]
    site_max_queue: np.ndarray
    origin_name: list[str]
    origin_lat: np.ndarray
    origin_lon: np.ndarray
    origin_country: list[str | None]
    origin_population: np.ndarray
    origin_weight: np.ndarray  # share of the world's requests, sums to 1 (world/demand.py)
    origin_utc_offset_h: np.ndarray
    origin_region: list[str]
    graph: nx.Graph
    site_rtt_ms: np.ndarray | None  # S x S shortest-path RTT on the graph (dense form only)
    attach_site: np.ndarray  # O x k: the sites each origin enters the grid through
    attach_ms: np.ndarray  # O x k: round trip from the origin to each attachment site
    rtt_ms: np.ndarray | SparseRtt | None = None  # O x S round trip, origin to site
    #: What build_world kept of the grid (``world.keep_sites``): see ``_serving_sites``.
    provisioned: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rtt_ms is None:
            self.rtt_ms = self.origin_rtt(self.site_rtt_ms)

    def origin_rtt(self, site_rtt_ms: np.ndarray) -> np.ndarray:
        """Origin x site RTT: best entry point, then shortest path on the graph."""
        out = np.empty((len(self.attach_site), site_rtt_ms.shape[1]))
        step = max(1, 4_000_000 // max(1, site_rtt_ms.shape[1] * self.attach_site.shape[1]))
        for i in range(0, len(out), step):  # in row blocks: no O x k x S temporary
            via = self.attach_ms[i:i + step, :, None] + site_rtt_ms[self.attach_site[i:i + step]]
            out[i:i + step] = via.min(axis=1)
        return out

    @property
    def dense(self) -> bool:
        """Whether ``rtt_ms`` is a dense origins x sites matrix."""
        return isinstance(self.rtt_ms, np.ndarray)

    def nearest_sites(self, sites: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per origin: the (up to) ``k`` of ``sites`` with the lowest round trip, nearest first.

        Returns:
            ``(index, rtt_ms)``, each of shape (origins, min(k, len(sites))).
        """
        if self.dense:
            return nearest_dense(self.rtt_ms, np.asarray(sites, dtype=np.int64), k)
        return self.rtt_ms.nearest(sites, k)

    @property
    def n_sites(self) -> int:
        """Number of sites."""
        return len(self.site_id)

    @property
    def n_origins(self) -> int:
        """Number of origins."""
        return len(self.origin_name)

    @property
    def site_slots(self) -> np.ndarray:
        """Concurrent requests per site: replicas x max batch."""
        return np.array([self.replicas(s) * d.max_batch
                         for s, d in enumerate(self.site_deployment)], dtype=np.int64)

    def replicas(self, s: int) -> int:
        """Model replicas at site ``s`` (GPUs / GPUs per replica)."""
        return int(self.site_gpus[s]) // self.site_deployment[s].gpus_per_replica

    @property
    def site_capability(self) -> np.ndarray:
        """Capability level of the model each site hosts."""
        return np.array([d.model.capability for d in self.site_deployment], dtype=np.int64)

    def floor_rtt_ms(self) -> np.ndarray:
        """O x S fibre floor: light in fibre along the great circle (dense: for small worlds)."""
        d = great_circle_km(self.origin_lat[:, None], self.origin_lon[:, None],
                            self.site_lat[None, :], self.site_lon[None, :])
        return fibre_floor_ms(d)

    def sites_table(self) -> pd.DataFrame:
        """One row per site: id, tier, place, GPUs, model, slots."""
        return pd.DataFrame({
            "site": self.site_id,
            "tier": [Tier(t).label for t in self.site_tier],
            "lat": self.site_lat, "lon": self.site_lon,
            "country": self.site_country,
            "gpus": self.site_gpus,
            "gpu": [d.gpu.name for d in self.site_deployment],
            "model": [d.model.name for d in self.site_deployment],
            "capability": self.site_capability,
            "slots": self.site_slots,
        })


# ----------------------------------------------------------------------------- building


def _tier_sites(rows: pd.DataFrame, tier: Tier, tc: TierConfig, cat: Catalog,
                key: str) -> list[dict]:
    dep = cat.deployment(tc.model, tc.gpu, where=f"world.{key}", max_batch=tc.max_batch)
    if tc.gpus < dep.gpus_per_replica:
        raise ConfigError(
            f"key 'world.{key}.gpus': {tc.gpus} GPUs cannot hold one replica of {tc.model} "
            f"on {tc.gpu} ({dep.gpus_per_replica} GPUs each)")
    return [dict(id=r.id, tier=tier, lat=float(r.lat), lon=float(r.lon), country=r.country,
                 gpus=tc.gpus, dep=dep, max_queue=tc.max_queue) for r in rows.itertuples()]


def _country_codes() -> dict[str, str]:
    c = read_data("world_countries.csv")
    names = dict(zip(c.name, c.iso2, strict=True))
    names.update({"United States": "US", "South Korea": "KR", "Hong Kong": "HK", "Taiwan": "TW",
                  "United Kingdom": "GB", "Czech Republic": "CZ", "Ivory Coast": "CI",
                  "Netherlands": "NL"})
    return names


def _table_sites(table: pd.DataFrame, tier: Tier, tc: TierConfig, cat: Catalog, key: str,
                 where: str) -> list[dict]:
    """Sites from a site table (:mod:`aigrid_sim.world.sites`); empty cells take the tier's."""
    out = []
    deps: dict[tuple, Deployment] = {}
    for r in table.itertuples(index=False):
        model = r.model if isinstance(r.model, str) else tc.model
        gpu = r.gpu if isinstance(r.gpu, str) else tc.gpu
        mb = tc.max_batch if np.isnan(r.max_batch) else int(r.max_batch)
        here = f"{where}: line {r.line}" if r.line else f"world.{key}"
        dep = deps.get((model, gpu, mb))
        if dep is None:
            dep = deps[(model, gpu, mb)] = cat.deployment(model, gpu, where=here, max_batch=mb)
        gpus = tc.gpus if np.isnan(r.gpus) else int(r.gpus)
        if gpus < dep.gpus_per_replica:
            raise ConfigError(f"{here}, column 'gpus': {gpus} GPUs cannot hold one replica of "
                              f"{model} on {gpu} ({dep.gpus_per_replica} GPUs each)")
        out.append(dict(id=r.id, tier=tier, lat=float(r.lat), lon=float(r.lon),
                        country=r.country if isinstance(r.country, str) else None,
                        gpus=gpus, dep=dep,
                        max_queue=tc.max_queue if np.isnan(r.max_queue) else int(r.max_queue)))
    return out


def _edge_sites(cfg: SimConfig, cat: Catalog) -> list[dict]:
    """The edge tier: Cloudflare's PoPs, a PoP per big city, or the user's CSV."""
    e = cfg.world.edge
    if e.source == "cloudflare":
        pops = read_data("cdn_pops_cloudflare.csv")
        if e.pops is not None:
            unknown = sorted(set(e.pops) - set(pops.iata))
            if unknown:
                raise ConfigError(f"key 'world.edge.pops': unknown IATA codes {unknown}")
            pops = pops[pops.iata.isin(e.pops)]
        if e.countries is not None:
            pops = pops[pops.cca2.isin(e.countries)]
        pops = pops.assign(id="edge-" + pops.iata, country=pops.cca2)
        return _tier_sites(pops, Tier.EDGE, e, cat, "edge")
    if e.source == "cities":
        table = city_pops(city_table(e.min_population), e.min_population)
        where = "world.edge"
    else:
        table = read_sites_csv(e.file)
        where = str(e.file)
    if e.countries is not None:
        table = table[table.country.isin(e.countries)]
    return _table_sites(table, Tier.EDGE, e, cat, "edge", where)


def city_table(min_population: int) -> pd.DataFrame:
    """GeoNames cities with at least ``min_population`` people, most populous first.

    A threshold >= 100,000 reads the bundled 100k table (6,204 cities), a lower one the 15k table
    (34,006 cities down to 15,000 people).
    """
    name = "cities_100k.csv" if min_population >= 100_000 else "cities_15k.csv"
    o = read_data(name).rename(columns={"country_code": "country"})
    return o[o.population >= min_population]


def _grid_sites(cfg: SimConfig, cat: Catalog) -> list[dict]:
    w = cfg.world

    regions = read_data("cloud_regions.csv")
    codes = _country_codes()
    regions = regions.assign(key=regions.provider + ":" + regions.region_code,
                             country=regions.country.map(codes))
    core_rows = []
    for k in w.core.sites:
        hit = regions[regions.key == k]
        if hit.empty:
            raise ConfigError(f"key 'world.core.sites': unknown region {k!r}; use provider:code "
                              f"from cloud_regions.csv, e.g. 'aws:us-east-1', 'gcp:europe-west4'")
        core_rows.append(hit.iloc[0])
    core = pd.DataFrame(core_rows)
    core = core.assign(id="core-" + core.provider + "-" + core.region_code)

    reg = regions[regions.provider.isin(w.regional.providers)]
    if w.regional.regions is not None:
        unknown = sorted(set(w.regional.regions) - set(regions.key))
        if unknown:
            raise ConfigError(f"key 'world.regional.regions': unknown regions {unknown}")
        reg = regions[regions.key.isin(w.regional.regions)]
    keep: list[int] = []
    lat, lon = reg.lat.to_numpy(), reg.lon.to_numpy()
    for i in range(len(reg)):  # one region per metro: drop those within merge_km of a kept one
        if not keep or great_circle_km(lat[i], lon[i], lat[keep], lon[keep]).min() > \
                w.regional.merge_km:
            keep.append(i)
    reg = reg.iloc[keep]
    reg = reg.assign(id="regional-" + reg.provider + "-" + reg.region_code)

    sites = (_edge_sites(cfg, cat)
             + _tier_sites(reg, Tier.REGIONAL, w.regional, cat, "regional")
             + _tier_sites(core, Tier.CORE, w.core, cat, "core"))
    return sites


def _serving_sites(sites: list[dict], cfg: SimConfig, o: pd.DataFrame) -> tuple[list[dict], dict]:
    """A regional study's sites: those on the continents of its cities (``world.keep_sites``).

    Applies when ``world.cities.countries`` is set and ``world.keep_sites`` is ``serving``. Sites
    of the regional and core tiers, and of the edge tier unless ``world.edge.pops`` or
    ``world.edge.countries`` chose them, are kept when they stand in a country of the cities or
    on one of their continents; a tier this would empty keeps its site nearest to the cities
    (population-weighted mean distance). ``world.regional.regions`` set explicitly is kept as is.

    Returns:
        The kept sites and what was done: ``{"keep_sites", "continents", "dropped": {tier: n}}``.
    """
    w = cfg.world
    info: dict = {"keep_sites": w.keep_sites, "continents": None, "dropped": {}}
    if w.topology != "grid" or w.keep_sites != "serving" or w.cities.countries is None:
        return sites, info
    cont = read_data("world_countries.csv").set_index("iso2").continent_code.to_dict()
    countries = set(o.country)
    continents = {cont.get(c) for c in countries} - {None}
    info["continents"] = sorted(CONTINENTS.get(c, c) for c in continents)
    pruned = {Tier.REGIONAL: w.regional.regions is None, Tier.CORE: True,
              Tier.EDGE: w.edge.pops is None and w.edge.countries is None}
    weight = o.population.to_numpy(float)
    weight = weight / weight.sum()
    olat, olon = o.lat.to_numpy(float), o.lon.to_numpy(float)
    out: list[dict] = []
    for tier in Tier:
        group = [s for s in sites if s["tier"] == tier]
        if not pruned[tier] or not group:
            out += group
            continue
        kept = [s for s in group if s["country"] in countries or cont.get(s["country"]) in
                continents]
        if not kept:
            mean_km = [float(weight @ great_circle_km(olat, olon, s["lat"], s["lon"]))
                       for s in group]
            kept = [group[int(np.argmin(mean_km))]]
        if len(kept) < len(group):
            info["dropped"][tier.label] = len(group) - len(kept)
        out += kept
    return out, info


def _custom_sites(cfg: SimConfig, cat: Catalog) -> list[dict]:
    out = []
    for i, s in enumerate(cfg.world.sites):
        dep = cat.deployment(s.model, s.gpu, where=f"world.sites[{i}]", max_batch=s.max_batch)
        if s.gpus < dep.gpus_per_replica:
            raise ConfigError(f"key 'world.sites[{i}].gpus': {s.gpus} GPUs cannot hold one "
                              f"replica of {s.model} ({dep.gpus_per_replica} GPUs each)")
        out.append(dict(id=s.id, tier=Tier[s.tier.upper()], lat=s.lat, lon=s.lon,
                        country=s.country, gpus=s.gpus, dep=dep, max_queue=s.max_queue))
    return out


def _origins(cfg: SimConfig) -> pd.DataFrame:
    """Where demand comes from: the cities (grid topology) and the explicitly placed origins.

    In the grid topology ``world.origins`` are added to the cities (``world.cities.max_cities=0``
    keeps none of them); a custom world has only its origins.
    """
    w = cfg.world
    parts = []
    if w.topology == "grid" and w.cities.max_cities != 0:
        o = city_table(w.cities.min_population)
        if w.cities.countries is not None:
            o = o[o.country.isin(w.cities.countries)]
        if w.cities.max_cities is not None:
            o = o.head(w.cities.max_cities)
        if o.empty:
            raise ConfigError("key 'world.cities': the filters leave no city")
        parts.append(o.assign(utc_offset_h=utc_offsets_h(
            o.timezone, start_instant(cfg.start_date, cfg.start_utc_h))))
    if w.origins:
        o = pd.DataFrame([vars(x) for x in w.origins])
        zoned = o.timezone.notna().to_numpy()
        if zoned.any():  # an origin with an IANA zone follows the calendar like the cities
            o.loc[zoned, "utc_offset_h"] = utc_offsets_h(
                o.timezone[zoned], start_instant(cfg.start_date, cfg.start_utc_h),
                "key 'world.origins[].timezone'")
        parts.append(o)
    if not parts:
        raise ConfigError("key 'world.origins': a custom world (or world.cities.max_cities=0) "
                          "needs at least one origin")
    o = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    cont = read_data("world_countries.csv").set_index("iso2").continent_code
    region = o.country.map(cont).map(CONTINENTS).fillna("Unknown")
    return o.assign(region=region, name=_unique_names(o)).reset_index(drop=True)


def _explicit_origins(o: pd.DataFrame) -> np.ndarray:
    """True for the origins of ``world.origins`` (their population is their demand weight)."""
    if "geonameid" not in o:
        return np.ones(len(o), dtype=bool)
    return o["geonameid"].isna().to_numpy()


def _unique_names(o: pd.DataFrame) -> list[str]:
    """City names, with ", CC" (then a number) added where a name repeats (Hyderabad IN / PK)."""
    names = o["name"].astype(str).tolist()
    dup = o["name"].duplicated(keep=False).to_numpy()
    names = [f"{n}, {c}" if d else n for n, c, d in zip(names, o["country"], dup, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


@functools.cache
def _all_grid_ids() -> frozenset[str]:
    """Every site id the real-world grid can have (before filters)."""
    pops = read_data("cdn_pops_cloudflare.csv")
    regions = read_data("cloud_regions.csv")
    keys = regions.provider + "-" + regions.region_code
    return frozenset(("edge-" + pops.iata).tolist() + ("regional-" + keys).tolist()
                     + ("core-" + keys).tolist())


def _apply_site_gpus(sites: list[dict], site_gpus: dict[str, int] | None,
                     key: str = "site_gpus") -> None:
    """Override the tier's GPU count at the named sites (``world.<key>``), in place."""
    if not site_gpus:
        return
    by_id = {s["id"]: s for s in sites}
    # Ids of real places that the world's filters left out are ignored, so a scenario's sizing
    # still applies when a user cuts the world to a region; any other id is a typo.
    unknown = sorted(set(site_gpus) - set(by_id) - _all_grid_ids())
    if unknown:
        raise ConfigError(f"key 'world.{key}': unknown site ids {unknown}; ids are those of "
                          f"sites.parquet (e.g. {sorted(by_id)[:3]})")
    for sid, g in site_gpus.items():
        if sid not in by_id:
            continue
        dep = by_id[sid]["dep"]
        if int(g) < dep.gpus_per_replica or int(g) % dep.gpus_per_replica:
            raise ConfigError(
                f"key 'world.{key}.{sid}': {g} GPUs is not a whole number of replicas of "
                f"{dep.model.name} on {dep.gpu.name} ({dep.gpus_per_replica} GPUs each)")
        by_id[sid]["gpus"] = int(g)


def build_world(cfg: SimConfig, catalog: Catalog | None = None) -> World:
    """Build the world of a run from its config.

    Raises:
        ConfigError: a site that cannot host its model, unknown places, an empty world, or an app
            that no site can serve.
    """
    cat = catalog or (Catalog.from_file(cfg.world.catalog) if cfg.world.catalog
                      else Catalog.default())
    w = cfg.world
    if w.admission is not None:
        cat = copy.copy(cat)  # a caller's catalogue stays as it was
        cat.admission_override = w.admission
    o = _origins(cfg)
    if w.topology == "custom":  # only the sites given: world.sites, and edge PoPs if asked
        sites = (_edge_sites(cfg, cat) if w.edge.source != "cloudflare" else [])
        sites += _custom_sites(cfg, cat)
        provisioned = {"keep_sites": w.keep_sites, "continents": None, "dropped": {}}
    else:  # a regional study keeps the sites serving it; then extra, explicitly placed sites
        sites, provisioned = _serving_sites(_grid_sites(cfg, cat), cfg, o)
        sites += _custom_sites(cfg, cat)
    if not sites:
        raise ConfigError("key 'world': no sites; the filters removed every site")
    ids = [s["id"] for s in sites]
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise ConfigError(f"key 'world.sites': duplicate site ids {dup[:10]}")
    _apply_site_gpus(sites, w.sized_gpus, "sized_gpus")
    _apply_site_gpus(sites, w.site_gpus)
    S = len(sites)
    lat = np.array([s["lat"] for s in sites], dtype=float)
    lon = np.array([s["lon"] for s in sites], dtype=float)
    country = [s["country"] if isinstance(s["country"], str) else None for s in sites]
    tier = np.array([int(s["tier"]) for s in sites], dtype=np.int8)
    deps = [s["dep"] for s in sites]

    zero = w.network == "zero"
    a, b = graph_edges(lat, lon, tier, w.graph.neighbours, w.graph.mesh_tiers)
    km = great_circle_km(lat[a], lon[a], lat[b], lon[b])
    cobj = np.array(country, dtype=object)
    # Every graph edge joins two sites: backbone path unless a study asks for the Internet.
    rtt = np.zeros(len(a)) if zero else estimate_rtt_ms(lat[a], lon[a], lat[b], lon[b],
                                                        cobj[a], cobj[b], path=w.graph.site_path)
    graph = nx.Graph()
    graph.add_nodes_from((i, {"id": ids[i], "tier": Tier(tier[i]).label, "lat": sites[i]["lat"],
                              "lon": sites[i]["lon"]}) for i in range(S))
    graph.add_edges_from((x, y, {"rtt_ms": r, "km": d}) for x, y, r, d in
                         zip(a.tolist(), b.tolist(), rtt.tolist(), km.tolist(), strict=True))
    adj = graph_csr(S, a, b, rtt)
    if not zero and S > 1 and connected_components(adj, directed=False)[0] > 1:
        raise ConfigError("key 'world.graph': the latency graph is not connected; raise "
                          "world.graph.neighbours")

    olat, olon = o.lat.to_numpy(float), o.lon.to_numpy(float)
    ocountry = [c if isinstance(c, str) else None for c in o.country]
    entry = np.flatnonzero(tier == Tier.EDGE)
    if len(entry) == 0:
        entry = np.arange(S)
    k = min(w.cities.pops_per_city, len(entry))
    near, _ = SphereIndex(lat[entry], lon[entry]).nearest(olat, olon, k)
    attach_site = entry[near]
    if zero:
        attach_ms = np.zeros(attach_site.shape)
    else:
        oc = np.array(ocountry, dtype=object)[:, None]
        attach_ms = w.cities.access_ms + estimate_rtt_ms(  # users reach a PoP over the Internet
            olat[:, None], olon[:, None], lat[attach_site], lon[attach_site], oc,
            cobj[attach_site], path="internet")

    n_o = len(o)
    dense = zero or w.rtt_matrix == "dense" or (
        w.rtt_matrix == "auto" and S <= DENSE_SITES_MAX and n_o * S <= DENSE_CELLS_MAX)
    site_rtt = rtt_o = None
    if zero:
        site_rtt, rtt_o = np.zeros((S, S)), np.zeros((n_o, S))
    elif dense:
        site_rtt = shortest_rtt(graph, S)
    else:
        cap = np.array([d.model.capability for d in deps], dtype=np.int64)
        rtt_o = SparseRtt(adj, attach_site, attach_ms, group=tier.astype(np.int64) * 1000 + cap)
    world = World(
        site_id=ids, site_tier=tier, site_lat=lat, site_lon=lon, site_country=country,
        site_gpus=np.array([s["gpus"] for s in sites], dtype=np.int64),
        site_deployment=deps,
        site_max_queue=np.array([s["max_queue"] for s in sites], dtype=np.int64),
        origin_name=list(o.name), origin_lat=olat, origin_lon=olon, origin_country=ocountry,
        origin_population=o.population.to_numpy(float),
        origin_weight=demand_weights(o.population.to_numpy(float), ocountry, list(o.name),
                                     cfg.workload.demand, cfg.workload.demand_csv,
                                     custom=_explicit_origins(o)),
        origin_utc_offset_h=o.utc_offset_h.to_numpy(float),
        origin_region=list(o.region), graph=graph, site_rtt_ms=site_rtt,
        attach_site=attach_site, attach_ms=attach_ms, rtt_ms=rtt_o,
        provisioned=provisioned)
    cap = world.site_capability
    for i, app in enumerate(cfg.workload.apps):
        if not (cap >= app.capability).any():
            raise ConfigError(
                f"key 'workload.apps[{i}].capability': app {app.name!r} needs capability "
                f"{app.capability} but no site offers it (highest: {cap.max()})")
    return world


def graph_edges(lat: np.ndarray, lon: np.ndarray, tier: np.ndarray, neighbours: int,
                mesh_tiers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The links of the latency graph, as sorted pairs ``a < b`` (no duplicates).

    Each site links to its ``neighbours`` nearest sites (the local fabric), the sites of
    ``mesh_tiers`` form a full mesh (the long-haul backbone), and each edge PoP backhauls to its
    nearest non-edge site. Big worlds find neighbours with a k-d tree (ties to the lower index).
    """
    S = len(lat)
    if S < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = max(0, min(neighbours, S - 1))
    if S <= DENSE_SITES_MAX:
        # Brute force, as worlds were always built: a tie at the k-th neighbour (two sites at
        # one place) is broken the way argpartition breaks it, so small worlds keep their graph.
        dist = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        np.fill_diagonal(dist, np.inf)
        nb = np.argpartition(dist, k - 1, axis=1)[:, :k] if k else np.zeros((S, 0), np.int64)
    else:
        nb, _ = SphereIndex(lat, lon).nearest(lat, lon, k, exclude=np.arange(S))
    src = [np.repeat(np.arange(S), k)]
    dst = [nb.ravel()]
    mesh = np.flatnonzero(np.isin([Tier(t).label for t in tier], list(mesh_tiers)))
    if len(mesh) > 1:
        i, j = np.triu_indices(len(mesh), 1)
        src.append(mesh[i])
        dst.append(mesh[j])
    upper = np.flatnonzero(tier > Tier.EDGE)
    edge = np.flatnonzero(tier == Tier.EDGE)
    if len(upper) and len(edge):
        hub, _ = SphereIndex(lat[upper], lon[upper]).nearest(lat[edge], lon[edge], 1)
        src.append(edge)
        dst.append(upper[hub[:, 0]])
    x, y = np.concatenate(src), np.concatenate(dst)
    key = np.unique(np.minimum(x, y) * S + np.maximum(x, y))
    return key // S, key % S


def shortest_rtt(graph: nx.Graph, n: int) -> np.ndarray:
    """All-pairs shortest-path RTT (ms) between the ``n`` sites of ``graph`` (inf if cut off)."""
    if n == 1:
        return np.zeros((1, 1))
    adj = nx.to_scipy_sparse_array(graph, nodelist=range(n), weight="rtt_ms", format="csr")
    return dijkstra(adj, directed=False)
