"""The course as students and instructors meet it: JupyterLab in a real (headless) Chromium.

Two JupyterLab servers (127.0.0.1, a free port, a token, throwaway config/runtime/data
folders, fast mode). Playwright drives Debian's ``chromium`` (never a downloaded browser).

The student's JupyterLab, started as a student starts it (plain ``jupyter lab``, this
environment's configuration), serves a temporary copy of ``course/``:

- it shows nbgrader's Validate button and none of the instructor's tools (no Create
  Assignment panel, no Nbgrader menu, no /formgrader);
- lesson 03 with every answer filled in runs; sliders of its training panel move; Train trains;
- a visible test cell of lesson 02 passes with a correct answer, then shows the test's message
  after a wrong answer is typed into the cell.

The instructor's JupyterLab, started as ``python -m autograder formgrader OUT`` starts it,
serves a class graded by ``python -m autograder grade`` from a Canvas download (test_lms):

- formgrader lists the submissions with their automatic scores;
- a manual grade and a comment entered there are what ``python -m autograder export`` writes;
- feedback generated and released from formgrader holds the comment and no hidden test.

Screenshots of each step go to ``$BROWSER_SCREENSHOTS`` (default ``screenshots/browser/`` in
the repository, git-ignored); the folder is printed at the end of the run.
Under ``CI=true`` a missing Chromium or Playwright fails; elsewhere the tests skip and say why.
"""

import contextlib
import csv
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from test_lms import LESSON as LMS_LESSON
from test_lms import TOP, downloads  # noqa: F401  (downloads: the graded Canvas class)

