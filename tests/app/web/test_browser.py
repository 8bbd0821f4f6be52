"""End to end in a real browser: the app as a subprocess (tiny model), driven by headless Chromium.

Files attached in the message box (each kind, a PNG's kind changed, two images with weights, one
removed from the "in use" strip), an example message, an edited question, paged answer versions,
a reload that keeps the chat, an export/import round trip, a bad file, and the session cap. The
first test saves a full-page screenshot (copied to docs/screenshot.png when UPDATE_SCREENSHOT is set).
Skipped without Chromium and Playwright (browser.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality
from tests.app.web.browser import (
    ANSWER_TIMEOUT_MS,
    ANSWERS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXAMPLES,
    MEDIA,
    MODEL_READY_TIMEOUT_MS,
    QUESTIONS,
    Page,
    answer_text,
    ask,
    assert_no_error_toast,
    attach,
    caption,
    choose_kind,
    expect,
    open_app,
    set_weight,
    stored,
    sync_playwright,
    wait_for_answer,
    wait_until_stored,
)
from tests.conftest import REPO_ROOT
from tests.media import write_image, write_thermal

EXAMPLES_LABEL = "Examples (made by examples/make_examples.py)"


def _first_example() -> dict:
    rows = json.loads((EXAMPLES / "examples.json").read_text(encoding="utf-8"))
    return rows[0]


def test_every_kind_attached_in_one_message_is_shown_in_the_chat_and_used(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    """One message with a file of each kind: the strip guesses each kind, the question shows a
    thumbnail, players and coloured previews with the file names, and the answer names all six.
    Then an example message, a follow-up, and the README's screenshot."""
    open_app(page, app_url)
    attach(page, *MEDIA.values(), rows=6)
    for row, kind in enumerate(MEDIA):
        expect(page.locator(f"#strip-kind-{row} input")).to_have_value(kind)
        expect(page.locator(f"#strip-name-{row}")).to_contain_text("in the message box")
    ask(page, "What is going on here?")
    assert wait_for_answer(page, 1)
    question = page.locator(QUESTIONS).first
    expect(question).to_contain_text("What is going on here?")
    expect(question.locator("img")).to_have_count(4)  # the photo, and the thermal, depth and IMU pictures
    expect(question.locator("audio")).to_have_count(1)
    expect(question.locator("video")).to_have_count(1)
    for preview in ("-thermal.png", "-depth.png", "-imu.png"):  # the coloured maps and the plot
        expect(question.locator(f'img[src*="{preview}"]')).to_have_count(1)
    expect(question).to_contain_text(" · ".join(f"{path.name} ({kind})" for kind, path in MEDIA.items()))
    took = {kind: took_in(Modality(kind), path).short for kind, path in MEDIA.items()}  # what ImageBind took in (test_browser_intake.py)
    assert caption(page, 0) == " + ".join(f"{path.name} ({kind} ×1; {took[kind]})" for kind, path in MEDIA.items())
    for row in range(6):
        expect(page.locator(f"#strip-name-{row}")).to_contain_text("in use")

    example = _first_example()
    gallery = page.locator(".block", has=page.get_by_text(EXAMPLES_LABEL, exact=True))
    gallery.get_by_text(example["question"]).click()
    expect(page.locator("#message textarea")).to_have_value(example["question"])
    page.locator("#message textarea").press("Enter")
    assert wait_for_answer(page, 2)
    assert example["image"] == "examples/sunset.jpg"
    assert caption(page, 1) == caption(page, 0), "the example's image is the photo already in use: it is not counted twice"
    expect(page.locator("#strip-row-6")).to_have_count(0)
    assert_no_error_toast(page)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"

    screenshot = tmp_path / "pandagpt.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, screenshot
    if os.environ.get("UPDATE_SCREENSHOT"):
        docs = REPO_ROOT / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, docs / "screenshot.png")
        print(f"\nscreenshot copied to {docs / 'screenshot.png'}")


