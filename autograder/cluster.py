"""``grade --cluster tcp://HOST:8786``: grade on the workers of a running Dask cluster.

The driver (this process) plans every job as a local run does (``OUT/.work/jobs/...``), then
sends each job folder to the cluster as bytes (a gzipped tar and its SHA-256); the book goes
once to every worker (scattered, checked against its SHA-256 there). On the Dask worker that
takes it, the job is unpacked into the worker's local directory, its ``job.json`` paths are
moved there (``relocate``), and a long-lived ``python -m autograder.worker --serve`` process
grades it in its bubblewrap sandbox exactly as a local run would. What comes back (result,
feedback HTML, autograded notebook, worker.log) is written into the driver's job folder, so
the driver alone writes the gradebook, the outputs, and ``result.json`` (the resume point).

A worker that cannot sandbox (no usable bubblewrap) or whose environment differs from the
driver's (Python, nbgrader, torch..., or the autograder's and d2lmini's own source) refuses
every job with the reason; the driver sends jobs only to the workers that passed the check.
A worker that dies mid-job: Dask's scheduler reschedules the job on another worker; a job
whose second worker dies as well is reported as ``error`` (with both workers) and left for
the next run to retry.
"""

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from autograder import pool, sandbox

STARTED = "autograder-job-started"  # the event topic each attempt announces itself on
ATTEMPTS = 2  # a job runs at most this often (the first try and one retry elsewhere)
PACKAGES = ("nbgrader", "nbconvert", "nbclient", "nbformat", "ipykernel", "jupyter_client",
            "torch", "numpy", "matplotlib")
RETURNED = ("result.json", "worker.log", "course/autograded", "course/feedback")
NO_WORKER_WAIT = 120.0  # seconds a job waits for a usable worker before it is an error


# --- both sides -----------------------------------------------------------------------------

def environment() -> dict:
    """What must match on the driver and a worker for a job to get the same grade there:
    Python's and the grading packages' versions and a digest of the autograder's and
    d2lmini's source files."""
    versions = {name: importlib.metadata.version(name) for name in PACKAGES}
    d2lmini = Path(importlib.util.find_spec("d2lmini").origin).parent  # without importing torch
    code = hashlib.sha256()
    for package in (Path(sandbox.__file__).parent, d2lmini):
        for path in sorted(package.rglob("*.py")):
            code.update(path.relative_to(package.parent).as_posix().encode() + b"\0")
            code.update(path.read_bytes())
    return {"python": platform.python_version(), **versions, "source": code.hexdigest()}


def pack(folder: Path, names=None) -> bytes:
    """A gzipped tar of ``folder`` (or of its entries ``names``, those that exist)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for name in names if names is not None else sorted(os.listdir(folder)):
            if (folder / name).exists():
                tar.add(folder / name, arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Extract ``pack``'s bytes into ``folder`` (plain files and folders only)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def relocate(job_dir: Path, new_root: Path, origin: str | None = None,
             book: Path | None = None) -> dict:
    """Rewrite ``new_root/job.json`` (a copy of the job folder ``origin``, by default
    ``job_dir``) so that every path under the old folder points under ``new_root``, and
    ``book`` (when given) is the book folder; return the rewritten job."""
    old = str(origin or job_dir).rstrip("/")
    job = json.loads((new_root / "job.json").read_text())
    for key, value in job.items():
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            job[key] = str(new_root) + value[len(old):]
    if book is not None:
        job["book"] = str(book)
    (new_root / "job.json").write_text(json.dumps(job, indent=1))
    return job


# --- the Dask worker's side -----------------------------------------------------------------

class Refused(RuntimeError):
    """This Dask worker cannot grade (no sandbox, another environment): never a grade.
    ``args``: (the worker's address, why)."""

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.args[1]}"


_local = threading.local()  # per Dask worker thread: its serving worker and job slot
_slots = iter(range(10 ** 6))
_running: dict[str, pool.Worker] = {}  # job key -> the serving worker grading it
_running_lock = threading.Lock()


def worker_problem(expected: dict) -> str | None:
    """None when this machine can grade jobs like the driver's, else why it cannot."""
    problem = sandbox.bwrap_problem()
    if problem is not None:
        return (f"no sandbox on this worker ({problem}); it refuses to grade unsandboxed: "
                "install bubblewrap (apt-get install bubblewrap)")
    mine = _environment_here()
    differs = [f"{_name(key)} {str(mine.get(key))[:12]} here, {str(value)[:12]} on the driver"
               for key, value in expected.items() if mine.get(key) != value]
    if differs:
        return ("this worker's course environment differs from the driver's (install the same "
                "commit and requirements.txt on every worker): " + "; ".join(differs))
    return None


