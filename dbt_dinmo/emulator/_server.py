"""The aiohttp app, :class:`EmulatorServer` (background thread) and :func:`serve_forever`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from ._control import add_control_routes
from ._core import EmulatorCore, log
from ._endpoints import ENDPOINTS, BadRequest
from ._faults import Fault
from ._settings import BUCKETS, PERMISSIONS, EmulatorSettings
from ._workspace import Workspace

DEFAULT_PORT = 4010
_CLIENT_MAX_SIZE = 1 << 30  # the emulator enforces settings.max_body_bytes itself


def _json(status: int, body: dict[str, Any], hdrs: Mapping[str, str]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=hdrs)


def _hang_up(request: web.Request) -> web.Response:
    """Close the connection without sending any response."""
    request.protocol.force_close()
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)  # never written: the transport is closing


class _Api:
    """Handlers for the Braze endpoints."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    async def handle(self, request: web.Request) -> web.StreamResponse:
        core, path = self.core, request.path.rstrip("/")
        length = request.content_length
        raw: bytes | None = None  # None: larger than max_body_bytes, left unread
        if length is None or length <= core.settings.max_body_bytes:
            try:
                raw = await request.read()
            except ConnectionError:  # the client went away mid-body: nothing to do
                return web.Response(status=400)
        fault = core.faults.take(path)
        if fault is not None:
            log.debug("emulator fault %s on %s", fault.kind, path)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind != "lost_ack":
            return self._fault(request, path, fault, raw)
        status, body, hdrs = self._process(request, path, raw)
        if fault is not None:  # lost_ack: applied above, acknowledgement lost
            core.log_request(path, "lost_ack", raw)
            return _hang_up(request)
        core.log_request(path, status, raw)
        return _json(status, body, hdrs)

    def _fault(self, request: web.Request, path: str, fault: Fault, raw: bytes | None) -> web.StreamResponse:
        bucket = BUCKETS.get(path, "default")
        if fault.kind == "drop":
            self.core.log_request(path, "dropped", raw)
            return _hang_up(request)
        if fault.kind == "rate_limit":
            self.core.log_request(path, 429, raw)
            hdrs = self.core.limiter.exhausted(bucket, fault.seconds)
            return _json(429, {"message": fault.message or "Too Many Requests"}, hdrs)
        self.core.log_request(path, fault.status, raw)
        hdrs = self.core.limiter.check(bucket, consume=False).headers
        return _json(fault.status, {"message": fault.body_message}, hdrs)

    def _process(
        self, request: web.Request, path: str, raw: bytes | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Auth, size, rate limit, JSON and the endpoint itself."""
        core, settings = self.core, self.core.settings
        bucket = BUCKETS.get(path, "default")
        header = request.headers.get("Authorization", "")
        key = header[7:] if header[:7].lower() == "bearer " else header
        keys = settings.api_keys
        if not key.strip() or (keys is not None and key not in keys):
            message = "Invalid API key"
            if settings.echo_key_on_401 and key:
                message = f"Invalid API key: {key}"
            return 401, {"message": message}, core.limiter.check(bucket, consume=False).headers
        permissions = None if keys is None else keys[key]
        needed = PERMISSIONS[path]
        if permissions is not None and needed not in permissions:
            body = {"message": f"Access Denied: API key lacks permission {needed}"}
            return 403, body, core.limiter.check(bucket, consume=False).headers
        if raw is None or len(raw) > settings.max_body_bytes:
            body = {"message": "Request Entity Too Large"}
            return 413, body, core.limiter.check(bucket, consume=False).headers
        decision = core.limiter.check(bucket)
        if not decision.allowed:
            return 429, {"message": "Too Many Requests"}, decision.headers
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, {"message": "Invalid JSON in request body"}, decision.headers
        try:
            status, body = ENDPOINTS[path](core.workspace, settings, data)
        except BadRequest as exc:
            status, body = 400, exc.body
        return status, body, decision.headers


def build_app(core: EmulatorCore) -> web.Application:
    """The aiohttp application serving the Braze endpoints and /_emulator/ control routes."""
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    api = _Api(core)
    for path in ENDPOINTS:
        app.router.add_post(path, api.handle)
    add_control_routes(app, core)

    async def not_found(request: web.Request) -> web.Response:
        hdrs = core.limiter.check("default", consume=False).headers
        return _json(404, {"message": "Not Found"}, hdrs)

    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


async def run_app(
    core: EmulatorCore,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; autosave when dirty; save once more on the way out."""
    runner = web.AppRunner(build_app(core), access_log=None, handle_signals=False)
    await runner.setup()
    saver: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = runner.addresses[0][1]
        if core.settings.data_file:
            saver = asyncio.create_task(_autosave(core))
        if on_started is not None:
            on_started(bound)
        await stop.wait()
    finally:
        if saver is not None:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
        await runner.cleanup()
        core.save()


async def _autosave(core: EmulatorCore) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(core.settings.save_interval)
        if core.dirty:
            try:
                await loop.run_in_executor(None, core.save)
            except OSError:
                log.exception("could not save the emulator workspace")


class EmulatorServer:
    """An emulator on a background thread. ``with EmulatorServer(settings) as emu: emu.url``."""

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workspace: Workspace | None = None,
    ) -> None:
        self.core = EmulatorCore(settings, workspace)
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def workspace(self) -> Workspace:
        return self.core.workspace

    @property
    def settings(self) -> EmulatorSettings:
        return self.core.settings

    def start(self) -> EmulatorServer:
        """Load ``data_file``, start serving and return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self.core.load()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="dinmo-braze-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the emulator did not start within 30 s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the emulator failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            if self._ready.is_set():
                log.exception("the emulator stopped with an error")
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()

        def started(port: int) -> None:
            self.port = port
            log.info("Braze emulator listening on %s", self.url)
            self._ready.set()

        await run_app(self.core, self.host, self.port, self._stop, started)

    def stop(self) -> None:
        """Stop serving, save ``data_file`` and join the thread. Idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        self._thread = self._loop = self._stop = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_faults(self, faults: Iterable[Fault | Mapping[str, Any]] | Fault | Mapping[str, Any]) -> None:
        """Queue faults (see :class:`Fault`)."""
        self.core.add_faults(faults)

    def clear_faults(self) -> None:
        self.core.faults.clear()

    def reset(self) -> None:
        """Empty the workspace, faults, request log and rate-limit windows."""
        self.core.reset()

    def update_settings(self, **changes: Any) -> EmulatorSettings:
        """Change settings at runtime, e.g. ``update_settings(batch_mode="mau50")``."""
        return self.core.update_settings(**changes)

    def requests(self, *, endpoint: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The request log (bodies parsed; never any header)."""
        return self.core.requests(endpoint=endpoint, limit=limit)


def serve_forever(
    settings: EmulatorSettings | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then save ``data_file`` and return.

    ``on_started`` receives the base URL once the socket is listening. Tunes the garbage
    collector for throughput, so call it only in a process of its own.
    """
    core = EmulatorCore(settings)
    core.load()
    # A dedicated process holding millions of long-lived dicts: make young-generation
    # collections rarer (about +30% /users/track throughput) and skip what was just loaded.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)

        def started(bound: int) -> None:
            url = f"http://{host}:{bound}"
            log.info("Braze emulator listening on %s", url)
            if on_started is not None:
                on_started(url)

        await run_app(core, host, port, stop, started)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
