"""The standard figures, drawn from result tables only (never from the simulation).

matplotlib is imported lazily (it costs ~0.8 s) and with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TIER_COLOURS = {"edge": "#2a9d8f", "regional": "#e9c46a", "core": "#e76f51"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf_by_tier(reqs: pd.DataFrame, path: Path) -> Path:
    """Empirical CDF of end-to-end latency and TTFT of completed requests, one line per tier."""
    plt = _plt()
    ok = reqs[reqs["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, col, title in ((axes[0], "latency_ms", "End-to-end latency"),
                           (axes[1], "ttft_ms", "Time to first token")):
        for tier, colour in TIER_COLOURS.items():
            x = np.sort(ok.loc[ok["tier"] == tier, col].to_numpy())
            if len(x):
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colour,
                        label=f"{tier} (n={len(x):,})")
        x = np.sort(ok[col].to_numpy())
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), color="black", ls="--", lw=1,
                    label="all")
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of completed requests")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def world_utilisation(sites: pd.DataFrame, path: Path) -> Path:
    """Sites on a longitude/latitude map, marker per tier, coloured by utilisation."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 5.5))
    vmax = max(float(sites["utilisation"].max()), 1e-6)
    markers = {"edge": ("o", 14), "regional": ("s", 40), "core": ("*", 220)}
    sc = None
    for tier, (m, size) in markers.items():
        s = sites[sites["tier"] == tier]
        if len(s):
            sc = ax.scatter(s["lon"], s["lat"], c=s["utilisation"], cmap="viridis", vmin=0,
                            vmax=vmax, marker=m, s=size, edgecolors="k", linewidths=0.3,
                            label=f"{tier} ({len(s)})")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="utilisation (busy slots / slots)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 75)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("Sites by tier, coloured by utilisation")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def standard_figures(reqs: pd.DataFrame, sites: pd.DataFrame, folder: Path) -> list[Path]:
    """Draw every standard figure of a run into ``folder``."""
    return [latency_cdf_by_tier(reqs, folder / "latency_cdf_by_tier.png"),
            world_utilisation(sites, folder / "sites_utilisation_map.png")]
