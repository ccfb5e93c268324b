"""Pictures: a live plot that redraws in place, line plots and heatmaps with labelled axes.

matplotlib is imported inside the functions so that ``import d2lmini`` stays fast.
"""

import contextvars
import io

from d2lmini.i18n import get_language, translate, use_cjk_font

# True while a widget panel runs its callback inside an ipywidgets Output area. JupyterLab's
# Output widget drops update_display_data messages, so there a live plot redraws an Image
# widget instead of updating a display handle.
IN_WIDGET_OUTPUT = contextvars.ContextVar("d2lmini_in_widget_output", default=False)

__all__ = ["LivePlot", "plot", "heatmap"]


def _prepare_language():
    """Chinese text needs a CJK font: pick one before drawing (English changes nothing)."""
    if get_language() == "zh":
        use_cjk_font()


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, or a headless nbclient run)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot:
    """Curves that grow while training: redrawn in place in Jupyter, savable anywhere.

    It draws on a bare ``matplotlib.figure.Figure`` (no pyplot, no GUI backend) and shows a
    PNG through a display handle, so it cannot hang or need a display when run headless.
    """

    def __init__(self, *, xlabel, ylabel, title, yscale="linear"):
        from matplotlib.figure import Figure

        _prepare_language()
        self.figure = Figure(figsize=(5, 3.2), layout="constrained")
        self.axes = self.figure.add_subplot()
        self.labels = dict(xlabel=translate(xlabel), ylabel=translate(ylabel),
                           title=translate(title), yscale=yscale)
        self.handle = self.image = None

    def update(self, curves):
        """Redraw with ``curves``: a dict ``{label: (xs, ys)}``."""
        self.axes.clear()
        for label, (xs, ys) in curves.items():
            self.axes.plot(xs, ys, label=translate(label), marker="." if len(xs) < 30 else None)
        self.axes.set(**self.labels)
        _plain_ticks(self.axes)
        self.axes.grid(alpha=0.3)
        self.axes.legend()
        if _in_kernel():
            self._show()

    def _show(self):
        from IPython.display import Image, display

        if self.image is not None or IN_WIDGET_OUTPUT.get():
            return self._show_widget()
        image = Image(data=self.png())
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)

    def _show_widget(self):
        """Show (first call) or redraw an ipywidgets Image: widget state reaches the browser
        even inside an Output area."""
        if self.image is None:
            import ipywidgets
            from IPython.display import display

            self.image = ipywidgets.Image(value=self.png(), format="png")
            display(self.image)
        else:
            self.image.value = self.png()

    def png(self) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

    def save(self, path):
        """Write the figure to ``path`` (PNG, SVG or PDF by its suffix)."""
        self.figure.savefig(path)


def _plain_ticks(axes):
    """Whole numbers on x (epochs, steps) and plain numbers on a log y axis (5, 10, 20)."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes.get_yscale() == "log":
        axes.yaxis.set_major_formatter(ScalarFormatter())
        axes.yaxis.set_minor_formatter(ScalarFormatter())


def plot(xs, ys, *, xlabel, ylabel, title, legend=None, xscale="linear", yscale="linear",
         axes=None):
    """Plot one or more curves with labelled axes; returns the matplotlib axes.

    Args:
        xs: one sequence of x values, or one per curve.
        ys: one sequence of y values, or a list of them.
        legend: a label per curve.
    """
    import matplotlib.pyplot as plt

    _prepare_language()
    xlabel, ylabel, title = translate(xlabel), translate(ylabel), translate(title)
    legend = [translate(label) for label in legend] if legend else legend
    if axes is None:
        _, axes = plt.subplots(figsize=(5, 3.2), layout="constrained")
    curves = ys if _is_many(ys) else [ys]
    xs_per_curve = xs if _is_many(xs) else [xs] * len(curves)
    for x, y, label in zip(xs_per_curve, curves, legend or [None] * len(curves), strict=True):
        axes.plot(list(x), list(y), label=label)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale=xscale, yscale=yscale)
    axes.grid(alpha=0.3)
    _translated_legends(axes)
    if legend:
        axes.legend()
    return axes


def _translated_legends(axes):
    """In Chinese, the legend the lesson draws later on these axes translates its labels too
    (lines a lesson adds with ``axes.axhline(..., label=...)``, then ``axes.legend()``)."""
    if get_language() != "zh" or getattr(axes, "_d2lmini_legend", False):
        return
    draw = axes.legend

    def legend(*args, **kwargs):
        if args or "labels" in kwargs or "handles" in kwargs:
            return draw(*args, **kwargs)
        handles, labels = axes.get_legend_handles_labels()
        return draw(handles, [translate(label) for label in labels], **kwargs)

    axes.legend, axes._d2lmini_legend = legend, True


def _is_many(values):
    """True for a list of sequences rather than one sequence of numbers."""
    first = next(iter(values), None)
    return first is not None and hasattr(first, "__len__") and not isinstance(first, str)


def heatmap(matrix, *, xlabel, ylabel, title, xticklabels=None, colorbar_label=None,
            cmap="RdBu_r", vmin=-1, vmax=1):
    """Show a 2-D tensor or array (e.g. hidden state per unit and time step); returns the axes.

    Args:
        matrix: (rows, columns), e.g. (num_hiddens, num_steps).
        xticklabels: a label per column, e.g. the characters read at each step.
    """
    import matplotlib.pyplot as plt

    _prepare_language()
    xlabel, ylabel, title = translate(xlabel), translate(ylabel), translate(title)
    colorbar_label = translate(colorbar_label) if colorbar_label else colorbar_label
    values = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else matrix
    width = min(14, 2 + 0.18 * values.shape[1])
    figure, axes = plt.subplots(figsize=(width, 3.5), layout="constrained")
    image = axes.imshow(values, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                        interpolation="nearest")
    if xticklabels is not None:
        axes.set_xticks(range(len(xticklabels)), labels=list(xticklabels))
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure.colorbar(image, ax=axes, label=colorbar_label)
    return axes
