"""DynamicBatcher on its own: batch formation, admission limit, errors, draining."""

from __future__ import annotations

import asyncio
import threading

import pytest

from detpipe.errors import Overloaded, Unavailable
from detpipe.serving.batcher import DynamicBatcher


class Recorder:
    """run_batch that doubles items and records each batch; ``hold`` blocks the first call."""

    def __init__(self, hold: bool = False, fail_on: object = None) -> None:
        self.batches: list[list] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold = hold
        self.fail_on = fail_on

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.started.set()
        if self.hold and len(self.batches) == 1:
            self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [2 * i for i in items]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_items_share_batches_up_to_max_batch():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch=4, max_delay_s=0.2, max_queue=100)
        await b.start()
        out = await asyncio.gather(*(b.submit([i]) for i in range(10)))
        await b.stop()
        return out

    assert run(main()) == [[2 * i] for i in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]
    assert sorted(i for batch in rec.batches for i in batch) == list(range(10))


def test_a_lone_item_waits_at_most_max_delay():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch=8, max_delay_s=0.05, max_queue=10)
        await b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await b.submit([21])
        waited = loop.time() - t0
        await b.stop()
        return out, waited

    out, waited = run(main())
    assert out == [42]
    assert 0.04 <= waited < 5  # it waited for company, then ran alone
    assert rec.batches == [[21]]


def test_the_next_batch_fills_while_the_model_runs():
    rec = Recorder(hold=True)

    async def main():
        b = DynamicBatcher(rec, max_batch=4, max_delay_s=0.0, max_queue=100)
        await b.start()
        first = asyncio.create_task(b.submit([0]))
        await asyncio.to_thread(rec.started.wait, 10)
        rest = [asyncio.create_task(b.submit([i])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert b.admitted == 6
        rec.release.set()
        out = [await first, *[await t for t in rest]]
        await b.stop()
        return out

    assert run(main()) == [[2 * i] for i in range(6)]
    assert [len(x) for x in rec.batches] == [1, 4, 1]


def test_over_max_queue_is_refused_at_once_and_admits_nothing():
    rec = Recorder()
    depths: list[int] = []

    async def main():
        b = DynamicBatcher(rec, max_batch=8, max_delay_s=0.0, max_queue=3, on_depth=depths.append)
        await b.start()
        with pytest.raises(Overloaded, match="server busy: 0 images queued, limit 3"):
            await b.submit([1, 2, 3, 4])
        assert b.admitted == 0
        out = await b.submit([1, 2, 3])
        await b.stop()
        return out

    assert run(main()) == [2, 4, 6]
    assert depths == [3, 0]


def test_a_failing_batch_fails_its_waiters_and_the_batcher_goes_on():
    rec = Recorder(fail_on=13)

    async def main():
        b = DynamicBatcher(rec, max_batch=2, max_delay_s=0.0, max_queue=10)
        await b.start()
        with pytest.raises(ValueError, match="bad item 13"):
            await b.submit([13])
        out = await b.submit([5])
        await b.stop()
        return out, b.admitted

    assert run(main()) == ([10], 0)


def test_stop_drains_admitted_items_then_refuses_new_ones():
    rec = Recorder(hold=True)

    async def main():
        b = DynamicBatcher(rec, max_batch=2, max_delay_s=0.0, max_queue=10)
        await b.start()
        pending = asyncio.create_task(b.submit([1, 2, 3]))
        await asyncio.to_thread(rec.started.wait, 10)
        stopping = asyncio.create_task(b.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # still draining
        rec.release.set()
        await stopping
        with pytest.raises(Unavailable, match="shutting down"):
            await b.submit([4])
        return await pending

    assert run(main()) == [2, 4, 6]


def test_max_batch_1_runs_each_item_alone_in_order_admission_and_errors_as_batched():
    rec = Recorder(hold=True, fail_on=13)
    depths: list[int] = []

    async def main():
        b = DynamicBatcher(rec, max_batch=1, max_delay_s=0.05, max_queue=4, on_depth=depths.append)
        await b.start()
        first = asyncio.create_task(b.submit([0]))
        await asyncio.to_thread(rec.started.wait, 10)
        rest = [asyncio.create_task(b.submit(items)) for items in ([1, 2], [13])]
        await asyncio.sleep(0.05)
        assert b.admitted == 4  # all admitted while the model thread is busy
        with pytest.raises(Overloaded, match="4 images queued, limit 4"):
            await b.submit([3])
        rec.release.set()
        out = [await first, await rest[0]]
        with pytest.raises(ValueError, match="bad item 13"):
            await rest[1]
        await b.stop()
        return out, b.admitted

    assert run(main()) == ([[0], [2, 4]], 0)
    assert rec.batches == [[0], [1], [13], [2]]  # one at a time, in the order they reached the model thread
    assert depths[-1] == 0 and max(depths) == 4
