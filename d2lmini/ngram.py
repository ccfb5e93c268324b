"""Counting instead of learning: an interpolated Kneser-Ney n-gram model of a token sequence.

The bar a neural language model has to clear. Counts are vectorised: every k-gram of the
corpus gets an integer id by extending its (k-1)-gram suffix one token to the left and ranking
the resulting keys with ``torch.unique``, so fitting 150k characters up to order 8 takes well
under a second and nothing loops over tokens in Python.

Interpolated Kneser-Ney (Chen & Goodman 1998, one discount ``D``), for context ``h`` of
length k-1 and its shortening ``h'`` (oldest token dropped)::

    P_k(w | h) = max(a(hw) - D, 0) / d(h) + D * u(h) / d(h) * P_{k-1}(w | h')

where at the highest order ``a`` is the raw count c(hw), at lower orders the continuation
count N1+(. hw) (how many different tokens precede hw), ``d(h) = sum_w a(hw)``, ``u(h)`` the
number of w with ``a(hw) > 0``, and ``P_0(w) = 1 / vocab_size``. A context never seen in
training (``d(h) = 0``) backs off to ``P_{k-1}`` entirely.
"""

import copy
import math
import numbers

import torch

from d2lmini.data import _positive_int, split_heldout

__all__ = ["KneserNeyModel", "best_kneser_ney"]


