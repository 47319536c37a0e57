"""The provider choice in headless Chromium: on a 390 px phone, by keyboard only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.live import (  # noqa: F401 (the fixtures are used by name)
    DEMO_PASSWORD,
    DEMO_USER,
    LiveStudio,
    live_studio_factory_fixture,
)
from tests.media_factories import make_wav
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, screenshot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def test_three_providers_side_by_side_on_a_phone_by_keyboard(
    browser: Browser,
    live_studio_factory: Callable[..., LiveStudio],
    tmp_path: Path,
) -> None:
    studio = live_studio_factory(S2V_PROVIDERS="local,emulator,wavespeed-emulator")
    context = browser.new_context(
        base_url=studio.url, viewport={"width": 390, "height": 844}
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    sign_in(page, DEMO_USER, DEMO_PASSWORD)
    page.wait_for_url("**/new/")

    # 30 s: more than DashScope's 20 s, within WaveSpeed's and the local engine's.
    page.set_input_files("#audio-input", make_wav(tmp_path / "voice.wav", 30.0))
    expect(page.locator("#audio-report .verdict-pass")).to_be_visible()
    cards = page.locator(".provider-card")
    expect(cards).to_have_count(3)
    expect(page.locator("#provider-emulator")).to_be_disabled()
    expect(page.locator("[data-provider=emulator]")).to_contain_text(
        "shorter than 20 s"
    )
    # The local preview is free, and with empty queues the soonest too.
    expect(page.locator("[data-provider=local] [data-mark=cheapest]")).to_be_visible()
    expect(page.locator("[data-provider=local] [data-mark=soonest]")).to_be_visible()
    overflow = page.evaluate(
        "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 390 px"
    screenshot(page, "new-video-three-providers-390")

    # Keyboard only: focus the chosen card and move with the arrow keys; the
    # disabled choice is skipped, and the parameters follow the choice.
    page.locator("#provider-local").focus()
    expect(page.locator("#provider-local")).to_be_checked()
    expect(page.locator("#id_prompt")).to_have_count(0)
    page.keyboard.press("ArrowDown")
    expect(page.locator("#provider-wavespeed-emulator")).to_be_checked()
    expect(page.locator("#id_prompt")).to_be_visible()
    expect(page.locator("#estimate")).to_contain_text(
        re.compile(r"at 480P with WaveSpeed emulator")
    )
    # The swap kept the focus on the choice, so the keys go on working.
    page.keyboard.press("ArrowUp")
    expect(page.locator("#provider-local")).to_be_checked()
    expect(page.locator("#id_prompt")).to_have_count(0)
    context.close()
