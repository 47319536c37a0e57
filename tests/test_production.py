"""Production configuration: settings from the environment, check --deploy, the
content security policy, /healthz, JSON logs, and gunicorn as the Procfile runs it."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from studio import health
from tests import infra
from tests.live import (  # noqa: F401 (the fixtures are used by name)
    DEMO_PASSWORD,
    DEMO_USER,
    REPO_ROOT,
    LiveStudio,
    free_port,
    live_studio_fixture,
)
from tests.media_factories import ASTRONAUT

SETTINGS_FILE = REPO_ROOT / "s2vsite" / "settings.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STRONG_KEY = "k3y-" + "x7Qp9LmZ2vB8nR4tW6yC1dF5gH0jK3sA" * 2
PRODUCTION_ENV = {
    "S2V_SECRET_KEY": STRONG_KEY,
    "S2V_ALLOWED_HOSTS": "studio.example.com",
    "S2V_CSRF_TRUSTED_ORIGINS": "https://studio.example.com",
    "S2V_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "S2V_DATABASE_URL": "postgresql://s2v:db-pass-123@db.internal:5432/s2v",
    "S2V_REDIS_URL": "redis://:redis-pass-123@redis.internal:6379/0",
    "S2V_S3_BUCKET": "s2v-media",
    "S2V_S3_ENDPOINT_URL": "https://s3.oss-cn-beijing.aliyuncs.com",
    "S2V_S3_REGION": "cn-beijing",
    "S2V_S3_ADDRESSING_STYLE": "virtual",
    "S2V_S3_ACCESS_KEY_ID": "LTAI-test-key",
    "S2V_S3_SECRET_ACCESS_KEY": "s3-secret-123",
}


@pytest.fixture
def load_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Runs s2vsite/settings.py with only the given S2V_* variables set."""

    def load(**env: str) -> dict[str, Any]:
        for key in list(os.environ):
            if key.startswith(("S2V_", "DASHSCOPE_")):
                monkeypatch.delenv(key)
        monkeypatch.setenv("S2V_DATA_DIR", str(tmp_path / "data"))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return runpy.run_path(str(SETTINGS_FILE))

    yield load


