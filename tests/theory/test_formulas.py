"""Analytic queueing formulas (aigrid_sim.studies.theory) and the exact FIFO reference queue."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from aigrid_sim.results.stats import fifo_waits, mean_ci
from aigrid_sim.studies import theory as th

# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------


def erlang_b_poisson(c: int, a: float) -> float:
    """Erlang B as a truncated Poisson distribution, P(N = c) / P(N <= c)."""
    return sps.poisson.pmf(c, a) / sps.poisson.cdf(c, a)


def erlang_c_poisson(c: int, a: float) -> float:
    """Erlang C from the textbook sum, written with Poisson terms to stay finite."""
    top = sps.poisson.pmf(c, a) * c / (c - a)
    return top / (sps.poisson.cdf(c - 1, a) + top)


def naive_fifo_waits(arrivals, services, c):
    """O(n*c) FIFO reference: scan every server's free time, take the first free one."""
    free = [0.0] * c
    busy = [False] * c  # a server that has never worked is free from -infinity
    waits = []
    for t, s in zip(arrivals, services, strict=True):
        best = None
        for k in range(c):
            ready = free[k] if busy[k] else -math.inf
            if best is None or ready < best[0]:
                best = (ready, k)
        ready, k = best
        start = max(t, ready)
        waits.append(start - t)
        free[k] = start + s
        busy[k] = True
    return np.array(waits)


def lindley_waits(arrivals, services):
    """Single-server Lindley recursion W_{n+1} = max(0, W_n + S_n - (A_{n+1} - A_n))."""
    w = [0.0]
    for i in range(1, len(arrivals)):
        w.append(max(0.0, w[-1] + services[i - 1] - (arrivals[i] - arrivals[i - 1])))
    return np.array(w)


# ---------------------------------------------------------------------------------------------
# textbook values
# ---------------------------------------------------------------------------------------------


def test_erlang_textbook_values():
    assert th.erlang_b(1, 1.0) == pytest.approx(0.5)
    assert th.erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)
    assert th.erlang_b(10, 5.0) == pytest.approx(0.018384570, rel=1e-7)
    assert th.erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0)
    assert th.erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert th.erlang_b(5, 0.0) == 0.0
    assert th.erlang_c(5, 0.0) == 0.0


def test_mm1_textbook():
    lam, mu = 3.0, 4.0
    rho = lam / mu
    assert th.mm1_mean_wait(lam, mu) == pytest.approx(rho / (mu - lam))  # 0.75
    assert th.mm1_mean_wait(lam, mu) == pytest.approx(0.75)
    assert th.mm1_mean_wait(0.0, mu) == 0.0


def test_mm2_textbook():
    # M/M/2, lam = 1, mu = 1 (a = 1, rho = 1/2): C = 1/3, W_q = C / (2 - 1) = 1/3,
    # L_q = 1/3, W = 4/3.
    assert th.mmc_mean_wait(2, 1.0, 1.0) == pytest.approx(1 / 3)
    assert th.mmc_mean_queue_len(2, 1.0, 1.0) == pytest.approx(1 / 3)
    assert th.mmc_mean_sojourn(2, 1.0, 1.0) == pytest.approx(4 / 3)


@pytest.mark.parametrize(
    "c,a",
    [(1, 0.3), (3, 2.5), (10, 8.0), (50, 45.0), (100, 99.0), (300, 297.0), (500, 495.0)],
)
def test_erlang_matches_poisson_form(c, a):
    assert th.erlang_b(c, a) == pytest.approx(erlang_b_poisson(c, a), rel=1e-9)
    assert th.erlang_c(c, a) == pytest.approx(erlang_c_poisson(c, a), rel=1e-9)


def test_large_systems_are_finite_and_sane():
    for c in (200, 400, 800):
        for rho in (0.5, 0.9, 0.99):
            pc = th.erlang_c(c, c * rho)
            assert 0.0 < pc < 1.0
            w = th.mmc_mean_wait(c, c * rho * 2.0, 2.0)
            assert math.isfinite(w) and w > 0
    # many more servers than load: P(wait) underflows gracefully to ~0, not NaN
    assert th.erlang_c(600, 1.0) == pytest.approx(0.0, abs=1e-300)
    assert th.erlang_b(2000, 1500.0) == pytest.approx(erlang_b_poisson(2000, 1500.0), rel=1e-8)


# ---------------------------------------------------------------------------------------------
# consistency between formulas
# ---------------------------------------------------------------------------------------------


