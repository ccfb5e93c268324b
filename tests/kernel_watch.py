"""Running notebooks on a loaded machine: slow is fine, stuck fails fast and says where.

nbclient's timeouts cannot tell a slow cell from a stuck one: a cell at load 10 may need
minutes, while a kernel that waits on nothing sits idle until the cell timeout (600 s by
default) and the suite runs past its budget. ``WatchedClient`` watches the kernel's CPU time
(its process and children) while a cell runs: a kernel that keeps computing, however slowly,
is left alone; one that used under ``IDLE_CPU_S`` of CPU in ``IDLE_S`` seconds is stuck. Then
its Python stacks are dumped (faulthandler, to its stderr), it is killed, and the
test fails with ``KernelHung`` naming the cell and showing the kernel's main-thread stack.
Nothing is retried.
"""

import os
import signal
import threading
import time
from queue import Empty

import psutil
import zmq
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

STARTUP_TIMEOUT_S = 180  # nbclient's 60 s is too short for several kernels starting at load 8
CELL_TIMEOUT_S = 600     # a ceiling for slow cells: the watch below catches stuck ones sooner
IDLE_S = 120             # a kernel this long without computing is waiting on nothing
IDLE_CPU_S = 1.0         # CPU seconds that still count as "not computing" over IDLE_S
SAMPLE_S = 5
POLL_SLICE_S = 2.0       # the longest single wait on a kernel channel (see _poll_in_slices)

# Run in the kernel at start-up: SIGUSR1 prints every thread's stack to the real stderr.
DUMP_ON_SIGUSR1 = ("import faulthandler as _f, signal as _s, sys as _y; "
                   "_f.register(_s.SIGUSR1, file=_y.__stderr__, all_threads=True); "
                   "del _f, _s, _y")


def patience(seconds, most=5.0):
    """``seconds`` of a quiet machine, stretched by how oversubscribed its cores are now.

    The factor is the 1-minute load average per core, at least 1 and at most ``most``. Use it
    for waits on work that only gets slower under load (a kernel starting, a Run All, a cell
    that trains), never for waits on something that must not happen at all.
    """
    factor = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * min(max(factor, 1.0), most)


class KernelHung(AssertionError):
    """A cell's kernel stopped computing while the client still waited for the cell."""


class WatchedClient(NotebookClient):
    """A ``NotebookClient`` whose cells fail fast when their kernel sits idle."""

    def __init__(self, nb, **kwargs):
        kwargs.setdefault("timeout", CELL_TIMEOUT_S)
        kwargs.setdefault("startup_timeout", STARTUP_TIMEOUT_S)
        extra = [*kwargs.pop("extra_arguments", []),
                 f"--IPKernelApp.exec_lines={DUMP_ON_SIGUSR1!r}"]
        super().__init__(nb, extra_arguments=extra, **kwargs)
        self.hung = None  # the KernelHung message once the watch fired

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            _poll_in_slices(channel)
        return kc

    async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                 store_history=True):
        watch = _Watch(self, cell, cell_index)
        watch.start()
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        except DeadKernelError as err:
            if self.hung:
                raise KernelHung(self.hung + _unread_reply(self.kc) + _main_stack(cell)) \
                    from err
            raise
        finally:
            watch.stop()


class _Watch(threading.Thread):
    """Samples the kernel's CPU time while one cell runs; kills a kernel that sits idle."""

    def __init__(self, client, cell, cell_index):
        super().__init__(daemon=True)
        self.client, self.cell, self.cell_index = client, cell, cell_index
        self.done = threading.Event()

    def stop(self):
        self.done.set()

    def run(self):
        pid = getattr(self.client.km.provisioner, "pid", None) if self.client.km else None
        if pid is None:
            return
        samples = []  # (monotonic time, CPU seconds of the kernel and its children)
        while not self.done.wait(SAMPLE_S):
            cpu = _cpu_seconds(pid)
            if cpu is None:  # the kernel is gone: nbclient reports that itself
                return
            samples.append((time.monotonic(), cpu))
            old = [s for s in samples if s[0] <= samples[-1][0] - IDLE_S]
            if old and samples[-1][1] - old[-1][1] < IDLE_CPU_S:
                self._kill(pid, samples[-1][1] - old[-1][1], samples[-1][0] - samples[0][0])
                return

    def _kill(self, pid, cpu, running):
        first_line = self.cell.source.strip().splitlines()[0][:80]
        self.client.hung = (
            f"cell {self.cell_index} ({first_line!r}) ran {running:.0f} s, and its kernel "
            f"used {cpu:.2f} s of CPU in the last {IDLE_S} s: it was waiting, not computing "
            f"(a deadlock, or a reply that never came), so it was killed. Load average "
            f"{os.getloadavg()[0]:.1f}.")
        try:
            os.kill(pid, signal.SIGUSR1)  # faulthandler: stacks to the kernel's stderr
            time.sleep(2)
            os.kill(pid, signal.SIGKILL)  # nbclient sees a dead kernel within a second
        except ProcessLookupError:
            pass


def _poll_in_slices(channel):
    """Make ``channel.get_msg(timeout)`` wait in polls of at most ``POLL_SLICE_S`` seconds.

    nbclient waits for a cell's reply with one poll as long as the cell timeout. Each new poll
    first looks at the socket's pending messages, so a wake-up lost by the asyncio loop (the
    socket's descriptor is edge-triggered; nbclient issue #312: cells with widgets sometimes
    block until the timeout) costs at most one slice instead of the whole timeout. The total
    timeout is unchanged: a reply that never comes still fails.
    """
    get_msg = channel.get_msg

    async def get_msg_in_slices(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(timeout=max(0.0, min(POLL_SLICE_S, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg_in_slices


def _unread_reply(kc):
    """Whether a message sat unread on the shell socket when the kernel was killed."""
    try:
        waiting = kc.shell_channel.socket.get(zmq.EVENTS) & zmq.POLLIN
    except (AttributeError, zmq.ZMQError):
        return ""
    return ("\nA reply sat unread on the shell socket: the client missed it." if waiting else
            "\nNo reply was waiting on the shell socket: the kernel never sent one.")


def _main_stack(cell):
    """The kernel's main-thread stack from faulthandler's dump in the cell's stderr.

    ipykernel forwards its file descriptor 2 to the cell, except under pytest
    (``PYTEST_CURRENT_TEST`` set), where the dump goes to the captured stderr instead.
    """
    text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")
    _, found, stack = text.partition("Current thread")
    return f"\nThe kernel's main thread:\n{found}{stack[:3000]}" if found else \
        "\nThe kernel's stacks are in its stderr (pytest's captured stderr)."


def _cpu_seconds(pid):
    """User + system CPU seconds of a process and its live descendants; None if it is gone."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total
