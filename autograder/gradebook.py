"""The instructor's gradebook: lessons copied in from the template, results merged in.

Workers grade into private SQLite copies (SQLite does not like concurrent writers); only
this module, in the parent process, writes the instructor's gradebook, one result at a time.
"""

import json
import warnings

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning


def sync_lessons(template_url: str, master_url: str, names) -> None:
    """Make the lessons ``names`` in the master gradebook match the template's cells."""
    with Gradebook(template_url) as src, Gradebook(master_url) as dst:
        for name in names:
            dst.update_or_create_assignment(name)
            notebook = src.find_notebook(name, name)
            _ensure_notebook(dst, name, notebook.kernelspec)
            for cell in notebook.grade_cells:
                dst.update_or_create_grade_cell(cell.name, name, name, max_score=cell.max_score,
                                                cell_type=cell.cell_type)
            for cell in notebook.solution_cells:
                dst.update_or_create_solution_cell(cell.name, name, name)
            for cell in notebook.task_cells:
                dst.update_or_create_task_cell(cell.name, name, name, max_score=cell.max_score,
                                               cell_type=cell.cell_type)
            for cell in notebook.source_cells:
                dst.update_or_create_source_cell(
                    cell.name, name, name, cell_type=cell.cell_type, locked=cell.locked,
                    source=cell.source, checksum=cell.checksum)


def _ensure_notebook(gb, name: str, kernelspec) -> None:
    try:
        gb.find_notebook(name, name)
    except MissingEntry:
        gb.add_notebook(name, name, kernelspec=kernelspec or json.dumps({}))


def merge_result(gb: Gradebook, result: dict) -> None:
    """Record one graded (or ungradable) submission: every graded cell's automatic score."""
    student, lesson = result["student"], result["lesson"]
    gb.update_or_create_student(student)
    with warnings.catch_warnings():  # nbgrader's own SQLAlchemy session warnings
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_submission(lesson, student)
    for row in result["cells"]:
        grade = gb.find_grade(row["grade_id"], lesson, lesson, student)
        grade.auto_score = row["points"]
        grade.needs_manual_grade = False
    gb.db.commit()


def max_points(gb: Gradebook, lesson: str, order: dict[str, int]) -> list[dict]:
    """Zero-point rows for every graded cell of a lesson (an unreadable submission)."""
    cells = sorted(gb.find_notebook(lesson, lesson).grade_cells,
                   key=lambda c: order.get(c.name, len(order)))
    return [{"grade_id": c.name, "points": 0.0, "max_points": float(c.max_score),
             "passed": False, "message": ""} for c in cells]
