"""Trace replay, end to end.

Exact replay, column mapping, bad rows with file and line, window / speed-up / scaling / repeat,
rate series, origins, the trace_replay scenario and the CLI.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import aigrid_sim
from aigrid_sim.config import validate
from aigrid_sim.errors import ConfigError
from aigrid_sim.workload.processes import diurnal_curve, diurnal_factor
from aigrid_sim.workload.traces import draw_origins, load_trace, resolve_path, trace_stream

BUNDLED = Path(aigrid_sim.__file__).parent / "data" / "traces" / "azure_llm_2023_conv.csv"
NAMES = ["Here", "There", "Elsewhere"]
POP = np.array([3.0, 2.0, 1.0])
OFFSETS = np.array([0.0, 5.5, -7.0])


def cfg_for(trace: dict, *, duration: float = 1e6, load: float = 1.0, seed: int = 1,
            max_requests=None):
    """A validated trace-replay config with one generative app."""
    return validate({
        "seed": seed, "duration_s": duration, "load": load, "max_requests": max_requests,
        "workload": {"arrivals": {"kind": "trace"},
                     "apps": [{"name": "chat", "capability": 1, "slo_ms": 1000.0}]},
        "trace": trace})


def stream_of(trace: dict, **kw):
    return trace_stream(cfg_for(trace, **kw), POP, OFFSETS, NAMES)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_azure_exactly(path: Path):
    """Independent parse: integer 100-ns ticks from the text, no pandas."""
    ticks, tin, tout = [], [], []
    with path.open() as f:
        r = csv.reader(f)
        assert next(r) == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
        for ts, a, b in r:
            whole, frac = ts.split(".")
            sec = int(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timestamp())
            ticks.append(sec * 10**7 + int(frac.ljust(7, "0")[:7]))
            tin.append(int(a))
            tout.append(int(b))
    return np.array(ticks), np.array(tin), np.array(tout)


def test_bundled_azure_trace_replays_exactly_with_no_scaling():
    s = stream_of({"format": "azure"})
    ticks, tin, tout = read_azure_exactly(BUNDLED)
    assert len(s) == len(ticks) == 19_366
    # Same requests, same order, same inter-arrival times (to 1 ns), same token counts.
    assert np.abs(np.diff(s.t) - np.diff(ticks) * 1e-7).max() < 1e-9
    assert s.t[0] == 0.0
    assert np.array_equal(s.in_tokens, tin) and np.array_equal(s.out_tokens, tout)
    assert s.info["trace_rows"] == 19_366 and s.info["trace_rows_skipped"] == 0
    assert s.info["requests"] == 19_366
    assert resolve_path(cfg_for({"format": "azure"}).trace) == BUNDLED


def test_mooncake_format_and_custom_columns_replay_exactly(tmp_path):
    rows = [[0, 6758, 500, "0 1 2"], [0, 7322, 490, "0 14"], [1500, 10, 0, "3"],
            [1501, 99, 7, ""], [86_400_000, 1, 1, "9"]]
    p = write_csv(tmp_path / "m.csv", ["timestamp_ms", "input_length", "output_length",
                                        "hash_ids"], rows)
    s = stream_of({"format": "mooncake", "path": str(p)})
    assert np.allclose(s.t, [0, 0, 1.5, 1.501, 86_400.0], rtol=0, atol=1e-12)
    assert s.in_tokens.tolist() == [6758, 7322, 10, 99, 1]
    assert s.out_tokens.tolist() == [500, 490, 0, 7, 1]
    # Another file with the same kind of columns, named differently, in seconds.
    q = write_csv(tmp_path / "own.csv", ["ts", "prompt", "completion"],
                  [[100.0, 5, 6], [100.25, 7, 8], [103.0, 9, 10]])
    s = stream_of({"format": "mooncake", "path": str(q),
                   "columns": {"time": "ts", "time_unit": "s", "in_tokens": "prompt",
                               "out_tokens": "completion"}})
    assert np.allclose(s.t, [0.0, 0.25, 3.0]) and s.in_tokens.tolist() == [5, 7, 9]


def test_shared_traces_load_when_present():
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"
    if not shared.exists():
        pytest.skip("../shared/data/traces not available")
    m = load_trace(shared / "mooncake_fast25_conversation.csv", "mooncake")
    assert len(m) == 12_031 and m.t[-1] == pytest.approx(3536.999)
    g = load_trace(shared / "servegen_m-large_rate_10min.csv", "servegen")
    assert len(g) == 2016 and g.rate is not None and np.all(np.diff(g.t) == 600.0)


@pytest.mark.parametrize("rows, line, reason", [
    ([["2023-11-16 18:00:00.0", "5", "1"], ["2023-11-16 18:00:01.0", "", "2"]], 3,
     "missing value in column 'ContextTokens'"),
    ([["2023-11-16 18:00:00.0", "5", "1"], ["2023-11-16 18:00:01.0", "7", "-2"]], 3,
     "negative value in column 'GeneratedTokens': '-2'"),
    ([["2023-11-16 18:00:00.0", "five", "1"]], 2,
     "not a number in column 'ContextTokens': 'five'"),
    ([["2023-11-16 18:00:00.0", "5", "1"], ["yesterday", "5", "1"]], 3,
     "not a timestamp in column 'TIMESTAMP': 'yesterday'"),
    ([["2023-11-16 18:00:02.0", "5", "1"], ["2023-11-16 18:00:03.0", "5", "1"],
      ["2023-11-16 18:00:01.0", "5", "1"]], 4,
     "timestamps not sorted: '2023-11-16 18:00:01.0' is earlier than '2023-11-16 18:00:03.0' "
     "on line 3"),
    ([["2023-11-16 18:00:00.0", "5.5", "1"]], 2,
     "not a whole number of tokens in column 'ContextTokens': '5.5'"),
    ([["2023-11-16 18:00:00.0", "5"]], 2, "missing value in column 'GeneratedTokens'"),
])
def test_bad_rows_fail_with_file_line_and_reason(tmp_path, rows, line, reason):
    p = write_csv(tmp_path / "bad.csv", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], rows)
    with pytest.raises(ConfigError) as e:
        stream_of({"format": "azure", "path": str(p)})
    assert str(e.value).startswith(f"{p}: line {line}: {reason}")
    assert "trace.skip_bad_rows=true" in str(e.value)


def test_missing_column_names_the_file_the_column_and_the_fix(tmp_path):
    p = write_csv(tmp_path / "cols.csv", ["TIMESTAMP", "Prompt", "GeneratedTokens"],
                  [["2023-11-16 18:00:00.0", "5", "1"]])
    with pytest.raises(ConfigError, match=rf"{p}: line 1: missing column 'ContextTokens'.*"
                                          r"trace.columns.in_tokens=<column>"):
        stream_of({"format": "azure", "path": str(p)})
    s = stream_of({"format": "azure", "path": str(p), "columns": {"in_tokens": "Prompt"}})
    assert s.in_tokens.tolist() == [5]


def test_extra_fields_and_blank_lines_keep_true_line_numbers(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text("timestamp_ms,input_length,output_length\n0,1,1\n\n5,2,2\n")
    with pytest.raises(ConfigError, match=rf"{p}: line 3: missing value"):
        stream_of({"format": "mooncake", "path": str(p)})
    p.write_text("timestamp_ms,input_length,output_length\n0,1,1\n5,2,2,7\n")
    with pytest.raises(ConfigError, match=rf"{p}: line 3: 4 fields, expected 3"):
        stream_of({"format": "mooncake", "path": str(p)})
    p.write_text("timestamp_ms,input_length,output_length\n0,1,1,9\n5,2,2\n")
    with pytest.raises(ConfigError, match=rf"{p}: line 2: more fields than the header"):
        stream_of({"format": "mooncake", "path": str(p)})
    # Skipping: ragged lines are dropped and counted, and later lines keep their numbers.
    p.write_text("timestamp_ms,input_length,output_length\n0,1,1,9\n5,2,2\n6,3,3,3,3\n"
                 "7,4,-4\n8,5,5\n")
    s = stream_of({"format": "mooncake", "path": str(p), "skip_bad_rows": True})
    assert s.in_tokens.tolist() == [2, 5]
    assert s.info["trace_skipped_lines"] == [2, 4, 5]
    assert s.info["trace_skipped_by_reason"] == {
        "more fields than the header": 1, "wrong number of fields": 1,
        "negative value in column 'output_length'": 1}


def test_skip_bad_rows_drops_and_counts_them(tmp_path):
    rows = [[0, 10, 1], [1000, -1, 1], [2000, 30, 3], [1500, 40, 4], [3000, "x", 5],
            [4000, 60, 6]]
    p = write_csv(tmp_path / "m.csv", ["timestamp_ms", "input_length", "output_length"], rows)
    s = stream_of({"format": "mooncake", "path": str(p), "skip_bad_rows": True})
    assert s.in_tokens.tolist() == [10, 30, 60]
    assert np.allclose(s.t, [0.0, 2.0, 4.0])
    assert s.info["trace_rows"] == 6 and s.info["trace_rows_skipped"] == 3
    assert s.info["trace_skipped_lines"] == [3, 5, 6]
    assert s.info["trace_skipped_by_reason"] == {"negative value in column 'input_length'": 1,
                                                 "timestamps not sorted": 1,
                                                 "not a number in column 'input_length'": 1}


def test_skipped_count_lands_in_the_run_summary(tmp_path, small_overrides):
    rows = [[i * 100, 50 + i, 10] for i in range(50)] + [[6000, -3, 1]]
    p = write_csv(tmp_path / "m.csv", ["timestamp_ms", "input_length", "output_length"], rows)
    r = aigrid_sim.run("trace_replay", small_overrides + [
        f"trace.path={p}", "trace.format=mooncake", "trace.skip_bad_rows=true"])
    assert r.summary["stream"]["trace_rows_skipped"] == 1
    assert r.summary["requests"] == 50
    assert r.requests["in_tokens"].tolist() == [50 + i for i in range(50)]
    assert np.allclose(r.requests["arrival_s"], np.arange(50) * 0.1)


def test_window_speedup_and_repeat():
    full = stream_of({"format": "azure"})
    w = stream_of({"format": "azure", "start_s": 600.0, "end_s": 1200.0, "speedup": 10.0,
                   "repeat": 3})
    sel = (full.t >= 600.0) & (full.t < 1200.0)
    n = int(sel.sum())
    assert len(w) == 3 * n
    base = (full.t[sel] - 600.0) / 10.0
    for k in range(3):  # each copy is the window, shifted by k periods of 600 s / 10
        assert np.allclose(w.t[k * n:(k + 1) * n], base + k * 60.0, rtol=0, atol=1e-9)
        assert np.array_equal(w.in_tokens[k * n:(k + 1) * n], full.in_tokens[sel])
    # Speed-up only compresses time: same requests, inter-arrival times / 60.
    fast = stream_of({"format": "azure", "speedup": 60.0})
    assert np.allclose(np.diff(fast.t), np.diff(full.t) / 60.0, rtol=0, atol=1e-12)
    assert np.array_equal(fast.out_tokens, full.out_tokens)


def test_rate_scaling_thins_and_superposes():
    full = stream_of({"format": "azure"})
    n = len(full)
    half = stream_of({"format": "azure", "scale": 0.5})
    assert abs(len(half) - n / 2) < 4 * np.sqrt(n * 0.25)  # binomial thinning
    # Thinning keeps a subset of the trace's requests at their own times.
    assert np.isin(half.t, full.t).all()
    double = stream_of({"format": "azure", "scale": 2.0})
    assert len(double) == 2 * n
    assert sorted(double.in_tokens.tolist()) == sorted(full.in_tokens.tolist() * 2)
    assert np.all(np.diff(double.t) >= 0)
    # The second copy is shifted, so the copies do not arrive in lock-step.
    assert len(np.intersect1d(double.t, full.t)) < 1.05 * n
    # load multiplies the trace rate too, like every arrival rate.
    also = stream_of({"format": "azure", "scale": 1.25}, load=2.0)
    assert abs(len(also) - 2.5 * n) < 4 * np.sqrt(n * 0.25)
    # A cap on duration drops (and counts) later requests.
    cut = stream_of({"format": "azure"}, duration=600.0)
    assert len(cut) == int((full.t < 600.0).sum())
    assert cut.info["dropped_after_duration"] == n - len(cut)


def test_servegen_rate_series_replays_as_poisson(tmp_path):
    p = write_csv(tmp_path / "g.csv", ["window_start_s", "total_rate_rps", "active_clients"],
                  [[0, 10.0, 3], [600, 50.0, 4], [1200, 0.0, 1], [1800, 20.0, 2]])
    s = stream_of({"format": "servegen", "path": str(p)})
    counts = np.histogram(s.t, bins=[0, 600, 1200, 1800, 2400])[0]
    for got, rate in zip(counts, (10.0, 50.0, 0.0, 20.0), strict=True):
        exp = rate * 600.0
        assert abs(got - exp) <= 4 * np.sqrt(max(exp, 1.0))
    assert s.info["trace_windows_in_window"] == 4
    # Speed-up keeps the count and compresses the time; scale multiplies the rate.
    f = stream_of({"format": "servegen", "path": str(p), "speedup": 60.0, "scale": 2.0})
    assert f.t.max() < 40.0
    assert abs(len(f) - 2 * 48_000) < 4 * np.sqrt(2 * 48_000)
    # No token counts in a rate series: they are drawn from the app's distribution.
    assert s.in_tokens.min() >= 1


def test_origins_follow_population_and_local_time():
    # Two equal cities 12 h apart: at 20:00 in one it is 08:00 in the other.
    t = np.full(200_000, 3600.0)
    curve = diurnal_curve(None)
    o = draw_origins(t, np.array([1.0, 1.0]), np.array([0.0, 12.0]), curve, 19.0,
                     np.random.default_rng(1))
    fa, fb = diurnal_factor(curve, np.array([20.0, 8.0]))
    share = fa / (fa + fb)
    assert abs((o == 0).mean() - share) < 4 * np.sqrt(share * (1 - share) / len(t))


def test_origin_column_is_used_and_checked(tmp_path):
    p = write_csv(tmp_path / "o.csv", ["timestamp_ms", "input_length", "output_length", "city"],
                  [[0, 1, 1, "There"], [5, 2, 2, "Elsewhere"], [9, 3, 3, "There"]])
    s = stream_of({"format": "mooncake", "path": str(p), "columns": {"origin": "city"}})
    assert s.origin.tolist() == [1, 2, 1]
    q = write_csv(tmp_path / "u.csv", ["timestamp_ms", "input_length", "output_length", "city"],
                  [[0, 1, 1, "There"], [5, 2, 2, "Atlantis"]])
    with pytest.raises(ConfigError, match=rf"{q}: line 3: origin 'Atlantis'"):
        stream_of({"format": "mooncake", "path": str(q), "columns": {"origin": "city"}})


def test_trace_settings_are_validated():
    with pytest.raises(ConfigError, match="key 'trace.format'"):
        cfg_for({"format": "parquet"})
    with pytest.raises(ConfigError, match="key 'trace.speedup'"):
        cfg_for({"speedup": 0.0})
    with pytest.raises(ConfigError, match="key 'trace.end_s'"):
        cfg_for({"start_s": 10.0, "end_s": 5.0})
    with pytest.raises(ConfigError, match="key 'trace.path': needed for trace.format=mooncake"):
        stream_of({"format": "mooncake"})
    with pytest.raises(ConfigError, match="key 'trace.path': no such file"):
        stream_of({"format": "azure", "path": "/nonexistent/t.csv"})
    with pytest.raises(ConfigError, match="no request of .* falls in"):
        stream_of({"format": "azure", "start_s": 9000.0})


def test_trace_replay_scenario_end_to_end(small_overrides):
    ov = [o for o in small_overrides if not o.startswith(("duration_s", "workload.rate_rps"))]
    r = aigrid_sim.run("trace_replay", ov + ["duration_s=300"])
    full = stream_of({"format": "azure"})
    n = int((full.t < 300.0).sum())
    q = r.requests
    assert len(q) == n and r.summary["stream"]["trace_format"] == "azure"
    assert np.allclose(q["arrival_s"], full.t[:n], rtol=0, atol=1e-12)
    assert np.array_equal(q["in_tokens"], full.in_tokens[:n])
    assert set(q["app"]) == {"chat"}
    assert (q.loc[q["status"] == "ok", "service_ms"] > 0).all()
    # Same seed, same run, bit for bit.
    r2 = aigrid_sim.run("trace_replay", ov + ["duration_s=300"])
    assert r2.requests["origin"].equals(q["origin"])
    assert np.array_equal(r2.requests["latency_ms"].to_numpy(), q["latency_ms"].to_numpy(),
                          equal_nan=True)


def test_cli_reports_a_bad_trace_in_one_line(tmp_path):
    p = write_csv(tmp_path / "bad.csv", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
                  [["2023-11-16 18:00:00.0", "5", "1"], ["2023-11-16 18:00:01.0", "-5", "1"]])
    exe = Path(sys.executable).parent / "aigrid-sim"
    res = subprocess.run([str(exe), "scenario=trace_replay", f"trace.path={p}",
                          "trace.format=azure", "world.cities.max_cities=50",
                          "output.write=false"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1
    assert f"{p}: line 3: negative value in column 'ContextTokens'" in err[0]
