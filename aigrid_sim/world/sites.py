"""Site tables from outside the bundled grid: a user's CSV of PoPs, and one PoP per city.

Both give a table with the columns ``id, lat, lon, country`` and the optional per-site
overrides ``gpus, gpu, model, max_queue, max_batch`` (empty = the tier's setting), which
:func:`aigrid_sim.world.build.build_world` turns into sites of the edge tier.

A site CSV is checked column by column with vectorised pandas/numpy operations and row by row
in what it reports: the first bad value gives one line naming the file, the row (line of the
file, the header being line 1) and the column, as a :class:`~aigrid_sim.errors.ConfigError`
(exit status 2 from the CLI).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from aigrid_sim.errors import ConfigError

#: Columns a site CSV must have.
REQUIRED = ("id", "lat", "lon")
#: Columns it may have (empty cells take the tier's setting).
OPTIONAL = ("country", "gpus", "gpu", "model", "max_queue", "max_batch")
_ISO2 = re.compile(r"^[A-Za-z]{2}$")


def _bad(path: Path, row: int, col: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: line {row + 2}, column {col!r}: {what}")


def _numbers(df: pd.DataFrame, col: str, path: Path, *, integer: bool, low: float,
             high: float = np.inf, required: bool = False) -> np.ndarray:
    """Column ``col`` as floats (NaN where empty and allowed), every value checked."""
    raw = df[col].str.strip()
    empty = raw == ""
    if required and empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise _bad(path, i, col, "is empty; every site needs one")
    val = pd.to_numeric(raw.where(~empty), errors="coerce").to_numpy(float)
    bad = ~empty.to_numpy() & ~np.isfinite(val)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad(path, i, col, f"{df[col].iat[i]!r} is not a number")
    if integer:
        frac = np.isfinite(val) & (val != np.round(val))
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise _bad(path, i, col, f"{df[col].iat[i]!r} is not a whole number")
    out = np.isfinite(val) & ((val < low) | (val > high))
    if out.any():
        i = int(np.flatnonzero(out)[0])
        span = f">= {low:g}" if high == np.inf else f"in [{low:g}, {high:g}]"
        raise _bad(path, i, col, f"{df[col].iat[i]} is out of range; it must be {span}")
    return val


def read_sites_csv(path: str | Path) -> pd.DataFrame:
    """Read and check a CSV of sites.

    Args:
        path: A CSV file with a header row: ``id, lat, lon`` and optionally ``country`` (ISO
            3166-1 alpha-2), ``gpus``, ``gpu``, ``model``, ``max_queue``, ``max_batch``.

    Returns:
        One row per site: ``id`` (str), ``lat``, ``lon`` (float), ``country`` (str or None),
        ``gpus``, ``max_queue``, ``max_batch`` (float, NaN = the tier's), ``gpu``, ``model``
        (str or None = the tier's).

    Raises:
        ConfigError: no such file, not a CSV, a missing or unknown column, an empty or repeated
            id, a coordinate out of range, a value that is not a (whole, positive) number, or a
            country that is not a two-letter code: ``"<file>: line <n>, column '<c>': <why>"``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"key 'world.edge.file': no such file: {path} (relative paths are "
                          f"from the directory you run in: {Path.cwd()})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a CSV file with a header row ({str(e).strip()})") \
            from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: line 1: missing column {missing[0]!r}; a site table needs "
                          f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}); the file has "
                          f"{list(df.columns)}")
    unknown = [c for c in df.columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ConfigError(f"{path}: line 1: unknown column {unknown[0]!r}; known: "
                          f"{', '.join(REQUIRED + OPTIONAL)}")
    if df.columns.duplicated().any():
        raise ConfigError(f"{path}: line 1: column {df.columns[df.columns.duplicated()][0]!r} "
                          f"appears twice")
    if df.empty:
        raise ConfigError(f"{path}: no sites (only a header row)")
    for c in OPTIONAL:
        if c not in df.columns:
            df[c] = ""
    ids = df["id"].str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        raise _bad(path, int(np.flatnonzero(empty)[0]), "id", "is empty; every site needs one")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iat[i]).to_numpy())[0])
        raise _bad(path, i, "id", f"{ids.iat[i]!r} repeats the id of line {first + 2}")
    lat = _numbers(df, "lat", path, integer=False, low=-90, high=90, required=True)
    lon = _numbers(df, "lon", path, integer=False, low=-180, high=180, required=True)
    gpus = _numbers(df, "gpus", path, integer=True, low=1)
    max_queue = _numbers(df, "max_queue", path, integer=True, low=0)
    max_batch = _numbers(df, "max_batch", path, integer=True, low=1)
    country = df["country"].str.strip()
    bad = ((country != "") & ~country.str.match(_ISO2)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad(path, i, "country", f"{df['country'].iat[i]!r} is not an ISO 3166-1 alpha-2 "
                                       f"code (e.g. DE, US) or empty")
    return pd.DataFrame({
        "id": pd.Series(ids.to_numpy(object), dtype=object), "lat": lat, "lon": lon,
        "country": _text_or_none(country.str.upper()),
        "gpus": gpus, "gpu": _text_or_none(df["gpu"].str.strip()),
        "model": _text_or_none(df["model"].str.strip()),
        "max_queue": max_queue, "max_batch": max_batch,
        "line": np.arange(len(df)) + 2,
    })


def _text_or_none(col: pd.Series) -> np.ndarray:
    """Strings, with None where empty (object dtype: inferred strings would make None NaN)."""
    v = col.to_numpy(object)
    return pd.Series(np.where(v == "", None, v), dtype=object)


def city_pops(cities: pd.DataFrame, min_population: int) -> pd.DataFrame:
    """One edge PoP in every city with at least ``min_population`` people.

    Args:
        cities: GeoNames cities with ``name``, ``country``, ``lat``, ``lon``, ``population``
            (the table the world draws its demand from).
        min_population: Smallest city that gets a PoP.

    Returns:
        A site table like :func:`read_sites_csv`'s, most populous first, with ids
        ``edge-<CC>-<city>`` (a number appended where a country has two cities of one name).

    Raises:
        ConfigError: no city is that big.
    """
    c = cities[cities.population >= min_population]
    if c.empty:
        raise ConfigError(f"key 'world.edge.min_population': no city has {min_population} "
                          f"people (largest: {int(cities.population.max())})")
    c = c.sort_values("population", ascending=False, kind="stable")
    base = ("edge-" + c.country.fillna("XX").astype(str) + "-"
            + c.name.astype(str).str.replace(r"\s+", "-", regex=True)).to_numpy(object)
    seen: dict[str, int] = {}
    ids = []
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        ids.append(b if seen[b] == 1 else f"{b}-{seen[b]}")
    n = len(c)
    nan = np.full(n, np.nan)
    none = pd.Series(np.full(n, None, dtype=object), dtype=object)
    return pd.DataFrame({
        "id": pd.Series(ids, dtype=object), "lat": c.lat.to_numpy(float),
        "lon": c.lon.to_numpy(float),
        "country": pd.Series([x if isinstance(x, str) else None for x in c.country],
                             dtype=object),
        "gpus": nan, "gpu": none, "model": none, "max_queue": nan, "max_batch": nan,
        "line": np.zeros(n, dtype=np.int64),
    })
