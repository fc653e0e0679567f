"""The request stream: every request of a run as flat, time-sorted numpy columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AppSpec:
    """A request class as the engine and policies see it.

    Attributes:
        name: App name.
        capability: Capability level a site's model must reach.
        slo_ms: Latency target, ms.
        slo_on_ttft: True if the target is on time to first token, else on end-to-end latency.
        generative: True if service time comes from tokens on the site's model.
        mean_in_tokens: Mean input tokens (for policies' predictions).
        mean_out_tokens: Mean output tokens.
        mean_work_s: Mean fixed service time (non-generative apps).
        system_prompt_tokens: Leading prompt tokens shared by all its requests (prefix cache).
        cascade: Served as a cascade (a small model first, some requests escalated).
        max_tokens: The max_tokens its clients declare (what a ``forecast`` replica plans
            with); 0 = each request's own output length.
    """

    name: str
    capability: int
    slo_ms: float
    slo_on_ttft: bool
    generative: bool
    mean_in_tokens: float = 0.0
    mean_out_tokens: float = 0.0
    mean_work_s: float = 0.0
    system_prompt_tokens: int = 0
    cascade: bool = False
    max_tokens: int = 0


@dataclass
class RequestStream:
    """Time-sorted requests; row ``i`` is request ``i``.

    Attributes:
        t: Arrival time, seconds from the start (sorted, non-decreasing).
        origin: Origin index into the world's origins.
        app: App index into ``apps``.
        in_tokens: Input (prompt) tokens; 0 for non-generative apps.
        out_tokens: Output tokens; 0 for non-generative apps.
        work_s: Fixed service time for non-generative apps; 0 for generative ones.
        apps: The apps, by index.
        info: Facts about how the stream was made (rows skipped in a trace, ...).
        prefix_ids: Optional shared-prefix block ids of every request, concatenated (a trace's
            ``hash_ids``: equal ids at equal positions mean equal prompt prefixes).
        prefix_off: Request ``i``'s ids are ``prefix_ids[prefix_off[i]:prefix_off[i + 1]]``.
        prefix_block_tokens: Prompt tokens per prefix block (512 in Mooncake traces).
    """

    t: np.ndarray
    origin: np.ndarray
    app: np.ndarray
    in_tokens: np.ndarray
    out_tokens: np.ndarray
    work_s: np.ndarray
    apps: list[AppSpec]
    info: dict = field(default_factory=dict)
    prefix_ids: np.ndarray | None = None
    prefix_off: np.ndarray | None = None
    prefix_block_tokens: int = 512

    def __len__(self) -> int:
        return len(self.t)

    def __post_init__(self) -> None:
        n = len(self.t)
        for name in ("origin", "app", "in_tokens", "out_tokens", "work_s"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RequestStream.{name} has {len(getattr(self, name))} rows, "
                                 f"t has {n}")
        if n and np.any(np.diff(self.t) < 0):
            raise ValueError("RequestStream.t must be sorted")

    def head(self, n: int) -> RequestStream:
        """The first ``n`` requests."""
        ids = off = None
        if self.prefix_ids is not None:
            off = self.prefix_off[:n + 1]
            ids = self.prefix_ids[:off[-1]]
        return RequestStream(self.t[:n], self.origin[:n], self.app[:n], self.in_tokens[:n],
                             self.out_tokens[:n], self.work_s[:n], self.apps, dict(self.info),
                             ids, off, self.prefix_block_tokens)
