"""What the provider emulators share: loopback rules, fetching, rendering, HTTP plumbing.

Every emulator listens on loopback only and fetches only loopback URLs (tests
never leave the machine); each renders real MP4s with the studio's renderer;
each serves plain HTTP/1.1 from a `ThreadingHTTPServer`. The vendor-specific
parts (routes, error bodies, state) stay in the emulator's own package.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from studio.emulators.fault_queue import F, FaultQueue, FaultStore
from studio.media.render import RenderInfo, render_video

# `images.check_face` shares cached OpenCV cascades between threads, and
# CascadeClassifier.detectMultiScale crashes the process (SIGSEGV) when two
# threads use one classifier at once. Every face check in every emulator (two
# may run in one test process) holds this lock.
FACE_LOCK = threading.Lock()

# Bigger downloads are cut off: no valid input comes near this.
MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024
MAX_REDIRECTS = 5
# Unread request bodies up to this size are drained to keep the connection.
DRAIN_LIMIT = 1024 * 1024


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_url(url: str) -> bool:
    """An absolute http(s) URL on a loopback host: the only kind an emulator fetches."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback(host)


# Fetching inputs


class FetchError(Exception):
    """A loopback download failed; `reason` says how, for the vendor's error code.

    Reasons: `not_loopback` (a redirect left loopback), `status` (not 200),
    `redirects` (too many), `too_big`, `refused`, `timeout`, `other`.
    """

    def __init__(self, reason: str, url: str, status: int = 0) -> None:
        super().__init__(f"{reason}: {url}")
        self.reason = reason
        self.url = url
        self.status = status


