"""Find the submissions in a folder or a .zip: ``<student>/<lesson>.ipynb``, nbgrader's
``submitted/<student>/<assignment>/<lesson>.ipynb``, a Canvas or a Moodle download (see
autograder.lms). This is the one place that turns an input folder into Submission objects;
everything that is not one is listed with the reason, never graded on a guess."""

import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autograder import lms
from autograder.lms import STUDENT_ID, LmsFile, Student

IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store"}
MAX_UNZIPPED = 2 * 1024 ** 3  # a zip bomb stops here


@dataclass(frozen=True)
class Submission:
    """One notebook to grade."""

    student: str
    lesson: str
    path: Path
    origin: str = ""  # the file as it came (relative to the download)
    late: bool = False  # the LMS marked it late
    notes: tuple[str, ...] = ()  # what the instructor should know (a renamed upload)


def extract_zip(archive: Path, dest: Path) -> list[str]:
    """Unpack ``archive`` into ``dest``, skipping unsafe names; return what was skipped."""
    skipped, total = [], 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir():
                continue
            if name.is_absolute() or ".." in name.parts:
                skipped.append(f"{info.filename}: unsafe path in the zip, not extracted")
                continue
            total += info.file_size
            if total > MAX_UNZIPPED:
                skipped.append(f"{info.filename}: the zip unpacks to more than 2 GiB; stopped")
                break
            target = dest.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
    return skipped


def classify(rel: PurePosixPath, lessons: set[str]) -> tuple[str, str] | str:
    """(student, lesson) for a file's path relative to the submissions root, else why not."""
    parts = rel.parts
    if rel.suffix != ".ipynb":
        return "not a notebook"
    if rel.stem not in lessons:
        return f"'{rel.name}' is not a lesson of this course"
    if "submitted" in parts[:-3] or (len(parts) >= 4 and parts[-4] == "submitted"):
        student, assignment = parts[-3], parts[-2]
        if assignment != rel.stem:
            return f"assignment folder '{assignment}' does not match the notebook '{rel.stem}'"
    elif len(parts) >= 2:
        student = parts[-2]
    else:
        return "not inside a student folder (expected <student_id>/<lesson>.ipynb)"
    if not STUDENT_ID.match(student):
        return f"student id '{student}' has unsupported characters"
    return student, rel.stem


def collect(root: Path, lessons, roster: Path | list[Student] | None = None
            ) -> tuple[list[Submission], list[dict]]:
    """The gradable submissions under ``root`` and the files that are not (with reasons).
    With a roster, LMS ids are mapped to its student ids and plain student folders must be
    on it."""
    students = lms.read_roster(roster) if isinstance(roster, Path) else roster
    lessons = set(lessons)
    found, unmatched, seen, from_lms = [], [], set(), defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if IGNORED_PARTS & set(rel.parts):
            continue
        lms_file = lms.identify(rel)
        outcome = (lms_outcome(lms_file, lessons, students) if lms_file
                   else plain_outcome(rel, lessons, students))
        if isinstance(outcome, str):
            unmatched.append({"file": str(rel), "reason": outcome})
        elif isinstance(outcome, dict):  # an LMS file of a known student, not gradable
            unmatched.append({"file": str(rel), **outcome})
        elif lms_file:
            from_lms[outcome[:2]].append(Submission(*outcome[:2], path, str(rel),
                                                    lms_file.late, outcome[2]))
        elif outcome in seen:
            unmatched.append({"file": str(rel), "reason": "a second submission of "
                              f"{outcome[1]} by {outcome[0]}; the first one was graded"})
        else:
            seen.add(outcome)
            found.append(Submission(*outcome, path, str(rel)))
    return found + unique_lms(from_lms, seen, unmatched), unmatched


