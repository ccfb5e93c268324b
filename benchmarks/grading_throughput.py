"""How fast is a class graded? Submissions per minute: the autograder against plain nbgrader.

Builds a class of ``--students`` K students, each submitting every graded lesson: the student
version of the lesson (nbgrader ``generate_assignment`` of ``solutions/<lesson>.ipynb``) with
its answer cells filled in from the solution (matched by ``grade_id``), so every submission
should earn full marks. The same submissions are then graded

- by ``python -m autograder grade CLASS --out OUT --jobs N`` for each ``--jobs`` value
  (default 1 and 2), each into a fresh OUT so nothing is reused, and
- by plain ``nbgrader autograde <lesson>`` (one call per lesson, every student) in an
  ordinary nbgrader course folder using the project's ``autograder/nbgrader_config.py``.
  The autograder runs each kernel with one thread; nbgrader's kernels get
  ``--nbgrader-threads`` (``auto``: one when the machine is loaded, else torch's default).

- with ``--cluster-workers W``: through a Dask cluster started here (``dask scheduler`` and
  W one-thread ``dask worker`` processes on loopback), ``grade --cluster``, to compare with
  ``--jobs W`` (the cluster's overhead: packing, shipping, the scheduler).

Times are wall seconds of the whole command. Scores are read back (``grades.csv``, nbgrader's
gradebook) and totalled, so a fast run that grades wrongly shows. Everything is written
under ``--work`` (default ``benchmarks/out/grading``, deleted first).

Per submission, the seconds are broken down from each job's ``worker.log`` timeline lines
(``[autograder] STEP after T s``: kernel start, notebook, tests, feedback, as far as the
worker logs them) and the driver's own costs are measured: its CPU seconds in the cluster run
(the workers are not its children) and the gradebook merge (every result merged again into a
fresh SQLite gradebook, and with ``--postgres`` into a throwaway PostgreSQL server). These
bound how far more workers help: ``scaling`` prints the model.

Last line: ``jobs 2 vs nbgrader: N.NNx`` (submissions per minute, the largest --jobs).
"""

import argparse
import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import common
import nbformat

CONFIG = common.ROOT / "autograder" / "nbgrader_config.py"
NBGRADER = [sys.executable, "-m", "nbgrader"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=4, help="students in the class (K)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2],
                        help="--jobs values for the autograder")
    parser.add_argument("--lessons", nargs="+", default=None,
                        help="lesson stems (default: every solution with graded cells)")
    parser.add_argument("--work", type=Path, default=common.OUT / "grading")
    parser.add_argument("--nbgrader-threads", type=common.threads_option, default="auto",
                        help="OMP_NUM_THREADS of plain nbgrader's kernels: a count, 'default' "
                             "or 'auto' (1 under load; the autograder's kernels always use 1)")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--skip-autograder", action="store_true")
    parser.add_argument("--cluster-workers", type=int, default=0,
                        help="also grade through a local Dask cluster of this many workers")
    parser.add_argument("--postgres", action="store_true",
                        help="also time the gradebook merge into a throwaway PostgreSQL server")
    parser.add_argument("--driver-copies", type=int, default=200,
                        help="made-up submissions to time the driver's own steps on (0: skip)")
    parser.add_argument("--merge-synthetic", type=int, default=500,
                        help="also time merging this many made-up results (the gradebook's "
                             "cost at a class's scale; 0: skip)")
    return parser.parse_args(argv)


# --- the class ------------------------------------------------------------------------------

def nbgrader_meta(cell):
    return cell.metadata.get("nbgrader", {})


