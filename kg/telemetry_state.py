"""What the telemetry ingest reads from Neo4j: sensors, detector subjects, envelopes, batches.

Named Cypher only (the writes go through :meth:`kg.store.GraphStore.write`, in one transaction
with the batch node). Rows come back as frozen dataclasses. :func:`batch_decision` is how
recovery learns whether Neo4j committed a batch (decision 0028).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from twinkg.kg.queries import NamedQuery
from twinkg.kg.store import GraphStore

_ALL_SENSORS: LiteralString = "MATCH (s:Sensor) "
# the batch's own sensors, through the uri index (a batch names a few of a plant's sensors)
_BATCH_SENSORS: LiteralString = (
    "UNWIND $sensors AS id MATCH (s:Resource {uri: id}) WHERE s:Sensor WITH DISTINCT s "
)
_SENSOR_ROWS: LiteralString = (
    "OPTIONAL MATCH (s)-[:HAS_UNIT]->(u) "
    "OPTIONAL MATCH (s)-[:MONITORS]->(a) "
    "RETURN s.uri AS uri, s.externalId AS external_id, u.uri AS unit, "
    "s.physicalMin AS min, s.physicalMax AS max, s.lastObservedAt AS last, "
    "s.samplingPeriod AS period, collect(a.uri) AS monitors ORDER BY uri"
)
SENSORS = NamedQuery("telemetry.sensors", _ALL_SENSORS + _SENSOR_ROWS)
BATCH_SENSORS = NamedQuery("telemetry.batch_sensors", _BATCH_SENSORS + _SENSOR_ROWS)

# The equipment a detector watches, with its channels: the sensors on it, on what drives it, and
# on what it is directly part of (a pump's detector also reads its motor and its loop). Each
# subject also carries its newest anomaly and the newest reading of its sensors before this
# batch: an episode that ran through that reading is still active (decision 0046).
_SUBJECT_ROWS: LiteralString = (
    "CALL (e) { MATCH (s:Sensor)-[:MONITORS]->(e) RETURN s "
    "UNION MATCH (s:Sensor)-[:MONITORS]->()-[:DRIVES]->(e) RETURN s "
    "UNION MATCH (e)-[:PART_OF]->()<-[:MONITORS]-(s:Sensor) RETURN s } "
    "WITH e, s ORDER BY s.uri "
    "WITH e, collect(s.uri) AS sensors, collect(coalesce(s.accuracy, 0.0)) AS accuracy, "
    "max(s.lastObservedAt) AS last "
    "CALL (e) { OPTIONAL MATCH (an:Anomaly)-[:CONCERNS]->(e) "
    "WITH an ORDER BY an.occurredAt DESC, an.uri DESC LIMIT 1 "
    "OPTIONAL MATCH (al:Alarm)-[:PROV_WAS_DERIVED_FROM]->(an) "
    "RETURN an.uri AS episode, an.occurredAt AS episode_start, an.endedAt AS episode_end, "
    "an.anomalyScore AS episode_peak, an.sampleCount AS episode_points, "
    "al.uri AS episode_alarm LIMIT 1 } "
    "RETURN e.uri AS asset, e.tag AS tag, sensors, accuracy, last, episode, episode_start, "
    "episode_end, episode_peak, episode_points, episode_alarm ORDER BY asset"
)
DETECTOR_SUBJECTS = NamedQuery(
    "telemetry.detector_subjects",
    "MATCH (e:Equipment) WHERE EXISTS { (:Sensor)-[:MONITORS]->(e) } " + _SUBJECT_ROWS,
)
# only the subjects a batch's sensors are channels of (the others have nothing to score)
BATCH_SUBJECTS = NamedQuery(
    "telemetry.batch_subjects",
    _BATCH_SENSORS + "CALL (s) { MATCH (s)-[:MONITORS]->(e:Equipment) RETURN e "
    "UNION MATCH (s)-[:MONITORS]->()-[:DRIVES]->(e:Equipment) RETURN e "
    "UNION MATCH (s)-[:MONITORS]->()<-[:PART_OF]-(e:Equipment) RETURN e } "
    "WITH DISTINCT e WHERE EXISTS { (:Sensor)-[:MONITORS]->(e) } " + _SUBJECT_ROWS,
)

# Each envelope's newest open alarm on the asset rides along (decision 0046).
_ENVELOPE_ROWS: LiteralString = (
    "MATCH (s)-[:MONITORS]->(a)-[:HAS_ENVELOPE]->(env)-[:FOR_QUANTITY_KIND]->(qk) "
    "WHERE (s)-[:HAS_QUANTITY_KIND]->(qk) "
    "AND EXISTS { MATCH (s)-[:HAS_UNIT]->(u)<-[:HAS_UNIT]-(env) } "
    "CALL (env, a) { OPTIONAL MATCH (al:Alarm)-[:PROV_USED]->(env) "
    "WHERE al.status = 'open' AND (al)-[:CONCERNS]->(a) "
    "RETURN al ORDER BY al.occurredAt DESC, al.uri DESC LIMIT 1 } "
    "RETURN s.uri AS sensor, a.uri AS asset, env.uri AS envelope, "
    "env.minValue AS min, env.maxValue AS max, s.lastObservedAt AS last, "
    "al.uri AS alarm, al.occurredAt AS alarm_start, al.endedAt AS alarm_end "
    "ORDER BY sensor, envelope"
)
ENVELOPES = NamedQuery("telemetry.envelopes", _ALL_SENSORS + _ENVELOPE_ROWS)
BATCH_ENVELOPES = NamedQuery("telemetry.batch_envelopes", _BATCH_SENSORS + _ENVELOPE_ROWS)

# A message a worker ingested with others (decision 0067) is recorded as an IngestMessage in
# its batch: its content hash answers as its batch's.
BATCH_BY_HASH = NamedQuery(
    "telemetry.batch_by_hash",
    "UNWIND $hashes AS h CALL (h) { "
    "MATCH (b:IngestBatch {contentHash: h}) RETURN b.uri AS uri "
    "UNION MATCH (:IngestMessage {contentHash: h})-[:IN_BATCH]->(b:IngestBatch) "
    "RETURN b.uri AS uri } "
    "RETURN h AS hash, min(uri) AS uri",
)

# Run in a transaction that is rolled back (GraphStore.probe): the MERGE on the unique uri waits
# while another transaction that created the batch node is still open, then sees its outcome.
BATCH_DECISION = NamedQuery(
    "telemetry.batch_decision",
    "MERGE (b:Resource {uri: $uri}) RETURN b.contentHash AS hash",
)


TRANSACTION_MEMORY = NamedQuery(
    "telemetry.transaction_memory",
    "SHOW TRANSACTIONS YIELD currentQuery, estimatedUsedHeapMemory AS bytes "
    "WHERE NOT currentQuery CONTAINS 'SHOW TRANSACTIONS' "
    "RETURN coalesce(sum(bytes), 0) AS bytes",
)
"""What Neo4j's open transactions hold now, by its own estimate (what its transaction memory
limit counts); the ingest benchmark samples it."""


@dataclass(frozen=True, slots=True)
class SensorRow:
    """A sensor as the contract and the trust scores see it."""

    uri: str
    external_id: str | None
    unit: str | None
    physical_min: float | None
    physical_max: float | None
    last_observed_at: datetime | None
    sampling_period_s: float | None
    monitors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DetectorSubject:
    """Equipment with the sensors its anomaly detector reads (sorted by IRI)."""

    asset: str
    tag: str | None
    sensors: tuple[str, ...]
    accuracy: tuple[float, ...] = ()  # each sensor's tk:accuracy (0.0 where not stated)
    last_observed: datetime | None = None  # the newest reading of its sensors before the batch
    episode: OpenEpisode | None = None  # its newest anomaly


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """The newest anomaly of a subject, or the newest open alarm of an envelope: an episode a
    batch may continue (decision 0046)."""

    uri: str
    start: datetime
    end: datetime
    peak: float = 0.0
    points: int = 0
    alarm: str | None = None  # the alarm an anomaly raised

    def active_at(self, last_observed: datetime | None) -> bool:
        """Whether the episode ran through the newest reading before this batch (no reading
        since it ended was normal)."""
        return last_observed is not None and self.end >= last_observed


@dataclass(frozen=True, slots=True)
class EnvelopeRow:
    """An operating envelope that a sensor's readings can be held against."""

    sensor: str
    asset: str
    envelope: str
    minimum: float | None
    maximum: float | None
    last_observed: datetime | None = None  # the sensor's newest reading before the batch
    open_alarm: OpenEpisode | None = None  # the envelope's newest open alarm on the asset


