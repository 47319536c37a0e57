"""The WaveSpeed provider behind the studio's contract (provider-api.md §9).

Against httpx.MockTransport: states, failures, billing, staging, the listing,
webhook signatures and the callback view, and what a finished job costs.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from studio import billing, services
from studio.models import GenerationJob, Price, RemoteUpload, Task
from studio.providers import get_provider
from studio.providers.base import (
    GenerationRequest,
    InputFile,
    ProviderError,
    TaskResult,
    TaskState,
)
from studio.providers.wavespeed import client as ws_client
from studio.providers.wavespeed import provider as ws_provider
from studio.providers.wavespeed import views as ws_views
from studio.providers.wavespeed.client import WaveSpeedClient
from studio.providers.wavespeed.provider import WaveSpeedProvider
from studio.providers.wavespeed.webhooks import sign, verify
from studio.queue import poll, recovery, slots, submit
from tests import media_factories
from tests.conftest import ASTRONAUT

BASE = "https://wavespeed.test"
MODEL = "wavespeed-ai/wan-2.2/speech-to-video"
CDN = "https://cdn.wavespeed.test"
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def prediction(
    status: str = "created", pid: str = "pred_1", **fields: Any
) -> dict[str, Any]:
    return {
        "id": pid,
        "model": MODEL,
        "outputs": [],
        "urls": {"get": f"{BASE}/api/v3/predictions/{pid}/result"},
        "has_nsfw_contents": [],
        "status": status,
        "created_at": "2026-11-29T12:00:00.123Z",
        "error": "",
        "timings": {"inference": 0},
        **fields,
    }


class Fake:
    """A scripted WaveSpeed: records requests, answers from handlers by path."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.uploads = 0
        self.result: dict[str, Any] | httpx.Response = prediction("processing")
        self.submit: dict[str, Any] | httpx.Response | Exception = prediction()
        self.pages: list[Any] = []
        self.video = b"\x00\x00\x00\x18ftypmp42" + b"v" * 64

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v3/media/upload/binary":
            self.uploads += 1
            return httpx.Response(
                200,
                json=envelope(
                    {
                        "type": "image",
                        "download_url": f"{CDN}/u/{self.uploads}",
                        "filename": "x",
                        "size": 1,
                    }
                ),
            )
        if path == f"/api/v3/{MODEL}":
            return self._answer(self.submit)
        if path.endswith("/result"):
            return self._answer(self.result)
        if path == "/api/v3/predictions":
            return httpx.Response(200, json=envelope(self.pages.pop(0)))
        if path == "/api/v3/webhook/secret":
            return httpx.Response(200, json=envelope({"secret": SECRET}))
        if request.url.host == "cdn.wavespeed.test" and path.endswith(".mp4"):
            return httpx.Response(
                200, content=self.video, headers={"content-type": "video/mp4"}
            )
        return httpx.Response(404, json={"code": 404, "message": "not found"})

    @staticmethod
    def _answer(answer: Any) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=envelope(answer))

    def posted(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/api/v3/{MODEL}"]


@pytest.fixture
def fake() -> Fake:
    return Fake()


def make_provider(
    fake: Fake, *, name: str = "wavespeed", seconds: float | None = 2.0
) -> WaveSpeedProvider:
    client = WaveSpeedClient(
        api_key="ws-key",
        base_url=BASE,
        transport=httpx.MockTransport(fake),
        sleep=lambda s: None,
    )
    return WaveSpeedProvider(
        name=name,
        api_key="ws-key",
        client=client,
        input_seconds=lambda provider, task: seconds,
    )


@pytest.fixture
def provider(fake: Fake, settings: Any) -> WaveSpeedProvider:
    settings.S2V_PUBLIC_BASE_URL = ""
    return make_provider(fake)


def inputs(tmp_path: Path) -> tuple[InputFile, InputFile]:
    portrait = tmp_path / "p.png"
    portrait.write_bytes(ASTRONAUT.read_bytes())
    audio = media_factories.make_wav(tmp_path / "a.wav", 2.0)
    return (
        InputFile(
            portrait, hashlib.sha256(portrait.read_bytes()).hexdigest(), format="PNG"
        ),
        InputFile(audio, hashlib.sha256(audio.read_bytes()).hexdigest(), format="wav"),
    )


def request_for(
    tmp_path: Path, *, resolution: str = "480P", **fields: Any
) -> GenerationRequest:
    portrait, audio = inputs(tmp_path)
    return GenerationRequest(
        job_code="job-1",
        portrait=portrait,
        audio=audio,
        resolution=resolution,
        **fields,
    )


# -- states -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "state", "retryable"),
    [
        ("created", TaskState.PENDING, False),
        ("processing", TaskState.RUNNING, False),
        ("failed", TaskState.FAILED, False),
        ("cancelled", TaskState.FAILED, True),
        ("timeout", TaskState.FAILED, True),
        ("deleted", TaskState.EXPIRED, False),
        ("something-new", TaskState.FAILED, False),
    ],
)
def test_wavespeed_words_map_to_states_and_are_kept(
    provider, fake, word, state, retryable
):
    fake.result = prediction(word)
    result = provider.poll("pred_1")
    assert result.state == state
    assert result.remote_status == word
    assert result.retryable is retryable
    if state in (TaskState.FAILED, TaskState.EXPIRED):
        assert result.error_code and result.error_message


