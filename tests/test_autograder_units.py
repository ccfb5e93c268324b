"""Fast checks of the autograder's parts: finding submissions, notes on tampered notebooks,
hiding hidden tests, output caps, statuses, the sandbox's command line and the report."""

import copy
import os
import sys
import zipfile
from pathlib import Path, PurePosixPath

from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from autograder import report, sandbox
from autograder.execute import (
    TruncateOutput,
    _mark_stopped,
    error_output,
    hidden_lines,
    redact,
    stop_event,
)
from autograder.notes import drop_duplicates, submission_notes
from autograder.submissions import classify, collect, extract_zip
from autograder.worker import failure_message, status_of

LESSONS = {"01_text_and_batches", "02_rnn_from_scratch"}


def test_classify_both_layouts_and_reasons():
    """<student>/<lesson>.ipynb and submitted/<student>/<assignment>/<lesson>.ipynb."""
    ok = classify(PurePosixPath("alice/01_text_and_batches.ipynb"), LESSONS)
    nbg = classify(PurePosixPath("x/submitted/bob/02_rnn_from_scratch/02_rnn_from_scratch.ipynb"),
                   LESSONS)
    assert ok == ("alice", "01_text_and_batches") and nbg == ("bob", "02_rnn_from_scratch")
    assert "not a lesson" in classify(PurePosixPath("alice/homework.ipynb"), LESSONS)
    assert "not a notebook" in classify(PurePosixPath("alice/notes.txt"), LESSONS)
    assert "student folder" in classify(PurePosixPath("01_text_and_batches.ipynb"), LESSONS)
    assert "unsupported" in classify(PurePosixPath("a b/01_text_and_batches.ipynb"), LESSONS)


def test_collect_lists_second_copies_and_skips_checkpoints(tmp_path):
    """A student's second copy of a lesson is listed, checkpoints are ignored."""
    for rel in ["alice/01_text_and_batches.ipynb", "zip/alice/01_text_and_batches.ipynb",
                "alice/.ipynb_checkpoints/01_text_and_batches-checkpoint.ipynb"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    found, unmatched = collect(tmp_path, LESSONS)
    assert [(s.student, s.lesson) for s in found] == [("alice", "01_text_and_batches")]
    assert len(unmatched) == 1 and "second submission" in unmatched[0]["reason"]


def test_zip_extraction_refuses_unsafe_paths(tmp_path):
    """../ and absolute names are not extracted."""
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("alice/01_text_and_batches.ipynb", "{}")
        zf.writestr("../evil.ipynb", "{}")
    skipped = extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "alice" / "01_text_and_batches.ipynb").is_file()
    assert not (tmp_path / "evil.ipynb").exists() and len(skipped) == 1


def _cell(source, grade_id, **flags):
    meta = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": False, "task": False, **flags}
    return new_code_cell(source, metadata={"nbgrader": meta})


def _release():
    from nbgrader.utils import compute_checksum

    nb = new_notebook(cells=[_cell("def f(): pass", "f", solution=True),
                             _cell("assert f() is None", "f_none", grade=True, locked=True,
                                   points=1)])
    for cell in nb.cells:
        cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    return nb


def test_notes_for_edited_deleted_and_duplicated_cells():
    """Each tampering gets a sentence; an untouched copy gets none."""
    release = _release()
    assert submission_notes(copy.deepcopy(release), release) == []
    edited = copy.deepcopy(release)
    edited.cells[1].source = "assert True"
    deleted = copy.deepcopy(release)
    del deleted.cells[1]
    twice = copy.deepcopy(release)
    twice.cells.insert(1, copy.deepcopy(release.cells[0]))
    assert "was edited" in submission_notes(edited, release)[0]
    assert "was deleted" in submission_notes(deleted, release)[0]
    assert "appears 2 times" in submission_notes(twice, release)[0]


def test_duplicates_keep_metadata_on_the_last_copy():
    """Earlier copies lose their grading metadata entirely (not an empty dict)."""
    nb = _release()
    nb.cells.insert(1, copy.deepcopy(nb.cells[0]))
    drop_duplicates(nb)
    assert "nbgrader" not in nb.cells[0].metadata and "nbgrader" in nb.cells[1].metadata


def test_hidden_lines_are_redacted_from_tracebacks_and_reprs():
    """A traceback's code context and a printed ``In`` list lose the hidden lines."""
    nb = new_notebook(cells=[new_code_cell(
        "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 4, 'square'\n"
        "### END HIDDEN TESTS")])
    hidden = hidden_lines(nb)
    assert hidden == {"assert f(2) == 4, 'square'"}
    tb = "\x1b[0;32m----> 3\x1b[0m assert f(2) == 4, 'square'"
    assert "f(2)" not in redact(tb, hidden)
    assert "f(2)" not in redact(repr(["assert f(2) == 4, 'square'"]), hidden)


