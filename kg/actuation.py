"""Actuation records: the result of writing an applied action's value to the plant (OPC UA
write-back, decision 0058), and the sensor lookups a mapping needs.

An action is written back only when its decision is on the provenance chain with outcome
``applied`` and an effect (``<decision>/effect``): what the guard allowed and the recorder wrote.
The write's result is a ``prov:Activity`` of its own, IRI ``WRITEBACK_BASE + <run id>/<step>``,
outside the decision's record (which is hash-chained and never changes after it is written):
it ``prov:wasInformedBy`` the decision and ``prov:used`` the effect it carried out, and holds
the NodeId written (``externalId``), the value (``value``), what the server read back
(``sosa:hasSimpleResult``), ``status`` (``writing``, ``written`` or ``failed``), the OPC UA
status code (``reason``) and the times. The record is claimed (``writing``) before the write
and completed after, so an action is written at most once even with two write-back workers;
a claim left ``writing`` (a crash mid-write) is never retried on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rdflib.namespace import PROV

from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore, StoreTx
from twinkg.ontology.namespaces import DECISION_BASE, WRITEBACK_BASE
from twinkg.ontology.vocab import Label, PropKey, RelType

_RESOURCE, _DECISION, _SENSOR = token(Label.RESOURCE), token(Label.DECISION), token(Label.SENSOR)
_ACTIVITY = token(Label.PROV_ACTIVITY)
_ACTION = token(Label.PROPOSED_ACTION)
_MONITORS, _KIND = token(RelType.MONITORS), token(RelType.HAS_QUANTITY_KIND)
_GEN, _USED = token(RelType.PROV_WAS_GENERATED_BY), token(RelType.PROV_USED)
_INFORMED, _CONCERNS = token(RelType.PROV_WAS_INFORMED_BY), token(RelType.CONCERNS)
_SETPOINT_KIND = token(RelType.SETPOINT_QUANTITY_KIND)
_INDEX, _OUTCOME = token(PropKey.CHAIN_INDEX), token(PropKey.OUTCOME)
_ACTION_KIND, _VALUE = token(PropKey.ACTION_KIND), token(PropKey.VALUE)
_STATUS, _REASON = token(PropKey.STATUS), token(PropKey.REASON)
_RESULT, _EXTERNAL = token(PropKey.SOSA_HAS_SIMPLE_RESULT), token(PropKey.EXTERNAL_ID)
_STARTED, _ENDED = token(PropKey.PROV_STARTED_AT_TIME), token(PropKey.PROV_ENDED_AT_TIME)
_LABEL, _OCCURRED = token(PropKey.RDFS_LABEL), token(PropKey.OCCURRED_AT)

SENSORS_OF = NamedQuery(
    "actuation.sensors_of",
    "UNWIND $pairs AS p "
    f"OPTIONAL MATCH (s:{_RESOURCE}:{_SENSOR})-[:{_MONITORS}]->(:{_RESOURCE} {{uri: p.asset}}) "
    f"WHERE EXISTS {{ (s)-[:{_KIND}]->(:{_RESOURCE} {{uri: p.kind}}) }} "
    "RETURN p.asset AS asset, p.kind AS kind, collect(s.uri) AS sensors",
)
"""The sensors that monitor each asset in a quantity kind (``pairs``: ``{asset, kind}``)."""

WRITES_DUE = NamedQuery(
    "actuation.writes_due",
    f"MATCH (d:{_RESOURCE}:{_DECISION}) "
    f"WHERE d.{_OUTCOME} = 'applied' AND d.{_INDEX} IS NOT NULL AND d.uri STARTS WITH $decisions "
    f"MATCH (e:{_RESOURCE} {{uri: d.uri + '/effect'}})-[:{_GEN}]->(d) "
    f"WHERE e.{_OCCURRED} >= datetime($since) "
    f"MATCH (e)-[:{_CONCERNS}]->(asset:{_RESOURCE}) "
    f"OPTIONAL MATCH (own:{_RESOURCE}:{_ACTION} {{uri: d.uri + '/action'}}) "
    f"OPTIONAL MATCH (d)-[:{_USED}]->(used:{_RESOURCE}:{_ACTION}) "
    "WITH d, e, asset, coalesce(own, used) AS a "
    f"WHERE [a.{_ACTION_KIND}, asset.uri] IN $targets "
    "AND NOT EXISTS { MATCH (w:Resource {uri: $writes + substring(d.uri, size($decisions))}) } "
    f"OPTIONAL MATCH (a)-[:{_SETPOINT_KIND}]->(k:{_RESOURCE}) "
    f"RETURN d.uri AS decision, d.{_INDEX} AS chain_index, a.{_ACTION_KIND} AS kind, "
    f"asset.uri AS asset, k.uri AS quantity_kind, e.{_VALUE} AS value, e.uri AS effect "
    "ORDER BY chain_index LIMIT $limit",
)
"""Applied, recorded actions on ``targets`` (``[action kind, asset]`` pairs) whose effect
happened ``since`` or later, with no write-back record yet, oldest first."""

CLAIM_WRITE = NamedQuery(
    "actuation.claim_write",
    f"MATCH (d:{_RESOURCE}:{_DECISION} {{uri: $decision}}) "
    f"MATCH (e:{_RESOURCE} {{uri: $effect}}) "
    f"MERGE (w:{_RESOURCE} {{uri: $uri}}) "
    f"ON CREATE SET w:{_ACTIVITY}, w.rdf_type = [$activity], w.{_STATUS} = 'writing', "
    f"w.{_STARTED} = datetime($at), w.{_EXTERNAL} = $node, w.{_VALUE} = $value, "
    f"w.{_LABEL} = $label "
    f"MERGE (w)-[:{_INFORMED}]->(d) MERGE (w)-[:{_USED}]->(e) "
    f"RETURN w.{_STATUS} = 'writing' AND w.{_STARTED} = datetime($at) AS claimed",
)
"""Claim the write of one action (create its record as ``writing``); ``claimed`` is false when
another worker's record exists."""

