"""The course's diagrams and training samples as JupyterLab shows them, in a real Chromium.

A small JupyterLab server (127.0.0.1, a free port, a random token, throwaway config/runtime/
data folders, fast mode: the server helpers of ``test_browser``) serves one temporary
notebook: a markdown cell holding a ``d2l.diagram_img``, a cell per ``d2l.show_diagram``
picture (in every language it has labels in) and a ``d2l.show_training_samples`` table. The
test checks that the markdown picture shows before anything runs, runs the notebook from the
Run menu, then checks in the page that each picture is an inline SVG with its labels, and
measures the text as Chromium laid it out (``getBBox``): no label outside the picture and no
two labels on top of each other. Screenshots go to ``$BROWSER_SCREENSHOTS`` (default
``screenshots/browser/``).
"""

import os
import subprocess

import nbformat
import pytest
from test_browser import (  # noqa: F401  (browser, chromium and shots are fixtures)
    CELL_MS,
    NOTEBOOK,
    _cells,
    _errors,
    _free_port,
    _lab_command,
    _open_notebook,
    _run_all,
    _server_env,
    _shoot,
    _stop,
    _tab,
    _wait_until_up,
    browser,
    chromium,
    expect,
    shots,
)

pytestmark = pytest.mark.browser

DIAGRAMS = ("unrolled_rnn", "time_major", "truncated_bptt", "lstm_cell", "gru_cell")
LSTM_LABELS = ("It", "Ft", "Ot", "C\u0303t", "Ct-1", "Ht-1", "Xt", "\u03c3", "tanh", "\u2299")
SAMPLES_CELL = """\
history = d2l.History(train_ppl=[30.0, 18.0, 12.0, 9.0], valid_epochs=[1, 2, 3, 4],
                      valid_ppl=[25.0, 15.0, 11.0, 9.5], tokens_per_sec=[1.0] * 4,
                      samples=["time traveller eeeeeeee", "time traveller the the the",
                               "time traveller and the <time>", "time traveller and the time"])
d2l.show_training_samples(history, num=3)"""
# Every <text> of an SVG as Chromium laid it out: labels outside the picture, labels that
# cover one another (more than a sliver: stacked lines may touch).
LAYOUT_JS = """(svg) => {
    const vb = svg.viewBox.baseVal;
    const boxes = [...svg.querySelectorAll('text')].map(t => {
        const b = t.getBBox();
        return {text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height};
    });
    const outside = boxes.filter(b => b.x < -0.5 || b.y < -0.5 || b.x + b.w > vb.width + 0.5
                                      || b.y + b.h > vb.height + 0.5).map(b => b.text);
    const overlaps = [];
    boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
        const ix = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
        const iy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
        if (ix > 2 && iy > 4) overlaps.push([a.text, b.text]);
    }));
    return {texts: boxes.map(b => b.text), outside, overlaps};
}"""


def _editions():
    """(diagram, language) for every diagram in every language it has labels in."""
    from d2lmini.diagrams import LABELS

    return [(name, lang) for name in DIAGRAMS for lang in LABELS[name]]


def _notebook(path):
    """A notebook: a diagram in a markdown cell (``d2l.diagram_img``), a code cell per
    diagram, then a training-samples table."""
    import d2lmini as d2l

    cells = [nbformat.v4.new_markdown_cell(f"Before running: {d2l.diagram_img('gru_cell')}"),
             nbformat.v4.new_code_cell("import d2lmini as d2l")]
    cells += [nbformat.v4.new_code_cell(f'd2l.show_diagram("{name}", lang="{lang}")')
              for name, lang in _editions()]
    cells.append(nbformat.v4.new_code_cell(SAMPLES_CELL))
    kernel = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):  # noqa: F811  (chromium: the fixture imported above)
    """A running JupyterLab ``(url, token, root)`` whose root holds ``diagrams.ipynb``."""
    tmp = tmp_path_factory.mktemp("diagram-lab")
    root, env = tmp / "root", _server_env(tmp)
    root.mkdir()
    _notebook(root / "diagrams.ipynb")
    port, token, log = _free_port(), os.urandom(12).hex(), tmp / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(_lab_command(root, port, token), cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(proc, url, token, log)
        yield url, token, root
    finally:
        _stop(proc, url, token)


def test_diagrams_and_samples_render_in_jupyterlab(lab, browser, shots):  # noqa: F811
    with _tab(browser, shots, "diagrams") as page:
        _open_notebook(page, lab, "diagrams.ipynb")
        markdown = _cells(page).first.locator(".jp-RenderedMarkdown img")
        expect(markdown).to_be_visible(timeout=CELL_MS)
        assert markdown.evaluate("img => img.naturalWidth") == 700, "markdown diagram broken"
        _shoot(_cells(page).first, shots, "diagram-in-markdown")
        _run_all(page)
        assert _errors(page) == [], "a diagram cell fails in JupyterLab"
        for name, lang in _editions():
            svg = page.locator(f'{NOTEBOOK} .jp-OutputArea-output '
                               f'svg[data-diagram="{name}"][lang="{lang}"]')
            expect(svg).to_be_visible(timeout=CELL_MS)
            box = svg.bounding_box()
            assert box["width"] > 400 and box["height"] > 200, f"{name} drawn at {box}"
            layout = svg.evaluate(LAYOUT_JS)
            where = f"{name} ({lang})"
            assert layout["outside"] == [], f"{where}: labels cut off: {layout['outside']}"
            assert layout["overlaps"] == [], f"{where}: labels overlap: {layout['overlaps']}"
            if (name, lang) == ("lstm_cell", "en"):
                missing = [t for t in LSTM_LABELS if t not in layout["texts"]]
                assert missing == [], f"lstm_cell lacks {missing}: {layout['texts']}"
            svg.scroll_into_view_if_needed()
            _shoot(svg, shots, f"diagram-{name}-{lang}")
        samples = _cells(page).last.locator(".jp-OutputArea-output").last
        expect(samples.locator("table")).to_contain_text("time traveller and the <time>")
        assert samples.locator("img").evaluate("img => img.naturalWidth") > 0
        samples.scroll_into_view_if_needed()
        _shoot(samples, shots, "training-samples")
