"""A local WaveSpeedAI emulator (wan-2.2 speech-to-video, uploads, webhooks).

Standalone: nothing here imports Django settings or models. See `server.py`
for the routes, the control API and the documented choices.
"""

from __future__ import annotations

from .server import WaveSpeedEmulator
from .state import ApiKey, Config, sign

__all__ = ["ApiKey", "Config", "WaveSpeedEmulator", "sign"]
