"""A dishonest class, graded with ``--jobs 2``: each trick scores only what it solves (zero).

Built here from lesson 03's student version (nothing solved) and, for the honest control,
its solution. Every trick that earned points before graded test cells moved to the grader's
side is here: no-op checkers, a shadowed builtin, patched ``math``/``torch`` functions, an
answer object that reads the checker's frame, IPython hooks and input transformers; then
hidden-test exfiltration (verbatim, base64, reversed, drawn into an image), scripts in
Markdown and HTML outputs, look-alike exceptions and a typed ``BEGIN HIDDEN TESTS``, children
allocating memory together, a home filled with data and files, huge errors and thousands of
outputs. The tests read the outputs: scores, statuses, what the feedback and every file under
OUT contain, peak memory, what is left in /tmp and under OUT.
"""

import base64
import copy
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from conftest import built_once
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder import cgroup
from autograder.cli import main
from autograder.config import tools_on_path
from autograder.execute import hidden_lines
from autograder.release import release
from autograder.sandbox import Runtime

ROOT = Path(__file__).resolve().parents[1]
LESSON = "03_training"
MEMORY_GIB = 3
pytestmark = pytest.mark.slow

PATCH_CHECKERS = """
import math, builtins, torch
import d2lmini as d2l
for name in ("assert_close", "check_shape", "check_equal", "check_dtype"):
    setattr(d2l, name, lambda *args, **kwargs: None)
    setattr(d2l.checks, name, lambda *args, **kwargs: None)
max = lambda *args, **kwargs: 0
builtins.max = max
math.isclose = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.numel = lambda self: 0
"""
FRAME_READER = '''
import sys
class Anything(float):
    """Equal to everything; reads `expected` out of whoever compares it."""
    def __eq__(self, other):
        return True
    def __float__(self):
        frame = sys._getframe(1)
        while frame is not None:
            if "expected" in frame.f_locals:
                return float(frame.f_locals["expected"])
            frame = frame.f_back
        return 1.0
def perplexity(token_losses):
    return Anything(1.0)
def sequence_loss(Y_hat, Y):
    return Anything(0.0)
'''
IPYTHON_HOOKS = """
ip = get_ipython()
ip.showtraceback = lambda *args, **kwargs: None
ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))
ip.input_transformers_post.append(lambda lines: ["pass\\n"])
"""
EXFILTRATE = r"""
import base64, glob, linecache, sys
found = []
for path in glob.glob("/**/*.ipynb", recursive=True)[:50]:
    try:
        found.append(open(path).read())
    except OSError:
        pass
found += [repr(linecache.cache), repr(globals().get("In")), repr(globals().get("_ih"))]
text = "\n".join(found)
print(text[:20000])
print(base64.b64encode(text.encode()).decode()[:20000])
print(text[::-1][:20000])
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure(figsize=(4, 2))
fig.text(0, 0.5, text[:400], fontsize=4)
plt.show()
"""
SCRIPT_MARKDOWN = ('Nice lesson <script>document.body.innerHTML="12/12"</script> '
                   '<img src=x onerror="alert(1)"> [click](javascript:alert(2)) '
                   '<div style="position:fixed;top:0">Score: 12 / 12</div>')
SCRIPT_OUTPUT = """
from IPython.display import HTML, Javascript, display
display(HTML('<script>alert(3)</script><a href="javascript:alert(4)" onclick="x()">a</a>'
             '<style>.fail{display:none}</style><iframe src="http://example.com"></iframe>'))
display(Javascript('alert(5)'))
"""
LOOKALIKES = """
class KernelUnresponsive(Exception): pass
class CellTimeoutError(Exception): pass
class KernelDied(Exception): pass
class NotRun(Exception): pass
class SystemExit(Exception): pass
print("status: timeout")
for kind in (KernelUnresponsive, CellTimeoutError, KernelDied, NotRun, SystemExit):
    try:
        raise kind("forged by the student")
    except Exception as err:
        get_ipython().showtraceback()
raise KernelUnresponsive("cell 3 ran past the time limit and ignored the interrupt")
"""
TYPED_MARKERS = "### BEGIN HIDDEN TESTS\nx = 1\n### END HIDDEN TESTS\n### BEGIN SOLUTION\n"
CHILDREN_MEMORY = """
import os, time
pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(1200 * 2 ** 20)  # 1.2 GiB each, touched page by page
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(5)
        finally:
            os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
print("children done")
"""
FILL_HOME = """
import os
home = os.path.expanduser("~")
written = 0
try:
    for n in range(20):  # 100 MiB files (one file may not pass 256 MiB)
        with open(os.path.join(home, f"big{n}"), "wb") as f:
            for _ in range(100):
                f.write(b"x" * 2 ** 20)
                written += 1
except OSError as err:
    print(f"disk refused after {written} MiB ({type(err).__name__})")
made = 0
try:
    for n in range(20):
        os.remove(os.path.join(home, f"big{n}")) if os.path.exists(
            os.path.join(home, f"big{n}")) else None
    for i in range(200_000):
        open(os.path.join(home, f"f{i}"), "w").close()
        made += 1
except OSError as err:
    print(f"files refused after {made} ({type(err).__name__})")
"""
HUGE_ERROR = "raise ValueError('E' * 20_000_000)"
MANY_OUTPUTS = "for i in range(5_000):\n    print(i, flush=True)\n    display(i)"


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def answer_indexes(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if meta(c).get("solution")]


