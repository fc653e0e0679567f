"""Capacity planning: the cheapest number of GPUs per site that meets latency and rejection targets.

``aigrid-sim-plan [scenario=NAME] [key=value ...] --slo 0.99 --max-reject 0.001`` sizes every site
of a scenario (best on a region, e.g. ``world.cities.countries=[DE,FR]``), in four steps:

1. **Pilot** (simulation): every site gets ample GPUs (utilisation below 30 %, no wait beyond
   the step in progress), so the routing policy sends each request where it would go
   unconstrained. This gives each site's routed requests (arrival at the site, tokens, fixed
   work, time spent outside the site) and each request's *slack*: its SLO minus its latency
   without queueing. It also gives the best SLO attainment any number of GPUs can buy (the
   network floor): an app whose pilot attainment is below the target is held to its pilot
   attainment minus 0.5 percentage points instead, and the result says so.
2. **Site estimate**, per site, the fewest model replicas ``R`` that keep the predicted share of
   requests missing their SLO because of capacity within half the SLO error budget
   (``queue_share`` x (1 - target)) and the rejections within half the rejection budget:

   - *generative sites*: the pilot's arrivals at the site are replayed through ``R`` replicas of
     the engine's own replica model (:func:`replay_site`: the
     :class:`~aigrid_sim.serving.replica.ReplicaPool` the engine runs, with KV-bounded
     admission, chunked prefill, the calibrated step time and preemption, without the world
     around it); a request that met its SLO in the pilot and misses it in the replay counts.
     The search starts at the fewest replicas that are stable: the site's generative rate over
     one replica's saturation, :meth:`Deployment.saturation_out_tok_s` at the site's mean token
     mix (the closed form of the same scheduler);
   - *fixed-work sites*: an M/M/c queue (Erlang C, :mod:`aigrid_sim.studies.theory`) with
     ``R x max_batch`` slots, the predicted share ``mean_i C(c, a) exp(-(c - a) slack_i / E[S])``
     and the chance of a full queue ``C (a/c)^K``.

   The replay leaves out what is not the site's: a load-aware policy moving requests elsewhere
   when the site is busy, and prefix-cache hits; step 3 simulates both.
3. **Grow** (simulation): simulate the plan on the same request stream (same seeds: common random
   numbers). Each SLO miss or rejection is blamed on a site: the site the pilot chose for that
   request if the policy moved it elsewhere (overflow), else the site that served it (the pilot,
   with ample GPUs, served the same request in time, so the miss comes from contention: queueing,
   fuller batches, prefill waits); misses the pilot also had (network floor) blame no site. Every
   site whose blamed share exceeds the queueing budget (or, if none does, the most blamed site)
   gets ``max(1, R/4)`` more replicas. Repeat until the targets hold.
4. **Trim** (simulation): sites in order of replica price (dearest first) give up replicas (a
   quarter, then an eighth, ..., then one) as long as the targets still hold on every seed.

**Stopping rule**: the search stops when the targets hold and a full trim pass removes nothing
(no single replica can be taken from any site without breaking a target: a local cost minimum),
or when ``max_sims`` simulations have run (the cheapest plan found that meets the targets is
returned; if none did, the last one, flagged ``met = False``), or when the targets are missed
but no miss is blamed on any site (GPUs cannot help; flagged).

A site keeps at least one replica (the world has no empty sites). GPUs come in whole replicas.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from aigrid_sim import config as cfgmod
from aigrid_sim.errors import ConfigError
from aigrid_sim.studies.theory import erlang_c

HOURS_PER_MONTH = 730.0
FLOOR_MARGIN = 0.005  # apps the network floor keeps below target: held to pilot - 0.5 pp


@dataclass
class Targets:
    """What a plan must achieve on every verification seed.

    Attributes:
        slo_attainment: Every app's SLO attainment (share of its requests meeting its SLO;
            rejected, failed and unfinished ones count as misses) must be at least this.
        max_reject: Rejected requests / all requests must be at most this.
        queue_share: Share of the SLO error budget the analytic step leaves to queueing (the rest
            is for the network floor and the model's error).
    """

    slo_attainment: float = 0.99
    max_reject: float = 0.001
    queue_share: float = 0.5

    def check(self) -> None:
        """Raise :class:`ConfigError` on targets outside (0, 1)."""
        if not 0 < self.slo_attainment < 1:
            raise ConfigError(f"plan: slo target must be in (0, 1), got {self.slo_attainment}")
        if not 0 <= self.max_reject < 1:
            raise ConfigError(f"plan: max reject must be in [0, 1), got {self.max_reject}")
        if not 0 < self.queue_share <= 1:
            raise ConfigError(f"plan: queue share must be in (0, 1], got {self.queue_share}")


@dataclass
class SiteLoad:
    """A site's routed load in the pilot (all seeds pooled), for the site estimate."""

    lam: float  # requests per second
    gen_share: float  # share of generative requests
    in_mean: float  # mean input tokens of generative requests
    out_mean: float  # mean output tokens of generative requests
    work_mean_s: float  # mean fixed work of non-generative requests
    slack_s: np.ndarray  # per measured request: SLO minus latency without queueing (s)
    traces: list = field(default_factory=list)  # SiteTrace per seed (replicated sites)
    span_s: float = 0.0  # time a trace covers (utilisation)

@dataclass
class Evaluation:
    """One plan simulated on every verification seed."""

    site_gpus: dict[str, int]
    met: bool
    app_attainment: dict[str, float]  # worst over seeds
    reject_rate: float  # worst over seeds
    blame: dict[str, float]  # per site: blamed misses / requests the pilot sent there
    summaries: list[dict]
    sites: pd.DataFrame  # sites table of the first seed


@dataclass
class PlanResult:
    """What :func:`plan` found.

    Attributes:
        table: One row per site: site, tier, gpu, model, gpus, replicas, slots, analytic_gpus,
            routed_rps, expected_utilisation (site estimate), sim_utilisation, cost_per_month_usd.
        tiers: GPUs, sites and cost per month by tier.
        achieved: Metrics of the plan (worst over seeds for attainment and rejections).
        baseline: The same metrics for the scenario as configured (tier defaults), for comparison.
        targets: The targets, with per-app targets after the network-floor check.
        met: Whether the plan meets the targets.
        stopping: Why the search stopped.
        history: One row per simulation: phase, GPUs, cost per month, met.
        site_gpus: The plan as ``{site_id: gpus}`` (``world.site_gpus``).
        sims: Simulations run (pilot included).
        wall_s: Wall time of the whole search.
    """

    table: pd.DataFrame
    tiers: pd.DataFrame
    achieved: dict
    baseline: dict
    targets: dict
    met: bool
    stopping: str
    history: pd.DataFrame
    site_gpus: dict[str, int]
    sims: int
    wall_s: float

    def override(self) -> str:
        """The ``aigrid-sim`` override that runs this plan."""
        return "world.site_gpus={" + ",".join(f"{k}:{v}" for k, v in self.site_gpus.items()) + "}"

    def write(self, out: str | Path) -> list[Path]:
        """Write ``plan.csv``, ``plan.parquet``, ``tiers.csv``, ``history.csv``, ``plan.json``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "plan.csv", index=False)
        self.table.to_parquet(out / "plan.parquet", index=False)
        self.tiers.to_csv(out / "tiers.csv", index=False)
        self.history.to_csv(out / "history.csv", index=False)
        doc = {"met": self.met, "stopping": self.stopping, "targets": self.targets,
               "achieved": self.achieved, "baseline": self.baseline, "sims": self.sims,
               "wall_s": self.wall_s, "site_gpus": self.site_gpus, "override": self.override()}
        (out / "plan.json").write_text(json.dumps(doc, indent=2, default=_json_default))
        return [out / n for n in ("plan.csv", "plan.parquet", "tiers.csv", "history.csv",
                                  "plan.json")]


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


# ----------------------------------------------------------------------------- site estimate


@dataclass
class SiteTrace:
    """The requests the pilot sent to one site, in order of arrival at the site (one seed).

    Enough to replay them through the site's replicas alone (:func:`replay_site`): the engine's
    :class:`~aigrid_sim.serving.replica.ReplicaPool`, with the network and routing held as the
    pilot had them.

    Attributes:
        t: Arrival at the site, s (sorted).
        in_tokens, out_tokens: Tokens per request (lists, as the pool reads them).
        fixed: Per request: fixed work (a non-generative app), not tokens.
        work_s: Fixed work per request, s (0 for generative ones).
        outside_s: Network and fail-over time outside the site, s.
        slo_s: SLO per request, s.
        on_ttft: Per request: the SLO is on time to first token.
        counted: Per request: arrived after the warm-up and met its SLO in the pilot (a miss of
            such a request at fewer replicas is due to capacity; the others are the network
            floor's or outside the measurement).
        measured: Requests arrived after the warm-up.
        max_tokens: Per request, its app's declared max_tokens (or its output, if longer), when
            an app declares one: what a ``forecast`` replica plans with; None otherwise.
    """

    t: np.ndarray
    in_tokens: list
    out_tokens: list
    fixed: np.ndarray
    work_s: list
    outside_s: np.ndarray
    slo_s: np.ndarray
    on_ttft: np.ndarray
    counted: np.ndarray
    measured: int
    max_tokens: list | None = None


@dataclass
class Replay:
    """What :func:`replay_site` found: counted requests missing their SLO, rejections, load."""

    misses: int
    rejected: int
    requests: int
    busy_s: float  # sequence-seconds held by requests in the replay


def replay_site(dep, replicas: int, max_queue: int, tr: SiteTrace) -> Replay:
    """Replay a site's pilot arrivals through ``replicas`` replicas of the engine's replica model.

    The same :class:`~aigrid_sim.serving.replica.ReplicaPool` the engine runs (KV-bounded
    admission, chunked prefill, step times of :mod:`aigrid_sim.serving.steptime`, preemption,
    fixed-work jobs holding a sequence place), fed the site's arrivals as the pilot routed them,
    with a minimal event loop instead of the world. It leaves out what the site does not decide:
    a load-aware policy sending requests elsewhere when the site is busy, and prefix-cache hits
    (the replay has none, so it errs on the slow side).
    """
    from aigrid_sim.serving.batching import StandalonePool
    from aigrid_sim.serving.replica import Admit

    n = len(tr.t)
    run = StandalonePool(dep, n, replicas, max_queue, tr.in_tokens, tr.out_tokens,
                         work=tr.work_s, is_fixed=tr.fixed if tr.fixed.any() else None,
                         max_tokens=tr.max_tokens)
    rec = run.rec
    refused = np.zeros(n, dtype=bool)

    def arrived(i, code):
        if code > Admit.QUEUED:
            refused[i] = True

    run.run(tr.t.tolist(), arrived)
    wait = rec.t_start - tr.t
    fixed_done = np.where(tr.fixed, np.asarray(tr.work_s, float), rec.service_s)
    site_s = wait + np.where(tr.on_ttft & ~tr.fixed, rec.prefill_s, fixed_done)
    miss = ~(tr.outside_s + site_s <= tr.slo_s)  # NaN (never served) is a miss
    busy = float(np.nansum(np.where(tr.fixed, np.asarray(tr.work_s, float), rec.service_s)))
    return Replay(int((miss & tr.counted).sum()), int(refused.sum()), n, busy)


def saturation_rps(dep, load: SiteLoad) -> float:
    """Generative requests/s one replica serves saturated at the site's mean token mix.

    :meth:`Deployment.saturation_out_tok_s` (the closed form of the engine's scheduler) divided
    by the mean output tokens.
    """
    osl = max(load.out_mean, 1.0)
    return dep.saturation_out_tok_s(max(load.in_mean, 0.0), osl) / osl


def predicted_queue_misses(load: SiteLoad, slots: int, mean_s: float) -> float:
    """Share of a fixed-work site's requests whose M/M/c wait exceeds their slack (Erlang C).

    ``P(W > t) = C(c, a) exp(-(c - a) t / E[S])``; requests with no slack miss anyway and are the
    network floor's, not counted here.
    """
    a = load.lam * mean_s
    if a >= slots:
        return 1.0
    if len(load.slack_s) == 0 or a == 0:
        return 0.0
    c_wait = erlang_c(slots, a)
    s = load.slack_s[load.slack_s > 0]
    return float(c_wait * np.exp(-(slots - a) * s / mean_s).sum() / len(load.slack_s))


def site_estimate(load: SiteLoad, dep, replicas: int, max_queue: int
                  ) -> tuple[float, float, float]:
    """Predicted ``(capacity misses, rejections, utilisation)`` of a site at ``replicas``.

    Generative sites: the pilot's arrivals replayed through the engine's replicas
    (:func:`replay_site`, every seed pooled): misses are requests that met their SLO in the pilot
    and miss it here, as shares of the measured requests; rejections of all requests;
    utilisation as the engine reports it (busy sequence-seconds over ``replicas x max_batch``
    over the time). Fixed-work sites: Erlang C on ``replicas x max_batch`` slots.
    """
    if dep.fixed or not load.traces:
        slots = replicas * dep.max_batch
        a = load.lam * load.work_mean_s
        if a >= slots:
            return 1.0, 1.0, float("nan")
        miss = predicted_queue_misses(load, slots, load.work_mean_s)
        full = erlang_c(slots, a) * (a / slots) ** max_queue if max_queue < 10**7 else 0.0
        return miss, full, a / slots
    miss = rej = n = measured = 0
    busy = 0.0
    span = 0.0
    for tr in load.traces:
        r = replay_site(dep, replicas, max_queue, tr)
        miss += r.misses
        rej += r.rejected
        n += r.requests
        measured += tr.measured
        busy += r.busy_s
        span += load.span_s
    util = busy / (replicas * dep.max_batch * span) if span > 0 else 0.0
    return miss / max(measured, 1), rej / max(n, 1), util


def size_site(load: SiteLoad, dep, max_queue: int, targets: Targets,
              max_replicas: int = 100_000) -> tuple[int, float]:
    """Fewest replicas meeting the queueing and rejection budgets; and the utilisation then.

    Starts from the fewest replicas that are stable (fixed work below the slots; generative load
    below :func:`saturation_rps`, the closed-form saturation at the site's token mix), then
    doubles and bisects on replicas with :func:`site_estimate` (misses fall as replicas are
    added: smaller batches, shorter steps, fewer waits).

    Returns:
        ``(replicas, utilisation)``.
    """
    if load.lam <= 0:
        return 1, 0.0
    eps_q = (1.0 - targets.slo_attainment) * targets.queue_share
    eps_r = targets.max_reject / 2.0
    memo: dict[int, tuple[float, float, float]] = {}

    def est(r: int) -> tuple[float, float, float]:
        if r not in memo:
            memo[r] = site_estimate(load, dep, r, max_queue)
        return memo[r]

    def ok(r: int) -> bool:
        miss, rej, _ = est(r)
        return miss <= eps_q and rej <= eps_r

    if dep.fixed or not load.traces:
        lo = max(1, math.floor(load.lam * load.work_mean_s / dep.max_batch))
    else:
        lo = max(1, math.floor(load.lam * load.gen_share / saturation_rps(dep, load)))
    if ok(lo):
        hi, lo = lo, 0
    else:
        hi = lo * 2
        while not ok(hi):
            if hi >= max_replicas:
                raise ConfigError(f"plan: a site needs more than {max_replicas} replicas")
            lo, hi = hi, min(hi * 2, max_replicas)
    while hi - lo > 1:  # invariant: ok(hi), not ok(lo) (or lo == 0)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, est(hi)[2]


# ----------------------------------------------------------------------------- the search


def strict_attainment(reqs: pd.DataFrame, warmup_s: float = 0.0) -> dict[str, float]:
    """Per app: requests (arriving after ``warmup_s``) that met their SLO / all of them.

    Stricter than the run summary, which leaves requests still in flight at the end out: for a
    plan an unfinished request is a miss, or an overloaded site whose queue only grows (nothing
    rejected, nothing finished late) would pass any target.
    """
    m = reqs[reqs["arrival_s"] >= warmup_s]
    g = m.groupby("app", observed=True)["slo_met"]
    return {str(k): float(v) for k, v in g.mean().items()}



class _Planner:
    """State of one planning search (configs, pilot, budget, history)."""

    def __init__(self, dcfg: DictConfig, targets: Targets, seeds: list[int], max_sims: int,
                 log: Callable[[str], None]):
        from aigrid_sim.world.build import build_world

        self.dcfg = dcfg
        self.cfg = cfgmod.validate(dcfg)
        self.targets = targets
        self.seeds = seeds
        self.max_sims = max_sims
        self.log = log
        self.world = build_world(self.cfg)
        w = self.world
        self.ids = list(w.site_id)
        self.deps = list(w.site_deployment)
        self.gpr = [d.gpus_per_replica for d in self.deps]
        self.replica_price = np.array([d.gpus_per_replica * d.gpu.price_per_hour
                                       for d in self.deps])
        self.base_replicas = [w.replicas(s) for s in range(w.n_sites)]
        self.sims = 0
        self.history: list[dict] = []
        self.pilot_site: dict[int, np.ndarray] = {}
        self.pilot_miss: dict[int, np.ndarray] = {}
        self.app_target: dict[str, float] = {}
        self._index = {sid: i for i, sid in enumerate(self.ids)}
        # A wait that is not queueing: an arrival at a replica with room waits for the end of
        # the step in progress (at most one step full of prefill); fixed-work slots, none.
        self.wait_ms = [1e-6 if d.fixed else 1000.0 * d.step.step_s(
            d.max_num_batched_tokens, d.max_num_batched_tokens + d.kv_capacity_tokens)
            for d in self.deps]

    # -- running
    def _config(self, replicas: list[int], seed: int) -> DictConfig:
        c = OmegaConf.create(OmegaConf.to_container(self.dcfg, resolve=False))
        OmegaConf.set_struct(c, False)
        c.seed = seed
        c.world.site_gpus = {sid: int(r * g)
                             for sid, r, g in zip(self.ids, replicas, self.gpr, strict=True)}
        c.output.write = False
        c.output.figures = False
        c.output.progress = False
        return c

    def simulate(self, replicas: list[int], seed: int):
        from aigrid_sim.api import run_config

        self.sims += 1
        return run_config(self._config(replicas, seed))

    def gpus(self, replicas: list[int]) -> dict[str, int]:
        return {sid: int(r * g) for sid, r, g in zip(self.ids, replicas, self.gpr, strict=True)}

    def monthly_cost(self, replicas: list[int]) -> float:
        return float((np.asarray(replicas) * self.replica_price).sum() * HOURS_PER_MONTH)

    # -- pilot
    def pilot(self) -> dict[int, SiteLoad]:
        """Ample capacity: find routed loads, slack, and the network floor of each app."""
        reps = [max(8 * r, 1) for r in self.base_replicas]
        for attempt in range(5):
            runs = [self.simulate(reps, seed) for seed in self.seeds]
            hot = set()
            for r in runs:
                st = r.sites
                busy = (st["utilisation"] > 0.3).to_numpy()
                q = r.requests.groupby("site", observed=True)["queue_ms"].max()
                for s, sid in enumerate(self.ids):
                    if busy[s] or q.get(sid, 0.0) > self.wait_ms[s]:
                        hot.add(s)
            self.history.append({"phase": "pilot", "sims": self.sims,
                                 "gpus": sum(self.gpus(reps).values()),
                                 "cost_per_month_usd": self.monthly_cost(reps), "met": None})
            if not hot:
                break
            self.log(f"pilot {attempt + 1}: {len(hot)} sites still queue; giving them 4x more")
            for s in hot:
                reps[s] *= 4
        self.pilot_runs = runs
        loads: dict[int, list] = {s: [] for s in range(len(self.ids))}
        traces: dict[int, list] = {s: [] for s in range(len(self.ids))}
        apps = self.cfg.workload.apps
        app_gen = {a.name: a.service.kind == "tokens" for a in apps}
        floor: dict[str, float] = {}
        for seed, r in zip(self.seeds, runs, strict=True):
            q = r.requests
            idx = {sid: i for i, sid in enumerate(self.ids)}
            self.pilot_site[seed] = q["site"].map(idx).fillna(-1).to_numpy(int)
            self.pilot_miss[seed] = ~q["slo_met"].to_numpy(bool)
            for app, att in strict_attainment(q, self.cfg.warmup_s).items():
                floor[app] = min(floor.get(app, 1.0), att)
            m = q[q["arrival_s"] >= self.cfg.warmup_s]
            ttft = m["app"].map({a.name: a.slo_on == "ttft" for a in apps}).to_numpy(bool)
            metric = np.where(ttft, m["ttft_ms"], m["latency_ms"]) - m["queue_ms"].to_numpy()
            slack = (m["slo_ms"].to_numpy() - metric) / 1000.0
            for s, sid in enumerate(self.ids):
                sel = (m["site"] == sid).to_numpy()
                loads[s].append((m[sel], slack[sel]))
            for s, tr in self._traces(q, apps, app_gen).items():
                traces[s].append(tr)
        window = (self.cfg.duration_s - self.cfg.warmup_s) * len(self.seeds)
        out = {}
        for s, parts in loads.items():
            d = pd.concat([p[0] for p in parts])
            sl = np.concatenate([p[1] for p in parts])
            sl = sl[~np.isnan(sl)]
            gen = d["app"].map(app_gen).to_numpy(bool) if len(d) else np.zeros(0, bool)
            out[s] = SiteLoad(
                lam=len(d) / window if window > 0 else 0.0,
                gen_share=float(gen.mean()) if len(d) else 0.0,
                in_mean=float(d["in_tokens"][gen].mean()) if gen.any() else 0.0,
                out_mean=float(d["out_tokens"][gen].mean()) if gen.any() else 0.0,
                work_mean_s=float(d["service_ms"][~gen].mean() / 1000.0) if (~gen).any()
                else 0.0,
                slack_s=sl,
                traces=traces[s] if not self.deps[s].fixed and gen.any() else [],
                span_s=self.cfg.duration_s)
        t = self.targets.slo_attainment
        for a in apps:
            f = floor.get(a.name, 1.0)
            self.app_target[a.name] = t if f >= t else max(0.0, f - FLOOR_MARGIN)
        return out

    def _traces(self, q: pd.DataFrame, apps, app_gen: dict) -> dict[int, SiteTrace]:
        """Per replicated site: the pilot's requests there, as :class:`SiteTrace` (one seed)."""
        served = q[q["status"] == "ok"]
        on = {a.name: a.slo_on == "ttft" for a in apps}
        declared = {a.name: int(getattr(a, "max_tokens", None) or 0) for a in apps}
        out = {}
        for sid, d in served.groupby("site", observed=True, sort=False):
            s = self._index.get(sid)
            if s is None or self.deps[s].fixed:
                continue
            outside = (d["network_ms"].to_numpy() + d["extra_ms"].to_numpy()) / 1000.0
            t = d["arrival_s"].to_numpy() + d["extra_ms"].to_numpy() / 1000.0 \
                + d["network_ms"].to_numpy() / 2000.0
            o = np.argsort(t, kind="stable")
            gen = d["app"].map(app_gen).to_numpy(bool)[o]
            met = d["slo_met"].to_numpy(bool)[o]
            measured = (d["arrival_s"].to_numpy() >= self.cfg.warmup_s)[o]
            out_tok = d["out_tokens"].to_numpy(np.int64)[o]
            mt = None
            if any(declared.values()):
                mt = np.maximum(d["app"].map(declared).to_numpy(np.int64)[o], out_tok).tolist()
            out[s] = SiteTrace(
                t=t[o], in_tokens=d["in_tokens"].to_numpy(np.int64)[o].tolist(),
                out_tokens=out_tok.tolist(), max_tokens=mt,
                fixed=~gen, work_s=np.where(gen, 0.0, d["service_ms"].to_numpy()[o] / 1000.0)
                .tolist(),
                outside_s=outside[o], slo_s=d["slo_ms"].to_numpy()[o] / 1000.0,
                on_ttft=d["app"].map(on).to_numpy(bool)[o], counted=measured & met,
                measured=int(measured.sum()))
        return out

    # -- evaluating a plan
    def evaluate(self, replicas: list[int], phase: str) -> Evaluation:
        atts: dict[str, float] = {}
        rej = 0.0
        blamed = np.zeros(len(self.ids))
        pilot_count = np.zeros(len(self.ids))
        summaries, sites = [], None
        for seed in self.seeds:
            r = self.simulate(replicas, seed)
            s = r.summary
            summaries.append(s)
            sites = r.sites if sites is None else sites
            for app, v in strict_attainment(r.requests, self.cfg.warmup_s).items():
                atts[app] = min(atts.get(app, 1.0), v)
            rej = max(rej, s["rejected"] / s["requests"] if s["requests"] else 0.0)
            q = r.requests
            measured = (q["arrival_s"] >= self.cfg.warmup_s).to_numpy()
            idx = {sid: i for i, sid in enumerate(self.ids)}
            site = q["site"].map(idx).fillna(-1).to_numpy(int)
            ps = self.pilot_site[seed]
            miss = measured & ~q["slo_met"].to_numpy(bool)  # unfinished requests included
            moved = (site != ps) & (ps >= 0)
            # Same requests as the pilot (common random numbers), which had ample GPUs: a miss it
            # did not have comes from contention (queueing, fuller batches, prefill waits,
            # rejection), so it is blamed on the site that was short of capacity.
            new_miss = miss & ~self.pilot_miss[seed]
            for i in np.flatnonzero(new_miss & moved):
                blamed[ps[i]] += 1
            here = new_miss & ~moved & (site >= 0)
            np.add.at(blamed, site[here], 1)
            pilot_count += np.bincount(ps[measured & (ps >= 0)], minlength=len(self.ids))
        met = rej <= self.targets.max_reject and all(
            atts.get(a, 1.0) >= t for a, t in self.app_target.items())
        blame = {sid: float(blamed[i] / max(pilot_count[i], 1.0))
                 for i, sid in enumerate(self.ids)}
        self.history.append({"phase": phase, "sims": self.sims,
                             "gpus": sum(self.gpus(replicas).values()),
                             "cost_per_month_usd": self.monthly_cost(replicas), "met": met})
        return Evaluation(self.gpus(replicas), met, atts, rej, blame, summaries, sites)


def _achieved(ev: Evaluation, cost_month: float, gpus: int) -> dict:
    s0 = ev.summaries
    return {
        "met": ev.met,
        "gpus": gpus,
        "cost_per_month_usd": cost_month,
        "slo_attainment_by_app": ev.app_attainment,
        "reject_rate": ev.reject_rate,
        "slo_attainment": min(s["slo_attainment"] or 0.0 for s in s0),
        "latency_p95_ms": max((s["latency_ms"]["p95"] or 0.0) for s in s0),
        "ttft_p95_ms": max((s["ttft_ms"]["p95"] or 0.0) for s in s0),
        "cost_per_1k_requests_usd": float(np.mean([s["cost_per_1k_requests_usd"] or np.nan
                                                   for s in s0])),
        "utilisation": float(np.mean([s["utilisation"] for s in s0])),
    }


def plan(scenario: str = "global_agent", overrides: list[str] | tuple[str, ...] = (), *,
         targets: Targets | None = None, seeds: list[int] | None = None, max_sims: int = 60,
         log: Callable[[str], None] | None = None) -> PlanResult:
    """Find the cheapest GPUs per site meeting ``targets`` (see the module docstring).

    Args:
        scenario: Scenario name.
        overrides: Hydra-style overrides (use them to cut the world to a region).
        targets: The targets (default: every app 99 % within SLO, at most 0.1 % rejected).
        seeds: Verification seeds (default: the config's seed). The plan must meet the targets on
            every one; more seeds make it more robust and the search slower.
        max_sims: Simulation budget (pilot included).
        log: Called with one line per step (e.g. ``print``); None = silent.

    Raises:
        ConfigError: bad scenario, overrides or targets.
    """
    t0 = time.perf_counter()
    targets = targets or Targets()
    targets.check()
    if max_sims < 4:
        raise ConfigError(f"plan: max_sims must be >= 4, got {max_sims}")
    log = log or (lambda _msg: None)
    dcfg = cfgmod.compose(scenario, list(overrides))
    cfg = cfgmod.validate(dcfg)
    seeds = list(seeds) if seeds else [cfg.seed]
    P = _Planner(dcfg, targets, seeds, max_sims, log)
    S = len(P.ids)
    log(f"planning {S} sites, {len(seeds)} seed(s), budget {max_sims} simulations")

    loads = P.pilot()
    floor_apps = {a: t for a, t in P.app_target.items() if t < targets.slo_attainment}
    if floor_apps:
        log("network floor: with ample GPUs these apps stay below target; held to "
            + ", ".join(f"{a} >= {100 * t:.2f} %" for a, t in floor_apps.items()))
    analytic, util = [], []
    for s in range(S):
        r, u = size_site(loads[s], P.deps[s], int(P.world.site_max_queue[s]), targets)
        analytic.append(r)
        util.append(u)
    reps = list(analytic)
    log(f"site estimate: {sum(P.gpus(reps).values())} GPUs, "
        f"${P.monthly_cost(reps):,.0f}/month")

    best: tuple[list[int], Evaluation] | None = None
    last = None
    stopping = ""
    # Grow until the targets hold.
    while P.sims + len(seeds) <= max_sims:
        ev = P.evaluate(reps, "grow" if last is not None else "analytic")
        last = (list(reps), ev)
        if ev.met:
            best = last
            break
        budget = (1.0 - targets.slo_attainment) * targets.queue_share
        grow = [s for s in range(S) if ev.blame[P.ids[s]] > budget]
        if not grow:
            worst = max(range(S), key=lambda s: ev.blame[P.ids[s]])
            if ev.blame[P.ids[worst]] <= 0:
                stopping = ("targets missed but no miss is due to a site's capacity (network "
                            "floor or routing): more GPUs cannot help")
                break
            grow = [worst]
        for s in grow:
            reps[s] += max(1, reps[s] // 4)
        log(f"grow: +replicas at {len(grow)} sites -> {sum(P.gpus(reps).values())} GPUs")
    # Trim while the targets still hold; a pass that removed something is followed by another
    # full pass, so "nothing removable" is checked on the final plan itself.
    if best is not None:
        clean_pass = False
        while P.sims + len(seeds) <= max_sims:
            changed = False
            order = sorted((s for s in range(S) if best[0][s] > 1),
                           key=lambda s: (-P.replica_price[s], s))
            for s in order:
                step = max(1, best[0][s] // 4)
                while P.sims + len(seeds) <= max_sims:
                    trial = list(best[0])
                    trial[s] = max(1, trial[s] - step)
                    ev = P.evaluate(trial, "trim")
                    if ev.met:
                        best, changed = (trial, ev), True
                        if trial[s] == 1:
                            break
                        step = max(1, min(step, trial[s] // 4))
                    elif step > 1:
                        step //= 2
                    else:
                        break
                if P.sims + len(seeds) > max_sims:
                    break
            else:
                if not changed:
                    clean_pass = True
                    break
                continue
            break
        if not stopping:
            stopping = ("targets met and no single replica can be removed from any site without "
                        "breaking one (local cost minimum)" if clean_pass else
                        "simulation budget (max_sims) used up while trimming: the plan meets the "
                        "targets but may not be the cheapest")
    elif not stopping:
        stopping = "simulation budget (max_sims) used up before the targets were met"
    final_reps, final_ev = best if best is not None else last
    log(stopping)

    base_ev = P.evaluate(P.base_replicas, "baseline (scenario as configured)")
    gpus = P.gpus(final_reps)
    st = final_ev.sites.set_index("site")
    rows = []
    for s, sid in enumerate(P.ids):
        d = P.deps[s]
        rows.append({
            "site": sid, "tier": st.loc[sid, "tier"], "gpu": d.gpu.name, "model": d.model.name,
            "gpus": gpus[sid], "replicas": final_reps[s], "slots": final_reps[s] * d.max_batch,
            "analytic_gpus": analytic[s] * d.gpus_per_replica,
            "routed_rps": float(st.loc[sid, "requests"]) / P.cfg.duration_s,
            # NaN when the model has no steady state at this size (load beyond saturation).
            "expected_utilisation": site_estimate(loads[s], d, final_reps[s],
                                                  int(P.world.site_max_queue[s]))[2],
            "sim_utilisation": float(st.loc[sid, "utilisation"]),
            "cost_per_month_usd": gpus[sid] * d.gpu.price_per_hour * HOURS_PER_MONTH,
        })
    table = pd.DataFrame(rows)
    tiers = table.groupby("tier", sort=False).agg(
        sites=("site", "size"), gpus=("gpus", "sum"), analytic_gpus=("analytic_gpus", "sum"),
        cost_per_month_usd=("cost_per_month_usd", "sum")).reset_index()
    achieved = _achieved(final_ev, P.monthly_cost(final_reps), sum(gpus.values()))
    baseline = _achieved(base_ev, P.monthly_cost(P.base_replicas),
                         sum(P.gpus(P.base_replicas).values()))
    return PlanResult(
        table=table, tiers=tiers, achieved=achieved, baseline=baseline,
        targets={**asdict(targets), "by_app": P.app_target, "seeds": seeds},
        met=final_ev.met, stopping=stopping, history=pd.DataFrame(P.history),
        site_gpus=gpus, sims=P.sims, wall_s=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- console


def format_plan(res: PlanResult) -> str:
    """The plan and what it achieves, for the console."""
    t = res.table
    lines = [f"{'site':<30}{'tier':<9}{'gpu':<6}{'GPUs':>6}{'est.':>8}{'req/s':>8}"
             f"{'util exp':>9}{'util sim':>9}{'$ / month':>12}"]
    for r in t.itertuples(index=False):
        lines.append(f"{r.site[:29]:<30}{r.tier:<9}{r.gpu:<6}{r.gpus:>6}{r.analytic_gpus:>8}"
                     + (f"{r.routed_rps:>8.1f}{100 * r.expected_utilisation:>8.1f}%"
                        if r.expected_utilisation == r.expected_utilisation
                        else f"{r.routed_rps:>8.1f}{'unstable':>9}") +
                     f"{100 * r.sim_utilisation:>8.1f}%{r.cost_per_month_usd:>12,.0f}")
    lines.append("")
    for r in res.tiers.itertuples(index=False):
        lines.append(f"{r.tier:<9} {r.sites:>4} sites {r.gpus:>6} GPUs (site estimate "
                     f"{r.analytic_gpus})  ${r.cost_per_month_usd:,.0f}/month")
    a, b = res.achieved, res.baseline

    def apps(d):
        return ", ".join(f"{k} {100 * v:.2f} %" for k, v in d["slo_attainment_by_app"].items())

    lines += [
        "",
        f"{'':<10}{'GPUs':>7}{'$ / month':>13}{'rejected':>10}{'p95 ms':>9}{'$ / 1k req':>11}"
        "  SLO attainment by app (worst seed)",
        f"{'plan':<10}{a['gpus']:>7}{a['cost_per_month_usd']:>13,.0f}"
        f"{100 * a['reject_rate']:>9.3f}%{a['latency_p95_ms']:>9,.0f}"
        f"{a['cost_per_1k_requests_usd']:>11.3f}  {apps(a)}",
        f"{'as config':<10}{b['gpus']:>7}{b['cost_per_month_usd']:>13,.0f}"
        f"{100 * b['reject_rate']:>9.3f}%{b['latency_p95_ms']:>9,.0f}"
        f"{b['cost_per_1k_requests_usd']:>11.3f}  {apps(b)}",
        "",
        "targets: SLO attainment >= " + ", ".join(
            f"{k} {100 * v:.2f} %" for k, v in res.targets["by_app"].items())
        + f"; rejected <= {100 * res.targets['max_reject']:.2f} %; seeds {res.targets['seeds']}",
        f"met: {'yes' if res.met else 'NO'}; stopped because: {res.stopping}",
        f"{res.sims} simulations, {res.wall_s:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``aigrid-sim-plan``."""
    ap = argparse.ArgumentParser(
        prog="aigrid-sim-plan",
        description="Find the cheapest GPUs per site meeting SLO and rejection targets "
                    "(per-site estimate, then verified and adjusted by simulation).")
    ap.add_argument("overrides", nargs="*",
                    help="scenario=NAME and Hydra-style key=value overrides (e.g. a region: "
                         "world.cities.countries=[DE,FR] world.edge.countries=[DE,FR])")
    ap.add_argument("--slo", type=float, default=0.99,
                    help="every app's SLO attainment must reach this (default 0.99)")
    ap.add_argument("--max-reject", type=float, default=0.001,
                    help="at most this share of requests rejected (default 0.001)")
    ap.add_argument("--seeds", type=int, nargs="+", help="verification seeds (default: seed)")
    ap.add_argument("--max-sims", type=int, default=60, help="simulation budget (default 60)")
    ap.add_argument("--out", default="results/plan", help="where to write the plan")
    args = ap.parse_args(argv)
    scenario = "global_agent"
    rest = []
    for o in args.overrides:
        if o.startswith("scenario="):
            scenario = o.split("=", 1)[1]
        else:
            rest.append(o)
    try:
        res = plan(scenario, rest, targets=Targets(args.slo, args.max_reject),
                   seeds=args.seeds, max_sims=args.max_sims,
                   log=lambda m: print(f"  {m}", file=sys.stderr))
    except ConfigError as e:
        print(f"aigrid-sim-plan: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_plan(res))
    files = res.write(args.out)
    print(f"\nplan written to {Path(args.out)}/ ({', '.join(f.name for f in files)})")
    print(f"run it: aigrid-sim scenario={scenario} {' '.join(rest)} '{res.override()}'")


if __name__ == "__main__":
    main()
