"""What the browser tests share: Debian's Chromium driven by Playwright, and the page's common moves
(open it, attach files, ask, wait for an answer, read it back).

Needs the `playwright` package and Debian's Chromium at /usr/bin/chromium (never `playwright install`).
A test module that imports this one is skipped without them, except under CI (the CI variable set),
where it fails instead; they import playwright's names from here. Its `page` fixture is in conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

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
MODEL_READY_TIMEOUT_MS = 120_000
ANSWER_TIMEOUT_MS = 90_000
# Short answers: quicker, and both turns fit in the chat box of the screenshot (the README picture).
MAX_NEW_TOKENS = 40


def missing_requirement() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install playwright==1.65.2)"
    return None


_MISSING = missing_requirement()
if _MISSING is not None:  # raised into the importing test module, which is skipped (or fails under CI)
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run under CI: {_MISSING}", pytrace=False)
    pytest.skip(f"browser test skipped: {_MISSING}", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402, F401 - the one import of playwright: tests take its names from here

EXAMPLES = REPO_ROOT / "examples"
MEDIA = {
    "image": EXAMPLES / "sunset.jpg",
    "audio": EXAMPLES / "dog_bark.wav",
    "video": EXAMPLES / "bouncing_ball.mp4",
    "thermal": EXAMPLES / "thermal_person.png",
    "depth": EXAMPLES / "depth_room.png",
    "imu": EXAMPLES / "imu_walking.csv",
}


def open_app(page: Page, url: str) -> None:
    """Open the page, wait for the model, and ask for short answers (quicker; the screenshot fits)."""
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("Ready", timeout=MODEL_READY_TIMEOUT_MS)
    tokens = page.get_by_label("number input for Maximum new tokens")
    tokens.fill(str(MAX_NEW_TOKENS))
    tokens.press("Tab")  # the slider takes the typed number on blur
    expect(page.get_by_label("range slider for Maximum new tokens")).to_have_value(str(MAX_NEW_TOKENS))


def attach(page: Page, *files: Path, rows: int) -> None:
    """Drop files into the message box; wait until the strip lists `rows` files."""
    page.locator("#message input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator(f"#strip-row-{rows - 1}")).to_be_visible(timeout=30_000)


def ask(page: Page, question: str) -> None:
    box = page.locator("#message textarea")
    box.fill(question)
    box.press("Enter")


def wait_for_answer(page: Page, count: int) -> str:
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
    return answer_text(page, count - 1)


ANSWERS = "#chatbot .bot-row"  # one row per answer: its text, then the caption naming the files it used
QUESTIONS = "#chatbot .user-row"  # one row per question: its text, then its files


def answer_text(page: Page, index: int) -> str:
    """An answer's text without its "Used: ..." caption."""
    return page.locator(ANSWERS).nth(index).get_by_test_id("bot").first.inner_text().strip()


def caption(page: Page, index: int) -> str:
    text = page.locator(ANSWERS).nth(index).inner_text()
    return text.split("Used: ", 1)[1].strip() if "Used: " in text else ""


def choose_kind(page: Page, row: int, kind: str) -> None:
    page.locator(f"#strip-kind-{row} input").click()
    page.get_by_role("option", name=kind, exact=True).click()
    expect(page.locator(f"#strip-kind-{row} input")).to_have_value(kind)


def set_weight(page: Page, row: int, weight: float) -> None:
    field = page.locator(f"#strip-weight-{row} input")
    field.fill(str(weight))
    field.press("Tab")


def stored(page: Page) -> str | None:
    return page.evaluate("() => localStorage.getItem('pandagpt-demo-chat')")


def wait_until_stored(page: Page, before: str | None) -> None:
    """The browser's copy of the chat is written after each action; wait for the new one."""
    page.wait_for_function("(before) => localStorage.getItem('pandagpt-demo-chat') !== before", arg=before, timeout=30_000)


def assert_no_error_toast(page: Page) -> None:
    errors = page.locator('[data-testid="toast-body"].error')
    texts = errors.all_inner_texts()
    assert not texts, f"the app showed error toasts: {texts}"
