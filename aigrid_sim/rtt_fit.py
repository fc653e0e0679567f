"""Loading, splitting and fitting of the measured round-trip times behind :mod:`aigrid_sim.geo`.

Used by ``scripts/fit_rtt.py`` (which writes ``aigrid_sim/data/rtt_params.json``) and by the tests
(which re-evaluate the shipped parameters on the same held-out split). The simulator itself never
imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aigrid_sim.geo import fibre_floor_ms, great_circle_km

MEASURED_CSV = "rtt_measured.csv"
SERVERS_CSV = "rtt_servers.csv"
SPLIT_SEED = 20200719
HOLDOUT_FRACTION = 1 / 3

#: WonderProxy country names that differ from ``world_countries.csv``.
COUNTRY_ALIASES = {"Czech Republic": "CZ", "Netherlands": "NL"}

_COUNTRIES_CSV = Path(__file__).resolve().parent / "data" / "world_countries.csv"


def country_codes(names) -> np.ndarray:
    """Map country names (WonderProxy spelling) to ISO 3166-1 alpha-2 codes.

    Raises:
        KeyError: if a name is neither in ``world_countries.csv`` nor in :data:`COUNTRY_ALIASES`.
    """
    # keep_default_na=False: Namibia's code "NA" must stay a string.
    world = pd.read_csv(_COUNTRIES_CSV, keep_default_na=False)
    lookup = dict(zip(world["name"], world["iso2"])) | COUNTRY_ALIASES
    missing = sorted(set(names) - set(lookup))
    if missing:
        raise KeyError(f"unmapped country names: {missing}; add them to COUNTRY_ALIASES")
    return np.array([lookup[n] for n in names], dtype=object)


def load_measurements(data_dir: str | Path) -> pd.DataFrame:
    """Read the WonderProxy RTTs and attach coordinates, ISO codes and fibre floors.

    Args:
        data_dir: Folder holding ``rtt_measured.csv`` and ``rtt_servers.csv``.

    Returns:
        One row per directed measurement with the original columns plus ``src_lat``, ``src_lon``,
        ``src_iso2``, ``dst_lat``, ``dst_lon``, ``dst_iso2``, ``km`` and ``floor_ms``.
    """
    data_dir = Path(data_dir)
    servers = pd.read_csv(data_dir / SERVERS_CSV, keep_default_na=False)
    servers["iso2"] = country_codes(servers["country"])
    rtt = pd.read_csv(data_dir / MEASURED_CSV, keep_default_na=False)
    for end in ("src", "dst"):
        cols = servers.set_index("server_id")[["lat", "lon", "iso2"]].add_prefix(f"{end}_")
        rtt = rtt.join(cols, on=f"{end}_id", how="inner")
    rtt["km"] = great_circle_km(rtt.src_lat, rtt.src_lon, rtt.dst_lat, rtt.dst_lon)
    rtt["floor_ms"] = fibre_floor_ms(rtt["km"])
    return rtt.reset_index(drop=True)


def holdout_mask(rtt: pd.DataFrame, seed: int = SPLIT_SEED, frac: float = HOLDOUT_FRACTION):
    """Pick a random share of unordered city pairs as the hold-out set.

    Both directions of a pair land on the same side, so the hold-out score measures prediction for
    pairs never seen in fitting rather than the agreement of A->B with B->A.

    Args:
        rtt: Output of :func:`load_measurements`.
        seed: Seed of the numpy generator.
        frac: Share of unordered city pairs held out.

    Returns:
        Boolean numpy array, True for held-out rows.
    """
    a = rtt["src_city"] + "|" + rtt["src_country"]
    b = rtt["dst_city"] + "|" + rtt["dst_country"]
    key = np.where(a < b, a + "~" + b, b + "~" + a)
    pairs = np.unique(key)  # sorted, hence independent of row order
    rng = np.random.default_rng(seed)
    held = pairs[rng.permutation(len(pairs))[: round(frac * len(pairs))]]
    return np.isin(key, held)
