"""/healthz: can this process reach what it needs? JSON for load balancers and monitors.

200 when the database, the task broker and the storage answer (the provider
may be down: "degraded", since taking web servers out of rotation cannot fix
it and the queue waits); 503 naming the failing parts otherwise. Errors are
reported by kind and scrubbed of credentials; the details go to the log.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from studio import catalog

log = logging.getLogger(__name__)

PATH = "/healthz"
REQUIRED = ("database", "broker", "storage")
TIMEOUT = 3.0
# A load balancer probes every few seconds from each node; the provider is
# somebody else's service, asked at most this often per process.
PROVIDER_CACHE_SECONDS = 30.0
_provider_cache: dict[str, Any] = {}

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class HealthCheckMiddleware:
    """Answers /healthz before anything checks the Host header or redirects.

    Probes come by IP address and plain HTTP, and must not need a session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _run(check_database),
        "broker": _run(check_broker),
        "storage": _run(check_storage),
        "provider": check_provider(),
    }
    failing = [name for name, result in checks.items() if not result["ok"]]
    down = [name for name in failing if name in REQUIRED]
    status = "failing" if down else ("degraded" if failing else "ok")
    response = JsonResponse(
        {"status": status, "failing": failing, "checks": checks},
        status=503 if down else 200,
    )
    response["Cache-Control"] = "no-store"
    return response


def _run(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = {"ok": True, **check()}
    except Exception as exc:
        log.warning("health check %s failed", check.__name__, exc_info=True)
        result = {"ok": False, "error": describe(exc)}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"backend": connection.vendor}


def check_broker() -> dict[str, Any]:
    conf = settings.Q_CLUSTER
    if url := conf.get("redis"):
        import redis

        client = redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
        try:
            client.ping()
            # django-q2's Redis broker keeps its queue in this list.
            queued = client.llen(f"django_q:{conf['name']}:q")
        finally:
            client.close()
        return {"backend": "redis", "queued": queued}
    from django_q.models import OrmQ

    queued = OrmQ.objects.using(conf.get("orm", "default")).count()
    return {"backend": "orm", "queued": queued}


def check_storage() -> dict[str, Any]:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        location = Path(storage.location)
        # Django creates missing folders on the first save: the nearest existing
        # one must be a folder this process may write to.
        existing = next(p for p in (location, *location.parents) if p.exists())
        if not (existing.is_dir() and os.access(existing, os.W_OK)):
            raise PermissionError(f"the media folder is not writable: {location}")
        return {"backend": "filesystem"}
    if bucket := getattr(storage, "bucket_name", None):
        # HeadBucket: reachable, the bucket exists, and the key may list it
        # (which exists() needs too: without it S3 answers 403 for a missing key).
        cast(Any, storage).connection.meta.client.head_bucket(Bucket=bucket)
        return {"backend": "s3"}
    storage.exists(".healthz")
    return {"backend": type(storage).__name__}


def check_provider() -> dict[str, Any]:
    """Whether every enabled provider's API answers at all; cached per process."""
    remote = [spec for spec in catalog.enabled() if spec.remote]
    if not remote:
        return {"ok": True, "backend": catalog.LOCAL}
    results = {spec.name: _check_one(spec.name, spec.base_url) for spec in remote}
    failed = [name for name, result in results.items() if not result["ok"]]
    answer: dict[str, Any] = {
        "ok": not failed,
        "backend": ",".join(results),
        "providers": results,
    }
    if failed:
        answer["error"] = "; ".join(
            f"{name}: {results[name].get('error', 'failed')}" for name in failed
        )
    return answer


def _check_one(name: str, base_url: str) -> dict[str, Any]:
    now = time.monotonic()
    cached = _provider_cache.get(name)
    if cached and now - cached["at"] < PROVIDER_CACHE_SECONDS:
        return cast("dict[str, Any]", cached["result"])

    def provider_api() -> dict[str, Any]:
        # Any HTTP answer counts: reachability, not the key (that would be billed
        # or throttled); account errors show as "paused".
        httpx.get(base_url, timeout=TIMEOUT)
        from .models import ProviderAccount

        paused = ProviderAccount.objects.filter(
            provider=name, paused_at__isnull=False
        ).exists()
        return {"paused": paused}

    result = {"backend": name, **_run(provider_api)}
    if result["ok"] and result.get("paused"):
        result["ok"] = False
        result["error"] = "dispatching is paused by an account error"
    _provider_cache[name] = {"at": now, "result": result}
    return result


def describe(exc: BaseException) -> str:
    """The error's kind and message, without credentials, trimmed."""
    text = _URL_CREDENTIALS.sub("***@", str(exc))
    for secret in _secrets():
        text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {text}"[:300]


def _secrets() -> list[str]:
    values = [
        settings.SECRET_KEY,
        getattr(settings, "DASHSCOPE_API_KEY", ""),
        getattr(settings, "WAVESPEED_API_KEY", ""),
    ]
    for db in settings.DATABASES.values():
        values.append(db.get("PASSWORD", ""))
    for url in (settings.Q_CLUSTER.get("redis"), getattr(settings, "REDIS_URL", "")):
        if url and (match := re.search(r"://([^/@\s]+)@", str(url))):
            values.extend(match[1].split(":"))
    options = settings.STORAGES.get("default", {}).get("OPTIONS", {})
    values.append(options.get("secret_key") or "")
    return [value for value in values if value and len(value) >= 4]
