"""The engine against queueing theory, through the ordinary engine path (scenario ``mmc``).

Two kinds of check:

* **Exact.** Fed the same arrival and service times, the engine's waits equal those of an
  independent FIFO reference (:func:`aigrid_sim.results.stats.fifo_waits`, and a finite-waiting-room
  reference below) to float precision, and it rejects exactly the arrivals the reference rejects.
* **Statistical.** Over independent replications (seeds 1..R, the first
  :data:`~aigrid_sim.studies.validate.WARMUP_FRACTION` of each replication's customers dropped as
  warm-up), the analytic value (Erlang C, Pollaczek-Khinchine, Erlang B) lies inside the 99 %
  Student-t confidence interval of the replication means. **Tolerance:** that interval and
  nothing more (no extra slack); to keep the check sharp, each case also requires the interval's
  half-width to be at most a stated share of the analytic value, so a noisy estimate cannot pass
  by being vague.

The default run covers rho 0.3-0.95 and c 1-16 in small samples (seconds); the ``slow`` grid
covers rho 0.3-0.95 and c 1-64 with larger samples.
"""

from __future__ import annotations

import collections
import heapq

import numpy as np
import pytest

import aigrid_sim
from aigrid_sim.results.stats import fifo_waits, mean_ci
from aigrid_sim.studies.validate import CONFIDENCE, QueueCase, run_cases

# ---------------------------------------------------------------------------------------------
# exact: same input, same waits
# ---------------------------------------------------------------------------------------------


def fifo_finite_room(arrivals, services, c: int, room: int):
    """Reference FIFO c-server queue with at most ``room`` waiting: waits (NaN if rejected).

    An arrival is rejected when all ``c`` servers are busy and ``room`` admitted customers are
    still waiting at its arrival instant.
    """
    free = [-np.inf] * c  # heap of the times each server next becomes free
    starts: collections.deque = collections.deque()  # start times of admitted customers, FIFO
    waits = np.full(len(arrivals), np.nan)
    for i, (t, s) in enumerate(zip(arrivals, services, strict=True)):
        while starts and starts[0] <= t:
            starts.popleft()
        if free[0] > t and len(starts) >= room:
            continue  # rejected
        start = max(t, free[0])
        heapq.heapreplace(free, start + s)
        if start > t:
            starts.append(start)
        waits[i] = start - t
    return waits


