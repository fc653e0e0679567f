"""Build: the package is pure Python, and its per-request path is also compiled with mypyc.

The modules in ``COMPILED`` (the engine's event loop, the replica scheduler, the prefix cache,
the request a policy sees and the policies' grid view; the same list as ``aigrid_sim/_native.py``)
are compiled to C extensions by mypyc when a C compiler is at hand. They are the same source
files: nothing is written twice. The build records each source's SHA-256 in
``aigrid_sim/_native.json``; at run time the compiled modules are used only when every source
still has that hash (see ``aigrid_sim/_native.py``), so editing one of them in an editable
install falls back to the pure-Python sources, with a warning, until the next
``pip install -e .``.

``AIGRID_SIM_PURE=1 pip install ...`` builds without compiling. A build whose compiler fails,
or whose sources mypyc cannot compile, warns and installs the pure-Python package.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
# The same list as aigrid_sim/_native.py (kept literal here: setup.py must not import the package).
COMPILED = [
    "aigrid_sim/serving/prefix_cache.py",
    "aigrid_sim/serving/replica.py",
    "aigrid_sim/sim/engine.py",
    "aigrid_sim/sim/policies/request.py",
    "aigrid_sim/sim/policies/view.py",
]
MYPY_ARGS = ["--ignore-missing-imports", "--follow-imports=silent"]
HASHES = ROOT / "aigrid_sim" / "_native.json"


class OptionalBuildExt(build_ext):
    """Compile the extensions if possible; otherwise warn and leave the pure-Python package."""

    def run(self):  # noqa: D102
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - any compiler failure: fall back to pure Python
            self._give_up(e)

    def build_extension(self, ext):  # noqa: D102
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)

    def _give_up(self, e):
        HASHES.unlink(missing_ok=True)
        print(f"WARNING: aigrid-sim: compiling the per-request path failed ({e}); "
              "installing the pure-Python modules (slower, same results)", file=sys.stderr)


def ext_modules():
    """The mypyc extensions, or none (AIGRID_SIM_PURE=1, or mypyc missing)."""
    HASHES.unlink(missing_ok=True)
    if os.environ.get("AIGRID_SIM_PURE", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("WARNING: aigrid-sim: mypyc not found; installing the pure-Python modules",
              file=sys.stderr)
        return []
    hashes = {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for p in COMPILED}
    try:
        exts = mypycify(MYPY_ARGS + COMPILED, opt_level="3", group_name="aigrid_sim.native")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a type error: say so, stay pure
        print(f"WARNING: aigrid-sim: mypyc could not compile the per-request path ({e!r}; "
              f"see why: mypy {' '.join(MYPY_ARGS + COMPILED)}); installing the pure-Python "
              "modules (slower, same results)", file=sys.stderr)
        return []
    HASHES.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return exts


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
