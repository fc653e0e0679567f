"""The admission-time batching rule against a per-iteration continuous-batching model.

The engine's rule (``simulate_admission(..., prefill_wait=True)``) measured against
``simulate_iterations`` (seed 1, 20,000 requests per load, Poisson arrivals at rho x capacity):

=====================  ====  ========================  =========  =========  ==============
deployment / workload  rho   per-request service err   service    latency    TTFT (without
                                                       mean a/r   mean a/r   prefill wait)
=====================  ====  ========================  =========  =========  ==============
8B L40S, 400/60 tok    0.3   mean 11 %, p95 28 %       1.03       1.03       0.93 (0.57)
(voice turn)           0.6   mean 15 %, p95 41 %       1.04       1.03       0.87 (0.45)
                       0.9   mean 19 %, p95 52 %       1.05       1.04       0.70 (0.28)
                       1.2   mean  8 %, p95 22 %       1.02       1.09       1.09 (1.03)
70B H100 TP2,          0.3   mean 13 %, p95 34 %       1.02       1.01       0.96 (0.71)
1500/300 tok           0.6   mean 20 %, p95 53 %       1.03       1.03       0.88 (0.49)
(reasoning)            0.9   mean 26 %, p95 71 %       1.05       1.04       0.68 (0.25)
                       1.2   mean 12 %, p95 33 %       1.02       1.11       1.12 (1.02)
=====================  ====  ========================  =========  =========  ==============

("a/r" = admission-time rule / reference.) Without the prefill-stall term the mean service time
is 18-72 % too short and, at rho 1.2, the replica serves 20 % more than it can. Without the
prefill wait (a request's first token waiting for earlier prefills, or half the decode step in
progress), TTFT below saturation is only 0.25-0.71 of the reference's (column in brackets).
"""

from __future__ import annotations

import numpy as np
import pytest
from _inference_helpers import one_replica_run

from aigrid_sim.serving.batching import capacity_rps, simulate_admission, simulate_iterations
from aigrid_sim.serving.catalog import Catalog
from aigrid_sim.workload.generate import lognormal_ints

CAT = Catalog.default()


def workload(dep, rho, n, isl, in_cv, osl, out_cv, seed=1):
    r = np.random.default_rng(seed)
    i = lognormal_ints(r, isl, in_cv, n, 32768)
    o = lognormal_ints(r, osl, out_cv, n, 4096)
    t = np.cumsum(r.exponential(1.0 / (rho * capacity_rps(dep, i.mean(), o.mean())), n))
    return t, i, o


def test_reference_single_request_is_prefill_then_decode_steps():
    dep = CAT.deployment("llama-3.3-70b-fp8", "H100")
    tr = simulate_iterations(dep, [2.0], [1000], [50])
    assert tr.t_first[0] == pytest.approx(2.0 + 1000 * dep.prefill_s_per_token)
    assert tr.t_done[0] == pytest.approx(tr.t_first[0] + 49 * dep.tpot_s[1])


def test_reference_prefill_stalls_the_batch():
    """A request arriving mid-decode is prefilled at the next step boundary, delaying the other."""
    dep = CAT.deployment("llama-3.3-70b-fp8", "H100")
    alone = simulate_iterations(dep, [0.0], [100], [200])
    both = simulate_iterations(dep, [0.0, 0.5], [100, 3000], [200, 10])
    assert both.t_done[0] > alone.t_done[0] + 3000 * dep.prefill_s_per_token * 0.99
    step = dep.tpot_s[1]
    assert both.t_start[1] - 0.5 < step + 1e-9  # joined at the first boundary after arriving


@pytest.mark.parametrize("rho", [0.5, 1.3])
def test_reference_and_rule_agree_on_saturation_throughput(rho):
    dep = CAT.deployment("llama-3.1-8b-fp8", "L40S")
    t, i, o = workload(dep, rho, 6000, 400, 0.0, 60, 0.0)
    ref = simulate_iterations(dep, t, i, o)
    rule = simulate_admission(dep, t, i, o)
    thr_ref = o.sum() / np.nanmax(ref.t_done)
    thr_rule = o.sum() / np.nanmax(rule.t_done)
    assert thr_rule == pytest.approx(thr_ref, rel=0.05)
    if rho > 1:
        assert thr_ref == pytest.approx(dep.legacy_saturation_out_tok_s(400, 60), rel=0.05)


