"""``python -m autograder release [--check]``: course/ generated from solutions/ by nbgrader.

Each ``solutions/<name>.ipynb`` becomes its own nbgrader assignment ``<name>``; nbgrader's
``generate_assignment`` replaces answers with stubs, removes hidden tests and clears outputs.
The result is normalised (cell ids, metadata, JSON layout) so that regenerating is byte-stable,
and a first Markdown cell says the file is generated and where its source is.
"""

import hashlib
import io
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory

from autograder.config import COURSE, SOLUTIONS, lessons, load_config

NOTICE_ID = "generated-notice"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class ReleaseError(RuntimeError):
    """nbgrader could not generate a student version."""


def generate_assignments(solutions: Path, course_root: Path, db_url: str | None = None) -> None:
    """Run nbgrader's generate_assignment for every lesson inside the course folder.

    ``course_root/source/<name>/<name>.ipynb`` is the instructor source; the student versions
    land in ``course_root/release/<name>/``; the gradebook learns every graded cell.
    """
    config = load_config(course_root, db_url)
    for name in lessons(solutions):
        folder = course_root / "source" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solutions / f"{name}.ipynb", folder / f"{name}.ipynb")
        _generate(name, config)


def _generate(name: str, config) -> None:
    """One assignment through nbgrader's GenerateAssignment converter; its errors re-raised."""
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = name
    converter = GenerateAssignment(coursedir=coursedir, config=config)
    converter.force = True
    errors = io.StringIO()
    handler = logging.StreamHandler(errors)
    handler.setLevel(logging.ERROR)  # nbgrader logs every step; keep only what went wrong
    converter.log.addHandler(handler)
    try:
        converter.start()
    except Exception as err:  # nbgrader raises its own and sqlalchemy's errors
        raise ReleaseError(f"nbgrader could not generate {name}:\n{errors.getvalue()}") from err
    finally:
        converter.log.removeHandler(handler)


def student_version(generated: Path, name: str) -> str:
    """The released notebook as normalised JSON text, notice cell first."""
    nb = nbformat.read(generated, as_version=4)
    source = nbformat.read(generated.parents[2] / "source" / name / f"{name}.ipynb", as_version=4)
    for index, (cell, original) in enumerate(zip(nb.cells, source.cells, strict=True)):
        cell["id"] = original.get("id") or _stable_id(name, index)
    nb.cells.insert(0, notice_cell(name))
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nbformat.writes(nb) + "\n"


def _stable_id(name: str, index: int) -> str:
    """A cell id that depends only on the lesson and the cell's place (nbformat wants one)."""
    return hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:12]


def notice_cell(name: str):
    """The first cell of every student notebook: it is generated, edit solutions/ instead."""
    text = (
        f"> **Generated file.** This student notebook is generated from "
        f"`{SOLUTIONS}/{name}.ipynb` by `python -m autograder release`. "
        f"Course maintainers: edit `{SOLUTIONS}/{name}.ipynb` and regenerate; "
        f"changes made here are overwritten.\n>\n"
        f"> Students: work in this notebook as usual; answer where it says `YOUR CODE HERE`."
    )
    cell = nbformat.v4.new_markdown_cell(text, id=NOTICE_ID)
    cell.metadata = {"deletable": False, "editable": False}
    return cell


def render(solutions: Path) -> dict[str, str]:
    """Every student notebook's text, keyed by file name, generated in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="autograder-release-") as tmp:
        root = Path(tmp)
        generate_assignments(solutions, root)
        return {
            f"{name}.ipynb": student_version(root / "release" / name / f"{name}.ipynb", name)
            for name in lessons(solutions)
        }


def release(root: Path) -> list[Path]:
    """Write course/<name>.ipynb for every solutions/<name>.ipynb; return the files written."""
    course = root / COURSE
    course.mkdir(exist_ok=True)
    written = []
    for filename, text in render(root / SOLUTIONS).items():
        path = course / filename
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale(root: Path) -> list[str]:
    """Problems with course/: one line per stale, missing or extra notebook (empty: in sync)."""
    expected = render(root / SOLUTIONS)
    course = root / COURSE
    present = {p.name for p in course.glob("*.ipynb")} if course.is_dir() else set()
    problems = [f"missing: {COURSE}/{name}" for name in sorted(set(expected) - present)]
    problems += [f"extra (no solutions/ source): {COURSE}/{name}"
                 for name in sorted(present - set(expected))]
    problems += [f"stale: {COURSE}/{name}" for name in sorted(present & set(expected))
                 if (course / name).read_text(encoding="utf-8") != expected[name]]
    return problems


def main(root: Path, check: bool) -> int:
    """The ``release`` command: 0 when course/ is (now) in sync."""
    if not (root / SOLUTIONS).is_dir():
        print(f"no {SOLUTIONS}/ folder under {root}", file=sys.stderr)
        return 2
    if check:
        problems = stale(root)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("course/ is out of date: run `python -m autograder release`", file=sys.stderr)
        return 1 if problems else 0
    for path in release(root):
        print(f"wrote {path.relative_to(root)}")
    return 0
