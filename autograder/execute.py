"""nbgrader preprocessors the autograder adds: an Execute that runs graded test cells on the
grader's side and tolerates a dying kernel, an output size cap, and hidden-test removal."""

import json
import re
import time

import nbformat
from nbclient.exceptions import CellTimeoutError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Integer, Unicode

from autograder.i18n import language_of
from autograder.sandbox import SandboxKernelManager
from autograder.trusted import (
    Boundary,
    CallTimeout,
    KernelGone,
    KernelIgnoredInterrupt,
    TrustedTests,
    is_helper_cell,
    is_test_cell,
)

TIMEOUT = "CellTimeoutError"  # nbgrader's ename for a cell that ran out of time
DIED = "KernelDied"
NOT_RUN = "NotRun"
STUCK = "KernelUnresponsive"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KernelStopped(Exception):
    """The kernel died or never started: the rest of the notebook cannot run."""


class KernelStuck(KernelStopped):
    """A timed-out cell ignored the interrupt: the kernel answers nothing any more."""


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An error output nbgrader scores as a failure (an error in a test cell is zero)."""
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


def stream_output(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text)


class SandboxExecute(Execute):
    """nbgrader's Execute with the trust boundary: ordinary cells run in the sandbox kernel,
    graded test cells run on the grader's side (``autograder.trusted``).

    What happened is recorded here, in ``events`` (the grader's own record: a timeout, a
    kernel that died or stopped answering), never read back from the notebook's outputs.
    nbgrader drops a notebook whose kernel dies; here the cells run so far keep their
    outputs (and scores), the cell that killed the kernel says so, and every later graded
    cell gets a ``NotRun`` error so it scores zero rather than counting as silent success.
    """

    source_notebook = Unicode("", help="the instructor's source notebook of the lesson").tag(
        config=True)
    last_run = None  # the instance that ran last (one job at a time per worker process)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    def preprocess(self, nb, resources=None, km=None):
        self._running, self.events = None, []
        SandboxExecute.last_run = self
        source = nbformat.read(self.source_notebook, as_version=4)
        answers = {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells
                   if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
                   and "grade_id" in c.metadata.nbgrader}
        self.trusted = TrustedTests(source, answers, lambda: Boundary(self.km),
                                    lang=language_of(nb))
        self.test_ids = {gid for gid, c in self.trusted.source.items() if is_test_cell(c)}
        try:
            return super().preprocess(nb, resources, km)
        except Exception as err:  # the kernel, not the grader, failed: record it, go on
            self.events.append(stop_event(err, self._running))
            _mark_stopped(nb, self._running, err)
            return nb, resources
        finally:
            if self.trusted.boundary is not None:
                self.trusted.boundary.close()
                self.boundary_stats = dict(self.trusted.boundary.stats)

    def preprocess_cell(self, cell, resources, index):
        self._running = index
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in self.test_ids:
            return self._run_trusted(cell, gid, index), resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:  # interrupted, but the kernel was slow to go idle
            cell.setdefault("outputs", []).append(
                error_output(TIMEOUT, "the cell ran past the time limit and was interrupted"))
        if self._timed_out == index and not self._responsive():
            # the cell swallowed the interrupt; every later cell would time out in turn
            raise KernelStuck("ran past the time limit and ignored the interrupt")
        if gid is not None and is_helper_cell(self.trusted.source.get(gid, cell)):
            self.trusted.run_helper(gid)
        return cell, resources

    _timed_out = None

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = self._running
        self.events.append(("timeout", self._running, "ran longer than the time limit"))
        return await super()._async_handle_timeout(timeout, cell)

    def _run_trusted(self, cell, gid: str, index: int):
        """The graded test cell, run on the grader's side; its outputs are the grader's."""
        deadline = time.monotonic() + (self.timeout or 120)
        try:
            passed, message, printed = self.trusted.run_test(gid, deadline)
        except CallTimeout:
            self.events.append(("timeout", index, "ran longer than the time limit"))
            passed, message, printed = False, ("CellTimeoutError: the tested function ran "
                                               "past the time limit and was interrupted"), ""
        except KernelIgnoredInterrupt as err:
            raise KernelStuck(str(err)) from None
        except KernelGone as err:
            raise KernelStopped(str(err)) from None
        cell.outputs = [stream_output(printed)] if printed else []
        if not passed:
            kind, _, text = message.partition(": ")
            cell.outputs.append(error_output(kind or "AssertionError", text or message))
        cell.execution_count = None
        return cell

    def _responsive(self) -> bool:
        """Does the kernel answer a kernel_info request within the cell timeout?"""
        try:
            return self.wait_for_reply(self.kc.kernel_info()) is not None
        except (TimeoutError, CellTimeoutError):
            return False


def stop_event(err, index) -> tuple[str, int | None, str]:
    """The grader's record of why the notebook stopped early."""
    if index is None:
        return ("not started", None, f"the kernel did not start ({type(err).__name__}: {err})")
    if isinstance(err, KernelStuck):
        return ("stuck", index, f"cell {index + 1} {err}")
    return ("died", index, _reason(err, index))


