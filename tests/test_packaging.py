"""The package carries everything a run needs (scenarios, data) and nothing is left outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigrid_sim import config

ROOT = Path(__file__).resolve().parents[1]


def test_scenarios_ship_inside_the_package():
    """The Hydra tree is package data; a scenario file left in a top-level scenarios/ is lost."""
    assert config.scenarios_dir() == ROOT / "aigrid_sim" / "scenarios"
    stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").rglob("*.yaml"))
    assert not stray, f"move these into aigrid_sim/scenarios/ (package data): {stray}"


def test_package_data_globs_cover_every_shipped_file():
    """Every file under aigrid_sim/scenarios and aigrid_sim/data matches a package-data glob."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["aigrid_sim"]
    pkg = ROOT / "aigrid_sim"
    for sub in ("scenarios", "data"):
        for f in (pkg / sub).rglob("*"):
            if f.is_file() and f.suffix != ".py" and "__pycache__" not in f.parts:
                rel = f.relative_to(pkg)
                assert any(rel.match(g) and len(rel.parts) == len(Path(g).parts) for g in globs), \
                    f"{rel} is not package data: add a glob to [tool.setuptools.package-data]"


def test_every_bundled_data_file_is_credited_in_notice():
    """NOTICE names each file under aigrid_sim/data, with its source and license."""
    notice = (ROOT / "NOTICE").read_text()
    data = ROOT / "aigrid_sim" / "data"
    missing = sorted(str(f.relative_to(data)) for f in data.rglob("*")
                     if f.is_file() and "__pycache__" not in f.parts and f.name not in notice)
    assert not missing, f"credit these in NOTICE (source, license): {missing}"
    assert (ROOT / "LICENSE").read_text().count("Apache License") >= 1


def test_installed_version_is_the_package_version():
    """The pyproject reads the version from aigrid_sim.__version__: one place to change it."""
    from importlib.metadata import version

    import aigrid_sim

    assert version("aigrid-sim") == aigrid_sim.__version__