def test_a_completed_prediction_names_its_first_output_and_its_billed_seconds(
    provider, fake
):
    fake.result = prediction(
        "completed",
        outputs=[f"{CDN}/v.mp4", f"{CDN}/other.mp4"],
        has_nsfw_contents=[False],
    )
    result = provider.poll("pred_1")
    assert result.state == TaskState.SUCCEEDED
    assert result.video_url == f"{CDN}/v.mp4"
    assert result.billed_seconds == Decimal(3)  # 2 s of audio: the 3 s minimum


def test_a_task_the_studio_did_not_make_has_its_tier_but_no_invented_seconds(fake):
    """§9.3 reports no billed length; the echoed `input` gives the tier."""
    provider = make_provider(fake, seconds=None)
    fake.result = prediction(
        "completed",
        outputs=[f"{CDN}/v.mp4"],
        input={"image": "i", "audio": "a", "resolution": "720p"},
    )
    result = provider.poll("pred_1")
    assert (result.state, result.resolution) == (TaskState.SUCCEEDED, "720P")
    assert result.billed_seconds is None
    assert "does not report the seconds it billed" in result.billing_note


def test_an_id_wavespeed_no_longer_knows_has_expired(provider, fake):
    fake.result = httpx.Response(
        404, json={"code": 404, "message": "prediction not found"}
    )
    result = provider.poll("pred_old")
    assert result.state == TaskState.EXPIRED
    assert result.error_code == "TaskExpired"
    assert "7 days" in result.error_message


@pytest.mark.parametrize(
    "fields",
    [
        {"outputs": [f"{CDN}/v.mp4"], "has_nsfw_contents": [True]},
        {"outputs": [f"{CDN}/v.mp4"], "has_nsfw_contents": True},
        {"outputs": [], "has_nsfw_contents": [True]},
    ],
)
def test_a_flagged_result_that_is_not_billed_is_a_free_failure_in_plain_words(
    provider, fake, fields, settings
):
    settings.S2V_WAVESPEED_NSFW_BILLED = False
    fake.result = prediction("completed", **fields)
    result = provider.poll("pred_1")
    assert result.state == TaskState.FAILED
    assert result.error_code == "ContentRefused"
    assert "flagged this video as unsafe" in result.error_message
    assert "It was not charged" in result.error_message
    assert not result.retryable and not result.video_url
    assert result.billed_seconds is None
    assert result.billing_note.startswith("Not billed")


@pytest.mark.parametrize(
    "fields",
    [
        {"outputs": [f"{CDN}/v.mp4"], "has_nsfw_contents": [True]},
        {"outputs": [], "has_nsfw_contents": True},
    ],
)
def test_a_flagged_result_that_is_billed_succeeds_charged_without_a_video(
    provider, fake, fields
):
    """S2V_WAVESPEED_NSFW_BILLED (default true): the task's seconds are charged,
    and the flagged video is never handed over: fetching it says why."""
    fake.result = prediction("completed", **fields)
    result = provider.poll("pred_1")
    assert result.state == TaskState.SUCCEEDED
    assert result.billed_seconds == Decimal(3)
    assert not result.video_url
    with pytest.raises(ProviderError) as caught:
        provider.fetch(result, io.BytesIO())
    assert caught.value.code == "ContentFlagged" and caught.value.permanent
    assert "flagged this video as unsafe" in str(caught.value)
    assert "It was charged" in str(caught.value)