def graded_lessons(stems=None):
    """Solution notebooks with at least one graded (``grade: true``) cell, in course order."""
    found = []
    for path in sorted(common.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        if any(nbgrader_meta(c).get("grade") for c in cells) and (not stems or path.stem in stems):
            found.append(path)
    if not found:
        raise FileNotFoundError(f"no graded lessons in {common.SOLUTIONS}")
    return found


def tool_env(threads=None) -> dict:
    """This environment with the venv's bin first (nbgrader calls alembic by name) and
    ``threads`` as OMP_NUM_THREADS (None: leave the default)."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(cmd, cwd, threads=None, usage=None):
    """Run a command; return (wall seconds, exit status, the tail of its output).

    ``threads``: OMP_NUM_THREADS for it and its kernels (None: leave the default).
    ``usage``: a dict that receives ``cpu``, the CPU seconds of the command and of the
    descendants it waited for (not of processes it only talks to, such as Dask workers).
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=tool_env(threads), stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read()[-2000:]
    if usage is not None:
        usage["cpu"] = rusage.ru_utime + rusage.ru_stime
    return time.perf_counter() - start, proc.returncode, tail


def make_course(root, lessons):
    """An nbgrader course folder with every lesson generated (gradebook included)."""
    root.mkdir(parents=True)
    shutil.copy(CONFIG, root / "nbgrader_config.py")
    for path in lessons:
        (root / "source" / path.stem).mkdir(parents=True)
        shutil.copy(path, root / "source" / path.stem / path.name)
        _, status, tail = run(NBGRADER + ["generate_assignment", path.stem, "--force"], root)
        if status != 0:
            raise RuntimeError(f"nbgrader generate_assignment {path.stem} failed:\n{tail}")


def answered(release_path, solution_path):
    """The student version with each answer cell replaced by the solution's (same grade_id)."""
    answers = {nbgrader_meta(c)["grade_id"]: c.source
               for c in nbformat.read(solution_path, as_version=4).cells
               if nbgrader_meta(c).get("solution")}
    nb = nbformat.read(release_path, as_version=4)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def write_class(root, lessons, students, class_dir):
    """Each student's submissions, in both layouts: ``CLASS/<student>/<lesson>.ipynb`` for
    the autograder and ``submitted/<student>/<lesson>/<lesson>.ipynb`` for nbgrader."""
    for path in lessons:
        nb = answered(root / "release" / path.stem / path.name, path)
        for student in students:
            for target in (class_dir / student / path.name,
                           root / "submitted" / student / path.stem / path.name):
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, target)


# --- grading --------------------------------------------------------------------------------

def grade_autograder(class_dir, out, jobs, cluster=None, usage=None):
    """``python -m autograder grade`` (``--cluster`` when given an address); return
    (seconds, status, tail, total score)."""
    cmd = [sys.executable, "-m", "autograder", "--root", str(common.ROOT), "grade",
           str(class_dir), "--out", str(out), "--jobs", str(jobs)]
    cmd += ["--cluster", cluster] if cluster else []
    seconds, status, tail = run(cmd, common.ROOT, usage=usage)
    return seconds, status, tail, autograder_score(out / "grades.csv")


class LocalCluster:
    """``dask scheduler`` and ``workers`` one-thread ``dask worker`` processes on 127.0.0.1
    (separate processes, as on separate machines)."""

    def __init__(self, workers: int, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        info, dask = folder / "scheduler.json", str(Path(sys.executable).parent / "dask")
        self.procs = [self._start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(info)],
                                  folder / "scheduler.log")]
        self.address = _wait_for(lambda: info.is_file() and json.loads(info.read_text()))[
            "address"]
        self.procs += [self._start([dask, "worker", self.address, "--nthreads", "1",
                                    "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                    "--memory-limit", "0", "--local-directory",
                                    str(folder / f"w{i}")], folder / f"w{i}.log")
                       for i in range(workers)]
        _wait_for(lambda: len(self._workers()) >= workers)

    @staticmethod
    def _start(argv, log_path):
        with open(log_path, "w") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=common.ROOT, env=tool_env(), start_new_session=True)

    def _workers(self):
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            return client.scheduler_info()["workers"]

    def close(self):
        for proc in reversed(self.procs):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for(probe, seconds=180):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            found = probe()
        except (OSError, ValueError):
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise TimeoutError(f"not ready after {seconds} s")


# --- where the seconds go -------------------------------------------------------------------

TIMELINE = re.compile(r"^\[autograder\] (.+?) after ([0-9.]+) s$", re.MULTILINE)


