"""Where a streamed run's ended requests go: the online summary, ``requests.parquet``, memory.

The engine hands blocks of ended requests, in request order, to :class:`RequestSink`. Each block
becomes rows of the requests table (:func:`aigrid_sim.results.metrics.requests_table`, vectorised
over the block), which feed the :class:`~aigrid_sim.results.online.OnlineSummary` and, depending
on ``output.requests``:

* ``all``: every row is appended to ``requests.parquet`` through a ``pyarrow.parquet.ParquetWriter``
  in row groups of about :data:`ROW_GROUP_ROWS` rows (the file lives in the run's hidden
  temporary folder until the run is complete, see :mod:`aigrid_sim.results.rundir`);
* ``sample``: the rows whose ``request_id`` hashes below ``output.sample_fraction`` (a fixed
  hash, so the sample does not depend on the window or on the block sizes);
* ``none``: no per-request table; counts, sums and sketches are still exact / as accurate.

Rows are written in request order (``output.requests_order=arrival``, the default): a request
that lasts minutes holds back every row after it, so memory grows with the rate times the
longest request's life. ``end`` writes each request's row as it ends instead (sort by
``request_id`` for arrival order): the engine then reuses every slot at once, as with
``none``, which took about a third less memory on 1 M and 10 M requests (docs/streaming.md).

With ``keep=True`` the blocks are also kept in memory, and :meth:`RequestSink.result` gives the
whole stream, records and requests table, exactly as an all-in-memory run makes them (small
runs, ``aigrid_sim.run()`` without ``out_dir``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aigrid_sim.results.metrics import requests_table
from aigrid_sim.results.online import OnlineSummary

#: Rows per parquet row group (about 40 MB of buffered rows).
ROW_GROUP_ROWS = 262_144

REQUEST_MODES = ("all", "sample", "none")
REQUEST_ORDERS = ("arrival", "end")


def sample_mask(request_id: np.ndarray, fraction: float) -> np.ndarray:
    """Rows kept by ``output.requests=sample``: a fixed 64-bit hash of the id below ``fraction``.

    The hash (Fibonacci multiplication, then the top 53 bits as a uniform number in [0, 1)) is
    a function of the id alone, so the same requests are kept whatever the windows.
    """
    if fraction >= 1.0:
        return np.ones(len(request_id), dtype=bool)
    h = request_id.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return u < fraction


class RequestSink:
    """Receives blocks of ended requests from the engine (``sink(stream, records, first_id)``).

    Args:
        world: The run's world.
        apps: The run's apps (``AppSpec``), in order.
        online: The summary to feed.
        path: ``requests.parquet`` to write (None: no file).
        mode: ``all``, ``sample`` or ``none`` (what goes to the file).
        sample_fraction: Share of requests kept by ``sample``.
        keep: Also keep every block in memory (:meth:`result`).
        order: ``arrival`` (rows in request order) or ``end`` (as requests end; ignored when
            ``keep``: kept tables are in request order).
    """

    def __init__(self, world, apps: list, online: OnlineSummary, *, path: Path | None = None,
                 mode: str = "all", sample_fraction: float = 1.0, keep: bool = False,
                 order: str = "arrival"):
        if order not in REQUEST_ORDERS:
            raise ValueError(f"order must be one of {REQUEST_ORDERS} (got {order!r})")
        if mode not in REQUEST_MODES:
            raise ValueError(f"mode must be one of {REQUEST_MODES} (got {mode!r})")
        self.world = world
        self.apps = list(apps)
        self.online = online
        self.path = Path(path) if path is not None and mode != "none" else None
        self.mode = mode
        self.fraction = float(sample_fraction)
        self.keep = keep
        # A summary alone takes ended requests in any order (the engine then reuses their
        # slots one by one); a table kept in memory, or written with order=arrival, takes them
        # in request order.
        self.unordered = not keep and (self.path is None or order == "end")
        self.order = order
        self.rows = 0
        self.rows_written = 0
        self._writer = None
        self._buf: list = []
        self._buf_rows = 0
        self._streams: list = []
        self._records: list = []
        self._frames: list[pd.DataFrame] = []

    def __call__(self, stream, rec, first_id) -> None:
        """Take a block of ended requests.

        ``first_id`` is the first one's ``request_id``, or every one's (an array) when the
        sink is :attr:`unordered`.
        """
        reqs = requests_table(self.world, stream, rec, first_id)
        self.rows += len(reqs)
        self.online.update(reqs, rec)
        if self.keep:
            self._streams.append(stream)
            self._records.append(rec)
            self._frames.append(reqs)
        if self.path is not None:
            if self.mode == "sample":
                reqs = reqs[sample_mask(reqs["request_id"].to_numpy(), self.fraction)]
            self._write(reqs)

    def _write(self, reqs: pd.DataFrame) -> None:
        import pyarrow as pa

        if not len(reqs) and self._writer is not None:
            return
        self._buf.append(pa.Table.from_pandas(reqs, preserve_index=False))
        self._buf_rows += len(reqs)
        if self._buf_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._buf:
            return
        table = pa.concat_tables(self._buf) if len(self._buf) > 1 else self._buf[0]
        if self._writer is None:
            from aigrid_sim.results.rundir import stamp_schema

            self._schema = stamp_schema(table.schema)  # package and results schema versions
            self._writer = pq.ParquetWriter(self.path, self._schema)
        table = table.replace_schema_metadata(self._schema.metadata)
        self._writer.write_table(table, row_group_size=max(len(table), 1))
        self.rows_written += len(table)
        self._buf, self._buf_rows = [], 0

    def close(self) -> None:
        """Write the last row group and close the file (an empty table if no request at all)."""
        if self.path is None:
            return
        self._flush()
        if self._writer is None:  # no request: still a valid, empty requests.parquet
            from aigrid_sim.results.rundir import write_table
            from aigrid_sim.sim.engine import Records
            from aigrid_sim.workload.windows import concat

            empty = requests_table(self.world, concat([], self.apps), Records.empty(0))
            write_table(empty, self.path)
            return
        self._writer.close()
        self._writer = None

    def abort(self) -> None:
        """Close the file after a failure (the run folder is deleted by the caller)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None

    def result(self):
        """``(stream, records, requests)`` of the whole run (``keep=True`` only)."""
        from aigrid_sim.sim.engine import Records
        from aigrid_sim.workload.windows import concat

        stream = concat(self._streams, self.apps)
        rec = Records.concat(self._records)
        if self._frames:
            reqs = pd.concat(self._frames, ignore_index=True) if len(self._frames) > 1 \
                else self._frames[0]
        else:
            reqs = requests_table(self.world, stream, rec)
        return stream, rec, reqs
