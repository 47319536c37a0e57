"""The emulator's memory and its task runner.

`Store` holds API keys, accounts, tasks, uploaded objects and faults behind
one lock, and runs each task in a daemon worker thread: fetch and check the
inputs, really render the MP4 (s2v with `studio.media.render`, animate with
`animate.render`, EMO with `emo.render`), wait out the configured run time, finish. Nothing here
knows HTTP; the server calls in.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from studio.emulators import common
from studio.emulators.multipart import Part
from studio.media.images import InputError

from . import animate, emo, errors, faults, media
from .errors import ApiError, OssError

# DashScope periods in seconds, before --time-scale (§1.6, §3.3, §5.1, §5.4).
TASK_TTL = 24 * 3600.0
RESULT_TTL = 24 * 3600.0
UPLOAD_TTL = 48 * 3600.0
POLICY_TTL = 300.0

UTC8 = timezone(timedelta(hours=8))
REGIONS = ("cn-beijing", "ap-southeast-1")
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")

# The emulated models and the endpoint each belongs to (§1.2, §12.4).
MODELS: dict[str, str] = {
    "wan2.2-s2v": "submit",
    "wan2.2-s2v-detect": "detect",
    **dict.fromkeys(animate.MODELS, "submit"),
    emo.DETECT: "detect",
    emo.MODEL: "submit",
}
# §1.1: wan2.2-s2v, EMO and their detectors exist in China (Beijing) only;
# animate exists in Singapore too.
BEIJING_ONLY = frozenset({"wan2.2-s2v", "wan2.2-s2v-detect", *emo.MODELS})

OSS_BUCKET = "dashscope-file-emulator"
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024  # §5.4: 1 GB overall


def log_line(text: str) -> None:
    sys.stderr.write(f"[dashscope-emulator] {text}\n")


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    account: str = "acct-1"
    region: str = "cn-beijing"

    @classmethod
    def parse(cls, spec: str | ApiKey) -> ApiKey:
        """`KEY[:ACCOUNT[:REGION]]`, e.g. `sk-sg:acct-2:ap-southeast-1`."""
        if isinstance(spec, ApiKey):
            return spec
        key, _, rest = spec.partition(":")
        account, _, region = rest.partition(":")
        if not key:
            raise ValueError(f"empty API key in {spec!r}")
        region = region or "cn-beijing"
        if region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}")
        return cls(key=key, account=account or "acct-1", region=region)


@dataclass(frozen=True, slots=True)
class Config:
    """Behaviour switches. Periods given as None follow the DashScope value / time_scale."""

    time_scale: float = 1.0
    region: str = "cn-beijing"
    overflow: str = "queue"  # §13.3: queue as PENDING, or reject
    overflow_status: int = 429
    overflow_code: str = "Throttling.RateQuota"
    overflow_message: str = "Requests rate limit exceeded, please try again later."
    concurrency: int = 1
    pending_seconds: float = 0.0  # least time a task stays PENDING, slot free or not
    run_seconds_base: float = 0.5
    run_seconds_per_audio_second: float = 0.0
    run_seconds_per_video_second: float = 0.0  # animate: of the reference video
    input_errors: str = "async"  # §13.2: media problems at submit (sync) or as FAILED
    usage_field: str = "duration"  # §13.5: duration, video_duration or both
    submit_rps: float = 5.0  # §3.3
    query_qps: float = 20.0  # §1.6
    detect_rps: float = 5.0  # §2.3
    policy_qps: float = 100.0  # §5.4
    task_ttl: float | None = None
    result_ttl: float | None = None
    upload_ttl: float | None = None
    policy_ttl: float | None = None
    max_file_size_mb: float = 100.0  # §5.1 F8
    # §3.1 "< 20 s", "< 15 MB": exclusive, and MB read as 10^6 bytes, the
    # smaller reading, so a client that fits the larger one is caught here.
    audio_max_seconds: float = 20.0
    audio_max_bytes: int = 15_000_000
    fetch_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}")
        if self.overflow not in ("queue", "reject"):
            raise ValueError("overflow must be 'queue' or 'reject'")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.input_errors not in ("sync", "async"):
            raise ValueError("input_errors must be 'sync' or 'async'")
        if self.usage_field not in ("duration", "video_duration", "both"):
            raise ValueError("usage_field must be duration, video_duration or both")
        if (
            min(
                self.run_seconds_base,
                self.run_seconds_per_audio_second,
                self.run_seconds_per_video_second,
                self.pending_seconds,
            )
            < 0
        ):
            raise ValueError("run and pending times must not be negative")

    def ttl(self, name: str) -> float:
        """Real seconds a DashScope period lasts: task, result, upload or policy."""
        override = getattr(self, f"{name}_ttl")
        if override is not None:
            return float(override)
        base = {
            "task": TASK_TTL,
            "result": RESULT_TTL,
            "upload": UPLOAD_TTL,
            "policy": POLICY_TTL,
        }[name]
        return base / self.time_scale


def format_time(t: float | None) -> str | None:
    """§1.6: `YYYY-MM-DD HH:mm:ss.SSS` in UTC+8."""
    if t is None:
        return None
    moment = datetime.fromtimestamp(t, tz=UTC8)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_list_time(text: str) -> float:
    """§1.2 list filter times: `YYYYMMDDhhmmss`, UTC+8."""
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC8).timestamp()


def _millis(t: float) -> int:
    """§1.2a listing times: epoch milliseconds."""
    return round(t * 1000)


def _endpoint_name(model: str) -> str:
    return "face-detect" if MODELS.get(model) == "detect" else "video-synthesis"


class RateWindow:
    """Accepted requests in the last second; a request over the limit is refused."""

    def __init__(self) -> None:
        self._stamps: deque[float] = deque()

    def allow(self, limit: float) -> bool:
        if limit <= 0:
            return True
        now = time.monotonic()
        while self._stamps and self._stamps[0] <= now - 1.0:
            self._stamps.popleft()
        if len(self._stamps) >= limit:
            return False
        self._stamps.append(now)
        return True


@dataclass
class Prepared:
    """Inputs fetched and checked: local paths, the face box, the driver's length.

    The driver is what moves the image: s2v's audio, animate's reference video.
    """

    image: Path
    driver: Path
    face_box: tuple[int, int, int, int] | None
    driver_seconds: float
    owned: list[Path] = field(default_factory=list)  # downloads to delete after

    def discard(self) -> None:
        for path in self.owned:
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass
class Task:
    id: str
    account: str
    api_key: str
    model: str
    resolution: str  # s2v; "" for animate
    image: media.Source
    driver: media.Source  # s2v's audio_url, animate's video_url
    submit_time: float
    generation: int
    mode: str = ""  # animate's wan-std or wan-pro (§7.1)
    check_image: bool = True  # animate's parameters.check_image
    emo_input: emo.EmoInput | None = None  # emo-v1's boxes and style (§8.2)
    submitted: float = field(default_factory=time.monotonic)
    status: str = "PENDING"
    scheduled_time: float | None = None
    end_time: float | None = None
    code: str = ""
    message: str = ""
    forced: tuple[str, str] | None = None  # fail_task / moderation fault
    prepared: Prepared | None = None
    audio_duration: float | None = None
    reference_duration: float | None = None  # animate's reference video
    video_duration: float | None = None
    width: int | None = None
    height: int | None = None
    video_path: Path | None = None
    result_url: str = ""
    result_expires: int | None = None
    request_id: str = ""  # of the submit, shown by the listing (§1.2a)
    queries: int = 0  # GET /tasks/{id} answered for it: what polling cost


@dataclass
class Upload:
    key: str
    path: Path
    model: str
    account: str
    created: float
    size: int
    filename: str


@dataclass
class Account:
    name: str
    keys: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    pending: deque[Task] = field(default_factory=deque)
    running: int = 0
    # Slots are per model (§3.3, §7.3 each give their own concurrency).
    running_by_model: Counter[str] = field(default_factory=Counter)
    max_running: int = 0
    freed: list[float] = field(default_factory=list)  # slot free since
    idle_gaps: list[tuple[float, float]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    windows: dict[str, RateWindow] = field(default_factory=dict)
    wake_at: float = 0.0  # monotonic time a timer will start the next task

    def clear(self) -> None:
        self.tasks.clear()
        self.pending.clear()
        self.running = self.max_running = 0
        self.running_by_model.clear()
        self.freed.clear()
        self.idle_gaps.clear()
        self.counts.clear()
        self.windows.clear()
        self.wake_at = 0.0


class Store(common.BaseStore[faults.Fault, Config]):
    config_class = Config
    build_fault = staticmethod(faults.build)
    subdirs = ("oss", "fetch", "results")

    def __init__(
        self,
        *,
        config: Config,
        keys: Iterable[ApiKey],
        data_dir: Path,
        log: Callable[[str], None] = log_line,
    ) -> None:
        super().__init__(config=config, data_dir=data_dir, log=log)
        self.keys: dict[str, ApiKey] = {}
        self.accounts: dict[str, Account] = {}
        for key in keys:
            self.keys[key.key] = key
            self.account(key.account).keys.append(key.key)
        self.tasks: dict[str, Task] = {}
        self.uploads: dict[str, Upload] = {}
        self._secret = secrets.token_bytes(32)

    # Configuration (the clock: common.BaseStore)

    def _config_changed(self) -> None:
        for account in self.accounts.values():
            self._pump(account)

    def account(self, name: str) -> Account:
        with self.lock:
            if name not in self.accounts:
                self.accounts[name] = Account(name=name)
            return self.accounts[name]

    def count(self, account: str | None, name: str, n: int = 1) -> None:
        with self.lock:
            if account is None:
                self.totals[name] += n
            else:
                self.account(account).counts[name] += n

    # Auth and limits (§12.2, §12.8)

    def authenticate(self, header: str | None) -> ApiKey:
        value = (header or "").strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            value = rest.strip()
        if not value:
            raise ApiError(401, "InvalidApiKey", errors.NO_KEY)
        key = self.keys.get(value)
        # §1.1: keys only work in their own region ("Region mismatch" is a 401).
        if key is None or key.region != self.config.region:
            raise ApiError.of("InvalidApiKey")
        return key

    def lookup_key(self, header: str | None) -> ApiKey | None:
        try:
            return self.authenticate(header)
        except ApiError:
            return None

    def check_rate(
        self, account: str, bucket: str, limit: float, *, counter: str = ""
    ) -> None:
        """429 Throttling.RateQuota when `bucket` is over `limit` per second."""
        with self.lock:
            window = self.account(account).windows.setdefault(bucket, RateWindow())
            if not window.allow(limit):
                self.account(account).counts[f"{counter or bucket}_throttled"] += 1
                raise ApiError.of("Throttling.RateQuota")

    def check_model(self, model: object, endpoint: str) -> str:
        """§12.4 routing and §1.1 region gating of the `model` field."""
        if not isinstance(model, str) or not model:
            raise ApiError(
                400,
                "BadRequest.EmptyModel",
                'Required parameter "model" missing from request.',
            )
        home = MODELS.get(model)
        if home is None:
            raise ApiError.of("ModelNotFound", f"The model {model} does not exist.")
        if model in BEIJING_ONLY and self.config.region != "cn-beijing":
            raise ApiError.of("ModelNotFound", f"The model {model} does not exist.")
        if home != endpoint:
            raise ApiError(400, "InvalidParameter", errors.WRONG_ENDPOINT)
        return model

    # Temporary upload (§5)

    def _access_key_id(self, account: str) -> str:
        return "LTAI5tEmu" + hashlib.sha1(account.encode()).hexdigest()[:15]

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._secret, text.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def issue_policy(self, key: ApiKey, model: str) -> dict[str, Any]:
        """§5.1 F8: a signed POST policy, bound to this account and model."""
        cfg = self.config
        now = self.now()
        ttl = cfg.ttl("policy")
        day = datetime.fromtimestamp(now, tz=UTC8).strftime("%Y-%m-%d")
        digest = hashlib.sha1(key.account.encode()).hexdigest()[:12]
        upload_dir = f"dashscope-instant/{digest}/{day}/{uuid.uuid4()}"
        max_bytes = min(int(cfg.max_file_size_mb * 1024 * 1024), MAX_UPLOAD_BYTES)
        expires = datetime.fromtimestamp(now + ttl, tz=UTC)
        document = {
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{expires.microsecond // 1000:03d}Z",
            "conditions": [
                {"bucket": OSS_BUCKET},
                ["content-length-range", 0, max_bytes],
                ["starts-with", "$key", upload_dir],
                {"x-oss-object-acl": "private"},
                {"x-oss-forbid-overwrite": "true"},
            ],
            # Read back on upload; the signature keeps clients from editing it.
            "emulator": {
                "account": key.account,
                "model": model,
                "upload_dir": upload_dir,
                "expires_at": now + ttl,
                "max_bytes": max_bytes,
            },
        }
        policy = base64.b64encode(
            json.dumps(document, separators=(",", ":")).encode()
        ).decode()
        self.count(key.account, "policy_calls")
        return {
            "policy": policy,
            "signature": self._sign(policy),
            "upload_dir": upload_dir,
            "upload_host": f"{self.public_url}/oss",
            # The real validity, so a scaled clock is not hidden from clients.
            "expire_in_seconds": common.number(ttl),
            "max_file_size_mb": common.number(cfg.max_file_size_mb),
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": self._access_key_id(key.account),
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }

    def accept_upload(self, parts: list[Part]) -> tuple[int, str]:
        """§5.2: check the form against its policy and keep the file.

        Returns the HTTP status (200/201/204, from success_action_status as
        OSS does) and the object key. Raises OssError.
        """
        names = [p.name.lower() for p in parts]
        if "file" not in names:
            raise OssError(
                400, "InvalidArgument", "The form has no file field named 'file'."
            )
        if names.index("file") != len(parts) - 1:
            raise OssError(
                400, "InvalidArgument", "The file must be the last field of the form."
            )
        file = parts[-1]
        form = {p.name.lower(): p.text for p in parts[:-1]}
        for name in ("OSSAccessKeyId", "policy", "Signature", "key"):
            if not form.get(name.lower()):
                raise OssError(
                    400, "InvalidArgument", f"The form field {name} is missing."
                )
        policy = form["policy"]
        if not hmac.compare_digest(self._sign(policy), form["signature"]):
            raise OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature "
                "you provided. Check your key and signing method.",
            )
        try:
            doc = json.loads(base64.b64decode(policy))["emulator"]
        except (ValueError, KeyError, TypeError):
            raise OssError(
                400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON."
            ) from None
        account, upload_dir = doc["account"], doc["upload_dir"]
        if form["ossaccesskeyid"] != self._access_key_id(account):
            raise OssError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
        if self.now() > doc["expires_at"]:
            raise OssError(
                403, "AccessDenied", "Invalid according to Policy: Policy expired."
            )
        key = form["key"]
        name = key.removeprefix(upload_dir + "/")
        if name == key or not name or ".." in name.split("/"):
            raise _condition_failed(["starts-with", "$key", upload_dir])
        for field_name, value in (
            ("x-oss-object-acl", "private"),
            ("x-oss-forbid-overwrite", "true"),
        ):
            if form.get(field_name) != value:
                raise _condition_failed(["eq", f"${field_name}", value])
        if len(file.data) > doc["max_bytes"]:
            raise OssError(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size.",
            )
        with self.lock:
            existing = self.uploads.get(key)
            if existing is not None and not self._upload_expired(existing):
                raise OssError(
                    409,
                    "FileAlreadyExists",
                    "The object you specified already exists and can not be "
                    "overwritten.",
                )
            path = self.data_dir / "oss" / uuid.uuid4().hex
            path.write_bytes(file.data)
            self.uploads[key] = Upload(
                key=key,
                path=path,
                model=doc["model"],
                account=account,
                created=self.now(),
                size=len(file.data),
                filename=file.filename or "",
            )
            self.account(account).counts["uploads"] += 1
        status = {"200": 200, "201": 201}.get(
            form.get("success_action_status", ""), 204
        )
        return status, key

    def _upload_expired(self, upload: Upload) -> bool:
        return self.now() > upload.created + self.config.ttl("upload")

    def resolve_oss(self, key: str, account: str, model: str) -> Path:
        """The stored file behind oss://key, if this account may use it with `model`.

        §5.4: objects live 48 h and serve only the model named in the policy
        and keys of the same account. The real error is undocumented (§12.6);
        the emulator answers as for an object it cannot download.
        """
        with self.lock:
            upload = self.uploads.get(key)
            if (
                upload is None
                or upload.account != account
                or upload.model != model
                or self._upload_expired(upload)
                or not upload.path.exists()
            ):
                raise ApiError.of("InvalidParameter.DataInspection")
            return upload.path

    # Inputs

    def materialize(
        self, source: media.Source, key: ApiKey, model: str, owned: list[Path]
    ) -> Path:
        """A local file with the input's bytes; downloads are added to `owned`."""
        if source.oss_key is not None:
            return self.resolve_oss(source.oss_key, key.account, model)
        path = media.download(
            source.url, self.data_dir / "fetch", timeout=self.config.fetch_timeout
        )
        owned.append(path)
        return path

    def prepare(
        self,
        key: ApiKey,
        model: str,
        image: media.Source,
        driver: media.Source,
        *,
        check_image: bool = True,
        emo_input: emo.EmoInput | None = None,
    ) -> Prepared:
        """Fetch and check a task's image and its audio (s2v, §3.1; EMO, §8.2)
        or reference video (animate, §7.1); raise ApiError."""
        owned: list[Path] = []
        try:
            image_path = self.materialize(image, key, model, owned)
            if model in animate.MODELS:
                verdict = animate.inspect_image(image_path, check_image=check_image)
            elif emo_input is not None:
                verdict = emo.inspect_image(image_path, emo_input)
            else:
                verdict = media.inspect_image(image_path, for_task=True)
            if not verdict.ok:
                raise ApiError(400, verdict.code, verdict.message)
            driver_path = self.materialize(driver, key, model, owned)
            seconds = self._driver_seconds(model, driver_path)
        except BaseException:
            Prepared(Path(), Path(), None, 0.0, owned).discard()
            raise
        return Prepared(
            image=image_path,
            driver=driver_path,
            face_box=verdict.face_box,
            driver_seconds=seconds,
            owned=owned,
        )

    def _driver_seconds(self, model: str, path: Path) -> float:
        """The audio's or reference video's length once it passes; raise ApiError."""
        if model in animate.MODELS:
            video = animate.inspect_video(path)
            if not video.ok:
                raise ApiError(400, video.code, video.message)
            return video.duration
        if model == emo.MODEL:
            limits = (emo.AUDIO_MAX_SECONDS, emo.AUDIO_MAX_BYTES)
        else:
            limits = (self.config.audio_max_seconds, self.config.audio_max_bytes)
        sound = media.inspect_audio(path, max_seconds=limits[0], max_bytes=limits[1])
        if not sound.ok:
            raise ApiError(400, sound.code, sound.message)
        return sound.duration

    # Tasks (§3, §12.7)

    def submit(
        self,
        *,
        key: ApiKey,
        model: str,
        resolution: str,
        image: media.Source,
        driver: media.Source,
        prepared: Prepared | None,
        request_id: str = "",
        mode: str = "",
        check_image: bool = True,
        emo_input: emo.EmoInput | None = None,
    ) -> Task:
        cfg = self.config
        with self.lock:
            account = self.account(key.account)
            waiting = sum(
                1 for t in account.pending if t.model == model and t.status == "PENDING"
            )
            if cfg.overflow == "reject" and (
                account.running_by_model[model] + waiting >= cfg.concurrency
            ):
                account.counts["submit_rejected_busy"] += 1
                raise ApiError(
                    cfg.overflow_status, cfg.overflow_code, cfg.overflow_message
                )
            task = Task(
                id=str(uuid.uuid4()),
                account=key.account,
                api_key=key.key,
                model=model,
                resolution=resolution,
                image=image,
                driver=driver,
                mode=mode,
                check_image=check_image,
                emo_input=emo_input,
                submit_time=self.now(),
                generation=self.generation,
                prepared=prepared,
                request_id=request_id or str(uuid.uuid4()),
            )
            forced = self.faults.take(
                faults.TASK_KINDS, route="submit", owner=key.account
            )
            if forced is not None:
                task.forced = (forced.code, forced.message)
            self.tasks[task.id] = task
            account.tasks.append(task.id)
            account.pending.append(task)
            account.counts["submissions"] += 1
            self._pump(account)
            return task

    def _pump(self, account: Account) -> None:
        """Start PENDING tasks, oldest first, while their model has a free slot."""
        for task in list(account.pending):
            if task.status != "PENDING":
                account.pending.remove(task)
                continue
            if account.running_by_model[task.model] >= self.config.concurrency:
                continue
            wait = task.submitted + self.config.pending_seconds - time.monotonic()
            if wait > 0:
                # Later tasks were submitted later: none of them is due sooner.
                self._wake_later(account, wait)
                return
            account.pending.remove(task)
            task.status = "RUNNING"
            task.scheduled_time = self.now()
            account.running += 1
            account.running_by_model[task.model] += 1
            account.max_running = max(account.max_running, account.running)
            if account.freed:
                account.idle_gaps.append((account.freed.pop(0), task.scheduled_time))
            worker = threading.Thread(
                target=self._run, args=(task,), name=f"s2v-task-{task.id[:8]}"
            )
            worker.daemon = True
            self._workers.add(worker)
            worker.start()

    def _wake_later(self, account: Account, wait: float) -> None:
        when = time.monotonic() + wait
        if account.wake_at and account.wake_at <= when + 0.001:
            return  # an earlier timer will pump again
        account.wake_at = when
        timer = threading.Timer(
            wait, self._wake, args=(account.name, self.generation, when)
        )
        timer.daemon = True
        timer.start()

    def _wake(self, name: str, generation: int, when: float) -> None:
        with self.lock:
            account = self.accounts.get(name)
            if account is None or generation != self.generation or self._stop.is_set():
                return
            if account.wake_at == when:
                account.wake_at = 0.0
            self._pump(account)

    def _run(self, task: Task) -> None:
        started = time.monotonic()
        prepared = task.prepared
        try:
            key = self.keys.get(task.api_key) or ApiKey(task.api_key, task.account)
            if prepared is None:
                try:
                    prepared = self.prepare(
                        key,
                        task.model,
                        task.image,
                        task.driver,
                        check_image=task.check_image,
                        emo_input=task.emo_input,
                    )
                except ApiError as err:
                    self._finish(task, "FAILED", err.code, err.message)
                    return
            is_animate = task.model in animate.MODELS
            cfg = self.config
            if is_animate:
                task.reference_duration = prepared.driver_seconds
                per_second = cfg.run_seconds_per_video_second
            else:
                task.audio_duration = prepared.driver_seconds
                per_second = cfg.run_seconds_per_audio_second
            run_for = cfg.run_seconds_base + per_second * prepared.driver_seconds
            if task.forced is not None:
                self._wait_until(started + run_for)
                self._finish(task, "FAILED", *task.forced)
                return
            out = self.data_dir / "results" / f"{task.id}.mp4"
            try:
                if is_animate:
                    info = animate.render(
                        image=prepared.image,
                        video=prepared.driver,
                        model=task.model,
                        mode=task.mode,
                        duration=prepared.driver_seconds,
                        out=out,
                    )
                elif task.emo_input is not None:
                    info = emo.render(
                        image=prepared.image,
                        audio=prepared.driver,
                        given=task.emo_input,
                        out=out,
                    )
                else:
                    info = common.render(
                        portrait=prepared.image,
                        audio=prepared.driver,
                        resolution=task.resolution,
                        face_box=prepared.face_box,
                        out=out,
                    )
            except InputError as exc:
                code = exc.code if exc.code in errors.KNOWN else "InvalidFile.Openerror"
                self._finish(task, "FAILED", code, errors.known_message(code))
                return
            # The render counts towards the run time; a slow render is never cut.
            self._wait_until(started + run_for)
            self._finish(
                task,
                "SUCCEEDED",
                video=out,
                # Animate bills the reference's length (§7.2), which the
                # result matches to a frame.
                duration=prepared.driver_seconds if is_animate else info.duration,
                size=(info.width, info.height),
            )
        except Exception as exc:  # a bug or a full disk must not kill the slot
            self.log(f"task {task.id} crashed: {exc!r}\n{traceback.format_exc()}")
            self._finish(
                task, "FAILED", "InternalError", errors.KNOWN["InternalError"][1]
            )
        finally:
            if prepared is not None:
                prepared.discard()
            self._workers.discard(threading.current_thread())

    def _wait_until(self, deadline: float) -> None:
        self._stop.wait(max(0.0, deadline - time.monotonic()))

    def _finish(
        self,
        task: Task,
        status: str,
        code: str = "",
        message: str = "",
        *,
        video: Path | None = None,
        duration: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        with self.lock:
            if self._stop.is_set() or task.generation != self.generation:
                return
            if task.status != "RUNNING":
                return
            task.status = status
            task.end_time = self.now()
            task.code, task.message = code, message
            if status == "SUCCEEDED" and video is not None:
                task.video_path = video
                task.video_duration = duration
                task.width, task.height = size or (None, None)
                expires = math.ceil(task.end_time + self.config.ttl("result"))
                task.result_expires = expires
                task.result_url = self._result_url(task.id, expires)
            account = self.account(task.account)
            account.running -= 1
            account.running_by_model[task.model] -= 1
            account.freed.append(task.end_time)
            self._pump(account)

    def _result_url(self, task_id: str, expires: int) -> str:
        signature = self._sign(f"GET\n{task_id}\n{expires}")
        return (
            f"{self.public_url}/results/{task_id}.mp4?Expires={expires}"
            f"&OSSAccessKeyId={self._access_key_id('results')}"
            f"&Signature={quote(signature, safe='')}"
        )

    def task_expired(self, task: Task) -> bool:
        return self.now() > task.submit_time + self.config.ttl("task")

    def visible_task(self, key: ApiKey, task_id: str) -> Task | None:
        """§1.6: tasks are visible to every key of the account, for 24 h."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task.account != key.account or self.task_expired(task):
                return None
            return task

    def task_output(self, task: Task) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The `output` and `usage` objects of GET /tasks/{id} (§1.6, §3.2, F3, F4)."""
        with self.lock:
            task.queries += 1
            output: dict[str, Any] = {"task_id": task.id, "task_status": task.status}
            for name in ("submit_time", "scheduled_time", "end_time"):
                value = getattr(task, name)
                if value is not None:
                    output[name] = format_time(value)
            usage = None
            if task.status == "SUCCEEDED":
                output["results"] = {"video_url": task.result_url}
                seconds = round(task.video_duration or 0.0, 2)
                if task.model in animate.MODELS:
                    # §7.2: video_ratio is the service mode, not an aspect ratio.
                    mode = animate.SERVICE_MODES[task.mode]
                    return output, {"video_duration": seconds, "video_ratio": mode}
                if task.emo_input is not None:
                    # §8.2: here video_ratio is the aspect ratio.
                    ratio = task.emo_input.ratio
                    return output, {"video_duration": seconds, "video_ratio": ratio}
                usage = {}
                if self.config.usage_field in ("duration", "both"):
                    usage["duration"] = seconds
                if self.config.usage_field in ("video_duration", "both"):
                    usage["video_duration"] = seconds
                usage["video_count"] = 1
                usage["SR"] = 720 if task.resolution == "720P" else 480
            elif task.status == "FAILED":
                output["code"] = task.code
                output["message"] = task.message
            return output, usage

    def cancel(self, key: ApiKey, task_id: str) -> Task:
        with self.lock:
            task = self.visible_task(key, task_id)
            self.account(key.account).counts["cancel_requests"] += 1
            if task is None or task.status != "PENDING":
                raise ApiError.of("UnsupportedOperation")
            task.status = "CANCELED"
            task.end_time = self.now()
            self.account(key.account).counts["cancels"] += 1
            if task.prepared is not None:
                task.prepared.discard()
            return task

    def list_tasks(
        self,
        key: ApiKey,
        *,
        task_id: str | None = None,
        status: str | None,
        model: str | None,
        start: float | None,
        end: float | None,
    ) -> list[Task]:
        """§1.2a: the account's tasks created in [start, end], newest first."""
        with self.lock:
            found = [
                task
                for tid in self.account(key.account).tasks
                if (task := self.tasks[tid])
                and not self.task_expired(task)
                and (task_id is None or task.id == task_id)
                and (status is None or task.status == status)
                and (model is None or task.model == model)
                and (start is None or task.submit_time >= start)
                and (end is None or task.submit_time <= end)
            ]
        return sorted(found, key=lambda t: t.submit_time, reverse=True)

    def list_row(self, task: Task, region: str) -> dict[str, Any]:
        """One row of the task listing, shaped as §1.2a documents (not as §1.6)."""
        with self.lock:
            row: dict[str, Any] = {
                "task_id": task.id,
                "status": task.status,
                "model_name": task.model,
                "request_id": task.request_id,
                "gmt_create": _millis(task.submit_time),
            }
            # start_time/end_time only once reached (§1.2a).
            if task.scheduled_time is not None:
                row["start_time"] = _millis(task.scheduled_time)
            if task.end_time is not None:
                row["end_time"] = _millis(task.end_time)
            api_key_id = hashlib.sha256(task.api_key.encode()).hexdigest()[:16]
            row.update(
                region=region,
                api_key_id=api_key_id,
                caller_parent_id=task.account,
                caller_uid=task.account,
                user_api_unique_key=(
                    f"apikey:v1:aigc:image2video:{_endpoint_name(task.model)}:"
                    f"{task.model}"
                ),
            )
            return row

    def result_file(self, task_id: str, query: Mapping[str, str]) -> Path:
        """The MP4 behind a signed result URL (§3.2: valid 24 h). Raises OssError."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task.video_path is None or not task.video_path.exists():
                raise OssError(404, "NoSuchKey", "The specified key does not exist.")
            expires = query.get("Expires", "")
            signature = query.get("Signature", "")
            good = self._sign(f"GET\n{task_id}\n{expires}")
            if not expires.isdigit() or not hmac.compare_digest(good, signature):
                raise OssError(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the "
                    "signature you provided. Check your key and signing method.",
                )
            expired = self.now() > int(expires)
            fault = self.faults.take(
                ("expire_results",), route="result", owner=task.account
            )
            if expired or fault is not None:
                raise OssError(403, "AccessDenied", "Request has expired.")
            return task.video_path

    # Control

    def state(self) -> dict[str, Any]:
        """What tests and benchmarks assert on (documented in server.py)."""
        with self.lock:
            accounts = {}
            for name, account in self.accounts.items():
                accounts[name] = {
                    "keys": list(account.keys),
                    "running": account.running,
                    "pending": sum(1 for t in account.pending if t.status == "PENDING"),
                    "max_running": account.max_running,
                    "idle_gaps": [list(gap) for gap in account.idle_gaps],
                    "counts": dict(account.counts),
                    "tasks": [
                        self._task_state(self.tasks[task_id])
                        for task_id in account.tasks
                    ],
                }
            return {
                "now": self.now(),
                "clock_offset": self.clock_offset,
                "config": asdict(self.config),
                "ttl": {
                    name: self.config.ttl(name)
                    for name in ("task", "result", "upload", "policy")
                },
                "accounts": accounts,
                "uploads": [
                    {
                        "key": u.key,
                        "model": u.model,
                        "account": u.account,
                        "size": u.size,
                        "created": u.created,
                        "expires": u.created + self.config.ttl("upload"),
                    }
                    for u in self.uploads.values()
                ],
                "faults": self.faults.listing(),
                "totals": dict(self.totals),
            }

    def _task_state(self, task: Task) -> dict[str, Any]:
        return {
            "id": task.id,
            "task_id": task.id,  # the same, under DashScope's name
            "status": task.status,
            "model": task.model,
            "api_key": task.api_key,
            "resolution": task.resolution,
            "submit_time": task.submit_time,
            "start_time": task.scheduled_time,
            "end_time": task.end_time,
            "audio_duration": task.audio_duration,
            "mode": task.mode or None,
            "reference_duration": task.reference_duration,
            "ratio": task.emo_input.ratio if task.emo_input else None,
            "style_level": task.emo_input.style_level if task.emo_input else None,
            "video_duration": task.video_duration,
            "width": task.width,
            "height": task.height,
            "code": task.code or None,
            "message": task.message or None,
            "result_expires": task.result_expires,
            "expired": self.task_expired(task),
            "queries": task.queries,
        }

    def _forget(self) -> None:
        for task in self.tasks.values():
            if task.prepared is not None and task.status == "PENDING":
                task.prepared.discard()
        self.tasks.clear()
        for upload in self.uploads.values():
            with contextlib.suppress(OSError):
                upload.path.unlink()
        self.uploads.clear()
        for account in self.accounts.values():
            account.clear()

    def _remove_files(self) -> None:
        for path in (self.data_dir / "results").iterdir():
            with contextlib.suppress(OSError):
                path.unlink()


def _condition_failed(condition: list[str]) -> OssError:
    return OssError(
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy Condition failed: "
        + json.dumps(condition),
    )
