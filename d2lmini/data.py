"""The corpus: download and verify The Time Machine, tokens, vocabulary, minibatch sampling."""

import collections
import functools
import hashlib
import itertools
import numbers
import os
import random
import re
from pathlib import Path

import torch

__all__ = [
    "DATA_ENV", "DATA_URL", "SHA1", "time_machine_path", "read_time_machine", "tokenize",
    "Vocab", "load_corpus_time_machine", "split_heldout", "SeqDataLoader",
    "load_data_time_machine",
]

DATA_ENV = "D2LMINI_DATA"
FILENAME = "timemachine.txt"
DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/" + FILENAME  # the d2l book's address
SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
TOKEN_KINDS = ("char", "word")


def _positive_int(value, name):
    """Return ``value`` if it is an int >= 1, else raise with the argument's name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    return int(value)


def _token_kind(token):
    if token not in TOKEN_KINDS:
        raise ValueError(f"token must be one of {TOKEN_KINDS}, got {token!r}")
    return token


# --- the book -------------------------------------------------------------------------------

def time_machine_path() -> Path:
    """Where the verified book lies: in ``$D2LMINI_DATA`` if set, else downloaded and cached."""
    folder = os.environ.get(DATA_ENV)
    if not folder:
        return _download()
    path = Path(folder).expanduser() / FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{DATA_ENV}={folder!r} but {path} does not exist. Put {FILENAME} "
            f"(from {DATA_URL}) in that folder, or unset {DATA_ENV} to download it.")
    return path


def _download() -> Path:
    """Fetch the book into the per-user cache once; pooch checks its SHA-1."""
    import pooch  # imported here: only the first run of a fresh machine needs it

    pooch.get_logger().setLevel("WARNING")
    cache = pooch.os_cache("d2lmini")
    try:
        return Path(pooch.retrieve(DATA_URL, known_hash=f"sha1:{SHA1}", fname=FILENAME,
                                   path=cache, progressbar=False))
    except ValueError as err:  # pooch's hash mismatch: the download itself is wrong
        raise ValueError(f"The downloaded {FILENAME} failed its SHA-1 check ({err}). "
                         f"Delete {cache} and try again.") from err
    except Exception as err:  # no network, DNS, HTTP errors: say how to work offline
        raise ConnectionError(
            f"Could not download {DATA_URL} ({type(err).__name__}: {err}). Without internet, "
            f"copy {FILENAME} into a folder and set {DATA_ENV} to that folder.") from err


@functools.lru_cache(maxsize=4)
def _verified_text(path: Path, mtime_ns: int) -> str:
    """The book's text after checking its SHA-1 (cached per file version)."""
    data = path.read_bytes()
    digest = hashlib.sha1(data).hexdigest()
    if digest != SHA1:
        raise ValueError(
            f"{path} has SHA-1 {digest}, expected {SHA1}: the file is corrupt, partial or a "
            f"different text. Replace it with the original from {DATA_URL} (or delete it to "
            "download it again).")
    return data.decode("utf-8")


@functools.lru_cache(maxsize=4)
def _clean_lines(path: Path, mtime_ns: int) -> tuple[str, ...]:
    """The verified book's lines, cleaned (cached per file version, like the text)."""
    text = _verified_text(path, mtime_ns)
    return tuple(re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines())


def read_time_machine() -> list[str]:
    """The book as lines of lowercase letters and single spaces (punctuation removed)."""
    path = time_machine_path()
    return list(_clean_lines(path, path.stat().st_mtime_ns))


def tokenize(lines, token="char"):
    """Split each line into characters (``token='char'``) or words (``token='word'``)."""
    if isinstance(lines, str):
        raise TypeError("tokenize takes a list of lines, got one str: wrap it as [text]")
    if _token_kind(token) == "word":
        return [line.split() for line in lines]
    return [list(line) for line in lines]


# --- vocabulary -----------------------------------------------------------------------------