def _as_tokens(tokens, vocab_size, name="tokens"):
    """A 1-D int64 tensor of token indices in [0, vocab_size)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.dim() != 1:
        raise ValueError(f"{name} must be 1-D (a flat sequence of token indices), got shape "
                         f"{tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, vocab_size={vocab_size}), got values in "
                         f"[{int(tokens.min())}, {int(tokens.max())}]: wrong vocabulary?")
    return tokens


class _Order:
    """The statistics of the k-grams of one length k, indexed by k-gram id."""

    def __init__(self, keys, raw, context, num_contexts):
        self.keys = keys                # (n_k,) sorted keys: suffix_id * V + first token
        self.raw = raw                  # (n_k,) float: occurrences c(hw)
        self.context = context          # (n_k,) long: id of the (k-1)-gram h (0 for k = 1)
        self.num_contexts = num_contexts
        self.cont = None                # (n_k,) float: N1+(. hw), set from the (k+1)-grams
        self.stats = {}                 # kind -> (d(h), u(h)), each (num_contexts,)

    def summarise(self, kind):
        """d(h) and u(h) of every context, for counts ``raw`` or ``cont``."""
        a = self.raw if kind == "raw" else self.cont
        d = torch.zeros(self.num_contexts).index_add_(0, self.context, a)
        u = torch.zeros(self.num_contexts).index_add_(0, self.context, (a > 0).float())
        self.stats[kind] = (d, u)


class KneserNeyModel:
    """An interpolated Kneser-Ney n-gram model over token indices ``0 .. vocab_size-1``.

    Args:
        order: n, the length of the longest n-gram (context of n-1 tokens).
        vocab_size: number of token indices; unseen tokens get probability > 0.
        discount: D in [0, 1], subtracted from every positive count.
    """

    def __init__(self, order: int, vocab_size: int, discount: float = 0.75):
        self.order = _positive_int(order, "order")
        self.vocab_size = _positive_int(vocab_size, "vocab_size")
        if isinstance(discount, bool) or not isinstance(discount, numbers.Real) \
                or not 0 <= discount <= 1:
            raise ValueError(f"discount must be a number in [0, 1], got {discount!r}")
        self.discount = float(discount)
        self.orders = None  # list of _Order for k = 1..order once fitted

    def __repr__(self):
        state = "fitted" if self.orders else "not fitted"
        return (f"KneserNeyModel(order={self.order}, vocab_size={self.vocab_size}, "
                f"discount={self.discount}, {state})")

    # --- counting ---------------------------------------------------------------------------

    def fit(self, tokens):
        """Count the k-grams (k = 1..order) of a 1-D token sequence; returns self."""
        tokens = _as_tokens(tokens, self.vocab_size)
        if tokens.numel() == 0:
            raise ValueError("fit needs at least one token, got an empty sequence")
        self.orders, previous = [], None  # previous: (N,) ids of the (k-1)-grams ending at i
        for k in range(1, self.order + 1):
            stats, previous = self._count(tokens, k, previous)
            if stats is None:  # the corpus is shorter than k tokens
                break
            self.orders.append(stats)
        for lower, higher in zip(self.orders, self.orders[1:], strict=False):
            suffix = higher.keys // self.vocab_size  # the k-gram each (k+1)-gram extends
            lower.cont = torch.zeros(len(lower.keys)).index_add_(
                0, suffix, torch.ones(len(suffix)))
            lower.summarise("cont")
        for stats in self.orders:
            stats.summarise("raw")
        return self

    def _count(self, tokens, k, previous):
        """Ids (N,) of the k-grams ending at each position (-1 where i < k-1) and their stats."""
        n, V = len(tokens), self.vocab_size
        if n < k:
            return None, None
        ends = torch.arange(k - 1, n)                      # positions where a k-gram ends
        suffix = torch.zeros(len(ends), dtype=torch.long) if k == 1 else previous[ends]
        keys, ids = torch.unique(suffix * V + tokens[ends - k + 1], return_inverse=True)
        raw = torch.bincount(ids, minlength=len(keys)).float()
        if k == 1:
            context, num_contexts = torch.zeros(len(keys), dtype=torch.long), 1
        else:  # the context of the k-gram ending at i is the (k-1)-gram ending at i-1
            context = torch.zeros(len(keys), dtype=torch.long)
            context[ids] = previous[ends - 1]
            num_contexts = int(previous.max()) + 1
        current = torch.full((n,), -1, dtype=torch.long)
        current[ends] = ids
        return _Order(keys, raw, context, num_contexts), current

    def _truncated(self, order):
        """The model of a lower ``order``, as ``fit`` would give it, from this fitted one."""
        self._check_fitted()
        model = KneserNeyModel(_positive_int(order, "order"), self.vocab_size, self.discount)
        model.orders = self.orders[:order]
        if len(model.orders) < len(self.orders):  # its longest order has no (k+1)-grams above
            top = copy.copy(model.orders[-1])
            top.cont, top.stats = None, {"raw": top.stats["raw"]}
            model.orders[-1] = top
        return model

    # --- scoring ----------------------------------------------------------------------------

    def _check_fitted(self):
        if not self.orders:
            raise RuntimeError("this KneserNeyModel is not fitted yet: call .fit(tokens)")

    def _gram_ids(self, rows):
        """Ids of the k-grams ending at each position of ``rows`` (B, L), -1 where unseen.

        Returns a list over k = 1..len(self.orders) of (B, L) long tensors.
        """
        V, ids = self.vocab_size, []
        previous = torch.zeros_like(rows)  # the empty suffix has id 0
        for k, stats in enumerate(self.orders, start=1):
            current = torch.full_like(rows, -1)
            if rows.shape[1] >= k:
                suffix, first = previous[:, k - 1:], rows[:, :rows.shape[1] - k + 1]
                keys = suffix.clamp(min=0) * V + first
                where = torch.searchsorted(stats.keys, keys).clamp(max=len(stats.keys) - 1)
                found = (stats.keys[where] == keys) & (suffix >= 0)
                current[:, k - 1:] = torch.where(found, where, -1)
            ids.append(current)
            previous = current
        return ids

    def _probs(self, rows):
        """P(rows[:, i] | up to order-1 earlier tokens of the row), shape (B, L).

        Position i uses a context of min(order, i + 1) - 1 tokens; its longest order scores
        with raw counts, the shorter ones with continuation counts.
        """
        ids = self._gram_ids(rows)
        positions = torch.arange(rows.shape[1]).expand_as(rows)
        top = (positions + 1).clamp(max=len(self.orders))        # highest order per position
        P = torch.full(rows.shape, 1.0 / self.vocab_size, dtype=torch.float64)
        for k, stats in enumerate(self.orders, start=1):
            if k == 1:
                context = torch.zeros_like(rows)
            else:  # the (k-1)-gram ending one position earlier
                context = torch.full_like(rows, -1)
                context[:, 1:] = ids[k - 2][:, :-1]
            raw = self._interpolate(stats, "raw", ids[k - 1], context, P)
            cont = self._interpolate(stats, "cont", ids[k - 1], context, P) \
                if stats.cont is not None else raw
            P = torch.where(top == k, raw, torch.where(top > k, cont, P))
        return P

    def _interpolate(self, stats, kind, gram, context, lower):
        """One step of the recursion for every position; ``lower`` is P_{k-1}, (B, L)."""
        d, u = stats.stats[kind]
        counts = stats.raw if kind == "raw" else stats.cont
        seen = context >= 0
        dh = torch.where(seen, d[context.clamp(min=0)], 0.0).double()
        uh = torch.where(seen, u[context.clamp(min=0)], 0.0).double()
        a = torch.where(gram >= 0, counts[gram.clamp(min=0)], 0.0).double()
        safe = dh.clamp(min=1.0)
        mixed = (a - self.discount).clamp(min=0) / safe + self.discount * uh / safe * lower
        return torch.where(dh > 0, mixed, lower)

    def log_probs(self, context):
        """Natural-log probabilities (vocab_size,) of the next token after ``context``.

        Args:
            context: a 1-D int tensor or list of earlier tokens (may be empty); only the last
                order-1 are used.
        """
        self._check_fitted()
        context = _as_tokens(context, self.vocab_size, "context")
        context = context[max(0, len(context) - (self.order - 1)):]  # (<= order-1,)
        V = self.vocab_size
        rows = torch.cat([context.expand(V, len(context)), torch.arange(V)[:, None]], dim=1)
        return self._probs(rows)[:, -1].log().float()

    def perplexity(self, tokens) -> float:
        """exp(mean negative log-likelihood per token) of a held-out sequence.

        Every token is predicted; the first order-1 use the shorter contexts available.
        """
        self._check_fitted()
        tokens = _as_tokens(tokens, self.vocab_size)
        if tokens.numel() == 0:
            raise ValueError("perplexity needs at least one token, got an empty sequence")
        log_p = self._probs(tokens[None, :]).log()
        return math.exp(-log_p.mean().item())


def best_kneser_ney(train_tokens, vocab_size, orders=range(2, 9), valid_fraction=0.1,
                    discount=0.75):
    """Choose the order on a validation split carved from the END of the training tokens.

    Fits one model per order on the head of ``train_tokens``, scores the tail, then refits the
    best order on all of ``train_tokens``. The text you report on is never looked at.

    Returns:
        (model, order, {order: validation perplexity}).
    """
    train_tokens = _as_tokens(train_tokens, vocab_size, "train_tokens")
    orders = list(orders)
    if not orders:
        raise ValueError("orders must name at least one order, got an empty range")
    head, tail = split_heldout(train_tokens, valid_fraction)
    # The k-gram statistics of an order-n fit do not depend on n (the longest order only adds
    # continuation counts, which it never uses): count once, up to the largest order.
    largest = KneserNeyModel(max(orders), vocab_size, discount).fit(head)
    scores = {k: largest._truncated(k).perplexity(tail) for k in orders}
    best = min(scores, key=scores.__getitem__)
    return KneserNeyModel(best, vocab_size, discount).fit(train_tokens), best, scores
