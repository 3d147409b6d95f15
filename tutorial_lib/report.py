"""Metric tables and verdicts: one model's report, or several models side by side, with error bars.

The same table renders three ways: a rich table in a terminal (``__rich__``), clean HTML in a
notebook (``_repr_html_``, no ANSI codes) and Markdown for the book (``to_markdown``); it is also
a pandas DataFrame (``to_dataframe``). Rows are grouped as the reference tutorial's tables, plus
the metrics after temperature scaling (keys ``ts/...``) and the cost (parameters, FLOPs, time).
With several seeds each cell shows ``mean ± std`` (sample standard deviation over seeds). Each
row's label, arrow, unit and format come from the metric's entry in
:mod:`tutorial_lib.metric_registry`.

:func:`verdicts` turns per-seed results into sentences: on which headline metrics a model beats
a baseline, on which it loses, and where the two are **not distinguishable** (Welch's t-test over
seeds, Holm-corrected over the line: :mod:`tutorial_lib.stats`). Cost is never counted as a
"worse metric": it gets a sentence of its own.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Mapping

from tutorial_lib.metric_registry import CALIBRATED, SCALABLE, Section, lookup
from tutorial_lib.metric_registry import SECTIONS as FAMILIES


def _section_keys(family: Section) -> tuple[str, ...]:
    keys = tuple(m.key for m in family.metrics)
    if "ts/T" in keys:  # then every metric recomputed after temperature scaling, as ts/<key>
        keys += tuple(f"{CALIBRATED}{k}" for k in SCALABLE)
    return keys


# the table's sections: their keys, in the registry's order
SECTIONS: dict[str, tuple[str, ...]] = {family.title: _section_keys(family) for family in FAMILIES}


# the headline metrics a verdict line weighs, declared before any result: accuracy, NLL, ECE and
# OOD AUROC (one per question the course asks); the others are in the tables, with no verdict
HEADLINE_KEYS = ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC")


def ranked(key: str, value: float) -> float:
    """The value used to rank models: a negative grouping-loss estimate means the bias correction
    overshot a grouping loss of about 0, so it ranks as 0 (never "best")."""
    return max(value, 0.0) if key.endswith("cal/GL") else value


def direction(key: str) -> bool | None:
    """True if higher is better, False if lower is better, None if neither (descriptive, or a key
    with no entry in :mod:`tutorial_lib.metric_registry`)."""
    metric = lookup(key)
    return None if metric is None else metric.higher_is_better


def format_value(key: str, value: float | None, spread: float | None = None) -> str:
    """``"99.12%"``, ``"99.12 ± 0.05%"``, ``"44,426"``, ``"8.6 s"``, ``"0.01234 ± 0.00100"``,
    ``"n/a"``, as the metric's registered format says (a key with no entry: 5 decimals)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    pm = spread is not None and not math.isnan(spread)
    metric = lookup(key)
    kind, digits = (metric.format, metric.digits) if metric else ("decimal", 5)
    if kind == "integer":
        return f"{value:,.0f}" + (f" ± {spread:,.0f}" if pm and spread else "")
    if kind == "seconds":
        return f"{value:.1f}" + (f" ± {spread:.1f}" if pm else "") + " s"
    if kind == "percent":
        return f"{100 * value:.2f}" + (f" ± {100 * spread:.2f}" if pm else "") + "%"
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if pm else "")


def short_label(key: str) -> str:
    """The metric's display name, without arrow or unit (``"OOD predictive entropy"``,
    ``"T-scaled ECE"``); a key with no entry shows as itself."""
    metric = lookup(key)
    return key if metric is None else metric.label


def label(key: str) -> str:
    """Row label: the metric name, its arrow (↑ higher / ↓ lower is better) and unit."""
    metric = lookup(key)
    arrow = {True: " ↑", False: " ↓"}.get(direction(key), "")
    unit = f" ({metric.unit})" if metric is not None and metric.unit else ""
    return f"{short_label(key)}{arrow}{unit}"


class MetricTable:
    """Metrics of one or more models, grouped in sections, with optional spreads.

    Args:
        columns: ``{model name: {metric key: value}}``; keys as
            :func:`~tutorial_lib.metrics.evaluate_predictions` returns them, plus ``cplx/...``
            (cost), ``cal/GL`` (grouping loss) and ``ts/...`` (after temperature scaling).
        title: caption of the table.
        spread: ``{model name: {metric key: standard deviation over seeds}}``, or None.
        seeds: the number of seeds behind each value (shown in the caption).
    """

    def __init__(
        self,
        columns: Mapping[str, Mapping[str, float]],
        title: str = "",
        spread: Mapping[str, Mapping[str, float | None]] | None = None,
        seeds: int = 1,
    ) -> None:
        if not columns:
            raise ValueError("MetricTable needs at least one column of metrics.")
        self.columns = {name: dict(values) for name, values in columns.items()}
        self.spread = {name: dict(spread.get(name, {})) for name in columns} if spread else None
        self.seeds = seeds
        self.title = title + (f" (mean ± std over {seeds} seeds)" if seeds > 1 and title else "")
        known = [key for keys in SECTIONS.values() for key in keys]
        present = {key for values in self.columns.values() for key in values}
        self.sections = {
            section: [key for key in keys if key in present] for section, keys in SECTIONS.items()
        }
        extra = sorted(present - set(known))
        if extra:
            self.sections["Other"] = extra
        self.sections = {s: keys for s, keys in self.sections.items() if keys}

    def std(self, name: str, key: str) -> float | None:
        """The spread of ``key`` for model ``name`` (None without spreads)."""
        return None if self.spread is None else self.spread[name].get(key)

    def best(self, key: str) -> str | None:
        """Name of the column with the best mean of ``key`` (None if undefined or tied)."""
        better = direction(key)
        values = {
            name: ranked(key, v) for name, col in self.columns.items()
            if (v := col.get(key)) is not None and not math.isnan(v)
        }  # fmt: skip
        if better is None or len(self.columns) < 2 or len(set(values.values())) < 2:
            return None
        top = (max if better else min)(values.values())
        winners = [name for name, v in values.items() if v == top]
        return winners[0] if len(winners) == 1 else None  # a tie has no single best

    def rows(self) -> list[tuple[str, str, list[str], str | None]]:
        """``(section, label, formatted cells per column, best column)`` for each metric."""
        out = []
        for section, keys in self.sections.items():
            for key in keys:
                cells = [
                    format_value(key, col[key], self.std(name, key)) if key in col else "–"
                    for name, col in self.columns.items()
                ]
                out.append((section, label(key), cells, self.best(key)))
        return out

    def to_dataframe(self):
        """A pandas DataFrame: index (section, metric), one column per model, the means."""
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


