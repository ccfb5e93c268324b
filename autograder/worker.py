"""Grade one submission in its own process: ``python -m autograder.worker JOB_DIR``.

The job folder holds ``job.json`` (what to grade and how) and a private nbgrader course
(``course/``: the lesson's source, a copy of the gradebook, the submission). nbgrader's
Autograde runs the notebook in the sandbox kernel and the graded test cells on this side
(``autograder.trusted``), ``autograder.feedback`` writes the HTML, and
``result.json`` (written last, atomically) is what the parent merges into the gradebook.
"""

import ctypes
import json
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from autograder import feedback, prefork, sandbox
from autograder.config import load_config
from autograder.execute import SandboxExecute, TruncateOutput, hidden_lines, redact
from autograder.i18n import language_of, translate_message
from autograder.notes import graded_order
from autograder.trusted import is_test_cell

MESSAGE_LIMIT = 2_000  # characters of one cell's message in results.json
NOTES_LIMIT = 50
# the grader's reasons and notes: English templates (results.json, grades.csv, report.html);
# feedback.render shows them in the submission's language (translations/zh/autograder.po)
TIMED_OUT = "cell {cell} ran longer than the time limit and was stopped"
STUCK = "{reason}; later cells were not run"
CRASHED_OVER_MEMORY = ("{reason}; its processes went past the memory limit ({limit} GiB for "
                       "all together)")
KILLED_OVER_MEMORY = "the kernel's processes went past the memory limit and were killed"
MEMORY_ERROR = "cell {cell} hit the memory limit (MemoryError)"
TRUNCATED = "cell {cell}: its output was truncated"

PR_SET_PDEATHSIG = 1
_serving = False  # a serving worker keeps a fork server for its jobs (prefork)


