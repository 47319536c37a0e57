"""The WaveSpeed emulator's memory, its prediction runner and its webhook sender.

`Store` holds API keys, predictions, uploads, faults and webhook deliveries
behind one lock. Each prediction runs in a daemon thread: wait in `created`,
move to `processing`, really render the MP4 (speech-to-video with the studio's
renderer, animate with the emulators' stand-in), wait out the configured
time, finish; then webhooks go out from their own thread.
Nothing here knows HTTP requests; the server calls in.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import mimetypes
import re
import secrets
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import av
import httpx

from studio.emulators import animate, common
from studio.media.audio import probe_audio
from studio.media.images import InputError, read_image_info
from studio.media.render import RenderInfo, output_size
from studio.media.video import probe_video

from . import faults

MODEL = "wavespeed-ai/wan-2.2/speech-to-video"
ANIMATE_MODEL = "wavespeed-ai/wan-2.2-animate"
# §9.6: animate moves the character like the video, replace puts it into it.
ANIMATE_MODES = ("animate", "replace")
# The animate result's frame rate is undocumented: Wan 2.2's 16 fps [I].
ANIMATE_FPS = 16
STATUSES = ("created", "processing", "completed", "failed")
ACTIVE = ("created", "processing")
RESOLUTIONS = ("480p", "720p")
DAY = 24 * 3600.0
MINUTE = 60.0
MB = 1024 * 1024
# §9.6 account levels: (concurrent tasks, submits per minute); 0 = no limit.
TIERS: dict[str, tuple[int, int]] = {
    "bronze": (3, 5),
    "silver": (100, 60),
    "unlimited": (0, 0),
}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def log_line(text: str) -> None:
    sys.stderr.write(f"[wavespeed-emulator] {text}\n")


class ApiError(Exception):
    """An error answer: `{"code": status, "message": ...}` with that HTTP status."""

    def __init__(
        self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.headers = list(headers)


def not_found() -> ApiError:
    return ApiError(404, "Prediction not found")


def too_many(retry_after: int) -> ApiError:
    return ApiError(429, "Too Many Requests", [("Retry-After", str(retry_after))])


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key and its account level: limits per key, and whether it has balance."""

    key: str
    tier: str = "bronze"
    max_concurrent: int = 3
    per_minute: int = 5
    balance: bool = True

    @classmethod
    def parse(cls, spec: str | ApiKey) -> ApiKey:
        """`KEY[:TIER|CONCURRENT/PER_MINUTE][:nobalance]`.

        e.g. `ws-emulator`, `ws-big:silver`, `ws-x:10/30`, `ws-broke:bronze:nobalance`.
        """
        if isinstance(spec, ApiKey):
            return spec
        key, *rest = spec.split(":")
        if not key:
            raise ValueError(f"empty API key in {spec!r}")
        options: dict[str, Any] = {}
        for part in rest:
            part = part.strip()
            if part.lower() == "nobalance":
                options["balance"] = False
            elif "/" in part:
                concurrent, _, per_minute = part.partition("/")
                options.update(
                    tier="custom",
                    max_concurrent=int(concurrent),
                    per_minute=int(per_minute),
                )
            elif part:
                options["tier"] = part
        return cls.build(key, **options)

    @classmethod
    def build(cls, key: str, **options: Any) -> ApiKey:
        """A key from control-API fields: tier and/or explicit limits, balance."""
        unknown = set(options) - {"tier", "max_concurrent", "per_minute", "balance"}
        if unknown:
            raise ValueError(f"unknown key fields: {', '.join(sorted(unknown))}")
        tier = str(options.get("tier") or "bronze").lower()
        if tier not in (*TIERS, "custom"):
            raise ValueError(f"tier must be one of {', '.join(TIERS)} (or custom)")
        concurrent, per_minute = TIERS.get(tier, (0, 0))
        if "max_concurrent" in options or "per_minute" in options:
            tier = "custom" if "tier" not in options else tier
        concurrent = int(options.get("max_concurrent", concurrent))
        per_minute = int(options.get("per_minute", per_minute))
        if concurrent < 0 or per_minute < 0:
            raise ValueError("limits must not be negative (0 = no limit)")
        return cls(
            key=key,
            tier=tier,
            max_concurrent=concurrent,
            per_minute=per_minute,
            balance=bool(options.get("balance", True)),
        )


