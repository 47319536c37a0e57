"""A real studio for end-to-end tests: web server and django-q2 cluster as processes.

`LiveStudio` prepares a data dir (migrate, seed_demo), starts `runserver` and
`qcluster` as separate subprocesses, each in its own process group so a test can
SIGKILL a whole worker tree, and stops everything on teardown.

On the embedded default each studio has its own SQLite file under its data dir.
When the tests run against the production services (S2V_DATABASE_URL set, see
tests/infra.py), each studio gets its own PostgreSQL database, Redis prefix and
S3 key prefix on those same servers; the databases and keys are removed when
the test process exits (a finished studio's rows can still be queried).

Fixtures (import the *_fixture functions into a test module to use them):
    live_studio          one studio shared by every module of the session
    studio               live_studio, printing its logs when the test fails
    live_studio_factory  fresh studios with extra env (stopped after the test)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests import infra

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_TEAM, DEMO_USER, DEMO_PASSWORD = "demo", "demo", "demo-studio"
LOG_TAIL_LINES = 120

T = TypeVar("T")


class StudioError(AssertionError):
    """Something in the live studio did not happen; the message carries its logs."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Back-end variables a studio inherits when the tests run on the services.
_SERVICE_VARS = ("S2V_REDIS_URL", "S2V_S3_")
# Databases and Redis prefixes made for studios, removed when the process exits.
_made_databases: list[str] = []
_made_prefixes: list[tuple[str, str]] = []


def _clean_up_services() -> None:
    for name in _made_databases:
        with contextlib.suppress(Exception):
            infra.drop_database(name)
    for url, prefix in _made_prefixes:
        with contextlib.suppress(Exception):
            infra.redis_delete_prefix(prefix, url)


atexit.register(_clean_up_services)


