"""``dinmo.yml``: destinations and state location, rendered with Jinja2 ``env_var()`` like dbt.

Each string value is rendered on its own, so a problem is reported with its exact key. The API
key is wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import yaml

from dbt_dinmo.errors import ConfigError, Problem

DINMO_FILE = "dinmo.yml"
DEFAULT_STATE_DIR = ".dinmo"
BATCH_RULES = ("75_per_array", "75_combined", "50_combined")
_FILE = "dinmo.yml"


class Secret:
    """A string that never shows itself in output, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (only for the Authorization header)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Destination:
    """One Braze workspace that activations send to."""

    name: str
    label: str
    rest_url: str
    dashboard_url: str
    api_key: Secret = field(repr=False)
    batch_rule: str = "75_per_array"
    max_in_flight: int = 8
    rate_limits: Mapping[str, str] | None = None  # overrides; None = documented limits
    rate_limits_off: bool = False
    timeout: float = 30.0

    @property
    def identity(self) -> str:
        """What ties synced state to one workspace: a new REST URL starts a new state."""
        return f"{self.name}|{self.rest_url}"


@dataclass(frozen=True)
class DinmoConfig:
    """The parsed ``dinmo.yml``."""

    path: Path
    destinations: dict[str, Destination]
    state_path: Path
    problems: dict[str, list[Problem]]  # per destination: problems that only matter if it is used
    file_problems: list[Problem]


