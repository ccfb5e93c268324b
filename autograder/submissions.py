"""Find the submissions in a folder or a .zip: ``<student>/<lesson>.ipynb`` or nbgrader's
``submitted/<student>/<assignment>/<lesson>.ipynb``. Everything else is listed, not graded."""

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store"}
MAX_UNZIPPED = 2 * 1024 ** 3  # a zip bomb stops here


@dataclass(frozen=True)
class Submission:
    """One notebook to grade."""

    student: str
    lesson: str
    path: Path


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


def collect(root: Path, lessons) -> tuple[list[Submission], list[dict]]:
    """The gradable submissions under ``root`` and the files that are not (with reasons)."""
    found, unmatched, seen = [], [], set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if IGNORED_PARTS & set(rel.parts):
            continue
        outcome = classify(rel, set(lessons))
        if isinstance(outcome, str):
            unmatched.append({"file": str(rel), "reason": outcome})
        elif outcome in seen:
            unmatched.append({"file": str(rel), "reason": "a second submission of "
                              f"{outcome[1]} by {outcome[0]}; the first one was graded"})
        else:
            seen.add(outcome)
            found.append(Submission(*outcome, path))
    return found, unmatched
