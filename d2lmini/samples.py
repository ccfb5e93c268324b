"""What the model writes while it learns: greedy samples next to the perplexity curve.

``d2l.train`` records a greedy sample at every validation (``History.samples``, at the epochs
``History.valid_epochs``). ``show_training_samples(history)`` picks a few of them, from the
first to the last, and shows them as a table beside the curve, each one marked on it.
"""

import base64
import html
import io
import math
from dataclasses import dataclass

from d2lmini.i18n import gettext as _

__all__ = ["SampleRow", "TrainingSamples", "training_samples", "show_training_samples"]


@dataclass(frozen=True)
class SampleRow:
    """One recorded sample: the epoch after which it was generated and the perplexities then
    (``heldout_ppl`` is None when the run had no held-out text)."""

    epoch: int
    train_ppl: float
    heldout_ppl: float | None
    sample: str


def _spread(count, num):
    """``num`` indices out of ``range(count)``, evenly spread, first and last included."""
    if num >= count:
        return list(range(count))
    if num == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (num - 1)) for i in range(num)})


def training_samples(history, num=5):
    """``num`` of the samples a ``d2l.train`` run recorded, from first to last, as rows.

    Raises:
        ValueError: when the history holds no sample (``train(..., prefix=None)``).
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if not history.samples:
        raise ValueError("this History holds no samples: d2l.train records one at each "
                         "validation when prefix is a string (e.g. prefix='time traveller')")
    epochs = history.valid_epochs[-len(history.samples):]  # a sample at each validation
    heldout = dict(zip(history.valid_epochs, history.valid_ppl, strict=False))
    return [SampleRow(epochs[i], history.train_ppl[epochs[i] - 1], heldout.get(epochs[i]),
                      history.samples[i]) for i in _spread(len(history.samples), num)]


def _figure(history, rows):
    """The perplexity curves, each chosen sample's epoch marked with its row number."""
    from matplotlib.figure import Figure

    from d2lmini.plotting import _plain_ticks, _prepare_language

    _prepare_language()
    figure = Figure(figsize=(4.2, 3.0), layout="constrained")
    axes = figure.add_subplot()
    epochs = range(1, len(history.train_ppl) + 1)
    axes.plot(epochs, history.train_ppl, label=_("train"), marker="." if len(epochs) < 30 else None)
    if history.valid_ppl:
        axes.plot(history.valid_epochs[:len(history.valid_ppl)], history.valid_ppl,
                  label=_("held-out"), marker=".")
    for k, row in enumerate(rows, start=1):
        y = row.heldout_ppl if row.heldout_ppl is not None else row.train_ppl
        if math.isfinite(y):
            axes.annotate(str(k), (row.epoch, y), xytext=(0, 9), textcoords="offset points",
                          ha="center", fontsize=9, fontweight="bold",
                          bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec="0.4"))
    axes.set(xlabel=_("epoch"), ylabel=_("perplexity"), yscale="log",
             title=_("When each sample was written"))
    _plain_ticks(axes)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure, axes


class TrainingSamples:
    """A table of samples beside the perplexity curve; a notebook shows it as HTML, a
    terminal as text. ``rows`` are ``SampleRow``; ``figure`` and ``axes`` are matplotlib's."""

    def __init__(self, history, num=5):
        self.rows = training_samples(history, num)
        self.figure, self.axes = _figure(history, self.rows)

    def png(self) -> bytes:
        """The curve as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

    def _headers(self):
        heldout = any(row.heldout_ppl is not None for row in self.rows)
        return ["#", _("epoch"), _("train ppl"), *([_("held-out ppl")] if heldout else []),
                _("greedy sample")], heldout

    def _cells(self, k, row, heldout):
        ppl = [f"{row.train_ppl:.2f}"]
        if heldout:
            ppl.append("" if row.heldout_ppl is None else f"{row.heldout_ppl:.2f}")
        return [str(k), str(row.epoch), *ppl]

    def __str__(self):
        headers, heldout = self._headers()
        lines = ["  ".join(f"{h:>12}" for h in headers[:-1]) + "  " + headers[-1]]
        for k, row in enumerate(self.rows, start=1):
            cells = self._cells(k, row, heldout)
            lines.append("  ".join(f"{c:>12}" for c in cells) + "  " + repr(row.sample))
        return "\n".join(lines)

    def _repr_html_(self):
        headers, heldout = self._headers()
        pad = "padding:2px 8px"
        head = "".join(f'<th style="{pad};text-align:{"left" if h == headers[-1] else "right"}">'
                       f"{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f'<td style="{pad};text-align:right">{c}</td>'
                             for c in self._cells(k, row, heldout))
            + f'<td style="{pad};font-family:monospace;white-space:pre;text-align:left">'
              f"{html.escape(row.sample)}</td></tr>"
            for k, row in enumerate(self.rows, start=1))
        image = base64.b64encode(self.png()).decode("ascii")
        return (f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:center">'
                f'<img alt="{html.escape(_("perplexity per epoch"))}" '
                f'src="data:image/png;base64,{image}" style="max-width:380px"/>'
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def __repr__(self):
        return str(self)


def show_training_samples(history, num=5):
    """How a model's greedy text evolved over a ``d2l.train`` run, beside its perplexity.

    End a notebook cell with it (``d2l.show_training_samples(history)``) to see the curve and
    a table of ``num`` samples from the first validation to the last; ``print`` it for text.

    Args:
        history: the ``History`` that ``d2l.train`` returned (trained with a ``prefix``).
        num: how many samples, evenly spread; all of them when fewer were recorded.
    """
    return TrainingSamples(history, num)