def test_a_completed_prediction_without_outputs_is_a_content_refusal(provider, fake):
    fake.result = prediction("completed", outputs=[])
    result = provider.poll("pred_1")
    assert (result.state, result.error_code, result.retryable) == (
        TaskState.FAILED,
        "NoOutput",
        False,
    )
    assert "content check" in result.error_message
    assert result.billed_seconds is None


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        ("NSFW content detected", "ContentRefused", False),
        ("No face detected in the image", "NoFace", False),
        ("Audio duration exceeds the limit", "AudioLength", False),
        ("Unsupported image format", "InputUnreadable", False),
        ("Failed to download audio", "ProviderTrouble", True),
        ("Internal server error", "ProviderTrouble", True),
        ("Something odd", "TaskFailed", False),
        ("", "TaskFailed", False),
    ],
)
def test_failure_texts_become_plain_messages_that_say_what_to_do(
    provider, fake, error, code, retryable
):
    fake.result = prediction("failed", error=error)
    result = provider.poll("pred_1")
    assert (result.error_code, result.retryable) == (code, retryable)
    assert result.error_message.endswith(".")
    if code == "TaskFailed" and error:
        assert error in result.error_message


# -- billing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "billed"),
    [(0.4, 3), (2.0, 3), (3.0, 3), (3.01, 4), (7.5, 8), (12.0, 12), (119.2, 120)],
)
def test_billed_seconds_are_the_input_rounded_up_with_a_3_s_minimum(
    fake, settings, seconds, billed
):
    settings.S2V_PUBLIC_BASE_URL = ""
    fake.result = prediction("completed", outputs=[f"{CDN}/v.mp4"])
    assert make_provider(fake, seconds=seconds).poll(
        "pred_1"
    ).billed_seconds == Decimal(billed)


def test_without_a_known_input_length_the_result_leaves_billed_seconds_open(
    fake, settings
):
    settings.S2V_PUBLIC_BASE_URL = ""
    fake.result = prediction("completed", outputs=[f"{CDN}/v.mp4"])
    assert make_provider(fake, seconds=None).poll("pred_1").billed_seconds is None


def test_prices_come_from_the_catalog_so_wavespeed_costs_money(db, settings):
    settings.S2V_CURRENCY = "USD"
    # Fails on the hard-coded provider→model table, which lacked WaveSpeed.
    for name in ("wavespeed", "wavespeed-emulator"):
        assert billing.generation_cost(
            provider=name, resolution="480P", seconds=Decimal(3)
        ) == Decimal("0.090000")
        assert billing.generation_cost(
            provider=name, resolution="720P", seconds=Decimal(10)
        ) == Decimal("0.600000")
        price = billing.price_for(
            provider=name, unit=Price.Unit.SECOND, resolution="480P"
        )
        assert price is not None and price.model == MODEL
        # WaveSpeed has no paid portrait check.
        assert billing.price_for(provider=name, unit=Price.Unit.IMAGE) is None
    # DashScope's lines are still found by their own model names.
    assert billing.unit_price(
        provider="dashscope", unit=Price.Unit.SECOND, resolution="480P"
    ) == Decimal("0.071677")
    assert billing.unit_price(provider="dashscope", unit=Price.Unit.IMAGE) == Decimal(
        "0.000574"
    )


# -- start, staging and errors ------------------------------------------------------


@pytest.mark.django_db
def test_start_uploads_the_inputs_and_submits_the_documented_body(
    provider, fake, tmp_path, settings
):
    settings.S2V_PUBLIC_BASE_URL = "https://studio.example"
    posted: list[bool] = []
    request = request_for(
        tmp_path,
        resolution="720P",
        prompt="She sings.",
        seed=7,
        audio_seconds=4.2,
        before_post=lambda: posted.append(True),
    )

    result = provider.start(request, lambda f: None)

    assert posted == [True]
    assert fake.uploads == 2
    submit = fake.posted()[0]
    assert json.loads(submit.content) == {
        "image": f"{CDN}/u/1",
        "audio": f"{CDN}/u/2",
        "prompt": "She sings.",
        "resolution": "720p",
        "seed": 7,
    }
    assert submit.url.params["webhook"] == "https://studio.example/hooks/wavespeed/"
    assert (result.task_id, result.state, result.remote_status) == (
        "pred_1",
        TaskState.PENDING,
        "created",
    )
    assert result.billed_seconds == Decimal(5)
    uploads = [r for r in fake.requests if r.url.path.endswith("/upload/binary")]
    assert (
        b'filename="' + request.portrait.sha256[:32].encode() + b'.png"'
        in uploads[0].read()
    )


