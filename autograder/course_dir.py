"""The graded class as an nbgrader course directory, which formgrader opens as it is.

After ``grade``, OUT holds what nbgrader expects of a course: ``nbgrader_config.py``,
``source/<lesson>/``, ``submitted/<student>/<lesson>/``, ``autograded/<student>/<lesson>/``
(copied from each job's private course) and the gradebook (``OUT/gradebook.db`` or
``--db``) with every submission's automatic scores. Manual grades and comments entered in
formgrader go to that gradebook; ``export`` reads them from there. Feedback that formgrader
generates hides hidden tests as the grader's own feedback does.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook
from nbgrader.api import Gradebook

COURSE_ID = "d2lmini-rnn"
CONFIG_NAME = "nbgrader_config.py"
CONFIG_TEXT = '''\
"""nbgrader configuration of this graded class (written by python -m autograder grade).

Open it with ``python -m autograder formgrader {folder}``. Grade again with
``python -m autograder grade``: formgrader's own Autograde button would run the students'
code without the autograder's sandbox.
"""

import os

from autograder.course_dir import course_config

c = get_config()  # noqa: F821  (defined by traitlets while it loads this file)
c.merge(course_config(os.path.dirname(os.path.abspath(__file__)), {db_url!r}))
'''


def course_config(root: str, db_url: str | None = None):
    """The nbgrader config of a graded class in ``root``: the autograder's settings, this
    folder as the course, its gradebook (``root/gradebook.db`` when ``db_url`` is None),
    feedback without hidden tests, sanitised HTML, an exchange under ``root/exchange``."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    from autograder.config import load_config
    from autograder.execute import HideHiddenTests

    config = load_config(Path(root), db_url)
    config.CourseDirectory.course_id = COURSE_ID
    config.Exchange.root = str(Path(root) / "exchange")
    config.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests,
                                             CSSHTMLHeaderPreprocessor]
    # formgrader's pages and the feedback it writes render students' Markdown and outputs:
    # sanitised, a student's <script> cannot run in the instructor's (or a student's) browser
    config.HTMLExporter.sanitize_html = True
    return config


def write(opts, results: list[dict], context: dict) -> Path:
    """Make ``opts.out`` the course directory of the graded ``results``; return it."""
    course = opts.out
    for lesson in sorted({r["lesson"] for r in results}):
        copy_source(opts, results, lesson)
    for result in results:
        copy_submission(opts, result)
    default_db = f"sqlite:///{(course / 'gradebook.db').resolve()}"
    db_url = None if context["gradebook"] == default_db else context["gradebook"]
    (course / CONFIG_NAME).write_text(CONFIG_TEXT.format(folder=course, db_url=db_url),
                                      encoding="utf-8")
    (course / "exchange").mkdir(exist_ok=True)
    name_students(context["gradebook"], context.get("class_list", {}),
                  {r["student"] for r in results})
    return course


def job_course(opts, student: str, lesson: str) -> Path:
    """The private nbgrader course a job graded in (see grade.Grader.job_dir)."""
    return opts.work / "jobs" / student / lesson / "course"


def copy_source(opts, results: list[dict], lesson: str) -> None:
    """source/<lesson>/<lesson>.ipynb: from a job of the lesson, else the template."""
    target = opts.out / "source" / lesson / f"{lesson}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r["lesson"] == lesson:
            found = job_course(opts, r["student"], lesson) / "source" / lesson / target.name
            if found.is_file():
                shutil.copyfile(found, target)
                return
    from autograder.grade import prepare_template  # only when no job of it was run

    shutil.copyfile(prepare_template(opts) / "source" / lesson / target.name, target)


def copy_submission(opts, result: dict) -> None:
    """submitted/ and autograded/ of one result; a stub notebook saying why when the
    submission never reached nbgrader (unreadable, or the grader failed)."""
    student, lesson = result["student"], result["lesson"]
    job = job_course(opts, student, lesson)
    for kind in ("submitted", "autograded"):
        target = opts.out / kind / student / lesson
        shutil.rmtree(target, ignore_errors=True)
        if (job / kind / student / lesson / f"{lesson}.ipynb").is_file():
            shutil.copytree(job / kind / student / lesson, target)
            sanitise(target / f"{lesson}.ipynb")
        else:
            target.mkdir(parents=True)
            nbformat.write(stub(result), target / f"{lesson}.ipynb")
    release_files(opts.out / "autograded" / student / lesson, student, lesson)


