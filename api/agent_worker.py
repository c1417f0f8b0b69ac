"""One agent worker: it decides on an asset only while it holds the asset's lease
(``kg.leases``), so any number of workers, in any number of processes on one Neo4j, never
decide on the same asset at once.

To work on an asset the worker leases it and every asset that is part of it (a run scoped to an
asset may decide on any of its parts), all or none. One of them held elsewhere: the worker takes
none, and leaves a mark on the held lease; the holder sees the mark when it gives the lease back
and runs on that asset again, so the work is done by whoever holds it, never dropped. A worker
that dies holding leases blocks those assets until the leases expire (``ttl_s``); its cut-off run
is resumed from its checkpoint by the next worker that takes the asset's lease (or by the first
sweep of a worker that starts), with the same checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from twinkg.api.twin import Twin
from twinkg.kg import leases

log = logging.getLogger("twinkg.agents.worker")


@dataclass(slots=True)
class WorkerStats:
    """What a worker did: assets decided on, runs, and assets it found busy elsewhere."""

    assets: int = 0
    decisions: int = 0
    busy: int = 0


@dataclass(slots=True)
class AgentWorker:
    """Decides on assets under their leases, as ``worker_id``."""

    twin: Twin
    worker_id: str
    ttl_s: float = 300.0
    max_runs: int = 20
    stats: WorkerStats = field(default_factory=WorkerStats)
    resumed: bool = False  # whether this worker has resumed every cut-off run (its first sweep)

    def decide_on(self, asset: str) -> int | None:
        """Run the agents on ``asset`` (and its parts) under their leases; the number of
        decisions, or ``None`` when another worker holds one of the leases (it will see the
        work: its lease is marked)."""
        store = self.twin.store
        wanted = [asset, *leases.parts(store, asset)]
        taken: list[str] = []
        for name in wanted:
            if not leases.acquire(store, name, self.worker_id, ttl_s=self.ttl_s):
                for held in taken:
                    leases.release(store, held, self.worker_id, ttl_s=self.ttl_s)
                self.stats.busy += 1
                return None
            taken.append(name)
        decided = 0
        try:
            while True:
                results = self.twin.run_agents(
                    scope=asset, as_of=None, max_runs=self.max_runs, resume_all=False
                )
                decided += len(results)
                again = [
                    name
                    for name in taken
                    if leases.release(store, name, self.worker_id, ttl_s=self.ttl_s)
                ]
                if not again and len(results) < self.max_runs:
                    break
                # asked for meanwhile (or more to do): take back what was let go, run again
                taken = list(again)
                for name in wanted:
                    if name not in taken:
                        if not leases.acquire(store, name, self.worker_id, ttl_s=self.ttl_s):
                            for held in taken:
                                leases.release(store, held, self.worker_id, ttl_s=self.ttl_s)
                            taken = []
                            break
                        taken.append(name)
                if not taken:
                    break  # another worker holds part of it now: it has the work
        except BaseException:
            for held in taken:
                leases.release(store, held, self.worker_id, ttl_s=self.ttl_s)
            raise
        self.stats.assets += 1
        self.stats.decisions += decided
        return decided

    def sweep(self) -> int:
        """Decide on every asset with something to decide on that no other worker holds; the
        number of decisions. The first sweep of a worker (at its start) first resumes every
        run a crash cut off, whatever its scope, as ``twinkg agents run`` does; later, each
        asset's cut-off runs are resumed under its lease."""
        decided = 0
        if not self.resumed:
            decided += len(self.twin.run_agents(scope=None, as_of=None, max_runs=0))
            self.resumed = True
        for asset in self.twin.case_assets():
            done = self.decide_on(asset)
            decided += done or 0
        return decided
