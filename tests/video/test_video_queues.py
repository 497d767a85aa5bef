"""The two hand-over policies: keep-newest (live) and a bounded FIFO that drops nothing (files)."""
from __future__ import annotations

import threading
import time

from deblur.video.queues import CLOSED, FifoQueue, LatestSlot


def test_latest_slot_keeps_only_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.get(0.01) is None and len(slot) == 0
    for i in range(5):
        assert slot.put(i) is True
    assert len(slot) == 1
    assert slot.dropped == 4
    assert slot.get(0.01) == 4
    assert slot.get(0.01) is None  # taken: empty again
    slot.put(5)
    assert slot.get(0.01) == 5
    assert slot.dropped == 4  # a frame that was taken is not a drop


def test_latest_slot_get_waits_for_a_put():
    slot = LatestSlot()
    threading.Timer(0.1, slot.put, args=("late",)).start()
    t = time.monotonic()
    assert slot.get(2.0) == "late"
    assert time.monotonic() - t < 1.5  # woke on the put, not at the timeout


def test_latest_slot_get_times_out():
    slot = LatestSlot()
    t = time.monotonic()
    assert slot.get(0.2) is None
    assert 0.15 <= time.monotonic() - t < 1.0


def test_latest_slot_close():
    slot = LatestSlot()
    slot.put("last")
    slot.close()
    assert slot.get(0.01) == "last"  # what was there is still handed over
    assert slot.get(0.01) is CLOSED
    assert slot.get(0.01) is CLOSED
    waiter = LatestSlot()
    threading.Timer(0.1, waiter.close).start()
    t = time.monotonic()
    assert waiter.get(5.0) is CLOSED
    assert time.monotonic() - t < 2.0  # close wakes a waiting get


def test_fifo_keeps_order_and_never_drops():
    q = FifoQueue(0)  # unbounded
    for i in range(1000):
        assert q.put(i)
    assert len(q) == 1000 and q.dropped == 0
    assert [q.get(0.01) for _ in range(1000)] == list(range(1000))
    assert q.get(0.01) is None


def test_fifo_put_blocks_when_full_until_a_get():
    q = FifoQueue(2)
    assert q.put("a") and q.put("b")
    done = threading.Event()

    def producer():
        q.put("c")
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.3), "put into a full queue must wait"
    assert len(q) == 2
    assert q.get(0.1) == "a"
    assert done.wait(2.0), "put must go on once there is room"
    assert [q.get(0.1), q.get(0.1)] == ["b", "c"]
    assert q.dropped == 0


def test_fifo_put_gives_up_on_stop():
    q = FifoQueue(1)
    q.put(1)
    stop = threading.Event()
    result = []
    t = threading.Thread(target=lambda: result.append(q.put(2, stop)), daemon=True)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    stop.set()
    t.join(2.0)
    assert result == [False]
    assert len(q) == 1 and q.get(0.01) == 1  # the refused item was not added


def test_fifo_drains_after_close_then_closed():
    q = FifoQueue(4)
    for i in range(3):
        q.put(i)
    q.close()
    assert q.put(99) is False  # nothing goes in after close
    assert [q.get(0.01) for _ in range(3)] == [0, 1, 2]
    assert q.get(0.01) is CLOSED
    assert q.get(0.01) is CLOSED


def test_fifo_close_wakes_a_blocked_producer_and_consumer():
    full = FifoQueue(1)
    full.put(0)
    result = []
    t = threading.Thread(target=lambda: result.append(full.put(1)), daemon=True)
    t.start()
    time.sleep(0.1)
    full.close()
    t.join(2.0)
    assert result == [False]
    empty = FifoQueue(1)
    threading.Timer(0.1, empty.close).start()
    t0 = time.monotonic()
    assert empty.get(5.0) is CLOSED
    assert time.monotonic() - t0 < 2.0


def test_fifo_threads_producer_consumer_lose_nothing():
    q = FifoQueue(3)
    n = 2000
    got = []

    def consumer():
        while True:
            item = q.get(1.0)
            if item is CLOSED:
                return
            if item is not None:
                got.append(item)

    c = threading.Thread(target=consumer, daemon=True)
    c.start()
    for i in range(n):
        assert q.put(i)
    q.close()
    c.join(10.0)
    assert not c.is_alive()
    assert got == list(range(n))
