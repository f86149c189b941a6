"""The Slurm demo notebook runs top to bottom (nbclient) against the test run's real Slurm cluster:
offers from the Slurm platform beside this machine's, a foreign sbatch job pushing them later,
Slurm's MaxTime as a NO reason, a booking visible in ``scontrol show reservation``, and the job
running under Slurm to COMPLETED with its results."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from slurm_cluster import ensure_slurm_executor, slurm_cluster  # noqa: F401

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_the_slurm_notebook_books_and_runs_under_slurm(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    registration = ensure_slurm_executor(tmp_path / "entry-points")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's workspace
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    if registration:  # the kernel finds the executor too
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [registration, os.environ.get("PYTHONPATH")])))
    slurm_cluster.clean()
    notebook = nbformat.read(NOTEBOOKS / "slurm.ipynb", as_version=4)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
    finally:
        slurm_cluster.clean()
    output = "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert f"using the Slurm cluster of SLURM_CONF = {slurm_cluster.conf}" in output
    (tmp_path / "notebook-output.txt").write_text(output)

    def starts(platform: str) -> list[float]:
        prefix = f"{platform:8} offers a start in"
        return [float(line.split()[-2]) for line in output.splitlines() if line.startswith(prefix)]

    assert starts("laptop") and starts("laptop")[0] < 1, output  # this machine is free now
    assert starts("cluster") and min(starts("cluster")) >= 9, output  # after the foreign job's 10 minutes
    assert "allows at most 1:00:00 per job (MaxTime)" in output
    assert "ReservationName=execplanner-" in output and "CoreCnt=2" in output
    assert "ended COMPLETED" in output and "submitted to Slurm as job" in output, output[-3000:]
    assert "total = 5050" in output and "in Slurm job" in output
    assert not list(NOTEBOOKS.glob("results*"))  # nothing written beside the notebooks
