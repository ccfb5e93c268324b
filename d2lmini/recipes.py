"""A character model worth waiting for: the course's tuned recipe, trained for a time budget.

``Recipe`` holds every choice (cell, size, inputs, dropout, batch, truncation, optimizer,
learning-rate schedule, clipping); its defaults are the winner of the search recorded in
``benchmarks/RESULTS.md``. ``build_recipe`` turns it into a model, an optimizer and a schedule;
``train_recipe`` trains for a number of seconds (the schedule runs on the clock, so the
learning rate has decayed when the time is up) and returns a ``d2lmini.History``.
"""

import dataclasses
import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import clip_grad_norm_

from d2lmini.config import default_device
from d2lmini.data import _positive_int, load_data_time_machine
from d2lmini.training import History, evaluate_perplexity, predict_greedy, train_epoch

__all__ = ["Recipe", "RecipeModel", "GPU_RECIPE", "recipe_for", "build_recipe", "train_recipe",
           "CLOCKS"]

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
SCHEDULES = ("constant", "cosine", "onecycle")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
EVAL_BATCH, EVAL_STEPS = 32, 35  # how held-out text is read (fewer rows if it is short)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The choices of a training run. Defaults: the best found for 30 s on 2 CPU cores."""

    cell: str = "lstm"            # "rnn", "gru" or "lstm"
    num_hiddens: int = 256
    num_layers: int = 1
    embed_size: int = 32          # a learned embedding of this size; 0: one-hot inputs
    dropout: float = 0.0          # on the recurrent outputs (and between layers)
    batch_size: int = 32
    num_steps: int = 35           # truncation length of backpropagation through time
    use_random_iter: bool = True
    lr: float = 0.02              # Adam's peak learning rate
    schedule: str = "cosine"      # "constant", "cosine" (to 0) or "onecycle" (warm-up, cosine)
    warmup: float = 0.0           # share of the budget spent warming up (onecycle)
    weight_decay: float = 0.1     # AdamW's decoupled weight decay (0: plain Adam)
    theta: float = 1.0            # gradient clipping norm

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("num_hiddens", "num_layers", "batch_size", "num_steps"):
            _positive_int(getattr(self, name), name)
        if not 0 <= self.dropout < 1 or not 0 <= self.warmup < 1:
            raise ValueError(f"dropout and warmup must be in [0, 1), got {self.dropout} and "
                             f"{self.warmup}")

    def replace(self, **changes):
        """A copy with some fields changed, e.g. ``Recipe().replace(cell="gru")``."""
        return dataclasses.replace(self, **changes)


# Not measured (no GPU where the search ran): a larger model for the same 30 s on a GPU,
# sized after char-rnn's small-data settings: two layers, heavy dropout, long truncation.
GPU_RECIPE = Recipe(num_hiddens=512, num_layers=2, embed_size=64, dropout=0.5, batch_size=256,
                    num_steps=100, lr=0.004, schedule="cosine", weight_decay=0.1)


LONG_BUDGET_S = 45  # on a CPU, budgets longer than this train long enough to need dropout


def recipe_for(device, seconds=None):
    """The course's recipe for ``device`` and a budget of ``seconds``.

    ``GPU_RECIPE`` on CUDA. On a CPU ``Recipe()``, with dropout 0.2 for budgets over
    ``LONG_BUDGET_S``: measured, no dropout did better after 30 s (4.21 vs 4.25-4.29) and
    dropout 0.2 after 60 s (4.14 vs 4.29, the model without it overfits).
    """
    if torch.device(device).type == "cuda":
        return GPU_RECIPE
    if seconds is not None and seconds > LONG_BUDGET_S:
        return Recipe(dropout=0.2)
    return Recipe()


