"""Sweeps through Hydra launchers: joblib by default, Ray and submitit (slow), resume, interruption.

Each sweep runs the real ``aigrid-sim`` console script in a subprocess, the way a user would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aigrid_sim.results import report
from aigrid_sim.results.rundir import is_complete

BIN = Path(sys.executable).parent
SWEEP = ["scenario=mmc", "requests=1500", "output.figures=false",
         "policy=nearest_capable,least_loaded"]


def _aigrid(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    return subprocess.run([str(BIN / "aigrid-sim"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_joblib_is_the_default_multirun_launcher(tmp_path):
    cfg = _aigrid(["--cfg", "hydra", "scenario=mmc"], tmp_path)
    assert cfg.returncode == 0, cfg.stderr
    assert "JoblibLauncher" in cfg.stdout


def test_sweep_runs_in_parallel_and_resumes(tmp_path):
    out = tmp_path / "res"
    args = ["--multirun", *SWEEP, f"output.dir={out}", "hydra.launcher.n_jobs=2"]
    first = _aigrid(args, tmp_path)
    assert first.returncode == 0, first.stderr
    runs = _folders(out)
    assert len(runs) == 2 and all(is_complete(p) for p in runs)
    assert first.stdout.count("run folder: ") == 2
    stamps = {p.name: (p / "summary.json").stat().st_mtime_ns for p in runs}
    again = _aigrid(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already complete, not re-run") == 2
    assert {p.name: (p / "summary.json").stat().st_mtime_ns for p in _folders(out)} == stamps
    assert len(report.gather(out)) == 2


def test_interrupted_run_leaves_no_complete_folder(tmp_path, monkeypatch):
    """A run killed while writing its folder leaves nothing a resume or a report would trust."""
    from aigrid_sim.api import run
    from aigrid_sim.results import plots

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "online_figures", boom)
    with pytest.raises(KeyboardInterrupt):
        run("mmc", ["requests=500", "output.figures=true"], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_killed_sweep_job_is_rerun(tmp_path):
    """SIGKILL during a sweep: the folders present are complete; a rerun finishes the rest."""
    out = tmp_path / "res"
    args = ["--multirun", "scenario=mmc", "requests=150000", "output.figures=false",
            "seed=1,2,3", f"output.dir={out}", "hydra.launcher.n_jobs=1"]
    p = subprocess.Popen([str(BIN / "aigrid-sim"), *args], cwd=tmp_path, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first run folder exists, then kill all
        if out.exists() and any(is_complete(f) for f in _folders(out)):
            break
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    complete = [f for f in _folders(out) if is_complete(f)]
    assert 1 <= len(complete) < 3
    assert all(is_complete(f) for f in _folders(out))  # nothing half-written looks like a run
    again = _aigrid(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already complete, not re-run") == len(complete)
    assert len([f for f in _folders(out) if is_complete(f)]) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_launcher_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, **env})
    try:
        out = tmp_path / "res"
        args = ["--multirun", "hydra/launcher=ray",
                f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                "+hydra.launcher.ray.init.object_store_memory=null",
                *SWEEP, f"output.dir={out}"]
        deadline = time.time() + 120
        while True:  # the head needs a few seconds to accept clients
            r = _aigrid(args, tmp_path, env)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(3)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert len([f for f in _folders(out) if is_complete(f)]) == 2
        # Same configs, same folders as the default launcher would write (same config hash).
        local = tmp_path / "local"
        r2 = _aigrid(["--multirun", *SWEEP, f"output.dir={local}", "hydra.launcher.n_jobs=2"],
                     tmp_path)
        assert r2.returncode == 0, r2.stderr
        assert [f.name for f in _folders(out)] == [f.name for f in _folders(local)]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = tmp_path / "res"
    r = _aigrid(["--multirun", "hydra/launcher=submitit_local", *SWEEP, f"output.dir={out}"],
                tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    runs = [f for f in _folders(out) if is_complete(f)]
    assert len(runs) == 2
    assert len(report.gather(out)) == 2
