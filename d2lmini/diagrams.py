"""Pictures of the course's recurrent networks, drawn as plain SVG by code.

``show_diagram(name)`` returns an object that a notebook shows as the picture (inline SVG, so it
works offline and in the generated student notebooks); ``diagram_svg(name)`` returns the SVG
text; ``diagram_img(name)`` an ``<img>`` tag for a markdown cell, where it shows without running
any code. Nothing here imports matplotlib or IPython.

Every word a diagram draws is in ``LABELS[name][lang]``: a translation adds a dict under its
language key (``"zh"``; keys it lacks fall back to English). In labels, ``_{...}`` is a subscript
(``H_{t-1}``) and ``$t`` a value the drawing fills in (``string.Template``).
"""

import base64
import re
from string import Template
from xml.sax.saxutils import escape

from d2lmini.i18n import LANGUAGES, get_language

__all__ = ["DIAGRAMS", "LABELS", "Diagram", "diagram_svg", "diagram_img", "show_diagram"]

WIDTH = 700  # px: the width of a JupyterLab notebook's output area
SANS = "DejaVu Sans, Noto Sans CJK SC, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Noto Sans Mono CJK SC, Menlo, Consolas, monospace"
INK, GREY, RED = "#1f2937", "#6b7280", "#dc2626"
FILL = {  # (fill, stroke) per kind of thing drawn
    "input": ("#dbeafe", "#2563eb"), "hidden": ("#fef3c7", "#d97706"),
    "output": ("#dcfce7", "#16a34a"), "sigmoid": ("#fce7f3", "#db2777"),
    "tanh": ("#e0e7ff", "#4f46e5"), "cell": ("#f9fafb", "#9ca3af"),
    "seq0": ("#dbeafe", "#2563eb"), "seq1": ("#ffedd5", "#ea580c"),
    "path": ("#fff7ed", "#f59e0b"),
}

