"""GRADER SIDE: warm kernels from a fork server (``autograder.forkserver``) per job slot.

A serving worker (``autograder.worker --serve``) starts one fork server in a bubblewrap
sandbox the first time it grades a job, and keeps it for every later job with the same
book, warm home and kernel uid. For each job, jupyter_client's kernel manager launches the
kernel through ``ForkProvisioner`` instead of a fresh ``bwrap ... ipykernel`` process:

1. worker -> server ``{"op": "fork", "env", "connection_file", "uid", "limits",
   "home_size", "home_files"}`` with the job's log file descriptor attached
   (SCM_RIGHTS); server -> worker ``{"forked": PID}`` (the kernel's pid in the sandbox);
2. the worker finds that process's pid on the host and writes it into the job's control
   group (memory and process limits, and the kill of every leftover process at the end);
3. worker -> server ``{"op": "go", "pid": PID, "placed": true}``; server -> worker
   ``{"went": PID}``; only now does the kernel go on (``forkserver.become_kernel``).

Errors come back as ``{"error": TEXT}``; the server's first message is ``{"ready": bool,
"problem": TEXT | null, "pid": PID}``. Only this worker holds the socket. The fast path
needs what makes it as safe as a classic kernel: bubblewrap, a root grader (the kernel
makes its own namespaces and tmpfs mounts before dropping root) and a control group per
job (leftover processes of a job must die with it: they share the slot's sandbox). Where
any is missing, or ``AUTOGRADER_FORKSERVER=0``, or the server fails, the worker starts a
classic kernel (``sandbox.kernel_argv``), which grades the same.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from jupyter_client.provisioning import LocalProvisioner

from autograder import forkserver, sandbox

ENV_SWITCH = "AUTOGRADER_FORKSERVER"
START_SECONDS = 60  # the server's imports, on a loaded machine
REPLY_SECONDS = 20


class ForkServerError(RuntimeError):
    """The fork server could not start or answer: grade with a classic kernel."""


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def usable(job: dict, rt: sandbox.Runtime) -> bool:
    """May this job's kernel come from a fork server (see the module's docstring)?"""
    return (enabled() and job["sandboxed"] and os.getuid() == 0 and rt.cgroup is not None
            and job["limits"].get("uid") is not None)


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def statement() -> str:
    """For the run's sandbox line: where the kernels come from."""
    if not enabled():
        return "; classic kernels (AUTOGRADER_FORKSERVER=0)"
    if os.getuid() != 0:
        return "; classic kernels (warm kernels need a root grader)"
    return ("; warm kernels forked from a server per job slot, each with its own namespaces, "
            "tmpfs home and control group (classic kernels where that fails)")


def server_key(book: Path, seed_home: Path, uid: int) -> tuple:
    """What a fork server is started with: a job with another key needs another server."""
    return str(book), _tree_hash(seed_home), uid


