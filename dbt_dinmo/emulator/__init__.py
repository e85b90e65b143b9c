"""A faithful local Braze REST API for tests and demos (see braze-api.md section 13).

``EmulatorServer`` runs it on a background thread; ``serve_forever`` runs it in the foreground
for ``dbt-dinmo emulator``; ``Workspace`` is the thread-safe state behind both.
"""

from __future__ import annotations

from ._core import EmulatorCore
from ._faults import FAULT_KINDS, Fault
from ._server import DEFAULT_PORT, EmulatorServer, build_app, serve_forever
from ._settings import (
    BUCKETS,
    DEFAULT_RATE_LIMITS,
    PERMISSIONS,
    EmulatorSettings,
    parse_api_keys,
)
from ._workspace import TrackResult, Workspace

__all__ = [
    "BUCKETS",
    "DEFAULT_PORT",
    "DEFAULT_RATE_LIMITS",
    "FAULT_KINDS",
    "PERMISSIONS",
    "EmulatorCore",
    "EmulatorServer",
    "EmulatorSettings",
    "Fault",
    "TrackResult",
    "Workspace",
    "build_app",
    "parse_api_keys",
    "serve_forever",
]
