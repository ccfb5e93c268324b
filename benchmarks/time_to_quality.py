"""How good a model does a student get for a minute of waiting? Held-out perplexity vs time.

Trains each recipe for ``--seconds`` of training time and measures, every ``--eval-every``
seconds, the character-level perplexity on the held-out tail of the book (d2lmini's last 10%,
``data_iter.heldout``) with ``d2lmini.evaluate_perplexity`` (batch 32, num_steps 35, state
carried on). Only training is on the clock: evaluation, data loading and model set-up are not.
Training stops at the first batch that ends past the budget, even mid-epoch.

Recipes:
- ``course``: lesson 05's recipe with d2lmini: a concise ``nn.LSTM`` (256 units), Adam
  (lr 0.02: lesson 05 uses 0.01, and 0.02 did best within a minute here), clipping at 1,
  batch 32, num_steps 35, random sampling over the training 90% of the book
  (``max_tokens=-1``), through ``d2lmini.train_epoch`` (the options change each of these);
- ``d2l_lstm`` and ``d2l_rnn``: the book's recipes run with the book's code (``d2l==0.17.5``,
  see ``d2l_reference``): concise LSTM (256) and scratch RNN (512) trained by its
  ``train_epoch_ch8`` with SGD lr 1 on the first 10,000 characters.

Last line: ``heldout_ppl=X.XX after N s`` for the course's recipe.
"""

import argparse
import math

import common
import d2l_chapter
import d2l_reference
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_

