"""How good a model does a student get for a minute of waiting? Held-out perplexity vs time.

Trains each neural recipe for ``--seconds`` of training time and measures, every
``--eval-every`` seconds, the character-level perplexity on the held-out tail of the book
(d2lmini's last 10%, ``data_iter.heldout``) with ``d2lmini.evaluate_perplexity`` (batch 32,
num_steps 35, state carried on). Only training is on the clock: evaluation, data loading and
model set-up are not. Training stops at the first batch that ends past the budget, even
mid-epoch. Every row is scored on the same held-out text in the same run.

Rows:
- ``course``: ``d2lmini.train_recipe`` with ``d2lmini.recipe_for(device, seconds)`` (the tuned
  recipe of lesson 05 and the playground: ``Recipe()``, with dropout for budgets over 45 s;
  ``--set field=value`` changes any of its fields), trained on the first 90% of the book
  (``max_tokens=-1``); ``--device cuda`` trains ``GPU_RECIPE``, a larger model, on the GPU;
- ``d2l_lstm`` and ``d2l_rnn``: the book's recipes run with the book's code (``d2l==0.17.5``,
  see ``d2l_reference``): concise LSTM (256) and scratch RNN (512) trained by its
  ``train_epoch_ch8`` with SGD lr 1 on the first 10,000 characters;
- ``kneser_ney``: the best count model, ``d2lmini.best_kneser_ney``: interpolated Kneser-Ney
  (discount 0.75) character n-grams of orders 2-8 counted on the first 90% of the training
  text, the order chosen on its last 10%, then counted again on all the training text. Its
  "time" is the time all that counting took.

Last line: ``heldout_ppl=X.XX after N s (best count model: K-gram Y.YY)`` for the course.
"""

import argparse
import dataclasses
import math
import os

import common
import d2l_chapter
import d2l_reference
import torch
from torch import nn

EVAL_BATCH, EVAL_STEPS = 32, 35
RECIPES = ("course", "d2l_lstm", "d2l_rnn", "kneser_ney")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="training time per recipe")
    parser.add_argument("--eval-every", type=float, default=5.0,
                        help="seconds of training between held-out evaluations")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="change fields of the course's d2lmini.Recipe, e.g. cell=gru "
                             "lr=0.01 (the search of RESULTS.md)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="where the neural recipes train; cuda (or auto with a GPU "
                             "present) trains the course's larger GPU recipe")
    common.add_timing_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def recipe_changes(pairs, recipe_cls):
    """``["cell=gru", "lr=0.01"]`` -> ``{"cell": "gru", "lr": 0.01}``, typed by the field."""
    fields = {f.name: f for f in dataclasses.fields(recipe_cls)}
    changes = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set takes FIELD=VALUE with FIELD one of {sorted(fields)}, "
                             f"got {pair!r}")
        kind = type(fields[name].default)
        changes[name] = value in ("1", "true", "True") if kind is bool else kind(value)
    return changes


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


# --- the book's recipes: each returns (net, loader, epoch function over some batches) --------

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


def make_book_recipe(name, d2l, args, device):
    torch.manual_seed(args.seed)
    book = d2l_reference.load()
    _, vocab = d2l.load_corpus_time_machine()
    d2l_reference.check_same_vocab(book, vocab)
    return book_recipe(book, name.removeprefix("d2l_"), len(vocab), device)


# --- the timed runs -------------------------------------------------------------------------

def run_book_recipe(name, d2l, args, device, heldout):
    """Train for ``args.seconds`` of training time; return the curve of evaluations."""
    net, loader, epoch = make_book_recipe(name, d2l, args, device)
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


def run_course(d2l, args, device, heldout):
    """``d2lmini.train_recipe``: the recipe lesson 05 and the playground use."""
    recipe = d2l.recipe_for(device, args.seconds).replace(**recipe_changes(args.set, d2l.Recipe))
    data_iter, vocab = d2l.load_data_time_machine(
        recipe.batch_size, recipe.num_steps, recipe.use_random_iter, max_tokens=-1,
        seed=args.seed)
    if not torch.equal(data_iter.heldout, heldout):
        raise RuntimeError("the course's held-out text differs from the other rows'")
    history = d2l.train_recipe(args.seconds, recipe, data_iter=data_iter, vocab=vocab,
                               eval_every=args.eval_every, clock=args.clock, device=device,
                               seed=args.seed, prefix=None)
    curve = [{"seconds": s, "epochs": e, "heldout_ppl": p} for s, e, p in zip(
        history.valid_seconds, history.valid_epochs, history.valid_ppl, strict=True)]
    return {"recipe": "course", "curve": curve, "epochs": math.ceil(history.valid_epochs[-1]),
            "train_ppl": history.train_ppl[-1], "settings": dataclasses.asdict(recipe),
            "tokens_per_sec": history.tokens_per_sec}