def seed_values(entry: Mapping, key: str) -> list[float]:
    """One metric's per-seed values in a model's entry of ``results.json`` (what
    :meth:`tutorial_lib.compare.Comparison.summary` returns): keys ``ts/...`` after temperature
    scaling (``ts/T`` the temperatures), ``cplx/fit_s`` the training times; ``[]`` if absent."""
    if key == "ts/T":
        return [float(t) for t in entry.get("temperature") or []]
    if key == "cplx/fit_s":
        return [float(t) for t in entry.get("fit_s") or []]
    seeds = entry["calibrated"]["seeds"] if key.startswith(CALIBRATED) else entry["seeds"]
    key = key.removeprefix(CALIBRATED)
    values = [run.get(key) for run in seeds]
    return [] if any(v is None for v in values) else [float(v) for v in values]


def verdicts(entries: Mapping[str, Mapping], baseline: str, alpha: float = 0.05) -> list[str]:
    """Sentences, one per model other than ``baseline``: on which headline metrics it is
    better, worse, or not distinguishable, and what it costs.

    The headline metrics (:data:`HEADLINE_KEYS`) are declared here, before any result; each is
    judged by Welch's t-test over seeds, and the line is Holm-corrected over them, so that the
    chance of any false "better" or "worse" in a line is at most ``alpha`` (see
    :mod:`tutorial_lib.stats`). The other metrics are in the table, without verdicts. With one
    seed there is no verdict. Cost is never counted as a "worse metric": it gets a sentence of
    its own.

    Args:
        entries: ``{model name: its entry in results.json}`` (per-seed values under "seeds").
        baseline: the name of the model the others are judged against.
    """
    from tutorial_lib import stats

    if baseline not in entries:
        raise ValueError(f"{baseline!r} is not a model: {list(entries)}.")
    base = entries[baseline]
    lines = []
    for name, entry in entries.items():
        if name == baseline:
            continue
        pairs = {}
        for key in HEADLINE_KEYS:
            value, other = seed_values(entry, key), seed_values(base, key)
            if value and other and not any(math.isnan(v) for v in value + other):
                pairs[key] = (value, other, direction(key))
        seeds = min(len(entry["seeds"]), len(base["seeds"]))
        if seeds < 2:
            sentence = f"{name} vs {baseline}: one seed: no verdict, run --seeds N."
        else:
            found: dict[str, list[str]] = {v: [] for v in stats.VERDICTS}
            for key, said in stats.verdicts(pairs, alpha).items():
                found[said].append(short_label(key))
            sentence = (
                f"{name} vs {baseline} ({seeds} seeds; Welch's t-test, Holm over "
                f"{len(pairs)} headline metrics, {alpha:.0%} family-wise): "
                + "; ".join(f"{said} on {', '.join(keys)}" for said, keys in found.items() if keys)
                + "."
            )
        cost = _cost_sentence(_cost(entry), _cost(base))
        lines.append(sentence + (f" Cost: {cost}." if cost else ""))
    return lines


def _cost(entry: Mapping) -> dict[str, float]:
    out = {k: entry["metrics"][k] for k in ("cplx/params", "cplx/flops_per_image")
           if k in entry["metrics"]}  # fmt: skip
    if any(entry.get("fit_s") or []):
        out["cplx/fit_s"] = math.fsum(entry["fit_s"]) / len(entry["fit_s"])
    return out


def _cost_sentence(column: Mapping[str, float], base: Mapping[str, float]) -> str:
    ratios = []
    for key, word in (("cplx/params", "parameters"), ("cplx/flops_per_image", "FLOPs"),
                      ("cplx/fit_s", "training time")):  # fmt: skip
        if column.get(key) and base.get(key):
            ratios.append(f"{column[key] / base[key]:.2f}x the {word}")
    return ", ".join(ratios)


def report(metrics: Mapping[str, float], name: str = "value", title: str = "") -> MetricTable:
    """The table of one model's metrics."""
    return MetricTable({name: metrics}, title)


def compare(results: Mapping[str, Mapping[str, float]], title: str = "") -> MetricTable:
    """Several models side by side (one seed each), the best value of each row marked."""
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
