"""The Chinese edition in a real JupyterLab: a lesson of ``course/zh/`` speaks Chinese.

Nothing tells the kernel the language but the notebook itself: JupyterLab names the notebook
in ``$JPY_SESSION_NAME`` and d2lmini reads its ``language`` metadata. With every answer of
lesson 02 filled in, the lesson runs up to its first plot, which is drawn with Chinese labels in
a CJK font; then a wrong answer typed into the first exercise gets the test's message in
Chinese. Screenshots: ``zh-1-plot.png``, ``zh-2-failure.png`` (and each tab's last state) in
``$BROWSER_SCREENSHOTS``. The server, the browser and the helpers are those of
``tests/test_browser.py``.
"""

import nbformat
import pytest
from test_browser import (  # noqa: F401  (browser, chromium, lab and shots are fixtures)
    CELL_MS,
    NOTEBOOK,
    ROOT,
    STDERR,
    _cells,
    _errors,
    _fill_answers,
    _first_exercise,
    _open_notebook,
    _run_all,
    _run_cell,
    _shoot,
    _solution_sources,
    _tab,
    _type_into,
    _wrong_answer,
    browser,
    chromium,
    expect,
    lab,
    shots,
)

pytestmark = pytest.mark.browser

LESSON = "02_rnn_from_scratch"
PLOT_CELL = "l02-22"  # d2l.plot: the recurrence with and without tanh
MARKDOWN_WORD = "独热向量"  # "one-hot vector", in the lesson's first sections
CHINESE_MESSAGE = "期望形状"  # "expected shape", d2l.check_shape's message in Chinese


def _index(notebook, cell_id):
    return next(i for i, cell in enumerate(notebook.cells) if cell.get("id") == cell_id)


def test_chinese_lesson_in_jupyterlab(lab, browser, shots):  # noqa: F811 (fixtures)
    """Chinese prose, a plot with Chinese labels, and a Chinese failure message."""
    folder = lab[2] / "course" / "zh"
    assert (folder / f"{LESSON}.ipynb").is_file(), "course/zh/ is missing: run release"
    student = _fill_answers(LESSON, folder)
    answer, tests = _first_exercise(student)
    grade_id = student.cells[answer].metadata["nbgrader"]["grade_id"]
    solution = _solution_sources(nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", 4))
    plot = _index(student, PLOT_CELL)
    with _tab(browser, shots, "zh-lesson") as page:
        _open_notebook(page, lab, f"course/zh/{LESSON}.ipynb")
        expect(page.locator(NOTEBOOK)).to_contain_text(MARKDOWN_WORD)
        _run_all(page, above=plot + 1)
        assert _errors(page) == [], f"{LESSON} (zh) with all answers fails in JupyterLab"
        image = _cells(page).nth(plot).locator(".jp-OutputArea-output img").first
        expect(image).to_be_visible(timeout=CELL_MS)
        assert image.evaluate("img => img.naturalWidth") > 0, "the plot is not an image"
        _cells(page).nth(plot).scroll_into_view_if_needed()
        _shoot(_cells(page).nth(plot), shots, "zh-1-plot")

        _type_into(page, answer, _wrong_answer(solution[grade_id]))
        _run_cell(page, answer)
        cell = _run_cell(page, tests[0])
        expect(cell.locator(STDERR)).to_contain_text(CHINESE_MESSAGE, timeout=CELL_MS)
        cell.scroll_into_view_if_needed()
        _shoot(page, shots, "zh-2-failure")
