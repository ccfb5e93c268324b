"""Small additions to d2lmini made for the lessons, each with its own test."""

import math

import torch
from torch import nn

import d2lmini as d2l
from d2lmini.training import _exp_or_inf


def test_perplexity_of_a_diverged_run_is_inf_not_an_overflow_error(capsys):
    """A learning rate far too high drives the mean loss past 709: train reports inf and stops."""
    assert _exp_or_inf(1000.0) == math.inf
    assert abs(_exp_or_inf(math.log(28.0)) - 28.0) < 1e-9
    vocab = d2l.Vocab(list("abcdefgh "))
    corpus = vocab[list("abcdefgh " * 40)]
    loader = d2l.SeqDataLoader(corpus, 4, 5, seed=0)
    net = d2l.RNNModel(nn.RNN(len(vocab), 8), len(vocab))
    with torch.no_grad():  # logits of +-1e4: the wrong tokens win by ~1e4 nats
        net.linear.weight.zero_()
        net.linear.bias.copy_(torch.linspace(-1e4, 1e4, len(vocab)))
    history = d2l.train(net, loader, vocab, 1.0, 3, clip=None, prefix=None, plot=False,
                        progress=False)
    assert history.train_ppl == [math.inf]
    assert "smaller learning rate or clipping" in capsys.readouterr().out


def test_training_panel_offers_optimizer_and_corpus_size_only_when_asked():
    """Lesson 07's panel adds an optimizer toggle and a training-text dropdown; others don't."""
    plain = d2l.TrainingPanel(lambda config: None)
    assert "optimizer" not in plain.controls and "max_tokens" not in plain.controls
    assert plain.config().optimizer == "sgd" and plain.config().max_tokens == 10000
    calls = []
    panel = d2l.TrainingPanel(calls.append, d2l.TrainingConfig(optimizer="adam"),
                              optimizers=("sgd", "adam"), corpus_sizes=(10000, 50000, -1))
    assert panel.controls["optimizer"].value == "adam"
    assert panel.controls["max_tokens"].value == 10000
    assert [label for label, _ in panel.controls["max_tokens"].options][-1] == "whole book"
    assert calls == []
    panel.controls["optimizer"].value = "sgd"
    panel.controls["max_tokens"].value = -1
    panel.button.click()
    assert calls == [d2l.TrainingConfig(optimizer="sgd", max_tokens=-1)]
