"""The d2l book's own code (``d2l==0.17.5``), installed apart from the project and imported.

``pip install --no-deps --target benchmarks/out/d2l-0.17.5`` keeps it out of the venv. Its
``torch`` module imports torchvision, pandas, requests, PIL and IPython display helpers at
import time; the RNN chapter uses none of them, so the missing ones are replaced by empty
stand-in modules. Its download is pointed at d2lmini's verified copy of the book.
"""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import types
import warnings

from common import OUT

VERSION = "0.17.5"
TARGET = OUT / f"d2l-{VERSION}"
# Modules ``d2l/torch.py`` imports but chapter 8-9 code never calls.
UNUSED = ["torchvision", "torchvision.transforms", "pandas", "requests", "PIL", "PIL.Image",
          "IPython", "IPython.display", "matplotlib_inline", "matplotlib_inline.backend_inline"]


def install(target=TARGET):
    """Install the book's package into ``target`` once (no dependencies); return the folder."""
    if not (target / "d2l" / "torch.py").is_file():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--target", str(target), f"d2l=={VERSION}"]
        subprocess.run(cmd, check=True)
    return target


def _stub_missing():
    """Register an empty module for each unused import that is not installed; return them."""
    stubs = []
    for name in UNUSED:
        if name in sys.modules or _findable(name):
            continue
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules can hang off it
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        sys.modules[name] = module
        stubs.append(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return stubs


def _findable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a stubbed parent has no spec
        return False


def load():
    """``from d2l import torch as d2l`` of version 0.17.5, reading d2lmini's copy of the book."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # it imports pyplot at import time
    folder = str(install())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    stubs = _stub_missing()
    from d2l import torch as book

    # Its Accumulator calls float() on the loss with its graph attached, once per batch.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    for name in stubs:  # only d2l holds them: others (torch._dynamo) must not see a pandas
        del sys.modules[name]

    if book.__name__ != "d2l.torch" or not book.__file__.startswith(folder):
        raise ImportError(f"imported {book.__file__}, not the d2l {VERSION} in {folder}")
    import d2lmini

    book.download = lambda name, cache_dir=None: str(d2lmini.time_machine_path())
    return book


def check_same_vocab(book, vocab):
    """The book's vocabulary must map characters exactly as d2lmini's does."""
    _, book_vocab = book.load_corpus_time_machine()
    if book_vocab.idx_to_token != vocab.idx_to_token:
        raise RuntimeError("d2l's vocabulary differs from d2lmini's: held-out perplexities "
                           "would not be comparable")