def test_truncate_output_caps_a_single_long_line():
    """nbgrader counts lines; one 10 MB line must be cut too."""
    cell = new_code_cell("print('x' * 10**7)")
    cell.outputs = [NotebookNode(output_type="stream", name="stdout", text="x" * 10 ** 7)]
    TruncateOutput(max_chars=1000).preprocess_cell(cell, {}, 0)
    assert len(cell.outputs[0].text) < 1100 and "truncated" in cell.outputs[0].text


def test_a_dead_kernel_fails_every_later_test_cell():
    """Unrun test cells get an error (no output would count as full marks)."""
    nb = _release()
    nb.cells.insert(1, new_code_cell("import os; os._exit(1)"))
    _mark_stopped(nb, 1, RuntimeError("dead"))
    assert nb.cells[1].outputs[-1].ename == "KernelDied"
    assert nb.cells[2].outputs[0].ename == "NotRun"
    assert status_of([stop_event(RuntimeError("dead"), 1)]) == (
        "crashed", "the kernel died in cell 2 (RuntimeError)")


def test_status_comes_from_the_graders_record_only():
    """A timeout the grader timed is a status; a look-alike error output is not; a failed
    assert is a message a student can act on."""
    assert status_of([("timeout", 1, "ran longer than the time limit")])[0] == "timeout"
    assert status_of([("stuck", 3, "cell 4 ignored the interrupt")])[0] == "timeout"
    nb = _release()
    nb.cells[1].outputs = [error_output("CellTimeoutError", ""), error_output("KernelDied", "")]
    assert status_of([]) == ("graded", ""), "outputs never enter the status"
    nb.cells[1].outputs = [error_output("AssertionError", "f(1): expected 1, got 2")]
    assert failure_message(nb.cells[1]) == "AssertionError: f(1): expected 1, got 2"


def test_sandbox_binds_no_repository_and_has_no_network(tmp_path):
    """bwrap's command line: new network namespace; solutions/ and the home are not bound."""
    argv = sandbox.kernel_argv(sandbox.Limits(uid=None), tmp_path / "home", tmp_path / "rt",
                               tmp_path / "book", sandboxed=True)
    assert Path(argv[0]).name == "bwrap" and "--unshare-net" in argv
    bound = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")}
    repo = Path(__file__).resolve().parents[1]
    assert not any(Path(p) in (repo, repo / "solutions", Path.home()) for p in bound)
    assert "autograder.launch" in argv and argv[-1] == "{connection_file}"


def test_report_lists_problems_and_charts(tmp_path):
    """The report names every non-clean submission and draws a chart per lesson."""
    cells = [{"grade_id": "f_none", "points": 0.0, "max_points": 1.0, "passed": False,
              "message": "boom"}]
    rows = [{"student": s, "lesson": "01", "status": st, "reason": why, "notes": [],
             "cells": cells, "score": 0.0, "max_score": 1.0, "feedback": None, "seconds": 1}
            for s, st, why in [("a", "graded", ""), ("b", "crashed", "the kernel died")]]
    context = {"unmatched": [{"file": "x.txt", "reason": "not a notebook"}],
               "sandbox": "test", "limits": {"memory": 2 ** 32, "cpu": 1, "processes": 1,
                                             "file_size": 2 ** 20, "cell_timeout": 1},
               "seconds": 1, "reused": 0, "jobs": 1, "gradebook": "postgresql://u:pw@h/db"}
    report.write_all(tmp_path, rows, context)
    page = (tmp_path / "report.html").read_text()
    assert "the kernel died" in page and "x.txt" in page and "<svg" in page
    assert "pw" not in page, "the database password is masked"
    assert (tmp_path / "feedback" / "b" / "01.html").is_file()


def test_check_verdicts_flag_failing_solutions_and_free_points():
    """check fails on a solution cell without full marks and a course cell with points."""
    from autograder.check import verdicts

    def result(student, points):
        cell = {"grade_id": "f_none", "points": points, "max_points": 1.0,
                "passed": points == 1.0, "message": "boom"}
        return {"student": student, "lesson": "01", "status": "graded", "reason": "",
                "cells": [cell]}

    assert verdicts([result("solutions", 1.0), result("course", 0.0)]) == []
    assert len(verdicts([result("solutions", 0.0), result("course", 1.0)])) == 2


FAKE_SERVER = '''
import os, sys, time
replies = os.fdopen(int(sys.argv[2]), "w", buffering=1)
for line in sys.stdin:
    job = line.strip()
    if job.endswith("die"):
        os._exit(3)
    if job.endswith("hang"):
        time.sleep(600)
    with open(os.path.join(job, "result.json"), "w") as f:
        f.write(str(os.getpid()))
    replies.write("next\\n")
'''


def _fake_worker(tmp_path):
    from autograder.pool import Worker

    script = tmp_path / "server.py"
    script.write_text(FAKE_SERVER)
    return Worker([sys.executable, str(script)])