@given(
    lam=st.floats(0.0, 100.0),
    mu=st.floats(0.01, 100.0),
)
def test_mmc_with_one_server_is_mm1(lam, mu):
    assume(lam / mu < 0.999)
    assert th.mmc_mean_wait(1, lam, mu) == pytest.approx(th.mm1_mean_wait(lam, mu), rel=1e-9)
    assert th.erlang_c(1, lam / mu) == pytest.approx(lam / mu, rel=1e-12, abs=1e-300)


@given(lam=st.floats(0.0, 50.0), mu=st.floats(0.01, 50.0))
def test_pk_with_exponential_service_is_mm1(lam, mu):
    assume(lam / mu < 0.999)
    pk = th.mg1_mean_wait(lam, 1.0 / mu, 2.0 / mu**2)
    assert pk == pytest.approx(th.mm1_mean_wait(lam, mu), rel=1e-9, abs=1e-300)


@given(lam=st.floats(0.0, 50.0), mu=st.floats(0.01, 50.0))
def test_md1_is_half_of_mm1(lam, mu):
    assume(lam / mu < 0.999)
    assert th.md1_mean_wait(lam, 1.0 / mu) == pytest.approx(
        0.5 * th.mm1_mean_wait(lam, mu), rel=1e-9, abs=1e-300
    )


@given(c=st.integers(1, 300), rho=st.floats(0.0, 0.99), mu=st.floats(0.1, 10.0))
def test_littles_law_and_sojourn(c, rho, mu):
    lam = rho * c * mu
    wq = th.mmc_mean_wait(c, lam, mu)
    assert th.mmc_mean_queue_len(c, lam, mu) == pytest.approx(lam * wq, rel=1e-12, abs=1e-300)
    assert th.mmc_mean_sojourn(c, lam, mu) == pytest.approx(wq + 1.0 / mu, rel=1e-12)


@given(c=st.integers(1, 300), rho=st.floats(0.01, 0.99), q=st.floats(0.0, 0.9999))
def test_wait_quantile_inverts_the_tail(c, rho, q):
    mu = 1.0
    lam = rho * c * mu
    t = th.mmc_wait_quantile(c, lam, mu, q)
    pc = th.erlang_c(c, lam / mu)
    assert t >= 0.0
    if t == 0.0:
        assert pc <= 1.0 - q + 1e-12
    else:
        tail = pc * math.exp(-(c * mu - lam) * t)
        assert tail == pytest.approx(1.0 - q, rel=1e-9)


def test_wait_quantile_mm1_closed_form():
    # M/M/1: P(W > t) = rho exp(-(mu - lam) t)
    lam, mu = 0.8, 1.0
    assert th.mmc_wait_quantile(1, lam, mu, 0.99) == pytest.approx(math.log(0.8 / 0.01) / 0.2)
    assert th.mmc_wait_quantile(1, lam, mu, 0.2) == 0.0  # within the atom at zero (mass 0.2)
    assert th.mmc_wait_quantile(1, lam, mu, 0.0) == 0.0


# ---------------------------------------------------------------------------------------------
# monotonicity and bounds
# ---------------------------------------------------------------------------------------------


@given(c=st.integers(1, 300), a1=st.floats(0.0, 1000.0), a2=st.floats(0.0, 1000.0))
def test_erlang_b_bounds_and_increasing_in_load(c, a1, a2):
    lo, hi = sorted((a1, a2))
    b_lo, b_hi = th.erlang_b(c, lo), th.erlang_b(c, hi)
    assert 0.0 <= b_lo <= b_hi * (1 + 1e-12) <= 1.0 + 1e-12
    assert hi * (1.0 - b_hi) <= c * (1 + 1e-12)  # carried load cannot exceed the servers


@given(c=st.integers(1, 300), a=st.floats(0.0, 1000.0))
def test_erlang_b_decreasing_in_servers_at_fixed_load(c, a):
    assert th.erlang_b(c + 1, a) <= th.erlang_b(c, a) * (1 + 1e-12)


@given(c=st.integers(1, 300), f1=st.floats(0.0, 0.999), f2=st.floats(0.0, 0.999))
def test_erlang_c_increasing_in_load_and_at_least_erlang_b(c, f1, f2):
    lo, hi = sorted((f1 * c, f2 * c))
    c_lo, c_hi = th.erlang_c(c, lo), th.erlang_c(c, hi)
    assert 0.0 <= c_lo <= c_hi * (1 + 1e-12) <= 1.0 + 1e-12
    # a queue holds the customers a loss system would block: C >= B
    assert th.erlang_c(c, hi) >= th.erlang_b(c, hi) * (1 - 1e-12)


