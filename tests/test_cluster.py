"""``grade --cluster``: a real Dask scheduler and workers, each its own process on loopback.

The class is tiny (lesson 01's solution and its blank student version: the machine is slow).
It is graded once locally (``--jobs 2``) and once through a scheduler with two workers and a
third that has no bubblewrap (it must refuse every job); then again while one worker is
killed in the middle of its job (the job must be retried on the other one). The workers get
no ``D2LMINI_DATA``: the book reaches them through the cluster.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import built_once
from test_autograder import LESSON, TIMEOUT, correct, make_repo

from autograder import cluster
from autograder.cli import main
from autograder.config import tools_on_path

ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")
pytestmark = pytest.mark.slow


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes (no nanny) on 127.0.0.1."""

    def __init__(self, folder: Path):
        self.folder, self.workers = folder, {}
        folder.mkdir(parents=True, exist_ok=True)
        info = folder / "scheduler.json"
        self.scheduler = self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1",
                                                   "--port", "0", "--no-dashboard",
                                                   "--scheduler-file", str(info)])
        self.address = self._wait(lambda: info.is_file() and json.loads(info.read_text()),
                                  "the scheduler")["address"]

    def _start(self, name: str, argv: list[str], env=None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env or os.environ, start_new_session=True)

    @staticmethod
    def _wait(probe, what: str, seconds: float = 120):
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                found = probe()
            except (OSError, ValueError):
                found = None
            if found:
                return found
            time.sleep(0.2)
        raise TimeoutError(f"{what} did not start in {seconds} s")

    def add_worker(self, name: str, env=None) -> None:
        """Start a one-thread worker called ``name`` and wait until the scheduler has it."""
        self.workers[name] = self._start(name, [
            DASK, "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
            "--no-dashboard", "--host", "127.0.0.1",
            "--local-directory", str(self.folder / name)], env)
        self._wait(lambda: name in self.addresses(), f"worker {name}")

    def addresses(self) -> dict[str, str]:
        """{worker name: address} of the connected workers."""
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            return {w["name"]: addr for addr, w in client.scheduler_info()["workers"].items()}

    def busy(self) -> str | None:
        """The name of a worker that has a job folder unpacked (a job in progress)."""
        for name in self.workers:
            if list((self.folder / name).glob("**/autograder/job-*/job.json")):
                return name
        return None

    def kill(self, name: str) -> None:
        """SIGKILL the worker's process group (its serving worker dies by PDEATHSIG)."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def worker_env(with_bwrap: bool = True) -> dict:
    """A worker's environment: no D2LMINI_DATA (the book comes from the driver); without
    bwrap on PATH for the worker that must refuse."""
    env = {k: v for k, v in os.environ.items() if k != "D2LMINI_DATA"}
    if not with_bwrap:
        env["PATH"] = str(Path(sys.executable).parent)
    return env


def grade_args(repo: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    return ["--root", str(repo), "grade", str(folder), "--out", str(out), "--timeout",
            str(TIMEOUT), *extra]


def start_grading(repo: Path, folder: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autograder",
                             *grade_args(repo, folder, out, "--cluster", address)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(run: subprocess.Popen) -> str:
    out, _ = run.communicate(timeout=1200)
    assert run.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="session")
def graded(tmp_path_factory, book):
    """The class graded once (shared by the xdist workers under a file lock)."""
    tools_on_path()
    return built_once(tmp_path_factory, "cluster-class", grade_everything)


def grade_everything(base: Path) -> dict:
    """The class graded locally, through the cluster, and through it with a worker killed."""
    repo = make_repo(base)
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    course = nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4)
    for student, nb in {"correct": correct(sol, course), "blank": course}.items():
        (base / "class" / student).mkdir(parents=True)
        nbformat.write(nb, base / "class" / student / f"{LESSON}.ipynb")
    assert main(grade_args(repo, base / "class", base / "local", "--jobs", "2")) == 0
    dask = DaskCluster(base / "dask")
    try:
        dask.add_worker("a", worker_env())
        dask.add_worker("b", worker_env())
        dask.add_worker("nobwrap", worker_env(with_bwrap=False))
        finish(start_grading(repo, base / "class", base / "remote", dask.address))
        names = {addr: name for name, addr in dask.addresses().items()}
        run = start_grading(repo, base / "class", base / "killed", dask.address)
        victim = dask._wait(dask.busy, "a job on a worker", seconds=600)
        time.sleep(2)  # well inside the job: unpacked, its kernel starting or running
        dask.kill(victim)
        finish(run)
        rerun = finish(start_grading(repo, base / "class", base / "remote", dask.address))
    finally:
        dask.close()
    return {"names": names, "victim": victim, "rerun": rerun}


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def cells(out: Path) -> dict:
    """{student: (status, score, [(grade_id, points)])}."""
    return {student: (e[LESSON]["status"], e[LESSON]["score"],
                      [(c["grade_id"], c["points"]) for c in e[LESSON]["cells"]])
            for student, e in results(out)["students"].items()}


def test_cluster_gives_the_local_grades(graded):
    """Every cell's points, each status and score: the same through the cluster."""
    local = cells(graded["base"] / "local")
    top = results(graded["base"] / "local")["students"]["correct"][LESSON]["max_score"]
    assert top > 0 and local["correct"][:2] == ("graded", top)
    assert local["blank"][:2] == ("graded", 0)
    assert cells(graded["base"] / "remote") == local


