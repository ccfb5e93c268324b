"""The diagrams of d2lmini.diagrams: valid SVG, the lessons' labels, correct layouts."""

import base64
import re
import xml.etree.ElementTree as ET

import pytest
import torch

import d2lmini as d2l
from d2lmini import diagrams
from d2lmini.i18n import use_language

SVG = "{http://www.w3.org/2000/svg}"
NAMES = ("unrolled_rnn", "time_major", "truncated_bptt", "lstm_cell", "gru_cell")
KEY_LABELS = {  # what a reader must find in each picture (subscripts read inline)
    "unrolled_rnn": ["X1", "H1", "O1", "X3", "H3", "O3", "H0", "Wxh", "Whh", "Whq",
                     "(batch, vocab)", "(batch, hidden)", "begin_state()"],
    "time_major": ["Y_hat", "Y.T", "Y.T.reshape(-1)", "(batch, num_steps)",
                   "(num_steps * batch, vocab)", "step 0, seq 1", "step 2, seq 1"],
    "truncated_bptt": ["detach()", "begin_state()", "H0", "H1", "H9", "minibatch 3",
                       "loss.backward()"],
    "lstm_cell": ["It", "Ft", "Ot", "C\u0303t", "Ct", "Ct-1", "Ht", "Ht-1", "Xt", "\u03c3",
                  "tanh", "\u2299", "+", "Ct = Ft \u2299 Ct-1 + It \u2299 C\u0303t",
                  "Ht = Ot \u2299 tanh(Ct)"],
    "gru_cell": ["Rt", "Zt", "H\u0303t", "Ht", "Ht-1", "Xt", "1\u2212", "\u03c3", "tanh",
                 "(Rt \u2299 Ht-1) Whh",
                 "Ht = Zt \u2299 Ht-1 + (1 \u2212 Zt) \u2299 H\u0303t", "Ht-1 Whn + bhn"],
}


def _root(name, **kwargs):
    return ET.fromstring(d2l.diagram_svg(name, **kwargs))


def _texts(root):
    """The text of every <text> element, subscripts inline: ``W_{xh}`` reads ``Wxh``."""
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def _numbers(value):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", value)]


@pytest.mark.parametrize("name", NAMES)
def test_diagram_is_svg_of_notebook_width_with_a_title(name):
    root = _root(name)
    assert root.tag == f"{SVG}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    assert width == 700 and 200 < height < 700
    assert _numbers(root.get("viewBox")) == [0, 0, width, height]
    assert root.find(f"{SVG}title").text and root.get("role") == "img"
    assert root.get("lang") == "en" and root.get("data-diagram") == name


@pytest.mark.parametrize("name", NAMES)
def test_diagram_shows_its_key_labels(name):
    texts = _texts(_root(name))
    missing = [label for label in KEY_LABELS[name] if not any(label in t for t in texts)]
    assert missing == [], f"{name} lacks {missing}; it shows {texts}"


def _template_regex(label):
    """A regex for the plain text of ``label``, its ``$name`` placeholders matching a value."""
    parts = re.split(r"\$\w+", diagrams.plain_text(label))
    return re.compile(r"[\w-]+".join(re.escape(part) for part in parts))


@pytest.mark.parametrize("name", NAMES)
def test_every_label_of_the_dict_is_drawn(name):
    """All words come from LABELS (so a translation reaches all of them), and all are used."""
    texts = _texts(_root(name))
    for key, label in diagrams.LABELS[name]["en"].items():
        for line in label.split("\n"):
            assert any(_template_regex(line).search(t) for t in texts), f"{name}: {key} unused"


@pytest.mark.parametrize("name", NAMES)
def test_the_chinese_labels_translate_english_keys_with_the_same_placeholders(name):
    """Each zh label replaces an English one, fills the same ``$name`` values and is drawn."""
    english, chinese = diagrams.LABELS[name]["en"], diagrams.LABELS[name]["zh"]
    assert set(chinese) <= set(english) and "title" in chinese
    texts = _texts(_root(name, lang="zh"))
    for key, label in chinese.items():
        found = sorted(re.findall(r"\$\w+", label))
        assert found == sorted(re.findall(r"\$\w+", english[key])), f"{name}: {key}"
        for line in label.split("\n"):
            assert any(_template_regex(line).search(t) for t in texts), f"{name}: {key} unused"


