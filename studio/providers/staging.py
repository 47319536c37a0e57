"""How local inputs reach a remote provider: its own upload, or a link to our copy.

Shared by every remote provider (DashScope, WaveSpeed). Three ways:

* **upload**: the provider's own upload API. An upload of the same bytes to
  the same account is reused while it stays valid (`RemoteUpload`, keyed by
  account fingerprint, the provider's upload scope and the SHA-256).
* **storage**: a presigned URL of the copy in the studio's storage.
* **public**: a signed link to the studio itself (`studio:public-input`).

Names of staged copies come from the verified format, never an uploader's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from studio.formats import content_type_for, format_of_suffix, suffix_for

from .base import InputFile

PUBLIC_LINK_SALT = "studio.public-input"
PUBLIC_LINK_MAX_AGE = 48 * 3600


def account_fingerprint(api_key: str) -> str:
    """What uploads are keyed by: a fingerprint of the key, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def uploaded(
    item: InputFile,
    *,
    account: str,
    scope: str,
    valid_for: timedelta,
    margin: timedelta,
    upload: Callable[[], str],
) -> str:
    """The provider's URL for an input: a still-valid earlier upload, else `upload()`.

    `scope` is what an upload is bound to besides the account (DashScope: the
    model; WaveSpeed: nothing, so one name for all). An earlier upload is
    reused only while it has `margin` left: a task may start late. `upload`
    raises the provider's own errors; nothing is recorded then.
    """
    from studio.models import RemoteUpload

    now = timezone.now()
    known = RemoteUpload.objects.filter(
        account=account,
        model=scope,
        sha256=item.sha256,
        expires_at__gt=now + margin,
    ).first()
    if known is not None:
        return known.url
    url = upload()
    RemoteUpload.objects.create(
        account=account,
        model=scope,
        sha256=item.sha256,
        url=url,
        expires_at=now + valid_for,
    )
    return url


def linked_url(item: InputFile, *, mode: str) -> str:
    """A link the provider can fetch: presigned storage ("storage") or signed app link."""
    name = item.storage_name or stage(item)
    if mode == "storage":
        return default_storage.url(name)
    token = signing.dumps(name, salt=PUBLIC_LINK_SALT)
    return settings.S2V_PUBLIC_BASE_URL + reverse("studio:public-input", args=[token])


def stage(item: InputFile) -> str:
    """Put an unstored input into storage so that a link can point at it."""
    # The suffix is the studio's, so public_input can serve the copy by it.
    name = f"staging/{item.sha256}{suffix(item)}"
    if not default_storage.exists(name):
        with item.path.open("rb") as fh:
            name = default_storage.save(name, File(fh))
    return name


def input_format(item: InputFile) -> str:
    """What the input verifiably is ("" when unknown), never from an uploader's name."""
    return item.format or format_of_suffix(item.storage_name or item.path.name)


def suffix(item: InputFile) -> str:
    """A suffix from what the input verifiably is, never from an uploader's name."""
    fmt = input_format(item)
    return suffix_for(fmt) if fmt else ""


def upload_name(item: InputFile) -> str:
    """The name an upload goes by: the content's hash and its verified suffix."""
    return f"{item.sha256[:32]}{suffix(item)}"


def content_type(item: InputFile) -> str:
    fmt = input_format(item)
    return (content_type_for(fmt) if fmt else None) or "application/octet-stream"
