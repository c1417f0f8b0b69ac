"""The run context: what agents act through (stores, facts, planner, recorder, clock).

LangGraph hands this to every node as ``runtime.context``; none of it is in the checkpointed
state. The same nodes run live (facts from Neo4j and the telemetry log, a recorder that writes)
and in replay (facts read back from a decision's record, a recorder that only compares).
Nodes gather their facts through :class:`Gather`, which numbers them as evidence in the state;
:func:`gathered_rows` reads a query's rows back from that evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from twinkg.agents.planning import Planner
from twinkg.agents.state import AgentState, Evidence, Step, WindowEvidence, canonical_json
from twinkg.kg.queries import NamedQuery
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import POINTS_SCHEMA, TelemetryLog
from twinkg.ontology.errors import ReplayInputsMissingError


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Tuning of the agents (from ``api.settings``)."""

    stale_after_s: float = 300.0  # a sensor silent this long before as_of is a finding
    lookback_s: float = 86_400.0  # findings older than this before as_of are not looked at
    finding_limit: int = 500
    baseline_s: float = 600.0  # the window before a finding that symptoms are measured against
    shift_threshold: float = 2.0  # |shift| in standard deviations that counts as a symptom
    watch_s: float = 0.0  # an asset the agents chose to watch: its new anomalies wait this long
    request_ttl_s: float = 28_800.0  # an approval request older than this may only be rejected


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """The software agent that decides, as provenance names it."""

    iri: str
    name: str
    code_version: str


class Facts(Protocol):
    """Where the agents' facts come from: live queries, or a decision's record in a replay."""

    def rows(
        self, query: NamedQuery, ordinal: int, **params: Any
    ) -> tuple[list[dict[str, Any]], Evidence]:
        """The rows of a named query, and the evidence that records it."""
        ...

    def window(
        self, sensors: Sequence[str], start: datetime, end: datetime, ordinal: int
    ) -> tuple[pa.Table, WindowEvidence]:
        """Accepted telemetry points of ``sensors`` in ``[start, end)`` and their evidence."""
        ...


class Recorder(Protocol):
    """Writes a decision record (live) or checks one against the original (replay)."""

    def record(self, state: AgentState) -> Step:
        """Record the decision ``state`` has reached; the action's effect goes with it."""
        ...


