"""Reference videos as an input: probing, the bad-video corpus, limits, storing, serving."""

from __future__ import annotations

from dataclasses import replace

import av
import pytest
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from studio import catalog, services
from studio.media.images import InputError
from studio.media.serving import input_format
from studio.media.video import (
    PREVIEW_SECONDS,
    PREVIEW_SIDE,
    ClipInfo,
    convert_to_mp4,
    make_preview,
    probe_clip,
)
from studio.models import Membership, VideoClip
from studio.providers.base import ProviderLimits
from studio.providers.dashscope.catalog import animate_video_limits
from tests import media_factories as mf
from tests.conftest import make_member, upload

DASHSCOPE = animate_video_limits()


def fitting(**changes: object) -> ClipInfo:
    """A video that fits DashScope's animate limits, with `changes`."""
    info = ClipInfo(
        format="mp4",
        codec="h264",
        duration=5.0,
        width=720,
        height=1280,
        fps=25.0,
        has_audio=True,
        size=10_000_000,
    )
    return replace(info, **changes)  # type: ignore[arg-type]


def stored_videos(team) -> list[str]:
    # Object storage has no folders to ask about: list the prefix instead.
    try:
        return default_storage.listdir(f"teams/{team.code}/videos")[1]
    except FileNotFoundError:
        return []


# Probing


@pytest.mark.parametrize("fmt", ["mp4", "mov", "avi", "webm"])
def test_each_accepted_container_is_measured_from_its_streams(tmp_path, fmt):
    path = mf.make_video(tmp_path / f"clip.{fmt}", fmt=fmt, seconds=3.0, audio=True)

    info = probe_clip(path)

    assert info.format == fmt
    assert info.duration == pytest.approx(3.0, abs=0.11)
    assert (info.width, info.height, info.fps) == (320, 240, 10.0)
    assert info.has_audio
    assert info.size == path.stat().st_size


def test_a_silent_video_says_it_has_no_sound(tmp_path):
    info = probe_clip(mf.make_video(tmp_path / "silent.mp4"))

    assert not info.has_audio and info.codec == "h264"


def test_an_upright_phone_video_is_measured_and_previewed_upright(tmp_path):
    src = mf.make_video(tmp_path / "phone.mp4", size=(320, 240), rotation=90)

    info = probe_clip(src)
    make_preview(src, tmp_path / "preview.mp4")
    mov = mf.make_video(tmp_path / "phone.mov", fmt="mov", rotation=270)
    converted = convert_to_mp4(mov, tmp_path / "converted.mp4")

    assert (info.width, info.height) == (240, 320)
    preview = probe_clip(tmp_path / "preview.mp4")
    assert (preview.width, preview.height) == (240, 320)
    assert (converted.width, converted.height) == (240, 320)


def test_a_forty_minute_video_is_measured_cheaply(tmp_path):
    info = probe_clip(mf.make_long_video(tmp_path / "long.mp4", minutes=40))

    assert info.duration == pytest.approx(2400.0)


BAD_VIDEOS = {
    "text named .mp4": (
        lambda d: mf.make_text_file(d / "clip.mp4"),
        "not a video that can be opened",
    ),
    "empty file": (lambda d: mf.make_empty_file(d / "clip.mp4"), "empty"),
    "truncated MP4 (index first)": (
        lambda d: mf.make_truncated(
            d / "cut.mp4", mf.make_video(d / "whole.mp4", seconds=6, faststart=True)
        ),
        "cut short",
    ),
    "truncated MP4 (index last)": (
        lambda d: mf.make_truncated(
            d / "cut.mp4", mf.make_video(d / "whole.mp4", seconds=6)
        ),
        "not a video that can be opened",
    ),
    "audio-only MP4": (
        lambda d: mf.make_m4a(d / "voice.mp4"),
        "sound but no picture",
    ),
    "0-second MP4": (
        lambda d: mf.make_video(d / "zero.mp4", seconds=0),
        "0 seconds long",
    ),
    "MKV": (
        lambda d: mf.make_video(d / "clip.mkv", fmt="mkv"),
        "Matroska (MKV) videos are not supported",
    ),
    "a picture named .mov": (
        lambda d: mf.make_image(d / "still.mov", fmt="PNG"),
        "not supported",
    ),
}


@pytest.mark.parametrize("case", BAD_VIDEOS)
def test_bad_videos_are_refused_with_what_to_do(tmp_path, case):
    make, words = BAD_VIDEOS[case]

    with pytest.raises(InputError) as excinfo:
        probe_clip(make(tmp_path))

    assert words in excinfo.value.message
    assert "MP4" in excinfo.value.message or "Upload the whole file" in (
        excinfo.value.message
    )


