"""Serving private media: HTTP ranges (browsers seek videos by range) and zips."""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from storages.utils import clean_name

from studio.formats import (
    OPAQUE_SUFFIX,
    OPAQUE_TYPE,
    content_type_for,
    format_of_suffix,
)
from studio.models import AudioClip, Portrait, VideoClip

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


# Media is data, never a page: even a file that a browser could be talked into
# reading as HTML or script runs nothing, in a sandbox with no origin.
MEDIA_CSP = "default-src 'none'; sandbox"


def serve_file(
    request: HttpRequest, name: str, *, fmt: str, download_as: str | None = None
) -> HttpResponseBase:
    """Stream a stored file as its verified format `fmt` says; honours one Range.

    The type comes from `fmt` alone, never from `name`. A format with no known
    type is sent as an opaque attachment.
    """
    content_type = content_type_for(fmt)
    if content_type is None:
        content_type = OPAQUE_TYPE
        download_as = download_as or f"{PurePosixPath(name).stem}{OPAQUE_SUFFIX}"
    size = default_storage.size(name)
    fh = default_storage.open(name, "rb")
    match = _RANGE.match(request.headers.get("Range", "").strip())
    response: HttpResponseBase
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
        else:  # suffix range: the last N bytes
            start, end = max(size - int(match[2]), 0), size - 1
        if start >= size or start > end:
            fh.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return harden(response)
        fh.close()
        response = StreamingHttpResponse(
            stored_chunks(name, start=start, end=end),
            status=206,
            content_type=content_type,
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    elif _bucket() is not None:
        fh.close()
        response = StreamingHttpResponse(stored_chunks(name), content_type=content_type)
        response["Content-Length"] = str(size)
    else:
        response = FileResponse(fh, content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    if download_as:
        response["Content-Disposition"] = f'attachment; filename="{download_as}"'
    return harden(response)


def input_format(name: str) -> str:
    """The verified format recorded for a stored input; "" when none is known."""
    for model in (Portrait, AudioClip, VideoClip):
        recorded = model.objects.filter(file=name).values_list("format", flat=True)
        if fmt := recorded.first():
            return fmt
    if name.startswith("staging/"):
        # Staged copies are named by the provider from the verified format.
        return format_of_suffix(name)
    return ""


def harden(response: HttpResponseBase) -> HttpResponseBase:
    """Headers every response carrying stored bytes gets.

    `no-cache` makes the browser ask again each time, so whoever loses access
    (removed from the team, a revoked link) stops seeing the file at once.
    """
    response["Content-Security-Policy"] = MEDIA_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-cache"
    return response


def stored_chunks(
    name: str, *, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """A stored file's bytes start..end (inclusive), a chunk at a time.

    On S3-compatible storage this is one ranged GET whose body is read as it
    arrives: opening the file through storage would first download all of it.
    """
    bucket = _bucket()
    if bucket is not None:
        key = default_storage._normalize_name(clean_name(name))  # type: ignore[attr-defined]
        span = f"bytes={start}-{'' if end is None else end}"
        body = bucket.Object(key).get(Range=span)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()
        return
    with default_storage.open(name, "rb") as fh:
        fh.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _bucket() -> Any:
    return getattr(default_storage, "bucket", None)


class _Spool:
    """A write-only, unseekable file for ZipFile; `take` hands out what was written.

    Without `seek`, ZipFile writes sizes and CRCs after each member's data
    (data descriptors), so nothing has to be held back or rewritten.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def zip_stream(members: Iterable[tuple[str, str]]) -> Iterator[bytes]:
    """A zip of stored files, (name in the zip, storage name), made while it is sent.

    Memory stays at about one CHUNK however many and however large the files:
    each file is read, written and handed on a chunk at a time. Members are
    stored, not deflated, since MP4 does not compress further.
    """
    spool = _Spool()
    with zipfile.ZipFile(spool, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for arcname, name in members:
            info = zipfile.ZipInfo(arcname, date_time=_zip_time(name))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = (stat.S_IFREG | 0o644) << 16  # a plain readable file
            info.file_size = default_storage.size(name)  # picks ZIP64 when needed
            with archive.open(info, "w") as dst:
                for chunk in stored_chunks(name):
                    dst.write(chunk)
                    yield spool.take()
            if data := spool.take():  # the member's data descriptor
                yield data
    yield spool.take()  # the central directory


def _zip_time(name: str) -> tuple[int, int, int, int, int, int]:
    try:
        modified = default_storage.get_modified_time(name)
    except (NotImplementedError, OSError):
        return (1980, 1, 1, 0, 0, 0)
    # Zip times have no zone: write the studio's local time.
    return timezone.localtime(modified).timetuple()[:6]
