"""Test settings: the embedded default with a throwaway data dir and fast hashing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .settings import *  # noqa: F403
from .settings import STORAGES

_TMP = Path(tempfile.mkdtemp(prefix="s2v-test-"))
MEDIA_ROOT = _TMP / "media"
STORAGES = {
    **STORAGES,
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
