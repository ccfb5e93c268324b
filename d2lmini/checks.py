"""Self-explaining checks for exercises: each failure says what was expected, what came back,
and the usual cause.

Test cells use these instead of bare ``assert`` so a student reads, for example,
``one_hot(X, 28): expected shape (35, 2, 28), got (2, 35, 28): did you transpose X?``
"""

import math
from collections.abc import Mapping

import torch

from d2lmini.i18n import gettext as _
from d2lmini.i18n import translate

__all__ = ["check_shape", "check_dtype", "check_equal", "assert_close", "relative_error",
           "repeat_calls"]


def _explain(message, hint=None):
    """Append the likely cause to a failure message (both in the current language)."""
    return _("{message}: {hint}").format(message=message, hint=translate(hint)) if hint \
        else message


def _expected(template, name, **values):
    """A failure message from one of the templates below, ``name`` translated when it can be."""
    return _(template).format(name=translate(name), **values)


def check_shape(tensor, expected, name, hints: Mapping | None = None):
    """Check ``tensor.shape == expected``.

    Args:
        tensor: anything with a ``.shape``.
        expected: the expected shape, e.g. ``(35, 2, 28)``.
        name: what is being checked, as the student wrote it, e.g. ``"one_hot(X, 28)"``.
        hints: maps a wrong shape to its usual cause,
            e.g. ``{(2, 35, 28): "did you transpose X?"}``.
    """
    if not hasattr(tensor, "shape"):
        raise AssertionError(_expected("{name}: expected a tensor of shape {expected}, got {got}",
                                       name, expected=tuple(expected), got=type(tensor).__name__))
    got, expected = tuple(tensor.shape), tuple(expected)
    if got != expected:
        hint = (hints or {}).get(got)
        raise AssertionError(_explain(_expected("{name}: expected shape {expected}, got {got}",
                                                name, expected=expected, got=got), hint))


def check_dtype(tensor, expected, name, hint=None):
    """Check ``tensor.dtype == expected`` (e.g. ``torch.float32``)."""
    got = getattr(tensor, "dtype", type(tensor).__name__)
    if got != expected:
        raise AssertionError(_explain(_expected("{name}: expected dtype {expected}, got {got}",
                                                name, expected=expected, got=got), hint))


def check_equal(actual, expected, name, hint=None):
    """Check ``actual == expected`` for plain values (strings, ints, lists, tuples)."""
    if actual != expected:
        raise AssertionError(_explain(_expected("{name}: expected {expected}, got {got}", name,
                                                expected=repr(expected), got=repr(actual)), hint))


def repeat_calls(function, times, *args, **kwargs) -> list:
    """``[function(*args, **kwargs) for _ in range(times)]``: the same call, ``times`` times.

    Test cells draw samples with it (e.g. 1,000 tokens from ``sample_next(logits, 1.0, gen)``,
    the generator moving on from call to call). When ``function`` offers a ``repeat_calls``
    method of its own, that is used instead: the course's grader, which runs the student's
    function in another process, sends all the calls there as one request.
    """
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        raise ValueError(f"times must be a non-negative int, got {times!r}")
    own = getattr(function, "repeat_calls", None)
    if callable(own):
        return own(times, args, kwargs)
    return [function(*args, **kwargs) for _ in range(times)]


def relative_error(actual, expected) -> float:
    """max |a - e| / max(|a| + |e|, tiny): the CS231n-style relative error of two tensors."""
    a, e = _as_tensor(actual), _as_tensor(expected)
    return ((a - e).abs() / (a.abs() + e.abs()).clamp_min(1e-12)).max().item()


def _as_tensor(x):
    return torch.as_tensor(x.detach() if torch.is_tensor(x) else x, dtype=torch.float64)


def assert_close(actual, expected, name, rtol=1e-5, atol=1e-6, hint=None):
    """Check that two numbers or tensors agree within ``atol + rtol * |expected|``.

    The message names the worst element: where it is, what was expected and what came back.
    """
    if isinstance(actual, float | int) and isinstance(expected, float | int):
        if not math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol):
            message = _expected("{name}: expected {expected}, got {got}", name,
                                expected=f"{expected:.6g}", got=f"{actual:.6g}")
            raise AssertionError(_explain(message, hint))
        return
    a, e = _as_tensor(actual), _as_tensor(expected)
    if a.shape != e.shape:
        raise AssertionError(_explain(_expected(
            "{name}: expected shape {expected}, got {got}", name, expected=tuple(e.shape),
            got=tuple(a.shape)), hint))
    excess = (a - e).abs() - (atol + rtol * e.abs())
    if a.numel() and (excess.max() > 0 or torch.isnan(a).any()):
        flat = int(torch.nan_to_num(excess, nan=math.inf).argmax())
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape))
        raise AssertionError(_explain(_expected(
            "{name}: expected {expected} at index {where}, got {got} "
            "(max relative error {error})", name, expected=f"{e.flatten()[flat].item():.6g}",
            where=where, got=f"{a.flatten()[flat].item():.6g}",
            error=f"{relative_error(a, e):.2e}"), hint))
