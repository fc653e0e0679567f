"""Demand weights and local time: the city tables, zoneinfo offsets at ``start_date``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from aigrid_sim import config
from aigrid_sim.errors import ConfigError
from aigrid_sim.world.build import build_world, read_data
from aigrid_sim.world.demand import start_instant, utc_offsets_h

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
