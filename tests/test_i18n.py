"""The Chinese edition (中文版): one source, no drift, messages in the notebook's language.

- A tiny lesson in a temporary repository goes through the whole catalog cycle: update
  (entries empty), translate, release, check (in sync), edit the English (stale), update
  (fuzzy), and a code translation that changes code is refused.
- The real course/zh/ has the English notebooks' code cells, graded cells, nbgrader metadata
  and checksums, and Chinese Markdown.
- d2lmini's messages, hints, widget labels and plot labels follow the language, and English
  output stays byte for byte what it was.
- Slow: every Chinese notebook runs headless in fast mode, the solutions (translated) passing
  every graded cell and the student version passing none, with Chinese failure messages; a
  Chinese submission earns the points of its English twin.
"""

import re
import shutil
import warnings
from pathlib import Path

import nbformat
import pytest
import torch
from test_notebooks import failure_text, graded_cells
from test_release import NAME, tiny_lesson

import d2lmini as d2l
from autograder import i18n
from autograder.cli import main
from autograder.config import tools_on_path
from d2lmini import i18n as d2l_i18n

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")
EN_COURSE = sorted((ROOT / "course").glob("*.ipynb"))
ZH_COURSE = sorted((ROOT / "course" / "zh").glob("*.ipynb"))


# ---------------------------------------------------------------- the catalog cycle


def _fill(path: Path, translations: dict[str, str]):
    """Translate the entries of the catalog at ``path``: {msgctxt or msgid: msgstr}."""
    catalog = i18n.load_catalog(path)
    for entry in catalog:
        key = entry.msgctxt or entry.msgid
        if key in translations:
            entry.msgstr = translations[key]
            if "fuzzy" in entry.flags:
                entry.flags.remove("fuzzy")
    path.write_text(str(catalog) + "\n", encoding="utf-8")


@pytest.fixture()
def tiny(tmp_path):
    """A repository with solutions/00_tiny.ipynb and an empty translations/zh/."""
    tools_on_path()
    root = tmp_path / "repo"
    (root / "solutions").mkdir(parents=True)
    nb = tiny_lesson()
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = 3  # a number\nprint('x is', x)",
                                                 id="ordinary"))
    nbformat.write(nb, root / "solutions" / f"{NAME}.ipynb")
    (root / "translations" / "zh").mkdir(parents=True)
    return root


def _check(root, capsys):
    code = main(["--root", str(root), "release", "--check"])
    return code, capsys.readouterr().err


def test_catalog_cycle_untranslated_then_in_sync_then_stale_then_fuzzy(tiny, capsys):
    """Every state of a translation is what --check says it is."""
    po = tiny / "translations" / "zh" / f"{NAME}.po"
    assert main(["--root", str(tiny), "release", "--update-catalogs"]) == 0
    code, err = _check(tiny, capsys)
    assert code == 1 and f"untranslated: translations/zh/{NAME}.po cell intro" in err
    assert "ordinary" not in err, "an untranslated code cell keeps its English code"

    _fill(po, {"intro": "# 小课", "ordinary": "x = 3  # 一个数\nprint('x 是', x)"})
    assert main(["--root", str(tiny), "release"]) == 0
    assert _check(tiny, capsys) == (0, "")
    zh = nbformat.read(tiny / "course" / "zh" / f"{NAME}.ipynb", as_version=4)
    assert zh.metadata["language"] == "zh" and i18n.language_of(zh) == "zh"
    assert [c.source for c in zh.cells if c.id in ("intro", "ordinary")] == [
        "# 小课", "x = 3  # 一个数\nprint('x 是', x)"]

    nb = nbformat.read(tiny / "solutions" / f"{NAME}.ipynb", as_version=4)
    nb.cells[0].source = "# Tiny, edited"
    nbformat.write(nb, tiny / "solutions" / f"{NAME}.ipynb")
    code, err = _check(tiny, capsys)
    assert code == 1
    assert f"stale (the English cell changed): translations/zh/{NAME}.po cell intro" in err
    assert "translations are out of date" in err

    assert main(["--root", str(tiny), "release", "--update-catalogs"]) == 0
    entry = next(e for e in i18n.load_catalog(po) if e.msgctxt == "intro")
    assert "fuzzy" in entry.flags and entry.msgstr == "# 小课"
    assert entry.previous_msgid == "# Tiny" and entry.msgid == "# Tiny, edited"
    code, err = _check(tiny, capsys)
    assert code == 1 and f"fuzzy: translations/zh/{NAME}.po cell intro" in err
    zh = nbformat.read(tiny / "course" / "zh" / f"{NAME}.ipynb", as_version=4)
    assert zh.cells[1].source == "# Tiny, edited", "a fuzzy translation is not used"


