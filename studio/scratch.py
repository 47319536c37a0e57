"""Scratch folders and files for renders and conversions, under one studio-owned root.

Every name carries the id of the process that made it, so a process killed
mid-render leaves something that can be recognised as stale and removed:
`clean_stale()` runs when a cluster starts and when a job is started again.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings

_OWNER = re.compile(r"-p(\d+)-")


def root() -> Path:
    path = Path(settings.S2V_SCRATCH_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_dir(prefix: str) -> Path:
    """A new folder for this process; the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-p{os.getpid()}-", dir=root()))


@contextmanager
def folder(prefix: str) -> Iterator[Path]:
    path = make_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def named_file(prefix: str, *, suffix: str = "") -> IO[Any]:
    """A NamedTemporaryFile under the scratch root, removed when closed."""
    return tempfile.NamedTemporaryFile(
        prefix=f"{prefix}-p{os.getpid()}-", suffix=suffix, dir=root()
    )


def clean_stale() -> list[str]:
    """Remove what processes that no longer run left behind. Returns the names."""
    removed = []
    for entry in root().iterdir():
        match = _OWNER.search(entry.name)
        if match is None or process_alive(int(match[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs (a zombie has finished)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # The state follows the command name, which may itself hold ")".
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
