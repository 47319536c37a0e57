"""The WaveSpeed emulator, driven over real loopback HTTP (provider-api.md §9)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import (
    SimpleHTTPRequestHandler,
)
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from studio.emulators.wavespeed import WaveSpeedEmulator
from studio.emulators.wavespeed.faults import parse_flag
from studio.media.render import output_size
from tests import media_factories
from tests.loopback import Hook, serve

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT = FIXTURES / "astronaut.png"
KEY = "ws-emulator"
SUBMIT = "/api/v3/wavespeed-ai/wan-2.2/speech-to-video"
MODEL = "wavespeed-ai/wan-2.2/speech-to-video"
CREATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DAY = 24 * 3600


# Fixtures and helpers


@pytest.fixture
def ws(wavespeed_emulator: WaveSpeedEmulator) -> WaveSpeedEmulator:
    """The session's emulator, reset; webhook retries quick."""
    wavespeed_emulator.reset()
    wavespeed_emulator.configure(webhook_retry_seconds=0.05)
    return wavespeed_emulator


@pytest.fixture
def client(ws: WaveSpeedEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=ws.base_url, headers=auth(), timeout=30.0, trust_env=False
    ) as c:
        yield c


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return media_factories.make_wav(tmp_path / "voice.wav", 0.6)


@pytest.fixture
def inputs(client: httpx.Client, wav: Path) -> tuple[str, str]:
    """Download URLs of an uploaded portrait and an uploaded 0.6 s clip."""
    return upload(client, ASTRONAUT)["download_url"], upload(client, wav)[
        "download_url"
    ]


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback file server: astronaut.png, voice.wav (2 s), notes.txt."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(ASTRONAUT, root / "astronaut.png")
    media_factories.make_wav(root / "voice.wav", 2.0)
    media_factories.make_text_file(root / "notes.txt")
    server, url = serve(functools.partial(_QuietFiles, directory=str(root)))
    yield url
    server.shutdown()
    server.server_close()


def upload(client: httpx.Client, path: Path, key: str = KEY) -> dict[str, Any]:
    response = client.post(
        "/api/v3/media/upload/binary",
        files={"file": (path.name, path.read_bytes())},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200 and body["message"] == "success"
    data: dict[str, Any] = body["data"]
    return data


def submit(
    client: httpx.Client,
    image: str,
    audio: str,
    *,
    key: str = KEY,
    webhook: str | None = None,
    **fields: Any,
) -> httpx.Response:
    params = {"webhook": webhook} if webhook else None
    return client.post(
        SUBMIT,
        json={"image": image, "audio": audio, **fields},
        params=params,
        headers=auth(key),
    )


def submit_ok(client: httpx.Client, image: str, audio: str, **kw: Any) -> str:
    response = submit(client, image, audio, **kw)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "created"
    prediction_id: str = data["id"]
    return prediction_id


def result(client: httpx.Client, prediction_id: str, key: str = KEY) -> httpx.Response:
    return client.get(f"/api/v3/predictions/{prediction_id}/result", headers=auth(key))


def poll(
    client: httpx.Client,
    prediction_id: str,
    until: tuple[str, ...] = ("completed", "failed"),
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = result(client, prediction_id)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        if data["status"] in until:
            return data
        assert time.monotonic() < deadline, f"still {data['status']}"
        time.sleep(0.02)


def error(response: httpx.Response, status: int) -> str:
    """The message of an error answer, after checking its exact shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == status, body
    message: str = body["message"]
    return message


def delivery(ws: WaveSpeedEmulator, prediction_id: str, state: str) -> dict[str, Any]:
    """The prediction's first webhook delivery, once it reached `state`."""
    deadline = time.monotonic() + 10
    while True:
        found = [d for d in ws.deliveries() if d["prediction_id"] == prediction_id]
        if found and found[0]["state"] == state:
            return found[0]
        assert time.monotonic() < deadline, found
        time.sleep(0.02)


def expected_signature(secret: str, headers: dict[str, str], raw: bytes) -> str:
    """§9.6, recomputed by hand: hex HMAC-SHA256 keyed with the raw secret text."""
    key = secret.removeprefix("whsec_").encode("utf-8")
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
    return "v3," + hmac.new(key, signed, hashlib.sha256).hexdigest()


# Auth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", "/api/v3/predictions/0123456789abcdef0123456789abcdef/result"),
        ("GET", "/api/v3/predictions/0123456789abcdef0123456789abcdef"),
        ("GET", "/api/v3/predictions"),
        ("POST", "/api/v3/media/upload/binary"),
        ("GET", "/api/v3/webhook/secret"),
    ],
)
def test_api_routes_need_a_known_bearer_key(
    ws: WaveSpeedEmulator, method: str, path: str
) -> None:
    with httpx.Client(base_url=ws.base_url, trust_env=False) as bare:
        missing = bare.request(method, path)
        assert error(missing, 401) == "Unauthorized: missing API key"
        unknown = bare.request(method, path, headers=auth("ws-nobody"))
        assert error(unknown, 401) == "Unauthorized: invalid API key"


