"""The quickstart notebook runs top to bottom and produces its video."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(
    notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  ).execute()
  outputs = [
    o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
  ]
  assert not [o for o in outputs if o.output_type == "error"]
  assert (tmp_path / "quickstart.mp4").stat().st_size > 1000
  assert any("image/png" in o.get("data", {}) for o in outputs)
