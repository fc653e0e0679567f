"""Run folders: written atomically, found again, and recognised as complete.

A run is written into a hidden temporary folder next to its destination and renamed into place
only when every file is written, with ``_COMPLETE`` last; a crash leaves at most a ``.tmp-*``
folder, never one that looks whole. The folder name is derived from the resolved config, so a
sweep that is run again skips the runs it already has.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from aigrid_sim.api import RunResult

COMPLETE = "_COMPLETE"


def config_hash(cfg: DictConfig) -> str:
    """A short stable hash of a resolved config (output settings left out) and the version."""
    from aigrid_sim import __version__

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    plain.pop("output", None)
    text = json.dumps(plain, sort_keys=True, default=str) + __version__
    h = hashlib.sha256(text.encode())
    trace_path = (plain.get("trace") or {}).get("path")
    arrivals = ((plain.get("workload") or {}).get("arrivals") or {}).get("kind")
    if arrivals == "trace" and trace_path and Path(trace_path).expanduser().is_file():
        # A trace edited in place is a different run: hash its bytes, not just its name.
        h.update(Path(trace_path).expanduser().read_bytes())
    return h.hexdigest()[:10]


def run_folder_name(cfg: DictConfig) -> str:
    """``<scenario>__<policy>__seed<seed>__<hash>``: readable, and unique per config."""
    safe = str(cfg.policy).replace(":", "-").replace("/", "-")
    return f"{cfg.name}__{safe}__seed{cfg.seed}__{config_hash(cfg)}"


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a complete run folder."""
    return (folder / COMPLETE).exists() and (folder / "summary.json").exists()


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def write_run(result: RunResult, root: Path, *, figures: bool = True,
              name: str | None = None) -> Path:
    """Write a run folder under ``root`` atomically and return its path.

    Files: ``config.yaml``, ``requests.parquet``, ``sites.parquet``, ``summary.json``,
    ``faults.parquet`` (runs with faults: one row per outage or link cut), the standard PNG
    figures, and ``_COMPLETE``.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / (name or run_folder_name(result.config))
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who can read root
    try:
        OmegaConf.save(result.config, tmp / "config.yaml", resolve=True)
        result.requests.to_parquet(tmp / "requests.parquet", index=False)
        result.sites.to_parquet(tmp / "sites.parquet", index=False)
        faults = getattr(result, "faults", None)
        if faults is not None and len(faults):
            faults.to_parquet(tmp / "faults.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2,
                                                     default=_json_default))
        if figures:
            from aigrid_sim.results import plots
            plots.standard_figures(result.requests, result.sites, tmp, faults=faults)
        (tmp / COMPLETE).write_text("")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def begin_run(root: Path, config: DictConfig, name: str | None = None) -> tuple[Path, Path]:
    """Start a streamed run folder: ``(final path, hidden temporary folder)``.

    The run writes ``requests.parquet`` into the temporary folder as it goes;
    :func:`finish_run` adds the rest and renames it into place, :func:`abort_run` removes it. A
    run killed in between leaves only a ``.tmp-*`` folder without ``_COMPLETE``, which
    :func:`is_complete` and the sweep report never take for a run.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / (name or run_folder_name(config))
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who can read root
    return final, tmp


def abort_run(tmp: Path) -> None:
    """Remove a temporary run folder after a failure."""
    shutil.rmtree(tmp, ignore_errors=True)


def finish_run(result: RunResult, tmp: Path, final: Path, online, *,
               figures: bool = True) -> Path:
    """Write the rest of a streamed run folder into ``tmp`` and rename it to ``final``.

    Files besides ``requests.parquet`` (already streamed, unless ``output.requests=none``):
    ``config.yaml``, ``sites.parquet``, ``cities.parquet``, ``sketches.parquet`` (the online
    summary's counters and sketches, for merging runs), ``summary.json``, ``faults.parquet``
    (runs with faults), the standard figures and ``_COMPLETE`` (last).
    """
    try:
        OmegaConf.save(result.config, tmp / "config.yaml", resolve=True)
        result.sites.to_parquet(tmp / "sites.parquet", index=False)
        online.cities_table(result.world).to_parquet(tmp / "cities.parquet", index=False)
        online.state_frame().to_parquet(tmp / "sketches.parquet", index=False)
        faults = getattr(result, "faults", None)
        if faults is not None and len(faults):
            faults.to_parquet(tmp / "faults.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2,
                                                     default=_json_default))
        if figures:
            from aigrid_sim.results import plots
            plots.online_figures(online, result.sites, tmp, faults=faults)
        (tmp / COMPLETE).write_text("")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_run(folder: str | Path) -> dict:
    """A complete run folder's summary, tables and config (plots and reports read these)."""
    folder = Path(folder)
    if not is_complete(folder):
        raise FileNotFoundError(f"{folder} is not a complete run folder (no {COMPLETE})")
    return {
        "summary": json.loads((folder / "summary.json").read_text()),
        "requests": pd.read_parquet(folder / "requests.parquet"),
        "sites": pd.read_parquet(folder / "sites.parquet"),
        "config": OmegaConf.load(folder / "config.yaml"),
        "faults": pd.read_parquet(folder / "faults.parquet")
        if (folder / "faults.parquet").exists() else None,
    }
