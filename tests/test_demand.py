"""Demand weights and local time: the city tables, zoneinfo offsets at ``start_date``."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from aigrid_sim import config
from aigrid_sim.errors import ConfigError
from aigrid_sim.world.build import build_world, read_data
from aigrid_sim.world.demand import (
    internet_share,
    internet_share_table,
    start_instant,
    utc_offsets_h,
)

EUROPE = ["FR", "DE", "ES", "IT", "GB", "PL", "NL"]


def _world(*overrides):
    return build_world(config.validate(config.compose("global_agent", list(overrides))))


def test_city_tables_keep_zone_names_not_offsets():
    for name, n, floor in (("cities_100k.csv", 6204, 100_000), ("cities_15k.csv", 34006, 0)):
        t = read_data(name)
        assert len(t) == n
        assert "timezone" in t and "utc_offset_h" not in t
        assert t.population.min() >= floor
        assert t.timezone.str.contains("/").all()


def test_min_population_15000_reads_the_15k_table():
    big = _world("world.cities.countries=[FR]")
    small = _world("world.cities.countries=[FR]", "world.cities.min_population=15000")
    assert small.n_origins > 5 * big.n_origins
    assert small.origin_population.min() >= 15000


def test_july_shifts_european_cities_by_one_hour():
    jan = _world(f"world.cities.countries=[{','.join(EUROPE)}]", "start_date=2026-01-15")
    jul = _world(f"world.cities.countries=[{','.join(EUROPE)}]", "start_date=2026-07-15")
    assert np.array_equal(jul.origin_utc_offset_h - jan.origin_utc_offset_h,
                          np.ones(jan.n_origins))
    paris = jan.origin_name.index("Paris")
    assert jan.origin_utc_offset_h[paris] == 1.0 and jul.origin_utc_offset_h[paris] == 2.0


def test_offsets_follow_each_hemisphere_and_half_hour_zones():
    zones = ["Australia/Sydney", "Asia/Kolkata", "Asia/Tokyo", "America/New_York", "UTC"]
    jan = utc_offsets_h(zones, start_instant("2026-01-15", 19))
    jul = utc_offsets_h(zones, start_instant("2026-07-15", 19))
    assert jan.tolist() == [11.0, 5.5, 9.0, -5.0, 0.0]
    assert jul.tolist() == [10.0, 5.5, 9.0, -4.0, 0.0]


def test_start_instant_adds_the_hour():
    assert start_instant("2026-03-29", 1.5) == dt.datetime(2026, 3, 29, 1, 30,
                                                            tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "15/01/2026"])
def test_bad_start_date_names_the_key(bad):
    with pytest.raises(ConfigError, match="key 'start_date'"):
        config.validate(config.compose("global_agent", [f"start_date={bad}"]))


def test_custom_origin_timezone():
    w = build_world(config.validate(config.compose("mmc", [
        "servers=2", "start_date=2026-07-01",
        "world.origins=[{name: a, lat: 48.85, lon: 2.35, timezone: Europe/Paris}, "
        "{name: b, lat: 0, lon: 0, utc_offset_h: 3}]"])))
    assert w.origin_utc_offset_h.tolist() == [2.0, 3.0]
    with pytest.raises(ConfigError, match="unknown IANA time zone 'Mars/Base'"):
        build_world(config.validate(config.compose("mmc", [
            "servers=2", "world.origins=[{name: a, timezone: Mars/Base}]"])))


# ----------------------------------------------------------------------------- demand weights


def test_internet_share_table_has_every_country_with_its_source():
    table = internet_share_table()
    assert set(table) == set(read_data("world_countries.csv").iso2)
    assert all(0.0 <= v <= 1.0 for v, _ in table.values())
    assert table["JP"][1].startswith("IT.NET.USER.ZS 20")
    assert table["TW"][1] == "continent AS mean"  # the World Bank has no Taiwan
    users = pd.read_csv(resources.files("aigrid_sim").joinpath("data/internet_users.csv"),
                        comment="#", keep_default_na=False)
    assert len(users) > 200 and users.year.min() >= 2005
    assert "CC BY 4.0" in resources.files("aigrid_sim").joinpath(
        "data/internet_users.csv").read_text(encoding="utf-8")


def test_weights_sum_to_one_and_follow_internet_users():
    w = _world("world.cities.countries=[JP,NG]")
    pop = _world("world.cities.countries=[JP,NG]", "workload.demand=population")
    assert w.origin_weight.sum() == pytest.approx(1.0, abs=1e-12)
    assert pop.origin_weight.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(pop.origin_weight, pop.origin_population / pop.origin_population.sum())
    share = internet_share(w.origin_country)
    expect = w.origin_population * share
    assert np.allclose(w.origin_weight, expect / expect.sum())
    ng = np.array([c == "NG" for c in w.origin_country])
    # Nigeria is far less online than Japan, so its share of demand drops.
    assert w.origin_weight[ng].sum() < 0.7 * pop.origin_weight[ng].sum()
    ratio = w.origin_weight / pop.origin_weight
    assert ratio[ng].max() < ratio[~ng].min()


def test_user_csv_per_country_and_per_city(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_text("# our customers\ncountry,weight,note\nJP,300,x\nng,100,\n", encoding="utf-8")
    w = _world("world.cities.countries=[JP,NG,FR]", f"workload.demand_csv={f}")
    cc = np.array(w.origin_country)
    assert w.origin_weight[cc == "JP"].sum() == pytest.approx(0.75)
    assert w.origin_weight[cc == "NG"].sum() == pytest.approx(0.25)
    assert w.origin_weight[cc == "FR"].sum() == 0.0
    base = _world("world.cities.countries=[JP,NG,FR]")  # within a country: as the base weights
    jp = cc == "JP"
    assert np.allclose(w.origin_weight[jp] / w.origin_weight[jp].sum(),
                       base.origin_weight[jp] / base.origin_weight[jp].sum())
    g = tmp_path / "cities.csv"
    g.write_text("city,weight\nTokyo,3\nLagos,1\n", encoding="utf-8")
    w = _world("world.cities.countries=[JP,NG,FR]", f"workload.demand_csv={g}")
    assert w.origin_weight[w.origin_name.index("Tokyo")] == 0.75
    assert w.origin_weight[w.origin_name.index("Lagos")] == 0.25
    assert (w.origin_weight > 0).sum() == 2


@pytest.mark.parametrize("text, match", [
    ("country,weight\nFR,1\nXX,2\n", r"demand\.csv: line 3: unknown country 'XX'"),
    ("country,weight\nFR,-1\n", r"demand\.csv: line 2: weight must be a finite number >= 0"),
    ("country,weight\nFR,lots\n", r"demand\.csv: line 2: weight 'lots' is not a number"),
    ("country,users\nFR,1\n", r"demand\.csv: line 1: missing column 'weight'"),
    ("place,weight\nFR,1\n", r"demand\.csv: line 1: missing column 'country' or 'city'"),
    ("country,weight\nFR,1\nfr,2\n", r"demand\.csv: line 3: country 'FR' is listed twice"),
    ("country,weight\nFR,nan\n", r"demand\.csv: line 2: weight must be a finite number"),
    ("city,weight\nAtlantis,1\n", r"demand\.csv: cities not among this world's origins"),
    ("country,weight\nDE,1\n", r"workload\.demand_csv': every origin of this world has zero"),
])
def test_bad_demand_csv_names_file_and_line(tmp_path, text, match):
    f = tmp_path / "demand.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        _world("world.cities.countries=[FR]", f"workload.demand_csv={f}")


def test_bad_demand_kind_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key 'workload.demand': must be one of"):
        config.validate(config.compose("global_agent", ["workload.demand=gdp"]))
    with pytest.raises(ConfigError, match="key 'workload.demand_csv': no such file"):
        _world("world.cities.countries=[FR]", f"workload.demand_csv={tmp_path / 'no.csv'}")


def test_explicit_origins_keep_their_population_as_weight():
    w = _world("world.cities.countries=[NG]", "world.cities.max_cities=3",
               "world.origins=[{name: hq, lat: 6.5, lon: 3.4, country: NG, population: 1000000}]")
    hq = w.origin_name.index("hq")
    cities = np.array([n != "hq" for n in w.origin_name])
    share = internet_share(["NG"])[0]
    raw = np.where(cities, w.origin_population * share, w.origin_population)
    np.testing.assert_allclose(w.origin_weight, raw / raw.sum())
    assert w.origin_population[hq] == 1e6 and share < 0.5  # so the difference is visible
