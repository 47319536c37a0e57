"""S2V Studio settings: one file, every deploy-specific value an S2V_* variable.

With nothing set, this is the embedded default: SQLite, django-q2's ORM broker,
local files under S2V_DATA_DIR and the local provider. S2V_DATABASE_URL,
S2V_REDIS_URL and S2V_S3_BUCKET switch to PostgreSQL, Redis and S3-compatible
storage; S2V_PRODUCTION (implied by S2V_DATABASE_URL) hardens the site for HTTPS
(README, "Deployment").
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Lets runtime code subscript Django's generic classes (ModelAdmin[Team]).
django_stubs_ext.monkeypatch()

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


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value


def env_secret(name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (mounted secrets)."""
    if path := env_str(f"{name}_FILE"):
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}") from exc
    return env_str(name)


def database_from_url(url: str) -> dict[str, Any]:
    """DATABASES["default"] from postgresql://user:password@host:port/name?options.

    Query parameters become connection options (sslmode=require, ...); a host
    that starts with %2F is a Unix socket directory.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(
            f"S2V_DATABASE_URL: unsupported scheme {parts.scheme!r}; "
            "use postgresql://user:password@host:5432/name"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("S2V_DATABASE_URL: the database name is missing")
    return {
        # Django picks psycopg 3 when it is installed (it is a dependency).
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
        # Keep connections between requests, but check them before reuse: a
        # restarted server or a failover must not cost a failed request.
        "CONN_MAX_AGE": env_int("S2V_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }


DATA_DIR = Path(env_str("S2V_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("S2V_DEBUG", default=False)

DATABASE_URL = env_secret("S2V_DATABASE_URL")
REDIS_URL = env_secret("S2V_REDIS_URL")
S3_BUCKET = env_str("S2V_S3_BUCKET")

# Production: a required secret key and host list, secure cookies, HSTS and
# HTTPS redirects. A shared database means a real deployment, so it implies
# production unless S2V_PRODUCTION=false (or S2V_DEBUG=true) says otherwise.
PRODUCTION = env_bool("S2V_PRODUCTION", default=bool(DATABASE_URL) and not DEBUG)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("S2V_DEBUG=true cannot be used with S2V_PRODUCTION=true")


def _secret_key() -> str:
    if key := env_secret("S2V_SECRET_KEY"):
        return key
    if PRODUCTION:
        # Every web process of a deployment must sign with the same key.
        raise ImproperlyConfigured(
            "S2V_SECRET_KEY (or S2V_SECRET_KEY_FILE) must be set in production, "
            "e.g. to the output of: python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'"
        )
    # The embedded default keeps a generated key beside its database, so sessions
    # survive restarts without anyone having to invent a secret.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
if PRODUCTION and not env_str("S2V_ALLOWED_HOSTS"):
    raise ImproperlyConfigured(
        "S2V_ALLOWED_HOSTS must be set in production, e.g. studio.example.com"
    )
ALLOWED_HOSTS = env_list("S2V_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("S2V_CSRF_TRUSTED_ORIGINS", [])

# HTTPS. Behind a proxy that terminates TLS, S2V_PROXY_SSL_HEADER names the
# header it sets (X-Forwarded-Proto: https); only set it when the proxy always
# overwrites that header, or clients could claim HTTPS.
if proxy_header := env_str("S2V_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + proxy_header.strip().upper().replace("-", "_"),
        "https",
    )
# How many proxies in front of the studio append to X-Forwarded-For. 0 (the
# default) ignores the header, which any client can send, and takes the
# connection's address; behind one proxy, its right-most entry is the client.
S2V_PROXY_COUNT = env_int("S2V_PROXY_COUNT", 0)
SECURE_SSL_REDIRECT = env_bool("S2V_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env_int("S2V_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("S2V_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("S2V_HSTS_PRELOAD", default=False)
# Preloading is a commitment for the whole domain: opt-in, and not a warning.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# The content security policy of every page (studio/security.py): only our own
# scripts and styles, no inline code. Spelled like Django 6's SECURE_CSP so the
# upgrade can drop the middleware. Images allow blob: (the upload preview) and
# data: (Pico's icons).
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "blob:", "data:"],
    "media-src": ["'self'"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if PRODUCTION:
    SECURE_CSP["upgrade-insecure-requests"] = []
# Added to the policy under /admin/ (studio/security.py).
S2V_CSP_ADMIN: dict[str, list[str]] = {}

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
    # Sign-in throttling (studio/signin.py).
    "axes",
    "studio",
]

MIDDLEWARE = [
    # First: load balancers probe /healthz by IP, before host checks and redirects.
    "studio.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "studio.security.ContentSecurityPolicyMiddleware",
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
    # Last: turns a locked-out sign-in into the studio's lockout page.
    "axes.middleware.AxesMiddleware",
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

if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
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

# Several studios may share one Redis: each keeps its queue and cache keys under
# its own prefix.
REDIS_PREFIX = env_str("S2V_REDIS_PREFIX", "s2v")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "studio.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:job-create"
LOGOUT_REDIRECT_URL = "login"
# Axes' backend comes first: it refuses a locked-out sign-in before any password
# is checked. Callers of authenticate() must pass the request.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
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


def s3_storage() -> dict[str, Any]:
    """STORAGES["default"] for S3-compatible storage (AWS S3, Alibaba OSS, MinIO).

    Objects stay private: url() gives presigned links (querystring_auth), which
    S2V_INPUT_URLS=storage hands to the provider; pages stream media through
    permission-checked views.
    """
    from botocore.config import Config

    config = Config(
        # virtual (bucket.host) for OSS and AWS, path (host/bucket) for MinIO.
        s3={
            "addressing_style": env_choice(
                "S2V_S3_ADDRESSING_STYLE", "auto", ("auto", "virtual", "path")
            )
        },
        # s3v4 everywhere; OSS's guide for boto3 also documents "s3" (V2).
        signature_version=env_choice(
            "S2V_S3_SIGNATURE_VERSION", "s3v4", ("s3v4", "s3")
        ),
        # botocore >= 1.36 adds CRC checksums and aws-chunked uploads by default,
        # which OSS, MinIO and other S3-compatible servers refuse; AWS does not
        # need them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S2V_S3_ENDPOINT_URL") or None,
            "region_name": env_str("S2V_S3_REGION") or None,
            # Empty keys: boto3's own chain (AWS_* variables, the machine's role).
            "access_key": env_str("S2V_S3_ACCESS_KEY_ID") or None,
            "secret_key": env_secret("S2V_S3_SECRET_ACCESS_KEY") or None,
            "custom_domain": env_str("S2V_S3_CUSTOM_DOMAIN") or None,
            "location": env_str("S2V_S3_LOCATION").strip("/"),
            "querystring_auth": True,
            "querystring_expire": env_int("S2V_S3_URL_EXPIRE_SECONDS", 3600),
            # Never replace an object: the same names mean the same files, as on disk.
            "file_overwrite": False,
            # Objects read through storage (zips, range requests, provider inputs)
            # spill to disk past 2 MB instead of sitting whole in memory.
            "max_memory_size": 2 * 1024 * 1024,
            "default_acl": None,  # the bucket's own (private) policy
            "client_config": config,
        },
    }


STORAGES = {
    "default": s3_storage()
    if S3_BUCKET
    else {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    # Production serves collected, hashed and compressed files (collectstatic on
    # each web machine); the embedded default serves static/ as it is.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CSRF_FAILURE_VIEW = "studio.web.common.csrf_failure"

# Uploads: larger files spill to disk. S2V_MAX_UPLOAD_MB caps one request; bigger
# requests are answered with a message before their body is read.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
S2V_MAX_UPLOAD_MB = env_int("S2V_MAX_UPLOAD_MB", 60)
# Reference videos are larger (DashScope's animate models take up to 200 MB,
# provider-api.md §7.1); MB here is 10^6 bytes, as in the providers' limits.
# The largest video the video check keeps; S2V_MAX_UPLOAD_MB still caps every
# request until the video upload's own route is given this cap.
S2V_MAX_VIDEO_MB = env_int("S2V_MAX_VIDEO_MB", 200)

# django-q2: the ORM broker, or Redis with S2V_REDIS_URL. `retry` must exceed
# `timeout`, or a long render is handed to a second worker while the first is
# still on it (ORM broker). A render of the longest allowed clip at 720P stays
# well inside `timeout`. The Redis broker hands each message out once and never
# redelivers it; a job whose worker died is taken back by the studio's sweep.
Q_CLUSTER: dict[str, Any] = {
    "name": REDIS_PREFIX if REDIS_URL else "s2v",
    # Studio's broker subclasses notice a killed cluster within seconds: the
    # ORM one releases its messages at once rather than after `retry`, and
    # with Redis its jobs are sent again (studio/broker.py).
    **(
        {"redis": REDIS_URL, "broker_class": "studio.broker.StudioRedis"}
        if REDIS_URL
        else {"orm": "default", "broker_class": "studio.broker.StudioORM"}
    ),
    "workers": env_int("S2V_Q_WORKERS", 2),
    "timeout": 900,
    "retry": 960,
    "max_attempts": 2,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.3,
    "label": "Task queue",
}

# The providers that check portraits and make videos, the default first:
# local, dashscope, emulator, wavespeed, wavespeed-emulator. "local" needs
# nothing else. S2V_PROVIDER (one name) is the older form of the same setting.
S2V_PROVIDER = env_str("S2V_PROVIDER", "local")
S2V_PROVIDERS = env_list("S2V_PROVIDERS", [S2V_PROVIDER])
S2V_PROVIDER = S2V_PROVIDERS[0] if S2V_PROVIDERS else S2V_PROVIDER
# A job whose worker has not reported for this long is taken back by the sweep.
S2V_STALE_SECONDS = env_int("S2V_STALE_SECONDS", 60)
# Renders' and conversions' scratch files; what a killed process left here is
# removed when a cluster starts or its job starts again.
S2V_SCRATCH_DIR = Path(env_str("S2V_SCRATCH_DIR", str(DATA_DIR / "scratch")))
# How many times one job may be started before the sweep gives up on it.
S2V_MAX_ATTEMPTS = env_int("S2V_MAX_ATTEMPTS", 2)
S2V_LOCAL_MAX_AUDIO_SECONDS = env_int("S2V_LOCAL_MAX_AUDIO_SECONDS", 120)
# Which price list applies (provider-api.md §2.3, §3.3): USD or CNY.
S2V_CURRENCY = env_str("S2V_CURRENCY", "USD").upper()


# DashScope (S2V_PROVIDERS has dashscope). The key is never logged or shown.
DASHSCOPE_API_KEY = env_secret("DASHSCOPE_API_KEY")
S2V_DASHSCOPE_BASE_URL = env_str(
    "S2V_DASHSCOPE_BASE_URL", "https://dashscope.aliyuncs.com/api/v1"
)
S2V_DASHSCOPE_WORKSPACE = env_str("S2V_DASHSCOPE_WORKSPACE")
# parameters.style: speech | sing | perform; not sent unless set.
S2V_DASHSCOPE_STYLE = env_str("S2V_DASHSCOPE_STYLE")
# Tasks one account runs at once (provider-api.md §3.3: 1 for wan2.2-s2v).
S2V_DASHSCOPE_CONCURRENCY = env_int("S2V_DASHSCOPE_CONCURRENCY", 1)
# How inputs reach the provider: upload (DashScope temporary upload), storage
# (presigned URLs of S3-compatible storage) or public (signed app links).
S2V_INPUT_URLS = env_str("S2V_INPUT_URLS", "upload")
S2V_PUBLIC_BASE_URL = env_str("S2V_PUBLIC_BASE_URL").rstrip("/")
# Polling: the documented ~15 s far from a task's expected end, faster near it.
S2V_POLL_INTERVAL = env_int("S2V_POLL_INTERVAL", 15)
S2V_POLL_FAST_INTERVAL = float(env_str("S2V_POLL_FAST_INTERVAL", "2"))
# How often the provider's task listing is reconciled with the ledger (manage.py
# reconcile does it at once). The listing reaches as far back as each provider
# keeps tasks (DashScope 24 h, WaveSpeed 7 days).
S2V_RECONCILE_MINUTES = env_int("S2V_RECONCILE_MINUTES", 60)
# Throttling and outages retry with backoff until this many minutes after queueing.
S2V_SUBMIT_DEADLINE_MINUTES = env_int("S2V_SUBMIT_DEADLINE_MINUTES", 360)
# A submit whose task id was lost, when the provider's listing cannot settle it,
# is marked for an admin and gives its slot back after at most this long.
S2V_LOST_SUBMIT_GRACE_MINUTES = env_int("S2V_LOST_SUBMIT_GRACE_MINUTES", 30)
S2V_RESULT_MAX_MB = env_int("S2V_RESULT_MAX_MB", 500)
# S2V_PROVIDER=emulator: `runstudio` starts the DashScope emulator on this port.
S2V_EMULATOR_PORT = env_int("S2V_EMULATOR_PORT", 8765)

# WaveSpeed (provider-api.md §9). The key is never logged or shown.
WAVESPEED_API_KEY = env_secret("WAVESPEED_API_KEY")
S2V_WAVESPEED_BASE_URL = env_str("S2V_WAVESPEED_BASE_URL", "https://api.wavespeed.ai")
# Tasks the account runs at once: its tier's limit (§9.6: Bronze 3, Silver 100).
S2V_WAVESPEED_CONCURRENCY = env_int("S2V_WAVESPEED_CONCURRENCY", 3)
# The longest clip sent in one task: the documents say 120 s and 10 minutes (§9.5).
S2V_WAVESPEED_MAX_AUDIO_SECONDS = env_int("S2V_WAVESPEED_MAX_AUDIO_SECONDS", 120)
# Whether WaveSpeed bills a task that completed with its output flagged by the
# content check (`has_nsfw_contents`). Its documents do not say: counting the
# money keeps the budget on the safe side until a bill shows otherwise.
S2V_WAVESPEED_NSFW_BILLED = env_bool("S2V_WAVESPEED_NSFW_BILLED", default=True)
# S2V_PROVIDERS has wavespeed-emulator: `runstudio` starts it on this port.
S2V_WAVESPEED_EMULATOR_PORT = env_int("S2V_WAVESPEED_EMULATOR_PORT", 8766)

# S2V_LOG_JSON: one JSON object a line (time, level, logger, message), for log
# collectors; runserver's request lines too.
S2V_LOG_JSON = env_bool("S2V_LOG_JSON", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "studio.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if S2V_LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("S2V_LOG_LEVEL", "INFO")},
    "loggers": {
        "django_q": {"level": "WARNING"},
        # Failed sign-ins and lockouts are warnings; each start's banner is not.
        "axes": {"level": "WARNING"},
        **(
            {"django.server": {"handlers": ["console"], "propagate": False}}
            if S2V_LOG_JSON
            else {}
        ),
    },
}

# Failed sign-ins (the studio's and /admin/'s) are counted per account and per
# client address in the database, so every web process and machine sees the
# same counts. Either reaching its limit refuses sign-ins for the cool-off,
# counted from the latest failure; a success forgives that account's failures.
S2V_SIGNIN_ACCOUNT_LIMIT = env_int("S2V_SIGNIN_ACCOUNT_LIMIT", 5)
# Higher: one office or mobile carrier can put many people behind one address.
S2V_SIGNIN_ADDRESS_LIMIT = env_int("S2V_SIGNIN_ADDRESS_LIMIT", 20)
S2V_SIGNIN_COOLOFF_MINUTES = env_int("S2V_SIGNIN_COOLOFF_MINUTES", 15)
if min(S2V_SIGNIN_ACCOUNT_LIMIT, S2V_SIGNIN_ADDRESS_LIMIT) < 1:
    raise ImproperlyConfigured("S2V_SIGNIN_*_LIMIT: use a whole number of at least 1")
if S2V_SIGNIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("S2V_SIGNIN_COOLOFF_MINUTES: use at least 1")
AXES_HANDLER = "studio.signin.SignInThrottle"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = S2V_SIGNIN_ACCOUNT_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=S2V_SIGNIN_COOLOFF_MINUTES)
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "studio.signin.client_address"
AXES_LOCKOUT_CALLABLE = "studio.signin.lockout_response"
# Axes' own sign-in log would grow by a row per sign-in; the attempts suffice.
AXES_DISABLE_ACCESS_LOG = True

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
