"""Streamed runs: same table and counts as in memory, output modes, atomic folders, resources."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import aigrid_sim
from aigrid_sim.api import config_of
from aigrid_sim.errors import ConfigError
from aigrid_sim.results.report import find_runs
from aigrid_sim.results.rundir import is_complete
from aigrid_sim.results.sink import sample_mask

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["world.cities.max_cities=300", "duration_s=30", "workload.rate_rps=200",
         "drain_s=60", "output.figures=false"]
COUNTS = ("requests", "completed", "rejected", "failed", "in_flight", "failed_over",
          "measured_requests", "reasons")


def test_streamed_run_equals_in_memory_run(tmp_path):
    mem = aigrid_sim.run("global_agent", SMALL)
    # a streamed run in 7-second windows, flushed to parquet row groups as it goes
    st = aigrid_sim.run("global_agent", SMALL + ["output.window_s=7"], out_dir=tmp_path)
    disk = pd.read_parquet(st.out_dir / "requests.parquet")
    pd.testing.assert_frame_equal(disk, mem.requests, check_exact=True)
    pd.testing.assert_frame_equal(st.requests, mem.requests, check_exact=True)
    for k in COUNTS:
        assert st.summary[k] == mem.summary[k], k
    for k in ("p50", "p95", "p99"):  # the same sketch bins
        assert st.summary["latency_ms"][k] == mem.summary["latency_ms"][k]
    # sums added block by block: equal to the last bits of a float, not bit for bit
    assert st.summary["latency_ms"]["mean"] == pytest.approx(mem.summary["latency_ms"]["mean"],
                                                            rel=1e-12)
    pd.testing.assert_frame_equal(st.sites, mem.sites, rtol=1e-12)
    for f in ("config.yaml", "sites.parquet", "cities.parquet", "sketches.parquet",
              "summary.json", "_COMPLETE"):
        assert (st.out_dir / f).exists(), f


def test_output_requests_none_and_sample_keep_the_counts(tmp_path):
    full = aigrid_sim.run("global_agent", SMALL, out_dir=tmp_path / "a")
    none = aigrid_sim.run("global_agent", SMALL + ["output.requests=none"], out_dir=tmp_path / "b")
    samp = aigrid_sim.run("global_agent", SMALL + ["output.requests=sample",
                                                   "output.sample_fraction=0.1"],
                          out_dir=tmp_path / "c")
    assert not (none.out_dir / "requests.parquet").exists()
    assert none.requests.empty and none.records is None
    for k in COUNTS:
        assert none.summary[k] == samp.summary[k] == full.summary[k], k
    assert none.summary["by_region"] == full.summary["by_region"]
    rows = pd.read_parquet(samp.out_dir / "requests.parquet")
    n = full.summary["requests"]
    assert abs(len(rows) - 0.1 * n) < 4 * np.sqrt(0.1 * n)
    ref = full.requests.set_index("request_id").loc[rows["request_id"]].reset_index()
    pd.testing.assert_frame_equal(rows, ref, check_exact=True)  # the sampled rows are whole
    assert samp.summary["output_requests"] == {"mode": "sample", "rows_written": len(rows),
                                               "sample_fraction": 0.1}


def test_sample_mask_is_a_function_of_the_id():
    ids = np.arange(200_000, dtype=np.int64)
    m = sample_mask(ids, 0.25)
    assert abs(m.mean() - 0.25) < 0.005
    assert (sample_mask(ids[1000:5000], 0.25) == m[1000:5000]).all()
    assert sample_mask(ids, 1.0).all()


def test_run_killed_while_flushing_leaves_no_complete_folder(tmp_path):
    code = (
        "import aigrid_sim\n"
        "aigrid_sim.run('global_agent', ['world.cities.max_cities=300', 'duration_s=100000',"
        " 'workload.rate_rps=300', 'output.window_s=5', 'output.figures=false'],"
        f" out_dir={str(tmp_path)!r})\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 240
        part = None
        while time.time() < deadline:  # wait until a row group is on disk
            parts = list(tmp_path.glob(".tmp-*/requests.parquet"))
            if parts and parts[0].stat().st_size > 4:
                part = parts[0]
                break
            assert p.poll() is None, "the run ended before it was killed"
            time.sleep(0.2)
        assert part is not None, "no row group was flushed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    complete, incomplete = find_runs(tmp_path)
    assert complete == [] and incomplete == 1
    assert not any(is_complete(d) for d in tmp_path.iterdir())
    assert all(d.name.startswith(".tmp-") for d in tmp_path.iterdir())


def test_memory_estimate_stops_a_run_that_cannot_fit():
    with pytest.raises(ConfigError, match=r"GB.*stream to disk"):
        aigrid_sim.run("global_agent", ["duration_s=1e9"])


def test_a_billion_requests_kept_in_memory_stop_before_the_run_saying_how_much():
    """output.requests=all without a run folder keeps every request: ~1e9 of them cannot fit."""
    import re
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        aigrid_sim.run("global_agent", ["duration_s=1e6", "output.requests=all"])
    msg = str(e.value)
    assert "\n" not in msg and "~1e+09 requests" in msg
    need = float(re.search(r"need ~([\d,.]+) GB of memory", msg).group(1).replace(",", ""))
    assert need > 500  # about 800 B per request kept
    assert time.perf_counter() - t0 < 30  # stopped before building anything big


def test_cli_refuses_a_table_bigger_than_the_disk(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aigrid_sim.cli", "duration_s=1e12",
                        f"output.dir={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "GB" in lines[0] and "output.requests" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_output_keys_are_one_line():
    with pytest.raises(ConfigError, match="output.requests"):
        config_of("global_agent", ["output.requests=some"])
    with pytest.raises(ConfigError, match="output.sample_fraction"):
        config_of("global_agent", ["output.sample_fraction=0"])


class _Collect:
    """A sink that keeps every block it is handed (ordered or not)."""

    def __init__(self, unordered: bool):
        self.unordered = unordered
        self.blocks = []

    def __call__(self, stream, rec, first_id):
        ids = np.asarray(first_id, np.int64) if np.ndim(first_id) else \
            np.arange(first_id, first_id + len(stream), dtype=np.int64)
        if not self.unordered:
            assert not self.blocks or ids[0] == self.blocks[-1][0][-1] + 1  # request order
        self.blocks.append((ids, stream.t.copy(), rec))


def _engine_run(sink, overrides):
    from aigrid_sim import api
    from aigrid_sim import config as cfgmod
    from aigrid_sim.sim.engine import Engine
    from aigrid_sim.sim.policies import make_policy
    from aigrid_sim.workload.windows import concat

    cfg = cfgmod.validate(cfgmod.compose("global_agent", overrides))
    world = api.build_world(cfg)
    apps, wins, _ = api.make_windows(cfg, world)
    e = Engine(world, concat([], apps), make_policy(cfg.policy, cfg.routing.params),
               seed=cfg.seed, k_nearest=cfg.routing.k_nearest,
               horizon_s=cfg.duration_s + cfg.drain_s, windows=wins, sink=sink)
    e.run()
    return e


def test_unordered_sink_reuses_slots_one_by_one_and_changes_no_outcome():
    """output.requests=none: ended requests leave at once, long ones pin no window of slots."""
    from aigrid_sim.sim.engine import Records

    ov = ["world.cities.max_cities=300", "duration_s=120", "workload.rate_rps=150",
          "drain_s=600", "output.window_s=2"]
    runs = {}
    for unordered in (False, True):
        sink = _Collect(unordered)
        e = _engine_run(sink, ov)
        ids = np.concatenate([b[0] for b in sink.blocks])
        order = np.argsort(ids, kind="stable")
        assert (ids[order] == np.arange(len(ids))).all()  # every request, once
        rec = Records.concat([b[2] for b in sink.blocks])
        rec = rec.take_rows(order)
        t = np.concatenate([b[1] for b in sink.blocks])[order]
        runs[unordered] = (rec, t, len(e._t), len(ids))
    (a, ta, slots_o, n), (b, tb, slots_u, _) = runs[False], runs[True]
    np.testing.assert_array_equal(ta, tb)
    for name in a.columns():  # the same outcome for every request, bit for bit
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # Long requests (minutes at a busy core) pin every window they arrived in, ordered; one
    # by one, only the requests in flight hold slots.
    assert slots_u < slots_o
    assert slots_u < 0.4 * n


def test_requests_in_end_order_are_the_same_rows(tmp_path):
    """output.requests_order=end: each row written as its request ends; sorted, the same table.

    The engine reuses slots one by one (as with output.requests=none), so a long request no
    longer holds back the rows after it.
    """
    mem = aigrid_sim.run("global_agent", SMALL)
    end = aigrid_sim.run("global_agent", SMALL + ["output.window_s=7",
                                                  "output.requests_order=end"],
                         out_dir=tmp_path)
    assert end.requests.empty  # not kept in memory: the file is the table
    disk = pd.read_parquet(end.out_dir / "requests.parquet")
    assert not disk["request_id"].is_monotonic_increasing  # really in end order
    disk = disk.sort_values("request_id", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(disk, mem.requests, check_exact=True)
    for k in COUNTS:
        assert end.summary[k] == mem.summary[k], k
    assert end.summary["output_requests"]["order"] == "end"
    assert end.summary["output_requests"]["rows_written"] == mem.summary["requests"]


def test_bad_requests_order_is_one_line():
    with pytest.raises(ConfigError, match=r"output.requests_order.*arrival"):
        config_of("global_agent", ["output.requests_order=random"])
