"""``python -m autograder release``: course/ generated from solutions/, byte-stable, checked.

A two-exercise lesson is written into a temporary repository so these tests do not depend on
the lessons; the last test checks the real course/ against the real solutions/.
"""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import release
from autograder.cli import main
from autograder.config import tools_on_path

NAME = "00_tiny"
SECRET = "HIDDEN_ASSERT_MARKER"
ROOT = Path(__file__).resolve().parents[1]


def _nbgrader(grade_id, **flags):
    meta = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": False, "task": False}
    return {"nbgrader": {**meta, **flags}}


def tiny_lesson():
    """A lesson with one answer cell and one test cell holding a hidden block."""
    answer = ('def double(x):\n    """Return 2 * x: (n,) -> (n,)."""\n'
              "    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION")
    test = ('"""Check that double doubles."""\nassert double(1) == 2\n'
            f'### BEGIN HIDDEN TESTS\nassert double(3) == 6, "{SECRET}"\n### END HIDDEN TESTS')
    cells = [new_markdown_cell("# Tiny", id="intro"),
             new_code_cell(answer, id="double", metadata=_nbgrader("double", solution=True)),
             new_code_cell(test, id="double_value", metadata=_nbgrader(
                 "double_value", grade=True, locked=True, points=2))]
    cells[1].outputs = [nbformat.v4.new_output("stream", text="executed output\n")]
    cells[1].execution_count = 3
    kernelspec = {"name": "python3", "display_name": "Python 3"}
    return new_notebook(cells=cells, metadata={"kernelspec": kernelspec})


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A temporary repository with solutions/00_tiny.ipynb, released once into course/."""
    tools_on_path()
    root = tmp_path_factory.mktemp("repo")
    (root / "solutions").mkdir()
    nbformat.write(tiny_lesson(), root / "solutions" / f"{NAME}.ipynb")
    assert main(["--root", str(root), "release"]) == 0
    return root


def test_student_version_has_stubs_no_hidden_tests_no_outputs(repo):
    """The answer becomes nbgrader's stub; the hidden block and every output are gone."""
    text = (repo / "course" / f"{NAME}.ipynb").read_text()
    nb = nbformat.reads(text, as_version=4)
    answer, test = nb.cells[2], nb.cells[3]
    assert "raise NotImplementedError()" in answer.source and "return 2 * x" not in answer.source
    assert '"""Return 2 * x' in answer.source, "the signature and docstring stay"
    assert "assert double(1) == 2" in test.source
    assert SECRET not in text and "BEGIN HIDDEN TESTS" not in text
    assert all(c.get("outputs", []) == [] for c in nb.cells)
    assert test.metadata.nbgrader["checksum"], "nbgrader's checksum is recorded"


def test_first_cell_says_generated_and_where_to_edit(repo):
    """The notice names the solutions/ file to edit instead."""
    first = nbformat.read(repo / "course" / f"{NAME}.ipynb", as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert "Generated file" in first.source and f"solutions/{NAME}.ipynb" in first.source


def test_regenerating_gives_identical_bytes(repo):
    """A second release writes nothing and --check passes."""
    before = (repo / "course" / f"{NAME}.ipynb").read_bytes()
    assert release.release(repo) == []
    assert (repo / "course" / f"{NAME}.ipynb").read_bytes() == before
    assert main(["--root", str(repo), "release", "--check"]) == 0


def test_check_lists_stale_missing_and_extra(tmp_path, repo, capsys):
    """--check exits 1 and names each problem."""
    root = tmp_path / "copy"
    shutil.copytree(repo, root)
    course = root / "course"
    nb = json.loads((course / f"{NAME}.ipynb").read_text())
    nb["cells"][1]["source"] = ["# Edited by hand"]
    (course / f"{NAME}.ipynb").write_text(json.dumps(nb))
    (course / "99_orphan.ipynb").write_text("{}")
    shutil.copyfile(root / "solutions" / f"{NAME}.ipynb", root / "solutions" / "01_more.ipynb")
    assert main(["--root", str(root), "release", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: course/{NAME}.ipynb" in err
    assert "missing: course/01_more.ipynb" in err
    assert "extra (no solutions/ source): course/99_orphan.ipynb" in err


@pytest.mark.slow
def test_repository_course_is_in_sync():
    """The committed course/ is exactly what solutions/ generates."""
    tools_on_path()
    assert release.stale(ROOT) == []
