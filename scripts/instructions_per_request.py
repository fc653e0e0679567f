"""Instructions per request of the engine: a speed comparison that machine noise cannot move.

Wall times on a shared or virtual machine swing by a third from run to run; the number of
instructions a run executes does not. This script runs the engine on ``global_agent`` for a
small and a large number of requests under ``valgrind --tool=cachegrind`` (instruction counts
only, no cache simulation) and prints the difference over the difference in requests: the
world build, imports and stream generation cancel out, what is left is the per-request path.

Usage::

    python scripts/instructions_per_request.py                    # this checkout
    python scripts/instructions_per_request.py --checkout ../old   # another one, to compare
    python scripts/instructions_per_request.py --small 2000 --large 62000

Needs ``valgrind`` on the PATH (a system package, not a Python one). Each run is about 40x
slower than native: the default pair takes 3-4 minutes. ``PYTHONHASHSEED=0`` keeps dict and
set layouts, and so the counts, the same from run to run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
from aigrid_sim import api, config
n = int(sys.argv[1])
cfg = config.validate(config.compose("global_agent", [
    f"max_requests={n}", f"duration_s={n / 700:.0f}", "seed=1"]))
world = api.build_world(cfg)
api.simulate(cfg, world=world, stream=api.make_stream(cfg, world))
"""


def instructions(checkout: Path, n: int) -> int:
    """Instructions executed by a process that simulates ``n`` requests from ``checkout``."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
        out = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={Path(tmp) / 'cg.out'}", sys.executable, str(script),
             str(n)], capture_output=True, text=True, env=env, cwd=tmp)
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"instructions_per_request: valgrind run of {n} requests failed "
                         f"(exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    return int(m.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: measure one checkout, print instructions per request."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the source tree to measure")
    ap.add_argument("--small", type=int, default=2_000)
    ap.add_argument("--large", type=int, default=62_000)
    a = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions_per_request: valgrind is not installed (e.g. apt install valgrind)",
              file=sys.stderr)
        return 2
    if not (a.checkout / "aigrid_sim").is_dir():
        print(f"instructions_per_request: --checkout {a.checkout}: no aigrid_sim package there",
              file=sys.stderr)
        return 2
    if a.large <= a.small:
        print("instructions_per_request: --large must be more than --small", file=sys.stderr)
        return 2
    lo, hi = instructions(a.checkout, a.small), instructions(a.checkout, a.large)
    print(f"{a.checkout}: {lo:,} instructions for {a.small:,} requests, {hi:,} for {a.large:,}")
    print(f"instructions per request: {(hi - lo) / (a.large - a.small):,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
