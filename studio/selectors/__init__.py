"""The studio's reads, one module per area; every public selector is importable from here.

teams, gallery, providers (the new-video form's choices), progress (queue
positions, ETA), spend, review (one job's panels), shares and notifications.
"""

from __future__ import annotations

from .gallery import (
    DATE_MAX,
    DATE_MIN,
    DATE_RANGE_HINT,
    SORTS,
    GalleryFilters,
    gallery_card,
    gallery_jobs,
)
from .notifications import NOTIFICATIONS_SHOWN, notifications_for, unread_count
from .progress import (
    DEFAULT_WORK_RATIO,
    HISTORY_SIZE,
    JobProgress,
    expected_wait,
    job_progress,
    queue_positions,
    queue_positions_all,
    work_ratio,
)
from .providers import (
    Choice,
    check_provider_name,
    generation_choices,
    provider_names,
    widest_limits,
)
from .review import JobPanels, job_panels
from .shares import share_for_public
from .spend import (
    BadMonth,
    SpendRow,
    jobs_marked_for_admin,
    ledger,
    month_bounds,
    outside_billing,
    spend_by,
    spend_per_team,
    spent_for_nothing,
)
from .teams import membership_for, team_admins, team_authors, team_providers, user_teams

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "DATE_RANGE_HINT",
    "DEFAULT_WORK_RATIO",
    "HISTORY_SIZE",
    "NOTIFICATIONS_SHOWN",
    "SORTS",
    "BadMonth",
    "Choice",
    "GalleryFilters",
    "JobPanels",
    "JobProgress",
    "SpendRow",
    "check_provider_name",
    "expected_wait",
    "gallery_card",
    "gallery_jobs",
    "generation_choices",
    "job_panels",
    "job_progress",
    "jobs_marked_for_admin",
    "ledger",
    "membership_for",
    "month_bounds",
    "notifications_for",
    "outside_billing",
    "provider_names",
    "queue_positions",
    "queue_positions_all",
    "share_for_public",
    "spend_by",
    "spend_per_team",
    "spent_for_nothing",
    "team_admins",
    "team_authors",
    "team_providers",
    "unread_count",
    "user_teams",
    "widest_limits",
    "work_ratio",
]
