"""A study that outlasts a working session resumes from its committed, unfinished results file
(``benchmarks/common.py``: :func:`resume_study`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from common import StudyMismatch, resume_study  # noqa: E402

SIGNATURE = {"widths": [1, 2, 4], "seeds": 3, "epoch_grid": [24, 48], "source": "abc"}


def unfinished(**changes) -> dict:
    return {"complete": False, "command": "python benchmarks/packing.py --epoch-grid 24 48",
            "commit": "0123abc", "signature": SIGNATURE | changes, "passes": [{"minutes": 90}],
            "datasets": {"fashion": {"points": {"LeNet": {"cls/Acc": 0.9}}}}}  # fmt: skip


def test_an_unfinished_study_with_the_same_signature_is_carried_on(tmp_path, capsys):
    path = tmp_path / "packing.json"
    path.write_text(json.dumps(unfinished()))
    study = resume_study(path, SIGNATURE, print)
    assert study["datasets"]["fashion"]["points"] == {"LeNet": {"cls/Acc": 0.9}}
    assert "1 model(s) done in 1 earlier pass(es)" in capsys.readouterr().out


def test_no_file_or_a_complete_one_starts_afresh(tmp_path):
    path = tmp_path / "packing.json"
    assert resume_study(path, SIGNATURE, print) is None
    path.write_text(json.dumps(unfinished() | {"complete": True}))
    assert resume_study(path, SIGNATURE, print) is None


def test_another_studys_unfinished_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "packing.json"
    path.write_text(json.dumps(unfinished(source="def")))
    before = path.read_bytes()
    with pytest.raises(StudyMismatch, match=r"source: 'def' there, 'abc' here.*0123abc"):
        resume_study(path, SIGNATURE, print)
    assert path.read_bytes() == before  # nothing lost
    path.write_text("{not json")
    with pytest.raises(StudyMismatch, match="cannot be read"):
        resume_study(path, SIGNATURE, print)