class Vocab:
    """Maps tokens to indices and back; ``<unk>`` is index 0.

    Tokens seen fewer than ``min_freq`` times map to ``<unk>``; the rest are numbered from the
    most to the least frequent, after ``<unk>`` and any ``reserved_tokens``.
    """

    def __init__(self, tokens=(), min_freq=0, reserved_tokens=None):
        if isinstance(min_freq, bool) or not isinstance(min_freq, numbers.Integral) \
                or min_freq < 0:
            raise ValueError(f"min_freq must be an int >= 0, got {min_freq!r}")
        reserved = list(reserved_tokens or [])
        if not all(isinstance(t, str) for t in reserved):
            raise TypeError(f"reserved_tokens must be a list of str, got {reserved_tokens!r}")
        counter = collections.Counter(_flatten(tokens))
        self.token_freqs = sorted(counter.items(), key=lambda kv: kv[1], reverse=True)
        self.idx_to_token = ["<unk>"] + [t for t in reserved if t != "<unk>"]
        self.idx_to_token += [t for t, freq in self.token_freqs
                              if freq >= min_freq and t not in self.idx_to_token]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}

    def __len__(self):
        return len(self.idx_to_token)

    @property
    def unk(self) -> int:
        return 0

    def __getitem__(self, tokens):
        """Index of a token (str), or a list of indices for a list or tuple of tokens."""
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        if isinstance(tokens, list | tuple):
            return [self[t] for t in tokens]
        raise TypeError(f"Vocab lookup takes a token (str) or a list/tuple of tokens, got "
                        f"{type(tokens).__name__}; to turn indices into tokens use to_tokens")

    def to_tokens(self, indices):
        """Token of an index, or a list of tokens for a list, tuple or 1-D tensor of indices."""
        if torch.is_tensor(indices):
            indices = indices.tolist()
        if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
            if not 0 <= indices < len(self):
                raise IndexError(f"index {indices} is outside the vocabulary [0, {len(self)})")
            return self.idx_to_token[indices]
        if isinstance(indices, list | tuple):
            return [self.to_tokens(i) for i in indices]
        raise TypeError(f"to_tokens takes an int or a list/tensor of ints, got "
                        f"{type(indices).__name__}")


def _flatten(tokens):
    """Tokens from a flat list or a list of token lists (lines)."""
    for item in tokens:
        if isinstance(item, list | tuple):
            yield from item
        else:
            yield item


def load_corpus_time_machine(max_tokens=-1, token="char"):
    """The whole book as token indices, and its vocabulary.

    Returns:
        corpus: list of ints, the first ``max_tokens`` tokens (all when ``max_tokens < 0``).
        vocab: the ``Vocab`` of the whole book.
    """
    tokens = tokenize(read_time_machine(), token)
    vocab = Vocab(tokens)
    index = vocab.token_to_idx  # holds every token of the book: the same as vocab[t], faster
    corpus = list(map(index.__getitem__, itertools.chain.from_iterable(tokens)))
    return (corpus[:max_tokens] if max_tokens > 0 else corpus), vocab


