"""``aigrid-sim-validate``: the quick run passes, its table parses, failures set the exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aigrid_sim.studies import validate
from aigrid_sim.studies.validate import Check, format_table, main

# The shared data folder sits next to the checkout (../shared) or next to its worktree folder.
SHARED_DATA = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[2:4]
                    if (p / "shared" / "data").is_dir()),
                   Path(__file__).resolve().parents[2] / "shared" / "data")

COLUMNS = ["check", "simulated", "expected", "error", "result", "how"]


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of the printed table as dicts (columns are separated by two or more spaces)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("check"))
    assert re.split(r"\s{2,}", lines[start].strip()) == COLUMNS
    assert set(lines[start + 1].replace(" ", "")) == {"-"}
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def test_quick_validation_runs_and_passes(capsys):
    have_rtt = (SHARED_DATA / "rtt_measured.csv").exists()
    args = ["--quick", "--jobs", "1"]
    args += ["--data-dir", str(SHARED_DATA)] if have_rtt else ["--no-rtt"]
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr().out
    rows = parse_table(out)
    assert e.value.code == 0, out
    names = [r["check"] for r in rows]
    for what in ("M/M/1", "M/M/4", "P(wait)", "M/D/1", "blocking", "Little", "Backbone RTT"):
        assert any(what in n for n in names), (what, names)
    if have_rtt:
        rtt = [r for r in rows if r["check"].startswith("RTT")]
        assert [r["result"] for r in rtt] == ["pass", "pass", "pass", "info", "info"]
        assert rtt[0]["expected"] == "<= 12.0 %" and rtt[1]["expected"] == "<= 35.0 %"
        assert rtt[2]["simulated"] == "0"
    for r in rows:
        assert r["result"] in ("pass", "info")
        float(r["simulated"].split(" +- ")[0].rstrip(" %"))
        if "+-" in r["simulated"]:  # a sampled estimate: expected is a number, error a percentage
            sim, hw = (float(x) for x in r["simulated"].split(" +- "))
            exp = float(r["expected"])
            assert abs(sim - exp) <= hw
            assert r["error"].endswith("%")
    assert re.search(r"\d+/\d+ checks passed", out)


def test_a_failed_check_fails_the_command(monkeypatch, capsys):
    bad = [Check("M/M/1 rho=0.5 mean wait", 1.2, 1.0, 0.05, False, "s", "ci", "1 rep"),
           Check("RTT hold-out median abs % error", 14.0, 12.0, 0.0, False, "%", "max", "x")]
    monkeypatch.setattr(validate, "run_validation", lambda *a, **k: bad)
    with pytest.raises(SystemExit) as e:
        main(["--quick", "--no-rtt"])
    assert e.value.code == 1
    rows = parse_table(capsys.readouterr().out)
    assert [r["result"] for r in rows] == ["FAIL", "FAIL"]
    assert rows[0]["error"] == "+20.0 %"
    assert rows[1]["expected"] == "<= 12.0 %" and rows[1]["error"] == "+2.0 pp"


def test_missing_rtt_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--quick", "--data-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "rtt_measured.csv" in err and "--no-rtt" in err


def test_table_alignment():
    t = format_table([Check("a", 0.5, 0.5, 0.01, True), Check("longer name", 2e-5, 2.1e-5,
                                                               1e-6, True, "s")])
    lines = t.splitlines()
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up
    assert "2.000e-05 +- 1.000e-06" in t and "-4.8 %" in t


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "aigrid_sim.studies.validate", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--quick" in out and "--data-dir" in out


def test_shipped_holdout_scores_as_the_full_data_does():
    """The package's hold-out rows give the hold-out scores of redoing the split on the data."""
    shipped = validate.rtt_scores(None)
    held = {k: shipped[k] for k in ("n_rows", "with_country_codes", "without_country_codes",
                                    "straight_line_baseline")}
    import json

    recorded = json.loads((Path(validate.__file__).resolve().parents[1] / "data" /
                           "rtt_params.json").read_text())["holdout"]
    assert held == {k: recorded[k] for k in held}  # what scripts/fit_rtt.py recorded
    assert shipped["below_floor"] == 0 and shipped["n_pairs_floor"] == 2 * 13_134
    if (SHARED_DATA / "rtt_measured.csv").exists():
        full = validate.rtt_scores(SHARED_DATA)
        assert {k: full[k] for k in held} == held


def test_quick_validation_needs_no_data_beside_the_checkout(monkeypatch, capsys):
    """An installed package: no --data-dir, no $AIGRID_DATA: the RTT rows use the shipped rows."""
    monkeypatch.delenv("AIGRID_DATA", raising=False)
    monkeypatch.setattr(validate, "queue_checks", lambda *a, **k: [])
    monkeypatch.setattr(validate, "little_checks", lambda *a, **k: [])
    with pytest.raises(SystemExit) as e:
        main(["--quick", "--jobs", "1"])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    rtt = [r for r in parse_table(out) if r["check"].startswith("RTT")]
    assert [r["result"] for r in rtt] == ["pass", "pass", "pass", "info", "info"]
    assert rtt[0]["simulated"] == "8.1 %" and "13,134 held-out RTTs" in rtt[0]["how"]