def breakdown(out: Path) -> dict:
    """Mean seconds per submission over ``out``'s job folders: kernel start (job start to the
    first cell), the notebook's cells in the kernel (nbclient's execution timestamps in the
    autograded notebook), the tests and the rest of autograding, feedback, and the job."""
    steps = defaultdict(list)
    for result_path in sorted((out / ".work" / "jobs").glob("*/*/result.json")):
        for step, seconds in job_steps(result_path.parent).items():
            steps[step].append(seconds)
    return {step: statistics.fmean(values) for step, values in steps.items()}


def boundary_cost(out: Path) -> dict:
    """Per lesson, the mean cost of the trust boundary per submission (results.json's
    ``boundary``: calls to the student's functions, bytes each way, seconds in calls)."""
    results = json.loads((out / "results.json").read_text())["students"]
    per_lesson = defaultdict(list)
    for lessons in results.values():
        for lesson, entry in lessons.items():
            if entry.get("boundary"):
                per_lesson[lesson].append(entry["boundary"])
    return {lesson: {key: statistics.fmean(b[key] for b in rows)
                     for key in ("calls", "bytes_out", "bytes_in", "seconds")}
            for lesson, rows in sorted(per_lesson.items())}


def kernel_kinds(out: Path) -> dict:
    """How many kernels came from the fork server and how many started classic
    (results.json ``resources.kernel``)."""
    results = json.loads((out / "results.json").read_text())["students"]
    return dict(Counter(entry.get("resources", {}).get("kernel", "not recorded")
                        for lessons in results.values() for entry in lessons.values()))


def job_steps(job: Path) -> dict:
    """One job's seconds per step (see breakdown); {} when its files are missing."""
    log, result = job / "worker.log", json.loads((job / "result.json").read_text())
    marks = dict(TIMELINE.findall(log.read_text(errors="replace"))) if log.is_file() else {}
    graded = list(job.glob("course/autograded/*/*/*.ipynb"))
    if "autograded" not in marks or not graded:
        return {}
    done, fed = float(marks["autograded"]), float(marks.get("feedback written", 0.0))
    started = log.stat().st_mtime - max(done, fed)  # the log's last line: the job's end
    spans = [_span(c) for c in nbformat.read(graded[0], as_version=4).cells
             if c.get("metadata", {}).get("execution")]
    spans = [s for s in spans if s]
    if not spans:
        return {}
    kernel = min(a for a, _ in spans) - started
    cells = sum(b - a for a, b in spans)
    return {"kernel start": kernel, "notebook cells (kernel)": cells,
            "tests and the rest of autograde": done - kernel - cells,
            "feedback": max(0.0, fed - done), "job in all": result.get("seconds") or fed}


def _span(cell) -> tuple[float, float] | None:
    """(start, end) POSIX seconds of a cell's execution, from nbclient's record."""
    from datetime import datetime

    record = cell.metadata.execution
    try:
        return tuple(datetime.fromisoformat(record[key].replace("Z", "+00:00")).timestamp()
                     for key in ("iopub.status.busy", "iopub.status.idle"))
    except (KeyError, ValueError):
        return None


def merge_cost(out: Path, url: str, synthetic: int = 0) -> float:
    """Seconds per submission to merge ``out``'s results (or, with ``synthetic``, that many
    results made up from them: more students, the same cells) into the empty gradebook
    ``url`` (the lessons synced first, not counted), as the driver does after a run."""
    from autograder.grade import Options, prepare_template
    from autograder.gradebook import merge_all, sync_lessons

    results = [json.loads(p.read_text()) for p in (out / ".work" / "jobs").glob(
        "*/*/result.json")]
    if synthetic:
        results = [results[i % len(results)] | {"student": f"made-up-{i // len(results):05d}"}
                   for i in range(synthetic)]
    template = prepare_template(Options(submissions=out, out=out, root=common.ROOT))  # cached
    sync_lessons(f"sqlite:///{template / 'gradebook.db'}", url,
                 sorted({r["lesson"] for r in results}))
    return merge_all(url, results) / max(1, len(results))


