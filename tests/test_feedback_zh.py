"""A Chinese submission's feedback is all Chinese: the grader's reasons (timeout, stuck or dead
kernel, grading too slow), its notes (edited, deleted, duplicated cells, truncated outputs,
memory) and the page's own words (output cut, image left out); the English page is unchanged.

The grader writes its reasons and notes in English (results.json, grades.csv and report.html
keep them so); ``feedback.render`` and the not-graded page of ``report`` translate them with
the templates of translations/zh/autograder.po.
"""

import base64
import copy
import html
import re

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from test_autograder_units import _release

from autograder import feedback, i18n, report
from autograder.execute import KernelStopped, KernelStuck, TruncateOutput, stop_event
from autograder.notes import restore_locked_cells, strip_invalid_metadata, submission_notes
from autograder.worker import status_of, submission_notes_after

STUB = "NotImplementedError: an answer this test uses is still the stub"
CJK = re.compile(r"[\u4e00-\u9fff]")
PROSE = re.compile(r"[A-Za-z]{2,}[ ,:;'()-]+[A-Za-z]{2,}")  # two English words in a row


def _notebook():
    """Cell 2: an output TruncateOutput cut; 3: an output past the page's cell budget; 4: an
    image shown and one left out; 5: the cell that timed out; 6: a MemoryError."""
    truncated = new_code_cell("print('x' * 10_000_000)")
    truncated.outputs = [new_output("stream", name="stdout", text="0" * 50_000)]
    TruncateOutput().preprocess_cell(truncated, {}, 1)
    long = new_code_cell("print('y' * 250_000)")
    long.outputs = [new_output("stream", name="stdout", text="1" * 250_000)]
    images = new_code_cell("plot()")
    images.outputs = [new_output("display_data", data={"image/png": base64.b64encode(
        b"\x89PNG" + b"0" * 30).decode()}),
        new_output("display_data", data={"image/png": "A" * 1_600_000})]
    memory = new_code_cell("x = bytearray(10 ** 12)")
    memory.outputs = [new_output("error", ename="MemoryError", evalue="",
                                 traceback=["MemoryError"])]
    return new_notebook(cells=[new_code_cell("x = 1"), truncated, long, images,
                               new_code_cell("while True:\n    pass"), memory])


def _page(lang, reason, notes, nb=None):
    rows = [{"grade_id": "f_none", "points": 0.0, "max_points": 1.0, "passed": False,
             "message": i18n.translate_message(STUB, lang)}]  # as grade_job passes them
    return feedback.render(nb or _notebook(), title="02: s", rows=rows, test_sources={},
                           status="timeout", reason=reason, notes=notes, hidden=[], lang=lang)