def test_a_code_translation_may_change_only_comments_and_strings(tiny, capsys):
    """A translated code cell that changes the code is refused and not used."""
    po = tiny / "translations" / "zh" / f"{NAME}.po"
    main(["--root", str(tiny), "release", "--update-catalogs"])
    _fill(po, {"intro": "# 小课", "ordinary": "x = 4  # 一个数\nprint('x 是', x)"})
    code, err = _check(tiny, capsys)
    assert code == 1 and f"changes the code (only comments and strings may change): " \
        f"translations/zh/{NAME}.po cell ordinary" in err
    assert i18n.same_code("x = 3  # a\nprint('a')", "x = 3  # 甲\nprint('甲')")
    assert not i18n.same_code("x = 3", "x = 4") and not i18n.same_code("f(a)", "f(b)")
    assert i18n.same_code('print(f"{a} of {b}")', 'print(f"{b} 中的 {a}")'), "may reorder"
    assert not i18n.same_code('print(f"{a}")', 'print(f"{a + 1}")'), "f-string code counts"


def test_test_cell_messages_are_catalogued_with_placeholders(tiny):
    """Messages of test cells (hidden ones too) are catalog entries; f-strings are
    templates whose placeholders are the source expressions; docstrings are not messages."""
    nb = nbformat.read(tiny / "solutions" / f"{NAME}.ipynb", as_version=4)
    nb.cells[-1].source = ('"""Check that double doubles."""\nn = 2\n'
                           'assert double(n) == 4, f"double({n}) should be 4, not {double(n)!r}"\n'
                           "### BEGIN HIDDEN TESTS\nassert double(0) == 0, 'zero stays zero'\n"
                           "### END HIDDEN TESTS")
    messages = i18n.message_strings(nb)
    assert messages["double({n}) should be 4, not {double(n)!r}"][1] is True
    assert messages["zero stays zero"] == ("double_value", False)
    assert not any(text.startswith("Check that") for text in messages)


@pytest.mark.slow
def test_an_edit_of_a_real_lesson_makes_its_chinese_cell_stale(tmp_path, capsys):
    """In a copy of the repository, editing one English Markdown cell of a lesson makes
    --check name the Chinese entry that no longer matches; the real files are untouched."""
    tools_on_path()
    root = tmp_path / "copy"
    for folder in ("solutions", "translations", "course"):
        shutil.copytree(ROOT / folder, root / folder)
    name = "02_rnn_from_scratch"
    nb = nbformat.read(root / "solutions" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.id != "l02-00")
    cell.source += "\n\nA sentence the translator has not seen."
    nbformat.write(nb, root / "solutions" / f"{name}.ipynb")
    code, err = _check(root, capsys)
    assert code == 1
    assert f"stale (the English cell changed): translations/zh/{name}.po cell {cell.id}" in err
    assert f"stale: course/zh/{name}.ipynb" in err and f"stale: course/{name}.ipynb" in err


# ---------------------------------------------------------------- the real Chinese course


def _meta(cell):
    return cell.metadata.get("nbgrader", {})


def test_every_english_lesson_has_a_chinese_twin():
    assert [p.name for p in ZH_COURSE] == [p.name for p in EN_COURSE]


@pytest.mark.parametrize("path", ZH_COURSE, ids=lambda p: p.stem)
def test_chinese_notebook_has_the_english_code_graded_cells_and_checksums(path):
    """Same cells in the same order, same ids and nbgrader metadata; graded and locked cells
    byte for byte; other code cells the same code; every Markdown cell in Chinese."""
    en = nbformat.read(ROOT / "course" / path.name, as_version=4)
    zh = nbformat.read(path, as_version=4)
    assert i18n.language_of(zh) == "zh" and i18n.language_of(en) == "en"
    assert [(c.cell_type, c.id) for c in zh.cells] == [(c.cell_type, c.id) for c in en.cells]
    for e, z in zip(en.cells, zh.cells, strict=True):
        if i18n.is_frozen(e):
            assert z.source == e.source and z.metadata == e.metadata, e.id
        elif e.cell_type == "code":
            assert i18n.same_code(e.source, z.source), f"{e.id}: the code changed"
            assert {k: v for k, v in _meta(z).items() if k != "checksum"} == \
                {k: v for k, v in _meta(e).items() if k != "checksum"}, e.id
        else:
            assert CJK.search(z.source), f"{path.name} cell {e.id} is not translated"
    graded = [(c.id, _meta(c)) for c in en.cells if _meta(c).get("grade")]
    assert graded == [(c.id, _meta(c)) for c in zh.cells if _meta(c).get("grade")]