from autograder.cli import main as cli_main

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under CI) and says why
    expect = None

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
PANEL_LESSON = "03_training"
TEST_LESSON = "02_rnn_from_scratch"
# The wrong answer typed into TEST_LESSON's first exercise, and what its visible test must say.
WRONG_ANSWER = "return torch.nn.functional.one_hot(X, vocab_size).float()  # forgot X.T"
WRONG_MESSAGE = "expected shape"
SERVER_START_S, RUN_ALL_MS, CELL_MS = 120, 240_000, 120_000
# JupyterLab renders errors (and any stderr) as stderr text; an error ends with "XyzError: ...".
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
ERROR_LINE = r"^[\w.]*(Error|Exception|Interrupt)\b"
LAB_SETTINGS = {  # no news or update checks (no internet), and every cell kept in the DOM
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


# ---------------------------------------------------------------- browser and screenshots


def _unavailable(reason):
    """Fail under CI (the browser test must run there), else skip saying why."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run; apt-get install chromium)")
    pytest.skip(reason)


def _find_chromium():
    """Path to Debian's Chromium binary ($CHROMIUM overrides), or None."""
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        path = name and (shutil.which(name) or (Path(name).is_file() and name))
        if path:
            return str(path)
    return None


@pytest.fixture(scope="module")
def chromium():
    """Chromium's path, checked before anything slow starts."""
    if expect is None:
        _unavailable("playwright is not installed (pip install playwright; no browser download)")
    path = _find_chromium()
    if path is None:
        _unavailable("no chromium found (apt-get install chromium, or set $CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    """A headless Chromium driven by Playwright, with no sandbox and no background traffic."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(request):
    """The screenshot folder; printed at the end of the session."""
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or ROOT / "screenshots" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    yield folder
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when the tests pass
            reporter.write_line(f"\nbrowser screenshots: {folder}")


def _shoot(target, folder, name):
    """Save a screenshot of ``target`` (the page's viewport, or one element) as
    ``folder/name.png``."""
    target.screenshot(path=str(folder / f"{name}.png"))


# ---------------------------------------------------------------- notebooks


def _solution_sources(notebook):
    """{grade_id: source} of the answer cells of ``notebook``."""
    return {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in notebook.cells
            if cell.metadata.get("nbgrader", {}).get("solution")}


def _without_markers(source):
    """An answer as a student types it: the solution without nbgrader's markers."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def _fill_answers(stem, folder, only=None):
    """Copy answers from ``solutions/<stem>`` into ``folder/<stem>`` (the student's copy), as a
    student who solved every exercise (or those in ``only``) would have it."""
    answers = _solution_sources(nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", 4))
    path = folder / f"{stem}.ipynb"
    notebook = nbformat.read(path, 4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            if only is None or grade_id in only:
                cell.source = _without_markers(answers[grade_id])
    nbformat.write(notebook, path)
    return notebook


def _first_exercise(notebook):
    """(answer cell index, [its test cell indices]) of the first exercise in ``notebook``."""
    meta = [cell.metadata.get("nbgrader", {}) for cell in notebook.cells]
    answer = next(i for i, m in enumerate(meta) if m.get("solution") and not m.get("grade"))
    tests = []
    for i in range(answer + 1, len(meta)):
        if meta[i].get("solution"):
            break
        if meta[i].get("grade"):
            tests.append(i)
    return answer, tests


def _wrong_answer(source):
    """The answer cell ``source`` with its solution replaced by WRONG_ANSWER."""
    head, _, tail = source.partition("### BEGIN SOLUTION")
    indent = head[head.rfind("\n") + 1:]
    rest = tail.partition("### END SOLUTION")[2]
    return f"{head}{WRONG_ANSWER}\n{indent}{rest.lstrip(chr(10))}".rstrip()


# ---------------------------------------------------------------- the JupyterLab server


def _free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_lab_settings(config_dir):
    """User settings in the throwaway JUPYTER_CONFIG_DIR (see LAB_SETTINGS)."""
    for plugin, values in LAB_SETTINGS.items():
        path = config_dir / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _server_env(tmp):
    """The server's (and kernels') environment: throwaway Jupyter folders, fast mode, the venv's
    bin first on PATH (nbgrader calls ``alembic`` to create a gradebook)."""
    env = dict(os.environ, D2LMINI_FAST="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")  # kernels share the cores with other tests under xdist
    for name in ("config", "runtime", "data", "ipython"):
        (tmp / name).mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_DATA_DIR=str(tmp / "data"), IPYTHONDIR=str(tmp / "ipython"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    _write_lab_settings(tmp / "config")
    return env


def _instructor_course(root, exchange):
    """A throwaway nbgrader course under ``root/instructor`` with every lesson as a source
    assignment, and the nbgrader_config.py the formgrader reads from the server's cwd.
    (Unused here since formgrader is tested on a graded class; kept for other browser tests.)"""
    course = root / "instructor"
    for notebook in sorted((ROOT / "solutions").glob("*.ipynb")):
        (course / "source" / notebook.stem).mkdir(parents=True)
        shutil.copy(notebook, course / "source" / notebook.stem)
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = 'rnn-course'\nc.Exchange.root = {str(exchange)!r}\n")
    exchange.mkdir()
    return course


GENERATE = """\
import sys
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
api = NbGraderAPI(coursedir=CourseDirectory(root=sys.argv[1]))
for name in sys.argv[2:]:
    result = api.generate_assignment(name, force=True, create=True)
    if not result["success"]:
        sys.exit(f"generate_assignment {name} failed:\\n{result.get('log')}{result.get('error')}")
"""


def _generate_assignments(course, env):
    """Start ``nbgrader generate_assignment`` for every source assignment (into the
    gradebook and release/), in the background while the server starts."""
    names = sorted(p.name for p in (course / "source").iterdir())
    return subprocess.Popen([sys.executable, "-c", GENERATE, str(course), *names], env=env,
                            cwd=course, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _lab_command(root, port, token):
    return [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly"]


def _wait_until_up(proc, url, token, log):
    """Poll /api/status until the server answers; fail with its log if it dies or stalls."""
    deadline = time.monotonic() + SERVER_START_S
    request = urllib.request.Request(f"{url}/api/status",
                                     headers={"Authorization": f"token {token}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc, url, token):
    """Ask the server to shut down (it stops its kernels); terminate it if it does not."""
    request = urllib.request.Request(f"{url}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session, started by this fixture
            proc.wait()


@contextlib.contextmanager
def _serving(root, env, log):
    """JupyterLab serving ``root`` (also its working directory) in ``env``: yields
    ``(url, token)`` once it answers; shut down afterwards."""
    port, token = _free_port(), os.urandom(12).hex()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(_lab_command(root, port, token), cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(proc, url, token, log)
        yield url, token
    finally:
        _stop(proc, url, token)


@pytest.fixture(scope="module")
def lab(book, chromium, tmp_path_factory):
    """The student's JupyterLab: ``(url, token, root)`` where root holds ``course/`` (a copy of
    the student notebooks). Started like a student's ``jupyter lab``: nothing but this
    environment's Jupyter configuration (and throwaway user folders)."""
    missing = [f"course/{stem}.ipynb" for stem in (PANEL_LESSON, TEST_LESSON)
               if not (ROOT / "course" / f"{stem}.ipynb").is_file()]
    assert not missing, f"{missing} missing: run python -m autograder release"
    tmp = tmp_path_factory.mktemp("lab")
    root, env = tmp / "root", _server_env(tmp)
    shutil.copytree(ROOT / "course", root / "course")
    with _serving(root, env, tmp / "server.log") as (url, token):
        yield url, token, root


@pytest.fixture(scope="module")
def formgrader(downloads, chromium, tmp_path_factory):  # noqa: F811  (the fixture above)
    """The instructor's JupyterLab on a graded class (a copy of test_lms's Canvas download,
    graded): ``(url, token, course)``, in the environment and folder that
    ``python -m autograder formgrader OUT`` uses."""
    from autograder.course_dir import formgrader_env

    tmp = tmp_path_factory.mktemp("formgrader")
    course = tmp / "graded"
    shutil.copytree(downloads / "canvas", course, ignore=shutil.ignore_patterns(".work"))
    env = formgrader_env(course, _server_env(tmp))
    with _serving(course, env, tmp / "server.log") as (url, token):
        yield url, token, course


# ---------------------------------------------------------------- driving JupyterLab

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook in front
# True once every non-empty code cell has run, or a cell shows an error (Run All stops there).
ALL_RAN_JS = """([notebook, stderr, errorLine, upto]) => {
    if ([...document.querySelectorAll(notebook + ' ' + stderr)].some(
        e => new RegExp(errorLine, 'm').test(e.textContent))) return true;
    const cells = [...document.querySelectorAll(notebook + ' .jp-Cell')].slice(0, upto ?? Infinity)
        .filter(c => c.classList.contains('jp-CodeCell'))
        .filter(c => c.querySelector('.cm-content').textContent.trim() !== '');
    return cells.length > 0 && cells.every(
        c => /\\[\\d+\\]/.test(c.querySelector('.jp-InputPrompt').textContent));
}"""


@contextlib.contextmanager
def _tab(browser, shots, name):
    """A fresh browser tab; its last state is saved as ``<name>-last.png``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        _shoot(page, shots, f"{name}-last")
        context.close()


def _open_notebook(page, lab, path):
    """Open ``path`` (relative to the server root) in JupyterLab and wait for an idle kernel."""
    url, token, _ = lab
    workspace = Path(path).stem  # its own workspace: no tabs restored from another test
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/{path}?token={token}")
    _cells(page).first.wait_for(timeout=CELL_MS)
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=CELL_MS)


def _menu(page, menu, item):
    """Click ``menu`` in the menu bar, then ``item`` in it."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def _cells(page):
    return page.locator(f"{NOTEBOOK} .jp-Cell")


def _errors(page):
    """The text of every error output on the page."""
    texts = page.locator(f"{NOTEBOOK} {STDERR}").all_inner_texts()
    return [text for text in texts if re.search(ERROR_LINE, text, re.MULTILINE)]


def _run_all(page, above=None):
    """Run > Run All Cells (or, with ``above``, Run All Above that cell), and wait until every
    one of them ran or one failed."""
    if above is None:
        _menu(page, "Run", "Run All Cells")
    else:
        _cells(page).nth(above).locator(".jp-InputPrompt").click()
        _menu(page, "Run", "Run All Above Selected Cell")
    page.wait_for_function(ALL_RAN_JS, arg=[NOTEBOOK, STDERR, ERROR_LINE, above],
                           timeout=RUN_ALL_MS)


def _run_cell(page, index):
    """Select cell ``index`` and run it with Ctrl+Enter; wait until its prompt gets a new
    number."""
    cell = _cells(page).nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()
    prompt.click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "([el, before]) => /\\[\\d+\\]/.test(el.textContent) && el.textContent !== before",
        arg=[prompt.element_handle(), before], timeout=CELL_MS)
    return cell


