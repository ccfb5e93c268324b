"""``python -m autograder export OUT --to canvas|moodle|csv``: grades for the LMS to import.

Scores come from the graded class's gradebook, so manual grades entered in formgrader (which
take precedence over the automatic ones) are what is exported. Students on the roster (or
named by the LMS download) without a submission get an empty cell or zero (``--missing``).

- ``canvas``: Canvas's gradebook import: ``Student, ID, SIS User ID, SIS Login ID, Section``,
  one ``<assignment> (<Canvas assignment id>)`` column per lesson, a ``Points Possible`` row.
  Canvas matches rows by ``ID`` (the Canvas user id: the roster's lms_id).
- ``moodle``: Moodle's grade import (Grades > Import > CSV file): ``Full name, Email address,
  ID number`` and one column per lesson; map "Email address" to email or "ID number" to
  idnumber and each lesson column to its grade item.
- ``csv``: one row per student and lesson, with status and whether a grade was overridden.
"""

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograder import lms
from autograder.course_dir import CONFIG_NAME

FORMATS = ("canvas", "moodle", "csv")
CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_FIXED = ["Full name", "Email address", "ID number"]
CSV_FIELDS = ["student_id", "name", "email", "lms_id", "assignment", "score", "max_score",
              "status", "overridden"]


@dataclass
class Grade:
    """One student's grade on one lesson, as exported."""

    student: str
    lesson: str
    score: float | None  # None: nothing submitted and --missing empty
    max_score: float
    status: str  # graded, timeout, ..., or missing
    overridden: bool = False


def db_url_of(out: Path) -> str:
    """The gradebook URL of the graded class (from its nbgrader_config.py)."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (out / CONFIG_NAME).is_file():
        return f"sqlite:///{(out / 'gradebook.db').resolve()}"
    config = PyFileConfigLoader(CONFIG_NAME, path=str(out)).load_config()
    return config.CourseDirectory.db_url


def load_results(out: Path) -> dict:
    path = out / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run python -m autograder grade ... --out {out}")
    return json.loads(path.read_text(encoding="utf-8"))


def class_list(results: dict, roster: Path | None) -> dict[str, dict]:
    """{student id: lms_id, name, email}: the roster given here, else the one grading saw,
    plus every graded student."""
    if roster is not None:
        people = {s.student_id: {"lms_id": s.lms_id, "name": s.name, "email": s.email}
                  for s in lms.read_roster(roster)}
    else:
        people = dict(results.get("class_list") or {})
    for student in results["students"]:
        people.setdefault(student, {"lms_id": "", "name": "", "email": ""})
    return people


def collect_grades(out: Path, results: dict, people: dict, missing: str) -> list[Grade]:
    """Every (student, lesson) of the class: the gradebook's score (manual grades applied)
    for a submission, else empty or zero."""
    lessons = lesson_maxima(results)
    grades = []
    with Gradebook(db_url_of(out)) as gb:
        for student in sorted(people):
            for lesson, top in lessons.items():
                entry = results["students"].get(student, {}).get(lesson)
                if entry is None:
                    grades.append(Grade(student, lesson, 0.0 if missing == "zero" else None,
                                        top, "missing"))
                else:
                    score, overridden = gradebook_score(gb, lesson, student, entry["score"])
                    grades.append(Grade(student, lesson, score, top, entry["status"],
                                        overridden))
    return grades


def lesson_maxima(results: dict) -> dict[str, float]:
    """{lesson: max score} of every lesson graded in the run, sorted."""
    maxima = {}
    for lessons in results["students"].values():
        for lesson, entry in lessons.items():
            maxima[lesson] = entry["max_score"]
    return dict(sorted(maxima.items()))


def gradebook_score(gb: Gradebook, lesson: str, student: str, auto: float) -> tuple[float, bool]:
    """(score, overridden): manual scores and extra credit from formgrader count."""
    try:
        submission = gb.find_submission(lesson, student)
    except MissingEntry:
        return auto, False
    grades = [g for notebook in submission.notebooks for g in notebook.grades]
    overridden = any(g.manual_score is not None or g.extra_credit for g in grades)
    return float(submission.score), overridden


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def canvas_rows(grades: list[Grade], people: dict, ids: dict[str, str]) -> list[list[str]]:
    """Canvas's gradebook CSV: the header, the Points Possible row, a row per student."""
    lessons = list(dict.fromkeys(g.lesson for g in grades))
    maxima = {g.lesson: g.max_score for g in grades}
    without = sorted(s for s in people if not people[s].get("lms_id"))
    if without:
        raise SystemExit("canvas export: no Canvas user id (roster column lms_id) for "
                         f"{', '.join(without)}: pass --roster with an lms_id per student")
    header = CANVAS_FIXED + [f"{lesson} ({ids[lesson]})" if lesson in ids else lesson
                             for lesson in lessons]
    rows = [header, ["    Points Possible", "", "", "", ""] + [_num(maxima[x]) for x in lessons]]
    by_key = {(g.student, g.lesson): g for g in grades}
    for student in sorted(people, key=lambda s: (people[s].get("name") or s).lower()):
        info = people[student]
        rows.append([info.get("name") or student, info["lms_id"], student, "", ""]
                    + [_num(by_key[(student, x)].score) for x in lessons])
    return rows