def run_count_model(d2l, args, heldout):
    """The best Kneser-Ney n-gram: order chosen on the end of the training text."""
    train_tokens = d2l.load_data_time_machine(32, 35, max_tokens=-1)[0].corpus
    clock = common.Stopwatch(args.clock)
    clock.start()
    model, order, scores = d2l.best_kneser_ney(train_tokens, len(d2l.load_corpus_time_machine(
        max_tokens=1)[1]))
    clock.stop()
    ppl = model.perplexity(heldout)
    return {"recipe": "kneser_ney", "order": order, "validation_ppl": scores, "epochs": 1,
            "curve": [{"seconds": clock.elapsed, "epochs": 1, "heldout_ppl": ppl}]}


def run(name, d2l, args, device, heldout):
    print(f"... {name}", flush=True)
    if name == "course":
        return run_course(d2l, args, device, heldout)
    if name == "kneser_ney":
        return run_count_model(d2l, args, heldout)
    return run_book_recipe(name, d2l, args, device, heldout)


def at_time(curve, seconds):
    """The held-out perplexity of the checkpoint at ``seconds``: the first evaluation at or
    after it (evaluations wait for the batch under way to end). A count model is ready once
    counted: its one point holds from then on."""
    if len(curve) == 1 and curve[0]["seconds"] <= seconds:
        return curve[0]["heldout_ppl"]
    later = [point["heldout_ppl"] for point in curve if point["seconds"] >= seconds]
    return later[0] if later else math.nan


def report(results, args, info):
    """Held-out perplexity at each mark, best and final; then the course's last line."""
    marks = [m for m in (5, 10, 20, 30, 45, 60, 90, 120) if m < args.seconds]
    print(f"time_to_quality: {args.seconds:g} s of training ({args.clock} clock) per recipe, "
          f"{common.describe(info)}")
    print("held-out character perplexity (tail 10% of the book) after N s of training\n")
    header = ["recipe", "epochs"] + [f"{m:g} s" for m in marks] + ["end", "end s", "best"]
    rows = [[_label(r), r["epochs"]]
            + [f"{at_time(r['curve'], m):.2f}" for m in marks]
            + [f"{r['curve'][-1]['heldout_ppl']:.2f}", f"{r['curve'][-1]['seconds']:.1f}",
               f"{min(p['heldout_ppl'] for p in r['curve']):.2f}"] for r in results]
    print(common.table(rows, header))
    count = next((r for r in results if r["recipe"] == "kneser_ney"), None)
    if count is not None:
        scores = ", ".join(f"{k}: {v:.2f}" for k, v in count["validation_ppl"].items())
        print(f"\ncount model: order {count['order']} chosen on the validation split carved "
              f"from the training text ({scores})")
    course = next((r for r in results if r["recipe"] == "course"), None)
    if course is not None:
        last = course["curve"][-1]
        versus = "" if count is None else (f" (best count model: {count['order']}-gram "
                                           f"{count['curve'][0]['heldout_ppl']:.2f})")
        print(f"heldout_ppl={last['heldout_ppl']:.2f} after {last['seconds']:.0f} s{versus}")


def _label(result):
    return f"kneser_ney ({result['order']}-gram)" if result["recipe"] == "kneser_ney" \
        else result["recipe"]


def pick_device(choice):
    """cpu; cuda (an error without a GPU); auto: the GPU when there is one."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible to torch here")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def main(argv=None):
    args = parse_args(argv)
    common.use_local_book()
    device = pick_device(args.device)
    if device.type == "cuda" and args.clock == "cpu":
        raise SystemExit("--clock cpu measures this process's CPU time: use the wall clock "
                         "on a GPU")
    common.set_threads(args.threads)
    import d2lmini as d2l

    heldout = d2l.load_data_time_machine(32, 35)[0].heldout
    info = common.machine() | {"device": str(device)}
    results = [run(name, d2l, args, device, heldout) for name in args.recipes]
    info["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    common.write_json("time_to_quality", {"machine": info, "args": vars(args),
                                          "results": results})
    report(results, args, info)


if __name__ == "__main__":
    main()
