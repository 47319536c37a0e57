"""What a stored file is, from the format the studio verified: its suffix and type.

A file's name is never evidence of what it holds: an upload named `x.html` can
be a perfectly good PNG and also an HTML page. Inputs are stored under names
whose suffix comes from the format Pillow or FFmpeg read (and results from what
the studio made), and media is served with the type that format has. A format
missing here is served as an opaque download.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# Verified format (lower-cased Pillow format or short container name) ->
# (suffix, Content-Type). Only types that browsers never run as code.
_FORMATS: dict[str, tuple[str, str]] = {
    # Images: Pillow's names (MPO is read as JPEG by images.read_image_info).
    "jpeg": (".jpg", "image/jpeg"),
    "png": (".png", "image/png"),
    "bmp": (".bmp", "image/bmp"),
    "webp": (".webp", "image/webp"),
    # Audio: provider.audio's short container names.
    "wav": (".wav", "audio/wav"),
    "mp3": (".mp3", "audio/mpeg"),
    "m4a": (".m4a", "audio/mp4"),
    "aac": (".aac", "audio/aac"),
    "ogg": (".ogg", "audio/ogg"),
    "flac": (".flac", "audio/flac"),
    # Video: results the studio makes, and media.video's short container names
    # of uploaded reference videos (WebM uploads are stored converted to MP4).
    "mp4": (".mp4", "video/mp4"),
    "mov": (".mov", "video/quicktime"),
    "avi": (".avi", "video/x-msvideo"),
}
_BY_SUFFIX = {suffix: fmt for fmt, (suffix, _) in _FORMATS.items()}

# Results are made by the studio, so what they are is known without a look.
VIDEO_FORMAT = "mp4"
POSTER_FORMAT = "jpeg"  # provider.render and provider.posters save JPEG

OPAQUE_TYPE = "application/octet-stream"
OPAQUE_SUFFIX = ".bin"


def suffix_for(fmt: str) -> str:
    """The stored-name suffix for a verified format; `.bin` when it is unknown."""
    known = _FORMATS.get(fmt.lower())
    return known[0] if known else OPAQUE_SUFFIX


def content_type_for(fmt: str) -> str | None:
    """The Content-Type for a verified format, or None if it must not be shown inline."""
    known = _FORMATS.get(fmt.lower())
    return known[1] if known else None


def format_of_suffix(name: str) -> str:
    """The format whose suffix a server-chosen name ends with; "" for any other.

    Only for names the studio chose from a verified format (such as staged
    copies); never for a name an uploader could pick.
    """
    return _BY_SUFFIX.get(PurePosixPath(name).suffix.lower(), "")
