"""The client's default transport: httpx's interface over aiohttp's connection pool."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport"]

_HOP_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an aiohttp connection pool, the client's default.

    httpcore spends several times more CPU per request than aiohttp, which caps a sync at a few
    hundred requests per second; this keeps the httpx API (and ``MockTransport`` in tests)
    with aiohttp's speed. TLS uses httpx's default context (certifi); the proxy comes from the
    environment (``HTTPS_PROXY``, ``NO_PROXY``...), looked up once per host. aiohttp errors are
    mapped onto the httpx exception tree, so retries see the same types.
    """

    def __init__(self, *, max_connections: int = 16) -> None:
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: httpx.URL) -> str | None:
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxy = urllib.request.getproxies().get(url.scheme)
            if proxy and urllib.request.proxy_bypass(url.host):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp  # imported here: only the real network path needs it

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=httpx.create_ssl_context()),
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                trust_env=False,  # True would read ~/.netrc in a thread on every request
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        session = self._open()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"))
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if k.lower() not in _HOP_HEADERS
        ]
        try:
            async with session.request(
                request.method,
                str(request.url),
                data=await request.aread(),
                headers=headers,
                timeout=timeout,
                proxy=self._proxy(request.url),
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    content=content,
                    request=request,
                    extensions={"reason_phrase": (response.reason or "").encode("latin-1")},
                )
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            message = str(exc) or "Server disconnected without sending a response."
            raise httpx.RemoteProtocolError(message, request=request) from exc
        except aiohttp.ClientResponseError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.UnsupportedProtocol(str(exc), request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
