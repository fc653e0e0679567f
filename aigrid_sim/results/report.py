"""Sweep reports: every complete run folder under a path gathered into one tidy table, and figures.

``aigrid-sim-report PATH`` finds each complete run folder below ``PATH`` (``_COMPLETE`` present;
half-written ``.tmp-*`` folders of interrupted runs are never read), and builds:

* ``runs.parquet`` / ``runs.csv``: one row per run: the swept parameters (every config key whose
  value differs between the runs, as dotted names such as ``world.edge.gpus``), then latency
  percentiles, TTFT, SLO attainment (overall and per app), rejections, cost, cost per 1,000
  requests, utilisation (overall and per tier).
* ``by_config.csv``: one row per configuration (the swept parameters without ``seed``): mean and
  95 % Student-t half-width across seeds (:func:`aigrid_sim.results.stats.mean_ci`) of the main
  metrics.
* figures: ``latency_cdf.png`` (latency CDF per configuration, seeds pooled),
  ``p95_cost_ci.png`` (p95 latency and cost per 1,000 requests per configuration, with the
  confidence intervals) and ``latency_cost.png`` (cost per 1,000 requests against p95 latency,
  one point per configuration, with the Pareto frontier, its points numbered and named in a
  key);
* ``report.html``: the same latency-cost frontier and CDFs, interactive (each point's
  configuration on hover), in one self-contained file that needs no network
  (:mod:`aigrid_sim.results.html`).

It reads only run folders (never re-runs anything), so it works on sweeps made by any launcher.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from aigrid_sim.errors import ConfigError
from aigrid_sim.results.rundir import COMPLETE, is_complete, unreadable_reason, write_table

# Config keys that never count as swept parameters (where results go, how they are shown).
IGNORED_PREFIXES = ("output.", "hydra.")

#: Metrics summarised per configuration (column, label for figures).
MAIN_METRICS = (
    ("latency_p95_ms", "p95 latency (ms)"),
    ("ttft_p95_ms", "p95 TTFT (ms)"),
    ("slo_attainment", "SLO attainment"),
    ("reject_rate", "rejected fraction"),
    ("cost_per_1k_requests_usd", "cost per 1,000 requests ($)"),
    ("utilisation", "utilisation"),
)

LATENCY_COLUMNS = {"e2e": ("latency_ms", "latency_p95_ms", "p95 end-to-end latency (ms)"),
                   "ttft": ("ttft_ms", "ttft_p95_ms", "p95 time to first token (ms)")}


# ----------------------------------------------------------------------------- finding runs


def find_runs(path: str | Path) -> tuple[list[Path], int]:
    """Complete run folders below ``path`` (or ``path`` itself), and how many incomplete ones.

    Returns:
        ``(complete, n_incomplete)``: sorted complete folders; incomplete = ``.tmp-*`` folders
        left by interrupted runs plus folders with a ``summary.json`` but no ``_COMPLETE``.
    """
    complete, skipped = scan_runs(path)
    return complete, sum(1 for _, why in skipped if why.startswith("incomplete"))


def scan_runs(path: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Readable run folders below ``path``, and every other run-like folder with the reason.

    A folder is readable when it is complete (``_COMPLETE`` and ``summary.json``), outside any
    ``.tmp-*`` folder, holds its tables and config, and has this package's
    :data:`~aigrid_sim.results.rundir.RESULTS_SCHEMA`.

    Returns:
        ``(readable, skipped)``: sorted readable folders; ``(folder, reason)`` pairs for the
        rest, reasons starting ``incomplete`` for interrupted or half-written runs.

    Raises:
        ConfigError: ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"report: {root} does not exist")
    complete, skipped = set(), {}
    for marker in root.rglob(COMPLETE):
        folder = marker.parent
        if any(p.startswith(".tmp-") for p in folder.relative_to(root).parts) or \
                folder.name.startswith(".tmp-"):
            skipped[folder] = "incomplete: a .tmp-* folder of an interrupted run"
        elif is_complete(folder):
            complete.add(folder)
    for summ in root.rglob("summary.json"):
        if summ.parent not in complete and summ.parent not in skipped:
            skipped[summ.parent] = f"incomplete: summary.json but no {COMPLETE} (half-written)"
    for tmp in root.rglob(".tmp-*"):
        if tmp.is_dir() and not any(tmp in s.parents or tmp == s for s in skipped):
            skipped[tmp] = "incomplete: a .tmp-* folder of an interrupted run"
    readable = []
    for folder in sorted(complete):
        why = unreadable_reason(folder)
        if why is None:
            readable.append(folder)
        else:
            skipped[folder] = why
    return readable, sorted(skipped.items())


def skipped_lines(skipped: list[tuple[Path | str, str]], root: str | Path,
                  limit: int = 3) -> list[str]:
    """One line per reason: how many folders were skipped, which (the first few) and why."""
    by_reason: dict[str, list[str]] = {}
    for folder, why in skipped:
        try:
            name = str(Path(folder).relative_to(root))
        except ValueError:
            name = str(folder)
        by_reason.setdefault(why, []).append(name)
    lines = []
    for why, names in by_reason.items():
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                             if len(names) > limit else "")
        lines.append(f"skipped {len(names)} folder{'s' if len(names) > 1 else ''} ({shown}): {why}")
    return lines


def flatten(node, prefix: str = "") -> dict:
    """A nested config as ``{dotted.key: value}``; lists become JSON text (hashable, comparable)."""
    out: dict = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(node, list):
        out[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)
    else:
        out[prefix[:-1]] = node
    return out


def _metrics_row(s: dict) -> dict:
    lat, tt = s.get("latency_ms") or {}, s.get("ttft_ms") or {}
    n = s.get("requests") or 0
    row = {
        "requests": n, "completed": s.get("completed"), "rejected": s.get("rejected"),
        "failed": s.get("failed"), "in_flight": s.get("in_flight"),
        "reject_rate": s["rejected"] / n if n else np.nan,
        "latency_mean_ms": lat.get("mean"), "latency_p50_ms": lat.get("p50"),
        "latency_p95_ms": lat.get("p95"), "latency_p99_ms": lat.get("p99"),
        "ttft_p50_ms": tt.get("p50"), "ttft_p95_ms": tt.get("p95"), "ttft_p99_ms": tt.get("p99"),
        "slo_attainment": s.get("slo_attainment"),
        "cost_usd": s.get("cost_usd"),
        "cost_per_1k_requests_usd": s.get("cost_per_1k_requests_usd"),
        "cost_per_million_tokens_usd": s.get("cost_per_million_tokens_usd"),
        "utilisation": s.get("utilisation"),
        "wall_s": s.get("wall_s"),
    }
    for tier, b in (s.get("by_tier") or {}).items():
        row[f"gpus_{tier}"] = b.get("gpus")
        row[f"utilisation_{tier}"] = b.get("utilisation")
        row[f"cost_{tier}_usd"] = b.get("cost_usd")
    for app, b in (s.get("by_app") or {}).items():
        row[f"slo_attainment_{app}"] = b.get("slo_attainment")
        row[f"latency_p95_ms_{app}"] = (b.get("latency_ms") or {}).get("p95")
    return row


#: Columns of ``runs.parquet`` that are neither config knobs nor metrics.
RESERVED_COLUMNS = ("run", "path", "scenario", "config")


def config_column(key: str, schema_keys: set[str]) -> str:
    """The ``runs`` column of a dotted config key.

    A scenario's own top-level knobs (``mmc``'s ``requests``, ``servers``...) live in
    ``SimConfig.params`` once validated, and their columns say so: ``params.requests``. Schema
    keys keep their dotted names (``world.edge.gpus``, ``load``). Metrics never contain a dot
    and no schema key is a metric name, so the two never share a column.
    """
    return key if key.split(".", 1)[0] in schema_keys else f"params.{key}"


def gather(path: str | Path) -> pd.DataFrame:
    """One row per readable run folder under ``path``: swept parameters, then metrics.

    ``df.attrs`` carries ``swept`` (the swept config keys, as column names), ``params``
    (``swept`` without ``seed``: what defines a configuration), ``incomplete`` (interrupted or
    half-written folders skipped) and ``skipped`` (``[(folder, reason)]``, every folder left out:
    incomplete, missing files, another results schema).

    Raises:
        ConfigError: if there is no readable run folder under ``path`` (the message says what
            was found instead).
    """
    from aigrid_sim.config import SimConfig

    folders, skipped = scan_runs(path)
    if not folders:
        why = "; ".join(skipped_lines(skipped, path, limit=2))
        raise ConfigError(f"report: no readable run folder under {path}"
                          + (f" ({why})" if why else
                             f" (a run folder holds summary.json and {COMPLETE})"))
    schema_keys = set(SimConfig.__dataclass_fields__)
    configs, rows = [], []
    for f in folders:
        cfg = OmegaConf.to_container(OmegaConf.load(f / "config.yaml"), resolve=True)
        flat = {config_column(k, schema_keys): v for k, v in flatten(cfg).items()
                if not any(k.startswith(p) or k == p[:-1] for p in IGNORED_PREFIXES)}
        configs.append(flat)
        summary = json.loads((f / "summary.json").read_text())
        rows.append({"run": f.name, "path": str(f), **_metrics_row(summary)})
    metrics_df = pd.DataFrame(rows)
    cfg_df = pd.DataFrame(configs)
    clash = (set(cfg_df.columns) & set(metrics_df.columns)) | \
        (set(cfg_df.columns) & set(RESERVED_COLUMNS))
    if clash:  # cannot happen with the rule of config_column; kept as a guarantee
        cfg_df = cfg_df.rename(columns={c: f"cfg.{c}" for c in clash})
    swept = [k for k in cfg_df.columns if cfg_df[k].map(_text).nunique() > 1]
    first = [k for k in ("name", "policy", "seed") if k in swept]
    swept = first + sorted(k for k in swept if k not in first)
    base = cfg_df[[c for c in ("name", "policy", "seed") if c in cfg_df.columns]]
    df = pd.concat([metrics_df[["run"]],
                    base.rename(columns={"name": "scenario"}),
                    cfg_df[[k for k in swept if k not in ("name", "policy", "seed")]],
                    metrics_df.drop(columns=["run"])], axis=1)
    assert not df.columns.duplicated().any(), list(df.columns[df.columns.duplicated()])
    params = [("scenario" if k == "name" else k) for k in _independent(cfg_df, swept)
              if k != "seed"]
    df["config"] = config_labels(df, params)
    df.attrs.update(swept=swept, params=params, skipped=[(str(f), why) for f, why in skipped],
                    incomplete=sum(1 for _, why in skipped if why.startswith("incomplete")))
    return df


def _text(v) -> str:
    return "<unset>" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _independent(cfg_df: pd.DataFrame, swept: list[str]) -> list[str]:
    """The swept keys that define a configuration, without those derived from the others.

    A scenario knob such as ``servers`` also changes the keys it is interpolated into
    (``world.sites``); keys are taken in order (name, policy, seed; the scenario's own knobs,
    ``params.*``; then the schema's, shallow first, lists last) and one is dropped when the keys
    already taken determine its value.
    """

    def rank(k: str):
        fixed = ("name", "policy", "seed")
        if k in fixed:
            return (0, fixed.index(k), 0, k)
        listy = cfg_df[k].map(lambda v: isinstance(v, str) and v[:1] in ("[", "{")).any()
        return (1 if k.startswith("params.") else 2, k.count("."), int(listy), k)

    kept: list[str] = []
    text = cfg_df[swept].map(_text)  # (astype(str) would keep NaN, and groupby drops NaN keys)
    for k in sorted(swept, key=rank):
        if k in ("name", "policy", "seed") or not kept or \
                text.groupby(kept)[k].nunique().max() > 1:
            kept.append(k)
    return kept


def config_labels(df: pd.DataFrame, params: list[str]) -> list[str]:
    """A readable label per row from its swept parameters (seed excluded).

    The policy alone when only the policy is swept; ``key=value, ...`` otherwise; the policy
    name when nothing but the seed differs.
    """
    if not params:
        return [str(p) for p in df.get("policy", pd.Series(["run"] * len(df)))]
    if params == ["policy"]:
        return [str(p) for p in df["policy"]]
    short = {p: p.removeprefix("params.") if p.startswith("params.")
             else ".".join(p.split(".")[-2:]) for p in params}  # world.edge.gpus -> edge.gpus
    if len(set(short.values())) < len(short):
        short = {p: p for p in params}
    return [", ".join(f"{short[p]}={_fmt(v)}" for p, v in zip(params, vals, strict=True))
            for vals in df[params].itertuples(index=False)]


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def by_config(df: pd.DataFrame, metrics=MAIN_METRICS, confidence: float = 0.95) -> pd.DataFrame:
    """Per configuration: number of seeds, and mean and CI half-width of each metric.

    The half-width is the Student-t one of :func:`aigrid_sim.results.stats.mean_ci` across seeds;
    NaN when a configuration has fewer than two finite values.
    """
    from aigrid_sim.results.stats import mean_ci

    params = df.attrs.get("params", [])
    rows = []
    for label, g in df.groupby("config", sort=False):
        row = {"config": label, **{p: g[p].iloc[0] for p in params}, "seeds": len(g)}
        for col, _ in metrics:
            x = pd.to_numeric(g[col], errors="coerce").dropna().to_numpy(float)
            if len(x) >= 2:
                m, hw = mean_ci(x, confidence)
            else:
                m, hw = (float(x[0]) if len(x) else np.nan), np.nan
            row[col], row[f"{col}_ci"] = m, hw
        rows.append(row)
    out = pd.DataFrame(rows)
    if params and len(out):  # figures and tables in parameter order, not folder order
        out = out.sort_values(params, kind="stable", key=lambda c: c.map(_sort_key)) \
            .reset_index(drop=True)
    return out


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) \
        else (1, 0.0, str(v))


def pareto_front(x, y) -> np.ndarray:
    """Mask of the points no other point beats on both ``x`` and ``y`` (both minimised).

    A point is dominated when another is at most as large on both axes and smaller on one.
    NaN points are never on the front.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~(np.isnan(x) | np.isnan(y))
    front = np.zeros(len(x), bool)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((y[idx], x[idx]))]  # by x, then y
    best = math.inf
    for i in order:
        if y[i] < best:
            front[i] = True
            best = y[i]
    # Equal points are all kept (none dominates the other).
    for i in idx:
        if not front[i] and any(x[j] == x[i] and y[j] == y[i] for j in np.flatnonzero(front)):
            front[i] = True
    return front


