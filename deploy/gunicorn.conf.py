"""gunicorn's settings for S2V Studio (`gunicorn s2vsite.wsgi -c deploy/gunicorn.conf.py`).

Command-line flags win over these: -w (workers) and -b (address) are given
where the command is written (Procfile, deploy/s2v-web.service).
"""

from __future__ import annotations

import os

wsgi_app = "s2vsite.wsgi"
# Checks and conversions run inside requests (portrait check, audio
# conversion, and with DashScope an upload to the provider), and uploads reach
# 60 MB: more than gunicorn's default 30 s must be allowed.
timeout = 120
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then: image and video libraries hold on to memory.
max_requests = 1000
max_requests_jitter = 100
# Heartbeat files in memory, not on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn >= 25's runtime control socket: one fixed path per user, which several
# servers on one machine would fight over; systemd or the platform manages us.
control_socket_disable = True
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("S2V_LOG_LEVEL", "info").lower()

if os.environ.get("S2V_LOG_JSON", "").strip().lower() in ("true", "1", "yes"):
    # gunicorn's own lines (start, workers, access) as one JSON object a line,
    # like the application's (studio/logging.py).
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "studio.logging.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "propagate": False},
        },
    }
