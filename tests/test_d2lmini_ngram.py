"""The Kneser-Ney count model: normalisation, a hand-computed case, back-off, the book's figure."""

import itertools
import math

import pytest
import torch

import d2lmini as d2l

A, B, C = 0, 1, 2  # a three-token vocabulary; C never occurs in the tiny corpus


def tiny_model(order=2, discount=0.5):
    return d2l.KneserNeyModel(order, 3, discount).fit([A, B, A, B])


def test_hand_computed_bigram():
    """Corpus "abab", V=3, D=0.5, worked out on paper.

    Unigram continuation counts: N1+(.a) = |{b}| = 1, N1+(.b) = |{a}| = 1, so
    P1(a) = P1(b) = 0.5/2 + 0.5*2/2 * 1/3 = 5/12 and P1(c) = 1/6.
    Bigrams: c(ab) = 2, c(ba) = 1.  P(b|a) = 1.5/2 + 0.5*1/2 * 5/12 = 0.75 + 5/48.
    P(c|b) = 0 + 0.5*1/1 * 1/6 = 1/12.  The first token has no context: raw unigram counts
    c(a) = c(b) = 2, so P(a) = 1.5/4 + 0.5*2/4 * 1/3 = 11/24.
    """
    model = tiny_model()
    expected = {A: 0.25 * 5 / 12, B: 0.75 + 5 / 48, C: 0.25 / 6}
    got = model.log_probs([A]).exp()
    for token, p in expected.items():
        assert got[token].item() == pytest.approx(p, rel=1e-6)
    ppl = model.perplexity([A, B, C])
    assert ppl == pytest.approx((11 / 24 * (0.75 + 5 / 48) * 1 / 12) ** (-1 / 3), rel=1e-6)


def test_unseen_context_backs_off_to_continuation_unigrams():
    got = tiny_model().log_probs([C]).exp()  # "c" never occurs: no bigram statistics
    assert got.tolist() == pytest.approx([5 / 12, 5 / 12, 1 / 6], rel=1e-6)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_for_every_context(order):
    gen = torch.Generator().manual_seed(0)
    V = 5
    corpus = torch.randint(0, V - 1, (300,), generator=gen)  # token V-1 never occurs
    model = d2l.KneserNeyModel(order, V).fit(corpus)
    for length in range(order):
        for context in itertools.product(range(V), repeat=length):
            probs = model.log_probs(list(context)).exp()
            assert probs.shape == (V,)
            assert (probs > 0).all(), f"a zero probability after context {context}"
            assert probs.sum().item() == pytest.approx(1.0, abs=1e-5), context


def test_oldest_unseen_tokens_do_not_matter():
    """Once a context is unseen, its older tokens cannot change the distribution."""
    model = d2l.KneserNeyModel(4, 3).fit([A, B, A, B, B, A])
    torch.testing.assert_close(model.log_probs([C, C, A]), model.log_probs([B, C, A]))
    torch.testing.assert_close(model.log_probs([A, C, A]), model.log_probs([C, C, A]))


def test_perplexity_is_the_product_of_next_token_probabilities():
    gen = torch.Generator().manual_seed(1)
    corpus = torch.randint(0, 4, (200,), generator=gen)
    heldout = torch.randint(0, 4, (12,), generator=gen)
    model = d2l.KneserNeyModel(3, 4).fit(corpus)
    log_p = [model.log_probs(heldout[:i])[heldout[i]].item() for i in range(len(heldout))]
    assert model.perplexity(heldout) == pytest.approx(math.exp(-sum(log_p) / len(log_p)),
                                                      rel=1e-5)


def test_higher_order_fits_training_text_better():
    text = [A, B, C, A, C, B] * 30
    ppl = [d2l.KneserNeyModel(k, 3).fit(text).perplexity(text) for k in (1, 2, 3)]
    assert ppl[0] > ppl[1] > ppl[2]


def test_clear_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        d2l.KneserNeyModel(2, 3).perplexity([A])
    with pytest.raises(ValueError, match="vocab_size=3"):
        d2l.KneserNeyModel(2, 3).fit([A, 3])
    with pytest.raises(ValueError, match="discount"):
        d2l.KneserNeyModel(2, 3, discount=1.5)
    with pytest.raises(ValueError, match="1-D"):
        d2l.KneserNeyModel(2, 3).fit([[A, B]])


def test_best_kneser_ney_chooses_on_the_end_of_the_training_tokens():
    # The head repeats "ab", the last 10% repeats "ba c": only that tail decides the order.
    text = [A, B] * 90 + [B, A, C] * 7
    model, order, scores = d2l.best_kneser_ney(text, 3, orders=[1, 2, 3])
    assert list(scores) == [1, 2, 3] and order == min(scores, key=scores.get)
    head, tail = d2l.split_heldout(text, 0.1)
    assert scores[2] == pytest.approx(d2l.KneserNeyModel(2, 3).fit(head).perplexity(tail))
    assert model.order == order
    assert model.orders[0].raw.sum().item() == len(text)  # refitted on all the tokens


def test_book_six_gram_heldout_perplexity(book):
    """Issue 15's figure: KN (D = 0.75) 6-gram on the first 90% of the book, last 10% held out."""
    data_iter, vocab = d2l.load_data_time_machine(32, 35, max_tokens=-1)
    model = d2l.KneserNeyModel(6, len(vocab)).fit(data_iter.corpus)
    assert 4.2 < model.perplexity(data_iter.heldout) < 4.36
    _, order, scores = d2l.best_kneser_ney(data_iter.corpus, len(vocab))
    assert 5 <= order <= 7, scores
