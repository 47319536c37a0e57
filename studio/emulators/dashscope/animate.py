"""wan2.2-animate-move / -mix in the emulator (provider-api.md §7).

The inputs are judged as §7.1 states (a character image, a reference video);
the result is the emulators' shared stand-in (`studio.emulators.animate`) at
the mode's frame rate (§9.8: 15 or 25 fps), at most about 720P's area, and
exactly as long as the reference video, which is what billing reads
(`usage.video_duration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from studio.emulators import animate as stand_in
from studio.media.images import InputError, read_image_info
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

    Raises InputError (InvalidFile.Openerror) when the reference stops decoding
    part way.
    """
    try:
        return stand_in.render(
            image=image,
            video=video,
            mix=model == MIX,
            fps=FPS[mode],
            duration=duration,
            out=out,
            size_for=output_size,
        )
    except InputError as exc:
        raise InputError(exc.message, code="InvalidFile.Openerror") from exc