def fetch(
    url: str,
    folder: Path,
    *,
    timeout: float,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """GET a loopback URL into a new file under `folder`; raise FetchError on failure."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / uuid.uuid4().hex
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        if not is_loopback(urlsplit(url).hostname or ""):
                            raise FetchError("not_loopback", url)
                        continue
                    if response.status_code != 200:
                        raise FetchError("status", url, response.status_code)
                    written = 0
                    with dest.open("wb") as fh:
                        for chunk in response.iter_bytes(1 << 16):
                            written += len(chunk)
                            if written > max_bytes:
                                raise FetchError("too_big", url)
                            fh.write(chunk)
                    return dest
            raise FetchError("redirects", url)
    except FetchError:
        discard(dest)
        raise
    except httpx.ConnectError:
        discard(dest)
        raise FetchError("refused", url) from None
    except httpx.TimeoutException:
        discard(dest)
        raise FetchError("timeout", url) from None
    except (httpx.HTTPError, OSError):
        discard(dest)
        raise FetchError("other", url) from None


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def render(
    *,
    portrait: Path,
    audio: Path,
    resolution: str,
    face_box: tuple[int, int, int, int] | None,
    out: Path,
    size: tuple[int, int] | None = None,
) -> RenderInfo:
    """A real talking-portrait MP4 (and its JPEG poster next to it), at
    `resolution`'s area or at a fixed `size`.

    Without a face box `render_video` runs the face check itself, which must
    hold FACE_LOCK. Raises `studio.media.images.InputError` for unreadable inputs.
    """
    guard = FACE_LOCK if face_box is None else contextlib.nullcontext()
    with guard:
        return render_video(
            portrait=portrait,
            audio=audio,
            resolution=resolution,
            face_box=face_box,
            out=out,
            poster=out.with_suffix(".jpg"),
            size=size,
        )


# HTTP plumbing


class BodyTooLarge(Exception):
    pass


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None
    file_range: tuple[int, int] | None = None  # first and last byte, inclusive
    code: str = ""  # error code, for the log line
    drop: bool = False
    close: bool = False


class Request:
    """One parsed request; the body is read on demand."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.path = split.path
        self.query = {k: v[0] for k, v in parse_qs(split.query).items()}
        self.headers = handler.headers
        self.client = handler.client_address[0]
        self.request_id = ""  # set by the handler before it dispatches
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        return (self.headers.get(name) or "").strip()

    def flag(self, name: str) -> bool:
        """True when header `name` says `enable` (DashScope's switch value)."""
        return self.header(name).lower() == "enable"

    @property
    def chunked(self) -> bool:
        return "chunked" in self.header("Transfer-Encoding").lower()

    @property
    def length(self) -> int:
        try:
            return max(0, int(self.header("Content-Length") or 0))
        except ValueError:
            return 0

    @property
    def body_read(self) -> bool:
        return self._body is not None

    def body(self, limit: int) -> bytes:
        if self._body is not None:
            return self._body
        rfile = self.handler.rfile
        if self.chunked:
            data = bytearray()
            while True:
                size = int(rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                if len(data) + size > limit:
                    raise BodyTooLarge
                data += rfile.read(size)
                rfile.readline(1024)
            self._body = bytes(data)
        else:
            if self.length > limit:
                raise BodyTooLarge
            self._body = rfile.read(self.length) if self.length else b""
        return self._body


class App(Protocol):
    """What a LoopbackServer serves: the emulator's routing and error shapes."""

    def dispatch(self, req: Any, request_id: str) -> Response: ...

    def body_too_large(self, request_id: str) -> Response: ...

    def crashed(self, req: Any, exc: Exception, request_id: str) -> Response:
        """Log `exc` in the emulator's voice and answer the vendor's 500."""
        ...

    def log_request(self, req: Any, response: Response, started: float) -> None: ...


class Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the app for a Response, writes it (or hangs up)."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    # Headers and body go out in separate writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK, adding ~40 ms per request.
    disable_nagle_algorithm = True
    request_class: ClassVar[type[Request]] = Request
    server: LoopbackServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the app logs one line per request itself

    def version_string(self) -> str:
        return f"{self.server.software} {self.sys_version}"

    def _serve(self) -> None:
        app = self.server.app
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        req = self.request_class(self)
        req.request_id = request_id
        try:
            response = app.dispatch(req, request_id)
        except BodyTooLarge:
            response = app.body_too_large(request_id)
            response.close = True
        except Exception as exc:  # one bad request must never kill the server
            response = app.crashed(req, exc, request_id)
            traceback.print_exc(file=sys.stderr)
        app.log_request(req, response, started)
        if response.drop:
            self.close_connection = True
            return
        if not req.body_read and (req.chunked or req.length > DRAIN_LIMIT):
            response.close = True
        elif not req.body_read and req.length:
            self.rfile.read(req.length)
        if response.close or self.server.stopping:
            self.close_connection = True
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        length = len(response.body)
        if response.file is not None and response.file_range is not None:
            length = response.file_range[1] - response.file_range[0] + 1
        self.send_header("Content-Length", str(max(0, length)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.file is not None and response.file_range is not None:
            start, end = response.file_range
            with response.file.open("rb") as fh:
                fh.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    chunk = fh.read(min(1 << 16, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(response.body)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        family: int,
        handler: type[Handler] = Handler,
        software: str = "emulator/1.0",
    ) -> None:
        self.address_family = family
        self.app = app
        self.software = software  # the Server header
        self.stopping = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients so their handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError) or self.stopping:
            return  # clients hanging up are routine
        super().handle_error(request, client_address)


def require_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValueError(f"the emulator listens on loopback only, not {host!r}")


def listen(
    host: str, port: int, app: App, handler: type[Handler], software: str
) -> LoopbackServer:
    """A LoopbackServer bound to `host` (IPv4 or IPv6 loopback) and `port` (0: any)."""
    require_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return LoopbackServer((host.strip("[]"), port), app, family, handler, software)


def serve_in_thread(server: LoopbackServer, name: str) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


def shut_down(server: LoopbackServer, thread: threading.Thread | None) -> None:
    server.stopping = True
    server.shutdown()
    server.close_connections()
    server.server_close()
    if thread is not None:
        thread.join(timeout=10)


def root_url(host: str, port: int) -> str:
    host = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{host}:{port}"


# State


class Settings(Protocol):
    """An emulator's `Config`: a frozen dataclass that `configure` replaces."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


C = TypeVar("C", bound=Settings)


class BaseStore(FaultStore[F], Generic[F, C]):
    """The lock, clock, config, counters, faults and workers of every emulator's state.

    `subdirs` are made under `data_dir` for the emulator's files.
    """

    # The emulator's `state.Config` class, fault builder (`faults.build`) and
    # folders of files.
    config_class: ClassVar[Callable[..., Settings]]
    build_fault: ClassVar[Callable[..., F]]
    subdirs: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        config: C,
        data_dir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.initial_config = config
        self.lock = threading.RLock()
        self.data_dir = data_dir
        self.log = log
        self.public_url = ""
        self.clock_offset = 0.0
        self.totals: Counter[str] = Counter()
        self.faults = FaultQueue(self.build_fault, lock=self.lock, totals=self.totals)
        self.generation = 0
        self._stop = threading.Event()
        self._workers: set[threading.Thread] = set()
        for sub in self.subdirs:
            (data_dir / sub).mkdir(parents=True, exist_ok=True)

    def now(self) -> float:
        """The provider's wall clock: real time plus what tests advanced it by."""
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    def configure(self, changes: Mapping[str, Any]) -> C:
        unknown = set(changes) - {f.name for f in fields(self.config)}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        with self.lock:
            self.config = replace(self.config, **changes)
            self._config_changed()
            return self.config

    def _config_changed(self) -> None:
        """Let waiting work see the new config (under the lock)."""

    def _wake_all(self) -> None:
        """Wake the workers that wait on their own events (under the lock)."""

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once when the emulator stops."""
        self._stop.wait(seconds)

    def request_fault(self, route: str, path: str, owner: str | None) -> F | None:
        """Sit out a queued `slow` fault, then take a throttle, server_error or drop."""
        slow = self.faults.take(("slow",), route=route, path=path, owner=owner)
        if slow is not None:
            self.sleep(slow.delay_ms / 1000)
        return self.faults.take(
            ("throttle", "server_error", "drop"), route=route, path=path, owner=owner
        )

    def reset(self) -> None:
        """Forget the emulator's records, counters, faults, clock and config changes."""
        with self.lock:
            self.generation += 1
            self.config = self.initial_config
            self.faults.clear()  # every fault: no kind or owner given
            self.totals.clear()
            self.clock_offset = 0.0
            self._forget()
        # Renders still running write into the data dir and are ignored later.
        self._remove_files()

    def _forget(self) -> None:
        """Drop the emulator's own records (under the lock)."""

    def _remove_files(self) -> None:
        """Delete the files `reset` leaves behind."""

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        with self.lock:
            self._wake_all()
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.monotonic()))

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def number(value: float) -> int | float:
    """A whole number as an int, any other to 3 decimals: for JSON and messages."""
    return int(value) if float(value).is_integer() else round(value, 3)


St = TypeVar("St", bound=BaseStore[Any, Any])


class BaseApp(Generic[St, C]):
    """Routing and the endpoint handlers; state lives in the store."""

    def __init__(self, store: St, *, quiet: bool) -> None:
        self.store = store
        self.quiet = quiet

    @property
    def cfg(self) -> C:
        config: C = self.store.config
        return config


# The emulator object tests and `manage.py` commands start and stop


class EmulatorStore(Protocol):
    """What `BaseEmulator` needs of an emulator's state."""

    public_url: str

    def add_faults(
        self, specs: Iterable[Mapping[str, Any]], /
    ) -> list[dict[str, Any]]: ...

    def list_faults(self) -> list[dict[str, Any]]: ...

    def state(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def advance_clock(self, seconds: float, /) -> None: ...

    def stop(self) -> None: ...

    def remove_data(self) -> None: ...


S = TypeVar("S", bound=EmulatorStore)
K = TypeVar("K")


class BaseEmulator(Generic[S, K]):
    """An emulator served from background threads; usable as a context manager.

    A subclass names its thread and data folder (`name`), its handler, and
    the classes of its config, API keys, store and app.
    """

    name: ClassVar[str]
    handler: ClassVar[type[Handler]] = Handler
    default_key: ClassVar[str]
    # `key_class.parse(text)`, `store_class(config=, keys=, data_dir=)` (a
    # BaseStore), `app_class(store, quiet=)`.
    key_class: ClassVar[Any]
    store_class: ClassVar[Any]
    app_class: ClassVar[Callable[..., App]]

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        time_scale: float = 1.0,
        api_keys: Sequence[str | K] | None = None,
        data_dir: Path | str | None = None,
        quiet: bool = False,
        faults: Iterable[Mapping[str, Any]] = (),
        **settings: Any,
    ) -> None:
        """`settings` are further fields of the emulator's `state.Config`."""
        require_loopback(host)
        self.config = self.store_class.config_class(time_scale=time_scale, **settings)
        self.api_keys: list[K] = [
            self.key_class.parse(k) for k in (api_keys or [self.default_key])
        ]
        self.host = host
        self.port = port
        self.quiet = quiet
        self._initial_faults = [dict(f) for f in faults]
        for spec in self._initial_faults:
            self.store_class.build_fault(spec, 0)  # fail early on a bad spec
        self._owns_data_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None
        self._store: S | None = None

    def _new_store(self, data_dir: Path) -> S:
        store: S = self.store_class(
            config=self.config, keys=self.api_keys, data_dir=data_dir
        )
        return store

    def _new_app(self, store: S) -> App:
        return self.app_class(store, quiet=self.quiet)

    # Lifecycle

    def start(self) -> Self:
        """Listen and serve in a daemon thread; return once the socket listens."""
        if self._server is not None:
            return self
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._store = self._new_store(self._data_dir)
        if self._initial_faults:
            self._store.add_faults(self._initial_faults)
        self._server = listen(
            self.host,
            self.port,
            self._new_app(self._store),
            self.handler,
            software=f"{self.name}/1.0",
        )
        self.port = self._server.server_address[1]
        self._store.public_url = self.url
        self._thread = serve_in_thread(self._server, self.name)
        return self

    def stop(self) -> None:
        """Stop serving, end the workers and (if it made it) remove the data dir."""
        server, self._server = self._server, None
        if server is None:
            return
        shut_down(server, self._thread)
        if self._store is not None:
            self._store.stop()
            if self._owns_data_dir:
                self._store.remove_data()
                self._data_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Addresses

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the server root."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return root_url(self.host, self.port)

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def store(self) -> S:
        if self._store is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._store

    # Test helpers (the same as the control API, without HTTP)

    def faults(self, *specs: Mapping[str, Any], **spec: Any) -> list[dict[str, Any]]:
        """Queue faults (dicts and/or keyword fields of one); return all queued."""
        wanted = [*specs, spec] if spec else list(specs)
        if not wanted:
            return self.store.list_faults()
        return self.store.add_faults(wanted)

    def state(self) -> dict[str, Any]:
        # A JSON round trip, so callers see exactly what the HTTP API gives.
        result: dict[str, Any] = json.loads(json.dumps(self.store.state()))
        return result

    def reset(self) -> None:
        self.store.reset()

    def advance_clock(self, seconds: float) -> None:
        """Move the provider clock (see the emulator for what it ages)."""
        self.store.advance_clock(seconds)
