"""A private asyncio event loop on a daemon thread, for synchronous callers of asyncua.

The co-simulation master and the loop are synchronous; asyncua is asyncio. :class:`LoopThread`
runs one event loop for one server or one client, and :meth:`LoopThread.call` runs a coroutine on
it from any other thread, waiting at most a timeout. A call that runs past it is cancelled and
raises :class:`TimeoutError`: the caller maps it to its own error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """One event loop on its own daemon thread (stopped by :meth:`stop`)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        """Whether the loop still runs in this process (a forked child has no such thread)."""
        return os.getpid() == self.pid and self._thread.is_alive() and not self.loop.is_closed()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """``await coro`` on the loop; its exception re-raised here; :class:`TimeoutError` (and
        the coroutine cancelled) past ``timeout_s``."""
        if not self.alive:
            coro.close()
            raise RuntimeError("the event loop thread is not running in this process")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def submit(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` on the loop without waiting for it (dropped when the loop is gone)."""
        if self.alive:
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        else:
            coro.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and let the thread end (idempotent)."""
        if not self.alive:
            return
        # what is still scheduled (a client's watchdog after a lost server) ends first; a task
        # that will not end is left, and the loop stops around it
        with contextlib.suppress(Exception):
            self.call(_cancel_the_rest(), timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_the_rest() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