def test_results_say_which_worker_graded_what(graded):
    """results.json names each job's worker; the worker without bubblewrap refused and
    graded nothing; the two others graded the class between them."""
    payload = results(graded["base"] / "remote")
    names = {graded["names"][e[LESSON]["worker"]] for e in payload["students"].values()}
    assert names <= {"a", "b"}
    refused = {graded["names"][addr]: why for addr, why in payload["cluster"]["refused"].items()}
    assert list(refused) == ["nobwrap"] and "bubblewrap" in refused["nobwrap"]
    graded_by = {graded["names"][a]: w["graded"] for a, w in payload["cluster"]["workers"].items()}
    assert sum(graded_by.values()) == 2 and "nobwrap" not in graded_by


def test_outputs_come_back_to_the_driver(graded):
    """Feedback pages, autograded notebooks and the gradebook are on the driver's side."""
    from nbgrader.api import Gradebook

    out = graded["base"] / "remote"
    for student, (_, score, _) in cells(graded["base"] / "local").items():
        assert f"{LESSON}" in (out / "feedback" / student / f"{LESSON}.html").read_text()
        job = out / ".work" / "jobs" / student / LESSON
        assert (job / "course" / "autograded" / student / LESSON / f"{LESSON}.ipynb").is_file()
        with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
            assert gb.find_submission(LESSON, student).score == score


def test_a_killed_worker_s_job_is_retried_elsewhere(graded):
    """One worker was killed mid-job: the run finished with the local grades, and the
    killed worker's job was graded by the other worker, which results.json records."""
    out = graded["base"] / "killed"
    assert cells(out) == cells(graded["base"] / "local")
    entries = results(out)["students"]
    retried = [e[LESSON] for e in entries.values() if e[LESSON].get("retried_after")]
    assert len(retried) == 1, entries
    assert [graded["names"][a] for a in retried[0]["retried_after"]] == [graded["victim"]]
    assert graded["names"][retried[0]["worker"]] != graded["victim"]


def test_a_rerun_through_the_cluster_reuses_every_result(graded):
    """Resume as a local run does: nothing is graded again."""
    assert "2 reused" in graded["rerun"], graded["rerun"][-2000:]
    assert cells(graded["base"] / "remote") == cells(graded["base"] / "local")


def test_no_usable_worker_is_a_clear_error(tmp_path, book):
    """A cluster whose only worker lacks bubblewrap: the run stops before grading, saying
    why, instead of grading unsandboxed."""
    tools_on_path()
    dask = DaskCluster(tmp_path / "dask")
    try:
        dask.add_worker("nobwrap", worker_env(with_bwrap=False))
        repo = make_repo(tmp_path)
        folder = tmp_path / "class" / "alice"
        folder.mkdir(parents=True)
        (folder / f"{LESSON}.ipynb").write_text((repo / "course" / f"{LESSON}.ipynb").read_text())
        with pytest.raises(SystemExit, match="no Dask worker can grade.*bubblewrap"):
            main(grade_args(repo, tmp_path / "class", tmp_path / "out", "--cluster",
                            dask.address))
    finally:
        dask.close()


# --- the parts, without a cluster -----------------------------------------------------------

def test_relocate_moves_the_job_folder(tmp_path):
    """Paths under the old job folder move under the new one; others stay; the book moves."""
    job = {"course": "/out/.work/jobs/al/01/course", "home": "/out/.work/jobs/al/01/home",
           "book": "/data", "student": "al", "limits": {"uid": None}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    moved = cluster.relocate(tmp_path, tmp_path, "/out/.work/jobs/al/01", Path("/cache/book"))
    assert moved == job | {"course": f"{tmp_path}/course", "home": f"{tmp_path}/home",
                           "book": "/cache/book"}
    assert json.loads((tmp_path / "job.json").read_text()) == moved


def test_pack_and_unpack_keep_the_files(tmp_path):
    (tmp_path / "a" / "course" / "x").mkdir(parents=True)
    (tmp_path / "a" / "course" / "x" / "n.ipynb").write_bytes(b"{}")
    (tmp_path / "a" / "job.json").write_text("{}")
    data = cluster.pack(tmp_path / "a", ["job.json", "course", "missing"])
    cluster.unpack(data, tmp_path / "b")
    assert (tmp_path / "b" / "course" / "x" / "n.ipynb").read_bytes() == b"{}"
    assert sorted(os.listdir(tmp_path / "b")) == ["course", "job.json"]


def test_a_different_environment_is_refused(monkeypatch):
    """A worker whose source or versions differ from the driver's says which; one without
    bubblewrap says that."""
    monkeypatch.setattr(cluster.sandbox, "bwrap_problem", lambda: None)
    mine = cluster.environment()
    assert cluster.worker_problem(mine) is None
    problem = cluster.worker_problem(mine | {"source": "0" * 64, "torch": "0.0"})
    assert "differs" in problem and "source (digest)" in problem
    assert "here, 0.0 on the driver" in problem
    monkeypatch.setattr(cluster.sandbox, "bwrap_problem", lambda: "bwrap is not installed")
    assert "refuses to grade unsandboxed" in cluster.worker_problem(mine)


def test_a_job_is_given_up_after_its_second_worker_dies():
    """Two attempts (the job and one retry); a third start means two workers died on it."""
    fake = cluster.Cluster.__new__(cluster.Cluster)
    fake.lock, fake.attempts = __import__("threading").Lock(), {"j": ["tcp://w1"]}
    assert fake._died("j") is None
    fake.attempts["j"].append("tcp://w2")
    assert fake._died("j") is None, "the retry is running"
    assert "died" in fake._died("j", force=True), "the scheduler gave up on the retry"
    fake.attempts["j"].append("tcp://w3")
    assert "tcp://w1, tcp://w2" in fake._died("j")