@functools.cache
def _environment_here() -> dict:
    """This worker's environment, taken once (at its first check): an edit of the source
    while it runs changes nothing here; restart workers after updating them."""
    return environment()


def _name(key: str) -> str:
    return "the autograder's and d2lmini's source (digest)" if key == "source" else key


def check_worker(expected: dict) -> dict:
    """Run on every worker by the driver: its host name and why it refuses (or None)."""
    return {"host": socket.gethostname(), "problem": worker_problem(expected)}


def _book_path(book: bytes, digest: str, base: Path) -> Path:
    """The book (checked against ``digest`` by the caller), written once under ``base``."""
    folder = base / f"book-{digest[:16]}"
    if not (folder / sandbox.BOOK_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{sandbox.BOOK_FILE}.{os.getpid()}.{threading.get_ident()}"
        partial.write_bytes(book)
        partial.replace(folder / sandbox.BOOK_FILE)
    return folder


def _serving_worker() -> pool.Worker:
    """This thread's long-lived ``autograder.worker --serve`` (a fresh one if it is gone).
    The first one on this machine's Dask worker first removes what killed workers left in
    /tmp (their jobs' folders, cgroups and homes)."""
    global _swept
    worker = getattr(_local, "worker", None)
    if worker is None or not worker.usable():
        with _running_lock:
            if not _swept:
                sandbox.sweep_stale()
                _swept = True
        worker = _local.worker = pool.Worker()
    return worker


_swept = False


def _slot() -> int:
    if not hasattr(_local, "slot"):
        _local.slot = next(_slots)
    return _local.slot


def grade_on_worker(payload: dict) -> dict:
    """The Dask task: grade one job folder sent as bytes; return what the driver needs."""
    from distributed import get_worker

    me = get_worker()
    problem = worker_problem(payload["environment"])
    if problem is None and sha256(payload["job"]) != payload["job_sha256"]:
        problem = "the job arrived damaged (SHA-256 mismatch)"
    base = Path(me.local_directory) / "autograder"
    if problem is None and sha256(payload["book"]) != payload["book_sha256"]:
        problem = "the book arrived damaged (SHA-256 mismatch)"
    if problem is not None:
        raise Refused(me.address, problem)
    me.log_event(STARTED, {"job": payload["job_id"], "worker": me.address})
    base.mkdir(parents=True, exist_ok=True)
    book = _book_path(payload["book"], payload["book_sha256"], base)
    work = Path(tempfile.mkdtemp(prefix="job-", dir=base))
    try:
        return _grade_here(payload, work, book) | {"worker": me.address,
                                                    "host": socket.gethostname()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _grade_here(payload: dict, job_dir: Path, book: Path) -> dict:
    """Unpack, relocate and grade the job in ``job_dir``; pack what comes back."""
    from autograder.config import tools_on_path

    tools_on_path()  # nbgrader runs jupyter and alembic by name
    unpack(payload["job"], job_dir)
    job = relocate(job_dir, job_dir, payload["origin"], book)
    job["limits"]["uid"] = sandbox.slot_uid(_slot()) if job["sandboxed"] else None
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    worker = _serving_worker()
    with _running_lock:
        _running[payload["job_id"]] = worker
    try:
        outcome = worker.grade(job_dir, payload["deadline"])
    finally:
        with _running_lock:
            _running.pop(payload["job_id"], None)
    runtime = getattr(sandbox, "Runtime", None)  # the job's folder under /tmp, when it has one
    if outcome != pool.DONE and runtime is not None:
        runtime(job_dir).close()  # the serving worker was killed: remove what its job left
    result = None
    if (job_dir / "result.json").is_file():
        result = _relative(json.loads((job_dir / "result.json").read_text()), job_dir)
    return {"outcome": outcome, "result": result, "files": pack(job_dir, _returned(result))}


def _returned(result: dict | None) -> list[str]:
    """The job folder's entries the driver gets back (the feedback file wherever it is)."""
    names = list(RETURNED)
    feedback = (result or {}).get("feedback")
    if feedback and not feedback.startswith("/"):
        names.append(feedback)
    return names


def _relative(result: dict, job_dir: Path) -> dict:
    """Top-level paths under ``job_dir`` made relative to it (the driver maps them back)."""
    prefix = str(job_dir) + "/"
    return {key: value[len(prefix):] if isinstance(value, str) and value.startswith(prefix)
            else value for key, value in result.items()}


def abort_jobs(job_ids) -> int:
    """Run on every worker when the driver is interrupted: kill the serving workers (and
    their kernels) grading ``job_ids``; return how many were killed."""
    with _running_lock:
        doomed = [_running[job] for job in job_ids if job in _running]
    for worker in doomed:
        worker.kill()
    return len(doomed)


# --- the driver's side ----------------------------------------------------------------------

class Cluster:
    """The driver's connection to a Dask scheduler: checks workers, submits jobs, writes back
    what they return. ``slots``: how many jobs the driver keeps in flight."""

    def __init__(self, address: str, grader, no_worker_wait: float = NO_WORKER_WAIT):
        from distributed import Client

        self.address, self.grader, self.no_worker_wait = address, grader, no_worker_wait
        try:
            self.client = Client(address, timeout="30s")
        except OSError as err:
            raise SystemExit(f"--cluster {address}: no Dask scheduler answers there ({err}); "
                             "start one with `dask scheduler` (see the README)") from err
        grader.sandboxed = True  # jobs are only ever graded in a worker's sandbox
        self.environment = environment()
        self.lock, self.check_lock = threading.Lock(), threading.Lock()
        self.attempts: dict[str, list[str]] = defaultdict(list)
        self.futures: dict[str, object] = {}
        self.hosts: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.good: set[str] = set()
        self.checked: tuple[float, set[str]] = (-1e9, set())
        self.client.subscribe_topic(STARTED, self._started)
        self.check_workers()
        if not self.good:
            self.client.close()
            raise SystemExit(self._no_worker_message())
        book = (grader.book / sandbox.BOOK_FILE).read_bytes()
        self.book_sha256 = sha256(book)
        self.book = self.client.scatter(book, broadcast=True, hash=False)

    @property
    def slots(self) -> int:
        """Jobs in flight: twice the usable workers' threads (each has its next job queued)."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(w["nthreads"] for addr, w in info.items() if addr in self.good)
        return max(2, 2 * threads)

    def check_workers(self) -> set[str]:
        """Ask every worker not yet checked whether it can grade (one thread at a time);
        return the workers connected now."""
        with self.check_lock:
            if time.monotonic() - self.checked[0] < 2:  # many threads ask: once in 2 s
                return self.checked[1]
            present = set(self.client.scheduler_info(n_workers=-1)["workers"])
            new = sorted(present - self.good - set(self.refused))
            # a task, not client.run: importing and probing must not block a worker's loop
            checks = {addr: self.client.submit(check_worker, self.environment, workers=[addr],
                                               allow_other_workers=False, pure=False,
                                               key=f"autograder-check-{uuid.uuid4().hex}")
                      for addr in new}
            for addr, check in checks.items():
                try:
                    answer = check.result(timeout=120)
                except Exception as err:  # noqa: BLE001 - a worker that cannot even answer
                    answer = {"host": None, "problem": f"its check failed: {_describe(err)}"}
                self.hosts[addr] = answer["host"]
                if answer["problem"]:
                    self.refused[addr] = answer["problem"]
                else:
                    self.good.add(addr)
            self.good &= present
            self.checked = (time.monotonic(), present)
            return present

    def _no_worker_message(self) -> str:
        reasons = "; ".join(f"{a}: {p}" for a, p in sorted(self.refused.items()))
        return (f"--cluster {self.address}: no Dask worker can grade"
                + (f" ({reasons})" if reasons else " (none is connected)"))

    def _started(self, event) -> None:
        """An attempt began (an event from the worker): count it per job."""
        _, msg = event
        with self.lock:
            self.attempts[msg["job"]].append(msg["worker"])

    def grade(self, sub, job_dir: Path, stamp: str) -> dict:
        """Grade one planned job on the cluster; the result as a local run returns it."""
        data = pack(job_dir, ["job.json", "course", "home"])
        payload = {"job": data, "job_sha256": sha256(data), "origin": str(job_dir),
                   "book": self.book, "book_sha256": self.book_sha256,
                   "deadline": self.grader.opts.deadline, "environment": self.environment}
        job_id = f"grade-{sub.student}-{sub.lesson}-{uuid.uuid4().hex[:8]}"
        reply = self._run(job_id, payload | {"job_id": job_id})
        if isinstance(reply, str):  # why no worker could grade it
            return self.grader.empty_result(sub, "error", reply, stamp)
        return self._write_back(sub, job_dir, stamp, reply, self.attempts.get(job_id, []))

    def _run(self, job_id: str, payload: dict):
        """The worker's reply, or a string saying why there is none. Dask reschedules a job
        whose worker died; one the scheduler gave up on (KilledWorker), or whose workers
        all left, is submitted again while it has attempts left."""
        from distributed import KilledWorker

        for submission in range(100):  # each round: a worker refused, died or left
            self.check_workers()
            if not self.good and not self._wait_for_worker():
                return self._no_worker_message()
            workers = sorted(self.good)
            future = self.client.submit(grade_on_worker, payload, key=f"{job_id}-{submission}",
                                        pure=False, workers=workers, allow_other_workers=False)
            with self.lock:
                self.futures[job_id] = future
            try:
                reply = self._wait(job_id, future, set(workers))
            except Refused as err:  # a worker that passed the check no longer can
                self._refuse(err)
                continue
            except KilledWorker as err:
                reply = self._died(job_id, force=True) or (
                    None if self.attempts.get(job_id) else f"the cluster failed: "
                    f"{_describe(err)}")
            except Exception as err:  # noqa: BLE001 - a grade, never a crashed run
                reply = f"the cluster failed: {_describe(err)}"
            finally:
                with self.lock:
                    self.futures.pop(job_id, None)
            if reply is not None:
                return reply
        return f"the cluster failed: {job_id} was submitted 100 times"

    def _wait(self, job_id: str, future, workers: set[str]):
        """The future's result; a string when the job's workers died too often; None when
        every worker it may run on has left (it is submitted again)."""
        while True:
            try:
                return future.result(timeout=2)
            except TimeoutError:
                died = self._died(job_id)
                if died or not workers & self.check_workers():
                    future.cancel()
                    return died

    def _wait_for_worker(self) -> bool:
        """Wait up to ``no_worker_wait`` seconds for a usable worker to join."""
        until = time.monotonic() + self.no_worker_wait
        while time.monotonic() < until:
            time.sleep(2)
            self.check_workers()
            if self.good:
                return True
        return False

    def _died(self, key: str, force: bool = False) -> str | None:
        """Why the job is given up (its workers died ATTEMPTS times), else None."""
        with self.lock:
            tried = list(self.attempts.get(key, []))
        if len(tried) > ATTEMPTS or (force and len(tried) >= ATTEMPTS):
            return (f"the Dask workers grading it died, {ATTEMPTS} times "
                    f"({', '.join(tried[:ATTEMPTS])}); re-running retries it")
        return None

    def _refuse(self, err: Refused) -> None:
        addr, why = err.args
        with self.lock:
            self.good.discard(addr)
            self.refused[addr] = why

    def _write_back(self, sub, job_dir: Path, stamp: str, reply: dict, tried: list[str]) -> dict:
        """Put the worker's files into the driver's job folder; return the result."""
        where = {"worker": reply["worker"], "host": reply["host"],
                 "retried_after": [w for w in tried if w != reply["worker"]]}
        unpack(reply["files"], job_dir)
        (job_dir / "result.json").unlink(missing_ok=True)  # written last, below, if any
        if reply["outcome"] == pool.LATE:
            return self.grader.write_result(job_dir, self.grader.empty_result(
                sub, "timeout", f"grading took longer than {self.grader.opts.deadline} s",
                stamp) | where)
        if reply["result"] is None:
            log = job_dir / "worker.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() \
                else []
            return self.grader.empty_result(
                sub, "error", "the grader failed: " + " | ".join(tail), stamp) | where
        result = {key: str(job_dir / value) if key == "feedback" and value else value
                  for key, value in reply["result"].items()} | where
        partial = job_dir / "result.json.part"
        partial.write_text(json.dumps(result, indent=1))
        partial.replace(job_dir / "result.json")
        return result

    def cancel(self) -> None:
        """An interrupted run: cancel every job in flight and kill what grades them."""
        with self.lock:
            futures = dict(self.futures)
        if futures:
            self.client.cancel(list(futures.values()))
            try:
                self.client.run(abort_jobs, list(futures), workers=sorted(self.good))
            except Exception:  # noqa: BLE001 - best effort: the workers may be gone
                pass

    def close(self) -> None:
        try:
            self.client.unsubscribe_topic(STARTED)
        finally:
            self.client.close()

    def sandbox_statement(self) -> str:
        return (f"bubblewrap sandbox on every Dask worker of {self.address} (workers without "
                "one refuse): no network, private file system view (no solutions, gradebook, "
                "other students or home), resource limits")

    def annotate(self, results_json: Path, results: list[dict]) -> None:
        """Add to results.json which worker graded what, and the workers that refused."""
        payload = json.loads(results_json.read_text())
        graded = defaultdict(int)
        for r in results:
            entry = payload["students"][r["student"]][r["lesson"]]
            entry["worker"] = r.get("worker")
            entry["host"] = r.get("host")
            if r.get("retried_after"):
                entry["retried_after"] = r["retried_after"]
            if r.get("worker"):
                graded[r["worker"]] += 1
        payload["cluster"] = {
            "scheduler": self.address,
            "workers": {addr: {"host": self.hosts.get(addr), "graded": graded.get(addr, 0)}
                        for addr in sorted(set(self.hosts) - set(self.refused) | set(graded))},
            "refused": dict(sorted(self.refused.items()))}
        results_json.write_text(json.dumps(payload, indent=1, sort_keys=True))


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}"


if __name__ == "__main__":
    print(json.dumps(environment(), indent=1), file=sys.stdout)
