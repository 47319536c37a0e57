"""How well the dispatcher keeps a one-slot provider account busy.

Runs the DashScope emulator, two qcluster processes and a dispatcher on a
throwaway studio for each task length given, queues several jobs at once and
prints, from the emulator's own records, for the tasks from the third on (the
first two have too little history to learn a run time from):
- the slot's idle gap after each task (target: median <= 2 s), and
- task queries per task per 10 s of its run time, a task shorter than 10 s
  counting as 10 s since it needs at least the one query that sees it ended
  (target: <= 1).

    .venv/bin/python benchmarks/dispatch_benchmark.py [--jobs 6] [--task-seconds 6 60]

Polling uses the studio's real settings (15 s far from the expected end, 2 s
near it).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.emulators.dashscope.server import Emulator  # noqa: E402
from tests import media_factories  # noqa: E402
from tests.live import LiveStudio  # noqa: E402

ASTRONAUT = ROOT / "tests" / "fixtures" / "astronaut.png"


FROM_TASK = 3  # figures cover this task and the ones after it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--task-seconds", type=float, nargs="+", default=[6.0, 60.0])
    parser.add_argument("--audio-seconds", type=float, default=8.0)
    args = parser.parse_args()
    if args.jobs < FROM_TASK + 1:
        parser.error(f"--jobs must be at least {FROM_TASK + 1}")
    for seconds in args.task_seconds:
        run(jobs=args.jobs, task_seconds=seconds, audio_seconds=args.audio_seconds)


def run(*, jobs: int, task_seconds: float, audio_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="s2v-dispatch-bench-") as tmp:
        audio = media_factories.make_wav(Path(tmp) / "voice.wav", audio_seconds)
        with Emulator(run_seconds_base=task_seconds, quiet=True) as emu:
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
                for _ in range(jobs):
                    studio.generate(ASTRONAUT, audio)

                def done() -> bool:
                    rows = studio.query("SELECT status FROM studio_generationjob")
                    return len(rows) == jobs and all(
                        r["status"] in ("succeeded", "failed") for r in rows
                    )

                studio.wait_for(
                    done,
                    timeout=jobs * (task_seconds + 60) + 120,
                    what="every job to finish",
                    interval=1.0,
                )
                wall = time.monotonic() - started
            finally:
                studio.stop()
            account = emu.account_state()

    tasks = sorted(
        (t for t in account["tasks"] if t.get("start_time") and t.get("end_time")),
        key=lambda t: t["start_time"],
    )
    print(
        f"== tasks of {task_seconds:g} s: {jobs} jobs, {len(account['tasks'])} tasks "
        f"at the provider, most running at once: {account['max_running']}, "
        f"wall time {wall:.1f} s"
    )
    later = tasks[FROM_TASK - 1 :]
    gaps = all_gaps(tasks[FROM_TASK - 1 :])
    if gaps:
        print(
            f"idle gap after each task from task {FROM_TASK} on: median "
            f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s  "
            f"(all tasks: median {statistics.median(all_gaps(tasks) or [0.0]):.2f} s)  "
            "target: median <= 2 s"
        )
    if later:
        per_10s = [
            t["queries"] / (max(t["end_time"] - t["start_time"], 10.0) / 10)
            for t in later
        ]
        queries = sum(t["queries"] for t in later)
        run_time = sum(t["end_time"] - t["start_time"] for t in later)
        print(
            f"task queries from task {FROM_TASK} on: {queries} for {len(later)} tasks "
            f"({queries / len(later):.1f} per task, {run_time / len(later):.1f} s run "
            f"each) = median {statistics.median(per_10s):.2f}, max "
            f"{max(per_10s):.2f} per task per 10 s  target: <= 1"
        )


def all_gaps(tasks: list[dict[str, float]]) -> list[float]:
    return [b["start_time"] - a["end_time"] for a, b in itertools.pairwise(tasks)]


if __name__ == "__main__":
    main()
