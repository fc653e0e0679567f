"""Write the RTT hold-out set that ships with the package (``aigrid_sim/data/rtt_holdout*.csv``).

``aigrid-sim-validate`` scores the RTT model on the third of the measured city pairs held out
from its fit (:func:`aigrid_sim.world.rtt_fit.split`). An installed package has no
``rtt_measured.csv`` beside it, so the hold-out rows ship in a compact form:

* ``rtt_holdout.csv``: ``src_id, dst_id, rtt_avg_ms``, one row per held-out directed measurement
  (13,134 rows; mislocated servers already left out, as in the fit);
* ``rtt_holdout_servers.csv``: ``server_id, city, iso2, lat, lon`` of the servers they name.

Data: WonderProxy / WonderNetwork pings of 2020-07-19/20 (PROVENANCE.md s.2; no license stated,
published openly; cited in NOTICE). Re-running reproduces the files byte for byte.

Usage (from the repo root)::

    .venv/bin/python scripts/make_rtt_holdout.py [DATA_DIR]    # defaults to ../shared/data
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigrid_sim.world import rtt_fit  # noqa: E402

OUT = ROOT / "aigrid_sim" / "data"


def main(data_dir: Path) -> None:
    """Split the measured RTTs as the fit does and write the hold-out part."""
    rtt = rtt_fit.load_measurements(data_dir)
    _, holdout, _ = rtt_fit.split(rtt)
    rows = holdout[["src_id", "dst_id", rtt_fit.TARGET]].sort_values(["src_id", "dst_id"])
    rows.to_csv(OUT / rtt_fit.HOLDOUT_CSV, index=False, lineterminator="\n")
    ids = sorted(set(rows.src_id) | set(rows.dst_id))
    ends = []
    for end in ("src", "dst"):
        e = holdout[[f"{end}_id", f"{end}_city", f"{end}_iso2", f"{end}_lat", f"{end}_lon"]]
        ends.append(e.set_axis(["server_id", "city", "iso2", "lat", "lon"], axis=1))
    import pandas as pd

    servers = pd.concat(ends).drop_duplicates("server_id").set_index("server_id").loc[ids]
    servers.reset_index().to_csv(OUT / rtt_fit.HOLDOUT_SERVERS_CSV, index=False,
                                 lineterminator="\n")
    print(f"wrote {len(rows):,} hold-out RTTs between {len(ids)} servers to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
