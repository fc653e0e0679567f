"""The catalogue: sourced figures, derived numbers, the step-time physics, memory fit, bad input."""

from __future__ import annotations

import copy
import math

import pytest

from aigrid_sim.api import config_of
from aigrid_sim.errors import ConfigError
from aigrid_sim.serving.catalog import BLOCK_TOKENS, Catalog
from aigrid_sim.world.build import build_world

CAT = Catalog.default()
GEN = [(m, g) for m, g in CAT.pairs() if not CAT.deployment(m, g).fixed]


def test_ships_edge_regional_and_frontier_models():
    m = CAT.models
    assert m["llama-3.1-8b-fp8"].capability == 1 and 1 <= m["llama-3.1-8b-fp8"].params_b <= 8.1
    assert m["llama-3.3-70b-fp8"].capability == 2
    big = CAT.deployment("llama-3.1-405b-fp8", "H200")
    assert big.model.params_b >= 400 and big.gpus_per_replica > 1 and big.model.capability == 3


def test_prices_are_the_sourced_figures():
    assert CAT.gpus["H100"].price_per_hour == 6.88  # AWS p5.48xlarge 55.04 / 8 [S1]
    assert CAT.gpus["H200"].price_per_hour == pytest.approx(63.296 / 8)  # p5en [S2]
    assert CAT.gpus["L40S"].price_per_hour == 1.55  # Nebius [S4]


@pytest.mark.parametrize("model,gpu", GEN)
def test_kv_capacity_is_memory_after_weights_in_whole_blocks(model, gpu):
    d = CAT.deployment(model, gpu)
    free = CAT.usable_memory_fraction * d.gpu.memory_gb * d.gpus_per_replica - d.model.memory_gb
    per_token = d.model.kv_kb_per_token * 1024
    assert d.kv_capacity_tokens % BLOCK_TOKENS == 0 and d.block_tokens == BLOCK_TOKENS
    assert 0 <= free * 1e9 / per_token - d.kv_capacity_tokens < BLOCK_TOKENS


@pytest.mark.parametrize("model,gpu", GEN)
def test_step_time_is_the_physics_divided_by_fitted_efficiencies(model, gpu):
    """Each term: bytes / bandwidth or FLOPs / tensor rate, over a fitted efficiency <= 1."""
    d = CAT.deployment(model, gpu)
    eff = CAT.efficiencies(model, gpu)
    m, g = d.model, d.gpu
    n, bw = d.gpus_per_replica, g.memory_bandwidth_gbs * 1e9
    s = d.step
    assert s.weights_s == pytest.approx(m.memory_gb * 1e9 / n / bw / eff["bandwidth"])
    compute = 2 * m.params_b * 1e9 / n / (g.tflops[m.quantisation] * 1e12 * eff["compute"])
    comm = 0.0
    if n > 1:  # 2 all-reduces per layer of 16-bit activations, ring over the interconnect
        comm = (2 * m.layers * m.hidden_size * 2 * 2 * (n - 1) / n
                / (g.interconnect_gbs * 1e9 * eff["interconnect"]))
    assert s.token_s == pytest.approx(compute + comm)
    assert s.ctx_s == pytest.approx(m.kv_kb_per_token * 1024 / n / bw / eff["attention"])
    for k, v in eff.items():
        assert 0.05 <= v <= 1.0, k  # an efficiency, not a free parameter
    assert 0 <= s.overhead_s < 0.1
    # Step time = overhead + weight read + per-token work + per-context-token work.
    assert s.step_s(1, 0) == pytest.approx(s.overhead_s + s.weights_s + s.token_s)
    assert s.step_s(100, 5000) == pytest.approx(s.step_s(1, 0) + 99 * s.token_s
                                               + 5000 * s.ctx_s)


