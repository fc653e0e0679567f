"""GPU types and AI models: memory, price and speed, loaded from ``data/catalog.yaml``.

The engine never reads the catalogue per request: :meth:`Catalog.deployment` turns a (model, GPU)
pair into a :class:`Deployment` with its step-time model and memory budget precomputed.

Speed model of one replica (:mod:`aigrid_sim.serving.steptime`; figures and sources in
``data/catalog.yaml``): one engine iteration takes
``overhead + weights read + dense compute (and tensor-parallel all-reduce) of its tokens + KV
read of its context``, each term
a physical quantity (bytes / bandwidth, FLOPs / tensor throughput) divided by an efficiency
fitted to published measurements (``scripts/calibrate_serving.py``). The KV cache holds
``(usable memory x GPUs - weights) / KV bytes per token`` tokens in whole blocks; the batch is
limited by that memory and by ``max_num_seqs``, a step's tokens by ``max_num_batched_tokens``.
:meth:`Deployment.saturation_out_tok_s` is the saturated steady state of that scheduler.

``max_batch`` (sequences of ``kv_context_tokens`` that fit, capped by ``max_num_seqs``) is the
sequence-place count the engine's utilisation and per-request cost are shared over; it plays no
part in the speed. The fixed-slot speed fields of earlier versions (``tpot_s``,
``prefill_s_per_token``, ``service_s``, ``legacy_saturation_out_tok_s``) are gone: use
:meth:`Deployment.saturation_out_tok_s`, :meth:`Deployment.loaded_tpot_s` and ``step``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.steptime import SteadyState, StepTime, loaded_step_s, steady_state

KIB = 1024.0
GB = 1e9
BLOCK_TOKENS = 16  # KV block size, as vLLM's default
# Admission rules of a replica's scheduler (Deployment.admission; the catalogue's `admission`).
ADMISSIONS = ("forecast", "vllm")


@dataclass(frozen=True)
class GPU:
    """A GPU type.

    Attributes:
        name: Catalogue name.
        memory_gb: Memory per GPU, GB.
        price_per_hour: On-demand price per GPU-hour, USD.
        memory_bandwidth_gbs: Memory bandwidth, GB/s (datasheet).
        tflops: Dense tensor TFLOPS by weight format (``{"fp8": ..., "fp4": ...}``, datasheet).
        efficiency: Fitted efficiencies shared by every model on this GPU
            (``bandwidth``, ``compute``, ``attention``, ``interconnect``).
        interconnect_gbs: GPU-to-GPU bandwidth per direction, GB/s (tensor parallelism).
    """

    name: str
    memory_gb: float
    price_per_hour: float
    memory_bandwidth_gbs: float = 0.0
    interconnect_gbs: float = 0.0
    tflops: dict = field(default_factory=dict, hash=False, compare=False)
    efficiency: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Model:
    """An AI model as served: size and the capability level it provides.

    Attributes:
        name: Catalogue name.
        params_b: Parameters, billions.
        quantisation: Weight format (``fp8``, ...).
        capability: Capability level it provides (1 edge-class ... 3 frontier).
        memory_gb: Weight memory, GB.
        kv_kb_per_token: KV-cache memory per token of context, KiB.
        hidden_size: Model width (activations all-reduced under tensor parallelism).
        layers: Transformer layers.
    """

    name: str
    params_b: float
    quantisation: str
    capability: int
    memory_gb: float
    kv_kb_per_token: float = 0.0
    hidden_size: int = 0
    layers: int = 0


@dataclass(frozen=True)
class Deployment:
    """A model on a GPU type: one replica's shape and speed.

    Attributes:
        model: The model.
        gpu: The GPU type.
        gpus_per_replica: GPUs one replica spans (tensor parallelism).
        max_batch: Sequence places for accounting: sequences of ``kv_context_tokens`` that
            fit, capped by ``max_num_seqs`` (utilisation and cost are shared over them; the
            speed does not depend on it). Fixed-work deployments: their slots.
        fixed: True when service time comes from the app (non-generative work), not tokens.
        calibration: Published ``(isl, osl, out_tok_s)`` saturation points the constants were
            fitted to.
        validation: Published points held out of the fit.
        step: Step-time model of one engine iteration.
        kv_capacity_tokens: KV tokens that fit in usable memory after the weights (whole blocks).
        block_tokens: KV block size, tokens.
        max_num_seqs: Sequence cap.
        max_num_batched_tokens: Per-step token budget (chunked prefill).
        kv_context_tokens: Longest context a request is declared to need (legacy sizing).
        admission: The scheduler's admission rule (:data:`ADMISSIONS`): ``forecast`` admits a
            request only if the KV held stays within memory at every future step, given each
            request's output length (``max_tokens``, as benchmarks set it): it never runs out
            of memory; ``vllm`` admits on the memory free now, less the running sequences'
            growth until the next completion, and preempts (recompute) when memory runs out.
    """

    model: Model
    gpu: GPU
    gpus_per_replica: int
    max_batch: int
    fixed: bool
    calibration: tuple[tuple[float, float, float], ...] = ()
    validation: tuple[tuple[float, float, float], ...] = ()
    step: StepTime = StepTime(0.0, 0.0, 0.0, 0.0)
    kv_capacity_tokens: int = 0
    block_tokens: int = BLOCK_TOKENS
    max_num_seqs: int = 1
    max_num_batched_tokens: int = 8192
    kv_context_tokens: int = 0
    admission: str = "forecast"

    @property
    def price_per_slot_second(self) -> float:
        """Dollars per second of one sequence place (a replica's price over ``max_batch``)."""
        return self.gpu.price_per_hour * self.gpus_per_replica / self.max_batch / 3600.0

    @property
    def price_per_second(self) -> float:
        """Dollars per second of one replica."""
        return self.gpu.price_per_hour * self.gpus_per_replica / 3600.0

    def steady_state(self, isl: float, osl: float, kv_accounting: str = "fluid") -> SteadyState:
        """The saturated steady state of this replica at fixed ``isl``/``osl`` (see steptime)."""
        return steady_state(self.step, isl, osl, max_num_seqs=self.max_num_seqs,
                            kv_capacity_tokens=self.kv_capacity_tokens,
                            max_num_batched_tokens=self.max_num_batched_tokens,
                            block_tokens=self.block_tokens, kv_accounting=kv_accounting)

    def saturation_out_tok_s(self, isl: float, osl: float) -> float:
        """Output tokens per second of a saturated replica serving ``isl``/``osl`` requests.

        The steady state of the engine's scheduler and step model
        (:func:`aigrid_sim.serving.steptime.steady_state`).
        """
        if self.fixed:
            raise ValueError(f"{self.model.name} on {self.gpu.name} has no token speed (fixed)")
        return self.steady_state(isl, osl).out_tok_s

    def ttft_alone_s(self, isl: float) -> float:
        """Time to first token of a lone request (chunked prefill, empty replica), s."""
        t, done = 0.0, 0.0
        while done < isl or done == 0.0:
            chunk = min(self.max_num_batched_tokens, isl - done) if isl > 0 else 1.0
            done += chunk
            t += self.step.step_s(chunk, done)
            if isl <= 0:
                break
        return t

    def itl_alone_s(self, isl: float, osl: float) -> float:
        """Mean inter-token latency of a lone request (decode steps at mean context), s."""
        return self.step.step_s(1.0, isl + 0.5 * osl)

    def loaded_tpot_s(self, isl: float, osl: float, rate_per_s: float) -> float:
        """Mean time per output token of this replica fed ``rate_per_s`` requests/s, s."""
        return loaded_step_s(self.step, isl, osl, rate_per_s,
                             max_num_batched_tokens=self.max_num_batched_tokens,
                             block_tokens=self.block_tokens)


def max_batch_arg(max_batch: int | None, where: str) -> int | None:
    """Check a ``max_batch`` override (None = the catalogue's)."""
    if max_batch is None:
        return None
    if int(max_batch) < 1:
        raise ConfigError(f"key '{where}.max_batch': must be >= 1 (got {max_batch})")
    return int(max_batch)


def _positive(entry: str, key: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0), else a ConfigError naming ``entry.key``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{entry}.{key}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        want = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{entry}.{key}: expected a finite number {want}, got {value!r}")
    return v


def _count(entry: str, key: str, value: Any) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{entry}.{key}: expected an integer >= 1, got {value!r}") from None
    if v < 1 or v != float(value):
        raise ConfigError(f"{entry}.{key}: expected an integer >= 1, got {value!r}")
    return v


EFFICIENCY_KEYS: tuple[str, ...] = ("bandwidth", "compute", "attention")


def step_time(model: Model, gpu: GPU, n: int, eff: dict[str, float],
              overhead_s: float) -> StepTime:
    """The physical step-time model of ``model`` on ``n`` x ``gpu`` with given efficiencies.

    Args:
        model: The model (weight bytes, parameters, KV bytes per token).
        gpu: The GPU type (bandwidth, dense TFLOPS for the model's weight format).
        n: GPUs per replica (tensor parallelism: weights, FLOPs and KV split ``n`` ways).
        eff: ``bandwidth`` (weight reads), ``compute`` (dense FLOPs), ``attention`` (KV reads),
            ``interconnect`` (all-reduce, only with ``n > 1``).
        overhead_s: Fixed time per step.
    """
    bw = gpu.memory_bandwidth_gbs * GB
    flops = float(gpu.tflops[model.quantisation]) * 1e12
    token_s = 2.0 * model.params_b * 1e9 / n / (flops * eff["compute"])
    if n > 1:
        # Two all-reduces per layer of the token's activations (16-bit), ring: 2 (n-1)/n of
        # the data crosses each GPU's link.
        token_s += (2 * model.layers * model.hidden_size * 2.0 * 2.0 * (n - 1) / n
                    / (gpu.interconnect_gbs * GB * eff["interconnect"]))
    return StepTime(
        weights_s=model.memory_gb * GB / n / (bw * eff["bandwidth"]),
        token_s=token_s,
        ctx_s=model.kv_kb_per_token * KIB / n / (bw * eff["attention"]),
        overhead_s=overhead_s,
    )


class Catalog:
    """GPU types and models, with checks that a deployment is possible."""

    def __init__(self, raw: dict[str, Any], source: str = "catalog.yaml"):
        self.source = source
        self._raw = raw
        try:
            self.usable_memory_fraction = float(raw.get("usable_memory_fraction", 1.0))
            self.admission = raw.get("admission", "forecast")
            # A run's world.admission: every deployment's, whatever its entry says.
            self.admission_override: str | None = None
            self.gpus = {}
            for n, g in raw["gpus"].items():
                self.gpus[n] = GPU(
                    n, float(g["memory_gb"]), float(g["price_per_hour"]),
                    float(g.get("memory_bandwidth_gbs", 0.0)),
                    float(g.get("interconnect_gbs", 0.0)),
                    {k[:-len("_tflops")]: v for k, v in g.items() if k.endswith("_tflops")},
                    dict(g.get("efficiency") or {}))
            self.models = {
                n: Model(n, float(m["params_b"]), str(m["quantisation"]), int(m["capability"]),
                         float(m["memory_gb"]), float(m.get("kv_kb_per_token", 0.0)),
                         int(m.get("hidden_size", 0)), int(m.get("layers", 0)))
                for n, m in raw["models"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{source}: malformed catalogue entry ({e!r})") from e
        for n, g in self.gpus.items():  # a negative or NaN price would bill silently wrong
            if not (math.isfinite(g.price_per_hour) and g.price_per_hour >= 0):
                raise ConfigError(f"{source}: gpus.{n}.price_per_hour must be a finite number "
                                  f">= 0 (got {g.price_per_hour})")
            if not (math.isfinite(g.memory_gb) and g.memory_gb > 0):
                raise ConfigError(f"{source}: gpus.{n}.memory_gb must be a finite number > 0 "
                                  f"(got {g.memory_gb})")
        if not 0 < self.usable_memory_fraction <= 1:
            raise ConfigError(f"{source}: usable_memory_fraction must be in (0, 1], got "
                              f"{self.usable_memory_fraction}")

    @classmethod
    @functools.cache
    def default(cls) -> Catalog:
        """The catalogue shipped with the package."""
        text = resources.files("aigrid_sim").joinpath("data/catalog.yaml").read_text()
        return cls(yaml.safe_load(text), "aigrid_sim/data/catalog.yaml")

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        """A user's catalogue (same layout as ``aigrid_sim/data/catalog.yaml``).

        Raises:
            ConfigError: missing file, not YAML, or malformed entries (naming the file).
        """
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"key 'world.catalog': no such file: {p}")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict) or "gpus" not in raw or "models" not in raw:
            raise ConfigError(f"{p}: a catalogue needs top-level 'gpus' and 'models' mappings")
        return cls(raw, str(p))

    def pairs(self) -> list[tuple[str, str]]:
        """Every (model, gpu) pair with speed figures, in catalogue order."""
        return [(m, g) for m, spec in self._raw["models"].items()
                for g in (spec.get("speeds") or {})]

    def lengths(self, point: dict) -> tuple[float, float]:
        """``(isl, osl)`` of a published point: its own, or its ``dataset``'s."""
        if "dataset" in point:
            ds = (self._raw.get("datasets") or {}).get(point["dataset"])
            if not isinstance(ds, dict):
                raise ConfigError(f"{self.source}: unknown dataset {point['dataset']!r}")
            return float(ds["isl"]), float(ds["osl"])
        return float(point["isl"]), float(point["osl"])

    def _points(self, sp: dict, key: str) -> tuple[tuple[float, float, float], ...]:
        return tuple((*self.lengths(p), float(p["out_tok_s"])) for p in sp.get(key) or ())

    def speed_entry(self, model: str, gpu: str) -> dict:
        """The raw ``models.<model>.speeds.<gpu>`` mapping (for calibration and reports)."""
        return self._raw["models"][model]["speeds"][gpu]

    def efficiencies(self, model: str, gpu: str) -> dict[str, float]:
        """Efficiencies of a pair: the GPU's, overridden key by key by the speed entry's."""
        eff = dict(self._raw["gpus"][gpu].get("efficiency") or {})
        eff.update(self.speed_entry(model, gpu).get("efficiency") or {})
        return eff

    def deployment(self, model: str, gpu: str, where: str = "site",
                   max_batch: int | None = None, engine: dict | None = None) -> Deployment:
        """The replica shape and speed of ``model`` on ``gpu``.

        ``max_batch`` overrides the catalogue's ``max_num_seqs`` (the sequence cap); ``engine``
        overrides ``max_num_seqs``, ``max_num_batched_tokens`` and ``usable_memory_fraction``
        (a published measurement's own engine settings, see :mod:`.calibration`).

        Raises:
            ConfigError: unknown model or GPU, no speed figures for the pair, missing or
                non-finite / non-positive constants, weights that do not fit the replica's
                usable memory, or a KV budget that cannot hold one request of
                ``kv_context_tokens``.
        """
        override = max_batch_arg(max_batch, where)
        if model not in self.models:
            raise ConfigError(f"{where}: unknown model {model!r}; known: {sorted(self.models)}")
        if gpu not in self.gpus:
            raise ConfigError(f"{where}: unknown gpu {gpu!r}; known: {sorted(self.gpus)}")
        speeds = self._raw["models"][model].get("speeds") or {}
        if gpu not in speeds:
            raise ConfigError(
                f"{where}: model {model!r} has no speed figures on gpu {gpu!r}; "
                f"it runs on: {sorted(speeds)}"
            )
        sp = speeds[gpu]
        m, g = self.models[model], self.gpus[gpu]
        entry = f"{self.source}: models.{model}.speeds.{gpu}"
        if not isinstance(sp, dict):
            raise ConfigError(f"{entry}: expected a mapping, got {sp!r}")
        n = _count(entry, "gpus_per_replica", sp.get("gpus_per_replica"))
        if sp.get("fixed", False):
            slots = override or _count(entry, "max_batch", sp.get("max_batch", 1))
            if m.memory_gb > n * g.memory_gb:
                raise ConfigError(
                    f"{where}: model {model!r} needs {m.memory_gb:g} GB but a replica of {n} x "
                    f"{gpu} has {n * g.memory_gb:g} GB")
            return Deployment(m, g, n, slots, True, max_num_seqs=slots)
        if "max_num_seqs" not in sp:
            raise ConfigError(f"{entry}: missing max_num_seqs (the sequence cap)")
        engine = engine or {}
        max_seqs = override or _count(entry, "max_num_seqs",
                                      engine.get("max_num_seqs", sp["max_num_seqs"]))
        budget = _count(entry, "max_num_batched_tokens",
                        engine.get("max_num_batched_tokens",
                                   sp.get("max_num_batched_tokens", 8192)))
        fraction = float(engine.get("usable_memory_fraction", self.usable_memory_fraction))
        admission = engine.get("admission") or self.admission_override or \
            sp.get("admission", self.admission)
        if admission not in ADMISSIONS:
            raise ConfigError(f"{entry}: admission must be one of {list(ADMISSIONS)}, got "
                              f"{admission!r}")
        ctx = _count(entry, "kv_context_tokens", sp.get("kv_context_tokens", 2048))
        gentry = f"{self.source}: gpus.{gpu}"
        _positive(gentry, "memory_gb", g.memory_gb)
        _positive(gentry, "memory_bandwidth_gbs", g.memory_bandwidth_gbs)
        if m.quantisation not in g.tflops:
            raise ConfigError(f"{gentry}: no {m.quantisation}_tflops (needed by {model!r})")
        _positive(gentry, f"{m.quantisation}_tflops", g.tflops[m.quantisation])
        mentry = f"{self.source}: models.{model}"
        _positive(mentry, "memory_gb", m.memory_gb)
        _positive(mentry, "params_b", m.params_b)
        _positive(mentry, "kv_kb_per_token", m.kv_kb_per_token)
        eff = self.efficiencies(model, gpu)
        keys = EFFICIENCY_KEYS + (("interconnect",) if n > 1 else ())
        if n > 1:
            _positive(gentry, "interconnect_gbs", g.interconnect_gbs)
            _count(mentry, "hidden_size", m.hidden_size or None)
            _count(mentry, "layers", m.layers or None)
        for k in keys:
            if k not in eff:
                raise ConfigError(f"{gentry}.efficiency: missing {k!r} (and no override in "
                                  f"models.{model}.speeds.{gpu}.efficiency)")
            own = k in (sp.get("efficiency") or {})
            eff[k] = _positive(f"{entry if own else gentry}.efficiency", k, eff[k])
        overhead = _positive(entry, "step_overhead_ms", sp.get("step_overhead_ms", 0.0),
                             allow_zero=True) / 1000.0
        # Memory: weights, then the KV cache in whole blocks.
        usable = n * g.memory_gb * fraction
        if m.memory_gb >= usable:
            raise ConfigError(
                f"{entry}: model {model!r} does not fit a replica of {n} x {gpu}: its weights "
                f"need {m.memory_gb:g} GB but the replica has {usable:.1f} GB usable "
                f"({fraction:g} x {n * g.memory_gb:g} GB); use more GPUs "
                f"per replica or another GPU")
        kv_bytes = m.kv_kb_per_token * KIB
        blocks = int((usable - m.memory_gb) * GB // (kv_bytes * BLOCK_TOKENS))
        kv_cap = blocks * BLOCK_TOKENS
        need = -(-ctx // BLOCK_TOKENS) * BLOCK_TOKENS
        if kv_cap < need:
            raise ConfigError(
                f"{entry}: the KV budget of a replica of {n} x {gpu} is {kv_cap} tokens "
                f"({usable - m.memory_gb:.2f} GB after {m.memory_gb:g} GB of weights), too small "
                f"for one request of kv_context_tokens={ctx}; use more GPUs per replica, "
                f"another GPU or a shorter kv_context_tokens")
        step = step_time(m, g, n, eff, overhead)
        # Sequence places for accounting (utilisation, cost per request): requests of
        # kv_context_tokens that fit, capped by the sequence cap.
        slots = max(1, min(max_seqs, kv_cap // need))
        return Deployment(m, g, n, slots, False, self._points(sp, "published"),
                          self._points(sp, "validation"), step, kv_cap, BLOCK_TOKENS, max_seqs,
                          budget, ctx, admission)