@pytest.mark.django_db
def test_no_webhook_without_a_public_base_url_and_defaults_for_prompt_and_seed(
    provider, fake, tmp_path
):
    provider.start(request_for(tmp_path), lambda f: None)
    submit = fake.posted()[0]
    assert "webhook" not in submit.url.params
    body = json.loads(submit.content)
    assert (body["prompt"], body["seed"], body["resolution"]) == ("", -1, "480p")


@pytest.mark.django_db
def test_an_upload_of_the_same_bytes_is_reused_while_valid(provider, fake, tmp_path):
    provider.start(request_for(tmp_path), lambda f: None)
    provider.start(request_for(tmp_path), lambda f: None)
    assert fake.uploads == 2  # portrait and audio, once each
    bodies = [json.loads(r.content) for r in fake.posted()]
    assert bodies[0]["image"] == bodies[1]["image"]
    assert RemoteUpload.objects.filter(account=provider.account).count() == 2

    # Close to the end of its 7 days an upload is made again.
    RemoteUpload.objects.update(expires_at=timezone.now() + timedelta(hours=12))
    provider.start(request_for(tmp_path), lambda f: None)
    assert fake.uploads == 4

    # Another account never reuses this one's uploads.
    other = make_provider(fake)
    other.account = "another-account"
    other.start(request_for(tmp_path), lambda f: None)
    assert fake.uploads == 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "headers", "kind", "permanent"),
    [
        (401, {}, "account", True),
        (402, {}, "account", True),
        (429, {"Retry-After": "20"}, "transient", False),
        (500, {}, "transient", False),
        (400, {}, "input", True),
    ],
)
def test_submit_errors_are_classified(
    provider, fake, tmp_path, status, headers, kind, permanent
):
    fake.submit = httpx.Response(
        status, json={"code": status, "message": "refused"}, headers=headers
    )
    with pytest.raises(ProviderError) as caught:
        provider.start(request_for(tmp_path), lambda f: None)
    error = caught.value
    assert (error.kind, error.permanent) == (kind, permanent)
    assert error.unanswered == (status >= 500)
    if status == 429:
        assert error.retry_after == 20.0
    if kind == "account":
        assert error.about_account
        assert "API key" in str(error) and "top" in str(error)
    assert "ws-key" not in str(error)


@pytest.mark.django_db
def test_a_dropped_submit_is_unanswered_and_not_sent_again(provider, fake, tmp_path):
    fake.submit = httpx.ReadTimeout("no answer")
    with pytest.raises(ProviderError) as caught:
        provider.start(request_for(tmp_path), lambda f: None)
    assert caught.value.unanswered and not caught.value.permanent
    assert len(fake.posted()) == 1


@pytest.mark.django_db
def test_a_failed_upload_sends_nothing_and_is_not_unanswered(provider, fake, tmp_path):
    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/upload/binary"):
            return httpx.Response(503, json={"code": 503, "message": "busy"})
        return fake(request)

    client = WaveSpeedClient(
        api_key="ws-key", base_url=BASE, transport=httpx.MockTransport(broken)
    )
    provider.client = client
    posted: list[bool] = []
    with pytest.raises(ProviderError) as caught:
        provider.start(
            request_for(tmp_path, before_post=lambda: posted.append(True)),
            lambda f: None,
        )
    assert not caught.value.unanswered and not caught.value.permanent
    assert posted == [] and fake.posted() == []


def test_check_portrait_is_the_studio_s_own_and_calls_nobody(provider, fake):
    verdict = provider.check_portrait(InputFile(ASTRONAUT, "0" * 64, format="PNG"))
    assert verdict.check_pass
    assert fake.requests == []


def test_cancel_is_not_offered(provider, fake):
    assert provider.cancel("pred_1") is False
    assert fake.requests == []


