"""The world a run happens in: sites with GPU pools, origins of demand, and the latency between them.

Construction only: :func:`build_world` reads the bundled real-world data (Cloudflare PoPs, cloud
regions, GeoNames cities), places the three tiers, joins the sites in a networkx latency graph and
computes, once, the origin x site round-trip-time matrix implied by shortest paths on that graph.
Nothing here changes during a run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources

import networkx as nx
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import dijkstra

from aigrid_sim.config import SimConfig, TierConfig
from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.catalog import Catalog, Deployment
from aigrid_sim.world.demand import start_instant, utc_offsets_h
from aigrid_sim.world.geo import estimate_rtt_ms, fibre_floor_ms, great_circle_km


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


@dataclass
class World:
    """Sites, origins, the latency graph and the origin x site round-trip matrix.

    Site arrays are indexed by site number ``0..S-1``; origin arrays by origin number ``0..O-1``.
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
    origin_utc_offset_h: np.ndarray
    origin_region: list[str]
    graph: nx.Graph
    site_rtt_ms: np.ndarray  # S x S shortest-path RTT on the graph
    attach_site: np.ndarray  # O x k: the sites each origin enters the grid through
    attach_ms: np.ndarray  # O x k: round trip from the origin to each attachment site
    rtt_ms: np.ndarray = field(init=False)  # O x S round trip, origin to site

    def __post_init__(self) -> None:
        self.rtt_ms = self.origin_rtt(self.site_rtt_ms)

    def origin_rtt(self, site_rtt_ms: np.ndarray) -> np.ndarray:
        """Origin x site RTT: best entry point, then shortest path on the graph."""
        via = self.attach_ms[:, :, None] + site_rtt_ms[self.attach_site]
        return via.min(axis=1)

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
        """O x S fibre floor: the round trip of light in fibre along the great circle."""
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
    names = dict(zip(c.name, c.iso2))
    names.update({"United States": "US", "South Korea": "KR", "Hong Kong": "HK", "Taiwan": "TW",
                  "United Kingdom": "GB", "Czech Republic": "CZ", "Ivory Coast": "CI",
                  "Netherlands": "NL"})
    return names


def _grid_sites(cfg: SimConfig, cat: Catalog) -> list[dict]:
    w = cfg.world
    pops = read_data("cdn_pops_cloudflare.csv")
    if w.edge.pops is not None:
        unknown = sorted(set(w.edge.pops) - set(pops.iata))
        if unknown:
            raise ConfigError(f"key 'world.edge.pops': unknown IATA codes {unknown}")
        pops = pops[pops.iata.isin(w.edge.pops)]
    if w.edge.countries is not None:
        pops = pops[pops.cca2.isin(w.edge.countries)]
    pops = pops.assign(id="edge-" + pops.iata, country=pops.cca2)

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

    sites = (_tier_sites(pops, Tier.EDGE, w.edge, cat, "edge")
             + _tier_sites(reg, Tier.REGIONAL, w.regional, cat, "regional")
             + _tier_sites(core, Tier.CORE, w.core, cat, "core"))
    return sites


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
    w = cfg.world
    if w.topology == "custom":
        if not w.origins:
            raise ConfigError("key 'world.origins': a custom world needs at least one origin")
        o = pd.DataFrame([vars(x) for x in w.origins])
        zoned = o.timezone.notna().to_numpy()
        if zoned.any():  # an origin with an IANA zone follows the calendar like the cities
            o.loc[zoned, "utc_offset_h"] = utc_offsets_h(
                o.timezone[zoned], start_instant(cfg.start_date, cfg.start_utc_h),
                "key 'world.origins[].timezone'")
    else:
        table = "cities_100k.csv" if w.cities.min_population >= 100_000 else "cities_15k.csv"
        o = read_data(table).rename(columns={"country_code": "country"})
        o = o[o.population >= w.cities.min_population]
        if w.cities.countries is not None:
            o = o[o.country.isin(w.cities.countries)]
        if w.cities.max_cities is not None:
            o = o.head(w.cities.max_cities)
        if o.empty:
            raise ConfigError("key 'world.cities': the filters leave no city")
        o = o.assign(utc_offset_h=utc_offsets_h(
            o.timezone, start_instant(cfg.start_date, cfg.start_utc_h)))
    cont = read_data("world_countries.csv").set_index("iso2").continent_code
    region = o.country.map(cont).map(CONTINENTS).fillna("Unknown")
    return o.assign(region=region, name=_unique_names(o)).reset_index(drop=True)


