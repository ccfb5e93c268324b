"""Long-lived worker processes: each imports nbgrader once and grades job after job.

A ``Worker`` is ``python -m autograder.worker --serve FD`` in its own session: job folders
go in on its stdin, one line each, and ``next`` (or ``exit``) comes back on a pipe once the
job's ``result.json`` is written. A worker that dies or runs past the deadline is killed
(its process group; its kernel goes too, through bwrap's --die-with-parent) and the next
job gets a fresh one. A worker keeps a fork server for warm kernels (``autograder.prefork``);
it goes with the worker's process group, and ``kill`` removes its folder.
"""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from autograder import sandbox

DIED, DONE, LATE = "died", "done", "late"


class Worker:
    """One serving worker process (it dies with the thread that started it)."""

    def __init__(self, command: list[str] | None = None):
        """``command``: what serves (default ``python -m autograder.worker``); ``--serve FD``
        is appended."""
        read, write = os.pipe()
        command = command or [sys.executable, "-m", "autograder.worker"]
        self.proc = subprocess.Popen([*command, "--serve", str(write)], stdin=subprocess.PIPE,
                                     pass_fds=(write,), start_new_session=True)
        os.close(write)
        self.replies = read

    def usable(self) -> bool:
        """Still running and not killed: it can take the next job."""
        return self.replies is not None and self.proc.poll() is None

    def grade(self, job_dir: Path, deadline: float) -> str:
        """DONE (the worker answered), DIED (it ended mid-job) or LATE (killed at the
        deadline, in seconds)."""
        try:
            self.proc.stdin.write(f"{job_dir}\n".encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.kill()
            return DIED
        reply = self._reply(time.monotonic() + deadline)
        if reply == "next":
            return DONE
        self.kill()  # "exit", end of file, or no answer in time
        return LATE if reply is None else (DONE if reply == "exit" else DIED)

    def _reply(self, until: float) -> str | None:
        """The worker's next line ('' when it died), or None at the deadline."""
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([self.replies], [], [], max(0.0, until - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.replies, 64)
            if not chunk:
                return ""
            line += chunk
        return line.decode().strip()

    def kill(self) -> None:
        """Kill the worker's process group and reap it (safe to call twice)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        sandbox.remove_slot_folders(self.proc.pid)
        for stream in (self.proc.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        if self.replies is not None:
            os.close(self.replies)
            self.replies = None

    def close(self) -> None:
        """End a worker between jobs: close its stdin, kill it if it lingers."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
