"""The instructor's gradebook: lessons copied in from the template, results merged in.

Workers grade into private SQLite copies (SQLite does not like concurrent writers); only
this module, in the parent process, writes the instructor's gradebook. The gradebook is
nbgrader's own schema in any database SQLAlchemy reaches: SQLite by default
(``sqlite:///OUT/gradebook.db``) or PostgreSQL (``postgresql://user:pass@host/db``, through
psycopg 3). Two grading runs may write one gradebook at the same time: every write (the
tables, the lessons, the merge) happens under one writer lock per gradebook (a PostgreSQL
advisory lock, or a file lock beside an SQLite file), so no run sees a half-made row of the
other and no grade is lost or written twice (nbgrader's unique constraints hold too).
"""

import contextlib
import fcntl
import json
import time
import warnings
import zlib
from pathlib import Path

from nbgrader.api import (
    BaseCell,
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SAWarning
from sqlalchemy.pool import NullPool

LOCK_NAME = "autograder gradebook writer"


def engine_url(db_url: str) -> str:
    """The URL SQLAlchemy should open: ``postgresql://`` and ``postgres://`` go through
    psycopg 3 (the driver requirements.txt installs), any other URL is left as it is."""
    for prefix in ("postgresql://", "postgres://"):
        if db_url.startswith(prefix):
            return "postgresql+psycopg://" + db_url[len(prefix):]
    return db_url


def is_postgres(db_url: str) -> bool:
    return make_url(engine_url(db_url)).get_backend_name() == "postgresql"


@contextlib.contextmanager
def writer_lock(db_url: str):
    """Hold the gradebook's writer lock: a session advisory lock in PostgreSQL (released by
    the server if this process dies), an exclusive ``flock`` on ``<file>.lock`` for SQLite."""
    url = make_url(engine_url(db_url))
    if url.get_backend_name() == "postgresql":
        key = zlib.crc32(LOCK_NAME.encode())  # one lock per database
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # per open file: threads of one run wait too
            yield
    else:
        yield  # another database: nbgrader's unique constraints are all that protect it


@contextlib.contextmanager
def open_master(db_url: str):
    """The instructor's gradebook (its tables made if new), under the writer lock."""
    with writer_lock(db_url), warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own session warnings
        with Gradebook(engine_url(db_url)) as gb:
            yield gb


def sync_lessons(template_url: str, master_url: str, names) -> None:
    """Make the lessons ``names`` in the master gradebook match the template's cells."""
    with Gradebook(template_url) as src, open_master(master_url) as dst:
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
    """Record one graded (or ungradable) submission: every graded cell's automatic score.
    Manual scores (formgrader's) are left as they are."""
    merge_many(gb, [result])


def merge_all(db_url: str, results: list[dict], batch: int = 500) -> float:
    """Merge every result into the instructor's gradebook under the writer lock, ``batch``
    results per transaction; return the seconds it took (the database's cost, which bounds
    a cluster's throughput)."""
    started = time.perf_counter()
    with open_master(db_url) as gb:
        for first in range(0, len(results), batch):
            merge_many(gb, results[first:first + batch])
    return time.perf_counter() - started


def merge_many(gb: Gradebook, results: list[dict]) -> None:
    """``merge_result`` for many results in one transaction, with a few bulk queries
    (nbgrader's own calls commit and query once per row: ~0.1 s a submission)."""
    db = gb.db
    try:
        with db.no_autoflush:
            known = {sid for (sid,) in db.query(Student.id).filter(
                Student.id.in_({r["student"] for r in results}))}
            for sid in sorted({r["student"] for r in results} - known):
                db.add(Student(id=sid))
            db.flush()
            by_lesson = {}
            for result in results:
                by_lesson.setdefault(result["lesson"], {})[result["student"]] = result
            for lesson, students in by_lesson.items():
                _merge_lesson(gb, lesson, students)
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _merge_lesson(gb: Gradebook, lesson: str, students: dict[str, dict]) -> None:
    """Submissions (made as nbgrader's add_submission makes them) and automatic scores of
    one lesson's ``students`` ({student: result})."""
    db, assignment = gb.db, gb.find_assignment(lesson)
    have = {s.student_id for s in db.query(SubmittedAssignment).filter(
        SubmittedAssignment.assignment_id == assignment.id,
        SubmittedAssignment.student_id.in_(students))}
    for sid in sorted(set(students) - have):
        _add_submission(db, assignment, db.get(Student, sid))
    db.flush()
    notebook = gb.find_notebook(lesson, lesson)
    grades = {(sid, name): grade for grade, name, sid in (
        db.query(Grade, BaseCell.name, SubmittedAssignment.student_id)
        .join(BaseCell, Grade.cell_id == BaseCell.id)
        .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
        .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
        .filter(SubmittedAssignment.assignment_id == assignment.id,
                SubmittedNotebook.notebook_id == notebook.id,
                SubmittedAssignment.student_id.in_(students)))}
    for sid, result in students.items():
        for row in result["cells"]:
            grade = grades.get((sid, row["grade_id"]))
            if grade is None:
                raise MissingEntry(f"no grade {row['grade_id']} of {lesson} for {sid}")
            grade.auto_score = row["points"]
            grade.needs_manual_grade = False


def _add_submission(db, assignment, student) -> None:
    """A new submission with every notebook, grade and comment row (nbgrader's
    ``Gradebook.add_submission``, without its commit)."""
    submission = SubmittedAssignment(assignment=assignment, student=student)
    for notebook in assignment.notebooks:
        nb = SubmittedNotebook(notebook=notebook, assignment=submission)
        for cell in notebook.grade_cells:
            Grade(cell_id=cell.id, notebook=nb)
        for cell in notebook.solution_cells:
            Comment(cell_id=cell.id, notebook=nb)
        for cell in notebook.task_cells:
            Comment(cell_id=cell.id, notebook=nb)
            Grade(cell_id=cell.id, notebook=nb)
    db.add(submission)


def max_points(gb: Gradebook, lesson: str, order: dict[str, int]) -> list[dict]:
    """Zero-point rows for every graded cell of a lesson (an unreadable submission)."""
    cells = sorted(gb.find_notebook(lesson, lesson).grade_cells,
                   key=lambda c: order.get(c.name, len(order)))
    return [{"grade_id": c.name, "points": 0.0, "max_points": float(c.max_score),
             "passed": False, "message": ""} for c in cells]
