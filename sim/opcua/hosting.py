"""A :class:`twinkg.sim.opcua.server.PlantServer` for synchronous callers: on its own event loop
thread, started and stopped by plain calls (the CLI, the loop's ``--over opcua``, tests)."""

from __future__ import annotations

import logging

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.opcua.loop_thread import LoopThread
from twinkg.sim.opcua.server import PlantServer

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class ServedPlant:
    """A :class:`PlantServer` on its own event loop thread: :meth:`start` returns once it
    listens, :meth:`stop` stops it and terminates the simulator."""

    def __init__(self, server: PlantServer) -> None:
        self.server = server
        self._thread: LoopThread | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ServedPlant:
        """Start serving (``SimulatorError`` when it cannot within ``timeout_s``)."""
        self._thread = LoopThread(f"twinkg-opcua-plant-{self.server.plant}")
        try:
            self._thread.call(self.server.start(), timeout_s)
        except Exception as exc:
            self._thread.stop()
            raise SimulatorError(f"cannot serve the plant at {self.server.url}: {exc}") from exc
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.call(self.server.stop(), timeout_s)
        except Exception as exc:  # stopping is best effort; the thread goes either way
            log.warning("opcua_sim: stopping plant %s: %s", self.server.plant, exc)
        finally:
            thread.stop()

    def __enter__(self) -> ServedPlant:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
