"""A local emulator of WaveSpeedAI's wan-2.2 speech-to-video and animate, over HTTP.

The contract is /work/shared/docs/provider-api.md §9 (cited as §n below).
Start it with `python manage.py wavespeed_emulator --port 8766`, or in tests:

    with WaveSpeedEmulator(time_scale=86400, quiet=True) as ws:
        httpx.post(ws.base_url + "/api/v3/wavespeed-ai/wan-2.2/speech-to-video", ...)

`base_url` is the server root, as `https://api.wavespeed.ai` is for the
real service. Routes (Authorization: Bearer KEY on every /api/v3 route):

    POST /api/v3/wavespeed-ai/wan-2.2/speech-to-video[?webhook=URL]   submit (§9.2)
    POST /api/v3/wavespeed-ai/wan-2.2-animate[?webhook=URL]           submit (§9.6)
    GET  /api/v3/predictions/{id}/result, GET /api/v3/predictions/{id}  (§9.3)
    GET  /api/v3/predictions?page=1&page_size=20      this key's, newest first
    POST /api/v3/media/upload/binary                  multipart `file` (§9.4)
    GET  /api/v3/webhook/secret                       {"secret": "whsec_..."}
    GET  /media/uploads/{token}/{filename}            an upload (no auth)
    GET  /media/outputs/{id}.mp4                      a result (no auth)
    /_emulator/...                                    control API (below)

Pinned with the client (a shared decision, not all in §9):

* Every answer is `{"code", "message", "data"}`; errors are `{"code": <HTTP
  status>, "message"}`: 401 "Unauthorized: missing API key" / "...: invalid
  API key"; 402 "Insufficient balance, please top up" (submit, for keys
  flagged nobalance); 400 for validation; 404 "Prediction not found"; 429
  "Too Many Requests" with Retry-After (seconds); 500 "Internal server error".
* Submit body is flat: `image`, `audio` (URLs, required), `prompt` ("" by
  default), `resolution` (480p | 720p, default 480p), `seed` (int, -1). The
  answer is 200 with the prediction in status `created`; a prediction is
  `{id (32 hex), model, input (the body as sent), outputs, urls.get,
  has_nsfw_contents, status, created_at (ISO, ms, Z), error, timings.inference
  (ms)}`. Completed: `outputs: ["<base>/media/outputs/<id>.mp4"]`, a real MP4
  from `studio.media.render` at the resolution, as long as the audio, and
  `has_nsfw_contents: [false]`.
* Animate (§9.6) is submitted the same way with `image`, `video` (URLs,
  required), `mode` (animate | replace, default animate), `prompt`,
  `resolution`, `seed`. Its result is the emulators' stand-in
  (`studio.emulators.animate`: the character composited over the reference
  video, 16 fps, at the resolution's area), as long as the reference video.
* §9.6: retention 7 days (scaled) for predictions, outputs and uploads;
  webhooks signed `v3,<hex HMAC-SHA256>` over `{webhook-id}.{timestamp}.{body}`
  with the secret minus `whsec_` as raw UTF-8 bytes; Bronze tier 3 concurrent
  (created + processing) and 5 submits per (scaled) minute, per key.

Choices where §9 and the pinned list are silent:

* Check order on submit: auth (401), balance (402), JSON and field checks
  (400), tier limits (429), then the inputs are fetched and decoded (400).
  Only accepted submits count towards the per-minute limit. Retry-After is
  the seconds until the oldest submit leaves the window (at least 1), or
  `busy_retry_after` (1) over the concurrent limit.
* 400 messages: "Invalid JSON body", "image is required" (also audio,
  video), "prompt must be a string", "resolution must be one of 480p,
  720p", "seed must be an integer", "enable_sync_mode is not supported for
  this model" (§9.6), "mode must be one of animate, replace", "Invalid image
  URL: ..." (also audio, video: neither an own upload nor a loopback
  http(s) URL), "Failed to download image: URL (HTTP 404 | refused |
  timeout...)", "image is not a valid image file", "audio is not a valid
  audio file", "audio is longer than 600 seconds" (§9.5, the newer page),
  "video is not a valid video file" (no length: a still picture too),
  "video is longer than 120 seconds" (§9.6),
  "Invalid webhook URL: ...", "page must be a positive integer",
  "page_size must be between 1 and 100", "Missing multipart field: file",
  "Unsupported file type: ...", "File too large: image files may be at most
  20 MB" (MB = 2^20 bytes). Unknown JSON fields are accepted and echoed in
  `input`. Unknown paths: 404 "Not found"; a known path with another method:
  405 "Method not allowed". Other keys' predictions are 404, as unknown ones.
* Upload type is judged by content (Pillow, then FFmpeg), not by name;
  `filename` is the sent name made safe for a URL path ("file" if none).
* Inputs: own upload URLs are read from the store; loopback http(s) URLs
  are fetched at submit (so a bad input is a 400, never a failed task).
* `created_seconds` (1) then at least `processing_seconds` (3), both divided
  by time_scale; the render counts towards processing and is never cut.
  `hold` keeps predictions where they are until advanced by the control API.
  `timings.inference` is the real milliseconds spent processing (0 before).
* nsfw fault: by default the prediction *completes* with `outputs: []` and
  `has_nsfw_contents: [true]` (what WaveSpeed's field implies: the content
  is withheld); with `"mode": "failed"` it fails with error "NSFW content
  detected in the output" and `has_nsfw_contents: [true]`. fail_task's
  default error: "Task failed: the model could not generate the video".
* Webhooks: `?webhook=` must be an absolute http(s) URL (else 400). The
  body is the prediction object as GET shows it, compact JSON. Only
  loopback URLs are called; others are recorded as `skipped`. A delivery
  that fails (transport error or non-2xx) is retried `webhook_retries` (2)
  more times after 0.5 s, 1 s (real) with the same webhook-id and a fresh
  timestamp (unix seconds on the provider clock) and signature; a duplicate (fault) is a second delivery with
  its own webhook-id. Secrets are per key, stable for the process (reset
  keeps them), `whsec_` + base64 of 24 random bytes (so a client that
  base64-decodes it signs with the wrong key).
* Tiers: bronze 3/5, silver 100/60 (§9.6), unlimited 0/0 (no limits), or
  explicit `max_concurrent`/`per_minute`; both models count together. Default key `ws-emulator`, bronze.
* Retention deletes the records: afterwards the prediction is 404, absent
  from the listing, and its output and upload URLs are 404.

Time: `time_scale` K divides every provider period (retention 7 d, the
rate-limit minute, created/processing delays). `retention_seconds` overrides
retention in real seconds. The provider clock (created_at, retention, the
rate window) can be moved with `/_emulator/clock`.

Control API (no auth; the server listens on loopback only):

    GET  /_emulator/state                  everything below, as JSON
    POST /_emulator/reset                  forget predictions, uploads, deliveries,
                                           faults, clock, config and key changes
    GET  /_emulator/faults                 {"faults": [...]}
    POST /_emulator/faults                 a fault, a list, or {"faults": [...]}
    POST /_emulator/faults/clear           {"kind"?, "key"?}; DELETE /faults too
    POST /_emulator/clock                  {"advance": seconds}
    GET|POST /_emulator/config             read or change Config fields
    GET  /_emulator/keys                   {"keys": {...}}
    POST /_emulator/keys                   {"key", "tier"?, "max_concurrent"?,
                                            "per_minute"?, "balance"?}: add or change
    GET  /_emulator/webhooks               {"deliveries": [...]}
    GET  /_emulator/predictions            {"predictions": [...]} (all keys)
    GET  /_emulator/predictions/{id}       one, with emulator fields
    POST /_emulator/predictions/{id}/advance  {"to": processing|completed|failed,
                                               "error"?}

A fault is `{"kind", "count", "route", "path", "key", ...}`; `count` null =
until cleared; `route` "*" or a comma list of submit, result, list, upload,
secret, media:

    {"kind": "throttle", "retry_after": 1}            429 Too Many Requests
    {"kind": "server_error", "status": 500}           500 Internal server error
    {"kind": "drop", "when": "before"|"after"}        hang up (after: the work,
                                                      e.g. the prediction, is done)
    {"kind": "slow", "delay_ms": 1000}                then answer normally
    {"kind": "fail_task", "message": "..."}           next prediction fails
    {"kind": "nsfw", "mode": "completed"|"failed"}    next prediction is NSFW
    {"kind": "expire_results"}                        outputs 404 (until cleared)
    {"kind": "webhook_duplicate"}                     next prediction's webhook x2
    {"kind": "webhook_late", "delay_ms": 2000}        ...sent that much later
    {"kind": "webhook_bad_signature"}                 ...signed with a wrong key
    {"kind": "webhook_drop"}                          ...never sent

Task and webhook faults are taken by the next prediction submitted (webhook
ones only by a prediction that has a webhook).

State JSON: {"now", "clock_offset", "config", "retention_seconds",
"minute_seconds", "keys": {key: {tier, max_concurrent, per_minute, balance,
active}}, "predictions": [prediction + key, resolution, webhook,
mode (animate's, else null), audio_duration (s2v's), reference_duration
(animate's reference video), video_duration, width, height, created,
finished, queries
(result GETs answered), expires],
"uploads": [...], "deliveries": [{id, prediction_id, url, status, body,
duplicate, bad_signature, late_ms, state (pending | delivered | failed |
skipped | dropped), delivered, attempts: [{at, http_status, error}]}],
"faults": [...], "totals": {...}}.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from studio.emulators import common, multipart
from studio.emulators.common import BodyTooLarge, Response

from .state import (
    ANIMATE_MODEL,
    ANIMATE_MODES,
    MODEL,
    RESOLUTIONS,
    ApiError,
    ApiKey,
    Config,
    Store,
    content_type,
    log_line,
    not_found,
)

DEFAULT_KEY = "ws-emulator"
SUBMIT_PATH = f"/api/v3/{MODEL}"
ANIMATE_PATH = f"/api/v3/{ANIMATE_MODEL}"
JSON_LIMIT = 10 * 1024 * 1024

_PREDICTION = re.compile(r"/api/v3/predictions/([^/]+?)(/result)?")
_UPLOAD_FILE = re.compile(r"/media/uploads/([0-9a-f]{32})/([^/]+)")
_OUTPUT_FILE = re.compile(r"/media/outputs/([0-9a-f]{32})\.mp4")
_CONTROL_PREDICTION = re.compile(r"predictions/([^/]+)(/advance)?")

# route -> the method it answers
_METHODS = {
    "submit": "POST",
    "result": "GET",
    "list": "GET",
    "upload": "POST",
    "secret": "GET",
    "media": "GET",
}


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def json_response(
    status: int, payload: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()
) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Response(status, body, "application/json", list(headers))


def error_response(exc: ApiError) -> Response:
    response = json_response(
        exc.status, {"code": exc.status, "message": exc.message}, exc.headers
    )
    response.code = str(exc.status)
    return response


def classify(path: str) -> tuple[str, tuple[str, ...]] | None:
    """(route name, path arguments) for a request path, None when unknown."""
    path = path.rstrip("/") or "/"
    if path == SUBMIT_PATH:
        return "submit", (MODEL,)
    if path == ANIMATE_PATH:
        return "submit", (ANIMATE_MODEL,)
    if path == "/api/v3/predictions":
        return "list", ()
    if match := _PREDICTION.fullmatch(path):
        return "result", (match.group(1),)
    if path == "/api/v3/media/upload/binary":
        return "upload", ()
    if path == "/api/v3/webhook/secret":
        return "secret", ()
    if match := _UPLOAD_FILE.fullmatch(path):
        return "media", ("upload", *match.groups())
    if match := _OUTPUT_FILE.fullmatch(path):
        return "media", ("output", match.group(1))
    return None


class _App(common.BaseApp[Store, Config]):
    def dispatch(self, req: common.Request, request_id: str) -> Response:
        if req.path == "/_emulator" or req.path.startswith("/_emulator/"):
            return self.control(req)
        found = classify(req.path)
        if found is None:
            return error_response(ApiError(404, "Not found"))
        route, args = found
        key = (
            None
            if route == "media"
            else self.store.lookup_key(req.header("Authorization"))
        )
        fault = self.store.request_fault(route, req.path, key)
        if fault is not None and fault.kind == "drop" and fault.when == "before":
            return Response(0, drop=True)
        if fault is not None and fault.kind == "throttle":
            return error_response(
                ApiError(
                    fault.status,
                    fault.message,
                    [("Retry-After", str(fault.retry_after))],
                )
            )
        if fault is not None and fault.kind == "server_error":
            return error_response(ApiError(fault.status, fault.message))
        try:
            if req.method != _METHODS[route] and not (
                route == "media" and req.method == "HEAD"
            ):
                raise ApiError(405, "Method not allowed")
            if route == "media":
                response = self.media(args)
            else:
                response = json_response(200, envelope(self.api(req, route, args)))
        except ApiError as exc:
            response = error_response(exc)
        if fault is not None:  # a drop after the work was done
            response.drop = True
        return response

    def api(self, req: common.Request, route: str, args: tuple[str, ...]) -> Any:
        key = self.store.authenticate(req.header("Authorization"))
        if route == "submit":
            return self.submit(req, key, args[0])
        if route == "result":
            return self.store.to_json(self.store.get(key, args[0]))
        if route == "list":
            return self.listing(req, key)
        if route == "upload":
            return self.upload(req, key)
        return {"secret": self.store.webhook_secret(key.key)}

    # §9.2
    def submit(self, req: common.Request, key: ApiKey, model: str) -> dict[str, Any]:
        animated = model == ANIMATE_MODEL
        driver = "video" if animated else "audio"
        if not key.balance:
            raise ApiError(402, "Insufficient balance, please top up")
        try:
            body = json.loads(req.body(JSON_LIMIT) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON body")
        for name in ("image", driver):
            value = body.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ApiError(400, f"{name} is required")
        mode = body.get("mode", "animate") if animated else ""
        if animated and mode not in ANIMATE_MODES:
            raise ApiError(400, "mode must be one of animate, replace")
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        resolution = body.get("resolution", "480p")
        if resolution not in RESOLUTIONS:
            raise ApiError(400, "resolution must be one of 480p, 720p")
        seed = body.get("seed", -1)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "seed must be an integer")
        if body.get("enable_sync_mode"):
            raise ApiError(400, "enable_sync_mode is not supported for this model")
        webhook = req.query.get("webhook")
        if webhook is not None:
            parts = urlsplit(webhook)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ApiError(400, f"Invalid webhook URL: {webhook}")
        self.store.check_limits(key)  # before the (slow) fetches; again at creation
        image, driven_by, seconds = self.store.prepare(
            body["image"].strip(), body[driver].strip(), field=driver
        )
        _, answer = self.store.submit(
            key=key,
            model=model,
            mode=mode,
            body=body,
            resolution=resolution,
            image=image,
            driver=driven_by,
            driver_seconds=seconds,
            webhook=webhook,
        )
        return answer

    # §9.6: recent predictions, to find one whose submit answer was lost.
    def listing(self, req: common.Request, key: ApiKey) -> dict[str, Any]:
        page = _int_param(req.query, "page", 1, 1, 10**9)
        if page is None:
            raise ApiError(400, "page must be a positive integer")
        page_size = _int_param(req.query, "page_size", 20, 1, 100)
        if page_size is None:
            raise ApiError(400, "page_size must be between 1 and 100")
        found = self.store.listing(key)
        chosen = found[(page - 1) * page_size : page * page_size]
        return {
            "items": [self.store.to_json(p) for p in chosen],
            "page": page,
            "page_size": page_size,
            "total": len(found),
        }

    # §9.4: the documented binary upload.
    def upload(self, req: common.Request, key: ApiKey) -> dict[str, Any]:
        limit = int(max(self.cfg.max_bytes(k) for k in ("image", "audio", "video")))
        try:
            body = req.body(limit + common.DRAIN_LIMIT)
        except BodyTooLarge:
            raise ApiError(400, "File too large") from None
        try:
            parts = multipart.parse(body, req.header("Content-Type"))
        except multipart.MultipartError as exc:
            raise ApiError(400, f"Invalid multipart body: {exc}") from None
        file = next((p for p in parts if p.name == "file"), None)
        if file is None:
            raise ApiError(400, "Missing multipart field: file")
        upload = self.store.accept_upload(key, file.filename, file.data)
        return {
            "type": upload.kind,
            "download_url": self.store.download_url(upload),
            "filename": upload.filename,
            "size": upload.size,
        }

    def media(self, args: tuple[str, ...]) -> Response:
        if args[0] == "upload":
            upload = self.store.upload_file(args[1], args[2])
            if upload is None or not upload.path.exists():
                raise ApiError(404, "File not found")
            path, kind = upload.path, content_type(upload.filename)
        else:
            found = self.store.output_file(args[1])
            if found is None:
                raise ApiError(404, "File not found")
            path, kind = found, "video/mp4"
        size = path.stat().st_size
        return Response(200, b"", kind, [], path, (0, size - 1))

    # Control API

    def control(self, req: common.Request) -> Response:
        name = req.path.removeprefix("/_emulator").strip("/")
        store = self.store
        try:
            data: Any = None
            if req.method in ("POST", "DELETE"):
                data = json.loads(req.body(JSON_LIMIT) or b"null")
            if name == "state" and req.method == "GET":
                return json_response(200, store.state())
            if name == "reset" and req.method == "POST":
                store.reset()
                return json_response(200, {"reset": True})
            if name == "faults" and req.method == "GET":
                return json_response(200, {"faults": store.list_faults()})
            if name == "faults" and req.method == "POST":
                if isinstance(data, dict):
                    data = data.get("faults", [data])
                if not isinstance(data, list) or not all(
                    isinstance(item, dict) for item in data
                ):
                    raise ValueError("send a fault object or a list of them")
                return json_response(200, {"faults": store.add_faults(data)})
            if (name == "faults" and req.method == "DELETE") or (
                name == "faults/clear" and req.method == "POST"
            ):
                data = data or {}
                removed = store.clear_faults(data.get("kind"), data.get("key"))
                return json_response(
                    200, {"removed": removed, "faults": store.list_faults()}
                )
            if name == "clock" and req.method == "POST":
                store.advance_clock(float((data or {}).get("advance", 0)))
                return json_response(
                    200, {"now": store.now(), "clock_offset": store.clock_offset}
                )
            if name == "config" and req.method == "GET":
                return json_response(200, asdict(store.config))
            if name == "config" and req.method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("send an object of settings")
                return json_response(200, asdict(store.configure(data)))
            if name == "keys" and req.method == "GET":
                return json_response(200, {"keys": store.state()["keys"]})
            if name == "keys" and req.method == "POST":
                if not isinstance(data, dict) or not data.get("key"):
                    raise ValueError('send {"key": ..., "tier"?: ..., ...}')
                options = {k: v for k, v in data.items() if k != "key"}
                return json_response(200, asdict(store.set_key(data["key"], **options)))
            if name == "webhooks" and req.method == "GET":
                return json_response(200, {"deliveries": store.delivery_list()})
            if name == "predictions" and req.method == "GET":
                return json_response(200, {"predictions": store.state()["predictions"]})
            if match := _CONTROL_PREDICTION.fullmatch(name):
                pid, advance = match.groups()
                if advance and req.method == "POST":
                    data = data or {}
                    store.advance(
                        pid, str(data.get("to", "")), str(data.get("error", ""))
                    )
                if (advance and req.method == "POST") or (
                    not advance and req.method == "GET"
                ):
                    with store.lock:
                        prediction = store.predictions.get(pid)
                        if prediction is None:
                            return error_response(not_found())
                        return json_response(200, store.prediction_state(prediction))
        except (ValueError, TypeError, AttributeError, BodyTooLarge) as exc:
            return json_response(400, {"code": 400, "message": str(exc)})
        return error_response(ApiError(404, "Not found"))

    # common.App

    def body_too_large(self, request_id: str) -> Response:
        return error_response(ApiError(400, "Request body too large"))

    def crashed(self, req: common.Request, exc: Exception, request_id: str) -> Response:
        log_line(f"error on {req.method} {req.path}: {exc!r}")
        return error_response(ApiError(500, "Internal server error"))

    def log_request(
        self, req: common.Request, response: Response, started: float
    ) -> None:
        if self.quiet:
            return
        ms = (time.monotonic() - started) * 1000
        status = "dropped" if response.drop else str(response.status)
        log_line(f'{req.client} "{req.method} {req.path}" {status} {ms:.0f}ms')


def _int_param(
    q: Mapping[str, str], name: str, default: int, low: int, high: int
) -> int | None:
    """The integer query parameter, its default when absent, None when invalid."""
    text = q.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        return None
    return value if low <= value <= high else None


class WaveSpeedEmulator(common.BaseEmulator[Store, ApiKey]):
    """The emulator in background threads. Usable as a context manager.

    Keyword `settings` are further `state.Config` fields (hold,
    created_seconds, ...).
    """

    name = "wavespeed-emulator"
    default_key = DEFAULT_KEY
    key_class = ApiKey
    store_class = Store
    app_class = _App

    # Addresses

    @property
    def base_url(self) -> str:
        """What stands in for `https://api.wavespeed.ai` (§9.1): the root."""
        return self.url

    @property
    def submit_url(self) -> str:
        return self.url + SUBMIT_PATH

    @property
    def animate_url(self) -> str:
        return self.url + ANIMATE_PATH

    # Test helpers (the same as the control API, without HTTP); `advance_clock`
    # moves created_at, retention and the rate window.

    def clear_faults(self, kind: str | None = None, key: str | None = None) -> int:
        return self.store.clear_faults(kind, key)

    def deliveries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(
            json.dumps(self.store.delivery_list())
        )
        return result

    def configure(self, **changes: Any) -> Config:
        return self.store.configure(changes)

    def set_key(self, key: str, **options: Any) -> ApiKey:
        return self.store.set_key(key, **options)

    def advance(self, prediction_id: str, to: str, error: str = "") -> None:
        self.store.advance(prediction_id, to, error)

    def webhook_secret(self, key: str = DEFAULT_KEY) -> str:
        return self.store.webhook_secret(key)
