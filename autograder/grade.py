"""``python -m autograder grade SUBMISSIONS --out OUT``: grade a class.

The parent process finds the submissions, prepares one private nbgrader course per
submission (a job), runs the jobs in worker processes (``--jobs`` at a time, each kernel in
its own sandbox), then merges every result into the gradebook and writes the outputs.
A job whose ``result.json`` matches the submission's fingerprint is not graded again, so a
re-run is idempotent and an interrupted run resumes where it stopped.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
import nbgrader
from nbgrader.api import Gradebook

from autograder import course_dir, pool, prefork, release, report, sandbox
from autograder.config import CONFIG_FILE, SOLUTIONS, lessons
from autograder.gradebook import max_points, merge_all, sync_lessons
from autograder.i18n import language_of
from autograder.notes import (
    drop_duplicates,
    graded_order,
    restore_locked_cells,
    strip_invalid_metadata,
    submission_notes,
)
from autograder.release import generate_assignments
from autograder.submissions import Submission, annotate, collect, extract_zip

VERSION = "4"  # bump when grading changes so old results are not reused
WARM_HOME = "home"  # in the template: what every sandbox home starts with
MPLCONFIG = ".matplotlib"  # MPLCONFIGDIR under the home (sandbox.kernel_env)


@dataclass
class Options:
    """What the grade command was asked to do."""

    submissions: Path
    out: Path
    root: Path
    jobs: int = os.cpu_count() or 1
    timeout: int = 120
    db_url: str | None = None
    cluster: str | None = None  # a Dask scheduler's address: grade on its workers
    roster: Path | None = None  # lms_id,student_id,name,email CSV (autograder.lms)
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)

    @property
    def work(self) -> Path:
        return self.out / ".work"

    @property
    def deadline(self) -> int:
        """Wall-clock seconds one submission may take in all (kernel start, every cell)."""
        return max(600, 10 * self.timeout)


def digest(*parts) -> str:
    """A SHA-256 over bytes and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()


def unpack(opts: Options) -> tuple[Path, list[dict]]:
    """The folder holding the submissions (a .zip is extracted under OUT/.work)."""
    if opts.submissions.is_dir():
        return opts.submissions, []
    if opts.submissions.suffix.lower() != ".zip" or not opts.submissions.is_file():
        raise SystemExit(f"{opts.submissions}: expected a folder or a .zip file")
    dest = opts.work / "input"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    skipped = extract_zip(opts.submissions, dest)
    return dest, [{"file": line.split(":")[0], "reason": line.split(": ", 1)[1]}
                  for line in skipped]


def prepare_template(opts: Options) -> Path:
    """A course folder with every lesson generated (source, release, gradebook) and a warm
    matplotlib cache; cached across runs (keyed by the solutions, config and VERSION)."""
    solutions = opts.root / SOLUTIONS
    generator = Path(release.__file__).read_bytes()  # a changed generator: a new template
    stamp = digest(VERSION, CONFIG_FILE.read_bytes(), generator, nbgrader.__version__,
                   *[p.read_bytes() for p in sorted(solutions.glob("*.ipynb"))])
    template = template_cache() / f"template-{stamp[:24]}"
    if (template / "fingerprint").is_file() and (template / "fingerprint").read_text() == stamp:
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=template.parent))
    try:
        generate_assignments(solutions, building)
        warm_matplotlib(building / WARM_HOME)
        (building / "fingerprint").write_text(stamp)
        if not (template / "fingerprint").is_file():
            shutil.rmtree(template, ignore_errors=True)  # a half-built one: never used
        building.rename(template)  # atomic; a concurrent run may have won: use its copy
    except OSError:
        if not (template / "fingerprint").is_file():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return template


