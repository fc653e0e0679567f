"""Sweep reports: gathering run folders, per-configuration CIs, the Pareto front, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from aigrid_sim import report as R
from aigrid_sim.api import run
from aigrid_sim.errors import ConfigError
from aigrid_sim.results.stats import mean_ci

MMC = ["requests=3000", "output.figures=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2 policies x 2 server counts x 2 seeds sweep of the M/M/c scenario, plus debris."""
    root = tmp_path_factory.mktemp("sweep")
    for policy in ("nearest_capable", "least_loaded"):
        for servers in (8, 10):
            for seed in (1, 2):
                run("mmc", MMC + [f"policy={policy}", f"servers={servers}", f"seed={seed}"],
                    out_dir=root)
    # An interrupted run: its temporary folder, and a folder without the _COMPLETE marker.
    done = sorted(p for p in root.iterdir() if p.is_dir())[0]
    shutil.copytree(done, root / ".tmp-interrupted-abc")
    shutil.copytree(done, root / "half_written")
    (root / "half_written" / "_COMPLETE").unlink()
    return root


def test_gather_one_row_per_complete_run(sweep):
    df = R.gather(sweep)
    assert len(df) == 8
    assert df.attrs["incomplete"] == 2
    assert df.attrs["params"] == ["policy", "params.servers"]  # world.sites follows: derived
    assert {"policy", "seed", "params.servers", "world.sites"} <= set(df.attrs["swept"])
    assert df["run"].is_unique
    for col in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "slo_attainment",
                "cost_usd", "cost_per_1k_requests_usd", "utilisation", "reject_rate"):
        assert df[col].notna().all(), col
    # Values come from each run's summary.json unchanged.
    row = df.iloc[0]
    s = json.loads((sweep / row["run"] / "summary.json").read_text())
    assert row["latency_p95_ms"] == s["latency_ms"]["p95"]
    assert row["cost_per_1k_requests_usd"] == s["cost_per_1k_requests_usd"]
    # More servers: lower latency, higher cost (same arrivals per seed).
    a = df.set_index(["policy", "params.servers", "seed"])
    for pol in ("nearest_capable", "least_loaded"):
        for seed in (1, 2):
            big, small = a.loc[(pol, 10, seed)], a.loc[(pol, 8, seed)]
            assert big["latency_p95_ms"] < small["latency_p95_ms"]
            assert big["cost_usd"] > small["cost_usd"]


def test_by_config_uses_student_t_across_seeds(sweep):
    df = R.gather(sweep)
    agg = R.by_config(df)
    assert len(agg) == 4 and (agg["seeds"] == 2).all()
    r = agg[agg["config"] == "policy=least_loaded, servers=8"].iloc[0]
    x = df[(df["policy"] == "least_loaded") & (df["params.servers"] == 8)]["latency_p95_ms"]
    m, hw = mean_ci(x.to_numpy())
    assert r["latency_p95_ms"] == pytest.approx(m)
    assert r["latency_p95_ms_ci"] == pytest.approx(hw)


def test_single_seed_has_no_interval():
    df = pd.DataFrame({"config": ["a", "b", "b"], "latency_p95_ms": [1.0, 2.0, 4.0]})
    df.attrs["params"] = []
    agg = R.by_config(df, metrics=[("latency_p95_ms", "")])
    assert np.isnan(agg.loc[0, "latency_p95_ms_ci"]) and agg.loc[0, "latency_p95_ms"] == 1.0
    assert agg.loc[1, "latency_p95_ms"] == 3.0 and agg.loc[1, "latency_p95_ms_ci"] > 0


def test_pareto_front_by_hand():
    x = [1, 2, 3, 2, 4, np.nan, 1]
    y = [5, 3, 1, 4, 1, 0, 5]
    assert R.pareto_front(x, y).tolist() == [True, True, True, False, False, False, True]


def test_pareto_front_matches_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        x = rng.integers(0, 8, n).astype(float)
        y = rng.integers(0, 8, n).astype(float)
        got = R.pareto_front(x, y)
        want = [not any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i])
                        for j in range(n)) for i in range(n)]
        assert got.tolist() == want


def test_write_report_files_and_figures(sweep, tmp_path):
    rep = R.write_report(sweep, tmp_path / "rep")
    names = {p.name for p in rep["files"]}
    assert names == {"runs.parquet", "runs.csv", "by_config.csv", "latency_cdf.png",
                     "p95_cost_ci.png", "latency_cost.png", "report.html"}
    for p in rep["files"]:
        assert p.stat().st_size > 0
    back = pd.read_parquet(tmp_path / "rep" / "runs.parquet")
    assert len(back) == 8 and list(back.columns) == list(rep["runs"].columns)
    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 8
    agg = pd.read_csv(tmp_path / "rep" / "by_config.csv")
    # Each policy's servers=8 and servers=10 trade latency for cost: the faster one is on the
    # front unless an identical or better point exists.
    assert agg["pareto"].any()
    best_latency = agg["latency_p95_ms"].idxmin()
    assert agg.loc[best_latency, "pareto"]


