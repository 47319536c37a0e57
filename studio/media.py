"""Serving private media with HTTP range support (browsers seek videos by range)."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from typing import IO

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

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
