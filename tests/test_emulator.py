"""The DashScope emulator, driven over real loopback HTTP (provider-api.md §12)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from studio.emulators.dashscope import Emulator, media
from studio.emulators.dashscope.faults import parse_flag
from studio.emulators.dashscope.state import Config
from tests import media_factories

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT = FIXTURES / "astronaut.png"
ROCKET = FIXTURES / "rocket.jpg"
KEY = "sk-emulator"
DETECT = "/services/aigc/image2video/face-detect"
SYNTH = "/services/aigc/image2video/video-synthesis"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")
MSG_INVALID_PARAM = (
    "Required parameter(s) missing or invalid, please check the request parameters."
)
MSG_RATE = "Requests rate limit exceeded, please try again later."


# Fixtures and helpers


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("run_seconds_base", 0.3)
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0, trust_env=False) as c:
        yield c


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback file server, standing in for the app's signed media links."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(ASTRONAUT, root / "astronaut.png")
    shutil.copy(ROCKET, root / "rocket.jpg")
    media_factories.make_wav(root / "voice.wav", 2.0)
    handler = functools.partial(_QuietFiles, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return media_factories.make_wav(tmp_path / "voice.wav", 2.0)


def auth(key: str = KEY, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def policy(client: httpx.Client, base: str, model: str, key: str = KEY) -> dict:
    response = client.get(
        f"{base}/uploads",
        params={"action": "getPolicy", "model": model},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    data: dict = response.json()["data"]
    return data


def oss_form(data: dict, key: str, **overrides: str) -> dict[str, str]:
    form = {
        "OSSAccessKeyId": data["oss_access_key_id"],
        "Signature": data["signature"],
        "policy": data["policy"],
        "key": key,
        "x-oss-object-acl": data["x_oss_object_acl"],
        "x-oss-forbid-overwrite": data["x_oss_forbid_overwrite"],
        "success_action_status": "200",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def post_file(
    client: httpx.Client, data: dict, form: dict[str, str], content: bytes
) -> httpx.Response:
    # httpx writes data fields before files, so `file` is the last field (§5.2).
    return client.post(
        data["upload_host"], data=form, files={"file": ("f.bin", content)}
    )


def upload(
    client: httpx.Client,
    emu: Emulator,
    path: Path,
    model: str,
    *,
    key: str = KEY,
    base: str | None = None,
) -> str:
    """The whole §5 flow: getPolicy, multipart POST, oss:// URL."""
    data = policy(client, base or emu.base_url, model, key)
    object_key = f"{data['upload_dir']}/{path.name}"
    response = post_file(client, data, oss_form(data, object_key), path.read_bytes())
    assert response.status_code == 200, response.text
    assert response.content == b""
    return "oss://" + object_key


def detect(
    client: httpx.Client,
    emu: Emulator,
    image_url: str,
    *,
    key: str = KEY,
    resolve: bool = True,
    base: str | None = None,
) -> httpx.Response:
    headers = auth(key)
    if resolve:
        headers["X-DashScope-OssResourceResolve"] = "enable"
    return client.post(
        f"{base or emu.base_url}{DETECT}",
        json={"model": "wan2.2-s2v-detect", "input": {"image_url": image_url}},
        headers=headers,
    )


def submit(
    client: httpx.Client,
    emu: Emulator,
    image_url: str,
    audio_url: str,
    *,
    key: str = KEY,
    parameters: dict | None = None,
    base: str | None = None,
) -> httpx.Response:
    headers = auth(key, **{"X-DashScope-Async": "enable"})
    if image_url.startswith("oss://") or audio_url.startswith("oss://"):
        headers["X-DashScope-OssResourceResolve"] = "enable"
    body = {
        "model": "wan2.2-s2v",
        "input": {"image_url": image_url, "audio_url": audio_url},
        "parameters": parameters if parameters is not None else {"resolution": "480P"},
    }
    return client.post(f"{base or emu.base_url}{SYNTH}", json=body, headers=headers)


def submit_ok(client: httpx.Client, emu: Emulator, *args: Any, **kwargs: Any) -> str:
    response = submit(client, emu, *args, **kwargs)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["task_status"] == "PENDING"
    task_id: str = output["task_id"]
    return task_id


