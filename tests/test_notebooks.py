"""Every lesson runs headless: solutions pass every graded test, student versions pass none.

Notebooks run in fast mode (``D2LMINI_FAST=1``) from a scratch working directory, as a
grader would run them. Each notebook is its own test so pytest-xdist can run them side by side.
"""

import ast
from pathlib import Path

import nbformat
import pytest
from kernel_watch import WatchedClient  # tests/kernel_watch.py: slow is fine, stuck fails

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
COURSE = sorted((ROOT / "course").glob("*.ipynb"))
UNGRADED = {"07_playground"}


def graded_cells(notebook):
    """The code cells nbgrader scores (autograded tests)."""
    return [cell for cell in notebook.cells if cell.cell_type == "code"
            and cell.metadata.get("nbgrader", {}).get("grade")]


def failure_text(cell):
    """What a graded cell showed that nbgrader scores as a failure: an error or stderr."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}"
        if output.output_type == "stream" and output.name == "stderr":
            return f"stderr: {output.text[:500]}"
    return None


def execute(path, workdir, monkeypatch, allow_errors):
    """Run a notebook top to bottom in fast mode and return it with its outputs."""
    monkeypatch.setenv("D2LMINI_FAST", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # notebooks run side by side under xdist
    notebook = nbformat.read(path, as_version=4)
    # Cell and start-up timeouts sized for a loaded machine; a kernel that sits idle while a
    # cell runs fails the test within about two minutes, with its stack (KernelHung).
    client = WatchedClient(notebook, kernel_name="python3", allow_errors=allow_errors,
                           resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def test_there_are_seven_lessons_each_in_both_folders():
    names = [path.stem for path in SOLUTIONS]
    assert [name[:3] for name in names] == ["01_", "02_", "03_", "04_", "05_", "06_", "07_"], \
        names
    assert [path.stem for path in COURSE] == names


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.stem)
def test_graded_cells_are_well_formed(path):
    """Each test cell opens with a docstring and ends with a statement, never a bare value."""
    cells = graded_cells(nbformat.read(path, as_version=4))
    assert cells or path.stem in UNGRADED, f"{path.name} has no graded test cell"
    ids = [cell.metadata.nbgrader["grade_id"] for cell in cells]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}: {ids}"
    for cell, grade_id in zip(cells, ids, strict=True):
        assert cell.metadata.nbgrader.get("locked") and cell.metadata.nbgrader["points"] > 0
        body = ast.parse(cell.source.replace("### BEGIN HIDDEN TESTS", "")
                         .replace("### END HIDDEN TESTS", "")).body
        assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and body[0].value.value.startswith("Check"), f"{grade_id}: no 'Check ...' docstring"
        last = body[-1]
        assert not (isinstance(last, ast.Expr) and not isinstance(last.value, ast.Call)), \
            f"{grade_id} ends with a bare expression, which nbgrader reads as a partial score"


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.stem)
def test_solution_runs_headless_and_passes_every_graded_cell(path, tmp_path, monkeypatch, book):
    notebook = execute(path, tmp_path, monkeypatch, allow_errors=False)
    failed = {cell.metadata.nbgrader["grade_id"]: failure_text(cell)
              for cell in graded_cells(notebook) if failure_text(cell)}
    assert failed == {}


@pytest.mark.slow
@pytest.mark.parametrize("path", COURSE, ids=lambda path: path.stem)
def test_student_version_gives_no_free_points(path, tmp_path, monkeypatch, book):
    notebook = execute(path, tmp_path, monkeypatch, allow_errors=True)
    passed = [cell.metadata.nbgrader["grade_id"] for cell in graded_cells(notebook)
              if not failure_text(cell)]
    assert passed == [], f"graded cells that pass without an answer: {passed}"
