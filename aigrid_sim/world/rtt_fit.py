"""Loading, splitting and fitting of the measured round trips behind :mod:`aigrid_sim.world.geo`.

Used by ``scripts/fit_rtt.py`` (which writes ``aigrid_sim/data/rtt_params.json``) and by the tests
(which re-evaluate the shipped parameters on the same held-out split). The simulator itself never
imports this module.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, sparse

from aigrid_sim.world import geo

MEASURED_CSV = "rtt_measured.csv"
SERVERS_CSV = "rtt_servers.csv"
#: The hold-out rows shipped in ``aigrid_sim/data`` (``scripts/make_rtt_holdout.py``).
HOLDOUT_CSV = "rtt_holdout.csv"
HOLDOUT_SERVERS_CSV = "rtt_holdout_servers.csv"
SPLIT_SEED = 20200719
HOLDOUT_FRACTION = 1 / 3

#: WonderProxy country names that differ from ``world_countries.csv``.
COUNTRY_ALIASES = {"Czech Republic": "CZ", "Netherlands": "NL"}

_COUNTRIES_CSV = Path(__file__).resolve().parents[1] / "data" / "world_countries.csv"


def country_codes(names) -> np.ndarray:
    """Map country names (WonderProxy spelling) to ISO 3166-1 alpha-2 codes.

    Raises:
        KeyError: if a name is neither in ``world_countries.csv`` nor in :data:`COUNTRY_ALIASES`.
    """
    # keep_default_na=False: Namibia's code "NA" must stay a string.
    world = pd.read_csv(_COUNTRIES_CSV, keep_default_na=False)
    lookup = dict(zip(world["name"], world["iso2"], strict=True)) | COUNTRY_ALIASES
    missing = sorted(set(names) - set(lookup))
    if missing:
        raise KeyError(f"unmapped country names: {missing}; add them to COUNTRY_ALIASES")
    return np.array([lookup[n] for n in names], dtype=object)


def _with_places(rtt: pd.DataFrame, servers: pd.DataFrame) -> pd.DataFrame:
    """Measurements joined with both ends' coordinates and ISO codes, their distance and floor."""
    for end in ("src", "dst"):
        cols = servers.set_index("server_id")[["lat", "lon", "iso2"]].add_prefix(f"{end}_")
        rtt = rtt.join(cols, on=f"{end}_id", how="inner")
    rtt["km"] = geo.great_circle_km(rtt.src_lat, rtt.src_lon, rtt.dst_lat, rtt.dst_lon)
    rtt["floor_ms"] = geo.fibre_floor_ms(rtt["km"])
    return rtt.reset_index(drop=True)


