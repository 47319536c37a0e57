"""The provider contract: what the studio needs from whatever makes the video.

An provider checks portraits and turns (portrait, audio, resolution) into a video.
The local provider does both on this machine; remote providers (DashScope) do them
over HTTP. Views and services only ever see the types in this module.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

# Resolution tiers and the pixel area each one aims at (provider-api.md §3.1).
RESOLUTION_AREAS: dict[str, int] = {"480P": 640 * 480, "720P": 1280 * 720}
# An integer limit that never binds.
UNBOUNDED = 2**62


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What an provider accepts. The upload page validates against these."""

    image_formats: frozenset[str]  # Pillow format names, e.g. {"JPEG", "PNG"}
    image_min_side: int
    image_max_side: int
    audio_formats: frozenset[str]  # container names sent as-is: {"wav", "mp3"}
    # Exclusive bounds: a clip must be shorter and smaller than these (§3.1 "<").
    audio_max_seconds: float
    audio_max_bytes: int
    resolutions: tuple[str, ...]
    concurrency: int
    # Price per generated second, by resolution, and per portrait check.
    price_per_second: dict[str, Decimal] = field(default_factory=dict)
    price_per_check: Decimal = Decimal("0")
    currency: str = "USD"
    # The image file's bytes and its longer side over its shorter one, both
    # inclusive (provider-api.md §7.1: "<= 5 MB", "1:3 - 3:1"); None: no bound.
    image_max_bytes: int | None = None
    image_aspect_max: float | None = None
    # provider-api.md states no shortest clip for wan2.2-s2v; WaveSpeed bills
    # at least 3 s. Under a second there is no syllable to lip-sync, so every
    # provider asks for at least 1 s rather than failing (or billing) later.
    audio_min_seconds: float = 1.0
    # Reference videos (animate models). The defaults take no video at all, so
    # offers of models without a video input need not mention them. Bounds
    # are inclusive (provider-api.md §7.1: "2-30 s", "[200, 2048]", "<= 200 MB").
    video_formats: frozenset[str] = frozenset()  # media.video names: {"mp4", ...}
    video_min_seconds: float = 0.0
    video_max_seconds: float = math.inf
    video_min_side: int = 0
    video_max_side: int = UNBOUNDED
    video_max_bytes: int = UNBOUNDED
    # The longer side over the shorter one: 3.0 takes 1:3 to 3:1.
    video_aspect_max: float = math.inf


