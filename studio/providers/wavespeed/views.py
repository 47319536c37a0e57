"""WaveSpeed's task-finished callbacks (provider-api.md §9.6): a hint to poll now.

A callback is verified against the signing secret of each WaveSpeed provider
configured here; its body is never taken as the result. A good one for a task
the studio holds asks the queue's poll for that job at once; duplicate or
late callbacks only cause one more poll. Unknown ids are logged and ignored.
"""

from __future__ import annotations

import json
import logging
import time

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_q.tasks import async_task

from studio import catalog
from studio.models import GenerationJob, Task
from studio.providers import get_provider
from studio.queue.poll import POLL_LEASE

from .client import WaveSpeedError, parse_prediction
from .provider import WaveSpeedProvider
from .webhooks import verify

log = logging.getLogger(__name__)

# A prediction with its input and output URLs is a few kB; nothing needs more.
MAX_BODY_BYTES = 256 * 1024


def _providers() -> list[WaveSpeedProvider]:
    """The WaveSpeed providers enabled here (S2V_PROVIDERS) and configured."""
    found: list[WaveSpeedProvider] = []
    try:
        names = catalog.enabled_names()
    except ImproperlyConfigured:
        return found
    for name in names:
        try:
            if catalog.provider(name).vendor != "wavespeed":
                continue
            provider = get_provider(name)
        except (ImproperlyConfigured, catalog.UnknownChoice):
            continue
        if isinstance(provider, WaveSpeedProvider):
            found.append(provider)
    return found


def _signed_by(
    providers: list[WaveSpeedProvider], request: HttpRequest, raw: bytes, now: float
) -> tuple[list[WaveSpeedProvider], bool]:
    """The providers whose secret signed this callback (normally one), and
    whether any secret could be had at all (WaveSpeed may be unreachable)."""
    headers = dict(request.headers.items())
    signed = []
    had_secret = False
    for provider in providers:
        try:
            secret = provider.webhook_secret()
            had_secret = True
            if not verify(headers, raw, secret, now):
                # The secret may have been rotated: ask again, now and then.
                fresh = provider.webhook_secret(refresh=True)
                if fresh == secret or not verify(headers, raw, fresh, now):
                    continue
        except Exception:
            log.warning("wavespeed webhook: no signing secret for %s", provider.name)
            continue
        signed.append(provider)
    return signed, had_secret


@csrf_exempt
@require_POST
def wavespeed_webhook(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return HttpResponse("Too large.", status=413, content_type="text/plain")
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return HttpResponse("Too large.", status=413, content_type="text/plain")
    providers = _providers()
    if not providers:
        return HttpResponse(
            "WaveSpeed is not enabled here.", status=404, content_type="text/plain"
        )
    signed, had_secret = _signed_by(providers, request, raw, time.time())
    if not signed and not had_secret:
        # Not the caller's fault: the secret could not be fetched. Polling
        # finds the task anyway; a retried callback may find the secret.
        log.warning("wavespeed webhook: no signing secret to verify with")
        response = HttpResponse(
            "Cannot verify now.", status=503, content_type="text/plain"
        )
        response["Retry-After"] = "60"
        return response
    if not signed:
        log.warning(
            "wavespeed webhook refused: bad, old or unverifiable signature (id %r)",
            request.headers.get("webhook-id", "")[:64],
        )
        return HttpResponse("Bad signature.", status=401, content_type="text/plain")
    try:
        prediction = parse_prediction(json.loads(raw))
    except (ValueError, WaveSpeedError):
        return HttpResponse("Unreadable body.", status=400, content_type="text/plain")
    names = [provider.name for provider in signed]
    followed = list(
        Task.objects.filter(
            provider__in=names,
            remote_id=prediction.id,
            job__remote_task_id=prediction.id,
            job__status__in=GenerationJob.IN_FLIGHT,
        ).values_list("pk", "job_id")
    )
    if not followed:
        log.info(
            "wavespeed webhook for %s (%s): no job in flight holds it; ignored",
            prediction.id,
            prediction.status,
        )
        return HttpResponse("Ignored.", content_type="text/plain")
    for task_id, job_id in followed:
        if job_id is not None:
            poll_now(task_id, job_id)
    return HttpResponse("OK.", content_type="text/plain")


def poll_now(task_id: int, job_id: int) -> None:
    """Hand the task's poll to a worker now, leased as the queue's tick does.

    The lease keeps the tick from handing out the same poll meanwhile; should
    the hand-over fail, the poll is left due now for the tick to send.
    """
    now = timezone.now()
    Task.objects.filter(pk=task_id).update(next_poll_at=now + POLL_LEASE)
    try:
        async_task("studio.tasks.job_poll", job_id, group="provider")
    except Exception:
        log.exception("wavespeed webhook: could not enqueue the poll of job %s", job_id)
        Task.objects.filter(pk=task_id).update(next_poll_at=now)
