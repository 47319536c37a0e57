"""kill -9 of the task-queue cluster while the provider is making a task.

The one real kill of this suite's lost-submit tests (test_lost_submits.py raises
at each moment instead): the emulator answers the submit slower than the
worker lives, so the task is made after the worker died, with its id lost.
"""

from __future__ import annotations

import time

import pytest

from studio.emulators.dashscope.server import Emulator
from tests import media_factories
from tests.conftest import ASTRONAUT
from tests.live import LiveStudio

pytestmark = pytest.mark.cluster

# The minute sweep, run as if 3 minutes had passed since the crash.
SWEEP_LATER = (
    "from datetime import timedelta; from django.utils import timezone; "
    "from studio.queue import recovery; "
    "print(recovery.sweep_remote(now=timezone.now() + timedelta(minutes=3)))"
)


def test_a_cluster_killed_mid_submit_adopts_the_task_instead_of_paying_twice(tmp_path):
    audio = media_factories.make_wav(tmp_path / "voice.wav", 1.0)
    with Emulator(run_seconds_base=0.5, quiet=True) as emu:
        emu.faults(kind="slow", route="submit", delay_ms=6000, count=1)
        studio = LiveStudio(
            tmp_path / "studio",
            env={
                "S2V_PROVIDER": "emulator",
                "S2V_EMULATOR_PORT": str(emu.port),
                "S2V_POLL_INTERVAL": "1",
                "S2V_POLL_FAST_INTERVAL": "0.5",
            },
        )
        try:
            studio.prepare()
            studio.start_worker()
            studio.spawn("dispatcher", "dispatcher", "--interval", "0.3")
            studio.generate(ASTRONAUT, audio)

            def sending() -> bool:
                rows = studio.query(
                    "SELECT status, heartbeat_at, submit_started_at "
                    "FROM studio_generationjob"
                )
                return (
                    bool(rows)
                    and rows[0]["heartbeat_at"] != rows[0]["submit_started_at"]
                )

            studio.wait_for(sending, timeout=60, interval=0.1, what="the send to begin")
            time.sleep(2.0)  # inputs uploaded; the submit waits for its answer
            studio.kill_worker()
            studio.wait_for(
                lambda: len(emu.account_state()["tasks"]) == 1,
                timeout=30,
                what="the provider to make the task",
            )
            [row] = studio.query(
                "SELECT status, remote_task_id, recovery FROM studio_generationjob"
            )
            assert (row["status"], row["remote_task_id"]) == ("submitted", "")

            studio.start_worker()
            time.sleep(2.0)  # a redelivered submit, if any, would send now
            assert len(emu.account_state()["tasks"]) == 1
            swept = studio.manage("shell", "-c", SWEEP_LATER)
            assert swept.stdout.strip().endswith("[1]"), swept.stdout + swept.stderr

            def done() -> bool:
                rows = studio.query("SELECT status FROM studio_generationjob")
                return rows[0]["status"] == "succeeded"

            studio.wait_for(done, timeout=30, what="the adopted task to be saved")
        finally:
            studio.stop()
        tasks = emu.account_state()["tasks"]

    [row] = studio.query("SELECT remote_task_id, recovery FROM studio_generationjob")
    assert [t["id"] for t in tasks] == [row["remote_task_id"]]  # one task, paid once
    assert row["recovery"] == ""
    [charge] = studio.query(
        "SELECT seconds FROM studio_ledgerentry WHERE kind = 'generation'"
    )
    assert float(charge["seconds"]) == pytest.approx(
        round(tasks[0]["video_duration"], 2), abs=0.005
    )