class RecipeModel(nn.Module):
    """Embedding or one-hot inputs, a stack of recurrent layers, dropout, a linear read-out.

    Same interface as ``d2lmini.RNNModel``: ``net(X, state)`` with X (batch, num_steps) ints
    returns logits (num_steps * batch, vocab), row ``t * batch + b`` for step t of sequence b.
    """

    def __init__(self, vocab_size, recipe):
        super().__init__()
        self.vocab_size, self.num_hiddens = vocab_size, recipe.num_hiddens
        self.embedding = nn.Embedding(vocab_size, recipe.embed_size) if recipe.embed_size \
            else None
        inputs = recipe.embed_size or vocab_size
        between = recipe.dropout if recipe.num_layers > 1 else 0.0
        self.rnn = CELLS[recipe.cell](inputs, recipe.num_hiddens, recipe.num_layers,
                                      dropout=between)
        self.dropout = nn.Dropout(recipe.dropout)
        self.linear = nn.Linear(recipe.num_hiddens, vocab_size)

    def forward(self, X, state):
        """X: (batch, num_steps) int -> logits (num_steps * batch, vocab), new state."""
        X = X.T.long()                                         # (num_steps, batch)
        inputs = self.embedding(X) if self.embedding is not None \
            else F.one_hot(X, self.vocab_size).float()         # (num_steps, batch, inputs)
        is_lstm = isinstance(self.rnn, nn.LSTM)
        Y, state = self.rnn(inputs, tuple(state) if is_lstm else state[0])  # (steps, b, h)
        output = self.linear(self.dropout(Y).reshape(-1, Y.shape[-1]))
        return output, (tuple(state) if is_lstm else (state,))

    def begin_state(self, batch_size, device):
        """Zeros of shape (num_layers, batch_size, num_hiddens); two of them for an LSTM."""
        shape = (self.rnn.num_layers, batch_size, self.num_hiddens)
        count = 2 if isinstance(self.rnn, nn.LSTM) else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(count))


def learning_rate(recipe, progress):
    """The learning rate when a share ``progress`` in [0, 1] of the budget is spent."""
    progress = min(max(progress, 0.0), 1.0)
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "onecycle" and progress < recipe.warmup:
        return recipe.lr * (0.1 + 0.9 * progress / recipe.warmup)
    start = recipe.warmup if recipe.schedule == "onecycle" else 0.0
    decay = (progress - start) / (1 - start)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * decay))


def build_recipe(recipe, vocab_size, device=None):
    """The model (on ``device``) and its optimizer (Adam, or AdamW with weight decay).

    Returns:
        (net, optimizer, schedule) with ``schedule(progress) -> learning rate``.
    """
    device = device or default_device()
    net = RecipeModel(_positive_int(vocab_size, "vocab_size"), recipe).to(device)
    if recipe.weight_decay:
        optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr,
                                      weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    return net, optimizer, lambda progress: learning_rate(recipe, progress)


