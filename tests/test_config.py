"""Configuration: composition, schema checks and the errors users see."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

import aigrid_sim
from aigrid_sim import config
from aigrid_sim.errors import ConfigError


def errors_for(overrides, scenario="global_agent"):
    with pytest.raises(ConfigError) as e:
        aigrid_sim.run(scenario, overrides)
    return str(e.value)


def test_every_scenario_composes_and_validates():
    for name in config.available_scenarios():
        sim = config.validate(config.compose(name))
        assert sim.name == name


@pytest.mark.parametrize("overrides, words", [
    (["policy=teleport"], ["key 'policy'", "teleport", "cheapest_feasible"]),
    (["foo=1"], ["unknown key 'foo'"]),
    (["world.edge.gpus=0"], ["world.edge.gpus", "must be > 0"]),
    (["workload.rate_rps=-5"], ["workload.rate_rps", ">= 0"]),
    (["load=-1"], ["key 'load'"]),
    (["world.core.gpu=B300"], ["unknown gpu 'B300'", "H200"]),
    (["world.core.gpus=4"], ["world.core.gpus", "cannot hold one replica"]),
    (["workload.apps.0.capability=9"], ["capability 9", "no site offers it"]),
    (["workload.arrivals.kind=sometimes"], ["workload.arrivals.kind", "poisson"]),
    (["routing.params.bogus=1"], ["routing.params.bogus", "+routing.params.bogus="]),
    (["+routing.params.bogus=1"], ["routing.params", "bogus"]),
    (["world.core.sites=[mars:olympus-1]"], ["world.core.sites", "mars:olympus-1"]),
    (["duration_s=abc"], ["duration_s"]),
])
def test_bad_config_gives_one_clear_error(overrides, words):
    msg = errors_for(overrides)
    for w in words:
        assert w in msg, msg
    assert "Traceback" not in msg


def test_unknown_scenario_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'.*global_agent"):
        config.compose("nope")


def test_unknown_key_inside_a_scenario_file_is_caught(tmp_path):
    (tmp_path / "scenario").mkdir()
    (tmp_path / "scenario" / "typo.yaml").write_text(
        "# @package _global_\nname: typo\nworld:\n  edge:\n    gpuz: 3\n")
    with pytest.raises(ConfigError, match="world.edge.gpuz"):
        config.validate(config.compose("typo", config_dir=tmp_path))


def test_user_scenario_folder_adds_to_the_shipped_tree(tmp_path, monkeypatch):
    """A folder of one's own scenarios is searched after the shipped tree (pkg://)."""
    (tmp_path / "scenario").mkdir()
    (tmp_path / "scenario" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /apps: customer_agent\nname: mine\nseed: 5\n")
    sim = config.validate(config.compose("mine", ["world.edge.gpus=3"], config_dir=tmp_path))
    assert (sim.name, sim.seed, sim.world.edge.gpus) == ("mine", 5, 3)
    shipped = config.validate(config.compose("global_agent")).workload.apps
    assert [a.name for a in sim.workload.apps] == [a.name for a in shipped]  # via /apps
    assert "mine" in config.available_scenarios(tmp_path)
    monkeypatch.setenv("AIGRID_SCENARIOS", str(tmp_path))
    assert config.validate(config.compose("mine")).name == "mine"


def test_user_scenario_with_a_shipped_name_is_one_clear_error(tmp_path):
    (tmp_path / "scenario").mkdir()
    (tmp_path / "scenario" / "mmc.yaml").write_text("# @package _global_\nname: x\n")
    with pytest.raises(ConfigError, match="mmc.yaml: a shipped scenario has this name"):
        config.compose("mmc", config_dir=tmp_path)
    with pytest.raises(ConfigError, match="no such folder"):
        config.compose("mmc", config_dir=tmp_path / "nope")


def test_scenario_knobs_are_allowed_when_used(tmp_path):
    """Mmc's top-level servers/arrival_rate/... are accepted because the scenario uses them."""
    sim = config.validate(config.compose("mmc", ["servers=3", "arrival_rate=2.5"]))
    assert sim.params["servers"] == 3
    assert sim.world.sites[0].gpus == 3
    assert sim.workload.rate_rps == 2.5


def test_config_yaml_defaults_match_the_schema():
    """aigrid_sim/scenarios/config.yaml and the SimConfig dataclass agree on every default."""
    yaml_cfg = OmegaConf.load(config.scenarios_dir() / "config.yaml")
    for key in ("defaults", "hydra"):
        yaml_cfg.pop(key, None)
    schema = OmegaConf.to_container(OmegaConf.structured(config.SimConfig))
    from_yaml = OmegaConf.to_container(yaml_cfg)
    # The default app list in config.yaml is one generic app, as in the schema.
    assert from_yaml == schema, _diff(from_yaml, schema)


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            if a.get(k) != b.get(k):
                return _diff(a.get(k), b.get(k), f"{path}.{k}")
    return f"{path}: yaml={a!r} schema={b!r}"


def test_schema_fields_documented():
    """Every section of the schema is a dataclass with defaults (no required fields)."""
    for f in dataclasses.fields(config.SimConfig):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
