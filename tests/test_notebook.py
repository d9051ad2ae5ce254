"""notebooks/results.ipynb runs top to bottom on the smoke profile's results (so it cannot rot)."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from tests.test_workflow import ROOT, smoke_results  # noqa: F401 (session fixture)


def test_results_notebook_executes_against_the_smoke_results(smoke_results, monkeypatch):
    monkeypatch.setenv("SFPROMPT_RESULTS", str(smoke_results))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 6  # every figure redrawn (the core five and backbone strength)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "44 finished runs, 0 missing" in text and "Table (claims)" in text
