"""Measure the control plane's features on the shipped scenarios.

Writes docs/control_plane.md's tables (as Markdown, to stdout or --out) and one figure per feature
(docs/img/control_*.png).

Usage::

    python scripts/control_plane_study.py --out docs/img          # all studies
    python scripts/control_plane_study.py --only sovereignty kpi   # some of them

Every number in docs/control_plane.md comes from this script at the commit named there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import aigrid_sim

# A short version of the default scenario: the whole grid, 120 s of Europe's evening peak.
BASE = ["duration_s=120", "warmup_s=20", "drain_s=120", "output.figures=false"]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _ms(x) -> str:
    return "-" if x is None or x != x else f"{x:,.0f}"


def _run(scenario: str, overrides: list[str]):
    t0 = time.perf_counter()
    r = aigrid_sim.run(scenario, BASE + overrides)
    r.summary["_wall"] = time.perf_counter() - t0
    return r


def study_sovereignty(out: Path, lines: list[str]) -> None:
    """Residency for the reasoning app's EU and Indian users: latency and GPUs, with and without."""
    import matplotlib.pyplot as plt

    rule = "+workload.apps.2.sovereignty=[EU,IN]"
    from aigrid_sim.world import areas

    eu, india = areas.resolve("EU", "x"), areas.resolve("IN", "x")
    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, ov in (("no residency rule", []), ("EU and IN residency", [rule])):
        r = _run("global_agent", ov)
        df = r.requests
        oc = dict(zip(r.world.origin_name, [c or "" for c in r.world.origin_country], strict=True))
        country = df["origin"].astype(str).map(oc)
        m = (df["app"] == "reasoning") & (df["arrival_s"] >= 20)
        for area, members in (("EU", eu), ("IN", india)):
            sub = df[m & country.isin(members)]
            ok = sub[sub["status"] == "ok"]
            tt = ok["ttft_ms"].to_numpy()
            rows.append((label, area, len(sub), _ms(np.percentile(tt, 50) if len(tt) else None),
                         _ms(np.percentile(tt, 95) if len(tt) else None),
                         _pct((sub["slo_met"]).mean() if len(sub) else None),
                         int((sub["reason"] == "sovereignty").sum())))
            if len(tt):
                x = np.sort(tt)
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=f"{area}, {label}")
    ax.set_xscale("log")
    ax.set_xlabel("reasoning TTFT (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Data residency for the reasoning app (global_agent, 120 s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "control_sovereignty.png", dpi=120)
    plt.close(fig)
    lines += ["| run | users | requests | TTFT p50 (ms) | TTFT p95 (ms) | SLO met | rejected "
              "(sovereignty) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c:,} | {d} | {e} | {f} | {g:,} |" for a, b, c, d, e, f, g in rows]


def study_kpi(out: Path, lines: list[str]) -> None:
    """Sweep the KPI-weighted orchestrator's cost weight: the latency-cost curve it traces."""
    import matplotlib.pyplot as plt

    pts = []
    for w in (0.0, 0.25, 1.0, 4.0, 16.0):
        r = _run("global_agent", ["policy=kpi_weighted", f"+routing.params.w_cost={w}"])
        s = r.summary
        pts.append((w, s["ttft_ms"]["p95"], s["latency_ms"]["p95"], s["slo_attainment"],
                    r.requests["cost_usd"].sum() / max(s["completed"], 1) * 1000.0))
    for name in ("latency_aware", "cheapest_feasible"):
        r = _run("global_agent", [f"policy={name}"])
        s = r.summary
        pts.append((name, s["ttft_ms"]["p95"], s["latency_ms"]["p95"], s["slo_attainment"],
                    r.requests["cost_usd"].sum() / max(s["completed"], 1) * 1000.0))
    fig, ax = plt.subplots(figsize=(6, 4))
    for w, ttft, _, _, cost in pts:
        ax.scatter(cost, ttft, color="C0" if isinstance(w, float) else "C3")
        ax.annotate(f"w_cost={w}" if isinstance(w, float) else w, (cost, ttft),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("used GPU cost per 1,000 completed requests ($)")
    ax.set_ylabel("TTFT p95 (ms)")
    ax.set_title("kpi_weighted: sweeping the cost weight (global_agent, 120 s)")
    fig.tight_layout()
    fig.savefig(out / "control_kpi.png", dpi=120)
    plt.close(fig)
    lines += ["| policy | TTFT p95 (ms) | latency p95 (ms) | SLO met | used GPU $ / 1k |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {'kpi_weighted w_cost=' + str(w) if isinstance(w, float) else w} | {_ms(a)} | "
              f"{_ms(b)} | {_pct(c)} | {d:.3f} |" for w, a, b, c, d in pts]


def study_tenants(out: Path, lines: list[str]) -> None:
    """The multi_tenant scenario: each tenant's bill, with and without the batch quota."""
    import matplotlib.pyplot as plt

    rows = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (label, ov) in enumerate((("with quotas", []),
                                     ("no quotas", ["tenants.1.quotas=[]"]))):
        r = _run("multi_tenant", ov)
        b = r.summary["tenants"]["by_tenant"]
        for name, t in b.items():
            rows.append((label, name, t["requests"], t["throttled"], _pct(t["slo_attainment"]),
                         t["revenue_usd"], t["penalty_usd"], t["gpu_cost_usd"], t["margin_usd"]))
        names = list(b)
        x = np.arange(len(names)) + 0.38 * k
        ax.bar(x, [b[n]["margin_usd"] for n in names], width=0.36, label=label)
        ax.set_xticks(np.arange(len(names)) + 0.19, names)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("margin over 120 s ($)")
    ax.set_title("multi_tenant: margin per tenant")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "control_tenants.png", dpi=120)
    plt.close(fig)
    lines += ["| run | tenant | requests | throttled | SLO met | revenue $ | penalty $ | GPU $ | "
              "margin $ |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c:,} | {d:,} | {e} | {f:.2f} | {g:.2f} | {h:.2f} | {i:.2f} |"
              for a, b, c, d, e, f, g, h, i in rows]


MOONCAKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / \
    "mooncake_fast25_conversation.csv"


def study_prefix(out: Path, lines: list[str]) -> None:
    """Prefix affinity on the Mooncake conversation trace (real hash_ids), Europe, 15 min."""
    import matplotlib.pyplot as plt

    trace = Path(os.environ.get("AIGRID_MOONCAKE", MOONCAKE))
    if not trace.is_file():
        lines.append(f"(skipped: {trace} not found; set AIGRID_MOONCAKE to the trace's path)")
        return
    ov = ["scenario=trace_replay", f"trace.path={trace}", "trace.format=mooncake",
          "trace.end_s=900", "duration_s=900", "drain_s=300", "output.figures=false",
          "world.cities.countries=[DE,FR,GB,NL,BE,IT,ES,SE,PL,IE]", "world.regional.gpus=2"]
    rows = []
    for pol in ("least_loaded", "latency_aware", "prefix_affinity"):
        r = aigrid_sim.run("trace_replay", ov[1:] + [f"policy={pol}"])
        s = r.summary
        hit = float((s.get("prefix_cache") or {}).get("hit_rate") or 0.0)
        rows.append((pol, s["requests"], hit, s["ttft_ms"]["p50"], s["ttft_ms"]["p99"],
                     s["slo_attainment"], s["cost_usd"]))
    base = 1.0 - rows[0][2]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r[0] for r in rows], [100 * r[2] for r in rows])
    ax.set_ylabel("prompt tokens served from cache (%)")
    ax.set_title("Mooncake conversation trace, 15 min, Europe")
    fig.tight_layout()
    fig.savefig(out / "control_prefix.png", dpi=120)
    plt.close(fig)
    lines += ["| policy | requests | prompt tokens from cache | prefill tokens saved vs "
              "least_loaded | TTFT p50 (ms) | TTFT p99 (ms) | SLO met | GPU $ |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {p} | {n:,} | {100 * h:.1f} % | {100 * (1 - (1 - h) / base):.1f} % | "
              f"{_ms(a)} | {_ms(b)} | {_pct(c)} | {d:.2f} |" for p, n, h, a, b, c, d in rows]
    # Why so little: how long a reused prefix block waits for its next use, and what four
    # times the regional GPUs (4 replicas a site, 4x the KV memory) changes.
    import pandas as pd

    df = pd.read_csv(trace)
    df = df[df["timestamp_ms"] < 900_000]
    last: dict[int, int] = {}
    gaps, hit, tot = [], 0, 0
    for t, n, ids in zip(df["timestamp_ms"], df["input_length"], df["hash_ids"], strict=True):
        blocks = [int(x) for x in str(ids).split()]
        k = 0
        while k < len(blocks) and blocks[k] in last:
            gaps.append((t - last[blocks[k]]) / 1000.0)
            k += 1
        hit, tot = hit + min(k * 512, n), tot + n
        for b in blocks:
            last[b] = t
    g = np.percentile(gaps, [10, 50, 90])
    lines += ["", "Infinite-cache ceiling (leading prefix blocks seen before): "
              f"{100 * hit / tot:.1f} % of prompt tokens; a reused block's previous use was "
              f"{g[0]:.0f} / {g[1]:.0f} / {g[2]:.0f} s earlier (p10 / p50 / p90).", "",
              "| regional GPUs per site | policy | prompt tokens from cache | TTFT p99 (ms) | "
              "SLO met |", "| ---: | --- | ---: | ---: | ---: |"]
    for gpus in (2, 8):
        for pol in ("least_loaded", "prefix_affinity"):
            r = aigrid_sim.run("trace_replay", ov[1:] + [f"world.regional.gpus={gpus}",
                                                         f"policy={pol}"])
            s = r.summary
            hit_rate = float((s.get("prefix_cache") or {}).get("hit_rate") or 0.0)
            lines.append(f"| {gpus} | {pol} | {100 * hit_rate:.1f} % | {_ms(s['ttft_ms']['p99'])} "
                         f"| {_pct(s['slo_attainment'])} |")


