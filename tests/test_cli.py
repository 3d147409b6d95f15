"""The `tutorial-lib` command."""

import subprocess
import sys

from tutorial_lib import __version__, cli


def test_help_and_version(capsys):
    assert cli.main([]) == 0
    assert "tutorial-lib" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "tutorial_lib", "--version"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == f"tutorial-lib {__version__}"