def driver_costs(class_dir: Path, work: Path, copies: int) -> dict:
    """CPU seconds per submission of the driver's own steps, on ``copies`` made-up
    submissions (the class's files under new student names): plan (fingerprint and private
    course), pack for the cluster, unpack what a worker returns, and the outputs (report)."""
    from autograder import cluster, report
    from autograder.grade import Grader, Options, prepare_template
    from autograder.submissions import Submission

    opts = Options(submissions=class_dir, out=work / "driver", root=common.ROOT)
    grader = Grader(opts, prepare_template(opts))
    files = sorted(class_dir.glob("*/*.ipynb"))
    subs = [Submission(student=f"copy{i:05d}", lesson=files[i % len(files)].stem,
                       path=files[i % len(files)]) for i in range(copies)]
    returned = sorted((work / "out_cluster" / ".work" / "jobs").glob("*/*/result.json"))
    clock = time.process_time
    spent = {"plan": -clock()}
    jobs = [grader.plan(sub) for sub in subs]
    spent["plan"] += clock()
    spent["pack"] = -clock()
    for job in jobs:
        cluster.pack(job, ["job.json", "course", "home"])
    spent["pack"] += clock()
    replies = [cluster.pack(r.parent, list(cluster.RETURNED)) for r in returned] or [b""]
    spent["unpack"] = -clock()
    for i, job in enumerate(jobs):
        if replies[i % len(replies)]:
            cluster.unpack(replies[i % len(replies)], job)
    spent["unpack"] += clock()
    results = [json.loads(returned[i % len(returned)].read_text()) | {
        "student": sub.student} for i, sub in enumerate(subs)] if returned else []
    context = {"unmatched": [], "sandbox": "-", "limits": {"memory": 1, "cpu": 1,
               "processes": 1, "file_size": 1, "cell_timeout": 1}, "seconds": 0,
               "reused": 0, "jobs": 2, "gradebook": "-"}
    spent["outputs (report)"] = -clock()
    if results:
        report.write_all(opts.out, results, context)
    spent["outputs (report)"] += clock()
    sizes = [len(cluster.pack(j, ["job.json", "course", "home"])) for j in jobs[:20]]
    return {step: sec / copies for step, sec in spent.items()} | {
        "job bytes sent (mean)": statistics.fmean(sizes),
        "bytes returned (mean)": statistics.fmean(len(r) for r in replies)}


def postgres_server(folder: Path):
    """A throwaway PostgreSQL server in ``folder`` (tests/conftest.py's): ``.url(name)``
    creates a database, ``.stop()`` ends it."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from conftest import PostgresServer

    return PostgresServer(folder)


def autograder_score(grades_csv):
    """(score, max score, submissions graded cleanly) summed over ``grades.csv``."""
    if not grades_csv.is_file():
        return None
    with open(grades_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return (sum(float(r["score"] or 0) for r in rows),
            sum(float(r["max_score"] or 0) for r in rows),
            sum(r["status"] == "graded" for r in rows))


def grade_nbgrader(root, lessons, threads):
    """Plain ``nbgrader autograde``, one lesson after another; same return as above."""
    seconds, worst, tails = 0.0, 0, []
    for path in lessons:
        took, status, tail = run(NBGRADER + ["autograde", path.stem, "--force"], root, threads)
        seconds, worst = seconds + took, worst or status
        tails.append(tail)
    return seconds, worst, "\n".join(tails)[-2000:], nbgrader_score(root, lessons)


def nbgrader_score(root, lessons):
    """(score, max score, submissions in the gradebook) from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    score = max_score = count = 0
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for path in lessons:
            for sub in gb.assignment_submissions(path.stem):
                score, max_score, count = score + sub.score, max_score + sub.max_score, count + 1
    return score, max_score, count


# --- report ---------------------------------------------------------------------------------

