"""Wall time of one engine iteration (step) of a replica, and the saturated steady state.

A step of an in-flight-batching engine (vLLM, TensorRT-LLM) runs every sequence of the batch
through the model once: each decoding sequence adds one token, each prefilling sequence adds a
chunk of its prompt. Its time is modelled from three physical costs, each with an efficiency
fitted to published measurements (``scripts/calibrate_serving.py``)::

    step_s(new, ctx) = overhead_s + weights_s + token_s * new + ctx_s * ctx

- ``weights_s``: reading the weights once from memory (weight bytes per GPU / bandwidth);
- ``token_s``: the dense layers' compute per token (2 x parameters per GPU / tensor FLOPS) plus,
  with tensor parallelism, the all-reduce traffic of its activations over the GPU interconnect;
- ``ctx_s``: attention reads the KV cache of every context token held by the sequences in the
  step (KV bytes per token per GPU / bandwidth);
- ``overhead_s``: per-step cost that does not scale (scheduling, kernel launches, tensor-parallel
  all-reduce latency).

:func:`steady_state` is the saturated state of the scheduler the engine runs, in closed form (a
fluid model solved by bisection): the batch holds as many sequences as ``max_num_seqs`` and the KV
memory allow, every step carries the running decodes plus prefill chunks under
``max_num_batched_tokens``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StepTime:
    """Wall time of one engine iteration (step) of one replica. Pure, O(1), no numpy in the call.

    Attributes:
        weights_s: Time to read the weights once per step, s.
        token_s: Dense-layer compute (and tensor-parallel all-reduce) per token in the step, s.
        ctx_s: Attention (KV-cache read) per token of context held by the step's sequences, s.
        overhead_s: Fixed cost per step, s.
    """

    weights_s: float
    token_s: float
    ctx_s: float
    overhead_s: float = 0.0

    def step_s(self, new_tokens: float, ctx_tokens: float) -> float:
        """Time of one step.

        Args:
            new_tokens: Tokens computed this step (decode tokens + prefill-chunk tokens).
            ctx_tokens: Total context (KV tokens, this step's included) held by the sequences in
                the step.

        Returns:
            Seconds.
        """
        return (self.overhead_s + self.weights_s + self.token_s * new_tokens
                + self.ctx_s * ctx_tokens)


@dataclass(frozen=True)
class SteadyState:
    """The saturated steady state of one replica serving fixed ``isl``/``osl`` requests.

    Attributes:
        out_tok_s: Output tokens per second.
        step_s: Mean step time, s.
        requests_per_step: Requests completed per step (``R``).
        decodes: Decoding sequences per step.
        prefill_tokens: Prefill tokens per step.
        sequences: Sequences held (decoding + prefilling).
        kv_tokens: KV tokens held (block-rounded).
        limit: What bounds the batch: ``"max_num_seqs"``, ``"kv_memory"`` or
            ``"max_num_batched_tokens"``.
    """

    out_tok_s: float
    step_s: float
    requests_per_step: float
    decodes: float
    prefill_tokens: float
    sequences: float
    kv_tokens: float
    limit: str


def steady_state(step: StepTime, isl: float, osl: float, *, max_num_seqs: int,
                 kv_capacity_tokens: int, max_num_batched_tokens: int,
                 block_tokens: int = 16, kv_accounting: str = "fluid") -> SteadyState:
    """Saturated steady state of in-flight batching with chunked prefill (fluid model).

    With ``R`` requests completing per step (all ``isl`` in, ``osl`` out, the first output token
    coming out of the last prefill chunk):

    - decodes per step ``D = R (osl - 1)``; prefill tokens per step ``P = R isl``;
    - a prompt is prefilled in ``n_p = max(1, isl / (M - D))`` steps (``M`` the token budget);
    - sequences held ``N = R (osl - 1 + n_p)``;
    - KV held: each decoding sequence ``isl + osl / 2`` tokens on average, each prefilling one
      ``isl (n_p + 1) / (2 n_p)``, plus half a block each for paging;

    ``R`` is the largest rate with ``N <= max_num_seqs``, KV held ``<= kv_capacity_tokens`` and
    ``D + P <= M``. The step then takes ``step.step_s(D + P, ctx)`` with ``ctx`` the KV held, and
    the replica emits ``R osl / step`` output tokens per second.

    Args:
        step: The step-time model.
        isl: Input tokens per request (>= 0).
        osl: Output tokens per request (>= 1).
        max_num_seqs: Sequence cap.
        kv_capacity_tokens: KV tokens that fit in memory.
        max_num_batched_tokens: Per-step token budget.
        block_tokens: KV block size.
        kv_accounting: ``"fluid"`` (the KV held, as above: what the engine's scheduler
            approaches) or ``"reserve"``: every held sequence reserves its whole ``isl + osl``
            from admission, as TensorRT-LLM's ``GUARANTEED_NO_EVICT`` capacity scheduler does.
            ``reserve`` is not what the engine runs; ``scripts/calibrate_serving.py
            --kv-accounting reserve`` fits it to show that the published tables reject it.

    Returns:
        The steady state.

    Raises:
        ValueError: A request that can never fit (its ``isl + osl`` exceeds the KV capacity) or
            non-positive lengths.
    """
    isl = float(isl)
    osl = float(osl)
    if not (isl >= 0 and osl >= 1 and math.isfinite(isl) and math.isfinite(osl)):
        raise ValueError(f"need isl >= 0 and osl >= 1 (got {isl}, {osl})")
    M = float(max_num_batched_tokens)
    cap = float(kv_capacity_tokens)
    half_block = 0.5 * block_tokens
    if isl + osl + block_tokens > cap:
        raise ValueError(f"a request of {isl:g} + {osl:g} tokens does not fit in the KV cache "
                         f"({kv_capacity_tokens} tokens)")
    if kv_accounting not in ("fluid", "reserve"):
        raise ValueError(f"kv_accounting must be 'fluid' or 'reserve' (got {kv_accounting!r})")
    reserve = kv_accounting == "reserve"
    dec = osl - 1.0

    def shape(r: float) -> tuple[float, float, float, float]:
        d = r * dec
        free = M - d
        n_p = max(1.0, isl / free) if free > 0 else math.inf
        n = r * (dec + n_p)
        kv = (r * dec * (isl + 0.5 * osl + half_block)
              + r * (isl * (n_p + 1.0) / 2.0 + n_p * half_block)) if isl > 0 else \
            r * dec * (0.5 * osl + half_block) + r * half_block
        return d, n, kv, r * (isl + dec)

    def feasible(r: float) -> bool:
        d, n, kv, tokens = shape(r)
        if reserve:  # what admission counts; the step still reads only the KV held
            kv = n * (isl + osl + half_block)
        return d < M and n <= max_num_seqs and kv <= cap and tokens <= M

    # The largest feasible rate: every constraint is monotone in r, so bisect.
    hi = M / max(isl + dec, 1.0)
    lo = 0.0
    if feasible(hi):
        lo = hi
    else:
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if feasible(mid):
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
    r = lo
    d, n, kv, tokens = shape(r)
    # Which constraint binds (for reports).
    eps = 1e-6
    if tokens >= M * (1 - eps):
        limit = "max_num_batched_tokens"
    elif n >= max_num_seqs * (1 - eps):
        limit = "max_num_seqs"
    else:
        limit = "kv_memory"
    t = step.step_s(tokens, kv)
    return SteadyState(r * osl / t, t, r, d, r * isl, n, kv, limit)


def loaded_step_s(step: StepTime, isl: float, osl: float, rate_per_s: float, *,
                  max_num_batched_tokens: int, block_tokens: int = 16) -> float:
    """Mean step time (hence time per output token) of a replica fed ``rate_per_s`` requests/s.

    The same fluid model as :func:`steady_state` below saturation: with ``R = rate x step``
    requests per step, a step carries ``R (isl + osl - 1)`` tokens and the context of the
    ``R (osl - 1)`` decoding sequences; ``step = step_s(tokens, ctx)`` is solved by bisection.

    Returns:
        Seconds per step; ``inf`` if the rate exceeds what the token budget allows.
    """
    isl, osl = float(isl), float(osl)
    dec = osl - 1.0
    M = float(max_num_batched_tokens)

    def excess(t: float) -> float:
        r = rate_per_s * t
        d = r * dec
        free = M - d
        n_p = max(1.0, isl / free) if free > 0 else math.inf
        kv = r * dec * (isl + 0.5 * osl + 0.5 * block_tokens) + r * isl * (n_p + 1.0) / 2.0
        return step.step_s(r * (isl + dec), kv) - t

    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        hi *= 2.0
        if hi > 1e6 or rate_per_s * hi * (isl + dec) > M:
            return math.inf
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return hi
