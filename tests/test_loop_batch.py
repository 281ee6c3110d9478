"""host.loop_batch: what the access lines and RPC counters rely on (host.server.logs, host.metrics)."""

from __future__ import annotations

import asyncio

from host.loop_batch import LoopBatch


def recorder():
    batches: list[list] = []
    return batches, LoopBatch(batches.append)


def test_off_a_loop_an_item_is_handled_at_once():
    batches, batch = recorder()
    batch.add(1)
    batch.add(2)
    assert batches == [[1], [2]]


def test_items_of_one_pass_are_handled_together_at_its_end_in_order():
    batches, batch = recorder()

    async def main():
        batch.add("a")
        batch.add("b")
        assert batches == []          # not during the pass
        await asyncio.sleep(0)        # the pass ends
        assert batches == [["a", "b"]]
        batch.add("c")
        await asyncio.sleep(0)
        assert batches == [["a", "b"], ["c"]]

    asyncio.run(main())


def test_flush_handles_what_is_queued_now_and_the_scheduled_flush_finds_nothing():
    batches, batch = recorder()

    async def main():
        batch.add(1)
        batch.flush()
        assert batches == [[1]]
        await asyncio.sleep(0)
        assert batches == [[1]]       # handle is never called with an empty batch

    asyncio.run(main())


def test_a_loop_closed_with_its_flush_pending_leaves_nothing_behind():
    batches, batch = recorder()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    asyncio.set_event_loop(None)

    async def add_and_stop():
        batch.add("left")
        loop.stop()                   # the loop stops before its pending flush runs

    loop.create_task(add_and_stop())
    loop.run_forever()
    loop.close()
    assert batches == []

    async def next_loop():
        batch.add("next")
        await asyncio.sleep(0)

    asyncio.run(next_loop())          # a new loop schedules its own flush, which takes both
    assert batches == [["left", "next"]]
