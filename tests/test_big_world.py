"""Big worlds: k-d tree searches, sparse round trips, user site tables, PoP-per-city generator.

The dense form (small worlds) must be exactly what it always was; the sparse form must give the
same candidates and the same round trips (to the last bit or two) without an origins x sites
matrix.
"""

from __future__ import annotations

import subprocess
import sys
import time

import networkx as nx
import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

import aigrid_sim
from aigrid_sim import config
from aigrid_sim.api import config_of
from aigrid_sim.errors import ConfigError
from aigrid_sim.world import build
from aigrid_sim.world.build import Tier, build_world, graph_edges
from aigrid_sim.world.geo import estimate_rtt_ms, great_circle_km
from aigrid_sim.world.index import SphereIndex
from aigrid_sim.world.latency import SparseRtt
from aigrid_sim.world.sites import city_pops, read_sites_csv

SMALL = ["world.cities.max_cities=300"]


def _random_places(n, seed):
    g = np.random.default_rng(seed)
    return np.degrees(np.arcsin(g.uniform(-1, 1, n))), g.uniform(-180, 180, n)


# ----------------------------------------------------------------------------- k-d tree


@pytest.mark.parametrize("k", [1, 3, 8])
def test_sphere_index_is_the_brute_force_stable_sort(k):
    lat, lon = _random_places(600, 1)
    qlat, qlon = _random_places(300, 2)
    idx, km = SphereIndex(lat, lon).nearest(qlat, qlon, k)
    d = great_circle_km(qlat[:, None], qlon[:, None], lat[None, :], lon[None, :])
    ref = np.argsort(d, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(km, np.take_along_axis(d, ref, 1))


def test_sphere_index_excludes_self_and_breaks_ties_by_index():
    lat = np.array([10.0, 10.0, 10.0, 11.0, -30.0])
    lon = np.array([20.0, 20.0, 20.0, 20.0, 100.0])
    idx, _ = SphereIndex(lat, lon).nearest(lat, lon, 2, exclude=np.arange(5))
    assert idx[0].tolist() == [1, 2] and idx[1].tolist() == [0, 2] and idx[3].tolist() == [0, 1]
    assert (idx != np.arange(5)[:, None]).all()


def test_graph_edges_kd_tree_equals_brute_force(monkeypatch):
    lat, lon = _random_places(500, 3)
    tier = np.zeros(500, dtype=np.int8)
    tier[::40] = Tier.REGIONAL
    tier[7] = Tier.CORE
    brute = graph_edges(lat, lon, tier, 4, ["regional", "core"])
    monkeypatch.setattr(build, "DENSE_SITES_MAX", 0)
    tree = graph_edges(lat, lon, tier, 4, ["regional", "core"])
    np.testing.assert_array_equal(brute[0], tree[0])
    np.testing.assert_array_equal(brute[1], tree[1])


# ----------------------------------------------------------------------------- default world


def test_default_world_is_built_exactly_as_before():
    """The old construction (dense distances, every pair's RTT), written out, gives the same."""
    cfg = config_of("global_agent", SMALL)
    w = build_world(cfg)
    assert w.dense
    S = w.n_sites
    lat, lon, tier = w.site_lat, w.site_lon, w.site_tier
    c = np.array(w.site_country, dtype=object)
    dist = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    rtt = estimate_rtt_ms(lat[:, None], lon[:, None], lat[None, :], lon[None, :],
                          c[:, None], c[None, :], path="backbone")  # world.graph.site_path
    np.fill_diagonal(dist, np.inf)
    pairs = set()
    for i in range(S):
        for j in np.argpartition(dist[i], 3)[:4]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    mesh = [i for i in range(S) if Tier(tier[i]).label in ("regional", "core")]
    pairs |= {(a, b) for a in mesh for b in mesh if a < b}
    upper = np.flatnonzero(tier > Tier.EDGE)
    for i in np.flatnonzero(tier == Tier.EDGE):
        j = int(upper[np.argmin(dist[i, upper])])
        pairs.add((min(i, j), max(i, j)))
    got = {(min(a, b), max(a, b)): d for a, b, d in w.graph.edges(data=True)}
    assert set(got) == pairs
    for (a, b), d in got.items():
        assert d["rtt_ms"] == rtt[a, b] and d["km"] == dist[a, b]
    g = nx.Graph()
    g.add_nodes_from(range(S))
    g.add_weighted_edges_from(((a, b, rtt[a, b]) for a, b in pairs), weight="rtt_ms")
    site_rtt = dijkstra(nx.to_scipy_sparse_array(g, nodelist=range(S), weight="rtt_ms"),
                        directed=False)
    np.testing.assert_array_equal(w.site_rtt_ms, site_rtt)
    edge = np.flatnonzero(tier == Tier.EDGE)
    d_entry = great_circle_km(w.origin_lat[:, None], w.origin_lon[:, None], lat[edge][None, :],
                              lon[edge][None, :])
    attach = edge[np.argsort(d_entry, axis=1, kind="stable")[:, :2]]
    np.testing.assert_array_equal(w.attach_site, attach)
    via = w.attach_ms[:, :, None] + site_rtt[attach]
    np.testing.assert_array_equal(w.rtt_ms, via.min(axis=1))


# ----------------------------------------------------------------------------- sparse form


@pytest.fixture(scope="module")
def both():
    cfg = config_of("global_agent", SMALL)
    dense = build_world(cfg)
    sparse = build_world(config_of("global_agent", SMALL + ["world.rtt_matrix=sparse"]))
    return dense, sparse


def _masks(w):
    caps, tiers = w.site_capability, w.site_tier
    for c in sorted(set(caps.tolist())):
        ok = np.flatnonzero(caps >= c)
        yield ok
        for t in Tier:
            yield ok[tiers[ok] == t]


def test_sparse_gives_the_dense_candidates_and_round_trips(both):
    dense, sparse = both
    assert dense.dense and not sparse.dense and sparse.site_rtt_ms is None
    assert isinstance(sparse.rtt_ms, SparseRtt)
    for m in _masks(dense):
        for k in (1, 8):
            di, dv = dense.nearest_sites(m, k)
            si, sv = sparse.nearest_sites(m, k)
            np.testing.assert_allclose(dv, sv, rtol=1e-13, atol=0)
            # Same sites, except the order of exact ties (two sites at one place: argpartition
            # orders them arbitrarily, the sparse search by index).
            differ = di != si
            assert np.isclose(dv[differ], sv[differ], rtol=1e-13).all()
            assert differ.sum() <= 0.01 * max(1, differ.size)
            keep = dv[:, -1:] > dv  # strictly inside the k: the same set
            for r in np.flatnonzero(differ.any(axis=1)):
                assert set(di[r][keep[r]]) == set(si[r][keep[r]])
    g = np.random.default_rng(0)
    o = g.integers(0, dense.n_origins, 400)
    s = g.integers(0, dense.n_sites, 400)
    np.testing.assert_allclose(sparse.rtt_ms[o, s], dense.rtt_ms[o, s], rtol=1e-13, atol=0)
    for a, b in zip(o[:50].tolist(), s[:50].tolist(), strict=True):
        assert sparse.rtt_ms.item(a, b) == pytest.approx(dense.rtt_ms.item(a, b), rel=1e-13)


def _same_run(dense_over, sparse_over):
    d = aigrid_sim.run("global_agent", dense_over).requests
    s = aigrid_sim.run("global_agent", sparse_over).requests
    for col in ("site", "tier", "status", "origin", "app", "slo_met"):
        assert (d[col] == s[col]).all(), col
    for col in ("network_ms", "latency_ms", "ttft_ms", "queue_ms"):
        np.testing.assert_allclose(s[col], d[col], rtol=1e-9, atol=1e-9)


def test_sparse_run_makes_the_same_decisions(small_overrides):
    _same_run(small_overrides, small_overrides + ["world.rtt_matrix=sparse"])


def test_sparse_link_cut_makes_the_same_decisions(small_overrides):
    w = build_world(config_of("global_agent", small_overrides))
    a, b = max(w.graph.edges, key=lambda e: w.graph.degree(e[0]) + w.graph.degree(e[1]))
    cut = [f"faults.links=[{{a: {w.site_id[a]}, b: {w.site_id[b]}, start_s: 5, "
           f"duration_s: 8}}]"]
    _same_run(small_overrides + cut, small_overrides + cut + ["world.rtt_matrix=sparse"])


def test_sparse_candidates_are_exact_with_thousands_of_pops():
    """Bounded searches on a many-PoP world agree with a brute force over every site."""
    cfg = config_of("global_agent", ["world.cities.max_cities=1500", "world.edge.source=cities",
                                     "world.edge.min_population=300000"])
    w = build_world(cfg)
    assert not w.dense and (w.site_tier == Tier.EDGE).sum() > 256  # the bounded-search path
    r = w.rtt_ms
    g = np.random.default_rng(5)
    sample = g.choice(w.n_origins, 25, replace=False)
    for m in _masks(w):
        idx, val = w.nearest_sites(m, 8)
        for o in sample.tolist():
            full = np.array([r._exact(o, int(s)) for s in m])
            ref = m[np.lexsort((m, full))[:8]]
            assert idx[o].tolist() == ref.tolist()
            np.testing.assert_array_equal(val[o], np.sort(full)[:len(ref)])


# ----------------------------------------------------------------------------- site tables


def _csv(tmp_path, text, name="pops.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = ("id,lat,lon,country,gpus\n"
        "fra,50.11,8.68,DE,2\n"
        "par,48.86,2.35,fr,\n"
        "nyc,40.71,-74.0,US,3\n"
        "syd,-33.87,151.21,,\n")


def test_site_csv_gives_the_edge_tier(tmp_path):
    p = _csv(tmp_path, GOOD)
    t = read_sites_csv(p)
    assert t.id.tolist() == ["fra", "par", "nyc", "syd"]
    assert t.country.tolist() == ["DE", "FR", "US", None]
    w = build_world(config_of("global_agent", [
        "world.edge.source=file", f"world.edge.file={p}", "world.cities.max_cities=100",
        "world.sized_gpus=null"]))
    edge = np.flatnonzero(w.site_tier == Tier.EDGE)
    assert [w.site_id[i] for i in edge] == ["fra", "par", "nyc", "syd"]
    assert w.site_gpus[edge].tolist() == [2, 1, 3, 1]  # empty = the tier's (1)
    assert set(np.unique(w.attach_site)) <= set(edge.tolist())


@pytest.mark.parametrize("text, where", [
    ("id,lat,lon\na,1,2\nb,3,4\na,5,6\n", "line 4, column 'id': 'a' repeats the id of line 2"),
    ("id,lat,lon\na,1,2\nb,95,4\n", "line 3, column 'lat'"),
    ("id,lat,lon\na,1,-180.5\n", "line 2, column 'lon'"),
    ("id,lon\na,2\n", "line 1: missing column 'lat'"),
    ("id,lat,lon,gpu_count\na,1,2,3\n", "unknown column 'gpu_count'"),
    ("id,lat,lon\na,1,2\nb,north,4\n", "line 3, column 'lat': 'north' is not a number"),
    ("id,lat,lon\na,1,2\n,3,4\n", "line 3, column 'id': is empty"),
    ("id,lat,lon\na,,2\n", "line 2, column 'lat': is empty"),
    ("id,lat,lon,gpus\na,1,2,1.5\n", "line 2, column 'gpus': '1.5' is not a whole number"),
    ("id,lat,lon,gpus\na,1,2,0\n", "line 2, column 'gpus'"),
    ("id,lat,lon,country\na,1,2,Germany\n", "line 2, column 'country'"),
    ("id,lat,lon\n", "no sites"),
])
def test_bad_site_csv_names_file_line_and_column(tmp_path, text, where):
    p = _csv(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        read_sites_csv(p)
    msg = str(e.value)
    assert str(p) in msg and where in msg and "\n" not in msg


def test_site_csv_model_errors_name_the_line(tmp_path):
    p = _csv(tmp_path, "id,lat,lon,model\na,1,2,\nb,3,4,gpt-9\n")
    with pytest.raises(ConfigError, match=r"pops.csv: line 3: unknown model 'gpt-9'"):
        build_world(config_of("global_agent", ["world.edge.source=file", f"world.edge.file={p}",
                                               "world.cities.max_cities=20"]))


def test_site_csv_in_a_custom_world(tmp_path):
    p = _csv(tmp_path, GOOD)
    w = build_world(config_of("mmc", ["world.edge.source=file", f"world.edge.file={p}"]))
    assert w.site_id[:4] == ["fra", "par", "nyc", "syd"] and w.n_sites == 5


def test_cli_bad_site_csv_exits_2_with_one_line(tmp_path):
    p = _csv(tmp_path, "id,lat,lon\na,1,2\na,3,4\n")
    r = subprocess.run([sys.executable, "-m", "aigrid_sim.cli", "world.edge.source=file",
                        f"world.edge.file={p}", "output.write=false"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "pops.csv: line 3, column 'id'" in r.stderr


@pytest.mark.parametrize("over, key", [
    (["world.edge.source=file"], "world.edge.file"),
    (["world.edge.file=x.csv"], "world.edge.file"),
    (["world.edge.source=cities", "world.edge.pops=[FRA]"], "world.edge.pops"),
    (["world.edge.source=moon"], "world.edge.source"),
    (["world.rtt_matrix=huge"], "world.rtt_matrix"),
])
def test_edge_source_settings_are_checked(over, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_of("global_agent", over)


def test_a_pop_in_every_city():
    table = build.city_table(500_000)
    pops = city_pops(table, 500_000)
    assert len(pops) == (table.population >= 500_000).sum() > 300
    assert pops.id.is_unique and pops.id.str.startswith("edge-").all()
    w = build_world(config_of("global_agent", [
        "world.edge.source=cities", "world.edge.min_population=500000",
        "world.edge.countries=[DE,FR,IT]", "world.cities.max_cities=50"]))
    edge = np.flatnonzero(w.site_tier == Tier.EDGE)
    assert 0 < len(edge) < len(pops)
    assert {w.site_country[i] for i in edge} <= {"DE", "FR", "IT"}
    assert "edge-FR-Paris" in w.site_id
    with pytest.raises(ConfigError, match="world.edge.min_population"):
        city_pops(table, 10**9)


# ----------------------------------------------------------------------------- origins, config


def test_origins_are_added_to_the_cities_of_the_grid():
    o = ("world.origins=[{name: Base Camp, lat: 28.0, lon: 86.9, country: NP, "
         "population: 5000}]")
    w = build_world(config_of("global_agent", ["world.cities.max_cities=30", o]))
    assert w.n_origins == 31 and w.origin_name[-1] == "Base Camp"
    only = build_world(config_of("global_agent", ["world.cities.max_cities=0", o]))
    assert only.origin_name == ["Base Camp"]
    with pytest.raises(ConfigError, match="world.origins"):
        build_world(config_of("global_agent", ["world.cities.max_cities=0"]))


def test_long_inline_site_lists_are_checked_fast_and_typed():
    lat, lon = _random_places(3000, 9)
    sites = [{"id": f"s{i}", "tier": "edge", "lat": float(a), "lon": float(b), "gpus": "2",
              "gpu": "L40S", "model": "llama-3.1-8b-fp8"} for i, (a, b) in
             enumerate(zip(lat, lon, strict=True))]
    raw = config.OmegaConf.to_container(config.compose("global_agent", []), resolve=True)
    raw["world"]["sites"] = sites
    t0 = time.perf_counter()
    c = config.validate(raw)
    assert time.perf_counter() - t0 < 10  # OmegaConf's merge took ~30 s for this list
    assert len(c.world.sites) == 3000 and c.world.sites[5].gpus == 2
    assert isinstance(c.world.sites[5], config.SiteConfig) and c.world.sites[5].max_queue > 0
    bad = dict(raw, world=dict(raw["world"], sites=sites[:3] + [dict(sites[3], gpus=1.5)]))
    with pytest.raises(ConfigError, match=r"world\.sites\[3\]\.gpus"):
        config.validate(bad)
    bad = dict(raw, world=dict(raw["world"], sites=sites[:2] + [dict(sites[2], colour=1)]))
    with pytest.raises(ConfigError, match=r"world\.sites\[2\]\.colour': unknown key"):
        config.validate(bad)
