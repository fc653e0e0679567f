"""Saturation: the engine's replica agrees with ``Deployment.saturation_out_tok_s``.

The ``replica`` scenario (one replica on the normal engine path, no network), Poisson arrivals
at 1.3x the catalogue's saturation rate with fixed token counts; throughput is output tokens of
the requests completing between 30 % and 90 % of the arrival window, over that window.

Measured (:func:`measured_out_tok_s`, ``forecast`` admission, commit 120d50c; engine /
catalogue): 8B L40S 400/60 1.002 (token budget bound), 8B L40S 128/128 0.990
(max_num_seqs), 70B H100 TP2 2048/128 1.000 (KV memory), 8B L40S 20000/2000 0.953 (KV memory),
and KV-bound with outputs as long as prompts (1000/1000): 8B H100 1.021, 405B H200 TP8 1.001,
70B H100 TP2 0.922. The last is not within 5 %: identical requests admitted together still end
together, and the forecast then holds admissions back until the cluster has ended (the batch
swings between about 220 and 320 sequences around the fluid model's 297).

With the ``vllm`` admission (``world.admission=vllm``) the 1000/1000 points were 0.854, 0.784
and 0.800: the batch overshoots the memory and the scheduler preempts (recompute).
"""

from __future__ import annotations

import pytest

import aigrid_sim
from aigrid_sim.serving.catalog import Catalog

CASES = [  # (model, gpu, gpus per replica, isl, osl): one per binding limit
    ("llama-3.1-8b-fp8", "L40S", 1, 400, 60),  # max_num_batched_tokens
    ("llama-3.1-8b-fp8", "L40S", 1, 128, 128),  # max_num_seqs
    ("llama-3.3-70b-fp8", "H100", 2, 2048, 128),  # KV memory
    ("llama-3.1-8b-fp8", "L40S", 1, 20000, 2000),  # KV memory, long context
    ("llama-3.1-8b-fp8", "H100", 1, 1000, 1000),  # KV memory, outputs as long as prompts
    ("llama-3.1-405b-fp8", "H200", 8, 1000, 1000),
]


def measured_out_tok_s(model, gpu, gpus, isl, osl, overload=1.3, extra=()):
    dep = Catalog.default().deployment(model, gpu)
    ss = dep.steady_state(isl, osl)
    n = int(max(8 * ss.sequences, 400))
    r = aigrid_sim.run("replica", [
        f"model={model}", f"gpu={gpu}", f"gpus={gpus}", f"isl={isl}", f"osl={osl}",
        "concurrency=0", f"requests={n}", f"arrival_rate={overload * ss.out_tok_s / osl}",
        *extra])
    ok = r.requests[r.requests["status"] == "ok"]
    end = (ok["arrival_s"] + ok["latency_ms"] / 1000.0).to_numpy()
    t = r.summary["duration_s"]
    win = (end > 0.3 * t) & (end <= 0.9 * t)
    return float(ok["out_tokens"].to_numpy()[win].sum() / (0.6 * t)), ss, r


@pytest.mark.parametrize("model,gpu,gpus,isl,osl", CASES)
def test_saturated_replica_agrees_with_catalogue(model, gpu, gpus, isl, osl):
    thr, ss, r = measured_out_tok_s(model, gpu, gpus, isl, osl)
    assert thr == pytest.approx(ss.out_tok_s, rel=0.05)
    assert r.summary["completed"] == r.summary["requests"]  # it drained: nothing lost
    assert (r.requests["queue_ms"] > 0).mean() > 0.3  # and it really was saturated


def test_kv_bound_70b_within_10_percent_and_the_forecast_beats_preemption():
    """70B H100 TP2 at 1000/1000: the forecast admission is within 10 % of the catalogue.

    0.922 measured, with no preemption; the ``vllm`` admission preempts and serves less (0.800).
    """
    case = ("llama-3.3-70b-fp8", "H100", 2, 1000, 1000)
    thr, ss, r = measured_out_tok_s(*case)
    assert thr == pytest.approx(ss.out_tok_s, rel=0.10)
    assert r.summary["preemptions"] == 0 and r.summary["completed"] == r.summary["requests"]
    v_thr, _, v = measured_out_tok_s(*case, extra=["world.admission=vllm"])
    assert v.summary["preemptions"] > 0 and v.summary["completed"] == v.summary["requests"]
    assert v_thr < 0.9 * thr


def test_below_saturation_throughput_follows_the_load():
    dep = Catalog.default().deployment("llama-3.3-70b-fp8", "H100")
    cap = dep.saturation_out_tok_s(2048, 128)
    r = aigrid_sim.run("replica", [
        "model=llama-3.3-70b-fp8", "gpu=H100", "gpus=2", "isl=2048", "osl=128",
        "concurrency=0", "requests=1500", f"arrival_rate={0.5 * cap / 128}"])
    ok = r.requests[r.requests["status"] == "ok"]
    assert ok["out_tokens"].sum() / r.summary["duration_s"] == pytest.approx(0.5 * cap, rel=0.1)
    assert r.summary["preemptions"] == 0


def test_closed_loop_keeps_concurrency_and_reports_serving_figures():
    r = aigrid_sim.run("replica", ["concurrency=4", "requests=40", "isl=500", "osl=50"])
    s = r.summary
    assert s["completed"] == 40
    # Four clients: at any instant at most four requests are at the replica.
    t0 = r.requests["arrival_s"].to_numpy()
    t1 = t0 + r.requests["latency_ms"].to_numpy() / 1000.0
    for t in t0:
        assert ((t0 <= t) & (t1 > t)).sum() <= 4
    assert s["output_tok_s"] > 0
    for k in ("ttft_ms", "tpot_ms", "latency_ms"):
        assert {"mean", "p50", "p99"} <= set(s[k])
    assert s["tpot_ms"]["mean"] > 0 and s["ttft_ms"]["p50"] < s["latency_ms"]["p50"]
