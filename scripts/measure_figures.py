"""What the figures and the HTML report add to the default run, and how big the report is.

Each round is a fresh process (so matplotlib and plotly are imported as in a real run): it runs
the default scenario, builds the per-city table (in every run folder, figures or not), then
writes the run folder without figures and again with them, and prints the CPU time (user +
sys of this process) and wall time of each. CPU time is the robust number on a shared machine.

Usage: ``python scripts/measure_figures.py [rounds=3] [overrides...]``
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

ROUND = r"""
import json, shutil, sys, tempfile, time
from pathlib import Path
import aigrid_sim
from aigrid_sim.results.rundir import write_run

r = aigrid_sim.run("global_agent", sys.argv[1:])
c = time.process_time(); r.cities; cities_cpu = time.process_time() - c
out = Path(tempfile.mkdtemp(prefix="measure_figures_"))
c, w = time.process_time(), time.perf_counter()
write_run(r, out, figures=False, name="nofig")
a, aw = time.process_time() - c, time.perf_counter() - w
c, w = time.process_time(), time.perf_counter()
folder = write_run(r, out, figures=True, name="fig")
b, bw = time.process_time() - c, time.perf_counter() - w
size = (folder / "report.html").stat().st_size
shutil.rmtree(out)
print(json.dumps({"cities_cpu": cities_cpu, "cpu_added": b - a, "wall_added": bw - aw,
                  "html_mb": size / 1e6, "requests": r.summary["requests"]}))
"""


def main() -> None:
    """Run the rounds and print each and the medians."""
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 3
    rows = []
    for i in range(rounds):
        p = subprocess.run([sys.executable, "-c", ROUND, *args], capture_output=True, text=True,
                           check=True)
        row = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"round {i + 1}: figures + HTML add {row['cpu_added']:.2f} s CPU "
              f"({row['wall_added']:.2f} s wall); cities table {row['cities_cpu']:.2f} s CPU; "
              f"report.html {row['html_mb']:.2f} MB; {row['requests']:,} requests", flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("cpu_added", "wall_added",
                                                              "cities_cpu")}
    print(f"median of {rounds}: figures + HTML add {med['cpu_added']:.2f} s CPU "
          f"({med['wall_added']:.2f} s wall); cities table {med['cities_cpu']:.2f} s CPU")


if __name__ == "__main__":
    main()
