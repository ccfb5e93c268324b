"""A course's week with an LMS: a Canvas and a Moodle download in, grades back out.

The fast tests read LMS file names and rosters. The slow ones build a Canvas-shaped and a
Moodle-shaped zip of lesson 01 (a correct and a blank notebook, a late mark, a renamed
re-upload, a stray file, a file from someone not on the roster, a student who submitted
nothing), grade each once, open the graded class as nbgrader would (formgrader's API), enter
a manual grade in its gradebook, and read every export back with ``csv`` as the LMS would.
"""

import csv
import fcntl
import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import nbformat
import pytest

from autograder import lms
from autograder.cli import main
from autograder.config import tools_on_path
from autograder.submissions import collect, missing

LESSON = "01_text_and_batches"
LESSONS = {LESSON, "02_rnn_from_scratch"}
ROOT = Path(__file__).resolve().parents[1]
TOP = sum(c.metadata["nbgrader"].get("points", 0)  # lesson 01's points
          for c in nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4).cells
          if c.metadata.get("nbgrader", {}).get("grade"))
CANVAS_ROSTER = ("lms_id,student_id,name,email\n12345,jdoe,Jane Doe,jane@uni.example\n"
                 "222,bsmith,Bob Smith,bob@uni.example\n444,alee,Ann Lee,ann@uni.example\n"
                 "999,zzed,Zed Zed,zed@uni.example\n")
MOODLE_ROSTER = ("ID,ID number,Full name,Email address\n101,jdoe,Jane Doe,jane@uni.example\n"
                 "102,bsmith,Bob Smith,bob@uni.example\n103,alee,Ann Lee,\n"
                 "109,zzed,Zed Zed,zed@uni.example\n")
CANVAS_IDS = {"jdoe": "12345", "bsmith": "222", "alee": "444", "zzed": "999"}


# ---------------------------------------------------------------- names and rosters (fast)


def test_canvas_names_late_marks_and_renamed_uploads():
    """Canvas: <name>_[late_]<user id>_<submission id>_<file>; -1 is a renamed re-upload."""
    plain = lms.identify(PurePosixPath(f"doejane_12345_67890_{LESSON}.ipynb"))
    late = lms.identify(PurePosixPath(f"smithbob_LATE_222_333_{LESSON}-1.ipynb"))
    assert (plain.lms, plain.lms_id, plain.name, plain.file, plain.late) == \
        ("canvas", "12345", "doejane", f"{LESSON}.ipynb", False)
    assert late.late and late.lms_id == "222"
    assert lms.lesson_of(late.file, LESSONS)[0] == LESSON
    assert "renamed" in lms.lesson_of(late.file, LESSONS)[1]
    assert "not a lesson" in lms.lesson_of("Untitled.ipynb", LESSONS)
    assert lms.identify(PurePosixPath(f"alice/{LESSON}.ipynb")) is None


def test_moodle_folders_flat_files_and_online_text():
    """Moodle: <Full Name>_<id>_assignsubmission_file_/<file>, or the same as a prefix."""
    folder = lms.identify(PurePosixPath(f"Jane Doe_101_assignsubmission_file_/{LESSON}.ipynb"))
    flat = lms.identify(PurePosixPath(f"Jane Doe_101_assignsubmission_file_{LESSON}.ipynb"))
    text = lms.identify(PurePosixPath("Bob Smith_102_assignsubmission_onlinetext_/a.html"))
    assert (folder.lms, folder.lms_id, folder.name, folder.file) == \
        ("moodle", "101", "Jane Doe", f"{LESSON}.ipynb")
    assert flat == folder
    assert "online" in lms.lesson_of(text.file, LESSONS)


def test_names_compare_in_any_word_order():
    """Canvas's "doejane" and Moodle's "Jane Doe" are the roster's "Jane Doe"."""
    assert lms.same_name("doejane", "Jane Doe") and lms.same_name("Jane Doe", "Doe, Jane")
    assert lms.same_name("mullerjurgen", "Jürgen Müller")
    assert not lms.same_name("doejohn", "Jane Doe")


