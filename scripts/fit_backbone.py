"""Fit the backbone RTT model of ``aigrid_sim.world.geo`` and write ``backbone_params.json``.

Data (PROVENANCE.md s.6): ``cloud_rtt_aws.csv``, 496 unordered pairs of AWS regions with their
median round trip over a year (cloudping.co, pings between EC2 instances), and
``cloud_regions.csv`` for the regions' coordinates, completed for the four regions it lacks by
``aigrid_sim/data/cloud_regions_extra.csv`` (each row names its source).

Procedure (code in ``aigrid_sim.world.rtt_fit``, section "backbone"):

1. hold aside a third of the region pairs (seeded; ``rtt_fit.backbone_holdout_mask``);
2. fit on the rest, with a soft-L1 loss on log(predicted / measured): the inflation curve and the
   per-hop term by least squares, and each continent's backbone gateway (none, or one of the
   candidate cable-landing cities ``rtt_fit.HUBS``) by coordinate descent;
3. score the held-aside pairs, the training pairs and all pairs (median and p90 absolute
   percentage error, mean bias, worst ratio), next to the Internet model on the same pairs;
4. write the held-aside pairs to ``aigrid_sim/data/backbone_holdout.csv`` (13 kB), so
   ``aigrid-sim-validate`` can score them in an installed package without the shared data.

Re-running reproduces both files byte for byte: the fit is deterministic and the recorded fit
date is kept when nothing else changed.

Usage (from the repo root)::

    .venv/bin/python scripts/fit_backbone.py [DATA_DIR]    # DATA_DIR: the shared data folder
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigrid_sim.world import geo, rtt_fit  # noqa: E402

HOLDOUT_CSV = ROOT / "aigrid_sim" / "data" / "backbone_holdout.csv"
HOLDOUT_COLUMNS = ["provider", "region_a", "region_b", "lat_a", "lon_a", "iso2_a", "lat_b",
                   "lon_b", "iso2_b", "rtt_p50_ms"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_data_dir() -> Path:
    """The shared data folder next to the checkout or next to its worktree folder."""
    for p in ROOT.parents[:2]:
        if (p / "shared" / "data").is_dir():
            return p / "shared" / "data"
    return ROOT.parent / "shared" / "data"


def main(data_dir: Path) -> None:
    """Fit, score and write ``backbone_params.json`` and ``backbone_holdout.csv``."""
    rtt = rtt_fit.load_backbone_measurements(data_dir)
    held = rtt_fit.backbone_holdout_mask(rtt)
    train, holdout = rtt[~held], rtt[held]
    params = rtt_fit.fit_backbone(train)
    model = geo.BackboneModel(params)
    y = rtt_fit.BACKBONE_TARGET

    def score(rows):
        return rtt_fit.backbone_stats(rtt_fit.backbone_predict(model, rows), rows[y])

    params["fit"] = {
        "script": "scripts/fit_backbone.py",
        "data_files": {name: {"sha256": sha256(data_dir / name)}
                       for name in (rtt_fit.AWS_RTT_CSV, rtt_fit.REGIONS_CSV)},
        "extra_regions": "aigrid_sim/data/cloud_regions_extra.csv",
        "source": "cloudping.co AWS inter-region p50 over 1 year, via "
                  "oaustegard/oaustegard.github.io (PROVENANCE.md s.6)",
        "target": y,
        "loss": f"soft-L1 on log(predicted/measured), scale {rtt_fit.LOSS_SCALE}",
        "split": "region pairs, rtt_fit.backbone_holdout_mask",
        "seed": rtt_fit.BACKBONE_SEED,
        "holdout_fraction": round(rtt_fit.BACKBONE_HOLDOUT_FRACTION, 4),
        "n_pairs": len(rtt),
        "n_train": len(train),
        "n_holdout": len(holdout),
        "date": None,
    }
    internet = rtt_fit.backbone_predict(geo.default_model(), holdout)
    params["holdout"] = {**score(holdout),
                         "internet_model_same_pairs": rtt_fit.backbone_stats(internet,
                                                                             holdout[y])}
    params["train"] = score(train)
    params["all_pairs"] = score(rtt)

    out = geo.BACKBONE_PARAMS_PATH
    rtt_fit.write_params(out, params)
    holdout[HOLDOUT_COLUMNS].sort_values(["region_a", "region_b"]).to_csv(
        HOLDOUT_CSV, index=False, lineterminator="\n")
    h, a = params["holdout"], params["all_pairs"]
    print(f"wrote {out.relative_to(ROOT)} and {HOLDOUT_CSV.relative_to(ROOT)}: gateways "
          f"{params['gateway_names']}; held-aside pairs ({h['n_over_2x']} over 2x) median/p90 "
          f"APE {h['median_ape_pct']}/{h['p90_ape_pct']} %, bias {h['mean_bias_ms']:+} ms, "
          f"worst x{h['max_ratio']}; all pairs {a['median_ape_pct']}/{a['p90_ape_pct']} %, "
          f"bias {a['mean_bias_ms']:+} ms, worst x{a['max_ratio']}; Internet model on the "
          f"held-aside pairs {h['internet_model_same_pairs']['median_ape_pct']}/"
          f"{h['internet_model_same_pairs']['p90_ape_pct']} %")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_data_dir())
