"""Config, trace and catalogue fuzzing: every bad value stops in one line naming where it is.

Hypothesis draws a leaf key of the schema (every one, through the domain table) and a value from
the classes of mistakes users make (negative, zero, huge, tiny, NaN, inf, wrong type, empty list,
unknown name). Each run must either stop with a :class:`ConfigError` whose one-line message names
the key (exit status 2 in the CLI), or complete and conserve requests with a finite, non-negative
cost. Never another exception, never over the time limit. The same for trace rows and catalogue
fields. ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import math
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigrid_sim import config as cfgmod
from aigrid_sim.api import preflight, run_config
from aigrid_sim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 60  # per example, generous for a loaded CI machine; tiny runs take ~1 s

# Tiny runs on a small world (a few European countries), and for the keys of each list of the
# schema a base with one element in that list, so that its keys can be drawn.
SMALL = ["world.cities.max_cities=30", "world.cities.countries=[DE,FR,GB,IE,NL]",
         "world.edge.countries=[DE,FR,GB,IE,NL]", "world.regional.providers=[aws]",
         "duration_s=2", "workload.rate_rps=20", "drain_s=20", "output.figures=false",
         "output.write=false"]
LISTS = {
    "world.sites": "+world.sites=[{id: extra-core, tier: core, lat: 50.0, lon: 8.0, gpu: H200,"
                   " model: llama-3.1-405b-fp8, gpus: 8, max_queue: 100}]",
    "faults.outages": "faults.outages=[{site: regional-aws-eu-central-1, start_s: 0.5,"
                      " duration_s: 1.0}]",
    "faults.links": "faults.links=[{a: regional-aws-eu-central-1, b: regional-aws-eu-west-1,"
                    " start_s: 0.5, duration_s: 1.0}]",
    "workload.arrivals.mmpp": "workload.arrivals.mmpp.states=[{rate: 1.0, mean_sojourn_s: 1.0},"
                              " {rate: 2.0, mean_sojourn_s: 1.0}]",
    "workload.arrivals.flash_crowds": "workload.arrivals.flash_crowds=[{region: Europe,"
                                      " start_s: 0.0, ramp_up_s: 0.5, duration_s: 1.0,"
                                      " ramp_down_s: 0.5, factor: 2.0}]",
}
TRACE_BASE = [*SMALL[:4], "duration_s=5", "trace.end_s=5", "drain_s=20",
              "output.figures=false", "output.write=false"]
CUSTOM_BASE = ["max_requests=50", "requests=50", "output.write=false"]

FIXED_VALUES = ["-1", "0", "1", "-1e9", "1e9", "1e30", "1e-9", "nan", "inf", "-inf", "abc",
                "[]", "null", "true", "nope", "1000000000000", "2.5", "'[x]'", "-0.5", "24",
                "{}", "[1,2]", "''"]
VALUES = st.one_of(
    st.sampled_from(FIXED_VALUES),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**40), 2**40).map(str),
)


def _sample_config() -> cfgmod.SimConfig:
    """A typed config with one element in every list of dataclasses (so their leaves show)."""
    c = cfgmod.SimConfig()
    c.world.sites = [cfgmod.SiteConfig()]
    c.world.origins = [cfgmod.OriginConfig()]
    c.workload.arrivals.mmpp.states = [cfgmod.MMPPStateConfig()] * 2
    c.workload.arrivals.flash_crowds = [cfgmod.FlashCrowdConfig()]
    c.faults.outages = [cfgmod.OutageConfig()]
    c.faults.links = [cfgmod.LinkCutConfig()]
    return c


def leaf_patterns() -> list[str]:
    """Every leaf key of the schema, with ``[]`` for list items."""
    out = set()
    for path, v in cfgmod.leaves(_sample_config()):
        if isinstance(v, (dict, list)) and path.split(".")[0] != "params":
            out.add(re.sub(r"\[\d+\]", "[]", path))
        elif not isinstance(v, (dict, list)):
            out.add(re.sub(r"\[\d+\]", "[]", path))
    return sorted(p for p in out if p not in ("params", "routing.params"))


def test_every_leaf_key_has_a_declared_domain():
    """Adding a key to the schema means adding its domain to config.DOMAINS (one line)."""
    missing = [p for p in leaf_patterns() if cfgmod.domain_of(p.replace("[]", "[0]")) is None]
    assert not missing, f"declare these keys' domains in aigrid_sim/config.py DOMAINS: {missing}"


def _override_path(pattern: str) -> str:
    return pattern.replace("[]", ".0")


def _base_for(pattern: str) -> tuple[str, list[str]]:
    if pattern.startswith("trace.") and pattern != "trace.skip_bad_rows":
        return "trace_replay", TRACE_BASE
    if pattern.startswith("world.origins"):
        return "mmc", CUSTOM_BASE
    extra = [ov for prefix, ov in LISTS.items() if pattern.startswith(prefix)]
    return "global_agent", [*SMALL, *extra]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _names(msg: str, key: str) -> bool:
    """Whether an error message names ``key`` (or the section it belongs to)."""
    norm = re.sub(r"\[(\d+)\]", r".\1", msg)
    key = re.sub(r"\[(\d+)\]", r".\1", key)
    parts = key.split(".")
    want = ".".join(parts[:2]) if len(parts) > 1 else parts[0]
    return want in norm or key in norm


def run_case(scenario: str, overrides: list[str], key: str, *, names: str | None = None,
             simulate: bool = True) -> str:
    """Run one fuzzed config; returns 'error' or 'ok', failing the test on anything else."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    t0 = time.perf_counter()
    try:
        dcfg = cfgmod.compose(scenario, overrides)
        sim = cfgmod.validate(dcfg)
        preflight(sim)
        if not simulate:
            return "valid"
        r = run_config(dcfg)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg, f"{overrides[-1]}: multi-line message: {msg!r}"
        where = names or key
        assert _names(msg, where) or where in msg, \
            f"{overrides[-1]}: message does not name {where!r}: {msg}"
        return "error"
    except _Timeout:
        pytest.fail(f"{overrides[-1]}: over {LIMIT_S} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    s = r.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["requests"], \
        overrides[-1]
    assert math.isfinite(s["cost_usd"]) and s["cost_usd"] >= 0, (overrides[-1], s["cost_usd"])
    assert time.perf_counter() - t0 < LIMIT_S
    return "ok"


PATTERNS = leaf_patterns()
FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_FILES = settings(max_examples=8, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_SLOW = settings(max_examples=400, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _config_case(pattern: str, value: str, simulate: bool = True) -> None:
    scenario, base = _base_for(pattern)
    path = _override_path(pattern)
    if pattern.endswith(".*"):
        head = path[:-2]
        ov = f"{head}={{regional-aws-eu-central-1: {value}}}"
        key = head
    else:
        ov = f"{path}={value}"
        key = pattern.replace("[]", "[0]")
    if pattern.endswith("[]") and "[]." not in pattern:  # an item of a list of scalars
        ov = f"{path[:-2]}=[{value}]"
        key = pattern[:-2]
    run_case(scenario, [*base, ov], key, simulate=simulate)


@FUZZ
@given(pattern=st.sampled_from(PATTERNS), value=VALUES)
def test_config_fuzz(pattern, value):
    _config_case(pattern, value)


@pytest.mark.slow
@FUZZ_SLOW
@given(pattern=st.sampled_from(PATTERNS), value=VALUES)
def test_config_fuzz_many(pattern, value):
    _config_case(pattern, value)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_key_refuses_nan_or_accepts_it(pattern):
    """Each leaf key once with NaN: refused in one line naming it (or harmless for text keys)."""
    _config_case(pattern, "nan", simulate=False)


@pytest.mark.slow
@pytest.mark.parametrize("value", ["abc", "-1", "inf", "[]", "1e30", "0"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_key_with_every_class_of_mistake(pattern, value):
    _config_case(pattern, value)


# ----------------------------------------------------------------------------- trace rows

TRACE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
TRACE_ROWS = [f"2023-11-16 18:15:{10 + i // 4:02d}.{(i % 4) * 25:02d}00000,{300 + i},{40 + i}"
              for i in range(20)]
TRACE_FIELDS = st.one_of(
    st.sampled_from(["-5", "0", "nan", "inf", "", "abc", "1e30", "99999999999",
                     "2023-13-45 99:99:99", "2023-11-16 18:15:10", "1.5", "-1e9", '"x,y"',
                     "2023-11-16 18:14:00.0", "NaT"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**40), 2**40).map(str),
)


def _trace_case(tmp_path: Path, row: int, col: int, value: str, skip: bool) -> None:
    rows = [r.split(",") for r in TRACE_ROWS]
    rows[row][col] = value
    f = tmp_path / "fuzz_trace.csv"
    f.write_text(TRACE_HEAD + "\n".join(",".join(r) for r in rows) + "\n")
    ov = [*TRACE_BASE, f"trace.path={f}", "trace.end_s=null", "duration_s=20",
          f"trace.skip_bad_rows={'true' if skip else 'false'}"]
    run_case("trace_replay", ov, "trace", names=f.name)


@FUZZ_FILES
@given(row=st.integers(0, 19), col=st.integers(0, 2), value=TRACE_FIELDS, skip=st.booleans())
def test_trace_row_fuzz(tmp_path_factory, row, col, value, skip):
    _trace_case(tmp_path_factory.mktemp("trace"), row, col, value, skip)


# ----------------------------------------------------------------------------- catalogue

CATALOG = yaml.safe_load((ROOT / "aigrid_sim/data/catalog.yaml").read_text())


def catalogue_fields() -> list[tuple[str, ...]]:
    """Every numeric field of the shipped catalogue, as a path of keys."""
    out = [("usable_memory_fraction",)]
    for g, spec in CATALOG["gpus"].items():
        out += [("gpus", g, k) for k, v in spec.items() if isinstance(v, (int, float))]
    for m, spec in CATALOG["models"].items():
        out += [("models", m, k) for k, v in spec.items() if isinstance(v, (int, float))]
        for gpu, sp in (spec.get("speeds") or {}).items():
            out += [("models", m, "speeds", gpu, k) for k, v in sp.items()
                    if isinstance(v, (int, float))]
    return out


CAT_VALUES = st.one_of(
    st.sampled_from([-1, 0, 0.5, float("nan"), float("inf"), -float("inf"), "abc", None, [],
                     1e30, 1e-9, 10**12, True]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _catalogue_case(tmp_path: Path, field: tuple[str, ...], value) -> None:
    import copy

    raw = copy.deepcopy(CATALOG)
    node = raw
    for k in field[:-1]:
        node = node[k]
    node[field[-1]] = value
    f = tmp_path / "fuzz_catalog.yaml"
    f.write_text(yaml.safe_dump(raw))
    run_case("global_agent", [*SMALL, f"world.catalog={f}"], "world", names=f.name)


@FUZZ_FILES
@given(field=st.sampled_from(catalogue_fields()), value=CAT_VALUES)
def test_catalogue_fuzz(tmp_path_factory, field, value):
    _catalogue_case(tmp_path_factory.mktemp("cat"), field, value)


@pytest.mark.slow
@FUZZ_SLOW
@given(field=st.sampled_from(catalogue_fields()), value=CAT_VALUES)
def test_catalogue_fuzz_many(tmp_path_factory, field, value):
    _catalogue_case(tmp_path_factory.mktemp("cat"), field, value)


@pytest.mark.slow
@FUZZ_SLOW
@given(row=st.integers(0, 19), col=st.integers(0, 2), value=TRACE_FIELDS, skip=st.booleans())
def test_trace_row_fuzz_many(tmp_path_factory, row, col, value, skip):
    _trace_case(tmp_path_factory.mktemp("trace"), row, col, value, skip)