def frontier(agg: pd.DataFrame, latency_col: str = "latency_p95_ms",
             max_reject: float = 0.01) -> np.ndarray:
    """Pareto mask of cost per 1,000 requests against latency.

    Only configurations rejecting at most ``max_reject`` of their requests count (a configuration
    that turns work away looks fast).
    """
    ok = (agg["reject_rate"].to_numpy(float) <= max_reject)
    x = np.where(ok, agg[latency_col].to_numpy(float), np.nan)
    return pareto_front(x, agg["cost_per_1k_requests_usd"])


def latency_samples(df: pd.DataFrame, column: str = "latency_ms",
                    per_run: int = 20_000) -> dict[str, np.ndarray]:
    """Per configuration: latencies of completed requests, seeds pooled.

    Each run contributes at most ``per_run`` values (evenly spaced order statistics, so its
    distribution is kept) to bound memory on big sweeps.
    """
    out: dict[str, list[np.ndarray]] = {}
    for label, path in zip(df["config"], df["path"], strict=True):
        r = pd.read_parquet(Path(path) / "requests.parquet", columns=["status", column])
        x = np.sort(r.loc[r["status"] == "ok", column].to_numpy(float))
        x = x[~np.isnan(x)]
        if len(x) > per_run:
            x = x[np.linspace(0, len(x) - 1, per_run).round().astype(int)]
        out.setdefault(label, []).append(x)
    return {k: np.concatenate(v) for k, v in out.items()}