def test_fetch_streams_the_output_with_a_size_cap(provider, fake, settings):
    out = io.BytesIO()
    provider.fetch(
        TaskResult("pred_1", TaskState.SUCCEEDED, video_url=f"{CDN}/v.mp4"), out
    )
    assert out.getvalue() == fake.video

    settings.S2V_RESULT_MAX_MB = 0
    with pytest.raises(ProviderError) as caught:
        provider.fetch(
            TaskResult("pred_1", TaskState.SUCCEEDED, video_url=f"{CDN}/v.mp4"),
            io.BytesIO(),
        )
    assert caught.value.permanent and caught.value.code == "InvalidVideo"

    with pytest.raises(ProviderError) as caught:
        provider.fetch(
            TaskResult("pred_1", TaskState.SUCCEEDED, video_url=f"{CDN}/gone"),
            io.BytesIO(),
        )
    assert caught.value.code == "ResultExpired"


# -- the listing for lost submits ----------------------------------------------------


def test_listed_tasks_pages_until_older_than_since_and_keeps_speech_to_video(
    provider, fake, monkeypatch
):
    monkeypatch.setattr(ws_provider, "LIST_PAGE_SIZE", 2)
    since = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def at(minute: int) -> str:
        return (since + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    fake.pages = [
        {
            "items": [
                prediction("processing", "pred_c", created_at=at(5)),
                prediction("created", "pred_x", created_at=at(4), model="other/model"),
            ],
            "page": 1,
            "page_size": 2,
            "total": 5,
        },
        {
            "items": [
                prediction("failed", "pred_b", created_at=at(3)),
                prediction("completed", "pred_a", created_at=at(-1)),
            ],
            "page": 2,
            "page_size": 2,
            "total": 5,
        },
        {"items": [prediction("completed", "never_asked")], "page": 3},
    ]

    listed = provider.listed_tasks(since=since)

    assert [t.task_id for t in listed] == ["pred_b", "pred_c"]
    assert [(t.status, t.state) for t in listed] == [
        ("failed", TaskState.FAILED),
        ("processing", TaskState.RUNNING),
    ]
    assert listed[0].submitted_at == since + timedelta(minutes=3)
    pages = [r.url.params["page"] for r in fake.requests]
    assert pages == ["1", "2"]


def test_listed_tasks_accepts_a_bare_list_and_stops_on_a_short_page(provider, fake):
    fake.pages = [[prediction("created", "pred_1")]]
    listed = provider.listed_tasks(since=datetime(2020, 1, 1, tzinfo=UTC))
    assert [(t.task_id, t.state) for t in listed] == [("pred_1", TaskState.PENDING)]
    assert len(fake.requests) == 1


def test_a_listing_that_fails_raises_a_provider_error(fake, settings):
    settings.S2V_PUBLIC_BASE_URL = ""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": 503, "message": "down"})

    client = WaveSpeedClient(
        api_key="k",
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    provider = WaveSpeedProvider(api_key="k", client=client)
    with pytest.raises(ProviderError) as caught:
        provider.listed_tasks(since=datetime(2026, 1, 1, tzinfo=UTC))
    assert not caught.value.permanent


# -- the registry ---------------------------------------------------------------------


def test_the_registry_builds_wavespeed_and_its_emulator(settings):
    settings.WAVESPEED_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="WAVESPEED_API_KEY"):
        get_provider("wavespeed")
    settings.WAVESPEED_API_KEY = "ws-real"
    real = get_provider("wavespeed")
    assert isinstance(real, WaveSpeedProvider) and real.remote
    assert real.limits.audio_max_seconds == settings.S2V_WAVESPEED_MAX_AUDIO_SECONDS
    settings.S2V_WAVESPEED_EMULATOR_PORT = 9911
    emulator = get_provider("wavespeed-emulator")
    assert isinstance(emulator, WaveSpeedProvider)
    assert emulator.name == "wavespeed-emulator"
    assert emulator.client.base_url == "http://127.0.0.1:9911"
    settings.S2V_WAVESPEED_CONCURRENCY = 7
    assert get_provider("wavespeed").limits.concurrency == 7


# -- webhook signatures (§9.6) ----------------------------------------------------------


def headers_for(
    body: bytes, *, secret: str = SECRET, at: float | None = None, wid: str = "msg_1"
) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {
        "webhook-id": wid,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(
            webhook_id=wid, timestamp=stamp, raw_body=body, secret=secret
        ),
    }


def test_a_signature_is_hex_hmac_sha256_keyed_by_the_raw_secret():
    body = b'{"id":"pred_1","status":"completed"}'
    key = SECRET.removeprefix("whsec_").encode()  # raw bytes, not base64-decoded
    digest = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).hexdigest()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v3,{digest}",
    }
    assert verify(headers, body, SECRET, 1700000000 + 10)
    # Headers are read whatever their case.
    assert verify({k.title(): v for k, v in headers.items()}, body, SECRET, 1700000000)


