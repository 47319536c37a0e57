"""The local renderer: one portrait + one audio clip -> a talking-portrait MP4.

No neural model: the lower face is warped open and a dark mouth opening is
blended in, both following the loudness of the audio, and the head sways and
nods a little. Frames are made one at a time and streamed to libx264, so
memory stays flat however long the clip is; only the loudness envelope (a few
floats per frame), the base frame and the small warp grids are kept.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from studio.media.audio import OPEN_ERROR, probe_audio, resampled
from studio.media.images import InputError, check_face, load_rgb, read_image_info
from studio.providers.base import RESOLUTION_AREAS

Box = tuple[int, int, int, int]
FloatArray = NDArray[np.float32]

# Sample rate used only to measure loudness; speech energy sits well below 8 kHz.
_ENVELOPE_RATE = 16000
# Loudness is judged in dB relative to the clip's loud parts: this many dB
# below them counts as closed mouth. Anything quieter than _ABSOLUTE_FLOOR
# dBFS is silence even in a clip with no speech at all.
_DYNAMIC_RANGE_DB = 30.0
_ABSOLUTE_FLOOR_DB = -40.0
# AAC encodes these rates natively; others are resampled to 48 kHz.
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_MOUTH_RGB = np.array([46.0, 16.0, 20.0], dtype=np.float32)
_PROGRESS_EVERY = 10  # frames


@dataclass(frozen=True, slots=True)
class RenderInfo:
    duration: float  # seconds of video (frames / fps)
    width: int
    height: int
    frames: int
    fps: float  # whole for s2v; the reference's (say 30000/1001) for animate


def output_size(width: int, height: int, resolution: str) -> tuple[int, int]:
    """Keep the aspect ratio, aim at the tier's pixel area, make both sides even."""
    try:
        area = RESOLUTION_AREAS[resolution]
    except KeyError:
        raise ValueError(f"Unknown resolution {resolution!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"Invalid image size {width}×{height}")
    scale = math.sqrt(area / (width * height))
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def render_video(
    *,
    portrait: Path,
    audio: Path,
    resolution: str,
    face_box: tuple[int, int, int, int] | None,
    out: Path,
    poster: Path,
    progress: Callable[[float], None] | None = None,
    fps: int = 25,
    size: tuple[int, int] | None = None,
) -> RenderInfo:
    """Render `out` (H.264 + AAC MP4, faststart) and `poster` (JPEG).

    `face_box` is in the portrait's upright pixels, as `check_face` gives it;
    None means detect it here (or assume a centred face). `size` (width,
    height, even) is a model's fixed output size, instead of the tier's area
    at the portrait's aspect. Raise InputError when the portrait or the audio
    cannot be read.
    """
    sound = probe_audio(audio)
    info = read_image_info(portrait)
    width, height = size or output_size(info.width, info.height, resolution)
    base = _base_frame(portrait, width, height)
    if face_box is None:
        face_box = check_face(portrait).face_box
    box = _centred_box(width, height)
    if face_box is not None:
        scaled = _scale_box(face_box, width / info.width, height / info.height)
        # A box from another picture (or garbage) would put the mouth nowhere.
        if _plausible(scaled, width, height):
            box = scaled

    frames = max(1, round(sound.duration * fps))
    level = _loudness(audio, frames=frames, fps=fps)
    mouth = _mouth_motion(level)
    head = _head_motion(level, fps=fps)
    animator = _Animator(base, box)

    partial = out.with_name(out.name + ".part")
    try:
        encode_mp4(
            partial,
            audio=audio,
            frames=(animator.frame(mouth[i], head[i], i / fps) for i in range(frames)),
            count=frames,
            width=width,
            height=height,
            fps=fps,
            progress=progress,
        )
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    # The still portrait at output size: what the video looks like at rest.
    Image.fromarray(base).save(poster, format="JPEG", quality=90)
    if progress is not None:
        progress(1.0)
    return RenderInfo(
        duration=frames / fps, width=width, height=height, frames=frames, fps=fps
    )


# Inputs


def _base_frame(portrait: Path, width: int, height: int) -> NDArray[np.uint8]:
    rgb = load_rgb(portrait, max_side=max(width, height) * 2)
    interp = cv2.INTER_AREA if rgb.shape[1] > width else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=interp))


def _scale_box(box: Box, sx: float, sy: float) -> Box:
    x, y, w, h = box
    return round(x * sx), round(y * sy), max(4, round(w * sx)), max(4, round(h * sy))


def _plausible(box: Box, width: int, height: int) -> bool:
    x, y, w, h = box
    return (
        0 <= x + w / 2 < width
        and 0 <= y + h / 2 < height
        and 8 <= w <= width
        and 8 <= h <= height
    )


def _centred_box(width: int, height: int) -> Box:
    side = round(min(width, height) * 0.4)
    return (width - side) // 2, round(height * 0.22), side, side


