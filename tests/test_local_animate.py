from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from studio.media.animate import animate_fps, render_animate
from studio.media.images import InputError
from studio.media.render import RenderInfo
from studio.media.video import probe_clip
from tests.media_factories import (
    ASTRONAUT,
    make_panning_video,
    make_text_file,
    make_video,
)


def grey_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [
            f.to_ndarray(format="gray").astype(np.float32)
            for f in container.decode(video=0)
        ]


def rgb_frame(path: Path, index: int = 0) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24").astype(np.float32)
    raise AssertionError(f"no frame {index}")


def mean_shift(path: Path, pairs: range) -> tuple[float, float]:
    """Average (dx, dy) from frame i to i + 1, by phase correlation."""
    frames = grey_frames(path)
    window = cv2.createHanningWindow(frames[0].shape[::-1], cv2.CV_32F)
    shifts = [cv2.phaseCorrelate(frames[i], frames[i + 1], window)[0] for i in pairs]
    return float(np.mean([s[0] for s in shifts])), float(
        np.mean([s[1] for s in shifts])
    )


@pytest.mark.parametrize("mode", ["move", "mix"])
@pytest.mark.parametrize("audio", [True, False])
def test_preview_lasts_as_long_as_the_reference_with_its_sound(tmp_path, mode, audio):
    reference = make_video(tmp_path / "ref.mp4", seconds=2.0, fps=10, audio=audio)
    out = tmp_path / "out.mp4"
    calls: list[float] = []

    info = render_animate(
        ASTRONAUT, reference, out, mode=mode, tier="standard", progress=calls.append
    )

    clip = probe_clip(out)
    assert abs(clip.duration - probe_clip(reference).duration) <= 1 / 10
    assert clip.has_audio is audio
    assert (clip.codec, clip.width, clip.height) == ("h264", 320, 240)
    assert info == RenderInfo(duration=2.0, width=320, height=240, frames=20, fps=10.0)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20
        if audio:
            assert container.streams.audio[0].codec_context.name == "aac"
    assert calls == sorted(calls) and calls[-1] == 1.0


@pytest.mark.parametrize(
    ("tier", "size", "fps"),
    [("standard", (738, 414), 15.0), ("professional", (1280, 720), 30.0)],
)
def test_size_and_frame_rate_follow_the_tier(tmp_path, tier, size, fps):
    """The s2v tiers' pixel areas (640x480, 1280x720) at the reference's aspect."""
    reference = make_video(tmp_path / "ref.mp4", seconds=1.0, size=(1280, 720), fps=30)
    out = tmp_path / "out.mp4"

    info = render_animate(ASTRONAUT, reference, out, mode="move", tier=tier)

    clip = probe_clip(out)
    assert (clip.width, clip.height) == size == (info.width, info.height)
    assert clip.fps == pytest.approx(fps) and info.fps == fps
    assert info.frames == round(fps)
    assert abs(clip.duration - 1.0) <= 1 / fps


def test_a_small_reference_is_not_scaled_up(tmp_path):
    reference = make_video(tmp_path / "ref.mp4", seconds=1.0, size=(320, 240), fps=25)

    info = render_animate(
        ASTRONAUT, reference, tmp_path / "out.mp4", mode="mix", tier="professional"
    )

    assert (info.width, info.height, info.fps) == (320, 240, 25.0)


@pytest.mark.parametrize("mode", ["move", "mix"])
def test_the_portrait_moves_the_way_the_reference_does(tmp_path, mode):
    right = make_panning_video(tmp_path / "right.mp4", seconds=2.0, speed=(3, 0))
    up = make_panning_video(tmp_path / "up.mp4", seconds=2.0, speed=(0, -3))
    still = make_panning_video(tmp_path / "still.mp4", seconds=2.0, speed=(0, 0))
    outputs = {}
    for name, reference in {"right": right, "up": up, "still": still}.items():
        outputs[name] = tmp_path / f"{name}-out.mp4"
        render_animate(ASTRONAUT, reference, outputs[name], mode=mode, tier="standard")

    dx, dy = mean_shift(outputs["right"], range(2, 12))
    assert dx > 1.5 and abs(dy) < 0.5
    dx, dy = mean_shift(outputs["up"], range(2, 12))
    assert dy < -1.5 and abs(dx) < 0.5
    dx, dy = mean_shift(outputs["still"], range(2, 12))
    assert abs(dx) < 0.3 and abs(dy) < 0.3


