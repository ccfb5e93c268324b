"""Shared fixtures. Tests that need the book call the ``book`` fixture.

The book comes from ``$D2LMINI_DATA`` (CI points it at ../shared/data) or the download cache.
Under ``CI=true`` a missing book fails loudly; elsewhere those tests skip and say why.
"""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


# Unit tests use tiny tensors and pytest-xdist runs workers side by side: extra intra-op
# threads would only fight over the cores (10x slower on a busy 2-core machine).
torch.set_num_threads(1)


def _book_problem():
    """None when the book can be read, else a sentence saying what is wrong."""
    import d2lmini as d2l

    try:
        d2l.read_time_machine()
    except (OSError, ValueError) as err:
        return f"The Time Machine is not available ({err})"
    return None


@pytest.fixture(scope="session")
def book():
    """Skip (or, under CI, fail) tests that need The Time Machine when it cannot be read."""
    problem = _book_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"{problem}. CI must set D2LMINI_DATA to the folder holding timemachine.txt.")
    if problem:
        pytest.skip(f"{problem}. Set D2LMINI_DATA to a folder holding timemachine.txt.")
    return ROOT
