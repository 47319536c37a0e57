"""Test settings: the configured back-ends with a throwaway media dir and fast hashing.

With no S2V_* set that is the embedded default; `make test` runs the suite a
second time with S2V_DATABASE_URL, S2V_REDIS_URL and S2V_S3_* set (tests/infra.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The test client and the live studios talk plain HTTP on loopback: a database
# URL must not switch on HTTPS redirects and secure cookies here.
os.environ.setdefault("S2V_PRODUCTION", "false")

from .settings import *  # noqa: F403
from .settings import STORAGES

_TMP = Path(tempfile.mkdtemp(prefix="s2v-test-"))
MEDIA_ROOT = _TMP / "media"
S2V_SCRATCH_DIR = _TMP / "scratch"
if STORAGES["default"]["BACKEND"].endswith("FileSystemStorage"):
    STORAGES = {
        **STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": MEDIA_ROOT},
        },
    }
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