def test_mix_pastes_the_face_into_the_reference_and_carries_it_along(tmp_path):
    reference = make_panning_video(tmp_path / "ref.mp4", seconds=2.0, speed=(3, 0))
    out = tmp_path / "out.mp4"
    render_animate(ASTRONAUT, reference, out, mode="mix", tier="standard")

    def pasted_centre(index: int) -> float:
        changed = np.abs(rgb_frame(out, index) - rgb_frame(reference, index)).sum(2)
        changed[-40:, -120:] = 0  # the label
        _, xs = np.nonzero(changed > 60)
        assert xs.size > 2000  # a face-sized region, not codec noise
        return float(xs.mean())

    # The reference's content slides 3 px a frame; the pasted face follows it.
    assert pasted_centre(15) - pasted_centre(0) > 20


@pytest.mark.parametrize("mode", ["move", "mix"])
def test_the_preview_label_is_drawn_in_a_corner(tmp_path, monkeypatch, mode):
    reference = make_video(tmp_path / "ref.mp4", seconds=1.0, size=(640, 360))
    labelled_out, plain_out = tmp_path / "labelled.mp4", tmp_path / "plain.mp4"
    render_animate(ASTRONAUT, reference, labelled_out, mode=mode, tier="standard")
    monkeypatch.setattr("studio.media.animate._Label.stamp", lambda self, frame: frame)
    render_animate(ASTRONAUT, reference, plain_out, mode=mode, tier="standard")
    labelled, plain = rgb_frame(labelled_out), rgb_frame(plain_out)

    changed = np.abs(labelled - plain).max(axis=2) > 40
    assert changed[-40:, -120:].mean() > 0.3  # bottom right: the label
    assert changed[:-40, :].mean() < 0.001  # elsewhere: codec noise at most
    assert labelled[-40:, -120:].max() > 220  # white letters


def test_a_raising_progress_callback_cancels_and_leaves_no_file(tmp_path):
    reference = make_video(tmp_path / "ref.mp4", seconds=3.0, audio=True)
    out = tmp_path / "out.mp4"

    def progress(fraction: float) -> None:
        if fraction > 0.2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        render_animate(
            ASTRONAUT, reference, out, mode="move", tier="standard", progress=progress
        )

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.mp4"]


def test_a_reference_that_is_no_video_is_refused(tmp_path):
    junk = make_text_file(tmp_path / "ref.mp4")

    with pytest.raises(InputError):
        render_animate(
            ASTRONAUT, junk, tmp_path / "out.mp4", mode="mix", tier="standard"
        )

    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("reference_fps", "tier", "expected"),
    [
        (29.97, "professional", Fraction(30000, 1001)),
        (23.976, "standard", Fraction(15)),
        (23.976, "professional", Fraction(24000, 1001)),
        (60.0, "professional", Fraction(30)),
        (12.5, "standard", Fraction(25, 2)),
    ],
)
def test_frame_rate_keeps_the_references_exact_rate_under_the_cap(
    reference_fps, tier, expected
):
    assert animate_fps(reference_fps, tier) == expected


def test_a_phone_video_stored_sideways_comes_out_upright(tmp_path):
    reference = make_video(
        tmp_path / "ref.mp4", seconds=1.0, size=(320, 240), rotation=90
    )

    info = render_animate(
        ASTRONAUT, reference, tmp_path / "out.mp4", mode="mix", tier="standard"
    )

    assert (info.width, info.height) == (240, 320)
    clip = probe_clip(tmp_path / "out.mp4")
    assert (clip.width, clip.height) == (240, 320)


def test_an_unknown_mode_is_a_programming_error(tmp_path):
    reference = make_video(tmp_path / "ref.mp4", seconds=1.0)

    with pytest.raises(ValueError, match="replace"):
        render_animate(
            ASTRONAUT, reference, tmp_path / "out.mp4", mode="replace", tier="standard"
        )
