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

Times are wall seconds of the whole command. Scores are read back (``grades.csv``, nbgrader's
gradebook) and totalled, so a fast run that grades wrongly shows. Everything is written
under ``--work`` (default ``benchmarks/out/grading``, deleted first).

Last line: ``jobs 2 vs nbgrader: N.NNx`` (submissions per minute, the largest --jobs).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
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


def run(cmd, cwd, threads=None):
    """Run a command; return (wall seconds, exit status, the tail of its output).

    ``threads``: OMP_NUM_THREADS for it and its kernels (None: leave the default).
    """
    # nbgrader calls tools of its environment (alembic) by name: put the venv's bin first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    tail = (done.stdout + done.stderr)[-2000:]
    return time.perf_counter() - start, done.returncode, tail


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

def grade_autograder(class_dir, out, jobs):
    """``python -m autograder grade``; return (seconds, status, tail, total score)."""
    cmd = [sys.executable, "-m", "autograder", "--root", str(common.ROOT), "grade",
           str(class_dir), "--out", str(out), "--jobs", str(jobs)]
    seconds, status, tail = run(cmd, common.ROOT)
    return seconds, status, tail, autograder_score(out / "grades.csv")


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
    runs = [] if args.skip_autograder else [
        (f"autograder --jobs {j}", lambda j=j: grade_autograder(
            class_dir, args.work / f"out_jobs{j}", j)) for j in args.jobs]
    if not args.skip_nbgrader:
        threads = common.resolve_threads(args.nbgrader_threads)
        runs.append(("nbgrader autograde", lambda: grade_nbgrader(course_root, lessons, threads)))
    for name, grade in runs:
        seconds, status, tail, score = grade()
        results.append({"grader": name, "seconds": seconds, "exit_status": status,
                        "per_minute": 60 * submissions / seconds, "score": score,
                        "output_tail": tail})
        if status != 0:
            print(f"{name} exited with {status}:\n{tail}\n")
    return results


def report(results, info, args, lessons):
    submissions = args.students * len(lessons)
    print(f"grading_throughput: {args.students} students x {len(lessons)} lessons = "
          f"{submissions} submissions, {common.describe(info)}\n")
    rows = [[r["grader"], f"{r['seconds']:.1f}", f"{r['per_minute']:.1f}",
             "-" if r["score"] is None else f"{r['score'][0]:g}/{r['score'][1]:g}",
             "-" if r["score"] is None else r["score"][2], r["exit_status"]] for r in results]
    print(common.table(rows, ["grader", "seconds", "subs/min", "score", "graded", "exit"]))
    by_name = {r["grader"]: r["per_minute"] for r in results}
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
    common.write_json("grading_throughput", {"machine": info, "students": args.students,
                                             "nbgrader_threads": args.nbgrader_threads,
                                             "lessons": [p.stem for p in lessons],
                                             "results": results})
    report(results, info, args, lessons)


if __name__ == "__main__":
    main()