def test_a_png_can_be_taken_as_thermal_or_depth(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    """A colour PNG (guessed: image) taken as thermal; a grey PNG (guessed: thermal) taken as depth;
    the colour one refused as depth with a warning that names it."""
    photo, grey = tmp_path / "scan.png", tmp_path / "grey.png"
    write_image(photo)
    write_thermal(grey)
    open_app(page, app_url)
    attach(page, photo, rows=1)
    expect(page.locator("#strip-kind-0 input")).to_have_value("image")
    choose_kind(page, 0, "thermal")
    ask(page, "What is warm here?")
    wait_for_answer(page, 1)
    assert caption(page, 0) == f"scan.png (thermal ×1; {took_in(Modality.THERMAL, photo).short})"
    expect(page.locator(QUESTIONS).first).to_contain_text("scan.png (thermal)")
    expect(page.locator(QUESTIONS).first.locator('img[src*="-thermal.png"]')).to_have_count(1)

    attach(page, grey, rows=2)
    expect(page.locator("#strip-kind-0 input")).to_have_value("thermal")  # the box's file comes first
    choose_kind(page, 0, "depth")
    ask(page, "How far is it?")
    wait_for_answer(page, 2)
    heat, depth = took_in(Modality.THERMAL, photo).short, took_in(Modality.DEPTH, grey).short
    assert caption(page, 1) == f"scan.png (thermal ×1; {heat}) + grey.png (depth ×1; {depth})"
    expect(page.locator(QUESTIONS).nth(1).locator('img[src*="-depth.png"]')).to_have_count(1)

    page.locator("#strip-kind-0 input").click()  # scan.png, now in use
    page.get_by_role("option", name="depth", exact=True).click()
    expect(page.get_by_test_id("toast-body").filter(has_text="depth file 'scan.png'")).to_be_visible()
    expect(page.locator("#strip-kind-0 input")).to_have_value("thermal")
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_two_images_are_summed_with_their_weights_and_one_can_be_removed(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_image(first, seed=1)
    write_image(second, seed=2)
    open_app(page, app_url)
    attach(page, first, second, rows=2)
    set_weight(page, 0, 0.5)
    set_weight(page, 1, -1)
    ask(page, "Compare them.")
    wait_for_answer(page, 1)
    seen = took_in(Modality.IMAGE, first).short
    assert caption(page, 0) == f"first.png (image ×0.5; {seen}) + second.png (image ×-1; {took_in(Modality.IMAGE, second).short})"

    page.locator("#strip-remove-1").click()
    expect(page.locator("#strip-row-1")).to_have_count(0)
    expect(page.locator("#strip-name-0")).to_contain_text("first.png")
    ask(page, "And now?")
    wait_for_answer(page, 2)
    assert caption(page, 1) == f"first.png (image ×0.5; {seen})", "the removed image is no longer in use"
    expect(page.locator(QUESTIONS).first.locator("img")).to_have_count(2), "it stays shown with its message"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_an_earlier_question_is_edited_and_answered_again(page: Page, page_errors: list[str], app_url: str):
    open_app(page, app_url)
    ask(page, "First question?")
    wait_for_answer(page, 1)
    ask(page, "Second question?")
    wait_for_answer(page, 2)
    page.locator(QUESTIONS).first.hover()
    page.locator("#chatbot").get_by_label("Edit").first.click()
    page.locator("#chatbot textarea.edit-textarea").fill("An edited question?")
    page.locator("#chatbot").get_by_role("button", name="Submit").click()
    wait_for_answer(page, 1)
    expect(page.locator(QUESTIONS)).to_have_count(1)
    expect(page.locator(QUESTIONS).first).to_contain_text("An edited question?")
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_regenerated_versions_can_be_paged(page: Page, page_errors: list[str], app_url: str):
    open_app(page, app_url)
    page.get_by_label("number input for Temperature").fill("1.5")
    page.get_by_label("number input for Top P").fill("1")
    page.get_by_label("number input for Top P").press("Tab")
    ask(page, "Tell me something.")
    first = wait_for_answer(page, 1)
    expect(page.locator("#versions")).to_be_hidden()
    page.locator("#regenerate").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2", timeout=ANSWER_TIMEOUT_MS)
    second = wait_for_answer(page, 1)
    assert second != first, "sampled at temperature 1.5 over the whole vocabulary, two answers differ"
    page.locator("#version-previous").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 1 of 2")
    expect(page.locator(ANSWERS).first).to_contain_text(first)
    page.locator("#version-next").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2")
    expect(page.locator(ANSWERS).first).to_contain_text(second)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_a_reload_keeps_the_chat_and_an_export_imports_back(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    open_app(page, app_url)
    attach(page, MEDIA["image"], rows=1)
    set_weight(page, 0, 0.5)
    before = stored(page)
    ask(page, "Remember me?")
    answer = wait_for_answer(page, 1)
    wait_until_stored(page, before)

    page.reload()
    expect(page.locator(QUESTIONS).first).to_contain_text("Remember me?", timeout=30_000)
    assert answer_text(page, 0) == answer
    expect(page.locator("#strip-name-0")).to_contain_text("sunset.jpg")
    expect(page.locator("#strip-weight-0 input")).to_have_value("0.5")
    expect(page.locator(f'{QUESTIONS} img[src$="/sunset.jpg"]')).to_have_count(1), "the file is still on the server"

    page.get_by_text("Keep or resume this chat").click()
    with page.expect_download() as download:
        page.locator("#export").click()
    exported = tmp_path / "chat.json"
    download.value.save_as(exported)
    record = json.loads(exported.read_text())
    assert [m["question"] for m in record["messages"]] == ["Remember me?"]
    assert record["files"][0]["name"] == "sunset.jpg" and record["files"][0]["weight"] == 0.5 and len(record["files"][0]["sha256"]) == 64

    page.locator("#clear").click()
    expect(page.locator(QUESTIONS)).to_have_count(0)
    with page.expect_file_chooser() as chooser:
        page.locator("#import").click()
    chooser.value.set_files(str(exported))
    expect(page.locator(QUESTIONS).first).to_contain_text("Remember me?", timeout=30_000)
    assert answer_text(page, 0) == answer
    expect(page.locator("#strip-name-0")).to_contain_text("sunset.jpg")
    ask(page, "Still about it?")
    wait_for_answer(page, 2)
    assert caption(page, 1) == f"sunset.jpg (image ×0.5; {took_in(Modality.IMAGE, MEDIA['image']).short})", "found again after the import"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_bad_file_warns_and_keeps_chat_and_message(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    """A broken depth map: a warning names it, the earlier answer stays on screen, the question and
    the file go back into the message box, and after removing the file the question is answered."""
    open_app(page, app_url)
    ask(page, "Hello?")
    first = wait_for_answer(page, 1)

    broken = tmp_path / "broken.npy"
    broken.write_text("not an array")
    attach(page, broken, rows=1)
    ask(page, "How far is it?")
    expect(page.get_by_test_id("toast-body").filter(has_text="file 'broken.npy'")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#message textarea")).to_have_value("How far is it?")
    expect(page.locator("#strip-name-0")).to_contain_text("broken.npy")
    expect(page.locator(ANSWERS)).to_have_count(1)
    assert answer_text(page, 0) == first
    assert_no_error_toast(page)

    page.locator("#strip-remove-0").click()
    expect(page.locator("#strip-row-0")).to_have_count(0)
    page.locator("#message textarea").press("Enter")
    assert wait_for_answer(page, 2)
    expect(page.locator(QUESTIONS).filter(has_text="How far is it?")).to_have_count(1)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_past_max_sessions_a_new_tab_is_told_to_come_back_and_gets_in_once_a_tab_closes(tiny_config, tmp_path: Path) -> None:
    """With room for one chat: the second tab sees the notice; once the first tab closes (Gradio's
    unload), the second tab, reloaded, has the place."""
    from tests.launched import App

    app = App(tiny_config, tmp_path, "--max-sessions", "1")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                first = browser.new_context().new_page()
                first.goto(app.url)
                expect(first.locator("#status")).to_contain_text("Ready", timeout=MODEL_READY_TIMEOUT_MS)
                expect(first.locator("#notice")).to_be_hidden()
                second = browser.new_context().new_page()
                second.goto(app.url)
                expect(second.locator("#notice")).to_contain_text(
                    "The demo is full right now (it takes 1 at a time); please come back", timeout=30_000
                )
                first.close()
                second.wait_for_timeout(1000)
                second.reload()
                expect(second.locator("#status")).to_contain_text("Ready", timeout=MODEL_READY_TIMEOUT_MS)
                expect(second.locator("#notice")).to_be_hidden(timeout=30_000)
            finally:
                browser.close()
    finally:
        app.stop()
