"""The sandbox each submission's kernel runs in.

With bubblewrap the kernel gets: no network (its own network namespace), its own PID, IPC
and UTS namespaces, a read-only view of the system, the Python environment, d2lmini and the
book, a private writable home, and nothing else (no solutions/, no gradebook, no other
students, no instructor home). The kernel speaks ZeroMQ over ``ipc`` sockets in a folder
bound into the sandbox: Unix sockets cross network namespaces, TCP loopback does not.
Resource limits (memory, CPU time, processes, file size) apply in either case.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

KERNEL_NAME = "autograder-sandbox"
HOME = "/home/student"
BOOK = "/book"
BOOK_FILE = "timemachine.txt"
GiB = 1024 ** 3
BASE_UID = 200_000  # unprivileged uids a root grader gives its job slots start here
MAX_SLOTS = 64


@dataclass(frozen=True)
class Limits:
    """What one kernel may use. ``uid``: the uid a root grader drops to (None: keep)."""

    memory: int = 4 * GiB
    cpu: int = 900
    processes: int = 128
    file_size: int = 256 * 1024 ** 2
    uid: int | None = None


@functools.cache
def bwrap_problem() -> str | None:
    """None when bubblewrap can make a sandbox here, else why not."""
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [path, *namespace_flags(), "--ro-bind", "/", "/", "--", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.strip()}"
    return None


def namespace_flags() -> list[str]:
    """New network, PID, IPC and UTS namespaces. As root, no user namespace: the launcher
    then drops to a real unprivileged uid; otherwise a user namespace is what allows bwrap."""
    flags = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try"]
    return flags if os.getuid() == 0 else ["--unshare-user", *flags]


def slot_uid(slot: int) -> int | None:
    """The uid of a job slot when grading as root (None otherwise).

    RLIMIT_NPROC counts the processes of a uid, so each slot gets its own uid, and each
    grading run its own block of uids (from its pid), so that concurrent runs and other
    slots never share a process budget."""
    if os.getuid() != 0:
        return None
    return BASE_UID + (os.getpid() % 20_000) * MAX_SLOTS + slot % MAX_SLOTS


def read_only_paths(book: Path) -> list[Path]:
    """Host folders the kernel needs, bound read-only at the same place (the venv's files
    point at absolute paths): the interpreter, the venv, d2lmini's and autograder's source."""
    import d2lmini

    autograder_dir = Path(__file__).resolve().parent
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(d2lmini.__file__).resolve().parent, autograder_dir}
    return sorted(p for p in paths if not _under_system(p))


def _under_system(path: Path) -> bool:
    """Paths already visible through the read-only /usr and /etc."""
    return any(path.is_relative_to(root) for root in (Path("/usr"), Path("/etc")))


def _parents(paths) -> list[str]:
    """Every missing parent folder, outermost first, so bwrap can make them world-readable."""
    parents = {str(parent) for p in paths for parent in Path(p).parents if str(parent) != "/"}
    return sorted(parents, key=lambda s: (s.count("/"), s))


def bwrap_argv(home: Path, runtime: Path, book: Path) -> list[str]:
    """bubblewrap's arguments: namespaces and the file system the kernel sees."""
    argv = ["bwrap", *namespace_flags(), "--die-with-parent", "--clearenv"]
    for name in ("usr", "etc"):
        argv += ["--ro-bind", f"/{name}", f"/{name}"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if Path(f"/{name}").is_symlink():
            argv += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif Path(f"/{name}").exists():
            argv += ["--ro-bind", f"/{name}", f"/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    ro = read_only_paths(book)
    for parent in _parents([*ro, runtime, HOME]):
        argv += ["--perms", "0755", "--dir", parent]
    for path in ro:
        argv += ["--ro-bind", str(path), str(path)]
    book_file = book / BOOK_FILE  # only the book, not whatever else lies beside it
    argv += ["--dir", BOOK, "--ro-bind", str(book_file), f"{BOOK}/{BOOK_FILE}",
             "--bind", str(home), HOME,
             "--bind", str(runtime), str(runtime), "--chdir", HOME]
    return argv


def kernel_env(sandboxed: bool, home: Path, book: Path) -> dict[str, str]:
    """The kernel's environment: fast mode on, one thread per kernel, a private home."""
    env = {
        "HOME": HOME if sandboxed else str(home),
        "D2LMINI_DATA": BOOK if sandboxed else str(book),
        "NBGRADER_EXECUTION": "autograde",
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    env["MPLCONFIGDIR"] = env["HOME"] + "/.matplotlib"
    return env


def kernel_argv(limits: Limits, home: Path, runtime: Path, book: Path,
                sandboxed: bool) -> list[str]:
    """The kernel spec's argv: [bwrap ... --] launcher (limits, uid) -- ipykernel."""
    python = str(Path(sys.executable))
    launch = [python, "-m", "autograder.launch", json.dumps(asdict(limits)), "--",
              python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if not sandboxed:
        return launch
    setenv = [arg for key, value in kernel_env(True, home, book).items()
              for arg in ("--setenv", key, value)]
    return bwrap_argv(home, runtime, book) + setenv + ["--"] + launch


def write_kernelspec(runtime: Path, argv: list[str], env: dict[str, str]) -> Path:
    """A kernel spec under ``runtime/kernels`` (point JUPYTER_PATH at ``runtime``)."""
    folder = runtime / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": "Autograder sandbox", "language": "python",
            "interrupt_mode": "message", "env": env}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


class SandboxKernelManager(AsyncKernelManager):
    """Hands the connection file to the sandbox's uid (jupyter_client writes it 0600)."""

    def write_connection_file(self, **kwargs):
        result = super().write_connection_file(**kwargs)
        uid = os.environ.get("AUTOGRADER_KERNEL_UID")
        if uid and os.getuid() == 0:
            os.chown(self.connection_file, int(uid), int(uid))
        return result