def test_roster_headers_and_errors(tmp_path):
    """Our headers or the LMS's own; duplicate ids and a missing id column are refused."""
    (tmp_path / "moodle.csv").write_text(MOODLE_ROSTER)
    students = lms.read_roster(tmp_path / "moodle.csv")
    assert students[0] == lms.Student("jdoe", "101", "Jane Doe", "jane@uni.example")
    (tmp_path / "dup.csv").write_text("lms_id,student_id\n1,a\n1,b\n")
    with pytest.raises(SystemExit, match="lms_id '1' appears 2 times"):
        lms.read_roster(tmp_path / "dup.csv")
    (tmp_path / "bad.csv").write_text("name,email\nA,a@x\n")
    with pytest.raises(SystemExit, match="no student id column"):
        lms.read_roster(tmp_path / "bad.csv")


def _files(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")


def test_collect_maps_lists_and_never_guesses(tmp_path):
    """Mapped through the roster; an unknown id, a second file, a stray file and an online
    text are listed with their reason; who sent nothing is listed as missing."""
    (tmp_path / "roster.csv").write_text(CANVAS_ROSTER)
    _files(tmp_path / "dl", [f"doejane_12345_1_{LESSON}.ipynb",
                             f"smithbob_late_222_2_{LESSON}-1.ipynb",
                             f"smithbob_late_222_2_{LESSON}.ipynb",
                             "leeann_444_3_notes.txt", f"doejohn_555_4_{LESSON}.ipynb"])
    subs, unmatched = collect(tmp_path / "dl", LESSONS, tmp_path / "roster.csv")
    assert [(s.student, s.lesson, s.late) for s in subs] == [("jdoe", LESSON, False)]
    reasons = {u["file"]: u["reason"] for u in unmatched}
    assert "not on the roster" in reasons[f"doejohn_555_4_{LESSON}.ipynb"]
    assert reasons[f"smithbob_late_222_2_{LESSON}-1.ipynb"].startswith("ambiguous: 2 files")
    assert reasons["leeann_444_3_notes.txt"] == "not a notebook"
    gone = {m["student"]: m["reason"] for m in missing(subs, tmp_path / "roster.csv", unmatched)}
    assert gone == {"bsmith": "only files that could not be graded (see the files not graded)",
                    "alee": "only files that could not be graded (see the files not graded)",
                    "zzed": "no submission"}


def test_without_a_roster_the_lms_id_is_the_student_id(tmp_path):
    """No roster: the LMS id becomes the student id (nothing is matched by name)."""
    _files(tmp_path, [f"Jane Doe_101_assignsubmission_file_/{LESSON}.ipynb"])
    subs, unmatched = collect(tmp_path, LESSONS)
    assert [(s.student, s.lesson) for s in subs] == [("101", LESSON)] and unmatched == []


def test_canvas_rows_need_a_canvas_id_and_assignment_ids_a_number():
    """Canvas matches rows by its user id: a student without one stops the export, saying
    who; --assignment-id takes LESSON=NUMBER."""
    from autograder.export import Grade, canvas_rows, parse_ids

    grades = [Grade("jdoe", LESSON, 3.0, 14.0, "graded"), Grade("alee", LESSON, None, 14.0,
                                                                 "missing")]
    people = {"jdoe": {"lms_id": "12345", "name": "Jane Doe"}, "alee": {"lms_id": ""}}
    with pytest.raises(SystemExit, match="no Canvas user id .* for alee"):
        canvas_rows(grades, people, {})
    people["alee"]["lms_id"] = "444"
    rows = canvas_rows(grades, people, parse_ids([f"{LESSON}=4567"]))
    assert rows[0][-1] == f"{LESSON} (4567)" and [r[-1] for r in rows[2:]] == ["", "3"]
    with pytest.raises(SystemExit, match="expected LESSON=NUMBER"):
        parse_ids([f"{LESSON}:4567"])


def test_moodle_rows_need_an_email_or_id_number():
    """A student known only by a Moodle participant id (graded without a roster) cannot be
    imported by Moodle: the export stops and asks for the roster."""
    from autograder.export import Grade, moodle_rows

    grades = [Grade("101", LESSON, 3.0, 14.0, "graded")]
    with pytest.raises(SystemExit, match="101 are only Moodle participant ids"):
        moodle_rows(grades, {"101": {"lms_id": "101", "name": "Jane Doe", "email": ""}})
    rows = moodle_rows(grades, {"101": {"lms_id": "101", "name": "Jane Doe", "email": "j@x"}})
    assert rows == [["Full name", "Email address", "ID number", LESSON],
                    ["Jane Doe", "j@x", "101", "3"]]


# ---------------------------------------------------------------- graded downloads (slow)


def _notebooks(repo: Path) -> tuple[str, str]:
    """(a correct lesson 01, the blank student version) as JSON text."""
    from test_autograder import correct

    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    blank = nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4)
    return nbformat.writes(correct(sol, blank)), nbformat.writes(blank)