FINISH_WRITE = NamedQuery(
    "actuation.finish_write",
    f"MATCH (w:{_RESOURCE} {{uri: $uri}}) WHERE w.{_STATUS} = 'writing' "
    f"SET w.{_STATUS} = $status, w.{_REASON} = $reason, w.{_RESULT} = $result, "
    f"w.{_ENDED} = datetime($at) RETURN w.uri AS uri",
)

WRITE_RECORD = NamedQuery(
    "actuation.write_record",
    f"MATCH (w:{_RESOURCE} {{uri: $uri}})-[:{_INFORMED}]->(d:{_RESOURCE}:{_DECISION}) "
    f"RETURN w.uri AS uri, d.uri AS decision, w.{_STATUS} AS status, w.{_REASON} AS reason, "
    f"w.{_VALUE} AS value, w.{_RESULT} AS result, w.{_EXTERNAL} AS node",
)


@dataclass(frozen=True, slots=True)
class DueWrite:
    """An applied, recorded action whose value has not been written back yet."""

    decision: str
    effect: str
    chain_index: int
    kind: str
    asset: str
    quantity_kind: str | None
    value: float | None


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """What a write-back record holds."""

    uri: str
    decision: str
    status: str
    reason: str | None
    value: float | None
    result: str | None
    node: str | None


def write_uri(decision: str) -> str:
    """The IRI of the write-back record of ``decision`` (outside the decision's record)."""
    if not decision.startswith(DECISION_BASE):
        raise ValueError(f"not a decision IRI: {decision!r}")
    return WRITEBACK_BASE + decision[len(DECISION_BASE) :]


def sensors_of(
    store: GraphStore, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[str]]:
    """The sensors monitoring each ``(asset, quantity kind)``, sorted."""
    rows = store.read(SENSORS_OF, pairs=[{"asset": a, "kind": k} for a, k in pairs])
    return {(r["asset"], r["kind"]): sorted(r["sensors"]) for r in rows}


def writes_due(
    store: GraphStore,
    targets: Sequence[tuple[str, str]],
    *,
    since: datetime,
    limit: int = 100,
) -> list[DueWrite]:
    """Applied, recorded actions on ``targets`` (action kind, asset) with no write-back record
    yet, oldest first; only those whose effect happened ``since`` or later (an action older
    than that is stale: it is never written to the plant late)."""
    rows = store.read(
        WRITES_DUE,
        targets=[[kind, asset] for kind, asset in targets],
        since=since.isoformat(),
        decisions=DECISION_BASE,
        writes=WRITEBACK_BASE,
        limit=limit,
    )
    return [
        DueWrite(
            r["decision"],
            r["effect"],
            int(r["chain_index"]),
            r["kind"],
            r["asset"],
            r["quantity_kind"],
            None if r["value"] is None else float(r["value"]),
        )
        for r in rows
    ]


def claim_write(store: GraphStore, due: DueWrite, *, node: str, value: float, at: datetime) -> bool:
    """Create the write-back record of ``due`` as ``writing``; False when one exists already
    (another worker claimed it): then nothing may be written."""
    uri = write_uri(due.decision)

    def work(tx: StoreTx) -> bool:
        rows = tx.run(
            CLAIM_WRITE,
            decision=due.decision,
            effect=due.effect,
            uri=uri,
            activity=str(PROV.Activity),
            at=at.isoformat(),
            node=node,
            value=value,
            label=f"OPC UA write of {node}",
        )
        claimed = bool(rows and rows[0]["claimed"])
        if claimed:
            tx.touch([uri])
        return claimed

    return store.transaction(work)


def finish_write(
    store: GraphStore, decision: str, *, ok: bool, reason: str, result: str | None, at: datetime
) -> None:
    """Complete the claimed record of ``decision``: ``written`` or ``failed`` with the OPC UA
    status code (``reason``) and the value read back (``result``)."""
    uri = write_uri(decision)

    def work(tx: StoreTx) -> None:
        done = tx.run(
            FINISH_WRITE,
            uri=uri,
            status="written" if ok else "failed",
            reason=reason,
            result=result,
            at=at.isoformat(),
        )
        if done:
            tx.touch([uri])

    store.transaction(work)


def write_record(store: GraphStore, decision: str) -> WriteRecord | None:
    """The write-back record of ``decision``, if there is one."""
    rows = store.read(WRITE_RECORD, uri=write_uri(decision))
    if not rows:
        return None
    r = rows[0]
    value = None if r["value"] is None else float(r["value"])
    return WriteRecord(
        r["uri"], r["decision"], r["status"], r["reason"], value, r["result"], r["node"]
    )
