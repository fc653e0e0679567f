"""Where and when demand comes from: city demand weights and local UTC offsets.

Two questions about the origins of a world, answered once when it is built:

* **Demand weights** (``workload.demand``). An AI service's users are Internet users, so by
  default (``internet_users``) a city weighs its population times its country's share of people
  online: World Bank / ITU series IT.NET.USER.ZS, latest year per country
  (``aigrid_sim/data/internet_users.csv``, source, year and license in its header). Countries
  the series lacks (Taiwan, some territories) take their continent's population-weighted share.
  ``population`` weighs cities by population alone (the model before). A CSV of your own
  (``workload.demand_csv``), e.g. a product's customer counts, then sets the total of each
  country (column ``country``, ISO alpha-2), split among its cities by the base weights, or of
  each city (column ``city``, names as in ``requests.parquet`` ``origin``); places the file
  does not list get no demand. Explicitly placed origins (``world.origins``, in a custom world
  or added to the cities) take their ``population`` as their weight (then the CSV, if any).
  The weights of a world's origins sum to 1: they are the share of the world's requests each
  origin sends (before the daily curve).

* **Local time.** Each bundled city keeps its IANA time zone name (``Europe/Paris``). Its UTC
  offset is read with the standard library's :mod:`zoneinfo` at the run's start instant,
  ``start_date`` at ``start_utc_h`` UTC, so daylight saving follows the calendar: Paris is UTC+1
  on 2026-01-15 and UTC+2 on 2026-07-15. The offset is held for the whole run (runs last hours;
  a run that crosses a DST switch keeps the offset of its start). The ``tzdata`` package supplies
  the zone database where the system has none (Windows, slim containers).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
import zoneinfo
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from aigrid_sim.errors import ConfigError

#: ``workload.demand`` values.
DEMAND_KINDS = ("population", "internet_users")
INTERNET_CSV = "internet_users.csv"

#: The default ``start_date``: a mid-January weekday, northern-hemisphere standard time. It is
#: also the date of the offsets the city table used to freeze, so default runs did not move.
DEFAULT_START_DATE = "2026-01-15"


def parse_start_date(value, key: str = "start_date") -> dt.date:
    """An ISO calendar date (``YYYY-MM-DD``) from a config value.

    Raises:
        ConfigError: naming ``key`` when ``value`` is not such a date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"key '{key}': must be an ISO date YYYY-MM-DD, e.g. "
                          f"{DEFAULT_START_DATE} (got {value!r})") from None


def start_instant(start_date, start_utc_h: float) -> dt.datetime:
    """The UTC instant of simulated time 0: ``start_date`` plus ``start_utc_h`` hours."""
    day = parse_start_date(start_date)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) + \
        dt.timedelta(hours=float(start_utc_h))


@functools.lru_cache(maxsize=4096)
def _offset_h(zone: str, when: dt.datetime) -> float:
    return when.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset().total_seconds() / 3600.0


def utc_offsets_h(zones, when: dt.datetime, where: str = "timezone") -> np.ndarray:
    """UTC offset in hours of each IANA zone at the instant ``when`` (DST included).

    Each distinct zone is looked up once, so the 34,006 cities of the 15k table (about 400
    zones) take milliseconds.

    Args:
        zones: IANA zone names (``Asia/Kolkata``), one per origin.
        when: An aware UTC datetime (:func:`start_instant`).
        where: What to name in the error message.

    Raises:
        ConfigError: a zone name zoneinfo does not know.
    """
    zones = np.asarray(zones, dtype=object)
    uniq, inv = np.unique(zones.astype(str), return_inverse=True)
    out = np.empty(len(uniq))
    for i, z in enumerate(uniq):
        try:
            out[i] = _offset_h(z, when)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown IANA time zone {str(z)!r} "
                              f"(e.g. 'Europe/Paris', 'America/New_York')") from None
    return out[inv].reshape(zones.shape)


# ----------------------------------------------------------------------------- demand weights


def _read_package_csv(name: str) -> pd.DataFrame:
    with resources.files("aigrid_sim").joinpath(f"data/{name}").open("r", encoding="utf-8") as f:
        return pd.read_csv(f, comment="#", keep_default_na=False, na_values=[""])


@functools.cache
def internet_share_table() -> dict[str, tuple[float, str]]:
    """ISO alpha-2 code -> (share of people online, 0..1; where the figure comes from).

    Every code of ``world_countries.csv`` gets an entry: the World Bank / ITU figure and its
    year (``"IT.NET.USER.ZS 2023"``), or, for countries the series lacks, the population-weighted
    share of the continent's countries that have one (``"continent EU mean"``).
    """
    users = _read_package_csv(INTERNET_CSV)
    countries = _read_package_csv("world_countries.csv")
    share = dict(zip(users.iso2, users.internet_pct / 100.0, strict=True))
    out = {c: (share[c], f"IT.NET.USER.ZS {y}")
           for c, y in zip(users.iso2, users.year, strict=True)}
    known = countries[countries.iso2.isin(share)]
    cont_share = (known.population * known.iso2.map(share)).groupby(known.continent_code).sum() \
        / known.population.groupby(known.continent_code).sum()
    world = _world_share()
    for iso2, cont in zip(countries.iso2, countries.continent_code, strict=True):
        if iso2 not in out:
            v = cont_share.get(cont)
            out[iso2] = (float(v), f"continent {cont} mean") if v is not None and \
                not math.isnan(v) else (world, "world mean")
    return out


