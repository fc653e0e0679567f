"""Fit the RTT model of ``aigrid_sim.world.geo`` and write ``aigrid_sim/data/rtt_params.json``.

Data (PROVENANCE.md, section 2): ``rtt_measured.csv``, about 40,000 directed RTTs between 246
WonderProxy servers (pings of 2020-07-19/20), and ``rtt_servers.csv``, their coordinates. Country
names become ISO codes through ``world_countries.csv`` plus the alias table
``aigrid_sim.world.rtt_fit.COUNTRY_ALIASES``.

Target: ``rtt_avg_ms``, the mean of 30 pings. The simulator needs the delay a typical request sees,
and persistent queueing on congested international links (China, East Africa) is part of it; the
minimum would hide that. The two differ little anyway (median avg/min ratio 1.003).

Procedure (code in ``aigrid_sim.world.rtt_fit``):

1. drop the rows of servers whose minimum RTT beats light in fibre on >= 5 % of their pairs
   (they are not where the server list puts them: La Ceiba and Belfast);
2. hold out a third of the unordered city pairs (seeded; both directions on the same side);
3. fit on the rest with a soft-L1 loss on log(predicted / measured), so the fit targets relative
   error and a few odd routes do not drag it: inflation curve, domestic access cap, per-country
   access terms and hubs; then per-continent fallbacks; then a curve for places without codes;
4. score the hold-out third (median and 90th-percentile absolute percentage error) with and
   without country codes, next to a straight line in distance fitted the same way.

Re-running reproduces the file byte for byte: the fit is deterministic and the recorded fit date
is kept when nothing else changed.

Usage (from the repo root)::

    .venv/bin/python scripts/fit_rtt.py [DATA_DIR]    # DATA_DIR defaults to ../shared/data
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigrid_sim import geo, rtt_fit  # noqa: E402


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (recorded in rtt_params.json for each input)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(data_dir: Path) -> None:
    """Fit on the training pairs, score the hold-out, write aigrid_sim/data/rtt_params.json."""
    rtt = rtt_fit.load_measurements(data_dir)
    train, holdout, bad = rtt_fit.split(rtt)
    params = rtt_fit.fit(train)
    line = rtt_fit.fit_straight_line(train)
    model = geo.RttModel(params)
    servers = dict(zip(rtt.src_id, rtt.src_city, strict=True))
    held_all = rtt[rtt_fit.holdout_mask(rtt)]
    params["fit"] = {
        "script": "scripts/fit_rtt.py",
        "data_files": {name: {"sha256": sha256(data_dir / name)}
                       for name in (rtt_fit.MEASURED_CSV, rtt_fit.SERVERS_CSV)},
        "source": "WonderProxy pings 2020-07-19/20 via sm86/geo-latency-data (PROVENANCE.md s.2)",
        "target": rtt_fit.TARGET,
        "loss": f"soft-L1 on log(predicted/measured), scale {rtt_fit.LOSS_SCALE}",
        "split": "unordered city pairs, rtt_fit.holdout_mask",
        "seed": rtt_fit.SPLIT_SEED,
        "holdout_fraction": round(rtt_fit.HOLDOUT_FRACTION, 4),
        "excluded_servers": {str(i): servers[i] for i in bad},
        "n_rows": len(rtt),
        "n_train": len(train),
        "n_holdout": len(holdout),
        "date": None,
    }
    params["holdout"] = {
        **rtt_fit.evaluate(model, holdout, line),
        "including_excluded_servers": {
            "n_rows": len(held_all),
            "with_country_codes": rtt_fit.ape_stats(rtt_fit.predict(model, held_all),
                                                    held_all[rtt_fit.TARGET]),
        },
        "straight_line_params": {"intercept_ms": line[0], "ms_per_km": line[1]},
    }

    # The recorded date is kept when the content is otherwise unchanged (re-runs are byte-exact).
    out = geo.PARAMS_PATH
    rtt_fit.write_params(out, params)
    h = params["holdout"]
    print(f"wrote {out.relative_to(ROOT)}: hold-out median/p90 APE "
          f"{h['with_country_codes']['median_ape_pct']}/{h['with_country_codes']['p90_ape_pct']} % "
          f"with codes, {h['without_country_codes']['median_ape_pct']}/"
          f"{h['without_country_codes']['p90_ape_pct']} % without, straight line "
          f"{h['straight_line_baseline']['median_ape_pct']}/"
          f"{h['straight_line_baseline']['p90_ape_pct']} %")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