def write_report(path: str | Path, out: str | Path | None = None, *, figures: bool = True,
                 latency: str = "e2e", frontier_max_reject: float = 0.01) -> dict:
    """Gather, write the tables and draw the figures; returns what was written.

    Args:
        path: Folder holding run folders (any depth).
        out: Where to write; default ``PATH/report``.
        figures: Draw the PNG figures.
        latency: ``"e2e"`` (end-to-end) or ``"ttft"``: the latency of the CDF and the curve.
        frontier_max_reject: Configurations rejecting a larger share of requests are left off
            the Pareto frontier (their latency is that of the requests they kept).

    Returns:
        ``{"runs": DataFrame, "by_config": DataFrame, "files": [paths]}``.
    """
    if latency not in LATENCY_COLUMNS:
        raise ConfigError(f"report: latency must be one of {sorted(LATENCY_COLUMNS)}, "
                          f"got {latency!r}")
    df = gather(path)
    out = Path(out) if out is not None else Path(path) / "report"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    write_table(df, out / "runs.parquet")
    df.to_csv(out / "runs.csv", index=False)
    files += [out / "runs.parquet", out / "runs.csv"]
    agg = by_config(df)
    req_col, p95_col, p95_label = LATENCY_COLUMNS[latency]
    agg["pareto"] = frontier(agg, p95_col, frontier_max_reject)
    agg.to_csv(out / "by_config.csv", index=False)
    files.append(out / "by_config.csv")
    if figures:
        from aigrid_sim.results import html, plots
        from aigrid_sim.results.rundir import save_figure

        cdf_label = "end-to-end latency" if latency == "e2e" else "time to first token"
        samples = latency_samples(df, req_col)
        files.append(save_figure(plots.latency_cdf_by_group(samples, xlabel=cdf_label),
                                 out / "latency_cdf.png"))
        files.append(save_figure(plots.metric_by_group_ci(
            agg, [(p95_col, p95_label), ("cost_per_1k_requests_usd",
                                         "cost per 1,000 requests ($)")]),
            out / "p95_cost_ci.png"))
        files.append(save_figure(plots.latency_cost_curve(
            agg, x=p95_col, y="cost_per_1k_requests_usd", xlabel=p95_label,
            colour_by="policy" if "policy" in agg.columns else None), out / "latency_cost.png"))
        (out / "report.html").write_text(html.sweep_html(
            agg, samples, n_runs=len(df), params=df.attrs.get("params", []), x=p95_col,
            xlabel=p95_label, cdf_label=cdf_label), encoding="utf-8")
        files.append(out / "report.html")
    return {"runs": df, "by_config": agg, "files": files}


