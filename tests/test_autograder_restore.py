"""Deleted read-only helper cells come back before grading (nbgrader restores only graded ones)."""

import nbformat

from autograder.notes import restore_locked_cells


def cell(source, grade_id, locked=False, grade=False, solution=False):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = 1
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def release():
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Lesson"),
        cell("def predict(): ...", "predict", solution=True),
        cell("class FakeModel: ...", "fake_models", locked=True),
        cell('"""Check predict."""\nassert predict', "predict_char", locked=True, grade=True),
        cell("HELPER = 1", "more_helpers", locked=True),
    ])


def test_a_deleted_helper_cell_returns_where_it_stood():
    submission = release()
    del submission.cells[2]  # fake_models
    notes = restore_locked_cells(submission, release())
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in submission.cells]
    assert ids == [None, "predict", "fake_models", "predict_char", "more_helpers"]
    assert notes == ["read-only cell 'fake_models' was deleted: it was restored before grading"]


def test_graded_and_answer_cells_are_left_to_nbgrader_and_intact_notebooks_untouched():
    submission = release()
    del submission.cells[3]  # a test cell: nbgrader's add_missing_cells restores it
    del submission.cells[1]  # an answer cell: the answer is gone, nothing to restore
    assert restore_locked_cells(submission, release()) == []
    assert len(submission.cells) == 3
    intact = release()
    before = nbformat.writes(intact)
    assert restore_locked_cells(intact, intact) == [] and nbformat.writes(intact) == before


def test_helpers_deleted_together_keep_their_order():
    submission = release()
    del submission.cells[4]
    del submission.cells[2]
    restore_locked_cells(submission, release())
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in submission.cells]
    assert ids == [None, "predict", "fake_models", "predict_char", "more_helpers"]
