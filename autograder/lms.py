"""What an LMS download looks like, and the roster that maps LMS ids to students.

Canvas ("Download Submissions") names every file
``<name>_[late_]<user id>_<submission id>_<original file name>``, all in one folder, and
renames a re-upload ``<lesson>-1.ipynb``. Moodle (assignment, "Download all submissions")
makes one folder per participant, ``<Full Name>_<participant id>_assignsubmission_file_``
(or, without folders, prefixes each file with that). Nothing here guesses: a file is mapped
to a student only through its LMS id (and the roster, when there is one); anything else is
returned as a reason, which the caller lists.
"""

import csv
import itertools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
CANVAS = re.compile(r"^(?P<name>[^\W_]*)_(?:(?P<late>late)_)?(?P<lms_id>\d+)_(?P<submission>\d+)_"
                    r"(?P<file>.+)$", re.IGNORECASE)
MOODLE = re.compile(r"^(?P<name>.+)_(?P<lms_id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_"
                    r"(?P<file>.*)$")
RENAMED = re.compile(r"^(?P<stem>.+?)(?:-\d+| \(\d+\))$")  # Canvas "-1", a browser's " (1)"
# Roster columns and the headers each LMS's own exports use for them.
ROSTER_COLUMNS = {
    "lms_id": ("lms_id", "lms id", "id", "user id", "canvas user id", "participant id"),
    "student_id": ("student_id", "student id", "sis user id", "id number", "idnumber"),
    "name": ("name", "full name", "student"),
    "email": ("email", "email address", "e-mail"),
}


@dataclass(frozen=True)
class LmsFile:
    """A file of an LMS download, as its name describes it."""

    lms: str  # "canvas" or "moodle"
    lms_id: str
    name: str  # the student's name as the LMS wrote it
    file: str  # the original file name
    late: bool = False


@dataclass(frozen=True)
class Student:
    """One roster row."""

    student_id: str
    lms_id: str = ""
    name: str = ""
    email: str = ""


def identify(rel: PurePosixPath) -> LmsFile | None:
    """The LMS file ``rel`` (a path inside the download) is, or None for another layout."""
    for part in rel.parts[:-1]:
        folder = MOODLE.match(part)
        if folder:  # Moodle with folders: the file (maybe deeper) under the participant's
            return LmsFile("moodle", folder["lms_id"], folder["name"], rel.name) \
                if folder["plugin"] == "file" else _moodle_text(folder, rel)
    flat = MOODLE.match(rel.name)
    if flat:
        return LmsFile("moodle", flat["lms_id"], flat["name"], flat["file"]) \
            if flat["plugin"] == "file" else _moodle_text(flat, rel)
    canvas = CANVAS.match(rel.name)
    if canvas and len(rel.parts) <= 2:  # Canvas's files lie flat (maybe in one folder)
        return LmsFile("canvas", canvas["lms_id"], canvas["name"], canvas["file"],
                       late=bool(canvas["late"]))
    return None


def _moodle_text(match, rel: PurePosixPath) -> LmsFile:
    """An online-text (or other non-file) submission: kept so it is listed, never graded."""
    return LmsFile("moodle", match["lms_id"], match["name"], f"{match['plugin']}:{rel.name}")


def lesson_of(file: str, lessons: set[str]) -> tuple[str, str] | str:
    """(lesson, note) for an uploaded file name, or why it is no lesson. A name the LMS or a
    browser changed (``-1``, `` (1)``) is accepted with a note; any other name is not."""
    if ":" in file:
        return f"a Moodle {file.split(':')[0]} submission, not a notebook file"
    path = PurePosixPath(file)
    if path.suffix.lower() != ".ipynb":
        return "not a notebook"
    if path.stem in lessons:
        return path.stem, ""
    renamed = RENAMED.match(path.stem)
    if renamed and renamed["stem"] in lessons:
        return renamed["stem"], f"uploaded as '{file}' (a renamed copy of the lesson)"
    return (f"'{file}' is not a lesson of this course (expected one of "
            f"{', '.join(sorted(lessons))}.ipynb)")


def read_roster(path: Path) -> list[Student]:
    """The roster CSV: a header row naming lms_id, student_id, name, email (or the LMS's own
    headers for them, see ROSTER_COLUMNS), then one row per student."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise SystemExit(f"{path}: the roster is empty (expected a header row: "
                         "lms_id,student_id,name,email)")
    columns = _roster_columns(path, rows[0])
    students = [Student(**{key: row[i].strip() if i < len(row) else ""
                           for key, i in columns.items()})
                for row in rows[1:] if any(cell.strip() for cell in row)]
    _check_roster(path, students)
    return students


def _roster_columns(path: Path, header: list[str]) -> dict[str, int]:
    """{field: column index} from the header row; student_id is required."""
    names = [" ".join(h.strip().lower().replace("_", " ").split()) for h in header]
    columns = {}
    for key, aliases in ROSTER_COLUMNS.items():
        found = [i for i, name in enumerate(names) if name in {a.replace("_", " ")
                                                                for a in aliases}]
        if found:
            columns[key] = found[0]
    if "student_id" not in columns:
        raise SystemExit(f"{path}: no student id column in the header {header} (expected "
                         "lms_id,student_id,name,email)")
    return columns


def _check_roster(path: Path, students: list[Student]) -> None:
    """Every student id valid and unique, every LMS id unique."""
    problems = [f"student id '{s.student_id}' has unsupported characters" for s in students
                if not STUDENT_ID.match(s.student_id)]
    for key in ("student_id", "lms_id"):
        values = [getattr(s, key) for s in students if getattr(s, key)]
        problems += [f"{key} '{v}' appears {values.count(v)} times"
                     for v in sorted(set(values)) if values.count(v) > 1]
    if problems:
        raise SystemExit(f"{path}: " + "; ".join(problems))


def student_of(found: LmsFile, roster: list[Student] | None) -> tuple[str, str] | str:
    """(student id, note) for an LMS file, or why it cannot be mapped. Without a roster the
    LMS id is the student id; with one, the LMS id must be on it (a matching name is only
    mentioned, never used)."""
    if roster is None:
        return found.lms_id, ""
    by_id = {s.lms_id: s for s in roster if s.lms_id}
    student = by_id.get(found.lms_id)
    if student is None:
        same = [s.student_id for s in roster if same_name(found.name, s.name)]
        hint = f"; the name matches roster student {', '.join(same)}" if same else ""
        return (f"{found.lms} id {found.lms_id} ({found.name}) is not on the roster{hint}; "
                "add it to the roster's lms_id column and grade again")
    note = "" if not student.name or same_name(found.name, student.name) else (
        f"the {found.lms} file names '{found.name}', the roster '{student.name}' for "
        f"{found.lms} id {found.lms_id}")
    return student.student_id, note


def _letters(text: str) -> str:
    """Lower-case letters and digits only, accents removed (how Canvas spells names)."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text.lower() if ch.isalnum() and not unicodedata.combining(ch))


def same_name(lms_name: str, roster_name: str) -> bool:
    """Whether an LMS's spelling of a name ("doejane", "Jane Doe") is the roster's name,
    in any order of its words ("Doe, Jane" is "Jane Doe")."""
    words = [w for w in re.split(r"[\s,]+", roster_name) if w][:5]
    target = _letters(lms_name)
    return bool(words) and any(_letters("".join(p)) == target
                               for p in itertools.permutations(words))
