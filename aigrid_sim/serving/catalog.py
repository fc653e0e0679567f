"""GPU types and AI models: memory, price and speed, loaded from ``data/catalog.yaml``.

The engine never reads the catalogue per request: :meth:`Catalog.deployment` turns a (model, GPU)
pair into a :class:`Deployment` with precomputed tables (time per output token at every batch
size), so the per-request path is a couple of list look-ups.

Speed model of one replica (the figures and their sources are in ``data/catalog.yaml``):

- prefill runs at ``prefill_tok_s`` input tokens per second and holds the whole replica;
- a decode step of ``b`` sequences takes ``tpot_s[b]``, linear in ``b`` between the batch-1 figure
  and ``max_batch / decode_tok_s_at_max_batch``;
- hence at saturation with ``I`` input and ``O`` output tokens per request a replica emits
  ``O / (I / prefill_tok_s + O / decode_tok_s_at_max_batch)`` output tokens per second
  (:meth:`Deployment.saturation_out_tok_s`). Where the catalogue gives published saturation
  throughputs (``calibration``), the two rates are the least-squares fit of this formula to them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aigrid_sim.errors import ConfigError

KIB = 1024.0
GB = 1e9


@dataclass(frozen=True)
class GPU:
    """A GPU type."""

    name: str
    memory_gb: float
    price_per_hour: float


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
    """

    name: str
    params_b: float
    quantisation: str
    capability: int
    memory_gb: float
    kv_kb_per_token: float = 0.0


@dataclass(frozen=True)
class Deployment:
    """A model on a GPU type: one replica's shape and speed.

    Attributes:
        model: The model.
        gpu: The GPU type.
        gpus_per_replica: GPUs one replica spans (tensor parallelism).
        max_batch: Concurrent sequences per replica (its slots).
        fixed: True when service time comes from the app (non-generative work), not tokens.
        prefill_s_per_token: Prefill time per input token, seconds (the whole replica's time).
        tpot_s: Time per output token by batch size; ``tpot_s[b]`` for ``1 <= b <= max_batch``.
        prefill_tok_s: Prefill rate, input tokens per second (0 for fixed deployments).
        decode_tok_s_at_max_batch: Decode rate of a full batch, output tokens per second.
        calibration: Published ``(isl, osl, out_tok_s)`` points the rates were fitted to.
        validation: Published points not fitted (reported against the model in tests and docs).
    """

    model: Model
    gpu: GPU
    gpus_per_replica: int
    max_batch: int
    fixed: bool
    prefill_s_per_token: float
    tpot_s: tuple[float, ...]
    prefill_tok_s: float = 0.0
    decode_tok_s_at_max_batch: float = 0.0
    calibration: tuple[tuple[float, float, float], ...] = ()
    validation: tuple[tuple[float, float, float], ...] = ()

    @property
    def price_per_slot_second(self) -> float:
        """Dollars per second of one batch slot (a replica's price shared by its slots)."""
        return self.gpu.price_per_hour * self.gpus_per_replica / self.max_batch / 3600.0

    def service_s(self, in_tokens: float, out_tokens: float, batch: int = 1,
                  others_in_per_out: float = 0.0) -> float:
        """Service time of a generative request admitted into a batch of ``batch`` sequences.

        Args:
            in_tokens: Input (prompt) tokens.
            out_tokens: Output tokens.
            batch: Sequences in the replica's batch, this one included.
            others_in_per_out: Sum over the other sequences of input/output tokens: each of them
                is replaced, on average once per its output length, by a request whose prefill
                stalls this one's decode (see :mod:`aigrid_sim.serving.batching`).
        """
        b = min(max(int(batch), 1), self.max_batch)
        return in_tokens * self.prefill_s_per_token + out_tokens * (
            self.tpot_s[b] + self.prefill_s_per_token * others_in_per_out)

    def decode_tok_s(self, batch: int) -> float:
        """Output tokens per second of one replica decoding ``batch`` sequences (no prefill)."""
        return batch / self.tpot_s[batch]

    def saturation_out_tok_s(self, isl: float, osl: float) -> float:
        """Output tokens per second of a saturated replica serving ``isl``/``osl`` requests."""
        return osl / (isl * self.prefill_s_per_token + osl * self.tpot_s[self.max_batch]
                      / self.max_batch)

    def kv_cache_gb(self, context_tokens: float) -> float:
        """KV-cache memory of a full batch of ``context_tokens``-token sequences, GB."""
        return self.max_batch * context_tokens * self.model.kv_kb_per_token * KIB / GB