HOSTILE = ('Jane\'s notes <script>window.pwned = 1</script>'
           '<img src="x" onerror="window.pwned = 2">')  # markdown a reviewer's browser renders


HOSTILE_OUTPUT = ("from IPython.display import HTML, display\n"
                  "display(HTML('<b>plot</b><img src=\"y\" onerror=\"window.pwned = 3\">'))")


def with_notes(notebook: str) -> str:
    """The notebook with HOSTILE notes (a markdown cell) and a cell displaying hostile HTML
    at the end (no points change)."""
    nb = nbformat.reads(notebook, as_version=4)
    nb.cells += [nbformat.v4.new_markdown_cell(HOSTILE),
                 nbformat.v4.new_code_cell(HOSTILE_OUTPUT)]
    return nbformat.writes(nb)


def canvas_zip(path: Path, good: str, blank: str) -> None:
    """Jane: correct (with notes in HTML that tries to run a script); Bob: blank, late, a
    renamed re-upload; Ann: only a stray file; someone not on the roster; Zed: nothing."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"doejane_12345_67890_{LESSON}.ipynb", with_notes(good))
        zf.writestr(f"smithbob_late_222_67891_{LESSON}-1.ipynb", blank)
        zf.writestr("leeann_444_67892_notes.txt", "my notes")
        zf.writestr(f"doejohn_555_67893_{LESSON}.ipynb", good)


def moodle_zip(path: Path, good: str, blank: str) -> None:
    """The same class as Moodle downloads it (one folder per participant)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"Jane Doe_101_assignsubmission_file_/{LESSON}.ipynb", good)
        zf.writestr(f"Bob Smith_102_assignsubmission_file_/{LESSON} (1).ipynb", blank)
        zf.writestr("Ann Lee_103_assignsubmission_onlinetext_/onlinetext.html", "<p>hi</p>")
        zf.writestr(f"John Doe_555_assignsubmission_file_/{LESSON}.ipynb", good)


def grade_both(base: Path) -> None:
    """Grade the Canvas and the Moodle download, each with its roster."""
    from test_autograder import TIMEOUT, make_repo

    repo = make_repo(base)
    good, blank = _notebooks(repo)
    for kind, build, roster in (("canvas", canvas_zip, CANVAS_ROSTER),
                                ("moodle", moodle_zip, MOODLE_ROSTER)):
        build(base / f"{kind}.zip", good, blank)
        (base / f"{kind}-roster.csv").write_text(roster)
        assert main(["--root", str(repo), "grade", str(base / f"{kind}.zip"), "--out",
                     str(base / kind), "--roster", str(base / f"{kind}-roster.csv"),
                     "--jobs", "2", "--timeout", str(TIMEOUT)]) == 0


@pytest.fixture(scope="session")
def downloads(tmp_path_factory, book):
    """Both downloads graded once, shared by the xdist workers (under a file lock)."""
    tools_on_path()
    base_temp = tmp_path_factory.getbasetemp()
    shared = (base_temp.parent if "PYTEST_XDIST_WORKER" in os.environ else base_temp) / "lms"
    with open(str(shared) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            grade_both(shared)
            (shared / "done").write_text("graded")
    return shared


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def export(out: Path, to: str, *options: str) -> list[list[str]]:
    """Run the export command; the file it wrote, read back with csv."""
    target = out / f"read-back-{to}-{abs(hash(options))}.csv"
    assert main(["export", str(out), "--to", to, "--output", str(target), *options]) == 0
    with target.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["canvas", "moodle"])
