"""Hyperparameter panels: sliders, a button and an output area. Building one trains nothing;
only a click on its button runs the callback given to it.

ipywidgets is imported inside the constructors so that ``import d2lmini`` stays fast.
"""

import dataclasses
import functools
from dataclasses import dataclass

from d2lmini.i18n import gettext as _

__all__ = ["TrainingConfig", "TrainingPanel", "RecipePanel", "GenerationPanel"]


@dataclass(frozen=True)
class TrainingConfig:
    """The hyperparameters a training panel sets."""

    lr: float = 1.0
    theta: float = 1.0
    num_steps: int = 35
    num_hiddens: int = 256
    num_epochs: int = 20
    use_random_iter: bool = False
    model: str = "rnn"
    optimizer: str = "sgd"   # shown when TrainingPanel gets optimizers=(...)
    max_tokens: int = 10000  # training tokens (-1: all); shown with corpus_sizes=(...)


class TrainingPanel:
    """Sliders for the learning rate (log scale), clipping θ, num_steps, hidden size and
    epochs, an iteration-mode toggle, an optional model choice, a Train button and an output.

    Args:
        on_train: called with a ``TrainingConfig`` when Train is clicked; it should build a
            fresh data loader and a freshly initialised model from that config, so that
            experiments never share state, and train (its plots appear in the output area).
        defaults: the starting values.
        models: model names to choose from (e.g. ``("rnn", "lstm")``); no choice when None.
        optimizers: optimizer names to choose from (e.g. ``("sgd", "adam")``); on_train reads
            ``config.optimizer``. No choice when None.
        corpus_sizes: training-text sizes in tokens to choose from (-1: all of the training
            part); on_train reads ``config.max_tokens``. No choice when None.
    """

    def __init__(self, on_train, defaults=TrainingConfig(), models=None, optimizers=None,
                 corpus_sizes=None):
        import ipywidgets as w

        self.on_train, self.runs, self.defaults = on_train, 0, defaults
        self.controls = _sliders(w, defaults) | _choices(
            w, defaults, model=models, optimizer=optimizers, max_tokens=corpus_sizes)
        self.button = w.Button(description=_("Train"), button_style="primary", icon="play")
        self.button.on_click(lambda _: self.train())
        self.output = w.Output()
        self.widget = w.VBox([*self.controls.values(), self.button, self.output])

    def config(self) -> TrainingConfig:
        """The hyperparameters the controls show now."""
        values = {name: control.value for name, control in self.controls.items()}
        return dataclasses.replace(self.defaults, **values)

    def describe(self) -> str:
        """The settings the controls show, e.g. ``lr=0.316, theta=1, num_steps=35, ...``."""
        return ", ".join(f"{name}={control.value:.3g}" if isinstance(control.value, float)
                         else f"{name}={control.value}" for name, control in self.controls.items())

    def train(self):
        """What the Train button does: clear the output area and run ``on_train`` in it."""
        self.runs += 1
        return _run_in(self.output, self.runs, self.describe(), self.on_train, self.config())

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _run_in(output, run, settings, callback, *args):
    """Clear ``output``, print the run's settings in it and call ``callback(*args)`` there."""
    from IPython.display import clear_output

    from d2lmini.plotting import IN_WIDGET_OUTPUT

    inside = IN_WIDGET_OUTPUT.set(True)  # live plots redraw in place in the output area
    try:
        with output:
            clear_output(wait=True)
            print(_("Run {n}: {settings}").format(n=run, settings=settings))
            return callback(*args)
    finally:
        IN_WIDGET_OUTPUT.reset(inside)


