"""`python -m tutorial_lib` runs the `tutorial-lib` command."""

from tutorial_lib.cli import entry

entry()
