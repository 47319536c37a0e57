"""A local emulator of DashScope's wan2.2-s2v, animate and EMO APIs, over real HTTP.

The contract is /work/shared/docs/provider-api.md (cited as §n below). Start
it with `python manage.py dashscope_emulator --port 8765`, or in tests:

    with Emulator(time_scale=86400, quiet=True) as emu:
        httpx.post(emu.base_url + "/services/aigc/image2video/face-detect", ...)

Routes, each under `/api/v1` and under `/qwen/api/v1` (§10, §12.1):

    POST /services/aigc/image2video/face-detect          wan2.2-s2v-detect (§2),
                                                         emo-detect-v1 (§8.1)
    POST /services/aigc/image2video/video-synthesis[/]   wan2.2-s2v (§3),
                                                         wan2.2-animate-move/-mix (§7),
                                                         emo-v1 (§8.2)
    GET  /tasks/{task_id}                                task object (§1.6)
    POST /tasks/{task_id}/cancel                         PENDING only
    GET  /tasks?page_no&page_size&status&model_name&start_time&end_time
    GET  /uploads?action=getPolicy&model=...             upload policy (§5.1)
plus, without prefix:
    POST /oss                                            the upload host (§5.2)
    GET  /results/{task_id}.mp4?Expires&OSSAccessKeyId&Signature
    /_emulator/...                                       control API (below)

Choices where the contract is silent (§13):

* List tasks answers as §1.2a documents: `{"request_id", "total",
  "total_page", "page_no", "page_size", "data": [row...]}`, newest first; a
  row has `task_id`, `status`, `model_name`, `request_id` (of the submit),
  `gmt_create` and, once reached, `start_time`/`end_time` (epoch ms), plus
  `region`, `api_key_id`, `caller_parent_id`, `caller_uid` and
  `user_api_unique_key`. Filters: task_id, status, model_name, start_time and
  end_time (`YYYYMMDDhhmmss` UTC+8, on the creation time; the window is at most
  24 h, default the last 24 h, longer is 400 InvalidParameter). page_size is
  1..100 (default 10). Expired tasks are not listed.
* Cancel of a PENDING task answers 200 `{"request_id", "output": {"task_id",
  "task_status": "CANCELED"}}`. Any other task (running, finished, unknown or
  expired) answers 400 `UnsupportedOperation` "Failed to cancel the task,
  please confirm if the task is in PENDING status."
* An unknown or expired task id answers 200 with `task_status: UNKNOWN` (F6),
  also for ids of another account's tasks.
* Unknown model: 404 `ModelNotFound` "The model X does not exist."; an
  emulated model on the other endpoint: 400 `InvalidParameter` "url error,
  please check url！" (DashScope's real answer). Missing model: 400
  `BadRequest.EmptyModel`; missing input: 400 `BadRequest.EmptyInput`; a
  missing or invalid field: 400 `InvalidParameter` "Required parameter(NAME)
  missing or invalid, please check the request parameters." (§6 variant).
* Region: keys carry a region; a key of the other region answers 401
  `InvalidApiKey` "Invalid API-key provided.". wan2.2-s2v, EMO and their
  detectors are Beijing-only, so on an `ap-southeast-1` server they (and getPolicy for
  them) answer 404 `ModelNotFound`.
* oss:// URLs without `X-DashScope-OssResourceResolve: enable`: 400
  `InvalidParameter` "The provided URL does not appear to be valid...". An
  oss:// object that is unknown, of another account, bound to another model,
  or older than 48 h (scaled): 400 `InvalidParameter.DataInspection` "Unable
  to download the media resource during the data inspection process.", at
  submit time always, and again as a task failure if it expires before the
  task starts.
* http(s) inputs are fetched for real, from loopback hosts only; any other
  URL answers 400 `InvalidURL` "Invalid URL provided in your request.".
  Failed downloads: `InvalidURL` (non-200), `InvalidURL.ConnectionRefused`,
  `InvalidURL.Timeout`.
* Detect: HTTP 200 for every judged image, `check_pass:false` with
  `humanoid`, `code`, `message` for content failures (format
  `InvalidFile.Format`, size `InvalidFile.Resolution`, faces
  `InvalidFile.NoHuman/MultiHuman/BodyProportion/FacePose`, blur or darkness
  `InvalidFile.Value`, undecodable `InvalidFile.Openerror`); each 200 is a
  billable detect call. Bad or undownloadable URLs are HTTP 400.
* s2v media checks (`input_errors`, §13.2): `async` (default) fails the task
  (RUNNING -> FAILED) with `InvalidURL` "File type is not supported. Allowed
  types are: .wav, .mp3." / "File size is larger than 15MB." / "The input
  audio is longer than 20s." (limits strict: exactly 20 s or exactly
  15,000,000 bytes, the smaller reading of "15 MB", is refused), image
  problems as for detect (wrong image format: `InvalidURL` with the image
  format message); `sync` answers the same codes as HTTP 400 at submit.
* Animate (§7): both models in both regions. Submit refuses, as 400: no
  `parameters` (`BadRequest.EmptyParameters`), `mode` missing or not
  wan-std/wan-pro, `check_image` or `input.watermark` not a boolean
  (`InvalidParameter` naming it). Media checks follow `input_errors` as for
  s2v: image JPEG/PNG/BMP/WebP, sides 200-4096 (`InvalidFile.Resolution`),
  <= 5 MB (`InvalidFile.Size`), 1:3-3:1 (`InvalidFile.AspectRatio`), a face
  check only with check_image; video MP4/MOV/AVI (`InvalidFile.Format`),
  2-30 s (`InvalidFile.Duration`), sides 200-2048, 1:3-3:1, <= 200 MB;
  undecodable `InvalidFile.Openerror`. MB = 10^6 bytes. A task runs
  `run_seconds_base + run_seconds_per_video_second * reference seconds`; its
  result is a stand-in (see animate.py) exactly as long as the reference
  video, at 15 fps (wan-std) or 25 fps (wan-pro), and usage is
  `{"video_duration": reference seconds, "video_ratio": "standard"|"pro"}`.
  The watermark is accepted but not drawn.
* EMO (§8). emo-detect-v1 takes `parameters.ratio` "1:1" (default) or
  "3:4" (else 400 `InvalidParameter` naming it) and judges the image as the
  s2v check does (sides 400-7000, one face); a pass answers `check_pass`,
  `face_bbox` and `ext_bbox` (`[x1, y1, x2, y2]`; ext_bbox exactly at the
  ratio, 2.5 face widths wide, clamped to the image), a failure `check_pass:
  false`, `code` and the §6 `message` (no boxes); usage `{"image_count": 1}`,
  billed like the s2v check. emo-v1 refuses at submit, as 400
  `InvalidParameter`: `style_level` not normal/calm/active ("The style_level
  is invalid."), `face_bbox` missing or not four whole numbers x1<x2, y1<y2
  (the message naming it), `ext_bbox` so, or not 1:1 or 3:4 within 3 %, or
  not holding the face ("Invalid ext_bbox."). Boxes outside the image and the
  audio (wav/mp3, < 60 s, < 15 MB: the s2v messages with 60s) follow
  `input_errors`. The result is the image cropped to ext_bbox, rendered as
  s2v's is at 512×512 (1:1) or 512×704 (3:4), as long as the audio; usage
  `{"video_duration", "video_ratio": "1:1"|"3:4"}`. style_level is kept
  (state `style_level`), not drawn. One task at a time, the rest queue.
* Concurrency (§13.3, §7.3): per account and model at most `concurrency`
  tasks RUNNING;
  `overflow=queue` keeps the rest PENDING (FIFO), `overflow=reject` answers
  429 `Throttling.RateQuota` (code, message, status configurable).
* Rate limits per account, sliding one-second windows of accepted requests:
  submit 5/s, task GET + list 20/s, detect 5/s, getPolicy 100/s per model;
  over the limit: 429 `Throttling.RateQuota`.
* usage (§13.5): `{"duration", "video_count": 1, "SR"}`, or `video_duration`
  instead of / besides `duration` (`usage_field`). Seconds of video, 2
  decimals.
* Upload host (§13.13): success_action_status "200" -> 200 empty body, "201"
  -> 201 XML, absent -> 204 (as OSS). Errors are XML `<Error><Code>...`:
  400 InvalidArgument (malformed form, missing field, file not last), 403
  SignatureDoesNotMatch, 403 InvalidAccessKeyId, 403 AccessDenied "Invalid
  according to Policy: Policy expired.", 403 AccessDenied "...Policy
  Condition failed..." (key outside upload_dir, acl/forbid-overwrite not as
  issued), 400 EntityTooLarge, 409 FileAlreadyExists. Objects cannot be
  downloaded (403). `expire_in_seconds` tells the real, scaled validity.
* Result downloads: 403 XML AccessDenied "Request has expired." after
  expiry, 403 SignatureDoesNotMatch for a tampered URL; Range supported.

Time: `time_scale` K divides every DashScope period (task 24 h, result URL
24 h after end, upload 48 h, policy 300 s); `task_ttl` etc. override one in
real seconds. Run and render times are not scaled: a task stays PENDING at
least `pending_seconds` (default 0) and while the slot is busy, then runs
`run_seconds_base + run_seconds_per_audio_second * audio seconds`, or as
long as the real render takes if that is longer.

Control API (no auth; the server only listens on loopback):

    GET  /_emulator/state            the state JSON (below)
    POST /_emulator/reset            forget tasks, uploads, counts, faults, clock
                                     and config changes (API keys stay)
    GET  /_emulator/faults           {"faults": [...]}
    POST /_emulator/faults           a fault, a list, or {"faults": [...]}
    POST /_emulator/faults/clear     {"kind"?, "account"?}; DELETE /faults too
    POST /_emulator/clock            {"advance": seconds}: move the provider clock
    GET|POST /_emulator/config       read or change Config fields at run time

A fault is `{"kind", "count", "route", "path", "account", ...}`. `count` is
how many requests (or tasks) it hits, null = until cleared; `route` is "*"
or a comma list of detect, submit, task, cancel, list, policy, upload,
result; `path` an fnmatch pattern; `account` limits it to one account:

    {"kind": "throttle", "count": 1, "code": "Throttling.RateQuota"}  429
    {"kind": "server_error", "count": 1, "status": 500}  500 InternalError
    {"kind": "server_error", "status": 503}              503 ModelUnavailable
    {"kind": "drop", "count": 1, "when": "before"|"after"}  close, no answer
    {"kind": "slow", "count": 1, "delay_ms": 1000}       then answer normally
    {"kind": "fail_task", "count": 1, "code": "InternalError", "message": ...}
    {"kind": "moderation", "count": 1, "code": "DataInspectionFailed"
                                      | "IPInfringementSuspect"}
    {"kind": "expire_results", "count": null}            downloads get 403
    {"kind": "account_error", "account": "acct-1", "count": null,
     "code": "Arrearage" | "InvalidApiKey" | "AccessDenied.Unpurchased",
     "status": 400}                                      every API call fails
    {"kind": "unknown_task", "count": 1}                 task GET says UNKNOWN

Defaults: count 1, except expire_results and account_error (until
cleared); status and message follow §6 for the code. `drop` with
`when: "after"` does the work (e.g. creates the task) and then hangs up.

State JSON (`GET /_emulator/state`, `Emulator.state()`); times are unix
seconds on the provider clock:

    {"now", "clock_offset", "config": {...}, "ttl": {task, result, upload,
     policy}, "totals": {fault_<kind>: n, ...}, "faults": [...],
     "uploads": [{"key", "model", "account", "size", "created", "expires"}],
     "accounts": {"acct-1": {
        "keys": [...], "running", "pending", "max_running",
        "idle_gaps": [[end of task i, start of task i+1], ...],
        "counts": {"submit_requests", "submissions", "submit_throttled",
                   "submit_rejected_busy", "task_queries", "query_throttled",
                   "list_queries", "detect_requests", "detect_calls" (billable),
                   "detect_throttled", "policy_requests", "policy_calls",
                   "policy_throttled", "uploads", "cancel_requests",
                   "cancels"},  (a count that is absent is 0)
        "tasks": [{"id" (= "task_id"), "status", "model", "api_key", "resolution",
                   "submit_time", "start_time", "end_time", "audio_duration",
                   "mode", "reference_duration" (animate), "ratio",
                   "style_level" (EMO), "video_duration",
                   "width", "height", "code", "message", "result_expires",
                   "expired"}]}}}
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from studio.emulators import common, multipart
from studio.emulators.common import BodyTooLarge, Response

from . import animate, emo, errors, media
from .errors import ApiError, OssError
from .faults import API_ROUTES
from .state import (
    MODELS,
    STATUSES,
    ApiKey,
    Config,
    Store,
    log_line,
    parse_list_time,
)

API_PREFIXES = ("/api/v1", "/qwen/api/v1")
DEFAULT_KEY = "sk-emulator"
JSON_LIMIT = 10 * 1024 * 1024
# The listing searches at most 24 h of creation times (§1.2a), whatever the scale.
LIST_WINDOW = 24 * 3600.0

_TASK = re.compile(r"/tasks/([^/]+)")
_CANCEL = re.compile(r"/tasks/([^/]+)/cancel")
_RESULT = re.compile(r"/results/([^/]+)\.mp4")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def json_response(status: int, payload: Mapping[str, Any], request_id: str) -> Response:
    body = json.dumps({"request_id": request_id, **payload}, ensure_ascii=False)
    return Response(
        status,
        body.encode(),
        "application/json",
        [("X-Request-Id", request_id)],
        code=str(payload.get("code", "")) if status >= 400 else "",
    )


def json_error(status: int, code: str, message: str, request_id: str) -> Response:
    return json_response(status, {"code": code, "message": message}, request_id)


def xml_error(status: int, code: str, message: str, request_id: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "  <HostId>dashscope-file-emulator.oss.emulator</HostId>\n</Error>\n"
    )
    return Response(
        status,
        body.encode(),
        "application/xml",
        [("x-oss-request-id", request_id)],
        code=code,
    )


class Request(common.Request):
    """A request to the DashScope API: a JSON body with DashScope's error."""

    def json(self) -> dict[str, Any]:
        """The JSON object body; 400 "Required body invalid..." otherwise (§6)."""
        try:
            data = json.loads(self.body(JSON_LIMIT) or b"null")
        except (ValueError, UnicodeDecodeError, BodyTooLarge):
            raise ApiError(400, "InvalidParameter", errors.BAD_BODY) from None
        if not isinstance(data, dict):
            raise ApiError(400, "InvalidParameter", errors.BAD_BODY)
        return data