def _mark_stopped(nb, index, err) -> None:
    """Say where the kernel stopped and fail every graded cell after it."""
    if index is None:
        reason, start = f"the kernel did not start ({type(err).__name__}: {err})", 0
    else:
        reason = _reason(err, index)
        cell = nb.cells[index]
        cell.setdefault("outputs", []).append(
            error_output(STUCK if isinstance(err, KernelStuck) else DIED, reason))
        start = index + 1
    for cell in nb.cells[start:]:
        if cell.cell_type == "code" and utils.is_grade(cell):
            cell.outputs = [error_output(NOT_RUN, f"not run: {reason}")]


def _reason(err, index) -> str:
    if isinstance(err, KernelStuck):
        return f"cell {index + 1} {err}"
    if isinstance(err, KernelStopped):
        return f"{err} (cell {index + 1})"
    return f"the kernel died in cell {index + 1} ({type(err).__name__})"


class TruncateOutput(NbGraderPreprocessor):
    """Cut every text of every output to ``max_chars`` and keep at most ``max_outputs``
    outputs per cell (nbgrader's LimitOutput counts lines only, so a single 10 MB line, or a
    20 MB exception message, would pass through)."""

    max_chars = Integer(20_000, help="characters kept per output text").tag(config=True)
    max_outputs = Integer(200, help="outputs kept per cell").tag(config=True)
    cell_bytes = Integer(2_000_000, help="bytes of outputs kept per cell").tag(config=True)
    notebook_bytes = Integer(10_000_000, help="bytes of outputs kept per notebook").tag(
        config=True)

    def preprocess(self, nb, resources):
        self._notebook_left = self.notebook_bytes
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        cell, resources = self._cut_outputs(cell, resources)
        if not hasattr(self, "_notebook_left"):  # used on a single cell, without preprocess
            self._notebook_left = self.notebook_bytes
        kept, budget = [], min(self.cell_bytes, self._notebook_left)
        for output in cell.get("outputs", []):
            size = len(json.dumps(output, default=str))
            if size > budget:
                kept.append(NotebookNode(output_type="stream", name="stdout", text=(
                    "... output truncated (the outputs of this cell passed the byte "
                    "budget) ...\n")))
                break
            budget -= size
            self._notebook_left -= size
            kept.append(output)
        if "outputs" in cell:
            cell.outputs = kept
        return cell, resources

    def _cut_outputs(self, cell, resources):
        outputs = cell.get("outputs", [])
        if len(outputs) > self.max_outputs:
            dropped = len(outputs) - self.max_outputs
            cell.outputs = outputs[:self.max_outputs] + [NotebookNode(
                output_type="stream", name="stdout",
                text=f"... output truncated ({dropped:,} more outputs) ...\n")]
        for output in cell.get("outputs", []):
            if "text" in output:
                output.text = self._cut(output.text)
            if "evalue" in output:
                output.evalue = self._cut(str(output.evalue))
            if "traceback" in output:
                output.traceback = [self._cut(str(t)) for t in output.traceback[-60:]]
            for mime, value in output.get("data", {}).items():
                if isinstance(value, str) and not mime.startswith("image/"):
                    output.data[mime] = self._cut(value)
                elif isinstance(value, str) and len(value) > 50 * self.max_chars:
                    output.data[mime] = ""  # an image of megabytes: drop it
        return cell, resources

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[:self.max_chars] + f"\n... output truncated ({len(text):,} characters) ...\n"


class HideHiddenTests(ClearHiddenTests):
    """For feedback: remove hidden tests from the source, and redact any line of them that
    shows up in an output (a traceback's code context, or a student printing ``In``)."""

    def preprocess(self, nb, resources):
        self._hidden = sorted(hidden_lines(nb, self.begin_test_delimeter,
                                           self.end_test_delimeter), key=len, reverse=True)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        cell, resources = super().preprocess_cell(cell, resources, index)
        for output in cell.get("outputs", []):
            redact_output(output, self._hidden)
        return cell, resources


def hidden_lines(nb, begin="BEGIN HIDDEN TESTS", end="END HIDDEN TESTS") -> set[str]:
    """The non-trivial lines (8+ characters, stripped) that only hidden tests contain: a line
    the student version also shows (``loss.backward()``) is no secret."""
    hidden, shown = set(), []
    for cell in nb.cells:
        region = None  # "hidden", "solution" (not shown to students either) or None
        for line in cell.source.split("\n"):
            if begin in line or "BEGIN SOLUTION" in line:
                region = "hidden" if begin in line else "solution"
            elif end in line or "END SOLUTION" in line:
                region = None
            elif region == "hidden" and len(line.strip()) >= 8:
                hidden.add(line.strip())
            elif region is None:
                shown.append(line)
    shown_text = "\n".join(shown)
    return {line for line in hidden if line not in shown_text}


def redact(text: str, hidden) -> str:
    """Replace each hidden line (also as it appears inside a repr) by a placeholder."""
    text = ANSI.sub("", text)
    for line in hidden:
        for form in {line, repr(line)[1:-1], line.replace('"', '\\"')}:
            text = text.replace(form, "[hidden test]")
    return text


def redact_output(output, hidden) -> None:
    """Redact hidden-test text in every string of one output, in place."""
    if "text" in output:
        output.text = redact(output.text, hidden)
    if "traceback" in output:
        output.traceback = [redact(entry, hidden) for entry in output.traceback]
    if "evalue" in output:
        output.evalue = redact(output.evalue, hidden)
    for mime, value in output.get("data", {}).items():
        if isinstance(value, str) and not mime.startswith("image/"):
            output.data[mime] = redact(value, hidden)
