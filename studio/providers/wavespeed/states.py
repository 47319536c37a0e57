"""WaveSpeed's task words as the studio's states (provider-api.md §9.3)."""

from __future__ import annotations

from studio.providers.base import TaskState

# The provider's words (§9.3; the SDK's extra terminal words) as the studio's
# states. A word it does not know is a failure.
STATES = {
    "created": TaskState.PENDING,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.FAILED,
    "canceled": TaskState.FAILED,
    "timeout": TaskState.FAILED,
    "deleted": TaskState.EXPIRED,
}


def state_of(word: str) -> TaskState:
    """The studio's state for a WaveSpeed word; a word it does not know is a failure."""
    return STATES.get(word.strip().lower(), TaskState.FAILED)
