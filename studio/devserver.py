"""runserver without reading a refused request body into memory.

Django's development server ends every request with `stdin.read()`, one call
for whatever the application left unread: a refused 2 GB upload becomes a
2 GB bytes object in the web process. This handler discards the rest in small
pieces instead, and past a few megabytes it closes the connection the way
nginx does (answer, half-close, discard for a bounded time, close), so the
client still reads the 413 rather than a connection reset.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from wsgiref import simple_server

from django.core.servers import basehttp

CHUNK = 256 * 1024
# Up to this much unread body is drained so the connection can be reused.
KEEP_ALIVE_DRAIN = 4 * 1024 * 1024
# Lingering close: discard for at most this long, giving up on an idle client.
LINGER_SECONDS = 30.0
LINGER_IDLE_SECONDS = 5.0


class BoundedServerHandler(basehttp.ServerHandler):
    # Set by wsgiref and Django at run time; their stubs do not declare them.
    headers: Any
    request_handler: Any

    def _unread(self) -> int:
        stdin: Any = self.get_stdin()  # Django's LimitedStream
        return max(int(stdin.limit) - int(stdin._pos), 0)

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        if self._unread() > KEEP_ALIVE_DRAIN:
            self.headers["Connection"] = "close"
            self.request_handler.close_connection = True

    def close(self) -> None:
        try:
            if self._unread() <= KEEP_ALIVE_DRAIN:
                self._discard(deadline=None)
            else:
                self._linger()
        finally:
            # Django's own close() would read() the rest in one piece.
            simple_server.ServerHandler.close(self)

    def _discard(self, *, deadline: float | None) -> None:
        stdin = self.get_stdin()
        while self._unread() and (deadline is None or time.monotonic() < deadline):
            if not stdin.read(CHUNK):
                break

    def _linger(self) -> None:
        self.request_handler.close_connection = True
        connection = self.request_handler.connection
        try:
            # The answer is complete: tell the client, then swallow what it is
            # still sending so closing does not reset the connection under it.
            connection.shutdown(socket.SHUT_WR)
            connection.settimeout(LINGER_IDLE_SECONDS)
            self._discard(deadline=time.monotonic() + LINGER_SECONDS)
        except OSError:
            pass


def install() -> None:
    """Make runserver (and the live-server test thread) use BoundedServerHandler."""
    # WSGIRequestHandler looks ServerHandler up in its module on every request;
    # studio's own runserver command cannot win over staticfiles' one.
    if basehttp.ServerHandler is not BoundedServerHandler:
        basehttp.ServerHandler = BoundedServerHandler  # type: ignore[misc]
