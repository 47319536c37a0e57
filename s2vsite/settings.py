"""S2V Studio settings: one file, every deploy-specific value an S2V_* variable.

With nothing set, this is the embedded default: SQLite, django-q2's ORM broker,
local files under S2V_DATA_DIR and the local engine.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.getenv(name, "") or default


def env_bool(name: str, default: bool) -> bool:
    value = os.getenv(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ImproperlyConfigured(f"{name}={value!r}: use 'true' or 'false'")
    return value in ("true", "1", "yes")


def env_int(name: str, default: int) -> int:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected a whole number"
        ) from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DATA_DIR = Path(env_str("S2V_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("S2V_DEBUG", default=False)


def _secret_key() -> str:
    if key := env_str("S2V_SECRET_KEY"):
        return key
    # The embedded default keeps a generated key beside its database, so sessions
    # survive restarts without anyone having to invent a secret.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("S2V_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("S2V_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "studio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "studio.middleware.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "studio.middleware.ActiveTeamMiddleware",
]

ROOT_URLCONF = "s2vsite.urls"
WSGI_APPLICATION = "s2vsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.studio",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        # Web and worker processes share the file: wait for locks instead of
        # failing at once, and let readers run beside the writer (WAL).
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

AUTH_USER_MODEL = "studio.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:job-create"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("S2V_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"  # collectstatic target
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = DATA_DIR / "media"
# No MEDIA_URL on purpose: media is served only through permission-checked views.

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = True  # serve from static/ without collectstatic in dev

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CSRF_FAILURE_VIEW = "studio.views.csrf_failure"

# Uploads: larger files spill to disk. S2V_MAX_UPLOAD_MB caps one request; bigger
# requests are answered with a message before their body is read.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
S2V_MAX_UPLOAD_MB = env_int("S2V_MAX_UPLOAD_MB", 60)

# django-q2 with the ORM broker. `retry` must exceed `timeout`, or a long render
# is handed to a second worker while the first is still on it. A render of the
# longest allowed clip at 720P stays well inside `timeout`.
Q_CLUSTER = {
    "name": "s2v",
    "orm": "default",
    "workers": env_int("S2V_Q_WORKERS", 2),
    "timeout": 900,
    "retry": 960,
    "max_attempts": 2,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.3,
    "label": "Task queue",
}

# The engine that checks portraits and makes videos: "local" needs nothing else.
S2V_PROVIDER = env_str("S2V_PROVIDER", "local")
# A job whose worker has not reported for this long is taken back by the sweep.
S2V_STALE_SECONDS = env_int("S2V_STALE_SECONDS", 60)
# How many times one job may be started before the sweep gives up on it.
S2V_MAX_ATTEMPTS = env_int("S2V_MAX_ATTEMPTS", 2)
S2V_LOCAL_MAX_AUDIO_SECONDS = env_int("S2V_LOCAL_MAX_AUDIO_SECONDS", 120)
# Which price list applies (provider-api.md §2.3, §3.3): USD or CNY.
S2V_CURRENCY = env_str("S2V_CURRENCY", "USD").upper()


def _dashscope_api_key() -> str:
    if path := env_str("DASHSCOPE_API_KEY_FILE"):
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"DASHSCOPE_API_KEY_FILE: cannot read {path}") from exc
    return env_str("DASHSCOPE_API_KEY")


# DashScope (S2V_PROVIDER=dashscope). The key is never logged or shown.
DASHSCOPE_API_KEY = _dashscope_api_key()
S2V_DASHSCOPE_BASE_URL = env_str(
    "S2V_DASHSCOPE_BASE_URL", "https://dashscope.aliyuncs.com/api/v1"
)
S2V_DASHSCOPE_WORKSPACE = env_str("S2V_DASHSCOPE_WORKSPACE")
S2V_DASHSCOPE_STYLE = env_str("S2V_DASHSCOPE_STYLE")  # speech | sing | perform; off if unset
# Tasks one account runs at once (provider-api.md §3.3: 1 for wan2.2-s2v).
S2V_DASHSCOPE_CONCURRENCY = env_int("S2V_DASHSCOPE_CONCURRENCY", 1)
# How inputs reach the provider: upload (DashScope temporary upload), storage
# (presigned URLs of S3-compatible storage) or public (signed app links).
S2V_INPUT_URLS = env_str("S2V_INPUT_URLS", "upload")
S2V_PUBLIC_BASE_URL = env_str("S2V_PUBLIC_BASE_URL").rstrip("/")
# Polling: the documented ~15 s far from a task's expected end, faster near it.
S2V_POLL_INTERVAL = env_int("S2V_POLL_INTERVAL", 15)
S2V_POLL_FAST_INTERVAL = float(env_str("S2V_POLL_FAST_INTERVAL", "2"))
# Throttling and outages retry with backoff until this many minutes after queueing.
S2V_SUBMIT_DEADLINE_MINUTES = env_int("S2V_SUBMIT_DEADLINE_MINUTES", 360)
S2V_RESULT_MAX_MB = env_int("S2V_RESULT_MAX_MB", 500)
# S2V_PROVIDER=emulator: `runstudio` starts the DashScope emulator on this port.
S2V_EMULATOR_PORT = env_int("S2V_EMULATOR_PORT", 8765)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("S2V_LOG_LEVEL", "INFO")},
    "loggers": {"django_q": {"level": "WARNING"}},
}

# Email for notifications: printed to the console unless an SMTP server is set.
if env_str("S2V_SMTP_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("S2V_SMTP_HOST")
    EMAIL_PORT = env_int("S2V_SMTP_PORT", 587)
    EMAIL_HOST_USER = env_str("S2V_SMTP_USER")
    EMAIL_HOST_PASSWORD = env_str("S2V_SMTP_PASSWORD")
    EMAIL_USE_SSL = env_bool("S2V_SMTP_SSL", default=False)  # implicit TLS, port 465
    EMAIL_USE_TLS = env_bool("S2V_SMTP_TLS", default=not EMAIL_USE_SSL)  # STARTTLS
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("S2V_EMAIL_FROM", "S2V Studio <studio@localhost>")
