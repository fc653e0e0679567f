"""Which RTT model each edge of the latency graph uses (issue 11).

Backbone between sites, Internet from users to the PoPs they enter through.
"""

from __future__ import annotations

import numpy as np
import pytest

from aigrid_sim import config
from aigrid_sim.world.build import build_world
from aigrid_sim.world.geo import estimate_rtt_ms

SMALL = ["world.edge.countries=[FR,DE,GB,US,AE,IN]", "world.cities.countries=[FR,US,IN]",
         "world.regional.providers=[aws]"]


def _world(*extra):
    return build_world(config.validate(config.compose("global_agent", [*SMALL, *extra])))


def _edge_rtts(w, path):
    a, b = np.array(list(w.graph.edges())).T
    c = np.array(w.site_country, dtype=object)
    got = np.array([w.graph.edges[i, j]["rtt_ms"] for i, j in zip(a, b, strict=True)])
    want = estimate_rtt_ms(w.site_lat[a], w.site_lon[a], w.site_lat[b], w.site_lon[b], c[a], c[b],
                           path=path)
    return got, want


@pytest.mark.parametrize("site_path", ["backbone", "internet"])
def test_site_edges_use_site_path_and_users_the_internet(site_path):
    w = _world(f"world.graph.site_path={site_path}")
    got, want = _edge_rtts(w, site_path)
    assert len(got) > 20
    np.testing.assert_allclose(got, want, rtol=1e-12)
    other = "internet" if site_path == "backbone" else "backbone"
    assert not np.allclose(got, _edge_rtts(w, other)[1])
    # Users enter through PoPs over the public Internet, whatever the sites use.
    oc = np.array(w.origin_country, dtype=object)[:, None]
    sc = np.array(w.site_country, dtype=object)[w.attach_site]
    user = 5.0 + estimate_rtt_ms(w.origin_lat[:, None], w.origin_lon[:, None],
                                 w.site_lat[w.attach_site], w.site_lon[w.attach_site], oc, sc,
                                 path="internet")
    np.testing.assert_allclose(w.attach_ms, user, rtol=1e-12)


def test_bad_site_path_names_the_key():
    with pytest.raises(config.ConfigError, match="key 'world.graph.site_path'"):
        config.validate(config.compose("global_agent", ["world.graph.site_path=carrier_pigeon"]))
