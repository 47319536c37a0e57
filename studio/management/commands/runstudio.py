from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the web server, the django-q2 cluster and the dispatcher together "
        "(and the DashScope emulator when S2V_PROVIDER=emulator); Ctrl-C stops all."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        manage = [sys.executable, "manage.py"]
        procs = []
        if settings.S2V_PROVIDER == "emulator":
            procs.append(
                subprocess.Popen(
                    # A few seconds per task, so the queue and the live status show.
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
            )
        procs += [
            subprocess.Popen([*manage, "qcluster"]),
            subprocess.Popen([*manage, "dispatcher"]),
            subprocess.Popen([*manage, "runserver", "--noreload", addrport]),
        ]
        self.stdout.write(f"S2V Studio on http://{addrport}/ (Ctrl-C stops it)")

        def stop(*_: object) -> None:
            # SIGTERM, not SIGINT: a process started in the background may
            # ignore SIGINT, and both runserver and qcluster stop cleanly on TERM.
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 15
            for proc in procs:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    proc.kill()

        def stop_and_exit(*_: object) -> None:
            stop()
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop_and_exit)
        # Ctrl-C must work even when this process was started with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            # If either process dies, stop the other: half a studio is worse than none.
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
            self.stderr.write("A studio process stopped; shutting down the other.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()
