"""``python -m autograder grade`` on a class built here from solutions/ and course/.

One lesson (the cheapest, 01) gives every kind of submission: correct, partly wrong, blank,
tampered with (edited, deleted, duplicated cells), broken (invalid JSON, empty) and hostile
(infinite loop, memory bomb, fork bomb, reading solutions, network, 10 MB of output,
sys.exit, os._exit, a segfault, an answer that loops or kills the kernel when a test calls
it). The class is graded once with ``--jobs 2`` (shared between xdist workers through a
lock) and the tests read its outputs.
"""

import copy
import csv
import html
import json
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import built_once
from nbformat.v4 import new_code_cell

from autograder.cli import main
from autograder.config import tools_on_path
from autograder.execute import hidden_lines
from autograder.release import release

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01_text_and_batches"
TIMEOUT = 20  # seconds per cell: the infinite loop costs this much
pytestmark = pytest.mark.slow


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def correct(sol, course):
    """The student version with every answer cell filled in from the solution."""
    nb = copy.deepcopy(course)
    answers = {meta(c)["grade_id"]: c.source for c in sol.cells if meta(c).get("solution")}
    for cell in nb.cells:
        if meta(cell).get("solution"):
            cell.source = answers[meta(cell)["grade_id"]]
    return nb


def first_test(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if meta(c).get("grade"))


def points_until(nb, index: int) -> float:
    """Points of the test cells before ``index``."""
    return sum(meta(c)["points"] for c in nb.cells[:index] if meta(c).get("grade"))


def insert(nb, index: int, source: str):
    nb = copy.deepcopy(nb)
    nb.cells.insert(index, new_code_cell(source))
    return nb


def probe_files(paths) -> str:
    return ("import pathlib\n"
            f"for p in {[str(p) for p in paths]!r}:\n"
            "    try:\n"
            "        pathlib.Path(p).read_bytes()\n"
            "        print('READ', p)\n"
            "    except OSError as err:\n"
            "        print('blocked', p, type(err).__name__)\n")


FORK_BOMB = """import os, time
children = []
try:
    for _ in range(1000):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
except OSError as err:
    print(f"fork refused after {len(children)} children ({type(err).__name__})")
finally:
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
"""
STUBBORN_LOOP = """import time
while True:
    try:
        time.sleep(1)
    except KeyboardInterrupt:
        pass
"""
MEMORY_BOMB = """blocks = []
try:
    while True:
        blocks.append(bytes(256 * 2 ** 20))  # calloc: address space, no RAM touched
finally:
    print(f"allocated {len(blocks) * 256} MiB before the limit")
"""


def inside_answer(answer: str, *statements: str) -> str:
    """The answer with ``statements`` run first whenever a test calls it."""
    lines = answer.split("\n")
    at = next(i for i, line in enumerate(lines) if "BEGIN SOLUTION" in line)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at + 1:at + 1] = [indent + statement for statement in statements]
    return "\n".join(lines)


def with_answer(nb, index: int, *statements: str):
    nb = copy.deepcopy(nb)
    nb.cells[index].source = inside_answer(nb.cells[index].source, *statements)
    return nb


# emits a UserWarning whenever a test calls it (stderr in a test cell zeroes it in nbgrader)
WARNS = "__import__('warnings').warn('old API', UserWarning)"
# the notebook's own cells call the answer too: these act only in calls the grader makes
GRADER_CALLS = "'autograder.inside' in __import__('sys').modules"
# the first call from a test never returns (later ones do)
LOOPS_ONCE = (f"if {GRADER_CALLS} and not globals().get('looped'):",
              "    globals()['looped'] = True", "    while True:", "        pass")
EXITS = (f"if {GRADER_CALLS}:", "    __import__('os')._exit(1)")  # the kernel dies mid-call


def network_probe(port: int) -> str:
    return ("import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'leak')\n"
            "    print('NETWORK REACHED')\n"
            "except OSError as err:\n"
            "    print('network blocked', type(err).__name__)\n")