def test_language_of_a_file_and_of_missing_metadata(tmp_path):
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert i18n.language_of(tmp_path / "a.ipynb") == "en"
    nb.metadata["language"] = "zh"
    assert i18n.language_of(nb) == "zh"
    nb.metadata["language"] = "fr"
    assert i18n.language_of(nb) == "en", "an edition that does not exist reads as English"


# ---------------------------------------------------------------- d2lmini in Chinese


def _message(check):
    with pytest.raises(AssertionError) as err:
        check()
    return str(err.value)


def _wrong_shape():
    d2l.check_shape(torch.zeros(2, 5, 28), (5, 2, 28), "one_hot(X, 28) for X of shape (2, 5)",
                    hints={(2, 5, 28): "did you transpose X? Time steps come first: use X.T"})


def test_check_messages_in_chinese_and_unchanged_in_english():
    english = ("one_hot(X, 28) for X of shape (2, 5): expected shape (5, 2, 28), got (2, 5, 28): "
               "did you transpose X? Time steps come first: use X.T")
    with d2l_i18n.use_language("en"):
        assert _message(_wrong_shape) == english
    with d2l_i18n.use_language("zh"):
        assert _message(_wrong_shape) == (
            "X 的形状为 (2, 5) 时的 one_hot(X, 28)：期望形状 (5, 2, 28)，"
            "实际得到 (2, 5, 28)：转置 X 了吗？时间步在前：使用 X.T")
        message = _message(lambda: d2l.assert_close(torch.ones(3), torch.zeros(3),
                                                     "outputs of rnn"))
        assert message.startswith("rnn 的输出：在索引 (0,) 处期望 0，实际得到 1")
        message = _message(lambda: d2l.check_dtype(torch.zeros(2, dtype=torch.int64),
                                                   torch.float32, "the sum of each one-hot vector"))
        assert message == ("每个独热向量的元素之和：期望数据类型 torch.float32，实际得到 "
                           "torch.int64")


def test_finished_english_messages_translate_with_templates():
    """What a test cell's own assert says (and what the grader records) translates after the
    fact: exact entries, f-string templates, and 'message: hint' halves."""
    assert d2l_i18n.translate(
        "W_xh: expected requires_grad=True, got False: call .requires_grad_(True)", "zh") == \
        "W_xh：期望 requires_grad=True，实际为 False：请调用 .requires_grad_(True)"
    assert d2l_i18n.translate("rnn: H_t must pass through tanh", "zh") == "rnn：H_t 必须经过 tanh"
    assert d2l_i18n.translate("one_hot(X, 5) for X of shape (3, 3): expected shape (3, 3, 5), "
                              "got (3, 3, 3): fix one_hot's shape first", "zh") == \
        "X 的形状为 (3, 3) 时的 one_hot(X, 5)：期望形状 (3, 3, 5)，" \
        "实际得到 (3, 3, 3)：先修正 one_hot 的形状"
    unknown = "something nobody wrote: a new message"
    assert d2l_i18n.translate(unknown, "zh") == unknown
    assert i18n.translate_message("AssertionError: rnn: H_t must pass through tanh", "zh") == \
        "AssertionError: rnn：H_t 必须经过 tanh"
    assert i18n.translate_message(
        "AssertionError: rnn delegates to a library's own implementation (sgd): this exercise "
        "earns points only for code you write yourself", "zh") == \
        "AssertionError: rnn 调用了库自带的实现（sgd）：这道练习只为你自己编写的代码计分"
    assert i18n.gettext("passed", "zh") == "通过" and i18n.gettext("passed", "en") == "passed"


def test_a_bare_assert_of_a_test_cell_shows_in_chinese_in_the_kernel(monkeypatch, tmp_path):
    """A test cell's own ``assert ..., "message"`` (no d2lmini call) reaches a Chinese kernel's
    output in Chinese, through the exception handler d2lmini installs at import."""
    from nbclient import NotebookClient

    monkeypatch.setenv(d2l_i18n.LANG_ENV, "zh")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import d2lmini as d2l"),
        nbformat.v4.new_code_cell('assert False, "rnn: H_t must pass through tanh"'),
        nbformat.v4.new_code_cell('assert False, "a message nobody translated"'),
        nbformat.v4.new_code_cell("print(d2l.get_language())")])
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o.evalue for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == ["rnn：H_t 必须经过 tanh", "a message nobody translated"]
    assert nb.cells[3].outputs[0].text == "zh\n", "the kernel goes on after the handler"


