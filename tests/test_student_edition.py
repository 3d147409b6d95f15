"""The student edition of the real chapters: every exercise stubbed, and each chapter's exercise
cells run to the end with the library's versions.

The rest of a student chapter is the teacher's chapter without outputs, which the notebook tests
run top to bottom; what differs is the exercise cells, run here (each is self-contained: its
first cell imports what they use).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tutorial_lib import book
from tutorial_lib.exercises import EXERCISES

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from conftest import copy_course

    root = copy_course(tmp_path_factory.mktemp("course"))
    return book.student_edition(root, root / "student")


def test_every_exercise_is_in_a_chapter_and_stubbed(student):
    sources = {path.stem: "\n".join(c.source for c in nbformat.read(path, 4).cells)
               for path in student}  # fmt: skip
    for name, exercise in EXERCISES.items():
        (chapter,) = [s for s in sources if s.startswith(exercise.chapter)]
        assert f'check("{name}", {name})' in sources[chapter], name
    for path in student:  # no solution left in any code cell (the text may name the markers)
        code = [c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
        assert not any("### BEGIN SOLUTION" in source for source in code), path.name


@pytest.mark.subprocess
def test_the_student_exercises_run_on_with_the_library(student):
    from nbclient import NotebookClient

    for path in student:
        notebook = nbformat.read(path, 4)
        cells = [c for c in notebook.cells if c.cell_type == "code" and "check(" in c.source]
        if not cells:
            continue
        notebook.cells = cells
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
        printed = "".join(o.get("text", "") for c in cells for o in c.outputs)
        names = [n for n, e in EXERCISES.items() if path.stem.startswith(e.chapter)]
        for name in names:
            assert f"{name}: not done yet" in printed, (path.name, name)