def plain_outcome(rel: PurePosixPath, lessons: set[str], roster) -> tuple[str, str] | str:
    """classify(), and with a roster, the student folder must name a roster student."""
    outcome = classify(rel, lessons)
    if isinstance(outcome, tuple) and roster is not None \
            and outcome[0] not in {s.student_id for s in roster}:
        return f"student '{outcome[0]}' is not on the roster"
    return outcome


def lms_outcome(found: LmsFile, lessons: set[str], roster) -> tuple[str, str, tuple] | dict | str:
    """(student, lesson, notes) for a file of an LMS download, or why it is not graded (with
    the student, when known)."""
    student = lms.student_of(found, roster)
    if isinstance(student, str):
        return student
    if not STUDENT_ID.match(student[0]):
        return f"student id '{student[0]}' has unsupported characters"
    lesson = lms.lesson_of(found.file, lessons)
    if isinstance(lesson, str):
        return {"reason": lesson, "student": student[0]}
    late = [f"{found.lms} marked it late"] if found.late else []
    return student[0], lesson[0], tuple(n for n in (lesson[1], student[1], *late) if n)


def unique_lms(from_lms: dict, seen: set, unmatched: list[dict]) -> list[Submission]:
    """One LMS file per (student, lesson) is graded; when there are more, none is: which one
    counts is the instructor's call (the LMS keeps the student's latest submission)."""
    chosen = []
    for key, subs in sorted(from_lms.items()):
        files = sorted(s.origin for s in subs)
        if len(subs) > 1 or key in seen:
            others = " and a plain copy" if key in seen else ""
            unmatched += [{"file": f, "reason": f"ambiguous: {len(subs)} files for {key[1]} "
                           f"by {key[0]} ({', '.join(files)}){others}; none was graded: keep "
                           "one and grade again", "student": key[0], "lesson": key[1]}
                          for f in files]
        else:
            chosen.append(subs[0])
    return chosen


def missing(subs: list[Submission], roster: Path | list[Student] | None,
            unmatched: list[dict]) -> list[dict]:
    """Roster students without a submission of a lesson graded in this run (one row each),
    with the reason: nothing came, or only files that could not be graded."""
    if roster is None:
        return []
    students = lms.read_roster(roster) if isinstance(roster, Path) else roster
    graded = {(s.student, s.lesson) for s in subs}
    lessons = sorted({s.lesson for s in subs})
    tried = {u.get("student") for u in unmatched}  # files came, none could be graded
    rows = []
    for student in students:
        for lesson in lessons:
            if (student.student_id, lesson) not in graded:
                why = ("only files that could not be graded (see the files not graded)"
                       if student.student_id in tried else "no submission")
                rows.append({"student": student.student_id, "lesson": lesson,
                             "name": student.name, "lms_id": student.lms_id, "reason": why})
    return rows


def class_list(subs: list[Submission], roster: Path | list[Student] | None) -> dict:
    """{student id: lms_id, name, email}: the roster, else what the LMS file names said."""
    if roster is not None:
        students = lms.read_roster(roster) if isinstance(roster, Path) else roster
        return {s.student_id: {"lms_id": s.lms_id, "name": s.name, "email": s.email}
                for s in students}
    people = {}
    for sub in subs:
        found = lms.identify(PurePosixPath(sub.origin)) if sub.origin else None
        people[sub.student] = {"lms_id": found.lms_id if found else "",
                               "name": found.name if found else "", "email": ""}
    return people


def annotate(results: list[dict], subs: list[Submission], roster, unmatched: list[dict]
             ) -> dict:
    """Add each submission's LMS notes (late, renamed) to its result; return what the
    outputs record about the class: ``missing`` and ``class_list``."""
    by_key = {(s.student, s.lesson): s for s in subs}
    for result in results:
        sub = by_key.get((result["student"], result["lesson"]))
        if sub is not None:
            result["notes"] = [*result["notes"], *(n for n in sub.notes
                                                   if n not in result["notes"])]
            result["late"] = sub.late
            result["file"] = sub.origin
    return {"missing": missing(subs, roster, unmatched), "class_list": class_list(subs, roster)}
