"""Metric tables: one model's report, or several models side by side.

The same table renders three ways: a rich table in a terminal (``print_table``), clean HTML in a
notebook (``_repr_html_``, no ANSI codes) and Markdown for the book (``to_markdown``); a comparison
is also a pandas DataFrame (``to_dataframe``). Rows are grouped as the reference tutorial's
tables. Acc, ECE, aECE, MCE, AUROC, AUPR, FPR95, AURC, AUGRC, Cov@xRisk and Risk@xCov show as
percentages; everything else with 5 decimals (counts as integers).
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Mapping

SECTIONS: dict[str, tuple[str, ...]] = {
    "Classification": ("cls/Acc", "cls/Brier", "cls/NLL", "cls/Entropy"),
    "Calibration": ("cal/ECE", "cal/aECE", "cal/MCE", "cal/GL"),
    "OOD Detection": ("ood/AUROC", "ood/AUPR", "ood/FPR95", "ood/Entropy"),
    "Selective Classification": ("sc/AURC", "sc/AUGRC", "sc/Cov@5Risk", "sc/Risk@80Cov"),
    "Ensemble Diversity": (
        "ens/Disagreement", "ens/Entropy", "ens/MI",
        "ood/ens_Disagreement", "ood/ens_Entropy", "ood/ens_MI",
    ),
    "Complexity": ("cplx/params", "cplx/flops_per_image", "cplx/flops_batch", "cplx/fit_s"),
}  # fmt: skip

PERCENT_NAMES = {"Acc", "ECE", "aECE", "MCE", "AUROC", "AUPR", "FPR95", "AURC", "AUGRC"}
INTEGER_KEYS = {"cplx/params", "cplx/flops_per_image", "cplx/flops_batch"}

# True: higher is better; False: lower is better; absent: neither (descriptive)
HIGHER_IS_BETTER: dict[str, bool] = {
    "cls/Acc": True, "cls/Brier": False, "cls/NLL": False,
    "cal/ECE": False, "cal/aECE": False, "cal/MCE": False, "cal/GL": False,
    "ood/AUROC": True, "ood/AUPR": True, "ood/FPR95": False, "ood/Entropy": True,
    "sc/AURC": False, "sc/AUGRC": False, "sc/Cov@5Risk": True, "sc/Risk@80Cov": False,
    "ood/ens_MI": True,
    "cplx/params": False, "cplx/flops_per_image": False, "cplx/flops_batch": False,
    "cplx/fit_s": False,
}  # fmt: skip


def _is_percent(key: str) -> bool:
    name = key.split("/", 1)[-1]
    return name in PERCENT_NAMES or name.startswith(("Cov@", "Risk@"))


def format_value(key: str, value: float) -> str:
    """``"99.12%"`` for percentage metrics, ``"44,426"`` for counts, ``"0.01234"`` otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key in INTEGER_KEYS:
        return f"{int(value):,}"
    if key.endswith("_s"):
        return f"{value:.1f} s"
    if _is_percent(key):
        return f"{100 * value:.2f}%"
    return f"{value:.5f}"


def short_label(key: str) -> str:
    """The metric's display name, without arrow or unit (``"OOD Entropy"``, ``"ECE"``)."""
    name = key.split("/", 1)[-1].replace("ens_", "ens. ").replace("fit_s", "training time")
    if key.startswith("ood/") and not name.startswith(("AU", "FPR")):
        name = f"OOD {name}"
    return name


def label(key: str) -> str:
    """Row label: the metric name, its arrow (↑ higher / ↓ lower is better) and unit."""
    name = short_label(key)
    arrow = {True: " ↑", False: " ↓"}.get(HIGHER_IS_BETTER.get(key), "")
    return f"{name}{arrow}{' (%)' if _is_percent(key) else ''}"