@pytest.mark.parametrize("case", BAD_VIDEOS)
def test_bad_video_uploads_leave_nothing_behind(tmp_path, alice, team, case):
    make, words = BAD_VIDEOS[case]
    path = make(tmp_path)

    with pytest.raises(services.Rejected) as excinfo:
        services.video_submit(
            team=team, user=alice, upload=upload(path), limits=DASHSCOPE
        )

    assert words in excinfo.value.message
    assert not VideoClip.objects.exists()
    assert stored_videos(team) == []


# Conversion and preview


def test_webm_becomes_an_h264_mp4_of_the_same_length(tmp_path):
    src = mf.make_video(tmp_path / "clip.webm", fmt="webm", seconds=4, audio=True)
    before = probe_clip(src)

    after = convert_to_mp4(src, tmp_path / "clip.mp4")

    assert (after.format, after.codec) == ("mp4", "h264")
    assert abs(after.duration - before.duration) <= 1 / before.fps + 1e-6
    assert (after.width, after.height, after.fps) == (320, 240, 10.0)
    assert after.has_audio
    with av.open(str(tmp_path / "clip.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    assert not list(tmp_path.glob("*.part"))


def test_odd_sides_are_rounded_down_to_even_for_h264(tmp_path):
    src = mf.make_video(tmp_path / "odd.webm", fmt="webm", size=(321, 241))

    after = convert_to_mp4(src, tmp_path / "odd.mp4")

    assert (after.width, after.height) == (320, 240)


def test_a_damaged_webm_leaves_no_partial_mp4(tmp_path):
    whole = mf.make_video(tmp_path / "whole.webm", fmt="webm", seconds=4)
    cut = mf.make_truncated(tmp_path / "cut.webm", whole, keep=0.05)

    with pytest.raises(InputError):
        convert_to_mp4(cut, tmp_path / "out.mp4")

    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob("*.part"))


def test_the_preview_is_the_first_seconds_small_and_silent(tmp_path):
    src = mf.make_video(
        tmp_path / "big.mov", fmt="mov", seconds=8, size=(960, 540), audio=True
    )

    make_preview(src, tmp_path / "preview.mp4")

    preview = probe_clip(tmp_path / "preview.mp4")
    assert preview.duration == pytest.approx(PREVIEW_SECONDS, abs=0.11)
    assert max(preview.width, preview.height) == PREVIEW_SIDE
    assert (preview.width, preview.height) == (480, 270)
    assert not preview.has_audio


def test_a_video_whose_pictures_start_late_is_previewed_from_its_first(tmp_path):
    # Cut from a longer recording: the first picture is at 6 s, not 0.
    src = mf.make_video(tmp_path / "cut.mp4", seconds=8, starts_at=6.0)

    make_preview(src, tmp_path / "preview.mp4")

    preview = probe_clip(tmp_path / "preview.mp4")
    assert preview.duration == pytest.approx(PREVIEW_SECONDS, abs=0.11)


# Limits


def test_a_video_inside_dashscopes_animate_limits_has_no_problems():
    assert services.video_problems(info=fitting(), limits=DASHSCOPE) == []


def test_the_bounds_themselves_fit():
    edges = [
        fitting(duration=2.0),
        fitting(duration=30.0),
        fitting(width=200, height=600),
        fitting(width=2048, height=2048),
        fitting(width=2048, height=683),
        fitting(size=200_000_000),
    ]
    for info in edges:
        assert services.video_problems(info=info, limits=DASHSCOPE) == [], info


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"duration": 41.2},
            "The video is 41.2 s long; DashScope takes 2–30 s: trim 11.2 s.",
        ),
        (
            {"duration": 1.5},
            "The video is 1.5 s long; DashScope takes 2–30 s: "
            "use one at least 0.5 s longer.",
        ),
        (
            {"duration": 2400.0},
            "The video is 2400.0 s (40 min) long; DashScope takes 2–30 s: "
            "trim 2370.0 s.",
        ),
        (
            {"width": 150, "height": 300},
            "The video is 150×300 px; DashScope takes sides of 200–2048 px: its "
            "shorter side is 50 px short. Use a larger video.",
        ),
        (
            {"width": 4096, "height": 2160},
            "The video is 4096×2160 px; DashScope takes sides of 200–2048 px: its "
            "longer side is 2048 px over. Export it at a lower resolution.",
        ),
        (
            {"width": 1200, "height": 300},
            "The video is 1200×300 px, 4.00:1; DashScope takes 1:3 to 3:1: "
            "crop 300 px off its width.",
        ),
        (
            {"width": 300, "height": 1000},
            "The video is 300×1000 px, 3.33:1; DashScope takes 1:3 to 3:1: "
            "crop 100 px off its height.",
        ),
        (
            {"size": 250_000_000},
            "The file is 250.0 MB; DashScope takes up to 200 MB: 50.0 MB over. "
            "Export it at a lower bit rate or trim it.",
        ),
        (
            {"format": "webm"},
            "The video is WEBM; DashScope takes MP4, MOV or AVI. Export it as MP4.",
        ),
    ],
)
def test_each_missed_limit_says_by_how_much(changes, message):
    problems = services.video_problems(
        info=fitting(**changes), limits=DASHSCOPE, provider_label="DashScope"
    )

    assert problems == [message]