def test_language_from_the_environment_and_the_notebook(monkeypatch, tmp_path):
    """D2LMINI_LANG wins; else the notebook JupyterLab names in JPY_SESSION_NAME."""
    monkeypatch.delenv(d2l_i18n.LANG_ENV, raising=False)
    monkeypatch.delenv(d2l_i18n.SESSION_ENV, raising=False)
    assert d2l.get_language() == "en"
    shutil.copy(ZH_COURSE[0], tmp_path / "zh.ipynb")
    monkeypatch.setenv(d2l_i18n.SESSION_ENV, str(tmp_path / "zh.ipynb"))
    assert d2l.get_language() == "zh"
    monkeypatch.setenv(d2l_i18n.SESSION_ENV, str(EN_COURSE[0]))
    assert d2l.get_language() == "en"
    monkeypatch.setenv(d2l_i18n.LANG_ENV, "zh")
    assert d2l.get_language() == "zh"
    with d2l_i18n.use_language("en"):
        assert d2l.get_language() == "en"
    with pytest.raises(ValueError, match="language must be one of"):
        d2l.set_language("fr")


def test_panel_labels_follow_the_language():
    with d2l_i18n.use_language("zh"):
        panel = d2l.TrainingPanel(lambda config: None, corpus_sizes=(10000, -1))
        generation = d2l.GenerationPanel(lambda *args: "")
    assert panel.controls["lr"].description == "学习率" and panel.button.description == "训练"
    assert [label for label, _ in panel.controls["max_tokens"].options] == ["10,000 个词元",
                                                                           "整本书"]
    assert generation.button.description == "生成"
    english = d2l.TrainingPanel(lambda config: None)
    assert english.controls["lr"].description == "learning rate"


def test_training_summary_prints_in_chinese_and_the_exact_english_otherwise(capsys):
    """What ``d2l.train`` prints follows the language; the English (benchmarks parse it) is
    byte for byte what it was."""
    from test_d2lmini_models_training import VOCAB, repeating_loader, scratch_model

    history = d2l.History(train_ppl=[30.0, 12.345], valid_epochs=[1, 2], valid_ppl=[25.0, 11.5],
                          tokens_per_sec=[1.0, 12345.6], samples=["abc", "abcd"])
    short = d2l.History(train_ppl=[3.0], tokens_per_sec=[1234.0])
    assert str(history) == ("train perplexity 12.35, held-out perplexity 11.50 (best 11.50 at "
                            "epoch 2), 12,346 tokens/s")
    assert str(short) == "train perplexity 3.00, 1,234 tokens/s"
    with d2l_i18n.use_language("zh"):
        assert str(history) == ("训练困惑度 12.35，留出困惑度 11.50"
                                "（最佳 11.50，在第 2 个迭代周期），12,346 词元/秒")
        assert str(short) == "训练困惑度 3.00，1,234 词元/秒"
    for lang, sample in (("en", "sample: {!r}"), ("zh", "样本：{!r}")):
        torch.manual_seed(0)
        with d2l_i18n.use_language(lang):
            trained = d2l.train(scratch_model(8), repeating_loader(), VOCAB, lr=1.0, num_epochs=2,
                                prefix="abc", plot=False, progress=False)
            expected = [str(trained), sample.format(trained.samples[-1])]
        assert capsys.readouterr().out.splitlines() == expected
        assert CJK.search(expected[0]) if lang == "zh" else re.fullmatch(
            r"train perplexity [\d.]+, held-out perplexity [\d.]+ \(best [\d.]+ at epoch \d+\), "
            r"[\d,]+ tokens/s", expected[0])