def build_class(folder: Path, sol, course, port: int) -> dict:
    """Write the class; return {student: (status, score, notes substring or None)}."""
    good, top = correct(sol, course), sum(meta(c).get("points", 0) for c in sol.cells
                                          if meta(c).get("grade"))
    k = first_test(good)
    after_first = points_until(good, k + 1)
    last_answer = max(i for i, c in enumerate(good.cells) if meta(c).get("solution"))
    partly = copy.deepcopy(good)
    partly.cells[last_answer] = copy.deepcopy(course.cells[last_answer])
    edited = copy.deepcopy(course)
    edited.cells[k].source = '"""Check nothing."""\nassert True'
    deleted = copy.deepcopy(good)
    del deleted.cells[k]
    answer = next(i for i, c in enumerate(good.cells) if meta(c).get("solution"))
    duplicated = copy.deepcopy(good)
    duplicated.cells.insert(answer + 1, copy.deepcopy(good.cells[answer]))
    duplicated.cells[answer + 1].id = "copy-of-the-answer"
    secrets = [ROOT / "solutions" / f"{LESSON}.ipynb", folder.parent / "out2" / "gradebook.db",
               folder / "correct" / f"{LESSON}.ipynb", Path.home() / ".bashrc"]
    cases = {
        "correct": (good, "graded", top, None),
        "partly_wrong": (partly, "graded", points_until(good, last_answer), None),
        "blank": (course, "graded", 0, None),
        "edited_test": (edited, "graded", 0, "was edited"),
        "deleted_test": (deleted, "graded", top, "was deleted"),
        "duplicated": (duplicated, "graded", top, "appears 2 times"),
        "infinite_loop": (insert(good, k + 1, "while True:\n    pass"), "timeout", top, None),
        "ignores_interrupt": (insert(good, k + 1, STUBBORN_LOOP), "timeout", after_first, None),
        "memory_bomb": (insert(good, len(good.cells), MEMORY_BOMB), "graded", top,
                        "memory limit"),
        "fork_bomb": (insert(good, k + 1, FORK_BOMB), "graded", top, None),
        "reads_files": (insert(good, k + 1, probe_files(secrets)), "graded", top, None),
        "network": (insert(good, k + 1, network_probe(port)), "graded", top, None),
        "huge_output": (insert(good, k + 1, "print('x' * 10_000_000)"), "graded", top,
                        "truncated"),
        "warns": (with_answer(good, answer, WARNS), "graded", top, None),
        # the answer's first call from a test runs past the limit: that test scores zero,
        # the call is interrupted and every later test is graded
        "loops_in_call": (with_answer(good, answer, *LOOPS_ONCE), "timeout",
                          top - meta(good.cells[k])["points"], None),
        "exits_in_call": (with_answer(good, answer, *EXITS), "crashed", points_until(good, k),
                          None),
        # sys.exit() is an exception like any other (the kernel lives on): it costs nothing
        # but that cell; only the grader's own record of a dead kernel makes "crashed"
        "sys_exit": (insert(good, k + 1, "import sys\nsys.exit(3)"), "graded", top, None),
        "os_exit": (insert(good, k + 1, "import os\nos._exit(1)"), "crashed", after_first,
                    None),
        "segfault": (insert(good, k + 1, "import ctypes\nctypes.string_at(0)"), "crashed",
                     after_first, None),
    }
    expected = {}
    for student, (nb, status, score, note) in cases.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, folder / student / f"{LESSON}.ipynb")
        expected[student] = (status, score, note)
    (folder / "invalid_json").mkdir()
    (folder / "invalid_json" / f"{LESSON}.ipynb").write_text('{"cells": [')
    (folder / "empty").mkdir()
    (folder / "empty" / f"{LESSON}.ipynb").write_text("")
    (folder / "stray").mkdir()
    (folder / "stray" / "notes.txt").write_text("not a notebook")
    expected |= {"invalid_json": ("unreadable", 0, None), "empty": ("unreadable", 0, None)}
    return expected


CASES = ["correct", "partly_wrong", "blank", "edited_test", "deleted_test", "duplicated",
         "infinite_loop", "ignores_interrupt", "memory_bomb", "fork_bomb", "reads_files",
         "network", "huge_output", "warns", "loops_in_call", "exits_in_call", "sys_exit",
         "os_exit", "segfault", "invalid_json", "empty"]
