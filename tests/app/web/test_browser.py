"""End to end in a real browser: the app as a subprocess (tiny model), driven by headless Chromium.

Files attached in the message box (each kind, a PNG's kind changed, two images with weights, one
removed from the "in use" strip), an example message, an edited question, paged answer versions,
a reload that keeps the chat, an export/import round trip, a bad file, and the session cap. The
first test saves a full-page screenshot (copied to docs/screenshot.png when UPDATE_SCREENSHOT is set).

Needs the `playwright` package and Debian's Chromium at /usr/bin/chromium (never `playwright install`).
Without them the module is skipped, except under CI (the CI variable set), where it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.media import write_image, write_thermal

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home and this machine's closed network refuses the connections.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLES_LABEL = "Examples (made by examples/make_examples.py)"
MODEL_READY_TIMEOUT_MS = 120_000
ANSWER_TIMEOUT_MS = 90_000
# Short answers: quicker, and both turns fit in the chat box of the screenshot (the README picture).
MAX_NEW_TOKENS = 40


def _missing_requirement() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install playwright==1.65.2)"
    return None


_MISSING = _missing_requirement()
if _MISSING is not None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run under CI: {_MISSING}", pytrace=False)
    pytest.skip(f"browser test skipped: {_MISSING}", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"
MEDIA = {
    "image": EXAMPLES / "sunset.jpg",
    "audio": EXAMPLES / "dog_bark.wav",
    "video": EXAMPLES / "bouncing_ball.mp4",
    "thermal": EXAMPLES / "thermal_person.png",
    "depth": EXAMPLES / "depth_room.png",
    "imu": EXAMPLES / "imu_walking.csv",
}


def _first_example() -> dict:
    rows = json.loads((EXAMPLES / "examples.json").read_text(encoding="utf-8"))
    return rows[0]


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions thrown by the page's own scripts."""
    return []


@pytest.fixture
def page(app_url: str, page_errors: list[str]):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            yield page
        finally:
            browser.close()


def _open(page: Page, url: str) -> None:
    """Open the page, wait for the model, and ask for short answers (quicker; the screenshot fits)."""
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("Ready", timeout=MODEL_READY_TIMEOUT_MS)
    tokens = page.get_by_label("number input for Maximum new tokens")
    tokens.fill(str(MAX_NEW_TOKENS))
    tokens.press("Tab")  # the slider takes the typed number on blur
    expect(page.get_by_label("range slider for Maximum new tokens")).to_have_value(str(MAX_NEW_TOKENS))


