"""Real traces: load LLM request logs and rate series, check every row, and replay them.

Two kinds of trace:

* **request traces** (``azure``, ``mooncake``): one row per request with its arrival time and
  token counts. Replayed as they are: with no window, speed-up, scaling or repeat, the stream has
  exactly the trace's requests, in order, with the same inter-arrival times and token counts.
* **rate series** (``servegen``): the arrival rate per time window. Replayed as a Poisson process
  whose rate is constant within each window (exact: Poisson counts, uniform times).

A :class:`TraceFormat` maps a format's columns to roles (time, input/output tokens, origin,
rate); ``trace.columns`` in the config renames any of them, so another file with the same kind of
columns replays with no code. Times become seconds after the trace's first timestamp.

Every row is checked (missing or non-numeric value, negative or fractional token count, timestamps
going backwards); the first bad row raises :class:`~aigrid_sim.errors.ConfigError` naming the
file, the line (the header is line 1) and the reason, unless ``trace.skip_bad_rows`` is set, in
which case bad rows are dropped and counted in ``RequestStream.info`` (``summary["stream"]``).

Origins: from the trace's origin column (city names of the world) if it has one, else drawn per
request by population x the diurnal factor of each city's local time at the request's arrival.
Token counts drive service time: :func:`~aigrid_sim.workload.generate.assign_apps` gives each
request an app (by share) and, for generative apps, replaces the drawn tokens by the trace's.
pandas is used only to read and check the file, never in the engine path.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from aigrid_sim import rng as rngs
from aigrid_sim.config import SimConfig, TraceConfig
from aigrid_sim.errors import ConfigError
from aigrid_sim.workload.generate import assign_apps
from aigrid_sim.workload.processes import diurnal_curve, diurnal_factor
from aigrid_sim.workload.stream import RequestStream

BUNDLED_AZURE = "azure_llm_2023_conv.csv"
MAX_TOKENS = 10_000_000  # per request; more is a corrupt row (and would overflow time arithmetic)
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


@dataclass(frozen=True)
class TraceFormat:
    """Which column plays which role in a trace file.

    Attributes:
        name: Format name.
        kind: ``requests`` (one row per request) or ``rate`` (arrival rate per window).
        time: Time column (request arrival, or window start).
        time_unit: ``datetime`` (parsed timestamps) or ``s`` / ``ms`` / ``us`` (numbers).
        in_tokens: Input-token column (request traces).
        out_tokens: Output-token column (request traces).
        origin: Optional column of origin (city) names.
        rate: Rate column, requests per second (rate series).
        prefix: Optional column of shared-prefix block ids (Mooncake's ``hash_ids``: ids
            separated by spaces, one per ``prefix_block_tokens`` prompt tokens); read when the
            file has it, for prefix caching.
        prefix_block_tokens: Prompt tokens per prefix block.
    """

    name: str
    kind: str
    time: str
    time_unit: str
    in_tokens: str | None = None
    out_tokens: str | None = None
    origin: str | None = None
    rate: str | None = None
    prefix: str | None = None
    prefix_block_tokens: int = 512

    def columns(self) -> dict[str, str]:
        """Role -> column for the roles this format uses."""
        roles = ("time", "in_tokens", "out_tokens", "origin", "rate")
        return {r: getattr(self, r) for r in roles if getattr(self, r) is not None}


FORMATS: dict[str, TraceFormat] = {
    # Azure LLM inference trace 2023 (Splitwise): TIMESTAMP,ContextTokens,GeneratedTokens
    "azure": TraceFormat("azure", "requests", "TIMESTAMP", "datetime", "ContextTokens",
                         "GeneratedTokens"),
    # Mooncake FAST'25 traces as CSV: timestamp_ms,input_length,output_length,hash_ids
    "mooncake": TraceFormat("mooncake", "requests", "timestamp_ms", "ms", "input_length",
                            "output_length", prefix="hash_ids"),
    # ServeGen rate series: window_start_s,total_rate_rps,active_clients
    "servegen": TraceFormat("servegen", "rate", "window_start_s", "s", rate="total_rate_rps"),
}


def trace_format(tc: TraceConfig) -> TraceFormat:
    """The format named by ``trace.format`` with ``trace.columns`` applied.

    Raises:
        ConfigError: unknown format.
    """
    if tc.format not in FORMATS:
        raise ConfigError(f"key 'trace.format': must be one of {tuple(FORMATS)} "
                          f"(got {tc.format!r})")
    fmt = FORMATS[tc.format]
    c = tc.columns
    changes = {k: getattr(c, k) for k in ("time", "time_unit", "in_tokens", "out_tokens",
                                          "origin", "rate") if getattr(c, k) is not None}
    return replace(fmt, **changes)


@dataclass
class Trace:
    """A checked trace, times in seconds after its first timestamp.

    Attributes:
        path: The file read.
        format: The column mapping used.
        t: Arrival time (request traces) or window start (rate series), sorted.
        line: The file line of each kept row (header = line 1).
        in_tokens: Input tokens per request (request traces), else None.
        out_tokens: Output tokens per request (request traces), else None.
        origin: Origin name per request, if the trace has an origin column.
        rate: Rate per window, requests per second (rate series), else None.
        rows: Data rows in the file.
        skipped: Bad rows skipped (``skip_bad_rows``), by reason.
        skipped_lines: The first few skipped lines.
        prefix_ids: Prefix block ids of every kept row, concatenated (None if the file has none).
        prefix_off: Row ``k``'s ids are ``prefix_ids[prefix_off[k]:prefix_off[k + 1]]``.
    """

    path: Path
    format: TraceFormat
    t: np.ndarray
    line: np.ndarray
    in_tokens: np.ndarray | None = None
    out_tokens: np.ndarray | None = None
    origin: np.ndarray | None = None
    rate: np.ndarray | None = None
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_lines: list[int] = field(default_factory=list)
    prefix_ids: np.ndarray | None = None
    prefix_off: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.t)

    @property
    def n_skipped(self) -> int:
        """Number of bad rows skipped."""
        return int(sum(self.skipped.values()))


def resolve_path(tc: TraceConfig) -> Path:
    """The trace file: ``trace.path``, or the bundled Azure trace when it is null.

    Raises:
        ConfigError: no path for a format without a bundled trace, or no such file.
    """
    if tc.path is None:
        if tc.format != "azure":
            raise ConfigError(f"key 'trace.path': needed for trace.format={tc.format} (only the "
                              f"Azure conversation trace is bundled)")
        return Path(str(resources.files("aigrid_sim").joinpath(f"data/traces/{BUNDLED_AZURE}")))
    p = Path(tc.path).expanduser()
    if not p.is_file():
        raise ConfigError(f"key 'trace.path': no such file: {p} (relative paths are from the "
                          f"directory you run in: {Path.cwd()})")
    return p


def load_trace(path: str | Path, fmt: TraceFormat | str, *,
               skip_bad_rows: bool = False) -> Trace:
    """Read and check a trace file.

    Args:
        path: CSV file with a header row.
        fmt: A :class:`TraceFormat` or the name of a built-in one.
        skip_bad_rows: Drop bad rows (counted in the result) instead of raising.

    Raises:
        ConfigError: ``"<file>: line <n>: <reason>"`` for a missing column, a missing,
            non-numeric or negative value, a fractional token count, a timestamp earlier than
            the previous row's, or a file with no usable row.
    """
    path = Path(path)
    if isinstance(fmt, str):
        if fmt not in FORMATS:
            raise ConfigError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
        fmt = FORMATS[fmt]
    if fmt.time_unit not in ("datetime", *_UNIT_S):
        raise ConfigError(f"key 'trace.columns.time_unit': must be one of datetime, s, ms, us "
                          f"(got {fmt.time_unit!r})")
    roles = fmt.columns()
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: line 1: not a CSV file with a header row ({e})") from None
    for role, col in roles.items():
        if col not in header:
            raise ConfigError(
                f"{path}: line 1: missing column {col!r} (trace.format={fmt.name} reads the "
                f"{role} from it; the file has {header}). Name yours with "
                f"trace.columns.{role}=<column>")
    # Every column is read (not usecols) so that a row with too many fields is caught: pandas
    # raises on it (or, skipping, warns with its line), except on the first data row, which it
    # truncates with a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(path, dtype=str, index_col=False, skip_blank_lines=False,
                             keep_default_na=False, na_values=[""],
                             on_bad_lines="warn" if skip_bad_rows else "error")
        except pd.errors.ParserError as e:
            raise ConfigError(f"{path}: {_parser_reason(e)}. Fix the file, or set "
                              f"trace.skip_bad_rows=true to skip bad rows") from None
    ragged: list[tuple[int, str]] = []
    first_row_long = False
    for w in caught:
        msg = str(w.message)
        for m in re.finditer(r"line (\d+): expected (\d+) fields, saw (\d+)", msg):
            ragged.append((int(m.group(1)), f"{m.group(3)} fields, expected {m.group(2)}"))
        first_row_long |= "Length of header" in msg
    n = len(df)
    # File line of each row read: data starts on line 2; lines pandas skipped are not rows.
    skipped_ragged = {ln for ln, _ in ragged}
    line = np.array([ln for ln in range(2, n + len(ragged) + 2) if ln not in skipped_ragged],
                    dtype=np.int64) if ragged else np.arange(n, dtype=np.int64) + 2
    bad = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    if first_row_long and n:
        bad[0] = True
        reason[0] = "more fields than the header"

    def flag(mask: np.ndarray, why) -> None:
        new = mask & ~bad
        if new.any():
            idx = np.flatnonzero(new)
            reason[idx] = [why(i) for i in idx] if callable(why) else why
            bad[idx] = True

    raw: dict[str, np.ndarray] = {r: df[c].to_numpy(dtype=object) for r, c in roles.items()}
    for col in roles.values():
        flag(pd.isna(df[col]).to_numpy(), f"missing value in column {col!r}")
    # Time.
    tcol = roles["time"]
    if fmt.time_unit == "datetime":
        ts = pd.to_datetime(df[tcol], format="ISO8601", errors="coerce")
        nat = ts.isna().to_numpy()
        flag(nat, lambda i: f"not a timestamp in column {tcol!r}: {raw['time'][i]!r}")
        # Integer nanoseconds relative to the first timestamp, so float64 keeps every digit.
        tint = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        ref = tint[~nat][0] if (~nat).any() else 0
        tsec = np.where(nat, np.nan, (tint - ref).astype(np.float64))
        unit = 1e-9
    else:
        tsec = pd.to_numeric(df[tcol], errors="coerce").to_numpy(dtype=float)
        flag(np.isnan(tsec), lambda i: f"not a number in column {tcol!r}: {raw['time'][i]!r}")
        flag(~np.isfinite(tsec) & ~np.isnan(tsec),
             lambda i: f"not a finite number in column {tcol!r}: {raw['time'][i]!r}")
        flag(tsec < 0, lambda i: f"negative time in column {tcol!r}: {raw['time'][i]!r}")
        unit = _UNIT_S[fmt.time_unit]
    # Numeric columns.
    nums: dict[str, np.ndarray] = {}
    for role in ("in_tokens", "out_tokens", "rate"):
        if role not in roles:
            continue
        col = roles[role]
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        flag(np.isnan(v) | ~np.isfinite(v),
             lambda i, c=col, r=role: f"not a number in column {c!r}: {raw[r][i]!r}")
        flag(v < 0, lambda i, c=col, r=role: f"negative value in column {c!r}: {raw[r][i]!r}")
        if role != "rate":
            flag(v > MAX_TOKENS, lambda i, c=col, r=role: f"implausible token count in column "
                                                         f"{c!r} (> {MAX_TOKENS:,}): {raw[r][i]!r}")
            flag(np.abs(v - np.rint(v)) > 1e-9,
                 lambda i, c=col, r=role: f"not a whole number of tokens in column {c!r}: "
                                          f"{raw[r][i]!r}")
        nums[role] = v
    # Order: a row earlier than the latest good row before it goes backwards in time.
    good = np.flatnonzero(~bad)
    if len(good):
        tg = tsec[good]
        prev_max = np.concatenate([[-np.inf], np.maximum.accumulate(tg)[:-1]])
        back = good[tg < prev_max]
        if len(back):
            # Name the line holding the running maximum each such row falls behind.
            at_max = np.where(tg == np.maximum.accumulate(tg), np.arange(len(tg)), 0)
            lead = good[np.maximum.accumulate(at_max)]
            for k in np.flatnonzero(tg < prev_max)[:1000]:
                i, j = good[k], lead[k - 1]
                reason[i] = (f"timestamps not sorted: {raw['time'][i]!r} is earlier than "
                             f"{raw['time'][j]!r} on line {line[j]}")
            reason[back[1000:]] = "timestamps not sorted"
            bad[back] = True
    if bad.any() or ragged:
        if not skip_bad_rows:
            i = int(np.flatnonzero(bad)[0])
            more = int(bad.sum()) - 1
            tail = f" ({more} more bad rows)" if more else ""
            raise ConfigError(f"{path}: line {line[i]}: {reason[i]}{tail}. Fix the file, or set "
                              f"trace.skip_bad_rows=true to skip bad rows")
        kinds = pd.Series(list(reason[bad]) + ["wrong number of fields"] * len(ragged),
                          dtype=object).str.split(":").str[0].value_counts()
        skipped = {str(k): int(v) for k, v in kinds.items()}
        skipped_lines = sorted(line[bad].tolist() + list(skipped_ragged))[:10]
    else:
        skipped, skipped_lines = {}, []
    keep = ~bad
    if not keep.any():
        raise ConfigError(f"{path}: no usable rows ({n} data rows"
                          f"{', all bad' if n else ''})")
    tk = tsec[keep]
    t = (tk - tk[0]) * unit
    tr = Trace(path, fmt, t, line[keep], rows=n, skipped=skipped, skipped_lines=skipped_lines)
    if fmt.kind == "requests":
        tr.in_tokens = nums["in_tokens"][keep].astype(np.int64)
        tr.out_tokens = nums["out_tokens"][keep].astype(np.int64)
    else:
        tr.rate = nums["rate"][keep]
    if "origin" in roles:
        tr.origin = np.asarray(df[roles["origin"]].to_numpy(dtype=object)[keep], dtype=object)
    if fmt.kind == "requests" and fmt.prefix is not None and fmt.prefix in header:
        tr.prefix_ids, tr.prefix_off = _prefix_blocks(
            path, fmt, df[fmt.prefix].to_numpy(dtype=object)[keep], tr.in_tokens, tr.line)
    return tr


def _prefix_blocks(path: Path, fmt: TraceFormat, values: np.ndarray, in_tokens: np.ndarray,
                   line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse a prefix-id column (``"3 4 5"``; empty = none) into flat ids and row offsets.

    Raises:
        ConfigError: ``"<file>: line <n>: ..."`` for an id that is not a whole number >= 0, or
            more blocks than the prompt has (``ceil(in_tokens / block)``).
    """
    col, size = fmt.prefix, fmt.prefix_block_tokens
    ids: list[int] = []
    off = np.zeros(len(values) + 1, dtype=np.int64)
    for k, v in enumerate(values):
        if isinstance(v, str) and v.strip():
            parts = v.replace(",", " ").strip().strip("[]").split()
            try:
                row = [int(x) for x in parts]
            except ValueError:
                raise ConfigError(
                    f"{path}: line {line[k]}: malformed {col!r}: {v!r} (expected block ids, "
                    f"whole numbers separated by spaces)") from None
            if any(x < 0 for x in row):
                raise ConfigError(f"{path}: line {line[k]}: malformed {col!r}: {v!r} (block "
                                  f"ids must be >= 0)")
            most = -(-int(in_tokens[k]) // size)
            if len(row) > most:
                raise ConfigError(
                    f"{path}: line {line[k]}: a prefix longer than the prompt: {len(row)} "
                    f"blocks of {size} tokens in {col!r}, but the prompt has {in_tokens[k]} "
                    f"tokens (at most {most} blocks)")
            ids.extend(row)
        off[k + 1] = len(ids)
    return np.asarray(ids, dtype=np.int64), off


def _parser_reason(e: Exception) -> str:
    """Pandas' tokenizer message as ``line N: reason`` (its line numbers count the header)."""
    msg = str(e).strip()
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        return f"line {m.group(2)}: {m.group(3)} fields, expected {m.group(1)}"
    return msg.splitlines()[-1]


# ----------------------------------------------------------------------------- replay


@dataclass
class Replay:
    """Arrival times of a replayed request trace, with the trace row each one came from."""

    t: np.ndarray  # simulated arrival time, sorted
    row: np.ndarray  # index into the Trace's arrays
    in_window: int  # trace requests inside the window (one copy)


def replay_requests(tr: Trace, tc: TraceConfig, factor: float,
                    rng: np.random.Generator) -> Replay:
    """Window, repeat, scale and speed up a request trace.

    Steps, in order: keep ``[start_s, end_s)`` and shift it to start at 0; play it ``repeat``
    times back to back (period = window length, or, with no ``end_s``, the span of the kept
    requests plus their mean inter-arrival time); scale by ``factor`` (= ``trace.scale x load``):
    ``floor(factor)`` copies, the first unshifted and each other circularly shifted by its own
    uniform random offset (so copies do not arrive in lock-step), plus one more shifted copy
    thinned to the fractional part; finally divide times by ``speedup``. With factor 1, repeat 1,
    speedup 1 and the whole trace this is the identity.
    """
    t0 = tc.start_s
    t1 = np.inf if tc.end_s is None else tc.end_s
    rows = np.flatnonzero((tr.t >= t0) & (tr.t < t1))
    if len(rows) == 0:
        raise ConfigError(f"key 'trace.start_s'/'trace.end_s': no request of {tr.path} falls in "
                          f"[{t0}, {t1}) s (the trace spans 0 to {tr.t[-1]:.3f} s)")
    base = tr.t[rows] - t0
    if tc.end_s is not None:
        period = t1 - t0
    else:
        span = float(base[-1])
        gap = span / (len(base) - 1) if len(base) > 1 else 1.0
        period = span + (gap if gap > 0 else 1.0)
    t = np.concatenate([base + k * period for k in range(tc.repeat)])
    row = np.tile(rows, tc.repeat)
    total = period * tc.repeat
    whole = int(np.floor(factor))
    frac = factor - whole
    parts_t, parts_r = [], []
    for c in range(whole + (1 if frac > 1e-12 else 0)):
        if c == 0:
            tc_, rc_ = t, row
        else:
            shift = rng.uniform(0.0, total)
            tc_ = np.mod(t + shift, total)
            rc_ = row
        if c == whole:  # the fractional copy
            keep = rng.uniform(size=len(tc_)) < frac
            tc_, rc_ = tc_[keep], rc_[keep]
        parts_t.append(tc_)
        parts_r.append(rc_)
    if not parts_t:
        return Replay(np.zeros(0), np.zeros(0, dtype=np.int64), len(rows))
    t = np.concatenate(parts_t)
    row = np.concatenate(parts_r)
    if len(parts_t) > 1:
        order = np.argsort(t, kind="stable")
        t, row = t[order], row[order]
    return Replay(t / tc.speedup, row, len(rows))


def replay_rate(tr: Trace, tc: TraceConfig, factor: float, horizon_s: float,
                rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Arrival times of a rate series replayed as a piecewise-constant Poisson process.

    Window ``w`` holds rate ``rate[w] x factor x speedup`` over its (sped-up) span; the last
    window lasts as long as the median window. Windows are clipped to ``[start_s, end_s)``, the
    series repeated ``repeat`` times, and generation stops at ``horizon_s``.

    Returns:
        Sorted arrival times and the number of windows used (one copy).
    """
    starts = tr.t
    widths = np.diff(starts)
    last = float(np.median(widths)) if len(widths) else 1.0
    ends = np.concatenate([starts[1:], [starts[-1] + last]])
    t0 = tc.start_s
    t1 = float(ends[-1]) if tc.end_s is None else min(tc.end_s, float(ends[-1]))
    a = np.clip(starts, t0, t1) - t0
    b = np.clip(ends, t0, t1) - t0
    use = b > a
    if not use.any():
        raise ConfigError(f"key 'trace.start_s'/'trace.end_s': no window of {tr.path} overlaps "
                          f"[{t0}, {t1}) s")
    a, b, rate = a[use], b[use], tr.rate[use]
    period = t1 - t0
    aa = np.concatenate([a + k * period for k in range(tc.repeat)]) / tc.speedup
    bb = np.concatenate([b + k * period for k in range(tc.repeat)]) / tc.speedup
    rr = np.tile(rate, tc.repeat) * factor * tc.speedup
    sel = aa < horizon_s
    aa, bb, rr = aa[sel], np.minimum(bb[sel], horizon_s), rr[sel]
    counts = rng.poisson(rr * (bb - aa))
    lo = np.repeat(aa, counts)
    hi = np.repeat(bb, counts)
    t = np.sort(lo + rng.uniform(size=len(lo)) * (hi - lo))
    return t, int(use.sum())


def draw_origins(t: np.ndarray, population: np.ndarray, utc_offset_h: np.ndarray,
                 curve: np.ndarray, start_utc_h: float,
                 rng: np.random.Generator) -> np.ndarray:
    """An origin per arrival, with probability proportional to population x diurnal(local time).

    Exact, vectorised rejection: draw a city by population, accept with probability
    ``diurnal(local hour at t) / max(curve)``, redraw the rejected ones.
    """
    w = population / population.sum()
    out = np.full(len(t), -1, dtype=np.int32)
    todo = np.arange(len(t))
    peak = float(curve.max())
    while len(todo):
        o = rng.choice(len(w), size=len(todo), p=w)
        local = start_utc_h + t[todo] / 3600.0 + utc_offset_h[o]
        ok = rng.uniform(0.0, peak, len(todo)) < diurnal_factor(curve, local)
        out[todo[ok]] = o[ok]
        todo = todo[~ok]
    return out


def trace_stream(cfg: SimConfig, population: np.ndarray, utc_offset_h: np.ndarray,
                 origin_names: list[str]) -> RequestStream:
    """The request stream of a trace replay run (``workload.arrivals.kind: trace``).

    Requests arriving at or after ``duration_s`` are dropped (counted in ``info``), and
    ``max_requests`` caps the stream.

    Raises:
        ConfigError: bad trace settings or file (see :func:`load_trace`), or an origin name in
            the trace that is not one of the world's origins.
    """
    tc = cfg.trace
    fmt = trace_format(tc)
    path = resolve_path(tc)
    tr = load_trace(path, fmt, skip_bad_rows=tc.skip_bad_rows)
    factor = tc.scale * cfg.load
    rng = rngs.generator(cfg.seed, "trace/replay")
    info: dict = {"source": "trace", "trace_path": str(path), "trace_format": fmt.name,
                  "trace_rows": tr.rows, "trace_rows_skipped": tr.n_skipped,
                  "trace_skipped_by_reason": dict(tr.skipped),
                  "trace_skipped_lines": list(tr.skipped_lines),
                  "speedup": tc.speedup, "scale": factor, "repeat": tc.repeat}
    in_tok = out_tok = None
    origin = None
    if fmt.kind == "requests":
        rp = replay_requests(tr, tc, factor, rng)
        info["trace_requests_in_window"] = rp.in_window
        t, row = rp.t, rp.row
        keep = t < cfg.duration_s
        info["dropped_after_duration"] = int((~keep).sum())
        t, row = t[keep], row[keep]
        in_tok = tr.in_tokens[row].astype(np.int32)
        out_tok = tr.out_tokens[row].astype(np.int32)
        if tr.origin is not None:
            origin = _origin_index(tr, row, origin_names)
    else:
        t, windows = replay_rate(tr, tc, factor, cfg.duration_s, rng)
        info["trace_windows_in_window"] = windows
    if cfg.max_requests is not None:
        t = t[:cfg.max_requests]
        if in_tok is not None:
            in_tok, out_tok = in_tok[:cfg.max_requests], out_tok[:cfg.max_requests]
        if origin is not None:
            origin = origin[:cfg.max_requests]
    if origin is None:
        curve = diurnal_curve(cfg.workload.arrivals.curve)
        origin = draw_origins(t, population, utc_offset_h, curve, cfg.start_utc_h,
                              rngs.generator(cfg.seed, "trace/origins"))
    info["requests"] = int(len(t))
    stream = assign_apps(cfg, t, origin, in_tokens=in_tok, out_tokens=out_tok)
    stream.info.update(info)
    if fmt.kind == "requests" and tr.prefix_ids is not None:
        if cfg.max_requests is not None:
            row = row[:cfg.max_requests]
        lo, hi = tr.prefix_off[row], tr.prefix_off[row + 1]
        n_ids = hi - lo
        off = np.concatenate([[0], np.cumsum(n_ids)]).astype(np.int64)
        idx = np.repeat(lo - off[:-1], n_ids) + np.arange(off[-1])
        stream.prefix_ids = tr.prefix_ids[idx]
        stream.prefix_off = off
        stream.prefix_block_tokens = fmt.prefix_block_tokens
        stream.info["prefix_blocks"] = int(off[-1])
    return stream


def _origin_index(tr: Trace, row: np.ndarray, names: list[str]) -> np.ndarray:
    """Origin numbers of the trace's origin column; an unknown name is an error with its line."""
    index = {n: i for i, n in enumerate(names)}
    codes = np.array([index.get(str(v), -1) for v in tr.origin], dtype=np.int32)
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        i = int(unknown[0])
        raise ConfigError(f"{tr.path}: line {tr.line[i]}: origin {tr.origin[i]!r} in column "
                          f"{tr.format.origin!r} is not a city of this world (names as in "
                          f"requests.parquet `origin`, e.g. {names[0]!r})")
    return codes[row]