SUBSET = ["correct", "partly_wrong", "os_exit"]  # graded again with --jobs 1


def grade(root: Path, folder: Path, out: Path, jobs: int) -> int:
    return main(["--root", str(root), "grade", str(folder), "--out", str(out),
                 "--jobs", str(jobs), "--timeout", str(TIMEOUT)])


class Listener:
    """A TCP server on the host's loopback: the sandboxed kernel must not reach it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port, self.connections, self.stop = self.sock.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                self.sock.accept()[0].close()
                self.connections += 1
            except OSError:
                continue

    def close(self) -> int:
        self.stop = True
        self.thread.join()
        self.sock.close()
        return self.connections


def make_repo(base: Path, lesson: str = LESSON) -> Path:
    """A repository holding only ``lesson`` (01 unless said): its solution and its generated
    student version."""
    repo = base / "repo"
    (repo / "solutions").mkdir(parents=True)
    shutil.copyfile(ROOT / "solutions" / f"{lesson}.ipynb", repo / "solutions" / f"{lesson}.ipynb")
    release(repo)
    return repo


def grade_everything(base: Path) -> dict:
    """Build the class, grade it with --jobs 2, the subset with --jobs 1, then resume a copy."""
    repo = make_repo(base)
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    course = nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4)
    listener = Listener()
    expected = build_class(base / "class", sol, course, listener.port)
    assert grade(repo, base / "class", base / "out2", jobs=2) == 0
    connections = listener.close()
    subset = base / "subset"
    for student in SUBSET:
        shutil.copytree(base / "class" / student, subset / student)
    assert grade(repo, subset, base / "out1", jobs=1) == 0
    shutil.copytree(base / "out1", base / "resumed")
    (base / "resumed" / ".work" / "jobs" / "partly_wrong" / LESSON / "result.json").unlink()
    assert grade(repo, subset, base / "resumed", jobs=2) == 0
    top = sum(meta(c).get("points", 0) for c in sol.cells if meta(c).get("grade"))
    return {"expected": expected, "connections": connections, "repo": str(repo), "top": top}


@pytest.fixture(scope="session")
def graded(tmp_path_factory, book):
    """The graded class, built once and shared by every xdist worker (under a file lock)."""
    tools_on_path()
    return built_once(tmp_path_factory, "autograder-class", grade_everything)


def read_csv(path: Path) -> dict:
    with path.open() as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("student", CASES)
def test_status_and_score(graded, student):
    """Each submission gets exactly its expected status and score, and a note when unusual."""
    status, score, note = graded["expected"][student]
    row = read_csv(graded["base"] / "out2" / "grades.csv")[student]
    assert (row["status"], float(row["score"])) == (status, score), row
    assert float(row["max_score"]) == graded["top"]
    entry = results(graded["base"] / "out2")["students"][student][LESSON]
    assert sum(c["points"] for c in entry["cells"]) == score
    if note:
        assert any(note in n for n in entry["notes"]), entry["notes"]
    if status != "graded":
        report = html.unescape((graded["base"] / "out2" / "report.html").read_text())
        assert row["reason"] and row["reason"] in report


def test_results_name_each_failing_cell(graded):
    """results.json: per graded cell, points and a message when it failed."""
    cells = results(graded["base"] / "out2")["students"]["blank"][LESSON]["cells"]
    assert [c["passed"] for c in cells] == [False] * len(cells)
    assert all(c["message"].startswith("NotImplementedError") for c in cells), cells
    crashed = results(graded["base"] / "out2")["students"]["segfault"][LESSON]["cells"]
    assert crashed[0]["passed"] and "kernel died" in crashed[-1]["message"]


def test_stray_file_is_listed_not_graded(graded):
    """A file that is not a lesson notebook appears under unmatched, with a reason."""
    unmatched = results(graded["base"] / "out2")["unmatched"]
    assert [u["file"] for u in unmatched] == ["stray/notes.txt"]
    assert "stray/notes.txt" in (graded["base"] / "out2" / "report.html").read_text()


def outputs(out: Path) -> list[Path]:
    return [*out.glob("feedback/*/*.html"), out / "results.json", out / "report.html",
            out / "grades.csv"]


def test_no_hidden_test_in_any_output(graded):
    """Hidden-test source appears in no feedback page, in results.json or the report."""
    sol = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    hidden = hidden_lines(sol)
    assert hidden, "lesson 01 has hidden tests"
    files = outputs(graded["base"] / "out2")
    assert len(files) == len(CASES) + 3
    for path in files:
        text = path.read_text()
        leaks = [line for line in hidden if line in text or html.escape(line) in text]
        assert not leaks, f"{path.name} shows hidden tests: {leaks[:2]}"


def test_blank_feedback_has_no_answer(graded):
    """The blank submission's feedback holds no line of the reference answers (beyond lines
    the student version itself shows)."""
    sol = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    repo = Path(graded["repo"])
    shown = (repo / "course" / f"{LESSON}.ipynb").read_text()
    answers = {line.strip() for c in sol.cells if meta(c).get("solution")
               for line in c.source.split("### BEGIN SOLUTION")[1]
               .split("### END SOLUTION")[0].splitlines() if len(line.strip()) > 12}
    answers = {a for a in answers if json.dumps(a)[1:-1] not in shown}
    text = (graded["base"] / "out2" / "feedback" / "blank" / f"{LESSON}.html").read_text()
    assert answers and not [a for a in answers if html.escape(a) in text or a in text]


def feedback(graded, student: str) -> str:
    return (graded["base"] / "out2" / "feedback" / student / f"{LESSON}.html").read_text()


def test_sandbox_has_no_network(graded):
    """The loopback server saw no connection; the kernel's connect failed."""
    assert graded["connections"] == 0
    assert "network blocked" in feedback(graded, "network")