def test_bad_signatures_are_refused():
    body = b'{"id":"pred_1"}'
    now = time.time()
    good = headers_for(body, at=now)
    assert verify(good, body, SECRET, now)
    assert not verify(good, body + b" ", SECRET, now)  # another body
    assert not verify(good, body, "whsec_other", now)  # another secret
    assert not verify({**good, "webhook-id": "msg_2"}, body, SECRET, now)
    # The secret with its prefix kept, or base64-decoded, is not the key.
    key = SECRET.encode()
    stamp = good["webhook-timestamp"]
    with_prefix = hmac.new(key, f"msg_1.{stamp}.".encode() + body, hashlib.sha256)
    assert not verify(
        {**good, "webhook-signature": f"v3,{with_prefix.hexdigest()}"},
        body,
        SECRET,
        now,
    )
    # Another version tag, or none, is refused; one good signature of several passes.
    digest = good["webhook-signature"].split(",", 1)[1]
    assert not verify({**good, "webhook-signature": f"v1,{digest}"}, body, SECRET, now)
    assert not verify({**good, "webhook-signature": digest}, body, SECRET, now)
    assert verify(
        {**good, "webhook-signature": f"v3,{'0' * 64} v3,{digest}"}, body, SECRET, now
    )
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert not verify(
            {k: v for k, v in good.items() if k != missing}, body, SECRET, now
        )
    assert not verify({**good, "webhook-timestamp": "soon"}, body, SECRET, now)
    assert not verify(good, body, "", now)


def test_a_secret_without_its_prefix_signs_the_same():
    body = b"{}"
    now = time.time()
    assert verify(headers_for(body, at=now), body, SECRET.removeprefix("whsec_"), now)


@pytest.mark.parametrize(
    ("offset", "ok"), [(-301, False), (-299, True), (299, True), (301, False)]
)
def test_old_and_future_timestamps_are_refused(offset, ok):
    body = b"{}"
    now = 1_800_000_000.0
    assert verify(headers_for(body, at=now + offset), body, SECRET, now) is ok


# -- the callback view ----------------------------------------------------------------------


@pytest.fixture
def hooked(settings, monkeypatch, enqueued):
    """The studio with WaveSpeed configured; enqueued polls are captured."""
    settings.S2V_PROVIDER = "local"
    settings.S2V_PROVIDERS = ["local", "wavespeed"]
    settings.WAVESPEED_API_KEY = "ws-hook-key"
    settings.S2V_WAVESPEED_BASE_URL = BASE
    monkeypatch.setattr(WaveSpeedClient, "webhook_secret", lambda self: SECRET)
    polls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        ws_views, "async_task", lambda func, *args, **kw: polls.append((func, args))
    )
    return polls


@pytest.fixture
def remote_job(alice, team, checked_inputs, enqueued) -> GenerationJob:
    """A job in flight at WaveSpeed with task pred_1."""
    portrait, audio = checked_inputs
    job = services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )
    GenerationJob.objects.filter(pk=job.pk).update(
        provider="wavespeed",
        status=GenerationJob.Status.RUNNING,
        remote_task_id="pred_1",
        remote_status="processing",
        attempts=1,
        submit_started_at=timezone.now(),
    )
    job.refresh_from_db()
    job.task = Task.objects.create(
        job=job,
        provider="wavespeed",
        account="ws",
        remote_id="pred_1",
        state=Task.State.RUNNING,
        remote_status="processing",
        next_poll_at=timezone.now() + timedelta(minutes=5),
    )
    job.save(update_fields=["task"])
    return job