def _type_into(page, index, source):
    """Replace the source of cell ``index`` as a student would: click, select all, type."""
    _cells(page).nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(source)  # typed as one input event: no auto-indent doubling
    page.keyboard.press("Escape")


def _slider(panel, label):
    """The widget slider of ``panel`` with this label."""
    return panel.locator(".widget-slider").filter(
        has=panel.page.locator("label.widget-label", has_text=re.compile(rf"^{label}$")))


def _move_to_min(slider):
    """Press Home on the slider handle (the keyboard way to drag it to its minimum)."""
    handle = slider.locator("[role=slider]")
    minimum = float(handle.get_attribute("aria-valuemin"))
    handle.focus()
    handle.press("Home")
    return minimum


def _panel(page):
    """The first training panel on the page: a VBox with a Train button of its own."""
    panels = page.locator(".widget-vbox").filter(
        has=page.locator(":scope > button.widget-button", has_text="Train"))
    panels.first.wait_for(timeout=CELL_MS)
    return panels.first


# Records every distinct plot image the output area shows while a run goes on.
WATCH_PLOTS_JS = """(output) => {
    window.plotSources = new Set();
    const note = () => output.querySelectorAll('img').forEach(i => window.plotSources.add(i.src));
    window.plotWatch?.disconnect();
    window.plotWatch = new MutationObserver(note);
    window.plotWatch.observe(output, {subtree: true, childList: true, attributes: true});
}"""