def test_every_word_of_the_feedback_page_and_every_status_is_in_chinese():
    """The words feedback.py writes through its ``_t`` (Score, status, test, points, result,
    passed, failed) and the grader's statuses are in autograder.po; a Chinese page shows them."""
    import ast

    from autograder import feedback

    tree = ast.parse(Path(feedback.__file__).read_text(encoding="utf-8"))
    words = {c.value for call in ast.walk(tree) if isinstance(call, ast.Call)
             and getattr(call.func, "id", None) == "_t" and call.args
             for c in ast.walk(call.args[0]) if isinstance(c, ast.Constant)}
    assert {"Score", "status", "test", "points", "result", "passed", "failed"} <= words
    statuses = {"graded", "timeout", "crashed", "unreadable", "error"}
    untranslated = [w for w in sorted(words | statuses) if not CJK.search(i18n.gettext(w, "zh"))]
    assert untranslated == []
    rows = [{"grade_id": "one_hot_shape", "points": 0.0, "max_points": 2.0, "passed": False,
             "message": "AssertionError: wrong"},
            {"grade_id": "rnn_shape", "points": 1.0, "max_points": 1.0, "passed": True,
             "message": ""}]
    page = feedback.render(nbformat.v4.new_notebook(), title="02: s", rows=rows,
                           test_sources={}, status="graded", reason="", notes=[], hidden=[],
                           lang="zh")
    for word in ("得分", "状态", "已评分", "测试", "分", "结果", "通过"):
        assert word in page, word
    assert not re.search(r">(Score|status|graded|test|points|result|passed)\b", page)


def test_plot_labels_in_chinese_with_a_font_that_has_the_glyphs():
    """Labels translate, a CJK font is chosen, and drawing warns about no missing glyph."""
    import matplotlib

    matplotlib.use("Agg")
    before = dict(matplotlib.rcParams)
    try:
        with d2l_i18n.use_language("zh"), warnings.catch_warnings():
            warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would fail
            axes = d2l.plot([1, 2, 3], [[3, 2, 1], [2, 2, 2]], xlabel="epoch",
                            ylabel="perplexity", title="Training and held-out perplexity",
                            legend=["train", "held-out"])
            axes.figure.canvas.draw()
        assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
            "迭代周期", "困惑度", "训练困惑度与留出困惑度")
        assert [t.get_text() for t in axes.get_legend().get_texts()] == ["训练", "留出"]
        assert matplotlib.rcParams["font.sans-serif"][0] in d2l_i18n.CJK_FONTS
    finally:
        matplotlib.rcParams.update(before)


# ---------------------------------------------------------------- slow: run and grade


def zh_solution(name: str):
    """solutions/<name>.ipynb with the Chinese Markdown and code translations merged in (the
    solution cells keep the solution: their English source is not the student stub)."""
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    catalog = i18n.load_catalog(i18n.catalog_file(ROOT, "zh", name))
    return i18n.translated_notebook(nb, "zh", catalog)


def _execute(nb, workdir, monkeypatch, allow_errors):
    from nbclient import NotebookClient

    monkeypatch.setenv("D2LMINI_FAST", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(d2l_i18n.LANG_ENV, "zh")  # what JupyterLab tells the kernel, headless
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.stem for p in ZH_COURSE])
def test_chinese_solution_runs_headless_and_passes_every_graded_cell(name, tmp_path, monkeypatch,
                                                                     book):
    nb = _execute(zh_solution(name), tmp_path, monkeypatch, allow_errors=False)
    failures = {_meta(c)["grade_id"]: failure_text(c) for c in graded_cells(nb)}
    assert {gid: text for gid, text in failures.items() if text} == {}


@pytest.mark.slow
@pytest.mark.parametrize("path", ZH_COURSE, ids=lambda p: p.stem)
def test_chinese_student_version_gives_no_free_points_and_fails_in_chinese(path, tmp_path,
                                                                           monkeypatch, book):
    nb = _execute(nbformat.read(path, as_version=4), tmp_path, monkeypatch, allow_errors=True)
    failures = {_meta(c)["grade_id"]: failure_text(c) for c in graded_cells(nb)}
    assert [gid for gid, text in failures.items() if text is None] == []
    messages = [text for text in failures.values() if "NotImplementedError" not in text]
    assert all(CJK.search(text) for text in messages), messages


@pytest.mark.slow
def test_a_chinese_submission_earns_the_points_of_its_english_twin(tmp_path, book):
    """The same answers in the English and the Chinese notebook: the same grades."""
    from autograder.grade import main as grade_main  # noqa: F401  (the grader is importable)

    name = ZH_COURSE[0].stem
    for student, nb in [("en", nbformat.read(ROOT / "solutions" / f"{name}.ipynb", 4)),
                        ("zh", zh_solution(name))]:
        (tmp_path / "class" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "class" / student / f"{name}.ipynb")
    code = main(["--root", str(ROOT), "grade", str(tmp_path / "class"), "--out",
                 str(tmp_path / "out"), "--jobs", "1"])
    assert code in (0, 1)
    import csv

    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert rows["zh"]["status"] == rows["en"]["status"] == "graded", rows
    assert rows["zh"]["score"] == rows["en"]["score"] == rows["en"]["max_score"], rows

