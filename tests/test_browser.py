"""The studio in headless Chromium: sign-in, the checks, a generated video, the gallery."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Request,
    StorageState,
    expect,
    sync_playwright,
)

from tests.live import (  # noqa: F401 (the fixtures are used by name)
    DEMO_PASSWORD,
    DEMO_USER,
    REPO_ROOT,
    LiveStudio,
    live_studio_fixture,
    studio_fixture,
)
from tests.media_factories import ASTRONAUT, NO_FACE, make_wav

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Long enough that the job is still in flight when its page first loads, so the
# page has to poll its way to "done" (720P renders at roughly 0.3 s per second).
JOB_AUDIO_SECONDS = 40.0
JOB_TIMEOUT_MS = 180_000
JOB_URL = re.compile(r"/jobs/([0-9a-f-]{36})/$")


def screenshot(page: Page, name: str) -> None:
    """For humans: a picture of each main page in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def signed_in_state(browser: Browser, live_studio: LiveStudio) -> StorageState:
    """Cookies of a signed-in demo session, so most tests skip the sign-in form."""
    context = browser.new_context(base_url=live_studio.url)
    page = context.new_page()
    sign_in(page, DEMO_USER, DEMO_PASSWORD)
    page.wait_for_url("**/new/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(
    browser: Browser, studio: LiveStudio, signed_in_state: StorageState
) -> Iterator[Page]:
    context = browser.new_context(base_url=studio.url, storage_state=signed_in_state)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def anonymous_page(browser: Browser, studio: LiveStudio) -> Iterator[Page]:
    context = browser.new_context(base_url=studio.url)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def test_signing_in_opens_the_new_video_page(anonymous_page: Page) -> None:
    page = anonymous_page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    screenshot(page, "login")
    page.fill("#id_username", DEMO_USER)
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/new/$"))
    expect(page.get_by_role("heading", name="New video")).to_be_visible()
    expect(page.get_by_role("button", name=f"Sign out {DEMO_USER}")).to_be_visible()


def test_wrong_password_shows_an_error(anonymous_page: Page) -> None:
    page = anonymous_page
    sign_in(page, DEMO_USER, "not-the-password")

    alert = page.locator("main .alert-error")
    expect(alert).to_contain_text("correct username and password")
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.locator("#id_username")).to_have_value(DEMO_USER)
    screenshot(page, "login-wrong-password")


def test_generate_button_is_enabled_only_while_portrait_and_audio_both_pass(
    page: Page, tmp_path: Path
) -> None:
    wav = make_wav(tmp_path / "voice.wav", 3.0)
    button = page.locator("#generate-button")
    page.goto("/new/")
    expect(button).to_be_disabled()

    page.set_input_files("#portrait-input", ASTRONAUT)
    expect(page.locator("#portrait-verdict .verdict-pass")).to_have_text(
        "Face found: good to go."
    )
    preview = page.locator("#portrait-preview")
    expect(preview).to_be_visible()
    wait_until(page, "document.querySelector('#portrait-preview').naturalWidth > 0")
    expect(button).to_be_disabled()

    page.set_input_files("#audio-input", wav)
    expect(page.locator("#audio-report .verdict-pass")).to_have_text(
        re.compile(r"Fits: 3\.0 s of \d+ s allowed\.")
    )
    expect(page.locator("#audio-report audio")).to_have_count(1)
    expect(button).to_be_enabled()
    screenshot(page, "new-video-ready")

    page.set_input_files("#portrait-input", NO_FACE)
    verdict = page.locator("#portrait-verdict .verdict-fail")
    expect(verdict).to_contain_text("No face found")
    expect(verdict).to_have_attribute("data-reason", "InvalidFile.NoHuman")
    expect(page.locator("#portrait-verdict .verdict-pass")).to_have_count(0)
    expect(button).to_be_disabled()
    screenshot(page, "new-video-no-face")

    # A good portrait again, with the audio already checked: ready once more.
    page.set_input_files("#portrait-input", ASTRONAUT)
    expect(page.locator("#portrait-verdict .verdict-pass")).to_be_visible()
    expect(button).to_be_enabled()


@dataclass
class FinishedJob:
    """A job made through the browser, watched on its page until it was done."""

    page: Page
    code: str
    title: str
    status_on_arrival: str
    navigations_after_arrival: list[str]
    status_requests: list[tuple[float, str]] = field(default_factory=list)
    done_at: float = 0.0
    status_requests_when_done: int = 0