@pytest.mark.parametrize("servers,rate,kind", [
    (1, 0.9, "exponential"), (3, 2.7, "lognormal"), (16, 15.5, "exponential"),
    (4, 3.0, "deterministic"),
])
def test_engine_waits_equal_fifo_recursion(servers, rate, kind):
    r = aigrid_sim.run("mmc", [f"servers={servers}", f"arrival_rate={rate}", "requests=20000",
                               f"service_kind={kind}", "service_cv=2.0", "drain_s=1e7"])
    s, rec = r.stream, r.records
    assert (r.requests["status"] == "ok").all()
    expected = fifo_waits(s.t, s.work_s, servers)
    assert expected.mean() > 0.05  # the queue did form: the comparison is not between zeros
    # Engine records, and the reported queue_ms of the requests table.
    np.testing.assert_allclose(rec.t_start - s.t, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.requests["queue_ms"].to_numpy() / 1000.0, expected,
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(rec.service_s, s.work_s)


@pytest.mark.parametrize("servers,room", [(1, 0), (8, 0), (2, 3)])
def test_engine_rejections_equal_finite_room_reference(servers, room):
    r = aigrid_sim.run("mmc", [f"servers={servers}", f"arrival_rate={0.95 * servers}",
                               "requests=20000", f"max_queue={room}", "drain_s=1e7"])
    s, req = r.stream, r.requests
    ref = fifo_finite_room(s.t.tolist(), s.work_s.tolist(), servers, room)
    rejected = (req["status"] == "rejected").to_numpy()
    np.testing.assert_array_equal(rejected, np.isnan(ref))
    assert 0.01 < rejected.mean() < 0.5
    assert (req.loc[rejected, "reason"] == "queue_full").all()
    ok = ~rejected
    np.testing.assert_allclose(req["queue_ms"].to_numpy()[ok] / 1000.0, ref[ok], rtol=0,
                               atol=1e-9)


# ---------------------------------------------------------------------------------------------
# statistical: replications against the closed forms
# ---------------------------------------------------------------------------------------------


def check_case(case: QueueCase, max_rel_hw: float, jobs: int = 1) -> None:
    """Check every analytic value of ``case`` against its replications.

    The value must lie in the 99 % CI, and the CI's half-width must be at most ``max_rel_hw``
    of the value.
    """
    (reps,) = run_cases([case], jobs)
    keys = ["blocking"] if case.loss else ["wait", "pwait"] if case.service_kind == \
        "exponential" else ["wait"]
    for key in keys:
        expected = case.expected()[key]
        mean, hw = mean_ci([r[key] for r in reps], CONFIDENCE)
        assert hw <= max_rel_hw * expected, (
            f"{case.title} {key}: interval +-{hw:.4g} too wide for {expected:.4g}; "
            f"add customers or replications")
        assert abs(mean - expected) <= hw, (
            f"{case.title} {key}: simulated {mean:.5g} +- {hw:.3g} (99 %), "
            f"theory {expected:.5g} ({100 * (mean / expected - 1):+.1f} %)")


FAST = [
    (QueueCase("M/M/1", 1, 0.3, 40_000, 6), 0.08),
    (QueueCase("M/M/2", 2, 0.7, 40_000, 6), 0.12),
    (QueueCase("M/M/4", 4, 0.95, 150_000, 6), 0.20),  # rho 0.95: long correlated waits
    (QueueCase("M/M/16", 16, 0.8, 60_000, 6), 0.20),
    (QueueCase("M/D/1", 1, 0.5, 40_000, 6, service_kind="deterministic"), 0.08),
    (QueueCase("M/G/1", 1, 0.5, 40_000, 6, service_kind="lognormal", service_cv=1.5), 0.20),
    (QueueCase("M/M/8/8", 8, 0.7, 30_000, 6, loss=True), 0.10),
    (QueueCase("M/M/1/1", 1, 0.5, 20_000, 6, loss=True), 0.05),
]


@pytest.mark.parametrize("case,max_rel_hw", FAST, ids=[c.title for c, _ in FAST])
def test_replications_agree_with_theory(case, max_rel_hw):
    check_case(case, max_rel_hw)


SLOW = [  # about 44 M customers: some 4-6 minutes on 2 cores
    (QueueCase("M/M/1", 1, 0.5, 100_000, 10), 0.04),
    (QueueCase("M/M/1", 1, 0.9, 200_000, 10), 0.08),
    (QueueCase("M/M/1", 1, 0.95, 800_000, 10), 0.12),
    (QueueCase("M/M/2", 2, 0.95, 800_000, 10), 0.12),
    # rho 0.3: only ~0.35 % of customers wait, in short bursts, so one replication's mean wait
    # has a relative sd of ~0.17 at 90,000 measured customers (400 replications of the exact
    # FIFO reference, fifo_waits, on independent numpy streams). 10 x 100,000 thus expected a
    # 17 % half-width and met the 15 % bound in only 15 of 40 groups of 10; 10 x 400,000
    # expects ~9 % (exceeds 15 % with probability ~0.002).
    (QueueCase("M/M/8", 8, 0.3, 400_000, 10), 0.15),
    (QueueCase("M/M/8", 8, 0.9, 200_000, 10), 0.08),
    (QueueCase("M/M/32", 32, 0.7, 200_000, 10), 0.20),
    (QueueCase("M/M/64", 64, 0.9, 400_000, 10), 0.15),
    (QueueCase("M/M/64", 64, 0.95, 600_000, 10), 0.15),
    (QueueCase("M/D/1", 1, 0.9, 200_000, 10, service_kind="deterministic"), 0.08),
    (QueueCase("M/G/1", 1, 0.7, 400_000, 10, service_kind="lognormal", service_cv=2.0), 0.15),
    (QueueCase("M/M/64/64", 64, 0.9, 100_000, 10, loss=True), 0.10),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,max_rel_hw", SLOW, ids=[c.title for c, _ in SLOW])
def test_replications_agree_with_theory_slow(case, max_rel_hw):
    check_case(case, max_rel_hw, jobs=2)


def test_a_wrong_answer_is_caught():
    """The statistical check has power: a queue with one server fewer is told apart."""
    case = QueueCase("M/M/4", 4, 0.6, 40_000, 6)
    (reps,) = run_cases([case])
    mean, hw = mean_ci([r["wait"] for r in reps], CONFIDENCE)
    from aigrid_sim.studies import theory
    wrong = theory.mmc_mean_wait(4, 2.4, 0.9)  # service 10 % slower
    assert abs(mean - wrong) > hw
