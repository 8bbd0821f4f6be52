"""ImageBind's view and the answer tables in a real browser (headless Chromium, the app as a subprocess).

Three files in use: the heat map and the labels' bars hold what `/imagebind_view` computes for the
same files; "Answer each" fills its table with `/chat`'s greedy answers (each file alone, then all);
"Blend two" fills its row, whose ends are the single files' answers; Stop ends every row still
decoding (the engine's active rows fall to 0). Bad input is a warning that changes nothing shown.
The first test saves the panel's screenshot (copied to docs/ when UPDATE_SCREENSHOT is set).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from tests.app.web.browser import (
    ANSWER_TIMEOUT_MS,
    CHROMIUM,
    CHROMIUM_ARGS,
    MAX_NEW_TOKENS,
    MEDIA,
    Page,
    ask,
    assert_no_error_toast,
    attach,
    expect,
    open_app,
    sync_playwright,
    wait_for_answer,
)
from tests.conftest import REPO_ROOT
from tests.launched import App

FILES = {kind: MEDIA[kind] for kind in ("image", "audio", "thermal")}
LABELS = "a sunset, a dog barking, a person"


def metric(url: str, line: str) -> float:
    for row in httpx.get(url + "metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


def counted(url: str, endpoint: str) -> float:
    return metric(url, f'pandagpt_requests_total{{endpoint="{endpoint}"}}')


def values(page: Page, selector: str) -> list[float]:
    return [float(v) for v in page.locator(selector).evaluate_all("cells => cells.map(c => c.dataset.value)")]


def cells(page: Page, table: str) -> list[str]:
    """The text of each answer cell of a table, whitespace as a browser collapses it."""
    return [" ".join(text.split()) for text in page.locator(f"{table} .answer-cell").all_inner_texts()]


def wait_until_done(page: Page, table: str, count: int) -> None:
    page.wait_for_function(
        """([table, count]) => {
            const cells = document.querySelectorAll(table + ' .answer-cell');
            return cells.length === count && [...cells].every(c => c.dataset.done === 'true');
        }""",
        arg=[table, count],
        timeout=ANSWER_TIMEOUT_MS,
    )


def greedy_chat(url: str, **files: Path | dict) -> str:
    weights = files.pop("weights", None)
    given = {kind: handle_file(str(path)) for kind, path in files.items()}
    answer = Client(url, verbose=False).predict(
        "What is this?", **given, weights=weights, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, api_name="/chat"
    )
    return " ".join(answer.split())


def open_panel(page: Page, title: str) -> None:
    page.get_by_text(title, exact=True).click()


def warned(page: Page, text: str) -> None:
    expect(page.get_by_test_id("toast-body").filter(has_text=text)).to_be_visible(timeout=30_000)


def test_the_view_answer_each_and_blend_two_fill_the_page(page: Page, page_errors: list[str], app_url: str, tmp_path: Path) -> None:
    before = {endpoint: counted(app_url, endpoint) for endpoint in ("page_view", "page_each", "page_blend")}
    open_app(page, app_url)
    attach(page, *FILES.values(), rows=3)
    ask(page, "What is this?")
    wait_for_answer(page, 1)

    open_panel(page, "ImageBind's view")  # opening it shows the similarities
    expect(page.locator("#imagebind-heatmap td")).to_have_count(9, timeout=30_000)
    page.locator("#imagebind-labels textarea").fill(LABELS)
    page.locator("#imagebind-look").click()
    expect(page.locator("#imagebind-bars .label-p")).to_have_count(9, timeout=30_000)
    view = json.loads(
        Client(app_url, verbose=False).predict(
            **{kind: handle_file(str(path)) for kind, path in FILES.items()}, labels=LABELS, api_name="/imagebind_view"
        )
    )
    names = [f"{path.name} ({kind})" for kind, path in FILES.items()]
    assert view["files"] == names
    for row, name in enumerate(names):
        expect(page.locator("#imagebind-heatmap th[scope=row]").nth(row)).to_contain_text(name)
        expect(page.locator("#imagebind-bars .label-file-name").nth(row)).to_have_text(name)
    assert values(page, "#imagebind-heatmap td") == pytest.approx([v for row in view["similarity"] for v in row], abs=1e-5)
    assert values(page, "#imagebind-bars .label-p") == pytest.approx([p for row in view["probabilities"] for p in row], abs=1e-5)
    expect(page.locator("#imagebind-bars .label-name").first).to_have_text("a sunset")

    open_panel(page, "Compare: the last question answered per input")
    page.locator("#answer-each").click()
    wait_until_done(page, "#each-table", 4)
    expect(page.locator("#each-table th")).to_have_text([*names, "all, weighted"])
    each = cells(page, "#each-table")
    assert each[:3] == [greedy_chat(app_url, **{kind: path}) for kind, path in FILES.items()]
    assert each[3] == greedy_chat(app_url, **FILES)
    assert len(set(each)) == 4, f"every row is an answer of its own, so swapped rows or an ignored vector would show: {each}"

    expect(page.locator("#blend-a input")).to_have_value(f"1 · {names[0]}")
    expect(page.locator("#blend-b input")).to_have_value(f"2 · {names[1]}")
    steps = page.get_by_label("number input for Steps")
    steps.fill("3")
    steps.press("Tab")
    page.locator("#blend").click()
    wait_until_done(page, "#blend-row", 3)
    expect(page.locator("#blend-row th")).to_have_text(
        ["0·sunset.jpg + 1·dog_bark.wav", "0.5·sunset.jpg + 0.5·dog_bark.wav", "1·sunset.jpg + 0·dog_bark.wav"]
    )
    blend = cells(page, "#blend-row")
    assert blend[0] == each[1] and blend[-1] == each[0], "a blend's ends are the single files' answers"
    assert blend[1] == greedy_chat(app_url, image=FILES["image"], audio=FILES["audio"], weights={"image": 0.5, "audio": 0.5})
    assert len(set(blend)) == 3, f"B alone, the half mix and A alone differ, so swapped ends would show: {blend}"

    expect(page.locator("#chatbot .bot-row")).to_have_count(1)  # the conversation itself is unchanged
    assert {endpoint: counted(app_url, endpoint) - count for endpoint, count in before.items()} == {"page_view": 2, "page_each": 1, "page_blend": 1}
    assert_no_error_toast(page)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"

    screenshot = tmp_path / "imagebind.png"
    page.locator("#main").screenshot(path=str(screenshot))  # the chat, its answer tables and the panel
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "imagebind.png")


def test_bad_input_is_a_warning_that_changes_nothing_shown(page: Page, page_errors: list[str], app_url: str) -> None:
    open_app(page, app_url)
    open_panel(page, "ImageBind's view")
    warned(page, "No files are in use")
    open_panel(page, "Compare: the last question answered per input")
    page.locator("#answer-each").click()
    warned(page, "Ask a question first")

    attach(page, MEDIA["image"], rows=1)
    ask(page, "What is this?")
    wait_for_answer(page, 1)
    page.locator("#imagebind-labels textarea").fill("a sunset, a dog")
    page.locator("#imagebind-look").click()
    expect(page.locator("#imagebind-bars .label-p")).to_have_count(2, timeout=30_000)
    shown = page.locator("#imagebind-heatmap").inner_html(), page.locator("#imagebind-bars").inner_html()
    for labels, message in [
        (", ,", "The labels are empty"),
        (", ".join(f"label {n}" for n in range(500)), "500 labels is too many"),
        ("a sunset, " + "a very long label " * 30, "longer than ImageBind's text tower reads"),
    ]:
        page.locator("#imagebind-labels textarea").fill(labels)
        page.locator("#imagebind-look").click()
        warned(page, message)
        assert (page.locator("#imagebind-heatmap").inner_html(), page.locator("#imagebind-bars").inner_html()) == shown

    page.locator("#blend").click()
    warned(page, "Blend needs two files in use")
    expect(page.locator("#blend-row .answer-cell")).to_have_count(0)
    expect(page.locator("#chatbot .bot-row")).to_have_count(1)
    assert_no_error_toast(page)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_stop_ends_every_row_of_answer_each_and_blend_two(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """With every decode step slowed, Answer each (3 rows) and Blend two (5 rows) run at once, 8 rows
    in the engine; Stop ends them all: the engine's active rows fall to 0 long before they would finish."""
    app = App(tiny_config, tmp_path, "--concurrency", "8", slow_step=0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                open_app(page, app.url)
                attach(page, MEDIA["image"], MEDIA["audio"], rows=2)
                ask(page, "What is this?")
                wait_for_answer(page, 1)
                tokens = page.get_by_label("number input for Maximum new tokens")
                tokens.fill("400")  # 20 s of steps: far longer than the test waits
                tokens.press("Tab")
                open_panel(page, "Compare: the last question answered per input")
                page.locator("#answer-each").click()
                page.locator("#blend").click()
                expect(page.locator("#blend-row .answer-cell")).to_have_count(5, timeout=30_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.answer-cell')].filter(c => c.innerText.length > 1).length === 8", timeout=30_000
                )
                assert metric(app.url, "pandagpt_active_rows") == 8
                page.locator("#stop").click()
                page.wait_for_timeout(2_000)
                assert metric(app.url, "pandagpt_active_rows") == 0
                assert metric(app.url, "pandagpt_queue_depth") == 0
                done = page.locator(".answer-cell").evaluate_all("cells => cells.map(c => c.dataset.done)")
                assert done == ["false"] * 8, "stopped mid-answer: each cell keeps what it had"
            finally:
                browser.close()
    finally:
        app.stop()