@pytest.mark.parametrize("model,gpu", GEN)
def test_sequence_places_and_no_fixed_slot_speed_fields(model, gpu):
    d = CAT.deployment(model, gpu)
    # max_batch only shares utilisation and cost: sequences of kv_context_tokens that fit.
    assert d.max_batch == min(d.max_num_seqs, d.kv_capacity_tokens // d.kv_context_tokens)
    # The fixed-slot speed model is gone; speed comes from the step model only.
    for legacy in ("tpot_s", "prefill_s_per_token", "prefill_tok_s", "decode_tok_s",
                   "decode_tok_s_at_max_batch", "service_s", "legacy_saturation_out_tok_s",
                   "kv_cache_gb"):
        assert not hasattr(d, legacy), legacy


@pytest.mark.parametrize("model,gpu", GEN)
def test_saturation_is_monotone_in_the_token_mix(model, gpu):
    d = CAT.deployment(model, gpu)
    # Longer prompts or longer contexts never make a replica emit more tokens per second.
    assert d.saturation_out_tok_s(2048, 128) < d.saturation_out_tok_s(128, 128)
    assert d.saturation_out_tok_s(20000, 2000) < d.saturation_out_tok_s(1000, 2000)
    ss = d.steady_state(1000, 1000)
    assert ss.sequences <= d.max_num_seqs * (1 + 1e-9)
    assert ss.kv_tokens <= d.kv_capacity_tokens * (1 + 1e-9)
    assert ss.decodes + ss.prefill_tokens <= d.max_num_batched_tokens * (1 + 1e-9)


def _raw():
    return copy.deepcopy(CAT._raw)


def test_model_whose_weights_do_not_fit_is_a_config_error():
    raw = _raw()
    raw["models"]["llama-3.1-405b-fp8"]["speeds"]["H200"]["gpus_per_replica"] = 2
    with pytest.raises(ConfigError, match=r"test.yaml: models.llama-3.1-405b-fp8.speeds.H200: "
                                          r"model .* does not fit a replica of 2 x H200.*405 GB"):
        Catalog(raw, "test.yaml").deployment("llama-3.1-405b-fp8", "H200")


def test_admission_comes_from_the_entry_the_catalogue_or_the_run():
    raw = _raw()
    assert Catalog(raw, "test.yaml").deployment("llama-3.1-8b-fp8", "H100").admission == \
        "forecast"
    raw["models"]["llama-3.1-8b-fp8"]["speeds"]["H100"]["admission"] = "vllm"
    cat = Catalog(raw, "test.yaml")
    assert cat.deployment("llama-3.1-8b-fp8", "H100").admission == "vllm"
    assert cat.deployment("llama-3.1-8b-fp8", "L40S").admission == "forecast"
    cat.admission_override = "forecast"  # world.admission wins over the entry
    assert cat.deployment("llama-3.1-8b-fp8", "H100").admission == "forecast"
    raw["models"]["llama-3.1-8b-fp8"]["speeds"]["H100"]["admission"] = "greedy"
    with pytest.raises(ConfigError, match=r"test.yaml: models.llama-3.1-8b-fp8.speeds.H100: "
                                          r"admission must be one of \['forecast', 'vllm'\], "
                                          r"got 'greedy'"):
        Catalog(raw, "test.yaml").deployment("llama-3.1-8b-fp8", "H100")


def test_kv_budget_too_small_is_a_config_error():
    raw = _raw()  # 70.6 GB of weights on one 80 GB H100: 1.4 GB left, 8,960 KV tokens
    raw["models"]["llama-3.3-70b-fp8"]["speeds"]["H100"]["gpus_per_replica"] = 1
    raw["models"]["llama-3.3-70b-fp8"]["speeds"]["H100"]["kv_context_tokens"] = 16384
    with pytest.raises(ConfigError, match=r"speeds.H100: the KV budget .* too small for one "
                                          r"request of kv_context_tokens=16384"):
        Catalog(raw, "test.yaml").deployment("llama-3.3-70b-fp8", "H100")
    raw = _raw()  # weights exactly fill the usable memory: zero KV budget
    raw["models"]["llama-3.1-8b-fp8"]["memory_gb"] = 0.9 * 48 - 1e-9
    with pytest.raises(ConfigError, match=r"KV budget of a replica of 1 x L40S is 0 tokens"):
        Catalog(raw, "test.yaml").deployment("llama-3.1-8b-fp8", "L40S")


@pytest.mark.parametrize("where,key,value", [
    ("gpu", "memory_bandwidth_gbs", float("nan")),
    ("gpu", "fp8_tflops", 0),
    ("eff", "compute", float("inf")),
    ("eff", "bandwidth", -0.5),
    ("speed", "step_overhead_ms", "fast"),
    ("speed", "max_num_seqs", 0),
    ("speed", "max_num_batched_tokens", 1.5),
    ("model", "kv_kb_per_token", 0),
])
def test_bad_constants_are_one_line_config_errors(where, key, value):
    raw = _raw()
    if where == "gpu":
        raw["gpus"]["H100"][key] = value
        name = f"test.yaml: gpus.H100.{key}: expected a finite number > 0"
    elif where == "eff":
        raw["gpus"]["H100"]["efficiency"][key] = value
        name = rf"test.yaml: gpus.H100.efficiency.{key}: expected a finite number > 0"
    elif where == "speed":
        raw["models"]["llama-3.1-8b-fp8"]["speeds"]["H100"][key] = value
        name = rf"speeds.H100.{key}"
    else:
        raw["models"]["llama-3.1-8b-fp8"][key] = value
        name = rf"models.llama-3.1-8b-fp8.{key}"
    with pytest.raises(ConfigError, match=name) as e:
        Catalog(raw, "test.yaml").deployment("llama-3.1-8b-fp8", "H100")
    assert "\n" not in str(e.value)


def test_missing_efficiency_is_a_config_error():
    raw = _raw()
    del raw["gpus"]["H100"]["efficiency"]["attention"]
    with pytest.raises(ConfigError, match=r"gpus.H100.efficiency: missing 'attention'"):
        Catalog(raw, "test.yaml").deployment("llama-3.1-8b-fp8", "H100")


def test_config_naming_a_model_a_gpu_cannot_run_is_a_config_error():
    cfg = config_of("global_agent", ["world.cities.max_cities=50",
                                     "world.edge.model=llama-3.1-405b-fp8"])
    with pytest.raises(ConfigError, match=r"world.edge.*no speed figures on gpu 'L40S'"):
        build_world(cfg)
    cfg = config_of("global_agent", ["world.cities.max_cities=50", "world.core.gpus=4"])
    with pytest.raises(ConfigError, match=r"world.core.gpus"):
        build_world(cfg)


def test_max_batch_override_sets_the_sequence_cap():
    cat = Catalog.default()
    base = cat.deployment("llama-3.3-70b-fp8", "H100")
    small = cat.deployment("llama-3.3-70b-fp8", "H100", max_batch=32)
    assert small.max_num_seqs == 32 and small.max_batch == 32
    assert small.step == base.step and small.kv_capacity_tokens == base.kv_capacity_tokens
    assert small.saturation_out_tok_s(128, 128) < base.saturation_out_tok_s(128, 128)
    with pytest.raises(ConfigError, match="max_batch.*>= 1"):
        cat.deployment("llama-3.3-70b-fp8", "H100", where="world.edge", max_batch=0)


def test_user_catalogue_file(tmp_path):
    """world.catalog points at a user's catalogue; its errors name the file and entry."""
    from importlib import resources

    import yaml as _yaml

    import aigrid_sim

    raw = _yaml.safe_load(resources.files("aigrid_sim").joinpath("data/catalog.yaml").read_text())
    raw["gpus"]["L40S"]["price_per_hour"] = 0.5
    mine = tmp_path / "mine.yaml"
    mine.write_text(_yaml.safe_dump(raw))
    over = ["world.cities.max_cities=50", "duration_s=5", "output.figures=false"]
    a = aigrid_sim.run("global_agent", over)
    b = aigrid_sim.run("global_agent", over + [f"world.catalog={mine}"])
    edge_a = a.sites.loc[a.sites["tier"] == "edge", "cost_usd"].sum()
    edge_b = b.sites.loc[b.sites["tier"] == "edge", "cost_usd"].sum()
    assert edge_b == pytest.approx(edge_a * 0.5 / 1.55)
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        aigrid_sim.run("global_agent", over + [f"world.catalog={bad}"])
    with pytest.raises(ConfigError, match="world.catalog.*no such file"):
        aigrid_sim.run("global_agent", over + [f"world.catalog={tmp_path / 'none.yaml'}"])
    raw["gpus"]["L40S"]["efficiency"]["compute"] = math.nan
    nan = tmp_path / "nan.yaml"
    nan.write_text(_yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"nan.yaml: gpus.L40S.efficiency.compute: "
                                          r"expected a finite number"):
        aigrid_sim.run("global_agent", over + [f"world.catalog={nan}"])
