"""The sandbox each submission's kernel runs in.

With bubblewrap the kernel gets: no network (its own network namespace), its own PID, IPC
and UTS namespaces, a read-only view of the system, the Python environment, d2lmini and the
book, a private writable home, and nothing else (no solutions/, no gradebook, no other
students, no instructor home). The kernel speaks ZeroMQ over ``ipc`` sockets in a folder
bound into the sandbox: Unix sockets cross network namespaces, TCP loopback does not.
Resource limits (memory, CPU time, processes, file size) apply in either case.
"""

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

from autograder.cgroup import Cgroup

KERNEL_NAME = "autograder-sandbox"
HOME = "/home/student"
BOOK = "/book"
BOOK_FILE = "timemachine.txt"
GiB = 1024 ** 3
OWNER = "owner"  # in a job's /tmp folder: the pid of the worker process that made it
BASE_UID = 200_000  # unprivileged uids a root grader gives its job slots start here
MAX_SLOTS = 64


@dataclass(frozen=True)
class Limits:
    """What one kernel may use. ``uid``: the uid a root grader drops to (None: keep)."""

    memory: int = 4 * GiB
    cpu: int = 900
    processes: int = 128
    file_size: int = 256 * 1024 ** 2
    home_size: int = 512 * 1024 ** 2
    home_files: int = 10_000
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


def slot_uid(slot: int, grader_pid: int | None = None) -> int | None:
    """The uid of a job slot when grading as root (None otherwise).

    RLIMIT_NPROC counts the processes of a uid, so each slot gets its own uid, and each
    grading run its own block of uids (from its pid), so that concurrent runs and other
    slots never share a process budget."""
    if os.getuid() != 0:
        return None
    pid = os.getpid() if grader_pid is None else grader_pid
    return BASE_UID + (pid % 20_000) * MAX_SLOTS + slot % MAX_SLOTS


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