def post_hook(client, body: bytes, headers: dict[str, str]):
    return client.post(
        reverse("studio:wavespeed-webhook"),
        data=body,
        content_type="application/json",
        headers=headers,
    )


@pytest.mark.django_db
def test_a_good_callback_polls_the_job_now(client, hooked, remote_job):
    body = json.dumps(prediction("completed", outputs=[f"{CDN}/v.mp4"])).encode()
    before = timezone.now()
    response = post_hook(client, body, headers_for(body))
    assert response.status_code == 200
    assert hooked == [("studio.tasks.job_poll", (remote_job.pk,))]
    remote_job.refresh_from_db()
    # Leased like the tick's polls, so the tick does not send it a second time.
    leased = remote_job.task.next_poll_at
    assert before < leased <= timezone.now() + poll.POLL_LEASE
    # The payload is only a hint: nothing about the job changed from it.
    assert remote_job.status == GenerationJob.Status.RUNNING
    assert remote_job.remote_status == "processing"

    # A duplicate is harmless: one more poll.
    assert post_hook(client, body, headers_for(body)).status_code == 200
    assert len(hooked) == 2


@pytest.mark.django_db
def test_callbacks_with_bad_or_old_signatures_are_refused(client, hooked, remote_job):
    body = json.dumps(prediction("completed")).encode()
    assert (
        post_hook(client, body, headers_for(body, secret="whsec_wrong")).status_code
        == 401
    )
    assert (
        post_hook(client, body, headers_for(body, at=time.time() - 600)).status_code
        == 401
    )
    assert post_hook(client, body, {}).status_code == 401
    assert hooked == []


@pytest.mark.django_db
def test_an_unreadable_body_is_a_400_and_unknown_ids_are_ignored(
    client, hooked, remote_job
):
    garbage = b"not json"
    assert post_hook(client, garbage, headers_for(garbage)).status_code == 400
    no_id = b'{"status": "completed"}'
    assert post_hook(client, no_id, headers_for(no_id)).status_code == 400
    unknown = json.dumps(prediction("completed", "pred_nobody")).encode()
    assert post_hook(client, unknown, headers_for(unknown)).status_code == 200
    assert hooked == []


@pytest.mark.django_db
def test_a_provider_that_is_not_enabled_verifies_nothing(client, hooked, settings):
    settings.S2V_PROVIDERS = ["local"]
    body = json.dumps(prediction("completed")).encode()
    assert post_hook(client, body, headers_for(body)).status_code == 404
    assert hooked == []


@pytest.mark.django_db
def test_the_callback_is_post_only_and_capped(client, hooked):
    assert client.get(reverse("studio:wavespeed-webhook")).status_code == 405
    big = b"{" + b" " * (ws_views.MAX_BODY_BYTES + 10) + b"}"
    assert post_hook(client, big, headers_for(big)).status_code == 413


# -- a finished job costs money ----------------------------------------------------------


@pytest.mark.django_db
def test_a_finished_wavespeed_job_is_billed_by_its_input_seconds(
    remote_job, monkeypatch, settings, tmp_path
):
    from studio.media import render

    settings.S2V_CURRENCY = "USD"
    video, poster = tmp_path / "v.mp4", tmp_path / "p.jpg"
    render.render_video(
        portrait=ASTRONAUT,
        audio=media_factories.make_wav(tmp_path / "a.wav", 1.0),
        resolution="480P",
        face_box=None,
        out=video,
        poster=poster,
    )
    fake = Fake()
    fake.video = video.read_bytes()
    fake.result = prediction("completed", outputs=[f"{CDN}/out.mp4"])
    client = WaveSpeedClient(
        api_key="ws-key", base_url=BASE, transport=httpx.MockTransport(fake)
    )
    # The real lookup of the input's length: the job's 2 s clip.
    provider = WaveSpeedProvider(name="wavespeed", api_key="ws-key", client=client)
    queue_uses(monkeypatch, provider)

    job = poll.job_poll(job_id=remote_job.pk)

    assert job is not None
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    assert job.billed_seconds == Decimal(3)
    assert job.cost == Decimal("0.090000")
    assert job.currency == "USD"