def test_report_cli(sweep, tmp_path, capsys):
    R.main([str(sweep), "--out", str(tmp_path / "r"), "--no-figures", "--latency", "ttft"])
    out = capsys.readouterr().out
    assert "8 complete runs" in out and "(2 folders skipped)" in out
    assert "skipped 1 folder (half_written): incomplete: summary.json but no _COMPLETE" in out
    assert "policy=nearest_capable, servers=10" in out
    with pytest.raises(SystemExit) as e:
        R.main([str(tmp_path / "empty_does_not_exist")])
    assert e.value.code == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no readable run folder"):
        R.gather(tmp_path / "empty")


def test_frontier_leaves_out_configurations_that_reject_work():
    agg = pd.DataFrame({"latency_p95_ms": [100.0, 200.0, 300.0],
                        "cost_per_1k_requests_usd": [1.0, 2.0, 0.5],
                        "reject_rate": [0.30, 0.0, 0.0]})
    # Without the rejection rule the 30 %-rejecting config dominates the 200 ms one.
    assert R.pareto_front(agg["latency_p95_ms"], agg["cost_per_1k_requests_usd"]).tolist() == \
        [True, False, True]
    assert R.frontier(agg, max_reject=0.01).tolist() == [False, True, True]


def test_mixed_scenarios_never_share_a_column_between_knobs_and_metrics(tmp_path):
    """An mmc run (knob ``requests``) beside a grid run: the knob is ``params.requests``."""
    run("mmc", MMC, out_dir=tmp_path)
    run("global_agent", ["world.cities.max_cities=30", "duration_s=2", "workload.rate_rps=20",
                         "output.figures=false"], out_dir=tmp_path)
    rep = R.write_report(tmp_path, tmp_path / "rep", figures=False)
    df = rep["runs"]
    assert not df.columns.duplicated().any()
    assert "params.requests" in df.attrs["swept"]
    assert df.set_index("scenario").loc["mmc", "params.requests"] == 3000
    assert (df["requests"] > 0).all()  # the metric, untouched
    assert set(df["scenario"]) == {"mmc", "global_agent"}


def _runs(root):
    return sorted(p for p in root.iterdir() if (p / "_COMPLETE").exists()
                  and not p.name.startswith(".tmp-"))


def _rewrite_summary(folder, **changes):
    p = folder / "summary.json"
    s = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            s.pop(k, None)
        else:
            s[k] = v
    p.write_text(json.dumps(s))


def test_runs_of_another_results_schema_are_skipped_with_a_line(sweep, tmp_path, capsys):
    from aigrid_sim.results.rundir import RESULTS_SCHEMA

    mixed = tmp_path / "mixed"
    shutil.copytree(sweep, mixed, ignore=shutil.ignore_patterns("report"))
    runs = _runs(mixed)
    _rewrite_summary(runs[0], results_schema=None, aigrid_sim_version=None)
    _rewrite_summary(runs[1], results_schema=RESULTS_SCHEMA + 1, aigrid_sim_version="9.9.9")
    R.main([str(mixed), "--out", str(tmp_path / "r"), "--no-figures"])
    out = capsys.readouterr().out
    assert "6 complete runs" in out
    assert f"results schema 0 (written by an aigrid-sim before results were versioned); " \
           f"this aigrid-sim reads schema {RESULTS_SCHEMA}" in out
    assert f"results schema {RESULTS_SCHEMA + 1} (written by 9.9.9)" in out
    assert runs[0].name in out and runs[1].name in out


def test_report_on_nothing_readable_is_one_line_and_exit_2(sweep, tmp_path, capsys):
    # No runs at all.
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        R.main([str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "no readable run folder" in err and "Traceback" not in err
    # Only a half-written run and an old-schema run.
    bad = tmp_path / "bad"
    runs = _runs(sweep)
    shutil.copytree(runs[0], bad / "half")
    (bad / "half" / "_COMPLETE").unlink()
    shutil.copytree(runs[1], bad / "old")
    _rewrite_summary(bad / "old", results_schema=None)
    shutil.copytree(runs[2], bad / "broken")
    (bad / "broken" / "summary.json").write_text('{"requests": 1')  # truncated
    with pytest.raises(SystemExit) as e:
        R.main([str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    for word in ("half", "incomplete", "old", "results schema 0", "broken", "unreadable"):
        assert word in err, word


def test_results_files_carry_the_package_and_schema_versions(sweep):
    import pyarrow.parquet as pq

    import aigrid_sim
    from aigrid_sim.results.rundir import RESULTS_SCHEMA, table_stamp

    folder = _runs(sweep)[0]
    s = json.loads((folder / "summary.json").read_text())
    assert (s["aigrid_sim_version"], s["results_schema"]) == (aigrid_sim.__version__,
                                                              RESULTS_SCHEMA)
    for name in ("requests.parquet", "sites.parquet"):
        assert table_stamp(folder / name) == {"aigrid_sim_version": aigrid_sim.__version__,
                                              "results_schema": RESULTS_SCHEMA}
        assert b"pandas" in pq.read_schema(folder / name).metadata  # pandas' own kept
