"""notebooks/explore_run.ipynb executes on a tiny run (nbclient), so it cannot rot."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from afos.cli import main
from afos.run.rundir import Run

pytestmark = pytest.mark.slow  # each test runs a notebook in a kernel: `python -m pytest -m "not slow"` leaves it out

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_run.ipynb"


def test_explore_run_notebook_executes_on_a_tiny_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(["search", "--run-dir", str(run_dir), "--population", "2", "--generations", "1",
                 "--train-size", "128", "--val-size", "64", "--seed", "5"]) == 0
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("AFOS_RUN_DIR", str(run_dir))
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 3
    front = Run.open(run_dir).front()
    assert f"run {run_dir}:" in text and f"front of {len(front)}" in text
    for e in front:
        assert e.expression in text


def test_own_model_notebook_searches_a_model_and_data_defined_in_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    nb = nbformat.read(NOTEBOOK.with_name("own_model.ipynb"), as_version=4)
    monkeypatch.setenv("AFOS_RUN_DIR", str(run_dir))
    monkeypatch.setenv("AFOS_QUICK", "1")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    run = Run.open(run_dir)
    assert run.config.fitness.model == "__main__:SmallNet" and run.config.fitness.dataset.startswith("arrays:")
    assert max(r.generation for r in run.records()) == 2  # searched, then resumed one generation further
    assert f"best: {run.best().expression}" in text and "import torch" in text
