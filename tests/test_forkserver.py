"""Warm kernels from the slot's fork server (autograder/forkserver.py, autograder/prefork.py).

One worker (``--jobs 1``) grades three submissions of lesson 02 one after another, so their
kernels are forked from the same server in the same sandbox: ``a_leaver`` leaves what it
can behind (files in /tmp, /dev/shm and the home, a System V shared memory segment, a
detached process) and attacks the server (signals, its environment, a control socket);
``b_finder``, the next kernel on the slot, looks for all of it and reports what it found;
``c_honest`` (the solution) must still get full marks. The same class graded with classic
kernels (``AUTOGRADER_FORKSERVER=0``) gets the same grades.
"""

import copy
import json
import os
from pathlib import Path

import nbformat
import pytest
from conftest import built_once
from nbformat.v4 import new_code_cell
from test_autograder import correct, make_repo

from autograder.cli import main
from autograder.config import tools_on_path

LESSON = "02_rnn_from_scratch"
KEY = 0x5EED
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.getuid() != 0, reason="the fork server needs a root grader")]

# what both attack cells share: find the fork server, try it, print one JSON line
PROBE = r"""
import ctypes, errno, json, os, random, signal, socket, subprocess
import numpy
def server_pids():
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():  # a forked kernel's command line is the server's
            continue
        try:
            if b"autograder.forkserver" in open(f"/proc/{pid}/cmdline", "rb").read():
                pids.append(int(pid))
        except OSError:
            pass
    return pids
def attempt(action):
    try:
        action()
        return "done"
    except OSError as err:
        return type(err).__name__
def control_sockets():
    found = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_SEQPACKET:
            found.append(fd)
        s.detach()
    return found
libc = ctypes.CDLL(None, use_errno=True)
servers = server_pids()
seen = {
    "servers": servers,
    "kill": [attempt(lambda: os.kill(p, signal.SIGKILL)) for p in servers],
    "environ": [attempt(lambda: open(f"/proc/{p}/environ").read()) for p in servers],
    "control_sockets": control_sockets(),
    "random": [random.random(), numpy.random.random()],
    "uid": os.getuid(),
}
"""
LEAVE = PROBE + r"""
home = os.path.expanduser("~")
seen["wrote"] = []
for folder in ("/tmp", "/dev/shm", home):
    try:
        open(os.path.join(folder, "planted"), "w").write("from a_leaver")
        seen["wrote"].append(folder)
    except OSError:
        pass
seen["shm"] = libc.shmget(0x5EED, 4096, 0o1666)
subprocess.Popen(["sleep", "300"], start_new_session=True)
print("LEFT " + json.dumps(seen))
"""
FIND = PROBE + r"""
home = os.path.expanduser("~")
seen["planted"] = [f for f in ("/tmp", "/dev/shm", home)
                   if os.path.exists(os.path.join(f, "planted"))]
seen["shm"] = libc.shmget(0x5EED, 0, 0)
seen["sleepers"] = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"sleep\x00300"):
            seen["sleepers"].append(pid)
    except OSError:
        pass
print("FOUND " + json.dumps(seen))
"""


def make_class(base: Path) -> Path:
    repo = make_repo(base, LESSON)
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    solved = correct(sol, nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4))
    students = {"a_leaver": (solved, LEAVE), "b_finder": (solved, FIND), "c_honest": (solved, None)}
    for student, (nb, extra) in students.items():
        nb = copy.deepcopy(nb)
        if extra:
            nb.cells.insert(1, new_code_cell(extra))
        (base / "class" / student).mkdir(parents=True)
        nbformat.write(nb, base / "class" / student / f"{LESSON}.ipynb")
    return repo


def grade_class(base: Path) -> dict:
    repo = make_class(base)
    outcome = {}
    for mode, switch in (("warm", "1"), ("classic", "0")):
        os.environ["AUTOGRADER_FORKSERVER"] = switch
        try:
            outcome[mode] = main(["--root", str(repo), "grade", str(base / "class"), "--out",
                                  str(base / mode), "--jobs", "1", "--timeout", "60"])
        finally:
            os.environ.pop("AUTOGRADER_FORKSERVER")
    return outcome


@pytest.fixture(scope="module")
def graded(tmp_path_factory, book):
    tools_on_path()
    info = built_once(tmp_path_factory, "forkserver-class", grade_class)
    assert info["warm"] == 0 and info["classic"] == 0, info
    return info["base"]


def results(base: Path, mode: str) -> dict:
    return json.loads((base / mode / "results.json").read_text())["students"]


