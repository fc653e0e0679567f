"""Bytecodes per request, function by function: where a change to the per-request path costs.

`scripts/instructions_per_request.py` says how much a change costs; this says where. It runs
the engine on ``global_agent`` under a ``sys.settrace`` opcode tracer (about 100x slower than
native) and counts the bytecodes each function executes during the simulation (world build and
stream generation left out), per request.

Usage::

    python scripts/bytecodes_per_function.py --out new.json
    PYTHONPATH=../old python scripts/bytecodes_per_function.py --out old.json
    python scripts/bytecodes_per_function.py --diff old.json new.json

The first two take about 3 minutes each at the default 20,000 requests.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys


def count(n: int) -> dict[str, int]:
    """Bytecodes executed per ``file:function`` while simulating ``n`` requests.

    Always the pure-Python build (``AIGRID_SIM_PURE=1``): compiled functions run no bytecode.
    """
    import os

    os.environ["AIGRID_SIM_PURE"] = "1"
    from aigrid_sim import api, config

    cfg = config.validate(config.compose("global_agent", [
        f"max_requests={n}", f"duration_s={n / 700:.0f}", "seed=1"]))
    world = api.build_world(cfg)
    stream = api.make_stream(cfg, world)
    counts: collections.Counter = collections.Counter()

    def trace(frame, event, arg):
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"

        def local(frame, event, arg):
            if event == "opcode":
                counts[key] += 1
            return local
        return local

    sys.settrace(trace)
    try:
        api.simulate(cfg, world=world, stream=stream)
    finally:
        sys.settrace(None)
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    """Count, or compare two counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--out", help="write the counts (JSON) here")
    ap.add_argument("--top", type=int, default=25, help="functions to print")
    ap.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                    help="compare two written counts (same --requests) instead of counting")
    a = ap.parse_args(argv)
    if a.diff:
        old, new = (json.loads(open(f).read()) for f in a.diff)
        n = new.get("_requests", a.requests)
        print(f"bytecodes per request: {old['_total'] / n:,.1f} -> {new['_total'] / n:,.1f}")
        keys = sorted((set(old) | set(new)) - {"_total", "_requests"},
                      key=lambda k: -abs(new.get(k, 0) - old.get(k, 0)))
        for k in keys[:a.top]:
            d = (new.get(k, 0) - old.get(k, 0)) / n
            if d:
                print(f"{d:+9.1f}  {k}")
        return 0
    c = count(a.requests)
    total = sum(c.values())
    print(f"{total / a.requests:,.1f} bytecodes per request ({a.requests:,} requests)")
    for k, v in sorted(c.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f"{v / a.requests:9.1f} {v / total:6.1%}  {k}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({**c, "_total": total, "_requests": a.requests}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
