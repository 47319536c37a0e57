"""How well the dispatcher keeps a provider account's slots busy.

Runs a provider's emulator (DashScope's, one slot; WaveSpeed's, Bronze: three),
two qcluster processes and a dispatcher on a throwaway studio for each task
length given, queues several jobs at once and prints, from the emulator's own
records, for the tasks from the third on (the first two have too little
history to learn a run time from):
- the slot's idle gap after each task: from a task's end to the start of the
  task that took its slot (target: median <= 2 s), and
- task queries per task per 10 s of its run time, a task shorter than 10 s
  counting as 10 s since it needs at least the one query that sees it ended
  (target: <= 1).

    .venv/bin/python benchmarks/dispatch_benchmark.py [--jobs 6] [--task-seconds 6 60]
        [--provider emulator|wavespeed-emulator ...]   (default: both, in turn)

Polling uses the studio's real settings (15 s far from the expected end, 2 s
near it). A WaveSpeed task's run is `created` to `finished`: it is created
straight into `processing` here, which lasts the task seconds (or the render,
when that takes longer).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.emulators.dashscope.server import Emulator  # noqa: E402
from studio.emulators.wavespeed import WaveSpeedEmulator  # noqa: E402
from tests import media_factories  # noqa: E402
from tests.live import LiveStudio  # noqa: E402

ASTRONAUT = ROOT / "tests" / "fixtures" / "astronaut.png"


FROM_TASK = 3  # figures cover this task and the ones after it
PROVIDERS = ("emulator", "wavespeed-emulator")
# Slots per account: DashScope's wan2.2-s2v runs one task; WaveSpeed Bronze three.
SLOTS = {"emulator": 1, "wavespeed-emulator": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--task-seconds", type=float, nargs="+", default=[6.0, 60.0])
    parser.add_argument("--audio-seconds", type=float, default=8.0)
    parser.add_argument(
        "--provider",
        action="append",
        choices=PROVIDERS,
        help="repeatable; default: emulator, then wavespeed-emulator",
    )
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="WaveSpeed: run the web server with S2V_PUBLIC_BASE_URL set, so that "
        "each task's callback asks for its poll",
    )
    args = parser.parse_args()
    providers = args.provider or list(PROVIDERS)
    for provider in providers:
        if args.jobs < max(FROM_TASK, SLOTS[provider]) + 1:
            parser.error(
                f"--jobs must be at least {max(FROM_TASK, SLOTS[provider]) + 1} "
                f"for {provider}"
            )
    for provider in providers:
        for seconds in args.task_seconds:
            run(
                provider=provider,
                jobs=args.jobs,
                task_seconds=seconds,
                audio_seconds=args.audio_seconds,
                webhooks=args.webhooks and provider == "wavespeed-emulator",
            )


class Account:
    """One emulator and what the benchmark reads from it, per provider."""

    def __init__(self, provider: str, task_seconds: float) -> None:
        self.provider = provider
        self.emulator: Any
        if provider == "emulator":
            self.emulator = Emulator(run_seconds_base=task_seconds, quiet=True)
        else:
            # Bronze's three slots, without its five-a-minute cap: that cap is
            # the account's, and would measure the tier instead of the queue.
            self.emulator = WaveSpeedEmulator(
                created_seconds=0.0,
                processing_seconds=task_seconds,
                api_keys=["ws-emulator:3/600"],
                quiet=True,
            )

    def env(self) -> dict[str, str]:
        port = str(self.emulator.port)
        if self.provider == "emulator":
            return {"S2V_PROVIDER": "emulator", "S2V_EMULATOR_PORT": port}
        return {
            "S2V_PROVIDER": "wavespeed-emulator",
            "S2V_PROVIDERS": "wavespeed-emulator",
            "S2V_WAVESPEED_EMULATOR_PORT": port,
        }

    def tasks(self) -> list[dict[str, Any]]:
        """Every task as {start, end, queries}; end None while unfinished."""
        if self.provider == "emulator":
            return [
                {
                    "start": t.get("start_time"),
                    "end": t.get("end_time"),
                    "queries": t["queries"],
                }
                for t in self.emulator.account_state()["tasks"]
            ]
        return [
            {"start": p["created"], "end": p["finished"], "queries": p["queries"]}
            for p in self.emulator.state()["predictions"]
        ]


def run(
    *,
    provider: str,
    jobs: int,
    task_seconds: float,
    audio_seconds: float,
    webhooks: bool = False,
) -> None:
    slots = SLOTS[provider]
    with tempfile.TemporaryDirectory(prefix="s2v-dispatch-bench-") as tmp:
        audio = media_factories.make_wav(Path(tmp) / "voice.wav", audio_seconds)
        account = Account(provider, task_seconds)
        with account.emulator:
            studio = LiveStudio(Path(tmp) / "studio", env=account.env())
            if webhooks:
                studio.env["S2V_PUBLIC_BASE_URL"] = studio.url
            try:
                studio.prepare()
                if webhooks:
                    studio.start_server()
                # Every job is queued (a few seconds each) before anything runs,
                # so that from the first task on a slot that frees has a job to take.
                for _ in range(jobs):
                    studio.generate(ASTRONAUT, audio)
                started = time.monotonic()
                studio.spawn("qcluster-a", "qcluster")
                studio.spawn("qcluster-b", "qcluster")
                studio.spawn("dispatcher", "dispatcher")

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
            every = account.tasks()

    tasks = sorted(
        (t for t in every if t["start"] and t["end"]), key=lambda t: t["start"]
    )
    print(
        f"== {provider}{' with webhooks' if webhooks else ''}, {slots} slot(s), "
        f"tasks of {task_seconds:g} s: {jobs} jobs, "
        f"{len(every)} tasks at the provider, most running at once: "
        f"{most_at_once(tasks)}, wall time {wall:.1f} s"
    )
    origin = tasks[0]["start"] if tasks else 0.0
    print(
        "tasks (start, run, queries): "
        + ", ".join(
            f"{t['start'] - origin:.1f}+{t['end'] - t['start']:.1f} s/{t['queries']}"
            for t in tasks
        )
    )
    later = tasks[FROM_TASK - 1 :]
    gaps = slot_gaps(tasks, slots, first=max(FROM_TASK, slots))
    if gaps:
        print(
            f"idle gap after each task from task {FROM_TASK} on: median "
            f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s  "
            f"(all tasks: median "
            f"{statistics.median(slot_gaps(tasks, slots, first=slots) or [0.0]):.2f} s)"
            "  target: median <= 2 s"
        )
    if later:
        per_10s = [
            t["queries"] / (max(t["end"] - t["start"], 10.0) / 10) for t in later
        ]
        queries = sum(t["queries"] for t in later)
        run_time = sum(t["end"] - t["start"] for t in later)
        print(
            f"task queries from task {FROM_TASK} on: {queries} for {len(later)} tasks "
            f"({queries / len(later):.1f} per task, {run_time / len(later):.1f} s run "
            f"each) = median {statistics.median(per_10s):.2f}, max "
            f"{max(per_10s):.2f} per task per 10 s  target: <= 1"
        )


def slot_gaps(tasks: list[dict[str, Any]], slots: int, *, first: int) -> list[float]:
    """How long a slot stood idle before each task from index `first` on.

    While jobs wait, the task started i-th (0-based, i >= slots) takes the slot
    the (i - slots)-th task to end freed; with one slot this is the time from
    each task's end to the next one's start.
    """
    ends = sorted(t["end"] for t in tasks)
    return [
        tasks[i]["start"] - ends[i - slots]
        for i in range(max(first, slots), len(tasks))
    ]


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    events = sorted([(t["start"], 1) for t in tasks] + [(t["end"], -1) for t in tasks])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


if __name__ == "__main__":
    main()
