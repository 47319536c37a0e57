"""Serving private media: HTTP ranges (browsers seek videos by range) and zips."""

from __future__ import annotations

import mimetypes
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from typing import IO

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


def serve_file(
    request: HttpRequest, name: str, *, download_as: str | None = None
) -> HttpResponseBase:
    """Stream a stored file; honours a single `Range: bytes=a-b` request."""
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    size = default_storage.size(name)
    fh = default_storage.open(name, "rb")
    match = _RANGE.match(request.headers.get("Range", "").strip())
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
            return response
        fh.seek(start)
        response = StreamingHttpResponse(
            _read(fh, end - start + 1), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(fh, content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    if download_as:
        response["Content-Disposition"] = f'attachment; filename="{download_as}"'
    return response


def _read(fh: IO[bytes], remaining: int) -> Iterator[bytes]:
    try:
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


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
            with (
                default_storage.open(name, "rb") as src,
                archive.open(info, "w") as dst,
            ):
                while chunk := src.read(CHUNK):
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
    return timezone.localtime(modified).timetuple()[:6]  # type: ignore[return-value]
