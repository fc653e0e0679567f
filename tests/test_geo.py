"""aigrid_sim.world.geo: distances, the fibre floor, shapes, codes, and the shipped RTT fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigrid_sim.world import geo
from aigrid_sim.world.geo import estimate_rtt_ms, fibre_floor_ms, great_circle_km

# The shared data folder sits next to the checkout (../shared) or next to its worktree folder.
DATA_DIR = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[2:4]
                    if (p / "shared" / "data").is_dir()),
                   Path(__file__).resolve().parents[2] / "shared" / "data")

LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)
FRANKFURT = (50.1109, 8.6821)
TOKYO = (35.6762, 139.6503)
SEOUL = (37.5665, 126.9780)
SYDNEY = (-33.8688, 151.2093)
SINGAPORE = (1.3521, 103.8198)
NAIROBI = (-1.2921, 36.8219)
DAR_ES_SALAAM = (-6.7924, 39.2083)


def test_great_circle_known_values():
    assert great_circle_km(*LONDON, *NEW_YORK) == pytest.approx(5570, abs=15)
    assert great_circle_km(*LONDON, *LONDON) == 0.0
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(np.pi * geo.EARTH_RADIUS_KM)
    assert great_circle_km(0, 0, 90, 0) == pytest.approx(np.pi / 2 * geo.EARTH_RADIUS_KM)


def test_fibre_floor():
    assert fibre_floor_ms(1000.0) == pytest.approx(2 * 1000 / 199.86)
    assert fibre_floor_ms(0.0) == 0.0


codes = st.sampled_from(
    [None, "US", "DE", "KE", "CN", "AU", "BR", "NA", "FJ", "AQ", "de", "ZZ", "XX", "USA", "", "1A"])
lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)


paths = st.sampled_from(geo.PATHS)


@settings(max_examples=400, deadline=None)
@given(lats, lons, lats, lons, codes, codes, paths)
def test_never_below_fibre_floor_scalar(lat1, lon1, lat2, lon2, c1, c2, path):
    rtt = estimate_rtt_ms(lat1, lon1, lat2, lon2, c1, c2, path=path)
    assert np.ndim(rtt) == 0 and np.isfinite(rtt) and rtt > 0
    assert rtt >= fibre_floor_ms(great_circle_km(lat1, lon1, lat2, lon2))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(lats, lons, lats, lons, codes, codes), min_size=1, max_size=40), paths)
def test_never_below_fibre_floor_arrays(rows, path):
    cols = list(zip(*rows, strict=True))[:4]
    lat1, lon1, lat2, lon2 = (np.array(col, dtype=float) for col in cols)
    c1 = np.array([r[4] for r in rows], dtype=object)
    c2 = np.array([r[5] for r in rows], dtype=object)
    rtt = estimate_rtt_ms(lat1, lon1, lat2, lon2, c1, c2, path=path)
    assert rtt.shape == (len(rows),) and np.isfinite(rtt).all()
    assert (rtt >= fibre_floor_ms(great_circle_km(lat1, lon1, lat2, lon2))).all()
    # Element-wise and vectorised evaluation agree.
    one = [estimate_rtt_ms(*r, path=path) for r in rows]
    np.testing.assert_allclose(rtt, one, rtol=1e-12)


def test_shapes_and_broadcasting():
    assert isinstance(estimate_rtt_ms(*LONDON, *NEW_YORK), float)
    lat = np.linspace(-50, 60, 7)
    lon = np.linspace(-120, 150, 7)
    assert estimate_rtt_ms(lat, lon, *FRANKFURT).shape == (7,)
    assert estimate_rtt_ms(lat, lon, *FRANKFURT, "DE").shape == (7,)
    grid = estimate_rtt_ms(lat[:, None], lon[:, None], lat[None, :3], lon[None, :3],
                           np.array(["US"] * 7)[:, None], "GB")
    assert grid.shape == (7, 3)
    assert estimate_rtt_ms([1.0], [2.0], [3.0], [4.0], ["FR"], ["FR"]).shape == (1,)


def test_missing_and_unknown_codes():
    ref = estimate_rtt_ms(*LONDON, *NEW_YORK)
    # Anything that is not a usable ISO code behaves like no code at all.
    for bad in ("ZZ", "XX", "", "USA", "1A", np.nan):
        assert estimate_rtt_ms(*LONDON, *NEW_YORK, bad, None) == ref
    obj = np.array([None, "ZZ", np.nan, "GB"], dtype=object)
    out = estimate_rtt_ms(LONDON[0], LONDON[1], *NEW_YORK, obj, None)
    assert out[0] == out[1] == out[2] == ref and np.isfinite(out[3])
    # Codes are case-insensitive; Namibia's "NA" is a code, not a missing value.
    assert estimate_rtt_ms(*LONDON, *NEW_YORK, "gb", "us") == estimate_rtt_ms(
        *LONDON, *NEW_YORK, "GB", "US")
    assert geo.code_index("NA") != geo.code_index(None)
    # A real country absent from the measurements falls back to its continent.
    assert np.isfinite(estimate_rtt_ms(-18.1, 178.4, *SYDNEY, "FJ", "AU"))


def test_plausible_routes():
    """Guards against absurd detours (neighbours sent through another continent's hub)."""
    def rtt(a, b, ca, cb):
        return estimate_rtt_ms(*a, *b, ca, cb)

    assert 5 < rtt(LONDON, FRANKFURT, "GB", "DE") < 30
    assert 60 < rtt(LONDON, NEW_YORK, "GB", "US") < 100
    assert rtt(TOKYO, SEOUL, "JP", "KR") < 80
    assert rtt(SYDNEY, SINGAPORE, "AU", "SG") < 250
    # East Africa reaches its neighbours through Europe: far above a direct path.
    assert rtt(NAIROBI, DAR_ES_SALAAM, "KE", "TZ") > 5 * fibre_floor_ms(
        great_circle_km(*NAIROBI, *DAR_ES_SALAAM))


def test_no_code_curve_grows_with_distance():
    lat = np.linspace(0, 80, 200)
    rtt = estimate_rtt_ms(0.0, 0.0, lat, 0.0)
    assert (np.diff(rtt) >= 0).all()


def test_params_loaded_once():
    assert geo.default_model() is geo.default_model()
    params = json.loads(geo.PARAMS_PATH.read_text())
    assert params["fit"]["target"] == "rtt_avg_ms"


@pytest.fixture(scope="module")
def measurements():
    if not (DATA_DIR / "rtt_measured.csv").exists():
        pytest.skip(f"measured RTTs not found in {DATA_DIR} (clone the repo next to shared/)")
    from aigrid_sim.world import rtt_fit
    return rtt_fit.load_measurements(DATA_DIR)


def test_holdout_targets(measurements):
    """The shipped parameters meet the targets on the hold-out third they were not fitted on."""
    from aigrid_sim.world import rtt_fit
    train, holdout, bad = rtt_fit.split(measurements)
    params = geo.default_model().params
    fit = params["fit"]
    assert (len(train), len(holdout)) == (fit["n_train"], fit["n_holdout"])
    assert sorted(int(i) for i in fit["excluded_servers"]) == bad
    assert not set(zip(train.src_city, train.dst_city, strict=True)) & set(zip(holdout.src_city,
                                                                  holdout.dst_city, strict=True))
    y = holdout[rtt_fit.TARGET]
    with_codes = rtt_fit.ape_stats(rtt_fit.predict(geo.default_model(), holdout), y)
    assert with_codes["median_ape_pct"] <= 12.0
    assert with_codes["p90_ape_pct"] <= 35.0
    # The numbers recorded in rtt_params.json are the ones this data gives.
    assert with_codes == params["holdout"]["with_country_codes"]
    without = rtt_fit.ape_stats(rtt_fit.predict(geo.default_model(), holdout, codes=False), y)
    assert without == params["holdout"]["without_country_codes"]


def test_holdout_split_keeps_pairs_together(measurements):
    from aigrid_sim.world import rtt_fit
    held = rtt_fit.holdout_mask(measurements)
    assert abs(held.mean() - 1 / 3) < 0.02
    key = measurements.assign(held=held).set_index(["src_id", "dst_id"])["held"]
    pairs = list(zip(measurements.dst_id, measurements.src_id, strict=True))
    reverse = key.reindex(pairs).to_numpy()
    both = ~np.isnan(reverse.astype(float))
    assert (reverse[both].astype(bool) == held[both]).all()
    # Independent of row order: the split is a function of the pairs only.
    shuffled = measurements.sample(frac=1, random_state=0)
    np.testing.assert_array_equal(rtt_fit.holdout_mask(shuffled), held[shuffled.index.to_numpy()])


# ----------------------------------------------------------------------------- backbone


def test_backbone_has_no_access_terms_or_internet_hubs():
    dubai, mumbai = (25.20, 55.27), (19.08, 72.88)
    bb = estimate_rtt_ms(*dubai, *mumbai, "AE", "IN", path="backbone")
    net = estimate_rtt_ms(*dubai, *mumbai, "AE", "IN", path="internet")
    floor = fibre_floor_ms(great_circle_km(*dubai, *mumbai))
    assert floor < bb < 2.5 * floor < net  # the Internet model detours through Marseille
    # Same-metro sites: little more than the per-hop term.
    assert estimate_rtt_ms(*LONDON, 51.52, -0.10, "GB", "GB", path="backbone") < 5
    assert 60 < estimate_rtt_ms(*LONDON, *NEW_YORK, "GB", "US", path="backbone") < 110
    with pytest.raises(ValueError, match="path must be one of"):
        estimate_rtt_ms(*LONDON, *NEW_YORK, path="satellite")


def test_backbone_shapes_and_codes():
    lat = np.linspace(-50, 60, 7)
    lon = np.linspace(-120, 150, 7)
    grid = estimate_rtt_ms(lat[:, None], lon[:, None], lat[None, :3], lon[None, :3],
                           np.array(["US"] * 7)[:, None], "GB", path="backbone")
    assert grid.shape == (7, 3)
    assert isinstance(estimate_rtt_ms(*LONDON, *TOKYO, path="backbone"), float)
    # Unknown codes take the great circle, like no code.
    assert estimate_rtt_ms(*LONDON, *TOKYO, "ZZ", "JP", path="backbone") == estimate_rtt_ms(
        *LONDON, *TOKYO, path="backbone")


@pytest.fixture(scope="module")
def aws_pairs():
    if not (DATA_DIR / "cloud_rtt_aws.csv").exists():
        pytest.skip(f"cloud_rtt_aws.csv not found in {DATA_DIR}")
    from aigrid_sim.world import rtt_fit

    return rtt_fit.load_backbone_measurements(DATA_DIR)


def test_backbone_fit_is_reproducible(aws_pairs):
    """Re-fitting on the same split gives the shipped parameters exactly (fit_backbone.py)."""
    from aigrid_sim.world import rtt_fit

    held = rtt_fit.backbone_holdout_mask(aws_pairs)
    shipped = json.loads(geo.BACKBONE_PARAMS_PATH.read_text(encoding="utf-8"))
    refit = rtt_fit.fit_backbone(aws_pairs[~held])
    assert refit == {k: shipped[k] for k in refit}
    assert shipped["fit"]["n_holdout"] == int(held.sum()) == 165
    # The held-aside pairs shipped for aigrid-sim-validate are exactly that split.
    shipped_pairs = pd.read_csv(geo._DATA / "backbone_holdout.csv", keep_default_na=False)
    assert sorted(zip(shipped_pairs.region_a, shipped_pairs.region_b, strict=True)) == sorted(
        zip(aws_pairs.region_a[held], aws_pairs.region_b[held], strict=True))


def test_backbone_holdout_scores(aws_pairs):
    """Targets of issue 11 on the held-aside AWS pairs, and better than the Internet model."""
    from aigrid_sim.world import rtt_fit

    held = aws_pairs[rtt_fit.backbone_holdout_mask(aws_pairs)]
    y = held.rtt_p50_ms
    bb = rtt_fit.backbone_stats(rtt_fit.backbone_predict(
        lambda *a: estimate_rtt_ms(*a, path="backbone"), held), y)
    net = rtt_fit.backbone_stats(rtt_fit.backbone_predict(geo.default_model(), held), y)
    assert bb["median_ape_pct"] <= 11.0 and bb["p90_ape_pct"] <= 28.0
    assert abs(bb["mean_bias_ms"]) <= 5.0 and bb["n_over_2x"] == 0
    assert bb["p90_ape_pct"] < net["p90_ape_pct"] and abs(bb["mean_bias_ms"]) < abs(
        net["mean_bias_ms"])
    assert (rtt_fit.backbone_predict(lambda *a: estimate_rtt_ms(*a, path="backbone"), aws_pairs)
            >= aws_pairs.floor_ms).all()
