"""Model wrappers and the training loop, on small synthetic data."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import d2lmini as d2l

VOCAB = d2l.Vocab(list("abcdefgh "))
V = len(VOCAB)


def tiny_rnn_params(vocab_size, num_hiddens, device):
    """A plain tanh RNN's parameters (a test fixture, not the lesson's answer)."""
    gen = torch.Generator().manual_seed(0)
    def normal(*shape):
        return (torch.randn(*shape, generator=gen) * 0.1).to(device)
    return [normal(vocab_size, num_hiddens), normal(num_hiddens, num_hiddens),
            torch.zeros(num_hiddens, device=device), normal(num_hiddens, vocab_size),
            torch.zeros(vocab_size, device=device)]


def tiny_rnn_state(batch_size, num_hiddens, device):
    return (torch.zeros(batch_size, num_hiddens, device=device),)


def tiny_rnn(inputs, state, params):
    W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        H = torch.tanh(X @ W_xh + H @ W_hh + b_h)
        outputs.append(H @ W_hq + b_q)
    return torch.cat(outputs, dim=0), (H,)


def scratch_model(num_hiddens=16):
    return d2l.RNNModelScratch(V, num_hiddens, "cpu", tiny_rnn_params, tiny_rnn_state, tiny_rnn)


def repeating_loader(batch_size=4, num_steps=6, **kwargs):
    text = "abcdefgh " * 60
    tokens = VOCAB[list(text)]
    return d2l.SeqDataLoader(tokens[:450], batch_size, num_steps, heldout=tokens[450:],
                             seed=0, **kwargs)


def test_scratch_model_one_hots_time_major_and_registers_parameters():
    net = scratch_model()
    X = torch.randint(0, V, (3, 5))
    Y_hat, state = net(X, net.begin_state(3, "cpu"))
    assert Y_hat.shape == (5 * 3, V) and state[0].shape == (3, 16)
    assert len(list(net.parameters())) == 5
    # Row t * batch + b is step t of sequence b: the first 3 rows depend on X[:, 0] only.
    X2 = X.clone()
    X2[:, 1:] = (X2[:, 1:] + 1) % V
    Y_hat2, _ = net(X2, net.begin_state(3, "cpu"))
    assert torch.allclose(Y_hat[:3], Y_hat2[:3]) and not torch.allclose(Y_hat[3:], Y_hat2[3:])


def test_scratch_model_encodes_with_the_one_hot_it_is_given():
    calls = []

    def recording_one_hot(X, vocab_size):
        calls.append((tuple(X.shape), vocab_size))
        return torch.eye(vocab_size)[X.long()].transpose(0, 1)  # (steps, batch, vocab)

    net = d2l.RNNModelScratch(V, 16, "cpu", tiny_rnn_params, tiny_rnn_state, tiny_rnn,
                              one_hot=recording_one_hot)
    X = torch.randint(0, V, (3, 5))
    Y_hat, _ = net(X, net.begin_state(3, "cpu"))
    assert calls == [((3, 5), V)]
    default, _ = scratch_model()(X, net.begin_state(3, "cpu"))
    assert torch.allclose(Y_hat, default)  # the default encoding is the same one-hot


def test_the_library_does_not_spell_the_lessons_answers():
    """Lesson 02's one_hot and lesson 03's time-major labels are not written out in d2lmini."""
    import inspect

    from d2lmini import models, training
    for module in (models, training):
        source = inspect.getsource(module)
        assert "X.T" not in source and "Y.T" not in source, module.__name__


@pytest.mark.parametrize("layer, count", [(nn.RNN, 1), (nn.GRU, 1), (nn.LSTM, 2)])
def test_concise_model_has_the_same_interface(layer, count):
    net = d2l.RNNModel(layer(V, 12), V)
    state = net.begin_state(4, "cpu")
    assert isinstance(state, tuple) and len(state) == count
    Y_hat, new_state = net(torch.randint(0, V, (4, 7)), state)
    assert Y_hat.shape == (7 * 4, V)
    assert isinstance(new_state, tuple) and all(s.shape == (1, 4, 12) for s in new_state)


def test_concise_model_refuses_mismatched_layers():
    with pytest.raises(ValueError, match="input_size \\(5\\) must equal vocab_size"):
        d2l.RNNModel(nn.RNN(5, 8), V)
    with pytest.raises(TypeError, match="nn.RNN, nn.GRU or nn.LSTM"):
        d2l.RNNModel(nn.Linear(V, 8), V)
    with pytest.raises(TypeError, match="batch_first=False"):
        d2l.RNNModel(nn.RNN(V, 8, batch_first=True), V)


def test_scratch_model_refuses_bad_sizes():
    with pytest.raises(ValueError, match="num_hiddens must be a positive int"):
        d2l.RNNModelScratch(V, 0, "cpu", tiny_rnn_params, tiny_rnn_state, tiny_rnn)


def test_training_learns_a_repeating_text_and_reports_history():
    torch.manual_seed(0)
    net = scratch_model(32)
    history = d2l.train(net, repeating_loader(), VOCAB, lr=1.0, num_epochs=30, eval_every=10,
                        prefix="abc", plot=False, progress=False)
    assert len(history.train_ppl) == 30 and history.valid_epochs == [10, 20, 30]
    assert history.train_ppl[-1] < 1.5 < history.train_ppl[0]
    assert history.valid_ppl[-1] < 1.5
    assert history.samples[-1].startswith("abcdefgh abcdefgh")
    assert len(history.grad_norms) == 30 * len(repeating_loader())
    assert "held-out perplexity" in str(history)


def test_sequential_training_carries_detached_state_and_random_resets_it():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = d2l.RNNModel(nn.RNN(V, 8), V)

        def forward(self, X, state):
            seen.append((state[0].abs().sum().item(), state[0].requires_grad))
            return self.inner(X, state)

        def begin_state(self, batch_size, device):
            return self.inner.begin_state(batch_size, device)

    for use_random_iter in (False, True):
        seen.clear()
        d2l.train_epoch(Spy(), repeating_loader(use_random_iter=use_random_iter),
                        update=lambda: None, clip=None, theta=1.0, device="cpu")
        carried = [norm > 0 for norm, _ in seen[1:]]
        assert all(carried) if not use_random_iter else not any(carried)
        assert not any(grad for _, grad in seen)  # detached: no graph from earlier batches


def test_clip_receives_the_parameters_and_theta_and_norms_are_before_clipping():
    calls = []

    def recording_clip(params, theta):
        calls.append((len(params), theta))
        torch.nn.utils.clip_grad_norm_(params, theta)

    net = d2l.RNNModel(nn.RNN(V, 8), V)
    _, _, norms = d2l.train_epoch(net, repeating_loader(), update=lambda: None,
                                  clip=recording_clip, theta=1e-6, device="cpu")
    assert calls and all(call == (6, 1e-6) for call in calls)  # RNN 4 + linear 2
    assert all(norm > 1e-3 for norm in norms)  # recorded before clipping to 1e-6
    total = math.sqrt(sum(p.grad.norm() ** 2 for p in net.parameters()))
    assert total == pytest.approx(1e-6, rel=1e-3)


def test_hand_written_sgd_is_called_with_batch_size_one():
    sizes = []
    net = scratch_model()
    d2l.train(net, repeating_loader(), VOCAB, lr=0.1, num_epochs=1, prefix=None, plot=False,
              progress=False, optimizer=lambda batch_size: sizes.append(batch_size))
    assert sizes and set(sizes) == {1}


def test_sgd_steps_against_the_gradient_and_zeroes_it():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    p.grad = torch.tensor([0.5, -1.0])
    d2l.sgd([p], lr=0.2, batch_size=2)
    assert torch.allclose(p.detach(), torch.tensor([0.95, 2.1]))
    assert torch.equal(p.grad, torch.zeros(2))


def test_train_refuses_an_unknown_optimizer_and_bad_epochs():
    net = scratch_model()
    with pytest.raises(TypeError, match="optimizer must be None, a torch.optim.Optimizer"):
        d2l.train(net, repeating_loader(), VOCAB, 1.0, 1, optimizer="adam", plot=False)
    with pytest.raises(ValueError, match="num_epochs must be a positive int"):
        d2l.train(net, repeating_loader(), VOCAB, 1.0, 0, plot=False)


def test_train_stops_with_advice_when_the_loss_explodes(capsys):
    net = d2l.RNNModel(nn.RNN(V, 8), V)
    with torch.no_grad():
        net.linear.weight.fill_(float("nan"))
    history = d2l.train(net, repeating_loader(), VOCAB, 1.0, 5, prefix=None, plot=False,
                        progress=False)
    assert len(history.train_ppl) == 1
    assert "smaller learning rate or clipping" in capsys.readouterr().out


def test_evaluate_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, X, state):
            return torch.zeros(X.numel(), V) + self.dummy, state

        def begin_state(self, batch_size, device):
            return (torch.zeros(batch_size, 1),)

    tokens = torch.randint(0, V, (500,))
    assert d2l.evaluate_perplexity(Uniform(), tokens, 4, 10) == pytest.approx(V, rel=1e-5)


def test_evaluate_perplexity_uses_time_major_labels():
    """A model that knows the next character scores ~1 only if labels are read time-major."""
    tokens = torch.tensor(VOCAB[list("abcdefgh " * 30)])  # a..h are 1..8 and " " is 9

    class NextToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, X, state):
            following = X.transpose(0, 1).flatten() % (V - 1) + 1  # a->b, ..., h->" ", " "->a
            return 50 * F.one_hot(following, V).float() + self.dummy, state

        def begin_state(self, batch_size, device):
            return (torch.zeros(batch_size, 1),)

    assert d2l.evaluate_perplexity(NextToken(), tokens, 3, 7) < 1.01


def test_train_epoch_reads_the_labels_time_major():
    """A model that knows the next character trains at perplexity ~1 only if time-major."""
    tokens = VOCAB[list("abcdefgh " * 30)]

    class NextToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, X, state):
            following = X.transpose(0, 1).flatten() % (V - 1) + 1  # time-major rows
            return 50 * F.one_hot(following, V).float() + self.dummy, state

        def begin_state(self, batch_size, device):
            return (torch.zeros(batch_size, 1),)

    loader = d2l.SeqDataLoader(tokens, 3, 7, seed=0)
    ppl, _, _ = d2l.train_epoch(NextToken(), loader, update=lambda: None, clip=None,
                                theta=1.0, device="cpu")
    assert ppl < 1.01


def test_predict_greedy_keeps_the_prefix_and_refuses_word_vocabularies():
    net = scratch_model()
    text = d2l.predict_greedy("abc", 5, net, VOCAB)
    assert text.startswith("abc") and len(text) == 8
    words = d2l.Vocab(["time", "machine"])
    with pytest.raises(ValueError, match="character vocabularies"):
        d2l.predict_greedy("time", 2, net, words)
