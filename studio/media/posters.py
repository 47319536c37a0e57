"""Poster images for videos that arrive without one (remote results)."""

from __future__ import annotations

from pathlib import Path

import av

from .images import InputError


def make_poster(video: Path, poster: Path, *, at_seconds: float = 0.5) -> None:
    """Save a JPEG of the frame at `at_seconds` (or the first frame of a shorter video)."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.time is not None and frame.time >= at_seconds:
                    break
            if chosen is None:
                raise InputError("The video has no frames.", code="InvalidVideo")
            image = chosen.to_image()
            if chosen.rotation:  # shown turned (phone videos): so is the poster
                image = image.rotate(chosen.rotation, expand=True)
            image.save(poster, format="JPEG", quality=88)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InputError(
            "The video could not be decoded.", code="InvalidVideo"
        ) from exc
