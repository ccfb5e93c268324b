"""Helpers shared by the benchmark scripts: paths, the machine's description, a stopwatch,
the matrix-product ceiling and machine-readable output under ``benchmarks/out/``."""

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository
OUT = ROOT / "benchmarks" / "out"              # gitignored
SOLUTIONS = ROOT / "solutions"
SHARED_DATA = ROOT.parent / "shared" / "data"


def use_local_book():
    """Point d2lmini at the shared copy of the book when no data folder is configured."""
    if "D2LMINI_DATA" not in os.environ and (SHARED_DATA / "timemachine.txt").is_file():
        os.environ["D2LMINI_DATA"] = str(SHARED_DATA)


def threads_option(value: str):
    """Parse ``--threads``: ``auto``, ``default`` (torch's: one per core) or a count."""
    if value in ("auto", "default"):
        return value
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--threads takes auto, default or a positive int, got {value!r}")
    return int(value)


def resolve_threads(threads) -> int | None:
    """The thread count to use; None for torch's default.

    ``auto`` picks one thread when the machine is busier than its cores (1-minute load
    average above the core count): there, OpenMP threads spin waiting for a core and two
    threads ran 2-3 times slower than one. Otherwise torch's default.
    """
    if threads == "auto":
        return 1 if os.getloadavg()[0] > (os.cpu_count() or 1) else None
    return None if threads == "default" else threads


def set_threads(threads) -> int | None:
    """Use ``threads`` (see ``resolve_threads``) intra-op threads; return the resolved value."""
    resolved = resolve_threads(threads)
    if resolved is not None:
        torch.set_num_threads(resolved)
    return resolved


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, torch threads, load, date."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(info: dict) -> str:
    """One line for the top of a printed table."""
    load = f"{info['load_avg_1min']}"
    if "load_avg_1min_end" in info:
        load += f" at the start, {info['load_avg_1min_end']} at the end"
    return (f"{info['date_utc']} UTC, {info['cpu']}, {info['cores']} cores, torch "
            f"{info['torch']} ({info['torch_threads']} threads), load {load}")


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` to ``benchmarks/out/<name>.json`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_timing_options(parser) -> None:
    """``--threads`` and ``--clock``, shared by the training benchmarks."""
    parser.add_argument("--threads", type=threads_option, default="auto",
                        help="torch threads: a count, 'default' (one per core) or 'auto' "
                             "(1 when the load average exceeds the cores, else default)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall time, or this process's CPU time (a proxy for a quiet "
                             "machine when measuring under load with --threads 1)")


class Stopwatch:
    """Accumulates time only while running, so evaluation can be left off the clock.

    ``clock="cpu"`` counts this process's CPU time (all its threads) instead of wall time: on
    a shared machine it approximates what the same run would take alone with one thread.
    """

    def __init__(self, clock="wall"):
        self.clock, self.elapsed, self._start = CLOCKS[clock], 0.0, None

    def start(self):
        self._start = self.clock()

    def stop(self):
        self.elapsed += self.clock() - self._start
        self._start = None

    def now(self) -> float:
        """Seconds counted so far, including the running stretch."""
        running = self.clock() - self._start if self._start is not None else 0.0
        return self.elapsed + running


def matmul_gflops(m=32, k=512, n=512, seconds=1.0, clock=time.perf_counter) -> float:
    """Best-of-5 float32 GFLOP/s of an (m, k) @ (k, n) product, the RNN step's shape."""
    A, B = torch.randn(m, k), torch.randn(k, n)
    for _ in range(50):  # warm-up: thread pool, caches
        A @ B
    best = 0.0
    for _ in range(5):
        reps, start = 0, clock()
        while clock() - start < seconds / 5:
            A @ B
            reps += 1
        best = max(best, 2 * m * k * n * reps / (clock() - start) / 1e9)
    return best


def table(rows: list[list], header: list[str]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
