"""The stand-in result both emulators serve for an animate task.

Not an animation: each frame of the reference video, resampled to a fixed
frame rate, with the character image composited over it. For move (WaveSpeed's
`animate`) the character fills the frame and the reference plays as an inset
in a corner (the moves it follows); for mix (`replace`) the reference fills
the frame and the character is set into it. Cheap to make, decodable, and as
long as the reference video to a frame, which is what animate bills.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from studio.media.audio import whole_file
from studio.media.images import InputError, load_rgb
from studio.media.render import RenderInfo, encode_mp4

Frame = NDArray[np.uint8]


def render(
    *,
    image: Path,
    video: Path,
    mix: bool,
    fps: int,
    duration: float,
    out: Path,
    size_for: Callable[[int, int], tuple[int, int]],
) -> RenderInfo:
    """Write the result MP4 (H.264, no audio) at `out`; as long as `duration`.

    `size_for` turns the reference's width and height into the result's (even
    sides). Raises InputError (code "InvalidVideo") when the reference stops
    decoding part way; each emulator words that in its vendor's terms.
    """
    try:
        with av.open(str(video)) as source:
            stream = source.streams.video[0]
            width, height = size_for(
                stream.codec_context.width, stream.codec_context.height
            )
            count = max(1, round(duration * fps))
            character = load_rgb(image, max_side=max(width, height))
            frames = _composited(
                _resampled(source, stream, count=count, fps=fps, size=(width, height)),
                character,
                mix=mix,
            )
            with whole_file(out) as partial:  # no half-written result on failure
                encode_mp4(
                    partial,
                    audio=None,
                    frames=frames,
                    count=count,
                    width=width,
                    height=height,
                    fps=fps,
                    progress=None,
                )
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(
            "The reference video does not decode.", code="InvalidVideo"
        ) from exc
    return RenderInfo(
        duration=count / fps, width=width, height=height, frames=count, fps=fps
    )


def _resampled(
    source: av.container.InputContainer,
    stream: av.VideoStream,
    *,
    count: int,
    fps: int,
    size: tuple[int, int],
) -> Iterator[Frame]:
    """`count` RGB frames at `fps`: the reference frame showing at each instant."""
    decoded = source.decode(stream)
    current: Frame | None = None
    upcoming = next(decoded, None)
    for index in range(count):
        at = index / fps
        while upcoming is not None and (upcoming.time or 0.0) <= at + 1e-6:
            current = _rgb(upcoming)
            upcoming = next(decoded, None)
        if current is None and upcoming is not None:
            current = _rgb(upcoming)
        if current is None:
            current = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        yield np.asarray(cv2.resize(current, size), dtype=np.uint8)


def _rgb(frame: av.VideoFrame) -> Frame:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def _fit(picture: Frame, width: int, height: int) -> Frame:
    """`picture` scaled to fit inside width×height, aspect kept."""
    h, w = picture.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(picture, size), dtype=np.uint8)


def _paste(canvas: Frame, picture: Frame, x: int, y: int) -> None:
    h, w = picture.shape[:2]
    canvas[y : y + h, x : x + w] = picture


def _composited(
    frames: Iterator[Frame], character: Frame, *, mix: bool
) -> Iterator[Frame]:
    backdrop: Frame | None = None
    for frame in frames:
        height, width = frame.shape[:2]
        if mix:
            # The character set into the reference video, centred, 60 % high.
            figure = _fit(character, width * 6 // 10, height * 6 // 10)
            out = frame.copy()
            _paste(
                out,
                figure,
                (width - figure.shape[1]) // 2,
                (height - figure.shape[0]) // 2,
            )
        else:
            # The character fills the frame; the reference plays in a corner.
            if backdrop is None:
                backdrop = np.zeros_like(frame)
                figure = _fit(character, width, height)
                _paste(
                    backdrop,
                    figure,
                    (width - figure.shape[1]) // 2,
                    (height - figure.shape[0]) // 2,
                )
            out = backdrop.copy()
            inset = _fit(frame, width // 3, height // 3)
            _paste(out, inset, width - inset.shape[1], height - inset.shape[0])
        yield out
