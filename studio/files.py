"""Moving files between uploads, storage and the local paths providers read."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import default_storage

from . import scratch


def sha256_of(file: File[bytes]) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


@contextmanager
def local_path(file: File[bytes], *, suffix: str = "") -> Iterator[Path]:
    """A path on disk holding `file`'s bytes: the upload's own temp file if it has one."""
    temporary_path = getattr(file, "temporary_file_path", None)
    if temporary_path is not None:
        yield Path(temporary_path())
        return
    with scratch.named_file("s2v-upload", suffix=suffix) as tmp:
        file.seek(0)
        for chunk in file.chunks():
            tmp.write(chunk)
        tmp.flush()
        file.seek(0)
        yield Path(tmp.name)


@contextmanager
def stored_path(name: str) -> Iterator[Path]:
    """A local path for a file in default storage (copied down when storage is remote)."""
    try:
        path = default_storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None:
        yield Path(path)
        return
    with (
        scratch.named_file("s2v-input", suffix=Path(name).suffix) as tmp,
        default_storage.open(name, "rb") as src,
    ):
        shutil.copyfileobj(src, tmp, 1024 * 1024)
        tmp.flush()
        yield Path(tmp.name)
