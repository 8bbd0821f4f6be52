"""The HTML of ImageBind's view and of the answer tables: a labelled heat map of similarities, a bar
per label and file, and answers side by side. Plain tables and bars styled by `BINDING_CSS`: no
plotting library, readable by a screen reader, and every piece of user or model text escaped."""

from __future__ import annotations

from html import escape

from pandagpt_demo.app.conversation.each import Row
from pandagpt_demo.app.conversation.view import ImageBindView

BINDING_CSS = """
.heat-map table, .answer-table { border-collapse: collapse; width: 100%; }
.answer-table { table-layout: fixed; }
.heat-map th, .heat-map td { padding: 4px 6px; text-align: center; border: 1px solid var(--border-color-primary); }
.heat-map th[scope=row] { text-align: left; font-weight: normal; overflow-wrap: anywhere; }
.heat-map caption, .label-bars .label-caption { caption-side: top; text-align: left; font-size: 0.9em; opacity: 0.8; padding-bottom: 4px; }
.label-file { margin-top: 8px; }
.label-file-name { font-weight: 600; overflow-wrap: anywhere; }
.label-row { display: grid; grid-template-columns: minmax(0, 2fr) 3fr 4em; gap: 6px; align-items: center; }
.label-name { overflow-wrap: anywhere; }
.label-bar { display: block; height: 0.8em; background: var(--background-fill-secondary); border-radius: 3px; }
.label-bar > span { display: block; height: 100%; background: #ea580c; border-radius: 3px; }
.label-p { text-align: right; font-variant-numeric: tabular-nums; }
.answer-table th, .answer-table td { vertical-align: top; text-align: left; padding: 6px; border: 1px solid var(--border-color-primary); overflow-wrap: anywhere; }
.answer-error { color: #dc2626; }
"""


def _cell_style(value: float) -> str:
    """Orange for alike (cosine toward 1), blue for opposite (toward -1), clear near 0."""
    strength = min(abs(value), 1.0)
    red, green, blue = (234, 88, 12) if value >= 0 else (37, 99, 235)
    text = "color: white;" if strength > 0.6 else ""
    return f"background: rgba({red}, {green}, {blue}, {strength:.3f}); {text}"


def heat_map(view: ImageBindView) -> str:
    """The files x files cosine similarity, rows named in full and columns by number."""
    numbers = "".join(f'<th scope="col" title="{escape(name)}">{index}</th>' for index, name in enumerate(view.files, 1))
    rows = []
    for index, (name, values) in enumerate(zip(view.files, view.similarity), 1):
        cells = "".join(
            f'<td style="{_cell_style(value)}" data-value="{value:.6f}" title="{escape(name)} · {escape(other)}: {value:.3f}">{value:.2f}</td>'
            for other, value in zip(view.files, values)
        )
        rows.append(f'<tr><th scope="row">{index} · {escape(name)}</th>{cells}</tr>')
    caption = "Cosine similarity of ImageBind's vectors, the ones the answers are made of (1: the same direction)"
    return f'<div class="heat-map"><table><caption>{caption}</caption><thead><tr><th></th>{numbers}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def label_bars(view: ImageBindView) -> str:
    """For each file, its zero-shot probability over the labels, as bars; empty without labels."""
    if not view.labels:
        return ""
    files = []
    for name, probabilities in zip(view.files, view.probabilities):
        bars = "".join(
            f'<div class="label-row"><span class="label-name">{escape(label)}</span>'
            f'<span class="label-bar"><span style="width: {100 * p:.1f}%"></span></span>'
            f'<span class="label-p" data-value="{p:.6f}">{100 * p:.1f}%</span></div>'
            for label, p in zip(view.labels, probabilities)
        )
        files.append(f'<div class="label-file"><div class="label-file-name">{escape(name)}</div>{bars}</div>')
    caption = "Zero-shot labels: each file's probabilities over your labels, as ImageBind's own example computes them"
    return f'<div class="label-bars"><div class="label-caption">{caption}</div>{"".join(files)}</div>'


def answer_table(rows: list[Row]) -> str:
    """Answers side by side, a column each, headed by what the answer saw; a cell still streaming ends in ▌."""
    heads = "".join(f'<th scope="col">{escape(row.label)}</th>' for row in rows)
    cells = []
    for row in rows:
        text = escape(row.text.strip()).replace("\n", "<br>")
        if row.error:
            text += f'{"<br>" if text else ""}<em class="answer-error">⚠️ {escape(row.error)}</em>'
        elif not row.done:
            text += "▌"
        cells.append(f'<td class="answer-cell" data-done="{str(row.done).lower()}">{text}</td>')
    return f'<table class="answer-table"><thead><tr>{heads}</tr></thead><tbody><tr>{"".join(cells)}</tr></tbody></table>'
