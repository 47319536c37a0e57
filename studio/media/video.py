"""Checking a finished video before it goes into the gallery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from .images import InputError


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration: float
    width: int
    height: int
    video_codec: str
    audio_codec: str


def probe_video(path: Path) -> VideoInfo:
    """Container and stream facts of an MP4. Raises InputError when it is no video."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError("The result has no video stream.", code="InvalidVideo")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            if container.duration:
                duration = container.duration / av.time_base
            elif video.duration and video.time_base:
                duration = float(video.duration * video.time_base)
            else:
                duration = 0.0
            return VideoInfo(
                duration=round(duration, 3),
                width=video.codec_context.width,
                height=video.codec_context.height,
                video_codec=video.codec_context.name,
                audio_codec=audio.codec_context.name if audio else "",
            )
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(
            "The result is not a readable video.", code="InvalidVideo"
        ) from exc
