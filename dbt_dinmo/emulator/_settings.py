"""Emulator settings: API keys, batch mode, limits, rate-limit buckets and persistence."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

BatchMode = Literal["legacy", "combined75", "mau50"]
BATCH_MODES: tuple[str, ...] = ("legacy", "combined75", "mau50")

#: Endpoint path -> required API key permission (braze-api.md section 2).
PERMISSIONS: dict[str, str] = {
    "/users/track": "users.track",
    "/users/delete": "users.delete",
    "/users/export/ids": "users.export.ids",
    "/subscription/status/set": "subscription.status.set",
    "/v2/subscription/status/set": "subscription.status.set",
    "/users/alias/new": "users.alias.new",
    "/users/alias/update": "users.alias.update",
    "/users/identify": "users.identify",
}

#: Endpoint path -> rate-limit bucket (section 5.1). Unlisted paths use "default".
BUCKETS: dict[str, str] = {
    "/users/track": "users.track",
    "/users/delete": "users.delete",
    "/users/alias/new": "users.delete",
    "/users/alias/update": "users.delete",
    "/users/identify": "users.delete",
    "/users/merge": "users.delete",
    "/users/export/ids": "users.export.ids",
    "/subscription/status/set": "subscription.status.set",
    "/v2/subscription/status/set": "subscription.status.set",
}

#: Bucket -> (requests, window seconds); None means unlimited.
RateLimits = Mapping[str, "tuple[int, float] | None"]

DEFAULT_RATE_LIMITS: dict[str, tuple[int, float] | None] = {
    "users.track": (3000, 3.0),
    "users.delete": (20000, 60.0),  # shared by delete, alias/new, alias/update, identify, merge
    "users.export.ids": (250, 60.0),
    "subscription.status.set": (5000, 60.0),  # shared by v1 and v2
    "default": (250000, 3600.0),
}

_PERMISSION_RE = re.compile(r"^[a-z_][a-z0-9_.*]*$")


def parse_api_keys(spec: str) -> dict[str, frozenset[str] | None]:
    """Parse ``"key1;key2=users.track,users.delete"``: a bare key has every permission."""
    keys: dict[str, frozenset[str] | None] = {}
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, perms = part.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"empty API key in {part!r}")
        if not sep:
            keys[key] = None
            continue
        names = frozenset(p.strip() for p in perms.split(",") if p.strip())
        bad = sorted(p for p in names if not _PERMISSION_RE.match(p))
        if bad:
            raise ValueError(f"invalid permission name(s) for an API key: {', '.join(bad)}")
        keys[key] = names
    return keys


def _coerce_rate_limits(value: Any) -> dict[str, tuple[int, float] | None] | None:
    """Defaults overridden by ``value``; ``None`` disables rate limiting entirely."""
    if value is None:
        return None
    merged = dict(DEFAULT_RATE_LIMITS)
    for bucket, limit in dict(value).items():
        if limit is None:
            merged[str(bucket)] = None
            continue
        count, window = limit
        if int(count) < 1 or float(window) <= 0:
            raise ValueError(f"rate limit for {bucket!r} must be a positive (count, seconds)")
        merged[str(bucket)] = (int(count), float(window))
    return merged


def _coerce_api_keys(value: Any) -> dict[str, frozenset[str] | None] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_api_keys(value)
    return {str(k): None if v is None else frozenset(v) for k, v in dict(value).items()}


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves. Immutable: use :meth:`replace` to derive a changed copy.

    ``api_keys`` maps each accepted key to its permissions (``None`` = all). ``api_keys=None``
    accepts any non-empty bearer key with every permission.
    """

    api_keys: Mapping[str, frozenset[str] | None] | None = None
    echo_key_on_401: bool = True
    batch_mode: BatchMode = "legacy"
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limits: Mapping[str, tuple[int, float] | None] | None = field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS)
    )
    export_requires_fields: bool = True
    unknown_subscription_ids: Literal["ignore", "error"] = "ignore"
    delete_one_identifier_type: bool = False
    alias_events_create: bool = False
    string_array_cap: int = 500
    max_ids_per_request: int = 50
    request_log_size: int = 10000
    data_file: str | os.PathLike[str] | None = None  # stored as str
    save_interval: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "api_keys", _coerce_api_keys(self.api_keys))
        set_(self, "rate_limits", _coerce_rate_limits(self.rate_limits))
        if self.data_file is not None:
            set_(self, "data_file", os.fspath(self.data_file))
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {', '.join(BATCH_MODES)}")
        if self.unknown_subscription_ids not in ("ignore", "error"):
            raise ValueError("unknown_subscription_ids must be 'ignore' or 'error'")
        for name in ("max_body_bytes", "string_array_cap", "max_ids_per_request"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.request_log_size < 0:
            raise ValueError("request_log_size must be >= 0")

    @property
    def batch_limits(self) -> tuple[int | None, int | None]:
        """(per-array limit, combined limit) for /users/track."""
        if self.batch_mode == "legacy":
            return 75, None
        return None, 75 if self.batch_mode == "combined75" else 50

    def replace(self, **changes: Any) -> EmulatorSettings:
        """A copy with ``changes`` applied (validated like the constructor)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown emulator setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON view; API keys are listed by permission count only, never by value."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["api_keys"] = None if self.api_keys is None else len(self.api_keys)
        if self.rate_limits is not None:
            data["rate_limits"] = {k: None if v is None else list(v) for k, v in self.rate_limits.items()}
        return data

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        keys_var: str = "DINMO_EMULATOR_API_KEYS",
        full_key_var: str | None = "BRAZE_API_KEY",
        **overrides: Any,
    ) -> EmulatorSettings:
        """Settings whose keys come from ``keys_var`` (see :func:`parse_api_keys`) plus the
        full-permission key in ``full_key_var``. No key configured at all: any key is accepted.
        """
        env = os.environ if env is None else env
        keys = parse_api_keys(env.get(keys_var, ""))
        if full_key_var and env.get(full_key_var, "").strip():
            keys[env[full_key_var].strip()] = None
        return cls(api_keys=keys or None, **overrides)
