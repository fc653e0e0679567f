"""Deployments for the serving tests: the catalogue's, and small made-up ones."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace


@dataclass(frozen=True)
class LinearStep:
    """``overhead + max(weights, token x new) + ctx x context`` (the contract's shape)."""

    weights_s: float
    token_s: float
    ctx_s: float
    overhead_s: float = 0.0

    def step_s(self, new_tokens: float, ctx_tokens: float) -> float:
        d = self.token_s * new_tokens
        return self.overhead_s + (d if d > self.weights_s else self.weights_s) + \
            self.ctx_s * ctx_tokens


def toy(cap: int = 200_000, seqs: int = 256, budget: int = 2048, block: int = 16,
        weights_s: float = 0.010, token_s: float = 40e-6, ctx_s: float = 2e-8,
        overhead_s: float = 0.001, admission: str = "forecast"):
    """A made-up deployment with the contract's fields (an 8B-class model on one GPU)."""
    return SimpleNamespace(
        step=LinearStep(weights_s, token_s, ctx_s, overhead_s), kv_capacity_tokens=cap,
        block_tokens=block, max_num_seqs=seqs, max_num_batched_tokens=budget,
        model=SimpleNamespace(name="toy"), gpu=SimpleNamespace(name="toy-gpu"),
        gpus_per_replica=1, fixed=False, max_batch=seqs, admission=admission)
