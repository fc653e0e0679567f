"""Prefix caching through a whole run (Mooncake ``hash_ids``, app system prompts), bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _dep import toy

import aigrid_sim
from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.replica import Spec

REPLICA = ["concurrency=0", "arrival_rate=4", "isl=1200", "osl=40"]


def mooncake(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp_ms", "input_length", "output_length", "hash_ids"])
        w.writerows(rows)
    return path


def trace_run(path: Path, extra=()):
    return aigrid_sim.run("replica", REPLICA + [
        "workload.arrivals.kind=trace", "trace.format=mooncake", f"trace.path={path}",
        "duration_s=1000", *extra])


def test_mooncake_hash_ids_are_cached_per_replica(tmp_path):
    # 300 requests, 1,200-token prompts: the first two 512-token blocks are one of three shared
    # prefixes, the partial third block is each request's own.
    rows = [[250 * k, 1200, 40, f"{k % 3} {100 + k % 3} {1000 + k}"] for k in range(300)]
    r = trace_run(mooncake(tmp_path / "m.csv", rows))
    req = r.requests
    assert r.summary["completed"] == 300
    # After the first request of each prefix, 1,024 of 1,200 prompt tokens hit the cache.
    assert (req["cached_tokens"][3:] == 1024).all() and (req["cached_tokens"][:3] == 0).all()
    assert (req["prefill_tokens"] == 1200).all()
    pc = r.summary["prefix_cache"]
    assert pc["hit_rate"] == pytest.approx(req["cached_tokens"].sum() / (1200 * 300))
    assert pc["by_app"]["bench"] == pytest.approx(pc["hit_rate"])
    assert pc["by_site"]["replica"] == pytest.approx(pc["hit_rate"])
    # Hits skip prefill: the first token comes sooner than without the ids.
    plain = tmp_path / "plain.csv"
    mooncake(plain, [row[:3] + [""] for row in rows])
    p = trace_run(plain)
    assert p.summary["prefix_cache"]["hit_rate"] == 0
    assert r.summary["ttft_ms"]["mean"] < 0.8 * p.summary["ttft_ms"]["mean"]


def test_app_system_prompt_is_shared(tmp_path):
    r = aigrid_sim.run("replica", REPLICA + ["requests=200", "token_cv=0.5",
                                             "system_prompt=500"])
    req = r.requests
    assert (req["in_tokens"] >= 501).all()
    # 500 tokens -> 496 in whole 16-token blocks, shared by every request after the first.
    assert (req["cached_tokens"][1:] == 496).all()
    hits = req["cached_tokens"].sum()
    assert r.summary["prefix_cache"]["hit_rate"] == pytest.approx(
        hits / req["prefill_tokens"].sum())


@pytest.mark.parametrize("cell, text", [
    ("1 two 3", "malformed 'hash_ids': '1 two 3'"),
    ("1 -2", "block ids must be >= 0"),
    ("1 2 3 4", "a prefix longer than the prompt: 4 blocks of 512 tokens"),
])
def test_malformed_hash_ids_name_file_and_line(tmp_path, cell, text):
    rows = [[0, 1200, 40, "1 2 3"], [10, 1200, 40, cell]]
    p = mooncake(tmp_path / "bad.csv", rows)
    with pytest.raises(ConfigError, match=rf"bad\.csv: line 3: .*{text.split(':')[0]}"):
        trace_run(p)


def test_bad_input_exits_2_with_one_line(tmp_path):
    p = mooncake(tmp_path / "bad.csv", [[0, 100, 4, "0 1"]])
    env = dict(os.environ, MPLBACKEND="Agg")
    for args, text in (
        ([f"trace.path={p}", "workload.arrivals.kind=trace", "trace.format=mooncake"],
         "line 2: a prefix longer than the prompt"),
        (["system_prompt=5000"],
         "workload.apps[0].system_prompt_tokens"),
    ):
        out = subprocess.run([sys.executable, "-m", "aigrid_sim.cli", "scenario=replica", *args],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr
        assert text in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_request_that_never_fits_is_rejected_with_its_own_reason():
    # 8B on one L40S holds about half a million KV tokens: a 600,000-token prompt never fits.
    r = aigrid_sim.run("replica", ["concurrency=0", "arrival_rate=1", "requests=3",
                                   "isl=600000", "osl=10"])
    assert (r.requests["reason"] == "context_too_long").all()
    assert r.summary["rejected"] == 3 and r.summary["in_flight"] == 0


def test_zero_kv_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="KV budget of 0 tokens"):
        Spec(toy(cap=0))
    assert Spec(toy(seqs=64, budget=32)).max_seqs == 32  # the token budget caps the sequences


def test_prefix_units_follow_a_scaled_replay(tmp_path):
    rows = [[100 * k, 700, 20, f"{k % 2}"] for k in range(100)]
    r = trace_run(mooncake(tmp_path / "m.csv", rows), ["trace.scale=2"])
    assert len(r.requests) == 200 and r.summary["stream"]["prefix_blocks"] == 200
    # Both copies share the two prefixes: all but the first request of each hit the cache.
    assert (r.requests["cached_tokens"] > 0).sum() >= 198
    assert r.summary["prefix_cache"]["hit_rate"] > 0.5
