"""Shared fixtures: small but real worlds, composed from the shipped scenarios."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# The shared data folder sits next to the checkout (../shared) or next to its worktree folder.
SHARED_DATA = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[2:4]
                    if (p / "shared" / "data").is_dir()),
                   Path(__file__).resolve().parents[2] / "shared" / "data")

# Small, fast versions of the default scenario: the real grid, fewer cities, seconds of traffic.
SMALL = ["world.cities.max_cities=400", "duration_s=20", "workload.rate_rps=300",
         "drain_s=120", "output.figures=false"]


@pytest.fixture(scope="session")
def small_overrides() -> list[str]:
    """Overrides that make global_agent small enough for unit tests."""
    return list(SMALL)


@pytest.fixture(scope="session")
def small_run():
    """One small global_agent run shared by read-only tests."""
    import aigrid_sim

    return aigrid_sim.run("global_agent", SMALL)
