"""wan2.2-animate-move / -mix (provider-api.md §7): the client against the emulator."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio.media.video import probe_video
from studio.providers.base import TaskState
from studio.providers.dashscope.client import (
    ANIMATE_MIX_MODEL,
    ANIMATE_MOVE_MODEL,
    ANIMATE_PRO,
    ANIMATE_STANDARD,
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    RemoteTask,
    state_of,
)
from studio.providers.dashscope.provider import user_message
from tests import media_factories

SYNTH = "/services/aigc/image2video/video-synthesis"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")
MODES = {ANIMATE_STANDARD: "standard", ANIMATE_PRO: "pro"}


@pytest.fixture
def client(emu: Any) -> Any:
    dashscope = DashScopeClient(api_key="sk-emulator", base_url=emu.base_url)
    yield dashscope
    dashscope.close()


def uploaded(client: DashScopeClient, path: Path, model: str) -> str:
    """The §5 flow: an oss:// URL for `path`, bound to `model`."""
    return client.upload(policy=client.upload_policy(model=model), path=path)


def inputs(
    client: DashScopeClient, video: Path, model: str = ANIMATE_MOVE_MODEL
) -> tuple[str, str]:
    image = uploaded(client, media_factories.ASTRONAUT, model)
    return image, uploaded(client, video, model)


def wait(client: DashScopeClient, task_id: str, timeout: float = 60.0) -> RemoteTask:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get_task(task_id)
        if task.status in TERMINAL or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def made(
    client: DashScopeClient,
    video: Path,
    model: str = ANIMATE_MOVE_MODEL,
    mode: str = ANIMATE_STANDARD,
) -> RemoteTask:
    """Upload the astronaut and `video`, submit, and wait for the task to end."""
    image_url, video_url = inputs(client, video, model)
    task = client.submit_animate(image_url, video_url, model=model, mode=mode)
    return wait(client, task.task_id)


def post(emu: Any, body: dict[str, Any]) -> httpx.Response:
    headers = {
        "Authorization": "Bearer sk-emulator",
        "X-DashScope-Async": "enable",
        "X-DashScope-OssResourceResolve": "enable",
    }
    return httpx.post(emu.base_url + SYNTH, json=body, headers=headers, timeout=30)


# The request and the answer, at the transport


def test_submit_animate_posts_the_documented_body_asynchronously():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "output": {"task_status": "PENDING", "task_id": "0385dc79"},
                "request_id": "4909100c",
            },
        )

    client = DashScopeClient(
        api_key="sk-test",
        base_url="https://dashscope.test/api/v1",
        transport=httpx.MockTransport(handler),
    )
    task = client.submit_animate(
        "https://s3/p.jpg", "https://s3/v.mp4", model=ANIMATE_MIX_MODEL, mode="wan-pro"
    )

    assert seen[0].url.path == "/api/v1" + SYNTH
    assert seen[0].headers["X-DashScope-Async"] == "enable"
    assert json.loads(seen[0].content) == {
        "model": "wan2.2-animate-mix",
        "input": {
            "image_url": "https://s3/p.jpg",
            "video_url": "https://s3/v.mp4",
            "watermark": False,
        },
        "parameters": {"mode": "wan-pro", "check_image": True},
    }
    assert (task.task_id, task.status) == ("0385dc79", "PENDING")


def test_the_documented_success_reads_billed_seconds_and_service_mode():
    # provider-api.md §11 F7, verbatim.
    answer = {
        "request_id": "a67f8716-18ef-447c-a286-xxxxxx",
        "output": {
            "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx",
            "task_status": "SUCCEEDED",
            "submit_time": "2025-09-18 15:32:00.105",
            "scheduled_time": "2025-09-18 15:32:15.066",
            "end_time": "2025-09-18 15:34:41.898",
            "results": {"video_url": "http://dashscope-result-bj/xxxxx.mp4?Expires=1"},
        },
        "usage": {"video_duration": 5.2, "video_ratio": "standard"},
    }
    client = DashScopeClient(
        api_key="sk-test",
        base_url="https://dashscope.test/api/v1",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer)),
    )

    task = client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")

    assert task.billed_seconds == Decimal("5.2")
    assert task.service_mode == "standard"
    assert task.resolution == ""  # not an aspect ratio, nor a tier
    assert task.video_url.endswith(".mp4?Expires=1")
    assert task.failure() is None


