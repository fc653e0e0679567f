"""The compiled per-request path (setup.py, aigrid_sim/_native.py).

When it runs, and that it gives the same records as the pure-Python modules, bit for bit.
"""

import hashlib
import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap

import pytest

from aigrid_sim import _native

HASH_RUN = textwrap.dedent("""
    import dataclasses, hashlib, sys
    import numpy as np
    import aigrid_sim
    from aigrid_sim import _native, api, config
    h = hashlib.sha256()
    for sc in ("global_agent", "multi_tenant"):
        cfg = config.validate(config.compose(sc, ["max_requests=4000", "duration_s=20", "seed=3"]))
        _, _, rec, _ = api.simulate(cfg)
        for f in dataclasses.fields(rec):
            v = getattr(rec, f.name)
            if v is not None:
                h.update(f.name.encode())
                h.update(np.ascontiguousarray(v).tobytes())
    print(_native.MODE)
    print(h.hexdigest())
""")


def _run(env_extra: dict) -> list[str]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", HASH_RUN], capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout.split("\n")


def test_compiled_and_pure_builds_give_the_same_records():
    default = _run({"AIGRID_SIM_PURE": ""})
    pure = _run({"AIGRID_SIM_PURE": "1"})
    assert pure[0].startswith("pure Python"), pure[0]
    assert default[1] == pure[1], (default[0], pure[0])


def test_pure_mode_runs_the_python_sources():
    code = ("import aigrid_sim, aigrid_sim.sim.engine as e, aigrid_sim.serving.replica as r; "
            "from aigrid_sim import _native; print(_native.MODE); print(e.__file__); "
            "print(r.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "AIGRID_SIM_PURE": "1"}, check=True)
    mode, engine, replica = out.stdout.split("\n")[:3]
    assert mode.startswith("pure Python")
    assert engine.endswith("engine.py") and replica.endswith("replica.py")


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """A package tree as a build leaves it.

    Every compiled module's source, an extension next to each, and the hashes of the sources.
    """
    pkg = tmp_path / "aigrid_sim"
    hashes = {}
    for name in _native.COMPILED:
        src = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"# {name}\n")
        src.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"")
        rel = src.relative_to(tmp_path).as_posix()
        hashes[rel] = hashlib.sha256(src.read_bytes()).hexdigest()
    (pkg / "_native.json").write_text(json.dumps(hashes))
    monkeypatch.setattr(_native, "_PKG", pkg)
    monkeypatch.delenv("AIGRID_SIM_PURE", raising=False)
    return tmp_path


def test_a_build_of_the_same_sources_is_used(fake_build):
    assert _native._why_pure() is None


def test_an_edited_source_falls_back_to_pure_python_with_a_warning(fake_build):
    src = fake_build / "aigrid_sim" / "serving" / "replica.py"
    src.write_text(src.read_text() + "x = 1\n")
    with pytest.warns(RuntimeWarning, match=r"serving/replica\.py changed since it was compiled"):
        why = _native._why_pure()
    assert why == "pure Python (compiled build out of date)"


def test_a_partial_build_falls_back_to_pure_python(fake_build):
    src = fake_build / "aigrid_sim" / "sim" / "engine.py"
    src.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).unlink()
    with pytest.warns(RuntimeWarning, match=r"sim/engine\.py changed since it was compiled"):
        assert _native._why_pure() == "pure Python (compiled build out of date)"


def test_the_environment_variable_forces_pure_python(fake_build, monkeypatch):
    monkeypatch.setenv("AIGRID_SIM_PURE", "1")
    assert _native._why_pure() == "pure Python (AIGRID_SIM_PURE is set)"


def test_setup_compiles_the_modules_native_names():
    """setup.py's file list and _native.COMPILED name the same modules."""
    from pathlib import Path

    setup = (Path(_native.__file__).parents[1] / "setup.py").read_text()
    files = [n.replace(".", "/") + ".py" for n in _native.COMPILED]
    for f in files:
        assert f'"{f}"' in setup
    assert setup.count('"aigrid_sim/') == len(files)
