"""wan2.2-animate-move / -mix in the emulator (provider-api.md §7).

The inputs are judged as §7.1 states (a character image, a reference video);
the result is a stand-in, not an animation: each frame of the reference
video, resampled to the mode's frame rate (§9.8: 15 or 25 fps), with the
character image composited over it. For move the character fills the frame
and the reference plays as an inset in a corner (the moves it follows); for
mix the reference fills the frame and the character is set into it. Cheap to
make, decodable, and exactly as long as the reference video, which is what
billing reads (`usage.video_duration`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from studio.media.images import InputError, load_rgb, read_image_info
from studio.media.render import RenderInfo
from studio.providers.base import ProviderLimits

from . import errors, media

MOVE = "wan2.2-animate-move"
MIX = "wan2.2-animate-mix"
MODELS = (MOVE, MIX)
# §7.1 parameters.mode -> §7.2 usage.video_ratio, and the frame rate (§9.8).
SERVICE_MODES = {"wan-std": "standard", "wan-pro": "pro"}
FPS = {"wan-std": 15, "wan-pro": 25}

# §7.1. "MB" is read as 10^6 bytes, the smaller reading, as for s2v's audio.
IMAGE_LIMITS = ProviderLimits(
    image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
    image_min_side=200,
    image_max_side=4096,
    audio_formats=frozenset(),
    audio_max_seconds=0.0,
    audio_max_bytes=0,
    resolutions=(),
    concurrency=1,
)
IMAGE_MAX_BYTES = 5_000_000
VIDEO_MAX_BYTES = 200_000_000
VIDEO_SECONDS = (2.0, 30.0)
VIDEO_SIDES = (200, 2048)
MAX_ASPECT = 3.0  # 1:3 to 3:1, for the image and the video
# FFmpeg's demuxer names of MP4/MOV ("mov,mp4,m4a,3gp,3g2,mj2") and AVI.
_CONTAINERS = ("mp4", "mov", "avi")
# Results are kept to about 720P's area (§9.8) to stay cheap.
_MAX_AREA = 1280 * 720


@dataclass(frozen=True, slots=True)
class VideoCheck:
    ok: bool
    code: str = ""
    message: str = ""
    duration: float = 0.0
    width: int = 0
    height: int = 0


def _refused(code: str, message: str | None = None) -> VideoCheck:
    return VideoCheck(
        ok=False, code=code, message=message or errors.known_message(code)
    )


def _aspect_ok(width: int, height: int) -> bool:
    return max(width, height) <= MAX_ASPECT * min(width, height)


def inspect_video(path: Path) -> VideoCheck:
    """MP4/AVI/MOV, 2-30 s, sides 200-2048 px, 1:3-3:1, at most 200 MB (§7.1)."""
    size = path.stat().st_size
    if size > VIDEO_MAX_BYTES:
        return _refused("InvalidFile.Size", errors.file_size(VIDEO_MAX_BYTES))
    try:
        with av.open(str(path)) as container:
            names = container.format.name.split(",")
            if not container.streams.video:
                return _refused("InvalidFile.Openerror")
            stream = container.streams.video[0]
            width = stream.codec_context.width
            height = stream.codec_context.height
            duration = _duration(container, stream)
    except (av.FFmpegError, OSError, ValueError):
        return _refused("InvalidFile.Openerror")
    if not any(name in _CONTAINERS for name in names):
        return _refused("InvalidFile.Format")
    low, high = VIDEO_SECONDS
    if not low <= duration <= high:
        return _refused("InvalidFile.Duration", errors.file_duration(low, high))
    if min(width, height) < VIDEO_SIDES[0] or max(width, height) > VIDEO_SIDES[1]:
        return _refused("InvalidFile.Resolution", errors.video_resolution(*VIDEO_SIDES))
    if not _aspect_ok(width, height):
        return _refused("InvalidFile.AspectRatio")
    return VideoCheck(ok=True, duration=duration, width=width, height=height)


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if container.duration:
        return float(container.duration / av.time_base)
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def inspect_image(path: Path, *, check_image: bool) -> media.ImageCheck:
    """§7.1's image bounds; the face check only with `parameters.check_image`."""
    if path.stat().st_size > IMAGE_MAX_BYTES:
        code = "InvalidFile.Size"
        return media.ImageCheck(
            ok=False,
            humanoid=False,
            code=code,
            message=errors.file_size(IMAGE_MAX_BYTES),
        )
    check = media.inspect_image(path, limits=IMAGE_LIMITS, faces=check_image)
    if check.ok:
        info = read_image_info(path)  # it just read this header: it cannot fail
        if not _aspect_ok(info.width, info.height):
            return media.ImageCheck(
                ok=False,
                humanoid=check.humanoid,
                code="InvalidFile.AspectRatio",
                message=errors.known_message("InvalidFile.AspectRatio"),
            )
    return check


# The stand-in result


def output_size(width: int, height: int) -> tuple[int, int]:
    """The reference's size, shrunk to about 720P's area when larger; sides even."""
    scale = min(1.0, (_MAX_AREA / (width * height)) ** 0.5)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def render(
    *, image: Path, video: Path, model: str, mode: str, duration: float, out: Path
) -> RenderInfo:
    """Write the result MP4 (H.264, no audio) at `out`; as long as `duration`.

    Raises InputError when the reference stops decoding part way.
    """
    try:
        return _render(
            image=image, video=video, model=model, mode=mode, duration=duration, out=out
        )
    except av.FFmpegError as exc:
        raise InputError(
            "The reference video does not decode.", code="InvalidFile.Openerror"
        ) from exc


def _render(
    *, image: Path, video: Path, model: str, mode: str, duration: float, out: Path
) -> RenderInfo:
    fps = FPS[mode]
    with av.open(str(video)) as source:
        stream = source.streams.video[0]
        width, height = output_size(
            stream.codec_context.width, stream.codec_context.height
        )
        count = max(1, round(duration * fps))
        character = load_rgb(image, max_side=max(width, height))
        frames = _composited(
            _resampled(source, stream, count=count, fps=fps, size=(width, height)),
            character,
            mix=model == MIX,
        )
        _encode(out, frames, width=width, height=height, fps=fps)
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
) -> Iterator[NDArray[np.uint8]]:
    """`count` RGB frames at `fps`: the reference frame showing at each instant."""
    decoded = source.decode(stream)
    current: NDArray[np.uint8] | None = None
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


def _rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def _fit(picture: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    """`picture` scaled to fit inside width×height, aspect kept."""
    h, w = picture.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(picture, size), dtype=np.uint8)


def _paste(
    canvas: NDArray[np.uint8], picture: NDArray[np.uint8], x: int, y: int
) -> None:
    h, w = picture.shape[:2]
    canvas[y : y + h, x : x + w] = picture


def _composited(
    frames: Iterator[NDArray[np.uint8]], character: NDArray[np.uint8], *, mix: bool
) -> Iterator[NDArray[np.uint8]]:
    backdrop: NDArray[np.uint8] | None = None
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


def _encode(
    path: Path,
    frames: Iterator[NDArray[np.uint8]],
    *,
    width: int,
    height: int,
    fps: int,
) -> None:
    with av.open(
        str(path), "w", format="mp4", container_options={"movflags": "+faststart"}
    ) as container:
        video = container.add_stream(
            "libx264", rate=fps, options={"preset": "veryfast", "crf": "26"}
        )
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame.reformat(format="yuv420p")))
        container.mux(video.encode(None))