LABELS = {
    "unrolled_rnn": {"en": {
        "title": "An RNN unrolled over three time steps",
        "step": "t = $t",
        "x": "X_{$t}", "h": "H_{$t}", "o": "O_{$t}", "h0": "H_{0}",
        "shape_x": "(batch, vocab)", "shape_h": "(batch, hidden)", "shape_o": "(batch, vocab)",
        "begin": "begin_state()", "next": "to step 4",
        "w_xh": "W_{xh}", "w_hh": "W_{hh}", "w_hq": "W_{hq}",
        "eq_h": "H_{t} = tanh(X_{t} W_{xh} + H_{t-1} W_{hh} + b_{h})",
        "eq_o": "O_{t} = H_{t} W_{hq} + b_{q}",
        "shared": "The same W_{xh}, W_{hh}, W_{hq}, b_{h}, b_{q} at every step.",
        "cat": "torch.cat(outputs, dim=0): (num_steps * batch, vocab)",
    }, "zh": {
        "title": "沿三个时间步展开的循环神经网络",
        "next": "到第 4 步",
        "shared": "每个时间步共享同一组参数 W_{xh}、W_{hh}、W_{hq}、b_{h}、b_{q}。",
    }},
    "time_major": {"en": {
        "title": "Time-major rows: Y_hat against Y.T.reshape(-1)  (batch = 2, num_steps = 3)",
        "y": "Y", "y_shape": "(batch, num_steps)",
        "yt": "Y.T", "yt_shape": "(num_steps, batch)",
        "flat": "Y.T.reshape(-1)", "flat_shape": "(num_steps * batch,)",
        "yhat": "Y_hat", "yhat_shape": "(num_steps * batch, vocab)",
        "cell": "Y[$b,$t]", "seq": "b = $b", "col": "t = $t",
        "row": "step $t, seq $b",
        "rule": "Row i of Y_hat is step t = i // batch of sequence b = i % batch: "
                "i = t * batch + b.",
        "loss": "F.cross_entropy(Y_hat, Y.T.reshape(-1)) scores each row against its own "
                "target.",
        "wrong": "Y.reshape(-1) (no .T) would pair row 1 (step 0, seq 1) with Y[0,1] "
                 "(step 1, seq 0):",
        "wrong2": "wrong targets, and no error, since the shapes still match.",
    }, "zh": {
        "title": "时间优先的行：Y_hat 对应 Y.T.reshape(-1)（batch = 2，num_steps = 3）",
        "row": "第 $t 步，序列 $b",
        "rule": "Y_hat 的第 i 行是序列 b = i % batch 的第 t = i // batch 步：i = t * batch + b。",
        "loss": "F.cross_entropy(Y_hat, Y.T.reshape(-1)) 用每一行自己的目标为它计算损失。",
        "wrong": "Y.reshape(-1)（没有 .T）会把第 1 行（第 0 步，序列 1）与 Y[0,1]"
                 "（第 1 步，序列 0）配对：",
        "wrong2": "目标错了，却不会报错，因为形状仍然匹配。",
    }},
    "truncated_bptt": {"en": {
        "title": "Truncated backpropagation through time (sequential minibatches)",
        "batch": "minibatch $k", "h": "H_{$t}", "h0": "H_{0}", "begin": "begin_state()",
        "detach": "detach()",
        "backward": "loss.backward()",
        "fwd": "forward: the state's values are carried to the next minibatch",
        "bwd": "backward: the gradient of this minibatch's loss",
        "cut": "detach(): same values, no graph: backward() stops here",
        "random": "Random sampling: the minibatches are not consecutive, so each one "
                  "starts from\na fresh begin_state() instead.",
    }, "zh": {
        "title": "截断反向传播（顺序分区的小批量）",
        "batch": "小批量 $k",
        "fwd": "前向：状态的数值被传给下一个小批量",
        "bwd": "反向：这个小批量损失的梯度",
        "cut": "detach()：数值不变，但没有计算图：backward() 到此为止",
        "random": "随机采样：相邻的两个小批量在原序列中并不相邻，\n"
                  "所以每个小批量都从新的 begin_state() 开始。",
    }},
    "lstm_cell": {"en": {
        "title": "The LSTM cell",
        "c_prev": "C_{t-1}", "c": "C_{t}", "h_prev": "H_{t-1}", "h": "H_{t}", "x": "X_{t}",
        "shape_h": "(batch, hidden)", "shape_x": "(batch, vocab)",
        "f": "F_{t}", "i": "I_{t}", "c_tilde": "C\u0303_{t}", "o": "O_{t}",
        "sigma": "\u03c3", "tanh": "tanh",
        "path": "the additive cell path: C_{t} = F_{t} \u2299 C_{t-1} + I_{t} \u2299 C\u0303_{t}",
        "eq_i": "I_{t} = \u03c3(X_{t} W_{xi} + H_{t-1} W_{hi} + b_{i})",
        "eq_f": "F_{t} = \u03c3(X_{t} W_{xf} + H_{t-1} W_{hf} + b_{f})",
        "eq_o": "O_{t} = \u03c3(X_{t} W_{xo} + H_{t-1} W_{ho} + b_{o})",
        "eq_c": "C\u0303_{t} = tanh(X_{t} W_{xc} + H_{t-1} W_{hc} + b_{c})",
        "eq_cell": "C_{t} = F_{t} \u2299 C_{t-1} + I_{t} \u2299 C\u0303_{t}",
        "eq_h": "H_{t} = O_{t} \u2299 tanh(C_{t})",
        "legend": "\u03c3 sigmoid, \u2299 elementwise product; gates, C and H are all "
                  "(batch, hidden)",
    }, "zh": {
        "title": "长短期记忆网络（LSTM）的单元",
        "path": "记忆元的加法路径：C_{t} = F_{t} \u2299 C_{t-1} + I_{t} \u2299 C\u0303_{t}",
        "legend": "F 遗忘门，I 输入门，O 输出门，C\u0303 候选记忆元；\u03c3 为 sigmoid，"
                  "\u2299 为按元素乘法；门、C 和 H 都是 (batch, hidden)",
    }},
    "gru_cell": {"en": {
        "title": "The GRU cell",
        "h_prev": "H_{t-1}", "h": "H_{t}", "x": "X_{t}",
        "shape_h": "(batch, hidden)", "shape_x": "(batch, vocab)",
        "r": "R_{t}", "z": "Z_{t}", "h_tilde": "H\u0303_{t}", "one_minus": "1\u2212",
        "one_minus_z": "1 \u2212 Z_{t}", "reset": "R_{t} \u2299 H_{t-1}",
        "sigma": "\u03c3", "tanh": "tanh",
        "keep": "Z_{t} keeps the old state",
        "eq_r": "R_{t} = \u03c3(X_{t} W_{xr} + H_{t-1} W_{hr} + b_{r})",
        "eq_z": "Z_{t} = \u03c3(X_{t} W_{xz} + H_{t-1} W_{hz} + b_{z})",
        "eq_c": "H\u0303_{t} = tanh(X_{t} W_{xh} + (R_{t} \u2299 H_{t-1}) W_{hh} + b_{h})",
        "eq_h": "H_{t} = Z_{t} \u2299 H_{t-1} + (1 \u2212 Z_{t}) \u2299 H\u0303_{t}",
        "note_c": "the reset gate acts on H_{t-1} before the product with W_{hh}",
        "note_h": "Z_{t} keeps the old state, 1 \u2212 Z_{t} writes the candidate",
        "torch": "nn.GRU resets after the product instead: R_{t} \u2299 (H_{t-1} W_{hn} + "
                 "b_{hn})",
    }, "zh": {
        "title": "门控循环单元（GRU）",
        "keep": "更新门 Z_{t} 保留旧状态",
        "note_c": "重置门 R_{t} 在与 W_{hh} 相乘之前作用于 H_{t-1}",
        "note_h": "Z_{t} 保留旧状态，1 \u2212 Z_{t} 写入候选隐状态 H\u0303_{t}",
        "torch": "nn.GRU 则在乘法之后才重置：R_{t} \u2299 (H_{t-1} W_{hn} + b_{hn})",
    }},
}


