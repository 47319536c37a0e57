"""A local DashScope emulator (wan2.2-s2v, wan2.2-s2v-detect, temporary upload).

Standalone: nothing here imports Django settings or models. See `server.py`
for the routes, the control API and the documented choices.
"""

from __future__ import annotations

from .server import Emulator
from .state import ApiKey, Config

__all__ = ["ApiKey", "Config", "Emulator"]