def _moment(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value


def _read(
    store: GraphStore, whole: NamedQuery, scoped: NamedQuery, only: Sequence[str] | None
) -> list[dict[str, Any]]:
    """``whole``'s rows, or with ``only`` (sensor IRIs) ``scoped``'s for those sensors."""
    return store.read(whole) if only is None else store.read(scoped, sensors=list(only))


def sensors(store: GraphStore, only: Sequence[str] | None = None) -> list[SensorRow]:
    """Every sensor in the graph, or only those with the IRIs in ``only`` (a batch's)."""
    return [
        SensorRow(
            r["uri"],
            r["external_id"],
            r["unit"],
            r["min"],
            r["max"],
            _moment(r["last"]),
            r["period"],
            tuple(r["monitors"]),
        )
        for r in _read(store, SENSORS, BATCH_SENSORS, only)
    ]


def detector_subjects(
    store: GraphStore, only: Sequence[str] | None = None
) -> list[DetectorSubject]:
    """Every monitored piece of equipment and its detector's channels; with ``only``, the
    equipment one of those sensors (a batch's) is a channel of."""
    return [
        DetectorSubject(
            r["asset"],
            r["tag"],
            tuple(r["sensors"]),
            tuple(float(a) for a in r["accuracy"]),
            _moment(r["last"]),
            _episode(r, "episode"),
        )
        for r in _read(store, DETECTOR_SUBJECTS, BATCH_SUBJECTS, only)
    ]


def _episode(row: Mapping[str, Any], name: str) -> OpenEpisode | None:
    start, end = _moment(row[f"{name}_start"]), _moment(row[f"{name}_end"])
    if row[name] is None or start is None:
        return None
    return OpenEpisode(
        str(row[name]),
        start,
        end or start,
        float(row.get(f"{name}_peak") or 0.0),
        int(row.get(f"{name}_points") or 0),
        row.get(f"{name}_alarm"),
    )


def envelopes(store: GraphStore, only: Sequence[str] | None = None) -> list[EnvelopeRow]:
    """Envelopes whose quantity kind and unit match a sensor on the same asset (with ``only``,
    a sensor among those IRIs)."""
    return [
        EnvelopeRow(
            r["sensor"],
            r["asset"],
            r["envelope"],
            r["min"],
            r["max"],
            _moment(r["last"]),
            _episode(r, "alarm"),
        )
        for r in _read(store, ENVELOPES, BATCH_ENVELOPES, only)
    ]


def batch_applied(store: GraphStore, content_hash: str) -> str | None:
    """The IRI of the batch with this content hash (or holding a message with it), if it was
    applied."""
    return batches_applied(store, [content_hash]).get(content_hash)


def batches_applied(store: GraphStore, content_hashes: Sequence[str]) -> dict[str, str]:
    """Of ``content_hashes``, those applied, each with the IRI of its batch (one read)."""
    rows = store.read(BATCH_BY_HASH, hashes=list(dict.fromkeys(content_hashes)))
    return {str(r["hash"]): str(r["uri"]) for r in rows}


def transaction_memory(store: GraphStore) -> int:
    """Bytes Neo4j's open transactions hold now (other than this question's)."""
    rows = store.read(TRANSACTION_MEMORY)
    return int(rows[0]["bytes"]) if rows else 0


def batch_decision(store: GraphStore, batch_iri: str, content_hash: str) -> bool:
    """Whether Neo4j committed the batch ``batch_iri`` with this content hash. Unlike a read,
    this waits for a transaction still writing that batch (its writer may be dead, its commit
    still under way on the server) to end, so the answer is final."""
    rows = store.probe(BATCH_DECISION, uri=batch_iri)
    return bool(rows) and rows[0]["hash"] == content_hash