def moodle_rows(grades: list[Grade], people: dict) -> list[list[str]]:
    """Moodle's grade import CSV: name, email address, ID number, a column per lesson."""
    lessons = list(dict.fromkeys(g.lesson for g in grades))
    by_key = {(g.student, g.lesson): g for g in grades}
    unkeyed = sorted(s for s, info in people.items()
                     if s == info.get("lms_id") and not info.get("email"))
    if unkeyed:  # graded without a roster: the download named only participant ids
        raise SystemExit("moodle export: Moodle imports grades by email or ID number, but "
                         f"{', '.join(unkeyed)} are only Moodle participant ids: pass --roster "
                         "(lms_id,student_id,name,email)")
    rows = [MOODLE_FIXED + lessons]
    for student in sorted(people):
        info = people[student]
        rows.append([info.get("name") or "", info.get("email") or "", student]
                    + [_num(by_key[(student, x)].score) for x in lessons])
    return rows


def csv_rows(grades: list[Grade], people: dict) -> list[list[str]]:
    """One row per student and lesson."""
    rows = [CSV_FIELDS]
    for g in grades:
        info = people[g.student]
        rows.append([g.student, info.get("name") or "", info.get("email") or "",
                     info.get("lms_id") or "", g.lesson, _num(g.score), _num(g.max_score),
                     g.status, "yes" if g.overridden else ""])
    return rows


def parse_ids(pairs: list[str]) -> dict[str, str]:
    """``LESSON=ID`` pairs (Canvas assignment ids) as a dict."""
    ids = {}
    for pair in pairs or []:
        lesson, sep, number = pair.partition("=")
        if not sep or not number.strip().isdigit():
            raise SystemExit(f"--assignment-id {pair!r}: expected LESSON=NUMBER, e.g. "
                             "02_rnn_from_scratch=4567 (the number in the assignment's URL)")
        ids[lesson.strip()] = number.strip()
    return ids


def export(out: Path, to: str, roster: Path | None = None, output: Path | None = None,
           missing: str = "empty", assignment_ids: dict[str, str] | None = None) -> Path:
    """Write the grades of the class graded into ``out`` in the format ``to``; return the
    file written (default ``out/grades-<to>.csv``)."""
    results = load_results(out)
    people = class_list(results, roster)
    grades = collect_grades(out, results, people, missing)
    ids = assignment_ids or {}
    unknown = sorted(set(ids) - {g.lesson for g in grades})
    if unknown:
        raise SystemExit(f"--assignment-id names lessons not graded in {out}: {unknown}")
    rows = {"canvas": lambda: canvas_rows(grades, people, ids),
            "moodle": lambda: moodle_rows(grades, people),
            "csv": lambda: csv_rows(grades, people)}[to]()
    target = output or out / f"grades-{to}.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return target


def main(args) -> int:
    """The export command: write the file and say what is in it."""
    ids = parse_ids(args.assignment_id)
    target = export(args.out.resolve(), args.to, args.roster, args.output, args.missing, ids)
    if args.to == "canvas" and not ids:
        print("note: no --assignment-id LESSON=ID given: Canvas will create new assignments "
              "for these columns instead of filling in existing ones", file=sys.stderr)
    print(f"wrote {target}")
    return 0
