"""Arrivals window by window, so a long run never holds its whole request stream.

A synthetic stream is drawn in fixed *blocks* of :data:`BLOCK_S` simulated seconds. Block ``b``
covers ``[b * BLOCK_S, (b + 1) * BLOCK_S)`` and draws from its own random streams (named
``arrivals/block<b>``, ``apps/block<b>`` and ``work/<app>/block<b>``, children of the run's
``SeedSequence``), so its requests do not depend on how many blocks came before or how they are
grouped. :func:`windows` cuts the blocks into windows of any length: concatenating the windows
gives the same stream, bit for bit, whatever the window (``tests/workload/test_windows.py``).
:func:`aigrid_sim.workload.generate.generate_stream` is the concatenation of all blocks, so an
all-in-memory run and a streamed run see the same requests.

Within a block the process is the one of :mod:`aigrid_sim.workload.generate`: a
non-homogeneous Poisson process sampled by thinning (candidates at the peak rate, each kept with
probability ``rate(t, origin) / peak``), exact for any rate shape. The Markov-modulated burst
chain and the flash crowds are functions of absolute time drawn once for the run (an MMPP path is
a few numbers per state change), so every block sees the same modulation.

A replayed trace is read whole (its size is the file's) and cut into windows the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from aigrid_sim import rng as rngs
from aigrid_sim.config import SimConfig
from aigrid_sim.workload.generate import _crowd_origins, assign_apps
from aigrid_sim.workload.processes import MMPP, FlashCrowd, diurnal_curve, diurnal_factor
from aigrid_sim.workload.stream import RequestStream

#: Simulated seconds drawn per block (fixed: it is part of what a seed means).
BLOCK_S = 60.0

#: Default window of a streamed run, simulated seconds.
WINDOW_S = 60.0


class SyntheticArrivals:
    """The synthetic arrival process of a run, drawn block by block.

    Args:
        cfg: The run's config (rate, load, arrivals, apps, seed, duration, max_requests).
        population: Demand weight per origin.
        utc_offset_h: UTC offset of each origin (local time of day).
        region: Per origin (flash crowds aimed at a region; per-region MMPP).
        country: Per origin (flash crowds aimed at countries).
        names: Per origin (flash crowds aimed at cities).

    Raises:
        ConfigError: a flash crowd or per-region MMPP that the origins cannot satisfy.
    """

    def __init__(self, cfg: SimConfig, population: np.ndarray, utc_offset_h: np.ndarray, *,
                 region: list[str] | None = None, country: list[str | None] | None = None,
                 names: list[str] | None = None):
        self.cfg = cfg
        pop = np.asarray(population, float)
        self.weights = pop / pop.sum()
        self.cum = np.cumsum(self.weights)
        self.cum /= self.cum[-1]
        self.offset = np.asarray(utc_offset_h, float)
        self.total = cfg.workload.rate_rps * cfg.load
        arr = cfg.workload.arrivals
        self.diurnal = arr.kind == "diurnal"
        self.curve = diurnal_curve(arr.curve) if self.diurnal else np.ones(24)
        peak = float(self.curve.max())
        self.mmpp = (MMPP.build([s.rate for s in arr.mmpp.states],
                                [s.mean_sojourn_s for s in arr.mmpp.states],
                                arr.mmpp.transitions) if arr.mmpp.states else None)
        self.crowds = [(FlashCrowd(f.start_s, f.ramp_up_s, f.duration_s, f.ramp_down_s, f.factor),
                        _crowd_origins(i, f, len(pop), region, country, names))
                       for i, f in enumerate(arr.flash_crowds)]
        self._mmpp_paths: list = []
        self._mmpp_region: np.ndarray | None = None
        if self.mmpp is not None:
            peak *= self.mmpp.peak
            self._draw_mmpp_paths(region)
        for fc, _ in self.crowds:
            peak *= fc.peak
        self.peak = peak
        self.modulated = self.mmpp is not None or bool(self.crowds)
        self.n_blocks = max(1, math.ceil(cfg.duration_s / BLOCK_S))
        self.emitted = 0

    def _draw_mmpp_paths(self, region) -> None:
        from aigrid_sim.errors import ConfigError

        cfg, T = self.cfg, self.cfg.duration_s
        if cfg.workload.arrivals.mmpp.scope == "global":
            self._mmpp_paths = [self.mmpp.path(rngs.generator(cfg.seed, "arrivals/mmpp"), T)]
            return
        if region is None:
            raise ConfigError("key 'workload.arrivals.mmpp.scope': 'region' needs origins with "
                              "regions (a world), none were given")
        regions, code = np.unique(np.asarray(region, dtype=object).astype(str),
                                  return_inverse=True)
        self._mmpp_region = code
        self._mmpp_paths = [self.mmpp.path(rngs.generator(cfg.seed, f"arrivals/mmpp/{name}"), T)
                            for name in regions]

    def _mmpp_multiplier(self, t: np.ndarray, origin: np.ndarray) -> np.ndarray:
        if self._mmpp_region is None:
            starts, states = self._mmpp_paths[0]
            return self.mmpp.multiplier(starts, states, t)
        out = np.empty(len(t))
        rc = self._mmpp_region[origin]
        for k, (starts, states) in enumerate(self._mmpp_paths):
            idx = np.flatnonzero(rc == k)
            if len(idx):
                out[idx] = self.mmpp.multiplier(starts, states, t[idx])
        return out

    def block(self, b: int) -> RequestStream:
        """The requests arriving in block ``b`` (time-sorted; empty past ``max_requests``)."""
        cfg = self.cfg
        t0 = b * BLOCK_S
        t1 = min(cfg.duration_s, t0 + BLOCK_S)
        rng = rngs.generator(cfg.seed, f"arrivals/block{b}")
        n = int(rng.poisson(self.total * self.peak * max(t1 - t0, 0.0)))
        t = np.sort(rng.uniform(t0, t1, n))
        # Inverse-CDF draw of origins (what Generator.choice(p=...) does, without re-checking p).
        origin = np.minimum(np.searchsorted(self.cum, rng.random(n), side="right"),
                            len(self.cum) - 1).astype(np.int32)
        if self.diurnal or self.modulated:
            m = (diurnal_factor(self.curve, cfg.start_utc_h + t / 3600.0 + self.offset[origin])
                 if self.diurnal else np.ones(n))
            if self.mmpp is not None:
                m *= self._mmpp_multiplier(t, origin)
            for fc, mask in self.crowds:
                hit = mask[origin]
                m[hit] *= fc.multiplier(t[hit])
            keep = rng.uniform(0.0, self.peak, n) < m
            t, origin = t[keep], origin[keep]
        if cfg.max_requests is not None:
            room = max(cfg.max_requests - self.emitted, 0)
            t, origin = t[:room], origin[:room]
        self.emitted += len(t)
        return assign_apps(cfg, t, origin, key=f"/block{b}")

    def blocks(self) -> Iterator[RequestStream]:
        """Every block in order (stops early once ``max_requests`` is reached)."""
        self.emitted = 0
        for b in range(self.n_blocks):
            if self.cfg.max_requests is not None and self.emitted >= self.cfg.max_requests:
                return
            yield self.block(b)

    def info(self) -> dict:
        """What :attr:`RequestStream.info` says about a synthetic stream."""
        arr = self.cfg.workload.arrivals
        return {"source": "synthetic", "arrivals": arr.kind, "mmpp_states": len(arr.mmpp.states),
                "flash_crowds": len(arr.flash_crowds), "block_s": BLOCK_S}


def concat(parts: list[RequestStream], apps=None, info: dict | None = None) -> RequestStream:
    """One stream from consecutive pieces (``apps`` when there are none)."""
    if not parts:
        return RequestStream(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int16),
                             np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
                             list(apps or []), dict(info or {}))
    if len(parts) == 1:
        s = parts[0]
        return RequestStream(s.t, s.origin, s.app, s.in_tokens, s.out_tokens, s.work_s, s.apps,
                             dict(info if info is not None else s.info))
    cols = {name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("t", "origin", "app", "in_tokens", "out_tokens", "work_s")}
    return RequestStream(**cols, apps=parts[0].apps,
                         info=dict(info if info is not None else parts[0].info))


def windows(pieces: Iterable[RequestStream], window_s: float) -> Iterator[RequestStream]:
    """Re-cut a time-sorted sequence of stream pieces into windows of ``window_s`` seconds.

    Window ``k`` holds the requests arriving in ``[k * window_s, (k + 1) * window_s)``; empty
    windows are skipped. The concatenation of the windows is the concatenation of the pieces.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 (got {window_s})")
    buf: list[RequestStream] = []
    k = 0
    for p in pieces:
        if not len(p):
            continue
        buf.append(p)
        while buf and buf[-1].t[-1] >= (k + 1) * window_s:  # window k is complete
            end = (k + 1) * window_s
            out, keep = [], []
            for q in buf:
                cut = int(np.searchsorted(q.t, end, side="left"))
                if cut:
                    out.append(_slice(q, 0, cut))
                if cut < len(q):
                    keep.append(_slice(q, cut, len(q)))
            buf = keep
            if out:
                yield concat(out)
            k = max(k + 1, int(buf[0].t[0] // window_s)) if buf else k + 1
    if buf:
        yield concat(buf)


def _slice(s: RequestStream, a: int, b: int) -> RequestStream:
    return RequestStream(s.t[a:b], s.origin[a:b], s.app[a:b], s.in_tokens[a:b],
                         s.out_tokens[a:b], s.work_s[a:b], s.apps, s.info)


def split(stream: RequestStream, window_s: float) -> Iterator[RequestStream]:
    """An in-memory stream (a replayed trace) as windows of ``window_s`` seconds."""
    return windows([stream], window_s)
