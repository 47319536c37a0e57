"""Audio probing and conversion with PyAV (FFmpeg bundled in the wheel).

`probe_audio` tells what a file is and how long it plays without decoding it
all; `convert_to_wav` turns any supported input into 16-bit PCM WAV, which
every provider accepts, one decoded frame at a time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container

from studio.media.images import InputError

OPEN_ERROR = "InvalidFile.Openerror"

# FFmpeg demuxer names, as PyAV reports them, and the short names used here.
_FORMATS: dict[str, str] = {
    "wav": "wav",
    "mp3": "mp3",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "aac": "aac",
    "ogg": "ogg",
    "flac": "flac",
}
# Sample rates kept as they are when converting; others go to the next one up.
_COMMON_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

_HINT = "Use a WAV, MP3, M4A, OGG or FLAC recording."


@dataclass(frozen=True, slots=True)
class AudioInfo:
    format: str  # "wav", "mp3", "m4a", "aac", "ogg", "flac"; else FFmpeg's name
    codec: str  # FFmpeg codec name: "pcm_s16le", "mp3", "aac", "opus", ...
    duration: float  # seconds
    sample_rate: int
    channels: int
    size: int  # bytes
    # False when the header states a length the data does not have (a WAV
    # whose header claims far more): such a file is rewritten before use.
    header_ok: bool = True


def probe_audio(path: Path) -> AudioInfo:
    """Describe an audio file; raise InputError if it cannot be played."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"The audio file is empty. {_HINT}", code=OPEN_ERROR)
    with _open_input(path) as container:
        stream = _audio_stream(container)
        fmt = _short_format(container.format.name)
        _first_frame(container, stream)
        duration = stated_duration(container, stream)
        codec = stream.codec_context.codec.canonical_name
        sample_rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
    # Raw AAC states no length (FFmpeg guesses from the bitrate), some files
    # state none at all, and a WAV header may claim far more than its data
    # (a fact chunk or data size from a recording cut short): count the
    # packets instead, which is still fast (PCM packets are not decoded).
    header_ok = True
    if duration is None or fmt in ("aac", "wav"):
        counted = _counted_duration(path)
        header_ok = duration is None or fmt == "aac" or abs(duration - counted) < 0.1
        duration = counted
    if duration <= 0:
        raise InputError(
            f"The audio file contains no sound (0 seconds long). {_HINT}",
            code=OPEN_ERROR,
        )
    return AudioInfo(
        format=fmt,
        codec=codec,
        duration=round(duration, 3),
        sample_rate=sample_rate,
        channels=channels,
        size=size,
        header_ok=header_ok,
    )


def convert_to_wav(src: Path, dst: Path) -> AudioInfo:
    """Decode `src` into a 16-bit PCM WAV at `dst`; return the new file's info.

    Channels are kept; the sample rate is kept unless it is unusual (then the
    next common rate up, at most 48 kHz). The file appears at `dst` only once
    it is complete.
    """
    source = probe_audio(src)
    rate = next((r for r in _COMMON_RATES if r >= source.sample_rate), 48000)
    with whole_file(dst) as partial, _open_input(src) as container:
        stream = _audio_stream(container)
        channels = stream.codec_context.channels
        layout = stream.codec_context.layout.name or (
            "mono" if channels == 1 else "stereo"
        )
        with av.open(str(partial), "w", format="wav") as out:
            target = out.add_stream("pcm_s16le", rate=rate, layout=layout)
            resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
            written = 0
            try:
                for pcm in resampled(container, stream, resampler):
                    written = write_samples(out, target, pcm, written, rate)
                out.mux(target.encode(None))
            except av.FFmpegError as exc:
                raise InputError(
                    f"The audio file is damaged and cannot be decoded. {_HINT}",
                    code=OPEN_ERROR,
                ) from exc
    return probe_audio(dst)


@contextlib.contextmanager
def whole_file(dst: Path) -> Iterator[Path]:
    """A path to write `dst` at: it becomes `dst` only if the block completes."""
    partial = dst.with_name(dst.name + ".part")
    try:
        yield partial
        os.replace(partial, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def resampled(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    resampler: av.AudioResampler,
) -> Iterator[av.AudioFrame]:
    """Every frame of `stream` through `resampler`, then what it still holds."""
    for frame in container.decode(stream):
        # Timestamps of the source (gaps, offsets) do not matter to a consumer
        # of samples in order (a WAV, a loudness envelope); sample order does.
        frame.pts = None
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def write_samples(
    out: av.container.OutputContainer,
    stream: av.AudioStream,
    frame: av.AudioFrame,
    written: int,
    rate: int,
) -> int:
    frame.pts = written
    frame.time_base = Fraction(1, rate)
    out.mux(stream.encode(frame))
    return written + frame.samples


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(
            f"The file is not an audio recording that can be opened. {_HINT}",
            code=OPEN_ERROR,
        ) from exc


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        raise InputError(
            f"The file has no sound track. {_HINT}",
            code=OPEN_ERROR,
        )
    return container.streams.audio[0]


def _short_format(name: str) -> str:
    return _FORMATS.get(name, name.split(",")[0])


def _first_frame(
    container: av.container.InputContainer, stream: av.AudioStream
) -> None:
    """Decode until one frame of sound comes out, proving the data is audio.

    FFmpeg opens almost anything whose name ends in .mp3; only decoding
    shows whether it holds sound.
    """
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                if frame.samples:
                    return
    except av.FFmpegError as exc:
        raise InputError(
            f"The audio file is damaged and cannot be decoded. {_HINT}",
            code=OPEN_ERROR,
        ) from exc
    raise InputError(
        f"The file contains no sound that can be decoded. {_HINT}",
        code=OPEN_ERROR,
    )


def stated_duration(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> float | None:
    """The length a file's header states for `stream` (else for the file), if any."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _counted_duration(path: Path) -> float:
    """Add up packet durations; decode only when packets do not carry any."""
    with _open_input(path) as container:
        stream = _audio_stream(container)
        total = 0
        missing = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if not packet.duration:
                    missing = True
                    break
                total += packet.duration
        except av.FFmpegError as exc:
            raise InputError(
                f"The audio file is damaged and cannot be read. {_HINT}",
                code=OPEN_ERROR,
            ) from exc
        if not missing and stream.time_base:
            return float(total * stream.time_base)
    with _open_input(path) as container:
        stream = _audio_stream(container)
        rate = stream.codec_context.sample_rate
        try:
            samples = sum(frame.samples for frame in container.decode(stream))
        except av.FFmpegError as exc:
            raise InputError(
                f"The audio file is damaged and cannot be decoded. {_HINT}",
                code=OPEN_ERROR,
            ) from exc
        return samples / rate if rate else 0.0
