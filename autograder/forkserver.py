"""SANDBOX SIDE, before any student code: a fork server that starts kernels warm.

Every kernel pays about 1.5 CPU seconds to import torch (and 0.3 s more for IPython and
ipykernel) before the notebook's first line runs. This server does it once per job slot:
``python -m autograder.forkserver --control FD`` runs inside the slot's bubblewrap sandbox
(the same view of the system as a classic kernel's), imports what every lesson imports, and
then forks one kernel per job, on request.

Requests come only from the grader's worker, over the Unix socket ``FD`` (``SOCK_SEQPACKET``,
one JSON object per message; ``autograder.prefork`` is the other end and documents the
messages). A forked kernel closes that socket before it does anything else, so no student
code can speak to the server; the server itself never runs student code, never reads
anything a kernel wrote, and stays root inside the sandbox, out of reach of the kernels'
unprivileged uid (no signals, no ptrace).

What a forked kernel does before it becomes an ipykernel (``become_kernel``): it waits until
the grader has moved it into the job's control group, gives itself a new IPC namespace
and mount namespace with a fresh tmpfs home (sized like a classic kernel's; /tmp and
/dev/shm are read-only to it: nothing of an earlier job on the slot survives), copies the
warm home in, drops to the slot's uid for good (``launch.drop_privileges``), sets the job's limits
(``launch.apply_limits``) and environment, and re-seeds NumPy's global generator (Python's
``random`` re-seeds itself after a fork; tests/test_forkserver.py checks both differ).
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import traceback

from autograder import launch

CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
SEED = "/run/autograder-seed"  # the warm home every kernel starts with (read-only)
FAILED = 70  # exit status of a kernel that could not be set up
# what every lesson imports (torch's import alone is about 1.5 CPU seconds; torch.optim's
# first optimizer imports torch._dynamo, 1.1 s more)
WARM_MODULES = ("numpy", "torch", "torch.nn", "torch.nn.functional", "torch.optim",
                "torch._dynamo", "matplotlib", "matplotlib.pyplot", "IPython",
                "ipykernel.kernelapp", "ipykernel.ipkernel", "ipywidgets")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          options: str | None = None) -> None:
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(options)),
           f"mount {target}")


def isolate(home: str, request: dict) -> None:
    """A new IPC namespace (no System V object of an earlier kernel) and mount namespace
    with a fresh tmpfs home. The kernel can write nowhere else: /tmp and /dev/shm are the
    sandbox's, root's and read-only to it, as in a classic kernel (and /tmp holds the bound
    Python environment when it lives there, so it must not be covered)."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the server
    uid = request["uid"]
    mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={request['home_size']},nr_inodes={request['home_files']},mode=0755,"
          f"uid={uid},gid={uid}")


def warm_home(home: str, uid: int) -> None:
    """Copy the warm home (matplotlib's font list) in, owned by the kernel's uid."""
    if os.path.isdir(SEED):
        shutil.copytree(SEED, home, dirs_exist_ok=True)
    for folder, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            os.chown(os.path.join(folder, name), uid, uid)


def reseed_numpy() -> None:
    """NumPy's global generator, seeded in the server (an import draws from it), is copied
    into every fork: give each kernel a fresh one, as a fresh interpreter has. (Python's
    ``random`` re-seeds itself in a forked child.)"""
    sys.modules["numpy"].random.seed()


def become_kernel(request: dict, go: int) -> None:
    """In the forked child: wait for the grader's go, isolate, drop root, run ipykernel."""
    os.setsid()
    if os.read(go, 1) != b"g":  # the grader could not place us in the job's group
        os._exit(FAILED)
    os.close(go)
    env = request["env"]
    isolate(env["HOME"], request)
    warm_home(env["HOME"], request["uid"])
    launch.drop_privileges(request["uid"])
    launch.apply_limits(request["limits"])
    os.environ.clear()
    os.environ.update(env)
    os.chdir(env["HOME"])
    reseed_numpy()
    sys.argv = ["ipykernel_launcher", "-f", request["connection_file"]]
    from ipykernel import kernelapp
    kernelapp.launch_new_instance()


def fork_kernel(control: socket.socket, request: dict, log: int) -> int:
    """Fork a kernel; it waits on a pipe until ``go(pid)``. Returns its pid (this namespace)."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = FAILED
        try:
            control.close()
            os.close(go_write)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)  # the job's worker.log
            os.dup2(log, 2)
            os.close(log)
            for sig in (signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            become_kernel(request, go_read)
            status = 0
        except BaseException:  # noqa: BLE001 (the child must never return into the loop)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(go_read)
    os.close(log)
    _waiting[pid] = go_write
    return pid


_waiting: dict[int, int] = {}  # pid -> the write end of its go pipe


def go(pid: int, placed: bool) -> None:
    """Let the kernel ``pid`` start (``placed``) or end it (not placed in its group)."""
    fd = _waiting.pop(pid)
    try:
        os.write(fd, b"g" if placed else b"x")
    finally:
        os.close(fd)


def self_test(control: socket.socket) -> str | None:
    """None if a forked child can make its namespaces and mounts here, else why not."""
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            mount("tmpfs", "/home/student", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(FAILED)
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else "a forked kernel cannot make its own mount namespace here"


def warm_up() -> None:
    """Import what every kernel needs; no thread may run when we fork."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise RuntimeError(f"{threads} threads after the imports: forking would be unsafe")


def send(control: socket.socket, message: dict) -> None:
    control.send(json.dumps(message).encode())


def serve(control: socket.socket) -> None:
    """Answer the worker's requests until it closes the socket."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped by the system
    while True:
        data, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        if not data:
            return
        request = json.loads(data)
        try:
            if request["op"] == "fork":
                send(control, {"forked": fork_kernel(control, request, fds[0])})
            elif request["op"] == "go":
                go(request["pid"], request["placed"])
                send(control, {"went": request["pid"]})
            else:
                send(control, {"error": f"unknown request {request['op']!r}"})
        except Exception as err:  # noqa: BLE001 (reported to the worker, which falls back)
            send(control, {"error": f"{type(err).__name__}: {err}"})


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[argv.index("--control") + 1]))
    try:
        warm_up()
        problem = self_test(control)
    except Exception as err:  # noqa: BLE001
        problem = f"{type(err).__name__}: {err}"
    send(control, {"ready": problem is None, "problem": problem, "pid": os.getpid()})
    if problem is None:
        serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
