"""GRADER SIDE: one control group per kernel, so that limits hold for the whole sandbox.

Per-process limits (``RLIMIT_AS``) let three children of 3 GiB each through; a control group
counts every process of the kernel together: ``memory`` (cgroup v2 ``memory.max``, v1
``memory.limit_in_bytes``) and ``pids`` (``pids.max``). The kernel's launcher joins the group
before it starts bubblewrap, so every process the student makes is inside it from the start.
Where no control group can be made (no cgroup file system, no permission), ``Cgroup.create``
returns None and the report says which limits are per process only.
"""

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str:
    """This process's cgroup path in a v1 controller (or v2 with controller "")."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller == "" and names == "") or controller in names.split(","):
            return path.lstrip("/")
    return ""


def _v2_root() -> Path | None:
    controllers = ROOT / "cgroup.controllers"
    if controllers.is_file() and {"memory", "pids"} <= set(controllers.read_text().split()):
        return ROOT / _own_path("")
    return None


def folders_of(name: str) -> dict[str, Path]:
    """The existing folders of the group ``name``, by controller."""
    v2 = _v2_root()
    candidates = [("memory", v2 / name), ("pids", v2 / name)] if v2 is not None else [
        (c, ROOT / c / _own_path(c) / name) for c in ("memory", "pids")]
    return {controller: folder for controller, folder in candidates if folder.is_dir()}


class Cgroup:
    """A kernel's control group(s): created before the kernel starts, removed after."""

    def __init__(self, folders: dict[str, Path], version: int):
        self.folders, self.version = folders, version

    @classmethod
    def create(cls, name: str, memory: int, processes: int) -> "Cgroup | None":
        """A new group limited to ``memory`` bytes and ``processes`` tasks, or None."""
        try:
            return cls._create(name, memory, processes)
        except OSError:
            return None

    @classmethod
    def _create(cls, name, memory, processes):
        v2 = _v2_root()
        if v2 is not None:
            folder = v2 / name
            folder.mkdir(exist_ok=True)
            (folder / "memory.max").write_text(str(memory))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(processes))
            return cls({"memory": folder, "pids": folder}, 2)
        folders = {}
        for controller in ("memory", "pids"):
            base = ROOT / controller
            if not (base / "cgroup.procs").is_file():
                raise OSError(f"no cgroup v1 {controller} controller")
            folder = base / _own_path(controller) / name
            folder.mkdir(exist_ok=True)
            folders[controller] = folder
        (folders["memory"] / "memory.limit_in_bytes").write_text(str(memory))
        with contextlib.suppress(OSError):  # without swap accounting this file is absent
            (folders["memory"] / "memory.memsw.limit_in_bytes").write_text(str(memory))
        (folders["pids"] / "pids.max").write_text(str(processes))
        return cls(folders, 1)

    @classmethod
    def remove_named(cls, name: str) -> None:
        """Remove the group ``name`` if it exists (what a killed worker left)."""
        folders = folders_of(name)
        if folders:
            cls(folders, 2 if _v2_root() is not None else 1).remove()

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid into to join (the launcher's --enter)."""
        return sorted({str(f / "cgroup.procs") for f in self.folders.values()})

    def peak_memory(self) -> int | None:
        """The most memory the group used at once, in bytes (None if not recorded)."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.folders["memory"] / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many times the kernel's processes were killed for memory."""
        try:
            if self.version == 2:
                events = (self.folders["memory"] / "memory.events").read_text().split()
                return int(dict(zip(events[::2], events[1::2], strict=False)).get("oom_kill", 0))
            control = (self.folders["memory"] / "memory.oom_control").read_text().split()
            return int(dict(zip(control[::2], control[1::2], strict=False)).get("oom_kill", 0))
        except (OSError, ValueError):
            return 0

    def kill_all(self) -> None:
        """SIGKILL every process still in the group."""
        for _ in range(20):
            pids = self._pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _pids(self) -> list[int]:
        pids = set()
        for folder in self.folders.values():
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
        return sorted(pids)

    def remove(self) -> None:
        """Kill what is left and remove the group's folders."""
        self.kill_all()
        for folder in set(self.folders.values()):
            for _ in range(20):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # still busy for a moment after the kill
                    time.sleep(0.05)