def test_sandbox_hides_solutions_gradebook_and_home(graded):
    """Every probed path outside the sandbox was unreadable."""
    text = feedback(graded, "reads_files")
    assert "READ " not in text and text.count("blocked ") == 4


def test_memory_and_processes_are_limited(graded):
    """The memory bomb stopped below 4 GiB; the fork bomb was refused below 128 processes."""
    import re

    allocated = int(re.search(r"allocated (\d+) MiB", feedback(graded, "memory_bomb"))[1])
    refused = int(re.search(r"fork refused after (\d+) children", feedback(graded, "fork_bomb"))[1])
    assert 0 < allocated < 4096 and 0 < refused < 128


def test_huge_output_is_truncated(graded):
    """10 MB printed by a cell leaves a small feedback page."""
    size = (graded["base"] / "out2" / "feedback" / "huge_output" / f"{LESSON}.html").stat().st_size
    assert size < 2_000_000


def test_jobs_2_equals_jobs_1(graded):
    """Grading in parallel gives exactly the per-cell points of grading one at a time."""
    one, two = results(graded["base"] / "out1"), results(graded["base"] / "out2")
    for student in SUBSET:
        a, b = one["students"][student][LESSON], two["students"][student][LESSON]
        assert (a["status"], a["score"]) == (b["status"], b["score"])
        assert [(c["grade_id"], c["points"]) for c in a["cells"]] == \
            [(c["grade_id"], c["points"]) for c in b["cells"]]


def test_interrupted_run_resumes_without_regrading(graded):
    """With one result missing, a re-run grades only that one and gives the same grades."""
    report = (graded["base"] / "resumed" / "report.html").read_text()
    assert f"{len(SUBSET)} submissions" in report and f"{len(SUBSET) - 1} reused" in report
    assert read_csv(graded["base"] / "resumed" / "grades.csv") == \
        read_csv(graded["base"] / "out1" / "grades.csv")


def test_gradebook_holds_the_scores(graded):
    """The SQLite gradebook under OUT has every submission's score."""
    from nbgrader.api import Gradebook

    rows = read_csv(graded["base"] / "out2" / "grades.csv")
    with Gradebook(f"sqlite:///{graded['base'] / 'out2' / 'gradebook.db'}") as gb:
        for student, row in rows.items():
            assert gb.find_submission(LESSON, student).score == float(row["score"])