class ForkServer:
    """One slot's fork server: its sandbox, its socket, the host pid of the server."""

    def __init__(self, book: Path, seed_home: Path, uid: int, key: tuple | None = None):
        self.key = key or server_key(book, seed_home, uid)
        self.root = sandbox.slot_folder(os.getpid(), uid)
        self.close_folder()
        self.home, self.seed = self.root / "home", self.root / "seed"
        self.home.mkdir(parents=True)
        shutil.copytree(seed_home, self.seed)
        shutil.copytree(seed_home, self.home, dirs_exist_ok=True)  # the server's own imports
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = self._argv(book, theirs.fileno())
        self.proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        try:
            ready = self._receive(START_SECONDS)
            if not ready.get("ready"):
                raise ForkServerError(ready.get("problem") or "the fork server did not start")
            self.pid = self._host_pid(self.proc.pid, ready["pid"])
        except Exception:
            self.close()
            raise

    def _argv(self, book: Path, fd: int) -> list[str]:
        """bubblewrap as for a classic kernel, the slot folder bound in, the warm home
        read-only at forkserver.SEED; the server stays root inside (it drops nothing)."""
        env = sandbox.kernel_env(True, self.home, book)
        setenv = [arg for key, value in env.items() for arg in ("--setenv", key, value)]
        argv = sandbox.bwrap_argv(self.home, self.root, book)
        extra = ["--ro-bind", str(self.seed), forkserver.SEED]
        return [*argv, *extra, *setenv, "--", sys.executable, "-m", "autograder.forkserver",
                "--control", str(fd)]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _send(self, message: dict, fds=()) -> None:
        try:
            socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
        except OSError as err:  # the server is gone
            raise ForkServerError(f"the fork server is gone ({err})") from None

    def _receive(self, seconds: float) -> dict:
        self.control.settimeout(seconds)
        try:
            data = self.control.recv(1 << 16)
        except (TimeoutError, OSError) as err:
            raise ForkServerError(f"the fork server did not answer ({err})") from None
        if not data:
            raise ForkServerError("the fork server ended")
        return json.loads(data)

    def _ask(self, message: dict, fds=()) -> dict:
        self._send(message, fds)
        reply = self._receive(REPLY_SECONDS)
        if "error" in reply:
            raise ForkServerError(reply["error"])
        return reply

    def fork(self, request: dict, log_fd: int, procs_files: list[str]) -> "ForkedKernel":
        """A kernel for this job, placed in its control group before it runs anything."""
        child = self._ask({"op": "fork", **request}, fds=[log_fd])["forked"]
        try:
            host_pid = self._host_pid(self.pid, child)
            for path in procs_files:
                Path(path).write_text(str(host_pid))
        except Exception:
            self._ask({"op": "go", "pid": child, "placed": False})
            raise
        self._ask({"op": "go", "pid": child, "placed": True})
        return ForkedKernel(host_pid)

    @staticmethod
    def _host_pid(parent: int, ns_pid: int) -> int:
        """The host pid of the descendant of ``parent`` whose innermost pid is ``ns_pid``."""
        todo = [parent]
        while todo:
            pid = todo.pop()
            if _ns_pid(pid) == ns_pid and pid != parent:
                return pid
            with contextlib.suppress(OSError):
                todo += [int(p) for p in
                         Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        raise ForkServerError(f"no process {ns_pid} under the fork server")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close_folder()

    def close_folder(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _ns_pid(pid: int) -> int | None:
    """The pid of ``pid`` in its innermost PID namespace (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        return None
    return None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (None if the process is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in "ZX" else fields[19]


class ForkedKernel:
    """What jupyter_client needs of a Popen, for a kernel that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None
        self._started = _start_time(pid)

    def poll(self) -> int | None:
        if self.returncode is None and _start_time(self.pid) != self._started:
            self.returncode = -signal.SIGKILL if self._killed else 0
        return self.returncode

    _killed = False

    def wait(self, timeout: float | None = None) -> int:
        until = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if until is not None and time.monotonic() > until:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            self._killed = self._killed or signum == signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Launch:
    """This job's kernel launch through the slot's server (set by the worker per job)."""

    def __init__(self, server: ForkServer, request: dict, procs_files: list[str]):
        self.server, self.request, self.procs_files = server, request, procs_files
        self.forked = False  # set once the kernel came from the server


_server: ForkServer | None = None
active: Launch | None = None  # the job being graded now (one at a time per worker process)


def server_for(book: Path, seed_home: Path, uid: int) -> ForkServer:
    """This worker's fork server for these settings (started, or restarted, as needed)."""
    global _server
    key = server_key(book, seed_home, uid)
    if _server is not None and (_server.key != key or not _server.alive()):
        _server.close()
        _server = None
    if _server is None:
        _server = ForkServer(book, seed_home, uid, key)
    return _server


def shutdown() -> None:
    """Stop this worker's fork server (between runs; a dying worker takes it along)."""
    global _server
    if _server is not None:
        _server.close()
        _server = None


class ForkProvisioner(LocalProvisioner):
    """LocalProvisioner, but the kernel comes from the slot's fork server."""

    async def launch_kernel(self, cmd, **kwargs):
        launch = active
        try:
            self.process = launch.server.fork(launch.request, sys.stderr.fileno(),
                                              launch.procs_files)
            launch.forked = True
        except ForkServerError as err:  # ``cmd`` is the classic launch of the same kernel
            print(f"[autograder] the fork server failed ({err}): a classic kernel",
                  file=sys.stderr, flush=True)
            shutdown()
            return await super().launch_kernel(cmd, **kwargs)
        self.pid = self.pgid = self.process.pid  # the kernel leads its own session
        self.cwd = kwargs.get("cwd")
        return self.connection_info
