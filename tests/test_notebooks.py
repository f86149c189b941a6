"""Every demo notebook runs top to bottom, headless (nbclient), in local mode, as a user's copy would.

Each runs in a temporary copy of ``notebooks/`` (they write results next to themselves), with the
planner's state in a temporary folder, and the assertions check what the notebook is there to show.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A copy of notebooks/ (and examples/ beside it), local mode, state and runtime in tmp."""
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "results*"))
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    for name in list(os.environ):
        if name.startswith(("EXECPLANNER", "JPY_", "JUPYTERHUB")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXECPLANNER_MODE", "local")
    monkeypatch.setenv("EXECPLANNER_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EXECPLANNER_AUTOPILOT", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return folder


def run(folder: Path, name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(folder / name, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook


def text_of(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text/plain or HTML."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            data = output.get("data", {})
            parts.append(data.get("text/plain", ""))
            parts.append(data.get("text/html", ""))
    return "\n".join(parts)


def test_quickstart_books_runs_and_shows_the_results(workspace):
    notebook = run(workspace, "quickstart.ipynb")
    output = text_of(notebook)
    assert "local mode: 4 platform(s) from the built-in demo federation" in output
    assert "booked" in output and "on laptop" in output
    assert "COMPLETED - 5 results" in output
    # the analysis really ran: the three moving groups of the sample are found
    groups = (workspace / "results" / "moving-groups.csv").read_text().splitlines()
    assert groups[0] == "stars,ra,dec,pmra,pmdec,parallax" and len(groups) == 4
    assert any(
        cell.get("outputs") and any("image/svg+xml" in o.get("data", {}) for o in cell.outputs)
        for cell in notebook.cells
    )
    executed = nbformat.read(workspace / "results" / "mean-proper-motions.executed.ipynb", as_version=4)
    assert any("moving groups found" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert 'data-phase="COMPLETED"' in output  # planner.bookings() lists the booking, as the platform reports it
    # Bug 8: the exported page shows the app's state without any widget renderer (no internet needed)
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(notebook)
    snapshot = page[page.index('class="execplanner-snapshot"') :]
    assert "<strong>Offers</strong>" in snapshot and '<small class="ep-muted">laptop</small>' in snapshot
    snapshot = snapshot[: snapshot.index("</html>")]
    assert re.search(r'<svg [^>]*aria-label="Offers on a time axis"', snapshot)  # the timeline, inline SVG
    assert 'data-state="ACCEPTED"' in snapshot  # the booked offer, as the platform said


def test_scripting_reads_dialects_books_and_uses_the_command_line(workspace):
    notebook = run(workspace, "scripting.ipynb")
    output = text_of(notebook)
    assert output.count("same compute as the broker form: True") == 2
    assert "cesga      NO" in output and "cannot run a python-script executable" in output
    assert "COMPLETED" in output and "fetched gaia-sample.csv" in output
    clusters = (workspace / "results-scripting" / "clusters.csv").read_text().splitlines()
    assert clusters[0] == "pmra,pmdec" and len(clusters) == 5
    assert "No platforms file given: using the built-in demo federation." in output
    assert "needs 220 cores" in output  # the command line's NO reasons
    assert (
        "kind: https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"
        in output
    )


def test_provider_serves_a_hosted_platform_over_executionbroker_and_uws(workspace):
    notebook = run(workspace, "provider.ipynb")
    output = text_of(notebook)
    assert "edinburgh  hosted" in output and "cesga      static" in output
    assert "platforms[edinburgh].hosted.cores" in output  # the broken file is explained
    assert "200 YES 3 offers" in output
    assert "ACCEPTED" in output and "its sibling is now REJECTED" in output
    assert "<uws:phase>COMPLETED</uws:phase>" in output
    assert "server stopped with" in output


def test_when_can_i_do_this_offers_later_times_books_and_shows_the_calendar(workspace):
    notebook = run(workspace, "when-can-i-do-this.ipynb")
    output = text_of(notebook)
    lines = [line for line in output.splitlines() if line.startswith("gaia-dmp  starts")]
    assert len(lines) == 4, output
    waits = [float(line.split("(in")[1].split("h)")[0]) for line in lines]
    assert waits == sorted(waits) and waits[0] >= 1.5  # busy now: big work is offered later
    assert len(set(waits)) == 4  # one offer per start time
    assert "needs 100 cores" in output  # the small platforms' NO reasons
    assert "ACCEPTED - booked from" in output and output.count("is now REJECTED") == 3
    assert output.count("booking calendar") >= 2  # before and after booking
    again = [line for line in output.splitlines() if line.startswith("now offered:")]
    assert again and lines[0].split("starts ")[1][:9] not in again[0]  # the booked slot is gone
    assert output.rstrip().endswith("CANCELLED")
    assert 'aria-label="Offers on a time axis"' in output and "cores taken" in output  # the timeline, calendar shaded
