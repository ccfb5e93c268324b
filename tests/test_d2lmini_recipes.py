"""The course's recipe: its model, schedule and time-budgeted training, on tiny data."""

import math

import pytest
import torch

import d2lmini as d2l
from d2lmini.recipes import Recipe, RecipeModel, build_recipe, learning_rate, train_recipe

VOCAB = d2l.Vocab(list("abcdefgh "))
V = len(VOCAB)


def loader(batch_size=4, num_steps=6, use_random_iter=True):
    tokens = VOCAB[list("abcdefgh " * 60)]
    return d2l.SeqDataLoader(tokens[:450], batch_size, num_steps, use_random_iter,
                             heldout=tokens[450:], seed=0)


@pytest.mark.parametrize("changes", [{}, {"cell": "gru", "embed_size": 8},
                                     {"num_layers": 2, "dropout": 0.2, "cell": "rnn"}])
def test_model_has_the_rnn_model_interface(changes):
    net = RecipeModel(V, Recipe(num_hiddens=16).replace(**changes))
    X = torch.randint(0, V, (3, 5))
    state = net.begin_state(3, "cpu")
    Y_hat, new_state = net(X, state)
    assert Y_hat.shape == (5 * 3, V)
    assert [s.shape for s in new_state] == [s.shape for s in state]
    # Row t * batch + b is step t of sequence b: the first 3 rows see only X[:, 0].
    net.eval()
    X2 = X.clone()
    X2[:, 1:] = (X2[:, 1:] + 1) % V
    torch.testing.assert_close(net(X, state)[0][:3], net(X2, state)[0][:3])


def test_schedules():
    constant = Recipe(lr=0.1, schedule="constant")
    cosine = Recipe(lr=0.1, schedule="cosine")
    onecycle = Recipe(lr=0.1, schedule="onecycle", warmup=0.2)
    assert learning_rate(constant, 0.7) == 0.1
    assert learning_rate(cosine, 0) == pytest.approx(0.1)
    assert learning_rate(cosine, 0.5) == pytest.approx(0.05)
    assert learning_rate(cosine, 1.2) == pytest.approx(0.0)   # past the budget: clamped
    assert learning_rate(onecycle, 0) == pytest.approx(0.01)  # warm-up starts at lr / 10
    assert learning_rate(onecycle, 0.2) == pytest.approx(0.1)
    assert learning_rate(onecycle, 0.6) == pytest.approx(0.05)


def test_bad_recipes_say_what_is_wrong():
    with pytest.raises(ValueError, match="cell must be one of"):
        Recipe(cell="transformer")
    with pytest.raises(ValueError, match="schedule"):
        Recipe(schedule="linear")
    with pytest.raises(ValueError, match="num_layers"):
        Recipe(num_layers=0)


def test_recipe_for_a_budget_and_a_device():
    assert d2l.recipe_for("cpu", 30) == Recipe() and Recipe().dropout == 0
    assert d2l.recipe_for("cpu", 60) == Recipe(dropout=0.2)  # long runs overfit without it
    assert d2l.recipe_for("cuda") is d2l.GPU_RECIPE


def test_weight_decay_switches_to_adamw():
    _, optimizer, _ = build_recipe(Recipe(num_hiddens=8, weight_decay=0.0), V, "cpu")
    assert type(optimizer) is torch.optim.Adam
    _, optimizer, _ = build_recipe(Recipe(num_hiddens=8, weight_decay=0.1), V, "cpu")
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["weight_decay"] == 0.1


def test_train_recipe_spends_its_budget_and_learns():
    recipe = Recipe(num_hiddens=32, lr=0.02, schedule="cosine", batch_size=4, num_steps=6)
    history = train_recipe(1.0, recipe, data_iter=loader(), vocab=VOCAB, eval_every=0.25,
                           clock="cpu", device="cpu", prefix="abc")
    assert history.valid_seconds[-1] >= 1.0
    seconds = history.valid_seconds
    assert seconds == sorted(set(seconds)), seconds  # increasing: no evaluation twice
    assert len(history.valid_ppl) == len(history.valid_seconds) == len(history.samples) >= 4
    assert history.valid_epochs == sorted(history.valid_epochs) and history.valid_epochs[-1] > 1
    # A repeating text is easy: far below the 9-way uniform guess of perplexity 9.
    assert history.valid_ppl[-1] < 2 and all(math.isfinite(p) for p in history.train_ppl)
    assert history.samples[-1].startswith("abcdefgh")


def test_train_recipe_needs_the_vocab_of_its_loader():
    with pytest.raises(ValueError, match="vocab"):
        train_recipe(0.1, Recipe(num_hiddens=8), data_iter=loader(), device="cpu")