def split_heldout(corpus, valid_fraction=0.1):
    """Split a corpus into its head (training) and its tail (held-out, ``valid_fraction``)."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    cut = len(corpus) - int(len(corpus) * valid_fraction)
    return corpus[:cut], corpus[cut:]


# --- minibatches ----------------------------------------------------------------------------
# The two samplers are private: lesson 01 asks the student to write them, so the library offers
# them only through SeqDataLoader (a student who delegates to them earns nothing).

def _check_batch_fits(corpus, batch_size, num_steps, extra):
    needed = batch_size * num_steps + extra
    if len(corpus) < needed:
        raise ValueError(
            f"a corpus of {len(corpus)} tokens is too short for one batch of batch_size="
            f"{batch_size} x num_steps={num_steps} (it needs at least {needed}): use more "
            "tokens (max_tokens) or a smaller batch_size or num_steps")


def _seq_data_iter_random(corpus, batch_size, num_steps, rng=random):
    """Random sampling: each example is a subsequence starting anywhere, in random order.

    Yields:
        X, Y: int64 tensors of shape (batch_size, num_steps); Y is X shifted by one token.
        Subsequences never overlap and neighbouring batches are not contiguous.
    """
    batch_size, num_steps = _positive_int(batch_size, "batch_size"), \
        _positive_int(num_steps, "num_steps")
    corpus = torch.as_tensor(corpus, dtype=torch.long)
    _check_batch_fits(corpus, batch_size, num_steps, num_steps)
    corpus = corpus[rng.randint(0, num_steps - 1):]  # a random offset covers every split
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = list(range(0, num_subseqs * num_steps, num_steps))
    rng.shuffle(starts)
    offsets = torch.arange(num_steps)
    for i in range(0, (num_subseqs // batch_size) * batch_size, batch_size):
        index = torch.tensor(starts[i:i + batch_size])[:, None] + offsets  # (batch, steps)
        yield corpus[index], corpus[index + 1]


def _seq_data_iter_sequential(corpus, batch_size, num_steps, rng=random, offset=None):
    """Sequential partitioning: row i of batch k+1 continues row i of batch k.

    Args:
        offset: where the first token is taken; random in ``[0, num_steps]`` when None.
    Yields:
        X, Y: int64 tensors of shape (batch_size, num_steps); Y is X shifted by one token.
    """
    batch_size, num_steps = _positive_int(batch_size, "batch_size"), \
        _positive_int(num_steps, "num_steps")
    corpus = torch.as_tensor(corpus, dtype=torch.long)
    _check_batch_fits(corpus, batch_size, num_steps, num_steps + 1)
    offset = rng.randint(0, num_steps) if offset is None else offset
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)  # (batch, tokens/batch)
    Ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, (Xs.shape[1] // num_steps) * num_steps, num_steps):
        yield Xs[:, i:i + num_steps], Ys[:, i:i + num_steps]


class SeqDataLoader:
    """Minibatches of a token corpus; the iteration mode is part of the loader.

    Because the mode lives here, a training loop reads ``use_random_iter`` from the loader it
    iterates, and can never be told "random" while the data arrive sequentially.
    """

    def __init__(self, corpus, batch_size, num_steps, use_random_iter=False, heldout=None,
                 seed=None):
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.num_steps = _positive_int(num_steps, "num_steps")
        if not isinstance(use_random_iter, bool):
            raise TypeError(f"use_random_iter must be True or False, got {use_random_iter!r}")
        self.use_random_iter = use_random_iter
        self.corpus = torch.as_tensor(corpus, dtype=torch.long)
        _check_batch_fits(self.corpus, self.batch_size, self.num_steps, self.num_steps + 1)
        self.heldout = None if heldout is None else torch.as_tensor(heldout, dtype=torch.long)
        # The random stream is kept as its state (plain ints), so that a loader is plain data:
        # the autograder sends it into the student's sandbox by its attributes.
        self.rng_state = random.Random(seed).getstate()

    def __iter__(self):
        sample = _seq_data_iter_random if self.use_random_iter else _seq_data_iter_sequential
        rng = random.Random()
        rng.setstate(self.rng_state)
        batches = sample(self.corpus, self.batch_size, self.num_steps, rng=rng)
        first = next(batches, None)  # the samplers draw the epoch's offset and order first
        self.rng_state = rng.getstate()
        return itertools.chain([] if first is None else [first], batches)

    def __len__(self):
        """Batches per epoch (the random offset can drop at most one)."""
        return (len(self.corpus) - 1) // (self.batch_size * self.num_steps)

    def __repr__(self):
        mode = "random" if self.use_random_iter else "sequential"
        return (f"SeqDataLoader({len(self.corpus)} tokens, batch_size={self.batch_size}, "
                f"num_steps={self.num_steps}, {mode})")


def load_data_time_machine(batch_size, num_steps, use_random_iter=False, max_tokens=10000,
                           token="char", valid_fraction=0.1, seed=None):
    """Training minibatches from the head of the book, the tail held out for validation.

    Args:
        max_tokens: how many tokens of the training part to use (all when < 0); the d2l book
            trains on the first 10,000 characters.
        valid_fraction: the share of the book, taken from its end, kept for validation.
    Returns:
        (data_iter, vocab): ``data_iter`` yields ``(X, Y)`` of shape (batch_size, num_steps)
        and holds the held-out token indices in ``data_iter.heldout``.
    """
    corpus, vocab = load_corpus_time_machine(token=token)
    train, heldout = split_heldout(corpus, valid_fraction)
    train = train[:max_tokens] if max_tokens > 0 else train
    return SeqDataLoader(train, batch_size, num_steps, use_random_iter, heldout, seed), vocab