class Runtime:
    """A job's private folder under /tmp, outside OUT and outside the kernel's view except
    for ``conn`` (the connection file and the kernel's ZeroMQ sockets) and ``home``.

    ``root/spec``: the kernel spec (JUPYTER_PATH), never seen by the kernel; ``root/conn``:
    bound into the sandbox; ``root/home``: the kernel's home, a tmpfs limited in size and in
    number of files when the grader may mount one. The folder's name follows from the job
    folder, so whoever kills a worker can still remove what its job left (``close``).
    """

    def __init__(self, job_dir: Path | None, key: str | None = None):
        """The runtime of ``job_dir`` (or, given ``key``, of the folder /tmp/ag-KEY)."""
        key = key or hashlib.sha1(str(Path(job_dir).resolve()).encode()).hexdigest()[:12]
        self.key, self.root = key, Path("/tmp") / f"ag-{key}"
        self.spec, self.conn, self.home = self.root / "spec", self.root / "conn", self.root / "home"
        self.home_limited = False
        self.cgroup = None

    def open(self, seed_home: Path, limits: Limits) -> "Runtime":
        """Make the folders, mount the home, copy the seed home in, create the cgroup."""
        self.close()  # what a killed run of the same job left
        for folder in (self.spec, self.conn, self.home):
            folder.mkdir(parents=True)
        (self.root / OWNER).write_text(str(os.getpid()))  # for sweep_stale
        self.home_limited = mount_tmpfs(self.home, limits.home_size, limits.home_files)
        if seed_home.is_dir():
            shutil.copytree(seed_home, self.home, dirs_exist_ok=True)
        self.cgroup = Cgroup.create(f"autograder-{self.key}", limits.memory, limits.processes)
        return self

    def close(self) -> None:
        """Kill the kernel's processes, unmount the home, remove every file of the job."""
        Cgroup.remove_named(f"autograder-{self.key}")
        if self.home.is_mount():
            subprocess.run(["umount", "-l", str(self.home)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.conn, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def move_conn(self, parent: Path) -> None:
        """Put ``conn`` under ``parent`` (a fork server's slot folder, bound into its
        sandbox), named after this job."""
        self.conn = parent / f"conn-{self.key}"
        shutil.rmtree(self.conn, ignore_errors=True)
        self.conn.mkdir(parents=True)


def slot_folder(worker_pid: int | str, uid: int | str) -> Path:
    """The folder of a worker's fork server (``autograder.prefork``): its home, the warm
    home, the jobs' ``conn``."""
    return Path("/tmp") / f"ag-slot-{worker_pid}-{uid}"


def remove_slot_folders(worker_pid: int) -> None:
    """What a killed worker's fork server left in /tmp (its processes died with it)."""
    pattern = slot_folder(worker_pid, "*")
    for folder in pattern.parent.glob(pattern.name):
        shutil.rmtree(folder, ignore_errors=True)


def sweep_stale() -> list[Path]:
    """Remove what killed graders left in /tmp: job folders (``ag-KEY``, with their cgroup
    and tmpfs home) and fork server folders (``ag-slot-PID-UID``) whose owner process is
    gone. A folder whose owner cannot be told, or is alive (another run), is left alone."""
    removed = []
    for folder in sorted(Path("/tmp").glob("ag-*")):
        slot = folder.name.startswith("ag-slot-")
        try:
            owner = int(folder.name.split("-")[2] if slot else (folder / OWNER).read_text())
        except (OSError, ValueError, IndexError):
            continue
        if _alive(owner):
            continue
        if slot:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            Runtime(None, key=folder.name.removeprefix("ag-")).close()
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def kernel_limits_statement() -> str:
    """Which limits hold for a whole kernel here (a control group, a bounded home)."""
    probe = Cgroup.create(f"autograder-probe-{os.getpid()}", GiB, 16)
    if probe is not None:
        probe.remove()
    home = "a tmpfs home limited in size and files" if os.getuid() == 0 and shutil.which(
        "mount") else "a home without a size limit (mounting a tmpfs needs root)"
    if probe is None:
        return ("memory and process limits per process only (no control group could be "
                f"made here); {home}")
    return f"memory and process limits for the whole kernel (cgroup v{probe.version}); {home}"


def mount_tmpfs(folder: Path, size: int, files: int) -> bool:
    """Mount a tmpfs of ``size`` bytes and ``files`` inodes on ``folder`` (root only)."""
    if os.getuid() != 0 or shutil.which("mount") is None:
        return False
    options = f"size={size},nr_inodes={files},mode=0755"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            check=False, capture_output=True)
    return result.returncode == 0


def bwrap_argv(home: Path, runtime: Path, book: Path) -> list[str]:
    """bubblewrap's arguments: namespaces and the file system the kernel sees."""
    argv = [shutil.which("bwrap") or "bwrap", *namespace_flags(), "--die-with-parent",
            "--clearenv"]
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


def kernel_env(sandboxed: bool, home: Path, book: Path, lang: str = "en") -> dict[str, str]:
    """The kernel's environment: fast mode on, one thread per kernel, a private home, the
    submission's language (d2lmini's messages and plots follow it)."""
    env = {
        "D2LMINI_LANG": lang,
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


def process_limits(limits: Limits) -> dict:
    """The limits ``autograder.launch`` sets in the kernel's own process (and its uid)."""
    return {k: v for k, v in asdict(limits).items()
            if k in ("memory", "cpu", "processes", "file_size", "uid")}


def kernel_argv(limits: Limits, home: Path, runtime: Path, book: Path,
                sandboxed: bool, cgroup_procs: list[str] = (), lang: str = "en") -> list[str]:
    """The kernel spec's argv: [launcher --enter cgroups --] [bwrap ... --] launcher (limits,
    uid) -- ipykernel. ``runtime``: the folder bound into the sandbox (connection, sockets)."""
    python = str(Path(sys.executable))
    launch = [python, "-m", "autograder.launch", json.dumps(process_limits(limits)), "--",
              python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    enter = [python, "-m", "autograder.launch", "--enter", ",".join(cgroup_procs), "--"] \
        if cgroup_procs else []
    if not sandboxed:
        return enter + launch
    setenv = [arg for key, value in kernel_env(True, home, book, lang).items()
              for arg in ("--setenv", key, value)]
    return enter + bwrap_argv(home, runtime, book) + setenv + ["--"] + launch


def write_kernelspec(runtime: Path, argv: list[str], env: dict[str, str]) -> Path:
    """A kernel spec under ``runtime/kernels`` (point JUPYTER_PATH at ``runtime``)."""
    folder = runtime / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": "Autograder sandbox", "language": "python",
            "interrupt_mode": "message", "env": env}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


class SandboxKernelManager(AsyncKernelManager):
    """Hands the connection file to the sandbox's uid (jupyter_client writes it 0600), and
    launches through the slot's fork server when the worker set one up for this job."""

    async def _async_pre_start_kernel(self, **kw):
        from autograder import prefork

        if prefork.active is not None and self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = prefork.ForkProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    def write_connection_file(self, **kwargs):
        result = super().write_connection_file(**kwargs)
        uid = os.environ.get("AUTOGRADER_KERNEL_UID")
        if uid and os.getuid() == 0:
            os.chown(self.connection_file, int(uid), int(uid))
        return result
