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


def set_threads(threads):
    """Use ``threads`` intra-op threads (None: torch's default, one per core)."""
    if threads is not None:
        torch.set_num_threads(threads)


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
    return (f"{info['date_utc']} UTC, {info['cpu']}, {info['cores']} cores, torch "
            f"{info['torch']} ({info['torch_threads']} threads), load {info['load_avg_1min']}")


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` to ``benchmarks/out/<name>.json`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


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


def matmul_gflops(m=32, k=512, n=512, seconds=1.0) -> float:
    """Best-of-5 float32 GFLOP/s of an (m, k) @ (k, n) product, the RNN step's shape."""
    A, B = torch.randn(m, k), torch.randn(k, n)
    for _ in range(50):  # warm-up: thread pool, caches
        A @ B
    best = 0.0
    for _ in range(5):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            A @ B
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def table(rows: list[list], header: list[str]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
