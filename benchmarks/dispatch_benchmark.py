"""How well the dispatcher keeps a one-slot provider account busy.

Runs the DashScope emulator, two qcluster processes and a dispatcher on a
throwaway studio, queues several jobs at once and prints, from the
emulator's own records:
- the slot's idle gap between consecutive tasks (target: median <= 2 s), and
- task queries per task per 10 s of task time (target: <= 1).

    .venv/bin/python benchmarks/dispatch_benchmark.py [--jobs 5] [--task-seconds 45]

Polling uses the studio's real settings (15 s far from the expected end, 2 s
near it); the first task has no history to learn from, so the figures are
given for all tasks and for the tasks after the first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.emulator.server import Emulator  # noqa: E402
from tests import media_factories  # noqa: E402
from tests.live import LiveStudio  # noqa: E402

ASTRONAUT = ROOT / "tests" / "fixtures" / "astronaut.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--task-seconds", type=float, default=45.0)
    parser.add_argument("--audio-seconds", type=float, default=8.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2v-dispatch-bench-") as tmp:
        audio = media_factories.make_wav(Path(tmp) / "voice.wav", args.audio_seconds)
        with Emulator(run_seconds_base=args.task_seconds, quiet=True) as emu:
            studio = LiveStudio(
                Path(tmp) / "studio",
                env={"S2V_PROVIDER": "emulator", "S2V_EMULATOR_PORT": str(emu.port)},
            )
            try:
                studio.prepare()
                studio.spawn("qcluster-a", "qcluster")
                studio.spawn("qcluster-b", "qcluster")
                studio.spawn("dispatcher", "dispatcher")
                started = time.monotonic()
                for _ in range(args.jobs):
                    studio.generate(ASTRONAUT, audio)

                def done() -> bool:
                    rows = studio.query("SELECT status FROM studio_generationjob")
                    return len(rows) == args.jobs and all(
                        r["status"] in ("succeeded", "failed") for r in rows
                    )

                studio.wait_for(
                    done,
                    timeout=args.jobs * (args.task_seconds + 60) + 120,
                    what="every job to finish",
                    interval=1.0,
                )
                wall = time.monotonic() - started
            finally:
                studio.stop()
            account = emu.account_state()

    tasks = account["tasks"]
    gaps = [start - end for end, start in account["idle_gaps"]]
    queries = account["counts"].get("task_queries", 0)
    run_time = sum(
        (t["end_time"] or 0) - (t["start_time"] or 0)
        for t in tasks
        if t.get("end_time")
    )
    print(
        f"jobs: {args.jobs}, tasks at the provider: {len(tasks)}, "
        f"most running at once: {account['max_running']}"
    )
    print(f"wall time: {wall:.1f} s for {args.jobs} tasks of ~{args.task_seconds:g} s")
    if gaps:
        later = gaps[1:] or gaps
        print(
            f"idle gap between tasks: median {statistics.median(gaps):.2f} s, "
            f"max {max(gaps):.2f} s (after the first task: median "
            f"{statistics.median(later):.2f} s)  target: median <= 2 s"
        )
    if run_time:
        print(
            f"task queries: {queries} over {run_time:.0f} s of task time = "
            f"{queries / (run_time / 10):.2f} per task per 10 s  target: <= 1"
        )


if __name__ == "__main__":
    main()
