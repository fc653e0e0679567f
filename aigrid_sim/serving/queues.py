"""A site's waiting queue ordered by tenant priority, FIFO within a priority.

Tenants have a ``priority`` (higher is admitted first, :mod:`aigrid_sim.sim.control`). When a run
has tenants of different priorities, every waiting queue (a replica pool's and a slot-model
site's) is a :class:`PriorityQueue` instead of a ``deque``: one deque per priority level, the
highest level served first, first come first served inside a level. A preempted request goes
back to the head of its own level. When the queue is full, a newcomer displaces the newest
request of the lowest level below its own (:meth:`PriorityQueue.displace`; that request is
rejected with reason ``displaced``); a newcomer whose level is the lowest waiting is refused
(``queue_full``), as with a plain queue. A preempted request, partly served, is never displaced.
The queue is set before the run (:meth:`aigrid_sim.sim.engine.Engine.set_priorities`); a run
whose priorities are all equal keeps the plain deques and pays nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class PriorityQueue:
    """The deque operations a waiting queue needs, in priority order.

    Args:
        level_of_app: Per app, its level (0 is served first).
        app: The engine's per-slot app list (read when a request is queued).
        levels: Number of levels.
    """

    __slots__ = ("_qs", "_level", "_app", "_n")

    def __init__(self, level_of_app: list[int], app: list, levels: int):
        self._qs = [deque() for _ in range(levels)]
        self._level = level_of_app
        self._app = app
        self._n = 0

    def append(self, i: int) -> None:
        """Queue request ``i`` behind the requests of its level."""
        self._qs[self._level[self._app[i]]].append(i)
        self._n += 1

    def appendleft(self, i: int) -> None:
        """Put request ``i`` at the head of its level (a preempted request)."""
        self._qs[self._level[self._app[i]]].appendleft(i)
        self._n += 1

    def displace(self, i: int, keep=None) -> int:
        """Make room for request ``i``: remove the newest request of the lowest level below it.

        Args:
            i: The newcomer (not queued by this call).
            keep: Requests that must not be removed (e.g. preempted ones, partly served).

        Returns:
            The removed request, or -1 when every waiting request has ``i``'s level or higher.
        """
        mine = self._level[self._app[i]]
        for lv in range(len(self._qs) - 1, mine, -1):
            q = self._qs[lv]
            if q and (keep is None or q[-1] not in keep):
                self._n -= 1
                return q.pop()
        return -1

    def popleft(self) -> int:
        """The head: the oldest request of the highest level waiting."""
        for q in self._qs:
            if q:
                self._n -= 1
                return q.popleft()
        raise IndexError("pop from an empty queue")

    def __getitem__(self, k: int) -> int:
        if k != 0:
            raise IndexError("only the head (index 0) of a priority queue is read")
        for q in self._qs:
            if q:
                return q[0]
        raise IndexError("queue is empty")

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[int]:
        for q in self._qs:
            yield from q

    def clear(self) -> None:
        """Empty every level."""
        for q in self._qs:
            q.clear()
        self._n = 0