def test_a_model_or_mode_that_is_not_animate_is_a_bug_not_a_request():
    client = DashScopeClient(api_key="sk-test", base_url="https://dashscope.test")
    with pytest.raises(ValueError):
        client.submit_animate("u", "v", model="wan2.2-s2v", mode="wan-std")
    with pytest.raises(ValueError):
        client.submit_animate("u", "v", model=ANIMATE_MOVE_MODEL, mode="720P")


# Against the emulator


@pytest.mark.parametrize("model", [ANIMATE_MOVE_MODEL, ANIMATE_MIX_MODEL])
@pytest.mark.parametrize("mode", [ANIMATE_STANDARD, ANIMATE_PRO])
def test_animate_makes_a_video_as_long_as_the_reference(
    emu, client, reference, tmp_path, model, mode
):
    task = made(client, reference, model, mode)

    assert task.status == "SUCCEEDED", (task.code, task.message)
    assert task.billed_seconds == Decimal("2.5")
    assert task.service_mode == MODES[mode]
    result = tmp_path / "result.mp4"
    with result.open("wb") as fh:
        assert client.download(task.video_url, fh, max_bytes=10**8).startswith("video/")
    info = probe_video(result)
    assert info.video_codec == "h264"
    # Whole frames at 15 or 25 fps: within one frame of the reference.
    assert abs(info.duration - 2.5) <= 1 / 15
    assert (info.width, info.height) == (320, 240)


def test_missing_or_unknown_mode_is_refused_as_invalid_parameter(
    emu, client, reference
):
    image_url, video_url = inputs(client, reference)
    body: dict[str, Any] = {
        "model": ANIMATE_MOVE_MODEL,
        "input": {"image_url": image_url, "video_url": video_url},
        "parameters": {},
    }
    expected = (
        "Required parameter(mode) missing or invalid, please check the request "
        "parameters."
    )

    for parameters in ({}, {"mode": "wan-ultra"}, {"mode": "720P"}):
        response = post(emu, {**body, "parameters": parameters})
        assert response.status_code == 400
        assert response.json()["code"] == "InvalidParameter"
        assert response.json()["message"] == expected

    response = post(emu, {k: v for k, v in body.items() if k != "parameters"})
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest.EmptyParameters"
    assert emu.account_state().get("counts", {}).get("submissions", 0) == 0


@pytest.mark.parametrize(
    ("seconds", "size", "code", "message"),
    [
        (
            1.0,
            (320, 240),
            "InvalidFile.Duration",
            "Invalid file duration. The file duration must be 2 s ~ 30 s.",
        ),
        (2.5, (420, 210), None, None),  # 2:1 is within 1:3 to 3:1
        (
            2.5,
            (640, 200),
            "InvalidFile.AspectRatio",
            "Invalid file ratio. The file aspect ratio (height/width) must be "
            "between 3:1 and 1:3.",
        ),
        (2.5, (240, 160), "InvalidFile.Resolution", None),
    ],
)
def test_a_reference_out_of_limits_is_refused_at_submit(
    emu, client, tmp_path, seconds, size, code, message
):
    emu.configure(input_errors="sync")
    video = media_factories.make_reference_mp4(tmp_path / "ref.mp4", seconds, size=size)
    image_url, video_url = inputs(client, video)

    if code is None:
        client.submit_animate(
            image_url, video_url, model=ANIMATE_MOVE_MODEL, mode="wan-std"
        )
        return
    with pytest.raises(DashScopeError) as excinfo:
        client.submit_animate(
            image_url, video_url, model=ANIMATE_MOVE_MODEL, mode="wan-std"
        )

    error = excinfo.value
    assert (error.status, error.code, error.kind) == (400, code, ErrorKind.INPUT)
    if message:
        assert error.message == message
    assert not error.unanswered  # a 400: no task was made


