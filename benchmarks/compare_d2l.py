"""Does the course's training loop cost anything over the d2l book's? Tokens per second.

For each of four models (scratch RNN with 512 hidden units, scratch LSTM, concise ``nn.RNN``
and ``nn.LSTM`` with 256), trains two copies with the book's hyperparameters (batch 32,
num_steps 35, SGD lr 1, clipping at theta 1, the first 10,000 characters, sequential batches):

- the book's: ``d2l==0.17.5`` installed apart (see ``d2l_reference``), its ``RNNModelScratch``
  or ``RNNModel``, the chapters' scratch functions (``d2l_chapter``), its ``train_epoch_ch8``;
- the course's: ``d2lmini.RNNModelScratch`` with the functions the lesson solutions define
  (``solutions/02_rnn_from_scratch.ipynb``, ``solutions/05_lstm.ipynb``, loaded from the
  notebooks) or ``d2lmini.RNNModel``, through ``d2lmini.train_epoch`` with ``torch.optim.SGD``
  and ``clip_grad_norm_`` (what ``d2lmini.train`` uses by default).

Both copies start from the same weights (copied when the shapes line up) and read the same
batches (same seed for the random offset), and their epochs alternate, so that the load of a
shared machine falls on both alike. Each epoch is timed the same way for both (wall clock, or
with ``--clock cpu`` this process's CPU time) and its tokens counted as they pass; tokens per
second is the median over epochs after the first. The final training perplexities must agree
within 10%. The fraction of the ceiling is
tokens/s x FLOP per token (6 per weight: forward, weight gradient, input gradient) over the
measured float32 GFLOP/s of a 32x512 @ 512x512 product. ``--profile`` also writes
torch.profiler tables of both loops under ``benchmarks/out/``.

Last line: ``speedups: rnn_scratch 1.02x, ...`` (course tokens/s over the book's). The exit
status is 1 when some pair of perplexities disagrees by more than 10%.
"""

import argparse
import random
import statistics
from pathlib import Path

import common
import d2l_chapter
import d2l_reference
import solution_code
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_

BATCH, STEPS, LR, THETA, MAX_TOKENS = 32, 35, 1.0, 1.0, 10_000
MODELS = {  # name: (scratch or concise, cell, hidden units)
    "rnn_scratch": ("scratch", "rnn", 512),
    "lstm_scratch": ("scratch", "lstm", 256),
    "rnn_concise": ("concise", "rnn", 256),
    "lstm_concise": ("concise", "lstm", 256),
}
SCRATCH_NAMES = {  # cell: (lesson, the three functions it defines)
    "rnn": ("02_rnn_from_scratch", ("get_params", "init_rnn_state", "rnn")),
    "lstm": ("05_lstm", ("get_lstm_params", "init_lstm_state", "lstm")),
}
AGREEMENT = 0.10  # largest relative gap allowed between the final perplexities


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs per model and loop")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--solutions", type=Path, default=common.SOLUTIONS,
                        help="folder with the lesson notebooks (default: solutions/)")
    parser.add_argument("--seed", type=int, default=0)
    common.add_timing_options(parser)
    parser.add_argument("--profile", action="store_true",
                        help="also profile two epochs of each loop with torch.profiler")
    return parser.parse_args(argv)


# --- models ---------------------------------------------------------------------------------

def scratch_functions(cell, folder):
    """The course's (get_params, init_state, forward) for ``cell``, from its lesson notebook."""
    lesson, names = SCRATCH_NAMES[cell]
    found = solution_code.load_functions(lesson, names, folder)
    return tuple(found[n] for n in names)


def book_scratch_functions(cell):
    names = SCRATCH_NAMES[cell][1]
    return tuple(getattr(d2l_chapter, n) for n in names)


def concise_layer(cell, vocab_size, num_hiddens):
    return (nn.RNN if cell == "rnn" else nn.LSTM)(vocab_size, num_hiddens)


def build_book(book, name, vocab_size, device):
    """The book's model and updater, set up as its ``train_ch8`` does."""
    kind, cell, hidden = MODELS[name]
    if kind == "scratch":
        net = book.RNNModelScratch(vocab_size, hidden, device, *book_scratch_functions(cell))
        return net, lambda batch_size: book.sgd(net.params, LR, batch_size)
    net = book.RNNModel(concise_layer(cell, vocab_size, hidden), vocab_size).to(device)
    return net, torch.optim.SGD(net.parameters(), LR)


