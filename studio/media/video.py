"""Videos: checking a finished result, and probing and converting uploaded ones.

`probe_video` reads a result's facts. `probe_clip` tells whether an upload is
a video the studio takes (MP4, MOV, AVI or WebM that decodes) and measures
it; `convert_to_mp4` and `make_preview` re-encode one frame at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container

from .audio import OPEN_ERROR, stated_duration, whole_file, write_samples
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


# Uploaded reference videos (the animate models' input)

_VIDEO_HINT = "Use an MP4, MOV, AVI or WebM video."
# A stated length this much longer than the packets present means a file cut short.
_TRUNCATED_SLACK = 0.5  # seconds
PREVIEW_SECONDS = 5.0
PREVIEW_SIDE = 480  # longer side of the preview, in pixels


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What an uploaded video is, read from its streams, not its name."""

    format: str  # "mp4", "mov", "avi", "webm"
    codec: str  # FFmpeg's name of the video codec: "h264", "vp9", ...
    duration: float  # seconds
    width: int
    height: int
    fps: float
    has_audio: bool
    size: int  # bytes


def probe_clip(path: Path) -> ClipInfo:
    """Describe an uploaded video; raise InputError when it cannot be used.

    Only MP4, MOV, AVI and WebM are accepted, and only when a frame decodes.
    The length is measured from the packets present (they are read, not
    decoded), so a file cut short is caught even when its header states the
    whole length.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"The video file is empty. {_VIDEO_HINT}", code=OPEN_ERROR)
    with _open_clip(path) as container:
        fmt = _clip_format(path, container)
        stream = _picture_stream(container)
        rotation = _first_picture(container, stream)
        stated = stated_duration(container, stream)
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:  # a phone held upright: sides as the video is shown
            width, height = height, width
        has_audio = bool(container.streams.audio)
        rate = stream.average_rate
    frames, counted = _counted_clip(path)
    if counted <= 0:
        raise InputError(f"The video is 0 seconds long. {_VIDEO_HINT}", code=OPEN_ERROR)
    if stated is not None and stated - counted > _TRUNCATED_SLACK:
        raise InputError(
            f"The video stops after {counted:.1f} s but says it is {stated:.1f} s "
            "long: the file was cut short, perhaps while copying. Upload the whole "
            "file again.",
            code=OPEN_ERROR,
        )
    return ClipInfo(
        format=fmt,
        codec=codec,
        duration=round(counted, 3),
        width=width,
        height=height,
        fps=round(float(rate) if rate else frames / counted, 3),
        has_audio=has_audio,
        size=size,
    )


def convert_to_mp4(src: Path, dst: Path) -> ClipInfo:
    """Re-encode a video as H.264 (and its sound as AAC) in an MP4 at `dst`.

    Frames are decoded, encoded and written one at a time, so memory does not
    grow with the video's length. Sides stay as they are (rounded down to
    even, which H.264's 4:2:0 needs). The file appears at `dst` only once it
    is complete.
    """
    _transcode(src, dst, keep_audio=True)
    return probe_clip(dst)


def make_preview(src: Path, dst: Path) -> None:
    """A small, silent H.264 MP4 of the video's first PREVIEW_SECONDS.

    The upload page loops it inline: a few hundred kB instead of a reference
    video of up to 200 MB at 2048 px.
    """
    _transcode(src, dst, keep_audio=False, seconds=PREVIEW_SECONDS, side=PREVIEW_SIDE)


def _transcode(
    src: Path,
    dst: Path,
    *,
    keep_audio: bool,
    seconds: float | None = None,
    side: int | None = None,
) -> None:
    with _open_clip(src) as source:
        rotation = _first_picture(source, _picture_stream(source))
    with (
        whole_file(dst) as partial,
        _open_clip(src) as source,
        av.open(
            str(partial),
            "w",
            format="mp4",
            container_options={"movflags": "+faststart"},
        ) as out,
    ):
        in_video = _picture_stream(source)
        width, height = _even_sides(
            in_video.codec_context.width, in_video.codec_context.height, side
        )
        rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
        video = out.add_stream(
            "libx264", rate=rate, options={"preset": "veryfast", "crf": "20"}
        )
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        if rotation:  # kept as the source has it: the pictures are not turned
            video.set_display_rotation(rotation)
        time_base = in_video.time_base or Fraction(1, 1000)
        video.codec_context.time_base = time_base
        in_audio = None
        sound: av.AudioStream | None = None
        if keep_audio and source.streams.audio:
            in_audio = source.streams.audio[0]
            layout = "mono" if in_audio.codec_context.channels == 1 else "stereo"
            sound = out.add_stream("aac", rate=48000, layout=layout)
            sound.codec_context.time_base = Fraction(1, 48000)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=48000)
        streams = [s for s in (in_video, in_audio) if s is not None]
        written = 0  # audio samples muxed so far
        last_pts: int | None = None
        # Times counted from the first picture: a file may start at any time.
        start: float | None = None
        past_end = False
        try:
            for packet in source.demux(streams):
                if past_end:
                    break  # the rest is not wanted: stop reading it
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        at = frame.time if frame.time is not None else 0.0
                        start = at if start is None else start
                        if seconds is not None and at - start >= seconds:
                            past_end = True
                            continue
                        pts = frame.pts
                        if pts is None:
                            pts = 0 if last_pts is None else last_pts + 1
                        if last_pts is not None and pts <= last_pts:
                            continue  # H.264 in MP4 needs rising times
                        last_pts = pts
                        picture = frame.reformat(width, height, format="yuv420p")
                        picture.pts, picture.time_base = pts, time_base
                        out.mux(video.encode(picture))
                    elif sound is not None and isinstance(frame, av.AudioFrame):
                        frame.pts = None
                        for chunk in resampler.resample(frame):
                            written = write_samples(out, sound, chunk, written, 48000)
            if sound is not None:
                for chunk in resampler.resample(None):
                    written = write_samples(out, sound, chunk, written, 48000)
                out.mux(sound.encode(None))
            out.mux(video.encode(None))
            if last_pts is None:
                raise InputError(
                    f"The video has no picture that can be decoded. {_VIDEO_HINT}",
                    code=OPEN_ERROR,
                )
        except av.FFmpegError as exc:
            raise InputError(
                f"The video is damaged and cannot be decoded. {_VIDEO_HINT}",
                code=OPEN_ERROR,
            ) from exc


def _even_sides(width: int, height: int, side: int | None) -> tuple[int, int]:
    if side is not None and max(width, height) > side:
        scale = side / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def _open_clip(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise InputError(
            f"The file is not a video that can be opened. {_VIDEO_HINT}",
            code=OPEN_ERROR,
        ) from exc


def _picture_stream(container: av.container.InputContainer) -> av.VideoStream:
    if container.streams.video:
        return container.streams.video[0]
    if container.streams.audio:
        message = "The file has sound but no picture."
    else:
        message = "The video has no pictures (0 seconds long)."
    raise InputError(f"{message} {_VIDEO_HINT}", code=OPEN_ERROR)


def _clip_format(path: Path, container: av.container.InputContainer) -> str:
    """The short name of an accepted container; InputError for any other."""
    name = container.format.name
    if name == "mov,mp4,m4a,3gp,3g2,mj2":
        # One demuxer reads both; QuickTime files say so in their brand.
        brand = container.metadata.get("major_brand", "").strip()
        return "mov" if brand == "qt" else "mp4"
    if name == "avi":
        return "avi"
    if name == "matroska,webm":
        # One demuxer reads both too; the EBML header's DocType tells them apart.
        with path.open("rb") as fh:
            head = fh.read(64)
        if b"\x42\x82\x84webm" in head:
            return "webm"
        raise InputError(
            f"Matroska (MKV) videos are not supported. {_VIDEO_HINT}", code=OPEN_ERROR
        )
    raise InputError(
        f"{container.format.long_name or name} files are not supported. {_VIDEO_HINT}",
        code=OPEN_ERROR,
    )


def _first_picture(
    container: av.container.InputContainer, stream: av.VideoStream
) -> int:
    """Decode until one picture comes out, proving the data is video.

    Returns the turn (degrees counter-clockwise) the file asks players to
    show its pictures with: phones store upright videos sideways plus a turn.
    """
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame)
                return round(frame.rotation) % 360
    except av.FFmpegError as exc:
        raise InputError(
            f"The video is damaged and cannot be decoded. {_VIDEO_HINT}",
            code=OPEN_ERROR,
        ) from exc
    raise InputError(
        f"The video has no pictures (0 seconds long). {_VIDEO_HINT}",
        code=OPEN_ERROR,
    )


def _counted_clip(path: Path) -> tuple[int, float]:
    """Frames present and the seconds they span, from packet times (no decoding)."""
    with _open_clip(path) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        # WebM blocks often carry no duration: count such a frame as 1/fps long.
        usual = round(1 / (rate * time_base)) if rate and time_base else 0
        frames, first, end = 0, None, None
        try:
            for packet in container.demux(stream):
                start = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or start is None:
                    continue
                frames += 1
                stop = start + (packet.duration or usual)
                first = start if first is None else min(first, start)
                end = stop if end is None else max(end, stop)
        except av.FFmpegError as exc:
            raise InputError(
                f"The video is damaged and cannot be read. {_VIDEO_HINT}",
                code=OPEN_ERROR,
            ) from exc
        if frames == 0 or first is None or end is None or not time_base:
            return frames, 0.0
        return frames, float((end - first) * time_base)