def release_files(folder: Path, student: str, lesson: str) -> None:
    """The two files nbgrader's release_feedback needs beside a graded notebook (its submit
    command would have written them): when it was graded, and the secret that names the
    released feedback file. Only in autograded/: a timestamp in submitted/ would make
    formgrader think the submission changed after grading."""
    graded = folder / f"{lesson}.ipynb"
    when = datetime.fromtimestamp(graded.stat().st_mtime, UTC)
    (folder / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    secret = hashlib.sha256(f"{COURSE_ID}/{student}/{lesson}".encode()).hexdigest()[:32]
    (folder / "submission_secret.txt").write_text(secret)


def sanitise(path: Path) -> None:
    """The students' HTML made harmless in OUT's copy of a notebook: formgrader renders
    Markdown cells without nbconvert's sanitiser, so an ``<img onerror=...>`` there would run
    in the instructor's browser (on the Jupyter server's origin) and in released feedback.
    Markdown and HTML outputs go through the grader's allow-list; JavaScript outputs are
    dropped (sanitize_html, see course_config, covers the rest of every output)."""
    from autograder.feedback import clean_html

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = clean_html(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            data.pop("application/javascript", None)
            if "text/html" in data:
                data["text/html"] = clean_html("".join(data["text/html"]))
    nbformat.write(nb, path)


def stub(result: dict):
    """A notebook that says why a submission has no graded notebook."""
    text = (f"**{result['lesson']}** of **{result['student']}** was not graded by nbgrader: "
            f"{result['status']}: {result['reason']}. Every test scores 0.")
    return new_notebook(cells=[new_markdown_cell(text)])


def name_students(db_url: str, people: dict, students: set[str]) -> None:
    """First and last names and emails in the gradebook, so formgrader shows who is who."""
    with Gradebook(db_url) as gb:
        for student in sorted(students):
            info = people.get(student) or {}
            words = (info.get("name") or "").split()
            gb.update_or_create_student(
                student, first_name=" ".join(words[:-1]) or None,
                last_name=words[-1] if words else None, email=info.get("email") or None)


# The nbgrader extensions the student install turns off (jupyter-config/student/), turned
# back on for the instructor's server only.
INSTRUCTOR_PLUGINS = ["@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader",
                      "@jupyter/nbgrader:course-list", "@jupyter/nbgrader:assignment-list",
                      "@jupyter/nbgrader:menu"]
INSTRUCTOR_SERVER = ["nbgrader.server_extensions.formgrader",
                     "nbgrader.server_extensions.course_list",
                     "nbgrader.server_extensions.assignment_list",
                     "nbgrader.server_extensions.validate_assignment"]


def instructor_config(folder: Path) -> Path:
    """A Jupyter config folder that turns nbgrader's instructor extensions on. Put first on
    JUPYTER_CONFIG_PATH it outranks the environment's own config (the student settings)."""
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    (folder / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": dict.fromkeys(INSTRUCTOR_PLUGINS, False)}, indent=1))
    (folder / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": dict.fromkeys(INSTRUCTOR_SERVER, True)}},
        indent=1))
    return folder


def formgrader_env(course: Path, env: dict | None = None) -> dict:
    """The environment of the instructor's JupyterLab on ``course``: the instructor config
    first on JUPYTER_CONFIG_PATH, this interpreter's bin/ first on PATH (nbgrader runs
    ``alembic``)."""
    env = dict(os.environ if env is None else env)
    config = instructor_config(course / ".work" / "jupyter-instructor")
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        [str(config), *filter(None, [env.get("JUPYTER_CONFIG_PATH")])])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def lab_argv(course: Path, *options: str) -> list[str]:
    """``jupyter lab`` serving ``course`` (formgrader reads nbgrader_config.py from the
    server's working directory, which must be ``course``)."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={course}", *options]


def open_formgrader(course: Path, options: list[str]) -> int:
    """``python -m autograder formgrader OUT``: JupyterLab on the graded class with
    nbgrader's instructor tools, opened at /formgrader."""
    if not (course / CONFIG_NAME).is_file():
        raise SystemExit(f"{course / CONFIG_NAME} not found: {course} is not a graded class "
                         f"(run python -m autograder grade SUBMISSIONS --out {course})")
    argv = lab_argv(course, "--ServerApp.default_url=/formgrader", *options)
    return subprocess.call(argv, cwd=course, env=formgrader_env(course))