def test_download_is_graded_under_roster_ids(downloads, kind):
    """Each file is graded under the roster's student id; the late mark and the renamed
    upload are notes; stray, online-text and unknown files are listed; Ann and Zed are
    missing, in results.json and the report."""
    found = results(downloads / kind)
    scores = {s: e[LESSON]["score"] for s, e in found["students"].items()}
    assert scores == {"jdoe": TOP, "bsmith": 0}
    notes = " ".join(found["students"]["bsmith"][LESSON]["notes"])
    assert "renamed copy" in notes and (kind == "moodle" or "canvas marked it late" in notes)
    reasons = " | ".join(u["reason"] for u in found["unmatched"])
    assert "id 555 (" in reasons and "is not on the roster" in reasons
    assert ("not a notebook" if kind == "canvas" else "onlinetext") in reasons
    assert sorted(m["student"] for m in found["missing"]) == ["alee", "zzed"]
    report = (downloads / kind / "report.html").read_text()
    assert "Students with nothing graded (2)" in report and "Zed Zed" in report


@pytest.mark.slow
def test_graded_class_is_an_nbgrader_course(downloads):
    """nbgrader's own API (what formgrader calls) on OUT lists each submission with its
    automatic score and generates feedback without hidden tests."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.execute import hidden_lines

    out = downloads / "canvas"
    config = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    subs = {s["student"]: s for s in api.get_submissions(LESSON)}
    assert {s: (v["autograded"], v["score"]) for s, v in subs.items()} == \
        {"jdoe": (True, TOP), "bsmith": (True, 0)}
    assert api.generate_feedback(LESSON, "bsmith")["success"]
    page = (out / "feedback" / "bsmith" / LESSON / f"{LESSON}.html").read_text()
    sol = nbformat.read(out / "source" / LESSON / f"{LESSON}.ipynb", as_version=4)
    assert [line for line in hidden_lines(sol) if line in page] == []


def _override(out: Path, student: str, points: float) -> float:
    """A manual grade on the first test cell, as formgrader stores it; return the cell's
    maximum."""
    from nbgrader.api import Gradebook

    from autograder.export import db_url_of

    with Gradebook(db_url_of(out)) as gb:
        grade = gb.find_submission(LESSON, student).notebooks[0].grades[0]
        grade.manual_score = points
        gb.db.commit()
        return grade.max_score


@pytest.mark.slow
def test_canvas_export_reads_back_with_overrides_and_missing(downloads, tmp_path):
    """Canvas's header row and Points Possible row, an "<assignment> (<id>)" column, one row
    per roster student keyed by the Canvas user id; a manual grade wins; missing is empty
    (or 0 with --missing zero)."""
    out = tmp_path / "canvas"
    shutil.copytree(downloads / "canvas", out)  # nbgrader_config.py: the copy's gradebook
    _override(out, "bsmith", 1)
    rows = export(out, "canvas", "--assignment-id", f"{LESSON}=4567")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                       f"{LESSON} (4567)"]
    assert rows[1][0].strip() == "Points Possible" and rows[1][5] == str(TOP)
    grades = {row[1]: (row[2], row[5]) for row in rows[2:]}
    assert grades == {"12345": ("jdoe", str(TOP)), "222": ("bsmith", "1"), "444": ("alee", ""),
                      "999": ("zzed", "")}
    zero = export(out, "canvas", "--missing", "zero")
    assert {row[2]: row[5] for row in zero[2:]}["zzed"] == "0"


@pytest.mark.slow
def test_moodle_and_csv_exports_read_back(downloads, tmp_path):
    """Moodle: Email address and ID number (the student id) per row; csv: a row per student
    and lesson with the status and whether a grade was overridden."""
    out = tmp_path / "moodle"
    shutil.copytree(downloads / "moodle", out)
    lost = _override(out, "jdoe", 0)
    rows = export(out, "moodle")
    assert rows[0] == ["Full name", "Email address", "ID number", LESSON]
    by_id = {row[2]: row for row in rows[1:]}
    assert by_id["jdoe"] == ["Jane Doe", "jane@uni.example", "jdoe", f"{TOP - lost:g}"]
    assert by_id["alee"] == ["Ann Lee", "", "alee", ""] and by_id["bsmith"][3] == "0"
    header, *table = export(out, "csv", "--missing", "zero")
    records = {row[0]: dict(zip(header, row, strict=True)) for row in table}
    assert records["jdoe"]["overridden"] == "yes" and records["jdoe"]["status"] == "graded"
    assert (records["zzed"]["score"], records["zzed"]["status"]) == ("0", "missing")
