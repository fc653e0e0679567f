"""Run folders: written atomically, found again, and recognised as complete.

A run is written into a hidden temporary folder next to its destination and renamed into place
only when every file is written, with ``_COMPLETE`` last; a crash leaves at most a ``.tmp-*``
folder, never one that looks whole. The folder name is derived from the resolved config, so a
sweep that is run again skips the runs it already has.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from aigrid_sim.errors import ConfigError

if TYPE_CHECKING:
    from aigrid_sim.api import RunResult

COMPLETE = "_COMPLETE"

#: Version of the layout of run folders: the keys of ``summary.json`` and the columns of the
#: parquet tables. Bump it when a key or column is renamed, removed or changes meaning; readers
#: (``aigrid-sim-report``) skip folders of another version and say so. 1 = the first versioned
#: layout (folders without a version were written by aigrid-sim 0.1.0 before it; read as 0).
RESULTS_SCHEMA = 1
#: Keys of ``summary.json`` (and, prefixed ``aigrid_sim.``, of parquet file metadata).
VERSION_KEY, SCHEMA_KEY = "aigrid_sim_version", "results_schema"


def stamp() -> dict[str, str | int]:
    """The package version and the results schema version written into every results file."""
    from aigrid_sim import __version__

    return {VERSION_KEY: __version__, SCHEMA_KEY: RESULTS_SCHEMA}


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as parquet, with :func:`stamp` in the file's key-value metadata.

    The keys are ``aigrid_sim.version`` and ``aigrid_sim.results_schema``
    (``pyarrow.parquet.read_schema(path).metadata``); pandas' own metadata is kept, so
    ``pd.read_parquet`` reads the table back unchanged.
    """
    import pyarrow as pa

    return write_arrow(pa.Table.from_pandas(df, preserve_index=False), path)


def write_arrow(table, path: str | Path) -> Path:
    """Write a ``pyarrow.Table`` as parquet, stamped like :func:`write_table`."""
    import pyarrow.parquet as pq

    pq.write_table(table.replace_schema_metadata(stamp_schema(table.schema).metadata), path)
    return Path(path)


def write_arrow_parts(parts, path: str | Path, row_group_rows: int = 1 << 18) -> Path:
    """Write ``pyarrow.Table`` parts of one schema as one stamped parquet file, a few at a time.

    Stamped like :func:`write_table`. Parts are gathered into row groups of at least
    ``row_group_rows`` rows (the last may be smaller), so about that many rows are in memory at
    a time; a part's dictionary-encoded columns may have dictionaries of their own.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = schema = None
    buf: list = []
    rows = 0

    def flush() -> None:
        nonlocal writer, schema, rows
        # one dictionary per column in a row group, so that parquet keeps its dictionary encoding
        table = pa.concat_tables(buf).unify_dictionaries().combine_chunks()
        if writer is None:
            schema = stamp_schema(table.schema)
            writer = pq.ParquetWriter(path, schema)
        writer.write_table(table.replace_schema_metadata(schema.metadata),
                           row_group_size=max(table.num_rows, 1))
        buf.clear()
        rows = 0

    try:
        for part in parts:
            buf.append(part)
            rows += part.num_rows
            if rows >= row_group_rows:
                flush()
        if buf:
            flush()
        if writer is None:
            raise ValueError(f"{path}: no part to write")
    finally:
        if writer is not None:
            writer.close()
    return Path(path)


def stamp_schema(schema):
    """``schema`` (a ``pyarrow.Schema``) with :func:`stamp` added to its metadata."""
    meta = dict(schema.metadata or {})
    meta.update({f"aigrid_sim.{k.removeprefix('aigrid_sim_')}".encode(): str(v).encode()
                 for k, v in stamp().items()})
    return schema.with_metadata(meta)


def table_stamp(path: str | Path) -> dict[str, str | int | None]:
    """The version keys of a parquet file written by :func:`write_table` (None if absent)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    version = meta.get(b"aigrid_sim.version")
    schema = meta.get(b"aigrid_sim.results_schema")
    return {VERSION_KEY: version.decode() if version else None,
            SCHEMA_KEY: int(schema) if schema else None}


def config_hash(cfg: DictConfig) -> str:
    """A short stable hash of a resolved config (output settings left out) and the versions."""
    from aigrid_sim import __version__

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    plain.pop("output", None)
    text = json.dumps(plain, sort_keys=True, default=str) + __version__ + f"/{RESULTS_SCHEMA}"
    h = hashlib.sha256(text.encode())
    trace_path = (plain.get("trace") or {}).get("path")
    arrivals = ((plain.get("workload") or {}).get("arrivals") or {}).get("kind")
    if arrivals == "trace" and trace_path and Path(trace_path).expanduser().is_file():
        # A trace edited in place is a different run: hash its bytes, not just its name.
        h.update(Path(trace_path).expanduser().read_bytes())
    return h.hexdigest()[:10]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def safe_part(text: object, limit: int = 60) -> str:
    """A config value made safe as part of a folder name: no separators, no leading dots."""
    s = _UNSAFE.sub("-", str(text)).strip(".-") or "x"
    return s[:limit]


