"""Test media made on the fly: speech-like audio in every format, portraits, junk.

Plain functions, so any test module (provider or Django) can import them. Each
writer takes the destination path first and returns it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.container
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASTRONAUT = FIXTURES / "astronaut.png"  # one frontal face, 512×512
NO_FACE = FIXTURES / "rocket.jpg"  # a launch pad, no people, 640×427
# Where the astronaut's face is in ASTRONAUT (x, y, w, h), hairline to chin, by eye.
ASTRONAUT_FACE = (165, 45, 120, 140)

Segments = Sequence[tuple[float, float]]

# Container and encoder for each audio format the factories can write.
_AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "m4a": ("ipod", "aac"),
    "aac": ("adts", "aac"),
    "ogg": ("ogg", "libopus"),
    "flac": ("flac", "flac"),
}


# Audio


def speech_like(
    seconds: float,
    *,
    sample_rate: int = 16000,
    loud_segments: Segments | None = None,
    seed: int = 1,
) -> NDArray[np.float32]:
    """Mono float samples in [-1, 1]: voiced syllables inside `loud_segments`.

    Inside a segment: a 120-180 Hz buzz with harmonics plus a little noise,
    amplitude-modulated at ~4 syllables per second. Outside: near silence.
    `loud_segments=None` means the whole clip is speech.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    pitch = 150.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice: NDArray[np.float64] = np.sum(
        [np.sin(k * phase) / k for k in range(1, 6)], axis=0
    )
    voice = voice / np.max(np.abs(voice)) + 0.15 * rng.standard_normal(n)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    gate = np.zeros(n)
    for start, end in loud_segments if loud_segments is not None else [(0, seconds)]:
        a, b = round(start * sample_rate), round(end * sample_rate)
        gate[a:b] = 1.0
    # 10 ms ramps, so segment edges do not click.
    ramp = max(1, sample_rate // 100)
    gate = np.convolve(gate, np.ones(ramp) / ramp, mode="same")
    floor = 0.0005 * rng.standard_normal(n)
    samples = 0.6 * voice * syllables * gate + floor
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def make_audio(
    path: Path,
    *,
    fmt: str,
    seconds: float = 3.0,
    sample_rate: int | None = None,
    channels: int = 1,
    loud_segments: Segments | None = None,
) -> Path:
    """Write speech-like audio as `fmt` (wav, mp3, m4a, aac, ogg = Opus, flac)."""
    container_format, codec = _AUDIO_FORMATS[fmt]
    if sample_rate is None:
        sample_rate = 48000 if fmt == "ogg" else 16000 if fmt == "wav" else 44100
    mono = speech_like(seconds, sample_rate=sample_rate, loud_segments=loud_segments)
    planar = np.repeat(mono[np.newaxis, :], channels, axis=0)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        _mux_sound(out, stream, planar, rate=sample_rate, layout=layout)
    return path


def make_wav(
    path: Path,
    seconds: float = 3.0,
    *,
    sample_rate: int = 16000,
    channels: int = 1,
    loud_segments: Segments | None = None,
) -> Path:
    return make_audio(
        path,
        fmt="wav",
        seconds=seconds,
        sample_rate=sample_rate,
        channels=channels,
        loud_segments=loud_segments,
    )


def make_mp3(
    path: Path,
    seconds: float = 3.0,
    *,
    sample_rate: int = 44100,
    channels: int = 1,
    loud_segments: Segments | None = None,
) -> Path:
    return make_audio(
        path,
        fmt="mp3",
        seconds=seconds,
        sample_rate=sample_rate,
        channels=channels,
        loud_segments=loud_segments,
    )


def make_m4a(path: Path, seconds: float = 3.0, **kwargs: object) -> Path:
    return make_audio(path, fmt="m4a", seconds=seconds, **kwargs)  # type: ignore[arg-type]


def make_ogg_opus(path: Path, seconds: float = 3.0, **kwargs: object) -> Path:
    return make_audio(path, fmt="ogg", seconds=seconds, **kwargs)  # type: ignore[arg-type]


def make_flac(path: Path, seconds: float = 3.0, **kwargs: object) -> Path:
    return make_audio(path, fmt="flac", seconds=seconds, **kwargs)  # type: ignore[arg-type]


def make_lying_wav(
    path: Path, seconds: float = 1.0, *, claimed: float = 1000.0
) -> Path:
    """A 16 kHz mono WAV whose header claims `claimed` seconds of sound.

    A fact chunk states the sample count and the data chunk the byte count;
    both lie, as in a recording whose writer died before fixing the header.
    """
    real = make_wav(path, seconds).read_bytes()
    data_at = real.find(b"data")
    samples = round(claimed * 16000)
    fact = b"fact" + struct.pack("<II", 4, samples)
    body = bytearray(real[:data_at] + fact + real[data_at:])
    body[4:8] = struct.pack("<I", len(body) - 8)
    size_at = data_at + len(fact) + 4
    body[size_at : size_at + 4] = struct.pack("<I", samples * 2)
    path.write_bytes(bytes(body))
    return path


# Images


def make_image(
    path: Path,
    *,
    size: tuple[int, int] = (640, 480),
    fmt: str = "JPEG",
    color: tuple[int, int, int] | None = None,
) -> Path:
    """A plain picture (gradient, or one `color`) with no face, in Pillow `fmt`."""
    width, height = size
    if color is not None:
        im = Image.new("RGB", size, color)
    else:
        x = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis]
        shape = (height, width)
        channels = [np.broadcast_to(x, shape), np.broadcast_to(y, shape)]
        channels.append(np.full(shape, 128.0, dtype=np.float32))
        pixels = np.stack(channels, axis=-1).astype(np.uint8)
        im = Image.fromarray(pixels)
    if fmt == "GIF":
        im = im.convert("P")
    im.save(path, format=fmt)
    return path


