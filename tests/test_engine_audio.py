from __future__ import annotations

import shutil
import time
import wave
from pathlib import Path

import pytest

from studio.media.audio import OPEN_ERROR, AudioInfo, convert_to_wav, probe_audio
from studio.media.images import InputError
from tests.media_factories import (
    ASTRONAUT,
    make_audio,
    make_empty_file,
    make_lying_wav,
    make_text_file,
    make_truncated,
    make_wav,
)

# (factory format, expected probe format, expected codec)
FORMATS = [
    ("wav", "wav", "pcm_s16le"),
    ("mp3", "mp3", "mp3"),
    ("m4a", "m4a", "aac"),
    ("aac", "aac", "aac"),
    ("ogg", "ogg", "opus"),
    ("flac", "flac", "flac"),
]


@pytest.mark.parametrize(("fmt", "name", "codec"), FORMATS, ids=[f[0] for f in FORMATS])
def test_probe_gives_format_codec_and_duration(
    tmp_path: Path, fmt: str, name: str, codec: str
):
    path = make_audio(tmp_path / f"voice.{fmt}", fmt=fmt, seconds=2.5)

    info = probe_audio(path)

    assert info.format == name
    assert info.codec == codec
    assert info.duration == pytest.approx(2.5, abs=0.1)
    assert info.channels == 1
    assert info.size == path.stat().st_size


@pytest.mark.parametrize("fmt", [f[0] for f in FORMATS])
def test_convert_to_wav_keeps_duration(tmp_path: Path, fmt: str):
    src = make_audio(tmp_path / f"voice.{fmt}", fmt=fmt, seconds=2.5)
    dst = tmp_path / "out.wav"

    info = convert_to_wav(src, dst)

    assert info.format == "wav" and info.codec == "pcm_s16le"
    assert info.duration == pytest.approx(2.5, abs=0.1)
    assert info == probe_audio(dst)
    with wave.open(str(dst)) as wav:
        assert wav.getsampwidth() == 2
        assert wav.getnframes() / wav.getframerate() == pytest.approx(2.5, abs=0.1)
    assert not list(tmp_path.glob("*.part"))


def test_convert_keeps_stereo_and_sample_rate(tmp_path: Path):
    src = make_audio(tmp_path / "s.mp3", fmt="mp3", seconds=1.0, channels=2)

    info = convert_to_wav(src, tmp_path / "s.wav")

    assert (info.channels, info.sample_rate) == (2, 44100)


def test_convert_moves_an_unusual_sample_rate_to_a_common_one(tmp_path: Path):
    src = make_wav(tmp_path / "odd.wav", 1.0, sample_rate=37800)

    info = convert_to_wav(src, tmp_path / "even.wav")

    assert info.sample_rate == 44100
    assert info.duration == pytest.approx(1.0, abs=0.02)


def test_probe_of_a_long_file_is_fast(tmp_path: Path):
    path = make_audio(tmp_path / "long.mp3", fmt="mp3", seconds=600, sample_rate=8000)

    started = time.perf_counter()
    info = probe_audio(path)

    assert time.perf_counter() - started < 0.5
    assert info.duration == pytest.approx(600, abs=0.2)


def test_probe_counts_raw_aac_whose_header_states_no_length(tmp_path: Path):
    info = probe_audio(make_audio(tmp_path / "raw.aac", fmt="aac", seconds=7.0))

    assert info.duration == pytest.approx(7.0, abs=0.1)


def test_probe_of_a_cut_off_wav_reports_what_is_there(tmp_path: Path):
    full = make_wav(tmp_path / "full.wav", 4.0)

    info = probe_audio(make_truncated(tmp_path / "cut.wav", full, keep=0.5))

    assert info.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: make_text_file(d / "voice.mp3"),
        lambda d: make_text_file(d / "voice.wav"),
        lambda d: make_empty_file(d / "voice.mp3"),
        lambda d: Path(shutil.copy(ASTRONAUT, d / "voice.wav")),
        lambda d: make_truncated(
            d / "cut.m4a", make_audio(d / "full.m4a", fmt="m4a", seconds=1.0)
        ),
    ],
    ids=["text-as-mp3", "text-as-wav", "empty", "png-as-wav", "truncated-m4a"],
)
def test_unreadable_audio_raises_open_error(tmp_path: Path, make):
    path = make(tmp_path)

    with pytest.raises(InputError) as probed:
        probe_audio(path)
    with pytest.raises(InputError) as converted:
        convert_to_wav(path, tmp_path / "out.wav")

    assert probed.value.code == converted.value.code == OPEN_ERROR
    assert probed.value.message.endswith("Use a WAV, MP3, M4A, OGG or FLAC recording.")
    assert not (tmp_path / "out.wav").exists()
    assert not (tmp_path / "out.wav.part").exists()


def test_audio_info_is_a_frozen_value():
    info = AudioInfo(
        format="wav",
        codec="pcm_s16le",
        duration=1.0,
        sample_rate=16000,
        channels=1,
        size=1,
    )

    with pytest.raises(AttributeError):
        info.duration = 2.0  # type: ignore[misc]


def test_a_wav_whose_header_claims_far_more_is_measured_by_its_data(tmp_path: Path):
    path = make_lying_wav(tmp_path / "liar.wav", 1.5, claimed=1000.0)

    info = probe_audio(path)

    assert info.duration == pytest.approx(1.5, abs=0.05)
    assert not info.header_ok


def test_an_honest_wav_header_is_ok(tmp_path: Path):
    assert probe_audio(make_wav(tmp_path / "ok.wav", 1.5)).header_ok


def test_converting_a_lying_wav_writes_an_honest_header(tmp_path: Path):
    path = make_lying_wav(tmp_path / "liar.wav", 1.5, claimed=1000.0)

    info = convert_to_wav(path, tmp_path / "fixed.wav")

    assert info.duration == pytest.approx(1.5, abs=0.05)
    assert info.header_ok
    with wave.open(str(tmp_path / "fixed.wav")) as fixed:
        assert fixed.getnframes() / fixed.getframerate() == pytest.approx(1.5, abs=0.05)