def measure(args, lessons, class_dir, course_root):
    """Every grader on the same class: a list of result dicts."""
    results, submissions = [], args.students * len(lessons)
    usage, local_cpu = {}, {j: {} for j in args.jobs}  # CPU of the run and every process
    runs = [] if args.skip_autograder else [
        (f"autograder --jobs {j}", lambda j=j: grade_autograder(
            class_dir, args.work / f"out_jobs{j}", j, usage=local_cpu[j])) for j in args.jobs]
    if args.cluster_workers and not args.skip_autograder:
        w = args.cluster_workers
        runs.append((f"autograder --cluster ({w} workers)", lambda: grade_on_cluster(
            args, class_dir, w, usage)))
    if not args.skip_nbgrader:
        threads = common.resolve_threads(args.nbgrader_threads)
        runs.append(("nbgrader autograde", lambda: grade_nbgrader(course_root, lessons, threads)))
    for name, grade in runs:
        seconds, status, tail, score = grade()
        results.append({"grader": name, "seconds": seconds, "exit_status": status,
                        "per_minute": 60 * submissions / seconds, "score": score,
                        "output_tail": tail} | (dict(usage) if "cluster" in name else {})
                       | _local_cpu(name, local_cpu, submissions))
        if status != 0:
            print(f"{name} exited with {status}:\n{tail}\n")
    return results


def _local_cpu(name: str, local_cpu: dict, submissions: int) -> dict:
    """A local run's CPU seconds per submission (grader, workers and kernels: all waited-for
    descendants): on a quiet machine with C cores, about the wall seconds x C."""
    jobs = next((j for j in local_cpu if name == f"autograder --jobs {j}"), None)
    if jobs is None or "cpu" not in local_cpu[jobs]:
        return {}
    return {"cpu_per_submission": local_cpu[jobs]["cpu"] / submissions}


def grade_on_cluster(args, class_dir, workers, usage):
    """Start a local Dask cluster, grade the class through it, then again (every result
    reused: the driver's cost without the jobs), stop the cluster."""
    dask = LocalCluster(workers, args.work / "dask")
    try:
        graded = grade_autograder(class_dir, args.work / "out_cluster", workers,
                                  cluster=dask.address, usage=usage)
        again = {}
        usage["rerun_seconds"] = grade_autograder(class_dir, args.work / "out_cluster", workers,
                                                  cluster=dask.address, usage=again)[0]
        usage["rerun_cpu"] = again.get("cpu")
        return graded
    finally:
        dask.close()


def costs(args, results, submissions):
    """Where the seconds go (per submission) and what bounds scaling; printed and saved."""
    outs = sorted(args.work.glob("out_*"))
    found = {"breakdown": {o.name: breakdown(o) for o in outs},
             "boundary": {o.name: boundary_cost(o) for o in outs},
             "kernels": {o.name: kernel_kinds(o) for o in outs}}
    n = args.merge_synthetic
    if outs:
        found["merge_sqlite"] = merge_cost(outs[0], f"sqlite:///{args.work / 'merge.db'}")
        if n:
            found[f"merge_sqlite_{n}"] = merge_cost(outs[0], f"sqlite:///{args.work / 'm.db'}", n)
    if outs and args.postgres:
        server = postgres_server(Path(tempfile.mkdtemp(prefix="bench-postgres-")))
        try:
            found["merge_postgres"] = merge_cost(outs[0], server.url("real"))
            if n:
                found[f"merge_postgres_{n}"] = merge_cost(outs[0], server.url("synthetic"), n)
        finally:
            server.stop()
    if args.driver_copies:
        found["driver_steps"] = driver_costs(args.work / "class", args.work, args.driver_copies)
    cluster = [r for r in results if "cpu" in r]
    if cluster:
        found["driver_cpu"] = cluster[0]["cpu"] / submissions
        found["driver_cpu_dispatch"] = (cluster[0]["cpu"] - cluster[0]["rerun_cpu"]) / submissions
        found["rerun_seconds"] = cluster[0]["rerun_seconds"]
    return found