# ---------------------------------------------------------------- drawing


def _text_svg(label, size):
    """SVG content of one line of ``label``: ``_{...}`` becomes a lowered, smaller tspan."""
    out, shift = [], round(0.3 * size, 1)
    for i, part in enumerate(re.split(r"_\{([^}]*)\}", label)):
        if i % 2:  # a subscript
            out.append(f'<tspan dy="{shift}" font-size="{round(0.72 * size, 1)}">'
                       f"{escape(part)}</tspan>")
        elif part:
            out.append(f'<tspan dy="{-shift}">{escape(part)}</tspan>' if i else escape(part))
    return "".join(out)


def plain_text(label):
    """``label`` as the text a reader sees: ``H_{t-1}`` -> ``Ht-1``."""
    return re.sub(r"_\{([^}]*)\}", r"\1", label)


class _Canvas:
    """An SVG drawing of fixed width; elements are appended in drawing order."""

    def __init__(self, name, height, title):
        self.name, self.height, self.title, self.parts = name, height, title, []
        self.markers = {}

    def text(self, x, y, label, size=14, anchor="middle", color=INK, mono=False, bold=False):
        """A label centred vertically on ``y``; ``\\n`` starts a new line below."""
        font = f' font-family="{MONO}"' if mono else ""
        weight = ' font-weight="bold"' if bold else ""
        lines = label.split("\n")
        top = y - (len(lines) - 1) * 0.6 * size + 0.35 * size
        for k, line in enumerate(lines):
            self.parts.append(
                f'<text x="{x}" y="{round(top + 1.2 * size * k, 1)}" font-size="{size}" '
                f'text-anchor="{anchor}" fill="{color}"{font}{weight}>'
                f"{_text_svg(line, size)}</text>")

    def rect(self, x, y, w, h, kind, rx=6, width=1.5, dash=None):
        fill, stroke = FILL[kind]
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}" '
                          f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dashes}/>')

    def box(self, cx, cy, w, h, kind, label, size=15, sub=None):
        """A box centred on (cx, cy) with a label (and a smaller second line ``sub``)."""
        self.rect(cx - w / 2, cy - h / 2, w, h, kind)
        if sub is None:
            self.text(cx, cy, label, size)
        else:
            self.text(cx, cy - 0.5 * size, label, size)
            self.text(cx, cy + 0.8 * size, sub, round(0.75 * size), color=GREY)

    def op(self, cx, cy, symbol, r=12, stroke=INK, size=18):
        """A pointwise operation: a circle holding ``symbol`` (⊙, +, 1−)."""
        self.parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="white" '
                          f'stroke="{stroke}" stroke-width="1.5"/>')
        self.text(cx, cy - 0.05 * size, symbol, size)

    def dot(self, x, y, color=INK):
        self.parts.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>')

    def line(self, *points, color=INK, width=1.6, arrow=True, dash=None, halo=False):
        """A polyline through ``points``; an arrowhead at the end; ``halo`` draws a white
        band under it first, so that it visibly passes over a line it crosses."""
        path = " ".join(f"{x},{y}" for x, y in points)
        if halo:
            self.parts.append(f'<polyline points="{path}" fill="none" stroke="white" '
                              f'stroke-width="{width + 6}"/>')
        head = f' marker-end="url(#{self._marker(color)})"' if arrow else ""
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                          f'stroke-width="{width}" stroke-linejoin="round"{dashes}{head}/>')

    def _marker(self, color):
        """The id of an arrowhead marker in ``color`` (ids carry the diagram's name, so that
        two diagrams inlined in one page do not share them)."""
        return self.markers.setdefault(color, f"d2l-{self.name}-arrow{len(self.markers)}")

    def svg(self, style=None, lang="en"):
        """The finished SVG document (``lang`` also picks the right CJK glyphs)."""
        defs = "".join(
            f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" '
            f'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
            for color, mid in self.markers.items())
        css = f' style="{style}"' if style else ""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
                f'height="{self.height}" viewBox="0 0 {WIDTH} {self.height}" role="img" '
                f'aria-label="{escape(plain_text(self.title), {chr(34): "&quot;"})}" '
                f'font-family="{SANS}" lang="{lang}" data-diagram="{self.name}"{css}>'
                f"<title>{escape(plain_text(self.title))}</title><defs>{defs}</defs>"
                f'<rect width="{WIDTH}" height="{self.height}" fill="white"/>'
                + "".join(self.parts) + "</svg>")


