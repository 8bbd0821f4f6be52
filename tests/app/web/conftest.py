"""The browser tests' page: a fresh headless Chromium (tests/app/web/browser.py) on the app of `app_url`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions thrown by the page's own scripts."""
    return []


@pytest.fixture
def page(app_url: str, page_errors: list[str]) -> Iterator[object]:
    from tests.app.web.browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            yield page
        finally:
            browser.close()
