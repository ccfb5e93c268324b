"""Do the lessons' texts say what their code prints? Every number a lesson's prose states, checked
against a full-mode run.

Runs each selected ``solutions/*.ipynb`` top to bottom in full mode (``D2LMINI_FAST=0``, what a
student runs) with nbclient, in a scratch folder, one notebook at a time, and collects what its
cells print (stdout). Then every row of ``CLAIMS`` whose lesson ran is checked: its regular
expression must match the printed text and the number it captures must lie in ``[low, high]``,
the range the lesson's text states. Exits 1 listing every claim that is out of range or whose
line was not printed.

    python benchmarks/lesson_claims.py                  # every lesson that has claims
    python benchmarks/lesson_claims.py --lessons 01 03  # lessons whose names start so
    python benchmarks/lesson_claims.py --save out/      # keep the printed text per lesson
    python benchmarks/lesson_claims.py --text out/      # re-check saved text, run nothing

Slow: a full-mode run of lesson 03 trains for several minutes on a CPU.
"""

import argparse
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common

NUMBER = r"([+-]?[\d,]*\.?\d+(?:e[+-]?\d+)?|None|inf)"  # what a claim's group may capture


@dataclass(frozen=True)
class Claim:
    """A number the lesson's text states: the printed line that shows it, and its range."""

    lesson: str    # notebook stem prefix, e.g. "03"
    says: str      # the claim as the text makes it
    pattern: str   # a regex with one group (use NUMBER) matched against the printed text
    low: float
    high: float


INF = math.inf

