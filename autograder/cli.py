"""Command line: ``python -m autograder {release,grade,check,export,formgrader}``."""

import argparse
import os
from pathlib import Path

from autograder.config import tools_on_path

GiB = 1024 ** 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all commands."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository root holding solutions/ and course/ (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    rel = commands.add_parser("release", help="generate course/ from solutions/")
    rel.add_argument("--check", action="store_true",
                     help="change nothing; exit 1 listing stale, missing or extra course/ files")
    rel.add_argument("--update-catalogs", action="store_true",
                     help="first refresh translations/<lang>/*.po from the English source "
                     "(new entries empty, changed ones fuzzy)")
    grade = commands.add_parser("grade", help="grade a folder or .zip of submissions")
    grade.add_argument("submissions", type=Path,
                       help="<student_id>/<lesson>.ipynb files, or nbgrader's submitted/ layout")
    grade.add_argument("--out", type=Path, required=True, help="folder for every output")
    _grading_options(grade)
    grade.add_argument("--db", dest="db_url", help="gradebook SQLAlchemy URL, e.g. "
                       "postgresql://user:password@host/db (default: sqlite:///OUT/gradebook.db)")
    grade.add_argument("--cluster", metavar="tcp://HOST:8786",
                       help="grade on the workers of this Dask scheduler (default: locally)")
    grade.add_argument("--roster", type=Path, metavar="CSV",
                       help="lms_id,student_id,name,email per student: maps Canvas/Moodle ids "
                       "to student ids and lists who submitted nothing")
    check = commands.add_parser("check", help="grade solutions/ (full marks expected) and "
                                "course/ (zero expected)")
    check.add_argument("--out", type=Path, help="keep the grading outputs here")
    _grading_options(check)
    _class_commands(commands)
    return parser


def _class_commands(commands) -> None:
    """export and formgrader: what an instructor does with a graded class."""
    export = commands.add_parser("export", help="write the grades of a graded class for "
                                 "Canvas, Moodle or as CSV (formgrader's manual grades applied)")
    export.add_argument("out", type=Path, help="the --out folder of grade")
    export.add_argument("--to", choices=["canvas", "moodle", "csv"], required=True)
    export.add_argument("--roster", type=Path, metavar="CSV",
                        help="lms_id,student_id,name,email (default: the one grade was given)")
    export.add_argument("--output", type=Path, help="the file to write "
                        "(default: OUT/grades-<format>.csv)")
    export.add_argument("--missing", choices=["empty", "zero"], default="empty",
                        help="the grade of a student who submitted nothing (default: empty)")
    export.add_argument("--assignment-id", action="append", metavar="LESSON=ID",
                        help="Canvas: the assignment id of a lesson (repeat per lesson)")
    formgrader = commands.add_parser("formgrader", help="JupyterLab with nbgrader's formgrader "
                                     "on a graded class (review, manual grades, feedback)")
    formgrader.add_argument("out", type=Path, help="the --out folder of grade")
    formgrader.add_argument("lab_options", nargs=argparse.REMAINDER,
                            help="passed to jupyter lab (e.g. --no-browser --port 8890)")


def _grading_options(parser) -> None:
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="submissions graded at once (default: the number of cores)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds a cell may run (default: from nbgrader_config.py)")
    parser.add_argument("--memory", type=float, default=4.0,
                        help="GiB of memory per kernel (default: 4)")


def main(argv=None) -> int:
    """Run one command; return its exit status."""
    args = build_parser().parse_args(argv)
    tools_on_path()
    root = args.root.resolve()
    if args.command == "release":
        from autograder import release

        return release.main(root, args.check, args.update_catalogs)
    if args.command in ("export", "formgrader"):
        from autograder import course_dir, export

        return (export.main(args) if args.command == "export"
                else course_dir.open_formgrader(args.out.resolve(), args.lab_options))
    from autograder import check, grade

    opts = grade.options_from(args, root)
    return grade.main(opts) if args.command == "grade" else check.main(opts)