def _grader_text(page):
    """What the page says besides the student's code: tags, style and code blocks removed
    (outputs of digits: PROSE is slow on a long run of letters)."""
    page = re.sub(r"<style>.*?</style>|<pre class=\"code\">.*?</pre>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_a_chinese_page_of_a_timeout_and_a_truncated_output_has_no_english_sentence():
    status, reason = status_of([("timeout", 4, "ran longer than the time limit")])
    nb = _notebook()
    notes = submission_notes_after(nb)
    assert (status, notes) == ("timeout", ["cell 2: its output was truncated",
                                           "cell 6 hit the memory limit (MemoryError)"])
    page = _page("zh", reason, notes, nb)
    for chinese in ("第 5 个单元格运行超时，已被终止", "第 2 个单元格：输出被截断了",
                    "第 6 个单元格达到了内存限制（MemoryError）", "输出已截断（共 50,000 个字符）",
                    "输出在此截断（共 250,000 个字符）", "省略了一张 1,600,000 个字符的图片",
                    'alt="输出"'):
        assert chinese in page, chinese
    assert PROSE.findall(_grader_text(page)) == []


def test_the_english_page_keeps_its_exact_sentences():
    status, reason = status_of([("timeout", 4, "ran longer than the time limit")])
    nb = _notebook()
    page = _page("en", reason, submission_notes_after(nb), nb)
    for english in ("(status: timeout: cell 5 ran longer than the time limit and was stopped)",
                    "<li>cell 2: its output was truncated</li>",
                    "<li>cell 6 hit the memory limit (MemoryError)</li>",
                    "\n... output truncated (50,000 characters) ...\n",
                    "\n... output cut here (250,000 characters in all) ...",
                    "(an image of 1,600,000 characters was left out)", '<img alt="output" '):
        assert english in page, english
    assert not CJK.search(page)


def _every_note():
    """Every kind of note notes.py writes before the run (the validation error is nbgrader's)."""
    release = _release()
    edited, deleted, answer, twice, typed, bad = (copy.deepcopy(release) for _ in range(6))
    edited.cells[1].source = "assert True"
    del deleted.cells[1]
    del answer.cells[0]
    twice.cells.insert(1, copy.deepcopy(release.cells[0]))
    typed.cells.append(new_code_cell("### BEGIN HIDDEN TESTS\n"))
    bad.cells[0].metadata.nbgrader["schema_version"] = "x"
    notes = [n for nb in (edited, deleted, answer, twice, typed)
             for n in submission_notes(nb, release)]
    helper = copy.deepcopy(release)
    helper.cells.insert(1, new_code_cell("HELPER = 1", metadata={"nbgrader": {
        "grade": False, "grade_id": "helpers", "locked": True, "schema_version": 3,
        "solution": False, "task": False}}))
    notes += restore_locked_cells(copy.deepcopy(release), helper)
    return notes + strip_invalid_metadata(bad)


def _every_reason():
    events = [[("timeout", 1, "ran longer than the time limit")],
              [stop_event(KernelStuck("ran past the time limit and ignored the interrupt"), 2)],
              [stop_event(RuntimeError("dead"), 2)],
              [stop_event(KernelStopped("the kernel died while running the student's "
                                        "function"), 2)],
              [stop_event(KernelStopped("the kernel's stdin channel did not accept a "
                                        "connection"), 2)],
              [stop_event(RuntimeError("no kernel"), None)]]
    reasons = [status_of(e)[1] for e in events]
    return reasons + [reasons[2] + "; its processes went past the memory limit (2 GiB for all "
                                   "together)", "grading took longer than 600 s"]


def test_every_reason_and_note_of_the_grader_has_a_chinese_template():
    messages = _every_reason() + _every_note() + [
        "the kernel's processes went past the memory limit and were killed",
        "NotRun: not run: cell 3 ran past the time limit and ignored the interrupt",
        "CellTimeoutError: the tested function ran past the time limit and was interrupted",
        "KernelDied: the kernel died in cell 3 (DeadKernelError)", STUB, "no points"]
    assert len(_every_note()) == 7
    for english in messages:
        chinese = i18n.translate_message(english, "zh")
        assert CJK.search(chinese), english
        # nbgrader's validation error, jupyter's exception, nbgrader's marker: not the grader's
        third_party = re.search(r"\(('<'|RuntimeError|BEGIN HIDDEN TESTS).*\)", english, re.S)
        rest = chinese.replace(third_party.group(0)[1:-1], "") if third_party else chinese
        assert PROSE.findall(rest) == [], (english, chinese)
        assert i18n.translate_message(english, "en") == english


def test_the_not_graded_page_follows_the_submissions_language(tmp_path):
    results = [{"student": s, "lesson": "02", "reason": "grading took longer than 600 s",
                "max_score": 5.0, "feedback": None, **extra}
               for s, extra in (("zh", {"lang": "zh"}), ("en", {}))]
    report.write_feedback(tmp_path, results)
    zh = (tmp_path / "zh" / "02.html").read_text(encoding="utf-8")
    en = (tmp_path / "en" / "02.html").read_text(encoding="utf-8")
    assert "评分用时超过了 600 秒" in zh and PROSE.findall(_grader_text(zh)) == []
    assert ("<p>Your notebook <code>02.ipynb</code> could not be graded: grading took longer "
            "than 600 s.</p><p>Score: 0 / 5</p>") in en and "<title>02: not graded</title>" in en


@pytest.mark.parametrize("lang", ["zh"])
def test_every_template_of_the_autograder_catalog_keeps_its_placeholders(lang):
    from d2lmini.i18n import placeholders

    catalog = i18n.load_catalog(i18n.REPOSITORY / i18n.TRANSLATIONS / lang / "autograder.po")
    for entry in catalog:
        assert entry.msgstr and "fuzzy" not in entry.flags, entry.msgid
        assert sorted(placeholders(entry.msgid)) == sorted(placeholders(entry.msgstr)), entry.msgid
        if placeholders(entry.msgid):
            assert i18n.TEMPLATE_FLAG in entry.flags, entry.msgid