class Reason(enum.StrEnum):
    """Why a portrait fails. Values mirror the provider's InvalidFile.* family (§6)."""

    NOT_IMAGE = "InvalidFile.Openerror"
    FORMAT = "InvalidFile.Format"
    TOO_SMALL = "InvalidFile.Resolution.TooSmall"
    TOO_LARGE = "InvalidFile.Resolution.TooLarge"
    # Too wide or too tall whatever its size, which neither TOO_* says.
    ASPECT = "InvalidFile.AspectRatio"
    NO_FACE = "InvalidFile.NoHuman"
    MULTIPLE_FACES = "InvalidFile.MultiHuman"
    FACE_TOO_SMALL = "InvalidFile.BodyProportion"
    FACE_POSE = "InvalidFile.FacePose"
    BLURRY = "InvalidFile.Value.Blurry"
    TOO_DARK = "InvalidFile.Value.Dark"
    REJECTED = "InvalidFile.Content"  # a remote check said no without saying why


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a portrait check, local or remote."""

    check_pass: bool
    humanoid: bool
    reason: Reason | None = None
    message: str = ""  # plain words: what is wrong and what to change
    face_box: tuple[int, int, int, int] | None = None  # x, y, w, h in image pixels
    details: dict[str, float] = field(default_factory=dict)  # blur, brightness, ...


class TaskState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = (
        "expired"  # the provider no longer knows the task (ids and results expire)
    )

    @property
    def active(self) -> bool:
        """Still holding a slot at the provider."""
        return self in (TaskState.PENDING, TaskState.RUNNING)


@dataclass(frozen=True, slots=True)
class ListedTask:
    """One task in a provider's listing of recent tasks (DashScope §1.2a, WaveSpeed §9.6).

    `status` is the provider's own word, kept for display and the ledger;
    `state` is what the rest of the studio reads.
    """

    task_id: str
    status: str
    state: TaskState
    model: str = ""
    submitted_at: datetime | None = None  # when the provider took the task
    scheduled_at: datetime | None = None  # when it started running
    ended_at: datetime | None = None  # when it finished


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input as an provider sees it: a local copy, and how to find it again.

    Remote providers need a URL the provider can fetch; they make one from the
    stored name (presigned or signed app link) or upload the local copy, and
    reuse an upload of the same bytes by its hash.
    """

    path: Path
    sha256: str
    storage_name: str = ""
    # The verified format (Pillow's or the probed container's), when known: it
    # names staged and uploaded copies, since `path` may carry the upload's name.
    format: str = ""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Inputs of one generation."""

    job_code: str
    portrait: InputFile
    audio: InputFile
    resolution: str
    face_box: tuple[int, int, int, int] | None = None
    # The audio's length in seconds, when known: providers that bill by the
    # input's length (WaveSpeed, provider-api.md §9.5) report billed seconds from it.
    audio_seconds: float | None = None
    # Parameters of models that take them ("" and None: the provider's default).
    prompt: str = ""
    seed: int | None = None
    # Called right before the request that creates a paid task is sent. It
    # raises to withdraw the send (the job was taken back meanwhile).
    before_post: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """Where a generation stands. A succeeded result names where the video is."""

    task_id: str
    state: TaskState
    video_path: Path | None = None  # local providers
    poster_path: Path | None = None
    video_url: str = ""  # remote providers
    billed_seconds: Decimal | None = None
    error_code: str = ""
    error_message: str = ""
    remote_status: str = ""  # the provider's own word, e.g. "PENDING"
    retryable: bool = False  # a failed task that a new submission may fix
    # Remote providers: when the provider says the task started running and ended,
    # by its own clock. Run times learned from these do not depend on when the
    # studio happened to ask.
    scheduled_at: datetime | None = None
    ended_at: datetime | None = None
    # How long the provider says it worked on a finished task, for providers
    # that report a duration but no start and end times (WaveSpeed's
    # timings.inference).
    run_seconds: float | None = None
    # The tier the provider billed the task at ("480P"), when it says.
    resolution: str = ""
    # Why `billed_seconds` is None for a task that ended, and where an admin
    # finds what it cost (a provider that does not report it), or that it was
    # not billed: what the reconciliation shows beside the task.
    billing_note: str = ""


Progress = Callable[[float], None]


class ProviderError(Exception):
    """An provider call failed. `permanent=False` means a later retry may work.

    `kind` says more for remote providers: "account" errors are about the
    provider account (key, billing, access), not about this job; "withheld"
    means the provider made (and may have billed) the result but will not hand
    it over, and the message already says what that cost.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        permanent: bool = True,
        kind: str = "",
        unanswered: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.kind = kind or ("input" if permanent else "transient")
        # A remote call that may have taken effect although no answer came back
        # (a dropped connection, a read timeout): a submit may have made a task.
        self.unanswered = unanswered
        # Seconds the provider asked the studio to wait before asking again
        # (an HTTP Retry-After), when it said.
        self.retry_after = retry_after

    @property
    def about_account(self) -> bool:
        return self.kind == "account"


@runtime_checkable
class Provider(Protocol):
    """What every provider does: check portraits, make a video, hand it over."""

    name: str
    label: str
    limits: ProviderLimits
    # Local providers do the work inside `start`; remote ones return a pending task
    # that must be polled (they are RemoteProviders: see `as_remote`).
    remote: bool

    # `fresh`: a retry after a transient failure, to be sent on a new connection.
    def check_portrait(self, image: InputFile, *, fresh: bool = False) -> Verdict: ...

    def start(self, request: GenerationRequest, progress: Progress) -> TaskResult: ...

    def fetch(self, result: TaskResult, dest: IO[bytes]) -> None: ...


@runtime_checkable
class RemoteProvider(Provider, Protocol):
    """What a provider that runs tasks elsewhere adds: asking, withdrawing, listing.

    `states` maps the provider's own task words to the studio's states. It is
    how code outside the provider's package reads a stored word (a job's
    `remote_status`) without naming it; a word not in it is not known yet.
    """

    states: Mapping[str, TaskState]
    # The provider account's fingerprint, never its key: tasks are kept per account.
    account: str

    def poll(self, task_id: str) -> TaskResult: ...

    def cancel(self, task_id: str) -> bool: ...

    # The account's tasks created since a moment, oldest first (recovers a task
    # whose id a crash lost). Raises ProviderError when the listing fails.
    def listed_tasks(self, *, since: datetime) -> list[ListedTask]: ...


def as_remote(provider: Provider) -> RemoteProvider | None:
    """The provider as a remote one, or None for a provider that works in place."""
    if provider.remote and isinstance(provider, RemoteProvider):
        return provider
    return None