def points_hash(table: pa.Table) -> str:
    """SHA-256 over sensor, time (ns) and value of the points, in the log's stable order."""
    digest = hashlib.sha256()
    for sensor in table.column("sensor").to_pylist():
        digest.update(str(sensor).encode() + b"\0")
    times = table.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
    values = table.column("value").to_numpy(zero_copy_only=False)
    digest.update(np.ascontiguousarray(times, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return digest.hexdigest()


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    # Parameters are recorded as JSON: keep only what JSON keeps, so a replay compares equal.
    normalised: dict[str, Any] = json.loads(canonical_json(params))
    return normalised


@dataclass(slots=True)
class LiveFacts:
    """Facts from Neo4j and the telemetry log, as they are now."""

    store: GraphStore
    log: TelemetryLog | None

    def rows(
        self, query: NamedQuery, ordinal: int, **params: Any
    ) -> tuple[list[dict[str, Any]], Evidence]:
        """Run the named read query and record it."""
        rows = self.store.read(query, **params)
        return rows, Evidence(
            ordinal=ordinal, query=query.name, params=_json_params(params), rows=rows
        )

    def window(
        self, sensors: Sequence[str], start: datetime, end: datetime, ordinal: int
    ) -> tuple[pa.Table, WindowEvidence]:
        """Read the window from the log (an empty table when there is no log)."""
        return read_window(self.log, sensors, start, end, ordinal)


def read_window(
    log: TelemetryLog | None, sensors: Sequence[str], start: datetime, end: datetime, ordinal: int
) -> tuple[pa.Table, WindowEvidence]:
    """Accepted points of ``sensors`` in ``[start, end)`` and the evidence that records them."""
    table = (
        POINTS_SCHEMA.empty_table()
        if log is None
        else log.window(sensors=list(sensors), start=start, end=end)
    )
    return table, WindowEvidence(
        ordinal=ordinal,
        sensors=sorted(sensors),
        start=start.isoformat(),
        end=end.isoformat(),
        points=table.num_rows,
        content_hash=points_hash(table),
    )


@dataclass(slots=True)
class RecordedFacts:
    """Facts read back from a decision's record; telemetry re-read from the log and checked.

    A query asked for in another order or with other parameters than recorded is a divergence;
    a window whose points are gone or changed makes the replay impossible
    (:class:`ReplayInputsMissingError`).
    """

    evidence: Sequence[Evidence]
    windows: Sequence[WindowEvidence]
    log: TelemetryLog | None
    divergences: list[str] = field(default_factory=list)

    def rows(
        self, query: NamedQuery, ordinal: int, **params: Any
    ) -> tuple[list[dict[str, Any]], Evidence]:
        """The recorded rows of the query at position ``ordinal``."""
        found = next((e for e in self.evidence if e.ordinal == ordinal), None)
        if found is None:
            raise ReplayInputsMissingError(
                f"the record holds no evidence #{ordinal} ({query.name}) to replay"
            )
        wanted = _json_params(params)
        if found.query != query.name or found.params != wanted:
            self.divergences.append(
                f"evidence #{ordinal}: recorded {found.query} {canonical_json(found.params)}, "
                f"replay asked {query.name} {canonical_json(wanted)}"
            )
        return found.rows, found

    def window(
        self, sensors: Sequence[str], start: datetime, end: datetime, ordinal: int
    ) -> tuple[pa.Table, WindowEvidence]:
        """Re-read the recorded window from the log and check it is the same data."""
        recorded = next((w for w in self.windows if w.ordinal == ordinal), None)
        if recorded is None:
            raise ReplayInputsMissingError(f"the record holds no telemetry window #{ordinal}")
        if self.log is None:
            raise ReplayInputsMissingError("no telemetry log to read the recorded windows from")
        table, live = read_window(
            self.log,
            recorded.sensors,
            datetime.fromisoformat(recorded.start),
            datetime.fromisoformat(recorded.end),
            ordinal,
        )
        if live.content_hash != recorded.content_hash:
            raise ReplayInputsMissingError(
                f"telemetry window #{ordinal} ({recorded.start} to {recorded.end}) is no longer "
                f"in the log as recorded: {recorded.points} points recorded, {live.points} found"
            )
        return table, recorded


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a run acts through; never checkpointed."""

    facts: Facts
    planner: Planner
    recorder: Recorder
    agent: AgentInfo
    clock: Callable[[], datetime]
    settings: AgentSettings = AgentSettings()


def gathered_rows(state: AgentState, query: NamedQuery) -> list[dict[str, Any]]:
    """The rows ``query`` returned when the run last gathered it (none: not gathered yet)."""
    found = [e for e in state.evidence if e.query == query.name]
    return found[-1].rows if found else []


class Gather:
    """Runs a node's named queries and window reads through the context's facts, numbering
    the evidence in the order it is gathered (a replay reads it back in that order)."""

    def __init__(self, ctx: RunContext, state: AgentState) -> None:
        self.ctx = ctx
        self.next = len(state.evidence) + len(state.windows)
        self.evidence: list[Evidence] = []
        self.windows: list[WindowEvidence] = []

    def rows(self, query: NamedQuery, **params: Any) -> list[dict[str, Any]]:
        """The rows of ``query``; recorded as evidence."""
        rows, evidence = self.ctx.facts.rows(query, self.next, **params)
        self.next += 1
        self.evidence.append(evidence)
        return rows

    def window(self, sensors: Sequence[str], start: datetime, end: datetime) -> pa.Table:
        """The telemetry window; recorded as evidence."""
        table, evidence = self.ctx.facts.window(sensors, start, end, self.next)
        self.next += 1
        self.windows.append(evidence)
        return table

    def update(self, state: AgentState) -> dict[str, Any]:
        """The state update that appends what was gathered."""
        return {
            "evidence": [*state.evidence, *self.evidence],
            "windows": [*state.windows, *self.windows],
        }
