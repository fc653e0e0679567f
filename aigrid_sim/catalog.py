"""GPU types and AI models: memory, price and speed, loaded from ``data/catalog.yaml``.

The engine never reads the catalogue per request: :meth:`Catalog.deployment` turns a (model, GPU)
pair into a :class:`Deployment` with precomputed tables (time per output token at every batch
size), so the per-request path is a couple of list look-ups.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from aigrid_sim.errors import ConfigError


@dataclass(frozen=True)
class GPU:
    """A GPU type."""

    name: str
    memory_gb: float
    price_per_hour: float


@dataclass(frozen=True)
class Model:
    """An AI model as served: size and the capability level it provides."""

    name: str
    params_b: float
    quantisation: str
    capability: int
    memory_gb: float


@dataclass(frozen=True)
class Deployment:
    """A model on a GPU type: one replica's shape and speed.

    Attributes:
        model: The model.
        gpu: The GPU type.
        gpus_per_replica: GPUs one replica spans (tensor parallelism).
        max_batch: Concurrent sequences per replica (its slots).
        fixed: True when service time comes from the app (non-generative work), not tokens.
        prefill_s_per_token: Prefill time per input token, seconds.
        tpot_s: Time per output token by batch size; ``tpot_s[b]`` for ``1 <= b <= max_batch``.
    """

    model: Model
    gpu: GPU
    gpus_per_replica: int
    max_batch: int
    fixed: bool
    prefill_s_per_token: float
    tpot_s: tuple[float, ...]

    @property
    def price_per_slot_second(self) -> float:
        """Dollars per second of one batch slot (a replica's price shared by its slots)."""
        return self.gpu.price_per_hour * self.gpus_per_replica / self.max_batch / 3600.0

    def service_s(self, in_tokens: float, out_tokens: float, batch: int = 1) -> float:
        """Service time of a generative request admitted when the replica holds ``batch`` sequences."""
        b = min(max(int(batch), 1), self.max_batch)
        return in_tokens * self.prefill_s_per_token + out_tokens * self.tpot_s[b]

    def decode_tok_s(self, batch: int) -> float:
        """Output tokens per second of one replica decoding ``batch`` sequences."""
        return batch / self.tpot_s[batch]


class Catalog:
    """GPU types and models, with checks that a deployment is possible."""

    def __init__(self, raw: dict[str, Any], source: str = "catalog.yaml"):
        self.source = source
        self._raw = raw
        try:
            self.gpus = {
                n: GPU(n, float(g["memory_gb"]), float(g["price_per_hour"]))
                for n, g in raw["gpus"].items()
            }
            self.models = {
                n: Model(n, float(m["params_b"]), str(m["quantisation"]), int(m["capability"]),
                         float(m["memory_gb"]))
                for n, m in raw["models"].items()
            }
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{source}: malformed catalogue entry ({e!r})") from e

    @classmethod
    @functools.cache
    def default(cls) -> Catalog:
        """The catalogue shipped with the package."""
        text = resources.files("aigrid_sim").joinpath("data/catalog.yaml").read_text()
        return cls(yaml.safe_load(text), "aigrid_sim/data/catalog.yaml")

    def deployment(self, model: str, gpu: str, where: str = "site") -> Deployment:
        """The replica shape and speed of ``model`` on ``gpu``.

        Raises:
            ConfigError: unknown model or GPU, no speed figures for the pair, or the model does
                not fit in the replica's GPU memory.
        """
        if model not in self.models:
            raise ConfigError(f"{where}: unknown model {model!r}; known: {sorted(self.models)}")
        if gpu not in self.gpus:
            raise ConfigError(f"{where}: unknown gpu {gpu!r}; known: {sorted(self.gpus)}")
        speeds = self._raw["models"][model].get("speeds", {})
        if gpu not in speeds:
            raise ConfigError(
                f"{where}: model {model!r} has no speed figures on gpu {gpu!r}; "
                f"it runs on: {sorted(speeds)}"
            )
        sp = speeds[gpu]
        m, g = self.models[model], self.gpus[gpu]
        n = int(sp["gpus_per_replica"])
        if m.memory_gb > n * g.memory_gb:
            raise ConfigError(
                f"{where}: model {model!r} needs {m.memory_gb:g} GB but a replica of {n} x {gpu} "
                f"has {n * g.memory_gb:g} GB"
            )
        max_batch = int(sp["max_batch"])
        if sp.get("fixed", False):
            return Deployment(m, g, n, max_batch, True, 0.0, (0.0,) * (max_batch + 1))
        t1 = float(sp["tpot_ms_batch1"]) / 1000.0
        tmax = max_batch / float(sp["decode_tok_s_at_max_batch"])
        if tmax < t1:
            # A saturated batch cannot decode each sequence faster than a lone one.
            raise ConfigError(
                f"{self.source}: {model} on {gpu}: decode_tok_s_at_max_batch implies "
                f"{tmax * 1000:.2f} ms per token at batch {max_batch}, below the batch-1 "
                f"{t1 * 1000:.2f} ms; lower max_batch or fix the figures"
            )
        # Per-token decode time grows linearly with batch (NIM's ITL figures are linear in
        # concurrency from 1 to 100, gpu_facts.md 2.3), anchored at batch 1 and at max_batch.
        slope = (tmax - t1) / max(max_batch - 1, 1)
        tpot = (0.0,) + tuple(t1 + slope * (b - 1) for b in range(1, max_batch + 1))
        return Deployment(m, g, n, max_batch, False, 1.0 / float(sp["prefill_tok_s"]), tpot)
