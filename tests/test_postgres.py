"""The gradebook in a real PostgreSQL server (the ``postgres`` fixture of conftest.py).

nbgrader's schema made by nbgrader itself, the lessons synced in, results merged and merged
again (a re-run), manual grades kept, two writers into one empty database at the same time
(no lost, no duplicated grade), and ``python -m autograder grade --db postgresql://...``
end to end: two grading runs at once into one gradebook, then a re-run.
"""

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Grade, Gradebook, SubmittedAssignment

from autograder.cli import main
from autograder.config import tools_on_path
from autograder.gradebook import engine_url, merge_all, open_master, sync_lessons
from autograder.release import generate_assignments

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["00_tiny", "00_twice"]


def tiny_solutions(folder: Path) -> Path:
    """solutions/ with two copies of test_release's tiny lesson (one graded cell, 2 points)."""
    from test_release import tiny_lesson

    folder.mkdir(parents=True)
    for name in LESSONS:
        nbformat.write(tiny_lesson(), folder / f"{name}.ipynb")
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    """A template gradebook (nbgrader generate_assignment of both lessons): its URL."""
    tools_on_path()
    base = tmp_path_factory.mktemp("template")
    generate_assignments(tiny_solutions(base / "solutions"), base / "course")
    return f"sqlite:///{base / 'course' / 'gradebook.db'}"


def result(student: str, lesson: str, points: float) -> dict:
    """What a worker returns for one submission of a tiny lesson."""
    return {"student": student, "lesson": lesson, "status": "graded", "reason": "",
            "cells": [{"grade_id": "double_value", "points": points, "max_points": 2.0,
                       "passed": points == 2.0, "message": ""}], "score": points,
            "max_score": 2.0}


def gradebook_rows(url: str) -> dict:
    """{(student, lesson): score} and the row counts of submissions and grades."""
    with Gradebook(engine_url(url)) as gb:
        scores = {(s.student.id, s.assignment.name): s.score
                  for lesson in LESSONS for s in gb.assignment_submissions(lesson)}
        counts = (gb.db.query(SubmittedAssignment).count(), gb.db.query(Grade).count())
    return {"scores": scores, "submissions": counts[0], "grades": counts[1]}


def test_url_goes_through_psycopg3():
    assert engine_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert engine_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"


def test_schema_merge_rerun_and_manual_grades(postgres, template):
    """nbgrader's tables in PostgreSQL; a re-merge updates, never duplicates; a manual grade
    entered in between (formgrader) survives the re-run."""
    url = postgres.url("merge")
    sync_lessons(template, url, LESSONS)
    sync_lessons(template, url, LESSONS)  # a second run syncs again: nothing doubles
    merge_all(url, [result("alice", "00_tiny", 2.0), result("bob", "00_tiny", 0.0)])
    rows = gradebook_rows(url)
    assert rows["scores"] == {("alice", "00_tiny"): 2.0, ("bob", "00_tiny"): 0.0}
    assert (rows["submissions"], rows["grades"]) == (2, 2)
    with open_master(url) as gb:
        assert [c.name for c in gb.find_notebook("00_tiny", "00_tiny").grade_cells] == \
            ["double_value"]
        gb.find_grade("double_value", "00_tiny", "00_tiny", "bob").manual_score = 1.5
        gb.db.commit()
    merge_all(url, [result("alice", "00_tiny", 0.0), result("bob", "00_tiny", 2.0),
                    result("bob", "00_twice", 2.0)])
    rows = gradebook_rows(url)
    assert rows["scores"] == {("alice", "00_tiny"): 0.0, ("bob", "00_tiny"): 1.5,
                              ("bob", "00_twice"): 2.0}, "the manual 1.5 takes precedence"
    assert (rows["submissions"], rows["grades"]) == (3, 3)
    with open_master(url) as gb:
        assert gb.find_grade("double_value", "00_tiny", "00_tiny", "bob").auto_score == 2.0


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_postgres import result
    from autograder.gradebook import merge_all, sync_lessons
    template, url, first, last, go = sys.argv[1:]
    while not Path(go).exists():
        time.sleep(0.005)
    sync_lessons(template, url, {lessons!r})
    for start in range(int(first), int(last), 3):  # locked merges of 3 students: interleaved
        merge_all(url, [result(f"s{{i:03d}}", lesson, float(i % 3))
                        for i in range(start, start + 3) for lesson in {lessons!r}])
""")


def test_two_writers_at_once_lose_and_duplicate_nothing(postgres, template, tmp_path):
    """Two processes start on the same empty database at the same moment (both create the
    tables, both sync the lessons) and merge overlapping classes: every (student, lesson)
    is there exactly once, with its score."""
    url, go = postgres.url("concurrent"), tmp_path / "go"
    script = WRITER.format(tests=str(ROOT / "tests"), lessons=LESSONS)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", script, template, url, first, last,
                                 str(go)], env=env, stderr=subprocess.PIPE, text=True)
               for first, last in (("0", "24"), ("12", "36"))]
    time.sleep(3)  # both are waiting for the start signal (imports done)
    go.touch()
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err[-3000:]
    rows = gradebook_rows(url)
    expected = {(f"s{i:03d}", lesson): float(i % 3) for i in range(36) for lesson in LESSONS}
    assert rows["scores"] == expected
    assert (rows["submissions"], rows["grades"]) == (len(expected), len(expected))


def read_csv(path: Path) -> dict:
    with path.open() as f:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}


def test_grade_into_postgres_two_runs_at_once_then_rerun(postgres, tmp_path, book):
    """``grade --db postgresql://...``: two runs (different classes, one shared student) at
    the same time into one gradebook, then a re-run of the first: the gradebook holds each
    submission once, with the score grades.csv reports."""
    from test_release import tiny_lesson

    tools_on_path()
    repo = tmp_path / "repo"
    tiny_solutions(repo / "solutions")
    solved, blank = tiny_lesson(), nbformat.read(repo / "solutions" / "00_tiny.ipynb", 4)
    blank.cells[1].source = "def double(x):\n    raise NotImplementedError()"
    classes = {"one": {"ann": solved, "both": solved}, "two": {"both": solved, "ben": blank}}
    for name, students in classes.items():
        for student, nb in students.items():
            (tmp_path / name / student).mkdir(parents=True)
            nbformat.write(nb, tmp_path / name / student / "00_tiny.ipynb")
    url = postgres.url("graded")
    runs = [subprocess.Popen(
        [sys.executable, "-m", "autograder", "--root", str(repo), "grade", str(tmp_path / name),
         "--out", str(tmp_path / f"out_{name}"), "--jobs", "1", "--timeout", "20", "--db", url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in classes]
    for run in runs:
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out[-3000:]
    grades = read_csv(tmp_path / "out_one" / "grades.csv") | \
        read_csv(tmp_path / "out_two" / "grades.csv")
    assert {k: (r["status"], float(r["score"])) for k, r in grades.items()} == {
        ("ann", "00_tiny"): ("graded", 2.0), ("both", "00_tiny"): ("graded", 2.0),
        ("ben", "00_tiny"): ("graded", 0.0)}
    rows = gradebook_rows(url)
    assert rows["scores"] == {k: float(r["score"]) for k, r in grades.items()}
    assert (rows["submissions"], rows["grades"]) == (3, 3)
    assert main(["--root", str(repo), "grade", str(tmp_path / "one"), "--out",
                 str(tmp_path / "out_one"), "--jobs", "1", "--timeout", "20", "--db", url]) == 0
    assert "2 reused" in (tmp_path / "out_one" / "report.html").read_text()
    assert gradebook_rows(url) == rows