def _train(page, panel, *expected):
    """Press Train; wait until the output shows every string in ``expected`` and d2l.train's
    closing summary. Returns the output's text, the final plot's src and how many different
    plots were drawn during the run."""
    output = panel.locator(":scope > .widget-output")
    before = set(output.locator("img").evaluate_all("imgs => imgs.map(i => i.src)"))
    output.evaluate(WATCH_PLOTS_JS)
    panel.locator(":scope > button.widget-button", has_text="Train").click()
    for text in (*expected, re.compile(r"train perplexity \d")):  # the summary comes last
        expect(output).to_contain_text(text, timeout=RUN_ALL_MS)
    plot = output.locator("img").last
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 0, "the plot is not a decodable image"
    drawn = set(page.evaluate("() => [...window.plotSources]")) - before
    return output.inner_text(), plot.get_attribute("src"), len(drawn)


def _lr(output):
    """The learning rate in a panel's "Run N: TrainingConfig(lr=...)" line."""
    return float(re.search(r"\blr=([-+.\deE]+)", output).group(1))


# ---------------------------------------------------------------- the steps and the test


def _login(page, server):
    """Open JupyterLab with the token (its cookie then serves formgrader's API calls)."""
    url, token, _ = server
    page.goto(f"{url}/lab?token={token}")
    page.locator(".jp-LabShell").wait_for(timeout=CELL_MS)