# One row per claim. Lessons 04-07: add your rows below the ones of 01-03.
CLAIMS = [
    # --- 01 text and batches
    Claim("01", "the word vocabulary has 4,580 tokens", rf"{NUMBER} word tokens; the first",
          4580, 4580),
    Claim("01", "about half of the distinct words occur once",
          rf"\({NUMBER}% of the distinct words\) occur only once", 45, 55),
    Claim("01", "min_freq=2 keeps 2,183 words", rf"min_freq= 2: +{NUMBER} tokens", 2183, 2183),
    Claim("01", "min_freq=2: 7.3% of the running text becomes <unk>",
          rf"min_freq= 2: +[\d,]+ tokens, +{NUMBER}% of the words", 7.25, 7.35),
    Claim("01", "Zipf: alpha near 1", rf"unigrams: alpha = {NUMBER}", 0.9, 1.1),
    Claim("01", "about half of the held-out word bigrams are new",
          rf"n = 2: +{NUMBER}% of the held-out word", 40, 60),
    Claim("01", "most held-out word trigrams are new", rf"n = 3: +{NUMBER}% of the held-out word",
          60, 100),
    Claim("01", "almost every held-out character trigram occurs in training",
          rf"n = 3: .*? and +{NUMBER}% of the character", 0, 2),
    Claim("01", "a character 4-gram is new only a few times in a hundred",
          rf"n = 4: .*? and +{NUMBER}% of the character", 1, 10),
    # --- 02 RNN from scratch
    Claim("02", "the scratch RNN equals nn.RNN up to float32 rounding (outputs)",
          rf"outputs: relative difference {NUMBER}", 0, 1e-5),
    Claim("02", "... and gradients (W_hh)", rf"gradient of W_hh: relative difference {NUMBER}",
          0, 1e-5),
    Claim("02", "states after a space correlate between 0.5 and 0.9 (full mode, six epochs)",
          rf"states after a space are alike: correlation {NUMBER}", 0.5, 0.9),
    Claim("02", "after training many units sit near ±1",
          rf"{NUMBER}% of the activations are beyond ±0.9", 15, 70),
    Claim("02", "states after a letter correlate much less",
          rf"states after a letter: {NUMBER}", -0.3, 0.3),
    # --- 03 training
    Claim("03", "a fresh model's loss is close to ln V = 3.332",
          rf"loss at initialisation {NUMBER}", 3.30, 3.36),
    Claim("03", "on 10,000 characters the add-0.1 trigram is the best rung",
          rf"lowest held-out perplexity on 10,000 characters: the {NUMBER}-gram", 3, 3),
    Claim("03", "Laplace's k = 1 is worse than k = 0.1 for the trigram (9.29)",
          rf"with Laplace's k = 1 instead: {NUMBER}", 9.3, 30),
    Claim("03", "fifteen times more text in 90% of the book",
          rf"90% of the book holds {NUMBER} times", 15, 16),
    Claim("03", "Kneser-Ney on 10,000 characters beats every add-k rung (trigram 9.29)",
          rf"Kneser-Ney, counted on 10,000 characters: order \d+ \(chosen on validation\), "
          rf"held-out perplexity {NUMBER}", 6, 9.2),
    Claim("03", "your train_epoch and d2l.train agree to float32 rounding",
          rf"largest difference between the two models' parameters: {NUMBER}", 0, 1e-4),
    Claim("03", "held-out perplexity is best between epochs 20 and 50",
          rf"best held-out [\d.]+ at epoch {NUMBER}", 20, 50),
    Claim("03", "sequential partitioning reaches the lower training perplexity",
          rf"sequential minus random after \d+ epochs: training perplexity {NUMBER}", -INF, 0),
    Claim("03", "... random sampling the lower held-out perplexity",
          rf"sequential minus random after \d+ epochs: .*? held-out {NUMBER}", 0, INF),
    Claim("03", "the random run is still at or near its best in the last epochs",
          rf"random +: training .*? at epoch {NUMBER}\)", 48, 60),
    Claim("03", "clipping at θ = 1 shortens at most a few of the steps at lr 1",
          rf"largest gradient norm [\d.]+; {NUMBER} of \d+ steps were clipped", 0, 10),
    Claim("03", "lr 3 clipped at θ = 1: the perplexity stays high (above the uniform 28)",
          rf"theta = 1.0: gradient norm .*? final training perplexity {NUMBER}", 28, INF),
    Claim("03", "lr 3 clipped at θ = 0.3 trains as if the learning rate were sensible",
          rf"theta = 0.3: gradient norm .*? final training perplexity {NUMBER}", 5, 15),
    Claim("03", "at lr 1 the gradient norm never gets far above 1",
          rf"learning rate 1, θ = 1: largest gradient norm {NUMBER}", 0.5, 2),
    Claim("03", "without clipping the norm passes 10 within the first epoch (8 steps)",
          rf"no clipping, sequential: first step with a gradient norm above 10: {NUMBER}", 1, 8),
    Claim("03", "... the random run's later or not at all",
          rf"no clipping, random +: first step with a gradient norm above 10: {NUMBER}", 9, INF),
    Claim("03", "without clipping the perplexity is in the millions",
          rf"no clipping, sequential: .*? final training perplexity {NUMBER}", 1e6, INF),
    Claim("03", "... the random one even larger",
          rf"no clipping, random +: .*? final training perplexity {NUMBER}", 1e9, INF),
    Claim("03", "the network has about twice as many parameters as training characters",
          rf"best RNN [\d.]+ \({NUMBER} parameters\)", 15000, 30000),
    Claim("03", "counting wins on 10,000 characters: the best RNN is above the trigram (9.29)",
          rf"best RNN {NUMBER}", 9.3, 30),
    # --- 04 generation
    Claim("04", "warm-ups from 8 to 128 characters give the same next-character perplexity",
          rf"from k = {NUMBER} on, every warm-up", 8, 8),
    Claim("04", "about 4,600 distinct words", rf"{NUMBER} distinct, [\d,]+ of them seen",
          4500, 4700),
    Claim("04", "more than half of the distinct words (4,579) occur only once",
          rf"distinct, {NUMBER} of them seen only once", 2290, 4579),
    Claim("04", "the word model's held-out perplexity is in the hundreds",
          rf"this model's held-out perplexity: {NUMBER}", 100, 999),
    # --- 05 LSTM
    Claim("05", "both gates open: C reached 5.4 after six steps", rf"step 6: C = {NUMBER}",
          5.4, 5.4),
    Claim("05", "the scratch LSTM equals nn.LSTM to float precision",
          rf"relative error between our LSTM and nn.LSTM: {NUMBER}", 0, 1e-4),
    Claim("05", "an RNN with 256 units has about 80,000 parameters",
          rf"an RNN with 256 units has {NUMBER} parameters", 78000, 84000),
    Claim("05", "an LSTM with 256 units has about 300,000", rf"like the LSTM's {NUMBER}",
          295000, 310000),
    Claim("05", "the matched RNN has about twice as many units (about 520)",
          rf"with {NUMBER} units [\d,]+, like the LSTM's", 480, 560),
    Claim("05", "... and then the same number of parameters as the LSTM (within 1%)",
          rf"rnn: \d+ hidden units, {NUMBER} parameters", 300000, 308000),
    Claim("05", "after 30 s the LSTM ends between 4.1 and 4.4, within 0.15 of 4.28",
          rf"LSTM, 256 units +{NUMBER}", 4.13, 4.43),
    Claim("05", "... and the RNN between 5 and 6.5", rf"RNN, \d+ units +{NUMBER}", 5, 6.5),
    Claim("05", "the Kneser-Ney 6-gram reaches 4.28",
          rf"counts \(Kneser-Ney 6-gram\) +{NUMBER}", 4.27, 4.29),
    Claim("05", "untrained LSTM with F ≈ 0.99: the gradient grows about 70x over 99 steps",
          rf"99 steps back / 1 step back: RNN [^,]+, LSTM, F ≈ 0.5 [^,]+, LSTM, F ≈ 0.99 "
          rf"{NUMBER}", 50, 90),
    Claim("05", "trained: the LSTM's gradient is a few tens of times the RNN's 30 steps back",
          rf"the LSTM's gradient over the RNN's: 30 steps back {NUMBER}x", 10, 100),
    Claim("05", "... and more than ten thousand times 99 steps back",
          rf"the LSTM's gradient over the RNN's: .*?99 steps back {NUMBER}x", 1e4, INF),
    Claim("05", "SGD: clipping cut a handful of the RNN's steps (3)",
          rf"RNN under SGD: clipped at {NUMBER} of", 1, 10),
    Claim("05", "... largest RNN norm about 3.4", rf"RNN under SGD: .*?largest {NUMBER}", 2, 5),
    Claim("05", "... none of the LSTM's", rf"LSTM under SGD: clipped at {NUMBER} of", 0, 0),
    Claim("05", "... largest LSTM norm about 0.8, below 1",
          rf"LSTM under SGD: .*?largest {NUMBER}", 0.5, 1.0),
    # --- 06 GRU
    Claim("06", "gru_reset_after equals nn.GRU to float precision (about 1e-7)",
          rf"gru_reset_after vs nn.GRU: relative difference of the outputs {NUMBER}", 0, 1e-6),
    Claim("06", "d2l's GRU differs from nn.GRU by tens of percent (0.26)",
          rf"\bgru vs nn.GRU: relative difference of the outputs {NUMBER}", 0.1, 0.5),
    Claim("06", "the count model: Kneser-Ney 6-gram, 4.28",
          rf"count model \(Kneser-Ney, order 6\): held-out perplexity {NUMBER}", 4.27, 4.29),
    Claim("06", "equal steps: the RNN of the same size at 7 to 8.5",
          rf"\n +rnn +\d+ +[\d,]+ +[\d.]+ +{NUMBER} \|", 7, 8.5),
    Claim("06", "equal steps: the GRU at 4.6 to 6.3", rf"\n +gru +\d+ +[\d,]+ +[\d.]+ +{NUMBER} \|",
          4.6, 6.3),
    Claim("06", "equal steps: the LSTM at 4.6 to 6.3",
          rf"\n +lstm +\d+ +[\d,]+ +[\d.]+ +{NUMBER} \|", 4.6, 6.3),
    Claim("06", "equal time: the LSTM at 4.5 to 4.9",
          rf"\n +lstm +\d+ +[\d,]+ +[\d.]+ +\S+ \| {NUMBER}", 4.5, 4.9),
    Claim("06", "equal time: the GRU at 4.7 to 5.5",
          rf"\n +gru +\d+ +[\d,]+ +[\d.]+ +\S+ \| {NUMBER}", 4.7, 5.5),
    Claim("06", "equal time: the RNN about 7", rf"\n +rnn +\d+ +[\d,]+ +[\d.]+ +\S+ \| {NUMBER}",
          6.5, 8),
    Claim("06", "nn.GRU runs at a third to a little over half of nn.LSTM's steps per second",
          rf"steps per second, GRU over LSTM: {NUMBER}", 0.3, 0.6),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", nargs="+", default=None,
                        help="lesson prefixes (default: every lesson that has claims)")
    parser.add_argument("--solutions", type=Path, default=common.SOLUTIONS)
    parser.add_argument("--save", type=Path, default=None,
                        help="write each lesson's printed text to SAVE/<lesson>.txt")
    parser.add_argument("--text", type=Path, default=None,
                        help="check saved SAVE/<lesson>.txt files instead of running")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    return parser.parse_args(argv)


