from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from studio import services
from studio.queue import tick

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Keep remote providers busy: hand free account slots and due polls to the "
        "qcluster workers, and run the recovery sweep. Holds no worker; run one or "
        "more beside the qcluster processes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--interval", type=float, default=0.5, help="seconds between ticks"
        )
        parser.add_argument("--sweep-every", type=float, default=60.0)

    def handle(
        self, *args: Any, interval: float, sweep_every: float, **options: Any
    ) -> None:
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("Dispatcher running.")
        last_sweep = 0.0
        while not stopping:
            started = time.monotonic()
            try:
                close_old_connections()
                tick.tick()
                if started - last_sweep >= sweep_every:
                    last_sweep = started
                    services.jobs_sweep()
            except Exception:  # a bad tick must not end the loop
                log.exception("dispatcher tick failed")
            time.sleep(max(interval - (time.monotonic() - started), 0.05))
        self.stdout.write("Dispatcher stopped.")
