"""Outcomes of a request: its final status and, when it did not complete, why."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Where a request ended up when the run stopped."""

    IN_FLIGHT = 0  # still travelling, queued or in service at the end of the run
    OK = 1
    REJECTED = 2
    FAILED = 3

    @property
    def label(self) -> str:
        """Lower-case name used in result files."""
        return self.name.lower()


class Reason(IntEnum):
    """Why a request was rejected or failed (``NONE`` for the others)."""

    NONE = 0
    NO_CAPABLE_SITE = 1  # no reachable, up site offers the capability it needs
    POLICY = 2  # the routing policy chose to reject it
    QUEUE_FULL = 3  # the chosen site's queue was full
    SITE_DOWN = 4  # its site failed and it could not fail over
    RETRIES_EXHAUSTED = 5  # it failed over as many times as allowed
    SOVEREIGNTY = 6  # no capable site inside its data-residency area
    QUOTA = 7  # throttled: its tenant's quota at the chosen tier was used up
    CONTEXT_TOO_LONG = 8  # its prompt + output can never fit in a replica's KV cache
    DISPLACED = 9  # it waited in a full queue and a higher-priority request took its place

    @property
    def label(self) -> str:
        """Lower-case name used in result files ('' for NONE)."""
        return "" if self is Reason.NONE else self.name.lower()
