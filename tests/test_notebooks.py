"""The notebooks in notebooks/: committed without outputs, and each runs top to bottom cleanly.

Each is executed on a fresh kernel with nbclient (the kernel is this interpreter), with the
two-minute budget the notebooks promise as the cell timeout of the whole run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["latency_cost_curves.ipynb", "policy_comparison.ipynb", "capacity_plan.ipynb",
         "city_latency.ipynb"]
BUDGET_S = 120


def test_the_notebooks_exist_without_outputs():
    import nbformat

    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_a_fresh_kernel(name, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    env_before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=BUDGET_S, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        wall = time.perf_counter() - t0
    finally:
        if env_before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_before
    assert wall < BUDGET_S, f"{name} took {wall:.0f} s"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    if name != "capacity_plan.ipynb":
        assert images, f"{name} shows no figure"
