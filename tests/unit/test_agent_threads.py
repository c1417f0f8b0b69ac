"""Several agent threads in one process (decision 0084): the twin's run lock (scoped runs side
by side, everything else alone, a waiting lone holder not starved), and work items shared by
threads yet acknowledged in the order received."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from twinkg.api.twin import RunLock
from twinkg.connect.mqtt.client import InOrderAcks, Message

WAIT_S = 60.0  # a safety net for a defect (a deadlock), never a pace


def _until(condition: Callable[[], bool]) -> None:
    """Wait for a state another thread brings about (polled; fails only on a hang)."""
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("the state was never reached")


def _thread(target: Callable[..., None], *args: int) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_scoped_runs_share_the_lock() -> None:
    lock = RunLock()
    first_in, second_in = threading.Event(), threading.Event()

    def first() -> None:
        with lock.shared():
            first_in.set()
            assert second_in.wait(WAIT_S), "the second sharer never got in beside the first"

    def second() -> None:
        assert first_in.wait(WAIT_S)
        with lock.shared():
            second_in.set()

    threads = [_thread(first), _thread(second)]
    for thread in threads:
        thread.join(WAIT_S)
    assert first_in.is_set() and second_in.is_set()
    assert not any(t.is_alive() for t in threads)


def test_a_lone_holder_waits_for_the_sharers_and_new_sharers_wait_for_it() -> None:
    lock = RunLock()
    order: list[str] = []
    release_first = threading.Event()
    first_in = threading.Event()

    def first() -> None:
        with lock.shared():
            order.append("first in")
            first_in.set()
            assert release_first.wait(WAIT_S)
            order.append("first out")

    def lone() -> None:
        with lock.alone():
            order.append("alone in")
            order.append("alone out")

    def late() -> None:
        with lock.shared():
            order.append("late in")

    threads = [_thread(first)]
    assert first_in.wait(WAIT_S)
    threads.append(_thread(lone))
    _until(lambda: lock._waiting_alone == 1)
    threads.append(_thread(late))  # arrives while the lone holder waits: it goes after it
    _until(lambda: lock._waiting_shared == 1)
    assert order == ["first in"]
    release_first.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["first in", "first out", "alone in", "alone out", "late in"]


def test_a_lone_holder_excludes_every_other_holder() -> None:
    lock = RunLock()
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def owner() -> None:
        with lock.alone():
            order.append("owner in")
            inside.set()
            assert release.wait(WAIT_S)
            order.append("owner out")

    def other_alone() -> None:
        with lock.alone():
            order.append("other alone")

    def sharer() -> None:
        with lock.shared():
            order.append("sharer")

    threads = [_thread(owner)]
    assert inside.wait(WAIT_S)
    threads.append(_thread(other_alone))
    _until(lambda: lock._waiting_alone == 1)
    threads.append(_thread(sharer))
    _until(lambda: lock._waiting_shared == 1)
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert order[:2] == ["owner in", "owner out"]
    assert sorted(order[2:]) == ["other alone", "sharer"]


def test_a_holder_may_take_it_again() -> None:
    lock = RunLock()
    with lock.alone(), lock.alone(), lock.shared():
        assert lock._owner == threading.get_ident()
    assert lock._owner is None and lock._depth == 0
    with lock.shared(), lock.shared():
        assert lock._sharers == {threading.get_ident(): 2}
    assert lock._sharers == {}
    with lock.shared(), pytest.raises(RuntimeError, match="cannot take it alone"):  # noqa: SIM117
        with lock.alone():
            pass
    with lock.alone():  # and it is free again
        pass


def test_many_threads_never_see_a_lone_holder_beside_anyone() -> None:
    lock = RunLock()
    guard = threading.Lock()
    inside = {"alone": 0, "shared": 0}
    clashes: list[dict[str, int]] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        start.wait(WAIT_S)
        for i in range(300):
            kind = "alone" if (i + k) % 7 == 0 else "shared"
            with lock.alone() if kind == "alone" else lock.shared():
                with guard:
                    inside[kind] += 1
                    if inside["alone"] > 1 or (inside["alone"] and inside["shared"]):
                        clashes.append(dict(inside))
                time.sleep(0)  # let the others run while this one is in
                with guard:
                    inside[kind] -= 1

    threads = [_thread(worker, k) for k in range(8)]
    for thread in threads:
        thread.join(WAIT_S * 2)
    assert not any(t.is_alive() for t in threads)
    assert clashes == []


class _Subscription:
    """The part of :class:`~twinkg.connect.mqtt.client.Subscriber` that InOrderAcks uses: a
    queue of received messages, and the acknowledgements sent."""

    def __init__(self, count: int) -> None:
        self.waiting = [Message(f"t/{k}", b"{}", k, 1, False) for k in range(1, count + 1)]
        self.acked: list[int] = []
        self._lock = threading.Lock()

    def messages(self, *, idle_s: float | None = None) -> Iterator[Message]:
        with self._lock:
            if self.waiting:
                yield self.waiting.pop(0)

    def ack(self, message: Message) -> None:
        self.acked.append(message.mid)


def test_work_items_are_acknowledged_in_the_order_received() -> None:
    subscription = _Subscription(4)
    acks = InOrderAcks(subscription)  # type: ignore[arg-type]
    one, two, three, four = (acks.take(idle_s=0) for _ in range(4))
    assert acks.take(idle_s=0) is None
    assert one and two and three and four
    acks.done(three)
    acks.done(two)
    assert subscription.acked == []  # the first is still in hand
    assert acks.in_hand() == 4
    acks.done(one)
    assert subscription.acked == [1, 2, 3]
    with pytest.raises(ValueError, match="already done"):
        acks.done(two)
    acks.done(four)
    assert subscription.acked == [1, 2, 3, 4] and acks.in_hand() == 0


def test_threads_taking_at_once_each_get_one_message_and_all_are_acknowledged() -> None:
    subscription = _Subscription(400)
    acks = InOrderAcks(subscription)  # type: ignore[arg-type]
    taken: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait(WAIT_S)
        while (message := acks.take(idle_s=0)) is not None:
            taken[k].append(message.mid)
            acks.done(message)

    threads = [_thread(worker, k) for k in range(4)]
    for thread in threads:
        thread.join(WAIT_S)
    mids = sorted(mid for got in taken for mid in got)
    assert mids == list(range(1, 401))  # each once
    assert all(got == sorted(got) for got in taken)  # each thread in the order received
    assert subscription.acked == list(range(1, 401))
