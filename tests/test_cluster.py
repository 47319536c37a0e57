"""End to end through real processes: runserver, qcluster, SQLite, HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import av
import httpx
import pytest

from tests.live import (  # noqa: F401 (the fixtures are used by name)
    LiveStudio,
    hidden_input,
    live_studio_factory_fixture,
    live_studio_fixture,
    signed_in_client,
    studio_fixture,
)
from tests.media_factories import ASTRONAUT, NO_FACE, make_wav

pytestmark = pytest.mark.cluster

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Long enough that a SIGKILL lands mid-render: 60 s at 720P takes ~17 s here.
INTERRUPTED_AUDIO_SECONDS = 60.0
RECOVERY_TIMEOUT = 240.0


def _queued_code(output: str) -> str:
    match = re.search(rf"Queued ({UUID_RE})", output)
    assert match, f"generate printed no job code:\n{output}"
    return match[1]


def _poll_status(
    client: httpx.Client, code: str, *, timeout: float = 120
) -> httpx.Response:
    """GET the status fragment until it answers 286 (htmx's stop-polling)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/jobs/{code}/status/", headers={"HX-Request": "true"})
        assert response.status_code in (200, 286), response.text[:2000]
        if response.status_code == 286:
            return response
        assert time.monotonic() < deadline, (
            f"job {code} still running:\n{response.text}"
        )
        time.sleep(0.5)


def test_job_made_over_http_ends_with_a_playable_mp4(
    studio: LiveStudio, tmp_path: Path
) -> None:
    audio_seconds = 4.0
    wav = make_wav(tmp_path / "hello.wav", audio_seconds)
    with signed_in_client(studio) as client:
        htmx = {"X-CSRFToken": client.cookies["csrftoken"], "HX-Request": "true"}

        response = client.post(
            "/check/portrait/",
            files={
                "portrait_file": ("astronaut.png", ASTRONAUT.read_bytes(), "image/png")
            },
            headers=htmx,
        )
        assert response.status_code == 200
        assert "verdict-pass" in response.text, response.text
        portrait = hidden_input(response.text, "portrait")

        response = client.post(
            "/check/audio/",
            data={"portrait": portrait},
            files={"audio_file": ("hello.wav", wav.read_bytes(), "audio/wav")},
            headers=htmx,
        )
        assert response.status_code == 200
        assert "verdict-pass" in response.text, response.text
        audio = hidden_input(response.text, "audio")
        # Both passed, so the out-of-band button comes back enabled.
        button = re.search(r"<button id=\"generate-button\"[^>]*>", response.text)
        assert button and "disabled" not in button[0], response.text

        response = client.post(
            "/new/",
            data={
                "portrait": portrait,
                "audio": audio,
                "resolution": "480P",
                "title": "Over HTTP",
            },
            headers=htmx,
        )
        assert response.status_code == 200, response.text
        job_url = response.headers.get("HX-Redirect", "")
        match = re.fullmatch(rf"/jobs/({UUID_RE})/", job_url)
        assert match, f"HX-Redirect was {job_url!r}"
        code = match[1]

        final = _poll_status(client, code)
        assert 'data-status="succeeded"' in final.text, final.text
        assert "<video" in final.text

        video = client.get(f"/jobs/{code}/video.mp4")
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert video.headers["accept-ranges"] == "bytes"
        mp4 = tmp_path / "result.mp4"
        mp4.write_bytes(video.content)

        partial = client.get(
            f"/jobs/{code}/video.mp4", headers={"Range": "bytes=0-1023"}
        )
        assert partial.status_code == 206
        assert partial.headers["content-range"] == f"bytes 0-1023/{len(video.content)}"
        assert partial.content == video.content[:1024]

    with av.open(str(mp4)) as container:
        assert container.format.name.split(",")[0] in ("mov", "mp4")
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(
            audio_seconds, abs=0.5
        )
        frame = next(container.decode(video=0))
        assert frame.width > 0 and frame.height > 0

    row = studio.job(code)
    assert row["status"] == "succeeded"
    assert row["attempts"] == 1


def test_worker_killed_mid_render_job_still_completes(
    live_studio_factory: Callable[..., LiveStudio], tmp_path: Path
) -> None:
    studio = live_studio_factory(S2V_STALE_SECONDS="5")
    wav = make_wav(tmp_path / "long.wav", INTERRUPTED_AUDIO_SECONDS)
    queued = studio.generate(
        ASTRONAUT, wav, "--resolution", "720P", "--title", "Interrupted"
    )
    code = _queued_code(queued.stdout)

    def rendering() -> dict[str, object] | None:
        row = studio.job(code)
        return row if row["status"] == "running" and row["progress"] > 0 else None

    studio.wait_for(rendering, timeout=90, interval=0.2, what="the render to start")
    studio.kill_worker()

    killed = studio.job(code)
    assert killed["status"] in ("submitted", "running"), killed
    assert killed["progress"] < 1.0, (
        "the render finished before the kill; use longer audio"
    )
    assert killed["attempts"] == 1
    # Nobody is rendering it any more: the heartbeat stands still.
    time.sleep(1.5)
    assert studio.job(code)["heartbeat_at"] == killed["heartbeat_at"]

    studio.start_worker()

    def finished() -> dict[str, object] | None:
        row = studio.job(code)
        return row if row["status"] in ("succeeded", "failed", "canceled") else None

    done = studio.wait_for(
        finished,
        timeout=RECOVERY_TIMEOUT,
        interval=1,
        what="the sweep to recover the job",
    )
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["video_duration"] == pytest.approx(INTERRUPTED_AUDIO_SECONDS, abs=0.5)
    assert done["video"]
    assert studio.stored_file(str(done["video"]))  # local disk or S3


def test_generate_command_waits_and_prints_the_stored_video(
    studio: LiveStudio, tmp_path: Path
) -> None:
    wav = make_wav(tmp_path / "command.wav", 3.0)
    result = studio.generate(
        ASTRONAUT,
        wav,
        "--title",
        "From the command line",
        "--wait",
        "--timeout",
        "180",
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert re.search(rf"Queued {UUID_RE}", result.stdout), result.stdout
    final = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"Succeeded: ([\d.]+) s, cost ([\d.]+) (\w+), video at (.+)", final
    )
    assert match, result.stdout
    assert float(match[1]) == pytest.approx(3.0, abs=0.5)
    video = Path(match[4])  # a path on local disk, a storage name on S3
    assert video.suffix == ".mp4"
    if video.is_absolute():
        assert video.is_relative_to(studio.data_dir / "media")
        video = video.relative_to(studio.data_dir / "media")
    assert studio.stored_file(video.as_posix())


def test_generate_command_refuses_a_portrait_without_a_face(
    studio: LiveStudio, tmp_path: Path
) -> None:
    wav = make_wav(tmp_path / "refused.wav", 2.0)
    result = studio.generate(NO_FACE, wav, "--wait", "--timeout", "60", check=False)
    assert result.returncode != 0, result.stdout
    assert "Portrait: No face found" in result.stderr, result.stderr
    assert "Queued" not in result.stdout


def test_cluster_killed_with_six_jobs_queued_recovers_each_exactly_once(
    live_studio_factory: Callable[..., LiveStudio], tmp_path: Path
) -> None:
    # Default stale window (60 s): recovery must not wait for the sweep.
    studio = live_studio_factory()
    wav = make_wav(tmp_path / "six.wav", 20.0)
    codes = [
        _queued_code(studio.generate(ASTRONAUT, wav, "--title", f"Job {n}").stdout)
        for n in range(6)
    ]

    def taken() -> bool:
        # The cluster has taken messages (two rendering, more waiting locally).
        rows = [studio.job(code) for code in codes]
        return any(row["status"] == "running" and row["progress"] > 0 for row in rows)

    studio.wait_for(taken, timeout=90, interval=0.2, what="renders to start")
    studio.kill_worker()
    before = [studio.job(code) for code in codes]
    assert any(row["status"] != "succeeded" for row in before), before

    restarted, restarted_at = time.monotonic(), time.time()
    studio.start_worker()

    def all_finished() -> list[dict[str, object]] | None:
        rows = [studio.job(code) for code in codes]
        done = all(row["status"] in ("succeeded", "failed", "canceled") for row in rows)
        return rows if done else None

    rows = studio.wait_for(
        all_finished, timeout=RECOVERY_TIMEOUT, interval=0.5, what="every job"
    )
    recovered = time.monotonic() - restarted
    assert [row["status"] for row in rows] == ["succeeded"] * 6, rows
    # Render time of the attempts that ran after the restart.
    render = sum(
        _at(row["finished_at"]) - max(_at(row["started_at"]), restarted_at)
        for row in rows
        if _at(row["finished_at"]) > restarted_at
    )
    print(  # noqa: T201
        f"all 6 jobs done {recovered:.1f} s after the restart "
        f"(render time after it: {render:.1f} s)"
    )
    assert recovered <= render + 60

    ids = [row["id"] for row in rows]
    marks = ",".join("?" * len(ids))
    generations = studio.query(
        f"SELECT job_id, COUNT(*) AS n FROM studio_ledgerentry "
        f"WHERE kind = 'generation' AND job_id IN ({marks}) GROUP BY job_id",
        tuple(ids),
    )
    assert {row["job_id"]: row["n"] for row in generations} == dict.fromkeys(ids, 1)
    assert all(row["video"] for row in rows)


def _at(value: object) -> float:
    """A database datetime (naive UTC text on SQLite) as a Unix time."""
    moment = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