class RecipePanel:
    """Train a ``d2lmini.Recipe`` for a time budget: a cell choice, the hidden size, the
    number of seconds, a Train button and an output area.

    Args:
        on_train: called with ``(recipe, seconds)`` when Train is clicked: the recipe is
            ``defaults`` with the chosen cell and hidden size; it should train a fresh model
            (e.g. with ``d2l.train_recipe(seconds, recipe)``).
        defaults: the starting recipe (default: the course's tuned ``d2l.Recipe()``).
        seconds: the starting time budget.
        cells: the cells to choose from.
    """

    def __init__(self, on_train, defaults=None, seconds=30, cells=("rnn", "gru", "lstm")):
        import ipywidgets as w

        from d2lmini.recipes import Recipe

        self.on_train, self.runs = on_train, 0
        self.defaults = defaults if defaults is not None else Recipe()
        layout = w.Layout(width="420px")
        cell = self.defaults.cell if self.defaults.cell in cells else cells[0]
        self.controls = {
            "cell": w.ToggleButtons(options=list(cells), value=cell, description=_("cell"),
                                    style=_STYLE),
            "num_hiddens": w.IntSlider(value=self.defaults.num_hiddens, min=16, max=1024,
                                       step=8, description=_("hidden size"), style=_STYLE,
                                       layout=layout),
            "seconds": w.IntSlider(value=seconds, min=5, max=300, step=5,
                                   description=_("seconds"), style=_STYLE, layout=layout),
        }
        self.button = w.Button(description=_("Train"), button_style="primary", icon="play")
        self.button.on_click(lambda _: self.train())
        self.output = w.Output()
        self.widget = w.VBox([*self.controls.values(), self.button, self.output])

    def config(self):
        """``(recipe, seconds)`` as the controls show them now."""
        recipe = self.defaults.replace(cell=self.controls["cell"].value,
                                       num_hiddens=self.controls["num_hiddens"].value)
        return recipe, self.controls["seconds"].value

    def describe(self) -> str:
        """The settings the controls show, e.g. ``cell=lstm, num_hiddens=256, seconds=30``."""
        return ", ".join(f"{name}={control.value}" for name, control in self.controls.items())

    def train(self):
        """What the Train button does: clear the output area and run ``on_train`` in it."""
        self.runs += 1
        return _run_in(self.output, self.runs, self.describe(), self.on_train, *self.config())

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


_STYLE = {"description_width": "110px"}


def _sliders(w, defaults):
    """The numeric hyperparameters and the iteration mode, keyed by TrainingConfig field."""
    layout = w.Layout(width="420px")
    log_slider = functools.partial(w.FloatLogSlider, base=10, style=_STYLE, layout=layout)
    int_slider = functools.partial(w.IntSlider, style=_STYLE, layout=layout)
    return {
        "lr": log_slider(value=defaults.lr, min=-3, max=1.5, step=0.1,
                         description=_("learning rate")),
        "theta": log_slider(value=defaults.theta, min=-2, max=3, step=0.25,
                            description=_("clipping θ")),
        "num_steps": int_slider(value=defaults.num_steps, min=5, max=100, step=5,
                                description="num_steps"),
        "num_hiddens": int_slider(value=defaults.num_hiddens, min=16, max=512, step=16,
                                  description=_("hidden size")),
        "num_epochs": int_slider(value=defaults.num_epochs, min=1, max=200,
                                 description=_("epochs")),
        "use_random_iter": w.ToggleButtons(options=[(_("sequential"), False), (_("random"), True)],
                                           value=defaults.use_random_iter,
                                           description=_("iteration"), style=_STYLE),
    }


def _choices(w, defaults, **choices):
    """A toggle per optional choice that was given (a dropdown for training-text sizes)."""
    controls = {}
    for field, options in choices.items():
        if not options:
            continue
        value = getattr(defaults, field) if getattr(defaults, field) in options else options[0]
        if field == "max_tokens":  # token counts read better with labels
            labelled = [(_("whole book") if n < 0 else _("{n} tokens").format(n=f"{n:,}"), n)
                        for n in options]
            controls[field] = w.Dropdown(options=labelled, value=value,
                                         description=_("training text"), style=_STYLE)
        else:
            controls[field] = w.ToggleButtons(options=list(options), value=value,
                                              description=_(field), style=_STYLE)
    return controls


class GenerationPanel:
    """A prefix box, a temperature slider, a length slider and a Generate button.

    Args:
        generate: ``(prefix, num_preds, temperature) -> str``, called on each click.
    """

    def __init__(self, generate, prefix="time traveller", temperature=1.0, num_preds=100):
        import ipywidgets as w

        self.generate = generate
        self.prefix = w.Text(value=prefix, description=_("prefix"))
        self.temperature = w.FloatLogSlider(value=temperature, base=10, min=-2, max=1,
                                            step=0.05, description=_("temperature"))
        self.num_preds = w.IntSlider(value=num_preds, min=1, max=500, description=_("length"))
        self.button = w.Button(description=_("Generate"), button_style="primary")
        self.button.on_click(lambda _: self.run())
        self.output = w.Output()
        self.widget = w.VBox([self.prefix, self.temperature, self.num_preds, self.button,
                              self.output])

    def run(self):
        """What the Generate button does: show a fresh sample in the output area."""
        text = self.generate(self.prefix.value, self.num_preds.value, self.temperature.value)
        self.output.clear_output(wait=True)
        with self.output:
            print(text)
        return text

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
