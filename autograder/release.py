"""``python -m autograder release [--check]``: course/ generated from solutions/ by nbgrader.

Each ``solutions/<name>.ipynb`` becomes its own nbgrader assignment ``<name>``; nbgrader's
``generate_assignment`` replaces answers with stubs, removes hidden tests and clears outputs.
The result is normalised (cell ids, metadata, JSON layout) so that regenerating is byte-stable,
and a first Markdown cell says the file is generated and where its source is.

Editions in other languages (``course/zh/``, see ``autograder.i18n``) are made from the English
student notebooks and the catalogs ``translations/<lang>/<name>.po``: same cells, same nbgrader
metadata, Markdown (and, where translated, comments and strings of unlocked code) translated.
``release --update-catalogs`` refreshes the catalogs from the English source; ``release --check``
also fails on a missing, empty, fuzzy or stale translation.
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

from autograder import i18n
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


def render_editions(root: Path, english: dict[str, str]) -> dict[str, str]:
    """The translated editions' files, keyed by path relative to ``root``: every
    ``course/<lang>/<name>.ipynb`` and d2lmini's ``lessons`` catalog of each language."""
    files = {}
    for lang in i18n.editions(root):
        catalogs = []
        for filename, text in english.items():
            name = Path(filename).stem
            catalog = i18n.load_catalog(i18n.catalog_file(root, lang, name))
            catalogs.append((name, catalog))
            notice = nbformat.v4.new_markdown_cell(i18n.notice_text(lang, name, root), id=NOTICE_ID)
            notice.metadata = {"deletable": False, "editable": False}
            nb = i18n.translated_notebook(nbformat.reads(text, as_version=4), lang, catalog,
                                          notice)
            files[f"{COURSE}/{lang}/{filename}"] = nbformat.writes(nb) + "\n"
        runtime = i18n.runtime_catalog(catalogs, lang)
        files[str(i18n.LOCALE / lang / "LC_MESSAGES" / "lessons.po")] = str(runtime) + "\n"
    return files


def release(root: Path) -> list[Path]:
    """Write course/<name>.ipynb for every solutions/<name>.ipynb, and every translated
    edition; return the files written."""
    course = root / COURSE
    course.mkdir(exist_ok=True)
    english = render(root / SOLUTIONS)
    files = {f"{COURSE}/{name}": text for name, text in english.items()}
    files |= render_editions(root, english)
    written = []
    for relative, text in files.items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale(root: Path) -> list[str]:
    """Problems with course/: one line per stale, missing or extra notebook, and per missing,
    empty, fuzzy or stale translation (empty: in sync)."""
    english = render(root / SOLUTIONS)
    problems = _folder_problems(root / COURSE, english, f"{COURSE}/")
    editions = render_editions(root, english)
    for lang in i18n.editions(root):
        prefix = f"{COURSE}/{lang}/"
        expected = {k[len(prefix):]: v for k, v in editions.items() if k.startswith(prefix)}
        problems += _folder_problems(root / COURSE / lang, expected, prefix)
        problems += _file_problems(root, {k: v for k, v in editions.items()
                                          if not k.startswith(prefix)})
        problems += translation_problems(root, lang, english)
        problems += library_problems(root, lang)
    return problems


def library_problems(root: Path, lang: str) -> list[str]:
    """Messages of d2lmini (``_("...")`` calls) without a translation in its catalog."""
    path = i18n.library_catalog_path(root, lang)
    if not (root / "d2lmini").is_dir():
        return []
    return i18n.problems_of_catalog(i18n.load_catalog(path), [],
                                    i18n.library_messages(root / "d2lmini"),
                                    str(path.relative_to(root)))


def _folder_problems(folder: Path, expected: dict[str, str], label: str) -> list[str]:
    """Missing, extra and stale notebooks of one folder."""
    present = {p.name for p in folder.glob("*.ipynb")} if folder.is_dir() else set()
    problems = [f"missing: {label}{name}" for name in sorted(set(expected) - present)]
    problems += [f"extra (no solutions/ source): {label}{name}"
                 for name in sorted(present - set(expected))]
    problems += [f"stale: {label}{name}" for name in sorted(present & set(expected))
                 if (folder / name).read_text(encoding="utf-8") != expected[name]]
    return problems


def _file_problems(root: Path, expected: dict[str, str]) -> list[str]:
    return [f"stale: {relative}" for relative, text in sorted(expected.items())
            if not (root / relative).is_file()
            or (root / relative).read_text(encoding="utf-8") != text]


def translation_problems(root: Path, lang: str, english: dict[str, str] | None = None):
    """Missing, empty, fuzzy, stale or unsafe entries of ``translations/<lang>/``."""
    english = english if english is not None else render(root / SOLUTIONS)
    problems = []
    for filename, text in english.items():
        name = Path(filename).stem
        path = i18n.catalog_file(root, lang, name)
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(root)}")
            continue
        cells = i18n.cell_entries(nbformat.reads(text, as_version=4))
        problems += i18n.problems_of_catalog(i18n.load_catalog(path), cells,
                                             i18n.solution_messages(root, name),
                                             str(path.relative_to(root)))
    return problems


def update_catalogs(root: Path) -> list[Path]:
    """Refresh every ``translations/<lang>/<name>.po`` from the English source: new entries
    empty, changed ones fuzzy, translations kept; return the files that changed."""
    english = render(root / SOLUTIONS)
    written = []
    for lang in i18n.editions(root):
        for filename, text in english.items():
            name = Path(filename).stem
            path = i18n.catalog_file(root, lang, name)
            old = i18n.load_catalog(path)
            new = i18n.update_catalog(old, i18n.cell_entries(nbformat.reads(text, as_version=4)),
                                      i18n.solution_messages(root, name))
            new.metadata.setdefault("Language", lang)
            content = str(new) + "\n"
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                path.write_text(content, encoding="utf-8")
                written.append(path)
        if (root / "d2lmini").is_dir():
            path = i18n.library_catalog_path(root, lang)
            content = str(i18n.update_library_catalog(root, lang)) + "\n"
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
                written.append(path)
    return written


_OUTPUT_PROBLEMS = ("missing: course/", "extra (no solutions/ source)", "stale: course/",
                    "stale: d2lmini/")  # what `release` rewrites; the rest needs a translator


def main(root: Path, check: bool, update: bool = False) -> int:
    """The ``release`` command: 0 when course/ is (now) in sync.

    ``update`` (``--update-catalogs``) refreshes the translation catalogs first."""
    if not (root / SOLUTIONS).is_dir():
        print(f"no {SOLUTIONS}/ folder under {root}", file=sys.stderr)
        return 2
    if update:
        for path in update_catalogs(root):
            print(f"updated {path.relative_to(root)}")
    if check:
        problems = stale(root)
        for line in problems:
            print(line, file=sys.stderr)
        outputs = [line for line in problems if line.startswith(_OUTPUT_PROBLEMS)]
        if outputs:
            print("course/ is out of date: run `python -m autograder release`", file=sys.stderr)
        if len(outputs) < len(problems):
            print(f"translations are out of date: run `python -m autograder release "
                  f"--update-catalogs`, translate the empty and fuzzy entries of "
                  f"{i18n.TRANSLATIONS}/ and {i18n.LOCALE}/ (then remove their fuzzy flag) and "
                  "release again", file=sys.stderr)
        return 1 if problems else 0
    for path in release(root):
        print(f"wrote {path.relative_to(root)}")
    return 0