def print_costs(found, results, submissions):
    """The breakdown table and the scaling model."""
    for name, steps in found["breakdown"].items():
        rows = [[step, f"{sec:.2f}"] for step, sec in steps.items()]
        kinds = ", ".join(f"{n} {kind}" for kind, n in found["kernels"].get(name, {}).items())
        print(f"\nper submission, {name} (mean seconds; kernels: {kinds}):")
        print(common.table(rows, ["step", "seconds"]))
    for name, lessons in found.get("boundary", {}).items():
        rows = [[lesson, f"{b['calls']:.0f}", f"{b['bytes_out'] / 1e6:.2f}",
                 f"{b['bytes_in'] / 1e6:.2f}", f"{b['seconds']:.2f}",
                 f"{1000 * b['seconds'] / max(1, b['calls']):.2f}"]
                for lesson, b in lessons.items()]
        print(f"\nthe trust boundary per submission, {name} (means):")
        print(common.table(rows, ["lesson", "calls", "MB out", "MB in", "seconds", "ms/call"]))
    for key, value in found.items():
        if key.startswith(("merge_", "driver_cpu")):
            print(f"{key}: {value:.4f} s per submission")
    if "driver_steps" in found:
        rows = [[step, f"{v:.4f}" if v < 1000 else f"{v:,.0f}"]
                for step, v in found["driver_steps"].items()]
        print("\nthe driver's own steps, per submission (CPU seconds; bytes):")
        print(common.table(rows, ["step", "value"]))
    if "rerun_seconds" in found:
        print(f"cluster re-run, every result reused: {found['rerun_seconds']:.1f} s")
    slot = found["breakdown"].get("out_cluster", {}).get("job in all")
    if "driver_steps" in found and slot:
        steps = found["driver_steps"]
        driver = sum(v for k, v in steps.items() if "bytes" not in k) + found.get(
            "merge_postgres", found["merge_sqlite"])
        print(f"scaling: the driver and the gradebook take {driver:.3f} s per submission "
              f"(at most {60 / driver:.0f} submissions/min from one driver); a one-thread "
              f"worker grades {60 / slot:.1f}/min at this load, so about {slot / driver:.0f} "
              "worker threads keep one driver busy")


def report(results, info, args, lessons):
    submissions = args.students * len(lessons)
    print(f"grading_throughput: {args.students} students x {len(lessons)} lessons = "
          f"{submissions} submissions, {common.describe(info)}\n")
    for r in results:
        if "cpu_per_submission" in r:
            print(f"{r['grader']}: {r['cpu_per_submission']:.1f} CPU s per submission (every "
                  "process of the run)")
    rows = [[r["grader"], f"{r['seconds']:.1f}", f"{r['per_minute']:.1f}",
             "-" if r["score"] is None else f"{r['score'][0]:g}/{r['score'][1]:g}",
             "-" if r["score"] is None else r["score"][2], r["exit_status"]] for r in results]
    print(common.table(rows, ["grader", "seconds", "subs/min", "score", "graded", "exit"]))
    by_name = {r["grader"]: r["per_minute"] for r in results}
    w = args.cluster_workers
    cluster, local = f"autograder --cluster ({w} workers)", f"autograder --jobs {w}"
    if cluster in by_name and local in by_name:
        print(f"cluster vs --jobs {w}: {100 * (by_name[local] / by_name[cluster] - 1):+.1f}% "
              "time")
    if "nbgrader autograde" in by_name and not args.skip_autograder:
        jobs = max(args.jobs)
        ratio = by_name[f"autograder --jobs {jobs}"] / by_name["nbgrader autograde"]
        print(f"jobs {jobs} vs nbgrader: {ratio:.2f}x")


def main(argv=None):
    args = parse_args(argv)
    common.use_local_book()
    lessons = graded_lessons(args.lessons)
    shutil.rmtree(args.work, ignore_errors=True)
    course_root, class_dir = args.work / "nbgrader_course", args.work / "class"
    make_course(course_root, lessons)
    students = [f"student{i:02d}" for i in range(1, args.students + 1)]
    write_class(course_root, lessons, students, class_dir)
    info = common.machine()
    args.nbgrader_threads = common.resolve_threads(args.nbgrader_threads)  # None: default
    results = measure(args, lessons, class_dir, course_root)
    found = {} if args.skip_autograder else costs(args, results,
                                                  args.students * len(lessons))
    common.write_json("grading_throughput", {"machine": info, "students": args.students,
                                             "nbgrader_threads": args.nbgrader_threads,
                                             "lessons": [p.stem for p in lessons],
                                             "results": results, "costs": found})
    report(results, info, args, lessons)
    if found:
        print_costs(found, results, args.students * len(lessons))


if __name__ == "__main__":
    main()