def _job(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name


def test_worker_is_reused_for_consecutive_jobs(tmp_path):
    """One serving process grades job after job (nbgrader is imported once)."""
    from autograder.pool import DONE

    worker = _fake_worker(tmp_path)
    first, second = _job(tmp_path, "a"), _job(tmp_path, "b")
    assert worker.grade(first, 30) == DONE and worker.grade(second, 30) == DONE
    pids = {(first / "result.json").read_text(), (second / "result.json").read_text()}
    assert pids == {str(worker.proc.pid)} and worker.usable()
    worker.close()
    assert not worker.usable()


def test_worker_dying_or_late_is_killed_and_replaced(tmp_path):
    """A worker that dies mid-job reports DIED, one past the deadline is killed (LATE); a
    fresh worker then grades the next job."""
    from autograder.pool import DIED, DONE, LATE

    dying = _fake_worker(tmp_path)
    assert dying.grade(_job(tmp_path, "die"), 30) == DIED and not dying.usable()
    late = _fake_worker(tmp_path)
    assert late.grade(_job(tmp_path, "hang"), 1) == LATE
    assert not late.usable() and late.proc.returncode is not None
    fresh = _fake_worker(tmp_path)
    assert fresh.grade(_job(tmp_path, "next"), 30) == DONE
    assert (tmp_path / "next" / "result.json").read_text() == str(fresh.proc.pid)
    fresh.close()


def test_template_home_has_a_warm_matplotlib_cache(tmp_path):
    """The font list matplotlib builds on first import is made once and copied to homes."""
    from autograder.grade import MPLCONFIG, warm_matplotlib

    warm_matplotlib(tmp_path / "home")
    assert list((tmp_path / "home" / MPLCONFIG).glob("fontlist-*.json"))


def test_an_interrupted_run_starts_no_further_job():
    """Ctrl-C (or SIGTERM) during a run: the running jobs are stopped and no queued job
    starts afterwards (a ThreadPoolExecutor would otherwise run them all on exit)."""
    import threading

    import pytest

    from autograder.grade import run_all
    from autograder.submissions import Submission

    class Interrupted:  # the first job is interrupted, the second still running
        def __init__(self):
            self.started, self.stopped, self.release = [], False, threading.Event()

        def grade_one(self, sub, slots):
            self.started.append(sub.student)
            if len(self.started) == 1:
                raise KeyboardInterrupt
            self.release.wait(5)
            return {}

        def stop(self):
            self.stopped = True
            self.release.set()

        def close_workers(self):
            pass

    grader = Interrupted()
    subs = [Submission(student=f"s{i}", lesson="01", path=Path("x")) for i in range(20)]
    with pytest.raises(KeyboardInterrupt):
        run_all(grader, subs, jobs=2)
    assert grader.stopped and len(grader.started) <= 3, grader.started


def test_sigterm_stops_only_a_running_grade(monkeypatch):
    """During ``grade`` SIGTERM acts as Ctrl-C; afterwards the caller's handler is back (the
    grade command also runs inside other programs, e.g. this test process)."""
    import signal

    from autograder import grade

    seen = []

    def fake_grade(opts):
        seen.append(signal.getsignal(signal.SIGTERM))
        return {"results": [], "reused": 0, "seconds": 0, "unmatched": [], "sandbox": ""}

    monkeypatch.setattr(grade, "grade", fake_grade)
    before = signal.getsignal(signal.SIGTERM)
    assert grade.main(grade.Options(submissions=Path("s"), out=Path("o"), root=Path("."))) == 0
    assert seen == [grade._interrupt] and signal.getsignal(signal.SIGTERM) is before


def test_sweep_removes_only_what_dead_graders_left():
    """A grader killed with SIGKILL leaves its jobs' /tmp folders (and cgroups) and its fork
    servers' folders: the next run removes those whose owner is dead, and nothing else."""
    import secrets
    import shutil
    import subprocess

    from autograder.cgroup import Cgroup, folders_of
    from autograder.sandbox import slot_folder

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, alive = finished.pid, os.getpid()
    keys = {name: secrets.token_hex(6) for name in ("dead", "alive", "unknown")}
    roots = {name: Path("/tmp") / f"ag-{key}" for name, key in keys.items()}
    for name, owner in (("dead", dead), ("alive", alive), ("unknown", None)):
        (roots[name] / "home").mkdir(parents=True)
        if owner is not None:
            (roots[name] / sandbox.OWNER).write_text(str(owner))
    group = Cgroup.create(f"autograder-{keys['dead']}", 2 ** 30, 16)
    dead_slot, live_slot = slot_folder(dead, 299_997), slot_folder(alive, 299_997)
    for folder in (dead_slot, live_slot):
        (folder / "conn-x").mkdir(parents=True)
    try:
        removed = sandbox.sweep_stale()
        assert roots["dead"] in removed and dead_slot in removed
        assert not roots["dead"].exists() and not dead_slot.exists()
        assert roots["alive"].exists() and roots["unknown"].exists() and live_slot.exists()
        if group is not None:
            assert folders_of(f"autograder-{keys['dead']}") == {}
    finally:
        for folder in [*roots.values(), live_slot, dead_slot]:
            shutil.rmtree(folder, ignore_errors=True)