class MetricTable:
    """Metrics of one or more models, grouped in sections.

    Args:
        columns: ``{model name: {metric key: value}}``; keys as :func:`evaluate_predictions`
            returns them (plus ``cplx/...`` for complexity and ``cal/GL`` for the grouping loss).
        title: caption of the table.
    """

    def __init__(self, columns: Mapping[str, Mapping[str, float]], title: str = "") -> None:
        if not columns:
            raise ValueError("MetricTable needs at least one column of metrics.")
        self.columns = {name: dict(values) for name, values in columns.items()}
        self.title = title
        known = [key for keys in SECTIONS.values() for key in keys]
        present = {key for values in self.columns.values() for key in values}
        self.sections = {
            section: [key for key in keys if key in present] for section, keys in SECTIONS.items()
        }
        extra = sorted(present - set(known))
        if extra:
            self.sections["Other"] = extra
        self.sections = {s: keys for s, keys in self.sections.items() if keys}

    def best(self, key: str) -> str | None:
        """Name of the column with the best value of ``key`` (None if undefined or 1 column)."""
        direction = HIGHER_IS_BETTER.get(key)
        values = {
            name: v for name, col in self.columns.items()
            if (v := col.get(key)) is not None and not math.isnan(v)
        }  # fmt: skip
        if direction is None or len(self.columns) < 2 or len(set(values.values())) < 2:
            return None  # nothing to compare, or all equal
        pick = max if direction else min
        return pick(values, key=values.get)

    def rows(self) -> list[tuple[str, str, list[str], str | None]]:
        """``(section, label, formatted values per column, best column)`` for each metric."""
        out = []
        for section, keys in self.sections.items():
            for key in keys:
                cells = [
                    format_value(key, col[key]) if key in col else "–"
                    for col in self.columns.values()
                ]
                out.append((section, label(key), cells, self.best(key)))
        return out

    def to_dataframe(self):
        """A pandas DataFrame: index (section, metric), one column per model, raw values."""
        import pandas as pd

        index, data = [], []
        for section, keys in self.sections.items():
            for key in keys:
                index.append((section, label(key)))
                data.append([col.get(key, math.nan) for col in self.columns.values()])
        return pd.DataFrame(
            data,
            index=pd.MultiIndex.from_tuples(index, names=["section", "metric"]),
            columns=list(self.columns),
        )

    def to_markdown(self) -> str:
        """A Markdown table; the best value of each row in bold."""
        names = list(self.columns)
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| Metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        current = None
        for section, name, cells, best in self.rows():
            if section != current:
                lines.append(f"| ***{section}*** |" + " |" * len(names))
                current = section
            shown = [f"**{c}**" if n == best else c for n, c in zip(names, cells, strict=True)]
            lines.append(f"| {name} | " + " | ".join(shown) + " |")
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        names = list(self.columns)
        esc = html.escape
        parts = ['<table class="metric-table">']
        if self.title:
            parts.append(f"<caption>{esc(self.title)}</caption>")
        parts.append(
            "<thead><tr><th>Metric</th>"
            + "".join(f'<th style="text-align:right">{esc(n)}</th>' for n in names)
            + "</tr></thead><tbody>"
        )
        current = None
        for section, name, cells, best in self.rows():
            if section != current:
                parts.append(
                    f'<tr><th colspan="{len(names) + 1}" style="text-align:left">'
                    f"{esc(section)}</th></tr>"
                )
                current = section
            tds = "".join(
                f'<td style="text-align:right">{"<b>" + esc(c) + "</b>" if n == best else esc(c)}'
                "</td>"
                for n, c in zip(names, cells, strict=True)
            )
            parts.append(f"<tr><td>{esc(name)}</td>{tds}</tr>")
        parts.append("</tbody></table>")
        return "".join(parts)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=self.title or None, show_lines=False)
        table.add_column("Metric")
        for name in self.columns:
            table.add_column(name, justify="right")
        current = None
        for section, name, cells, best in self.rows():
            if section != current:
                if current:
                    table.add_section()
                table.add_row(f"[bold]{section}[/bold]", *[""] * len(cells))
                current = section
            shown = [
                f"[bold green]{c}[/bold green]" if n == best else c
                for n, c in zip(self.columns, cells, strict=True)
            ]
            table.add_row(f"  {name}", *shown)
        return table

    def __str__(self) -> str:
        return self.to_markdown()


def verdicts(table: MetricTable, baseline: str) -> list[str]:
    """One sentence per other column: on which metrics it beats ``baseline``, on which it loses.

    Only metrics with a direction (↑ or ↓) count; the sentences are computed, never typed.
    """
    if baseline not in table.columns:
        raise ValueError(f"{baseline!r} is not a column: {list(table.columns)}.")
    base = table.columns[baseline]
    lines = []
    for name, column in table.columns.items():
        if name == baseline:
            continue
        better, worse = [], []
        for key, value in column.items():
            direction = HIGHER_IS_BETTER.get(key)
            other = base.get(key)
            if direction is None or other is None or math.isnan(value) or math.isnan(other):
                continue
            if value != other:
                (better if (value > other) == direction else worse).append(short_label(key))
        lines.append(
            f"{name} vs {baseline}: better on {len(better)} metrics ({', '.join(better) or '-'}), "
            f"worse on {len(worse)} ({', '.join(worse) or '-'})."
        )
    return lines


def report(metrics: Mapping[str, float], name: str = "value", title: str = "") -> MetricTable:
    """The table of one model's metrics."""
    return MetricTable({name: metrics}, title)


def compare(results: Mapping[str, Mapping[str, float]], title: str = "") -> MetricTable:
    """Several models side by side, the best value of each row marked."""
    return MetricTable(results, title)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def show(table: MetricTable) -> None:
    """Display a table: HTML in a notebook, a rich table in a terminal, Markdown in a pipe."""
    if _in_notebook():
        from IPython.display import display

        display(table)
    elif sys.stdout.isatty():
        from rich.console import Console

        Console().print(table)
    else:
        print(table.to_markdown())
