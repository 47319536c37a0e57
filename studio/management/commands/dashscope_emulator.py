"""`manage.py dashscope_emulator`: serve the DashScope emulator until Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from studio.emulators.dashscope.faults import parse_flag
from studio.emulators.dashscope.server import Emulator


class Command(BaseCommand):
    help = (
        "Serve a local emulator of DashScope's wan2.2-s2v, wan2.2-s2v-detect and "
        "temporary-upload APIs on loopback (see studio/emulator/server.py)."
    )
    requires_system_checks: list[str] = []  # no database or apps involved

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--time-scale",
            type=float,
            default=1.0,
            help="divide every DashScope period (24 h, 48 h, 300 s) by this",
        )
        parser.add_argument(
            "--api-key",
            action="append",
            dest="api_keys",
            metavar="KEY[:ACCOUNT[:REGION]]",
            help="repeatable; default sk-emulator:acct-1:cn-beijing",
        )
        parser.add_argument(
            "--region", default="cn-beijing", choices=["cn-beijing", "ap-southeast-1"]
        )
        parser.add_argument("--overflow", default="queue", choices=["queue", "reject"])
        parser.add_argument("--overflow-code", default="Throttling.RateQuota")
        parser.add_argument(
            "--overflow-message",
            default="Requests rate limit exceeded, please try again later.",
        )
        parser.add_argument("--overflow-status", type=int, default=429)
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument(
            "--pending-seconds",
            type=float,
            default=0.0,
            help="least time each task stays PENDING before it may start",
        )
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.add_argument("--run-seconds-base", type=float, default=0.5)
        parser.add_argument("--run-seconds-per-audio-second", type=float, default=0.0)
        parser.add_argument(
            "--input-errors", default="async", choices=["sync", "async"]
        )
        parser.add_argument(
            "--usage-field",
            default="duration",
            choices=["duration", "video_duration", "both"],
        )
        for name, default in (
            ("submit-rps", 5.0),
            ("query-qps", 20.0),
            ("detect-rps", 5.0),
            ("policy-qps", 100.0),
        ):
            parser.add_argument(
                f"--{name}", type=float, default=default, help="0 turns it off"
            )
        for name in ("task", "result", "upload", "policy"):
            parser.add_argument(
                f"--{name}-ttl",
                type=float,
                default=None,
                help=f"real seconds the {name} period lasts (overrides --time-scale)",
            )
        parser.add_argument("--max-file-size-mb", type=float, default=100.0)
        parser.add_argument(
            "--fault",
            action="append",
            dest="faults",
            default=[],
            metavar="SPEC",
            help="KIND[:COUNT[:ROUTE]][,key=value...] or JSON, e.g. throttle:3",
        )
        parser.add_argument("--quiet", action="store_true", help="no request log")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            fault_specs = [parse_flag(text) for text in opts["faults"]]
            emulator = Emulator(
                host=opts["host"],
                port=opts["port"],
                time_scale=opts["time_scale"],
                api_keys=opts["api_keys"] or None,
                region=opts["region"],
                overflow=opts["overflow"],
                overflow_code=opts["overflow_code"],
                overflow_message=opts["overflow_message"],
                overflow_status=opts["overflow_status"],
                concurrency=opts["concurrency"],
                pending_seconds=opts["pending_seconds"],
                data_dir=opts["data_dir"],
                run_seconds_base=opts["run_seconds_base"],
                run_seconds_per_audio_second=opts["run_seconds_per_audio_second"],
                input_errors=opts["input_errors"],
                usage_field=opts["usage_field"],
                submit_rps=opts["submit_rps"],
                query_qps=opts["query_qps"],
                detect_rps=opts["detect_rps"],
                policy_qps=opts["policy_qps"],
                task_ttl=opts["task_ttl"],
                result_ttl=opts["result_ttl"],
                upload_ttl=opts["upload_ttl"],
                policy_ttl=opts["policy_ttl"],
                max_file_size_mb=opts["max_file_size_mb"],
                quiet=opts["quiet"],
                faults=fault_specs,
            )
            emulator.start()
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc

        keys = ", ".join(
            f"{k.key} ({k.account}, {k.region})" for k in emulator.api_keys
        )
        self.stdout.write(f"DashScope emulator at {emulator.base_url}")
        self.stdout.write(f"  also under {emulator.qwen_base_url}")
        self.stdout.write(f"  control API {emulator.url}/_emulator/state")
        self.stdout.write(f"  API keys: {keys}")
        self.stdout.write("Quit with Ctrl-C.")
        done = threading.Event()
        # SIGTERM (e.g. from a process manager) stops as cleanly as Ctrl-C.
        with contextlib.suppress(ValueError):  # only the main thread may do this
            signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
            self.stdout.write("Emulator stopped.")