def job_config(job: dict, rt: sandbox.Runtime):
    """nbgrader_config.py plus this job: course folder, gradebook, kernel, timeout."""
    course = Path(job["course"])
    config = load_config(course, f"sqlite:///{course / 'gradebook.db'}")
    config.CourseDirectory.assignment_id = job["lesson"]
    config.CourseDirectory.student_id = job["student"]
    config.Execute.kernel_name = sandbox.KERNEL_NAME
    config.Execute.timeout = job["timeout"]
    config.Execute.startup_timeout = 120
    config.SandboxExecute.source_notebook = str(source_path(job))
    config.Autograde.autograde_preprocessors = [
        SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, TruncateOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    if job["sandboxed"]:
        config.KernelManager.transport = "ipc"  # Unix sockets reach into the network namespace
        config.KernelManager.ip = str(rt.conn / "k")
        config.KernelManager.connection_file = str(rt.conn / "kernel.json")
    return config


def source_path(job: dict) -> Path:
    """The instructor's source notebook of the job's lesson (hidden tests included)."""
    return Path(job["course"]) / "source" / job["lesson"] / f"{job['lesson']}.ipynb"


def submitted_path(job: dict) -> Path:
    """The student's notebook as the job received it."""
    lesson = job["lesson"]
    return Path(job["course"]) / "submitted" / job["student"] / lesson / f"{lesson}.ipynb"


def prepare_kernel(job: dict, rt: sandbox.Runtime) -> None:
    """Write the sandbox kernel spec (the classic launch, also what a failing fork server
    falls back to), set up the warm launch if this job may have one, and hand the private
    folders to the kernel's uid."""
    limits = sandbox.Limits(**job["limits"])
    book = Path(job["book"])
    procs = rt.cgroup.procs_files if rt.cgroup is not None else []
    lang = language_of(submitted_path(job))
    prefork.active = warm_launch(job, rt, lang) if _serving and prefork.usable(job, rt) else None
    argv = sandbox.kernel_argv(limits, rt.home, rt.conn, book, job["sandboxed"], procs, lang)
    env = {} if job["sandboxed"] else sandbox.kernel_env(False, rt.home, book, lang)
    sandbox.write_kernelspec(rt.spec, argv, env)
    os.environ["JUPYTER_PATH"] = str(rt.spec)
    os.environ.pop("AUTOGRADER_KERNEL_UID", None)  # a serving worker grades many jobs
    if limits.uid is not None:
        os.environ["AUTOGRADER_KERNEL_UID"] = str(limits.uid)
        for path in (rt.conn, rt.home, *rt.home.rglob("*")):  # a warm matplotlib cache
            os.chown(path, limits.uid, limits.uid)


def warm_launch(job: dict, rt: sandbox.Runtime, lang: str) -> prefork.Launch | None:
    """This job's kernel from the slot's fork server (None: a classic kernel, and why)."""
    limits, book = sandbox.Limits(**job["limits"]), Path(job["book"])
    try:
        server = prefork.server_for(book, Path(job["home"]), limits.uid)
    except prefork.ForkServerError as err:
        print(f"[autograder] no fork server ({err}): a classic kernel", file=sys.stderr)
        return None
    rt.move_conn(server.root)
    request = {"env": sandbox.kernel_env(True, rt.home, book, lang),
               "connection_file": str(rt.conn / "kernel.json"), "uid": limits.uid,
               "limits": sandbox.process_limits(limits), "home_size": limits.home_size,
               "home_files": limits.home_files}
    return prefork.Launch(server, request, rt.cgroup.procs_files)


def run_nbgrader(converter_class, config) -> None:
    """Run one nbgrader converter; raise with its log when it fails."""
    coursedir = CourseDirectory(config=config)
    converter = converter_class(coursedir=coursedir, config=config)
    converter.force = True
    handler = logging.StreamHandler(sys.stderr)  # nbgrader's warnings and errors: worker.log
    handler.setLevel(logging.WARNING)
    converter.log.addHandler(handler)
    try:
        converter.start()
    finally:
        converter.log.removeHandler(handler)


def cell_results(job: dict, nb, order: dict[str, int]) -> list[dict]:
    """Per graded cell, in notebook order: grade_id, points, max_points, passed, message."""
    course = Path(job["course"])
    messages = {c.metadata.get("nbgrader", {}).get("grade_id"): failure_message(c)
                for c in nb.cells if c.cell_type == "code"}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        notebook = gb.find_submission_notebook(job["lesson"], job["lesson"], job["student"])
        rows = [_row(g.name, float(g.score), float(g.max_score), messages)
                for g in notebook.grades]
    return sorted(rows, key=lambda r: order.get(r["grade_id"], len(order)))


def _row(grade_id: str, points: float, max_points: float, messages: dict) -> dict:
    passed = points >= max_points
    message = "" if passed else messages.get(grade_id) or "no points"
    return {"grade_id": grade_id, "points": points, "max_points": max_points,
            "passed": passed, "message": message}


def failure_message(cell) -> str:
    """The grader's message for a failed graded cell (graded cells' outputs are written by
    the grader: ``SandboxExecute._run_trusted`` or a kernel that stopped)."""
    for output in cell.get("outputs", []):
        if output.output_type == "error" and output.ename == "NotImplementedError":
            return "NotImplementedError: an answer this test uses is still the stub"
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}".strip().rstrip(":")
    return ""


def status_of(events: list[tuple]) -> tuple[str, str]:
    """graded, timeout or crashed, with the reason, from the grader's own record of the run."""
    kinds = {kind: (index, reason) for kind, index, reason in reversed(events)}
    if "stuck" in kinds:
        return "timeout", STUCK.format(reason=kinds["stuck"][1])
    for kind in ("died", "not started"):
        if kind in kinds:
            return "crashed", kinds[kind][1]
    if "timeout" in kinds:
        index = kinds["timeout"][0]
        return "timeout", TIMED_OUT.format(cell=index + 1)
    return "graded", ""


