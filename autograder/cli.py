"""Command line: ``python -m autograder {release,grade,check}``."""

import argparse
from pathlib import Path

from autograder import release
from autograder.config import tools_on_path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all commands."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository root holding solutions/ and course/ (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    rel = commands.add_parser("release", help="generate course/ from solutions/")
    rel.add_argument("--check", action="store_true",
                     help="change nothing; exit 1 listing stale, missing or extra course/ files")
    return parser


def main(argv=None) -> int:
    """Run one command; return its exit status."""
    args = build_parser().parse_args(argv)
    tools_on_path()
    if args.command == "release":
        return release.main(args.root.resolve(), args.check)
    raise AssertionError(args.command)