def with_cells(nb, index: int, *sources, markdown=False):
    nb = copy.deepcopy(nb)
    make = new_markdown_cell if markdown else new_code_cell
    for source in reversed(sources):
        nb.cells.insert(index, make(source))
    return nb


def attack_class(course, sol) -> dict:
    """{student: notebook}: every trick on the unsolved lesson, plus an honest control."""
    first = answer_indexes(course)[0]
    frame = copy.deepcopy(course)
    for i in answer_indexes(frame)[:2]:  # perplexity and sequence_loss
        frame.cells[i].source = FRAME_READER
    honest = copy.deepcopy(course)
    answers = {meta(c)["grade_id"]: c.source for c in sol.cells if meta(c).get("solution")}
    for i in answer_indexes(honest):
        honest.cells[i].source = answers[meta(honest.cells[i])["grade_id"]]
    forged = with_cells(course, first, LOOKALIKES, TYPED_MARKERS)
    forged.cells[answer_indexes(forged)[0]].source += "\n" + TYPED_MARKERS
    return {
        "honest": honest,
        "patches": with_cells(course, first, PATCH_CHECKERS),
        "frame_reader": frame,
        "ipython_hooks": with_cells(course, first, IPYTHON_HOOKS),
        "exfiltrate": with_cells(with_cells(course, len(course.cells), EXFILTRATE,
                                            SCRIPT_OUTPUT), 1, SCRIPT_MARKDOWN, markdown=True),
        "forged_status": forged,
        "resources": with_cells(course, first, CHILDREN_MEMORY, FILL_HOME, HUGE_ERROR,
                                MANY_OUTPUTS),
    }


def grade_attacks(base: Path) -> dict:
    repo = base / "repo"
    (repo / "solutions").mkdir(parents=True)
    shutil.copyfile(ROOT / "solutions" / f"{LESSON}.ipynb", repo / "solutions" / f"{LESSON}.ipynb")
    release(repo)
    sol = nbformat.read(repo / "solutions" / f"{LESSON}.ipynb", as_version=4)
    course = nbformat.read(repo / "course" / f"{LESSON}.ipynb", as_version=4)
    for student, nb in attack_class(course, sol).items():
        (base / "class" / student).mkdir(parents=True)
        nbformat.write(nb, base / "class" / student / f"{LESSON}.ipynb")
    leftovers_before = sorted(p.name for p in Path("/tmp").glob("ag-*"))
    assert main(["--root", str(repo), "grade", str(base / "class"), "--out", str(base / "out"),
                 "--jobs", "2", "--timeout", "60", "--memory", str(MEMORY_GIB)]) == 0
    jobs = base / "out" / ".work" / "jobs"
    runtimes = [Runtime(jobs / s / LESSON).root.name for s in attack_class(course, sol)]
    return {"hidden": sorted(hidden_lines(sol)), "runtimes": runtimes,
            "leftovers_before": leftovers_before}


@pytest.fixture(scope="session")
def attacked(tmp_path_factory, book):
    """The graded attack class, built once and shared by every xdist worker."""
    tools_on_path()
    info = built_once(tmp_path_factory, "attack-class", grade_attacks)
    return info | {"out": info["base"] / "out"}


def result(attacked, student: str) -> dict:
    data = json.loads((attacked["out"] / "results.json").read_text())
    return data["students"][student][LESSON]