def study_cascade(out: Path, lines: list[str]) -> None:
    """The reasoning app as a cascade (edge 8B first, regional 70B on escalation) vs on the 70B."""
    import matplotlib.pyplot as plt

    length = ["workload.apps.2.cascade.mode=length", "++workload.apps.2.cascade.length_tokens=2000"]
    runs = (("no cascade: reasoning on the 70B (global_agent)", "global_agent", []),
            ("cascade, difficulty (edge_cascade)", "edge_cascade", []),
            ("cascade, prompts > 2,000 tokens escalate, cascade_aware=false", "edge_cascade",
             length + ["+routing.params.cascade_aware=false"]),
            ("cascade, prompts > 2,000 tokens escalate, cascade_aware=true", "edge_cascade",
             length))
    rows, paths = [], []
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, scen, ov in runs:
        r = _run(scen, ov)
        df = r.requests
        m = (df["app"] == "reasoning") & (df["arrival_s"] >= 20)
        sub = df[m]
        ok = sub[sub["status"] == "ok"]
        tt = ok["ttft_ms"].to_numpy()
        esc = int((sub["cascade"] == "escalated").sum()) if "cascade" in sub else 0
        direct = int((sub["cascade"] == "direct").sum()) if "cascade" in sub else 0
        cost = sub["cost_usd"].sum() / len(sub) * 1000.0
        slo = sub["slo_met"].mean()
        rows.append((label, len(sub), _pct(esc / len(sub)), _pct(direct / len(sub)),
                     _ms(np.percentile(tt, 50)), _ms(np.percentile(tt, 95)),
                     _ms(np.percentile(ok["latency_ms"], 50)), _pct(slo), cost,
                     r.summary["cost_usd"]))
        ax.scatter([cost], [100 * slo], s=40)
        ax.annotate(label.split(" (")[0].replace("cascade, ", ""), (cost, 100 * slo),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
        if "cascade" in sub:
            for path in ("edge_only", "escalated", "direct"):
                p = sub[sub["cascade"] == path]
                if not len(p):
                    continue
                po = p[p["status"] == "ok"]
                paths.append((label, path, len(p), _ms(po["ttft_ms"].median()),
                              _ms(po["latency_ms"].median()), _pct(p["slo_met"].mean()),
                              p["cost_usd"].sum() / len(p) * 1000.0))
    ax.set_xlabel("GPU $ used per 1,000 reasoning requests")
    ax.set_ylabel("reasoning SLO met (%)")
    ax.set_title("Cascade: cost and SLO of the reasoning app (global grid, 120 s)")
    fig.tight_layout()
    fig.savefig(out / "control_cascade.png", dpi=120)
    plt.close(fig)
    lines += ["| run | reasoning requests | escalated | direct | TTFT p50 (ms) | TTFT p95 (ms) | "
              "latency p50 (ms) | SLO met | used GPU $ / 1k | provisioned GPU $ (run) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b:,} | {c} | {d} | {e} | {f} | {g} | {h} | {i:.3f} | {j:.2f} |"
              for a, b, c, d, e, f, g, h, i, j in rows]
    lines += ["", "| run | path | requests | TTFT p50 (ms) | latency p50 (ms) | SLO met | "
              "used GPU $ / 1k |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c:,} | {d} | {e} | {f} | {g:.3f} |"
              for a, b, c, d, e, f, g in paths]


STUDIES = {"sovereignty": study_sovereignty, "kpi": study_kpi, "tenants": study_tenants,
           "prefix": study_prefix, "cascade": study_cascade}


def main(argv: list[str] | None = None) -> int:
    """Run the studies and print their Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/img", help="folder for the figures")
    ap.add_argument("--only", nargs="*", choices=sorted(STUDIES), help="run only these")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in a.only or list(STUDIES):
        t0 = time.perf_counter()
        lines: list[str] = [f"### {name}", ""]
        STUDIES[name](out, lines)
        lines += ["", f"({time.perf_counter() - t0:.0f} s)", ""]
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