def internet_share(countries) -> np.ndarray:
    """Share of people online (0..1) for each ISO alpha-2 code.

    Unknown or missing codes get the population-weighted world share.
    """
    table, world = internet_share_table(), _world_share()
    return np.array([table.get(c, (world,))[0] if isinstance(c, str) else world
                     for c in countries], dtype=float)


@functools.cache
def _world_share() -> float:
    users = _read_package_csv(INTERNET_CSV)
    countries = _read_package_csv("world_countries.csv")
    k = countries[countries.iso2.isin(users.iso2)]
    share = k.iso2.map(dict(zip(users.iso2, users.internet_pct / 100.0, strict=True)))
    return float((k.population * share).sum() / k.population.sum())


def demand_weights(population, countries, names, kind: str = "internet_users",
                   csv_path: str | None = None, custom: bool = False) -> np.ndarray:
    """The demand weight of each origin, summing to 1 (see the module docstring).

    Args:
        population: People in each origin (custom origins: their weight as given).
        countries: ISO alpha-2 code of each origin (None where unknown).
        names: Origin names, as in ``requests.parquet`` ``origin``.
        kind: ``workload.demand``: ``internet_users`` or ``population``.
        csv_path: ``workload.demand_csv``: per-country or per-city weights, or None.
        custom: True (or a per-origin mask) for explicitly placed origins
            (``world.origins``), whose ``population`` is already the weight.

    Raises:
        ConfigError: a bad demand CSV (naming file and line) or no demand left anywhere.
    """
    base = np.asarray(population, dtype=float)
    if kind == "internet_users":
        base = np.where(custom, base, base * internet_share(countries))
    if csv_path is not None:
        base = _apply_user_weights(base, list(countries), list(names), csv_path)
    total = base.sum()
    if not total > 0:
        where = "workload.demand_csv" if csv_path is not None else "workload.demand"
        raise ConfigError(f"key '{where}': every origin of this world has zero demand weight")
    return base / total


def read_demand_csv(path: str | Path) -> tuple[str, dict[str, float]]:
    """Read and check a demand CSV row by row.

    The file has a header row with a ``weight`` column and either a ``city`` column (origin
    names, e.g. ``Paris`` or ``Hyderabad, IN``) or a ``country`` column (ISO alpha-2 codes);
    other columns are ignored. Lines starting with ``#`` are comments.

    Returns:
        (``"city"`` or ``"country"``, {key: weight}).

    Raises:
        ConfigError: ``<file>: line N: <what is wrong>`` for a missing file or column, an unknown
            country, a weight that is not a non-negative number, an empty key or a duplicate.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"key 'workload.demand_csv': no such file: {p} (relative paths are "
                          f"from the directory the run starts in)")
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            lines = [(i, row) for i, row in enumerate(csv.reader(f), start=1)
                     if row and not row[0].lstrip().startswith("#")]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{p}: not a readable UTF-8 CSV file ({e})") from None
    if not lines:
        raise ConfigError(f"{p}: line 1: empty file; expected a header row with columns "
                          f"'weight' and 'country' or 'city'")
    head_line, header = lines[0]
    header = [h.strip().lower() for h in header]
    by = "city" if "city" in header else "country" if "country" in header else None
    if by is None or "weight" not in header:
        missing = "'weight'" if by else ("'country' or 'city'" if "weight" in header
                                         else "'weight' and 'country' or 'city'")
        raise ConfigError(f"{p}: line {head_line}: missing column {missing} "
                          f"(header: {','.join(header)})")
    ki, wi = header.index(by), header.index("weight")
    known = set(internet_share_table())
    out: dict[str, float] = {}
    for line, row in lines[1:]:
        if len(row) <= max(ki, wi):
            raise ConfigError(f"{p}: line {line}: expected {len(header)} fields, got {len(row)}")
        key, raw = row[ki].strip(), row[wi].strip()
        if by == "country":
            key = key.upper()
            if key not in known:
                raise ConfigError(f"{p}: line {line}: unknown country {row[ki].strip()!r} "
                                  f"(expected an ISO 3166-1 alpha-2 code such as 'FR')")
        elif not key:
            raise ConfigError(f"{p}: line {line}: empty city name")
        try:
            w = float(raw)
        except ValueError:
            raise ConfigError(f"{p}: line {line}: weight {raw!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"{p}: line {line}: weight must be a finite number >= 0 "
                              f"(got {raw!r})")
        if key in out:
            raise ConfigError(f"{p}: line {line}: {by} {key!r} is listed twice")
        out[key] = w
    if not out:
        raise ConfigError(f"{p}: no data rows after the header")
    return by, out


def _apply_user_weights(base: np.ndarray, countries: list, names: list[str],
                        csv_path: str) -> np.ndarray:
    by, weights = read_demand_csv(csv_path)
    if by == "city":
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"{csv_path}: cities not among this world's origins: "
                              f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''} (names as in "
                              f"requests.parquet 'origin', e.g. {names[:3]})")
        return np.array([weights.get(n, 0.0) for n in names], dtype=float)
    # Per country: the country's weight, split among its cities in proportion to ``base``.
    cc = np.array([c if isinstance(c, str) else "" for c in countries], dtype=object)
    out = np.zeros(len(base))
    for c, w in weights.items():
        sel = cc == c
        tot = base[sel].sum()
        if tot > 0:
            out[sel] = w * base[sel] / tot
        elif sel.any():  # cities with no base weight (no one online): split evenly
            out[sel] = w / sel.sum()
    return out
