"""The world: real places, tiers, the latency graph and the origin x site matrix."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from aigrid_sim import config
from aigrid_sim.world.build import Tier, build_world, shortest_rtt
from aigrid_sim.world.geo import fibre_floor_ms, great_circle_km


@pytest.fixture(scope="module")
def world():
    return build_world(config.validate(config.compose("global_agent")))


def test_tiers_come_from_real_places(world):
    tiers = np.bincount(world.site_tier, minlength=3)
    assert tiers[Tier.EDGE] == 340  # every Cloudflare PoP metro
    assert 40 <= tiers[Tier.REGIONAL] <= 119  # cloud regions, one per metro
    assert tiers[Tier.CORE] == 3
    assert world.n_origins == 6204  # GeoNames cities >= 100,000 people
    assert len(set(world.origin_name)) == world.n_origins
    assert "edge-NRT" in world.site_id and "core-aws-us-east-1" in world.site_id


def test_regional_sites_are_one_per_metro(world):
    reg = np.flatnonzero(world.site_tier == Tier.REGIONAL)
    d = great_circle_km(world.site_lat[reg, None], world.site_lon[reg, None],
                        world.site_lat[None, reg], world.site_lon[None, reg])
    np.fill_diagonal(d, np.inf)
    assert d.min() > 100.0


def test_graph_connected_and_matrix_shapes(world):
    assert nx.is_connected(world.graph)
    assert world.rtt_ms.shape == (world.n_origins, world.n_sites)
    assert np.isfinite(world.rtt_ms).all()
    np.testing.assert_allclose(world.site_rtt_ms, world.site_rtt_ms.T)


def test_no_path_beats_light_in_fibre(world):
    assert (world.rtt_ms >= world.floor_rtt_ms() - 1e-9).all()
    d = great_circle_km(world.site_lat[:, None], world.site_lon[:, None],
                        world.site_lat[None, :], world.site_lon[None, :])
    assert (world.site_rtt_ms >= fibre_floor_ms(d) - 1e-9).all()


def test_users_reach_a_nearby_edge_fast(world):
    """Big cities have an edge PoP within a few tens of ms; a far core is much further."""
    i = world.origin_name.index("Tokyo")
    edge = world.site_tier == Tier.EDGE
    assert world.rtt_ms[i, edge].min() < 20
    assert world.rtt_ms[i, world.site_id.index("core-aws-us-east-1")] > 120


def test_latency_is_shortest_path_through_entry_points(world):
    o = 17
    via = [world.attach_ms[o, j] + world.site_rtt_ms[world.attach_site[o, j]]
           for j in range(world.attach_site.shape[1])]
    np.testing.assert_allclose(world.rtt_ms[o], np.minimum.reduce(via))


def test_shortest_rtt_matches_networkx(world):
    d = shortest_rtt(world.graph, world.n_sites)
    ref = nx.single_source_dijkstra_path_length(world.graph, 5, weight="rtt_ms")
    for j, v in ref.items():
        assert d[5, j] == pytest.approx(v)


def test_filters_and_custom_world():
    sim = config.validate(config.compose("global_agent", [
        "world.cities.countries=[JP]", "world.edge.countries=[JP]",
        "world.regional.providers=[aws]"]))
    w = build_world(sim)
    assert set(w.origin_country) == {"JP"}
    assert all(w.site_country[s] == "JP" for s in np.flatnonzero(w.site_tier == Tier.EDGE))
    mmc = build_world(config.validate(config.compose("mmc", ["servers=5"])))
    assert mmc.n_sites == 1 and int(mmc.site_slots[0]) == 5 and (mmc.rtt_ms == 0).all()


def test_every_site_has_a_country(world):
    """Cloud-region country names all map to ISO codes (outage regions and RTTs need them)."""
    assert all(isinstance(c, str) and len(c) == 2 for c in world.site_country)


def _sites_by_tier(w):
    from collections import Counter

    return Counter(Tier(t).label for t in w.site_tier)


def test_regional_study_keeps_only_the_sites_serving_its_continents():
    """cities.countries=[DE,FR]: no regional or core site outside Europe is provisioned."""
    from aigrid_sim.world.build import read_data

    cont = read_data("world_countries.csv").set_index("iso2").continent_code
    region = ["world.cities.countries=[DE,FR]", "world.edge.countries=[DE,FR]"]
    w = build_world(config.validate(config.compose("global_agent", region)))
    upper = zip(w.site_country, w.site_tier, strict=True)
    assert {cont[c] for c, t in upper if t > Tier.EDGE} == {"EU"}
    assert [w.site_id[i] for i in np.flatnonzero(w.site_tier == Tier.CORE)] == \
        ["core-azure-westeurope"]
    everything = build_world(config.validate(config.compose(
        "global_agent", [*region, "world.keep_sites=all"])))
    n, n_all = _sites_by_tier(w), _sites_by_tier(everything)
    assert n["edge"] == n_all["edge"] and n["regional"] < n_all["regional"]
    assert n_all["core"] == 3 and n["core"] == 1
    assert w.provisioned == {"keep_sites": "serving", "continents": ["Europe"],
                             "dropped": {"regional": n_all["regional"] - n["regional"],
                                         "core": 2}}
    assert everything.provisioned["dropped"] == {}


def test_regional_study_keeps_the_nearest_site_of_a_tier_it_would_empty():
    """Nigeria: no core on its continent, so the nearest core (Amsterdam, not Tokyo) stays.

    An explicit regional list is kept as given.
    """
    w = build_world(config.validate(config.compose("global_agent", [
        "world.cities.countries=[NG]", "world.regional.regions=[aws:us-east-1,aws:af-south-1]"])))
    tiers = [Tier(t).label for t in w.site_tier]
    ids = {t: sorted(i for i, tt in zip(w.site_id, tiers, strict=True) if tt == t)
           for t in set(tiers)}
    assert ids["core"] == ["core-azure-westeurope"]
    assert ids["regional"] == ["regional-aws-af-south-1", "regional-aws-us-east-1"]
    from aigrid_sim.world.build import read_data

    cont = read_data("world_countries.csv").set_index("iso2").continent_code
    assert {cont[w.site_country[i]] for i in np.flatnonzero(w.site_tier == Tier.EDGE)} == {"AF"}


def test_global_world_is_not_pruned(world):
    assert world.provisioned.get("continents") is None