class LiveStudio:
    """One studio instance: a data dir, a web server and any number of clusters over time."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        name: str = "studio",
    ) -> None:
        self.name = name
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # PostgreSQL + Redis + S3 when the test run has them, else SQLite.
        self.services = bool(os.environ.get("S2V_DATABASE_URL"))
        self.database = ""
        self.env = self._make_env(env or {})
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        # Every process ever started, with its log, for teardown and for logs().
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._log_files: list[IO[bytes]] = []
        self._workers_started = 0
        # Groups already SIGKILLed; never signalled again, their ids may be reused.
        self._group_killed: set[int] = set()

    def _make_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        # The parent's S2V_* (or test settings) must not leak into the studio.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("S2V_") and k != "DJANGO_SETTINGS_MODULE"
        }
        # Renders write scratch files under TMPDIR; a killed worker leaves them
        # behind, so keep them inside the test's own directory.
        tmp = self.data_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        env.update(
            DJANGO_SETTINGS_MODULE="s2vsite.settings",
            S2V_DATA_DIR=str(self.data_dir),
            TMPDIR=str(tmp),
            PYTHONUNBUFFERED="1",
        )
        if self.services:
            env.update(self._service_env())
        env.update(extra)
        # A studio on Redis (the run's, or one a test asked for) keeps its queue
        # and cache under its own prefix.
        if env.get("S2V_REDIS_URL") and "S2V_REDIS_PREFIX" not in extra:
            env["S2V_REDIS_PREFIX"] = f"s2v-live-{uuid.uuid4().hex[:10]}"
            _made_prefixes.append((env["S2V_REDIS_URL"], env["S2V_REDIS_PREFIX"]))
        return env

    def _service_env(self) -> dict[str, str]:
        """The run's servers, with this studio's own database and S3 key prefix."""
        own = f"live_{uuid.uuid4().hex[:10]}"
        self.database = f"s2v_{own}"
        infra.create_database(self.database)
        _made_databases.append(self.database)
        env = {k: v for k, v in os.environ.items() if k.startswith(_SERVICE_VARS)}
        url = urlsplit(os.environ["S2V_DATABASE_URL"])
        env["S2V_DATABASE_URL"] = urlunsplit(url._replace(path=f"/{self.database}"))
        env["S2V_PRODUCTION"] = "false"  # plain HTTP on loopback
        if env.get("S2V_S3_BUCKET"):
            env["S2V_S3_LOCATION"] = own
        return env

    # -- lifecycle ------------------------------------------------------------

    def prepare(self) -> None:
        """Create the database and the demo account."""
        self.manage("migrate", "--noinput", timeout=180)
        if self.env.get("S2V_PRODUCTION", "").lower() in ("true", "1", "yes"):
            return  # seed_demo refuses to run in production
        # seed_demo keeps the password it finds in the data dir: a known one.
        password_file = self.data_dir / "demo-password"
        password_file.write_text(DEMO_PASSWORD)
        password_file.chmod(0o600)
        self.manage("seed_demo", timeout=60)

    def start(self) -> LiveStudio:
        """Prepare the data dir, then start the web server and a cluster."""
        try:
            self.prepare()
            self.start_server()
            self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self) -> None:
        self.server = self._spawn(
            "web", ["runserver", "--noreload", f"127.0.0.1:{self.port}"]
        )
        self.wait_until_answering()

    def start_runstudio(self) -> subprocess.Popen[bytes]:
        """Prepare, then start everything the way `make run` does (runstudio)."""
        self.prepare()
        self.server = self._spawn("runstudio", ["runstudio", f"127.0.0.1:{self.port}"])
        self.wait_until_answering()
        return self.server

    def wait_until_answering(self) -> None:
        def answers() -> bool:
            try:
                return (
                    httpx.get(self.url + "/accounts/login/", timeout=2).status_code
                    == 200
                )
            except httpx.TransportError:
                return False

        self.wait_for(
            answers, timeout=60, interval=0.2, what="the web server to answer"
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        self._workers_started += 1
        self.worker = self._spawn(f"qcluster-{self._workers_started}", ["qcluster"])
        return self.worker

    def kill_worker(self) -> None:
        """SIGKILL the cluster and every process it forked: a machine losing power."""
        assert self.worker is not None, "no cluster is running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)
        self._group_killed.add(self.worker.pid)
        self.worker = None

    def stop(self) -> None:
        for _, proc, _ in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for _, proc, _ in reversed(self._procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            # The group too: a cluster's forked workers can outlive their parent.
            if proc.pid not in self._group_killed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                self._group_killed.add(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for fh in self._log_files:
            fh.close()
        self._log_files.clear()
        self.server = self.worker = None

    def spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        """Start another long-running process of this studio (a second cluster, a dispatcher)."""
        return self._spawn(label, list(args))

    def spawn_command(self, label: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start any long-running command (gunicorn, a shell line) with this studio's env."""
        return self._spawn(label, list(argv), manage=False)

    def _spawn(
        self, label: str, args: list[str], *, manage: bool = True
    ) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{label}.log"
        log = log_path.open("ab")
        self._log_files.append(log)
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args] if manage else args,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.append((label, proc, log_path))
        return proc

    # -- commands -------------------------------------------------------------

    def manage(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a management command against this studio's data dir."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise StudioError(
                f"manage.py {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n{self.logs()}"
            )
        return result

    def generate(
        self, portrait: Path, audio: Path, *extra: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.manage(
            "generate",
            "--team",
            DEMO_TEAM,
            "--user",
            DEMO_USER,
            "--portrait",
            str(portrait),
            "--audio",
            str(audio),
            *extra,
            **kwargs,
        )

    # -- the database ---------------------------------------------------------

    @property
    def db_path(self) -> Path:
        """The SQLite file (on the embedded default)."""
        return self.data_dir / "db.sqlite3"

    @property
    def db_label(self) -> str:
        return (
            f"PostgreSQL database {self.database}"
            if self.services
            else str(self.db_path)
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Mapping[str, Any]]:
        """Rows as mappings; `?` placeholders on both SQLite and PostgreSQL."""
        if self.services:
            from psycopg.rows import dict_row

            with infra.pg_connect(self.database, row_factory=dict_row) as conn:
                return conn.execute(
                    sql.replace("%", "%%").replace("?", "%s"), params
                ).fetchall()
        conn = sqlite3.connect(self.db_path, timeout=20)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def job(self, code: str | uuid.UUID) -> dict[str, Any]:
        """The job's row in studio_generationjob."""
        code = uuid.UUID(str(code))
        # SQLite stores UUIDs as 32 hex digits, PostgreSQL as its uuid type.
        rows = self.query(
            "SELECT * FROM studio_generationjob WHERE code = ?",
            (code if self.services else code.hex,),
        )
        if not rows:
            raise StudioError(f"No job {code} in {self.db_label}")
        return dict(rows[0])

    def stored_names(self) -> list[str]:
        """Every file name in the studio's default storage."""
        if not self.env.get("S2V_S3_BUCKET"):
            media = self.data_dir / "media"
            return sorted(
                p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()
            )
        s3 = infra.S3Server.client_for(self.env)
        prefix = self.env["S2V_S3_LOCATION"] + "/"
        names = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.env["S2V_S3_BUCKET"], Prefix=prefix
        ):
            names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        return sorted(names)

    def stored_file(self, name: str) -> bytes | None:
        """A file in the studio's default storage (media dir or S3), or None."""
        if not self.env.get("S2V_S3_BUCKET"):
            path = self.data_dir / "media" / name
            return path.read_bytes() if path.is_file() else None
        s3 = infra.S3Server.client_for(self.env)
        key = f"{self.env['S2V_S3_LOCATION']}/{name}"
        try:
            return s3.get_object(Bucket=self.env["S2V_S3_BUCKET"], Key=key)[
                "Body"
            ].read()
        except s3.exceptions.NoSuchKey:
            return None

    # -- waiting and logs -----------------------------------------------------

    def check_alive(self) -> None:
        """Fail at once, with logs, when the server or the current cluster has died."""
        for label, proc in (("web server", self.server), ("cluster", self.worker)):
            if proc is not None and proc.poll() is not None:
                raise StudioError(
                    f"The {label} of {self.name} exited with {proc.returncode}.\n{self.logs()}"
                )

    def wait_for(
        self,
        probe: Callable[[], T],
        *,
        timeout: float,
        what: str,
        interval: float = 0.5,
    ) -> T:
        """Call `probe` until it returns something truthy; that value is returned."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while True:
            self.check_alive()
            last = probe()
            if last:
                return last
            if time.monotonic() > deadline:
                raise StudioError(
                    f"Gave up after {timeout:g} s waiting for {what} "
                    f"(last: {last!r}).\n{self.logs()}"
                )
            time.sleep(interval)

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        for label, proc, path in self._procs:
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            parts.append(
                f"===== {self.name} {label} (pid {proc.pid}, {state}) =====\n{tail}"
            )
        return "\n".join(parts)


# -- processes -------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent id; the command name in (...) may hold spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def find_child(parent: int, word: str) -> int:
    """The descendant of `parent` whose command line has `word` as one argument."""
    for pid in descendants(parent):
        if word in command_line(pid):
            return pid
    raise StudioError(f"No process running {word!r} under {parent}")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise StudioError(f"No {field} for process {pid}")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM (the peak RSS) again from the current RSS (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def zero_body(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """`total` bytes as a stream, made on the fly: the sender never holds them."""
    block = bytes(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


# -- HTTP helpers ----------------------------------------------------------------


@contextlib.contextmanager
def signed_in_client(studio: LiveStudio, **kwargs: Any) -> Iterator[httpx.Client]:
    """An httpx client signed in as the demo user, CSRF cookie included."""
    with httpx.Client(base_url=studio.url, timeout=60, **kwargs) as client:
        client.get("/accounts/login/").raise_for_status()
        response = client.post(
            "/accounts/login/",
            data={
                "username": DEMO_USER,
                "password": DEMO_PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        if response.status_code != 302:
            raise StudioError(
                f"Sign-in answered {response.status_code}:\n{response.text[:2000]}"
            )
        yield client


def hidden_input(html: str, name: str) -> str:
    """The value of `<input type="hidden" name=name value=...>` in an HTML fragment."""
    match = re.search(
        rf'<input type="hidden" name="{re.escape(name)}" value="([^"]+)"', html
    )
    if not match:
        raise AssertionError(f"No hidden input {name!r} in:\n{html}")
    return match[1]


# -- fixtures --------------------------------------------------------------------

_SHARED = pytest.StashKey[LiveStudio]()


def _report_on_failure(
    request: pytest.FixtureRequest, studios: list[LiveStudio], failed_before: int
) -> None:
    # Printed during teardown, so pytest shows it under the failed test.
    if request.session.testsfailed > failed_before:
        for studio in studios:
            print(studio.logs())  # noqa: T201


@pytest.fixture(scope="session", name="live_studio")
def live_studio_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LiveStudio:
    # Kept in the config stash: test modules import this fixture, and each import
    # would otherwise be its own session fixture with its own processes.
    stash = request.config.stash
    if _SHARED not in stash:
        studio = LiveStudio(
            tmp_path_factory.mktemp("live-studio"), name="shared studio"
        )
        request.config.add_cleanup(studio.stop)
        studio.start()
        stash[_SHARED] = studio
    return stash[_SHARED]


@pytest.fixture(name="studio")
def studio_fixture(
    live_studio: LiveStudio, request: pytest.FixtureRequest
) -> Iterator[LiveStudio]:
    failed_before = request.session.testsfailed
    yield live_studio
    _report_on_failure(request, [live_studio], failed_before)


@pytest.fixture(name="live_studio_factory")
def live_studio_factory_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveStudio]]:
    """make(S2V_STALE_SECONDS="5") starts a fresh studio with that extra env."""
    made: list[LiveStudio] = []
    failed_before = request.session.testsfailed

    def make(**env: str) -> LiveStudio:
        studio = LiveStudio(
            tmp_path_factory.mktemp("studio"), env=env, name=f"studio {len(made) + 1}"
        )
        made.append(studio)
        return studio.start()

    try:
        yield make
        _report_on_failure(request, made, failed_before)
    finally:
        for studio in made:
            studio.stop()