@dataclass(frozen=True, slots=True)
class Config:
    """Behaviour switches. Provider periods are divided by `time_scale`."""

    time_scale: float = 1.0
    created_seconds: float = 1.0  # time in `created` before `processing`
    processing_seconds: float = 3.0  # least time in `processing` (render included)
    hold: bool = False  # predictions move only when advanced via the control API
    retention_days: float = 7.0  # §9.6: predictions, outputs and uploads
    retention_seconds: float | None = None  # real seconds; overrides the above
    busy_retry_after: int = 1  # Retry-After when over the concurrent-task limit
    image_max_mb: float = 20.0  # §9.4 "another doc page"
    audio_max_mb: float = 50.0
    video_max_mb: float = 100.0
    audio_max_seconds: float = 600.0  # §9.5, the newer page's 10 minutes
    video_max_seconds: float = 120.0  # §9.6: animate's output is at most 120 s
    fetch_timeout: float = 30.0
    webhook_timeout: float = 5.0
    webhook_retries: int = 2  # further attempts after a failed delivery
    webhook_retry_seconds: float = 0.5  # real seconds before retry n: n times this

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if min(self.created_seconds, self.processing_seconds) < 0:
            raise ValueError("created_seconds and processing_seconds must be >= 0")
        if self.webhook_retries < 0 or self.webhook_retry_seconds < 0:
            raise ValueError("webhook retries and their delay must be >= 0")

    def scaled(self, seconds: float) -> float:
        return seconds / self.time_scale

    @property
    def retention(self) -> float:
        """Real seconds a prediction (and an upload) lives."""
        if self.retention_seconds is not None:
            return float(self.retention_seconds)
        return self.scaled(self.retention_days * DAY)

    @property
    def minute(self) -> float:
        """Real seconds of the per-minute submit window."""
        return self.scaled(MINUTE)

    def max_bytes(self, kind: str) -> int:
        mb = {"image": self.image_max_mb, "audio": self.audio_max_mb}.get(
            kind, self.video_max_mb
        )
        return int(mb * MB)


