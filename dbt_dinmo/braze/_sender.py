"""Concurrent sending of many /users/track batches, and what each answer means per object.

Outcome of one batch, object by object:

* ``accepted``: Braze queued the request and named no error for the object;
* ``rejected``: Braze named the object (``input_array`` + ``index``) in ``errors``; its message
  is kept. Re-sending the same object would fail again;
* ``failed``: Braze gave no verdict on the object, so it must be treated as not applied and sent
  again later. This covers: a fatal 400 ("Valid data must be provided ...") that names some
  objects but not this one (Braze applied nothing, so unnamed objects were not applied either);
  an error entry that points at no object of the batch (unknown array or index out of range),
  which makes every unnamed object of that array (of all arrays when the array is unknown)
  uncertain; and requests that failed as a whole (4xx without per-object errors, retries
  exhausted, authentication).

413 / "Max Input Length Exceeded" split the batch in halves, recursively, inside the same slot;
a single object that is still too large is rejected. Authentication errors, 404 and exhausted
retries stop the run: no new batch is pulled, in-flight batches finish and are reported, then
the first such error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbt_dinmo.braze._batching import KINDS, PreparedObject, TrackBatch, TrackResponse
from dbt_dinmo.errors import (
    AuthError,
    BrazeError,
    PayloadTooLargeError,
    TerminalError,
    TransientError,
)

if TYPE_CHECKING:
    from dbt_dinmo.braze._client import BrazeClient

__all__ = ["BatchResult", "SendSummary", "classify", "send_track_batches"]

log = logging.getLogger("dbt_dinmo.braze")


@dataclass
class BatchResult:
    """What happened to every object of one sent batch."""

    batch: TrackBatch
    accepted: list[PreparedObject]
    rejected: list[tuple[PreparedObject, str]]
    attempts: int  # HTTP attempts; 0 when the request failed without a final answer
    response: TrackResponse | None
    failed: list[tuple[PreparedObject, str]] = field(default_factory=list)
    error: BrazeError | None = None  # set when the whole request failed


@dataclass
class SendSummary:
    """Totals for one :func:`send_track_batches` call."""

    requests: int = 0  # HTTP requests, retries and split halves included
    batches: int = 0  # batches pulled from the iterable
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited_waits: int = 0
    elapsed: float = 0.0
    rate_limited: int = 0  # 429 responses
    splits: int = 0  # batches split after 413 / "Max Input Length Exceeded"

    def add(self, result: BatchResult) -> None:
        """Count one batch result."""
        self.accepted += len(result.accepted)
        self.rejected += len(result.rejected)
        self.failed += len(result.failed)


def classify(batch: TrackBatch, response: TrackResponse) -> BatchResult:
    """Map a /users/track answer back onto the batch's objects (see the module docstring)."""
    if not response.errors and response.status < 300:
        return BatchResult(batch, batch.objects, [], response.attempts, response)
    lists = batch.kind_lists
    named: dict[tuple[str, int], list[str]] = {}
    stray: list[str] = []
    uncertain: set[str | None] = set()
    for kind, index, text in response.errors:
        if kind is not None and index is not None and 0 <= index < len(lists[kind]):
            named.setdefault((kind, index), []).append(text)
        else:
            stray.append(text)
            uncertain.add(kind)
    if response.status >= 300:
        unnamed = (
            f"Braze rejected the whole request (HTTP {response.status}: {response.message}) "
            "without naming this object, so it was not applied; send it again"
        )
    else:
        unnamed = (
            f"Braze reported errors it did not tie to an object of this batch "
            f"({'; '.join(stray)}), so this object may not have been applied; send it again"
        )
    accepted: list[PreparedObject] = []
    rejected: list[tuple[PreparedObject, str]] = []
    failed: list[tuple[PreparedObject, str]] = []
    everything_uncertain = response.status >= 300 or None in uncertain
    for kind in KINDS:
        unsure = everything_uncertain or kind in uncertain
        for i, obj in enumerate(lists[kind]):
            texts = named.get((kind, i))
            if texts:
                rejected.append((obj, "; ".join(texts)))
            elif unsure:
                failed.append((obj, unnamed))
            else:
                accepted.append(obj)
    return BatchResult(batch, accepted, rejected, response.attempts, response, failed)


