"""The gallery in headless Chromium: filters, favourites, review, variants, sharing.

One studio of its own (web server and cluster as processes), seeded with two
real videos made by the local provider and a reviewer, so these tests do not
change what the other browser tests see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    StorageState,
    expect,
    sync_playwright,
)

from tests.live import DEMO_PASSWORD, DEMO_USER, LiveStudio
from tests.media_factories import ASTRONAUT, make_wav
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, screenshot, sign_in, wait_until

pytestmark = pytest.mark.browser

REVIEWER, REVIEWER_PASSWORD = "rita", "rita-reviews"
JOB_URL = re.compile(r"/jobs/([0-9a-f-]{36})/$")
QUEUED = re.compile(r"Queued ([0-9a-f-]{36}) ")


@dataclass
class Seeded:
    studio: LiveStudio
    alpha: str  # code of a 480P video titled "Alpha take"
    bravo: str  # code of a 720P video titled "Bravo take"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    studio = LiveStudio(
        tmp_path_factory.mktemp("gallery-studio"), name="gallery studio"
    )
    try:
        studio.start()
        wav = make_wav(tmp_path_factory.mktemp("gallery-audio") / "voice.wav", 3.0)
        codes = []
        for title, resolution in (("Alpha take", "480P"), ("Bravo take", "720P")):
            result = studio.generate(
                ASTRONAUT,
                wav,
                "--title",
                title,
                "--resolution",
                resolution,
                "--wait",
                "--timeout",
                "180",
                timeout=240,
            )
            match = QUEUED.search(result.stdout)
            assert match, result.stdout
            codes.append(match[1])
        studio.manage(
            "shell",
            "-c",
            "from studio.models import Membership, Team, User;"
            f"u = User.objects.create_user('{REVIEWER}', password='{REVIEWER_PASSWORD}');"
            "Membership.objects.create(user=u, team=Team.objects.get(slug='demo'),"
            " role='reviewer')",
        )
        yield Seeded(studio=studio, alpha=codes[0], bravo=codes[1])
    except BaseException:
        print(studio.logs())  # noqa: T201 (shown with the setup error)
        raise
    finally:
        studio.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def _signed_in(
    browser: Browser, url: str, username: str, password: str
) -> StorageState:
    context = browser.new_context(base_url=url)
    page = context.new_page()
    sign_in(page, username, password)
    page.wait_for_url("**/new/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture(scope="module")
def demo_state(browser: Browser, seeded: Seeded) -> StorageState:
    return _signed_in(browser, seeded.studio.url, DEMO_USER, DEMO_PASSWORD)


@pytest.fixture(scope="module")
def reviewer_state(browser: Browser, seeded: Seeded) -> StorageState:
    return _signed_in(browser, seeded.studio.url, REVIEWER, REVIEWER_PASSWORD)


def _context(
    browser: Browser, seeded: Seeded, state: StorageState | None, **kwargs: object
) -> BrowserContext:
    context = browser.new_context(
        base_url=seeded.studio.url, storage_state=state, **kwargs
    )
    context.set_default_timeout(30_000)
    return context


@pytest.fixture
def page(browser: Browser, seeded: Seeded, demo_state: StorageState) -> Iterator[Page]:
    context = _context(browser, seeded, demo_state)
    yield context.new_page()
    context.close()


@pytest.fixture
def reviewer_page(
    browser: Browser, seeded: Seeded, reviewer_state: StorageState
) -> Iterator[Page]:
    context = _context(browser, seeded, reviewer_state)
    yield context.new_page()
    context.close()


def card(page: Page, code: str):  # type: ignore[no-untyped-def]
    return page.locator(f"article.card#job-{code}")


def test_filters_update_the_grid_and_the_url_without_a_reload(
    page: Page, seeded: Seeded
) -> None:
    page.goto("/gallery/")
    expect(card(page, seeded.alpha)).to_be_visible()
    expect(card(page, seeded.bravo)).to_be_visible()
    page.evaluate("window.__marker = 1")

    page.get_by_label("Resolution").select_option("720P")

    expect(page).to_have_url(re.compile(r"/gallery/\?.*resolution=720P"))
    expect(card(page, seeded.alpha)).to_have_count(0)
    expect(card(page, seeded.bravo)).to_be_visible()

    page.get_by_label("Resolution").select_option("")
    page.get_by_label("Search").fill("alpha")
    expect(page).to_have_url(re.compile(r"q=alpha"))
    expect(card(page, seeded.bravo)).to_have_count(0)
    expect(card(page, seeded.alpha)).to_be_visible()
    assert page.evaluate("window.__marker") == 1  # the grid was swapped, not the page
    screenshot(page, "gallery-filtered")

    # The pushed URL is a real page: opening it shows the same filtered grid.
    page.goto(page.url)
    expect(page.get_by_label("Search")).to_have_value("alpha")
    expect(card(page, seeded.bravo)).to_have_count(0)


def test_filters_work_without_javascript(
    browser: Browser, seeded: Seeded, demo_state: StorageState
) -> None:
    context = _context(browser, seeded, demo_state, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/gallery/")
        page.get_by_label("Resolution").select_option("720P")
        page.get_by_role("button", name="Filter").click()

        expect(page).to_have_url(re.compile(r"resolution=720P"))
        expect(card(page, seeded.bravo)).to_be_visible()
        expect(card(page, seeded.alpha)).to_have_count(0)
    finally:
        context.close()


def test_a_star_marks_a_favourite_that_the_filter_finds(
    page: Page, seeded: Seeded
) -> None:
    page.goto("/gallery/")
    star = card(page, seeded.alpha).get_by_role("button", name=re.compile("Favourite"))
    expect(star).to_have_attribute("aria-pressed", "false")

    star.click()

    expect(star).to_have_attribute("aria-pressed", "true")
    page.get_by_label("My favourites").check()
    expect(page).to_have_url(re.compile(r"favourites=1"))
    expect(card(page, seeded.bravo)).to_have_count(0)
    expect(card(page, seeded.alpha)).to_be_visible()

    page.reload()  # kept on the server, per user
    star = card(page, seeded.alpha).get_by_role("button", name=re.compile("Favourite"))
    expect(star).to_have_attribute("aria-pressed", "true")
    star.click()
    expect(star).to_have_attribute("aria-pressed", "false")


def test_hovering_a_card_plays_a_muted_preview(page: Page, seeded: Seeded) -> None:
    page.goto("/gallery/")
    video = card(page, seeded.bravo).locator("video")

    card(page, seeded.bravo).hover()
    page.wait_for_function(
        "v => !v.paused && v.muted && v.currentTime > 0",
        arg=video.element_handle(),
        timeout=20_000,
    )
    page.mouse.move(0, 0)

    page.wait_for_function("v => v.paused", arg=video.element_handle())


def test_a_reviewer_requests_changes_with_a_comment_and_the_author_hears(
    reviewer_page: Page, page: Page, seeded: Seeded
) -> None:
    reviewer_page.goto(f"/jobs/{seeded.alpha}/")
    review = reviewer_page.locator("#job-review")
    expect(review.locator("[data-review]").first).to_have_text("Not reviewed")

    reviewer_page.get_by_label("Review comment").fill("Start on the smile, <please>.")
    reviewer_page.get_by_role("button", name="Request changes").click()

    expect(review.locator("h2 [data-review]")).to_have_text("Changes requested")
    history = review.locator(".history li").first
    expect(history).to_contain_text("rita requested changes")
    expect(history).to_contain_text("Start on the smile, <please>.")
    screenshot(reviewer_page, "job-reviewed")

    reviewer_page.get_by_role("button", name="Approve").click()
    expect(review.locator("h2 [data-review]")).to_have_text("Approved")
    expect(review.locator(".history li")).to_have_count(2)

    page.goto("/gallery/")
    expect(page.locator("#notification-badge [data-unread]")).to_be_visible()
    expect(card(page, seeded.alpha).locator("[data-review]")).to_have_text("Approved")
    page.locator("#notification-badge").click()
    notices = page.locator("#notification-list")
    expect(notices).to_contain_text("rita requested changes on “Alpha take”")
    expect(notices).to_contain_text("rita approved “Alpha take”")
    screenshot(page, "notifications")


def test_a_comment_appears_in_the_thread(page: Page, seeded: Seeded) -> None:
    page.goto(f"/jobs/{seeded.bravo}/")
    page.get_by_label("Add a comment").fill("Use this one for the <b>launch</b>")
    page.get_by_role("button", name="Comment", exact=True).click()

    thread = page.locator("#job-comments .thread li")
    expect(thread).to_have_count(1)
    expect(thread).to_contain_text("Use this one for the <b>launch</b>")
    expect(page.get_by_label("Add a comment")).to_have_value("")


def test_rerun_at_720p_makes_a_variant_shown_beside_the_draft(
    page: Page, seeded: Seeded
) -> None:
    page.goto(f"/jobs/{seeded.alpha}/")
    page.get_by_role("button", name="Re-run at 720P").click()

    page.wait_for_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match and match[1] != seeded.alpha
    page.wait_for_selector('#job-status [data-status="succeeded"]', timeout=120_000)

    page.goto(f"/jobs/{seeded.alpha}/")
    variants = page.locator("#job-variants .variant")
    expect(variants).to_have_count(2)
    expect(page.locator('#job-variants [data-resolution="480P"]')).to_contain_text(
        "Cost"
    )
    expect(
        page.locator('#job-variants [data-resolution="720P"] [data-status]')
    ).to_have_text("Done")
    screenshot(page, "job-variants")


def test_a_share_link_opens_in_a_fresh_browser_and_can_be_revoked(
    browser: Browser, page: Page, seeded: Seeded
) -> None:
    page.goto(f"/jobs/{seeded.bravo}/")
    page.get_by_label("Link works for").select_option("3")
    page.get_by_role("button", name="Create share link").click()
    link = page.locator("#job-shares .share-url")
    expect(link).to_have_count(1)
    url = link.input_value()
    assert re.search(r"/s/[0-9a-f]{32}:[\w-]+/$", url), url

    stranger = browser.new_context()  # nobody signed in, no cookies
    try:
        shared = stranger.new_page()
        shared.goto(url)
        expect(shared.get_by_role("heading", name="Bravo take")).to_be_visible()
        expect(shared.get_by_role("link", name="Gallery")).to_have_count(0)
        video = shared.locator("video")
        video.evaluate("v => { v.muted = true; return v.play(); }")
        wait_until(shared, "document.querySelector('video').currentTime > 0", 20)
        assert video.evaluate("v => v.videoWidth") > 0
        screenshot(shared, "share-page")

        page.get_by_role("button", name="Revoke").click()
        expect(page.locator("#job-shares .closed")).to_contain_text("Revoked")
        response = shared.goto(url)
        assert response is not None and response.status == 404
    finally:
        stranger.close()