def test_check_command_on_lesson_01(tmp_path, book, capsys):
    """check: the solution earns full marks and the student version zero, so it exits 0."""
    tools_on_path()
    repo = make_repo(tmp_path)
    assert main(["--root", str(repo), "check", "--jobs", "2", "--timeout", str(TIMEOUT)]) == 0
    printed = capsys.readouterr().out
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    top = sum(meta(c).get("points", 0) for c in sol.cells if meta(c).get("grade"))
    assert f"solutions/{LESSON}: {top:g}/{top:g}" in printed
    assert f"course/{LESSON}: 0/{top:g}" in printed


def test_sigterm_stops_the_run_and_removes_the_running_sandboxes(tmp_path, book):
    """An instructor's kill (SIGTERM) mid-run: the process ends, no queued job starts, the
    running kernels go and nothing of theirs is left in /tmp."""
    import signal
    import subprocess
    import sys
    import time

    from autograder.sandbox import Runtime, slot_folder, slot_uid

    tools_on_path()
    repo = make_repo(tmp_path)
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    good = correct(sol, nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4))
    students = [f"s{i}" for i in range(6)]
    for student in students:
        (tmp_path / "class" / student).mkdir(parents=True)
        nbformat.write(good, tmp_path / "class" / student / f"{LESSON}.ipynb")
    out = tmp_path / "out"
    runtimes = [Runtime(out / ".work" / "jobs" / s / LESSON) for s in students]
    run = subprocess.Popen([sys.executable, "-m", "autograder", "--root", str(repo), "grade",
                            str(tmp_path / "class"), "--out", str(out), "--jobs", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # a kernel's connection file: in its runtime (classic) or its worker's fork server folder
    slots = [slot_folder("*", slot_uid(slot, grader_pid=run.pid)) for slot in range(2)]

    def kernel_files():
        return [*(f for r in runtimes for f in r.root.glob("conn/kernel.json")),
                *(f for s in slots for r in runtimes
                  for f in s.parent.glob(f"{s.name}/conn-{r.key}/kernel.json"))]

    until = time.monotonic() + 120
    while not kernel_files():
        assert time.monotonic() < until and run.poll() is None, "no kernel started"
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) != 0
    assert [r.root for r in runtimes if r.root.exists()] == []
    assert [f for s in slots for f in s.parent.glob(s.name)] == [], "a fork server's folder"
    started = [s for s in students if (out / ".work" / "jobs" / s / LESSON).exists()]
    assert len(started) <= 3, f"jobs started after the signal: {started}"


def test_without_bubblewrap_limits_apply_and_the_report_says_so(tmp_path, monkeypatch):
    """With bwrap unusable, a tiny lesson still grades (limits only) and every output says
    the submissions were not sandboxed. The class comes as a .zip in nbgrader's layout and
    the gradebook goes to the --db URL."""
    from nbgrader.api import Gradebook
    from test_release import NAME, tiny_lesson

    from autograder import sandbox

    tools_on_path()
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    repo = tmp_path / "repo"
    (repo / "solutions").mkdir(parents=True)
    nbformat.write(tiny_lesson(), repo / "solutions" / f"{NAME}.ipynb")
    archive, db = tmp_path / "class.zip", f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"submitted/alice/{NAME}/{NAME}.ipynb", nbformat.writes(tiny_lesson()))
    assert main(["--root", str(repo), "grade", str(archive), "--out", str(tmp_path / "out"),
                 "--jobs", "1", "--timeout", str(TIMEOUT), "--db", db]) == 0
    row = read_csv(tmp_path / "out" / "grades.csv")["alice"]
    assert (row["status"], row["score"]) == ("graded", "2")
    assert results(tmp_path / "out")["sandbox"].startswith("NO SANDBOX")
    assert "NO SANDBOX (bubblewrap (bwrap) is not installed)" in \
        (tmp_path / "out" / "report.html").read_text()
    assert not (tmp_path / "out" / "gradebook.db").exists()
    with Gradebook(db) as gb:
        assert gb.find_submission(NAME, "alice").score == 2