@given(c=st.integers(1, 300), f=st.floats(0.0, 0.999))
def test_erlang_c_decreasing_in_servers_at_fixed_load(c, f):
    a = f * c  # stable for c, hence also for c + 1
    assert th.erlang_c(c + 1, a) <= th.erlang_c(c, a) * (1 + 1e-12)
    assert th.mmc_mean_wait(c + 1, a, 1.0) <= th.mmc_mean_wait(c, a, 1.0) * (1 + 1e-12)


@given(c=st.integers(1, 300), rho=st.floats(0.01, 0.99))
def test_economies_of_scale_at_fixed_utilisation(c, rho):
    # Pooling: at the same utilisation, a bigger pool waits less often and for less time
    # (wait measured in units of the mean service time).
    assert th.erlang_c(c + 1, (c + 1) * rho) <= th.erlang_c(c, c * rho) * (1 + 1e-12)
    w_small = th.mmc_mean_wait(c, c * rho, 1.0)
    w_big = th.mmc_mean_wait(c + 1, (c + 1) * rho, 1.0)
    assert w_big <= w_small * (1 + 1e-12)


@given(c=st.integers(1, 100), f1=st.floats(0.0, 0.99), f2=st.floats(0.0, 0.99))
def test_mean_wait_increasing_in_arrival_rate(c, f1, f2):
    lo, hi = sorted((f1 * c, f2 * c))
    assert th.mmc_mean_wait(c, lo, 1.0) <= th.mmc_mean_wait(c, hi, 1.0) * (1 + 1e-12)


@given(
    lam=st.floats(0.0, 0.99),
    cv2=st.floats(0.0, 10.0),
)
def test_pk_increasing_in_service_variability(lam, cv2):
    # E[S] = 1, E[S^2] = 1 + cv^2: more variable service waits longer at the same load
    w = th.mg1_mean_wait(lam, 1.0, 1.0 + cv2)
    assert th.md1_mean_wait(lam, 1.0) <= w * (1 + 1e-12)
    assert w <= th.mg1_mean_wait(lam, 1.0, 2.0 + cv2) * (1 + 1e-12)


# ---------------------------------------------------------------------------------------------
# capacity sizing
# ---------------------------------------------------------------------------------------------


def _meets(c, lam, mu, wait, pwait):
    # Unstable by either rounding (erlang_c checks (lam / mu) / c; 0.85 / (17 * 0.05) < 1 while
    # (0.85 / 0.05) / 17 == 1): such a c meets nothing.
    if lam / (c * mu) >= 1 or (lam / mu) / c >= 1:
        return False
    ok = True
    if wait is not None:
        ok &= th.mmc_mean_wait(c, lam, mu) <= wait
    if pwait is not None:
        ok &= th.erlang_c(c, lam / mu) <= pwait
    return ok


@settings(max_examples=150)
@given(
    lam=st.floats(0.01, 500.0),
    mu=st.floats(0.05, 20.0),
    wait=st.one_of(st.none(), st.floats(1e-4, 10.0)),
    pwait=st.one_of(st.none(), st.floats(1e-4, 1.0)),
)
@example(lam=0.85, mu=0.05, wait=None, pwait=1.0)  # a = 17 exactly, c - 1 = 17 unstable
def test_sizing_returns_minimal_c(lam, mu, wait, pwait):
    assume(wait is not None or pwait is not None)
    c = th.erlang_c_servers_for_target(lam, mu, target_wait_s=wait, target_pwait=pwait)
    assert _meets(c, lam, mu, wait, pwait)
    assert c == 1 or not _meets(c - 1, lam, mu, wait, pwait)


def test_sizing_known_cases():
    # a = 1 Erlang: c = 2 gives C = 1/3, W_q = 1/3; c = 3 gives C = 1/11 (W_q = 1/22).
    assert th.erlang_c_servers_for_target(1.0, 1.0, target_pwait=0.5) == 2
    assert th.erlang_c_servers_for_target(1.0, 1.0, target_pwait=0.3) == 3
    assert th.erlang_c_servers_for_target(1.0, 1.0, target_wait_s=0.34) == 2
    assert th.erlang_c_servers_for_target(1.0, 1.0, target_wait_s=0.3) == 3
    # both targets: the stricter one decides
    assert th.erlang_c_servers_for_target(1.0, 1.0, target_wait_s=1.0, target_pwait=0.3) == 3
    # no load: one server is plenty
    assert th.erlang_c_servers_for_target(0.0, 1.0, target_wait_s=0.0) == 1
    # exactly integer load needs one more server just for stability
    assert th.erlang_c_servers_for_target(10.0, 1.0, target_pwait=1.0) == 11
    # large system, ~ a + beta sqrt(a) (square-root staffing)
    c = th.erlang_c_servers_for_target(1000.0, 1.0, target_pwait=0.2)
    assert 1000 + 0.5 * math.sqrt(1000) < c < 1000 + 2 * math.sqrt(1000)