def classify(path: str) -> tuple[str, str] | None:
    """(route name, task id or "") for a request path, None when unknown."""
    for prefix in API_PREFIXES:
        if path != prefix and not path.startswith(prefix + "/"):
            continue
        # Trailing slashes are accepted everywhere (docs use one, §1.2).
        rest = path[len(prefix) :].rstrip("/")
        if rest == "/services/aigc/image2video/face-detect":
            return "detect", ""
        if rest == "/services/aigc/image2video/video-synthesis":
            return "submit", ""
        if rest == "/tasks":
            return "list", ""
        if rest == "/uploads":
            return "policy", ""
        if match := _CANCEL.fullmatch(rest):
            return "cancel", match.group(1)
        if match := _TASK.fullmatch(rest):
            return "task", match.group(1)
        return None
    if path == "/oss" or path.startswith("/oss/"):
        return "upload", ""
    if match := _RESULT.fullmatch(path):
        return "result", match.group(1)
    return None


class _App(common.BaseApp[Store, Config]):
    def dispatch(self, req: Request, request_id: str) -> Response:
        if req.path == "/_emulator" or req.path.startswith("/_emulator/"):
            return self.control(req, request_id)
        found = classify(req.path)
        if found is None:
            return json_error(404, "NotFound", "Not found!", request_id)
        route, task_id = found
        xml = route in ("upload", "result")
        error = xml_error if xml else json_error
        key = None
        if route in API_ROUTES:
            key = self.store.lookup_key(req.header("Authorization"))
        account = key.account if key else None
        self.store.count(None, "requests")

        fault = self.store.request_fault(route, req.path, account)
        if fault is not None and fault.kind == "drop" and fault.when == "before":
            return Response(0, drop=True)
        if fault is not None and fault.kind != "drop":
            return error(fault.status, fault.code, fault.message, request_id)

        try:
            if route in API_ROUTES:
                response = self.api(req, route, task_id, request_id)
            elif route == "upload":
                response = self.upload(req, request_id)
            else:
                response = self.result(req, task_id, request_id)
        except ApiError as exc:
            response = error(exc.status, exc.code, exc.message, request_id)
        except OssError as exc:
            response = xml_error(exc.status, exc.code, exc.message, request_id)
        if fault is not None:  # a drop after the work was done
            response.drop = True
        return response

    # DashScope API routes

    def api(self, req: Request, route: str, task_id: str, request_id: str) -> Response:
        expected = {"task": "GET", "list": "GET", "policy": "GET"}.get(route, "POST")
        if req.method != expected:
            raise ApiError(
                400, "InvalidParameter", errors.method_not_supported(req.method)
            )
        # §12.2: auth first, then account-wide faults (arrears and the like).
        key = self.store.authenticate(req.header("Authorization"))
        account_fault = self.store.faults.take(
            ("account_error",), route=route, path=req.path, owner=key.account
        )
        if account_fault is not None:
            raise ApiError(
                account_fault.status, account_fault.code, account_fault.message
            )
        handler = {
            "detect": self.detect,
            "submit": self.submit,
            "task": self.task,
            "cancel": self.cancel,
            "list": self.list_tasks,
            "policy": self.policy,
        }[route]
        payload = handler(req, key, task_id)
        return json_response(200, payload, request_id)

    # §2 wan2.2-s2v-detect and §8.1 emo-detect-v1, synchronous; must not carry
    # X-DashScope-Async.
    def detect(self, req: Request, key: ApiKey, _: str) -> dict[str, Any]:
        if req.flag("X-DashScope-Async"):
            raise ApiError(403, "AccessDenied", errors.SYNC_ONLY)
        body = req.json()
        model = self.store.check_model(body.get("model"), "detect")
        data = _input_of(body)
        parameters = _parameters_of(body)
        ratio = emo.ratio_parameter(parameters) if model == emo.DETECT else ""
        self.store.count(key.account, "detect_requests")
        self.store.check_rate(key.account, "detect", self.cfg.detect_rps)
        source = media.parse_url(
            data.get("image_url"),
            "image_url",
            resolve_oss=req.flag("X-DashScope-OssResourceResolve"),
        )
        owned: list[Path] = []
        try:
            path = self.store.materialize(source, key, model, owned)
            output = emo.detect(path, ratio) if ratio else _s2v_detect(path)
        finally:
            for path in owned:
                path.unlink(missing_ok=True)
        # §2.3, §8: every 200 is billed, whether the image passes or not.
        self.store.count(key.account, "detect_calls")
        return {"output": output, "usage": {"image_count": 1}}

    # §3.1 wan2.2-s2v and §7.1 wan2.2-animate-move/-mix submit; X-DashScope-Async:
    # enable is required.
    def submit(self, req: Request, key: ApiKey, _: str) -> dict[str, Any]:
        if not req.flag("X-DashScope-Async"):
            raise ApiError(403, "AccessDenied", errors.ASYNC_ONLY)
        body = req.json()
        model = self.store.check_model(body.get("model"), "submit")
        data = _input_of(body)
        resolution = mode = ""
        check_image = True
        emo_input = None
        if model in animate.MODELS:
            mode, check_image = _animate_parameters(body, data)
            driver_field = "video_url"
        elif model == emo.MODEL:
            emo_input = emo.task_input(_parameters_of(body), data)
            driver_field = "audio_url"
        else:
            resolution = _parameters_of(body).get("resolution", "480P")
            if resolution not in ("480P", "720P"):
                raise ApiError(400, "InvalidParameter", errors.missing("resolution"))
            # parameters.style (§13.4) is accepted and ignored.
            driver_field = "audio_url"
        self.store.count(key.account, "submit_requests")
        self.store.check_rate(key.account, "submit", self.cfg.submit_rps)
        resolve = req.flag("X-DashScope-OssResourceResolve")
        image = media.parse_url(data.get("image_url"), "image_url", resolve_oss=resolve)
        driver = media.parse_url(
            data.get(driver_field), driver_field, resolve_oss=resolve
        )
        for source in (image, driver):
            if source.oss_key is not None:
                self.store.resolve_oss(source.oss_key, key.account, model)
        prepared = None
        if self.cfg.input_errors == "sync":
            prepared = self.store.prepare(
                key,
                model,
                image,
                driver,
                check_image=check_image,
                emo_input=emo_input,
            )
        try:
            task = self.store.submit(
                request_id=req.request_id,
                key=key,
                model=model,
                resolution=resolution,
                image=image,
                driver=driver,
                prepared=prepared,
                mode=mode,
                check_image=check_image,
                emo_input=emo_input,
            )
        except ApiError:
            if prepared is not None:
                prepared.discard()
            raise
        return {"output": {"task_id": task.id, "task_status": "PENDING"}}

    # §1.6, §3.2: task query; 20 QPS per account.
    def task(self, req: Request, key: ApiKey, task_id: str) -> dict[str, Any]:
        self.store.count(key.account, "task_queries")
        self.store.check_rate(key.account, "query", self.cfg.query_qps)
        unknown = self.store.faults.take(
            ("unknown_task",), route="task", path=req.path, owner=key.account
        )
        task = None if unknown else self.store.visible_task(key, task_id)
        if task is None:
            return {"output": {"task_id": task_id, "task_status": "UNKNOWN"}}
        output, usage = self.store.task_output(task)
        return {"output": output, **({"usage": usage} if usage else {})}

    # §1.2: cancel, PENDING only (§13.8 for the refusal).
    def cancel(self, req: Request, key: ApiKey, task_id: str) -> dict[str, Any]:
        task = self.store.cancel(key, task_id)
        return {"output": {"task_id": task.id, "task_status": task.status}}

    # §1.2, §1.2a: list tasks; rows are not task objects.
    def list_tasks(self, req: Request, key: ApiKey, _: str) -> dict[str, Any]:
        self.store.count(key.account, "list_queries")
        self.store.check_rate(key.account, "query", self.cfg.query_qps)
        q = req.query
        page_no = _int_param(q, "page_no", 1, 1, 10**6)
        page_size = _int_param(q, "page_size", 10, 1, 100)
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(400, "InvalidParameter", errors.missing("status"))
        times = []
        for name in ("start_time", "end_time"):
            try:
                times.append(parse_list_time(q[name]) if q.get(name) else None)
            except ValueError:
                raise ApiError(400, "InvalidParameter", errors.missing(name)) from None
        start, end = times
        # A window of at most 24 h; the default is the last 24 h (§1.2a).
        if end is None:
            end = self.store.now() if start is None else start + LIST_WINDOW
        if start is None:
            start = end - LIST_WINDOW
        if not 0 <= end - start <= LIST_WINDOW:
            raise ApiError(400, "InvalidParameter", errors.missing("start_time"))
        found = self.store.list_tasks(
            key,
            task_id=q.get("task_id") or None,
            status=status,
            model=q.get("model_name") or None,
            start=start,
            end=end,
        )
        page = found[(page_no - 1) * page_size : page_no * page_size]
        return {
            "total": len(found),
            "total_page": -(-len(found) // page_size),
            "page_no": page_no,
            "page_size": page_size,
            "data": [self.store.list_row(task, self.cfg.region) for task in page],
        }

    # §5.1: getPolicy; 100 QPS per account and model.
    def policy(self, req: Request, key: ApiKey, _: str) -> dict[str, Any]:
        if req.query.get("action") != "getPolicy":
            raise ApiError(400, "InvalidParameter", errors.missing("action"))
        model = req.query.get("model")
        if not model:
            raise ApiError(400, "InvalidParameter", errors.missing("model"))
        self.store.check_model(model, endpoint=_endpoint_of(model))
        self.store.count(key.account, "policy_requests")
        self.store.check_rate(
            key.account, f"policy:{model}", self.cfg.policy_qps, counter="policy"
        )
        return {"data": self.store.issue_policy(key, model)}

    # §5.2: the emulated OSS upload host (multipart POST, no API key).
    def upload(self, req: Request, request_id: str) -> Response:
        if req.method != "POST":
            raise OssError(
                403,
                "AccessDenied",
                "Temporary files cannot be listed or downloaded.",  # §5.4
            )
        limit = int(self.cfg.max_file_size_mb * 1024 * 1024) + common.DRAIN_LIMIT
        try:
            body = req.body(limit)
        except BodyTooLarge:
            response = xml_error(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size.",
                request_id,
            )
            response.close = True
            return response
        try:
            parts = multipart.parse(body, req.header("Content-Type"))
        except multipart.MultipartError as exc:
            raise OssError(
                400,
                "InvalidArgument",
                f"The body of your POST request is not well-formed "
                f"multipart/form-data: {exc}.",
            ) from None
        status, key = self.store.accept_upload(parts)
        headers = [("x-oss-request-id", request_id), ("ETag", f'"{uuid.uuid4().hex}"')]
        if status == 201:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>\n'
                f"  <Bucket>dashscope-file-emulator</Bucket>\n"
                f"  <Key>{escape(key)}</Key>\n</PostResponse>\n"
            ).encode()
            return Response(201, body, "application/xml", headers)
        return Response(status, b"", None, headers)

    # §3.2: result download, valid 24 h (scaled) after the task ended.
    def result(self, req: Request, task_id: str, request_id: str) -> Response:
        if req.method not in ("GET", "HEAD"):
            raise OssError(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )
        path = self.store.result_file(task_id, req.query)
        size = path.stat().st_size
        headers = [
            ("x-oss-request-id", request_id),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{task_id}"'),
        ]
        match = _RANGE.fullmatch(req.header("Range"))
        if match and size and (match.group(1) or match.group(2)):
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last or size - 1), size - 1)
            else:
                start, end = max(0, size - int(last)), size - 1
            if start > end or start >= size:
                response = xml_error(
                    416,
                    "InvalidRange",
                    "The requested range cannot be satisfied.",
                    request_id,
                )
                response.headers.append(("Content-Range", f"bytes */{size}"))
                return response
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            return Response(206, b"", "video/mp4", headers, path, (start, end))
        return Response(200, b"", "video/mp4", headers, path, (0, size - 1))

    # Control API

    def control(self, req: Request, request_id: str) -> Response:
        name = req.path.removeprefix("/_emulator").strip("/")
        store = self.store
        try:
            if name == "state" and req.method == "GET":
                return json_response(200, store.state(), request_id)
            if name == "reset" and req.method == "POST":
                store.reset()
                return json_response(200, {"reset": True}, request_id)
            if name == "faults" and req.method == "GET":
                return json_response(200, {"faults": store.list_faults()}, request_id)
            if name == "faults" and req.method == "POST":
                data = json.loads(req.body(JSON_LIMIT) or b"[]")
                if isinstance(data, dict):
                    data = data.get("faults", [data])
                if not isinstance(data, list) or not all(
                    isinstance(item, dict) for item in data
                ):
                    raise ValueError("send a fault object or a list of them")
                listed = store.add_faults(data)
                return json_response(200, {"faults": listed}, request_id)
            if (name == "faults" and req.method == "DELETE") or (
                name == "faults/clear" and req.method == "POST"
            ):
                data = json.loads(req.body(JSON_LIMIT) or b"{}") or {}
                removed = store.clear_faults(data.get("kind"), data.get("account"))
                return json_response(
                    200,
                    {"removed": removed, "faults": store.list_faults()},
                    request_id,
                )
            if name == "clock" and req.method == "POST":
                data = json.loads(req.body(JSON_LIMIT) or b"{}")
                store.advance_clock(float(data.get("advance", 0)))
                return json_response(
                    200,
                    {"now": store.now(), "clock_offset": store.clock_offset},
                    request_id,
                )
            if name == "config" and req.method == "GET":
                return json_response(200, asdict(store.config), request_id)
            if name == "config" and req.method == "POST":
                data = json.loads(req.body(JSON_LIMIT) or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("send an object of settings")
                return json_response(200, asdict(store.configure(data)), request_id)
        except (ValueError, TypeError, AttributeError, BodyTooLarge) as exc:
            return json_error(400, "InvalidControlRequest", str(exc), request_id)
        return json_error(404, "NotFound", "Not found!", request_id)

    def body_too_large(self, request_id: str) -> Response:
        return json_error(400, "InvalidParameter", errors.BAD_BODY, request_id)

    def crashed(self, req: Request, exc: Exception, request_id: str) -> Response:
        log_line(f"error on {req.method} {req.path}: {exc!r}")
        return json_error(
            500, "InternalError", errors.KNOWN["InternalError"][1], request_id
        )

    def log_request(self, req: Request, response: Response, started: float) -> None:
        if self.quiet:
            return
        ms = (time.monotonic() - started) * 1000
        status = "dropped" if response.drop else str(response.status)
        code = f" {response.code}" if response.code else ""
        log_line(f'{req.client} "{req.method} {req.path}" {status}{code} {ms:.0f}ms')


def _s2v_detect(path: Path) -> dict[str, Any]:
    """wan2.2-s2v-detect's `output` (§2.2): code and message only on a failure."""
    check = media.inspect_image(path)
    output: dict[str, Any] = {"check_pass": check.ok, "humanoid": check.humanoid}
    if not check.ok:
        output.update(code=check.code, message=check.message)
    return output


def _input_of(body: Mapping[str, Any]) -> dict[str, Any]:
    data = body.get("input")
    if not isinstance(data, dict) or not data:
        raise ApiError(
            400,
            "BadRequest.EmptyInput",
            "Required input parameter missing from request.",
        )
    return data


def _parameters_of(body: Mapping[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "InvalidParameter", errors.missing("parameters"))
    return parameters


def _animate_parameters(
    body: Mapping[str, Any], data: Mapping[str, Any]
) -> tuple[str, bool]:
    """§7.1: `parameters` is required, with `mode` wan-std or wan-pro;
    `check_image` and `input.watermark` are optional booleans."""
    parameters = body.get("parameters")
    if parameters is None:
        raise ApiError(
            400,
            "BadRequest.EmptyParameters",
            'Required parameter "parameters" missing from request.',
        )
    parameters = _parameters_of(body)
    mode = parameters.get("mode")
    if mode not in animate.SERVICE_MODES:
        raise ApiError(400, "InvalidParameter", errors.missing("mode"))
    check_image = parameters.get("check_image", True)
    if not isinstance(check_image, bool):
        raise ApiError(400, "InvalidParameter", errors.missing("check_image"))
    # The watermark is checked, not drawn: the result is a stand-in anyway.
    if not isinstance(data.get("watermark", False), bool):
        raise ApiError(400, "InvalidParameter", errors.missing("watermark"))
    return str(mode), check_image


def _endpoint_of(model: str) -> str:
    return MODELS.get(model, "submit")


def _int_param(
    q: Mapping[str, str], name: str, default: int, low: int, high: int
) -> int:
    text = q.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, "InvalidParameter", errors.missing(name))
    return value


class _Handler(common.Handler):
    request_class = Request


class Emulator(common.BaseEmulator[Store, ApiKey]):
    """The emulator in background threads. Usable as a context manager.

    Keyword `settings` are further `state.Config` fields (region, overflow,
    concurrency, pending_seconds, run_seconds_base, input_errors, usage_field,
    overflow_code, task_ttl, ...).
    """

    name = "dashscope-emulator"
    handler = _Handler
    default_key = DEFAULT_KEY
    key_class = ApiKey
    store_class = Store
    app_class = _App

    # Addresses (`url`, the server root, is the upload host and results too)

    @property
    def base_url(self) -> str:
        return self.url + "/api/v1"

    @property
    def qwen_base_url(self) -> str:
        return self.url + "/qwen/api/v1"

    # Test helpers (the same as the control API, without HTTP); `advance_clock`
    # moves the expiry of tasks, URLs, uploads and policies.

    def clear_faults(self, kind: str | None = None, account: str | None = None) -> int:
        return self.store.clear_faults(kind, account)

    def account_state(self, account: str = "acct-1") -> dict[str, Any]:
        accounts: dict[str, dict[str, Any]] = self.state()["accounts"]
        return accounts.get(account, {})

    def configure(self, **changes: Any) -> Config:
        return self.store.configure(changes)
