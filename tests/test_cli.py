"""The aigrid-sim command as a user runs it, and the run folders it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import aigrid_sim
from aigrid_sim.results.rundir import COMPLETE, is_complete, load_run, write_run

SMALL = ["world.cities.max_cities=200", "duration_s=10", "workload.rate_rps=100"]


def cli(args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "aigrid_sim.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_runs_prints_summary_and_writes_folder(tmp_path):
    p = cli(SMALL, tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for word in ("requests", "completed", "p95", "edge", "regional", "core", "SLO met",
                 "per 1,000 completed requests", "run folder:", "by region", "Europe",
                 "provisioned (billed whether used or not): edge "):
        assert word in out, word
    folder = Path(out.strip().splitlines()[-1].split("run folder: ")[1])
    folder = folder if folder.is_absolute() else tmp_path / folder
    assert is_complete(folder)
    names = {f.name for f in folder.iterdir()}
    assert {"config.yaml", "requests.parquet", "sites.parquet", "summary.json",
            "latency_cdf_by_tier.png", "sites_utilisation_map.png", COMPLETE} <= names
    s = json.loads((folder / "summary.json").read_text())
    req = pd.read_parquet(folder / "requests.parquet")
    assert len(req) == s["requests"]
    # Running the same config again reuses the complete folder.
    again = cli(SMALL, tmp_path)
    assert "already complete" in again.stdout


@pytest.mark.parametrize("args, text", [
    (["policy=nope"], "unknown policy 'nope'"),
    (["nosuchkey=1"], "unknown key 'nosuchkey'"),
    (["scenario=atlantis"], "unknown scenario 'atlantis'"),
    (["world.regional.gpus=0"], "world.regional.gpus"),
    (["world.admission=greedy"], "key 'world.admission': must be one of forecast, vllm"),
    (["scenario=replica", "max_tokens=0"], "key 'workload.apps[0].max_tokens': must be >= 1"),
    (["scenario=mmc", "+workload.apps.0.max_tokens=100"],
     "key 'workload.apps[0].max_tokens': only generative apps"),
    (["--multirun", "policy=centralised,nope"], "unknown policy 'nope'"),
])
def test_cli_config_errors_exit_2_without_traceback(tmp_path, args, text):
    p = cli(args, tmp_path)
    assert p.returncode == 2
    assert text in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_run_folder_is_atomic(tmp_path, monkeypatch):
    r = aigrid_sim.run("global_agent", SMALL + ["output.figures=false"])

    def boom(*a, **k):
        raise RuntimeError("disk full")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", boom)  # every table of a run folder goes through it
    with pytest.raises(RuntimeError):
        write_run(r, tmp_path, figures=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    monkeypatch.undo()
    folder = write_run(r, tmp_path, figures=False)
    loaded = load_run(folder)
    assert loaded["summary"]["requests"] == r.summary["requests"]
    pd.testing.assert_frame_equal(loaded["requests"], r.requests)


def test_api_writes_nothing_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = aigrid_sim.run("global_agent", SMALL)
    assert r.out_dir is None and list(tmp_path.iterdir()) == []
    r2 = aigrid_sim.run("global_agent", SMALL, out_dir=tmp_path / "out")
    assert is_complete(r2.out_dir)


def test_editing_a_trace_in_place_changes_the_run_folder(tmp_path):
    """Resume must not reuse a run folder made from an older version of the same trace file."""
    from aigrid_sim.config import compose
    from aigrid_sim.results.rundir import run_folder_name

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,5\n")
    over = ["workload.arrivals.kind=trace", f"trace.path={trace}"]
    a = run_folder_name(compose("trace_replay", over))
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,6\n")
    assert run_folder_name(compose("trace_replay", over)) != a


def test_help_says_what_the_tool_does(tmp_path):
    p = cli(["--help"], tmp_path)
    assert p.returncode == 0
    for word in ("aigrid-sim", "scenario:", "global_agent", "cheapest_feasible", "--multirun",
                 "aigrid-sim-plan"):
        assert word in p.stdout, word


def test_cli_runs_a_users_own_scenario_from_config_dir(tmp_path):
    """``--config-dir`` adds a folder of one's own scenarios to the shipped tree (pkg://)."""
    mine = tmp_path / "my_scenarios" / "scenario"
    mine.mkdir(parents=True)
    (mine / "tiny.yaml").write_text("# @package _global_\ndefaults:\n  - /apps: customer_agent\n"
                                    "name: tiny\n")
    p = cli(["--config-dir", "my_scenarios", "scenario=tiny", *SMALL], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "run folder: results/tiny" in p.stdout.replace(str(tmp_path) + "/", "")
    bad = cli(["--config-dir", "my_scenarios", "scenario=tiny", "world.edge.gpuz=1"], tmp_path)
    assert bad.returncode == 2 and "world.edge.gpuz" in bad.stderr, bad.stderr


def test_progress_in_a_log_is_plain_lines(monkeypatch, capsys):
    """Stderr not a terminal: no bar, a line per interval with time, requests, rate, memory."""
    from aigrid_sim import cli

    monkeypatch.setattr(cli, "LOG_EVERY_S", {True: 0.0, None: 3600.0})
    bar, update = cli._progress_bar(1000.0, True)
    assert bar is None
    update(250.0, 12_345)
    err = capsys.readouterr().err
    assert err.startswith("simulating: 250/1,000 sim-s (25.0 %), 12,345 requests,")
    assert err.endswith(" s wall\n") and " MB, " in err
    _, quiet = cli._progress_bar(1000.0, None)  # default: a line an hour here, none yet
    quiet(500.0, 1)
    assert capsys.readouterr().err == ""
    assert cli._progress_bar(1000.0, False) == (None, None)