def grade_job(job_dir: Path) -> dict:
    """Autograde, write feedback, and return the result of one job."""
    job = json.loads((job_dir / "job.json").read_text())
    course, student, lesson = Path(job["course"]), job["student"], job["lesson"]
    started = time.monotonic()
    rt = sandbox.Runtime(job_dir).open(Path(job["home"]), sandbox.Limits(**job["limits"]))
    try:
        prepare_kernel(job, rt)
        config = job_config(job, rt)
        run_nbgrader(Autograde, config)
        timeline("autograded", started)
        resources = {"peak_memory": rt.cgroup.peak_memory() if rt.cgroup else None,
                     "oom_kills": rt.cgroup.oom_kills() if rt.cgroup else 0,
                     "cgroup": rt.cgroup is not None, "home_limited": rt.home_limited,
                     "kernel": "fork server" if prefork.active and prefork.active.forked
                     else "classic"}
    finally:
        rt.close()
    run = SandboxExecute.last_run
    graded = course / "autograded" / student / lesson / f"{lesson}.ipynb"
    nb = nbformat.read(graded, as_version=4)
    status, reason = status_of(run.events)
    if status == "crashed" and resources["oom_kills"]:
        limit = sandbox.Limits(**job["limits"]).memory / sandbox.GiB
        reason = CRASHED_OVER_MEMORY.format(reason=reason, limit=f"{limit:g}")
    source = nbformat.read(source_path(job), as_version=4)
    hidden = hidden_lines(source)
    cells = cell_results(job, nb, graded_order(source))
    lang = language_of(nb)
    for row in cells:
        row["message"] = translate_message(redact(row["message"], hidden), lang)[:MESSAGE_LIMIT]
    notes = job["notes"] + submission_notes_after(nb)
    if resources["oom_kills"]:
        notes.append(KILLED_OVER_MEMORY)
    notes = notes[:NOTES_LIMIT]
    page = course / "feedback" / student / lesson / f"{lesson}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    tests = {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells if is_test_cell(c)}
    page.write_text(feedback.render(nb, title=f"{lesson}: {student}", rows=cells,
                                    test_sources=tests, status=status, reason=reason,
                                    notes=notes, hidden=hidden, lang=lang), encoding="utf-8")
    timeline("feedback written", started)
    return {"student": student, "lesson": lesson, "status": status, "reason": reason,
            "notes": notes, "cells": cells,
            "score": sum(r["points"] for r in cells),
            "max_score": sum(r["max_points"] for r in cells),
            "feedback": str(page), "boundary": getattr(run, "boundary_stats", {}),
            "resources": resources,
            "seconds": round(time.monotonic() - started, 1), "fingerprint": job["fingerprint"]}


def timeline(step: str, started: float) -> None:
    """A line in worker.log: where a job's seconds go (worker.log is the instructor's)."""
    print(f"[autograder] {step} after {time.monotonic() - started:.1f} s", file=sys.stderr,
          flush=True)


def submission_notes_after(nb) -> list[str]:
    """Notes visible only after the run: limits the submission ran into."""
    notes = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("ename") == "MemoryError":
                notes.append(MEMORY_ERROR.format(cell=index + 1))
            if "output truncated" in str(output.get("text", "")):
                notes.append(TRUNCATED.format(cell=index + 1))
    return list(dict.fromkeys(notes))


def die_with_parent() -> None:
    """Ask Linux to kill this worker (and so, through bwrap, its kernel) if the grader dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def finish_job(job_dir: Path) -> None:
    """Grade one job and write its ``result.json``."""
    result = grade_job(job_dir)
    partial = job_dir / "result.json.part"
    partial.write_text(json.dumps(result, indent=1))
    partial.replace(job_dir / "result.json")  # atomic: a half-written result never counts


def log_to(path: Path) -> None:
    """Send this process's stdout and stderr (and so its kernel's) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(reply_fd: int) -> int:
    """Grade the job folders named on stdin, one per line, one after another (nbgrader is
    imported once); after each, write ``next`` on ``reply_fd``. A job that raises writes
    ``exit`` and ends the process (the parent starts a fresh one), as a one-job worker did."""
    global _serving
    os.set_inheritable(reply_fd, False)  # kernels must not be able to answer for us
    replies = os.fdopen(reply_fd, "w", buffering=1)
    _serving = True  # kernels may come warm from a fork server kept across jobs
    for line in sys.stdin:
        job_dir = Path(line.strip())
        log_to(job_dir / "worker.log")
        try:
            finish_job(job_dir)
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            replies.write("exit\n")
            prefork.shutdown()
            return 1
        replies.write("next\n")
    prefork.shutdown()
    return 0


def main(argv: list[str]) -> int:
    """``JOB_DIR``: grade one job; ``--serve FD``: grade jobs named on stdin (see serve)."""
    die_with_parent()
    warnings.filterwarnings("ignore", module="nbgrader.api")  # SQLAlchemy noise from nbgrader
    if argv[0] == "--serve":
        return serve(int(argv[1]))
    finish_job(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
