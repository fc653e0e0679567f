"""Re-run the command behind every figure in README.md and docs/, and report which ones drifted.

Use it before each release of figures::

    .venv/bin/python scripts/measure_docs.py              # everything (about 10 min on 2 cores)
    .venv/bin/python scripts/measure_docs.py --list       # what it checks, and the commands
    .venv/bin/python scripts/measure_docs.py --only default_run bench --runs 5

Each check runs the documented command in a fresh temporary folder and compares its output with
the figure as printed in the document:

* results of a seeded simulation (request counts, latencies, costs, plans, validation estimates)
  must match exactly: same seed, same results, bit for bit;
* wall-clock figures (seconds, requests per second, ratios of two timings) are timings: the
  command is run ``--runs`` times and the documented figure passes when it lies within
  ``--tolerance`` (default 25 %) of the median; the median and the min-max spread are printed so
  the document can be updated with them;
* peak memory passes within 15 %.

Figures that have no reproducing command are listed as such. Exit status 1 when anything
drifted, 0 otherwise. Timings depend on what else the machine is doing: measure on a quiet one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Finding:
    """One documented figure against its measurement."""

    doc: str
    what: str
    documented: str
    measured: str
    ok: bool
    note: str = ""


@dataclass
class Check:
    """A documented command and how its figures are read and compared."""

    name: str
    doc: str
    command: str
    timing: bool = False
    run: object = None  # callable(check, args) -> list[Finding]
    findings: list[Finding] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def sh(command: str, cwd: Path, timeout: float = 3600) -> tuple[str, float]:
    """Run a documented shell command with this environment's console scripts first on PATH."""
    import os

    env = dict(os.environ, MPLBACKEND="Agg", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    t0 = time.perf_counter()
    p = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):  # validate exits 1 when a check fails: still a measurement
        raise RuntimeError(f"{command!r} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout, wall


def fresh() -> Path:
    """A new empty working folder (removed at exit)."""
    d = Path(tempfile.mkdtemp(prefix="measure_docs-"))
    _tmp.append(d)
    return d


_tmp: list[Path] = []


def doc_text(doc: str) -> str:
    """The text of a document of the repository."""
    return (ROOT / doc).read_text()


def block_after(text: str, marker: str) -> str:
    """The body of the first fenced block after ``marker``."""
    i = text.index(marker)
    m = re.search(r"```\w*\n(.*?)```", text[i:], re.S)
    return m.group(1)


def num(s: str) -> float:
    """A printed number ("144,213", "5.0") as a float."""
    return float(s.replace(",", ""))


def timing_finding(doc: str, what: str, documented: float, samples: list[float], tol: float,
                   unit: str, fmt: str = "{:,.2f}") -> Finding:
    """Compare a documented timing with the median of several runs."""
    med = statistics.median(samples)
    spread = f"median of {len(samples)}: {fmt.format(med)} {unit} " \
             f"(min {fmt.format(min(samples))}, max {fmt.format(max(samples))})"
    ok = abs(documented - med) <= tol * med
    return Finding(doc, what, f"{fmt.format(documented)} {unit}", spread, ok,
                   "" if ok else f"off by {100 * (documented / med - 1):+.0f} %")


def lines_finding(doc: str, what: str, documented: list[str], measured: list[str],
                  mask=lambda s: s) -> Finding:
    """Every measured line must appear, as printed, among the documented ones."""
    doc_set = {mask(x).rstrip() for x in documented}
    missing = [x for x in measured if x.strip() and mask(x).rstrip() not in doc_set]
    return Finding(doc, what, f"{len(documented)} lines", f"{len(measured)} lines",
                   not missing, ("differs: " + " | ".join(m.strip() for m in missing[:3])
                                 + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
                   if missing else "")


# ----------------------------------------------------------------------------- checks


WALL = re.compile(r"[\d.]+ s wall")


def check_default_run(c: Check, args) -> list[Finding]:
    """README: the default run's printed summary (exact) and its wall time (timing)."""
    text = doc_text(c.doc)
    shown = block_after(text, "The summary is the same on every run").splitlines()
    walls, out = [], ""
    for _ in range(args.runs):
        out, wall = sh("aigrid-sim", fresh())
        walls.append(wall)
    found = [lines_finding(c.doc, "default run summary", shown, out.splitlines(),
                           mask=lambda s: WALL.sub("X s wall", s))]
    m = re.search(r"was ([\d.]+) s \(median of", text)
    if m:
        found.append(timing_finding(c.doc, "default run wall (time aigrid-sim)", num(m.group(1)),
                                    walls, args.tolerance, "s"))
    return found


BENCH = {
    "engine req/s": r"aigrid-sim engine .*?\s([\d,]+)\s*$",
    "minimal SimPy req/s": r"minimal SimPy .*?\s([\d,]+)\s*$",
    "ratio": r"ratio \(aigrid-sim / minimal SimPy\): ([\d.]+)",
    "peak memory MB": r"peak memory.*?: ([\d,]+) MB",
    "world build s": r"build ([\d.]+) s",
}


def _bench_values(text: str) -> dict[str, float]:
    out = {}
    for k, rx in BENCH.items():
        m = re.search(rx, text, re.M)
        if m:
            out[k] = num(m.group(1))
    return out


BENCH_DOC = {
    "engine req/s": r"^\| engine req/s[^|]*\| ([\d,.]+)",
    "minimal SimPy req/s": r"^\| minimal SimPy req/s[^|]*\| ([\d,.]+)",
    "ratio": r"^\| ratio \(aigrid-sim / minimal SimPy\) \| ([\d.]+)",
    "peak memory MB": r"^\| peak memory MB[^|]*\| ([\d,]+)",
    "world build s": r"^\| world build s[^|]*\| ([\d.]+)",
}


def check_bench(c: Check, args) -> list[Finding]:
    """README: ``aigrid-sim-bench --memory`` (timings; memory within 15 %)."""
    text = doc_text(c.doc)
    shown = {k: num(m.group(1)) for k, rx in BENCH_DOC.items()
             if (m := re.search(rx, text, re.M))}
    runs = [_bench_values(sh("aigrid-sim-bench --memory", fresh())[0]) for _ in range(args.runs)]
    found = []
    for k, v in shown.items():
        samples = [r[k] for r in runs if k in r]
        if k == "peak memory MB":
            med = statistics.median(samples)
            ok = abs(v - med) <= 0.15 * med
            found.append(Finding(c.doc, f"bench {k}", f"{v:,.0f}", f"median {med:,.0f}", ok))
        else:
            found.append(timing_finding(c.doc, f"bench {k}", v, samples, args.tolerance, "",
                                        "{:,.2f}" if v < 100 else "{:,.0f}"))
    return found


def check_headline(c: Check, args) -> list[Finding]:
    """README: the headline tables printed by ``python -m aigrid_sim.headline`` (exact)."""
    out, _ = sh(c.command, fresh())
    rows = [x for x in out.splitlines() if x.startswith("| ") and "---" not in x]
    return [lines_finding(c.doc, "headline tables", doc_text(c.doc).splitlines(), rows)]


def _validate_output(args) -> str:
    if not hasattr(args, "_validate"):
        args._validate = sh("aigrid-sim-validate --jobs 2", fresh())[0]
    return args._validate


def check_validation_doc(c: Check, args) -> list[Finding]:
    """docs/validation.md: the full validation table (estimates are seeded: exact)."""
    out = _validate_output(args)
    table = [x for x in out.splitlines() if re.match(r"^(M/|Little|RTT|Erlang|P\()", x)]
    shown = block_after(doc_text(c.doc), "Table printed by").splitlines()
    return [lines_finding(c.doc, "validation table", shown, table)]


def check_validation_readme(c: Check, args) -> list[Finding]:
    """README: the validation summary table; each row's numbers must be in the command's table."""
    out = _validate_output(args)
    found = []
    for line in doc_text(c.doc).splitlines():
        m = re.match(r"^\| (M/|Little|RTT)([^|]*)\| ([^|]+)\| ([^|]+)\|", line)
        if not m:
            continue
        name, sim = (m.group(1) + m.group(2)).strip(), m.group(3).strip()
        parts = [p.strip() for p in sim.split("/")] if name.startswith("RTT") else [sim]
        ok = all(p in out for p in parts)
        found.append(Finding(c.doc, f"validation: {name}", sim,
                             "in the table" if ok else "not in the table", ok))
    return found


PLAN_DE_FR = ("aigrid-sim-plan world.cities.countries=[DE,FR] world.edge.countries=[DE,FR] "
              "world.regional.regions=[aws:eu-central-1,aws:eu-west-3] "
              "world.core.sites=[azure:westeurope] workload.rate_rps=150 duration_s=300 "
              "warmup_s=60 drain_s=60 --slo 0.99 --max-reject 0.001 --out plan_de_fr")


def check_plan(c: Check, args) -> list[Finding]:
    """docs/studies.md: the DE+FR plan row (GPUs, $/month, simulations exact; wall a timing)."""
    row = next((x for x in doc_text(c.doc).splitlines() if x.startswith("| DE+FR")), "")
    cells = [x.strip() for x in row.strip("|").split("|")]
    out, _ = sh(c.command, fresh())
    m_plan = re.search(r"^plan\s+(\d+)\s+([\d,]+)", out, re.M)
    m_sims = re.search(r"^(\d+) simulations, ([\d.]+) s", out, re.M)
    est = [int(x) for x in re.findall(r"GPUs \(site estimate (\d+)\)", out)]  # per tier
    found = []
    if len(cells) >= 6 and m_plan and m_sims:
        found.append(Finding(c.doc, "DE+FR plan", cells[3].split(";")[0],
                             f"{m_plan.group(1)} GPUs, ${m_plan.group(2)}/month",
                             cells[3].startswith(f"{m_plan.group(1)} GPUs, ${m_plan.group(2)}")))
        found.append(Finding(c.doc, "DE+FR site estimate", cells[2],
                             f"{sum(est)} GPUs" if est else "-",
                             bool(est) and cells[2].startswith(f"{sum(est)} GPUs")))
        found.append(Finding(c.doc, "DE+FR simulations", cells[4], m_sims.group(1),
                             cells[4] == m_sims.group(1)))
        wall_doc = re.match(r"([\d.]+) s", cells[5])
        if wall_doc:
            found.append(timing_finding(c.doc, "DE+FR plan wall", num(wall_doc.group(1)),
                                        [num(m_sims.group(2))], args.tolerance, "s"))
    else:
        found.append(Finding(c.doc, "DE+FR plan", row[:60] or "(no row)", "unparsed", False))
    return found


#: Figures in the docs that no command reproduces: (doc, figure, why). Keep this empty: give the
#: figure a command or take it out.
NO_COMMAND: list[tuple[str, str, str]] = []

CHECKS = [
    Check("default_run", "README.md", "aigrid-sim", True, check_default_run),
    Check("bench", "README.md", "aigrid-sim-bench --memory", True, check_bench),
    Check("headline", "README.md", "python -m aigrid_sim.headline", False, check_headline),
    Check("validation_readme", "README.md", "aigrid-sim-validate --jobs 2", False,
          check_validation_readme),
    Check("validation_doc", "docs/validation.md", "aigrid-sim-validate --jobs 2", False,
          check_validation_doc),
    Check("plan_de_fr", "docs/studies.md", PLAN_DE_FR, True, check_plan),
]


def main(argv: list[str] | None = None) -> int:
    """Run the checks and print one line per documented figure."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=[c.name for c in CHECKS])
    ap.add_argument("--runs", type=int, default=3, help="runs per timed command (default 3)")
    ap.add_argument("--tolerance", type=float, default=0.25,
                    help="a timing passes within this share of the median (default 0.25)")
    ap.add_argument("--list", action="store_true", help="list the checks and their commands")
    args = ap.parse_args(argv)
    checks = [c for c in CHECKS if not args.only or c.name in args.only]
    if args.list:
        for c in checks:
            print(f"{c.name:<18} {c.doc:<20} {c.command}")
        for doc, what, why in NO_COMMAND:
            print(f"{'(no command)':<18} {doc:<20} {what}: {why}")
        return 0
    drift = 0
    try:
        for c in checks:
            t0 = time.perf_counter()
            print(f"== {c.name}: {c.command}  ({c.doc})", flush=True)
            for f in c.run(c, args):
                drift += not f.ok
                print(f"  {'ok   ' if f.ok else 'DRIFT'}  {f.what}: documented {f.documented}; "
                      f"measured {f.measured}" + (f"  [{f.note}]" if f.note else ""), flush=True)
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        for d in _tmp:
            shutil.rmtree(d, ignore_errors=True)
    for doc, what, why in NO_COMMAND if not args.only else []:
        drift += 1
        print(f"  NOCMD  {doc}: {what}: {why}")
    print(f"\n{drift} figure(s) drifted or without a command" if drift else "\nall figures hold")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