def subprocess_env(tmp_path: Path, **env: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("S2V_", "DASHSCOPE_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "s2vsite.settings",
        "S2V_DATA_DIR": str(tmp_path / "data"),
        **env,
    }


def manage(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- settings from the environment ------------------------------------------------


def test_with_no_environment_it_is_the_embedded_default(load_settings, tmp_path):
    s = load_settings()
    assert s["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["Q_CLUSTER"]["orm"] == "default" and "redis" not in s["Q_CLUSTER"]
    assert s["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert s["STORAGES"]["default"]["BACKEND"].endswith("FileSystemStorage")
    assert not s["PRODUCTION"] and not s["DEBUG"]
    assert not s["SESSION_COOKIE_SECURE"] and not s["SECURE_SSL_REDIRECT"]
    # A generated key, kept beside the database.
    assert s["SECRET_KEY"] == (tmp_path / "data" / "secret_key").read_text().strip()


def test_database_url_selects_postgresql_through_psycopg_3(load_settings):
    s = load_settings(
        S2V_DATABASE_URL="postgresql://s2v:p%40ss%2Fword@db.internal:6432/studio?sslmode=require",
        S2V_PRODUCTION="false",
    )
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == ("studio", "s2v", "p@ss/word")
    assert (db["HOST"], db["PORT"]) == ("db.internal", "6432")
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert db["CONN_HEALTH_CHECKS"] and db["CONN_MAX_AGE"] > 0
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    assert is_psycopg3


def test_database_url_must_be_postgresql(load_settings):
    with pytest.raises(ImproperlyConfigured, match="unsupported scheme 'mysql'"):
        load_settings(S2V_DATABASE_URL="mysql://u:p@db/s2v", S2V_PRODUCTION="false")


def test_redis_url_selects_the_redis_broker_and_cache(load_settings):
    url = "redis://:pw@redis.internal:6379/2"
    s = load_settings(S2V_REDIS_URL=url, S2V_REDIS_PREFIX="studio-b")
    q = s["Q_CLUSTER"]
    assert q["redis"] == url and "orm" not in q
    assert q["name"] == "studio-b"
    assert q["retry"] > q["timeout"]
    cache = s["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert (cache["LOCATION"], cache["KEY_PREFIX"]) == (url, "studio-b")


@pytest.mark.parametrize(
    ("env", "style", "signature"),
    [
        # Alibaba OSS, as its guide for boto3 says: virtual hosts, V2 signatures.
        (
            {
                "S2V_S3_ENDPOINT_URL": "https://s3.oss-cn-beijing.aliyuncs.com",
                "S2V_S3_REGION": "cn-beijing",
                "S2V_S3_ADDRESSING_STYLE": "virtual",
                "S2V_S3_SIGNATURE_VERSION": "s3",
            },
            "virtual",
            "s3",
        ),
        # MinIO: one host, buckets in the path.
        (
            {
                "S2V_S3_ENDPOINT_URL": "http://minio.internal:9000",
                "S2V_S3_ADDRESSING_STYLE": "path",
            },
            "path",
            "s3v4",
        ),
        # AWS: no endpoint, botocore's defaults.
        ({"S2V_S3_REGION": "eu-central-1"}, "auto", "s3v4"),
    ],
    ids=["oss", "minio", "aws"],
)
def test_s3_bucket_selects_private_s3_storage(load_settings, env, style, signature):
    s = load_settings(
        S2V_S3_BUCKET="s2v-media",
        S2V_S3_ACCESS_KEY_ID="AKID",
        S2V_S3_SECRET_ACCESS_KEY="SECRET",
        S2V_S3_CUSTOM_DOMAIN="media.example.com",
        S2V_S3_LOCATION="/studio/",
        **env,
    )
    storage = s["STORAGES"]["default"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == "s2v-media"
    assert options["endpoint_url"] == env.get("S2V_S3_ENDPOINT_URL")
    assert options["region_name"] == env.get("S2V_S3_REGION")
    assert (options["access_key"], options["secret_key"]) == ("AKID", "SECRET")
    assert options["custom_domain"] == "media.example.com"
    assert options["location"] == "studio"
    # Private objects: presigned links, no public ACL, never overwritten.
    assert options["querystring_auth"] is True
    assert options["querystring_expire"] == 3600
    assert options["default_acl"] is None
    assert options["file_overwrite"] is False
    config = options["client_config"]
    assert config.s3 == {"addressing_style": style}
    assert config.signature_version == signature
    assert config.request_checksum_calculation == "when_required"
    # Static files stay with whitenoise on every web machine.
    assert s["STORAGES"]["staticfiles"]["BACKEND"].startswith(
        "django.contrib.staticfiles"
    )


def test_s3_choices_are_checked(load_settings):
    with pytest.raises(ImproperlyConfigured, match="S2V_S3_ADDRESSING_STYLE"):
        load_settings(S2V_S3_BUCKET="b", S2V_S3_ADDRESSING_STYLE="dns")


def test_a_database_url_means_production_and_production_needs_a_secret_key(
    load_settings,
):
    with pytest.raises(ImproperlyConfigured, match="S2V_SECRET_KEY"):
        load_settings(S2V_DATABASE_URL="postgresql://db/s2v", S2V_ALLOWED_HOSTS="a.b")
    with pytest.raises(ImproperlyConfigured, match="S2V_SECRET_KEY"):
        load_settings(S2V_PRODUCTION="true", S2V_ALLOWED_HOSTS="a.b")
    # Explicitly not production (a debug run against PostgreSQL): no requirement.
    s = load_settings(S2V_DATABASE_URL="postgresql://db/s2v", S2V_PRODUCTION="false")
    assert not s["PRODUCTION"]
    s = load_settings(S2V_DATABASE_URL="postgresql://db/s2v", S2V_DEBUG="true")
    assert not s["PRODUCTION"] and s["DEBUG"]


def test_production_needs_allowed_hosts(load_settings):
    with pytest.raises(ImproperlyConfigured, match="S2V_ALLOWED_HOSTS"):
        load_settings(S2V_PRODUCTION="true", S2V_SECRET_KEY=STRONG_KEY)


def test_debug_cannot_be_on_in_production(load_settings):
    with pytest.raises(ImproperlyConfigured, match="S2V_DEBUG"):
        load_settings(S2V_PRODUCTION="true", S2V_DEBUG="true")


def test_production_is_https_only(load_settings):
    s = load_settings(**PRODUCTION_ENV)
    assert s["PRODUCTION"] and not s["DEBUG"]
    assert s["SECRET_KEY"] == STRONG_KEY
    assert s["ALLOWED_HOSTS"] == ["studio.example.com"]
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SECURE_SSL_REDIRECT"]
    assert s["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert s["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert s["STORAGES"]["staticfiles"]["BACKEND"] == (
        "whitenoise.storage.CompressedManifestStaticFilesStorage"
    )
    assert "upgrade-insecure-requests" in s["SECURE_CSP"]
    # TLS that ends elsewhere and redirects there: the redirect can be left to it.
    s = load_settings(**PRODUCTION_ENV, S2V_SSL_REDIRECT="false")
    assert not s["SECURE_SSL_REDIRECT"] and s["SESSION_COOKIE_SECURE"]


def test_secrets_can_come_from_files(load_settings, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(STRONG_KEY + "\n")
    db_file = tmp_path / "db"
    db_file.write_text("postgresql://s2v:from-file@db/s2v\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "S2V_SECRET_KEY"}
    s = load_settings(
        **env, S2V_SECRET_KEY_FILE=str(key_file), S2V_DATABASE_URL_FILE=str(db_file)
    )
    assert s["SECRET_KEY"] == STRONG_KEY
    assert s["DATABASES"]["default"]["PASSWORD"] == "from-file"


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = subprocess_env(tmp_path, **PRODUCTION_ENV)
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = subprocess_env(tmp_path, **PRODUCTION_ENV)
    del env["S2V_SECRET_KEY"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "S2V_SECRET_KEY" in result.stderr and "ImproperlyConfigured" in result.stderr


# -- presigned URLs on a real S3-compatible server ----------------------------------


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The run's S3 server when it has one, else a moto server of our own."""
    if os.environ.get("S2V_S3_ENDPOINT_URL"):
        yield {k: v for k, v in os.environ.items() if k.startswith("S2V_S3_")}
        return
    server = infra.S3Server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        server.create_bucket()
        yield server.env()
    finally:
        server.stop()


@pytest.mark.parametrize("signature", ["s3v4", "s3"])
def test_storage_urls_are_presigned_and_plain_links_are_refused(
    load_settings, s3_env, signature
):
    from django.core.files.base import ContentFile
    from storages.backends.s3 import S3Storage

    s = load_settings(
        **s3_env, S2V_S3_LOCATION="presign-test", S2V_S3_SIGNATURE_VERSION=signature
    )
    storage = S3Storage(**s["STORAGES"]["default"]["OPTIONS"])
    name = storage.save("inputs/voice.txt", ContentFile(b"private bytes"))
    assert storage.exists(name)
    url = storage.url(name)
    if signature == "s3v4":
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    else:
        assert "Signature=" in url and "Expires=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"private bytes"
    # The object is private: without the signature the server refuses it.
    assert httpx.get(url.split("?")[0]).status_code == 403
    storage.delete(name)


def test_storage_input_urls_are_presigned_links_the_provider_can_fetch(
    load_settings, s3_env, emu, alice, team, settings
):
    """S2V_INPUT_URLS=storage: the emulator downloads the portrait from S3 itself."""
    from django.core.files.storage import default_storage

    from studio import services
    from tests.conftest import upload

    if not settings.STORAGES["default"]["BACKEND"].endswith("S3Storage"):
        s3 = load_settings(**s3_env, S2V_S3_LOCATION="input-urls-test")
        settings.STORAGES = {**settings.STORAGES, "default": s3["STORAGES"]["default"]}
    settings.S2V_INPUT_URLS = "storage"

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert outcome.verdict.check_pass, outcome.verdict.message
    assert outcome.portrait is not None
    assert "X-Amz-Signature=" in default_storage.url(outcome.portrait.file.name)


# -- the content security policy -----------------------------------------------------


def policy_of(response: Any) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


def test_pages_carry_a_strict_policy_and_no_inline_code(alice_client: Client):
    for url in ("/accounts/login/", "/new/", "/gallery/"):
        response = alice_client.get(url)
        assert response.status_code == 200, url
        policy = policy_of(response)
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["base-uri"] == ["'none'"]
        assert "blob:" in policy["img-src"]  # the upload preview
        header = response.headers["Content-Security-Policy"]
        assert "unsafe" not in header and "*" not in header
        # What the policy would block must not be in the page.
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), url
        assert not re.search(r"<style[\s>]", html), url
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url


def test_the_admin_has_its_own_policy(client: Client, db: None):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "Content-Security-Policy" in response.headers
    with override_settings(S2V_CSP_ADMIN={"style-src": ["'unsafe-inline'"]}):
        assert policy_of(client.get("/admin/login/"))["style-src"] == [
            "'self'",
            "'unsafe-inline'",
        ]
        assert policy_of(client.get("/accounts/login/"))["style-src"] == ["'self'"]


@pytest.mark.browser
def test_chromium_reports_no_policy_violations(live_studio: LiveStudio):
    from playwright.sync_api import sync_playwright

    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(base_url=live_studio.url)
            page.on(
                "console",
                lambda m: (
                    violations.append(f"{page.url}: {m.text}")
                    if "Content Security Policy" in m.text
                    else None
                ),
            )
            page.goto("/accounts/login/")
            page.fill("#id_username", DEMO_USER)
            page.fill("#id_password", DEMO_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/new/")
            # The upload preview is a blob: image.
            page.set_input_files("#portrait-input", str(ASTRONAUT))
            # Polled from here: wait_for_function would eval() in the page,
            # which the policy rightly refuses.
            deadline = time.monotonic() + 30
            while not page.evaluate(
                "document.querySelector('#portrait-preview').naturalWidth > 0"
            ):
                assert time.monotonic() < deadline, "no preview"
                time.sleep(0.2)
            for url in (
                "/gallery/",
                "/admin/",
                "/admin/studio/generationjob/",
                "/admin/studio/team/add/",
                "/admin/studio/user/add/",
            ):
                page.goto(url)
                page.wait_for_load_state("networkidle")
            assert violations == []
            # And the policy is really enforced: injected inline code does not run.
            page.goto("/gallery/")
            ran = page.evaluate(
                """() => {
                    const s = document.createElement('script');
                    s.textContent = 'window.__inline = 1';
                    document.head.appendChild(s);
                    return window.__inline === 1;
                }"""
            )
            assert not ran
            page.wait_for_timeout(200)
            assert violations and "script-src" in violations[-1], violations
        finally:
            browser.close()


# -- /healthz -------------------------------------------------------------------------


@pytest.fixture
def probe(db: None) -> Iterator[Client]:
    health._provider_cache.clear()
    yield Client()
    health._provider_cache.clear()


def test_healthz_reports_every_part_as_json(probe: Client):
    response = probe.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    checks = body["checks"]
    assert set(checks) == {"database", "broker", "storage", "provider"}
    assert all(check["ok"] for check in checks.values()), checks
    from django.db import connection

    assert checks["database"]["backend"] == connection.vendor
    expected_broker = "redis" if settings.Q_CLUSTER.get("redis") else "orm"
    assert checks["broker"]["backend"] == expected_broker
    assert checks["broker"]["queued"] >= 0
    expected_storage = "s3" if os.environ.get("S2V_S3_BUCKET") else "filesystem"
    assert checks["storage"]["backend"] == expected_storage
    assert checks["provider"]["backend"] == "local"


def test_healthz_answers_probes_by_ip_over_plain_http(probe: Client):
    with override_settings(
        SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["studio.example.com"]
    ):
        response = probe.get("/healthz", HTTP_HOST="10.0.0.7")
        assert response.status_code == 200, response.content
        # The rest of the site still insists on both.
        assert probe.get("/accounts/login/", HTTP_HOST="10.0.0.7").status_code == 400


def test_an_unreachable_broker_is_a_503_that_names_it(probe: Client):
    secret_url = f"redis://:hunter2-broker@127.0.0.1:{free_port()}/0"
    with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "redis": secret_url}):
        response = probe.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["failing"] == ["broker"]
    assert body["checks"]["broker"]["error"].startswith("ConnectionError")
    assert "hunter2-broker" not in response.content.decode()


def test_unreachable_storage_is_a_503_that_names_it(probe: Client):
    from botocore.config import Config

    options = {
        "bucket_name": "s2v-media",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "region_name": "us-east-1",
        "access_key": "AKID-health",
        "secret_key": "hunter2-storage",
        "client_config": Config(
            connect_timeout=1, retries={"max_attempts": 1, "mode": "standard"}
        ),
    }
    storages = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    with override_settings(STORAGES=storages):
        response = probe.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["storage"]
    assert "EndpointConnectionError" in body["checks"]["storage"]["error"]
    assert "hunter2-storage" not in response.content.decode()


def test_an_unwritable_media_folder_is_a_503(probe: Client, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    storages = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": blocker / "media"},
        },
    }
    with override_settings(STORAGES=storages):
        response = probe.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["storage"]


def test_database_errors_are_reported_without_credentials(
    probe: Client, monkeypatch: pytest.MonkeyPatch
):
    def down() -> dict[str, Any]:
        raise RuntimeError(
            'connection to "postgresql://s2v:hunter2-db@db.internal/s2v" failed; '
            f"key {settings.SECRET_KEY}"
        )

    monkeypatch.setattr(health, "check_database", down)
    response = probe.get("/healthz")
    assert response.status_code == 503
    text = response.content.decode()
    assert response.json()["failing"] == ["database"]
    assert "hunter2-db" not in text and settings.SECRET_KEY not in text
    assert "db.internal" in text  # where it failed is still said


def test_an_unreachable_provider_degrades_but_stays_in_rotation(probe: Client):
    with override_settings(S2V_PROVIDER="emulator", S2V_EMULATOR_PORT=free_port()):
        response = probe.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["failing"] == ["provider"]
    assert body["checks"]["provider"]["backend"] == "emulator"
    assert "ConnectError" in body["checks"]["provider"]["error"]


# -- structured logs -------------------------------------------------------------------

LOG_SCRIPT = """
import logging
logging.getLogger("studio.probe").warning("hello %s", "world", extra={"job": 7})
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("studio.probe").exception("it broke\\non two lines")
logging.getLogger("django-q").error("from the task queue")
"""


def test_logs_are_one_json_object_a_line_with_s2v_log_json(tmp_path):
    result = manage(
        subprocess_env(tmp_path, S2V_LOG_JSON="true"), "shell", "-c", LOG_SCRIPT
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one object
    assert len(entries) == 3, lines
    hello, broke, queue = entries
    assert {"time", "level", "logger", "message"} <= set(hello)
    assert (hello["level"], hello["logger"], hello["message"]) == (
        "WARNING",
        "studio.probe",
        "hello world",
    )
    assert hello["job"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", hello["time"])
    assert broke["level"] == "ERROR" and broke["message"] == "it broke\non two lines"
    assert "ZeroDivisionError" in broke["exception"]
    assert queue["logger"] == "django-q"


def test_logs_are_plain_text_by_default(tmp_path):
    result = manage(subprocess_env(tmp_path), "shell", "-c", LOG_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "WARNING studio.probe: hello world" in result.stderr
    assert not result.stderr.lstrip().startswith("{")


# -- gunicorn, as the Procfile starts it ------------------------------------------------


def procfile_command(process: str) -> str:
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{process}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {process}: line in the Procfile")


@pytest.mark.cluster
def test_gunicorn_serves_the_production_site(tmp_path):
    """The Procfile's web line, in production mode, behind a TLS-ending proxy."""
    web = procfile_command("web")
    assert "gunicorn s2vsite.wsgi" in web
    port = free_port()
    studio = LiveStudio(
        tmp_path / "prod",
        env={
            "S2V_PRODUCTION": "true",
            "S2V_SECRET_KEY": STRONG_KEY,
            "S2V_ALLOWED_HOSTS": "127.0.0.1",
            "S2V_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            "S2V_LOG_JSON": "true",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
        },
        name="gunicorn studio",
    )
    studio.env["PATH"] = f"{Path(sys.executable).parent}:{studio.env['PATH']}"
    base = f"http://127.0.0.1:{port}"
    try:
        studio.prepare()
        studio.spawn_command("web", "bash", "-c", web)

        def answers() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        studio.wait_for(answers, timeout=90, what="gunicorn to answer")
        assert httpx.get(base + "/healthz").json()["status"] == "ok"
        # Plain HTTP is sent to HTTPS...
        plain = httpx.get(base + "/accounts/login/")
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://127.0.0.1:{port}/accounts/login/"
        # ...and HTTPS (said by the proxy) gets the hardened page.
        page = httpx.get(
            base + "/accounts/login/", headers={"X-Forwarded-Proto": "https"}
        )
        assert page.status_code == 200
        assert "max-age=31536000" in page.headers["strict-transport-security"]
        assert "upgrade-insecure-requests" in page.headers["content-security-policy"]
        assert "Secure" in page.headers["set-cookie"]
        # Collected, hashed static files, served by whitenoise for a long time.
        css = re.search(r'href="(/static/studio/studio\.[0-9a-f]{12}\.css)"', page.text)
        assert css, page.text
        static = httpx.get(
            base + css[1],
            headers={"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"},
        )
        assert static.status_code == 200
        assert "immutable" in static.headers["cache-control"]
        log = (studio.log_dir / "web.log").read_text()
        access = [
            json.loads(line) for line in log.splitlines() if "gunicorn.access" in line
        ]
        assert any("/healthz" in entry["message"] for entry in access), log
    except BaseException:
        print(studio.logs())  # noqa: T201
        raise
    finally:
        studio.stop()


def test_the_procfile_and_units_run_the_documented_commands():
    assert shlex.split(procfile_command("worker"))[-1] == "qcluster"
    assert shlex.split(procfile_command("dispatcher"))[-1] == "dispatcher"
    units = {p.name: p.read_text() for p in (REPO_ROOT / "deploy").glob("*.service")}
    assert set(units) == {
        "s2v-web.service",
        "s2v-qcluster.service",
        "s2v-dispatcher.service",
    }
    assert (
        "gunicorn s2vsite.wsgi -c deploy/gunicorn.conf.py -w 4"
        in units["s2v-web.service"]
    )
    assert "manage.py qcluster" in units["s2v-qcluster.service"]
    assert "manage.py dispatcher" in units["s2v-dispatcher.service"]