def _unique_names(o: pd.DataFrame) -> list[str]:
    """City names, with ", CC" (then a number) added where a name repeats (Hyderabad IN / PK)."""
    names = o["name"].astype(str).tolist()
    dup = o["name"].duplicated(keep=False).to_numpy()
    names = [f"{n}, {c}" if d else n for n, c, d in zip(names, o["country"], dup)]
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
    sites = _custom_sites(cfg, cat) if w.topology == "custom" else _grid_sites(cfg, cat)
    if w.topology == "grid":
        sites += _custom_sites(cfg, cat)  # extra, explicitly placed sites
    if not sites:
        raise ConfigError("key 'world': no sites; the filters removed every site")
    ids = [s["id"] for s in sites]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"key 'world.sites': duplicate site ids {dup}")
    _apply_site_gpus(sites, w.sized_gpus, "sized_gpus")
    _apply_site_gpus(sites, w.site_gpus)
    S = len(sites)
    lat = np.array([s["lat"] for s in sites], dtype=float)
    lon = np.array([s["lon"] for s in sites], dtype=float)
    country = [s["country"] if isinstance(s["country"], str) else None for s in sites]
    tier = np.array([int(s["tier"]) for s in sites], dtype=np.int8)

    graph = nx.Graph()
    for i, s in enumerate(sites):
        graph.add_node(i, id=s["id"], tier=Tier(s["tier"]).label, lat=s["lat"], lon=s["lon"])
    zero = w.network == "zero"
    if S > 1:
        dist = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        rtt = np.zeros((S, S)) if zero else estimate_rtt_ms(
            lat[:, None], lon[:, None], lat[None, :], lon[None, :],
            np.array(country, dtype=object)[:, None], np.array(country, dtype=object)[None, :])
        np.fill_diagonal(dist, np.inf)
        k = min(w.graph.neighbours, S - 1)
        pairs = set()
        for i in range(S):  # k nearest neighbours: the local fabric
            for j in np.argpartition(dist[i], k - 1)[:k]:
                pairs.add((min(i, int(j)), max(i, int(j))))
        mesh = [i for i in range(S) if Tier(tier[i]).label in w.graph.mesh_tiers]
        for a in mesh:  # long-haul backbone between the big sites
            for b in mesh:
                if a < b:
                    pairs.add((a, b))
        upper = np.flatnonzero(tier > Tier.EDGE)
        if len(upper):
            for i in np.flatnonzero(tier == Tier.EDGE):  # each PoP backhauls to its nearest big site
                j = int(upper[np.argmin(dist[i, upper])])
                pairs.add((min(i, j), max(i, j)))
        for a, b in pairs:
            graph.add_edge(a, b, rtt_ms=float(rtt[a, b]), km=float(dist[a, b]))
    site_rtt = np.zeros((S, S)) if zero else shortest_rtt(graph, S)
    if not zero and np.isinf(site_rtt).any():
        raise ConfigError("key 'world.graph': the latency graph is not connected; raise "
                          "world.graph.neighbours")

    o = _origins(cfg)
    olat, olon = o.lat.to_numpy(float), o.lon.to_numpy(float)
    ocountry = [c if isinstance(c, str) else None for c in o.country]
    entry = np.flatnonzero(tier == Tier.EDGE)
    if len(entry) == 0:
        entry = np.arange(S)
    k = min(w.cities.pops_per_city, len(entry))
    d_entry = great_circle_km(olat[:, None], olon[:, None], lat[entry][None, :], lon[entry][None, :])
    near = np.argsort(d_entry, axis=1, kind="stable")[:, :k]
    attach_site = entry[near]
    if zero:
        attach_ms = np.zeros(attach_site.shape)
    else:
        oc = np.array(ocountry, dtype=object)[:, None]
        sc = np.array(country, dtype=object)[attach_site]
        attach_ms = w.cities.access_ms + estimate_rtt_ms(
            olat[:, None], olon[:, None], lat[attach_site], lon[attach_site], oc, sc)

    world = World(
        site_id=ids, site_tier=tier, site_lat=lat, site_lon=lon, site_country=country,
        site_gpus=np.array([s["gpus"] for s in sites], dtype=np.int64),
        site_deployment=[s["dep"] for s in sites],
        site_max_queue=np.array([s["max_queue"] for s in sites], dtype=np.int64),
        origin_name=list(o.name), origin_lat=olat, origin_lon=olon, origin_country=ocountry,
        origin_population=o.population.to_numpy(float),
        origin_utc_offset_h=o.utc_offset_h.to_numpy(float),
        origin_region=list(o.region), graph=graph, site_rtt_ms=site_rtt,
        attach_site=attach_site, attach_ms=attach_ms)
    if zero:
        world.rtt_ms = np.zeros((world.n_origins, S))
    cap = world.site_capability
    for i, app in enumerate(cfg.workload.apps):
        if not (cap >= app.capability).any():
            raise ConfigError(
                f"key 'workload.apps[{i}].capability': app {app.name!r} needs capability "
                f"{app.capability} but no site offers it (highest: {cap.max()})")
    return world


def shortest_rtt(graph: nx.Graph, n: int) -> np.ndarray:
    """All-pairs shortest-path RTT (ms) between the ``n`` sites of ``graph`` (inf if cut off)."""
    if n == 1:
        return np.zeros((1, 1))
    adj = nx.to_scipy_sparse_array(graph, nodelist=range(n), weight="rtt_ms", format="csr")
    return dijkstra(adj, directed=False)
