"""EMO: emo-detect-v1 and emo-v1 (provider-api.md §8), the client against the emulator."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio.media.video import probe_video
from studio.providers.dashscope.catalog import (
    EMO_PRICES,
    EMO_SIZES,
    emo_limits,
    region_of,
    serves,
)
from studio.providers.dashscope.client import (
    EMO_DETECT_MODEL,
    EMO_MODEL,
    DashScopeClient,
    DashScopeError,
    EmoDetectResult,
    ErrorKind,
    RemoteTask,
)
from tests import media_factories
from tests.test_dashscope_animate import post, uploaded, wait

DETECT = "/services/aigc/image2video/face-detect"
SYNTH = "/services/aigc/image2video/video-synthesis"
NO_HUMAN = (
    "The input image has no human body. Please upload other image with single person."
)
MULTI_HUMAN = (
    "The input image has multi human bodies. Please upload other image with single "
    "person."
)


@pytest.fixture
def client(emu: Any) -> Any:
    dashscope = DashScopeClient(api_key="sk-emulator", base_url=emu.base_url)
    yield dashscope
    dashscope.close()


def mocked(answer: dict[str, Any], seen: list[httpx.Request]) -> DashScopeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    return DashScopeClient(
        api_key="sk-test",
        base_url="https://dashscope.test/api/v1",
        transport=httpx.MockTransport(handler),
    )


def detected(
    client: DashScopeClient, image: Path, ratio: str = "1:1"
) -> EmoDetectResult:
    return client.detect_emo(uploaded(client, image, EMO_DETECT_MODEL), ratio=ratio)


def made(
    client: DashScopeClient,
    audio: Path,
    ratio: str = "1:1",
    style_level: str = "normal",
) -> RemoteTask:
    """Check the astronaut at `ratio`, submit it with `audio`, wait for the end."""
    check = detected(client, media_factories.ASTRONAUT, ratio)
    assert check.check_pass and check.face_bbox and check.ext_bbox
    task = client.submit_emo(
        uploaded(client, media_factories.ASTRONAUT, EMO_MODEL),
        uploaded(client, audio, EMO_MODEL),
        face_bbox=check.face_bbox,
        ext_bbox=check.ext_bbox,
        style_level=style_level,
    )
    return wait(client, task.task_id)


def emo_body(emu_client: DashScopeClient, audio: Path, **input: Any) -> dict[str, Any]:
    """An emo-v1 body with uploaded inputs and §8.1-shaped boxes for the astronaut."""
    return {
        "model": EMO_MODEL,
        "input": {
            "image_url": uploaded(emu_client, media_factories.ASTRONAUT, EMO_MODEL),
            "audio_url": uploaded(emu_client, audio, EMO_MODEL),
            "face_bbox": [165, 45, 285, 185],
            "ext_bbox": [75, 0, 425, 350],
            **input,
        },
        "parameters": {"style_level": "normal"},
    }


# The requests and the answers, at the transport


def test_detect_emo_posts_the_model_and_ratio_synchronously_and_reads_the_boxes():
    seen: list[httpx.Request] = []
    client = mocked(
        {
            "request_id": "r-1",
            "output": {
                "check_pass": True,
                "face_bbox": [302, 286, 610, 593],
                "ext_bbox": [71, 9, 840, 778],
            },
            "usage": {"image_count": 1},
        },
        seen,
    )

    result = client.detect_emo("https://s3/p.jpg", ratio="3:4")

    assert seen[0].url.path == "/api/v1" + DETECT
    assert "X-DashScope-Async" not in seen[0].headers
    assert json.loads(seen[0].content) == {
        "model": "emo-detect-v1",
        "input": {"image_url": "https://s3/p.jpg"},
        "parameters": {"ratio": "3:4"},
    }
    assert result.check_pass
    assert result.face_bbox == (302, 286, 610, 593)
    assert result.ext_bbox == (71, 9, 840, 778)


def test_a_failed_detect_has_no_boxes_and_keeps_the_message():
    client = mocked(
        {"output": {"check_pass": False, "message": NO_HUMAN}, "request_id": "r"}, []
    )

    result = client.detect_emo("https://s3/p.jpg", ratio="1:1")

    assert not result.check_pass
    assert (result.face_bbox, result.ext_bbox) == (None, None)
    assert result.message == NO_HUMAN


def test_submit_emo_posts_the_documented_body_asynchronously():
    seen: list[httpx.Request] = []
    client = mocked(
        {"output": {"task_id": "t-1", "task_status": "PENDING"}, "request_id": "r"},
        seen,
    )

    task = client.submit_emo(
        "https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/20251225/onmomb/emo.png",
        "https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/20250825/aejgyj/input_audio.mp3",
        face_bbox=(302, 286, 610, 593),
        ext_bbox=(71, 9, 840, 778),
    )

    assert seen[0].url.path == "/api/v1" + SYNTH
    assert seen[0].headers["X-DashScope-Async"] == "enable"
    # provider-api.md §11 F9, verbatim.
    assert json.loads(seen[0].content) == json.loads(
        '{"model": "emo-v1", "input": {"image_url": "https://help-static-aliyun-doc.'
        'aliyuncs.com/file-manage-files/zh-CN/20251225/onmomb/emo.png", "audio_url": '
        '"https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/'
        '20250825/aejgyj/input_audio.mp3", "face_bbox": [302,286,610,593], '
        '"ext_bbox": [71,9,840,778]}, "parameters": {"style_level": "normal"}}'
    )
    assert (task.task_id, task.status) == ("t-1", "PENDING")


@pytest.mark.parametrize(
    ("usage", "aspect_ratio", "service_mode"),
    [
        ({"video_duration": 5.2, "video_ratio": "3:4"}, "3:4", ""),
        ({"video_duration": 5.2, "video_ratio": "1:1"}, "1:1", ""),
        ({"video_duration": 5.2, "video_ratio": "standard"}, "", "standard"),
        ({"video_duration": 5.2, "video_ratio": "pro"}, "", "pro"),
    ],
)
def test_video_ratio_is_read_as_emos_aspect_or_animates_mode_never_both(
    usage, aspect_ratio, service_mode
):
    answer = {
        "request_id": "r",
        "output": {
            "task_id": "t-1",
            "task_status": "SUCCEEDED",
            "results": {"video_url": "https://oss/x.mp4"},
        },
        "usage": usage,
    }

    task = mocked(answer, []).get_task("t-1")

    assert task.billed_seconds == Decimal("5.2")
    assert (task.aspect_ratio, task.service_mode) == (aspect_ratio, service_mode)
    assert task.resolution == ""


def test_a_ratio_or_style_level_emo_does_not_take_is_a_bug_not_a_request():
    client = DashScopeClient(api_key="sk-test", base_url="https://dashscope.test")
    with pytest.raises(ValueError):
        client.detect_emo("u", ratio="16:9")
    with pytest.raises(ValueError):
        client.submit_emo(
            "u", "a", face_bbox=(0, 0, 1, 1), ext_bbox=(0, 0, 2, 2), style_level="wild"
        )


# Catalog data


def test_emo_is_served_from_beijing_only_as_the_base_url_says():
    assert region_of("https://dashscope.aliyuncs.com/api/v1") == "cn-beijing"
    assert region_of("https://dashscope-intl.aliyuncs.com/api/v1") == "ap-southeast-1"
    assert region_of("https://ws-1.ap-southeast-1.maas.aliyuncs.com/api/v1") == (
        "ap-southeast-1"
    )
    assert region_of("https://api.bltcy.ai/qwen/api/v1") == ""
    for model in (EMO_MODEL, EMO_DETECT_MODEL):
        assert serves(model, base_url="https://dashscope.aliyuncs.com/api/v1")
        assert not serves(model, base_url="https://dashscope-intl.aliyuncs.com/api/v1")
        # A proxy or an emulator does not say: the provider decides.
        assert serves(model, base_url="http://127.0.0.1:8765/api/v1")
    assert serves("wan2.2-animate-move", base_url="https://dashscope-intl.aliyuncs.com")


def test_emo_limits_take_a_minute_of_audio_and_name_the_ratios():
    limits = emo_limits()
    assert (limits.audio_max_seconds, limits.audio_max_bytes) == (60.0, 15_000_000)
    assert (limits.image_min_side, limits.image_max_side) == (400, 7000)
    assert limits.resolutions == ("1:1", "3:4") == tuple(EMO_SIZES)
    assert limits.concurrency == 1


# emo-detect-v1 against the emulator


@pytest.mark.parametrize(("ratio", "aspect"), [("1:1", 1.0), ("3:4", 4 / 3)])
def test_detect_passes_a_portrait_with_boxes_at_the_ratio(emu, client, ratio, aspect):
    result = detected(client, media_factories.ASTRONAUT, ratio)

    assert result.check_pass, result.message
    assert result.face_bbox is not None and result.ext_bbox is not None
    fx1, fy1, fx2, fy2 = result.face_bbox
    x1, y1, x2, y2 = result.ext_bbox
    assert (y2 - y1) / (x2 - x1) == pytest.approx(aspect)
    # The face inside the region, the region inside the 512×512 image.
    assert 0 <= x1 <= fx1 < fx2 <= x2 <= 512
    assert 0 <= y1 <= fy1 < fy2 <= y2 <= 512
    # Room around the face: the region is well over the face's size.
    assert (x2 - x1) >= 2 * (fx2 - fx1)
    assert emu.account_state()["counts"]["detect_calls"] == 1


def test_detect_fails_an_image_without_a_person_with_the_documented_message(
    emu, client
):
    result = detected(client, media_factories.NO_FACE)

    assert not result.check_pass
    assert result.message == NO_HUMAN
    assert (result.face_bbox, result.ext_bbox) == (None, None)
    # §8: billed even so.
    assert emu.account_state()["counts"]["detect_calls"] == 1


def test_detect_fails_an_image_of_several_people_with_the_documented_message(
    emu, client, tmp_path
):
    group = media_factories.make_group(tmp_path / "pair.jpg", people=2)

    result = detected(client, group, "3:4")

    assert not result.check_pass
    assert result.message == MULTI_HUMAN


def test_detect_refuses_a_ratio_it_does_not_know(emu, client):
    image_url = uploaded(client, media_factories.ASTRONAUT, EMO_DETECT_MODEL)
    response = httpx.post(
        emu.base_url + DETECT,
        json={
            "model": EMO_DETECT_MODEL,
            "input": {"image_url": image_url},
            "parameters": {"ratio": "16:9"},
        },
        headers={
            "Authorization": "Bearer sk-emulator",
            "X-DashScope-OssResourceResolve": "enable",
        },
    )

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert "ratio" in response.json()["message"]


# emo-v1 against the emulator


@pytest.mark.parametrize("ratio", ["1:1", "3:4"])
def test_emo_makes_a_video_of_the_ratios_size_as_long_as_the_audio(
    emu, client, tmp_path, ratio
):
    audio = media_factories.make_mp3(tmp_path / "speech.mp3", 3.0)

    task = made(client, audio, ratio, style_level="calm")

    assert task.status == "SUCCEEDED", (task.code, task.message)
    assert task.aspect_ratio == ratio
    assert task.service_mode == ""
    assert task.billed_seconds is not None
    assert abs(task.billed_seconds - Decimal("3.0")) <= Decimal("0.05")
    result = tmp_path / "result.mp4"
    with result.open("wb") as fh:
        assert client.download(task.video_url, fh, max_bytes=10**8).startswith("video/")
    info = probe_video(result)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == EMO_SIZES[ratio]
    assert abs(info.duration - 3.0) <= 0.1
    (state,) = emu.account_state()["tasks"][-1:]
    assert (state["ratio"], state["style_level"]) == (ratio, "calm")


def test_an_unknown_style_level_is_refused_with_the_documented_message(
    emu, client, tmp_path
):
    body = emo_body(client, media_factories.make_wav(tmp_path / "a.wav", 2.0))
    body["parameters"] = {"style_level": "wild"}

    response = post(emu, body)

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert response.json()["message"] == "The style_level is invalid."
    assert emu.account_state()["counts"].get("submissions", 0) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"face_bbox": None}, "Required parameter(face_bbox) missing or invalid"),
        ({"ext_bbox": None}, "Invalid ext_bbox."),
        ({"ext_bbox": [75, 0, 425, 500]}, "Invalid ext_bbox."),  # not 1:1 nor 3:4
        ({"ext_bbox": [200, 0, 550, 350]}, "Invalid ext_bbox."),  # face outside
    ],
)
def test_a_missing_or_unusable_box_is_refused_at_submit(
    emu, client, tmp_path, change, message
):
    body = emo_body(client, media_factories.make_wav(tmp_path / "a.wav", 2.0))
    for name, value in change.items():
        if value is None:
            del body["input"][name]
        else:
            body["input"][name] = value

    response = post(emu, body)

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert response.json()["message"].startswith(message)


def test_a_box_outside_the_image_is_refused_when_the_image_is_read(
    emu, client, tmp_path
):
    emu.configure(input_errors="sync")
    # A 1:1 region reaching past the 512×512 astronaut.
    body = emo_body(
        client,
        media_factories.make_wav(tmp_path / "a.wav", 2.0),
        ext_bbox=[100, 0, 700, 600],
    )

    response = post(emu, body)

    assert response.status_code == 400
    assert response.json()["message"] == "Invalid ext_bbox."


def test_audio_of_a_minute_or_more_is_refused(emu, client, tmp_path):
    emu.configure(input_errors="sync")
    long = media_factories.make_wav(tmp_path / "long.wav", 61.0)
    check = detected(client, media_factories.ASTRONAUT)
    assert check.face_bbox and check.ext_bbox

    with pytest.raises(DashScopeError) as excinfo:
        client.submit_emo(
            uploaded(client, media_factories.ASTRONAUT, EMO_MODEL),
            uploaded(client, long, EMO_MODEL),
            face_bbox=check.face_bbox,
            ext_bbox=check.ext_bbox,
        )

    error = excinfo.value
    assert (error.status, error.code, error.kind) == (
        400,
        "InvalidURL",
        ErrorKind.INPUT,
    )
    assert error.message == "The input audio is longer than 60s."


def test_audio_over_a_minute_fails_the_task_when_checked_later(emu, client, tmp_path):
    task = made(client, media_factories.make_wav(tmp_path / "long.wav", 61.0))

    assert (task.status, task.code) == ("FAILED", "InvalidURL")
    assert task.message == "The input audio is longer than 60s."
    assert task.billed_seconds is None


def test_moderation_fails_an_emo_task_as_the_inputs_fault(emu, client, tmp_path):
    emu.faults(kind="moderation", code="DataInspectionFailed")

    task = made(client, media_factories.make_wav(tmp_path / "a.wav", 2.0))

    assert (task.status, task.code) == ("FAILED", "DataInspectionFailed")
    failure = task.failure()
    assert failure is not None and failure.kind == ErrorKind.INPUT


def test_emo_runs_one_task_at_a_time_and_queues_the_next(emu, client, tmp_path):
    emu.configure(run_seconds_base=1.5)
    audio = media_factories.make_wav(tmp_path / "a.wav", 2.0)
    check = detected(client, media_factories.ASTRONAUT)
    assert check.face_bbox and check.ext_bbox
    image_url = uploaded(client, media_factories.ASTRONAUT, EMO_MODEL)
    audio_url = uploaded(client, audio, EMO_MODEL)

    first, second = (
        client.submit_emo(
            image_url, audio_url, face_bbox=check.face_bbox, ext_bbox=check.ext_bbox
        )
        for _ in range(2)
    )

    assert client.get_task(first.task_id).status == "RUNNING"
    assert client.get_task(second.task_id).status == "PENDING"
    assert wait(client, first.task_id).status == "SUCCEEDED"
    assert wait(client, second.task_id).status == "SUCCEEDED"
    assert emu.account_state()["max_running"] == 1


# The price table (migration 0020)


@pytest.mark.django_db
def test_emo_prices_are_seeded_per_ratio_and_check_in_both_currencies():
    from studio.models import Price

    for provider in ("dashscope", "emulator"):
        for currency, prices in EMO_PRICES.items():
            rows = Price.objects.filter(
                provider=provider, model__startswith="emo-", currency=currency
            )
            seeded = {
                (row.model, row.unit, row.resolution): row.unit_price for row in rows
            }
            assert seeded == {
                (EMO_DETECT_MODEL, "image", ""): prices["check"],
                (EMO_MODEL, "second", "1:1"): prices["1:1"],
                (EMO_MODEL, "second", "3:4"): prices["3:4"],
            }
            assert all(
                ("unconfirmed" in row.source) == (currency == "USD") for row in rows
            )