def test_sizing_errors():
    with pytest.raises(ValueError, match="at least one"):
        th.erlang_c_servers_for_target(1.0, 1.0)
    with pytest.raises(ValueError, match="zero waiting target"):
        th.erlang_c_servers_for_target(1.0, 1.0, target_wait_s=0.0)
    with pytest.raises(ValueError, match="max_c"):
        th.erlang_c_servers_for_target(50.0, 1.0, target_pwait=0.1, max_c=40)
    with pytest.raises(ValueError, match="max_c"):
        th.erlang_c_servers_for_target(50.0, 1.0, target_pwait=1e-9, max_c=55)
    with pytest.raises(ValueError, match="target_pwait"):
        th.erlang_c_servers_for_target(1.0, 1.0, target_pwait=1.5)
    with pytest.raises(ValueError, match="target_wait_s"):
        th.erlang_c_servers_for_target(1.0, 1.0, target_wait_s=-1.0)


# ---------------------------------------------------------------------------------------------
# error messages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: th.erlang_c(2, 2.0),
        lambda: th.erlang_c(3, 5.0),
        lambda: th.mmc_mean_wait(4, 4.0, 1.0),
        lambda: th.mmc_mean_queue_len(1, 2.0, 1.0),
        lambda: th.mmc_mean_sojourn(2, 3.0, 1.0),
        lambda: th.mmc_wait_quantile(2, 3.0, 1.0, 0.5),
        lambda: th.mm1_mean_wait(1.0, 1.0),
        lambda: th.mg1_mean_wait(1.0, 1.0, 1.0),
        lambda: th.md1_mean_wait(2.0, 0.5),
    ],
)
def test_unstable_load_message(call):
    with pytest.raises(ValueError, match=r"rho = .* >= 1: the queue is unstable"):
        call()


def test_unstable_message_shows_rho():
    with pytest.raises(ValueError, match=r"rho = 1\.25 >= 1"):
        th.mmc_mean_wait(4, 5.0, 1.0)


@pytest.mark.parametrize("c", [0, -1, 2.5, "3", None, True])
def test_bad_server_count(c):
    with pytest.raises(ValueError, match="number of servers"):
        th.erlang_b(c, 1.0)
    with pytest.raises(ValueError, match="number of servers"):
        th.mmc_mean_wait(c, 0.1, 1.0)


def test_integral_float_and_numpy_server_counts_are_accepted():
    assert th.erlang_b(2.0, 1.0) == th.erlang_b(np.int64(2), 1.0) == th.erlang_b(2, 1.0)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: th.erlang_b(2, -1.0), "offered load"),
        (lambda: th.erlang_b(2, math.inf), "offered load"),
        (lambda: th.erlang_c(2, math.nan), "offered load"),
        (lambda: th.mmc_mean_wait(2, -1.0, 1.0), "arrival rate"),
        (lambda: th.mmc_mean_wait(2, 1.0, 0.0), "service rate"),
        (lambda: th.mmc_mean_wait(2, 1.0, -1.0), "service rate"),
        (lambda: th.mmc_wait_quantile(2, 1.0, 1.0, 1.0), "quantile level"),
        (lambda: th.mmc_wait_quantile(2, 1.0, 1.0, -0.1), "quantile level"),
        (lambda: th.mm1_mean_wait(-0.5, 1.0), "arrival rate"),
        (lambda: th.mg1_mean_wait(0.5, 0.0, 1.0), "mean service time"),
        (lambda: th.mg1_mean_wait(0.5, 1.0, 0.5), r"E\[S\^2\] >= E\[S\]\^2"),
        (lambda: th.md1_mean_wait(0.5, -1.0), "service time"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# the exact FIFO reference queue
# ---------------------------------------------------------------------------------------------


def test_fifo_waits_hand_example():
    # two servers; customers 3 and 4 find both busy
    arr = [0.0, 0.0, 1.0, 1.5, 10.0]
    svc = [2.0, 3.0, 1.0, 1.0, 1.0]
    # free times after customers 1, 2: {2, 3}; customer 3 waits 1 (starts 2, done 3);
    # customer 4 waits 1.5 (starts 3); customer 5 finds everything idle
    np.testing.assert_allclose(fifo_waits(arr, svc, 2), [0.0, 0.0, 1.0, 1.5, 0.0])
    np.testing.assert_allclose(fifo_waits(arr, svc, 5), 0.0)
    assert fifo_waits([], [], 3).shape == (0,)


def test_fifo_waits_errors():
    with pytest.raises(ValueError, match="number of servers"):
        fifo_waits([0.0], [1.0], 0)
    with pytest.raises(ValueError, match="differ in length"):
        fifo_waits([0.0, 1.0], [1.0], 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        fifo_waits([1.0, 0.5], [1.0, 1.0], 1)
    with pytest.raises(ValueError, match=">= 0"):
        fifo_waits([0.0, 1.0], [1.0, -1.0], 1)
    with pytest.raises(ValueError, match="finite"):
        fifo_waits([0.0, math.nan], [1.0, 1.0], 1)


_int_inputs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 20), min_size=n, max_size=n),
        st.lists(st.integers(0, 40), min_size=n, max_size=n),
    )
)