def test_a_reference_out_of_limits_fails_the_task_when_checked_later(
    emu, client, tmp_path
):
    video = media_factories.make_reference_mp4(tmp_path / "short.mp4", 1.0)
    task = made(client, video, ANIMATE_MOVE_MODEL, ANIMATE_STANDARD)

    assert (task.status, task.code) == ("FAILED", "InvalidFile.Duration")
    failure = task.failure()
    assert failure is not None and failure.kind == ErrorKind.INPUT
    assert "2 to 30 seconds" in user_message(
        task.code, task.message, model=ANIMATE_MOVE_MODEL
    )


@pytest.mark.parametrize("code", ["IPInfringementSuspect", "DataInspectionFailed"])
def test_moderation_is_a_permanent_input_error_with_a_plain_message(
    emu, client, reference, code
):
    emu.faults(kind="moderation", code=code)
    task = made(client, reference, ANIMATE_MIX_MODEL, ANIMATE_STANDARD)

    assert (task.status, task.code) == ("FAILED", code)
    assert task.billed_seconds is None  # failures are free (§7.3)
    failure = task.failure()
    assert failure is not None
    assert failure.kind == ErrorKind.INPUT and failure.permanent
    message = user_message(task.code, task.message, model=ANIMATE_MIX_MODEL)
    assert "character image or reference video" in message
    assert code not in message


def test_a_second_task_of_the_model_stays_pending_until_the_first_ends(
    emu, client, reference
):
    emu.configure(run_seconds_base=1.5)
    image_url, video_url = inputs(client, reference)
    mix_image, mix_video = inputs(client, reference, ANIMATE_MIX_MODEL)

    first = client.submit_animate(
        image_url, video_url, model=ANIMATE_MOVE_MODEL, mode="wan-std"
    )
    second = client.submit_animate(
        image_url, video_url, model=ANIMATE_MOVE_MODEL, mode="wan-std"
    )
    other = client.submit_animate(
        mix_image, mix_video, model=ANIMATE_MIX_MODEL, mode="wan-std"
    )

    assert client.get_task(first.task_id).status == "RUNNING"
    assert client.get_task(second.task_id).status == "PENDING"
    # §7.3 gives each model its own slot: mix is not held up by move.
    assert client.get_task(other.task_id).status == "RUNNING"
    assert wait(client, first.task_id).status == "SUCCEEDED"
    assert client.get_task(second.task_id).status in ("RUNNING", "SUCCEEDED")
    assert wait(client, second.task_id).status == "SUCCEEDED"
    assert wait(client, other.task_id).status == "SUCCEEDED"


def test_an_animate_task_is_forgotten_after_24_hours(emu, client, reference):
    task = made(client, reference, ANIMATE_MOVE_MODEL, ANIMATE_PRO)
    assert task.status == "SUCCEEDED"

    emu.advance_clock(24 * 3600 + 1)

    expired = client.get_task(task.task_id)
    assert expired.status == "UNKNOWN"
    assert state_of(expired.status) == TaskState.EXPIRED


# The price table (migration 0019)


@pytest.mark.django_db
def test_animate_prices_are_seeded_per_model_and_mode_and_marked_unconfirmed():
    from studio.models import Price
    from studio.providers.dashscope.catalog import ANIMATE_MODES, ANIMATE_PRICES

    for provider in ("dashscope", "emulator"):
        rows = Price.objects.filter(
            provider=provider, model__startswith="wan2.2-animate"
        )
        seeded = {
            (row.currency, row.model, row.resolution): row.unit_price for row in rows
        }
        assert seeded == {
            (currency, model, mode): price
            for currency, models in ANIMATE_PRICES.items()
            for model, prices in models.items()
            for mode, price in prices.items()
        }
        assert all("unconfirmed" in row.source and row.unit == "second" for row in rows)
    # The studio's default currency is priced too, converted at the s2v rate.
    usd, cny = ANIMATE_PRICES["USD"], ANIMATE_PRICES["CNY"]
    rate = Decimal("0.071677") / Decimal("0.5")
    for model, prices in cny.items():
        for mode, price in prices.items():
            assert usd[model][mode] == (price * rate).quantize(Decimal("0.000001"))
    # Every studio tier has a price line under its mode word.
    assert set(ANIMATE_MODES.values()) == {mode for _, _, mode in seeded}