def _instructor_tools(page):
    """What of nbgrader's instructor extensions the page shows: the Create Assignment
    panel, the Nbgrader menu; and its Validate button (a student's tool)."""
    return {"create assignment": page.locator("#nbgrader-create_assignemnt").count(),
            "nbgrader menu": page.get_by_role("menuitem", name="Nbgrader", exact=True).count(),
            "validate": page.locator(".validate-button").count()}


def student_lab_has_no_instructor_tools(lab, page, shots):
    """The student's JupyterLab: Validate on a lesson's toolbar; no Create Assignment
    panel, no Nbgrader menu, and /formgrader is not served."""
    url, token, _ = lab
    _open_notebook(page, lab, f"course/{TEST_LESSON}.ipynb")
    expect(page.locator(".validate-button")).to_be_visible()
    tools = _instructor_tools(page)
    assert tools == {"create assignment": 0, "nbgrader menu": 0, "validate": 1}, (
        f"the student's JupyterLab shows {tools}: is the student configuration installed "
        "(python -m pip install ./jupyter-config/student, part of requirements.txt)?")
    response = page.request.get(f"{url}/formgrader?token={token}")
    assert response.status == 404, f"/formgrader answered {response.status} to a student"
    _shoot(page, shots, "1-student-lab")


def visible_test_passes_then_explains_a_wrong_answer(lab, page, shots):
    """A student answers the first exercise of TEST_LESSON: its test cells pass in the UI;
    after typing a wrong answer, the visible test shows what was expected."""
    course = lab[2] / "course"
    student = nbformat.read(course / f"{TEST_LESSON}.ipynb", 4)
    answer, tests = _first_exercise(student)
    grade_id = student.cells[answer].metadata["nbgrader"]["grade_id"]
    _fill_answers(TEST_LESSON, course, only={grade_id})
    solution = _solution_sources(nbformat.read(ROOT / "solutions" / f"{TEST_LESSON}.ipynb", 4))
    _open_notebook(page, lab, f"course/{TEST_LESSON}.ipynb")
    expect(_cells(page)).to_have_count(len(student.cells))
    _run_all(page, above=tests[-1])
    _run_cell(page, tests[-1]).scroll_into_view_if_needed()
    _shoot(page, shots, "2-test-cell-passes")
    assert _errors(page) == [], f"{grade_id}: the correct answer fails its tests"
    _type_into(page, answer, _wrong_answer(solution[grade_id]))
    _run_cell(page, answer)
    cell = _run_cell(page, tests[0])
    expect(cell.locator(STDERR)).to_contain_text(WRONG_MESSAGE, timeout=CELL_MS)
    cell.scroll_into_view_if_needed()
    _shoot(page, shots, "3-test-cell-explains")


def training_panel_trains_in_lab(lab, page, shots):
    """Lesson 03 with every answer filled in runs from the Run menu; its panel renders; sliders
    moved with the keyboard reach the kernel; Train prints the run and draws curves."""
    _fill_answers(PANEL_LESSON, lab[2] / "course")
    _open_notebook(page, lab, f"course/{PANEL_LESSON}.ipynb")
    _run_all(page)
    assert _errors(page) == [], f"{PANEL_LESSON} with all answers fails in JupyterLab"
    panel = _panel(page)
    expect(panel.locator(".widget-slider")).to_have_count(5)
    hiddens = int(_move_to_min(_slider(panel, "hidden size")))
    epochs = int(_move_to_min(_slider(panel, "epochs"))) + 1
    _slider(panel, "epochs").locator("[role=slider]").press("ArrowRight")  # two points a curve
    expect(_slider(panel, "epochs").locator(".widget-readout")).to_have_text(str(epochs))
    panel.scroll_into_view_if_needed()
    _shoot(page, shots, "4-panel-sliders-moved")
    first, plot, drawn = _train(page, panel, f"num_epochs={epochs}", f"num_hiddens={hiddens}")
    _shoot(panel, shots, "5-panel-trained")
    runs = int(re.search(r"Run (\d+):", first).group(1))
    handle = _slider(panel, "learning rate").locator("[role=slider]")
    for _ in range(5):  # 10**0 -> 10**-0.5 in steps of 0.1
        handle.press("ArrowLeft")
    second, replot, _ = _train(page, panel, f"Run {runs + 1}:")
    _shoot(panel, shots, "6-panel-trained-again")
    assert _lr(second) < _lr(first), "the learning-rate slider did not reach the kernel"
    assert replot != plot, "the plot did not change with the second run"
    assert drawn >= 2, (
        f"the live plot was drawn {drawn} time(s) during a {epochs}-epoch run: its updates "
        "do not reach the panel's output area (an ipywidgets Output drops update_display_data)")


