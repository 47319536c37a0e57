"""Fetching and judging the inputs of detect and s2v calls (§2.1, §3.1).

Images go through the studio's own checks (`studio.media.images`), so the
emulator and the local provider agree on what a usable portrait is; audio
through `probe_audio`. Failures become DashScope codes with §6 messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from studio.emulators import common
from studio.media.audio import probe_audio
from studio.media.images import InputError, check_face, precheck_image, read_image_info
from studio.providers.base import ProviderLimits, Reason

from . import errors
from .errors import ApiError

# §2.1 / §3.1: jpg, jpeg, png, bmp, webp; each side in [400, 7000] px.
IMAGE_LIMITS = ProviderLimits(
    image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
    image_min_side=400,
    image_max_side=7000,
    audio_formats=frozenset({"wav", "mp3"}),
    audio_max_seconds=20.0,
    audio_max_bytes=15_000_000,  # §3.1 "< 15 MB", the smaller reading
    resolutions=("480P", "720P"),
    concurrency=1,
)
# Shared with every emulator in the process (see common.FACE_LOCK).
FACE_LOCK = common.FACE_LOCK
is_loopback = common.is_loopback

# The studio's reasons (base.Reason) -> the DashScope code of that family.
_REASON_CODES: dict[str, str] = {
    Reason.NOT_IMAGE: "InvalidFile.Openerror",
    Reason.FORMAT: "InvalidFile.Format",
    Reason.TOO_SMALL: "InvalidFile.Resolution",
    Reason.TOO_LARGE: "InvalidFile.Resolution",
    Reason.ASPECT: "InvalidFile.AspectRatio",
    Reason.NO_FACE: "InvalidFile.NoHuman",
    Reason.MULTIPLE_FACES: "InvalidFile.MultiHuman",
    Reason.FACE_TOO_SMALL: "InvalidFile.BodyProportion",
    Reason.FACE_POSE: "InvalidFile.FacePose",
    Reason.BLURRY: "InvalidFile.Value",
    Reason.TOO_DARK: "InvalidFile.Value",
    Reason.REJECTED: "InvalidFile.Content",
}


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input URL points: an emulated OSS object or a loopback URL."""

    url: str
    oss_key: str | None = None  # set for oss:// URLs


def parse_url(url: object, field: str, *, resolve_oss: bool) -> Source:
    """Check an input URL's form; raise the 400 the real service gives (§5.4, §6)."""
    if not isinstance(url, str) or not url.strip():
        raise ApiError(400, "InvalidParameter", errors.missing(field))
    url = url.strip()
    if url.startswith("oss://"):
        if not resolve_oss:
            # §5.4: oss:// needs X-DashScope-OssResourceResolve: enable.
            raise ApiError(400, "InvalidParameter", errors.OSS_URL_INVALID)
        key = url.removeprefix("oss://")
        if not key:
            raise ApiError(400, "InvalidParameter", errors.OSS_URL_INVALID)
        return Source(url=url, oss_key=key)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ApiError(400, "InvalidURL", errors.INVALID_URL) from None
    # The emulator cannot reach the internet: only loopback URLs can be fetched.
    if parts.scheme not in ("http", "https") or not is_loopback(host):
        raise ApiError(400, "InvalidURL", errors.INVALID_URL)
    return Source(url=url)


def download(url: str, folder: Path, *, timeout: float) -> Path:
    """GET a loopback URL into a new file under `folder`; raise ApiError on failure."""
    try:
        return common.fetch(url, folder, timeout=timeout)
    except common.FetchError as exc:
        if exc.reason == "not_loopback":
            raise ApiError(400, "InvalidURL", errors.INVALID_URL) from None
        if exc.reason == "too_big":
            raise ApiError.of("InvalidFile.Size", _too_big()) from None
        if exc.reason == "refused":
            raise ApiError(
                400,
                "InvalidURL.ConnectionRefused",
                f"Connection to {exc.url} refused, please provide available URL.",
            ) from None
        if exc.reason == "timeout":
            raise ApiError(
                400,
                "InvalidURL.Timeout",
                f"Download {exc.url} timeout, please check network connection.",
            ) from None
        raise ApiError.of("InvalidURL") from None


def _too_big() -> str:
    return (
        "Invalid file size. The video/audio/image file size must be less than 1024MB."
    )


@dataclass(frozen=True, slots=True)
class ImageCheck:
    ok: bool
    humanoid: bool
    code: str = ""
    message: str = ""
    face_box: tuple[int, int, int, int] | None = None


def inspect_image(
    path: Path,
    *,
    for_task: bool = False,
    limits: ProviderLimits = IMAGE_LIMITS,
    faces: bool = True,
) -> ImageCheck:
    """Format, size and face, as wan2.2-s2v-detect judges them (§2.1).

    `for_task` picks the code an s2v task fails with for a wrong format
    (InvalidURL, §6) instead of the detect API's InvalidFile.Format. Animate
    passes its own `limits` (§7.1) and skips the face check when told to.
    """
    try:
        info = read_image_info(path)
        verdict = precheck_image(info, limits)
        if verdict is None and not faces:
            return ImageCheck(ok=True, humanoid=True)
        if verdict is None:
            with FACE_LOCK:
                verdict = check_face(path)
    except InputError as exc:
        code = _REASON_CODES.get(exc.code, "InvalidFile.Openerror")
        return ImageCheck(ok=False, humanoid=False, code=code, message=_message(code))
    if verdict.check_pass:
        return ImageCheck(ok=True, humanoid=True, face_box=verdict.face_box)
    code = _REASON_CODES.get(verdict.reason or Reason.REJECTED, "InvalidFile.Content")
    if code == "InvalidFile.Format" and for_task:
        return ImageCheck(
            ok=False, humanoid=False, code="InvalidURL", message=errors.IMAGE_TYPE
        )
    message = _message(code)
    if code == "InvalidFile.Resolution":
        message = errors.image_resolution(limits.image_min_side, limits.image_max_side)
    return ImageCheck(
        ok=False,
        humanoid=verdict.humanoid,
        code=code,
        message=message,
        face_box=verdict.face_box,
    )


def _message(code: str) -> str:
    return errors.known_message(code)


@dataclass(frozen=True, slots=True)
class AudioCheck:
    ok: bool
    code: str = ""
    message: str = ""
    duration: float = 0.0
    size: int = 0


def inspect_audio(path: Path, *, max_seconds: float, max_bytes: int) -> AudioCheck:
    """wav/mp3, under `max_bytes` and under `max_seconds` (§3.1), strictly."""
    size = path.stat().st_size
    try:
        info = probe_audio(path)
    except InputError:
        return AudioCheck(
            ok=False,
            code="InvalidFile.Openerror",
            message=_message("InvalidFile.Openerror"),
            size=size,
        )
    if info.format not in ("wav", "mp3"):
        return AudioCheck(
            ok=False, code="InvalidURL", message=errors.AUDIO_TYPE, size=size
        )
    # §3.1 says "< 15 MB" and "< 20 s": exactly the limit is refused too.
    if size >= max_bytes:
        over = f"File size is larger than {max_bytes / 1e6:g}MB."
    elif info.duration >= max_seconds:
        over = f"The input audio is longer than {max_seconds:g}s."
    else:
        return AudioCheck(ok=True, duration=info.duration, size=size)
    return AudioCheck(
        ok=False, code="InvalidURL", message=over, duration=info.duration, size=size
    )