def fit_rates(points: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Prefill and full-batch decode rates that best explain published saturation throughputs.

    Fits ``osl / out_tok_s = isl / prefill + osl / decode`` (linear in the reciprocals) by least
    squares on relative error.

    Args:
        points: ``(isl, osl, out_tok_s)`` triples, at least two with different ``isl/osl``.

    Returns:
        ``(prefill_tok_s, decode_tok_s)``.

    Raises:
        ValueError: fewer than two independent points, or a fit that is not positive.
    """
    a = np.array([[p[0], p[1]] for p in points], dtype=float)
    y = np.array([p[1] / p[2] for p in points], dtype=float)
    if len(points) < 2 or np.linalg.matrix_rank(a) < 2:
        raise ValueError("need at least two calibration points with different isl/osl ratios")
    w = 1.0 / y
    (x_pre, x_dec), *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    if x_pre <= 0 or x_dec <= 0:
        raise ValueError(f"calibration gives non-positive rates (1/prefill={x_pre:.3g}, "
                         f"1/decode={x_dec:.3g}); check the points")
    return 1.0 / float(x_pre), 1.0 / float(x_dec)


def _points(sp: dict, key: str) -> tuple[tuple[float, float, float], ...]:
    return tuple((float(p["isl"]), float(p["osl"]), float(p["out_tok_s"]))
                 for p in sp.get(key) or ())


def max_batch_arg(max_batch: int | None, where: str) -> int | None:
    """Check a ``max_batch`` override (None = the catalogue's)."""
    if max_batch is None:
        return None
    if int(max_batch) < 1:
        raise ConfigError(f"key '{where}.max_batch': must be >= 1 (got {max_batch})")
    return int(max_batch)


class Catalog:
    """GPU types and models, with checks that a deployment is possible."""

    def __init__(self, raw: dict[str, Any], source: str = "catalog.yaml"):
        self.source = source
        self._raw = raw
        try:
            self.usable_memory_fraction = float(raw.get("usable_memory_fraction", 1.0))
            self.gpus = {
                n: GPU(n, float(g["memory_gb"]), float(g["price_per_hour"]))
                for n, g in raw["gpus"].items()
            }
            self.models = {
                n: Model(n, float(m["params_b"]), str(m["quantisation"]), int(m["capability"]),
                         float(m["memory_gb"]), float(m.get("kv_kb_per_token", 0.0)))
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

    def deployment(self, model: str, gpu: str, where: str = "site",
                   max_batch: int | None = None) -> Deployment:
        """The replica shape and speed of ``model`` on ``gpu``.

        ``max_batch`` overrides the catalogue's concurrent sequences per replica: the memory
        check then uses it, and the per-token time stays on the catalogue's line (extended or cut).

        Raises:
            ConfigError: unknown model or GPU, no speed figures for the pair, figures that
                contradict each other, or a model (weights + KV cache of a full batch) that does
                not fit in the replica's usable GPU memory.
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
        try:
            n = int(sp["gpus_per_replica"])
            max_batch = int(sp["max_batch"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{entry}: needs integer gpus_per_replica and max_batch ({e!r})") \
                from None
        if n < 1 or max_batch < 1:
            raise ConfigError(f"{entry}: gpus_per_replica and max_batch must be >= 1")
        line_batch = max_batch  # the batch the catalogue's decode figure is for
        if override is not None:
            max_batch = override
        if sp.get("fixed", False):
            if m.memory_gb > n * g.memory_gb:
                raise ConfigError(
                    f"{where}: model {model!r} needs {m.memory_gb:g} GB but a replica of {n} x "
                    f"{gpu} has {n * g.memory_gb:g} GB")
            return Deployment(m, g, n, max_batch, True, 0.0, (0.0,) * (max_batch + 1))
        ctx = float(sp.get("kv_context_tokens", 0))
        kv_gb = max_batch * ctx * m.kv_kb_per_token * KIB / GB
        usable = n * g.memory_gb * self.usable_memory_fraction
        if m.memory_gb + kv_gb > usable:
            raise ConfigError(
                f"{where}: model {model!r} does not fit a replica of {n} x {gpu}: it needs "
                f"{m.memory_gb:g} GB of weights + {kv_gb:.1f} GB of KV cache ({max_batch} "
                f"sequences x {ctx:g} tokens) = {m.memory_gb + kv_gb:.1f} GB, but the replica "
                f"has {usable:.1f} GB usable ({self.usable_memory_fraction:g} x "
                f"{n * g.memory_gb:g} GB); use more GPUs per replica, a smaller max_batch or "
                f"another GPU")
        calib, valid = _points(sp, "calibration"), _points(sp, "validation")
        try:
            if "prefill_tok_s" in sp or "decode_tok_s_at_max_batch" in sp:
                pre_tok_s = float(sp["prefill_tok_s"])
                dec_tok_s = float(sp["decode_tok_s_at_max_batch"])
            else:
                pre_tok_s, dec_tok_s = fit_rates(list(calib))
            t1 = float(sp["tpot_ms_batch1"]) / 1000.0
        except KeyError as e:
            raise ConfigError(f"{entry}: missing {e}; give tpot_ms_batch1 and either "
                              f"calibration points or prefill_tok_s and "
                              f"decode_tok_s_at_max_batch") from None
        except ValueError as e:
            raise ConfigError(f"{entry}: {e}") from None
        if pre_tok_s <= 0 or dec_tok_s <= 0 or t1 <= 0:
            raise ConfigError(f"{entry}: speeds must be > 0")
        tmax = line_batch / dec_tok_s
        if tmax < t1:
            # A saturated batch cannot decode each sequence faster than a lone one.
            raise ConfigError(
                f"{entry}: decode_tok_s_at_max_batch {dec_tok_s:.0f} implies "
                f"{tmax * 1000:.2f} ms per token at batch {line_batch}, below the batch-1 "
                f"{t1 * 1000:.2f} ms; raise max_batch above {dec_tok_s * t1:.0f} or fix the "
                f"figures")
        # Per-token decode time grows linearly with batch, anchored at batch 1 and at the
        # catalogue's max_batch (a max_batch override moves along the same line).
        slope = (tmax - t1) / max(line_batch - 1, 1)
        tpot = (0.0,) + tuple(t1 + slope * (b - 1) for b in range(1, max_batch + 1))
        return Deployment(m, g, n, max_batch, False, 1.0 / pre_tok_s, tpot, pre_tok_s, dec_tok_s,
                          calib, valid)
