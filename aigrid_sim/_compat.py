"""Old module paths from before the one-folder-per-stage layout (DESIGN.md section 2).

``import aigrid_sim.engine`` (or ``from aigrid_sim.policies import BasePolicy``, or
``python -m aigrid_sim.headline``) keeps working: each old name is an alias of the module that now
owns the code, the very same module object, so monkeypatching and ``isinstance`` behave as before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

MOVED = {
    "aigrid_sim.geo": "aigrid_sim.world.geo",
    "aigrid_sim.rtt_fit": "aigrid_sim.world.rtt_fit",
    "aigrid_sim.catalog": "aigrid_sim.serving.catalog",
    "aigrid_sim.batching": "aigrid_sim.serving.batching",
    "aigrid_sim.engine": "aigrid_sim.sim.engine",
    "aigrid_sim.faults": "aigrid_sim.sim.faults",
    "aigrid_sim.policies": "aigrid_sim.sim.policies",
    "aigrid_sim.policies.base": "aigrid_sim.sim.policies.base",
    "aigrid_sim.policies.builtin": "aigrid_sim.sim.policies.builtin",
    "aigrid_sim.policies.view": "aigrid_sim.sim.policies.view",
    "aigrid_sim.metrics": "aigrid_sim.results.metrics",
    "aigrid_sim.plots": "aigrid_sim.results.plots",
    "aigrid_sim.report": "aigrid_sim.results.report",
    "aigrid_sim.stats": "aigrid_sim.results.stats",
    "aigrid_sim.plan": "aigrid_sim.studies.plan",
    "aigrid_sim.validate": "aigrid_sim.studies.validate",
    "aigrid_sim.bench": "aigrid_sim.studies.bench",
    "aigrid_sim.headline": "aigrid_sim.studies.headline",
    "aigrid_sim.theory": "aigrid_sim.studies.theory",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the module that now lives at the new name."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # the import system overwrites it; put it back below
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self._spec  # already executed under its new name

    def get_code(self, fullname):  # for ``python -m <old name>`` (runpy)
        spec = importlib.util.find_spec(self.target)
        return spec.loader.get_code(self.target)

    def is_package(self, fullname) -> bool:
        spec = importlib.util.find_spec(self.target)
        return spec.submodule_search_locations is not None


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        is_pkg = fullname == "aigrid_sim.policies"
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = []
        return spec


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