@pytest.mark.parametrize("model,gpu,isl,in_cv,osl,out_cv", [
    ("llama-3.1-8b-fp8", "L40S", 400, 0.8, 60, 0.6),
    ("llama-3.3-70b-fp8", "H100", 1500, 1.0, 300, 0.8),
])
@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9, 1.2])
def test_admission_rule_error_against_per_iteration_model(model, gpu, isl, in_cv, osl, out_cv,
                                                          rho):
    """Bounds on the error measured in the module docstring (with a little slack)."""
    dep = CAT.deployment(model, gpu)
    t, i, o = workload(dep, rho, 20000, isl, in_cv, osl, out_cv)
    ref = simulate_iterations(dep, t, i, o)
    rule = simulate_admission(dep, t, i, o, prefill_wait=True)  # what the engine applies
    err = np.abs(rule.service_s / ref.service_s - 1.0)
    assert err.mean() < 0.30
    assert np.percentile(err, 95) < 0.80
    assert rule.service_s.mean() / ref.service_s.mean() == pytest.approx(1.0, abs=0.07)
    latency = (rule.t_done - t).mean() / (ref.t_done - t).mean()
    assert latency == pytest.approx(1.0, abs=0.06 if rho < 1 else 0.15)
    ttft = (rule.t_first - t).mean() / (ref.t_first - t).mean()
    assert 0.6 < ttft < 1.2
    # Without the prefill wait the first token comes much too early below saturation.
    if rho < 1:
        early = simulate_admission(dep, t, i, o)
        assert (early.t_first - t).mean() / (ref.t_first - t).mean() < ttft - 0.2
    # Without the prefill-stall term, service is much too short once batches fill.
    plain = simulate_admission(dep, t, i, o, stall=False)
    if rho >= 0.6:
        assert plain.service_s.mean() / ref.service_s.mean() < 0.75


def test_engine_applies_the_admission_rule():
    """The engine on a one-replica world gives exactly simulate_admission's times."""
    r = one_replica_run("llama-3.1-8b-fp8", "L40S", rate=25.0, requests=3000, isl=400, osl=60,
                        in_cv=0.8, out_cv=0.6, drain_s=1e6)
    st, rec = r.stream, r.records
    dep = r.world.site_deployment[0]
    rule = simulate_admission(dep, st.t, st.in_tokens, st.out_tokens, prefill_wait=True)
    assert (r.requests["status"] == "ok").all()
    np.testing.assert_allclose(rec.t_start, rule.t_start, rtol=0, atol=1e-7)
    np.testing.assert_allclose(rec.service_s, rule.service_s, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(rec.t_start + rec.prefill_s, rule.t_first, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(rec.batch, rule.batch)
    assert rec.batch.max() > 10  # batches did form


def test_ttft_tpot_gpu_seconds_recorded_per_request():
    dep = CAT.deployment("llama-3.3-70b-fp8", "H100")
    # Sparse arrivals (one per ~80 min, service ~3 s): every request is alone on the replica.
    r = one_replica_run("llama-3.3-70b-fp8", "H100", rate=0.0002, requests=40, isl=800, osl=120,
                        in_cv=0.5, out_cv=0.5, drain_s=1e4)
    q = r.requests
    assert (q["status"] == "ok").all() and (q["batch"] == 1).all()
    pre_ms = q["in_tokens"] * dep.prefill_s_per_token * 1000
    np.testing.assert_allclose(q["ttft_ms"], pre_ms, rtol=1e-9)
    np.testing.assert_allclose(q["tpot_ms"], dep.tpot_s[1] * 1000, rtol=1e-9)
    np.testing.assert_allclose(q["latency_ms"], pre_ms + q["out_tokens"] * dep.tpot_s[1] * 1000,
                               rtol=1e-9)
    # GPU-seconds: the slot's share of the replica's GPUs for the service time.
    np.testing.assert_allclose(q["gpu_s"], q["service_ms"] / 1000 * dep.gpus_per_replica
                               / dep.max_batch, rtol=1e-9)
    assert (q["cost_usd"] > 0).all()


def test_reference_rejects_bad_input():
    dep = CAT.deployment("llama-3.3-70b-fp8", "H100")
    with pytest.raises(ValueError):
        simulate_iterations(dep, [1.0, 0.5], [10, 10], [5, 5])
    with pytest.raises(ValueError):
        simulate_admission(dep, [0.0], [10], [0])
