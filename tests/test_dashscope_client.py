"""The DashScope client on the documented wire format (provider-api.md §11 fixtures)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from studio.providers.base import ListedTask, TaskState
from studio.providers.dashscope import client as dashscope_client
from studio.providers.dashscope.client import (
    PROVIDER_TZ,
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    classify,
)
from studio.providers.dashscope.provider import DashScopeProvider, tidy, user_message

BASE = "https://dashscope.test/api/v1"
F2 = {
    "output": {"task_id": "a8532587-fa8c-4ef8-82be-xxxxxx", "task_status": "PENDING"},
    "request_id": "7574ee8f-38a3-4b1e-9280-xxxxxx",
}
F3 = {
    "output": {
        "task_id": "bcae8761-f242-4775-a11e-xxxxxx",
        "task_status": "SUCCEEDED",
        "submit_time": "2025-09-01 09:37:27.468",
        "scheduled_time": "2025-09-01 09:37:34.885",
        "end_time": "2025-09-01 09:40:20.734",
        "results": {
            "video_url": "http://dashscope-result-hz.oss-cn-hangzhou.aliyuncs.com/1d/xxx.mp4?Expires=xxxxxx"
        },
    },
    "usage": {"duration": 18.13, "video_count": 1, "SR": 480},
    "request_id": "28cfedb1-cd60-9e0c-b920-xxxxxx",
}
F4 = {
    "request_id": "8d49f522-f6a4-9eed-b322-xxxxxx",
    "output": {
        "task_id": "101ad32f-7653-4ae9-8f22-xxxxxx",
        "task_status": "FAILED",
        "code": "InvalidURL",
        "message": "Required URL is missing or invalid, please check the request URL.",
    },
}
F6 = {
    "request_id": "a4de7c32-7057-9f82-8581-xxxxxx",
    "output": {"task_id": "502a00b1-19d9-4839-a82f-xxxxxx", "task_status": "UNKNOWN"},
}
F8 = {
    "request_id": "52f4383a-c67d-9f8c-xxxxxx",
    "data": {
        "policy": "eyJl...1ZSJ=",
        "signature": "eWy...=",
        "upload_dir": "dashscope-instant/xxx/2024-07-18/xxx",
        "upload_host": "https://dashscope-file-xxx.oss-cn-beijing.aliyuncs.com",
        "expire_in_seconds": 300,
        "max_file_size_mb": 100,
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": "LTA...",
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    },
}


def client_for(handler) -> DashScopeClient:
    return DashScopeClient(
        base_url=BASE, api_key="sk-secret-key", transport=httpx.MockTransport(handler)
    )


def test_submit_sends_the_async_header_and_the_documented_envelope():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=F2)

    task = client_for(handler).submit(
        image_url="https://s/p.jpg", audio_url="https://s/a.mp3", resolution="720P"
    )

    request = seen[0]
    assert str(request.url) == f"{BASE}/services/aigc/image2video/video-synthesis"
    assert request.headers["X-DashScope-Async"] == "enable"
    assert request.headers["Authorization"] == "Bearer sk-secret-key"
    assert "X-DashScope-OssResourceResolve" not in request.headers
    assert json.loads(request.content) == {
        "model": "wan2.2-s2v",
        "input": {"image_url": "https://s/p.jpg", "audio_url": "https://s/a.mp3"},
        "parameters": {"resolution": "720P"},
    }
    assert (task.task_id, task.status) == ("a8532587-fa8c-4ef8-82be-xxxxxx", "PENDING")


def test_style_is_sent_only_when_configured_and_oss_urls_get_the_resolve_header():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=F2)

    client_for(handler).submit(
        image_url="oss://dir/p.png",
        audio_url="oss://dir/a.wav",
        resolution="480P",
        style="sing",
    )

    assert seen[0].headers["X-DashScope-OssResourceResolve"] == "enable"
    assert json.loads(seen[0].content)["parameters"] == {
        "resolution": "480P",
        "style": "sing",
    }


def test_detect_has_no_async_header_and_reads_pass_and_fail():
    answers = iter(
        [
            {
                "output": {"check_pass": True, "humanoid": True},
                "usage": {"image_count": 1},
                "request_id": "r",
            },
            {
                "output": {"check_pass": False, "code": "", "message": ""},
                "usage": {"image_count": 1},
                "request_id": "r",
            },
        ]
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=next(answers))

    client = client_for(handler)
    passed = client.detect(image_url="https://s/p.jpg")
    failed = client.detect(image_url="https://s/p.jpg")

    assert "X-DashScope-Async" not in seen[0].headers
    assert json.loads(seen[0].content)["model"] == "wan2.2-s2v-detect"
    assert passed.check_pass and passed.humanoid
    assert not failed.check_pass and failed.humanoid is None


def test_a_succeeded_task_gives_url_and_billed_seconds():
    task = client_for(lambda r: httpx.Response(200, json=F3)).get_task("bcae8761")

    assert task.status == "SUCCEEDED"
    assert task.video_url.startswith("http://dashscope-result-hz")
    assert task.billed_seconds == Decimal("18.13")
    assert (
        task.submitted_at is not None
        and task.submitted_at.utcoffset().total_seconds() == 8 * 3600
    )


def test_task_times_are_read_as_utc_plus_8_without_an_offset():
    task = client_for(lambda r: httpx.Response(200, json=F3)).get_task("bcae8761")

    # 09:37:34.885 in UTC+8 is 01:37:34.885 UTC (provider-api.md §1.6).
    assert task.submitted_at == datetime(2025, 9, 1, 1, 37, 27, 468000, tzinfo=UTC)
    assert task.scheduled_at == datetime(2025, 9, 1, 1, 37, 34, 885000, tzinfo=UTC)
    assert task.ended_at == datetime(2025, 9, 1, 1, 40, 20, 734000, tzinfo=UTC)
    assert (task.ended_at - task.scheduled_at).total_seconds() == pytest.approx(165.849)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        1756690654885,
        "yesterday",
        "2025-13-01 09:37:27.468",
        "2025-09-01 25:61:00.000",
        "2025/09/01 09:37:27",
        ["2025-09-01"],
    ],
)
def test_missing_or_garbled_task_times_are_none_and_the_task_is_still_read(value):
    body = json.loads(json.dumps(F3))
    body["output"]["scheduled_time"] = value
    del body["output"]["end_time"]

    task = client_for(lambda r: httpx.Response(200, json=body)).get_task("t")

    assert task.status == "SUCCEEDED" and task.video_url
    assert task.scheduled_at is None and task.ended_at is None
    assert task.submitted_at is not None


def test_a_time_that_does_carry_an_offset_is_taken_at_its_word():
    body = json.loads(json.dumps(F3))
    body["output"]["end_time"] = "2025-09-01T01:40:20.734Z"

    task = client_for(lambda r: httpx.Response(200, json=body)).get_task("t")

    assert task.ended_at == datetime(2025, 9, 1, 1, 40, 20, 734000, tzinfo=UTC)


def test_the_engine_passes_the_provider_s_run_times_on(settings):
    settings.DASHSCOPE_API_KEY = "sk-test"
    provider = DashScopeProvider(base_url=BASE)
    provider.client = client_for(lambda r: httpx.Response(200, json=F3))

    result = provider.poll("bcae8761")

    assert result.scheduled_at == datetime(2025, 9, 1, 1, 37, 34, 885000, tzinfo=UTC)
    assert result.ended_at == datetime(2025, 9, 1, 1, 40, 20, 734000, tzinfo=UTC)


def test_billed_seconds_fall_back_to_video_duration():
    body = json.loads(json.dumps(F3))
    body["usage"] = {"video_duration": 10.23}

    task = client_for(lambda r: httpx.Response(200, json=body)).get_task("t")

    assert task.billed_seconds == Decimal("10.23")


def test_failed_and_unknown_tasks_are_read():
    client = client_for(
        lambda r: httpx.Response(200, json=F4 if "101ad" in str(r.url) else F6)
    )

    failed = client.get_task("101ad32f")
    unknown = client.get_task("502a00b1")

    assert (failed.status, failed.code) == ("FAILED", "InvalidURL")
    assert unknown.status == "UNKNOWN"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            429,
            {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded"},
            ErrorKind.TRANSIENT,
        ),
        (500, {"code": "InternalError", "message": "x"}, ErrorKind.TRANSIENT),
        (503, {"code": "ModelUnavailable", "message": "x"}, ErrorKind.TRANSIENT),
        (502, "<html>bad gateway</html>", ErrorKind.TRANSIENT),
        (
            400,
            {"code": "InvalidParameter", "message": "Required parameter(s) missing"},
            ErrorKind.INPUT,
        ),
        (400, {"code": "DataInspectionFailed", "message": "x"}, ErrorKind.INPUT),
        (
            401,
            {"code": "InvalidApiKey", "message": "Invalid API-key provided."},
            ErrorKind.ACCOUNT,
        ),
        (400, {"code": "Arrearage", "message": "Access denied"}, ErrorKind.ACCOUNT),
        (403, {"code": "Arrearage", "message": "Access denied"}, ErrorKind.ACCOUNT),
        (403, {"code": "AccessDenied.Unpurchased", "message": "x"}, ErrorKind.ACCOUNT),
        (
            403,
            {
                "code": "AccessDenied",
                "message": "current user api does not support synchronous calls.",
            },
            ErrorKind.CLIENT,
        ),
    ],
)
def test_http_errors_are_classified_by_what_the_caller_should_do(status, body, kind):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json={"request_id": "r-1", **body})

    with pytest.raises(DashScopeError) as excinfo:
        client_for(handler).get_task("t-1")

    assert excinfo.value.kind == kind
    assert excinfo.value.permanent is (kind != ErrorKind.TRANSIENT)


def test_transport_errors_are_transient_and_never_show_the_key():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DashScopeError) as excinfo:
        client_for(handler).get_task("t-1")

    assert excinfo.value.kind == ErrorKind.TRANSIENT
    assert "sk-secret-key" not in str(excinfo.value)


def test_upload_policy_then_form_upload_gives_an_oss_url(tmp_path):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/uploads"):
            return httpx.Response(200, json=F8)
        return httpx.Response(200)

    client = client_for(handler)
    policy = client.upload_policy(model="wan2.2-s2v")
    path = tmp_path / "p.png"
    path.write_bytes(b"png-bytes")

    url = client.upload(policy=policy, path=path, name="face.png")

    assert (
        seen[0].url.params["action"] == "getPolicy"
        and seen[0].url.params["model"] == "wan2.2-s2v"
    )
    post = seen[1]
    assert str(post.url) == F8["data"]["upload_host"]
    assert "Authorization" not in post.headers  # the key never goes to OSS
    body = post.content.decode("latin-1")
    for field in (
        "OSSAccessKeyId",
        "Signature",
        "policy",
        "key",
        "x-oss-object-acl",
        "x-oss-forbid-overwrite",
        "success_action_status",
    ):
        assert f'name="{field}"' in body
    assert body.rindex('name="file"') > body.rindex(
        'name="success_action_status"'
    )  # file last
    assert url == "oss://dashscope-instant/xxx/2024-07-18/xxx/face.png"


def test_download_refuses_non_video_and_oversized_results():
    def handler(request: httpx.Request) -> httpx.Response:
        if "html" in str(request.url):
            return httpx.Response(
                200, headers={"content-type": "text/html"}, text="<html>"
            )
        if "expired" in str(request.url):
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
        return httpx.Response(
            200, headers={"content-type": "video/mp4"}, content=b"x" * 5000
        )

    client = client_for(handler)
    sink = io.BytesIO()
    with pytest.raises(DashScopeError, match="not a video"):
        client.download("https://r/html", sink, max_bytes=10_000)
    with pytest.raises(DashScopeError, match="larger than"):
        client.download("https://r/v.mp4", sink, max_bytes=1000)
    with pytest.raises(DashScopeError, match="expired") as excinfo:
        client.download("https://r/expired.mp4", sink, max_bytes=10_000)
    assert excinfo.value.permanent


def test_every_documented_code_has_a_kind_and_a_message():
    codes = [
        "InvalidParameter",
        "InvalidParameter.DataInspection",
        "InvalidURL",
        "InvalidURL.Timeout",
        "InvalidFile.NoHuman",
        "InvalidFile.MultiHuman",
        "InvalidFile.BodyProportion",
        "InvalidFile.FacePose",
        "InvalidFile.Resolution",
        "InvalidFile.Size",
        "InvalidFile.Duration",
        "InvalidImage.NoHumanFace",
        "DataInspectionFailed",
        "IPInfringementSuspect",
        "Arrearage",
        "InvalidApiKey",
        "AccessDenied.Unpurchased",
        "Throttling",
        "Throttling.RateQuota",
        "Throttling.AllocationQuota",
        "InternalError",
        "InternalError.Timeout",
        "SystemError",
        "ModelServingError",
        "ModelUnavailable",
        "PrepaidBillOverdue",
        "ModelNotFound",
    ]
    for code in codes:
        assert classify(code, "") in ErrorKind
        assert user_message(code, "detail")


def test_the_engine_refuses_to_start_without_a_key(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.DASHSCOPE_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="DASHSCOPE_API_KEY"):
        DashScopeProvider()


# provider-api.md §1.2a, the documented listing answer (ids completed).
LISTING = {
    "total": 1,
    "total_page": 1,
    "page_no": 1,
    "page_size": 10,
    "data": [
        {
            "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx",
            "status": "SUCCEEDED",
            "model_name": "wan2.2-s2v",
            "request_id": "4909100c-7b5a-9f92-bfe5-xxxxxx",
            "gmt_create": 1756690647468,
            "start_time": 1756690654885,
            "end_time": 1756690820734,
            "region": "cn-beijing",
            "api_key_id": "...",
            "caller_parent_id": "...",
            "caller_uid": "...",
            "user_api_unique_key": "apikey:v1:aigc:image2video:video-synthesis:wan2.2-s2v",
        }
    ],
}


def test_the_task_listing_is_read_as_documented():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=LISTING)

    start = datetime(2025, 9, 1, 1, 0, tzinfo=UTC)
    [row] = client_for(handler).list_tasks(start=start, end=start + timedelta(hours=2))

    assert row == ListedTask(
        task_id="0385dc79-5ff8-4d82-bcb6-xxxxxx",
        status="SUCCEEDED",
        state=TaskState.SUCCEEDED,
        model="wan2.2-s2v",
        submitted_at=datetime(2025, 9, 1, 1, 37, 27, 468000, tzinfo=UTC),
        scheduled_at=datetime(2025, 9, 1, 1, 37, 34, 885000, tzinfo=UTC),
        ended_at=datetime(2025, 9, 1, 1, 40, 20, 734000, tzinfo=UTC),
    )
    # The same moment as F3's "2025-09-01 09:37:27.468" in UTC+8.
    assert row.submitted_at.astimezone(PROVIDER_TZ).hour == 9
    params = seen[0].url.params
    assert seen[0].url.path == "/api/v1/tasks"
    assert (params["start_time"], params["end_time"]) == (
        "20250901090000",
        "20250901110000",
    )
    assert (params["model_name"], params["page_no"]) == ("wan2.2-s2v", "1")


def test_a_row_without_times_or_model_and_a_lowercase_status_is_read():
    listing = {
        "total": 1,
        "total_page": 1,
        "data": [{"task_id": "t-1", "status": " running "}],
    }
    [row] = client_for(lambda r: httpx.Response(200, json=listing)).list_tasks(
        start=datetime(2025, 9, 1, tzinfo=UTC), end=datetime(2025, 9, 1, 1, tzinfo=UTC)
    )
    assert row == ListedTask(task_id="t-1", status="RUNNING", state=TaskState.RUNNING)


def test_the_listing_window_is_cut_to_24_hours_and_pages_are_followed():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = int(request.url.params["page_no"])
        row = {"task_id": f"t-{page}", "status": "PENDING", "gmt_create": 1}
        return httpx.Response(200, json={"total_page": 2, "data": [row]})

    end = datetime(2025, 9, 2, 12, 0, tzinfo=UTC)
    rows = client_for(handler).list_tasks(start=end - timedelta(days=3), end=end)

    assert [r.task_id for r in rows] == ["t-1", "t-2"]
    assert [r.url.params["page_no"] for r in seen] == ["1", "2"]
    assert seen[0].url.params["start_time"] == "20250901200000"  # end - 24 h, UTC+8


@pytest.mark.parametrize(
    "status,body",
    [
        (200, F3),  # a task object, as the sweep used to expect: no `data`
        (200, {"output": {"data": [{"task_id": "t", "task_status": "RUNNING"}]}}),
        (200, {"data": [{"task_id": "t", "task_status": "RUNNING"}]}),
        (200, {"data": [{"task_id": "t", "status": "RUNNING", "gmt_create": "x"}]}),
        (200, {"data": ["t"]}),
        (404, {"code": "NotFound", "message": "Not found!"}),
    ],
)
def test_a_listing_that_cannot_be_read_raises(status, body):
    client = client_for(lambda r: httpx.Response(status, json=body))
    with pytest.raises(DashScopeError):
        client.list_tasks(
            start=datetime(2025, 9, 1, tzinfo=UTC),
            end=datetime(2025, 9, 1, 1, tzinfo=UTC),
        )


@pytest.mark.parametrize(
    "code,message,shown",
    [
        ("InvalidURL", "The input audio is longer than 20s.", "longer than 20s. Check"),
        ("InvalidURL", "  File size is larger than 15MB..  ", "than 15MB. Check"),
        (
            "InvalidFile.Whatever",
            "Bad  file ， try again。",
            "Bad file, try again. Check",
        ),
        ("Odd", "Something broke!!", "(Odd: Something broke)"),
    ],
)
def test_provider_messages_are_tidied_before_they_are_shown(code, message, shown):
    text = user_message(code, message)
    assert shown in text
    assert ".." not in text and "  " not in text and " ," not in text


def test_tidy_collapses_repeated_punctuation_and_spaces():
    assert tidy(" The input audio is longer than 20s.. ") == (
        "The input audio is longer than 20s."
    )
    assert tidy("Invalid file format，the request   file !?") == (
        "Invalid file format, the request file!"
    )


def test_a_fresh_detect_does_not_use_the_pooled_connection():
    answer = {"output": {"check_pass": True, "humanoid": True}, "request_id": "r"}
    client = client_for(lambda r: httpx.Response(200, json=answer))

    def dead_pool(*args, **kwargs):
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response."
        )

    client._client.request = dead_pool  # type: ignore[method-assign]

    with pytest.raises(DashScopeError) as caught:
        client.detect(image_url="https://s/p.jpg")
    assert caught.value.kind == ErrorKind.TRANSIENT
    assert client.detect(image_url="https://s/p.jpg", fresh=True).check_pass


@pytest.mark.parametrize(
    "error,unanswered",
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("Server disconnected"), True),
        (httpx.ReadError("reset"), True),
    ],
)
def test_a_transport_error_says_whether_the_request_may_have_arrived(error, unanswered):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(DashScopeError) as caught:
        client_for(handler).submit(
            image_url="https://s/p.jpg", audio_url="https://s/a.mp3", resolution="480P"
        )
    assert caught.value.kind == ErrorKind.TRANSIENT
    assert caught.value.unanswered is unanswered


@pytest.mark.parametrize(
    "status,body,unanswered",
    [
        (400, {"code": "InvalidParameter", "message": "bad"}, False),
        (429, {"code": "Throttling.RateQuota", "message": "slow down"}, False),
        (500, {"code": "InternalError", "message": "oops"}, True),
        (503, {"code": "ModelUnavailable", "message": "later"}, True),
        (200, {"request_id": "r", "output": {}}, True),
    ],
    ids=["400", "429", "500", "503", "200-without-task-id"],
)
def test_only_a_4xx_answer_proves_a_submit_made_no_task(status, body, unanswered):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    with pytest.raises(DashScopeError) as caught:
        client_for(handler).submit(
            image_url="https://s/p.jpg", audio_url="https://s/a.mp3", resolution="480P"
        )
    assert caught.value.unanswered is unanswered


@pytest.mark.parametrize("duration", ["abc", "NaN", "-3", True, [1]])
def test_billed_seconds_that_are_not_a_number_are_read_as_unknown(duration):
    # A garbled usage must not break every poll of the task (the slot would be
    # held until the task expired); unknown seconds are settled from the hold.
    task = dashscope_client._parse_task(
        {
            "output": {"task_id": "t-1", "task_status": "SUCCEEDED"},
            "usage": {"duration": duration},
        }
    )
    assert task.status == "SUCCEEDED" and task.billed_seconds is None
