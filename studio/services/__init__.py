"""The studio's writes, one module per area; every public service is importable from here.

errors (Rejected), inputs (uploads, portrait checks), jobs (create, retry, cancel,
variants, the local render path), recovery (lost workers and messages), team,
review, shares and gallery. Patch a name in the module that looks it up
(studio.services.jobs.async_task), not here.
"""

from __future__ import annotations

from .errors import CheckUnavailable, Rejected
from .gallery import favourite_set, jobs_for_download
from .inputs import (
    UPLOAD_AUDIO_FORMATS,
    UPLOAD_AUDIO_LABEL,
    AudioOutcome,
    PortraitOutcome,
    ReusedInputs,
    audio_problems,
    audio_submit,
    job_reuse,
    portrait_checker,
    portrait_recheck,
    portrait_submit,
    portrait_verdict,
)
from .jobs import (
    NOTES_MAX,
    PROMPT_MAX,
    SEED_MAX,
    TITLE_MAX,
    job_cancel,
    job_create,
    job_params,
    job_rename,
    job_retry,
    job_run,
    job_set_notes,
    job_variant,
    provider_choose,
)
from .recovery import jobs_resend_queued, jobs_sweep, jobs_take_back
from .review import (
    COMMENT_MAX,
    REVIEW_ROLES,
    can_change_job,
    can_review,
    job_comment,
    job_review,
    releasable,
)
from .shares import (
    SHARE_DAYS,
    SHARE_SALT,
    share_code,
    share_create,
    share_revoke,
    share_token,
)
from .team import (
    budget_update,
    member_add,
    member_remove,
    member_set_role,
    team_set_approval,
    team_set_providers,
)

__all__ = [
    "COMMENT_MAX",
    "NOTES_MAX",
    "PROMPT_MAX",
    "REVIEW_ROLES",
    "SEED_MAX",
    "SHARE_DAYS",
    "SHARE_SALT",
    "TITLE_MAX",
    "UPLOAD_AUDIO_FORMATS",
    "UPLOAD_AUDIO_LABEL",
    "AudioOutcome",
    "CheckUnavailable",
    "PortraitOutcome",
    "Rejected",
    "ReusedInputs",
    "audio_problems",
    "audio_submit",
    "budget_update",
    "can_change_job",
    "can_review",
    "favourite_set",
    "job_cancel",
    "job_comment",
    "job_create",
    "job_params",
    "job_rename",
    "job_retry",
    "job_reuse",
    "job_review",
    "job_run",
    "job_set_notes",
    "job_variant",
    "jobs_for_download",
    "jobs_resend_queued",
    "jobs_sweep",
    "jobs_take_back",
    "member_add",
    "member_remove",
    "member_set_role",
    "portrait_checker",
    "portrait_recheck",
    "portrait_submit",
    "portrait_verdict",
    "provider_choose",
    "releasable",
    "share_code",
    "share_create",
    "share_revoke",
    "share_token",
    "team_set_approval",
    "team_set_providers",
]