def write_params(path: Path, params: dict) -> None:
    """Write fitted parameters as JSON, keeping the recorded fit date when nothing else changed.

    ``params["fit"]["date"]`` is set here: today's date, or the file's own when its content is
    otherwise the same, so re-running a fit is byte-exact.
    """
    date = dt.date.today().isoformat()
    params["fit"].pop("date", None)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        old_date = old.get("fit", {}).pop("date", None)
        if old == params:
            date = old_date
    params["fit"]["date"] = date
    path.write_text(json.dumps(params, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_measurements(data_dir: str | Path) -> pd.DataFrame:
    """Read the WonderProxy RTTs and attach coordinates, ISO codes and fibre floors.

    Args:
        data_dir: Folder holding ``rtt_measured.csv`` and ``rtt_servers.csv``.

    Returns:
        One row per directed measurement with the original columns plus ``src_lat``, ``src_lon``,
        ``src_iso2``, ``dst_lat``, ``dst_lon``, ``dst_iso2``, ``km`` and ``floor_ms``.
    """
    data_dir = Path(data_dir)
    servers = pd.read_csv(data_dir / SERVERS_CSV, keep_default_na=False)
    servers["iso2"] = country_codes(servers["country"])
    rtt = pd.read_csv(data_dir / MEASURED_CSV, keep_default_na=False)
    return _with_places(rtt, servers)


def load_shipped_holdout() -> pd.DataFrame:
    """The hold-out rows of :func:`split` as shipped in the package, with the same columns.

    ``aigrid_sim/data/rtt_holdout.csv`` (``src_id, dst_id, rtt_avg_ms``) joined with
    ``rtt_holdout_servers.csv`` (coordinates and ISO codes); written by
    ``scripts/make_rtt_holdout.py`` from the measured data, so scoring it gives the same numbers
    as scoring ``split(load_measurements(data_dir))[1]``.
    """
    data = _COUNTRIES_CSV.parent
    servers = pd.read_csv(data / HOLDOUT_SERVERS_CSV, keep_default_na=False)
    rtt = pd.read_csv(data / HOLDOUT_CSV)
    return _with_places(rtt, servers)


def holdout_mask(rtt: pd.DataFrame, seed: int = SPLIT_SEED, frac: float = HOLDOUT_FRACTION):
    """Pick a random share of unordered city pairs as the hold-out set.

    Both directions of a pair land on the same side, so the hold-out score measures prediction for
    pairs never seen in fitting rather than the agreement of A->B with B->A.

    Args:
        rtt: Output of :func:`load_measurements`.
        seed: Seed of the numpy generator.
        frac: Share of unordered city pairs held out.

    Returns:
        Boolean numpy array, True for held-out rows.
    """
    a = rtt["src_city"] + "|" + rtt["src_country"]
    b = rtt["dst_city"] + "|" + rtt["dst_country"]
    key = np.where(a < b, a + "~" + b, b + "~" + a)
    pairs = np.unique(key)  # sorted, hence independent of row order
    rng = np.random.default_rng(seed)
    held = pairs[rng.permutation(len(pairs))[: round(frac * len(pairs))]]
    return np.isin(key, held)


#: Candidate hubs: large interconnection / cable-landing cities through which countries reach
#: the rest of the Internet. A country is routed through at most one of them.
HUBS = {
    "Amsterdam": (52.37, 4.90), "Frankfurt": (50.11, 8.68), "London": (51.51, -0.13),
    "Madrid": (40.42, -3.70), "Marseille": (43.30, 5.37), "Paris": (48.86, 2.35),
    "Stockholm": (59.33, 18.07), "Istanbul": (41.01, 28.98), "Moscow": (55.76, 37.62),
    "Ashburn": (39.04, -77.49), "New York": (40.71, -74.01), "Chicago": (41.88, -87.63),
    "Miami": (25.76, -80.19), "Dallas": (32.78, -96.80), "Los Angeles": (34.05, -118.24),
    "San Jose": (37.34, -121.89), "Seattle": (47.61, -122.33), "Sao Paulo": (-23.55, -46.63),
    "Johannesburg": (-26.20, 28.05), "Dubai": (25.20, 55.27), "Mumbai": (19.08, 72.88),
    "Singapore": (1.35, 103.82), "Hong Kong": (22.32, 114.17), "Tokyo": (35.68, 139.69),
    "Sydney": (-33.87, 151.21),
}
#: Scale of the soft-L1 loss on log(predicted / measured): residuals beyond ~10 % count linearly,
#: so mislocated or oddly routed servers do not drag the fit.
LOSS_SCALE = 0.1
#: A hub must lower a country's loss by this much to be adopted or swapped (hysteresis, so the
#: alternating fit converges and thin evidence keeps a country direct).
HUB_MARGIN = 1.0
#: Upper bound of an access term (the worst measured country, China, needs about 100 ms).
ACCESS_MAX_MS = 300.0
MISLOCATED_SHARE = 0.05
TARGET = "rtt_avg_ms"
#: A hub detour never makes a path longer than this many times the great circle. Chosen on the
#: training loss among 2, 3 and no cap; without it, single hubs send neighbours such as
#: Sydney-Singapore through Seattle.
MAX_DETOUR = 3.0


def mislocated_servers(rtt: pd.DataFrame, share: float = MISLOCATED_SHARE) -> list[int]:
    """Servers whose minimum RTT beats the fibre floor on at least ``share`` of their pairs.

    Beating light in fibre is impossible, so such a server is not where the list puts it
    (in this data: La Ceiba, Honduras, and Belfast).
    """
    below = rtt["rtt_min_ms"] < rtt["floor_ms"]
    ends = pd.concat([pd.DataFrame({"id": rtt[c], "below": below}) for c in ("src_id", "dst_id")])
    frac = ends.groupby("id")["below"].mean()
    return sorted(int(i) for i in frac[frac >= share].index)


def split(rtt: pd.DataFrame, seed: int = SPLIT_SEED) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Training and hold-out rows, both without the rows of mislocated servers.

    Returns:
        (train, holdout, mislocated server ids).
    """
    bad = mislocated_servers(rtt)
    clean = ~(rtt.src_id.isin(bad) | rtt.dst_id.isin(bad)).to_numpy()
    held = holdout_mask(rtt, seed)
    return rtt[clean & ~held], rtt[clean & held], bad


def _soft_l1(z):
    return 2.0 * (np.sqrt(1.0 + (z / LOSS_SCALE) ** 2) - 1.0)


class _Design:
    """Row arrays of a training set, each end mapped to an "entity" (country or continent).

    A hub choice is an int per entity: -1 none, ``h`` < len(HUBS) hub ``h`` for all traffic
    abroad, ``len(HUBS) + h`` hub ``h`` for traffic to other regions only (``geo.REGION``).
    """

    def __init__(self, rtt: pd.DataFrame, ent_a, ent_b, n_ent):
        self.log_y = np.log(rtt[TARGET].to_numpy(float))
        self.km = rtt.km.to_numpy(float)
        self.ea, self.eb, self.n_ent = np.asarray(ent_a), np.asarray(ent_b), n_ent
        conts = geo.country_continents()
        self.abroad = (rtt.src_iso2 != rtt.dst_iso2).to_numpy()
        region = {c: geo.REGION[geo.CONTINENTS.index(k)] for c, k in conts.items()
                  if k in geo.CONTINENTS}
        self.other_region = (rtt.src_iso2.map(region) != rtt.dst_iso2.map(region)).to_numpy()
        self.p1 = geo.unit_xyz(rtt.src_lat.to_numpy(float), rtt.src_lon.to_numpy(float))
        self.p2 = geo.unit_xyz(rtt.dst_lat.to_numpy(float), rtt.dst_lon.to_numpy(float))
        # Hub choice h indexes HUBS twice over (see class doc); -1 lands on the trailing NaN.
        lat, lon = np.array(list(HUBS.values())).T
        self.hub_xyz = geo.unit_xyz(np.r_[lat, lat, np.nan], np.r_[lon, lon, np.nan])

    def _side_hub(self, h, rows):
        routed = np.where(h < len(HUBS), self.abroad[rows], self.other_region[rows])
        return np.where(routed, self.hub_xyz[:, h], np.nan)

    def path_km(self, hub, rows=slice(None)):
        """Routed path length of ``rows`` for the entities' hub choices ``hub``."""
        ha, hb = hub[self.ea[rows]], hub[self.eb[rows]]
        return geo.routed_path_km(self.p1[:, rows], self.p2[:, rows], self._side_hub(ha, rows),
                                  self._side_hub(hb, rows), self.km[rows], MAX_DETOUR)

    def log_residuals(self, glob, access, path, rows=slice(None)):
        """log(predicted / measured); ``glob`` = (infl_3000km, infl_log_slope, domestic_ms)."""
        a1, a2 = access[self.ea[rows]], access[self.eb[rows]]
        access_sum = np.where(self.abroad[rows], a1 + a2, 2 * np.minimum(a1, glob[2]))
        pred = geo.predict_ms(self.km[rows], path, access_sum, glob[0], glob[1])
        return np.log(pred) - self.log_y[rows]


def _fit_continuous(des: _Design, path, glob, access, n_free: int):
    """Least-squares fit of the access terms and of the first ``n_free`` global parameters."""
    n_rows, n_ent, k = len(des.log_y), des.n_ent, n_free
    glob = np.asarray(glob, float)

    def residuals(theta):
        return des.log_residuals(np.r_[theta[:k], glob[k:]], theta[k:], path)

    # Each row touches the global parameters and the access terms of its two ends only.
    r = np.arange(n_rows)
    cols = [des.ea + k, des.eb + k] + [np.full(n_rows, j) for j in range(k)]
    sparsity = sparse.coo_matrix((np.ones(n_rows * len(cols)), (np.tile(r, len(cols)),
                                  np.concatenate(cols))), shape=(n_rows, n_ent + k)).tocsr()
    # Access terms are >= 0 (no place is reached faster than its distance allows); inflation >= 1.
    lower = np.r_[[1.0, -np.inf, 0.0][:k], np.zeros(n_ent)]
    theta0 = np.maximum(np.r_[glob[:k], access], lower + 1e-9)
    sol = optimize.least_squares(residuals, theta0, jac_sparsity=sparsity, loss="soft_l1",
                                 f_scale=LOSS_SCALE, x_scale="jac", bounds=(lower, np.inf))
    return np.r_[sol.x[:k], glob[k:]], sol.x[k:]


def _fit_hubs(des: _Design, hub, glob, access):
    """One coordinate-descent sweep over entities: best hub (or none) and access term for each.

    The access term is re-optimised for every candidate hub: a detour through a hub replaces part
    of what a direct path had put into the access term, so comparing at a fixed access term would
    never leave the first local optimum.
    """
    hub, access = hub.copy(), access.copy()
    changed = 0
    for e in range(des.n_ent):
        rows = np.flatnonzero((des.ea == e) | (des.eb == e))
        if len(rows) == 0:
            continue

        def best_access(h, e=e, rows=rows):
            trial_hub, trial_acc = hub.copy(), access.copy()
            trial_hub[e] = h
            path = des.path_km(trial_hub, rows)

            def loss(a):
                trial_acc[e] = a
                return _soft_l1(des.log_residuals(glob, trial_acc, path, rows)).sum()

            sol = optimize.minimize_scalar(loss, bounds=(0.0, ACCESS_MAX_MS), method="bounded",
                                           options={"xatol": 1e-2})
            return sol.fun - (HUB_MARGIN if h == hub[e] else 0.0), sol.x

        best_h, (best, best_a) = hub[e], best_access(hub[e])
        for h in range(-1, 2 * len(HUBS)):
            if h != hub[e]:
                value, acc = best_access(h)
                if value < best:
                    best_h, best, best_a = h, value, acc
        if best_h != hub[e]:
            hub[e], access[e] = best_h, best_a
            changed += 1
    return hub, access, changed


def _fit_entities(des: _Design, glob, n_free: int, max_sweeps: int = 15):
    """Alternate least squares (access, globals) and hub sweeps until no hub changes."""
    access, hub = np.full(des.n_ent, 10.0), np.full(des.n_ent, -1)
    for _ in range(max_sweeps):
        glob, access = _fit_continuous(des, des.path_km(hub), glob, access, n_free)
        hub, access, changed = _fit_hubs(des, hub, glob, access)
        if not changed:
            return glob, access, hub
    raise RuntimeError("hub assignment did not converge")


def fit(train: pd.DataFrame) -> dict:
    """Fit the RTT model of :mod:`aigrid_sim.world.geo` on measured RTTs.

    Three fits, all minimising a soft-L1 loss of log(predicted / measured):

    1. countries: inflation curve, per-country access terms and hubs, alternating least squares
       with hub coordinate descent;
    2. continents: access term and hub per continent with the inflation curve of 1 fixed, by
       treating every server as "somewhere in its continent": the fallback for countries that
       are not in the data;
    3. no codes: access term and inflation curve with no country information at all.

    Args:
        train: Rows of :func:`load_measurements` to fit on.

    Returns:
        The model part of ``rtt_params.json`` (all that :class:`aigrid_sim.world.geo.RttModel`
        reads).
    """
    countries = sorted(set(train.src_iso2) | set(train.dst_iso2))
    index = {c: i for i, c in enumerate(countries)}
    des = _Design(train, train.src_iso2.map(index), train.dst_iso2.map(index), len(countries))
    glob, access, hub = _fit_entities(des, [1.6, 0.0, 10.0], n_free=3)

    conts = geo.country_continents()
    cont_a = [geo.CONTINENTS.index(conts[c]) for c in train.src_iso2]
    cont_b = [geo.CONTINENTS.index(conts[c]) for c in train.dst_iso2]
    des_cont = _Design(train, cont_a, cont_b, len(geo.CONTINENTS))
    _, access_cont, hub_cont = _fit_entities(des_cont, glob, n_free=0)

    # No codes: a single entity without hub, and no pair is known to be domestic.
    zeros = np.zeros(len(train), int)
    des_none = _Design(train, zeros, zeros, 1)
    des_none.abroad = np.ones(len(train), dtype=bool)
    glob_none, access_none = _fit_continuous(des_none, des_none.km, glob, [10.0], n_free=2)

    names = list(HUBS)

    def entry(a, h):
        return {"access_ms": round(float(a), 3), "hub": names[h % len(HUBS)] if h >= 0 else None,
                "hub_for": None if h < 0 else "abroad" if h < len(HUBS) else "other_regions"}

    def curve(i):
        return {"infl_3000km": round(float(i[0]), 5), "infl_log_slope": round(float(i[1]), 5)}

    return {
        **curve(glob),
        "domestic_access_ms": round(float(glob[2]), 3),
        "max_detour": MAX_DETOUR,
        "countries": {c: entry(access[i], hub[i]) for i, c in enumerate(countries)},
        "continents": {c: entry(access_cont[i], hub_cont[i])
                       for i, c in enumerate(geo.CONTINENTS)},
        "no_codes": {"access_ms": round(float(access_none[0]), 3), **curve(glob_none)},
        "hubs": {names[i]: list(HUBS[names[i]])
                 for i in sorted({i % len(HUBS) for i in (*hub, *hub_cont) if i >= 0})},
    }


def fit_straight_line(train: pd.DataFrame) -> tuple[float, float]:
    """Baseline RTT = intercept + slope * distance, fitted with the same loss as the model.

    Returns:
        (intercept_ms, slope_ms_per_km).
    """
    km, log_y = train.km.to_numpy(float), np.log(train[TARGET].to_numpy(float))

    def residuals(p):
        return np.log(np.maximum(geo.fibre_floor_ms(km), p[0] + p[1] * km)) - log_y

    sol = optimize.least_squares(residuals, [10.0, 0.02], loss="soft_l1", f_scale=LOSS_SCALE)
    return round(float(sol.x[0]), 4), round(float(sol.x[1]), 7)


def ape_stats(pred, measured) -> dict:
    """Median and 90th percentile of the absolute percentage error, in %."""
    ape = 100.0 * np.abs(np.asarray(pred) / np.asarray(measured) - 1.0)
    return {"median_ape_pct": round(float(np.median(ape)), 2),
            "p90_ape_pct": round(float(np.percentile(ape, 90)), 2)}


def predict(model: geo.RttModel, rtt: pd.DataFrame, codes: bool = True) -> np.ndarray:
    """Model RTTs for the rows of :func:`load_measurements`, with or without country codes."""
    args = [rtt[c].to_numpy(float) for c in ("src_lat", "src_lon", "dst_lat", "dst_lon")]
    if codes:
        args += [rtt.src_iso2.to_numpy(), rtt.dst_iso2.to_numpy()]
    return model(*args)


def evaluate(model: geo.RttModel, rtt: pd.DataFrame, line: tuple[float, float]) -> dict:
    """Errors of ``model`` on ``rtt`` with and without country codes, and of the baseline line."""
    y = rtt[TARGET].to_numpy(float)
    line_pred = np.maximum(rtt.floor_ms, line[0] + line[1] * rtt.km)
    return {
        "n_rows": int(len(rtt)),
        "with_country_codes": ape_stats(predict(model, rtt), y),
        "without_country_codes": ape_stats(predict(model, rtt, codes=False), y),
        "straight_line_baseline": ape_stats(line_pred, y),
    }


# ----------------------------------------------------------------------------- backbone

AWS_RTT_CSV = "cloud_rtt_aws.csv"
REGIONS_CSV = "cloud_regions.csv"
#: AWS regions of the measurements that ``cloud_regions.csv`` lacks, with their sources.
EXTRA_REGIONS = Path(__file__).resolve().parents[1] / "data" / "cloud_regions_extra.csv"
BACKBONE_TARGET = "rtt_p50_ms"
BACKBONE_SEED = 20250529
BACKBONE_HOLDOUT_FRACTION = 1 / 3
#: A gateway detour never makes a path longer than this many times the great circle.
BACKBONE_MAX_DETOUR = 4.0
#: A gateway must lower the training loss by this much to be adopted (ties keep the direct path).
GATEWAY_MARGIN = 0.05
#: Countries whose long-haul cables land outside their continent: Israel's submarine cables land
#: in Europe (Cyprus, Greece, Italy, France); it has no direct cable to the Gulf or Asia.
BACKBONE_REGION_OVERRIDES = {"IL": "EU"}
#: ``cloud_regions.csv`` country names that differ from ``world_countries.csv``.
REGION_COUNTRY_ALIASES = {"United States": "US", "South Korea": "KR", "Hong Kong": "HK",
                          "Taiwan": "TW", "United Kingdom": "GB", "Czech Republic": "CZ",
                          "Netherlands": "NL"}


def load_backbone_measurements(data_dir: str | Path) -> pd.DataFrame:
    """Read the AWS inter-region RTTs and attach coordinates, ISO codes and fibre floors.

    Coordinates come from ``cloud_regions.csv`` of ``data_dir``, completed by
    ``aigrid_sim/data/cloud_regions_extra.csv`` for the regions it lacks.

    Returns:
        One row per unordered region pair: ``region_a``, ``region_b``, ``rtt_p50_ms``, ``lat_a``,
        ``lon_a``, ``iso2_a``, ``lat_b``, ``lon_b``, ``iso2_b``, ``km``, ``floor_ms``.

    Raises:
        KeyError: a measured region with no coordinates anywhere.
    """
    data_dir = Path(data_dir)
    rtt = pd.read_csv(data_dir / AWS_RTT_CSV, keep_default_na=False)
    regions = pd.read_csv(data_dir / REGIONS_CSV, keep_default_na=False)
    extra = pd.read_csv(EXTRA_REGIONS, keep_default_na=False)
    regions = pd.concat([regions[regions.provider == "aws"], extra[regions.columns]])
    world = pd.read_csv(_COUNTRIES_CSV, keep_default_na=False)
    names = dict(zip(world["name"], world["iso2"], strict=True)) | REGION_COUNTRY_ALIASES
    regions = regions.assign(iso2=regions.country.map(names)).set_index("region_code")
    missing = sorted((set(rtt.region_a) | set(rtt.region_b)) - set(regions.index))
    if missing:
        raise KeyError(f"regions without coordinates: {missing}; add them to {EXTRA_REGIONS}")
    for end in ("a", "b"):
        cols = regions[["lat", "lon", "iso2"]].add_suffix(f"_{end}")
        rtt = rtt.join(cols, on=f"region_{end}")
    rtt["km"] = geo.great_circle_km(rtt.lat_a, rtt.lon_a, rtt.lat_b, rtt.lon_b)
    rtt["floor_ms"] = geo.fibre_floor_ms(rtt["km"])
    return rtt.reset_index(drop=True)


def backbone_holdout_mask(rtt: pd.DataFrame, seed: int = BACKBONE_SEED,
                          frac: float = BACKBONE_HOLDOUT_FRACTION) -> np.ndarray:
    """A seeded random share of the region pairs, held aside from the backbone fit."""
    key = np.where(rtt.region_a < rtt.region_b, rtt.region_a + "~" + rtt.region_b,
                   rtt.region_b + "~" + rtt.region_a)
    pairs = np.unique(key)
    rng = np.random.default_rng(seed)
    held = pairs[rng.permutation(len(pairs))[: round(frac * len(pairs))]]
    return np.isin(key, held)


def backbone_regions(iso2) -> np.ndarray:
    """Backbone region (index into ``geo.CONTINENTS``, -1 unknown) of each ISO code."""
    conts = geo.country_continents()
    out = []
    for c in iso2:
        cont = BACKBONE_REGION_OVERRIDES.get(c, conts.get(c))
        out.append(geo.CONTINENTS.index(cont) if cont in geo.CONTINENTS else -1)
    return np.array(out)


class _BackboneDesign:
    def __init__(self, rtt: pd.DataFrame):
        self.log_y = np.log(rtt[BACKBONE_TARGET].to_numpy(float))
        self.km = rtt.km.to_numpy(float)
        self.ra, self.rb = backbone_regions(rtt.iso2_a), backbone_regions(rtt.iso2_b)
        self.cross = (self.ra != self.rb) & (self.ra >= 0) & (self.rb >= 0)
        self.p1 = geo.unit_xyz(rtt.lat_a.to_numpy(float), rtt.lon_a.to_numpy(float))
        self.p2 = geo.unit_xyz(rtt.lat_b.to_numpy(float), rtt.lon_b.to_numpy(float))
        lat = [v[0] for v in HUBS.values()]
        lon = [v[1] for v in HUBS.values()]
        self.hub_xyz = geo.unit_xyz(np.r_[lat, np.nan], np.r_[lon, np.nan])  # -1 -> NaN column

    def path_hops(self, gw):
        g1 = np.where(self.cross, self.hub_xyz[:, gw[self.ra]], np.nan)
        g2 = np.where(self.cross, self.hub_xyz[:, gw[self.rb]], np.nan)
        path = geo.routed_path_km(self.p1, self.p2, g1, g2, self.km, BACKBONE_MAX_DETOUR)
        return path, 1.0 + ~np.isnan(g1[0]) + ~np.isnan(g2[0])

    def fit_curve(self, gw, theta0):
        path, hops = self.path_hops(gw)

        def residuals(t):
            return np.log(geo.predict_ms(self.km, path, t[2] * hops, t[0], t[1])) - self.log_y

        sol = optimize.least_squares(residuals, theta0, loss="soft_l1", f_scale=LOSS_SCALE,
                                     bounds=([1.0, -np.inf, 0.0], np.inf))
        return sol.x, float(_soft_l1(residuals(sol.x)).sum())


def fit_backbone(train: pd.DataFrame) -> dict:
    """Fit the backbone model of :class:`aigrid_sim.world.geo.BackboneModel`.

    Minimises a soft-L1 loss of log(predicted / measured): the inflation curve and the per-hop
    term by least squares, each continent's gateway (none, or one of :data:`HUBS`) by coordinate
    descent in a fixed order until no gateway changes.

    Returns:
        The model part of ``backbone_params.json``.
    """
    des = _BackboneDesign(train)
    gw = np.full(len(geo.CONTINENTS), -1)
    theta, loss = des.fit_curve(gw, [1.7, -0.1, 2.0])
    for _ in range(20):
        changed = False
        for e in range(len(geo.CONTINENTS)):
            best_h, best_theta, best_loss = gw[e], theta, loss
            for h in range(-1, len(HUBS)):
                if h == gw[e]:
                    continue
                trial = gw.copy()
                trial[e] = h
                t, lo = des.fit_curve(trial, theta)
                if lo < best_loss - GATEWAY_MARGIN:
                    best_h, best_theta, best_loss = h, t, lo
            if best_h != gw[e]:
                gw[e], theta, loss, changed = best_h, best_theta, best_loss, True
        if not changed:
            break
    else:
        raise RuntimeError("gateway assignment did not converge")
    names = list(HUBS)
    return {
        "infl_3000km": round(float(theta[0]), 5),
        "infl_log_slope": round(float(theta[1]), 5),
        "hop_ms": round(float(theta[2]), 3),
        "max_detour": BACKBONE_MAX_DETOUR,
        "region_overrides": dict(BACKBONE_REGION_OVERRIDES),
        "gateways": {c: (list(HUBS[names[g]]) if g >= 0 else None)
                     for c, g in zip(geo.CONTINENTS, gw, strict=True)},
        "gateway_names": {c: (names[g] if g >= 0 else None)
                          for c, g in zip(geo.CONTINENTS, gw, strict=True)},
    }


def backbone_predict(model, rtt: pd.DataFrame, path: str = "backbone") -> np.ndarray:
    """Model RTTs for the rows of :func:`load_backbone_measurements`.

    ``model`` may be any callable with the signature of ``geo.estimate_rtt_ms`` minus ``path``.
    """
    args = [rtt[c].to_numpy(float) for c in ("lat_a", "lon_a", "lat_b", "lon_b")]
    return np.asarray(model(*args, rtt.iso2_a.to_numpy(), rtt.iso2_b.to_numpy()))


def backbone_stats(pred, measured) -> dict:
    """Median / p90 absolute percentage error, mean bias (ms) and the worst ratio either way."""
    pred, measured = np.asarray(pred, float), np.asarray(measured, float)
    log_ratio = np.abs(np.log(pred / measured))
    return {**ape_stats(pred, measured),
            "mean_bias_ms": round(float(np.mean(pred - measured)), 2),
            "max_ratio": round(float(np.exp(log_ratio.max())), 3),
            "n_over_2x": int((log_ratio > np.log(2.0)).sum())}