class _EnvTracker:
    """``env_var(name, default)`` for Jinja, remembering which variables were missing."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.missing: list[str] = []

    def __call__(self, name: str, default: str | None = None) -> str:
        if name in self.env:
            return self.env[name]
        if default is not None:
            return str(default)
        self.missing.append(name)
        return ""


def _render(value: Any, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    if not isinstance(value, str) or "{" not in value:
        return value, []
    tracker = _EnvTracker(env)
    jenv = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    jenv.globals["env_var"] = tracker
    return jenv.from_string(value).render().strip(), tracker.missing


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where plain http is allowed)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_rest_url(url: str) -> str | None:
    """Return what is wrong with a Braze REST URL, or None."""
    if not url:
        return "is empty"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL such as https://rest.fra-01.braze.eu"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return f"{url!r} uses plain http; only https is allowed (http only for loopback hosts)"
    if url.endswith("/"):
        return f"{url!r} ends with a slash"
    if parts.query or parts.fragment:
        return f"{url!r} carries a query or fragment"
    return None


def load_config(
    project_dir: Path, dinmo_file: Path | None = None, env: Mapping[str, str] | None = None
) -> DinmoConfig:
    """Read and validate ``dinmo.yml``; raise ConfigError for file-level problems."""
    env = os.environ if env is None else env
    path = dinmo_file if dinmo_file is not None else project_dir / DINMO_FILE
    if not path.is_file():
        raise ConfigError(
            Problem(
                str(path),
                "-",
                "file not found.",
                f"create {DINMO_FILE} beside dbt_project.yml (see the README) or pass --dinmo-file PATH.",
            )
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(str(path), "-", f"is not valid YAML: {exc}")) from None
    if not isinstance(raw, dict):
        raise ConfigError(Problem(str(path), "-", "must be a mapping with a 'destinations' key."))
    file_problems: list[Problem] = []
    for key in raw:
        if key not in ("destinations", "state"):
            file_problems.append(
                Problem(_FILE, str(key), "unknown top-level key.", "use 'destinations' or 'state'.")
            )
    destinations: dict[str, Destination] = {}
    problems: dict[str, list[Problem]] = {}
    raw_dests = raw.get("destinations") or {}
    if not isinstance(raw_dests, dict) or not raw_dests:
        file_problems.append(
            Problem(_FILE, "destinations", "no destination is defined.", "add one, e.g. 'braze:'.")
        )
        raw_dests = {}
    for name, body in raw_dests.items():
        dest, dest_problems = _parse_destination(str(name), body, env)
        problems[str(name)] = dest_problems
        if dest is not None:
            destinations[str(name)] = dest
    state_raw = raw.get("state") or {}
    state_dir = DEFAULT_STATE_DIR
    if isinstance(state_raw, dict) and state_raw.get("path"):
        rendered, missing = _render(state_raw["path"], env)
        state_dir = str(rendered)
        for var in missing:
            file_problems.append(Problem(_FILE, "state.path", f"environment variable {var} is not set."))
    state_path = Path(state_dir)
    if not state_path.is_absolute():
        state_path = (project_dir / state_path).resolve()
    if file_problems:
        raise ConfigError(file_problems)
    return DinmoConfig(path, destinations, state_path, problems, file_problems)


_DEST_KEYS = {
    "type",
    "label",
    "rest_url",
    "dashboard_url",
    "api_key",
    "batch_rule",
    "max_in_flight",
    "rate_limits",
    "timeout",
}


def _parse_destination(
    name: str, body: Any, env: Mapping[str, str]
) -> tuple[Destination | None, list[Problem]]:
    where = _FILE
    key = f"destinations.{name}"
    if not isinstance(body, dict):
        return None, [Problem(where, key, "must be a mapping.", "see the README for the keys.")]
    problems: list[Problem] = []
    for k in body:
        if k not in _DEST_KEYS:
            problems.append(
                Problem(where, f"{key}.{k}", "unknown key.", f"known keys: {sorted(_DEST_KEYS)}.")
            )
    values: dict[str, Any] = {}
    for k, v in body.items():
        rendered, missing = _render(v, env)
        for var in missing:
            hint = (
                f"export {var}=<your Braze REST API key>"
                if k == "api_key"
                else f"export {var}=... or give env_var() a default."
            )
            problems.append(Problem(where, f"{key}.{k}", f"environment variable {var} is not set.", hint))
        values[k] = rendered
    if values.get("type", "braze") != "braze":
        problems.append(Problem(where, f"{key}.type", f"unknown type {values['type']!r}.", "use 'braze'."))
    rest_url = str(values.get("rest_url") or "")
    if "rest_url" not in values:
        problems.append(Problem(where, f"{key}.rest_url", "is missing.", "e.g. https://rest.fra-01.braze.eu"))
    elif not any(p.key == f"{key}.rest_url" for p in problems):
        issue = check_rest_url(rest_url)
        if issue:
            problems.append(
                Problem(
                    where,
                    f"{key}.rest_url",
                    issue + ".",
                    "use your instance's REST endpoint, e.g. https://rest.fra-01.braze.eu "
                    "(no trailing slash).",
                )
            )
    api_key = str(values.get("api_key") or "")
    source = _api_key_source(body.get("api_key"))
    if "api_key" not in values:
        problems.append(
            Problem(
                where,
                f"{key}.api_key",
                "is missing.",
                "add api_key: \"{{ env_var('BRAZE_API_KEY') }}\" (never the key itself).",
            )
        )
    elif source != "env_var":
        problems.append(
            Problem(
                where,
                f"{key}.api_key",
                "is written in the file; the key must come from an environment variable.",
                "use api_key: \"{{ env_var('BRAZE_API_KEY') }}\" and export BRAZE_API_KEY.",
            )
        )
    elif not api_key and not any(p.key == f"{key}.api_key" for p in problems):
        problems.append(Problem(where, f"{key}.api_key", "is empty.", "set the env var it reads."))
    batch_rule = str(values.get("batch_rule") or "75_per_array")
    if batch_rule not in BATCH_RULES:
        problems.append(
            Problem(
                where,
                f"{key}.batch_rule",
                f"unknown rule {batch_rule!r}.",
                f"use one of {', '.join(BATCH_RULES)} (see Braze's API usage dashboard).",
            )
        )
    max_in_flight = _int(values.get("max_in_flight", 8), f"{key}.max_in_flight", problems)
    timeout = _float(values.get("timeout", 30.0), f"{key}.timeout", problems)
    rate_raw = values.get("rate_limits")
    rate_off = rate_raw in ("off", False)
    rate_limits: dict[str, str] | None = None
    if isinstance(rate_raw, dict):
        rate_limits = {str(k): str(v) for k, v in rate_raw.items()}
    elif rate_raw not in (None, "off", False):
        problems.append(
            Problem(
                where,
                f"{key}.rate_limits",
                "must be a mapping such as {users.track: 3000/3s} or 'off'.",
            )
        )
    dest = Destination(
        name=name,
        label=str(values.get("label") or name),
        rest_url=rest_url,
        dashboard_url=str(values.get("dashboard_url") or "").rstrip("/"),
        api_key=Secret(api_key),
        batch_rule=batch_rule,
        max_in_flight=max(1, max_in_flight),
        rate_limits=rate_limits,
        rate_limits_off=rate_off,
        timeout=timeout,
    )
    return dest, problems


def _api_key_source(raw: Any) -> str:
    if isinstance(raw, str) and "env_var(" in raw:
        return "env_var"
    return "literal"


def _int(value: Any, key: str, problems: list[Problem]) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.append(Problem(_FILE, key, f"must be an integer, got {value!r}."))
        return 1


def _float(value: Any, key: str, problems: list[Problem]) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        problems.append(Problem(_FILE, key, f"must be a number, got {value!r}."))
        return 30.0
