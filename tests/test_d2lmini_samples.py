"""d2l.show_training_samples: greedy samples of a run beside its perplexity curve."""

import re

import pytest
import torch
from torch import nn

import d2lmini as d2l

VOCAB = d2l.Vocab(list("abcdefgh "))


def _history(epochs=10, samples=("a<b", "ab&", "abc", "abcd", "abcde"), heldout=True):
    """A History as d2l.train leaves it: validations at epochs 2, 4, ..., 10."""
    valid = list(range(2, epochs + 1, 2))
    return d2l.History(train_ppl=[20.0 / e for e in range(1, epochs + 1)], valid_epochs=valid,
                       valid_ppl=[25.0 / e for e in valid] if heldout else [],
                       tokens_per_sec=[1.0] * epochs, samples=list(samples))


def test_rows_spread_from_first_to_last_sample_with_their_perplexities():
    view = d2l.show_training_samples(_history(), num=3)
    assert [(r.epoch, r.sample) for r in view.rows] == [(2, "a<b"), (6, "abc"), (10, "abcde")]
    assert [r.train_ppl for r in view.rows] == [10.0, 20.0 / 6, 2.0]
    assert [r.heldout_ppl for r in view.rows] == [12.5, 25.0 / 6, 2.5]
    assert len(d2l.show_training_samples(_history(), num=50).rows) == 5  # all there are
    assert [r.epoch for r in d2l.show_training_samples(_history(), num=1).rows] == [10]


def test_curve_has_labelled_axes_and_a_numbered_marker_per_row():
    view = d2l.show_training_samples(_history(), num=3)
    axes = view.axes
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("epoch", "perplexity")
    assert axes.get_yscale() == "log" and axes.get_title()
    assert [line.get_label() for line in axes.get_lines()] == ["train", "held-out"]
    marks = [(t.get_text(), t.xy) for t in axes.texts]
    assert marks == [("1", (2, 12.5)), ("2", (6, 25.0 / 6)), ("3", (10, 2.5))]
    assert view.png().startswith(b"\x89PNG")


def test_html_escapes_samples_and_keeps_their_spaces():
    html = d2l.show_training_samples(_history(samples=["a<b", "x  &y"]))._repr_html_()
    assert "a&lt;b" in html and "x  &amp;y" in html and "a<b" not in html
    assert "white-space:pre" in html and "data:image/png;base64," in html
    assert re.search(r"<th[^>]*>held-out ppl</th>", html)


def test_text_table_without_held_out_text():
    text = str(d2l.show_training_samples(_history(heldout=False), num=2))
    assert "held-out" not in text
    lines = text.splitlines()
    assert lines[0].split() == ["#", "epoch", "train", "ppl", "greedy", "sample"]
    assert lines[1].split() == ["1", "2", "10.00", "'a<b'"]
    assert lines[2].split() == ["2", "10", "2.00", "'abcde'"]


def test_refuses_a_history_without_samples_or_a_bad_num():
    with pytest.raises(ValueError, match="no samples.*prefix"):
        d2l.show_training_samples(_history(samples=()))
    with pytest.raises(ValueError, match="num must be a positive int, got 0"):
        d2l.show_training_samples(_history(), num=0)


def test_rows_of_a_real_run_line_up_with_its_history():
    """d2l.train on a repeating text: each row is the sample and perplexities of its epoch."""
    torch.manual_seed(0)
    tokens = VOCAB[list("abcdefgh " * 60)]
    loader = d2l.SeqDataLoader(tokens[:450], 4, 6, heldout=tokens[450:], seed=0)
    net = d2l.RNNModel(nn.RNN(len(VOCAB), 32), len(VOCAB))
    history = d2l.train(net, loader, VOCAB, lr=0.5, num_epochs=12, eval_every=3, prefix="abc",
                        plot=False, progress=False)
    rows = d2l.show_training_samples(history, num=3).rows
    assert [r.epoch for r in rows] == [3, 9, 12]
    assert [r.sample for r in rows] == [history.samples[i] for i in (0, 2, 3)]
    assert [r.heldout_ppl for r in rows] == [history.valid_ppl[i] for i in (0, 2, 3)]
    assert [r.train_ppl for r in rows] == [history.train_ppl[e - 1] for e in (3, 9, 12)]
    assert rows[-1].sample.startswith("abcdefgh abcdefgh")
