"""One training loop for every lesson, perplexity on held-out text, and greedy samples."""

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.utils import clip_grad_norm_, get_total_norm

from d2lmini.data import _positive_int, _seq_data_iter_sequential
from d2lmini.i18n import gettext as _

__all__ = ["History", "sgd", "predict_greedy", "evaluate_perplexity", "train_epoch", "train"]


@dataclass
class History:
    """What a training run measured. Perplexities are exp(mean cross-entropy per token)."""

    train_ppl: list = field(default_factory=list)       # one per epoch
    valid_epochs: list = field(default_factory=list)    # epochs (1-based) with a validation
    valid_ppl: list = field(default_factory=list)       # held-out perplexity at those epochs
    tokens_per_sec: list = field(default_factory=list)  # one per epoch
    grad_norms: list = field(default_factory=list)      # global norm before clipping, per step
    samples: list = field(default_factory=list)         # greedy text at each validation
    valid_seconds: list = field(default_factory=list)   # training seconds at each validation
                                                        # (time-budgeted runs: train_recipe)

    def __str__(self):
        """The summary ``train`` prints, in d2lmini's language (benchmarks parse the English)."""
        values = {"train": f"{self.train_ppl[-1]:.2f}", "speed": f"{self.tokens_per_sec[-1]:,.0f}"}
        if not self.valid_ppl:
            return _("train perplexity {train}, {speed} tokens/s").format(**values)
        best = min(range(len(self.valid_ppl)), key=self.valid_ppl.__getitem__)
        return _("train perplexity {train}, held-out perplexity {heldout} (best {best} at epoch "
                 "{epoch}), {speed} tokens/s").format(
            heldout=f"{self.valid_ppl[-1]:.2f}", best=f"{self.valid_ppl[best]:.2f}",
            epoch=self.valid_epochs[best], **values)


def sgd(params, lr, batch_size):
    """Hand-written minibatch SGD: ``p -= lr * p.grad / batch_size``, then zero the gradient."""
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad / batch_size
            p.grad.zero_()


def _device_of(net):
    return next(net.parameters()).device


@torch.no_grad()
def predict_greedy(prefix, num_preds, net, vocab, device=None):
    """Warm up on ``prefix`` character by character, then append ``num_preds`` argmax picks."""
    if any(len(t) != 1 for t in vocab.idx_to_token[1:]):
        raise ValueError("predict_greedy works on character vocabularies; for words use the "
                         "predict(..., token='word') of lesson 04 (or pass prefix=None to train)")
    device = device or _device_of(net)
    state = net.begin_state(1, device)
    outputs = [vocab[prefix[0]]]
    for y in prefix[1:]:  # warm-up: only the state matters, the outputs are the prefix itself
        _, state = net(torch.tensor([[outputs[-1]]], device=device), state)
        outputs.append(vocab[y])
    for _ in range(num_preds):
        y_hat, state = net(torch.tensor([[outputs[-1]]], device=device), state)
        outputs.append(int(y_hat.argmax(dim=1).item()))
    return "".join(vocab.to_tokens(outputs))


@torch.no_grad()
def evaluate_perplexity(net, tokens, batch_size, num_steps, device=None):
    """Perplexity of ``net`` on a token sequence, read sequentially with the state carried on.

    Args:
        tokens: 1-D int tensor or list (e.g. ``data_iter.heldout``).
    Returns:
        exp(mean cross-entropy per predicted token), a float.
    """
    device = device or _device_of(net)
    total, count, state = torch.zeros((), device=device), 0, None
    for X, Y in _seq_data_iter_sequential(tokens, batch_size, num_steps, offset=0):
        state = net.begin_state(X.shape[0], device) if state is None else state
        y_hat, state = net(X.to(device), state)
        total += _sequence_loss(y_hat, Y.to(device), reduction="sum")
        count += Y.numel()
    return _exp_or_inf(total.item() / count)


def _sequence_loss(y_hat, Y, reduction="mean"):
    """Cross-entropy of time-major logits against the loader's labels.

    Args:
        y_hat: (num_steps * batch, vocab) logits; row t * batch + b is step t of sequence b.
        Y: (batch, num_steps) int labels.
    """
    batch, num_steps = Y.shape
    logits = y_hat.reshape(num_steps, batch, -1).permute(1, 2, 0)  # (batch, vocab, num_steps)
    return F.cross_entropy(logits, Y.long(), reduction=reduction)


def _exp_or_inf(mean_loss):
    """exp(mean_loss), or inf where it overflows (a diverged run: the mean loss passed ~709)."""
    return math.exp(mean_loss) if mean_loss < 709 else math.inf


def _fresh_or_detached(state, net, data_iter, batch_size, device):
    """Random sampling needs a new state per batch; sequential batches continue the last one.

    Detaching keeps the state's values but cuts the graph, so backpropagation stops at the
    batch boundary (truncated BPTT) while the parameters still get their gradients.
    """
    if state is None or data_iter.use_random_iter:
        return net.begin_state(batch_size, device)
    return tuple(s.detach() for s in state)


