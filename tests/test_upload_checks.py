"""The inline checks on the upload page: the portrait verdict and the audio report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from studio import services
from studio.models import AudioClip, FaceCheck, Portrait
from studio.providers import get_provider
from studio.providers.local import LocalProvider
from tests import media_factories
from tests.conftest import ASTRONAUT, ROCKET, upload

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def check_portrait(client: Client, path: Path, name: str | None = None, **extra: str):
    return client.post(
        reverse("studio:portrait-check"),
        {"portrait_file": upload(path, name), **extra},
        headers=HTMX,
    )


def check_audio(client: Client, path: Path, name: str | None = None, **extra: str):
    return client.post(
        reverse("studio:audio-check"),
        {"audio_file": upload(path, name), **extra},
        headers=HTMX,
    )


def hidden_value(html: str, name: str) -> str | None:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    return match[1] if match else None


def test_a_portrait_with_one_face_passes_and_is_stored(alice_client):
    response = check_portrait(alice_client, ASTRONAUT)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Face found" in html
    portrait = Portrait.objects.get()
    assert hidden_value(html, "portrait") == str(portrait.code)
    assert (portrait.width, portrait.height, portrait.format) == (512, 512, "PNG")
    assert portrait.file.name.startswith(f"teams/{portrait.team.code}/portraits/")
    assert "astronaut" not in portrait.file.name  # random storage names


def test_a_photo_without_a_face_fails_with_the_reason_and_is_not_stored(alice_client):
    html = check_portrait(alice_client, ROCKET).content.decode()

    assert "No face found" in html
    assert 'data-reason="InvalidFile.NoHuman"' in html
    assert hidden_value(html, "portrait") is None
    assert not Portrait.objects.exists()


def test_a_small_image_fails_on_size_without_running_the_face_check(
    alice_client, tmp_path, monkeypatch
):
    small = media_factories.make_portrait(tmp_path / "small.jpg", size=(300, 300))
    monkeypatch.setattr(
        LocalProvider, "check_portrait", lambda *a: pytest.fail("paid check ran")
    )

    html = check_portrait(alice_client, small).content.decode()

    assert "300×300" in html and "400" in html and "7000" in html
    assert FaceCheck.objects.get().reason == "InvalidFile.Resolution.TooSmall"


@pytest.mark.parametrize(
    ("maker", "name", "expected"),
    [
        (lambda d: media_factories.make_text_file(d / "x.jpg"), "notes.jpg", "not"),
        (lambda d: media_factories.make_empty_file(d / "x.jpg"), "empty.jpg", "empty"),
        (
            lambda d: media_factories.make_truncated(
                d / "cut.jpg", media_factories.make_portrait(d / "full.jpg")
            ),
            "cut.jpg",
            "",
        ),
        (lambda d: media_factories.make_bomb_png(d / "bomb.png"), "bomb.png", ""),
        (lambda d: media_factories.make_image(d / "a.gif", fmt="GIF"), "a.gif", "JPEG"),
    ],
    ids=["text-named-jpg", "zero-bytes", "truncated", "decompression-bomb", "gif"],
)
def test_bad_images_get_a_clear_message_and_nothing_is_saved(
    alice_client, tmp_path, maker, name, expected
):
    response = check_portrait(alice_client, maker(tmp_path), name)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="verdict-fail"' in html
    assert expected.lower() in html.lower()
    assert not Portrait.objects.exists()


def test_the_same_image_is_never_checked_twice(alice_client, monkeypatch):
    calls = []
    real = LocalProvider.check_portrait

    def counting(self, path):
        calls.append(path)
        return real(self, path)

    monkeypatch.setattr(LocalProvider, "check_portrait", counting)

    check_portrait(alice_client, ASTRONAUT)
    check_portrait(alice_client, ASTRONAUT, name="renamed.png")

    assert len(calls) == 1
    assert FaceCheck.objects.count() == 1
    assert Portrait.objects.count() == 1  # the same bytes are stored once per team


def test_a_fitting_wav_reports_its_duration_and_is_stored(alice_client, wav):
    html = check_audio(alice_client, wav).content.decode()

    clip = AudioClip.objects.get()
    assert "Fits: 2.0 s of 120 s allowed" in html
    assert hidden_value(html, "audio") == str(clip.code)
    assert (clip.format, clip.original_format) == ("wav", "wav")


@pytest.mark.parametrize(
    ("maker", "fmt"),
    [
        (media_factories.make_m4a, "m4a"),
        (media_factories.make_ogg_opus, "ogg"),
        (media_factories.make_flac, "flac"),
    ],
)
def test_other_formats_are_converted_to_wav(alice_client, tmp_path, maker, fmt):
    path = maker(tmp_path / f"voice.{fmt}", 2.0)

    html = check_audio(alice_client, path).content.decode()

    clip = AudioClip.objects.get()
    assert "converted to WAV" in html
    assert (clip.original_format, clip.format) == (fmt, "wav")
    assert clip.file.name.endswith(".wav")
    assert clip.duration == pytest.approx(2.0, abs=0.1)


def test_a_clip_over_the_limit_says_by_how_much_and_is_not_stored(
    alice_client, tmp_path, settings
):
    settings.S2V_LOCAL_MAX_AUDIO_SECONDS = 3
    path = media_factories.make_mp3(tmp_path / "long.mp3", 5.0)

    html = check_audio(alice_client, path).content.decode()

    assert re.search(r"5\.\d s long, 2\.\d s over the 3 s limit", html)
    assert "Trim it" in html
    assert not AudioClip.objects.exists()


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.2, "0.2"), (0.5, "0.5"), (0.96, "0.96")]
)
def test_a_clip_under_a_second_says_how_long_it_must_be_and_is_not_stored(
    alice_client, tmp_path, seconds, shown
):
    path = media_factories.make_wav(tmp_path / "blip.wav", seconds)

    html = check_audio(alice_client, path).content.decode()

    assert (
        f"The clip is only {shown} s long; it must be at least 1 s. "
        "Use a longer recording." in html
    )
    assert not AudioClip.objects.exists()


def test_a_clip_of_exactly_a_second_fits(alice_client, tmp_path):
    path = media_factories.make_wav(tmp_path / "one.wav", 1.0)

    html = check_audio(alice_client, path).content.decode()

    assert "Fits: 1.0 s" in html
    assert AudioClip.objects.exists()


def test_a_wav_with_a_lying_header_is_measured_and_stored_with_an_honest_one(
    alice_client, tmp_path
):
    path = media_factories.make_lying_wav(tmp_path / "liar.wav", 2.0, claimed=1000.0)

    html = check_audio(alice_client, path).content.decode()

    clip = AudioClip.objects.get()
    assert "Fits: 2.0 s" in html and "over the" not in html
    assert clip.duration == pytest.approx(2.0, abs=0.05)
    assert clip.size < path.stat().st_size + 100
    with clip.file.open("rb") as fh:
        assert b"fact" not in fh.read(200)  # rewritten, not the lying original


@pytest.mark.parametrize(
    "maker",
    [
        lambda d: media_factories.make_text_file(d / "x.mp3", "not audio\n"),
        lambda d: media_factories.make_empty_file(d / "x.mp3"),
        lambda d: media_factories.make_portrait(d / "x.wav", fmt="PNG"),
    ],
    ids=["text-named-mp3", "zero-bytes", "png-named-wav"],
)
def test_files_that_are_not_audio_get_a_clear_message(alice_client, tmp_path, maker):
    response = check_audio(alice_client, maker(tmp_path))

    assert response.status_code == 200
    assert 'class="verdict-fail"' in response.content.decode()
    assert not AudioClip.objects.exists()


def test_a_check_without_a_file_asks_for_one(alice_client):
    response = alice_client.post(reverse("studio:portrait-check"), {}, headers=HTMX)

    assert response.status_code == 200
    assert "Choose a file first" in response.content.decode()


def test_generate_button_is_enabled_only_when_both_inputs_pass(alice_client, wav):
    audio_html = check_audio(alice_client, wav).content.decode()
    audio_code = hidden_value(audio_html, "audio")
    assert re.search(
        r'id="generate-button"[^>]*disabled', audio_html
    )  # no portrait yet

    html = check_portrait(alice_client, ASTRONAUT, audio=audio_code).content.decode()
    assert 'hx-swap-oob="true"' in html
    assert not re.search(r'id="generate-button"[^>]*disabled', html)

    html = check_portrait(alice_client, ROCKET, audio=audio_code).content.decode()
    assert re.search(r'id="generate-button"[^>]*disabled', html)


def test_an_upload_over_the_request_cap_is_answered_before_it_is_read(
    alice_client, settings
):
    settings.S2V_MAX_UPLOAD_MB = 1
    response = alice_client.post(
        reverse("studio:portrait-check"),
        {"portrait_file": upload_bytes("huge.jpg", 2 * 1024 * 1024)},
        headers=HTMX,
    )

    assert response.status_code == 200
    assert response["HX-Retarget"] == "#alerts"
    assert "limit is 1 MB" in response.content.decode()
    assert not Portrait.objects.exists()


def test_an_oversized_plain_post_gets_a_413_page(alice_client, settings):
    settings.S2V_MAX_UPLOAD_MB = 1
    response = alice_client.post(
        reverse("studio:job-create"),
        {"portrait_file": upload_bytes("huge.jpg", 2 * 1024 * 1024)},
    )

    assert response.status_code == 413
    assert "limit is 1 MB" in response.content.decode()


def test_a_post_without_csrf_token_gets_a_friendly_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(reverse("studio:portrait-check"), {})

    assert response.status_code == 403
    assert "Reload the page" in response.content.decode()


def test_services_reject_non_images_with_a_message(alice, team, tmp_path):
    path = media_factories.make_text_file(tmp_path / "x.png")

    with pytest.raises(services.Rejected) as excinfo:
        services.portrait_submit(team=team, user=alice, upload=upload(path))

    assert excinfo.value.message


def upload_bytes(name: str, size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"\0" * size)


# provider-api.md §3.1: audio "< 20 s" and "< 15 MB" (read as 15,000,000 bytes).
@pytest.mark.parametrize(
    "seconds,size,fits",
    [
        (19.99, 1000, True),
        (20.0, 1000, False),
        (5.0, 14_999_999, True),
        (5.0, 15_000_000, False),
    ],
)
def test_dashscope_audio_limits_are_exclusive_at_the_documented_boundary(
    settings, seconds, size, fits
):
    settings.DASHSCOPE_API_KEY = "sk-test"
    provider = get_provider("dashscope")

    problems = services.audio_problems(duration=seconds, size=size, provider=provider)

    assert (not problems) == fits, problems
    for problem in problems:
        assert "or less" not in problem
        assert "shorter than 20 s" in problem or "smaller than 15 MB" in problem


def test_a_clip_of_exactly_20_s_is_refused_before_the_provider_sees_it(
    alice, team, tmp_path, settings
):
    settings.DASHSCOPE_API_KEY = "sk-test"
    settings.S2V_PROVIDER = "dashscope"
    path = media_factories.make_wav(tmp_path / "twenty.wav", 20.0)

    outcome = services.audio_submit(team=team, user=alice, upload=upload(path))

    assert outcome.clip is None
    assert outcome.problems == [
        "The clip is 20.000 s long. It must be shorter than 20 s. Trim it."
    ]
    assert not AudioClip.objects.exists()


def test_a_file_of_exactly_15_000_000_bytes_is_refused_and_says_so(
    alice, team, tmp_path, settings
):
    settings.DASHSCOPE_API_KEY = "sk-test"
    settings.S2V_PROVIDER = "dashscope"
    path = media_factories.pad_wav(
        media_factories.make_wav(tmp_path / "big.wav", 1.0), 15_000_000
    )

    outcome = services.audio_submit(team=team, user=alice, upload=upload(path))

    assert outcome.clip is None
    assert outcome.problems == [
        "The file is 15,000,000 bytes; it must be smaller than 15 MB. Export it at "
        "a lower bit rate or shorten it."
    ]
