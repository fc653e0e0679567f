"""Per-request records: one row per request, filled in place by the engine during a run.

Kept apart from the engine (:mod:`aigrid_sim.sim.engine`, which re-exports :class:`Records`) so
that the engine's module can be compiled (see ``setup.py``) while this dataclass stays plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Records:
    """One row per request, filled in place during the run (times in seconds from the start).

    ``t_start``/``service_s`` are NaN for requests that never started service (or whose service
    was interrupted by a failure).
    """

    site: np.ndarray  # int32, -1 if never routed
    status: np.ndarray  # int8 Status
    reason: np.ndarray  # int8 Reason
    t_start: np.ndarray  # service start (first admission into a batch)
    service_s: np.ndarray  # service time (first admission to last token)
    prefill_s: np.ndarray  # first admission to first token (time to first token at the site)
    batch: np.ndarray  # int16: sequences in the replica's batch when admitted
    extra_s: np.ndarray  # time lost to failed attempts (fail-over), added to latency
    attempts: np.ndarray  # int8: sites tried
    site0: np.ndarray  # int32: first site that failed under the request (-1 if none)
    wasted_s: np.ndarray  # slot-seconds of service lost to failures
    net_ms: np.ndarray  # round trip of the last attempt when the network changed (else NaN)
    tpot_s: np.ndarray = None  # time per output token after the first (NaN if out <= 1)
    preemptions: np.ndarray = None  # int16: times preempted (recompute)
    cached_tokens: np.ndarray = None  # int32: prompt tokens served from the prefix cache
    prefill_tokens: np.ndarray = None  # int32: prompt tokens admitted (recomputes included)
    # Cascades (aigrid_sim.sim.cascade): the path code, and the small model's attempt of an
    # escalated request (its site, service start and time, and arrival to its answer back home).
    cascade: np.ndarray = None  # int8 path code (0: not a cascade app)
    esc_site: np.ndarray = None  # int32, -1 unless escalated
    esc_t_start: np.ndarray = None
    esc_service_s: np.ndarray = None
    esc_s: np.ndarray = None

    @classmethod
    def empty(cls, n: int) -> Records:
        """Records for ``n`` requests, all in flight and unrouted."""
        nan = np.full(n, np.nan)
        return cls(np.full(n, -1, np.int32), np.zeros(n, np.int8), np.zeros(n, np.int8),
                   nan, nan.copy(), nan.copy(), np.zeros(n, np.int16), np.zeros(n),
                   np.zeros(n, np.int8), np.full(n, -1, np.int32), np.zeros(n), nan.copy(),
                   nan.copy(), np.zeros(n, np.int16), np.zeros(n, np.int32),
                   np.zeros(n, np.int32), np.zeros(n, np.int8), np.full(n, -1, np.int32),
                   nan.copy(), nan.copy(), nan.copy())

    @property
    def ttft_s(self) -> np.ndarray:
        """Time to first token at the site (wait excluded): first admission to first token."""
        return self.prefill_s

    # The record lifecycle of a streamed run (rows are slots, reused once flushed). Written
    # over the dataclass fields, so a column added above needs nothing here.
    def columns(self) -> list[str]:
        """Names of the per-request columns."""
        return list(self.__dataclass_fields__)

    def clear(self, a: int, b: int) -> None:
        """Reset rows ``a:b`` to the state of :meth:`empty` (in flight, unrouted)."""
        blank = type(self).empty(1)
        for name in self.columns():
            getattr(self, name)[a:b] = getattr(blank, name)[0]

    def grow(self, n: int) -> None:
        """Append ``n`` empty rows (arrays are replaced; the object stays the same)."""
        more = type(self).empty(n)
        for name in self.columns():
            setattr(self, name, np.concatenate([getattr(self, name), getattr(more, name)]))

    def take(self, a: int, b: int) -> Records:
        """A copy of rows ``a:b``."""
        return type(self)(**{name: getattr(self, name)[a:b].copy() for name in self.columns()})

    def take_rows(self, rows: np.ndarray) -> Records:
        """A copy of rows ``rows`` (an index array)."""
        return type(self)(**{name: getattr(self, name)[rows] for name in self.columns()})

    def clear_rows(self, rows: np.ndarray) -> None:
        """Reset rows ``rows`` (an index array) to the state of :meth:`empty`."""
        blank = type(self).empty(1)
        for name in self.columns():
            getattr(self, name)[rows] = getattr(blank, name)[0]

    @classmethod
    def concat(cls, parts: list[Records]) -> Records:
        """Rows of several records, one after the other."""
        if not parts:
            return cls.empty(0)
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts])
                      for name in parts[0].columns()})
