"""Synthetic arrival processes against theory.

Poisson mean, MMPP dispersion, diurnal shape, flash crowds; plus their config errors, the
flash_crowd scenario and the rate-over-time figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import aigrid_sim
from aigrid_sim import rng as rngs
from aigrid_sim.config import validate
from aigrid_sim.errors import ConfigError
from aigrid_sim.workload.generate import arrival_times_and_origins, generate_stream
from aigrid_sim.workload.processes import (
    MMPP,
    SERVEGEN_DIURNAL,
    FlashCrowd,
    diurnal_curve,
    diurnal_factor,
    mmpp_idc,
)


def make_cfg(rate: float, duration: float, arrivals: dict, seed: int = 1, start_utc_h=0.0):
    """A validated config with only the arrival settings that matter here."""
    return validate({"seed": seed, "duration_s": duration, "start_utc_h": start_utc_h,
                     "workload": {"rate_rps": rate, "arrivals": arrivals}})


def arrivals(cfg, population=(1.0,), offsets=(0.0,), **origins):
    return arrival_times_and_origins(cfg, np.asarray(population, float),
                                     np.asarray(offsets, float),
                                     rngs.generator(cfg.seed, "arrivals"), **origins)


def test_poisson_mean_rate_within_ci():
    cfg = make_cfg(200.0, 1000.0, {"kind": "poisson"})
    t, o = arrivals(cfg)
    mean = 200.0 * 1000.0
    assert abs(len(t) - mean) < 4 * np.sqrt(mean)  # 4 sigma of a Poisson count
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 1000.0
    # Inter-arrival times of a Poisson process are exponential with mean 1/rate.
    gaps = np.diff(t)
    assert abs(gaps.mean() * 200.0 - 1.0) < 0.01


def test_mmpp_rates_normalised_to_stationary_mean_one():
    m = MMPP.build([1.0, 5.0], [20.0, 5.0])
    assert np.allclose(m.stationary, [0.8, 0.2])
    assert m.stationary @ m.rates == pytest.approx(1.0)
    assert m.rates[1] / m.rates[0] == pytest.approx(5.0)


def test_mmpp_path_spends_stationary_fraction_of_time_in_each_state():
    # Three states with an explicit jump matrix: time shares follow nu_i * s_i.
    m = MMPP.build([1.0, 2.0, 6.0], [30.0, 10.0, 3.0],
                   [[0, 0.5, 0.5], [0.9, 0, 0.1], [1.0, 0, 0]])
    starts, states = m.path(np.random.default_rng(5), 400_000.0)
    dur = np.diff(np.append(starts, 400_000.0))
    share = np.bincount(states, weights=dur, minlength=3) / 400_000.0
    assert np.allclose(share, m.stationary, atol=0.01)
    assert np.all(states[1:] != states[:-1])  # every piece is a jump to another state
    assert np.all(states[np.flatnonzero(states[:-1] == 2) + 1] == 0)  # state 2 always -> 0


@pytest.mark.parametrize("window_s", [1.0, 10.0])
def test_mmpp_index_of_dispersion_matches_two_state_theory(window_s):
    """IDC of counts in windows of `window_s` vs the 2-state formula, pooled over 3 seeds.

    States: relative rates 1 and 5, mean sojourns 20 s and 5 s, mean 50 requests/s, so the
    absolute rates are 27.8 and 138.9 /s; theory gives IDC(1 s) = 37.4 and IDC(10 s) = 201.0.
    """
    states = [{"rate": 1.0, "mean_sojourn_s": 20.0}, {"rate": 5.0, "mean_sojourn_s": 5.0}]
    T = 20_000.0
    idcs, means = [], []
    for seed in (1, 2, 3):
        cfg = make_cfg(50.0, T, {"kind": "poisson", "mmpp": {"states": states}}, seed=seed)
        t, _ = arrivals(cfg)
        counts = np.bincount((t // window_s).astype(np.int64), minlength=int(T / window_s))
        idcs.append(counts.var(ddof=1) / counts.mean())
        means.append(len(t) / T)
    lam = 50.0 * np.array([1.0, 5.0]) / 1.8
    theory = mmpp_idc((lam[0], lam[1]), (20.0, 5.0), window_s)
    # Pooled over 3 seeds; single seeds measured 36.9-38.3 (1 s) and 200-211 (10 s).
    assert np.mean(idcs) == pytest.approx(theory, rel=0.08)
    # Mean rate: sd of N(T) is sqrt(IDC(T) * mean * T) ~ 1.3 % per seed here.
    assert np.mean(means) == pytest.approx(50.0, rel=0.03)
    # And it is really bursty: far above Poisson's 1.
    assert min(idcs) > 10


def test_mmpp_per_region_chains_are_independent():
    states = [{"rate": 1.0, "mean_sojourn_s": 50.0}, {"rate": 9.0, "mean_sojourn_s": 50.0}]
    cfg = make_cfg(100.0, 20_000.0,
                   {"kind": "poisson", "mmpp": {"states": states, "scope": "region"}})
    t, o = arrivals(cfg, population=(1.0, 1.0), offsets=(0.0, 0.0), region=["A", "B"])
    c = [np.bincount((t[o == k] // 10).astype(np.int64), minlength=2000) for k in (0, 1)]
    assert np.corrcoef(c[0], c[1])[0, 1] == pytest.approx(0.0, abs=0.1)
    # With one global chain the two regions move together.
    cfg = make_cfg(100.0, 20_000.0, {"kind": "poisson", "mmpp": {"states": states}})
    t, o = arrivals(cfg, population=(1.0, 1.0), offsets=(0.0, 0.0), region=["A", "B"])
    c = [np.bincount((t[o == k] // 10).astype(np.int64), minlength=2000) for k in (0, 1)]
    assert np.corrcoef(c[0], c[1])[0, 1] > 0.8


def hourly_expectation(curve: np.ndarray, rate: float, offset_h: float) -> np.ndarray:
    """Expected arrivals per UTC hour of a day: rate x integral of the interpolated curve."""
    t = np.linspace(0, 24, 24 * 600 + 1)
    f = diurnal_factor(curve, t + offset_h)
    per_hour = [(f[i * 600:(i + 1) * 600 + 1][1:] + f[i * 600:(i + 1) * 600 + 1][:-1]).sum()
                / 2 / 600 for i in range(24)]
    return rate * 3600.0 * np.array(per_hour)


def test_diurnal_shape_over_a_simulated_day_follows_the_sun():
    """Hourly counts over one simulated day vs the curve (chi-square), for two time zones."""
    cfg = make_cfg(10.0, 86_400.0, {"kind": "diurnal"})
    t, o = arrivals(cfg, population=(1.0, 1.0), offsets=(0.0, 8.0))
    curve = diurnal_curve(None)
    for k, off in ((0, 0.0), (1, 8.0)):
        obs = np.bincount((t[o == k] // 3600).astype(np.int64), minlength=24)
        exp = hourly_expectation(curve, 5.0, off)
        assert exp.sum() == pytest.approx(5.0 * 86_400, rel=1e-6)  # a day of the curve = mean 1
        chi2 = ((obs - exp) ** 2 / exp).sum()
        assert stats.chi2.sf(chi2, 23) > 1e-3, (k, chi2)
        # The shape: quietest before dawn, busiest in the evening, local time.
        assert (int(np.argmax(obs)) + off) % 24 in (19, 20, 21)
        assert (int(np.argmin(obs)) + off) % 24 in (1, 2, 3, 4, 5)
    # Peak to trough of the shipped ServeGen-shaped curve.
    assert curve.max() / curve.min() == pytest.approx(SERVEGEN_DIURNAL.max()
                                                      / SERVEGEN_DIURNAL.min())
    assert curve.mean() == pytest.approx(1.0)


def test_flash_crowd_profile_and_multiplier():
    fc = FlashCrowd(start_s=100.0, ramp_up_s=50.0, duration_s=200.0, ramp_down_s=100.0,
                    factor=5.0)
    m = fc.multiplier(np.array([0.0, 100.0, 125.0, 150.0, 349.0, 400.0, 450.0, 451.0]))
    assert np.allclose(m, [1.0, 1.0, 3.0, 5.0, 5.0, 3.0, 1.0, 1.0])
    # Mean over the crowd: 1 + (f - 1) * (ramp_up/2 + duration + ramp_down/2) / length.
    assert fc.mean_multiplier(100.0, 450.0) == pytest.approx(1 + 4 * 275 / 350, rel=1e-6)
    step = FlashCrowd(10.0, 0.0, 5.0, 0.0, 2.0)
    assert np.allclose(step.multiplier(np.array([9.99, 10.0, 14.99, 15.0])), [1, 2, 2, 1])


def test_flash_crowd_multiplies_only_its_region():
    crowd = {"region": "A", "start_s": 100.0, "ramp_up_s": 50.0, "duration_s": 200.0,
             "ramp_down_s": 50.0, "factor": 4.0}
    cfg = make_cfg(200.0, 500.0, {"kind": "poisson", "flash_crowds": [crowd]})
    t, o = arrivals(cfg, population=(1.0, 1.0), offsets=(0.0, 0.0), region=["A", "B"])
    for k, factor in ((0, 4.0), (1, 1.0)):
        plateau = ((t >= 150) & (t < 350) & (o == k)).sum()
        exp = 100.0 * 200.0 * factor
        assert abs(plateau - exp) < 4 * np.sqrt(exp)
        before = ((t < 100) & (o == k)).sum()
        assert abs(before - 100.0 * 100.0) < 4 * np.sqrt(100.0 * 100.0)
    # Whole crowd on region A: mean multiplier over [100, 400] = 1 + 3 * 250/300.
    n = ((t >= 100) & (t < 400) & (o == 0)).sum()
    exp = 100.0 * 300.0 * (1 + 3 * 250 / 300)
    assert abs(n - exp) < 4 * np.sqrt(exp)


@pytest.mark.parametrize("arrivals_cfg, key", [
    ({"mmpp": {"states": [{"rate": 1.0, "mean_sojourn_s": 5.0}]}}, "workload.arrivals.mmpp.states"),
    ({"mmpp": {"states": [{"rate": 1.0, "mean_sojourn_s": 0.0},
                          {"rate": 2.0, "mean_sojourn_s": 1.0}]}},
     "workload.arrivals.mmpp.states[0].mean_sojourn_s"),
    ({"mmpp": {"scope": "city"}}, "workload.arrivals.mmpp.scope"),
    ({"flash_crowds": [{"factor": -1.0}]}, "workload.arrivals.flash_crowds[0].factor"),
    ({"kind": "trace", "flash_crowds": [{"factor": 2.0}]}, "workload.arrivals"),
])
def test_bad_arrival_settings_name_the_key(arrivals_cfg, key):
    with pytest.raises(ConfigError, match=f"key '{key.replace('[', '.').replace(']', '.')}"):
        make_cfg(10.0, 10.0, arrivals_cfg)


def test_bad_mmpp_transitions_and_unknown_region_name_the_key():
    states = [{"rate": 1.0, "mean_sojourn_s": 5.0}, {"rate": 2.0, "mean_sojourn_s": 5.0}]
    cfg = make_cfg(10.0, 10.0, {"mmpp": {"states": states, "transitions": [[0.5, 0.5],
                                                                           [1.0, 0.0]]}})
    with pytest.raises(ConfigError, match="workload.arrivals.mmpp.transitions"):
        arrivals(cfg)
    cfg = make_cfg(10.0, 10.0, {"flash_crowds": [{"region": "Atlantis"}]})
    with pytest.raises(ConfigError, match=r"flash_crowds\[0\].region': no origin matches "
                                          r"\['Atlantis'\]; available: A, B"):
        arrivals(cfg, population=(1.0, 1.0), offsets=(0.0, 0.0), region=["A", "B"])


def test_synthetic_streams_are_reproducible_bit_for_bit():
    states = [{"rate": 1.0, "mean_sojourn_s": 5.0}, {"rate": 3.0, "mean_sojourn_s": 2.0}]
    cfg = make_cfg(100.0, 100.0, {"kind": "diurnal", "mmpp": {"states": states},
                                  "flash_crowds": [{"start_s": 10.0}]})
    pop, off = np.array([2.0, 1.0]), np.array([0.0, 9.0])
    a = generate_stream(cfg, pop, off)
    b = generate_stream(cfg, pop, off)
    assert np.array_equal(a.t, b.t) and np.array_equal(a.origin, b.origin)
    assert np.array_equal(a.in_tokens, b.in_tokens)
    assert a.info["source"] == "synthetic" and a.info["mmpp_states"] == 2
    c = generate_stream(make_cfg(100.0, 100.0, {"kind": "diurnal", "mmpp": {"states": states},
                                                "flash_crowds": [{"start_s": 10.0}]}, seed=2),
                        pop, off)
    assert not np.array_equal(a.t[:100], c.t[:100])


def test_flash_crowd_scenario_quadruples_europe_during_the_plateau(small_overrides, tmp_path):
    ov = [o for o in small_overrides if not o.startswith(("duration_s", "output.figures"))]
    r = aigrid_sim.run("flash_crowd", ov + ["duration_s=240", "drain_s=30",
                                            "output.figures=true"], out_dir=tmp_path)
    assert (r.out_dir / "rate_over_time.png").stat().st_size > 10_000
    q = r.requests
    eu = q[q["region"] == "Europe"]["arrival_s"].to_numpy()
    other = q[q["region"] != "Europe"]["arrival_s"].to_numpy()
    before = ((eu < 60).sum() / 60.0, (other < 60).sum() / 60.0)
    plateau = (((eu >= 90) & (eu < 210)).sum() / 120.0,
               ((other >= 90) & (other < 210)).sum() / 120.0)
    assert plateau[0] / before[0] == pytest.approx(4.0, rel=0.15)
    assert plateau[1] / before[1] == pytest.approx(1.0, rel=0.1)
    counts = r.summary
    assert counts["completed"] + counts["rejected"] + counts["failed"] \
        + counts["in_flight"] == counts["requests"]


def test_rate_over_time_figure_is_drawn_for_time_varying_runs(tmp_path):
    from aigrid_sim.results import plots
    rng = np.random.default_rng(3)
    flat = np.sort(rng.uniform(0, 300, 30_000))
    burst = np.sort(np.concatenate([flat, rng.uniform(100, 150, 10_000)]))

    def table(t):
        n = len(t)
        tier = pd.Categorical.from_codes(rng.integers(-1, 3, n), ["edge", "regional", "core"])
        ok = np.asarray(tier.codes) >= 0
        return pd.DataFrame({"arrival_s": t, "tier": tier,
                             "status": np.where(ok, "ok", "rejected"),
                             "latency_ms": np.where(ok, rng.lognormal(5, 1, n), np.nan)})

    assert not plots.is_time_varying(table(flat))
    assert plots.is_time_varying(table(burst))
    p = plots.rate_and_p95_over_time(table(burst), tmp_path / "r.png")
    assert p.exists() and p.stat().st_size > 10_000
