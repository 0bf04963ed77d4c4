"""Dynamic batching: images from concurrent requests share one model call.

The first image to arrive opens a batch; the batch closes when it holds ``max_batch``
images or ``max_delay_s`` has passed since it opened (Triton's dynamic batcher works the
same way). Model calls run one at a time on a dedicated thread, so the event loop keeps
accepting requests meanwhile; under load the next batch fills while the current one runs.
Admission is bounded: more than ``max_queue`` images in the system and :meth:`submit`
raises :class:`~detpipe.errors.Overloaded` at once, so overload shows up as fast 503s,
not as ever-growing latency::

    batcher = DynamicBatcher(run_batch, max_batch=8, max_delay_s=0.005, max_queue=64)
    await batcher.start()
    results = await batcher.submit([item1, item2])   # run_batch's outputs, in order
    await batcher.stop()                             # drains what was admitted
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from detpipe.errors import Overloaded, Unavailable

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future


class DynamicBatcher:
    """Collects items into batches for ``run_batch(items) -> results`` (same length, same order).

    Args:
        run_batch: called on the model thread with up to ``max_batch`` items.
        max_batch: most items per call.
        max_delay_s: how long the first item of a batch waits for more.
        max_queue: most items admitted (waiting or running) at once.
        on_depth: called with the number of admitted items whenever it changes.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_depth = on_depth or (lambda n: None)
        self.admitted = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._idle: asyncio.Event | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detpipe-model")
        self._task = asyncio.create_task(self._loop(), name="detpipe-batcher")

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """Queue ``items`` and wait for their results.

        Raises:
            Overloaded: admitting them would exceed ``max_queue``.
            Unavailable: the batcher is stopping or not started.
            Exception: whatever ``run_batch`` raised for their batch.
        """
        self.ensure_room(len(items))
        if self.max_batch == 1:  # nothing to gather: straight to the model thread, no queue hop
            return await self._run_alone(items)
        loop = asyncio.get_running_loop()
        pending = [_Pending(item, loop.create_future()) for item in items]
        self._admit(len(pending))
        for p in pending:
            self._queue.put_nowait(p)
        return list(await asyncio.gather(*(p.future for p in pending)))

    async def _run_alone(self, items: Sequence[Any]) -> list[Any]:
        """``max_batch`` 1: each item is its own batch, run in turn on the model thread.

        The batching loop's queue and its task add two event-loop hops and gather nothing at
        this size; the model thread still runs one call at a time, in the order the calls
        came. A waiter cancelled meanwhile (server shutdown) gives its room back at once;
        its call, if already handed over, still runs, and ``stop`` waits for it.
        """
        self._admit(len(items))
        try:
            return [(await self._call([item]))[0] for item in items]
        finally:
            self._admit(-len(items))

    async def _call(self, items: list[Any]) -> Sequence[Any]:
        """``run_batch(items)`` on the model thread; its error (logged) is the caller's."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, items)
            if len(results) != len(items):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        except Exception:
            log.exception("model call failed for a batch of %d", len(items))
            raise
        return results

    def ensure_room(self, n: int) -> None:
        """Raise now if ``n`` more items would not be admitted (callers check before costly work).

        Raises:
            Overloaded: admitting them would exceed ``max_queue``.
            Unavailable: the batcher is stopping or not started.
        """
        if self._queue is None or self._closing:
            raise Unavailable("the server is shutting down")
        if self.admitted + n > self.max_queue:
            raise Overloaded(
                f"server busy: {self.admitted} images queued, limit {self.max_queue}; retry shortly"
            )

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new items, finish the admitted ones (up to ``timeout_s``), stop the loop."""
        self._closing = True
        if self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                log.warning("stopping with %d images still admitted", self.admitted)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _admit(self, n: int) -> None:
        self.admitted += n
        assert self._idle is not None
        if self.admitted:
            self._idle.clear()
        else:
            self._idle.set()
        self.on_depth(self.admitted)

    async def _next_batch(self) -> list[_Pending]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                results = await self._call([p.item for p in batch])
            except Exception as e:  # every waiter gets the batch's error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
            else:
                for p, result in zip(batch, results, strict=True):
                    if not p.future.done():  # its client may have gone away
                        p.future.set_result(result)
            self._admit(-len(batch))