def template_cache() -> Path:
    """Where generated templates are kept (``$AUTOGRADER_CACHE``, else the user's cache)."""
    base = os.environ.get("AUTOGRADER_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "autograder"


def warm_matplotlib(home: Path) -> None:
    """Build matplotlib's font list once (seconds of CPU), so every kernel's fresh home
    starts with it instead of rebuilding it; ``home`` is copied into each sandbox home."""
    config = home / MPLCONFIG
    config.mkdir(parents=True)
    env = os.environ | {"HOME": str(home), "MPLCONFIGDIR": str(config), "MPLBACKEND": "Agg"}
    code = ("import io, matplotlib.pyplot as plt; fig = plt.figure(); plt.plot([0, 1]); "
            "plt.title('warm'); fig.savefig(io.BytesIO(), format='png')")
    subprocess.run([sys.executable, "-c", code], env=env, check=False,  # cold is still fine
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_submission(path: Path):
    """(notebook, None) or (None, why it cannot be read)."""
    try:
        with warnings.catch_warnings():  # duplicate or missing cell ids: nbformat fixes them
            warnings.simplefilter("ignore")
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            nbformat.validate(nb)
    except Exception as err:  # JSON, encoding and schema errors all mean "unreadable"
        return None, f"not a readable notebook ({type(err).__name__}: {str(err)[:200]})"
    return nb, None


class Grader:
    """One grading run: plan the jobs, run them in parallel, collect the results."""

    def __init__(self, opts: Options, template: Path, spares: list[pool.Worker] = ()):
        """``spares``: workers started ahead of time (they import nbgrader while the driver
        prepares); each job thread takes one before it starts a worker of its own."""
        self.opts, self.template = opts, template
        self.sandboxed = sandbox.bwrap_problem() is None
        self.book = Path(_book_folder())
        self.spares = list(spares)
        self.running: set[pool.Worker] = set(self.spares)
        self.in_flight: set[Path] = set()  # job folders a local worker is grading now
        self.local = threading.local()
        self.lock = threading.Lock()
        self.reused = 0
        self.cluster = None  # an autograder.cluster.Cluster with --cluster

    def job_dir(self, sub: Submission) -> Path:
        return self.opts.work / "jobs" / sub.student / sub.lesson

    def fingerprint(self, sub: Submission) -> str:
        limits = asdict(self.opts.limits) | {"uid": None}
        source = (self.template / "source" / sub.lesson / f"{sub.lesson}.ipynb").read_bytes()
        return digest(VERSION, sub.path.read_bytes(), source, self.opts.timeout, limits,
                      self.sandboxed, CONFIG_FILE.read_bytes())

    def plan(self, sub: Submission) -> dict | Path:
        """A finished result (reused, or unreadable), or the folder of a job to run."""
        job_dir, stamp = self.job_dir(sub), self.fingerprint(sub)
        done = job_dir / "result.json"
        if done.is_file():
            result = json.loads(done.read_text())
            if result.get("fingerprint") == stamp:
                with self.lock:
                    self.reused += 1
                return result
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        nb, problem = read_submission(sub.path)
        if nb is None:
            return self.write_result(job_dir, self.empty_result(sub, "unreadable", problem,
                                                                stamp))
        self.make_course(sub, job_dir, nb, stamp)
        return job_dir

    def make_course(self, sub: Submission, job_dir: Path, nb, stamp: str) -> None:
        """The job's private nbgrader course: source, gradebook copy, the submission."""
        course, lesson = job_dir / "course", sub.lesson
        (course / "source" / lesson).mkdir(parents=True)
        shutil.copyfile(self.template / "source" / lesson / f"{lesson}.ipynb",
                        course / "source" / lesson / f"{lesson}.ipynb")
        shutil.copyfile(self.template / "gradebook.db", course / "gradebook.db")
        release = nbformat.read(self.template / "release" / lesson / f"{lesson}.ipynb", 4)
        # helper cells first, so a deleted one is reported as restored, not as a lost answer
        notes = (strip_invalid_metadata(nb) + restore_locked_cells(nb, release)
                 + submission_notes(nb, release))
        drop_duplicates(nb)
        submitted = course / "submitted" / sub.student / lesson
        submitted.mkdir(parents=True)
        nbformat.write(nb, submitted / f"{lesson}.ipynb")
        shutil.copytree(self.template / WARM_HOME, job_dir / "home")
        job = {"student": sub.student, "lesson": lesson, "course": str(course),
               "home": str(job_dir / "home"), "book": str(self.book),
               "timeout": self.opts.timeout, "limits": asdict(self.opts.limits),
               "sandboxed": self.sandboxed, "notes": notes, "fingerprint": stamp}
        (job_dir / "job.json").write_text(json.dumps(job, indent=1))

    def empty_result(self, sub: Submission, status: str, reason: str, stamp: str) -> dict:
        """A result with zero points on every graded cell."""
        source = nbformat.read(self.template / "source" / sub.lesson / f"{sub.lesson}.ipynb", 4)
        with Gradebook(f"sqlite:///{self.template / 'gradebook.db'}") as gb:
            cells = max_points(gb, sub.lesson, graded_order(source))
        for row in cells:
            row["message"] = reason
        try:  # the not-graded page speaks the submission's language when it can be read
            lang = language_of(sub.path)
        except Exception:  # noqa: BLE001 (unreadable: its page stays English)
            lang = "en"
        return {"student": sub.student, "lesson": sub.lesson, "status": status, "lang": lang,
                "reason": reason, "notes": [], "cells": cells, "score": 0.0,
                "max_score": sum(r["max_points"] for r in cells), "feedback": None,
                "seconds": 0.0, "fingerprint": stamp}

    @staticmethod
    def write_result(job_dir: Path, result: dict) -> dict:
        (job_dir / "result.json").write_text(json.dumps(result, indent=1))
        return result

    def grade_one(self, sub: Submission, slots) -> dict:
        """Plan the submission and, unless its result is reused or it is unreadable, grade
        it (planning in the job threads lets the first jobs start at once)."""
        plan = self.plan(sub)
        return plan if isinstance(plan, dict) else self.run(sub, plan, slots)

    def run(self, sub: Submission, job_dir: Path, slots) -> dict:
        """Grade one job in a worker process, in a free slot (its own kernel uid)."""
        slot = slots.pop()
        try:
            job = json.loads((job_dir / "job.json").read_text())
            # without bwrap the kernel must read the interpreter where it lies (maybe in a
            # private home), so it keeps the grader's uid
            job["limits"]["uid"] = sandbox.slot_uid(slot) if self.sandboxed else None
            (job_dir / "job.json").write_text(json.dumps(job, indent=1))
            return self.run_worker(sub, job_dir, job["fingerprint"])
        finally:
            slots.append(slot)

    def run_worker(self, sub: Submission, job_dir: Path, stamp: str) -> dict:
        """Grade the job in this thread's long-lived worker (a fresh one if it is gone), or
        on a Dask worker with ``--cluster``."""
        if self.cluster is not None:
            return self.cluster.grade(sub, job_dir, stamp)
        with self.lock:
            self.in_flight.add(job_dir)
        try:
            outcome = self.worker().grade(job_dir, self.opts.deadline)
        finally:
            with self.lock:
                self.in_flight.discard(job_dir)
        if outcome != pool.DONE:  # the worker was killed: remove what its job left in /tmp
            sandbox.Runtime(job_dir).close()
        if outcome == pool.LATE:
            return self.write_result(job_dir, self.empty_result(
                sub, "timeout", f"grading took longer than {self.opts.deadline} s", stamp))
        if (job_dir / "result.json").is_file():
            return json.loads((job_dir / "result.json").read_text())
        log = job_dir / "worker.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        tail = text.strip().splitlines()[-3:]
        return self.empty_result(sub, "error", "the grader failed: " + " | ".join(tail), stamp)

    def worker(self) -> pool.Worker:
        """This thread's worker: a spare, or a new one (a worker dies with the thread that
        started it: PDEATHSIG)."""
        worker = getattr(self.local, "worker", None)
        if worker is None or not worker.usable():
            with self.lock:
                worker = self.spares.pop() if self.spares else None
            if worker is None or not worker.usable():
                worker = pool.Worker()
            self.local.worker = worker
            with self.lock:
                self.running.add(worker)
        return worker

    def close_workers(self) -> None:
        """End every worker once no job is left."""
        if self.cluster is not None:
            self.cluster.close()
        with self.lock:
            workers, self.running = list(self.running), set()
        for worker in workers:
            worker.close()

    def stop(self) -> None:
        """Kill every running worker (and with it, its kernel): an interrupted run."""
        if self.cluster is not None:
            self.cluster.cancel()
        with self.lock:
            for worker in self.running:
                worker.kill()
            for job_dir in self.in_flight:  # what the killed jobs left in /tmp
                sandbox.Runtime(job_dir).close()


def _book_folder() -> str:
    """The folder holding timemachine.txt (bound read-only into every sandbox)."""
    import d2lmini

    return str(d2lmini.time_machine_path().parent)


def run_all(grader: Grader, subs: list[Submission], jobs: int) -> list[dict]:
    """Plan and grade every submission, `jobs` at a time, with a progress bar."""
    from tqdm import tqdm

    results = {}
    slots = list(range(jobs))
    bar = tqdm(total=len(subs), desc="grading", unit="submission", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        futures = {executor.submit(grader.grade_one, sub, slots): sub for sub in subs}
        try:
            for future in as_completed(futures):
                sub = futures[future]
                results[(sub.student, sub.lesson)] = future.result()
                bar.update()
        except BaseException:  # Ctrl-C (or SIGTERM): no job starts after this one
            executor.shutdown(wait=False, cancel_futures=True)
            grader.stop()
            raise
        finally:
            grader.close_workers()
    bar.close()
    return [results[(s.student, s.lesson)] for s in subs]


def grade(opts: Options) -> dict:
    """Grade every submission; write grades.csv, results.json, feedback/, report.html."""
    started = time.monotonic()
    sandbox.sweep_stale()  # what a killed earlier run left in /tmp
    # the workers import nbgrader (seconds) while the submissions and template are prepared
    spares = [] if opts.cluster else [pool.Worker() for _ in range(max(1, opts.jobs))]
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        folder, unmatched_zip = unpack(opts)
        names = lessons(opts.root / SOLUTIONS)
        subs, unmatched = collect(folder, names, opts.roster)
        template = prepare_template(opts)
    except BaseException:
        for worker in spares:
            worker.kill()
        raise
    grader = Grader(opts, template, spares)
    jobs = max(1, opts.jobs)
    if opts.cluster:  # checks every Dask worker, ships the book; jobs: the cluster's slots
        from autograder import cluster

        grader.cluster = cluster.Cluster(opts.cluster, grader)
        jobs = grader.cluster.slots
    db_url = opts.db_url or f"sqlite:///{(opts.out / 'gradebook.db').resolve()}"
    with ThreadPoolExecutor(max_workers=1) as side:  # seconds (alembic); needed only to merge
        synced = side.submit(sync_lessons, f"sqlite:///{template / 'gradebook.db'}", db_url,
                             sorted({s.lesson for s in subs}))
        results = run_all(grader, subs, jobs)
        synced.result()
    merged = merge_all(db_url, results)
    context = {"unmatched": unmatched_zip + unmatched, "sandbox": sandbox_statement(grader),
               "limits": asdict(opts.limits) | {"uid": None, "cell_timeout": opts.timeout},
               "seconds": round(time.monotonic() - started, 1), "reused": grader.reused,
               "jobs": jobs, "gradebook": db_url, "merge_seconds": round(merged, 3)}
    context |= annotate(results, subs, opts.roster, context["unmatched"])  # LMS notes, missing
    report.write_all(opts.out, results, context)
    if grader.cluster is not None:
        grader.cluster.annotate(opts.out / "results.json", results)
    course_dir.write(opts, results, context)  # OUT is an nbgrader course formgrader opens
    return context | {"results": results}


def sandbox_statement(grader: Grader) -> str:
    if grader.cluster is not None:
        return grader.cluster.sandbox_statement()
    problem = sandbox.bwrap_problem()
    if problem is None:
        return ("bubblewrap sandbox: no network, private file system view (no solutions, "
                "gradebook, other students or home), resource limits; "
                + sandbox.kernel_limits_statement() + prefork.statement())
    caveat = " (as root, the process limit does not apply)" if os.getuid() == 0 else ""
    return (f"NO SANDBOX ({problem}): resource limits only{caveat}; submissions could read "
            "files and use the network")


def default_timeout() -> int:
    """The per-cell timeout of nbgrader_config.py."""
    from autograder.config import load_config

    return int(load_config(Path("/nonexistent")).Execute.timeout)


def options_from(args, root: Path) -> Options:
    """Options from parsed command-line arguments (grade and check share them)."""
    out = args.out.resolve() if args.out else None
    limits = sandbox.Limits(memory=int(args.memory * sandbox.GiB))
    jobs = min(sandbox.MAX_SLOTS, max(1, args.jobs))
    return Options(submissions=getattr(args, "submissions", Path(".")).resolve(), out=out,
                   root=root, jobs=jobs, timeout=args.timeout or default_timeout(),
                   db_url=getattr(args, "db_url", None), limits=limits,
                   cluster=getattr(args, "cluster", None),
                   roster=args.roster.resolve() if getattr(args, "roster", None) else None)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(opts: Options) -> int:
    """The grade command: grade, then print where the outputs are and a summary. SIGTERM
    stops it as Ctrl-C does (running jobs killed, their sandboxes removed; a re-run resumes)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        summary = grade(opts)
    finally:  # a caller's own handler (pytest's, a notebook's) is back once the run ends
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    statuses = {}
    for r in summary["results"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(f"graded {len(summary['results'])} submissions "
          f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'}; "
          f"{summary['reused']} reused) in {summary['seconds']} s; "
          f"{len(summary['unmatched'])} files not graded")
    print(f"sandbox: {summary['sandbox']}")
    print(f"outputs: {opts.out}/grades.csv, results.json, feedback/, report.html")
    return 0