def test_every_missed_limit_is_listed():
    info = fitting(duration=31.0, width=100, height=900, size=300_000_000)

    problems = services.video_problems(info=info, limits=DASHSCOPE)

    assert len(problems) == 4  # length, shorter side, aspect, size
    assert problems[0].startswith("The video is 31.0 s long; the provider takes")


def test_offers_without_a_video_input_take_no_video():
    limits = catalog.offer("local", catalog.S2V).limits

    assert limits.video_formats == frozenset()
    assert services.video_problems(info=fitting(), limits=limits) == [
        "The provider takes no video for this model."
    ]


def test_limits_without_video_fields_bind_nothing_else():
    limits = ProviderLimits(
        image_formats=frozenset(),
        image_min_side=0,
        image_max_side=1,
        audio_formats=frozenset(),
        audio_max_seconds=1,
        audio_max_bytes=1,
        resolutions=(),
        concurrency=1,
        video_formats=frozenset({"mp4"}),
    )
    huge = fitting(duration=1e6, width=100_000, height=10, size=10**12)

    assert services.video_problems(info=huge, limits=limits) == []


# Storing


def test_an_upload_is_kept_with_its_poster_and_preview(tmp_path, alice, team):
    path = mf.make_video(tmp_path / "Dance move.mp4", seconds=3, audio=True)

    outcome = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    )

    clip = outcome.clip
    assert clip is not None and outcome.problems == [] and not outcome.will_convert
    assert clip.original_name == "Dance move.mp4"
    assert (clip.format, clip.original_format, clip.codec) == ("mp4", "mp4", "h264")
    assert (clip.width, clip.height, clip.fps, clip.has_audio) == (320, 240, 10, True)
    assert clip.duration == pytest.approx(3.0)
    assert clip.size == path.stat().st_size and not clip.converted
    assert clip.file.name.startswith(f"teams/{team.code}/videos/")
    assert clip.file.name.endswith(".mp4") and "Dance" not in clip.file.name
    assert clip.poster.name.endswith(".jpg") and clip.preview.name.endswith(".mp4")
    with clip.poster.open("rb") as fh:
        assert Image.open(fh).size == (320, 240)
    with clip.file.open("rb") as fh:
        assert fh.read() == path.read_bytes()
    assert input_format(clip.file.name) == "mp4"


def test_an_upright_phone_videos_poster_is_upright(tmp_path, alice, team):
    path = mf.make_video(tmp_path / "phone.mp4", size=(320, 240), rotation=90)

    clip = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    ).clip

    assert clip is not None and (clip.width, clip.height) == (240, 320)
    with clip.poster.open("rb") as fh:
        assert Image.open(fh).size == (240, 320)


def test_a_mov_is_kept_as_mov(tmp_path, alice, team):
    path = mf.make_video(tmp_path / "clip.mp4", fmt="mov")  # the name says mp4

    clip = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    ).clip

    assert clip is not None and clip.format == "mov"
    assert clip.file.name.endswith(".mov")


def test_a_webm_is_stored_as_mp4_under_its_own_name(tmp_path, alice, team):
    path = mf.make_video(tmp_path / "take 2.webm", fmt="webm", seconds=3, audio=True)

    outcome = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    )

    clip = outcome.clip
    assert clip is not None and outcome.will_convert and clip.converted
    assert (clip.original_name, clip.original_format) == ("take 2.webm", "webm")
    assert (clip.format, clip.codec) == ("mp4", "h264")
    assert clip.file.name.endswith(".mp4")
    assert abs(clip.duration - 3.0) <= 0.1 + 1e-6
    assert clip.size == default_storage.size(clip.file.name)


def test_the_same_video_twice_is_kept_once_per_team(tmp_path, alice, team, other_team):
    path = mf.make_video(tmp_path / "clip.mp4")
    first = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    ).clip
    again = services.video_submit(
        team=team, user=alice, upload=upload(path, "renamed.mp4"), limits=DASHSCOPE
    ).clip
    olga = make_member(other_team, "olga", Membership.Role.ADMIN)
    theirs = services.video_submit(
        team=other_team, user=olga, upload=upload(path), limits=DASHSCOPE
    ).clip

    assert first is not None and again == first
    assert theirs is not None and theirs != first
    assert len(stored_videos(team)) == 3  # one video, its poster and preview


