"""How long does the course take to run? Every solution notebook, headless, fast and full mode.

Executes each ``solutions/*.ipynb`` top to bottom with nbclient (a fresh ``python3`` kernel
per notebook, working in a scratch folder so nothing lands in the repository), once with
``D2LMINI_FAST=1`` (what grading and CI run) and once with ``D2LMINI_FAST=0`` (what a student
runs), one notebook at a time. The time of a run is its wall time including the kernel's
start. A notebook that raises or times out is reported with the failing cell; its time is
still counted up to the failure.

Last line: ``full course: N s`` (the sum over the lessons in full mode).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import common
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

MODES = {"fast": "1", "full": "0"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=Path, default=common.SOLUTIONS)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--lessons", nargs="+", default=None,
                        help="notebook stems to run (default: all in --solutions)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--threads", type=common.threads_option, default="auto",
                        help="OMP_NUM_THREADS for the kernels: a count, 'default' (torch's, one "
                             "per core) or 'auto' (1 when the load average exceeds the cores)")
    return parser.parse_args(argv)


def notebooks(folder, stems=None):
    """The lesson notebooks, in course order."""
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if stems:
        found = [p for p in found if p.stem in stems]
    if not found:
        raise FileNotFoundError(f"no lesson notebooks (NN_name.ipynb) in {folder}")
    return found


def failure(err):
    """A one-line reason from nbclient's exception."""
    if isinstance(err, CellTimeoutError):
        return "timeout"
    if isinstance(err, CellExecutionError):
        return f"error: {err.ename}: {str(err.evalue)[:120]}"
    return f"error: {type(err).__name__}: {str(err)[:120]}"


def run_notebook(path, mode, timeout):
    """Execute one notebook in ``mode``; return (seconds, status)."""
    nb = nbformat.read(path, as_version=4)
    os.environ["D2LMINI_FAST"] = MODES[mode]  # the kernel inherits this environment
    with tempfile.TemporaryDirectory(prefix="course_runtime_") as scratch:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": scratch}})
        start, status = time.perf_counter(), "ok"
        try:
            client.execute()
        except Exception as err:  # a failing lesson is a result, not a crash of the benchmark
            status = failure(err)
        return time.perf_counter() - start, status


def main(argv=None):
    args = parse_args(argv)
    common.use_local_book()
    threads = common.resolve_threads(args.threads)
    if threads is not None:  # torch in each kernel reads it at start-up
        os.environ["OMP_NUM_THREADS"] = str(threads)
    info, rows, records = common.machine(), [], []
    for path in notebooks(args.solutions, args.lessons):
        row = [path.stem]
        for mode in args.modes:
            seconds, status = run_notebook(path, mode, args.timeout)
            records.append({"lesson": path.stem, "mode": mode, "seconds": seconds,
                            "status": status})
            print(f"  {path.stem} {mode}: {seconds:.1f} s, {status}", flush=True)
            row += [f"{seconds:.1f}", status]
        rows.append(row)
    totals = {m: sum(r["seconds"] for r in records if r["mode"] == m) for m in args.modes}
    common.write_json("course_runtime", {"machine": info, "kernel_threads": threads,
                                         "runs": records, "totals": totals})
    report(rows, totals, args.modes, f"kernel threads {threads or 'default'}, "
           f"{common.describe(info)}")


def report(rows, totals, modes, conditions):
    """The table of lessons and modes, a total row, and the full course's time last."""
    print(f"course_runtime: {conditions}\n")
    header = ["lesson"] + [h for m in modes for h in (f"{m} s", f"{m} status")]
    rows.append(["total"] + [c for m in modes for c in (f"{totals[m]:.1f}", "")])
    print(common.table(rows, header))
    if "full" in totals:
        print(f"full course: {totals['full']:.0f} s")


if __name__ == "__main__":
    main()
