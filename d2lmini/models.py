"""Model wrappers with one interface: ``net(X, state) -> (Y_hat, state)`` and ``begin_state``.

Both wrappers take token indices ``X`` of shape (batch, num_steps), one-hot encode them
time-major inside, and return logits of shape (num_steps * batch, vocab): row ``t * batch + b``
is time step t of sequence b. The state is always a tuple of tensors, ``(H,)`` or ``(H, C)``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from d2lmini.data import _positive_int

__all__ = ["RNNModelScratch", "RNNModel"]


def _one_hot_inputs(X, vocab_size):
    """(batch, num_steps) indices -> (num_steps, batch, vocab_size) float one-hot inputs."""
    encoded = F.one_hot(X.long(), vocab_size)  # (batch, num_steps, vocab)
    return encoded.permute(1, 0, 2).float().contiguous()


class RNNModelScratch(nn.Module):
    """A recurrent model written from scratch: parameters, initial state, forward function.

    Args:
        get_params: ``(vocab_size, num_hiddens, device) -> list of tensors``.
        init_state: ``(batch_size, num_hiddens, device) -> tuple of (batch, hidden) tensors``.
        forward_fn: ``(inputs, state, params) -> (outputs, state)`` with inputs of shape
            (num_steps, batch, vocab) and outputs of shape (num_steps * batch, vocab).
        one_hot: ``(X, vocab_size) -> inputs``, turning (batch, num_steps) indices into the
            (num_steps, batch, vocab) float inputs of ``forward_fn``: lesson 02's ``one_hot``.
            When None, the encoding of ``RNNModel`` is used.
    """

    def __init__(self, vocab_size, num_hiddens, device, get_params, init_state, forward_fn,
                 one_hot=None):
        super().__init__()
        self.vocab_size = _positive_int(vocab_size, "vocab_size")
        self.num_hiddens = _positive_int(num_hiddens, "num_hiddens")
        # Registered as parameters so torch optimizers, clipping and .to() see them.
        self.params = nn.ParameterList(
            nn.Parameter(p.detach()) for p in get_params(vocab_size, num_hiddens, device))
        self.init_state, self.forward_fn = init_state, forward_fn
        self.one_hot = _one_hot_inputs if one_hot is None else one_hot

    def forward(self, X, state):
        """X: (batch, num_steps) int -> logits (num_steps * batch, vocab), new state."""
        inputs = self.one_hot(X, self.vocab_size)  # (num_steps, batch, vocab)
        return self.forward_fn(inputs, state, list(self.params))

    def begin_state(self, batch_size, device):
        """The initial state, a tuple of (batch_size, num_hiddens) tensors."""
        return tuple(self.init_state(batch_size, self.num_hiddens, device))


class RNNModel(nn.Module):
    """A concise model: an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` layer plus a linear output."""

    def __init__(self, rnn_layer, vocab_size):
        super().__init__()
        if not isinstance(rnn_layer, nn.RNNBase) or rnn_layer.batch_first:
            raise TypeError("rnn_layer must be an nn.RNN, nn.GRU or nn.LSTM with "
                            f"batch_first=False, got {rnn_layer!r}")
        if rnn_layer.input_size != vocab_size:
            raise ValueError(f"rnn_layer.input_size ({rnn_layer.input_size}) must equal "
                             f"vocab_size ({vocab_size}): the inputs are one-hot vectors")
        self.rnn, self.vocab_size = rnn_layer, _positive_int(vocab_size, "vocab_size")
        self.num_hiddens = rnn_layer.hidden_size
        self.num_directions = 2 if rnn_layer.bidirectional else 1
        self.linear = nn.Linear(self.num_hiddens * self.num_directions, vocab_size)

    def forward(self, X, state):
        """X: (batch, num_steps) int -> logits (num_steps * batch, vocab), new state."""
        inputs = _one_hot_inputs(X, self.vocab_size)  # (num_steps, batch, vocab)
        is_lstm = isinstance(self.rnn, nn.LSTM)
        Y, state = self.rnn(inputs, tuple(state) if is_lstm else state[0])  # Y: (steps, b, h)
        output = self.linear(Y.reshape(-1, Y.shape[-1]))  # (num_steps * batch, vocab)
        return output, (tuple(state) if is_lstm else (state,))

    def begin_state(self, batch_size, device):
        """Zeros of shape (num_layers * directions, batch_size, num_hiddens); two for LSTM."""
        shape = (self.num_directions * self.rnn.num_layers, batch_size, self.num_hiddens)
        count = 2 if isinstance(self.rnn, nn.LSTM) else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(count))