def _fill(label, **values):
    """``label`` with its ``$name`` placeholders replaced."""
    return Template(label).safe_substitute({k: str(v) for k, v in values.items()})


# ---------------------------------------------------------------- the diagrams


def _unrolled_rnn(L):
    """Three steps of H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h), O_t = H_t W_hq + b_q."""
    c = _Canvas("unrolled_rnn", 478, L["title"])
    c.text(WIDTH / 2, 18, L["title"], 16, bold=True)
    ys, xs, w = {"o": 86, "h": 216, "x": 346}, (250, 410, 570), 112
    c.box(90, ys["h"], w, 54, "hidden", L["h0"], sub=L["shape_h"])
    c.text(90, ys["h"] + 45, L["begin"], 12, mono=True, color=GREY)
    for t, x in enumerate(xs, start=1):
        c.text(x, 44, _fill(L["step"], t=t), 13, color=GREY)
        for key, kind in (("o", "output"), ("h", "hidden"), ("x", "input")):
            c.box(x, ys[key], w, 54, kind, _fill(L[key], t=t), sub=L[f"shape_{key}"])
        c.line((x, ys["x"] - 27), (x, ys["h"] + 29))  # X_t -> H_t
        c.text(x + 8, (ys["x"] + ys["h"]) / 2, L["w_xh"], 14, anchor="start")
        c.line((x, ys["h"] - 27), (x, ys["o"] + 29))  # H_t -> O_t
        c.text(x + 8, (ys["h"] + ys["o"]) / 2, L["w_hq"], 14, anchor="start")
        c.line((x - 160 + w / 2, ys["h"]), (x - w / 2 - 2, ys["h"]))  # H_{t-1} -> H_t
        c.text(x - 80, ys["h"] - 12, L["w_hh"], 14)
    c.line((xs[-1] + w / 2, ys["h"]), (WIDTH - 8, ys["h"]), dash="5,4")
    c.text(WIDTH - 40, ys["h"] + 16, L["next"], 11, color=GREY)
    for k, key in enumerate(("eq_h", "eq_o", "shared", "cat")):
        c.text(WIDTH / 2, 402 + 20 * k, L[key], 14 if k < 2 else 13,
               mono=key == "cat", color=INK if k < 2 else GREY)
    return c