def build_course(d2l, name, vocab_size, device, folder):
    """The course's model: d2lmini's wrappers, the lessons' scratch functions."""
    kind, cell, hidden = MODELS[name]
    if kind == "scratch":
        return d2l.RNNModelScratch(vocab_size, hidden, device, *scratch_functions(cell, folder))
    return d2l.RNNModel(concise_layer(cell, vocab_size, hidden), vocab_size).to(device)


def book_params(net):
    return list(net.parameters()) if isinstance(net, nn.Module) else list(net.params)


@torch.no_grad()
def copy_weights(book_net, course_net):
    """Start the course's copy from the book's weights when every shape lines up."""
    source, target = book_params(book_net), list(course_net.parameters())
    if [p.shape for p in source] != [p.shape for p in target]:
        return False
    for s, t in zip(source, target, strict=True):
        t.copy_(s)
    return True


def flops_per_token(net):
    """6 FLOP per weight of every matrix (forward, weight gradient, input gradient)."""
    return 6 * sum(p.numel() for p in net.parameters() if p.dim() == 2)


# --- the two loops --------------------------------------------------------------------------

class BookLoop:
    """The book's data loader, model and ``train_epoch_ch8``."""

    label = "book"

    def __init__(self, book, name, vocab_size, device):
        self.book, self.device, self.loss = book, device, nn.CrossEntropyLoss()
        self.data_iter, _ = book.load_data_time_machine(BATCH, STEPS, False, MAX_TOKENS)
        self.net, self.updater = build_book(book, name, vocab_size, device)

    def epoch(self, batches):
        """One epoch over ``batches`` (the loader, counted); return the training perplexity."""
        return self.book.train_epoch_ch8(self.net, batches, self.loss, self.updater,
                                         self.device, False)[0]


class CourseLoop:
    """d2lmini's data loader, model and ``train_epoch``, as ``d2lmini.train`` sets them up."""

    label = "course"

    def __init__(self, d2l, name, vocab_size, device, folder, seed):
        self.d2l, self.device = d2l, device
        self.data_iter, _ = d2l.load_data_time_machine(BATCH, STEPS, max_tokens=MAX_TOKENS,
                                                       seed=seed)
        self.net = build_course(d2l, name, vocab_size, device, folder)
        self.update = torch.optim.SGD(self.net.parameters(), lr=LR).step

    def epoch(self, batches):
        return self.d2l.train_epoch(self.net, batches, self.update, clip_grad_norm_, THETA,
                                    self.device)[0]


def make_loops(name, book, d2l, vocab_size, args, device):
    """Both loops from the same initial weights; the same seed drives both batch offsets."""
    torch.manual_seed(args.seed)
    book_loop = BookLoop(book, name, vocab_size, device)
    torch.manual_seed(args.seed)
    course_loop = CourseLoop(d2l, name, vocab_size, device, args.solutions, args.seed)
    copied = copy_weights(book_loop.net, course_loop.net)
    random.seed(args.seed)  # the book's loader draws its offsets from the global generator
    return book_loop, course_loop, copied


class Counted:
    """A loader's batches, counting their tokens (other attributes are the loader's, so a
    loop reading ``use_random_iter`` sees what it expects)."""

    def __init__(self, loader):
        self.loader, self.tokens = loader, 0

    def __iter__(self):
        for X, Y in self.loader:
            self.tokens += X.numel()
            yield X, Y

    def __getattr__(self, name):
        return getattr(self.loader, name)


def timed_epoch(loop, clock):
    """One epoch of ``loop``, timed by the same clock for both loops: (perplexity, tokens/s)."""
    batches, start = Counted(loop.data_iter), clock()
    ppl = loop.epoch(batches)
    return ppl, batches.tokens / (clock() - start)


def run_interleaved(loops, epochs, clock):
    """Alternate the loops epoch by epoch; return per-loop lists of (perplexity, tokens/s)."""
    results = {loop.label: [] for loop in loops}
    for epoch in range(epochs):
        for loop in (loops if epoch % 2 == 0 else loops[::-1]):
            results[loop.label].append(timed_epoch(loop, clock))
    return results


