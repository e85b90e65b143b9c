"""The /_emulator/ control and inspection API (no auth, not rate limited, not logged)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ._core import EmulatorCore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ok(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _guard(handler: Handler) -> Handler:
    """Turn bad input (invalid JSON, ValueError, TypeError) into a 400."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (ValueError, TypeError, KeyError) as exc:
            return _ok({"message": f"Bad control request: {exc}"}, 400)

    return wrapped


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return orjson.loads(raw) if raw.strip() else None


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() not in ("0", "false", "no", "")


def add_control_routes(app: web.Application, core: EmulatorCore) -> None:
    """Register every /_emulator/ route on ``app``."""

    async def health(request: web.Request) -> web.StreamResponse:
        return _ok({"status": "ok"})

    async def workspace(request: web.Request) -> web.StreamResponse:
        raw = core.workspace.snapshot_json(
            include_users=_flag(request, "users", True), external_id=request.query.get("external_id")
        )
        return web.Response(body=raw, content_type="application/json")

    async def requests(request: web.Request) -> web.StreamResponse:
        limit = request.query.get("limit")
        items = core.requests(
            endpoint=request.query.get("endpoint"), limit=int(limit) if limit is not None else None
        )
        return _ok({"requests": items})

    async def reset(request: web.Request) -> web.StreamResponse:
        core.reset()
        return _ok({"message": "reset"})

    async def faults(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await _body(request)
            if not isinstance(body, dict | list):
                raise ValueError("expected a fault object or a list of them")
            core.add_faults(body)
        elif request.method == "DELETE":
            core.faults.clear()
        return _ok({"faults": core.faults.pending()})

    async def users(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        specs = body if isinstance(body, list) else body.get("users") if isinstance(body, dict) else None
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise ValueError("expected a list of user objects")
        return _ok({"braze_ids": core.workspace.create_users(specs)}, 201)

    async def settings(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await _body(request)
            if not isinstance(body, dict):
                raise ValueError("expected an object of settings")
            core.update_settings(**body)
        return _ok(core.settings.to_json())

    r = app.router
    r.add_get("/_emulator/health", _guard(health))
    r.add_get("/_emulator/workspace", _guard(workspace))
    r.add_get("/_emulator/requests", _guard(requests))
    r.add_post("/_emulator/reset", _guard(reset))
    for method in ("GET", "POST", "DELETE"):
        r.add_route(method, "/_emulator/faults", _guard(faults))
    r.add_post("/_emulator/users", _guard(users))
    for method in ("GET", "POST"):
        r.add_route(method, "/_emulator/settings", _guard(settings))
