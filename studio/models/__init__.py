"""The studio's models, one module per area; every model is importable from here.

teams (users, teams, roles), inputs (portraits, audio, videos, portrait checks), jobs
(jobs and their provider tasks), money (prices, ledger, budgets, provider
accounts, reconciliations), review (favourites, reviews, comments, shares),
notifications, queue (the ORM broker's clusters and leases).
"""

from __future__ import annotations

from .inputs import (
    AudioClip,
    FaceCheck,
    InputFile,
    Portrait,
    VideoClip,
    audio_upload_to,
    portrait_upload_to,
    video_upload_to,
)
from .jobs import GenerationJob, Task, result_upload_to
from .money import (
    Budget,
    LedgerEntry,
    Price,
    ProviderAccount,
    Reconciliation,
    RemoteUpload,
)
from .notifications import Notification
from .queue import QueueCluster, QueueLease
from .review import Favourite, JobComment, JobReview, ShareLink
from .teams import Membership, Team, User

__all__ = [
    "AudioClip",
    "Budget",
    "FaceCheck",
    "Favourite",
    "GenerationJob",
    "InputFile",
    "JobComment",
    "JobReview",
    "LedgerEntry",
    "Membership",
    "Notification",
    "Portrait",
    "Price",
    "ProviderAccount",
    "QueueCluster",
    "QueueLease",
    "Reconciliation",
    "RemoteUpload",
    "ShareLink",
    "Task",
    "Team",
    "User",
    "VideoClip",
    "audio_upload_to",
    "portrait_upload_to",
    "result_upload_to",
    "video_upload_to",
]