def make_portrait(
    path: Path,
    *,
    fmt: str = "JPEG",
    size: tuple[int, int] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    blur: float = 0.0,
    brightness: float = 1.0,
    exif_orientation: int | None = None,
    transparent_corners: bool = False,
    quality: int = 92,
) -> Path:
    """The astronaut portrait, cropped, resized, blurred, darkened or stored sideways.

    `crop` is a Pillow box (left, top, right, bottom) applied before `size`.
    With `exif_orientation=6` the pixels are stored rotated a quarter turn
    counter-clockwise, and the EXIF tag tells viewers to turn them back.
    `transparent_corners` adds an alpha channel, clear outside a big ellipse
    (PNG or WEBP only).
    """
    im = Image.open(ASTRONAUT).convert("RGB")
    if crop is not None:
        im = im.crop(crop)
    if size is not None:
        im = im.resize(size, Image.Resampling.LANCZOS)
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    if brightness != 1.0:
        im = ImageEnhance.Brightness(im).enhance(brightness)
    if transparent_corners:
        alpha = Image.new("L", im.size, 0)
        ImageDraw.Draw(alpha).ellipse((0, 0, im.width - 1, im.height - 1), fill=255)
        im.putalpha(alpha)
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options["quality"] = quality
    if exif_orientation is not None:
        undo = {
            3: Image.Transpose.ROTATE_180,
            6: Image.Transpose.ROTATE_90,
            8: Image.Transpose.ROTATE_270,
        }
        im = im.transpose(undo[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    im.save(path, format=fmt, **options)
    return path


def make_reference_mp4(
    path: Path,
    seconds: float = 2.5,
    *,
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
) -> Path:
    """A small H.264 MP4 with a square moving across: an animate reference video."""
    width, height = size
    frames = max(1, round(seconds * fps))
    with av.open(str(path), "w", format="mp4") as out:
        stream = _h264_stream(out, width, height, fps)
        side = min(width, height) // 4
        for index in range(frames):
            rgb = np.full((height, width, 3), 40, dtype=np.uint8)
            x = (width - side) * index // max(1, frames - 1)
            rgb[height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = 220
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


def _h264_stream(
    out: av.container.OutputContainer, width: int, height: int, fps: int
) -> av.VideoStream:
    stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
    assert isinstance(stream, av.VideoStream)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, fps)
    return stream


def make_panning_video(
    path: Path,
    seconds: float = 3.0,
    *,
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
    speed: tuple[int, int] = (3, 0),
    audio: bool = False,
) -> Path:
    """An H.264 MP4 of a textured scene whose content moves `speed` px a frame.

    (3, 0) is content sliding right 3 px per frame, as when the camera pans
    left (or the subject walks right): a known global motion.
    """
    width, height = size
    frames = max(1, round(seconds * fps))
    vx, vy = speed
    margin_x, margin_y = abs(vx) * frames + 1, abs(vy) * frames + 1
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (height + 2 * margin_y, width + 2 * margin_x, 3))
    # Blurred noise: corners everywhere, but no pixel-sized speckle that
    # H.264 would smear.
    scene = np.asarray(
        Image.fromarray(noise.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    )
    with av.open(str(path), "w", format="mp4") as out:
        stream = _h264_stream(out, width, height, fps)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000, layout="mono")
            assert isinstance(sound, av.AudioStream)
        for index in range(frames):
            # The window slides against the motion, so the content moves with it.
            x, y = margin_x - vx * index, margin_y - vy * index
            rgb = np.ascontiguousarray(scene[y : y + height, x : x + width])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
        if sound is not None:
            mono = speech_like(seconds, sample_rate=48000)
            _mux_sound(out, sound, mono[np.newaxis, :])
    return path


def make_deep_grey(path: Path, *, mode: str = "I;16", fmt: str = "PNG") -> Path:
    """The astronaut in greyscale with more than 8 bits a pixel.

    "I;16" is a 16-bit PNG (0-65535, as scanners and raw converters save
    them); "I" is 32-bit integers holding 16-bit values; "F" is floats in 0-1.
    """
    grey = np.asarray(Image.open(ASTRONAUT).convert("L"))
    if mode == "I;16":
        im = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "I":
        im = Image.fromarray(grey.astype(np.int32) * 257)
    else:
        im = Image.fromarray(grey.astype(np.float32) / 255)
    assert im.mode == mode, im.mode
    im.save(path, format=fmt)
    return path


def make_group(path: Path, *, people: int = 2, fmt: str = "JPEG") -> Path:
    """Several copies of the astronaut's head and shoulders, side by side."""
    im = Image.open(ASTRONAUT).convert("RGB")
    # Head and shoulders only: 260 px wide keeps each face a sizeable share.
    person = im.crop((95, 0, 355, 512))
    group = Image.new("RGB", (person.width * people, person.height))
    for i in range(people):
        group.paste(person, (i * person.width, 0))
    group.save(path, format=fmt)
    return path


def make_small_face(path: Path, *, canvas: tuple[int, int] = (1600, 1200)) -> Path:
    """The astronaut at her own size in the corner of a big empty picture."""
    big = Image.new("RGB", canvas, (200, 200, 205))
    big.paste(Image.open(ASTRONAUT).convert("RGB"), (40, 40))
    big.save(path, format="JPEG", quality=90)
    return path


def make_large_canvas(path: Path, *, size: tuple[int, int] = (12000, 1000)) -> Path:
    """A big, cheap picture: one colour compresses to almost nothing in PNG."""
    Image.new("L", size, 90).save(path, format="PNG")
    return path


def make_twelve_megapixel_jpeg(path: Path) -> Path:
    """A 4000×3000 JPEG with the astronaut's face in the middle (for timing)."""
    face = Image.open(ASTRONAUT).convert("RGB").resize((2400, 2400))
    canvas = Image.new("RGB", (4000, 3000), (70, 80, 90))
    canvas.paste(face, (800, 300))
    canvas.save(path, format="JPEG", quality=90)
    return path


def make_bomb_png(path: Path, *, side: int = 30000) -> Path:
    """A PNG header claiming side×side pixels: a decompression bomb, ~100 bytes.

    Only the header is real; Pillow must refuse it before decoding anything.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )
    return path


# Junk that pretends to be media


def make_text_file(path: Path, text: str = "This is not a picture.\n") -> Path:
    """A text file under whatever name the test gives (photo.jpg, voice.mp3)."""
    path.write_text(text * 20, encoding="utf-8")
    return path


def make_empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated(path: Path, source: Path, *, keep: float = 0.5) -> Path:
    """The first `keep` share of `source`'s bytes: a download cut short."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def pad_wav(path: Path, size: int) -> Path:
    """Grow a WAV to exactly `size` bytes with a `junk` chunk players skip."""
    current = path.stat().st_size
    pad = size - current - 8
    if pad < 0:
        raise ValueError(f"{path} is already {current} bytes")
    with path.open("r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"junk" + pad.to_bytes(4, "little") + b"\0" * pad)
        fh.seek(4)
        fh.write((size - 8).to_bytes(4, "little"))  # the RIFF size covers it
    return path


# Video

# Container and video encoder for each video format the factories can write.
_VIDEO_FORMATS: dict[str, tuple[str, str, str]] = {
    # fmt: (container, video codec, audio codec)
    "mp4": ("mp4", "libx264", "aac"),
    "mov": ("mov", "libx264", "aac"),
    "avi": ("avi", "mpeg4", "mp3"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
    "mkv": ("matroska", "libx264", "aac"),
}


def make_video(
    path: Path,
    *,
    fmt: str = "mp4",
    seconds: float = 3.0,
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
    audio: bool = False,
    faststart: bool = False,
    rotation: int = 0,
    starts_at: float = 0.0,
) -> Path:
    """A moving gradient (a bar crossing it) as `fmt`, with speech-like sound if `audio`.

    `rotation` (MP4/MOV) stores the pictures as they are plus a turn players
    apply, degrees counter-clockwise, as phones do. `starts_at` gives the
    first picture that time, as a cut from a longer recording may have.
    """
    container_format, video_codec, audio_codec = _VIDEO_FORMATS[fmt]
    width, height = size
    options = {"movflags": "+faststart"} if faststart else {}
    frames = max(0, round(seconds * fps))
    with av.open(str(path), "w", format=container_format, options=options) as out:
        video = out.add_stream(video_codec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        if video_codec == "libvpx-vp9":
            video.options = {"deadline": "realtime", "cpu-used": "8"}
        sound = None
        if audio:
            sound = out.add_stream(audio_codec, rate=48000, layout="mono")
            assert isinstance(sound, av.AudioStream)
        x = np.linspace(0, 255, width, dtype=np.uint8)[np.newaxis, :]
        base = np.repeat(np.broadcast_to(x, (height, width))[..., np.newaxis], 3, 2)
        if frames == 0:
            out.start_encoding()  # headers of a video with no pictures
        for i in range(frames):
            picture = np.ascontiguousarray(base)
            bar = (i * 7) % width
            picture[:, bar : bar + 8] = (255, 40, 40)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i + round(starts_at * fps)
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            mono = speech_like(seconds, sample_rate=48000)
            _mux_sound(out, sound, mono[np.newaxis, :])
    return path


def _mux_sound(
    out: av.container.OutputContainer,
    stream: av.AudioStream,
    planar: NDArray[np.float32],
    *,
    rate: int = 48000,
    layout: str = "mono",
) -> None:
    """Encode planar float samples (channels × samples) into `stream`, then flush it."""
    encoder_format = (stream.codec_context.codec.audio_formats or [])[0].name
    resampler = av.AudioResampler(format=encoder_format, layout=layout, rate=rate)
    pts = 0
    for start in range(0, planar.shape[1], 1024):
        chunk = np.ascontiguousarray(planar[:, start : start + 1024])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += chunk.shape[1]
        for converted in resampler.resample(frame):
            out.mux(stream.encode(converted))
    for converted in resampler.resample(None):
        out.mux(stream.encode(converted))
    out.mux(stream.encode(None))


def make_long_video(path: Path, *, minutes: float = 40.0) -> Path:
    """A real MP4 that plays for `minutes`, cheaply: one frame every 10 s."""
    width, height = 256, 256
    frames = round(minutes * 6)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=Fraction(1, 10))
        assert isinstance(video, av.VideoStream)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 10)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((height, width, 3), i % 256, dtype=np.uint8), format="rgb24"
            )
            frame.pts = i * 100
            frame.time_base = Fraction(1, 10)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path