def iso_time(t: float) -> str:
    """WaveSpeed's `created_at`: ISO-8601 UTC with milliseconds and a Z."""
    moment = datetime.fromtimestamp(t, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """§9.6: hex HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the raw secret."""
    key = secret.removeprefix("whsec_").encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


@dataclass
class Upload:
    token: str
    key: str
    path: Path
    filename: str
    kind: str
    size: int
    created: float


@dataclass
class Prediction:
    id: str
    key: str
    model: str
    input: dict[str, Any]
    resolution: str
    image: Path
    driver: Path  # what moves the image: s2v's audio, animate's reference video
    driver_seconds: float
    created: float  # provider clock
    seq: int
    generation: int
    webhook: str | None = None
    status: str = "created"
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    nsfw: list[bool] = field(default_factory=list)
    inference_ms: int = 0
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # monotonic, when processing began
    finished: float | None = None  # provider clock
    queries: int = 0  # result GETs answered for it (the dispatch benchmark's count)
    forced: tuple[str, str] | None = None  # (kind, message): fail_task / nsfw
    nsfw_mode: str = "completed"
    mode: str = ""  # animate's animate | replace
    webhook_faults: list[faults.Fault] = field(default_factory=list)
    target: str | None = None  # control API: where to move next
    target_error: str = ""
    wake: threading.Event = field(default_factory=threading.Event)
    video: Path | None = None
    width: int | None = None
    height: int | None = None
    video_duration: float | None = None


@dataclass
class Delivery:
    """One webhook message (a retry keeps its id, a duplicate gets a new one)."""

    id: str
    prediction_id: str
    url: str
    status: str  # the prediction's, when it was sent
    body: dict[str, Any]
    duplicate: bool = False
    bad_signature: bool = False
    late_ms: int = 0
    state: str = "pending"  # pending, delivered, failed, skipped, dropped
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivered"] = self.state == "delivered"
        return data


class Store(common.BaseStore[faults.Fault, Config]):
    config_class = Config
    build_fault = staticmethod(faults.build)
    subdirs = ("uploads", "inputs", "outputs")

    def __init__(
        self,
        *,
        config: Config,
        keys: Iterable[ApiKey],
        data_dir: Path,
        log: Callable[[str], None] = log_line,
    ) -> None:
        super().__init__(config=config, data_dir=data_dir, log=log)
        self.initial_keys = {k.key: k for k in keys}
        self.keys = dict(self.initial_keys)
        self.secrets: dict[str, str] = {}  # stable per key, even across reset
        self.predictions: dict[str, Prediction] = {}
        self.uploads: dict[str, Upload] = {}
        self.deliveries: list[Delivery] = []
        self.windows: dict[str, deque[float]] = {}
        self._seq = itertools.count(1)

    # Clock (common.BaseStore) and configuration

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            super().advance_clock(seconds)
            self._wake_all()

    def _config_changed(self) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for prediction in self.predictions.values():
            prediction.wake.set()

    # Keys, auth and limits

    def authenticate(self, header: str | None) -> ApiKey:
        value = (header or "").strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            value = rest.strip()
        if not value:
            raise ApiError(401, "Unauthorized: missing API key")
        with self.lock:
            key = self.keys.get(value)
        if key is None:
            raise ApiError(401, "Unauthorized: invalid API key")
        return key

    def lookup_key(self, header: str | None) -> str | None:
        try:
            return self.authenticate(header).key
        except ApiError:
            return None

    def set_key(self, key: str, **options: Any) -> ApiKey:
        """Add a key or change its level (tier, limits, balance)."""
        with self.lock:
            current = self.keys.get(key)
            merged: dict[str, Any] = {}
            if current is not None:
                merged["balance"] = current.balance
                limits: dict[str, Any] = {
                    "max_concurrent": current.max_concurrent,
                    "per_minute": current.per_minute,
                }
                if "tier" not in options:
                    # A changed limit makes the level custom; otherwise it stays.
                    explicit = {"max_concurrent", "per_minute"} & set(options)
                    merged.update(
                        limits if explicit else {**limits, "tier": current.tier}
                    )
            merged.update(options)
            built = ApiKey.build(key, **merged)
            self.keys[key] = built
            return built

    def webhook_secret(self, key: str) -> str:
        with self.lock:
            if key not in self.secrets:
                self.secrets[key] = (
                    "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
                )
            return self.secrets[key]

    def check_limits(self, key: ApiKey) -> None:
        """§9.6 account levels: concurrent tasks, then submits per (scaled) minute."""
        with self.lock:
            self.sweep()
            if key.max_concurrent:
                active = sum(
                    1
                    for p in self.predictions.values()
                    if p.key == key.key and p.status in ACTIVE
                )
                if active >= key.max_concurrent:
                    self.totals["throttled_concurrency"] += 1
                    raise too_many(self.config.busy_retry_after)
            if key.per_minute:
                window = self.windows.setdefault(key.key, deque())
                now = self.now()
                minute = self.config.minute
                while window and window[0] <= now - minute:
                    window.popleft()
                if len(window) >= key.per_minute:
                    self.totals["throttled_rate"] += 1
                    wait = window[0] + minute - now
                    raise too_many(max(1, math.ceil(wait)))

    def _count_submit(self, key: str) -> None:
        self.windows.setdefault(key, deque()).append(self.now())

    # Uploads (§9.4)

    def accept_upload(self, key: ApiKey, filename: str | None, data: bytes) -> Upload:
        name = _UNSAFE_NAME.sub("_", Path(filename or "").name).strip("._") or "file"
        token = uuid.uuid4().hex
        path = self.data_dir / "uploads" / token
        path.write_bytes(data)
        try:
            kind = sniff(path)
            if kind is None:
                raise ApiError(
                    400, "Unsupported file type: upload an image, audio or video file"
                )
            limit = self.config.max_bytes(kind)
            if len(data) > limit:
                raise ApiError(
                    400,
                    f"File too large: {kind} files may be at most "
                    f"{common.number(limit / MB)} MB",
                )
        except ApiError:
            common.discard(path)
            raise
        upload = Upload(
            token=token,
            key=key.key,
            path=path,
            filename=name,
            kind=kind,
            size=len(data),
            created=self.now(),
        )
        with self.lock:
            self.uploads[token] = upload
            self.totals["uploads"] += 1
        return upload

    def download_url(self, upload: Upload) -> str:
        return (
            f"{self.public_url}/media/uploads/{upload.token}/{quote(upload.filename)}"
        )

    def upload_file(self, token: str, filename: str) -> Upload | None:
        with self.lock:
            self.sweep()
            upload = self.uploads.get(token)
            if upload is None or upload.filename != unquote(filename):
                return None
            return upload

    def _own_upload(self, url: str) -> Upload | None:
        """The upload behind one of this emulator's download URLs, if it is one."""
        prefix = self.public_url + "/media/uploads/"
        if not url.startswith(prefix):
            return None
        token, _, filename = url.removeprefix(prefix).partition("/")
        return self.upload_file(token, urlsplit(filename).path)

    # Inputs (§9.2)

    def fetch_input(self, url: str, field: str) -> Path:
        """A private copy of an input: an own upload, or a loopback URL fetched now."""
        folder = self.data_dir / "inputs"
        if url.startswith(self.public_url + "/media/uploads/"):
            upload = self._own_upload(url)
            if upload is None or not upload.path.exists():
                raise ApiError(400, f"Failed to download {field}: {url} (HTTP 404)")
            copy = folder / uuid.uuid4().hex
            shutil.copyfile(upload.path, copy)
            return copy
        if not common.loopback_url(url):
            raise ApiError(
                400,
                f"Invalid {field} URL: {url} (the emulator fetches only its own "
                "uploads and loopback http(s) URLs)",
            )
        try:
            return common.fetch(url, folder, timeout=self.config.fetch_timeout)
        except common.FetchError as exc:
            detail = f"HTTP {exc.status}" if exc.status else exc.reason
            raise ApiError(
                400, f"Failed to download {field}: {url} ({detail})"
            ) from None

    def prepare(
        self, image_url: str, driver_url: str, *, field: str = "audio"
    ) -> tuple[Path, Path, float]:
        """Fetch and check the image and the driver (`field`: s2v's audio or
        animate's video); (image, driver, driver seconds) or ApiError."""
        owned: list[Path] = []
        try:
            image = self.fetch_input(image_url, "image")
            owned.append(image)
            try:
                read_image_info(image)
            except (InputError, OSError):
                raise ApiError(400, "image is not a valid image file") from None
            driver = self.fetch_input(driver_url, field)
            owned.append(driver)
            probe = probe_video if field == "video" else probe_audio
            try:
                duration = probe(driver).duration
            except (InputError, OSError):
                duration = 0.0
            if duration <= 0:  # a still picture opens as a video of no length
                raise ApiError(400, f"{field} is not a valid {field} file")
            limit = (
                self.config.video_max_seconds
                if field == "video"
                else self.config.audio_max_seconds
            )
            if duration > limit:
                raise ApiError(
                    400, f"{field} is longer than {common.number(limit)} seconds"
                ) from None
        except BaseException:
            for path in owned:
                common.discard(path)
            raise
        return image, driver, duration

    # Predictions (§9.2, §9.3)

    def submit(
        self,
        *,
        key: ApiKey,
        model: str,
        body: dict[str, Any],
        resolution: str,
        image: Path,
        driver: Path,
        driver_seconds: float,
        webhook: str | None,
        mode: str = "",
    ) -> tuple[Prediction, dict[str, Any]]:
        """A new prediction, started, and its submit answer (status `created`).

        The tier limits are checked again here, under the lock: two submits
        that passed the early check while fetching inputs must not both
        take the last slot. On refusal the fetched inputs are deleted.
        """
        with self.lock:
            try:
                self.check_limits(key)
            except ApiError:
                common.discard(image)
                common.discard(driver)
                raise
            prediction = Prediction(
                id=uuid.uuid4().hex,
                key=key.key,
                model=model,
                mode=mode,
                input=body,
                resolution=resolution,
                image=image,
                driver=driver,
                driver_seconds=driver_seconds,
                created=self.now(),
                seq=next(self._seq),
                generation=self.generation,
                webhook=webhook,
            )
            forced = self.faults.take(faults.TASK_KINDS, route="submit", owner=key.key)
            if forced is not None:
                prediction.forced = (forced.kind, forced.message)
                prediction.nsfw_mode = forced.mode
            if webhook is not None:
                for kind in faults.WEBHOOK_KINDS:
                    fault = self.faults.take((kind,), route="submit", owner=key.key)
                    if fault is not None:
                        prediction.webhook_faults.append(fault)
            self.predictions[prediction.id] = prediction
            self._count_submit(key.key)
            self.totals["submissions"] += 1
            worker = threading.Thread(
                target=self._run,
                args=(prediction,),
                name=f"ws-prediction-{prediction.id[:8]}",
                daemon=True,
            )
            self._workers.add(worker)
            # The submit answer shows `created`, even if the worker moves on at once.
            answer = self.to_json(prediction)
        worker.start()
        return prediction, answer

    def expired(self, prediction: Prediction) -> bool:
        return self.now() > prediction.created + self.config.retention

    def sweep(self) -> None:
        """§9.6 retention: forget predictions and uploads older than 7 (scaled) days."""
        with self.lock:
            retention = self.config.retention
            now = self.now()
            for pid, prediction in list(self.predictions.items()):
                if now > prediction.created + retention:
                    del self.predictions[pid]
                    prediction.wake.set()
                    for path in (prediction.video, prediction.image, prediction.driver):
                        if path is not None:
                            common.discard(path)
                            common.discard(path.with_suffix(".jpg"))
                    self.totals["deleted_predictions"] += 1
            for token, upload in list(self.uploads.items()):
                if now > upload.created + retention:
                    del self.uploads[token]
                    common.discard(upload.path)
                    self.totals["deleted_uploads"] += 1

    def get(self, key: ApiKey, prediction_id: str) -> Prediction:
        """A prediction of this key's, for the result route (counted as a query)."""
        with self.lock:
            self.sweep()
            prediction = self.predictions.get(prediction_id)
            if prediction is None or prediction.key != key.key:
                raise not_found()
            prediction.queries += 1
            return prediction

    def listing(self, key: ApiKey) -> list[Prediction]:
        """This key's predictions, newest first."""
        with self.lock:
            self.sweep()
            found = [p for p in self.predictions.values() if p.key == key.key]
        return sorted(found, key=lambda p: (p.created, p.seq), reverse=True)

    def output_url(self, prediction: Prediction) -> str:
        return f"{self.public_url}/media/outputs/{prediction.id}.mp4"

    def to_json(self, prediction: Prediction) -> dict[str, Any]:
        """The prediction object of §9.2/§9.3 (and the webhook body, §9.6)."""
        with self.lock:
            return {
                "id": prediction.id,
                "model": prediction.model,
                "input": dict(prediction.input),
                "outputs": list(prediction.outputs),
                "urls": {
                    "get": f"{self.public_url}/api/v3/predictions/"
                    f"{prediction.id}/result"
                },
                "has_nsfw_contents": list(prediction.nsfw),
                "status": prediction.status,
                "created_at": iso_time(prediction.created),
                "error": prediction.error,
                "timings": {"inference": prediction.inference_ms},
            }

    def output_file(self, prediction_id: str) -> Path | None:
        with self.lock:
            self.sweep()
            prediction = self.predictions.get(prediction_id)
            if prediction is None or prediction.video is None:
                return None
            if self.faults.take(
                ("expire_results",), route="media", owner=prediction.key
            ):
                return None
            return prediction.video if prediction.video.exists() else None

    def advance(self, prediction_id: str, to: str, error: str = "") -> Prediction:
        """Control API: move a prediction on now (processing, completed or failed)."""
        if to not in ("processing", "completed", "failed"):
            raise ValueError("to must be processing, completed or failed")
        with self.lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                raise ValueError(f"no prediction {prediction_id}")
            if prediction.status not in ACTIVE:
                raise ValueError(f"prediction is already {prediction.status}")
            prediction.target = to
            prediction.target_error = error or faults.DEFAULT_MESSAGES["fail_task"]
            prediction.wake.set()
            return prediction

    # The runner

    def _live(self, prediction: Prediction) -> bool:
        return (
            not self._stop.is_set()
            and prediction.generation == self.generation
            and self.predictions.get(prediction.id) is prediction
        )

    def _wait_phase(self, prediction: Prediction, deadline: float, rank: int) -> bool:
        """Wait until `deadline` (monotonic) unless held; False if the run is over.

        A control-API target at or past `rank` (1 processing, 2 finished) ends
        the wait at once.
        """
        order = {"processing": 1, "completed": 2, "failed": 2}
        while True:
            with self.lock:
                if not self._live(prediction):
                    return False
                if order.get(prediction.target or "", 0) >= rank:
                    return True
                hold = self.config.hold
                prediction.wake.clear()
            remaining = deadline - time.monotonic()
            if not hold and remaining <= 0:
                return True
            prediction.wake.wait(1.0 if hold else min(remaining, 1.0))

    def _run(self, prediction: Prediction) -> None:
        try:
            cfg = self.config
            created_until = prediction.submitted + cfg.scaled(cfg.created_seconds)
            if not self._wait_phase(prediction, created_until, 1):
                return
            with self.lock:
                if not self._live(prediction):
                    return
                prediction.status = "processing"
                prediction.started = time.monotonic()
            cfg = self.config
            until = prediction.started + cfg.scaled(cfg.processing_seconds)
            if prediction.target == "failed":
                self._finish(prediction, "failed", prediction.target_error)
                return
            if prediction.forced is not None:
                kind, message = prediction.forced
                if not self._wait_phase(prediction, until, 2):
                    return
                if kind == "fail_task" or prediction.nsfw_mode == "failed":
                    self._finish(prediction, "failed", message, nsfw=kind == "nsfw")
                else:
                    self._finish(prediction, "completed", nsfw=True)
                return
            out = self.data_dir / "outputs" / f"{prediction.id}.mp4"
            try:
                info = self._render(prediction, out)
            except InputError as exc:
                self._finish(prediction, "failed", exc.message)
                return
            # The render counts towards the processing time; a slow one is never cut.
            if not self._wait_phase(prediction, until, 2):
                return
            if prediction.target == "failed":
                self._finish(prediction, "failed", prediction.target_error)
                return
            self._finish(
                prediction,
                "completed",
                video=out,
                size=(info.width, info.height),
                duration=info.duration,
            )
        except Exception as exc:  # a bug or a full disk must not hang the prediction
            with self.lock:
                if not self._live(prediction):
                    return  # reset or retention removed its files mid-render
            self.log(f"prediction {prediction.id} crashed: {exc!r}")
            self.log(traceback.format_exc())
            self._finish(prediction, "failed", "Internal server error")
        finally:
            self._workers.discard(threading.current_thread())

    def _render(self, prediction: Prediction, out: Path) -> RenderInfo:
        tier = prediction.resolution.upper()
        if prediction.model != ANIMATE_MODEL:
            return common.render(
                portrait=prediction.image,
                audio=prediction.driver,
                resolution=tier,
                face_box=None,
                out=out,
            )
        # As long as the reference (§9.6 bills the output), at the tier's area.
        return animate.render(
            image=prediction.image,
            video=prediction.driver,
            mix=prediction.mode == "replace",
            fps=ANIMATE_FPS,
            duration=prediction.driver_seconds,
            out=out,
            size_for=lambda width, height: output_size(width, height, tier),
        )

    def _finish(
        self,
        prediction: Prediction,
        status: str,
        error: str = "",
        *,
        nsfw: bool = False,
        video: Path | None = None,
        size: tuple[int, int] | None = None,
        duration: float | None = None,
    ) -> None:
        with self.lock:
            if not self._live(prediction) or prediction.status not in ACTIVE:
                return
            started = prediction.started or time.monotonic()
            prediction.status = status
            prediction.error = error
            prediction.finished = self.now()
            prediction.inference_ms = round((time.monotonic() - started) * 1000)
            if status == "completed" and video is not None:
                prediction.video = video
                prediction.outputs = [self.output_url(prediction)]
                prediction.nsfw = [False]
                prediction.width, prediction.height = size or (None, None)
                prediction.video_duration = duration
            elif nsfw:
                prediction.nsfw = [True]
            self.totals[f"predictions_{status}"] += 1
            for path in (prediction.image, prediction.driver):
                common.discard(path)
            if prediction.webhook is not None:
                self._send_webhooks(prediction)

    # Webhooks (§9.6)

    def _send_webhooks(self, prediction: Prediction) -> None:
        """Queue the deliveries of a finished prediction (lock held)."""
        assert prediction.webhook is not None
        kinds = {f.kind: f for f in prediction.webhook_faults}
        body = self.to_json(prediction)
        copies = 2 if "webhook_duplicate" in kinds else 1
        for n in range(copies):
            late = kinds.get("webhook_late")
            delivery = Delivery(
                id=f"msg_{uuid.uuid4().hex}",
                prediction_id=prediction.id,
                url=prediction.webhook,
                status=prediction.status,
                body=body,
                duplicate=n > 0,
                bad_signature="webhook_bad_signature" in kinds,
                late_ms=late.delay_ms if late is not None else 0,
            )
            self.deliveries.append(delivery)
            if "webhook_drop" in kinds:
                delivery.state = "dropped"
                continue
            if not common.loopback_url(delivery.url):
                delivery.state = "skipped"
                delivery.attempts.append(
                    {
                        "at": self.now(),
                        "http_status": None,
                        "error": "not a loopback URL: the emulator never leaves "
                        "this machine",
                    }
                )
                continue
            worker = threading.Thread(
                target=self._deliver,
                args=(delivery, prediction.key, self.generation),
                name=f"ws-webhook-{delivery.id[4:12]}",
                daemon=True,
            )
            self._workers.add(worker)
            worker.start()

    def _deliver(self, delivery: Delivery, key: str, generation: int) -> None:
        try:
            if delivery.late_ms:
                self.sleep(delivery.late_ms / 1000)
            raw = json.dumps(delivery.body, separators=(",", ":")).encode()
            secret = self.webhook_secret(key)
            if delivery.bad_signature:
                secret = "whsec_not-" + secret.removeprefix("whsec_")
            cfg = self.config
            for attempt in range(cfg.webhook_retries + 1):
                if self._stop.is_set() or generation != self.generation:
                    return
                if attempt:
                    self.sleep(cfg.webhook_retry_seconds * attempt)
                timestamp = int(self.now())
                headers = {
                    "Content-Type": "application/json",
                    "webhook-id": delivery.id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": "v3,"
                    + sign(secret, delivery.id, timestamp, raw),
                    "User-Agent": "wavespeed-emulator-webhook/1.0",
                }
                status: int | None = None
                error = ""
                try:
                    with httpx.Client(
                        timeout=cfg.webhook_timeout, trust_env=False
                    ) as client:
                        status = client.post(
                            delivery.url, content=raw, headers=headers
                        ).status_code
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    delivery.attempts.append(
                        {"at": self.now(), "http_status": status, "error": error}
                    )
                    if not error:
                        delivery.state = "delivered"
                        self.totals["webhooks_delivered"] += 1
                        return
            with self.lock:
                delivery.state = "failed"
                self.totals["webhooks_failed"] += 1
        finally:
            self._workers.discard(threading.current_thread())

    # Control

    def state(self) -> dict[str, Any]:
        """What tests assert on (documented in server.py)."""
        with self.lock:
            self.sweep()
            return {
                "now": self.now(),
                "clock_offset": self.clock_offset,
                "config": asdict(self.config),
                "retention_seconds": self.config.retention,
                "minute_seconds": self.config.minute,
                "keys": {
                    k.key: {
                        **asdict(k),
                        "active": sum(
                            1
                            for p in self.predictions.values()
                            if p.key == k.key and p.status in ACTIVE
                        ),
                    }
                    for k in self.keys.values()
                },
                "predictions": [
                    self.prediction_state(p)
                    for p in sorted(self.predictions.values(), key=lambda p: p.seq)
                ],
                "uploads": [
                    {
                        "token": u.token,
                        "key": u.key,
                        "filename": u.filename,
                        "type": u.kind,
                        "size": u.size,
                        "created": u.created,
                        "expires": u.created + self.config.retention,
                    }
                    for u in self.uploads.values()
                ],
                "deliveries": [d.to_json() for d in self.deliveries],
                "faults": self.faults.listing(),
                "totals": dict(self.totals),
            }

    def prediction_state(self, prediction: Prediction) -> dict[str, Any]:
        animated = prediction.model == ANIMATE_MODEL
        with self.lock:
            return {
                **self.to_json(prediction),
                "key": prediction.key,
                "resolution": prediction.resolution,
                "webhook": prediction.webhook,
                "mode": prediction.mode or None,
                "audio_duration": None if animated else prediction.driver_seconds,
                "reference_duration": prediction.driver_seconds if animated else None,
                "video_duration": prediction.video_duration,
                "width": prediction.width,
                "height": prediction.height,
                "created": prediction.created,
                "finished": prediction.finished,
                "queries": prediction.queries,
                "expires": prediction.created + self.config.retention,
            }

    def delivery_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.to_json() for d in self.deliveries]

    def _forget(self) -> None:
        # Webhook secrets stay: they are the account's, as in the real service.
        self.keys = dict(self.initial_keys)
        self._wake_all()
        self.predictions.clear()
        self.uploads.clear()
        self.deliveries.clear()
        self.windows.clear()

    def _remove_files(self) -> None:
        for sub in ("uploads", "inputs", "outputs"):
            for path in (self.data_dir / sub).iterdir():
                common.discard(path)


def sniff(path: Path) -> str | None:
    """image, audio or video, by content (not by name); None for anything else."""
    try:
        read_image_info(path)
        return "image"
    except (InputError, OSError):
        pass
    with (
        contextlib.suppress(av.error.FFmpegError, OSError, ValueError),
        av.open(str(path)) as container,
    ):
        if container.streams.video:
            return "video"
        if container.streams.audio:
            return "audio"
    return None


def content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
