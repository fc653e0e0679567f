"""The compiled per-request path: which modules mypyc compiles, and when their build is used.

``setup.py`` compiles the modules of :data:`COMPILED` with mypyc (the same source files; the
package is pure Python without them) and records each source's SHA-256 in ``_native.json``.
:func:`install` runs when ``aigrid_sim`` is imported, before any of these modules is. It keeps
the compiled build only when every one of its sources still has the recorded hash. Otherwise
(a source edited since the build, as in an editable install, or ``AIGRID_SIM_PURE=1``) an
import finder loads all of them from their ``.py`` files, as a checkout without a build does
anyway. All or none: the compiled modules call each other directly, so a mix would run stale
code.

The two builds give the same results bit for bit (the tests run on either; CI runs the compiled
one). Profile with ``AIGRID_SIM_PURE=1``: cProfile does not see inside compiled functions.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

#: Modules compiled by ``setup.py`` (keep its ``COMPILED`` list the same).
COMPILED = ("aigrid_sim.serving.prefix_cache", "aigrid_sim.serving.replica",
            "aigrid_sim.sim.engine", "aigrid_sim.sim.policies.request",
            "aigrid_sim.sim.policies.view")

_PKG = Path(__file__).resolve().parent
#: "compiled", or why the pure-Python modules run: set by :func:`install`.
MODE = "pure Python (not installed)"


def _source(name: str) -> Path:
    return _PKG.parent.joinpath(*name.split(".")).with_suffix(".py")


def _built(name: str) -> bool:
    src = _source(name)
    return any(src.with_suffix(s).exists() for s in importlib.machinery.EXTENSION_SUFFIXES)


class _PureFinder:
    """Finds the compiled modules' ``.py`` sources ahead of their extension modules."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # noqa: D102
        if name not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(name, _source(name))


def _why_pure() -> str | None:
    """None if the compiled build can be used, else why not."""
    if os.environ.get("AIGRID_SIM_PURE", "") not in ("", "0"):
        return "pure Python (AIGRID_SIM_PURE is set)"
    built = [_built(n) for n in COMPILED]
    if not any(built):
        return "pure Python (not compiled)"
    try:
        recorded = json.loads((_PKG / "_native.json").read_text())
    except (OSError, ValueError):
        recorded = {}
    stale = []
    for name, ok in zip(COMPILED, built, strict=True):
        rel = _source(name).relative_to(_PKG.parent).as_posix()
        digest = hashlib.sha256(_source(name).read_bytes()).hexdigest()
        if not ok or recorded.get(rel) != digest:
            stale.append(rel)
    if stale:
        warnings.warn(f"aigrid_sim: {', '.join(stale)} changed since it was compiled: running the "
                      "pure-Python modules (same results, slower); reinstall to compile them "
                      "again (pip install -e .)", RuntimeWarning, stacklevel=3)
        return "pure Python (compiled build out of date)"
    return None


def install() -> None:
    """Choose the build (see the module docstring); call before importing :data:`COMPILED`."""
    global MODE
    if any(n in sys.modules for n in COMPILED):
        return  # already chosen (a re-import)
    why = _why_pure()
    if why is None:
        MODE = "compiled (mypyc)"
        return
    MODE = why
    if any(_built(n) for n in COMPILED) and \
            not any(isinstance(f, _PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder())
