"""``python -m autograder check``: solutions/ must earn full marks, course/ must earn zero.

Both are graded exactly like a student's submission (same sandbox, same nbgrader pipeline),
as two students named ``solutions`` and ``course``.
"""

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from autograder.config import COURSE, SOLUTIONS, lessons
from autograder.grade import Options, grade


def build_class(root: Path, folder: Path) -> list[str]:
    """folder/solutions/<lesson>.ipynb and folder/course/<lesson>.ipynb; return problems."""
    problems = []
    for name in lessons(root / SOLUTIONS):
        for kind in (SOLUTIONS, COURSE):
            src = root / kind / f"{name}.ipynb"
            if not src.is_file():
                problems.append(f"{kind}/{name}.ipynb is missing (run python -m autograder "
                                "release)")
                continue
            (folder / kind).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / kind / f"{name}.ipynb")
    return problems


def verdicts(results: list[dict]) -> list[str]:
    """One line per problem: a solution cell that fails, a course cell that passes."""
    problems = []
    for r in results:
        if r["status"] != "graded":
            problems.append(f"{r['student']}/{r['lesson']}: {r['status']}: {r['reason']}")
        for cell in r["cells"]:
            if r["student"] == SOLUTIONS and not cell["passed"]:
                problems.append(f"solutions/{r['lesson']} {cell['grade_id']}: "
                                f"{cell['points']:g}/{cell['max_points']:g} {cell['message']}")
            if r["student"] == COURSE and cell["points"] > 0:
                problems.append(f"course/{r['lesson']} {cell['grade_id']}: "
                                f"{cell['points']:g} free points for the blank notebook")
    return problems


def main(opts: Options) -> int:
    """Grade both; print a line per lesson and every problem; 0 only when all is as expected."""
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
        folder = Path(tmp) / "class"
        problems = build_class(opts.root, folder)
        out = opts.out or Path(tmp) / "out"
        summary = grade(replace(opts, submissions=folder, out=out))
    for r in summary["results"]:
        print(f"{r['student']:>9}/{r['lesson']}: {r['score']:g}/{r['max_score']:g} "
              f"({r['status']}, {r['seconds']} s)")
    problems += verdicts(summary["results"])
    for line in problems:
        print(f"PROBLEM: {line}", file=sys.stderr)
    print("check passed" if not problems else f"check FAILED ({len(problems)} problems)")
    return 1 if problems else 0
