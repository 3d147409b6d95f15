"""The student edition of the real chapters: every exercise stubbed, and each chapter run top to
bottom (quick profile) with the library's versions in their place."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tutorial_lib import book
from tutorial_lib.exercises import EXERCISES

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))


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
@pytest.mark.parametrize(
    "chapter", sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
)
def test_a_student_chapter_runs_top_to_bottom(student_in_course, chapter, monkeypatch):
    """Every cell of the student chapter, in the quick profile, as a student runs it from a folder
    of the course: no exercise written, the chapter goes on with the library's versions (each
    unfinished exercise says so) and its claims still hold. Runs trained by the notebook tests
    are loaded from the course's run cache."""
    from nbclient import NotebookClient

    monkeypatch.setenv("TUTORIAL_PROFILE", "quick")
    path = student_in_course / f"{chapter}.ipynb"
    notebook = nbformat.read(path, 4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))  # fmt: skip
    for name in [n for n, e in EXERCISES.items() if chapter.startswith(e.chapter)]:
        assert f"{name}: not done yet" in printed, (chapter, name)


@pytest.fixture(scope="module")
def student_in_course():
    """The student edition written inside this course (under its ignored outputs/ folder, never
    over a student's own student/ folder), where the chapters find the course's data, results
    and run cache."""
    return book.student_edition(REPO, REPO / "outputs" / "student-edition")[0].parent