class _Budget:
    """A training clock that runs only while batches train, with checkpoints every few s."""

    def __init__(self, seconds, clock, eval_every, on_checkpoint, sync=lambda: None):
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
        self.seconds, self.clock, self.eval_every = seconds, CLOCKS[clock], eval_every
        self.on_checkpoint, self.sync, self.elapsed, self.next_eval, self._start = \
            on_checkpoint, sync, 0.0, eval_every, None

    def now(self):
        """Training seconds so far, including the stretch under way."""
        return self.elapsed + (self.clock() - self._start if self._start is not None else 0.0)

    def batches(self, loader):
        """The loader's batches while time is left; checkpoints are taken off the clock."""
        self._start = self.clock()
        try:
            for index, batch in enumerate(loader):
                if self.now() >= self.next_eval:
                    self._pause()
                    self.on_checkpoint()
                    self.next_eval = (self.elapsed // self.eval_every + 1) * self.eval_every
                    if self.elapsed >= self.seconds and index > 0:
                        return  # the clock stays stopped: that checkpoint was the last
                    self._start = self.clock()
                if self.now() >= self.seconds and index > 0:
                    return
                yield batch
        finally:
            self._pause()

    def _pause(self):
        if self._start is not None:
            self.sync()  # queued GPU work belongs to the stretch it was launched in
            self.elapsed += self.clock() - self._start
            self._start = None


class _BudgetedLoader:
    """A loader seen through a budget; other attributes (``use_random_iter``...) pass through."""

    def __init__(self, loader, budget):
        self.loader, self.budget = loader, budget

    def __iter__(self):
        return self.budget.batches(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def train_recipe(seconds=30.0, recipe=None, *, data_iter=None, vocab=None, eval_every=None,
                 clock="wall", device=None, seed=0, prefix="time traveller", plot=False):
    """Train ``recipe`` for ``seconds`` of training time; return its ``History``.

    Args:
        seconds: the budget; only training counts (evaluation is off the clock). The last
            batch may end a little past it.
        recipe: a ``Recipe`` (default: ``recipe_for(device, seconds)``, the tuned one).
        data_iter, vocab: a ``SeqDataLoader`` (with ``heldout``) and its vocabulary; default:
            the first 90% of the book with the recipe's batch size, truncation and sampling.
        eval_every: seconds of training between held-out evaluations (default seconds / 10).
        clock: "wall", or "cpu" for this process's CPU time (a shared machine's fair clock).
        prefix: text continued greedily at each evaluation; None for no samples.
        plot: draw held-out perplexity against training seconds as it comes in.
    Returns:
        a ``History``: per epoch (the last may be partial) ``train_ppl`` and
        ``tokens_per_sec``; per evaluation ``valid_seconds``, ``valid_epochs`` (fractional),
        ``valid_ppl`` and ``samples``.
    """
    device = device or default_device()
    recipe = recipe or recipe_for(device, seconds)
    if data_iter is None:
        data_iter, vocab = load_data_time_machine(
            recipe.batch_size, recipe.num_steps, recipe.use_random_iter, max_tokens=-1,
            seed=seed)
    if vocab is None:
        raise ValueError("pass the vocab that goes with data_iter")
    torch.manual_seed(seed)
    net, optimizer, schedule = build_recipe(recipe, len(vocab), device)
    history, done = History(), [0, 0]  # [epochs finished, batches of the current epoch]
    figure = _live_plot() if plot else None

    def checkpoint():
        _checkpoint(net, data_iter, vocab, prefix, history, budget, done, device)
        if figure is not None and history.valid_ppl:
            figure.update({"held-out": (history.valid_seconds, history.valid_ppl)})

    budget = _Budget(float(seconds), clock, eval_every or seconds / 10, checkpoint,
                     _synchronizer(device))

    def update():
        for group in optimizer.param_groups:
            group["lr"] = schedule(budget.now() / budget.seconds)
        optimizer.step()
        done[1] += 1

    while budget.elapsed < budget.seconds:
        before = budget.elapsed
        net.train()
        ppl, _, norms = train_epoch(net, _BudgetedLoader(data_iter, budget), update,
                                    clip_grad_norm_, recipe.theta, device)
        history.train_ppl.append(ppl)
        history.tokens_per_sec.append(len(norms) * data_iter.batch_size * data_iter.num_steps
                                      / max(budget.elapsed - before, 1e-9))
        history.grad_norms.extend(norms)
        done[:] = [done[0] + 1, 0]
        if not math.isfinite(ppl):
            break
    if not history.valid_seconds or history.valid_seconds[-1] < budget.elapsed:
        checkpoint()
    return history


def _live_plot():
    from d2lmini.plotting import LivePlot

    return LivePlot(xlabel="training seconds", ylabel="perplexity", yscale="log",
                    title="Held-out perplexity while training")


def _synchronizer(device):
    """Waits for a GPU's queued work (the clock must not stop before it is done)."""
    device = torch.device(device)
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else lambda: None


def _checkpoint(net, data_iter, vocab, prefix, history, budget, done, device):
    """Evaluate on the held-out tokens (and sample) in eval mode: dropout off."""
    net.eval()
    history.valid_seconds.append(budget.elapsed)
    history.valid_epochs.append(round(done[0] + done[1] / max(len(data_iter), 1), 2))
    if data_iter.heldout is not None:
        heldout = data_iter.heldout  # read as the benchmarks do: 32 rows of 35 steps
        rows = min(EVAL_BATCH, max(1, (len(heldout) - 1) // EVAL_STEPS - 1))
        history.valid_ppl.append(evaluate_perplexity(net, heldout, rows, EVAL_STEPS, device))
    if prefix:
        history.samples.append(predict_greedy(prefix, 50, net, vocab, device))
    net.train()
