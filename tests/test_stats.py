"""Replication statistics in aigrid_sim.results.stats (mean_ci, batch_means_ci, within_ci)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aigrid_sim.results.stats import batch_means_ci, fifo_waits, mean_ci, within_ci
from aigrid_sim.studies import theory as th


def test_mean_ci_known_value():
    mean, hw = mean_ci([1, 2, 3, 4, 5])
    assert mean == 3.0
    # t_{0.975, 4} = 2.7764451, s = sqrt(2.5)
    assert hw == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-7)
    _, hw90 = mean_ci([1, 2, 3, 4, 5], confidence=0.90)
    assert hw90 == pytest.approx(2.1318468 * math.sqrt(2.5) / math.sqrt(5), rel=1e-7)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 0.0)


def test_mean_ci_coverage_is_nominal():
    rng = np.random.default_rng(1)
    data = rng.normal(10.0, 3.0, size=(4000, 5))
    covered = 0
    for row in data:
        m, hw = mean_ci(row)
        covered += within_ci(m, hw, 10.0)
    # binomial sd at 4000 reps ~ 0.0034
    assert 0.935 < covered / len(data) < 0.965


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=50))
def test_mean_ci_shape_and_confidence_order(xs):
    m, hw = mean_ci(xs)
    assert m == pytest.approx(np.mean(xs), rel=1e-12, abs=1e-6)
    assert hw >= 0
    _, hw99 = mean_ci(xs, confidence=0.99)
    assert hw99 >= hw


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: mean_ci([1.0]), "at least 2"),
        (lambda: mean_ci([]), "at least 2"),
        (lambda: mean_ci([1.0, math.nan]), "finite"),
        (lambda: mean_ci([1.0, 2.0], confidence=1.0), "confidence"),
        (lambda: mean_ci([1.0, 2.0], confidence=0.0), "confidence"),
        (lambda: batch_means_ci(np.ones(100), n_batches=1), "n_batches"),
        (lambda: batch_means_ci(np.ones(100), n_batches=2.5), "n_batches"),
        (lambda: batch_means_ci(np.ones(10), n_batches=20), "at least n_batches"),
        (lambda: batch_means_ci([1.0, math.inf, 2.0], n_batches=2), "finite"),
        (lambda: within_ci(1.0, -0.1, 1.0), "half_width"),
        (lambda: within_ci(1.0, 0.1, 1.0, rel_slack=-0.1), "rel_slack"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_batch_means_splits_into_equal_batches_dropping_leading_remainder():
    x = np.concatenate([[1000.0, 1000.0, 1000.0], np.repeat([1.0, 2.0, 3.0, 4.0], 5)])
    m, hw = batch_means_ci(x, n_batches=4)
    assert m == 2.5  # the 3 leading values (closest to the warm-up) are dropped
    assert hw == pytest.approx(mean_ci([1.0, 2.0, 3.0, 4.0])[1])


def test_batch_means_iid_matches_plain_ci():
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 1.0, 20_000)
    m, hw = batch_means_ci(x, n_batches=20)
    assert m == pytest.approx(x.mean())
    assert within_ci(m, hw, 5.0)
    # for iid data the batch-means width is close to the naive sigma / sqrt(n) width
    naive = 2.093 * x.std(ddof=1) / math.sqrt(x.size)
    assert 0.5 * naive < hw < 1.6 * naive


def test_batch_means_covers_mmc_wait_on_one_long_run():
    c, lam, mu = 4, 3.2, 1.0
    rng = np.random.default_rng(2024)
    n = 300_000
    arr = np.cumsum(rng.exponential(1 / lam, n))
    w = fifo_waits(arr, rng.exponential(1 / mu, n), c)[20_000:]
    m, hw = batch_means_ci(w, n_batches=20)
    expected = th.mmc_mean_wait(c, lam, mu)
    assert within_ci(m, hw, expected), (m, hw, expected)
    # the batch-means interval is much wider than the (wrong) iid one: waits are correlated
    assert hw > 3 * 2.093 * w.std(ddof=1) / math.sqrt(w.size)


def test_within_ci():
    assert within_ci(1.0, 0.1, 1.09)
    assert within_ci(1.0, 0.1, 0.91)
    assert not within_ci(1.0, 0.1, 1.2)
    assert within_ci(1.0, 0.1, 1.2, rel_slack=0.1)  # 0.1 + 0.1 * 1.2 = 0.22 >= 0.2
    assert within_ci(-1.0, 0.0, -1.0)
    assert not within_ci(math.nan, 0.1, 1.0)
    assert isinstance(within_ci(np.float64(1.0), 0.1, 1.0), bool)