def train_epoch(net, data_iter, update, clip, theta, device):
    """Train for one pass over ``data_iter``.

    Returns:
        (perplexity, tokens per second, list of per-step gradient norms before clipping).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    state, total, count, norms = None, torch.zeros((), device=device), 0, []
    start = time.perf_counter()
    for X, Y in data_iter:
        state = _fresh_or_detached(state, net, data_iter, X.shape[0], device)
        y_hat, state = net(X.to(device), state)           # (steps * batch, vocab)
        loss = _sequence_loss(y_hat, Y.to(device))         # already a mean over tokens
        net.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(get_total_norm([p.grad for p in params if p.grad is not None]))
        if clip is not None:
            clip(params, theta)
        update()
        total += loss.detach() * Y.numel()                 # stays on the device: no sync
        count += Y.numel()
    ppl = _exp_or_inf(total.item() / count)                # the one sync of the epoch
    return ppl, count / (time.perf_counter() - start), torch.stack(norms).tolist()


def _updater(optimizer, net, lr):
    """A no-argument step function from a torch optimizer or a hand-written updater."""
    if optimizer is None:
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer.step
    if callable(optimizer):
        # The loss is already a mean over the batch, so a hand-written SGD that divides by
        # the batch size must be told batch_size=1.
        return lambda: optimizer(batch_size=1)
    raise TypeError(f"optimizer must be None, a torch.optim.Optimizer or a callable "
                    f"updater(batch_size), got {type(optimizer).__name__}")


def train(net, data_iter, vocab, lr, num_epochs, *, optimizer=None, clip=clip_grad_norm_,
          theta=1.0, eval_every=None, prefix="time traveller", plot=True, progress=True,
          device=None):
    """Train a language model and return its ``History``.

    Args:
        net: a model with ``net(X, state)`` and ``begin_state`` (see ``d2lmini.models``).
        data_iter: a ``SeqDataLoader``; its ``use_random_iter`` decides how state is handled,
            and its ``heldout`` tokens, if any, give the validation perplexity.
        optimizer: None (``torch.optim.SGD`` with ``lr``), any torch optimizer, or a
            hand-written ``updater(batch_size)``.
        clip: ``clip(params, theta)``, clipping gradients in place; None for no clipping.
        eval_every: epochs between validations (default: about 20 over the run).
        prefix: text to continue greedily at each validation; None for word vocabularies.
        plot, progress: show a live plot and a progress bar.
    """
    num_epochs = _positive_int(num_epochs, "num_epochs")
    device = device or _device_of(net)
    update = _updater(optimizer, net, lr)
    eval_every = _positive_int(eval_every or max(1, num_epochs // 20), "eval_every")
    history, figure = History(), _live_plot() if plot else None
    for epoch in _epochs(num_epochs, progress):
        ppl, speed, norms = train_epoch(net, data_iter, update, clip, theta, device)
        history.train_ppl.append(ppl)
        history.tokens_per_sec.append(speed)
        history.grad_norms.extend(norms)
        if epoch % eval_every == 0 or epoch == num_epochs:
            _validate(net, data_iter, vocab, prefix, history, epoch, device)
            if figure is not None:
                figure.update(_curves(history))
        if not math.isfinite(ppl):
            print(_("Stopped at epoch {epoch}: the loss is no longer finite (exploding "
                    "gradients?). Try a smaller learning rate or clipping.").format(epoch=epoch))
            break
    print(history)
    if history.samples:
        print(_("sample: {sample}").format(sample=repr(history.samples[-1])))
    return history


def _epochs(num_epochs, progress):
    """Epoch numbers 1..num_epochs, behind a progress bar when asked for."""
    if not progress:
        return range(1, num_epochs + 1)
    from tqdm.auto import trange  # a widget in Jupyter, text elsewhere

    return trange(1, num_epochs + 1, desc=_("epochs"), leave=False)


def _validate(net, data_iter, vocab, prefix, history, epoch, device):
    """Record the held-out perplexity and a greedy sample at this epoch."""
    history.valid_epochs.append(epoch)
    if data_iter.heldout is not None:
        history.valid_ppl.append(evaluate_perplexity(
            net, data_iter.heldout, data_iter.batch_size, data_iter.num_steps, device))
    if prefix:
        history.samples.append(predict_greedy(prefix, 50, net, vocab, device))


def _live_plot():
    from d2lmini.plotting import LivePlot

    return LivePlot(xlabel="epoch", ylabel="perplexity", yscale="log",
                    title="Training and held-out perplexity")


def _curves(history):
    """Curves for the live plot: training perplexity per epoch, held-out at validations."""
    curves = {"train": (list(range(1, len(history.train_ppl) + 1)), history.train_ppl)}
    if history.valid_ppl:
        curves["held-out"] = (history.valid_epochs, history.valid_ppl)
    return curves