def test_a_key_without_balance_cannot_submit(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.set_key("ws-broke", balance=False)
    response = submit(client, *inputs, key="ws-broke")
    assert error(response, 402) == "Insufficient balance, please top up"
    assert client.get("/api/v3/predictions", headers=auth("ws-broke")).is_success


# Submit validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": None}, "image is required"),
        ({"audio": ""}, "audio is required"),
        ({"resolution": "1080p"}, "resolution must be one of 480p, 720p"),
        ({"resolution": "720P"}, "resolution must be one of 480p, 720p"),
        ({"seed": "42"}, "seed must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"enable_sync_mode": True}, "enable_sync_mode is not supported"),
        ({"image": "https://example.com/a.png"}, "Invalid image URL"),
        ({"audio": "file:///etc/passwd"}, "Invalid audio URL"),
        ({"image": "http://127.0.0.1:9/a.png"}, "Failed to download image"),
    ],
)
def test_submit_answers_400_for_invalid_fields(
    ws: WaveSpeedEmulator,
    client: httpx.Client,
    inputs: tuple[str, str],
    change: dict[str, Any],
    message: str,
) -> None:
    body: dict[str, Any] = {"image": inputs[0], "audio": inputs[1], **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post(SUBMIT, json=body)
    assert error(response, 400).startswith(message)
    assert ws.state()["predictions"] == []


def test_submit_rejects_bodies_that_are_not_json_objects(client: httpx.Client) -> None:
    for content in (b"not json", b"[1, 2]", b""):
        response = client.post(SUBMIT, content=content)
        assert error(response, 400) == "Invalid JSON body"


def test_submit_rejects_inputs_of_the_wrong_kind(
    client: httpx.Client, served: str, inputs: tuple[str, str]
) -> None:
    image, audio = inputs
    text = submit(client, f"{served}/notes.txt", audio)
    assert error(text, 400) == "image is not a valid image file"
    swapped = submit(client, image, f"{served}/astronaut.png")
    assert error(swapped, 400) == "audio is not a valid audio file"
    gone = submit(client, image, f"{served}/missing.wav")
    assert error(gone, 400).endswith("(HTTP 404)")
    bad_hook = submit(client, image, audio, webhook="ftp://127.0.0.1/x")
    assert error(bad_hook, 400).startswith("Invalid webhook URL")


def test_loopback_input_urls_are_fetched_at_submit(
    ws: WaveSpeedEmulator, client: httpx.Client, served: str
) -> None:
    ws.configure(hold=True)
    image, audio = f"{served}/astronaut.png", f"{served}/voice.wav"
    prediction_id = submit_ok(client, image, audio, prompt="hi", seed=7)
    [state] = ws.state()["predictions"]
    assert state["id"] == prediction_id
    assert state["audio_duration"] == pytest.approx(2.0, abs=0.05)
    assert state["input"] == {"image": image, "audio": audio, "prompt": "hi", "seed": 7}


# The happy path


def test_upload_submit_poll_and_download_a_real_mp4(
    ws: WaveSpeedEmulator, client: httpx.Client, wav: Path, tmp_path: Path
) -> None:
    ws.configure(hold=True)
    image = upload(client, ASTRONAUT)
    assert image["type"] == "image" and image["filename"] == "astronaut.png"
    assert image["size"] == ASTRONAUT.stat().st_size
    assert image["download_url"].startswith(ws.base_url + "/media/uploads/")
    fetched = httpx.get(image["download_url"], trust_env=False)
    assert fetched.content == ASTRONAUT.read_bytes()
    audio = upload(client, wav)
    assert audio["type"] == "audio"

    response = submit(
        client, image["download_url"], audio["download_url"], **{"resolution": "720p"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200 and body["message"] == "success"
    created = body["data"]
    prediction_id = created["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", prediction_id)
    assert created == {
        "id": prediction_id,
        "model": MODEL,
        "input": {
            "image": image["download_url"],
            "audio": audio["download_url"],
            "resolution": "720p",
        },
        "outputs": [],
        "urls": {"get": f"{ws.base_url}/api/v3/predictions/{prediction_id}/result"},
        "has_nsfw_contents": [],
        "status": "created",
        "created_at": created["created_at"],
        "error": "",
        "timings": {"inference": 0},
    }
    assert CREATED_AT.fullmatch(created["created_at"])

    # Held: the prediction moves only when the control API says so.
    time.sleep(0.05)
    assert result(client, prediction_id).json()["data"]["status"] == "created"
    ws.advance(prediction_id, "processing")
    poll(client, prediction_id, until=("processing",))
    ws.advance(prediction_id, "completed")
    done = poll(client, prediction_id)
    assert done["status"] == "completed", done
    output = f"{ws.base_url}/media/outputs/{prediction_id}.mp4"
    assert done["outputs"] == [output]
    assert done["has_nsfw_contents"] == [False]
    assert done["error"] == ""
    assert done["timings"]["inference"] > 0
    assert done["created_at"] == created["created_at"]
    plain = client.get(f"/api/v3/predictions/{prediction_id}")
    assert plain.json() == {"code": 200, "message": "success", "data": done}

    video = tmp_path / "out.mp4"
    download = httpx.get(output, trust_env=False)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    video.write_bytes(download.content)
    with av.open(str(video)) as container:
        assert container.streams.video and container.streams.audio
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == output_size(512, 512, "720P")
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(0.6, abs=0.12)

    # expire_results: outputs are 404 at once, until the fault is cleared.
    ws.faults(kind="expire_results")
    assert error(httpx.get(output, trust_env=False), 404) == "File not found"
    ws.clear_faults("expire_results")
    assert httpx.get(output, trust_env=False).status_code == 200

    # §9.6 retention: 7 days (scaled) after creation it is all gone.
    ws.advance_clock(7 * DAY / 1000 + 1)
    assert error(result(client, prediction_id), 404) == "Prediction not found"
    assert error(client.get(f"/api/v3/predictions/{prediction_id}"), 404)
    assert httpx.get(output, trust_env=False).status_code == 404
    assert httpx.get(image["download_url"], trust_env=False).status_code == 404
    assert client.get("/api/v3/predictions").json()["data"]["total"] == 0


def test_predictions_stay_until_seven_scaled_days(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    prediction_id = submit_ok(client, *inputs)
    ws.advance_clock(7 * DAY / 1000 - 5)
    assert result(client, prediction_id).status_code == 200
    assert httpx.get(inputs[0], trust_env=False).status_code == 200
    ws.advance_clock(10)
    assert result(client, prediction_id).status_code == 404
    assert httpx.get(inputs[0], trust_env=False).status_code == 404
    # Held predictions run again after their records are gone: no crash, no ghost.
    assert ws.state()["predictions"] == []


def test_uploads_over_the_size_limit_or_of_unknown_type_are_400(
    ws: WaveSpeedEmulator, client: httpx.Client, tmp_path: Path, wav: Path
) -> None:
    ws.configure(image_max_mb=0.5)
    big = client.post(
        "/api/v3/media/upload/binary",
        files={"file": ("big.png", ASTRONAUT.read_bytes())},
    )
    assert error(big, 400) == "File too large: image files may be at most 0.5 MB"
    assert upload(client, wav)["type"] == "audio"  # audio keeps its 50 MB
    text = media_factories.make_text_file(tmp_path / "notes.txt")
    junk = client.post(
        "/api/v3/media/upload/binary", files={"file": ("x.png", text.read_bytes())}
    )
    assert error(junk, 400).startswith("Unsupported file type")
    nofile = client.post("/api/v3/media/upload/binary", files={"other": ("a", b"1")})
    assert error(nofile, 400) == "Missing multipart field: file"


def test_uploaded_video_is_typed_video(
    ws: WaveSpeedEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 32
        for _ in range(3):
            frame = av.VideoFrame(32, 32, "yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert upload(client, clip)["type"] == "video"


# Failure


def test_fail_task_fault_fails_the_next_prediction(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.faults(kind="fail_task", message="GPU fell over")
    failed_id = submit_ok(client, *inputs)
    failed = poll(client, failed_id)
    assert failed["status"] == "failed"
    assert failed["error"] == "GPU fell over"
    assert failed["outputs"] == [] and failed["has_nsfw_contents"] == []


def test_the_control_api_fails_a_prediction_with_a_given_error(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    prediction_id = submit_ok(client, *inputs)
    answer = client.post(
        f"/_emulator/predictions/{prediction_id}/advance",
        json={"to": "failed", "error": "audio too quiet"},
    )
    assert answer.status_code == 200
    failed = poll(client, prediction_id)
    assert (failed["status"], failed["error"]) == ("failed", "audio too quiet")
    again = client.post(
        f"/_emulator/predictions/{prediction_id}/advance", json={"to": "completed"}
    )
    assert again.status_code == 400


@pytest.mark.parametrize("mode", ["completed", "failed"])
def test_nsfw_fault_withholds_the_output(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str], mode: str
) -> None:
    ws.faults(kind="nsfw", mode=mode)
    data = poll(client, submit_ok(client, *inputs))
    assert data["status"] == mode
    assert data["has_nsfw_contents"] == [True]
    assert data["outputs"] == []
    expected = "" if mode == "completed" else "NSFW content detected in the output"
    assert data["error"] == expected


# Listing


def test_predictions_list_pages_newest_first_for_this_key_only(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    ws.set_key(KEY, tier="unlimited")
    ws.set_key("ws-other", tier="unlimited")
    ids = []
    for _ in range(5):
        ids.append(submit_ok(client, *inputs))
        ws.advance_clock(1)  # distinct created_at
    other = submit_ok(client, *inputs, key="ws-other")

    seen = []
    for page in (1, 2, 3):
        answer = client.get(
            "/api/v3/predictions", params={"page": page, "page_size": 2}
        ).json()
        assert answer["code"] == 200 and answer["message"] == "success"
        data = answer["data"]
        assert (data["page"], data["page_size"], data["total"]) == (page, 2, 5)
        seen += [item["id"] for item in data["items"]]
        assert all(item["model"] == MODEL for item in data["items"])
    assert seen == ids[::-1]
    assert other not in seen

    default = client.get("/api/v3/predictions").json()["data"]
    assert (default["page"], default["page_size"], len(default["items"])) == (1, 20, 5)
    empty = client.get("/api/v3/predictions", params={"page": 9}).json()["data"]
    assert empty["items"] == [] and empty["total"] == 5
    for params in ({"page_size": 0}, {"page_size": 101}, {"page_size": "x"}):
        assert error(client.get("/api/v3/predictions", params=params), 400)
    assert error(client.get("/api/v3/predictions", params={"page": 0}), 400)
    # Another key's prediction is "not found", as an unknown one.
    assert error(result(client, other), 404) == "Prediction not found"


# Tier limits (§9.6 account levels)


def test_bronze_allows_three_unfinished_predictions(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    ids = [submit_ok(client, *inputs) for _ in range(3)]
    refused = submit(client, *inputs)
    assert error(refused, 429) == "Too Many Requests"
    assert refused.headers["Retry-After"] == "1"
    ws.advance(ids[0], "failed")
    poll(client, ids[0])
    ws.advance_clock(60)  # out of the per-minute window too
    submit_ok(client, *inputs)
    assert len(ws.state()["predictions"]) == 4


def test_concurrent_submits_cannot_overfill_the_tier(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    ws.set_key(KEY, max_concurrent=3, per_minute=0)
    barrier = threading.Barrier(6)
    codes: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=ws.base_url, trust_env=False) as own:
            barrier.wait()
            codes.append(
                own.post(
                    SUBMIT,
                    json={"image": inputs[0], "audio": inputs[1]},
                    headers=auth(),
                ).status_code
            )

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 200, 200, 429, 429, 429]
    assert len(ws.state()["predictions"]) == 3


def test_bronze_allows_five_submits_per_scaled_minute(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    # time_scale 1: a real minute, so the window cannot pass during the test.
    ws.configure(time_scale=1.0, created_seconds=0, processing_seconds=0)
    ws.faults(kind="fail_task", count=None)  # finish at once, freeing the slots
    for _ in range(5):
        poll(client, submit_ok(client, *inputs))
    refused = submit(client, *inputs)
    assert error(refused, 429) == "Too Many Requests"
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    ws.advance_clock(61)
    submit_ok(client, *inputs)


def test_tiers_and_explicit_limits_are_set_per_key(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    answer = client.post("/_emulator/keys", json={"key": "ws-one", "max_concurrent": 1})
    assert answer.json()["tier"] == "custom"
    submit_ok(client, *inputs, key="ws-one")
    assert submit(client, *inputs, key="ws-one").status_code == 429
    ws.set_key("ws-one", tier="silver")
    submit_ok(client, *inputs, key="ws-one")
    keys = client.get("/_emulator/keys").json()["keys"]
    assert keys["ws-one"]["max_concurrent"] == 100 and keys["ws-one"]["active"] == 2
    broke = ws.set_key("ws-one", balance=False)  # the level stays as it was
    assert (broke.tier, broke.max_concurrent, broke.per_minute) == ("silver", 100, 60)
    assert submit(client, *inputs, key="ws-one").status_code == 402
    ws.reset()
    assert "ws-one" not in ws.state()["keys"]


# Request faults


def test_throttle_and_server_error_faults(
    ws: WaveSpeedEmulator, client: httpx.Client
) -> None:
    ws.faults(kind="throttle", route="list", retry_after=7)
    throttled = client.get("/api/v3/predictions")
    assert error(throttled, 429) == "Too Many Requests"
    assert throttled.headers["Retry-After"] == "7"
    ws.faults({"kind": "server_error"}, {"kind": "server_error", "status": 503})
    assert error(client.get("/api/v3/predictions"), 500) == "Internal server error"
    assert error(client.get("/api/v3/predictions"), 503) == "Internal server error"
    assert client.get("/api/v3/predictions").status_code == 200


def test_drop_before_creates_nothing_and_drop_after_loses_only_the_answer(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.configure(hold=True)
    ws.faults(kind="drop", route="submit")
    with pytest.raises(httpx.TransportError):
        submit(client, *inputs)
    assert ws.state()["predictions"] == []

    ws.faults(kind="drop", route="submit", when="after")
    with pytest.raises(httpx.TransportError):
        submit(client, *inputs)
    # §9.6: the lost submit answer is found again in the listing.
    items = client.get("/api/v3/predictions").json()["data"]["items"]
    assert len(items) == 1 and items[0]["status"] == "created"


def test_slow_fault_delays_the_answer(
    ws: WaveSpeedEmulator, client: httpx.Client
) -> None:
    ws.faults(kind="slow", delay_ms=300, route="secret")
    started = time.monotonic()
    assert client.get("/api/v3/webhook/secret").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert error(client.get("/api/v3/wavespeed-ai/other-model"), 404) == "Not found"
    assert error(client.get(SUBMIT), 405) == "Method not allowed"
    assert error(client.get("/media/outputs/" + "0" * 32 + ".mp4"), 404)


# Webhooks (§9.6)


def test_webhook_secret_is_stable_per_key(
    ws: WaveSpeedEmulator, client: httpx.Client
) -> None:
    ws.set_key("ws-other")
    first = client.get("/api/v3/webhook/secret").json()
    assert first["code"] == 200 and first["message"] == "success"
    secret = first["data"]["secret"]
    assert secret.startswith("whsec_") and len(secret) > 20
    assert client.get("/api/v3/webhook/secret").json()["data"]["secret"] == secret
    other = client.get("/api/v3/webhook/secret", headers=auth("ws-other"))
    assert other.json()["data"]["secret"] != secret
    ws.reset()
    assert client.get("/api/v3/webhook/secret").json()["data"]["secret"] == secret


def test_webhook_on_completed_is_the_signed_prediction_without_envelope(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str], hook: Hook
) -> None:
    secret = client.get("/api/v3/webhook/secret").json()["data"]["secret"]
    prediction_id = submit_ok(client, *inputs, webhook=hook.url)
    done = poll(client, prediction_id)
    assert done["status"] == "completed"
    [call] = hook.wait(1)
    headers = call["headers"]
    assert call["path"] == "/hooks/wavespeed"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert headers["webhook-signature"] == expected_signature(
        secret, headers, call["raw"]
    )
    payload = json.loads(call["raw"])
    assert payload == done  # the prediction itself, no {code, data} envelope
    assert "code" not in payload and payload["outputs"]

    delivery(ws, prediction_id, "delivered")
    deliveries = client.get("/_emulator/webhooks").json()["deliveries"]
    assert [(d["prediction_id"], d["state"]) for d in deliveries] == [
        (prediction_id, "delivered")
    ]


def test_webhook_on_failed_too(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str], hook: Hook
) -> None:
    secret = ws.webhook_secret(KEY)
    ws.faults(kind="fail_task", message="no luck")
    prediction_id = submit_ok(client, *inputs, webhook=hook.url)
    [call] = hook.wait(1)
    payload = json.loads(call["raw"])
    assert payload["id"] == prediction_id
    assert (payload["status"], payload["error"]) == ("failed", "no luck")
    assert call["headers"]["webhook-signature"] == expected_signature(
        secret, call["headers"], call["raw"]
    )


def test_webhook_duplicate_late_and_bad_signature_faults(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str], hook: Hook
) -> None:
    secret = ws.webhook_secret(KEY)
    ws.faults(kind="fail_task", count=3)  # no renders needed
    ws.faults(kind="webhook_duplicate")
    twice = submit_ok(client, *inputs, webhook=hook.url)
    first, second = hook.wait(2)
    assert first["raw"] == second["raw"]
    assert json.loads(first["raw"])["id"] == twice
    assert first["headers"]["webhook-id"] != second["headers"]["webhook-id"]
    for call in (first, second):
        assert call["headers"]["webhook-signature"] == expected_signature(
            secret, call["headers"], call["raw"]
        )

    ws.faults(kind="webhook_bad_signature")
    submit_ok(client, *inputs, webhook=hook.url)
    bad = hook.wait(3)[2]
    assert bad["headers"]["webhook-signature"].startswith("v3,")
    assert bad["headers"]["webhook-signature"] != expected_signature(
        secret, bad["headers"], bad["raw"]
    )

    ws.faults(kind="webhook_late", delay_ms=400)
    late_id = submit_ok(client, *inputs, webhook=hook.url)
    finished = time.monotonic()
    poll(client, late_id)
    late = hook.wait(4, timeout=10)[3]
    assert late["at"] - finished >= 0.3
    states = {d["prediction_id"]: d for d in ws.deliveries()}
    assert states[late_id]["late_ms"] == 400


def test_failed_webhook_deliveries_are_retried_and_recorded(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str], hook: Hook
) -> None:
    ws.faults(kind="fail_task", count=2)
    hook.fail = 2
    recovered = submit_ok(client, *inputs, webhook=hook.url)
    calls = hook.wait(3)
    assert [c["answered"] for c in calls] == [500, 500, 200]
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1
    record = delivery(ws, recovered, "delivered")
    assert [a["http_status"] for a in record["attempts"]] == [500, 500, 200]

    hook.fail = 10
    given_up = submit_ok(client, *inputs, webhook=hook.url)
    hook.wait(6)
    record = delivery(ws, given_up, "failed")
    assert len(record["attempts"]) == 3  # the first try and 2 retries


def test_webhooks_to_other_hosts_are_recorded_not_sent(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    ws.faults(kind="fail_task")
    prediction_id = submit_ok(
        client, *inputs, webhook="https://studio.example.com/hooks/ws"
    )
    poll(client, prediction_id)
    record = delivery(ws, prediction_id, "skipped")
    assert "loopback" in record["attempts"][0]["error"]


# Control API and command line


def test_control_api_over_http(
    ws: WaveSpeedEmulator, client: httpx.Client, inputs: tuple[str, str]
) -> None:
    assert client.post("/_emulator/config", json={"hold": True}).json()["hold"]
    added = client.post(
        "/_emulator/faults", json={"kind": "throttle", "route": "list", "count": 2}
    ).json()["faults"]
    assert added[0]["count"] == 2 and added[0]["retry_after"] == 1
    assert client.post("/_emulator/faults/clear", json={}).json()["removed"] == 1
    prediction_id = submit_ok(client, *inputs)
    one = client.get(f"/_emulator/predictions/{prediction_id}").json()
    assert one["status"] == "created" and one["key"] == KEY
    listed = client.get("/_emulator/predictions").json()["predictions"]
    assert [p["id"] for p in listed] == [prediction_id]
    moved = client.post(
        f"/_emulator/predictions/{prediction_id}/advance", json={"to": "processing"}
    )
    assert moved.status_code == 200
    poll(client, prediction_id, until=("processing",))
    assert client.post("/_emulator/clock", json={"advance": 5}).json()[
        "clock_offset"
    ] == pytest.approx(5)
    assert client.post("/_emulator/faults", json={"kind": "nope"}).status_code == 400
    assert client.post("/_emulator/reset").json() == {"reset": True}
    assert client.get("/_emulator/state").json()["predictions"] == []
    assert client.get("/_emulator/config").json()["hold"] is False


def test_fault_flags_parse() -> None:
    assert parse_flag("throttle:3:submit,retry_after=5") == {
        "kind": "throttle",
        "count": 3,
        "route": "submit",
        "retry_after": 5,
    }
    assert parse_flag("expire_results:*") == {"kind": "expire_results", "count": None}
    assert parse_flag("drop:1:submit,when=after") == {
        "kind": "drop",
        "count": 1,
        "route": "submit",
        "when": "after",
    }
    assert parse_flag('{"kind": "nsfw", "mode": "failed"}') == {
        "kind": "nsfw",
        "mode": "failed",
    }


def test_management_command_serves_until_interrupted() -> None:
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(manage),
            "wavespeed_emulator",
            "--port",
            "0",
            "--quiet",
            "--time-scale",
            "100",
            "--fault",
            "throttle:1:list",
            "--key",
            "ws-cli:silver",
            "--key",
            "ws-broke:bronze:nobalance",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        url = match.group(1)
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            first = c.get("/api/v3/predictions", headers=auth("ws-cli"))
            assert first.status_code == 429
            second = c.get("/api/v3/predictions", headers=auth("ws-cli"))
            assert second.json()["data"]["total"] == 0
            broke = c.post(SUBMIT, json={}, headers=auth("ws-broke"))
            assert broke.status_code == 402
            state = c.get("/_emulator/state").json()
            assert state["keys"]["ws-cli"]["max_concurrent"] == 100
            assert state["retention_seconds"] == pytest.approx(7 * DAY / 100)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "Emulator stopped." in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