def typical_speed(epochs):
    """Median tokens/s, leaving out the first epoch (warm-up) when there are others."""
    speeds = [speed for _, speed in epochs]
    return statistics.median(speeds[1:] if len(speeds) > 1 else speeds)


def compare_model(name, book, d2l, vocab_size, args, device):
    """Train both copies of one model and return its row of results."""
    book_loop, course_loop, copied = make_loops(name, book, d2l, vocab_size, args, device)
    clock = common.CLOCKS[args.clock]
    ceiling = common.matmul_gflops(clock=clock)  # measured next to the run: the load changes
    results = run_interleaved([book_loop, course_loop], args.epochs, clock)
    flops = flops_per_token(course_loop.net)
    row = {"model": name, "hidden": MODELS[name][2], "same_init": copied,
           "mflop_per_token": flops / 1e6, "ceiling_gflops": ceiling}
    for label, epochs in results.items():
        row[f"{label}_tokens_per_s"] = typical_speed(epochs)
        row[f"{label}_ppl"] = epochs[-1][0]
        row[f"{label}_ceiling"] = row[f"{label}_tokens_per_s"] * flops / (ceiling * 1e9)
    row["speedup"] = row["course_tokens_per_s"] / row["book_tokens_per_s"]
    row["ppl_gap"] = abs(row["course_ppl"] / row["book_ppl"] - 1)
    if args.profile:
        row["profiles"] = [str(profile_loop(loop, name)) for loop in (book_loop, course_loop)]
    return row


def profile_loop(loop, name, epochs=2):
    """torch.profiler over ``epochs`` epochs; the op table goes to benchmarks/out/."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(epochs):
            loop.epoch(loop.data_iter)
    path = common.OUT / f"profile_{name}_{loop.label}.txt"
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    return path


# --- report ---------------------------------------------------------------------------------

HEADER = ["model", "hidden", "MFLOP/tok", "book tok/s", "course tok/s", "speedup",
          "book ppl", "course ppl", "gap", "GFLOP/s", "book ceil", "course ceil", "same init"]


def format_row(r):
    return [r["model"], r["hidden"], f"{r['mflop_per_token']:.2f}",
            f"{r['book_tokens_per_s']:,.0f}", f"{r['course_tokens_per_s']:,.0f}",
            f"{r['speedup']:.2f}x", f"{r['book_ppl']:.2f}", f"{r['course_ppl']:.2f}",
            f"{r['ppl_gap']:.1%}", f"{r['ceiling_gflops']:.1f}", f"{r['book_ceiling']:.0%}",
            f"{r['course_ceiling']:.0%}",
            "yes" if r["same_init"] else "no"]


def report(rows, info, epochs, clock):
    """Print the table, warnings for perplexities that disagree, and the speedups line."""
    print(f"compare_d2l: {epochs} epochs per model, {clock} clock, {common.describe(info)}")
    print("ceiling: float32 32x512 @ 512x512 matmul GFLOP/s, measured before each model\n")
    print(common.table([format_row(r) for r in rows], HEADER))
    for r in rows:
        if r["ppl_gap"] > AGREEMENT:
            print(f"WARNING {r['model']}: final perplexities differ by {r['ppl_gap']:.1%} "
                  f"(> {AGREEMENT:.0%}): the two loops do not train the same way")
    print("speedups: " + ", ".join(f"{r['model']} {r['speedup']:.2f}x" for r in rows))


def main(argv=None):
    args = parse_args(argv)
    common.use_local_book()
    common.set_threads(args.threads)
    import d2lmini as d2l

    book, device = d2l_reference.load(), d2l.default_device()
    _, vocab = d2l.load_corpus_time_machine()
    d2l_reference.check_same_vocab(book, vocab)
    info = common.machine()
    rows = [compare_model(name, book, d2l, len(vocab), args, device) for name in args.models]
    common.write_json("compare_d2l", {"machine": info, "epochs": args.epochs,
                                      "clock": args.clock, "rows": rows})
    report(rows, info, args.epochs, args.clock)
    return 1 if any(r["ppl_gap"] > AGREEMENT for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