def run_folder_name(cfg: DictConfig) -> str:
    """``<scenario>__<policy>__seed<seed>__<hash>``: readable, and unique per config.

    The parts from config values are sanitised (``name=../../x`` gives ``x``), so the folder is
    always a direct child of ``output.dir``.
    """
    return (f"{safe_part(cfg.name)}__{safe_part(cfg.policy)}__seed{safe_part(cfg.seed)}__"
            f"{config_hash(cfg)}")


def check_writable(root: Path) -> None:
    """Make ``root`` if needed and check a file can be created in it (before a run starts).

    Raises:
        ConfigError: naming ``output.dir`` and the reason.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"key 'output.dir': cannot write to {str(root)!r} "
                          f"({e.strerror or e})") from None


STALE_S = 86_400.0  # .tmp-* folders older than this were left by killed runs


def clean_stale(root: Path, older_than_s: float = STALE_S) -> int:
    """Remove ``.tmp-*`` folders under ``root`` older than ``older_than_s``; returns how many."""
    n = 0
    now = time.time()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for e in entries:
        if e.name.startswith(".tmp-"):
            try:
                if now - e.stat(follow_symlinks=False).st_mtime > older_than_s:
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path, ignore_errors=True)
                    else:
                        os.unlink(e.path)
                    n += 1
            except OSError:
                pass
    return n


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a complete run folder."""
    return (folder / COMPLETE).exists() and (folder / "summary.json").exists()


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def save_figure(fig, path: Path, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure to ``path`` (PNG) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def write_figures(reqs: pd.DataFrame, sites: pd.DataFrame, folder: Path, *,
                  time_varying: bool | None = None, faults: pd.DataFrame | None = None,
                  cities: pd.DataFrame | None = None, cdfs: dict | None = None) -> list[Path]:
    """Draw every standard figure of a run into ``folder`` (PNG) and return their paths.

    ``cdfs``: the latency lines of :func:`aigrid_sim.results.plots.tier_ecdfs`, when the
    caller has them (the HTML report draws the same ones).

    ``latency_cdf_by_tier.png`` and ``sites_utilisation_map.png`` always;
    ``cities_map.png`` when a cities table is given (p95 time to first token of the busiest
    app, per city); ``rate_over_time.png`` for time-varying runs (``time_varying=None`` decides
    from the arrivals, :func:`aigrid_sim.results.plots.is_time_varying`);
    ``faults_over_time.png`` for runs with faults (a non-empty ``faults`` table).
    """
    from aigrid_sim.results import plots

    folder = Path(folder)
    out = [save_figure(plots.latency_cdf_by_tier(reqs, cdfs=cdfs),
                       folder / "latency_cdf_by_tier.png"),
           save_figure(plots.site_map(sites), folder / "sites_utilisation_map.png")]
    if cities is not None and len(cities):
        app = plots.busiest_app(cities)
        out.append(save_figure(plots.city_map(cities, metric="ttft_p95_ms", app=app),
                               folder / "cities_map.png"))
    if time_varying or (time_varying is None and plots.is_time_varying(reqs)):
        out.append(save_figure(plots.rate_and_p95_over_time(reqs),
                               folder / "rate_over_time.png"))
    if faults is not None and len(faults):
        out.append(save_figure(plots.faults_over_time(reqs, faults, sites),
                               folder / "faults_over_time.png"))
    return out


def write_html(reqs: pd.DataFrame, sites: pd.DataFrame, cities: pd.DataFrame, summary: dict,
               path: Path, *, cdfs: dict | None = None) -> Path:
    """Write a run's interactive, self-contained HTML report (:mod:`aigrid_sim.results.html`)."""
    from aigrid_sim.results import html

    Path(path).write_text(html.run_html(reqs, sites, cities, summary, cdfs=cdfs),
                          encoding="utf-8")
    return Path(path)


def write_run(result: RunResult, root: Path, *, figures: bool = True,
              name: str | None = None, replace: bool = False) -> Path:
    """Write a run folder under ``root`` atomically and return its path.

    Files: ``config.yaml``, ``requests.parquet``, ``sites.parquet``, ``cities.parquet`` (one
    row per origin city, :mod:`aigrid_sim.results.cities`), ``summary.json``,
    ``faults.parquet`` (runs with faults: one row per outage or link cut), the standard PNG
    figures and the interactive ``report.html`` (with ``figures``), and ``_COMPLETE``.
    ``summary.json`` and the parquet files (file metadata) carry the package version and
    :data:`RESULTS_SCHEMA` (:func:`stamp`).

    If a complete folder of the same name appears meanwhile (another process ran the same
    config), it is kept and this copy dropped, unless ``replace`` (``output.resume=false``).
    Stale ``.tmp-*`` folders of killed runs (older than a day) are removed.

    Raises:
        ConfigError: ``root`` cannot be written.
    """
    check_writable(root)
    clean_stale(root)
    final = root / safe_part(name or run_folder_name(result.config), limit=200)
    if final.resolve().parent != root.resolve():
        raise ConfigError(f"key 'name': run folder {final.name!r} would be outside output.dir")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who can read root
    try:
        OmegaConf.save(result.config, tmp / "config.yaml", resolve=True)
        write_table(result.requests, tmp / "requests.parquet")
        write_table(result.sites, tmp / "sites.parquet")
        cities = getattr(result, "cities", None)
        if cities is not None:
            write_table(cities, tmp / "cities.parquet")
        faults = getattr(result, "faults", None)
        if faults is not None and len(faults):
            write_table(faults, tmp / "faults.parquet")
        (tmp / "summary.json").write_text(json.dumps({**stamp(), **result.summary}, indent=2,
                                                     default=_json_default))
        if figures:
            from aigrid_sim.results.plots import tier_ecdfs

            cdfs = tier_ecdfs(result.requests)  # one sort per column, for the PNG and the HTML
            write_figures(result.requests, result.sites, tmp, faults=faults, cities=cities,
                          cdfs=cdfs)
            if cities is not None:
                write_html(result.requests, result.sites, cities, result.summary,
                           tmp / "report.html", cdfs=cdfs)
        (tmp / COMPLETE).write_text("")
        _publish(tmp, final, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def run_schema(summary: dict) -> int:
    """The results schema version of a run folder's ``summary.json`` (0 = before versioning)."""
    v = summary.get(SCHEMA_KEY, 0)
    return v if isinstance(v, int) else -1


def unreadable_reason(folder: Path) -> str | None:
    """Why a folder that looks complete cannot be read by this version, or None if it can."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError) as e:
        return f"summary.json unreadable ({type(e).__name__})"
    if not isinstance(summary, dict):
        return "summary.json is not a JSON object"
    mode = (summary.get("output_requests") or {}).get("mode", "all")
    for name in ("config.yaml", "requests.parquet", "sites.parquet"):
        if name == "requests.parquet" and mode == "none":
            continue  # output.requests=none: no per-request table, by design
        if not (folder / name).is_file():
            return f"{name} missing"
    schema = run_schema(summary)
    if schema != RESULTS_SCHEMA:
        by = summary.get(VERSION_KEY) or "an aigrid-sim before results were versioned"
        return (f"results schema {schema} (written by {by}); this aigrid-sim reads schema "
                f"{RESULTS_SCHEMA}: re-run it, or read it with the version that wrote it")
    return None


def _publish(tmp: Path, final: Path, replace: bool) -> None:
    """Rename a complete ``tmp`` into place; safe against other writers of the same folder.

    The first rename wins. A writer that finds a complete folder in place (another process
    wrote the same config) keeps it and drops its own copy: same config, same results. An
    incomplete or stale folder in the way is moved aside first (``rename`` is atomic, so two
    writers never delete each other's work half-way).
    """
    for _ in range(100):
        try:
            os.rename(tmp, final)  # atomic; fails if final is a non-empty folder
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
        if is_complete(final) and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        replace = False  # replace at most once: a folder that reappears is a concurrent twin
        # Not complete (a crash from an older version), or a re-run asked to replace it:
        # move it aside atomically, then delete it.
        aside = Path(tempfile.mkdtemp(prefix=f".tmp-old-{final.name}-", dir=final.parent))
        try:
            os.rename(final, aside / "x")
        except FileNotFoundError:
            pass  # someone else moved it: retry the rename
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                shutil.rmtree(aside, ignore_errors=True)
                raise
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"could not publish run folder {final} (too many concurrent writers)")


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
               figures: bool = True, replace: bool = False) -> Path:
    """Write the rest of a streamed run folder into ``tmp`` and rename it to ``final``.

    Files besides ``requests.parquet`` (already streamed, unless ``output.requests=none``):
    ``config.yaml``, ``sites.parquet``, ``cities.parquet``, ``sketches.parquet`` (the online
    summary's counters and sketches, for merging runs), ``summary.json``, ``faults.parquet``
    (runs with faults), the standard figures and ``report.html`` (``figures``; the latency CDFs
    from the sketches), and ``_COMPLETE`` (last).
    """
    try:
        OmegaConf.save(result.config, tmp / "config.yaml", resolve=True)
        write_table(result.sites, tmp / "sites.parquet")
        cities = result.cities if result.cities is not None else \
            online.cities_table(result.world)
        write_table(cities, tmp / "cities.parquet")
        write_arrow_parts(online.state_parts(), tmp / "sketches.parquet")
        faults = getattr(result, "faults", None)
        if faults is not None and len(faults):
            write_table(faults, tmp / "faults.parquet")
        (tmp / "summary.json").write_text(json.dumps({**stamp(), **result.summary}, indent=2,
                                                     default=_json_default))
        if figures:
            from aigrid_sim.results import plots

            cdfs = plots.online_cdfs(online)
            plots.online_figures(online, result.sites, tmp, faults=faults, cities=cities,
                                 cdfs=cdfs)
            write_html(None, result.sites, cities, result.summary, tmp / "report.html",
                       cdfs=cdfs)
        (tmp / COMPLETE).write_text("")
        _publish(tmp, final, replace)
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
        "cities": pd.read_parquet(folder / "cities.parquet")
        if (folder / "cities.parquet").exists() else None,
    }