def test_a_video_out_of_limits_is_measured_but_not_kept(tmp_path, alice, team):
    path = mf.make_long_video(tmp_path / "long.mp4", minutes=40)

    outcome = services.video_submit(
        team=team,
        user=alice,
        upload=upload(path),
        limits=DASHSCOPE,
        provider_label="DashScope",
    )

    assert outcome.clip is None
    assert outcome.info.duration == pytest.approx(2400.0)
    assert outcome.problems == [
        "The video is 2400.0 s (40 min) long; DashScope takes 2–30 s: trim 2370.0 s."
    ]
    assert not VideoClip.objects.exists() and stored_videos(team) == []


def test_a_webm_too_long_is_refused_before_it_is_converted(
    tmp_path, alice, team, monkeypatch
):
    path = mf.make_video(tmp_path / "clip.webm", fmt="webm", seconds=3)
    short = replace(DASHSCOPE, video_max_seconds=2.0)

    def never(*args):
        raise AssertionError("converted a video that does not fit")

    monkeypatch.setattr("studio.services.inputs.convert_to_mp4", never)
    outcome = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=short
    )

    assert outcome.clip is None and outcome.will_convert
    assert "trim 1.0 s" in outcome.problems[0]


class _Oversized(File):  # type: ignore[type-arg]
    """An upload that says it is 300 MB and fails the test if anything reads it."""

    def __init__(self) -> None:
        super().__init__(None, name="huge.mp4")

    @property
    def size(self) -> int:
        return 300_000_000

    def chunks(self, chunk_size=None):
        raise AssertionError("the oversized upload was read")

    def read(self, *args):
        raise AssertionError("the oversized upload was read")


def test_a_300_mb_upload_is_refused_before_it_is_read(alice, team):
    with pytest.raises(services.Rejected) as excinfo:
        services.video_submit(
            team=team, user=alice, upload=_Oversized(), limits=DASHSCOPE
        )

    assert excinfo.value.message == (
        "The video is 300 MB; videos are limited to 200 MB. "
        "Trim it or export it at a lower bit rate."
    )
    assert not VideoClip.objects.exists()


def test_a_failure_while_storing_leaves_no_files(tmp_path, alice, team, monkeypatch):
    path = mf.make_video(tmp_path / "clip.mp4")

    def broken(self, *args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(VideoClip, "save", broken)
    with pytest.raises(RuntimeError):
        services.video_submit(
            team=team, user=alice, upload=upload(path), limits=DASHSCOPE
        )

    assert stored_videos(team) == []


# Serving


@pytest.fixture
def kept(tmp_path, alice, team):
    path = mf.make_video(tmp_path / "clip.mp4", seconds=3)
    clip = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    ).clip
    assert clip is not None
    return clip


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("video-file", "video/mp4"),
        ("video-poster", "image/jpeg"),
        ("video-preview", "video/mp4"),
    ],
)
def test_the_video_poster_and_preview_are_served_as_their_format(
    alice_client, kept, name, content_type
):
    response = alice_client.get(reverse(f"studio:{name}", args=[kept.code]))

    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, no-cache"


def test_the_video_is_served_by_range(alice_client, kept):
    url = reverse("studio:video-file", args=[kept.code])
    size = kept.size

    part = alice_client.get(url, headers={"Range": "bytes=0-99"})

    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 0-99/{size}"
    with kept.file.open("rb") as fh:
        assert _body(part) == fh.read(100)


def test_a_mov_is_served_as_quicktime(tmp_path, alice, team, alice_client):
    path = mf.make_video(tmp_path / "clip.mov", fmt="mov")
    clip = services.video_submit(
        team=team, user=alice, upload=upload(path), limits=DASHSCOPE
    ).clip
    assert clip is not None

    response = alice_client.get(reverse("studio:video-file", args=[clip.code]))

    assert response["Content-Type"] == "video/quicktime"


@pytest.mark.parametrize("name", ["video-file", "video-poster", "video-preview"])
def test_another_team_gets_404(kept, other_team, name):
    client = Client()
    client.force_login(make_member(other_team, "olga", Membership.Role.ADMIN))

    response = client.get(reverse(f"studio:{name}", args=[kept.code]))

    assert response.status_code == 404


def test_a_signed_out_visitor_is_sent_to_sign_in(kept):
    response = Client().get(reverse("studio:video-file", args=[kept.code]))

    assert response.status_code == 302