def _failed(batch: TrackBatch, exc: BrazeError) -> BatchResult:
    message = str(exc)
    return BatchResult(batch, [], [], 0, None, [(o, message) for o in batch.objects], exc)


@dataclass
class _Outcome:
    results: list[BatchResult]
    error: BrazeError | None = None
    splits: int = 0


async def _send(client: BrazeClient, batch: TrackBatch, out: _Outcome) -> None:
    """Send one batch (splitting it if too large); append results; raise on stopping errors."""
    try:
        response = await client.track(batch)
    except PayloadTooLargeError as exc:
        if len(batch) < 2:
            obj = batch.objects[0]
            reason = (
                f"this object alone makes a {batch.size_bytes:,}-byte request that Braze "
                f"refused as too large ({exc}); make it smaller"
            )
            out.results.append(BatchResult(batch, [], [(obj, reason)], 0, None, error=exc))
            return
        log.warning(
            "Braze refused a batch of %d objects (%d bytes) as too large (HTTP %s); "
            "splitting it in two. If this repeats, use a smaller batch rule.",
            len(batch),
            batch.size_bytes,
            exc.status,
        )
        out.splits += 1
        first, second = batch.split()
        await _send(client, first, out)
        await _send(client, second, out)
        return
    except (AuthError, TransientError) as exc:
        out.results.append(_failed(batch, exc))
        raise
    except TerminalError as exc:
        out.results.append(_failed(batch, exc))
        if exc.status == 404:
            raise  # a wrong REST URL fails every batch alike
        return
    out.results.append(classify(batch, response))


async def _send_one(client: BrazeClient, batch: TrackBatch) -> _Outcome:
    out = _Outcome([])
    try:
        await _send(client, batch, out)
    except BrazeError as exc:
        out.error = exc
    return out


async def send_track_batches(
    client: BrazeClient,
    batches: Iterable[TrackBatch],
    on_result: Callable[[BatchResult], None],
    *,
    max_in_flight: int = 8,
) -> SendSummary:
    """Send ``batches`` with up to ``max_in_flight`` requests at once, under the rate limiter.

    Batches are pulled lazily, one each time a slot frees, on the event-loop thread (so the
    iterable need not be thread-safe). ``on_result`` is called in the event loop, in completion
    order, once per batch (once per half when a batch was split). Stopping errors, and
    exceptions raised by the iterable, are re-raised after the in-flight batches are reported;
    an exception raised by ``on_result`` cancels the in-flight requests and propagates.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    before = client.stats
    started = time.perf_counter()
    summary = SendSummary()
    source = iter(batches)
    pending: set[asyncio.Future[_Outcome]] = set()
    stop: BaseException | None = None
    exhausted = False
    try:
        while True:
            while not exhausted and stop is None and len(pending) < max_in_flight:
                try:
                    batch = next(source)
                except StopIteration:
                    exhausted = True
                    break
                except Exception as exc:
                    stop = exc
                    break
                if batch:
                    summary.batches += 1
                    pending.add(asyncio.ensure_future(_send_one(client, batch)))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome = task.result()
                summary.splits += outcome.splits
                for result in outcome.results:
                    summary.add(result)
                    on_result(result)
                if outcome.error is not None and stop is None:
                    stop = outcome.error
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
    finally:
        after = client.stats
        summary.requests = after.requests - before.requests
        summary.retries = after.retries - before.retries
        summary.rate_limited = after.rate_limited - before.rate_limited
        summary.rate_limited_waits = after.rate_limited_waits - before.rate_limited_waits
        summary.elapsed = time.perf_counter() - started
    if stop is not None:
        raise stop
    return summary
