"""Windowed arrivals: the stream does not depend on the window, and equals the in-memory one."""

from __future__ import annotations

import numpy as np
import pytest

from aigrid_sim.config import validate
from aigrid_sim.workload import generate_stream
from aigrid_sim.workload.windows import BLOCK_S, SyntheticArrivals, concat, split, windows

COLS = ("t", "origin", "app", "in_tokens", "out_tokens", "work_s")


def _cfg(**kw):
    base = {"seed": 3, "duration_s": 400.0, "start_utc_h": 5.0,
            "workload": {"rate_rps": 50.0, "arrivals": {"kind": "diurnal"}}}
    base.update(kw)
    return validate(base)


def _same(a, b):
    for c in COLS:
        assert np.array_equal(getattr(a, c), getattr(b, c)), c


POP = np.array([5.0, 1.0, 2.0, 0.5])
OFF = np.array([0.0, 5.5, -8.0, 9.0])


@pytest.mark.parametrize("window_s", [0.7, 13.0, 60.0, 61.3, 250.0, 1e6])
def test_window_size_does_not_change_the_stream(window_s):
    cfg = _cfg()
    whole = generate_stream(cfg, POP, OFF)
    parts = list(windows(SyntheticArrivals(cfg, POP, OFF).blocks(), window_s))
    _same(concat(parts), whole)
    for p in parts:  # each window holds only its own slice of time
        assert len(p) and np.all(np.diff(p.t) >= 0)
        lo = np.floor(p.t[0] / window_s)
        assert np.all(np.floor(p.t / window_s) == lo)
    assert len(whole) > 1000


def test_blocks_are_independent_of_what_came_before():
    cfg = _cfg()
    proc = SyntheticArrivals(cfg, POP, OFF)
    b3 = proc.block(3)
    again = SyntheticArrivals(cfg, POP, OFF).block(3)  # drawn alone, without blocks 0-2
    _same(b3, again)
    assert b3.t.min() >= 3 * BLOCK_S and b3.t.max() < 4 * BLOCK_S


def test_max_requests_and_modulated_streams_window_invariant():
    arr = {"kind": "diurnal", "mmpp": {"states": [{"rate": 1, "mean_sojourn_s": 20},
                                                  {"rate": 4, "mean_sojourn_s": 5}],
                                       "scope": "global"},
           "flash_crowds": [{"start_s": 100, "ramp_up_s": 10, "duration_s": 50,
                             "ramp_down_s": 10, "factor": 3}]}
    cfg = _cfg(max_requests=7000, workload={"rate_rps": 50.0, "arrivals": arr})
    whole = generate_stream(cfg, POP, OFF)
    assert len(whole) == 7000
    _same(concat(list(windows(SyntheticArrivals(cfg, POP, OFF).blocks(), 17.0))), whole)


def test_split_of_an_in_memory_stream():
    cfg = _cfg()
    whole = generate_stream(cfg, POP, OFF)
    _same(concat(list(split(whole, 33.0))), whole)
    with pytest.raises(ValueError):
        list(split(whole, 0.0))
