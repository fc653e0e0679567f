"""sketches.parquet is written part by part: the same rows as the whole state table."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import aigrid_sim
from aigrid_sim.results.online import read_state, state_to_frame
from aigrid_sim.results.rundir import write_arrow, write_arrow_parts


def _sorted(f: pd.DataFrame) -> pd.DataFrame:
    return f.sort_values(list(f.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return aigrid_sim.run("global_agent", ["duration_s=20"], out_dir=out)


def test_parts_hold_the_rows_of_the_state_table(run, tmp_path):
    """Sliced 97 groups at a time, in row groups of 5,000 rows: the same rows, read back."""
    whole = _sorted(run.online.state_frame())
    parts = list(run.online.state_parts(slice_groups=97))
    assert len(parts) > 10
    assert len({p.schema.remove_metadata() for p in parts}) == 1  # one schema
    pd.testing.assert_frame_equal(_sorted(state_to_frame(pa.concat_tables(parts))), whole)
    path = write_arrow_parts(run.online.state_parts(slice_groups=97), tmp_path / "s.parquet",
                             row_group_rows=5000)
    assert pq.ParquetFile(path).num_row_groups > 1
    pd.testing.assert_frame_equal(_sorted(read_state(path)), whole)
    # the run folder's own file holds the same rows, stamped like every table
    pd.testing.assert_frame_equal(_sorted(read_state(run.out_dir / "sketches.parquet")), whole)
    assert b"aigrid_sim.version" in pq.read_schema(path).metadata


def test_no_part_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no part"):
        write_arrow_parts(iter(()), tmp_path / "empty.parquet")


def test_parts_keep_the_dictionary_encoding(run, tmp_path):
    """Labels stay dictionary-encoded in the file: no bigger than the whole table's file.

    (Chunks with dictionaries of their own in one row group made parquet write plain strings:
    twice the size.)
    """
    whole = write_arrow(run.online.state_table(), tmp_path / "whole.parquet")
    parts = write_arrow_parts(run.online.state_parts(slice_groups=97), tmp_path / "p.parquet")
    assert parts.stat().st_size <= 1.1 * whole.stat().st_size
