"""Several worker processes and dispatchers share one provider account safely."""

from __future__ import annotations

import statistics

import pytest

from studio.emulators.dashscope.server import Emulator
from tests import media_factories
from tests.conftest import ASTRONAUT
from tests.live import LiveStudio

pytestmark = pytest.mark.cluster

JOBS = 6


def test_one_task_in_flight_and_the_slot_never_idles_while_jobs_wait(tmp_path):
    audio = media_factories.make_wav(tmp_path / "voice.wav", 2.0)
    with Emulator(run_seconds_base=1.5, quiet=True) as emu:
        studio = LiveStudio(
            tmp_path / "studio",
            env={
                "S2V_PROVIDER": "emulator",
                "S2V_EMULATOR_PORT": str(emu.port),
                # Pacing is the benchmark's business; this test is about the slot.
                "S2V_POLL_INTERVAL": "2",
                "S2V_POLL_FAST_INTERVAL": "0.5",
                "S2V_Q_WORKERS": "2",
            },
        )
        try:
            studio.prepare()
            # Two machines' worth of processes, all racing for one slot.
            for label in ("qcluster-a", "qcluster-b"):
                studio.spawn(label, "qcluster")
            for label in ("dispatcher-a", "dispatcher-b"):
                studio.spawn(label, "dispatcher", "--interval", "0.3")
            for _ in range(JOBS):
                studio.generate(ASTRONAUT, audio)

            def all_done() -> bool:
                rows = studio.query("SELECT status FROM studio_generationjob")
                return len(rows) == JOBS and all(
                    r["status"] == "succeeded" for r in rows
                )

            studio.wait_for(all_done, timeout=180, what="every job to succeed")
        except BaseException:
            raise
        finally:
            studio.stop()
        account = emu.account_state()

    tasks = account["tasks"]
    assert len(tasks) == JOBS  # exactly one remote task per job
    assert account["max_running"] == 1
    rows = studio.query("SELECT remote_task_id FROM studio_generationjob")
    assert sorted(r["remote_task_id"] for r in rows) == sorted(t["id"] for t in tasks)
    gaps = [end_start[1] - end_start[0] for end_start in account["idle_gaps"]]
    assert len(gaps) == JOBS - 1
    # Jobs were waiting the whole time: the slot may only idle for a poll's lag.
    assert statistics.median(gaps) < 3.0, gaps
    assert max(gaps) < 10.0, gaps
