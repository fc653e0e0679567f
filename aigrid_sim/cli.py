"""The ``aigrid-sim`` command: Hydra front end, progress bar and the console summary.

``aigrid-sim [scenario=NAME] [key=value ...]`` runs one scenario; ``--multirun`` sweeps. Bad
configuration is reported in one line naming the key, with exit status 2, before anything runs.
The ``@hydra.main`` task is thin: it calls :func:`aigrid_sim.api.run_config`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path

from omegaconf import DictConfig

from aigrid_sim import config as cfgmod
from aigrid_sim.errors import ConfigError
from aigrid_sim.sim.policies.base import allow_plugins

EXIT_CONFIG = 2


def fmt_ms(x) -> str:
    """A latency for the console."""
    return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def fmt_pct(x) -> str:
    """A fraction as a percentage for the console."""
    return "-" if x is None else f"{100 * x:.1f} %"


def summary_table(s: dict) -> str:
    """The console summary of a run from its ``summary.json`` dict."""
    lines = [
        f"aigrid-sim  {s.get('scenario')}  policy={s.get('policy')}  seed={s.get('seed')}  "
        f"load={s.get('load')}  ({s.get('duration_s', 0):,.0f} s simulated, "
        f"{s.get('sites', 0):,} sites, {s.get('origins', 0):,} cities, "
        f"{s.get('wall_s', 0):.1f} s wall)",
        "",
        f"{'requests':>10} {'completed':>10} {'rejected':>9} {'failed':>7} {'in_flight':>9}"
        f" {'SLO met':>8}",
        f"{s['requests']:>10,} {s['completed']:>10,} {s['rejected']:>9,} {s['failed']:>7,}"
        f" {s['in_flight']:>9,} {fmt_pct(s['slo_attainment']):>8}",
        "",
        f"{'latency (ms)':<16}{'requests':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'TTFT p50':>9}"
        f"{'SLO met':>9}{'util':>7}{'busy':>7}{'cost $':>10}",
    ]

    def row(label: str, b: dict, util=None, cost=None, busy=None) -> str:
        lat, tt = b.get("latency_ms", {}), b.get("ttft_ms", {})
        return (f"{label:<16}{b.get('requests', 0):>9,}{fmt_ms(lat.get('p50')):>8}"
                f"{fmt_ms(lat.get('p95')):>8}{fmt_ms(lat.get('p99')):>8}"
                f"{fmt_ms(tt.get('p50')):>9}{fmt_pct(b.get('slo_attainment')):>9}"
                f"{'' if util is None else fmt_pct(util):>7}"
                f"{'' if busy is None else fmt_pct(busy):>7}"
                f"{'' if cost is None else f'{cost:,.2f}':>10}")

    lines.append(row("all", {**s, "requests": s.get("measured_requests", s["requests"])},
                     s.get("utilisation"), s.get("cost_usd"), s.get("replica_busy")))
    for tier, b in s.get("by_tier", {}).items():
        lines.append(row(f"  {tier}", b, b.get("utilisation"), b.get("cost_usd"),
                         b.get("replica_busy")))
    for title in ("by_region", "by_app"):
        if s.get(title):
            lines.append(f"{title.replace('_', ' ')}:")
            for k, b in s[title].items():
                lines.append(row(f"  {k}", b))
    st = s.get("stream") or {}
    if st.get("source") == "trace":
        lines += ["", f"trace: {Path(str(st.get('trace_path'))).name} ({st.get('trace_format')}), "
                  f"{st.get('requests', 0):,} requests replayed"
                  + (f", {st['trace_rows_skipped']:,} bad rows skipped (lines "
                     f"{', '.join(map(str, st.get('trace_skipped_lines', [])))}"
                     f"{', ...' if st['trace_rows_skipped'] > 10 else ''})"
                     if st.get("trace_rows_skipped") else "")
                  + (f", {st['dropped_after_duration']:,} after duration_s left out"
                     if st.get("dropped_after_duration") else "")]
    if s.get("output_tokens"):
        def mpp(k: str) -> str:
            b = s.get(k) or {}
            return "/".join(fmt_ms(b.get(q)) for q in ("mean", "p50", "p99"))
        pc = (s.get("prefix_cache") or {}).get("hit_rate")
        lines += ["", f"serving: {s.get('output_tok_s') or 0:,.0f} output tok/s; ms mean/p50/p99: "
                  f"TTFT {mpp('ttft_ms')}, TPOT {mpp('tpot_ms')}, latency {mpp('latency_ms')}; "
                  f"{s.get('preemptions', 0):,} preemptions"
                  + (f"; prefix cache hit rate {fmt_pct(pc)}" if pc else "")]
    cp = s.get("cost_per_1k_requests_usd")
    cm = s.get("cost_per_million_tokens_usd")
    lines += ["", f"cost: ${s['cost_usd']:,.2f} provisioned GPU time"
              + (f", ${cp:,.3f} per 1,000 completed requests" if cp else "")
              + (f", ${cm:,.2f} per million tokens" if cm else "")]
    lines += provisioned_lines(s)
    if s.get("reasons"):
        lines.append("not completed: " + ", ".join(f"{k} {v:,}" for k, v in s["reasons"].items()))
    if s.get("faults"):
        lines += [""] + fault_lines(s["faults"])
    if s.get("tenants"):
        from aigrid_sim.results.billing import billing_lines

        lines += [""] + billing_lines(s["tenants"])
    if s.get("cascade"):
        lines += [""] + cascade_lines(s["cascade"])
    return "\n".join(lines)


def cascade_lines(c: dict) -> list[str]:
    """Console lines for the ``cascade`` block of a summary: escalation rate, each path."""
    rate = c.get("escalation_rate")
    lines = [f"cascade: {c['requests']:,} requests, {c['escalated']:,} escalated"
             + (f" ({fmt_pct(rate)} of the small model's answers)" if rate is not None else ""),
             f"{'path':<12}{'requests':>9}{'ok':>9}{'SLO met':>9}{'TTFT p50':>10}"
             f"{'lat p50':>9}{'lat p99':>9}{'$ / 1k':>9}"]
    for path, b in c["by_path"].items():
        if not b["requests"]:
            continue
        cp = b.get("cost_per_1k_requests_usd")
        lines.append(f"{path:<12}{b['requests']:>9,}{b['completed']:>9,}"
                     f"{fmt_pct(b.get('slo_attainment')):>9}"
                     f"{fmt_ms(b['ttft_ms']['p50']):>10}{fmt_ms(b['latency_ms']['p50']):>9}"
                     f"{fmt_ms(b['latency_ms']['p99']):>9}"
                     f"{'-' if cp is None else f'{cp:.3f}':>9}")
    return lines


def provisioned_lines(s: dict) -> list[str]:
    """What the run provisions and bills: sites and GPUs per tier.

    A regional study also says which continents it kept and what it left out
    (``world.keep_sites``).
    """
    tiers = s.get("by_tier") or {}
    if not tiers:
        return []
    lines = ["provisioned (billed whether used or not): " + ", ".join(
        f"{t} {b.get('sites', 0):,} site{'s' if b.get('sites', 0) != 1 else ''} / "
        f"{b.get('gpus', 0):,} GPUs" for t, b in tiers.items())]
    p = s.get("provisioned") or {}
    if p.get("continents"):
        dropped = p.get("dropped") or {}
        lines.append(f"  regional study: sites on {', '.join(p['continents'])} kept"
                     + (f", {sum(dropped.values()):,} elsewhere left out ("
                        + ", ".join(f"{t} {n:,}" for t, n in dropped.items()) + ")"
                        if dropped else "")
                     + "; world.keep_sites=all keeps every site")
    return lines


def fault_lines(f: dict) -> list[str]:
    """Console lines for the ``faults`` block of a summary."""
    ex = f.get("extra_ms_failed_over") or {}
    cost = f.get("extra_cost_usd") or {}
    lines = [
        f"faults: {f['site_outages']:,} site outage(s), {f['link_cuts']:,} link cut(s); "
        f"detection every {f['detection_s']:g} s, {f['retries']} retries",
        f"  failed {f['failed']:,}, failed over {f['failed_over']:,} "
        f"({f['failed_over_completed']:,} completed elsewhere, extra p50 {fmt_ms(ex.get('p50'))} /"
        f" p95 {fmt_ms(ex.get('p95'))} ms)",
        "  availability (GPU-time up): " + ", ".join(
            f"{t} {100 * a:.2f} %" for t, a in f.get("availability", {}).items()),
    ]
    for key, label in (("during_outage", "during outages"), ("outside_outage", "outside")):
        b = f.get(key) or {}
        lat = b.get("latency_ms") or {}
        lines.append(f"  {label + ':':<16}{b.get('requests', 0):>9,} requests, p95 "
                     f"{fmt_ms(lat.get('p95'))} ms, SLO met {fmt_pct(b.get('slo_attainment'))}")
    usd = {k: round(float(cost.get(k) or 0.0), 2) + 0.0 for k in  # + 0.0: no "-0.00"
           ("total", "idle_capacity", "spillover")}
    lines.append(f"  extra cost: ${usd['total']:,.2f} (idle failed capacity "
                 f"${usd['idle_capacity']:,.2f}, spill-over ${usd['spillover']:,.2f})"
                 + ("; spill-over " + ", ".join(f"{k} {v:,}" for k, v in f["spillover"].items())
                    if f.get("spillover") else ""))
    return lines


def rss_mb() -> float:
    """Resident memory of this process now, MB (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Seconds of wall time between progress lines when stderr is not a terminal (a log file, a
#: batch job): ``output.progress=true`` and the default (lines only for runs that last).
LOG_EVERY_S = {True: 10.0, None: 60.0}


def _progress_bar(horizon_s: float, enabled: bool | None):
    """Progress in simulated seconds, with requests per second (wall) and memory.

    A tqdm bar on a terminal; elsewhere (stderr redirected to a file) plain lines, one every
    :data:`LOG_EVERY_S` seconds of wall time, so a long run's log shows how far it is.
    ``output.progress=false`` shows nothing.
    """
    if enabled is False:
        return None, None
    import time

    t0 = time.perf_counter()
    if not sys.stderr.isatty():
        every = LOG_EVERY_S[True if enabled else None]
        last = [t0]

        def log(now: float, requests: int = 0) -> None:
            t = time.perf_counter()
            if t - last[0] < every:
                return
            last[0] = t
            wall = max(t - t0, 1e-9)
            print(f"simulating: {now:,.0f}/{horizon_s:,.0f} sim-s "
                  f"({100 * now / max(horizon_s, 1e-9):.1f} %), {requests:,} requests, "
                  f"{requests / wall:,.0f} req/s, {rss_mb():,.0f} MB, {wall:,.0f} s wall",
                  file=sys.stderr, flush=True)

        return None, log
    from tqdm import tqdm

    bar = tqdm(total=round(horizon_s), unit="sim-s", desc="simulating", leave=False,
               file=sys.stderr, mininterval=0.5)

    def update(now: float, requests: int = 0) -> None:
        bar.update(max(0, round(now) - bar.n))
        wall = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{requests:,} req, {requests / wall:,.0f} req/s, "
                            f"{rss_mb():,.0f} MB", refresh=False)

    return bar, update


def run_task(cfg: DictConfig) -> dict | None:
    """Run one composed config, write its folder, print the summary; the Hydra task body."""
    from aigrid_sim.api import run_config
    from aigrid_sim.results.rundir import is_complete, run_folder_name, unreadable_reason

    _watch_parent()
    sim = cfgmod.validate(cfg)
    root = Path(sim.output.dir)
    if sim.output.write and sim.output.resume:
        folder = root / run_folder_name(cfg)
        if is_complete(folder) and unreadable_reason(folder) is None:
            import json

            summary = json.loads((folder / "summary.json").read_text())
            print(summary_table(summary))
            print(f"\nrun folder (already complete, not re-run; output.resume=false to force): "
                  f"{folder}")
            return summary
    bar, update = _progress_bar(sim.duration_s + sim.drain_s, sim.output.progress)
    try:
        result = run_config(cfg, out_dir=root if sim.output.write else None, progress=update,
                            keep_requests=False)
    finally:
        if bar is not None:
            bar.close()
    print(summary_table(result.summary))
    if result.out_dir is not None:
        print(f"\nrun folder: {result.out_dir}")
    return result.summary


PARENT_ENV = "AIGRID_PARENT_PID"
_watching = False


def _watch_parent() -> None:
    """In a sweep's worker process, exit when the ``aigrid-sim`` process that started it dies.

    joblib's loky workers otherwise keep running the jobs already queued to them after the
    parent is killed. A daemon thread polls the parent's pid; when it is gone the run is
    interrupted (so its temporary folder is removed) and the worker exits.
    """
    global _watching
    parent = os.environ.get(PARENT_ENV)
    if _watching or not parent or not parent.isdigit() or int(parent) == os.getpid() \
            or not _joblib_job():
        return  # a single run, or a job of another launcher (maybe on another machine)
    _watching = True
    pid = int(parent)

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return os.getppid() != 1 or pid == 1

    def watch() -> None:
        while alive():
            time.sleep(0.5)
        import _thread

        _thread.interrupt_main()
        time.sleep(3.0)
        os._exit(3)

    threading.Thread(target=watch, name="aigrid-parent-watch", daemon=True).start()


def _joblib_job() -> bool:
    """Whether this process runs a job of the joblib launcher (loky workers on this machine)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return "joblib" in str(HydraConfig.get().launcher.get("_target_", "")).lower()
    except Exception:  # noqa: BLE001 (no Hydra context: not a sweep job)
        return False


def _split_plugins_flag(args: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--plugins a,b`` / ``--plugins=a,b`` out of the arguments (Hydra does not know it)."""
    rest, mods, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a == "--plugins":
            if i + 1 >= len(args):
                raise ConfigError("--plugins needs a module name (e.g. --plugins my_policies)")
            mods += args[i + 1].split(",")
            i += 2
            continue
        if a.startswith("--plugins="):
            mods += a.split("=", 1)[1].split(",")
        else:
            rest.append(a)
        i += 1
    return rest, [m.strip() for m in mods if m.strip()]


def _prevalidate(args: list[str]) -> None:
    """Compose and validate before Hydra starts, so a bad key is one clear line and exit 2.

    Sweeps (``policy=a,b``) are checked one value at a time. Plugins named on the command line
    (``plugins=[m]``, ``policy=m:Class``) are the user's opt-in to import them; the same names in
    a scenario file are not.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    flags_with_value = {"--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
                        "--experimental-rerun", "--info", "-i"}
    overrides, skip, config_dir = [], None, None
    for a in args:
        if skip is not None:
            if skip in ("--config-dir", "-cd"):
                config_dir = a
            skip = None
            continue
        if a in flags_with_value:
            skip = a
            continue
        if a.startswith("--config-dir="):
            config_dir = a.split("=", 1)[1]
            continue
        if a.startswith("-") or a.startswith("hydra") or a.startswith("+hydra") \
                or a.startswith("~hydra"):
            continue
        overrides.append(a)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    scenario = "global_agent"
    base, sweeps = [], []
    for o in parsed:
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else \
            [o.get_value_element_as_str()]
        bare = key.lstrip("+~")
        raw = [re.sub(r"\\(.)", r"\1", v) for v in values]  # Hydra escapes ':' and ','
        if bare == "plugins":  # typed by the user: the opt-in to import these modules
            for v in raw:
                allow_plugins([m for m in v.strip("[]").split(",") if m.strip()], export=True)
        elif bare == "policy":
            for v in raw:
                if ":" in v:
                    allow_plugins([v.partition(":")[0]], export=True)
        if key == "scenario":
            scenario = values[0]
            for v in values[1:]:
                sweeps.append((key, v))
            continue
        base.append(f"{key}={values[0]}")
        sweeps += [(key, v) for v in values[1:]]
    cd = config_dir
    _check(cfgmod.compose(scenario, base, config_dir=cd))
    for key, v in sweeps:
        if key == "scenario":
            _check(cfgmod.compose(v, base, config_dir=cd))
        else:
            _check(cfgmod.compose(
                scenario, [b for b in base if not b.startswith(f"{key}=")] + [f"{key}={v}"],
                config_dir=cd))


def _check(dcfg: DictConfig) -> None:
    """Validate one composed config and run the assembly-time checks (nothing is built)."""
    from aigrid_sim.api import preflight

    sim = cfgmod.validate(dcfg)
    preflight(sim, out_dir=sim.output.dir if sim.output.write else None,
              keep_requests=False)  # the command streams its runs (run_task)


def main() -> None:
    """Console entry point of ``aigrid-sim``."""
    import hydra

    try:
        args, mods = _split_plugins_flag(sys.argv[1:])
        allow_plugins(mods, export=True)
        # A user's scenario folder: --config-dir (Hydra's own flag) or $AIGRID_SCENARIOS.
        env_dir = os.environ.get("AIGRID_SCENARIOS")
        if env_dir and not any(a in ("--config-dir", "-cd") or a.startswith("--config-dir=")
                               for a in args):
            args = ["--config-dir", env_dir, *args]
        sys.argv[1:] = args
        cfgmod.check_config_tree(cfgmod.scenarios_dir())
        for i, a in enumerate(args):  # a user's own config dir is checked the same way
            if a in ("--config-dir", "-cd") and i + 1 < len(args):
                cfgmod.check_config_tree(Path(args[i + 1]))
            elif a.startswith("--config-dir="):
                cfgmod.check_config_tree(Path(a.split("=", 1)[1]))
        if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info", "-i",
                         "--shell-completion", "-sc") for a in args):
            _prevalidate(args)
    except ConfigError as e:
        print(f"aigrid-sim: error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    os.environ[PARENT_ENV] = str(os.getpid())  # sweep workers exit when this process dies

    @hydra.main(config_path=cfgmod.SCENARIOS_SEARCH_PATH, config_name="config",
                 version_base=None)
    def _task(cfg: DictConfig) -> None:
        try:
            run_task(cfg)
        except ConfigError as e:
            print(f"aigrid-sim: error: {e}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)

    _task()


if __name__ == "__main__":
    main()