# ----------------------------------------------------------------------------- merging runs


def merge_state_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Merge the online-summary states (``sketches.parquet``) of several runs into one.

    Counters, sums and sketch bins add up per ``dim, group, metric, key`` (tenants' billing
    totals and the serving counters too); a site's static facts (``site_info``: tier, slots,
    GPUs) and the sketch settings are taken once; the serving span takes the first arrival and
    the last token. Exact for the counters; the sketches keep their stated accuracy (merging
    DDSketches loses nothing).
    """
    if not frames:
        raise ConfigError("report --merge: no run with a sketches.parquet to merge")
    f = pd.concat(frames, ignore_index=True)
    keys = ["dim", "group", "metric", "key"]
    once = (f["dim"] == "site_info") | ((f["dim"] == "meta")
                                        & f["group"].isin(["alpha", "city_alpha", "time_bin_s"]))
    bins = set(f.loc[(f["dim"] == "meta") & (f["group"] == "time_bin_s"), "value"])
    if len(bins) > 1:
        raise ConfigError(f"report --merge: runs use different output.time_bin_s {sorted(bins)}"
                          "; merge runs made with the same value")
    # the serving span: first arrival (min) and last token (max), in absolute time
    first = (f["dim"] == "serving") & (f["group"] == "t0")
    last = (f["dim"] == "serving") & (f["group"] == "t1")
    a = f[~once & ~first & ~last].groupby(keys, sort=False, as_index=False)["value"].sum()
    b = f[once | last].groupby(keys, sort=False, as_index=False)["value"].max()
    c = f[first].groupby(keys, sort=False, as_index=False)["value"].min()
    return pd.concat([a, b, c], ignore_index=True)


def summary_from_state(frame: pd.DataFrame) -> dict:
    """The run summary (``summary.json`` layout) of a state table, e.g. merged runs.

    Cost and utilisation are over each run's measured window (``duration_s - warmup_s``), so
    hourly slices with a warm-up overlap add up to the day without counting the overlap twice.
    """
    from aigrid_sim.results.online import OnlineSummary

    o = OnlineSummary.from_state(frame)
    sites = OnlineSummary.sites_from_state(frame)
    out = o.summary(sites)
    out["runs"] = int(o.meta.get("runs", 1))
    out["measured_s"] = float(o.meta.get("measured_s", 0.0))
    return out


def merge_runs(path: str | Path, out: str | Path | None = None) -> dict:
    """Merge every complete run folder under ``path`` into one summary (``--merge``).

    For a study split into runs that together make one whole: hourly time slices of a day
    (each with ``warmup_s`` of overlap, left out of its sketches) or regions that exchange no
    traffic. Writes ``summary.json`` and ``sketches.parquet`` under ``out``
    (default ``PATH/merged``).
    """
    from aigrid_sim.results.online import read_state

    runs, _ = find_runs(path)
    frames = [read_state(r / "sketches.parquet") for r in runs
              if (r / "sketches.parquet").exists()]
    merged = merge_state_frames(frames)
    summary = summary_from_state(merged)
    summary["merged_from"] = [str(r) for r in runs if (r / "sketches.parquet").exists()]
    out = Path(out) if out is not None else Path(path) / "merged"
    out.mkdir(parents=True, exist_ok=True)
    merged.to_parquet(out / "sketches.parquet", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return {"summary": summary, "state": merged, "out": out, "runs": len(frames)}


def format_table(agg: pd.DataFrame, latency: str = "e2e") -> str:
    """The per-configuration table for the console."""
    p95 = LATENCY_COLUMNS[latency][1]
    lines = [f"{'configuration':<44}{'seeds':>6}{'p95 ms':>18}{'SLO met':>16}"
             f"{'rejected':>10}{'$ / 1k req':>18}{'util':>7}  pareto"]

    def pm(m, hw, f):
        if m is None or (isinstance(m, float) and math.isnan(m)):
            return "-"
        return f.format(m) + ("" if hw is None or math.isnan(hw) else " ± " + f.format(hw))

    for r in agg.itertuples(index=False):
        d = r._asdict()
        lines.append(
            f"{str(d['config'])[:43]:<44}{d['seeds']:>6}"
            f"{pm(d[p95], d[p95 + '_ci'], '{:,.0f}'):>18}"
            f"{pm(100 * d['slo_attainment'], 100 * d['slo_attainment_ci'], '{:.2f}'):>14} %"
            f"{100 * d['reject_rate']:>9.2f}%"
            f"{pm(d['cost_per_1k_requests_usd'], d['cost_per_1k_requests_usd_ci'], '{:.3f}'):>18}"
            f"{100 * d['utilisation']:>6.1f}%  {'*' if d['pareto'] else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``aigrid-sim-report``."""
    ap = argparse.ArgumentParser(
        prog="aigrid-sim-report",
        description="Gather every complete run folder under PATH into one table (parquet + CSV) "
                    "and draw the comparison figures.")
    ap.add_argument("path", help="folder holding run folders (e.g. results/)")
    ap.add_argument("--out", help="where to write the report (default PATH/report)")
    ap.add_argument("--latency", choices=sorted(LATENCY_COLUMNS), default="e2e",
                    help="latency used by the CDF and the latency-cost curve (default e2e)")
    ap.add_argument("--frontier-max-reject", type=float, default=0.01,
                    help="configurations rejecting more than this share are kept off the Pareto "
                         "frontier (default 0.01)")
    ap.add_argument("--no-figures", action="store_true", help="tables only")
    ap.add_argument("--merge", action="store_true",
                    help="merge the runs' sketches into one summary (time slices of a day, or "
                         "regions that exchange no traffic) instead of comparing them")
    args = ap.parse_args(argv)
    if args.merge:
        from aigrid_sim.cli import summary_table

        try:
            m = merge_runs(args.path, args.out)
        except ConfigError as e:
            print(f"aigrid-sim-report: error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"merged {m['runs']} runs under {args.path}\n")
        print(summary_table(m["summary"]))
        print(f"\nwrote: {m['out'] / 'summary.json'}, {m['out'] / 'sketches.parquet'}")
        return
    try:
        rep = write_report(args.path, args.out, figures=not args.no_figures,
                           latency=args.latency, frontier_max_reject=args.frontier_max_reject)
    except ConfigError as e:
        print(f"aigrid-sim-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    df = rep["runs"]
    for line in skipped_lines(df.attrs["skipped"], args.path):
        print(line)
    print(f"{len(df)} complete runs under {args.path}"
          + (f" ({n} folder{'s' if n > 1 else ''} skipped)" if (n := len(df.attrs["skipped"]))
             else "")
          + f"; swept: {', '.join(df.attrs['swept']) or '(nothing)'}\n")
    print(format_table(rep["by_config"], args.latency))
    print("\n(mean ± 95 % CI half-width across seeds; * = on the latency-cost Pareto frontier, "
          f"among configurations rejecting <= {100 * args.frontier_max_reject:g} %)")
    print("\nwrote:")
    for f in rep["files"]:
        print(f"  {f}")


if __name__ == "__main__":
    main()
