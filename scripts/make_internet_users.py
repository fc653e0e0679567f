"""Build ``aigrid_sim/data/internet_users.csv``: each country's share of Internet users.

Source: World Bank, World Development Indicators, series ``IT.NET.USER.ZS`` "Individuals using
the Internet (% of population)" (ITU World Telecommunication/ICT Indicators database), the CSV
download ``API_IT.NET.USER.ZS_DS2_en_csv_v2_2160.csv`` with its country metadata file, data years
1960-2023. File actually read: the copy kept in GitHub ``plotly/Figure-Friday``,
``2024/week-48/`` (commit fd75327fa0f438be4689f5c26c07cf1cb9fe4a5c, 2024-11-29). License: CC BY 4.0
(World Bank open data terms); credit "World Bank / ITU".

What the script does: drops the aggregates (regions, income groups: rows whose metadata has no
``Region``), takes each country's latest year with a value from 2005 on (earlier values are the
zeros of the early 1990s, filled in before anything was measured, or stale), maps ISO alpha-3 to alpha-2 through
``world_countries.csv`` (GeoNames), and writes ``iso2,iso3,internet_pct,year`` sorted by ``iso2``
under a ``#`` comment header naming the source. Countries the World Bank does not cover (Taiwan,
a few territories) are absent from the file; :mod:`aigrid_sim.world.demand` gives them their
continent's population-weighted share and says so. Re-running reproduces the file byte for byte.

Usage (from the repo root)::

    git -C /path/to/Figure-Friday show fd75327:2024/week-48/API_IT.NET.USER.ZS_DS2_en_csv_v2_2160.csv > wb.csv
    git -C /path/to/Figure-Friday show "fd75327:2024/week-48/Metadata_Country_API_IT.NET.USER.ZS_DS2_en_csv_v2_2160.csv" > wb_meta.csv
    python scripts/make_internet_users.py wb.csv wb_meta.csv
"""  # noqa: E501

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "aigrid_sim" / "data"
OUT = DATA / "internet_users.csv"
#: Older values are pre-measurement zeros (1990-1995) or too stale to describe today's users.
FIRST_YEAR = 2005

HEADER = """\
# Individuals using the Internet (% of population), latest year per country.
# Source: World Bank, World Development Indicators, series IT.NET.USER.ZS (data: ITU World
#   Telecommunication/ICT Indicators database), https://data.worldbank.org/indicator/IT.NET.USER.ZS
#   CSV download API_IT.NET.USER.ZS_DS2_en_csv_v2_2160 (years to 2023), as kept in GitHub
#   plotly/Figure-Friday 2024/week-48 (commit fd75327fa0f438be4689f5c26c07cf1cb9fe4a5c).
#   sha256 of the data file read: {sha}
# License: CC BY 4.0 (World Bank open data). Credit: World Bank / ITU.
# Built by scripts/make_internet_users.py: aggregates dropped, latest non-empty year from 2005
#   on kept, ISO alpha-3 -> alpha-2 through world_countries.csv (GeoNames).
"""


def main(wb_csv: Path, meta_csv: Path) -> None:
    """Write the table from the World Bank data and metadata CSVs."""
    wb = pd.read_csv(wb_csv, encoding="utf-8-sig", keep_default_na=False, na_values=[""])
    meta = pd.read_csv(meta_csv, encoding="utf-8-sig", keep_default_na=False, na_values=[""])
    countries = set(meta.loc[meta.Region.notna(), "Country Code"])
    wb = wb[wb["Country Code"].isin(countries)]
    years = [c for c in wb.columns if c.isdigit()]
    long = wb.melt(id_vars=["Country Code"], value_vars=years, var_name="year",
                   value_name="internet_pct").dropna(subset=["internet_pct"])
    long["year"] = long.year.astype(int)
    long = long[long.year >= FIRST_YEAR]
    latest = long.sort_values("year").groupby("Country Code").tail(1)
    iso = pd.read_csv(DATA / "world_countries.csv", keep_default_na=False, na_values=[""])
    to2 = dict(zip(iso.iso3, iso.iso2, strict=True))
    latest = latest.assign(iso2=latest["Country Code"].map(to2), iso3=latest["Country Code"])
    unmapped = sorted(latest.loc[latest.iso2.isna(), "iso3"])
    if unmapped:
        print(f"dropped (no ISO alpha-2 in world_countries.csv): {unmapped}")
    out = latest.dropna(subset=["iso2"]).sort_values("iso2")
    out = out.assign(internet_pct=out.internet_pct.round(2))[["iso2", "iso3", "internet_pct",
                                                               "year"]]
    sha = hashlib.sha256(wb_csv.read_bytes()).hexdigest()
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER.format(sha=sha))
        out.to_csv(f, index=False, lineterminator="\n")
    print(f"wrote {len(out)} countries to {OUT.relative_to(ROOT)} "
          f"(years {out.year.min()}-{out.year.max()}, {int((out.year == out.year.max()).sum())} "
          f"at {out.year.max()})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
