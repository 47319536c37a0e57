"""The real back-ends for the tests: PostgreSQL, Redis and an S3-compatible server.

PostgreSQL and Redis run on the machine (127.0.0.1:5432, trust auth, and
127.0.0.1:6379); `ensure_postgres()` and `ensure_redis()` start them with the
machine's own commands when they are down. S3 is moto's standalone server,
started on a free loopback port (`S3Server`).

`make test` runs the suite through this module, once per configuration:

    python -m tests.infra run embedded -- python -m pytest -q
    python -m tests.infra run services -- python -m pytest -q

`embedded` clears the back-end variables; `services` starts what is missing,
points S2V_DATABASE_URL, S2V_REDIS_URL and S2V_S3_* at it, and cleans up after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
S3_BUCKET = "s2v-test"
S3_REGION = "us-east-1"
S3_KEYS = ("s2v-test-key", "s2v-test-secret")  # moto accepts any

# The machine's own commands (its notes: python-svc.md), for a service that is down.
START_POSTGRES = (
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)

# Variables that choose the back-ends: the embedded run must see none of them.
BACKEND_PREFIXES = ("S2V_DATABASE_URL", "S2V_REDIS_", "S2V_S3_", "S2V_PRODUCTION")


class InfraError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _wait(probe: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise InfraError(f"{what} did not come up within {timeout:g} s")
        time.sleep(0.3)


# -- PostgreSQL -------------------------------------------------------------------


def pg_url(dbname: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def pg_connect(dbname: str = "postgres", **kwargs: object):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname=dbname,
        connect_timeout=3,
        **kwargs,
    )


def postgres_up() -> bool:
    try:
        with pg_connect() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def ensure_postgres() -> None:
    if postgres_up():
        return
    say(f"PostgreSQL is down; starting it: {START_POSTGRES}")
    subprocess.run(START_POSTGRES, shell=True, check=False)
    _wait(postgres_up, "PostgreSQL on 127.0.0.1:5432")


def create_database(name: str) -> None:
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- Redis ------------------------------------------------------------------------


def redis_client(url: str = REDIS_URL):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)


def redis_up() -> bool:
    try:
        client = redis_client()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def ensure_redis() -> None:
    if redis_up():
        return
    say(f"Redis is down; starting it: {START_REDIS}")
    subprocess.run(START_REDIS, shell=True, check=False)
    _wait(redis_up, "Redis on 127.0.0.1:6379")


def redis_delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Drop a studio's queue and cache keys (its Q_CLUSTER name and cache prefix)."""
    client = redis_client(url)
    try:
        for pattern in (f"{prefix}:*", f"django_q:{prefix}:*"):
            keys = list(client.scan_iter(match=pattern, count=500))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


# -- S3 (moto's standalone server) --------------------------------------------------


class S3Server:
    """moto's S3-compatible server as a process on a free loopback port."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        log = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise InfraError(f"moto's server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        _wait(answers, f"moto's S3 server on port {self.port}")
        return self

    def client(self):  # type: ignore[no-untyped-def]
        return self.client_for(self.env())

    @staticmethod
    def client_for(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
        """A boto3 client for the S3 server that S2V_S3_* variables name."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=env["S2V_S3_ENDPOINT_URL"],
            region_name=env.get("S2V_S3_REGION") or S3_REGION,
            aws_access_key_id=env["S2V_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["S2V_S3_SECRET_ACCESS_KEY"],
            config=Config(
                s3={"addressing_style": env.get("S2V_S3_ADDRESSING_STYLE") or "path"}
            ),
        )

    def create_bucket(self, name: str = S3_BUCKET) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def env(self, bucket: str = S3_BUCKET) -> dict[str, str]:
        return {
            "S2V_S3_BUCKET": bucket,
            "S2V_S3_ENDPOINT_URL": self.endpoint_url,
            "S2V_S3_REGION": S3_REGION,
            "S2V_S3_ACCESS_KEY_ID": S3_KEYS[0],
            "S2V_S3_SECRET_ACCESS_KEY": S3_KEYS[1],
            "S2V_S3_ADDRESSING_STYLE": "path",
        }


# -- the configurations --------------------------------------------------------------


def embedded_env(base: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in base.items() if not k.startswith(BACKEND_PREFIXES)}


@contextlib.contextmanager
def services_env(base: Mapping[str, str], log_dir: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL, Redis and a fresh S3 server, as S2V_* variables; cleaned up after.

    The run gets its own database name (pytest-django creates test_<name>) and
    Redis prefix, so runs on one machine do not meet.
    """
    ensure_postgres()
    ensure_redis()
    run_id = uuid.uuid4().hex[:10]
    prefix = f"s2v-test-{run_id}"
    log_dir.mkdir(exist_ok=True)
    s3 = S3Server(log_dir / "moto.log").start()
    try:
        s3.create_bucket()
        env = embedded_env(base)
        env.update(
            S2V_DATABASE_URL=pg_url(f"s2v_{run_id}"),
            S2V_REDIS_URL=REDIS_URL,
            S2V_REDIS_PREFIX=prefix,
            # Plain HTTP on loopback: production's HTTPS-only settings stay off.
            S2V_PRODUCTION="false",
            **s3.env(),
        )
        yield env
    finally:
        s3.stop()
        with contextlib.suppress(Exception):
            redis_delete_prefix(prefix)
        with contextlib.suppress(Exception):
            drop_database(f"test_s2v_{run_id}")


HEADERS = {
    "embedded": "the embedded default: SQLite, django-q2's ORM broker, local files",
    "services": "PostgreSQL + Redis + S3 (moto's server on loopback)",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m tests.infra")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="start PostgreSQL and Redis when they are down")
    run = sub.add_parser("run", help="run a command on one configuration")
    run.add_argument("config", choices=sorted(HEADERS))
    run.add_argument("--label", default="", help="e.g. 'run 1 of 2'")
    args = parser.parse_args(argv)

    if args.command == "ensure":
        ensure_postgres()
        ensure_redis()
        return 0

    if not cmd:
        parser.error("give the command after --")
    # Beside the browser tests' screenshots; ignored by git.
    log_dir = Path(__file__).resolve().parent.parent / "test-artifacts"
    banner = f"{args.label}: " if args.label else ""
    line = "=" * 78
    say(f"\n{line}\n{banner}{HEADERS[args.config]}\n{line}")
    if args.config == "embedded":
        return subprocess.call(cmd, env=embedded_env(os.environ))
    with services_env(os.environ, log_dir) as env:
        shown = {k: v for k, v in env.items() if k.startswith(BACKEND_PREFIXES)}
        for key in sorted(shown):
            if "SECRET" not in key:
                say(f"  {key}={shown[key]}")
        say(f"  $ {shlex.join(cmd)}")
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