def _grid(c, x, y, cells, kinds, cw=62, ch=32):
    """A table of ``cells`` (rows of labels), each cell filled by ``kinds`` (same layout)."""
    for r, row in enumerate(cells):
        for k, label in enumerate(row):
            c.rect(x + k * cw, y + r * ch, cw, ch, kinds[r][k], rx=0, width=1)
            c.text(x + k * cw + cw / 2, y + r * ch + ch / 2, label, 13, mono=True)


def _time_major(L):
    """Y (batch, steps) -> Y.T -> Y.T.reshape(-1), row by row next to Y_hat's rows."""
    B, T, top, ch, cw = 2, 3, 118, 32, 58
    c = _Canvas("time_major", 436, L["title"])
    c.text(WIDTH / 2, 18, L["title"], 15, bold=True)
    y_cells = [[_fill(L["cell"], b=b, t=t) for t in range(T)] for b in range(B)]
    _header(c, 56 + 1.5 * cw, 48, L["y"], L["y_shape"])
    for t in range(T):
        c.text(56 + cw * (t + 0.5), top - 12, _fill(L["col"], t=t), 12, color=GREY)
    for b in range(B):
        c.text(50, top + ch * b + ch / 2, _fill(L["seq"], b=b), 12, anchor="end", color=GREY)
    _grid(c, 56, top, y_cells, [[f"seq{b}"] * T for b in range(B)], cw, ch)
    c.line((236, top + ch), (264, top + ch))
    _header(c, 268 + cw, 48, L["yt"], L["yt_shape"])
    _grid(c, 268, top, [list(r) for r in zip(*y_cells, strict=True)], [["seq0", "seq1"]] * T,
          cw, ch)
    c.line((390, top + ch * 1.5), (418, top + ch * 1.5))
    flat = [y_cells[b][t] for t in range(T) for b in range(B)]
    _header(c, 420 + cw / 2, 84, L["flat"], L["flat_shape"])  # lower: the shapes are long
    _grid(c, 420, top, [[label] for label in flat], [[f"seq{i % B}"] for i in range(T * B)],
          cw, ch)
    _header(c, 600, 48, L["yhat"], L["yhat_shape"])
    for i in range(T * B):
        c.text(498, top + ch * i + ch / 2, str(i), 12, color=GREY)
        c.rect(514, top + ch * i, 180, ch, f"seq{i % B}", rx=0, width=1)
        c.text(604, top + ch * i + ch / 2, _fill(L["row"], t=i // B, b=i % B), 13)
    for k, key in enumerate(("rule", "loss", "wrong", "wrong2")):
        c.text(20, top + ch * T * B + 34 + 22 * k, L[key], 13, anchor="start",
               color=RED if k >= 2 else INK)
    return c


def _header(c, x, y, name, shape):
    """A column header at height ``y``: a name and, below it, its shape."""
    c.text(x, y, name, 15, mono=True, bold=True)
    c.text(x, y + 18, shape, 11, mono=True, color=GREY)


def _truncated_bptt(L):
    """Three sequential minibatches of three steps; the state crosses, the gradient stops."""
    c = _Canvas("truncated_bptt", 400, L["title"])
    c.text(WIDTH / 2, 18, L["title"], 16, bold=True)
    y, steps, starts, cuts = 130, 3, (110, 305, 500), (282.5, 477.5)
    c.text(44, y - 26, L["h0"], 14)
    c.text(6, y + 26, L["begin"], 11, mono=True, color=GREY, anchor="start")
    c.line((30, y), (starts[0] + 8, y))
    for k, x0 in enumerate(starts):
        _minibatch(c, L, k, x0, y, steps)
    for k, x in enumerate(cuts):
        c.line((starts[k] + 125 + 16, y), (starts[k + 1] + 25 - 18, y))
        c.line((x, y - 38), (x, y + 92), color=RED, width=4, arrow=False)
        c.text(x, y + 106, L["detach"], 13, mono=True, color=RED)
    c.line((starts[-1] + 125 + 16, y), (WIDTH - 12, y), dash="5,4")
    legend = 280
    c.line((30, legend), (80, legend))
    c.text(90, legend, L["fwd"], 13, anchor="start")
    c.line((80, legend + 24), (30, legend + 24), color=RED, dash="6,4")
    c.text(90, legend + 24, L["bwd"], 13, anchor="start")
    c.line((55, legend + 38), (55, legend + 58), color=RED, width=4, arrow=False)
    c.text(90, legend + 48, L["cut"], 13, anchor="start")
    c.text(20, legend + 92, L["random"], 13, anchor="start", color=GREY)
    return c


def _minibatch(c, L, k, x0, y, steps):
    """Minibatch ``k``: a frame, ``steps`` states joined forward, the gradient running back."""
    c.rect(x0, y - 60, 150, 150, "cell", rx=10)
    c.text(x0 + 75, y - 45, _fill(L["batch"], k=k + 1), 13, bold=True)
    xs = [x0 + 25 + 50 * s for s in range(steps)]
    for s, x in enumerate(xs):
        c.parts.append(f'<circle cx="{x}" cy="{y}" r="17" fill="{FILL["hidden"][0]}" '
                       f'stroke="{FILL["hidden"][1]}" stroke-width="1.5"/>')
        c.text(x, y, _fill(L["h"], t=k * steps + s + 1), 12)
        if s:
            c.line((xs[s - 1] + 17, y), (x - 19, y))
    c.line((xs[-1] + 8, y + 40), (xs[0] - 8, y + 40), color=RED, dash="6,4")
    c.text(x0 + 75, y + 72, L["backward"], 11, mono=True, color=RED)


def _lstm_cell(L):
    """The LSTM cell: four gate boxes on an input bus, the cell path across the top."""
    c = _Canvas("lstm_cell", 540, L["title"])
    c.text(WIDTH / 2, 18, L["title"], 16, bold=True)
    c.rect(110, 60, 460, 300, "cell", rx=14)
    c.text(340, 48, L["path"], 13, color=FILL["path"][1], bold=True)
    top, bus, path = 100, 322, FILL["path"][1]
    c.line((98, top), (WIDTH - 98, top), color=path, width=5)  # the additive cell path
    c.op(210, top, "\u2299", stroke=path)
    c.op(340, top, "+", stroke=path)
    _labelled_end(c, 50, top, L["c_prev"], L["shape_h"])
    _labelled_end(c, WIDTH - 50, top, L["c"], L["shape_h"])
    c.line((98, bus), (440, bus), arrow=False)  # H_{t-1} and X_t: the input of every gate
    _labelled_end(c, 50, bus, L["h_prev"], L["shape_h"])
    c.line((160, 384), (160, bus + 4))
    c.dot(160, bus)
    _labelled_end(c, 160, 402, L["x"], L["shape_x"])
    for x, kind in ((210, "sigmoid"), (290, "sigmoid"), (370, "tanh"), (440, "sigmoid")):
        c.line((x, bus), (x, 280))
        c.box(x, 262, 50, 34, kind, L["sigma" if kind == "sigmoid" else "tanh"], 15)
    _lstm_wires(c, L)
    _equations(c, 446, [("eq_i", "eq_f"), ("eq_o", "eq_c"), ("eq_cell", "eq_h")], L)
    c.text(WIDTH / 2, 522, L["legend"], 12, color=GREY)
    return c


def _lstm_wires(c, L):
    """Gate outputs into the ⊙ and + nodes, and tanh(C_t) ⊙ O_t out to H_t."""
    c.line((210, 245), (210, 114))  # F_t -> F ⊙ C_{t-1}
    c.text(204, 200, L["f"], 14, anchor="end")
    c.line((290, 245), (290, 180), (326, 180))  # I_t
    c.text(284, 215, L["i"], 14, anchor="end")
    c.line((370, 245), (370, 180), (354, 180))  # C̃_t
    c.text(376, 215, L["c_tilde"], 14, anchor="start")
    c.op(340, 180, "\u2299")
    c.line((340, 168), (340, 114))  # I ⊙ C̃ -> +
    c.dot(500, 100)
    c.line((500, 100), (500, 133))  # C_t -> tanh
    c.box(500, 150, 50, 30, "tanh", L["tanh"], 14)
    c.line((500, 165), (500, 206))
    c.line((440, 245), (440, 218), (486, 218))  # O_t
    c.text(434, 232, L["o"], 14, anchor="end")
    c.op(500, 218, "\u2299")
    c.line((512, 218), (WIDTH - 98, 218))
    _labelled_end(c, WIDTH - 50, 218, L["h"], L["shape_h"])


def _labelled_end(c, x, y, name, shape):
    """A state's name over its shape, centred on (x, y): where a line starts or ends."""
    c.text(x, y - 9, name, 15)
    c.text(x, y + 9, shape, 10, color=GREY)


def _equations(c, y, rows, L, xs=(20, 365)):
    """Equations in two columns, one row per pair of label keys."""
    for k, row in enumerate(rows):
        for x, key in zip(xs, row, strict=True):
            c.text(x, y + 24 * k, L[key], 14, anchor="start")


def _gru_cell(L):
    """The GRU cell as d2l writes it: reset before the product, Z keeps the old state."""
    c = _Canvas("gru_cell", 584, L["title"])
    c.text(WIDTH / 2, 18, L["title"], 16, bold=True)
    c.rect(110, 50, 470, 310, "cell", rx=14)
    top, bus, path = 100, 300, FILL["path"][1]
    c.line((98, top), (WIDTH - 98, top), color=path, width=4)  # the old state, kept by Z
    c.text(300, top - 14, L["keep"], 13, color=path, bold=True)
    _labelled_end(c, 50, top, L["h_prev"], L["shape_h"])
    _labelled_end(c, WIDTH - 50, top, L["h"], L["shape_h"])
    c.op(440, top, "\u2299", stroke=path)
    c.op(540, top, "+", stroke=path)
    c.dot(140, top)
    c.line((140, top), (140, bus), (440, bus), arrow=False)  # H_{t-1} down to the gates
    c.line((180, 384), (180, bus + 4))
    c.dot(180, bus)
    _labelled_end(c, 180, 402, L["x"], L["shape_x"])
    for x in (220, 440):  # the R and Z gates
        c.line((x, bus), (x, 278))
        c.box(x, 260, 50, 34, "sigmoid", L["sigma"], 15)
    _gru_wires(c, L)
    _equations(c, 446, [("eq_r", "eq_z")], L)
    for k, (eq, note) in enumerate((("eq_c", "note_c"), ("eq_h", "note_h"))):
        c.text(20, 476 + 40 * k, L[eq], 14, anchor="start")
        c.text(40, 494 + 40 * k, L[note], 12, anchor="start", color=GREY)
    c.text(20, 566, L["torch"], 12, anchor="start", color=GREY)
    return c


def _gru_wires(c, L):
    """R ⊙ H_{t-1} into the candidate; Z and 1 − Z mixing the old state and the candidate."""
    c.dot(140, 180)
    c.line((140, 180), (208, 180))  # H_{t-1} -> R ⊙ H_{t-1}
    c.line((220, 243), (220, 194))  # R_t
    c.text(214, 222, L["r"], 14, anchor="end")
    c.op(220, 180, "\u2299")
    c.line((232, 180), (323, 180))
    c.text(278, 166, L["reset"], 12)
    c.line((350, 250), (350, 199))  # X_t into the candidate
    c.text(350, 264, L["x"], 13)
    c.line((440, 243), (440, 114))  # Z_t -> Z ⊙ H_{t-1}
    c.text(446, 140, L["z"], 14, anchor="start")
    c.dot(440, 222)
    c.line((440, 222), (526, 222))  # Z_t -> 1 − Z_t
    c.op(540, 222, L["one_minus"], r=14, size=13)
    c.text(548, 250, L["one_minus_z"], 12, anchor="start")
    c.line((540, 208), (540, 194))
    c.line((377, 180), (526, 180), halo=True)  # H̃_t, over the Z_t line
    c.text(408, 168, L["h_tilde"], 14)
    c.box(350, 180, 50, 34, "tanh", L["tanh"], 14)
    c.op(540, 180, "\u2299")
    c.line((540, 168), (540, 114))


DIAGRAMS = {
    "unrolled_rnn": _unrolled_rnn,
    "time_major": _time_major,
    "truncated_bptt": _truncated_bptt,
    "lstm_cell": _lstm_cell,
    "gru_cell": _gru_cell,
}


def _labels(name, lang):
    """The labels of diagram ``name`` in ``lang`` (None: d2lmini's current language), English
    where a translation lacks one."""
    if name not in DIAGRAMS:
        raise ValueError(f"unknown diagram {name!r}: expected one of {', '.join(DIAGRAMS)}")
    if lang is None:
        lang = get_language()
    if lang not in LANGUAGES and lang not in LABELS[name]:
        raise ValueError(f"unknown language {lang!r}: expected one of {', '.join(LANGUAGES)}")
    return {**LABELS[name]["en"], **LABELS[name].get(lang, {})}


def diagram_svg(name, lang=None, *, style=None):
    """The SVG text of diagram ``name`` (one of ``DIAGRAMS``).

    Args:
        lang: the language of the labels, ``"en"`` or ``"zh"``; None: ``d2l.get_language()``.
        style: an optional CSS style for the root ``<svg>`` element.
    """
    labels = _labels(name, lang)
    return DIAGRAMS[name](labels).svg(style, lang if lang is not None else get_language())


def diagram_img(name, lang=None):
    """An HTML ``<img>`` of diagram ``name`` with the SVG inside as a data URI, for a markdown
    cell: it shows before any code runs. (JupyterLab's markdown drops inline ``<svg>`` but keeps
    data-URI images.) The markdown then holds one language: a translated edition needs its own.
    """
    svg = diagram_svg(name, lang)
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    alt = escape(plain_text(_labels(name, lang)["title"]), {'"': "&quot;"})
    return (f'<img alt="{alt}" src="data:image/svg+xml;base64,{data}" width="{WIDTH}" '
            f'style="max-width:100%">')


class Diagram:
    """A diagram a notebook shows as a picture: inline SVG in HTML outputs (JupyterLab keeps
    its text selectable and scales it to the output area), plain SVG elsewhere."""

    def __init__(self, name, lang=None):
        self.name, self.lang = name, lang if lang is not None else get_language()
        self.svg = diagram_svg(name, self.lang)

    def _repr_html_(self):
        svg = diagram_svg(self.name, self.lang, style="max-width:100%;height:auto")
        return f'<div class="d2l-diagram">{svg}</div>'

    def _repr_svg_(self):
        return self.svg

    def save(self, path):
        """Write the SVG to ``path``."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.svg)

    def __repr__(self):
        return f"Diagram({self.name!r}, lang={self.lang!r})"


def show_diagram(name, lang=None):
    """Diagram ``name`` as an object a notebook cell displays (end the cell with it).

    Args:
        name: ``"unrolled_rnn"``, ``"time_major"``, ``"truncated_bptt"``, ``"lstm_cell"`` or
            ``"gru_cell"``.
        lang: ``"en"`` or ``"zh"``; None (the default): the notebook's language,
            ``d2l.get_language()``. Labels a translation lacks are drawn in English.
    """
    return Diagram(name, lang)
