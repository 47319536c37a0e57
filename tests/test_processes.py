"""The studio as `make run` starts it (runstudio): oversized requests and stopping."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.oversized_request import MB, oversized_post
from tests.live import (
    LiveStudio,
    descendants,
    find_child,
    is_running,
)
from tests.media_factories import ASTRONAUT, make_wav

pytestmark = pytest.mark.cluster


@pytest.fixture
def runstudio(tmp_path: Path) -> Iterator[LiveStudio]:
    studio = LiveStudio(tmp_path / "studio", name="runstudio")
    try:
        studio.start_runstudio()
        yield studio
    finally:
        studio.stop()


def test_oversized_anonymous_post_is_refused_without_reading_it_into_memory(
    runstudio: LiveStudio,
) -> None:
    assert runstudio.server is not None
    web = find_child(runstudio.server.pid, "runserver")
    response, took, growth_kib = oversized_post(
        runstudio, web, size=300 * MB, path="/check/portrait/"
    )
    print(f"300 MB refused in {took:.1f} s; web RSS grew {growth_kib / 1024:.1f} MB")  # noqa: T201
    assert response.status_code == 413
    assert "That upload is 300 MB; the limit is 60 MB per request." in response.text
    assert growth_kib < 50 * 1024
    # The server still answers afterwards.
    runstudio.check_alive()


def test_sigterm_stops_every_process_runstudio_started_within_20_seconds(
    runstudio: LiveStudio, tmp_path: Path
) -> None:
    wav = make_wav(tmp_path / "long.wav", 60.0)
    queued = runstudio.generate(ASTRONAUT, wav, "--resolution", "720P")
    code = re.search(r"Queued (\S+)", queued.stdout)
    assert code, queued.stdout

    def rendering() -> bool:
        row = runstudio.job(code[1])
        return row["status"] == "running" and row["progress"] > 0

    runstudio.wait_for(rendering, timeout=90, interval=0.2, what="a render")
    assert runstudio.server is not None
    top = runstudio.server.pid
    tree = descendants(top)
    # runserver, the dispatcher, qcluster with its sentinel, pusher, monitor
    # and workers.
    assert len(tree) >= 6, tree

    started = time.monotonic()
    os.kill(top, signal.SIGTERM)
    runstudio.server.wait(timeout=30)
    while any(is_running(pid) for pid in tree) and time.monotonic() - started < 30:
        time.sleep(0.1)
    took = time.monotonic() - started
    print(f"runstudio and {len(tree)} descendants gone in {took:.1f} s")  # noqa: T201
    assert not [pid for pid in tree if is_running(pid)]
    assert took < 20

    # Nobody renders any more: the job's heartbeat stands still.
    beat = runstudio.job(code[1])["heartbeat_at"]
    time.sleep(2)
    assert runstudio.job(code[1])["heartbeat_at"] == beat
