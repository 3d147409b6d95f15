"""Every chapter's claims can fail: fed the committed results with two models' entries swapped,
a chapter must stop at a claim's ``assert``.

Each case runs one chapter in the quick profile (as CI does) with ``$TUTORIAL_RESULTS_DIR``
pointing at a copy of ``data/results`` in which two models trade places; the chapter passes on
the true results (the notebook tests), so a chapter that still passes here states nothing its
evidence decides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LENET, DE2, DE4 = "LeNet", "Deep Ensemble (M=2)", "Deep Ensemble (M=4)"
PE = "Packed-Ensemble (alpha=2, M=4)"

# (chapter, results file, the two models swapped)
CASES = [
    ("01_baseline", "mnist", (LENET, DE4)),
    ("02_deep_ensembles", "mnist", (LENET, DE2)),
    ("03_packed_ensembles", "mnist", (LENET, PE)),
    ("03_packed_ensembles", "fashion", (DE2, PE)),
    ("04_selective_classification", "mnist", (LENET, PE)),
    ("05_grouping_loss", "mnist", (LENET, DE4)),
    ("06_distribution_shift", "mnist", (LENET, PE)),
    ("08_cost_of_uncertainty", "pareto", (LENET, PE)),
    ("09_when_packing_pays", "packing", (DE4, PE)),
    ("10_kinds_of_uncertainty", "kinds", (DE4, PE)),
]


def swap(results: dict, first: str, second: str) -> dict:
    """The results with two models' entries (and their rows under shift) exchanged."""
    if "datasets" in results:  # pareto.json, packing.json: points per dataset
        for data in results["datasets"].values():
            points = data["points"]
            points[first], points[second] = points[second], points[first]
        return results
    models = results["models"]
    models[first], models[second] = models[second], models[first]
    names = {first: second, second: first}
    for row in results.get("shift", []):
        row["model"] = names.get(row["model"], row["model"])
    return results


@pytest.mark.subprocess
@pytest.mark.parametrize(("chapter", "name", "pair"), CASES, ids=[f"{c}-{n}" for c, n, _ in CASES])
def test_a_chapter_fails_on_swapped_results(tmp_path, monkeypatch, chapter, name, pair):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    folder = tmp_path / "results"
    shutil.copytree(ROOT / "data" / "results", folder)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(swap(json.loads(path.read_text()), *pair)))
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(folder))
    monkeypatch.setenv("TUTORIAL_PROFILE", "quick")
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})  # fmt: skip
    with pytest.raises(CellExecutionError) as failed:
        client.execute()
    assert failed.value.ename == "AssertionError", failed.value