EVAL_BATCH, EVAL_STEPS = 32, 35
RECIPES = ("course", "d2l_lstm", "d2l_rnn")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per recipe")
    parser.add_argument("--eval-every", type=float, default=5.0,
                        help="seconds of training between held-out evaluations")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--lr", type=float, default=0.02,
                        help="the course recipe's Adam lr (lesson 05: 0.01; 0.02 did best)")
    parser.add_argument("--batch-size", type=int, default=32, help="the course recipe's batch")
    parser.add_argument("--num-steps", type=int, default=35, help="the course recipe's steps")
    parser.add_argument("--num-hiddens", type=int, default=256, help="the course recipe's units")
    parser.add_argument("--iteration", choices=("random", "sequential"), default="random",
                        help="the course recipe's sampling (lesson 05 uses random)")
    common.add_timing_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class TimedRun:
    """The clock of one recipe: counts training time, evaluates at checkpoints, ends it."""

    def __init__(self, clock, seconds, every, evaluate):
        self.clock, self.seconds, self.every = common.Stopwatch(clock), seconds, every
        self.evaluate, self.curve, self.epochs, self.next_eval = evaluate, [], 0, every

    def proceed(self):
        """Called before each batch: evaluate when a checkpoint is due (off the clock).

        Returns False once the budget is spent.
        """
        now = self.clock.now()
        if now >= self.next_eval or now >= self.seconds:
            self.clock.stop()
            self.record()
            self.clock.start()
        return now < self.seconds

    def record(self):
        """Evaluate now and add a point to the curve (the clock must not be running)."""
        now = self.clock.elapsed
        self.curve.append({"seconds": now, "epochs": self.epochs, "heldout_ppl": self.evaluate()})
        self.next_eval = (now // self.every + 1) * self.every


class Budgeted:
    """The batches of a loader while the run proceeds (its other attributes are the loader's,
    so a training loop reading ``use_random_iter`` or ``batch_size`` sees what it expects)."""

    def __init__(self, loader, run):
        self.loader, self.run = loader, run

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            # The first batch always runs: an epoch of nothing has no loss to report.
            if not self.run.proceed() and index > 0:
                return
            yield batch

    def __getattr__(self, name):
        return getattr(self.loader, name)


# --- recipes: each returns (net, loader, epoch function that trains over some batches) -----

def course_recipe(d2l, args, device):
    """Lesson 05: concise LSTM, Adam, the whole training part of the book."""
    loader, vocab = d2l.load_data_time_machine(args.batch_size, args.num_steps,
                                               args.iteration == "random", max_tokens=-1,
                                               seed=args.seed)
    net = d2l.RNNModel(nn.LSTM(len(vocab), args.num_hiddens), len(vocab)).to(device)
    update = torch.optim.Adam(net.parameters(), lr=args.lr).step

    def epoch(batches):
        return d2l.train_epoch(net, batches, update, clip_grad_norm_, 1.0, device)[0]

    return net, loader, epoch


def book_recipe(book, cell, vocab_size, device):
    """The book's chapter 8/9 set-up: its loader (first 10,000 characters), SGD lr 1."""
    loader, _ = book.load_data_time_machine(32, 35, False, 10_000)
    if cell == "lstm":
        net = book.RNNModel(nn.LSTM(vocab_size, 256), vocab_size).to(device)
        updater = torch.optim.SGD(net.parameters(), lr=1.0)
    else:
        net = book.RNNModelScratch(vocab_size, 512, device, d2l_chapter.get_params,
                                   d2l_chapter.init_rnn_state, d2l_chapter.rnn)
        updater = lambda batch_size: book.sgd(net.params, 1.0, batch_size)  # noqa: E731
    loss = nn.CrossEntropyLoss()

    def epoch(batches):
        return book.train_epoch_ch8(net, batches, loss, updater, device, False)[0]

    return _Evaluable(net), loader, epoch


class _Evaluable:
    """A book model with d2lmini's ``begin_state(batch_size, device)`` argument order (the
    book's concise model takes ``begin_state(device, batch_size)``)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, X, state):
        return self.net(X, state)

    def begin_state(self, batch_size, device):
        return self.net.begin_state(batch_size=batch_size, device=device)


def make_recipe(name, d2l, args, device):
    torch.manual_seed(args.seed)
    if name == "course":
        return course_recipe(d2l, args, device)
    book = d2l_reference.load()
    _, vocab = d2l.load_corpus_time_machine()
    d2l_reference.check_same_vocab(book, vocab)
    return book_recipe(book, name.removeprefix("d2l_"), len(vocab), device)


# --- the timed run --------------------------------------------------------------------------

def run_recipe(name, d2l, args, device, heldout):
    """Train for ``args.seconds`` of training time; return the curve of evaluations."""
    net, loader, epoch = make_recipe(name, d2l, args, device)
    run = TimedRun(args.clock, args.seconds, args.eval_every, lambda: d2l.evaluate_perplexity(
        net, heldout, EVAL_BATCH, EVAL_STEPS, device))
    train_ppl = math.nan
    while run.clock.elapsed < args.seconds:
        run.clock.start()
        train_ppl = epoch(Budgeted(loader, run))
        run.clock.stop()
        run.epochs += 1
    if not run.curve or run.curve[-1]["seconds"] < args.seconds:  # an epoch ended past it
        run.record()
    return {"recipe": name, "curve": run.curve, "epochs": run.epochs, "train_ppl": train_ppl}


def at_time(curve, seconds):
    """The held-out perplexity of the checkpoint at ``seconds``: the first evaluation at or
    after it (evaluations wait for the batch under way to end)."""
    later = [point["heldout_ppl"] for point in curve if point["seconds"] >= seconds]
    return later[0] if later else math.nan


def report(results, args, info):
    """Held-out perplexity at each mark, best and final; then the course's last line."""
    marks = [m for m in (5, 10, 20, 30, 45, 60, 90, 120) if m < args.seconds]
    print(f"time_to_quality: {args.seconds:g} s of training ({args.clock} clock) per recipe, "
          f"{common.describe(info)}")
    print("held-out character perplexity (tail 10% of the book) after N s of training\n")
    header = ["recipe", "epochs"] + [f"{m:g} s" for m in marks] + ["end", "end s", "best"]
    rows = [[r["recipe"], r["epochs"]]
            + [f"{at_time(r['curve'], m):.2f}" for m in marks]
            + [f"{r['curve'][-1]['heldout_ppl']:.2f}", f"{r['curve'][-1]['seconds']:.1f}",
               f"{min(p['heldout_ppl'] for p in r['curve']):.2f}"] for r in results]
    print(common.table(rows, header))
    course = next((r for r in results if r["recipe"] == "course"), None)
    if course is not None:
        last = course["curve"][-1]
        print(f"heldout_ppl={last['heldout_ppl']:.2f} after {last['seconds']:.0f} s")


def main(argv=None):
    args = parse_args(argv)
    common.use_local_book()
    common.set_threads(args.threads)
    import d2lmini as d2l

    device = d2l.default_device()
    heldout = d2l.load_data_time_machine(32, 35)[0].heldout
    info = common.machine()
    results = [run_recipe(name, d2l, args, device, heldout) for name in args.recipes]
    common.write_json("time_to_quality", {"machine": info, "args": vars(args),
                                          "results": results})
    report(results, args, info)


if __name__ == "__main__":
    main()