@settings(max_examples=200)
@given(data=_int_inputs, c=st.integers(1, 8))
def test_fifo_waits_exactly_matches_naive_reference_on_integer_input(data, c):
    # integer-valued times make every float operation exact, so equality must be exact
    gaps, svc = data
    arr = np.cumsum(gaps).astype(float)
    svc = np.asarray(svc, dtype=float)
    got = fifo_waits(arr, svc, c)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, naive_fifo_waits(arr.tolist(), svc.tolist(), c))
    if c == 1:
        np.testing.assert_array_equal(got, lindley_waits(arr.tolist(), svc.tolist()))


@settings(max_examples=150)
@given(
    n=st.integers(1, 80),
    c=st.integers(1, 6),
    rho=st.floats(0.3, 1.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_fifo_waits_matches_naive_reference_on_random_input(n, c, rho, seed):
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1.0, n)) + 1e6 * rng.random()  # arbitrary time origin
    svc = rng.exponential(c * rho, n)
    got = fifo_waits(arr, svc, c)
    want = naive_fifo_waits(arr.tolist(), svc.tolist(), c)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.all(got >= 0)


def test_fifo_waits_more_servers_never_wait_longer():
    rng = np.random.default_rng(7)
    arr = np.cumsum(rng.exponential(1.0, 5000))
    svc = rng.exponential(2.5, 5000)
    w3, w4 = fifo_waits(arr, svc, 3), fifo_waits(arr, svc, 4)
    assert np.all(w4 <= w3 + 1e-9)


# --- statistical agreement with M/M/c theory ---------------------------------------------------

C_SERVERS, RHO, MU = 4, 0.8, 1.0
LAM = RHO * C_SERVERS * MU
N_CUSTOMERS, WARMUP, SEEDS = 200_000, 20_000, (11, 12, 13, 14, 15)


@pytest.fixture(scope="module")
def mmc_runs():
    """Waits of 5 independent M/M/4 runs at rho = 0.8 (warm-up dropped)."""
    runs = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        arr = np.cumsum(rng.exponential(1.0 / LAM, N_CUSTOMERS))
        svc = rng.exponential(1.0 / MU, N_CUSTOMERS)
        runs.append(fifo_waits(arr, svc, C_SERVERS)[WARMUP:])
    return runs


def test_fifo_waits_agree_with_mmc_mean_wait(mmc_runs):
    expected = th.mmc_mean_wait(C_SERVERS, LAM, MU)  # ~ 0.7455
    mean, hw = mean_ci([w.mean() for w in mmc_runs])
    assert abs(mean - expected) <= hw, (mean, hw, expected)
    assert hw < 0.05 * expected  # the check is sharp, not vacuous


def test_fifo_waits_agree_with_erlang_c_and_wait_quantiles(mmc_runs):
    pwait = th.erlang_c(C_SERVERS, LAM / MU)
    mean, hw = mean_ci([np.mean(w > 0) for w in mmc_runs])
    assert abs(mean - pwait) <= hw, (mean, hw, pwait)
    for q in (0.5, 0.9, 0.99):
        t_q = th.mmc_wait_quantile(C_SERVERS, LAM, MU, q)
        mean, hw = mean_ci([np.mean(w > t_q) for w in mmc_runs])
        assert abs(mean - (1 - q)) <= hw, (q, mean, hw)
