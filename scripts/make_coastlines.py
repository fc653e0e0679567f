"""Build ``aigrid_sim/data/ne_110m_countries.json``: country outlines for the maps.

The outlines are Natural Earth's 1:110m admin-0 countries (public domain,
naturalearthdata.com), as shipped in geopandas 0.14's ``naturalearth_lowres`` dataset (the last
geopandas release that bundled it). The shapefile is read with pyshp straight out of the wheel,
and each ring is stored as integer hundredths of a degree (0.01 deg is ~1 km, far finer than
the 1:110m generalisation), so the package ships 0.1 MB of JSON and runs never touch the network.

Usage (dev time only; needs ``pip install pyshp``)::

    pip download geopandas==0.14.4 --no-deps -d /tmp/ne
    python scripts/make_coastlines.py /tmp/ne/geopandas-0.14.4-py3-none-any.whl
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import shapefile  # pyshp

DST = Path(__file__).resolve().parents[1] / "aigrid_sim" / "data" / "ne_110m_countries.json"
BASE = "geopandas/datasets/naturalearth_lowres/naturalearth_lowres"


def main(wheel: str) -> None:
    """Read the countries out of the geopandas wheel and write the JSON."""
    with zipfile.ZipFile(wheel) as z:
        files = {ext: io.BytesIO(z.read(f"{BASE}.{ext}")) for ext in ("shp", "shx", "dbf")}
        z_cpg = z.read(f"{BASE}.cpg").decode()  # the dbf text encoding
    cpg = z_cpg.strip() or "latin-1"
    reader = shapefile.Reader(**files, encoding=cpg)
    names = [f[0] for f in reader.fields[1:]]
    countries, n_points = [], 0
    for shape, record in zip(reader.shapes(), reader.records(), strict=True):
        rec = dict(zip(names, record, strict=True))
        parts = list(shape.parts) + [len(shape.points)]
        rings = []
        for a, b in zip(parts[:-1], parts[1:], strict=True):
            pts = shape.points[a:b]
            flat = []
            for lon, lat in pts:
                flat += [round(lon * 100), round(lat * 100)]
            rings.append(flat)
            n_points += len(pts)
        countries.append({"name": rec["name"], "iso_a3": rec["iso_a3"], "rings": rings})
    doc = {
        "source": "Natural Earth 1:110m Cultural Vectors, Admin 0 - Countries "
                  "(naturalearthdata.com), via geopandas 0.14.4 datasets/naturalearth_lowres",
        "license": "public domain (Natural Earth terms of use)",
        "units": "each ring is [lon0, lat0, lon1, lat1, ...] in hundredths of a degree (WGS84)",
        "countries": countries,
    }
    DST.write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {len(countries)} countries, {sum(len(c['rings']) for c in countries)} rings, "
          f"{n_points:,} points to {DST} ({DST.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