STEPS = (student_lab_has_no_instructor_tools, visible_test_passes_then_explains_a_wrong_answer,
         training_panel_trains_in_lab)


def test_course_in_jupyterlab(lab, browser, shots, subtests):
    """Each step as a subtest of one test: they share one JupyterLab server (xdist cannot
    split a test across workers), and a failing step does not hide the others."""
    for step in STEPS:
        with subtests.test(msg=step.__name__), _tab(browser, shots, step.__name__) as page:
            step(lab, page, shots)


# ---------------------------------------------------------------- the instructor's formgrader

MANUAL_POINTS, COMMENT = 1, "Look again at how the last partial batch is dropped."


def formgrader_lists_the_submissions_with_scores(formgrader, page, shots):
    """The instructor's JupyterLab has the tools the student's lacks; formgrader's manual
    grading page lists every graded submission with its automatic score."""
    url, _, course = formgrader
    _login(page, formgrader)
    page.goto(f"{url}/lab/tree/source/{LMS_LESSON}/{LMS_LESSON}.ipynb")
    expect(page.locator(".validate-button")).to_be_visible(timeout=CELL_MS)
    assert _instructor_tools(page) == {"create assignment": 1, "nbgrader menu": 1,
                                       "validate": 1}
    page.goto(f"{url}/formgrader/gradebook/{LMS_LESSON}/{LMS_LESSON}")
    expect(page.locator("td.score")).to_have_count(2, timeout=CELL_MS)
    names = page.locator("td.name a.name-shown").all_text_contents()
    scores = page.locator("td.score").all_text_contents()
    assert dict(zip(names, scores, strict=True)) == {"Doe, Jane": f"{TOP} / {TOP}",
                                                     "Smith, Bob": f"0 / {TOP}"}
    _shoot(page, shots, "7-formgrader-submissions")
    page.goto(url + page.locator("td.name a.name-shown", has_text="Doe, Jane")
              .get_attribute("href"))
    expect(page.get_by_text("Jane's notes")).to_be_visible(timeout=CELL_MS)
    assert page.evaluate("() => window.pwned") is None, "a student's script ran in formgrader"


# The URL of the Backbone model formgrader bound to a score or comment field, or null while
# none is. Formgrader binds its fields only when its fetch of the submission's grades and
# comments has answered, which is after the page's load event (where page.goto returns): a
# value typed before then has no change handler to save it, and the late render clears it.
# (formgrader.loaded is no sign: init() stops at "MathJax is not defined" when MathJax's CDN
# is out of reach, after starting those fetches.)
BOUND_MODEL_JS = """field => {
    const fg = window.formgrader;
    if (!fg || !fg.grades || !fg.grades.loaded || !fg.comments || !fg.comments.loaded)
        return null;
    const view = [...fg.grade_uis, ...fg.comment_uis].find(
        v => (v.$score && v.$score[0] === field) || (v.$comment && v.$comment[0] === field));
    return view ? view.model.url() : null;
}"""