def _loudness(audio: Path, *, frames: int, fps: int) -> FloatArray:
    """Per-video-frame loudness in [0, 1], from one decoding pass over the audio."""
    energy = np.zeros(frames, dtype=np.float64)
    counts = np.zeros(frames, dtype=np.float64)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=_ENVELOPE_RATE)
    done = 0
    try:
        with av.open(str(audio), "r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            for chunk in resampled(container, stream, resampler):
                done = _accumulate(chunk, done, energy, counts, fps)
    except av.FFmpegError as exc:
        raise InputError(
            "The audio file is damaged and cannot be decoded.", code=OPEN_ERROR
        ) from exc
    rms = np.sqrt(energy / np.maximum(counts, 1.0))
    db = 20.0 * np.log10(rms + 1e-7)
    top = max(float(np.percentile(db, 95)), _ABSOLUTE_FLOOR_DB)
    level = np.clip((db - (top - _DYNAMIC_RANGE_DB)) / _DYNAMIC_RANGE_DB, 0.0, 1.0)
    return level.astype(np.float32)


def _accumulate(
    chunk: av.AudioFrame,
    done: int,
    energy: NDArray[np.float64],
    counts: NDArray[np.float64],
    fps: int,
) -> int:
    samples = chunk.to_ndarray().reshape(-1).astype(np.float64)
    if samples.size == 0:
        return done
    index = (np.arange(done, done + samples.size) * fps) // _ENVELOPE_RATE
    # Samples past the last video frame (rounding) count towards it.
    index = np.minimum(index, energy.size - 1)
    first = int(index[0])
    local = index - first  # a chunk spans only a frame or two
    span = slice(first, first + int(local[-1]) + 1)
    energy[span] += np.bincount(local, weights=samples * samples)
    counts[span] += np.bincount(local)
    return done + samples.size


def _mouth_motion(level: FloatArray) -> FloatArray:
    """Mouth opening per frame in [0, 1]: gated, lightly smoothed loudness."""
    gated = np.clip((level - 0.15) / 0.85, 0.0, 1.0)
    # A 3-tap blur keeps syllables (4-6 per second) while removing flicker.
    padded = np.pad(gated, 1, mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    return smooth.astype(np.float32)


def _head_motion(level: FloatArray, *, fps: int) -> FloatArray:
    """Slow loudness (~0.3 s time constant) that drives nods and leaning in."""
    alpha = 1.0 - math.exp(-1.0 / (0.3 * fps))
    out = np.empty_like(level)
    value = 0.0
    for i, v in enumerate(level):
        value += alpha * (float(v) - value)
        out[i] = value
    return out


# Frames


class _Animator:
    """Makes one RGB frame from the base frame, a mouth opening and a head pose."""

    def __init__(self, base: NDArray[np.uint8], box: Box) -> None:
        self.base = base
        height, width = base.shape[:2]
        self.size = (width, height)
        x, y, w, h = box
        self.centre = (x + w / 2.0, y + h / 2.0)
        # Haar boxes run from the brows to just under the lower lip: the lips
        # meet at ~82 % of the height and the chin is at ~115 %.
        self.mouth_x = x + 0.5 * w
        self.mouth_y = y + 0.82 * h
        self.jaw = 0.08 * h  # how far the chin drops when the mouth is fully open
        self.lip_half_width = 0.17 * w

        x0 = max(0, int(x - 0.05 * w))
        x1 = min(width, int(x + 1.05 * w) + 1)
        y0 = max(0, int(y + 0.55 * h))
        y1 = min(height, int(y + 1.5 * h) + 1)
        self.roi = (x0, y0, x1, y1)
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.grid_x, self.grid_y = gx, gy
        # How much each pixel follows the jaw: 1 from just under the lips to
        # the chin, fading sideways and below. The ramps are long enough
        # (slope < 1 at full opening) that the warp never folds over.
        across = np.clip(np.abs(gx - self.mouth_x) / (0.45 * w), 0.0, 1.0)
        weight_x = np.cos(across * np.pi / 2) ** 2
        down = _smoothstep(gy, self.mouth_y - 0.03 * h, self.mouth_y + 0.12 * h)
        below = 1.0 - _smoothstep(gy, y + 1.15 * h, y + 1.48 * h)
        self.jaw_weight = (weight_x * down * below).astype(np.float32)

    def frame(self, mouth: float, head: float, t: float) -> NDArray[np.uint8]:
        face = self._open_mouth(mouth) if mouth > 0.01 else self.base
        return self._move_head(face, head, t)

    def _open_mouth(self, amount: float) -> NDArray[np.uint8]:
        x0, y0, x1, y1 = self.roi
        drop = amount * self.jaw
        map_y = self.grid_y - drop * self.jaw_weight
        region = cv2.remap(
            self.base,
            self.grid_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        ).astype(np.float32)
        # The opening between the lips: an ellipse as tall as the jaw drop,
        # with soft edges, darker the wider it is.
        half_h = max(0.5, 0.5 * drop)
        u = (self.grid_x - self.mouth_x) / (
            self.lip_half_width * (0.85 + 0.15 * amount)
        )
        v = (self.grid_y - (self.mouth_y + half_h)) / half_h
        inside = np.clip((1.0 - (u * u + v * v)) * 2.5, 0.0, 1.0)
        alpha = (inside * min(0.95, 0.4 + 0.8 * amount))[..., np.newaxis]
        region = region * (1.0 - alpha) + _MOUTH_RGB * alpha
        frame = self.base.copy()
        frame[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
        return frame

    def _move_head(
        self, frame: NDArray[np.uint8], head: float, t: float
    ) -> NDArray[np.uint8]:
        width, height = self.size
        tau = 2.0 * math.pi
        # Idle drift is slow (periods of 5-7 s) so silence looks calm; talking
        # adds nods and a lean that scale with loudness.
        angle = 0.6 * math.sin(tau * t / 7.3) + 1.5 * head * math.sin(tau * 0.9 * t)
        scale = 1.04 + 0.012 * head
        dx = width * (0.003 * math.sin(tau * t / 5.1 + 1.0))
        dy = height * (
            0.002 * math.sin(tau * t / 6.7)
            + 0.006 * head * (1 + math.sin(tau * 2.1 * t))
        )
        matrix = cv2.getRotationMatrix2D(self.centre, angle, scale)
        matrix[0, 2] += dx
        matrix[1, 2] += dy
        moved = cv2.warpAffine(
            frame,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        return np.asarray(moved, dtype=np.uint8)


def _smoothstep(values: FloatArray, start: float, end: float) -> FloatArray:
    s = np.clip((values - start) / max(end - start, 1e-6), 0.0, 1.0)
    return np.asarray(s * s * (3.0 - 2.0 * s), dtype=np.float32)


# Encoding


def encode_mp4(
    path: Path,
    *,
    audio: Path | None,
    frames: Iterator[NDArray[np.uint8]],
    count: int,
    width: int,
    height: int,
    fps: int | Fraction,
    progress: Callable[[float], None] | None,
) -> None:
    """Mux RGB frames and `audio`'s first sound track (re-encoded AAC) into an MP4.

    `audio` may be any file with a sound track (a WAV, a reference video), or
    None for a silent video. Audio is muxed as the frames go, so the file
    interleaves; `count` (the frames expected) only scales progress, which
    may raise to cancel.
    """
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(
            av.open(
                str(path),
                "w",
                format="mp4",
                container_options={"movflags": "+faststart"},
            )
        )
        video = container.add_stream(
            "libx264", rate=fps, options={"preset": "veryfast", "crf": "23"}
        )
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / Fraction(fps)
        # 0 = x264 picks one thread per core (plus lookahead), so encoding runs
        # on both cores while Python draws the next frame.
        video.codec_context.thread_type = "AUTO"
        video.codec_context.thread_count = 0
        sound = _sound_track(stack, container, audio)

        for index, rgb in enumerate(frames):
            yuv = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index
            frame.time_base = video.codec_context.time_base
            container.mux(video.encode(frame))
            if sound is not None:
                # Keep audio up to the end of this frame, so the file interleaves.
                sound.mux_until((index + 1) / Fraction(fps))
            if progress is not None and index % _PROGRESS_EVERY == 0:
                progress(min(0.99, index / count))
        if sound is not None:
            sound.mux_until(None)
        container.mux(video.encode(None))


class _SoundTrack:
    """A source's sound, resampled for AAC, encoded into `container` on demand."""

    def __init__(
        self,
        container: av.container.OutputContainer,
        source: av.container.InputContainer,
    ) -> None:
        in_stream = source.streams.audio[0]
        layout = "mono" if in_stream.codec_context.channels == 1 else "stereo"
        rate = in_stream.codec_context.sample_rate
        self.rate = rate if rate in _AAC_RATES else 48000
        self.container = container
        self.stream = container.add_stream("aac", rate=self.rate, layout=layout)
        self.stream.codec_context.time_base = Fraction(1, self.rate)
        self.chunks = _audio_frames(source, in_stream, layout=layout, rate=self.rate)
        self.written = 0  # samples muxed so far

    def mux_until(self, seconds: Fraction | None) -> None:
        """Encode samples up to `seconds`; None = all that is left, then flush."""
        while seconds is None or self.written < seconds * self.rate:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            chunk.pts = self.written
            chunk.time_base = Fraction(1, self.rate)
            self.written += chunk.samples
            self.container.mux(self.stream.encode(chunk))
        if seconds is None:
            self.container.mux(self.stream.encode(None))


def _sound_track(
    stack: contextlib.ExitStack,
    container: av.container.OutputContainer,
    audio: Path | None,
) -> _SoundTrack | None:
    if audio is None:
        return None
    source = stack.enter_context(av.open(str(audio), "r", metadata_errors="ignore"))
    if not source.streams.audio:
        return None
    return _SoundTrack(container, source)


def _audio_frames(
    source: av.container.InputContainer,
    stream: av.AudioStream,
    *,
    layout: str,
    rate: int,
) -> Iterator[av.AudioFrame]:
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    try:
        for decoded in source.decode(stream):
            decoded.pts = None
            yield from resampler.resample(decoded)
        yield from resampler.resample(None)
    except av.FFmpegError as exc:
        raise InputError(
            "The audio file is damaged and cannot be decoded.", code=OPEN_ERROR
        ) from exc