def _attach(page: Page, *files: Path, rows: int) -> None:
    """Drop files into the message box; wait until the strip lists `rows` files."""
    page.locator("#message input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator(f"#strip-row-{rows - 1}")).to_be_visible(timeout=30_000)


def _ask(page: Page, question: str) -> None:
    box = page.locator("#message textarea")
    box.fill(question)
    box.press("Enter")


def _wait_for_answer(page: Page, count: int) -> str:
    """Wait until the chat holds `count` assistant messages, the last non-empty, and streaming is over."""
    page.wait_for_function(
        """(count) => {
            const bots = document.querySelectorAll('#chatbot .bot-row');
            const tracker = document.querySelector('#chatbot [data-testid="status-tracker"]');
            return bots.length === count
                && bots[count - 1].innerText.trim().length > 0
                && (tracker === null || tracker.classList.contains('hide'));
        }""",
        arg=count,
        timeout=ANSWER_TIMEOUT_MS,
    )
    return _answer(page, count - 1)


ANSWERS = "#chatbot .bot-row"  # one row per answer: its text, then the caption naming the files it used
QUESTIONS = "#chatbot .user-row"  # one row per question: its text, then its files


def _answer(page: Page, index: int) -> str:
    """An answer's text without its "Used: ..." caption."""
    return page.locator(ANSWERS).nth(index).get_by_test_id("bot").first.inner_text().strip()


def _caption(page: Page, index: int) -> str:
    text = page.locator(ANSWERS).nth(index).inner_text()
    return text.split("Used: ", 1)[1].strip() if "Used: " in text else ""


def _choose_kind(page: Page, row: int, kind: str) -> None:
    page.locator(f"#strip-kind-{row} input").click()
    page.get_by_role("option", name=kind, exact=True).click()
    expect(page.locator(f"#strip-kind-{row} input")).to_have_value(kind)


def _set_weight(page: Page, row: int, weight: float) -> None:
    field = page.locator(f"#strip-weight-{row} input")
    field.fill(str(weight))
    field.press("Tab")


def _stored(page: Page) -> str | None:
    return page.evaluate("() => localStorage.getItem('pandagpt-demo-chat')")


def _wait_until_stored(page: Page, before: str | None) -> None:
    """The browser's copy of the chat is written after each action; wait for the new one."""
    page.wait_for_function("(before) => localStorage.getItem('pandagpt-demo-chat') !== before", arg=before, timeout=30_000)


def _assert_no_error_toast(page: Page) -> None:
    errors = page.locator('[data-testid="toast-body"].error')
    texts = errors.all_inner_texts()
    assert not texts, f"the app showed error toasts: {texts}"


def test_every_kind_attached_in_one_message_is_shown_in_the_chat_and_used(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    """One message with a file of each kind: the strip guesses each kind, the question shows a
    thumbnail, players and coloured previews with the file names, and the answer names all six.
    Then an example message, a follow-up, and the README's screenshot."""
    _open(page, app_url)
    _attach(page, *MEDIA.values(), rows=6)
    for row, kind in enumerate(MEDIA):
        expect(page.locator(f"#strip-kind-{row} input")).to_have_value(kind)
        expect(page.locator(f"#strip-name-{row}")).to_contain_text("in the message box")
    _ask(page, "What is going on here?")
    assert _wait_for_answer(page, 1)
    question = page.locator(QUESTIONS).first
    expect(question).to_contain_text("What is going on here?")
    expect(question.locator("img")).to_have_count(4)  # the photo, and the thermal, depth and IMU pictures
    expect(question.locator("audio")).to_have_count(1)
    expect(question.locator("video")).to_have_count(1)
    for preview in ("-thermal.png", "-depth.png", "-imu.png"):  # the coloured maps and the plot
        expect(question.locator(f'img[src*="{preview}"]')).to_have_count(1)
    expect(question).to_contain_text(" · ".join(f"{path.name} ({kind})" for kind, path in MEDIA.items()))
    assert _caption(page, 0) == " + ".join(f"{path.name} ({kind} ×1)" for kind, path in MEDIA.items())
    for row in range(6):
        expect(page.locator(f"#strip-name-{row}")).to_contain_text("in use")

    example = _first_example()
    gallery = page.locator(".block", has=page.get_by_text(EXAMPLES_LABEL, exact=True))
    gallery.get_by_text(example["question"]).click()
    expect(page.locator("#message textarea")).to_have_value(example["question"])
    page.locator("#message textarea").press("Enter")
    assert _wait_for_answer(page, 2)
    assert example["image"] == "examples/sunset.jpg"
    assert _caption(page, 1) == _caption(page, 0), "the example's image is the photo already in use: it is not counted twice"
    expect(page.locator("#strip-row-6")).to_have_count(0)
    _assert_no_error_toast(page)
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
    _open(page, app_url)
    _attach(page, photo, rows=1)
    expect(page.locator("#strip-kind-0 input")).to_have_value("image")
    _choose_kind(page, 0, "thermal")
    _ask(page, "What is warm here?")
    _wait_for_answer(page, 1)
    assert _caption(page, 0) == "scan.png (thermal ×1)"
    expect(page.locator(QUESTIONS).first).to_contain_text("scan.png (thermal)")
    expect(page.locator(QUESTIONS).first.locator('img[src*="-thermal.png"]')).to_have_count(1)

    _attach(page, grey, rows=2)
    expect(page.locator("#strip-kind-0 input")).to_have_value("thermal")  # the box's file comes first
    _choose_kind(page, 0, "depth")
    _ask(page, "How far is it?")
    _wait_for_answer(page, 2)
    assert _caption(page, 1) == "scan.png (thermal ×1) + grey.png (depth ×1)"
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
    _open(page, app_url)
    _attach(page, first, second, rows=2)
    _set_weight(page, 0, 0.5)
    _set_weight(page, 1, -1)
    _ask(page, "Compare them.")
    _wait_for_answer(page, 1)
    assert _caption(page, 0) == "first.png (image ×0.5) + second.png (image ×-1)"

    page.locator("#strip-remove-1").click()
    expect(page.locator("#strip-row-1")).to_have_count(0)
    expect(page.locator("#strip-name-0")).to_contain_text("first.png")
    _ask(page, "And now?")
    _wait_for_answer(page, 2)
    assert _caption(page, 1) == "first.png (image ×0.5)", "the removed image is no longer in use"
    expect(page.locator(QUESTIONS).first.locator("img")).to_have_count(2), "it stays shown with its message"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_an_earlier_question_is_edited_and_answered_again(page: Page, page_errors: list[str], app_url: str):
    _open(page, app_url)
    _ask(page, "First question?")
    _wait_for_answer(page, 1)
    _ask(page, "Second question?")
    _wait_for_answer(page, 2)
    page.locator(QUESTIONS).first.hover()
    page.locator("#chatbot").get_by_label("Edit").first.click()
    page.locator("#chatbot textarea.edit-textarea").fill("An edited question?")
    page.locator("#chatbot").get_by_role("button", name="Submit").click()
    _wait_for_answer(page, 1)
    expect(page.locator(QUESTIONS)).to_have_count(1)
    expect(page.locator(QUESTIONS).first).to_contain_text("An edited question?")
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_regenerated_versions_can_be_paged(page: Page, page_errors: list[str], app_url: str):
    _open(page, app_url)
    page.get_by_label("number input for Temperature").fill("1.5")
    page.get_by_label("number input for Top P").fill("1")
    page.get_by_label("number input for Top P").press("Tab")
    _ask(page, "Tell me something.")
    first = _wait_for_answer(page, 1)
    expect(page.locator("#versions")).to_be_hidden()
    page.locator("#regenerate").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2", timeout=ANSWER_TIMEOUT_MS)
    second = _wait_for_answer(page, 1)
    assert second != first, "sampled at temperature 1.5 over the whole vocabulary, two answers differ"
    page.locator("#version-previous").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 1 of 2")
    expect(page.locator(ANSWERS).first).to_contain_text(first)
    page.locator("#version-next").click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2")
    expect(page.locator(ANSWERS).first).to_contain_text(second)
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_a_reload_keeps_the_chat_and_an_export_imports_back(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    _open(page, app_url)
    _attach(page, MEDIA["image"], rows=1)
    _set_weight(page, 0, 0.5)
    before = _stored(page)
    _ask(page, "Remember me?")
    answer = _wait_for_answer(page, 1)
    _wait_until_stored(page, before)

    page.reload()
    expect(page.locator(QUESTIONS).first).to_contain_text("Remember me?", timeout=30_000)
    assert _answer(page, 0) == answer
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
    assert _answer(page, 0) == answer
    expect(page.locator("#strip-name-0")).to_contain_text("sunset.jpg")
    _ask(page, "Still about it?")
    _wait_for_answer(page, 2)
    assert _caption(page, 1) == "sunset.jpg (image ×0.5)"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def test_bad_file_warns_and_keeps_chat_and_message(page: Page, page_errors: list[str], app_url: str, tmp_path: Path):
    """A broken depth map: a warning names it, the earlier answer stays on screen, the question and
    the file go back into the message box, and after removing the file the question is answered."""
    _open(page, app_url)
    _ask(page, "Hello?")
    first = _wait_for_answer(page, 1)

    broken = tmp_path / "broken.npy"
    broken.write_text("not an array")
    _attach(page, broken, rows=1)
    _ask(page, "How far is it?")
    expect(page.get_by_test_id("toast-body").filter(has_text="file 'broken.npy'")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#message textarea")).to_have_value("How far is it?")
    expect(page.locator("#strip-name-0")).to_contain_text("broken.npy")
    expect(page.locator(ANSWERS)).to_have_count(1)
    assert _answer(page, 0) == first
    _assert_no_error_toast(page)

    page.locator("#strip-remove-0").click()
    expect(page.locator("#strip-row-0")).to_have_count(0)
    page.locator("#message textarea").press("Enter")
    assert _wait_for_answer(page, 2)
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
