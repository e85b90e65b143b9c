"""Bounded concurrency that stops at the first error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def run_bounded(items: Iterable[T], worker: Callable[[T], Awaitable[None]], limit: int) -> None:
    """Run ``worker`` on each item, at most ``limit`` at once, in the order of ``items``.

    After the first failure no new item is started; the ones in flight finish (each worker
    records its own outcome), then the first error is raised.
    """
    pending: set[asyncio.Future[None]] = set()
    first: list[BaseException] = []

    def harvest(done: set[asyncio.Future[None]]) -> None:
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if exc is not None and not first:
                first.append(exc)

    try:
        for item in items:
            finished = {t for t in pending if t.done()}
            pending -= finished
            harvest(finished)
            while len(pending) >= max(limit, 1) and not first:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                harvest(finished)
            if first:
                break
            pending.add(asyncio.ensure_future(worker(item)))
        if pending:
            finished, pending = await asyncio.wait(pending)
            harvest(finished)
    except BaseException:
        for task in pending:
            task.cancel()
        raise
    if first:
        raise first[0]