def _save(page, field, value, **saved):
    """Type ``value`` into a formgrader field once formgrader has bound it to its model, leave
    the field (formgrader saves on change), and check that the server holds ``saved`` (e.g.
    ``manual_score=1``): the PUT's answer, then the grade or comment read back from its API."""
    model = page.wait_for_function(BOUND_MODEL_JS, arg=field.element_handle(timeout=CELL_MS),
                                   timeout=CELL_MS).json_value()
    model_url = urllib.parse.urljoin(page.url, model)
    with page.expect_response(lambda r: r.request.method == "PUT" and r.url == model_url,
                              timeout=CELL_MS) as put:
        field.fill(value)
        field.press("Tab")
    assert put.value.ok, f"formgrader did not save {model_url}: {put.value.status}"
    expect(field).to_have_value(value)
    stored = page.request.get(model_url)
    assert stored.ok, f"GET {model_url}: {stored.status}"
    stored = stored.json()
    assert {key: stored[key] for key in saved} == saved, f"{model_url} holds {stored}"


def manual_grade_and_comment_are_exported(formgrader, page, shots):
    """A manual grade on Bob's first test cell and a comment, entered in formgrader, are in
    the gradebook export reads: his exported score is the manual one."""
    url, _, course = formgrader
    _login(page, formgrader)
    page.goto(f"{url}/formgrader/gradebook/{LMS_LESSON}/{LMS_LESSON}")
    link = page.locator("td.name a.name-shown", has_text="Smith, Bob")
    link.wait_for(state="attached", timeout=CELL_MS)
    page.goto(url + link.get_attribute("href"))
    _save(page, page.locator("input.score").first, str(MANUAL_POINTS),
          manual_score=MANUAL_POINTS)
    _save(page, page.locator("textarea.comment").first, COMMENT, manual_comment=COMMENT)
    page.locator("input.score").first.scroll_into_view_if_needed()
    _shoot(page, shots, "8-formgrader-manual-grade")
    target = course / "grades-for-canvas.csv"
    assert cli_main(["export", str(course), "--to", "canvas", "--output", str(target),
                     "--assignment-id", f"{LMS_LESSON}=4567"]) == 0
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][5] == f"{LMS_LESSON} (4567)"
    assert {row[2]: row[5] for row in rows[2:]} == {"jdoe": str(TOP), "bsmith": str(MANUAL_POINTS),
                                                    "alee": "", "zzed": ""}


def feedback_is_generated_and_released(formgrader, page, shots):
    """Formgrader's Generate Feedback and Release Feedback for Bob: the page holds the
    comment and the manual score, and no hidden test; the released copy is in the exchange."""
    from autograder.execute import hidden_lines

    url, _, course = formgrader
    _login(page, formgrader)
    page.goto(f"{url}/formgrader/manage_submissions/{LMS_LESSON}")
    row = page.locator("tr", has=page.locator("td", has_text="Smith, Bob"))
    for action, done in (("generate-feedback", "Successfully generated feedback"),
                         ("release-feedback", "Successfully released feedback")):
        row.locator(f"td.{action} a").click()
        expect(page.locator(".modal-body")).to_contain_text(done, timeout=CELL_MS)
        _shoot(page, shots, f"9-formgrader-{action}")
        page.locator(".modal-footer button").first.click()
        expect(page.locator(".modal-body")).to_have_count(0, timeout=CELL_MS)
    text = (course / "feedback" / "bsmith" / LMS_LESSON / f"{LMS_LESSON}.html").read_text()
    assert html.escape(COMMENT) in text or COMMENT in text
    source = nbformat.read(course / "source" / LMS_LESSON / f"{LMS_LESSON}.ipynb", 4)
    assert [line for line in hidden_lines(source) if line in text] == []
    assert list((course / "exchange").glob("*/feedback/*.html")), "no feedback released"


INSTRUCTOR_STEPS = (formgrader_lists_the_submissions_with_scores,
                    manual_grade_and_comment_are_exported, feedback_is_generated_and_released)


def test_graded_class_in_formgrader(formgrader, browser, shots, subtests):
    """Each step as a subtest, in order, on one instructor server."""
    for step in INSTRUCTOR_STEPS:
        with subtests.test(msg=step.__name__), _tab(browser, shots, step.__name__) as page:
            step(formgrader, page, shots)
