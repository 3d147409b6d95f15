"""The ``tutorial-lib`` command."""

from __future__ import annotations

import argparse
import sys

from tutorial_lib import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tutorial-lib`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="tutorial-lib",
        description="Course 'From Deep Ensembles to Packed-Ensembles': library commands.",
    )
    parser.add_argument("--version", action="version", version=f"tutorial-lib {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    return 0
