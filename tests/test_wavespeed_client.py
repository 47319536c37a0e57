"""The WaveSpeed client on the documented wire format (provider-api.md §9, fixtures F10)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import httpx
import pytest

from studio.providers.wavespeed.client import (
    ErrorKind,
    WaveSpeedClient,
    WaveSpeedError,
    parse_prediction,
)

BASE = "https://wavespeed.test"
KEY = "ws-secret-key-123"
SUBMITTED = {
    "code": 200,
    "message": "success",
    "data": {
        "id": "pred_abc123",
        "model": "wavespeed-ai/wan-2.2/speech-to-video",
        "outputs": [],
        "urls": {"get": f"{BASE}/api/v3/predictions/pred_abc123/result"},
        "has_nsfw_contents": [],
        "status": "created",
        "created_at": "2026-11-29T12:00:00.123Z",
        "error": "",
        "timings": {"inference": 0},
    },
}
# F10, verbatim.
F10_PROCESSING = {
    "code": 200,
    "message": "success",
    "data": {
        "id": "pred_abc123",
        "model": "wavespeed-ai/flux-dev",
        "status": "processing",
        "outputs": [],
        "created_at": "2024-01-01T12:00:00.000Z",
    },
}
F10_COMPLETED = {
    "code": 200,
    "message": "success",
    "data": {
        "id": "pred_abc123",
        "model": "wavespeed-ai/flux-dev",
        "status": "completed",
        "outputs": ["https://cdn.wavespeed.ai/generated/image123.png"],
        "timings": {"inference": 2500},
        "created_at": "2024-01-01T12:00:00.000Z",
    },
}
F10_FAILED = {
    "code": 200,
    "message": "success",
    "data": {
        "id": "pred_abc123",
        "status": "failed",
        "error": "Error message here",
        "created_at": "2024-01-01T12:00:00.000Z",
    },
}


def client_for(handler, **kwargs) -> WaveSpeedClient:
    return WaveSpeedClient(
        base_url=BASE,
        api_key=KEY,
        transport=httpx.MockTransport(handler),
        sleep=kwargs.pop("sleep", lambda seconds: None),
        **kwargs,
    )


def test_submit_posts_a_flat_body_with_the_bearer_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SUBMITTED)

    prediction = client_for(handler).submit(
        image_url="https://cdn/p.png",
        audio_url="https://cdn/a.wav",
        prompt="a calm voice",
        resolution="720p",
        seed=42,
    )

    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v3/wavespeed-ai/wan-2.2/speech-to-video"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "image": "https://cdn/p.png",
        "audio": "https://cdn/a.wav",
        "prompt": "a calm voice",
        "resolution": "720p",
        "seed": 42,
    }
    assert prediction.id == "pred_abc123"
    assert prediction.status == "created"
    assert prediction.created_at == datetime(2026, 11, 29, 12, 0, 0, 123000, tzinfo=UTC)
    assert prediction.get_url.endswith("/predictions/pred_abc123/result")


def test_the_webhook_goes_in_the_query_only_when_given():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SUBMITTED)

    client = client_for(handler)
    client.submit(image_url="i", audio_url="a")
    client.submit(
        image_url="i", audio_url="a", webhook="https://studio.example/hooks/wavespeed/"
    )

    assert "webhook" not in seen[0].url.params
    assert seen[1].url.params["webhook"] == "https://studio.example/hooks/wavespeed/"
    assert json.loads(seen[0].content)["seed"] == -1
    assert json.loads(seen[0].content)["resolution"] == "480p"


@pytest.mark.parametrize(
    ("fixture", "status", "outputs", "error"),
    [
        (F10_PROCESSING, "processing", (), ""),
        (
            F10_COMPLETED,
            "completed",
            ("https://cdn.wavespeed.ai/generated/image123.png",),
            "",
        ),
        (F10_FAILED, "failed", (), "Error message here"),
    ],
)
def test_results_are_read_from_the_documented_envelopes(
    fixture, status, outputs, error
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=fixture)

    prediction = client_for(handler).result("pred_abc123")

    assert str(seen[0].url) == f"{BASE}/api/v3/predictions/pred_abc123/result"
    assert (prediction.status, prediction.outputs, prediction.error) == (
        status,
        outputs,
        error,
    )
    if status == "completed":
        assert prediction.inference_ms == 2500


def test_nsfw_flags_are_read_per_output_and_as_a_single_bool():
    listed = parse_prediction(
        {"id": "p", "status": "completed", "has_nsfw_contents": [False, True]}
    )
    single = parse_prediction(
        {"id": "p", "status": "completed", "has_nsfw_contents": True}
    )
    clean = parse_prediction(
        {"id": "p", "status": "completed", "has_nsfw_contents": [False]}
    )
    assert listed.nsfw and single.nsfw and not clean.nsfw


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (401, {}, ErrorKind.ACCOUNT, None),
        (402, {}, ErrorKind.ACCOUNT, None),
        (403, {}, ErrorKind.ACCOUNT, None),
        (429, {"Retry-After": "17"}, ErrorKind.TRANSIENT, 17.0),
        (500, {}, ErrorKind.TRANSIENT, None),
        (503, {"Retry-After": "30"}, ErrorKind.TRANSIENT, 30.0),
        (400, {}, ErrorKind.INPUT, None),
        (404, {}, ErrorKind.NOT_FOUND, None),
        (405, {}, ErrorKind.CLIENT, None),
    ],
)
def test_error_answers_are_classified_by_what_the_caller_should_do(
    status, headers, kind, retry_after
):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json={"code": status, "message": "nope"}, headers=headers
        )

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).submit(image_url="i", audio_url="a")

    assert caught.value.kind == kind
    assert caught.value.status == status
    assert caught.value.retry_after == retry_after
    assert caught.value.message == "nope"
    assert caught.value.permanent == (kind != ErrorKind.TRANSIENT)
    # Only an answer proves a submit made no task; a 5xx may be a gateway's.
    assert caught.value.unanswered == (status >= 500)


def test_a_404_without_wavespeed_s_envelope_is_a_misconfiguration_not_an_expiry():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>not here</html>")

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).result("pred_x")
    assert caught.value.kind == ErrorKind.CLIENT


def test_a_200_carrying_an_error_code_is_that_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 401, "message": "invalid key"})

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).result("pred_x")
    assert (caught.value.kind, caught.value.status) == (ErrorKind.ACCOUNT, 401)


@pytest.mark.parametrize(
    ("error", "unanswered"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("dropped"), True),
        (httpx.ReadError("reset"), True),
    ],
)
def test_a_dropped_submit_is_unanswered_and_never_sent_twice(error, unanswered):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).submit(image_url="i", audio_url="a")

    assert len(calls) == 1
    assert caught.value.kind == ErrorKind.TRANSIENT
    assert caught.value.unanswered is unanswered
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "body", [{"code": 200, "message": "success"}, {"code": 200, "data": {}}]
)
def test_a_submit_answer_without_an_id_is_unanswered(body):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).submit(image_url="i", audio_url="a")
    assert caught.value.unanswered
    assert not caught.value.permanent


def test_gets_are_retried_after_a_short_retry_after_and_not_after_a_long_one():
    answers = [
        httpx.Response(
            429,
            json={"code": 429, "message": "slow down"},
            headers={"Retry-After": "2"},
        ),
        httpx.Response(200, json=F10_PROCESSING),
    ]
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    prediction = client_for(handler, sleep=slept.append).result("pred_abc123")
    assert prediction.status == "processing"
    assert slept == [2.0]

    calls: list[httpx.Request] = []

    def long_wait(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            429, json={"code": 429, "message": "later"}, headers={"Retry-After": "120"}
        )

    with pytest.raises(WaveSpeedError) as caught:
        client_for(long_wait, sleep=slept.append).result("pred_abc123")
    assert len(calls) == 1
    assert caught.value.retry_after == 120.0


def test_a_throttled_submit_is_not_sent_again():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            429,
            json={"code": 429, "message": "Too Many Requests"},
            headers={"Retry-After": "1"},
        )

    with pytest.raises(WaveSpeedError):
        client_for(handler).submit(image_url="i", audio_url="a")
    assert len(calls) == 1


def test_upload_sends_multipart_file_and_returns_the_download_url(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(b"\x89PNG fake bytes")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "code": 200,
                "message": "success",
                "data": {
                    "type": "image",
                    "download_url": "https://cdn.wavespeed.ai/u/abc.png",
                    "filename": "abc.png",
                    "size": 15,
                },
            },
        )

    url = client_for(handler).upload(
        path=path, filename="abc.png", content_type="image/png"
    )

    assert url == "https://cdn.wavespeed.ai/u/abc.png"
    request = seen[0]
    assert str(request.url) == f"{BASE}/api/v3/media/upload/binary"
    assert request.headers["content-type"].startswith("multipart/form-data")
    body = request.read()
    assert b'name="file"; filename="abc.png"' in body
    assert b"Content-Type: image/png" in body
    assert b"\x89PNG fake bytes" in body


def test_an_upload_answer_without_a_url_is_an_error(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"type": "audio"}})

    with pytest.raises(WaveSpeedError):
        client_for(handler).upload(
            path=path, filename="a.wav", content_type="audio/wav"
        )


def test_the_predictions_listing_reads_items_or_a_bare_list():
    item = SUBMITTED["data"]
    seen: list[httpx.Request] = []
    answers = [
        {
            "code": 200,
            "message": "success",
            "data": {"items": [item], "page": 2, "page_size": 10, "total": 11},
        },
        {"code": 200, "message": "success", "data": [item, item]},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answers.pop(0))

    client = client_for(handler)
    page = client.list_predictions(page=2, page_size=10)
    bare = client.list_predictions(page=1, page_size=50)

    assert seen[0].url.path == "/api/v3/predictions"
    assert dict(seen[0].url.params) == {"page": "2", "page_size": "10"}
    assert [p.id for p in page.items] == ["pred_abc123"]
    assert (page.page, page.page_size, page.total) == (2, 10, 11)
    assert len(bare.items) == 2 and bare.total is None


def test_a_listing_that_cannot_be_read_raises():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"rows": []}})

    with pytest.raises(WaveSpeedError):
        client_for(handler).list_predictions()


def test_the_webhook_secret_is_read_from_data():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v3/webhook/secret"
        return httpx.Response(
            200,
            json={"code": 200, "message": "success", "data": {"secret": "whsec_abc"}},
        )

    assert client_for(handler).webhook_secret() == "whsec_abc"


def test_download_streams_without_the_key_and_refuses_non_video_and_oversize():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/ok.mp4":
            return httpx.Response(
                200, content=b"v" * 10, headers={"content-type": "video/mp4"}
            )
        if request.url.path == "/page":
            return httpx.Response(
                200, content=b"<html>", headers={"content-type": "text/html"}
            )
        if request.url.path == "/big.mp4":
            return httpx.Response(
                200, content=b"v" * 100, headers={"content-type": "video/mp4"}
            )
        return httpx.Response(404)

    client = client_for(handler)
    out = io.BytesIO()
    assert client.download("https://cdn.test/ok.mp4", out, max_bytes=50) == "video/mp4"
    assert out.getvalue() == b"v" * 10
    assert "Authorization" not in seen[0].headers
    with pytest.raises(WaveSpeedError) as caught:
        client.download("https://cdn.test/page", io.BytesIO(), max_bytes=50)
    assert caught.value.kind == ErrorKind.INPUT
    with pytest.raises(WaveSpeedError) as caught:
        client.download("https://cdn.test/big.mp4", io.BytesIO(), max_bytes=50)
    assert caught.value.kind == ErrorKind.INPUT
    with pytest.raises(WaveSpeedError) as caught:
        client.download("https://cdn.test/gone.mp4", io.BytesIO(), max_bytes=50)
    assert caught.value.kind == ErrorKind.NOT_FOUND


def test_the_key_never_appears_in_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": 401, "message": "Invalid API key"})

    with pytest.raises(WaveSpeedError) as caught:
        client_for(handler).result("x")
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.args)


# wan-2.2-animate (§9.6)


def test_submit_animate_posts_a_flat_body_to_the_animate_model():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SUBMITTED)

    client = client_for(handler)
    prediction = client.submit_animate(
        "https://cdn/p.png",
        "https://cdn/v.mp4",
        mode="replace",
        resolution="720p",
        webhook="https://studio.example/hooks/wavespeed/",
    )
    client.submit_animate(
        "i", "v", mode="animate", resolution="480p", prompt="dance", seed=7
    )

    assert str(seen[0].url).startswith(f"{BASE}/api/v3/wavespeed-ai/wan-2.2-animate?")
    assert seen[0].url.params["webhook"] == "https://studio.example/hooks/wavespeed/"
    assert json.loads(seen[0].content) == {
        "image": "https://cdn/p.png",
        "video": "https://cdn/v.mp4",
        "mode": "replace",
        "prompt": "",
        "resolution": "720p",
    }
    assert json.loads(seen[1].content)["seed"] == 7
    assert "webhook" not in seen[1].url.params
    assert prediction.id == "pred_abc123"


@pytest.mark.parametrize(
    ("mode", "resolution"), [("move", "480p"), ("animate", "1080p")]
)
def test_submit_animate_refuses_words_wavespeed_does_not_take(mode, resolution):
    client = client_for(lambda request: httpx.Response(500))
    with pytest.raises(ValueError):
        client.submit_animate("i", "v", mode=mode, resolution=resolution)
