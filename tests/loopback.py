"""Loopback HTTP servers for tests: files to fetch, and a webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(handler: Any) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Hook:
    """A webhook receiver: records every POST, answers `fail` 500s first."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = 0
        self.cond = threading.Condition()
        self.url = ""

    def wait(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= count, timeout)
            assert len(self.received) >= count, self.received
            return list(self.received)


def receive_hooks() -> Iterator[Hook]:
    """A `Hook` listening on loopback until the generator is closed."""
    state = Hook()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.cond:
                failing = state.fail > 0
                state.fail -= 1 if failing else 0
                state.received.append(
                    {
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "raw": raw,
                        "at": time.monotonic(),
                        "path": self.path,
                        "answered": 500 if failing else 200,
                    }
                )
                state.cond.notify_all()
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server, url = serve(Receiver)
    state.url = url + "/hooks/wavespeed"
    yield state
    server.shutdown()
    server.server_close()