def printed(base: Path, mode: str, student: str, prefix: str) -> dict:
    """The JSON line the attack cell printed (read from the autograded notebook)."""
    path = (base / mode / ".work" / "jobs" / student / LESSON / "course" / "autograded" /
            student / LESSON / f"{LESSON}.ipynb")
    nb = nbformat.read(path, as_version=4)
    for output in nb.cells[1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
    raise AssertionError(f"{student} printed no {prefix!r} line: {nb.cells[1].get('outputs')}")


def test_kernels_come_from_the_fork_server(graded):
    """The warm run really forked its kernels (else this file would test the classic path);
    the classic run did not."""
    for mode, expected in (("warm", "fork server"), ("classic", "classic")):
        kinds = {s: r[LESSON]["resources"]["kernel"] for s, r in results(graded, mode).items()}
        assert set(kinds.values()) == {expected}, (mode, kinds)


def test_nothing_of_an_earlier_kernel_survives(graded):
    """Files in /tmp, /dev/shm and the home, a SysV segment, a detached process: the next
    kernel on the same slot finds none of them."""
    left = printed(graded, "warm", "a_leaver", "LEFT ")
    assert left["shm"] >= 0, "the leaver made a SysV segment (finding none means something)"
    assert left["wrote"] == [str(Path("/home/student"))], "as in a classic kernel: home only"
    found = printed(graded, "warm", "b_finder", "FOUND ")
    assert found["planted"] == []
    assert found["shm"] == -1
    assert found["sleepers"] == []
    assert found["servers"] == left["servers"], "both kernels came from the same server"


def test_the_server_is_out_of_the_kernels_reach(graded):
    """A kernel sees the server's process but cannot signal it or read its environment, and
    holds no socket to it; it runs as the slot's unprivileged uid."""
    for student, prefix in (("a_leaver", "LEFT "), ("b_finder", "FOUND ")):
        seen = printed(graded, "warm", student, prefix)
        assert len(seen["servers"]) >= 1, seen
        assert set(seen["kill"]) == {"PermissionError"}, seen
        assert set(seen["environ"]) == {"PermissionError"}, seen
        assert seen["control_sockets"] == [], seen
        assert seen["uid"] >= 200_000, seen


def test_each_kernel_has_its_own_random_state(graded):
    """A fork copies the server's memory, generators included: Python's ``random`` and
    NumPy's global generator must still differ from kernel to kernel."""
    a = printed(graded, "warm", "a_leaver", "LEFT ")["random"]
    b = printed(graded, "warm", "b_finder", "FOUND ")["random"]
    assert a[0] != b[0], "Python's random"
    assert a[1] != b[1], "NumPy's global generator"


def test_same_grades_as_classic_kernels(graded):
    """Cell by cell, warm kernels grade exactly as classic ones; the solution gets full
    marks after the attacks."""
    warm, classic = results(graded, "warm"), results(graded, "classic")
    for student in warm:
        cells = {(c["grade_id"], c["points"]) for c in warm[student][LESSON]["cells"]}
        assert cells == {(c["grade_id"], c["points"]) for c in classic[student][LESSON]["cells"]}
        assert warm[student][LESSON]["status"] == "graded"
    honest = warm["c_honest"][LESSON]
    assert honest["score"] == honest["max_score"] > 0


def test_no_server_or_process_is_left(graded):
    """After the run: no process of the slot's uid (the leaver's detached one included), no
    fork server sandbox of the slot, no slot folder."""
    uid = printed(graded, "warm", "a_leaver", "LEFT ")["uid"]
    slot = b"ag-slot-", f"-{uid}".encode()
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        if str(uid) in uids or all(part in cmdline for part in slot):
            left.append((pid, cmdline[:80]))
    assert left == []
    assert not list(Path("/tmp").glob(f"ag-slot-*-{uid}"))


def test_a_server_that_cannot_start_says_why_and_leaves_nothing(tmp_path):
    """No book where the sandbox binds it: bwrap fails, the worker is told (and grades with
    a classic kernel); no process or folder is left."""
    from autograder import prefork, sandbox

    (tmp_path / "seed").mkdir()
    with pytest.raises(prefork.ForkServerError, match="ended|did not"):
        prefork.ForkServer(tmp_path / "no-book", tmp_path / "seed", 299_999)
    assert not sandbox.slot_folder(os.getpid(), 299_999).exists()


def test_a_dead_server_fails_the_launch_at_once(tmp_path, book):
    """A server that died between jobs: the next fork is refused at once (the provisioner
    then starts a classic kernel), not after a timeout."""
    import time

    from autograder import prefork
    from d2lmini.data import time_machine_path

    (tmp_path / "seed").mkdir()
    server = prefork.ForkServer(time_machine_path().parent, tmp_path / "seed", 299_998)
    try:
        assert server.alive()
        server.proc.kill()
        server.proc.wait()
        started = time.monotonic()
        with pytest.raises(prefork.ForkServerError):
            server.fork({"env": {}}, 2, [])
        assert time.monotonic() - started < 5
    finally:
        server.close()
    assert not server.root.exists()