def get_task(
    client: httpx.Client, emu: Emulator, task_id: str, *, key: str = KEY
) -> dict:
    response = client.get(f"{emu.base_url}/tasks/{task_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def poll(
    client: httpx.Client,
    emu: Emulator,
    task_id: str,
    *,
    until: tuple[str, ...] = TERMINAL,
    timeout: float = 30.0,
    key: str = KEY,
) -> tuple[dict, list[str]]:
    """Poll until the status is in `until`; return the last body and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"{emu.base_url}/tasks/{task_id}", headers=auth(key))
        if response.status_code == 200:
            body = response.json()
            status = body["output"]["task_status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in until:
                return body, seen
        else:
            assert response.status_code == 429, response.text
        assert time.monotonic() < deadline, f"task {task_id} stuck after {seen}"
        time.sleep(0.1)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["request_id"]
    return response.status_code, body["code"], body["message"]


# Auth (§12.2)


def test_missing_empty_and_unknown_keys_answer_401(
    emu: Emulator, client: httpx.Client
) -> None:
    url = emu.base_url + DETECT
    assert error_of(client.post(url, json={})) == (
        401,
        "InvalidApiKey",
        "No API-key provided.",
    )
    empty = client.post(url, json={}, headers={"Authorization": "Bearer"})
    assert error_of(empty)[2] == "No API-key provided."
    unknown = client.post(url, json={}, headers=auth("sk-nope"))
    assert error_of(unknown) == (401, "InvalidApiKey", "Invalid API-key provided.")
    response = client.get(f"{emu.base_url}/tasks/x", headers=auth("sk-nope"))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


def test_singapore_server_refuses_beijing_keys_and_has_no_s2v(
    make_emulator: Callable[..., Emulator], client: httpx.Client
) -> None:
    emu = make_emulator(
        region="ap-southeast-1",
        api_keys=["sk-bj:acct-1", "sk-sg:acct-2:ap-southeast-1"],
    )
    beijing = detect(client, emu, "http://127.0.0.1:1/a.png", key="sk-bj")
    assert error_of(beijing) == (401, "InvalidApiKey", "Invalid API-key provided.")
    singapore = detect(client, emu, "http://127.0.0.1:1/a.png", key="sk-sg")
    assert error_of(singapore)[:2] == (404, "ModelNotFound")
    response = client.get(
        f"{emu.base_url}/uploads",
        params={"action": "getPolicy", "model": "wan2.2-s2v"},
        headers=auth("sk-sg"),
    )
    assert response.status_code == 404


# Async header rules (§12.3)


def test_async_header_is_required_for_synthesis_and_refused_for_detect(
    emu: Emulator, client: httpx.Client
) -> None:
    body = {
        "model": "wan2.2-s2v",
        "input": {"image_url": "http://127.0.0.1/a.png", "audio_url": "x"},
    }
    sync = client.post(emu.base_url + SYNTH, json=body, headers=auth())
    assert error_of(sync) == (
        403,
        "AccessDenied",
        "current user api does not support synchronous calls.",
    )
    headers = auth(**{"X-DashScope-Async": "enable"})
    detect_async = client.post(
        emu.base_url + DETECT,
        json={"model": "wan2.2-s2v-detect", "input": {"image_url": "x"}},
        headers=headers,
    )
    assert error_of(detect_async) == (
        403,
        "AccessDenied",
        "Current user api does not support asynchronous calls.",
    )


# Validation (§12.4-12.6)


def test_validation_errors_use_the_documented_codes_and_messages(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    headers = auth(**{"X-DashScope-Async": "enable"})
    url = emu.base_url + SYNTH

    def post(body: object = None, content: bytes | None = None) -> tuple:
        if content is not None:
            return error_of(client.post(url, content=content, headers=headers))
        return error_of(client.post(url, json=body, headers=headers))

    image, audio = f"{base}/astronaut.png", f"{base}/voice.wav"
    assert post(content=b"{not json") == (
        400,
        "InvalidParameter",
        "Required body invalid, please check the request body format.",
    )
    assert post(content=b"[1, 2]")[2].startswith("Required body invalid")
    assert post({"input": {}})[:2] == (400, "BadRequest.EmptyModel")
    assert post({"model": "wan2.2-s2v"})[:2] == (400, "BadRequest.EmptyInput")
    assert post({"model": "wan9-nope", "input": {"image_url": image}})[:2] == (
        404,
        "ModelNotFound",
    )
    assert post({"model": "wan2.2-s2v-detect", "input": {"image_url": image}}) == (
        400,
        "InvalidParameter",
        "url error, please check url！",
    )
    missing_audio = post({"model": "wan2.2-s2v", "input": {"image_url": image}})
    assert missing_audio == (
        400,
        "InvalidParameter",
        "Required parameter(audio_url) missing or invalid, please check the "
        "request parameters.",
    )
    for resolution in ("1080P", "480p", 480):
        bad = post(
            {
                "model": "wan2.2-s2v",
                "input": {"image_url": image, "audio_url": audio},
                "parameters": {"resolution": resolution},
            }
        )
        assert bad[:2] == (400, "InvalidParameter")
    outside = post(
        {
            "model": "wan2.2-s2v",
            "input": {"image_url": "https://example.com/a.jpg", "audio_url": audio},
        }
    )
    assert outside == (400, "InvalidURL", "Invalid URL provided in your request.")
    oss = post(
        {
            "model": "wan2.2-s2v",
            "input": {"image_url": "oss://x/a.png", "audio_url": audio},
        }
    )
    assert oss == (
        400,
        "InvalidParameter",
        "The provided URL does not appear to be valid. Ensure it is correctly "
        "formatted.",
    )
    wrong_method = client.get(url, headers=headers)
    assert error_of(wrong_method) == (
        400,
        "InvalidParameter",
        "Request method 'GET' is not supported.",
    )
    # parameters.style is accepted and ignored (§13.4); resolution defaults to 480P.
    styled = submit(
        client, emu, image, audio, parameters={"style": "speech"}, base=emu.base_url
    )
    assert styled.status_code == 200, styled.text
    assert emu.account_state()["tasks"][0]["resolution"] == "480P"


def test_unknown_paths_answer_json_404(emu: Emulator, client: httpx.Client) -> None:
    response = client.get(emu.url + "/api/v1/nothing", headers=auth())
    assert error_of(response) == (404, "NotFound", "Not found!")


# Upload and detect (§2, §5)


def test_upload_flow_then_detect_judges_faces(
    emu: Emulator, client: httpx.Client
) -> None:
    astronaut = upload(client, emu, ASTRONAUT, "wan2.2-s2v-detect")
    rocket = upload(client, emu, ROCKET, "wan2.2-s2v-detect")
    assert astronaut.startswith("oss://dashscope-instant/")

    passed = detect(client, emu, astronaut)
    assert passed.status_code == 200, passed.text
    body = passed.json()
    assert body["output"] == {"check_pass": True, "humanoid": True}
    assert body["usage"] == {"image_count": 1}
    assert body["request_id"]

    failed = detect(client, emu, rocket)
    assert failed.status_code == 200
    output = failed.json()["output"]
    assert output["check_pass"] is False
    assert output["humanoid"] is False
    assert output["code"] == "InvalidFile.NoHuman"
    assert output["message"] == (
        "The input image has no human body. Please upload other image with single "
        "person."
    )

    unresolved = detect(client, emu, astronaut, resolve=False)
    assert error_of(unresolved)[:2] == (400, "InvalidParameter")
    counts = emu.account_state()["counts"]
    assert counts["detect_calls"] == 2  # only the 200s are billable
    assert counts["uploads"] == 2
    assert counts["policy_calls"] == 2


def test_detect_fetches_loopback_urls_and_reports_bad_ones(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = served
    assert detect(client, emu, f"{base}/astronaut.png").json()["output"]["check_pass"]
    media_factories.make_image(root / "small.png", size=(300, 300), fmt="PNG")
    small = detect(client, emu, f"{base}/small.png").json()["output"]
    assert small["code"] == "InvalidFile.Resolution"
    assert small["message"].startswith("The image resolution is invalid")
    media_factories.make_image(root / "anim.gif", size=(500, 500), fmt="GIF")
    assert (
        detect(client, emu, f"{base}/anim.gif").json()["output"]["code"]
        == "InvalidFile.Format"
    )
    missing = detect(client, emu, f"{base}/missing.png")
    assert error_of(missing)[:2] == (400, "InvalidURL")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = detect(client, emu, f"http://127.0.0.1:{port}/a.png")
    assert error_of(refused)[:2] == (400, "InvalidURL.ConnectionRefused")
    assert emu.account_state()["counts"]["detect_calls"] == 3


def test_upload_host_enforces_the_policy(emu: Emulator, client: httpx.Client) -> None:
    data = policy(client, emu.base_url, "wan2.2-s2v")
    assert data["upload_host"] == emu.url + "/oss"
    assert data["expire_in_seconds"] == 300
    assert data["max_file_size_mb"] == 100
    assert data["x_oss_object_acl"] == "private"
    assert data["x_oss_forbid_overwrite"] == "true"
    key = data["upload_dir"] + "/a.png"

    def xml_code(response: httpx.Response) -> str:
        assert response.headers["content-type"] == "application/xml"
        match = re.search(r"<Code>(.*)</Code>", response.text)
        assert match, response.text
        return match.group(1)

    tampered = post_file(client, data, oss_form(data, key, Signature="AAAA"), b"x")
    assert (tampered.status_code, xml_code(tampered)) == (403, "SignatureDoesNotMatch")
    outside = post_file(client, data, oss_form(data, "elsewhere/a.png"), b"x")
    assert (outside.status_code, xml_code(outside)) == (403, "AccessDenied")
    public = post_file(
        client, data, oss_form(data, key, **{"x-oss-object-acl": "public-read"}), b"x"
    )
    assert public.status_code == 403
    no_status = post_file(
        client, data, oss_form(data, key, success_action_status=None), b"x"
    )
    assert no_status.status_code == 204  # OSS's default without success_action_status
    again = post_file(client, data, oss_form(data, key), b"y")
    assert (again.status_code, xml_code(again)) == (409, "FileAlreadyExists")
    file_first = client.post(
        data["upload_host"],
        content=(
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            b'\r\nxx\r\n--b\r\nContent-Disposition: form-data; name="key"\r\n\r\n'
            + key.encode()
            + b"\r\n--b--\r\n"
        ),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert (file_first.status_code, xml_code(file_first)) == (400, "InvalidArgument")

    emu.advance_clock(301)  # past the 300 s policy
    expired = post_file(client, data, oss_form(data, data["upload_dir"] + "/b"), b"x")
    assert expired.status_code == 403
    assert xml_code(expired) == "AccessDenied"
    assert "Invalid according to Policy: Policy expired." in expired.text


def test_upload_over_the_size_limit_is_entity_too_large(
    make_emulator: Callable[..., Emulator], client: httpx.Client
) -> None:
    emu = make_emulator(max_file_size_mb=0.01)
    data = policy(client, emu.base_url, "wan2.2-s2v")
    response = post_file(
        client, data, oss_form(data, data["upload_dir"] + "/big"), b"x" * 20_000
    )
    assert response.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in response.text
    assert emu.account_state()["counts"].get("uploads", 0) == 0


def test_uploads_are_bound_to_model_account_and_48_hours(
    make_emulator: Callable[..., Emulator], client: httpx.Client, wav: Path
) -> None:
    emu = make_emulator(api_keys=["sk-a:acct-1", "sk-a2:acct-1", "sk-b:acct-2"])
    for_detect = upload(client, emu, ASTRONAUT, "wan2.2-s2v-detect", key="sk-a")
    audio = upload(client, emu, wav, "wan2.2-s2v", key="sk-a")
    inspection = (
        400,
        "InvalidParameter.DataInspection",
        "Unable to download the media resource during the data inspection process.",
    )
    wrong_model = submit(client, emu, for_detect, audio, key="sk-a")
    assert error_of(wrong_model) == inspection
    # Another key of the same account may use it; another account may not.
    assert detect(client, emu, for_detect, key="sk-a2").status_code == 200
    assert error_of(detect(client, emu, for_detect, key="sk-b")) == inspection
    unknown = detect(client, emu, "oss://dashscope-instant/nothing/a.png", key="sk-a")
    assert error_of(unknown) == inspection
    emu.advance_clock(48 * 3600 + 1)
    assert error_of(detect(client, emu, for_detect, key="sk-a")) == inspection
    assert emu.state()["accounts"]["acct-1"]["tasks"] == []


# Video tasks (§3, §12.7)


def test_video_task_runs_to_a_downloadable_mp4(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    wav: Path,
    tmp_path: Path,
) -> None:
    emu = make_emulator(run_seconds_base=0.8)
    image = upload(client, emu, ASTRONAUT, "wan2.2-s2v")
    audio = upload(client, emu, wav, "wan2.2-s2v")
    task_id = submit_ok(client, emu, image, audio)

    body, seen = poll(client, emu, task_id)
    assert seen[-1] == "SUCCEEDED"
    assert "RUNNING" in seen
    assert seen == [s for s in ("PENDING", "RUNNING", "SUCCEEDED") if s in seen]
    output = body["output"]
    for name in ("submit_time", "scheduled_time", "end_time"):
        assert TIMESTAMP.fullmatch(output[name]), output[name]
    assert output["submit_time"] <= output["scheduled_time"] <= output["end_time"]
    assert body["usage"]["video_count"] == 1
    assert body["usage"]["SR"] == 480
    assert body["usage"]["duration"] == pytest.approx(2.0, abs=0.05)
    assert "video_duration" not in body["usage"]

    video_url = output["results"]["video_url"]
    assert video_url.startswith(emu.url + f"/results/{task_id}.mp4?Expires=")
    download = client.get(video_url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    path = tmp_path / "out.mp4"
    path.write_bytes(download.content)
    with av.open(str(path)) as container:
        assert container.duration is not None
        assert container.duration / 1_000_000 == pytest.approx(2.0, abs=0.15)
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (554, 554)  # 480P, square portrait
    ranged = client.get(video_url, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206
    assert ranged.content == download.content[:100]

    task = emu.account_state()["tasks"][0]
    assert task["status"] == "SUCCEEDED"
    assert task["audio_duration"] == pytest.approx(2.0, abs=0.01)
    assert task["start_time"] - task["submit_time"] >= 0
    assert task["end_time"] - task["start_time"] >= 0.8


def test_720p_from_loopback_urls_reports_both_usage_fields(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(usage_field="both")
    base, _ = served
    task_id = submit_ok(
        client,
        emu,
        f"{base}/astronaut.png",
        f"{base}/voice.wav",
        parameters={"resolution": "720P"},
    )
    body, _ = poll(client, emu, task_id)
    assert body["output"]["task_status"] == "SUCCEEDED", body
    assert body["usage"]["SR"] == 720
    assert body["usage"]["duration"] == body["usage"]["video_duration"]
    task = emu.account_state()["tasks"][0]
    assert (task["width"], task["height"]) == (960, 960)


def test_bad_media_fails_the_task_or_the_submit(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    base, root = served
    media_factories.make_wav(root / "long.wav", 21.0)
    media_factories.make_audio(root / "voice.flac", fmt="flac", seconds=1.0)
    emu = make_emulator(concurrency=4)
    cases = [
        (
            "astronaut.png",
            "long.wav",
            "InvalidURL",
            "The input audio is longer than 20s.",
        ),
        (
            "astronaut.png",
            "voice.flac",
            "InvalidURL",
            "File type is not supported. Allowed types are: .wav, .mp3.",
        ),
        ("rocket.jpg", "voice.wav", "InvalidFile.NoHuman", None),
        (
            "astronaut.png",
            "missing.wav",
            "InvalidURL",
            "Required URL is missing or invalid, please check the request URL.",
        ),
    ]
    # All at once: four slots, so the slow checks overlap.
    ids = [submit_ok(client, emu, f"{base}/{i}", f"{base}/{a}") for i, a, _, _ in cases]
    for task_id, (_, _, code, message) in zip(ids, cases, strict=True):
        body, _ = poll(client, emu, task_id)
        output = body["output"]
        assert output["task_status"] == "FAILED", output
        assert output["code"] == code
        if message:
            assert output["message"] == message
        assert TIMESTAMP.fullmatch(output["end_time"])
        assert "usage" not in body

    strict = make_emulator(input_errors="sync")
    refused = submit(client, strict, f"{base}/astronaut.png", f"{base}/long.wav")
    assert error_of(refused) == (
        400,
        "InvalidURL",
        "The input audio is longer than 20s.",
    )
    assert strict.account_state()["counts"].get("submissions", 0) == 0


@pytest.mark.parametrize(
    "seconds,size,message",
    [
        (19.99, None, None),
        (20.0, None, "The input audio is longer than 20s."),
        (1.0, 14_999_999, None),
        (1.0, 15_000_000, "File size is larger than 15MB."),
    ],
)
def test_audio_limits_are_exclusive_at_the_documented_boundary(
    tmp_path: Path, seconds: float, size: int | None, message: str | None
) -> None:
    path = media_factories.make_wav(tmp_path / "voice.wav", seconds)
    if size is not None:
        media_factories.pad_wav(path, size)
    limits = media.IMAGE_LIMITS  # the emulator's own copy of §3.1

    check = media.inspect_audio(
        path, max_seconds=limits.audio_max_seconds, max_bytes=limits.audio_max_bytes
    )

    assert check.ok == (message is None)
    assert (check.message or None) == message
    assert Config().audio_max_bytes == limits.audio_max_bytes == 15_000_000


def test_a_submit_at_the_audio_boundary_is_refused(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    base, root = served
    media_factories.make_wav(root / "twenty.wav", 20.0)
    media_factories.pad_wav(media_factories.make_wav(root / "big.wav", 1.0), 15_000_000)
    emu = make_emulator(input_errors="sync")

    for name, message in [
        ("twenty.wav", "The input audio is longer than 20s."),
        ("big.wav", "File size is larger than 15MB."),
    ]:
        refused = submit(client, emu, f"{base}/astronaut.png", f"{base}/{name}")
        assert error_of(refused) == (400, "InvalidURL", message)
    assert emu.account_state()["counts"].get("submissions", 0) == 0


def test_queue_overflow_keeps_the_second_task_pending(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(run_seconds_base=1.0)
    base, _ = served
    image, audio = f"{base}/astronaut.png", f"{base}/voice.wav"
    first = submit_ok(client, emu, image, audio)
    second = submit_ok(client, emu, image, audio)
    poll(client, emu, first, until=("RUNNING", *TERMINAL))
    assert get_task(client, emu, second)["output"]["task_status"] == "PENDING"
    body, _ = poll(client, emu, first)
    assert body["output"]["task_status"] == "SUCCEEDED"
    body, _ = poll(client, emu, second)
    assert body["output"]["task_status"] == "SUCCEEDED"

    account = emu.account_state()
    assert account["max_running"] == 1
    one, two = account["tasks"]
    assert two["start_time"] >= one["end_time"]
    assert len(account["idle_gaps"]) == 1
    end, start = account["idle_gaps"][0]
    assert end == one["end_time"] and start == two["start_time"]
    assert 0 <= start - end < 1.0


def test_reject_overflow_answers_429_while_the_slot_is_busy(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(overflow="reject", run_seconds_base=0.5)
    base, _ = served
    image, audio = f"{base}/astronaut.png", f"{base}/voice.wav"
    first = submit_ok(client, emu, image, audio)
    busy = submit(client, emu, image, audio)
    assert error_of(busy) == (429, "Throttling.RateQuota", MSG_RATE)
    poll(client, emu, first)
    second = submit_ok(client, emu, image, audio)
    assert poll(client, emu, second)[0]["output"]["task_status"] == "SUCCEEDED"
    account = emu.account_state()
    assert account["counts"]["submit_rejected_busy"] == 1
    assert account["max_running"] == 1
    assert len(account["idle_gaps"]) == 1


def test_sixth_submission_within_a_second_is_throttled(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    # Tasks that fail at once (missing audio) keep the machine idle.
    image, audio = f"{base}/astronaut.png", f"{base}/missing.wav"
    for _ in range(3):  # a loaded machine may need more than a second for six
        emu.reset()
        started = time.monotonic()
        statuses = [submit(client, emu, image, audio).status_code for _ in range(6)]
        if time.monotonic() - started < 0.9:
            break
    assert statuses == [200] * 5 + [429]
    counts = emu.account_state()["counts"]
    assert counts["submissions"] == 5
    assert counts["submit_throttled"] == 1


def test_task_queries_over_20_per_second_are_throttled(
    emu: Emulator, client: httpx.Client
) -> None:
    for _ in range(3):
        emu.reset()
        started = time.monotonic()
        codes = [
            client.get(f"{emu.base_url}/tasks/t", headers=auth()).status_code
            for _ in range(21)
        ]
        if time.monotonic() - started < 0.9:
            break
    assert codes == [200] * 20 + [429]


def test_cancel_works_only_while_pending(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(run_seconds_base=60)  # stop() ends the long run
    base, _ = served
    image, audio = f"{base}/astronaut.png", f"{base}/voice.wav"
    running = submit_ok(client, emu, image, audio)
    pending = submit_ok(client, emu, image, audio)
    poll(client, emu, running, until=("RUNNING",))

    cancel = client.post(f"{emu.base_url}/tasks/{pending}/cancel", headers=auth())
    assert cancel.status_code == 200
    assert cancel.json()["output"] == {"task_id": pending, "task_status": "CANCELED"}
    assert get_task(client, emu, pending)["output"]["task_status"] == "CANCELED"
    refused = (
        400,
        "UnsupportedOperation",
        "Failed to cancel the task, please confirm if the task is in PENDING status.",
    )
    for task_id in (running, pending, "no-such-task"):
        response = client.post(f"{emu.base_url}/tasks/{task_id}/cancel", headers=auth())
        assert error_of(response) == refused
    assert get_task(client, emu, running)["output"]["task_status"] == "RUNNING"


def test_pending_seconds_hold_a_task_pending_with_a_free_slot(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(pending_seconds=0.5)
    base, _ = served
    image, audio = f"{base}/astronaut.png", f"{base}/missing.wav"
    held = submit_ok(client, emu, image, audio)
    assert get_task(client, emu, held)["output"]["task_status"] == "PENDING"
    canceled = client.post(f"{emu.base_url}/tasks/{held}/cancel", headers=auth())
    assert canceled.status_code == 200
    task_id = submit_ok(client, emu, image, audio)
    body, seen = poll(client, emu, task_id)
    assert seen[0] == "PENDING"
    assert body["output"]["task_status"] == "FAILED"
    task = emu.account_state()["tasks"][1]
    assert task["start_time"] - task["submit_time"] >= 0.5


def test_unknown_other_account_and_expired_tasks_are_unknown(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    # 24 h scaled to 2 s.
    emu = make_emulator(
        time_scale=86400 / 2, api_keys=["sk-a:acct-1", "sk-a2:acct-1", "sk-b:acct-2"]
    )
    base, _ = served
    unknown = get_task(client, emu, "nope", key="sk-a")
    assert unknown["output"] == {"task_id": "nope", "task_status": "UNKNOWN"}

    task_id = submit_ok(
        client, emu, f"{base}/astronaut.png", f"{base}/missing.wav", key="sk-a"
    )
    status = get_task(client, emu, task_id, key="sk-a2")["output"]["task_status"]
    assert status != "UNKNOWN"  # same account, other key
    other = get_task(client, emu, task_id, key="sk-b")["output"]["task_status"]
    assert other == "UNKNOWN"
    body, _ = poll(client, emu, task_id, until=("UNKNOWN",), key="sk-a", timeout=20)
    assert body["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}
    assert emu.account_state()["tasks"][0]["expired"] is True


def test_result_urls_expire_24_hours_after_the_end(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator()
    base, _ = served
    task_id = submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/voice.wav")
    body, _ = poll(client, emu, task_id)
    url = body["output"]["results"]["video_url"]
    assert client.get(url).status_code == 200
    tampered = client.get(url.replace("Expires=", "Expires=1"))
    assert tampered.status_code == 403
    emu.advance_clock(23 * 3600)
    assert client.head(url).status_code == 200
    emu.advance_clock(3600 + 5)
    expired = client.get(url)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text
    # The task itself expired at the same time.
    status = get_task(client, emu, task_id)["output"]["task_status"]
    assert status == "UNKNOWN"


def test_list_tasks_pages_and_filters(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    ids = [
        submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/missing.wav")
        for _ in range(2)
    ]
    for task_id in ids:
        poll(client, emu, task_id)
    url = f"{emu.base_url}/tasks"
    page = client.get(url, params={"page_no": 1, "page_size": 1}, headers=auth())
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["total_page"], body["page_size"]) == (2, 2, 1)
    row = body["data"][0]
    assert row["task_id"] == ids[1]  # newest first
    # §1.2a: not a task object: `status`, no `task_status`, no `output`.
    assert row["status"] == "FAILED" and "task_status" not in row
    assert "output" not in body and "output" not in row
    assert row["model_name"] == "wan2.2-s2v"
    assert row["region"] == "cn-beijing"
    assert set(row) >= {"request_id", "api_key_id", "user_api_unique_key"}
    assert row["user_api_unique_key"].endswith(":video-synthesis:wan2.2-s2v")
    # Epoch milliseconds, in order, close to the provider clock.
    assert all(
        isinstance(row[k], int) for k in ("gmt_create", "start_time", "end_time")
    )
    assert row["gmt_create"] <= row["start_time"] <= row["end_time"]
    assert abs(row["gmt_create"] / 1000 - emu.state()["now"]) < 60
    only = client.get(url, params={"task_id": ids[0]}, headers=auth()).json()
    assert [r["task_id"] for r in only["data"]] == [ids[0]]
    failed = client.get(url, params={"status": "FAILED"}, headers=auth()).json()
    assert failed["total"] == 2
    running = client.get(url, params={"status": "RUNNING"}, headers=auth()).json()
    assert running["total"] == 0
    other = client.get(url, params={"model_name": "emo-v1"}, headers=auth()).json()
    assert other["total"] == 0
    future = client.get(
        url, params={"start_time": "20990101000000"}, headers=auth()
    ).json()
    assert future["total"] == 0
    bad = client.get(url, params={"page_size": 0}, headers=auth())
    assert error_of(bad)[:2] == (400, "InvalidParameter")
    # The window is at most 24 h (§1.2a).
    wide = client.get(
        url,
        params={"start_time": "20990101000000", "end_time": "20990102000001"},
        headers=auth(),
    )
    assert error_of(wide)[:2] == (400, "InvalidParameter")
    day = client.get(
        url,
        params={"start_time": "20990101000000", "end_time": "20990102000000"},
        headers=auth(),
    )
    assert day.status_code == 200


def test_a_listed_task_shows_start_and_end_only_once_reached(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    served: tuple[str, Path],
) -> None:
    emu = make_emulator(pending_seconds=30)
    base, _ = served
    task_id = submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/voice.wav")
    listing = client.get(f"{emu.base_url}/tasks", headers=auth())
    [row] = listing.json()["data"]
    assert (row["task_id"], row["status"]) == (task_id, "PENDING")
    assert isinstance(row["gmt_create"], int)
    assert "start_time" not in row and "end_time" not in row


def test_qwen_prefix_serves_the_same_api(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    qwen = emu.qwen_base_url
    image = upload(client, emu, ASTRONAUT, "wan2.2-s2v-detect", base=qwen)
    passed = detect(client, emu, image, base=qwen)
    assert passed.json()["output"]["check_pass"] is True
    # The trailing-slash form of the docs' curl examples (§1.2).
    response = client.post(
        f"{qwen}{SYNTH}/",
        json={
            "model": "wan2.2-s2v",
            "input": {
                "image_url": f"{base}/astronaut.png",
                "audio_url": f"{base}/missing.wav",
            },
        },
        headers=auth(**{"X-DashScope-Async": "enable"}),
    )
    assert response.status_code == 200, response.text
    task_id = response.json()["output"]["task_id"]
    status = client.get(f"{qwen}/tasks/{task_id}", headers=auth())
    assert status.json()["output"]["task_id"] == task_id


# Faults (control API)


def test_throttle_and_server_error_faults_hit_matching_routes(
    emu: Emulator, client: httpx.Client
) -> None:
    emu.faults(kind="throttle", count=2, route="detect")
    task_url = f"{emu.base_url}/tasks/t"
    assert client.get(task_url, headers=auth()).status_code == 200  # other route
    for _ in range(2):
        response = client.post(emu.base_url + DETECT, json={}, headers=auth())
        assert error_of(response) == (429, "Throttling.RateQuota", MSG_RATE)
    after = client.post(emu.base_url + DETECT, json={}, headers=auth())
    assert after.status_code == 400

    control = client.post(
        emu.url + "/_emulator/faults",
        json=[
            {"kind": "throttle", "code": "Throttling"},
            {"kind": "server_error"},
            {"kind": "server_error", "status": 503},
        ],
    )
    assert control.status_code == 200
    assert len(control.json()["faults"]) == 3
    assert error_of(client.get(task_url, headers=auth())) == (
        429,
        "Throttling",
        "Requests throttling triggered.",
    )
    assert error_of(client.get(task_url, headers=auth()))[:2] == (500, "InternalError")
    assert error_of(client.get(task_url, headers=auth())) == (
        503,
        "ModelUnavailable",
        "Model is unavailable, try again later.",
    )
    assert client.get(task_url, headers=auth()).status_code == 200
    assert client.get(emu.url + "/_emulator/faults").json()["faults"] == []


def test_bad_fault_specs_are_refused(emu: Emulator, client: httpx.Client) -> None:
    for spec in (
        {"kind": "nope"},
        {"kind": "throttle", "count": 0},
        {"kind": "slow", "route": "x"},
    ):
        response = client.post(emu.url + "/_emulator/faults", json=spec)
        assert response.status_code == 400, spec


def test_drop_fault_hangs_up_before_or_after_the_work(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    emu.faults(kind="drop", route="task")
    with pytest.raises(httpx.TransportError):
        client.get(f"{emu.base_url}/tasks/t", headers=auth())
    assert client.get(f"{emu.base_url}/tasks/t", headers=auth()).status_code == 200

    emu.faults(kind="drop", route="submit", when="after")
    with pytest.raises(httpx.TransportError):
        submit(client, emu, f"{base}/astronaut.png", f"{base}/missing.wav")
    # The task exists although its id never reached the client.
    assert emu.account_state()["counts"]["submissions"] == 1


def test_slow_fault_delays_the_answer(emu: Emulator, client: httpx.Client) -> None:
    emu.faults(kind="slow", delay_ms=400, route="task")
    started = time.monotonic()
    response = client.get(f"{emu.base_url}/tasks/t", headers=auth())
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    client.get(f"{emu.base_url}/tasks/t", headers=auth())
    assert time.monotonic() - started < 0.4


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            {"kind": "fail_task"},
            "InternalError",
            "An internal error has occured, try again later or contact service "
            "support.",
        ),
        (
            {"kind": "fail_task", "code": "InternalError.Algo", "message": "boom"},
            "InternalError.Algo",
            "boom",
        ),
        (
            {"kind": "moderation"},
            "DataInspectionFailed",
            "Input data may contain inappropriate content.",
        ),
        (
            {"kind": "moderation", "code": "IPInfringementSuspect"},
            "IPInfringementSuspect",
            "Input data is suspected of being involved in IP infringement.",
        ),
    ],
)
def test_task_faults_fail_the_next_task(
    emu: Emulator,
    client: httpx.Client,
    served: tuple[str, Path],
    spec: dict,
    code: str,
    message: str,
) -> None:
    base, _ = served
    emu.faults(spec)
    task_id = submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/voice.wav")
    body, _ = poll(client, emu, task_id)
    assert body["output"]["task_status"] == "FAILED"
    assert (body["output"]["code"], body["output"]["message"]) == (code, message)
    assert emu.faults() == []


def test_expire_results_fault_refuses_downloads_until_cleared(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    task_id = submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/voice.wav")
    url = poll(client, emu, task_id)[0]["output"]["results"]["video_url"]
    emu.faults(kind="expire_results")
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 403
        assert "Request has expired." in response.text
    cleared = client.post(
        emu.url + "/_emulator/faults/clear", json={"kind": "expire_results"}
    )
    assert cleared.json()["removed"] == 1
    assert client.get(url).status_code == 200


def test_account_error_fault_blocks_one_account_until_cleared(
    make_emulator: Callable[..., Emulator], client: httpx.Client
) -> None:
    emu = make_emulator(api_keys=["sk-a:acct-1", "sk-b:acct-2"])
    emu.faults(kind="account_error", account="acct-1")
    arrears = (
        400,
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
    )
    assert error_of(detect(client, emu, "http://127.0.0.1/a", key="sk-a")) == arrears
    assert error_of(client.get(f"{emu.base_url}/tasks/t", headers=auth("sk-a"))) == (
        arrears
    )
    assert (
        client.get(f"{emu.base_url}/tasks/t", headers=auth("sk-b")).status_code == 200
    )
    emu.clear_faults("account_error")
    assert (
        client.get(f"{emu.base_url}/tasks/t", headers=auth("sk-a")).status_code == 200
    )

    emu.faults(
        {"kind": "account_error", "code": "InvalidApiKey"},
        {"kind": "account_error", "code": "AccessDenied.Unpurchased", "count": 1},
    )
    assert error_of(client.get(f"{emu.base_url}/tasks/t", headers=auth("sk-b"))) == (
        401,
        "InvalidApiKey",
        "Invalid API-key provided.",
    )
    emu.clear_faults("account_error")
    emu.faults(kind="account_error", code="AccessDenied.Unpurchased")
    response = client.get(f"{emu.base_url}/tasks/t", headers=auth("sk-b"))
    assert error_of(response)[:2] == (403, "AccessDenied.Unpurchased")


def test_unknown_task_fault_answers_unknown_once(
    emu: Emulator, client: httpx.Client, served: tuple[str, Path]
) -> None:
    base, _ = served
    task_id = submit_ok(client, emu, f"{base}/astronaut.png", f"{base}/missing.wav")
    emu.faults(kind="unknown_task")
    assert get_task(client, emu, task_id)["output"]["task_status"] == "UNKNOWN"
    assert get_task(client, emu, task_id)["output"]["task_status"] != "UNKNOWN"


def test_state_reset_and_clock_over_http(emu: Emulator, client: httpx.Client) -> None:
    client.get(f"{emu.base_url}/tasks/t", headers=auth())
    state = client.get(emu.url + "/_emulator/state").json()
    assert state["accounts"]["acct-1"]["counts"]["task_queries"] == 1
    assert state["ttl"]["task"] == 86400
    before = state["now"]
    moved = client.post(emu.url + "/_emulator/clock", json={"advance": 3600}).json()
    assert moved["now"] >= before + 3600
    config = client.post(emu.url + "/_emulator/config", json={"overflow": "reject"})
    assert config.json()["overflow"] == "reject"
    assert client.post(emu.url + "/_emulator/reset").status_code == 200
    state = client.get(emu.url + "/_emulator/state").json()
    assert state["accounts"]["acct-1"]["counts"] == {}
    assert state["clock_offset"] == 0
    assert state["config"]["overflow"] == "queue"


def test_concurrent_face_checks_do_not_crash(
    make_emulator: Callable[..., Emulator], served: tuple[str, Path]
) -> None:
    emu = make_emulator(detect_rps=0)  # no rate limit
    base, _ = served
    results: list[int] = []

    def check() -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as c:
            response = detect(c, emu, f"{base}/astronaut.png")
            results.append(response.status_code)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * 4


# Robustness


def test_garbage_and_broken_requests_do_not_kill_the_server(
    emu: Emulator, client: httpx.Client
) -> None:
    host, port = "127.0.0.1", emu.port
    for raw in (
        b"NONSENSE\r\n\r\n",
        b"POST /api/v1/tasks/x/cancel HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort",
        b"\x00\xff" * 100,
    ):
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(raw)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            while conn.recv(4096):
                pass
    chunked = client.post(
        emu.base_url + DETECT,
        content=iter([b'{"model": "wan2.2-s2v-detect",', b' "input": {}}']),
        headers=auth(),
    )
    assert error_of(chunked)[:2] == (400, "BadRequest.EmptyInput")
    assert client.get(f"{emu.base_url}/tasks/t", headers=auth()).status_code == 200


def test_emulator_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")


def test_fault_flags_parse() -> None:
    assert parse_flag("throttle:3") == {"kind": "throttle", "count": 3}
    assert parse_flag("server_error:2:submit,status=503") == {
        "kind": "server_error",
        "count": 2,
        "route": "submit",
        "status": 503,
    }
    assert parse_flag("account_error:*,code=Arrearage") == {
        "kind": "account_error",
        "count": None,
        "code": "Arrearage",
    }
    assert parse_flag('{"kind": "slow", "delay_ms": 5}') == {
        "kind": "slow",
        "delay_ms": 5,
    }


def test_management_command_serves_until_interrupted() -> None:
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(manage),
            "dashscope_emulator",
            "--port",
            "0",
            "--quiet",
            "--fault",
            "throttle:1:task",
            "--api-key",
            "sk-cli:acct-cli",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/api/v1", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        url = match.group(1)
        with httpx.Client(timeout=10, trust_env=False) as c:
            first = c.get(f"{url}/api/v1/tasks/t", headers=auth("sk-cli"))
            assert first.status_code == 429
            second = c.get(f"{url}/api/v1/tasks/t", headers=auth("sk-cli"))
            assert second.json()["output"]["task_status"] == "UNKNOWN"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "Emulator stopped." in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_task_times_are_utc_plus_8_without_offset_and_appear_as_reached(
    make_emulator: Callable[..., Emulator],
    client: httpx.Client,
    wav: Path,
) -> None:
    from studio.providers.dashscope.client import parse_time

    emu = make_emulator(run_seconds_base=1.0)
    image = upload(client, emu, ASTRONAUT, "wan2.2-s2v")
    audio = upload(client, emu, wav, "wan2.2-s2v")
    task_id = submit_ok(client, emu, image, audio)

    running, _ = poll(client, emu, task_id, until=("RUNNING",))
    assert TIMESTAMP.fullmatch(running["output"]["scheduled_time"])
    assert "end_time" not in running["output"]
    done, _ = poll(client, emu, task_id)

    task = emu.account_state()["tasks"][0]
    for name, clock in (
        ("submit_time", "submit_time"),
        ("scheduled_time", "start_time"),
        ("end_time", "end_time"),
    ):
        text = done["output"][name]
        assert TIMESTAMP.fullmatch(text), text  # no offset, no "T", no "Z"
        # Read as UTC+8 it is the emulator's own moment, to the millisecond.
        assert parse_time(text).timestamp() == pytest.approx(task[clock], abs=0.0011)
    ran = parse_time(done["output"]["end_time"]) - parse_time(
        done["output"]["scheduled_time"]
    )
    assert ran.total_seconds() >= 0.998  # at least --run-seconds-base
