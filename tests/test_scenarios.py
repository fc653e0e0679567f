"""Every shipped scenario composes, validates and runs briefly on the real engine path."""

from __future__ import annotations

import pytest

import aigrid_sim
from aigrid_sim import config

# Small versions: fewer cities, a few simulated seconds (mmc: a few thousand customers).
SHORT = {
    "mmc": ["requests=3000"],
    "trace_replay": ["world.cities.max_cities=300", "duration_s=30"],
}
DEFAULT_SHORT = ["world.cities.max_cities=300", "duration_s=15", "drain_s=30"]


@pytest.mark.parametrize("name", config.available_scenarios())
def test_scenario_runs_briefly(name):
    r = aigrid_sim.run(name, SHORT.get(name, DEFAULT_SHORT) + ["output.figures=false"])
    s = r.summary
    assert s["requests"] > 0
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"]
    assert s["completed"] > 0
    assert s["scenario"] == name
