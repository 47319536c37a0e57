from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from studio.media.images import InputError
from studio.media.render import RenderInfo, output_size, render_video
from studio.providers.base import RESOLUTION_AREAS
from tests.media_factories import (
    ASTRONAUT,
    make_deep_grey,
    make_mp3,
    make_portrait,
    make_text_file,
    make_wav,
)

SECONDS = 3.0
LOUD = (1.0, 2.0)  # speech in the middle, silence around it


@dataclass
class Rendered:
    info: RenderInfo
    out: Path
    poster: Path
    progress: list[float]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """One 3 s render of the astronaut, shared by the checks below."""
    workdir = tmp_path_factory.mktemp("render")
    audio = make_wav(workdir / "speech.wav", SECONDS, loud_segments=[LOUD])
    calls: list[float] = []
    info = render_video(
        portrait=ASTRONAUT,
        audio=audio,
        resolution="480P",
        face_box=None,
        out=workdir / "video.mp4",
        poster=workdir / "poster.jpg",
        progress=calls.append,
    )
    return Rendered(info, workdir / "video.mp4", workdir / "poster.jpg", calls)


def top_level_atoms(data: bytes) -> list[str]:
    atoms, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        atoms.append(kind.decode("latin-1"))
        offset += size
    return atoms


def frame_differences(path: Path) -> np.ndarray:
    """Mean absolute grey-level change from each frame to the next."""
    previous, diffs = None, []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            grey = frame.to_ndarray(format="gray").astype(np.float32)
            if previous is not None:
                diffs.append(float(np.abs(grey - previous).mean()))
            previous = grey
    return np.array(diffs)


def test_output_is_h264_yuv420p_with_aac_audio(rendered: Rendered):
    with av.open(str(rendered.out)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert audio.codec_context.name == "aac"
        size = (video.codec_context.width, video.codec_context.height)
        duration = container.duration / av.time_base

    assert (
        size
        == output_size(512, 512, "480P")
        == (rendered.info.width, rendered.info.height)
    )
    assert size[0] % 2 == 0 and size[1] % 2 == 0
    assert duration == pytest.approx(SECONDS, abs=0.1)


def test_render_info_matches_the_file(rendered: Rendered):
    info = rendered.info
    assert info.fps == 25
    assert info.frames == round(SECONDS * 25)
    assert info.duration == pytest.approx(SECONDS, abs=1 / 25)
    with av.open(str(rendered.out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == info.frames


def test_moov_atom_comes_before_mdat_for_fast_start(rendered: Rendered):
    atoms = top_level_atoms(rendered.out.read_bytes())

    assert atoms.index("moov") < atoms.index("mdat")


def test_loud_parts_move_much_more_than_silent_parts(rendered: Rendered):
    diffs = frame_differences(rendered.out)
    fps = rendered.info.fps
    # diffs[i] is the change into frame i + 1; stay clear of segment edges.
    loud = diffs[int((LOUD[0] + 0.2) * fps) : int((LOUD[1] - 0.1) * fps)]
    quiet = np.concatenate(
        [diffs[2 : int((LOUD[0] - 0.1) * fps)], diffs[int((LOUD[1] + 0.5) * fps) :]]
    )

    assert loud.mean() > 3 * quiet.mean()
    assert quiet.mean() > 0  # the head still drifts a little in silence


def test_progress_is_reported_and_reaches_one(rendered: Rendered):
    calls = rendered.progress

    assert len(calls) >= rendered.info.frames // 10
    assert all(0.0 <= p <= 1.0 for p in calls)
    assert calls == sorted(calls)
    assert calls[-1] == pytest.approx(1.0)


def test_poster_is_a_jpeg_of_the_output_size(rendered: Rendered):
    with Image.open(rendered.poster) as poster:
        assert poster.format == "JPEG"
        assert poster.size == (rendered.info.width, rendered.info.height)


def test_mp3_input_and_a_tall_portrait_with_a_given_face_box(tmp_path: Path):
    portrait = make_portrait(tmp_path / "tall.jpg", crop=(90, 0, 390, 512))
    audio = make_mp3(tmp_path / "speech.mp3", 2.0)

    info = render_video(
        portrait=portrait,
        audio=audio,
        resolution="480P",
        face_box=(87, 67, 93, 93),
        out=tmp_path / "tall.mp4",
        poster=tmp_path / "tall.jpg",
    )

    assert (info.width, info.height) == output_size(300, 512, "480P")
    assert info.height > info.width
    with av.open(str(tmp_path / "tall.mp4")) as container:
        assert container.duration / av.time_base == pytest.approx(2.0, abs=0.1)


def test_portrait_without_a_face_still_renders(tmp_path: Path):
    audio = make_wav(tmp_path / "speech.wav", 1.0)

    info = render_video(
        portrait=Path(__file__).parent / "fixtures" / "rocket.jpg",
        audio=audio,
        resolution="480P",
        face_box=None,
        out=tmp_path / "rocket.mp4",
        poster=tmp_path / "rocket.jpg",
    )

    assert info.frames == 25


def test_a_16_bit_greyscale_portrait_renders_grey_not_white(tmp_path: Path):
    portrait = make_deep_grey(tmp_path / "grey16.png")
    audio = make_wav(tmp_path / "speech.wav", 1.0)

    render_video(
        portrait=portrait,
        audio=audio,
        resolution="480P",
        face_box=None,
        out=tmp_path / "grey.mp4",
        poster=tmp_path / "grey.jpg",
    )

    poster = np.asarray(Image.open(tmp_path / "grey.jpg").convert("L"))
    assert 60 < poster.mean() < 200  # a white frame would be 255
    assert poster.std() > 20


@pytest.mark.parametrize("bad", ["portrait", "audio"])
def test_unreadable_input_raises_input_error_and_leaves_no_video(
    tmp_path: Path, bad: str
):
    portrait = make_text_file(tmp_path / "face.jpg") if bad == "portrait" else ASTRONAUT
    audio = (
        make_text_file(tmp_path / "voice.mp3")
        if bad == "audio"
        else make_wav(tmp_path / "voice.wav", 1.0)
    )
    out = tmp_path / "video.mp4"

    with pytest.raises(InputError):
        render_video(
            portrait=portrait,
            audio=audio,
            resolution="480P",
            face_box=None,
            out=out,
            poster=tmp_path / "poster.jpg",
        )

    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ((640, 480), "480P", (640, 480)),
        ((1280, 720), "720P", (1280, 720)),
        ((1920, 1080), "720P", (1280, 720)),
        ((512, 512), "480P", (554, 554)),
        ((512, 512), "720P", (960, 960)),
        ((800, 1000), "480P", (496, 620)),
    ],
)
def test_output_size_known_cases(size, resolution, expected):
    assert output_size(*size, resolution) == expected


@pytest.mark.parametrize(
    "size",
    [(1001, 667), (667, 1001), (1080, 1920), (401, 6999), (7000, 400), (333, 333)],
)
@pytest.mark.parametrize("resolution", ["480P", "720P"])
def test_output_size_keeps_aspect_and_area_with_even_sides(size, resolution):
    width, height = output_size(*size, resolution)

    assert width % 2 == 0 and height % 2 == 0
    assert width * height == pytest.approx(RESOLUTION_AREAS[resolution], rel=0.03)
    assert width / height == pytest.approx(size[0] / size[1], rel=0.03)


def test_output_size_rejects_unknown_resolution():
    with pytest.raises(ValueError):
        output_size(640, 480, "1080P")