@pytest.fixture(scope="module")
def finished_job(
    browser: Browser,
    live_studio: LiveStudio,
    signed_in_state: StorageState,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FinishedJob]:
    wav = make_wav(
        tmp_path_factory.mktemp("browser-job") / "speech.wav", JOB_AUDIO_SECONDS
    )
    title = f"Browser take {uuid.uuid4().hex[:6]}"
    context = browser.new_context(
        base_url=live_studio.url, storage_state=signed_in_state
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    status_requests: list[tuple[float, str]] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/status/"):
            status_requests.append((time.monotonic(), request.url))

    page.on("request", on_request)
    try:
        job = _make_and_watch_job(page, wav, title, status_requests)
    except BaseException:
        print(live_studio.logs())  # noqa: T201 (shown with the setup error)
        context.close()
        raise
    yield job
    context.close()


def _make_and_watch_job(
    page: Page, wav: Path, title: str, status_requests: list[tuple[float, str]]
) -> FinishedJob:
    page.goto("/new/")
    page.set_input_files("#portrait-input", ASTRONAUT)
    expect(page.locator("#portrait-verdict .verdict-pass")).to_be_visible()
    page.set_input_files("#audio-input", wav)
    expect(page.locator("#audio-report .verdict-pass")).to_be_visible()
    page.get_by_label("720P").check()
    page.fill("#id_title", title)
    page.locator("#generate-button").click()

    page.wait_for_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match
    page.wait_for_load_state("load")
    # Survives only if the page is never reloaded or navigated away.
    page.evaluate("window.__marker = 1")
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: (
            navigations.append(frame.url) if frame == page.main_frame else None
        ),
    )
    status_on_arrival = page.locator("#job-status [data-status]").get_attribute(
        "data-status"
    )
    screenshot(page, "job-in-progress")

    job = FinishedJob(
        page=page,
        code=match[1],
        title=title,
        status_on_arrival=status_on_arrival or "",
        navigations_after_arrival=navigations,
        status_requests=status_requests,
    )
    page.wait_for_selector(
        '#job-status [data-status="succeeded"]', timeout=JOB_TIMEOUT_MS
    )
    job.done_at = time.monotonic()
    job.status_requests_when_done = len(status_requests)
    expect(page.locator("#job-status video")).to_be_visible()
    screenshot(page, "job-done")
    return job


def test_job_page_turns_done_without_a_reload(finished_job: FinishedJob) -> None:
    page = finished_job.page
    assert finished_job.status_on_arrival in ("queued", "submitted", "running"), (
        "the job was done before its page loaded; nothing was polled"
    )
    assert finished_job.status_requests_when_done >= 1
    assert page.evaluate("window.__marker") == 1
    assert finished_job.navigations_after_arrival == []
    expect(page.locator("#job-status .badge")).to_have_text("Done")
    # The details panel refreshes itself on the job-finished event.
    expect(page.locator("#job-details")).to_contain_text("720P")
    expect(page.get_by_role("button", name="Download MP4")).to_be_visible()


def test_finished_video_plays_in_the_browser(finished_job: FinishedJob) -> None:
    page = finished_job.page
    video = page.locator("#job-status video")
    expect(video).to_be_visible()
    # Muted: Chromium lets a muted video play without a user gesture.
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_until(page, "document.querySelector('#job-status video').currentTime > 0", 30)
    facts = video.evaluate(
        "v => ({ready: v.readyState, width: v.videoWidth, duration: v.duration,"
        " error: v.error && v.error.code})"
    )
    assert facts["error"] is None
    assert facts["ready"] >= 2
    assert facts["width"] > 0
    assert facts["duration"] == pytest.approx(JOB_AUDIO_SECONDS, abs=0.5)
    video.evaluate("v => v.pause()")


def test_status_polling_stops_once_the_job_is_done(finished_job: FinishedJob) -> None:
    page = finished_job.page
    # Comfortably more than two polling intervals (every 2 s) after the end.
    remaining = 5.0 - (time.monotonic() - finished_job.done_at)
    if remaining > 0:
        page.wait_for_timeout(remaining * 1000)
    late = [
        url for at, url in finished_job.status_requests if at > finished_job.done_at
    ]
    assert late == []
    assert len(finished_job.status_requests) == finished_job.status_requests_when_done
    expect(page.locator("#job-status")).not_to_have_attribute(
        "hx-get", re.compile(".*")
    )


def test_gallery_shows_the_new_video(finished_job: FinishedJob, page: Page) -> None:
    page.goto("/gallery/")
    card = page.locator(f"article.card#job-{finished_job.code}")
    expect(card).to_be_visible()
    expect(card.get_by_role("heading")).to_have_text(finished_job.title)
    expect(card.locator('[data-status="succeeded"]')).to_be_visible()
    expect(card.locator("video")).to_have_attribute(
        "src", f"/jobs/{finished_job.code}/video.mp4"
    )
    screenshot(page, "gallery")


def wait_until(page: Page, expression: str, timeout: float = 10) -> None:
    """Poll a JavaScript expression from the test side.

    page.wait_for_function evaluates strings with eval inside the page, which
    the studio's content security policy (rightly) refuses; page.evaluate runs
    through the debugging protocol, which the policy does not govern.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)