@pytest.mark.django_db
def test_without_a_secret_to_verify_with_the_callback_is_asked_again_later(
    client, settings, monkeypatch, enqueued
):
    settings.S2V_PROVIDER = "local"
    settings.S2V_PROVIDERS = ["local", "wavespeed"]
    settings.WAVESPEED_API_KEY = "ws-hook-key-2"
    settings.S2V_WAVESPEED_BASE_URL = BASE
    calls: list[int] = []

    def unreachable(self: WaveSpeedClient) -> str:
        calls.append(1)
        raise ws_client.WaveSpeedError("down", status=503)

    monkeypatch.setattr(WaveSpeedClient, "webhook_secret", unreachable)
    body = b"{}"
    response = post_hook(client, body, headers_for(body))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    # Not asked again at once: a flood of callbacks is not a flood of requests.
    assert post_hook(client, body, headers_for(body)).status_code == 503
    assert len(calls) == 1


def test_a_fetched_secret_is_kept_and_refreshed_at_most_every_ten_minutes(
    fake, settings, monkeypatch
):
    settings.S2V_PUBLIC_BASE_URL = ""
    provider = make_provider(fake)
    clock = [1000.0]
    monkeypatch.setattr(ws_provider.time, "monotonic", lambda: clock[0])
    assert provider.webhook_secret() == SECRET
    assert provider.webhook_secret(refresh=True) == SECRET
    clock[0] += 601
    provider.webhook_secret(refresh=True)
    asked = [r for r in fake.requests if r.url.path == "/api/v3/webhook/secret"]
    assert len(asked) == 2


def queue_uses(monkeypatch: pytest.MonkeyPatch, provider: WaveSpeedProvider) -> None:
    """Every part of the queue that looks providers up gets this one."""
    for part in (poll, recovery, slots, submit):
        monkeypatch.setattr(part, "get_provider", lambda name=None: provider)


# -- through the dispatcher -----------------------------------------------------------------


@pytest.fixture
def queued_job(remote_job) -> GenerationJob:
    GenerationJob.objects.filter(pk=remote_job.pk).update(
        status=GenerationJob.Status.QUEUED,
        remote_task_id="",
        remote_status="",
        attempts=0,
        submit_started_at=None,
        not_before=None,
    )
    remote_job.refresh_from_db()
    return remote_job


@pytest.mark.django_db
def test_the_dispatcher_sends_a_wavespeed_job_with_its_audio_length(
    queued_job, monkeypatch, settings
):
    settings.S2V_PUBLIC_BASE_URL = ""
    fake = Fake()
    provider = make_provider(fake)
    sent: list[GenerationRequest] = []
    start = provider.start

    def recording_start(request: GenerationRequest, progress: Any) -> TaskResult:
        sent.append(request)
        return start(request, progress)

    monkeypatch.setattr(provider, "start", recording_start)
    queue_uses(monkeypatch, provider)

    assert slots.dispatch(provider_name="wavespeed") == [queued_job.pk]
    job = submit.job_submit(job_id=queued_job.pk)

    assert job is not None
    assert sent[0].audio_seconds == pytest.approx(queued_job.audio.duration)
    assert (job.remote_task_id, job.remote_status) == ("pred_1", "created")
    assert len(fake.posted()) == 1


@pytest.mark.django_db
def test_a_dropped_wavespeed_submit_is_found_in_the_predictions_list(
    queued_job, monkeypatch, settings
):
    settings.S2V_PUBLIC_BASE_URL = ""
    fake = Fake()
    fake.submit = httpx.RemoteProtocolError("connection dropped")
    provider = make_provider(fake)
    queue_uses(monkeypatch, provider)

    slots.dispatch(provider_name="wavespeed")
    job = submit.job_submit(job_id=queued_job.pk)
    assert job is not None and job.submit_posted_at is not None
    assert job.status == GenerationJob.Status.SUBMITTED and not job.remote_task_id
    assert job.recovery == GenerationJob.Recovery.CHECKING

    made = job.submit_posted_at + timedelta(seconds=1)
    fake.pages = [
        {
            "items": [
                prediction(
                    "processing",
                    "pred_lost",
                    created_at=made.isoformat().replace("+00:00", "Z"),
                )
            ],
            "page": 1,
            "page_size": 50,
            "total": 1,
        }
    ]
    recovery.sweep_remote(now=job.submit_posted_at + timedelta(minutes=3))

    job.refresh_from_db()
    assert job.remote_task_id == "pred_lost"
    assert len(fake.posted()) == 1  # never sent twice
