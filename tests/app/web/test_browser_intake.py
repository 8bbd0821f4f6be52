"""What ImageBind took in, a video's own sound, and the page on a phone, in a real browser (headless
Chromium, the app as a subprocess).

One file of each kind (the video with a sound track): the panel holds a picture and the loader's own
sentence for each, and says the large losses once as notices; 🔊 adds the video's sound as a row of
its own; the answer equals `/chat`'s with `video_sound`, and its "Used:" line carries the figures.
On a 390 × 844 phone the chat and the message box fit the first screen and the examples come before
the side panel (the screenshot is copied to docs/phone.png when UPDATE_SCREENSHOT is set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality
from tests.app.web.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAX_NEW_TOKENS,
    MEDIA,
    Page,
    ask,
    assert_no_error_toast,
    attach,
    caption,
    expect,
    open_app,
    sync_playwright,
    wait_for_answer,
)
from tests.conftest import REPO_ROOT
from tests.media import write_video_with_sound

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("talk") / "talk.mp4"
    write_video_with_sound(path, seconds=6, size=(320, 180))
    return path


def test_every_kind_shows_what_imagebind_took_in_and_a_video_can_be_heard(page: Page, page_errors: list[str], app_url: str, talk: Path) -> None:
    files = {**{Modality(kind): path for kind, path in MEDIA.items()}, Modality.VIDEO: talk}
    open_app(page, app_url)
    temperature = page.get_by_label("number input for Temperature")
    temperature.fill("0")  # greedy: a tiny random model's top-p 0.01 still samples among hundreds of tokens
    temperature.press("Tab")
    attach(page, *files.values(), rows=len(files))
    sentences = page.locator("#intake-text")
    for kind, path in files.items():
        expect(sentences).to_contain_text(f"{path.name} ({kind.value}): {took_in(kind, path).summary}", timeout=30_000)
    captions = page.locator("#intake-pictures .caption-label")
    expect(captions).to_have_count(len(files))
    assert captions.all_inner_texts() == [f"{path.name}: {took_in(kind, path).short}" for kind, path in files.items()]
    notices = page.get_by_test_id("toast-body")
    expect(notices.filter(has_text="talk.mp4: ImageBind saw 10 of")).to_have_count(1)  # its sound unused: said once
    expect(notices.filter(has_text="sunset.jpg: ImageBind saw the centre")).to_have_count(1)  # a wide photo's sides

    video_row = list(files).index(Modality.VIDEO)
    expect(page.locator("[id^=strip-hear-]")).to_have_count(1)  # only the video with sound offers it
    page.locator(f"#strip-hear-{video_row}").click()
    expect(page.locator(f"#strip-name-{video_row + 1}")).to_contain_text("talk.mp4 (its sound)", timeout=30_000)
    expect(page.locator("[id^=strip-hear-]")).to_have_count(0)
    sound = took_in(Modality.AUDIO, talk)
    expect(sentences).to_contain_text(f"talk.mp4 (its sound) (audio): {sound.summary}", timeout=30_000)
    expect(captions).to_have_count(len(files) + 1)

    ask(page, "What is this?")
    answer = wait_for_answer(page, 1)
    given = {kind.value: handle_file(str(path)) for kind, path in files.items()}
    expected = Client(app_url, verbose=False).predict(
        "What is this?", **given, video_sound=True, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, api_name="/chat"
    )
    assert " ".join(answer.split()) == " ".join(expected.split()), "the page's answer with the sound is /chat's with video_sound"
    assert f"talk.mp4 (its sound) (audio ×1; {sound.short})" in caption(page, 0)
    assert f"dog_bark.wav (audio ×1; {took_in(Modality.AUDIO, MEDIA['audio']).short})" in caption(page, 0)
    assert_no_error_toast(page)
    assert not page_errors


def test_on_a_phone_the_chat_and_message_box_fit_and_the_examples_come_first(app_url: str, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.goto(app_url)
            expect(page.locator("#status")).to_contain_text("Ready", timeout=120_000)
            chat, box = page.locator("#chatbot").bounding_box(), page.locator("#message").bounding_box()
            assert chat["y"] < PHONE["height"] / 3 and box["y"] + box["height"] <= PHONE["height"], (chat, box)
            assert page.locator("#examples").bounding_box()["y"] < page.locator("#strip").bounding_box()["y"]
            screenshot = tmp_path / "phone.png"
            page.screenshot(path=str(screenshot))
            audio = MEDIA["audio"]
            attach(page, audio, rows=1)
            sentence = page.locator("#intake-text")
            sentence.scroll_into_view_if_needed()
            expect(sentence).to_contain_text(took_in(Modality.AUDIO, audio).summary, timeout=30_000)
            assert sentence.bounding_box()["width"] <= PHONE["width"], "it reads there too, without sideways scrolling"
            assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "phone.png")
