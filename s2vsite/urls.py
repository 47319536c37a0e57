from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from studio import health

urlpatterns = [
    # Also answered by studio.health.HealthCheckMiddleware, before host checks.
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("studio.urls")),
]
