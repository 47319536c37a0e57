"""A small multipart/form-data parser for the emulators' upload endpoints.

The whole body is in memory already (uploads are capped by the policy), so
the parser just splits on the boundary and reads each part's headers with
the stdlib's email header parser, which copes with quoting and RFC 2231.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart/form-data Content-Type header."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise MultipartError("Content-Type is not multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    return boundary


def parse(body: bytes, content_type: str) -> list[Part]:
    """Parts in the order they were sent."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    # A leading CRLF makes the first delimiter look like all the others.
    chunks = (b"\r\n" + body).split(b"\r\n" + delimiter)
    if len(chunks) < 2:
        raise MultipartError("no boundary found in the body")
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts  # the closing delimiter; anything after is epilogue
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part without a header block")
        headers = HeaderParser().parsestr(
            head.lstrip(b" \t").removeprefix(b"\r\n").decode("utf-8", "replace")
        )
        if headers.get_content_disposition() != "form-data":
            raise MultipartError("a part without Content-Disposition: form-data")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise MultipartError("a part without a name")
        filename = headers.get_filename()
        parts.append(
            Part(
                name=name,
                filename=filename,
                content_type=headers.get_content_type() if filename else "text/plain",
                data=data,
            )
        )
    raise MultipartError("the closing boundary is missing")