@pytest.mark.parametrize("name", NAMES)
def test_shapes_lie_inside_the_picture_and_arrows_resolve(name):
    root = _root(name)
    width, height = float(root.get("width")), float(root.get("height"))
    for el in root.iter():
        xs = [float(el.get(a)) for a in ("x", "cx") if el.get(a) is not None]
        ys = [float(el.get(a)) for a in ("y", "cy") if el.get(a) is not None]
        points = _numbers(el.get("points", ""))
        xs, ys = xs + points[0::2], ys + points[1::2]
        assert all(0 <= x <= width for x in xs), f"{name}: {el.tag} at x={xs}"
        assert all(0 <= y <= height for y in ys), f"{name}: {el.tag} at y={ys}"
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)) and all(i.startswith(f"d2l-{name}-") for i in ids)
    refs = re.findall(r"url\(#([^)]+)\)", d2l.diagram_svg(name))
    assert refs and set(refs) <= set(ids)


def test_time_major_rows_follow_y_transposed_and_flattened():
    """The picture's three tables are Y, Y.T and Y.T.reshape(-1), in torch's own order."""
    B, T = 2, 3
    names = [[f"Y[{b},{t}]" for t in range(T)] for b in range(B)]
    index = torch.arange(B * T).reshape(B, T)  # index[b, t] names Y[b, t]
    flat = [n for row in names for n in row]
    expected = ([flat[i] for i in index.reshape(-1)] + [flat[i] for i in index.T.reshape(-1)]
                + [flat[i] for i in index.T.reshape(-1)])
    cells = [t for t in _texts(_root("time_major")) if re.fullmatch(r"Y\[\d,\d\]", t)]
    assert cells == expected
    rows = [t for t in _texts(_root("time_major")) if t.startswith("step ")]
    assert rows == [f"step {i // B}, seq {i % B}" for i in range(B * T)]


def test_subscripts_are_smaller_lowered_tspans():
    root = _root("unrolled_rnn")
    subs = [el for el in root.iter(f"{SVG}tspan") if el.text == "xh"]
    assert subs and all(float(el.get("dy")) > 0 and el.get("font-size") for el in subs)
    assert diagrams.plain_text("H_{t-1} W_{hh}") == "Ht-1 Whh"


def test_unknown_name_or_language_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown diagram 'lstm'.*unrolled_rnn, time_major, "
                                         "truncated_bptt, lstm_cell, gru_cell"):
        d2l.show_diagram("lstm")
    with pytest.raises(ValueError, match="unknown language 'fr'.*en, zh"):
        d2l.diagram_svg("gru_cell", lang="fr")


def test_a_translation_replaces_labels_and_falls_back_to_english(monkeypatch):
    zh = {"title": "LSTM \u5355\u5143 <&>", "legend": "\u03c3 \u662f sigmoid"}
    monkeypatch.setitem(diagrams.LABELS["lstm_cell"], "zh", zh)
    texts = _texts(_root("lstm_cell", lang="zh"))  # parses: "<&>" was escaped
    assert zh["title"] in texts and zh["legend"] in texts
    assert "Ht = Ot \u2299 tanh(Ct)" in texts  # not translated: English
    with use_language("zh"):  # lang=None follows the notebook's language
        assert d2l.show_diagram("lstm_cell").lang == "zh"
        assert zh["title"] in _texts(ET.fromstring(d2l.show_diagram("lstm_cell").svg))
    assert zh["title"] not in _texts(_root("lstm_cell", lang="en"))


def test_show_diagram_displays_inline_svg_scaled_to_the_output(tmp_path):
    diagram = d2l.show_diagram("gru_cell", lang="en")
    html = diagram._repr_html_()
    assert html.startswith('<div class="d2l-diagram"><svg') and "max-width:100%" in html
    ET.fromstring(html)  # well-formed, so JupyterLab's HTML renderer keeps it whole
    assert ET.fromstring(diagram._repr_svg_()).get("data-diagram") == "gru_cell"
    diagram.save(tmp_path / "gru.svg")
    assert (tmp_path / "gru.svg").read_text(encoding="utf-8") == diagram.svg
    assert repr(diagram) == "Diagram('gru_cell', lang='en')"


def test_diagram_img_holds_the_svg_as_a_data_uri_for_markdown():
    tag = d2l.diagram_img("time_major", lang="en")
    match = re.fullmatch(r'<img alt="([^"]+)" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" '
                         r'width="700" style="max-width:100%">', tag)
    assert match, tag
    assert match.group(1).startswith("Time-major rows")
    assert base64.b64decode(match.group(2)).decode("utf-8") == d2l.diagram_svg("time_major")
