"""Starts a kernel: join its control groups, set resource limits, drop root, exec.

``python -m autograder.launch --enter PROCS_FILE,... -- ARGV...`` runs OUTSIDE the sandbox:
it writes its pid into each cgroup.procs file (so bubblewrap and every process after it
belong to the kernel's control group), then execs ARGV (bubblewrap).
``python -m autograder.launch LIMITS_JSON -- ARGV...`` runs INSIDE the sandbox, where
LIMITS_JSON holds ``memory``, ``cpu``, ``processes``, ``file_size`` (bytes, seconds, count,
bytes) and optionally ``uid``. Kept free of third-party imports: it runs once per kernel start.
"""

import ctypes
import json
import os
import resource
import sys

PR_SET_NO_NEW_PRIVS = 38


def apply_limits(limits: dict) -> None:
    """Soft and hard limits for memory (address space), CPU seconds, processes, file size."""
    for key, which in (("memory", resource.RLIMIT_AS), ("cpu", resource.RLIMIT_CPU),
                       ("processes", resource.RLIMIT_NPROC),
                       ("file_size", resource.RLIMIT_FSIZE)):
        if limits.get(key):
            resource.setrlimit(which, (limits[key], limits[key]))


def drop_privileges(uid: int | None) -> None:
    """As root, become ``uid`` for good (its own process count makes RLIMIT_NPROC bite;
    root is exempt from it), and forbid regaining privileges through setuid programs."""
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def enter_cgroups(procs_files: list[str]) -> None:
    """Move this process into each control group (its children follow)."""
    for path in procs_files:
        with open(path, "w") as f:
            f.write(str(os.getpid()))


def main(argv: list[str]) -> None:
    command = argv[argv.index("--") + 1:]
    if argv[0] == "--enter":
        enter_cgroups([p for p in argv[1].split(",") if p])
        os.execv(command[0], command)
    limits = json.loads(argv[0])
    drop_privileges(limits.get("uid"))
    apply_limits(limits)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