def printed_text(notebook) -> str:
    """Everything the notebook's cells wrote to stdout, in order."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output["text"])
    return "".join(parts)


def run_full_mode(path: Path, timeout: int) -> str:
    """Execute a notebook in full mode in a scratch folder; its printed text."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["D2LMINI_FAST"] = "0"
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": scratch}}).execute()
    return printed_text(notebook)


def value_of(text: str, claim: Claim):
    """The number the claim's pattern captures in the text, or None when no line matches."""
    match = re.search(claim.pattern, text)
    if match is None:
        return None
    raw = match.group(1).replace(",", "")
    return INF if raw in ("None", "inf") else float(raw)


def check(texts: dict) -> list[str]:
    """Print every claim of the lessons in ``texts``; return the failures."""
    failures = []
    for claim in CLAIMS:
        text = next((t for stem, t in texts.items() if stem.startswith(claim.lesson)), None)
        if text is None:
            continue
        value = value_of(text, claim)
        ok = value is not None and claim.low <= value <= claim.high
        shown = "not printed" if value is None else f"{value:g}"
        print(f"{'ok  ' if ok else 'FAIL'} {claim.lesson} {shown:>12s} in "
              f"[{claim.low:g}, {claim.high:g}]: {claim.says}")
        if not ok:
            failures.append(f"{claim.lesson}: {claim.says}: got {shown}, the text says "
                            f"[{claim.low:g}, {claim.high:g}]")
    return failures


def main(argv=None) -> int:
    args = parse_args(argv)
    common.use_local_book()
    prefixes = args.lessons or sorted({claim.lesson for claim in CLAIMS})
    texts = {}
    for path in sorted(args.solutions.glob("*.ipynb")):
        if not any(path.stem.startswith(prefix) for prefix in prefixes):
            continue
        if args.text is not None:
            texts[path.stem] = (args.text / f"{path.stem}.txt").read_text(encoding="utf-8")
            continue
        start = time.perf_counter()
        texts[path.stem] = run_full_mode(path, args.timeout)
        print(f"{path.stem}: ran in full mode in {time.perf_counter() - start:.0f} s",
              flush=True)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{path.stem}.txt").write_text(texts[path.stem], encoding="utf-8")
    failures = check(texts)
    if failures:
        print(f"\n{len(failures)} claim(s) out of range:\n" + "\n".join(failures))
        return 1
    print(f"\nall {sum(1 for c in CLAIMS if any(s.startswith(c.lesson) for s in texts))} "
          "claims in range")
    return 0


if __name__ == "__main__":
    sys.exit(main())
