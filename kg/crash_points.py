"""Test-only crash injection: named points in the ingest where a test can kill the process.

The durability tests (tests/integration/test_ingest_crash.py) run a real ingest in a
subprocess with ``TWINKG_TEST_CRASH_AT=<point>`` in its environment; when the ingest reaches that
point the process sends itself ``SIGKILL`` (no cleanup, no buffered writes flushed, as in
``kill -9`` or a power cut of the process). Recovery then runs in a fresh process and the test
checks that the batch is whole in the graph and the log, or in neither.

This is not a setting and must never be set in production. Unset (always, outside those tests),
:func:`reach` costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from enum import StrEnum

ENV = "TWINKG_TEST_CRASH_AT"


class CrashPoint(StrEnum):
    """The steps of an ingest, in order (reasoner/ingest.py, decision 0028)."""

    JOURNALED = "journaled"  # the pending entry (the intent, naming the files) is durable
    STAGED = "staged"  # the log's files are written under temporary names and flushed
    IN_TRANSACTION = "in_transaction"  # Neo4j holds the whole batch, not yet committed
    COMMITTED = "committed"  # Neo4j committed the batch (the decision)
    RENAMED = "renamed"  # the log's files have their final names
    MANIFESTED = "manifested"  # the manifest makes the batch visible in the log
    CLEARED = "cleared"  # the pending entry is gone: the ingest is complete


def reach(point: CrashPoint) -> None:
    """Kill this process here when a test armed ``point``; otherwise do nothing."""
    if os.environ.get(ENV) == point.value:
        os.kill(os.getpid(), signal.SIGKILL)
