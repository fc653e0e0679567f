"""Derive aigrid-sim's default follow-the-sun curve from ServeGen's m-small rate series.

Usage: ``python scripts/derive_servegen_diurnal.py [path/to/servegen_m-small_rate_10min.csv]``
(default: ``../shared/data/traces/servegen_m-small_rate_10min.csv`` next to the checkout).

Method: the file holds the total arrival rate of Alibaba Cloud Model Studio's ``m-small`` language
model in 600-second windows over 14 days (ServeGen, Apache-2.0; summed over clients, see
docs/traffic.md). Each day is divided by its own mean (so busy and quiet days weigh the
same); for each hour of the day we take the median over the 14 days (robust to the outage-like
dips of days 9-13), and normalise the 24 medians to mean 1. We assume window 0 starts at local
midnight (the series is quietest 01:00-06:00 and peaks 20:00-22:00, as consumer traffic does).
The printed list is pasted into ``aigrid_sim/workload/processes.py`` as ``SERVEGEN_DIURNAL``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def derive(path: Path) -> np.ndarray:
    """The 24 hourly multipliers (mean 1) by local hour 0..23."""
    d = pd.read_csv(path)
    hour = (d["window_start_s"] // 3600) % 24
    day = d["window_start_s"] // 86400
    per_day = d.groupby([day, hour])["total_rate_rps"].mean().unstack()
    per_day = per_day.div(per_day.mean(axis=1), axis=0)
    curve = per_day.median(axis=0).to_numpy()
    return curve / curve.mean()


if __name__ == "__main__":
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
    default = shared / "servegen_m-small_rate_10min.csv"
    c = derive(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
    print("[" + ", ".join(f"{x:.3f}" for x in c) + "]")
    print(f"peak/mean {c.max():.3f}  trough/mean {c.min():.3f}  peak hour {int(c.argmax())}")
