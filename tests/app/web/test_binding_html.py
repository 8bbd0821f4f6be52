"""The panel's HTML: values as shown and as data, every user or model text escaped, a cell's state."""

from __future__ import annotations

from html.parser import HTMLParser

from pandagpt_demo.app.conversation.each import Row
from pandagpt_demo.app.conversation.view import ImageBindView
from pandagpt_demo.app.web.binding_html import answer_table, heat_map, label_bars

VIEW = ImageBindView(
    files=["<b>dog</b>.wav (audio)", "cat & co.png (image)"],
    similarity=[[1.0, -0.25], [-0.25, 1.0]],
    labels=["<script>alert(1)</script>", "rain"],
    probabilities=[[0.75, 0.25], [0.1, 0.9]],
)


class Tags(HTMLParser):
    """Every start tag and attribute of a fragment, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_heat_map_shows_each_pair_and_colours_by_sign() -> None:
    parsed = Tags(heat_map(VIEW))
    cells = [attrs for tag, attrs in parsed.tags if tag == "td"]
    assert [float(c["data-value"]) for c in cells] == [1.0, -0.25, -0.25, 1.0]
    assert "rgba(234, 88, 12, 1.000)" in cells[0]["style"] and "color: white" in cells[0]["style"]
    assert "rgba(37, 99, 235, 0.250)" in cells[1]["style"] and "color" not in cells[1]["style"].split(";", 1)[1]
    assert "1 · <b>dog</b>.wav (audio)" in parsed.text and "2 · cat & co.png (image)" in parsed.text
    assert [tag for tag, _ in parsed.tags].count("b") == 0, "a file name is text, never markup"


def test_bars_are_each_files_probabilities_and_labels_are_text() -> None:
    parsed = Tags(label_bars(VIEW))
    widths = [attrs["style"] for tag, attrs in parsed.tags if tag == "span" and "style" in attrs]
    assert widths == ["width: 75.0%", "width: 25.0%", "width: 10.0%", "width: 90.0%"]
    assert "<script>alert(1)</script>" in parsed.text and not any(tag == "script" for tag, _ in parsed.tags)
    assert label_bars(ImageBindView(VIEW.files, VIEW.similarity, [], [])) == ""


def test_answer_cells_stream_finish_or_say_what_went_wrong() -> None:
    rows = [Row("a.png (image)", "A <i>cat</i>\nsits", done=True), Row("b.wav (audio)", "Bar"), Row("all, weighted", done=True, error="queue full")]
    parsed = Tags(answer_table(rows))
    assert [attrs["data-done"] for tag, attrs in parsed.tags if tag == "td"] == ["true", "false", "true"]
    assert [tag for tag, _ in parsed.tags].count("i") == 0 and "A <i>cat</i>" in parsed.text and "sits" in parsed.text
    assert "Bar▌" in parsed.text, "a cell still streaming ends in a cursor"
    assert "⚠️ queue full" in parsed.text