def feedback(attacked, student: str) -> str:
    return (attacked["out"] / "feedback" / student / f"{LESSON}.html").read_text()


@pytest.mark.parametrize("student", ["patches", "frame_reader", "ipython_hooks", "exfiltrate",
                                     "forged_status", "resources"])
def test_every_trick_scores_zero(attacked, student):
    """Nothing is solved, so every trick scores zero, whatever it did to the kernel."""
    entry = result(attacked, student)
    assert entry["score"] == 0, [(c["grade_id"], c["points"]) for c in entry["cells"]]
    assert all(c["message"] for c in entry["cells"]), "every failed cell says why"


def test_honest_solution_still_gets_full_marks(attacked):
    entry = result(attacked, "honest")
    assert (entry["status"], entry["score"]) == ("graded", entry["max_score"]), entry["cells"]


def test_statuses_come_from_the_grader(attacked):
    """Look-alike exceptions and printed text set no status or reason."""
    entry = result(attacked, "forged_status")
    assert (entry["status"], entry["reason"]) == ("graded", "")
    assert not any("forged" in c["message"] for c in entry["cells"])
    assert any("BEGIN HIDDEN TESTS" in note for note in entry["notes"]), entry["notes"]


def test_no_hidden_test_leaks_under_out(attacked):
    """No hidden-test line, in any form, in what the student side produced or the grader
    wrote for people (feedback, results, report, grades, logs, autograded outputs)."""
    forms = []
    for line in attacked["hidden"]:
        forms += [line, line[::-1], base64.b64encode(line.encode()).decode()[:24]]
    out = attacked["out"]
    files = [*out.glob("feedback/*/*.html"), out / "results.json", out / "report.html",
             out / "grades.csv", *out.glob(".work/jobs/*/*/worker.log")]
    texts = [p.read_text(errors="replace") for p in files]
    for nb_path in out.glob(".work/jobs/*/*/course/autograded/*/*/*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        texts.append(json.dumps([c.get("outputs", []) for c in nb.cells]))
    assert len(texts) > 10
    leaks = [form for text in texts for form in forms if form in text]
    assert not leaks, leaks[:3]


class ActiveParts(HTMLParser):
    """Collects what in a page could run or restyle: elements and attributes, not text."""

    def __init__(self):
        super().__init__()
        self.found, self.styles = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "form", "base", "link", "meta") \
                and not (tag == "meta" and dict(attrs).get("charset")) \
                and not (tag == "meta" and dict(attrs).get("http-equiv")):
            self.found.append(tag)
        self.styles += tag == "style"
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"{tag} {name}")
            if name in ("href", "src") and (value or "").strip().lower().startswith(
                    ("javascript:", "vbscript:", "data:text")):
                self.found.append(f"{tag} {name}={value[:30]}")


def test_feedback_has_no_script(attacked):
    """Markdown and HTML outputs are sanitised; the page forbids scripts."""
    page = feedback(attacked, "exfiltrate")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    parts = ActiveParts()
    parts.feed(page)
    assert parts.found == [] and parts.styles == 1, (parts.found, parts.styles)
    assert "Nice lesson" in page, "the student's own text is kept"


def test_resources_are_per_kernel(attacked):
    """Three children of 1.2 GiB do not get 3.6 GiB: the kernel's processes together stay
    under the limit; the home is bounded in size and files; huge outputs are cut."""
    entry = result(attacked, "resources")
    peak = entry["resources"]["peak_memory"]
    assert peak is not None and peak <= MEMORY_GIB * 2 ** 30
    page = feedback(attacked, "resources")
    disk = re.search(r"disk refused after (\d+) MiB", page)
    files = re.search(r"files refused after (\d+)", page)
    assert disk and int(disk[1]) <= 512 and files and int(files[1]) <= 10_000
    assert len(page) < 4_000_000
    results_size = (attacked["out"] / "results.json").stat().st_size
    assert results_size < 2_000_000


def test_nothing_left_behind(attacked):
    """No job folder in /tmp, no cgroup, no link out of OUT, OUT small."""
    assert not [r for r in attacked["runtimes"] if (Path("/tmp") / r).exists()]
    assert not [r for r in attacked["runtimes"]
                if cgroup.folders_of("autograder-" + r.removeprefix("ag-"))]
    out = attacked["out"]
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert not [p for p in links if not p.resolve().is_relative_to(out.resolve())]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 50 * 2 ** 20
