from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from studio import catalog

# SIGTERM first; what is still running after this long gets SIGKILL, so the
# whole stop stays well inside 20 s even when a worker is mid-render.
GRACE_SECONDS = 8.0


class Command(BaseCommand):
    help = (
        "Run the web server, the django-q2 cluster and the dispatcher together "
        "(and the DashScope and WaveSpeed emulators when S2V_PROVIDERS has "
        "emulator or wavespeed-emulator); Ctrl-C stops all."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        manage = [sys.executable, "manage.py"]
        commands = emulator_commands(manage)
        commands += [
            [*manage, "qcluster"],
            [*manage, "dispatcher"],
            [*manage, "runserver", "--noreload", addrport],
        ]
        # Each child leads its own process group, so stopping one also reaches
        # what it forked (qcluster's sentinel and workers), and a Ctrl-C in the
        # terminal reaches only this process, which then stops them in order.
        procs = [subprocess.Popen(cmd, start_new_session=True) for cmd in commands]
        self.stdout.write(f"S2V Studio on http://{addrport}/ (Ctrl-C stops it)")
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if stopping:
                return
            stopping = True
            stop_groups(procs)

        def on_term(*_: object) -> None:
            stop()
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_term)
        # Ctrl-C must work even when this process was started with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            # If one process dies, stop the others: half a studio is worse than none.
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
            self.stderr.write("A studio process stopped; shutting down the others.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()


def emulator_commands(manage: list[str]) -> list[list[str]]:
    """The bundled emulators of the enabled providers (S2V_PROVIDERS), to start first.

    A few seconds per task, so the queue and the live status show.
    """
    enabled = catalog.enabled_names()
    commands = []
    if "emulator" in enabled:
        commands.append(
            [
                *manage,
                "dashscope_emulator",
                "--port",
                str(settings.S2V_EMULATOR_PORT),
                "--run-seconds-base",
                "4",
                "--quiet",
            ]
        )
    if "wavespeed-emulator" in enabled:
        # WaveSpeed's own pace: 1 s created, then at least 3 s processing.
        commands.append(
            [
                *manage,
                "wavespeed_emulator",
                "--port",
                str(settings.S2V_WAVESPEED_EMULATOR_PORT),
                "--quiet",
            ]
        )
    return commands


def stop_groups(
    procs: list[subprocess.Popen[bytes]], *, grace: float = GRACE_SECONDS
) -> None:
    """SIGTERM each child's process group, then SIGKILL whatever outlives `grace`."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    # The leader may have exited while its forked workers go on rendering: the
    # group gets SIGKILL either way. Its id cannot be reused while members live.
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
