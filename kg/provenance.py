"""The provenance recorder: decisions written with their action, hash-chained (W3C PROV-O).

A *record* is everything one decision owns: the ``tk:Decision`` node (a ``prov:Activity``) with
IRI ``D`` and every node whose IRI starts with ``D + "/"`` (the proposed action, the validation
report, evidence, hypotheses, the approval, the effect), with their properties, asserted types and
outgoing relationships. :func:`record` writes a record, the effect on existing assets, and the
new chain head in ONE Neo4j transaction, so an action never exists without its provenance.

Records form a hash chain: record *n* carries ``tk:chainIndex`` *n*, ``tk:previousHash`` (the hash
of record *n − 1*, empty for the first) and ``tk:recordHash`` = SHA-256 over the previous hash and
the record in canonical JSON (:func:`record_document`: each owned node's asserted types and
properties, times in UTC with microseconds, and the relationships leaving owned nodes; keys and
lists sorted), its own ``tk:recordHash`` excluded. The chain head (one ``tk:ProvenanceChain``
node) holds the count and the last hash; writing takes its lock, so records get gap-free
indexes even with several writers. ``kg.chain_verify`` recomputes every hash from what Neo4j
holds now, so it finds an altered or deleted record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from rdflib import XSD, Graph

from twinkg.kg.context import (
    CONTEXT_NODES,
    CONTEXT_RELATIONSHIPS,
    context_from_rows,
    context_params,
    graph_version,
)
from twinkg.kg.mapping import canonical_times, canonical_values
from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.records import GraphRecords, NodeRecord
from twinkg.kg.store import GraphStore, StoreTx, labels_for
from twinkg.ontology.errors import ContextChangedError, DecisionNotFoundError, StoreError
from twinkg.ontology.namespaces import DECISION_BASE
from twinkg.ontology.vocab import PROPERTIES, TK, Label, PropKey

CHAIN_IRI = DECISION_BASE + "chain"
"""The IRI of the chain head."""

_RESOURCE, _DECISION, _CHAIN = (
    token(Label.RESOURCE),
    token(Label.DECISION),
    token(Label.PROVENANCE_CHAIN),
)
_INDEX, _HASH, _PREV = (
    token(PropKey.CHAIN_INDEX),
    token(PropKey.RECORD_HASH),
    token(PropKey.PREVIOUS_HASH),
)
_STATUS = token(PropKey.OPERATIONAL_STATUS)
_ASSET = token(Label.ASSET)

_DATATYPES = {key.value: datatype for key, datatype in PROPERTIES.values()}
UNHASHED = (PropKey.RECORD_HASH.value, PropKey.URI.value, PropKey.RDF_TYPE.value)
"""Properties outside the hashed form: the hash itself, the IRI (the key) and the types."""

CHAIN_LOCK = NamedQuery(
    "provenance.chain_lock",
    f"MERGE (c:{_RESOURCE}:{_CHAIN} {{uri: $chain}}) "
    f"ON CREATE SET c.{_INDEX} = 0, c.{_HASH} = '', c.rdf_type = [$chain_class] "
    # the write lock, by Neo4j's documented idiom (a property set and removed). A no-op
    # `SET c.chainIndex = c.chainIndex` took the lock too, but this statement then returned the
    # head as read before it: two records shared an index under concurrent writers
    "SET c.`_LOCK_` = true REMOVE c.`_LOCK_` "
    f"WITH c OPTIONAL MATCH (d:{_RESOURCE}:{_DECISION} {{uri: $uri}}) "
    f"RETURN c.{_INDEX} AS length, c.{_HASH} AS head, d.uri AS done, "
    f"d.{_INDEX} AS chain_index, d.{_HASH} AS record_hash, d.{_PREV} AS previous_hash",
)
"""Take the chain head's write lock (creating it on first use): its length and last hash, and
the decision's receipt if it was recorded before."""

RECORD_NODES = NamedQuery(
    "provenance.record_nodes",
    f"UNWIND $rows AS row MERGE (n:{_RESOURCE} {{uri: row.uri}}) "
    "SET n:$(row.labels) SET n += row.props "
    "FOREACH (k IN keys(row.t) | SET n[k] = datetime(row.t[k])) "
    "RETURN count(n) AS written",
)
"""A record's nodes in one statement: labels from the generated enum, times rebuilt in Cypher."""

RECORD_RELATIONSHIPS = NamedQuery(
    "provenance.record_relationships",
    f"UNWIND $rows AS row MATCH (a:{_RESOURCE} {{uri: row.start}}) "
    f"MATCH (b:{_RESOURCE} {{uri: row.end}}) CREATE (a)-[:$(row.type)]->(b) "
    "RETURN count(*) AS written",
)
"""A record's relationships (all leave nodes the record owns, which are new)."""

RECORD_WRITE = NamedQuery(
    "provenance.record_write",
    f"CALL {{ UNWIND $rows AS row MERGE (n:{_RESOURCE} {{uri: row.uri}}) "
    "SET n:$(row.labels) SET n += row.props "
    "FOREACH (k IN keys(row.t) | SET n[k] = datetime(row.t[k])) RETURN count(n) AS nodes } "
    f"CALL {{ UNWIND $rels AS row MATCH (a:{_RESOURCE} {{uri: row.start}}) "
    f"MATCH (b:{_RESOURCE} {{uri: row.end}}) CREATE (a)-[:$(row.type)]->(b) "
    "RETURN count(*) AS rels } "
    f"MATCH (c:{_RESOURCE} {{uri: $chain}}) SET c.{_INDEX} = $length, c.{_HASH} = $head "
    "RETURN nodes, rels",
)
"""One record written in one round trip (:func:`record`): its nodes, its relationships (to
nodes that exist, its own just written included) and the chain head moved on, as
:data:`RECORD_NODES`, :data:`RECORD_RELATIONSHIPS` and :data:`CHAIN_ADVANCE` do in turn for
:func:`record_many`."""

CHAIN_ADVANCE = NamedQuery(
    "provenance.chain_advance",
    f"MATCH (c:{_RESOURCE} {{uri: $chain}}) SET c.{_INDEX} = $length, c.{_HASH} = $head",
)

RECEIPT = NamedQuery(
    "provenance.receipt",
    f"MATCH (d:{_RESOURCE}:{_DECISION} {{uri: $uri}}) "
    f"RETURN d.uri AS uri, d.{_INDEX} AS chain_index, d.{_HASH} AS record_hash, "
    f"d.{_PREV} AS previous_hash",
)

RECEIPTS = NamedQuery(
    "provenance.receipts",
    f"UNWIND $uris AS u MATCH (d:{_RESOURCE}:{_DECISION} {{uri: u}}) "
    f"RETURN d.uri AS uri, d.{_INDEX} AS chain_index, d.{_HASH} AS record_hash, "
    f"d.{_PREV} AS previous_hash",
)

SET_STATUS = NamedQuery(
    "provenance.set_status",
    f"MATCH (a:{_RESOURCE}:{_ASSET} {{uri: $uri}}) "
    f"WITH a, a.{_STATUS} AS before SET a.{_STATUS} = $status "
    "RETURN before",
)
"""An effect on an existing asset: its operational status (a stop, a switch to standby)."""

PREMISE_LOCK = NamedQuery(
    "provenance.premise_lock",
    f"UNWIND $uris AS u MATCH (n:{_RESOURCE} {{uri: u}}) "
    # the right-hand side reads the node: Cypher takes its write lock before reading (Neo4j's
    # "lost updates" idiom), so a writer of these nodes waits for this transaction, and the
    # context read next sees every write committed before it
    "SET n.uri = n.uri RETURN count(n) AS locked",
)
"""Take the write locks of the nodes of an action's context (decision 0086)."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """An effect on an asset that already exists: its operational status becomes ``status``."""

    asset: str
    status: str


@dataclass(frozen=True, slots=True)
class Premise:
    """What the guard judged an action on: the target's context (``kg.context``) had
    ``version`` (:func:`kg.context.graph_version`) and these ``nodes``. An applied action is
    recorded only while that still holds (decision 0086)."""

    target: str
    version: str
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where a record sits in the chain. ``created`` is False when it had been written before
    (the same decision IRI): nothing was applied a second time."""

    decision: str
    chain_index: int
    record_hash: str
    previous_hash: str
    created: bool


def owns(decision: str, uri: str) -> bool:
    """Whether node ``uri`` belongs to the record of ``decision``."""
    return uri == decision or uri.startswith(decision + "/")


def canonical_ntriples(graph: Graph) -> str:
    """The graph as N-Triples, times canonical, one triple per line, lines sorted."""
    lines = canonical_times(graph).serialize(format="nt").splitlines()
    return "\n".join(sorted(line for line in lines if line.strip())) + "\n"


_TIME_KEYS = frozenset(
    key for key, datatype in _DATATYPES.items() if datatype in (str(XSD.dateTime), str(XSD.date))
)


def _value(key: str, value: Any) -> Any:
    """A property value in the hashed form: times as UTC ISO 8601 with microseconds."""
    if isinstance(value, list):
        return [_value(key, v) for v in value]
    if key in _TIME_KEYS:
        moment = value if isinstance(value, datetime) else _from_iso(str(value))
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def _from_iso(text: str) -> datetime:
    """Neo4j's ISO text (``Z``, nanoseconds, a ``[zone id]`` after the offset) as a datetime
    (microseconds)."""
    head, dot, rest = text.partition("[")[0].replace("Z", "+00:00").partition(".")
    if dot:
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        head = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(head)


def record_document(
    nodes: Iterable[tuple[str, Sequence[str], Mapping[str, Any]]],
    rels: Iterable[tuple[str, str, str]],
) -> dict[str, Any]:
    """The record as the hash sees it: each owned node's asserted types and properties
    (``tk:recordHash`` aside), and the relationships leaving owned nodes, all sorted."""
    document: dict[str, Any] = {}
    for uri, types, props in nodes:
        document[uri] = {
            "types": sorted(types),
            "props": {
                k: _value(k, v) if k in _TIME_KEYS else v
                for k, v in props.items()
                if k not in UNHASHED
            },
        }
    return {"nodes": document, "relationships": sorted([list(r) for r in rels])}


def hashed_bytes(previous: str, document: Mapping[str, Any]) -> bytes:
    """What a record's hash is taken over: the previous hash, a newline, and the record's
    canonical JSON (keys sorted, no spaces, UTF-8)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{previous}\n{text}".encode()


def record_hash(previous: str, document: Mapping[str, Any]) -> str:
    """SHA-256 over :func:`hashed_bytes`."""
    return hashlib.sha256(hashed_bytes(previous, document)).hexdigest()


def hashes_to(previous: str, document: Mapping[str, Any], digest: str) -> bool:
    """Whether :func:`record_hash` of the record is ``digest``, found faster.

    orjson writes the canonical JSON of nearly every record byte for byte as ``json.dumps``
    does, about ten times faster. When its bytes hash to ``digest``, they are the bytes that
    were hashed (SHA-256), so the record is intact; otherwise (an altered record, or one whose
    floats or characters orjson writes another way) the canonical encoder decides. The answer
    is always :func:`record_hash`'s (decision 0079).
    """
    try:
        text = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a key or a number it does not write
        text = b""
    if text and hashlib.sha256(previous.encode() + b"\n" + text).hexdigest() == digest:
        return True
    return record_hash(previous, document) == digest


def _document(decision: str, records: GraphRecords) -> dict[str, Any]:
    """The hashed form of the records a decision owns."""
    return record_document(
        (
            (n.uri, n.types, {k.value: v for k, v in n.props.items()})
            for n in records.nodes
            if owns(decision, n.uri)
        ),
        ((r.start, r.type.value, r.end) for r in records.rels if owns(decision, r.start)),
    )


def _stamped(records: GraphRecords, decision: str, index: int, previous: str) -> GraphRecords:
    nodes = []
    found = False
    for node in records.nodes:
        if node.uri == decision:
            found = True
            props = dict(node.props)
            props[PropKey.CHAIN_INDEX] = index
            props[PropKey.PREVIOUS_HASH] = previous
            node = NodeRecord(node.uri, node.types, props)  # noqa: PLW2901 - stamped copy
        nodes.append(node)
    if not found:
        raise StoreError(f"the record holds no node for its decision {decision}")
    return GraphRecords(tuple(nodes), records.rels)


def _node_rows(records: GraphRecords, decision: str, digest: str) -> list[dict[str, Any]]:
    """Rows for :data:`RECORD_NODES`: labels, plain properties, and times as ISO text."""
    rows = []
    for node in records.nodes:
        props: dict[str, Any] = {}
        times: dict[str, str] = {}
        for key, value in node.props.items():
            if isinstance(value, datetime):
                times[key.value] = value.isoformat()
            elif isinstance(value, list) and value and isinstance(value[0], datetime):
                raise StoreError(f"{node.uri}: lists of times are not recorded ({key.value})")
            else:
                props[key.value] = value
        if node.types:
            props[PropKey.RDF_TYPE.value] = sorted(node.types)
        if node.uri == decision:
            props[PropKey.RECORD_HASH.value] = digest
        labels = [label.value for label in labels_for(node.types) if label is not Label.RESOURCE]
        rows.append({"uri": node.uri, "labels": labels, "props": props, "t": times})
    return rows


def record(
    store: GraphStore,
    records: GraphRecords,
    *,
    decision: str,
    changes: Sequence[StatusChange] = (),
    premise: Premise | None = None,
) -> Receipt:
    """Write a decision's record, its effect on existing assets, and the chain head, atomically.

    Idempotent by ``decision``: when a record with that IRI exists, nothing is written and its
    receipt comes back with ``created=False`` (a resumed run never applies an action twice).
    Raises :class:`StoreError` when Neo4j fails or a changed asset does not exist; then nothing
    was written. With a ``premise``, the action's context is locked and read again in the same
    transaction, after the chain head's lock; :class:`ContextChangedError` (nothing written)
    when it is no longer the context the guard judged.
    """

    for rel in records.rels:
        if not owns(decision, rel.start):
            raise StoreError(f"a record may only add relationships from its own nodes: {rel}")
    records = canonical_values(records)  # hashed as an export and a reseed give it back

    def work(tx: StoreTx) -> Receipt:
        head = tx.run(
            CHAIN_LOCK, chain=CHAIN_IRI, chain_class=str(TK.ProvenanceChain), uri=decision
        )[0]
        if head["done"] is not None:
            return _receipt({**head, "uri": head["done"]}, created=False)
        if premise is not None:
            _hold(tx, premise, decision)
        index, previous = int(head["length"]) + 1, str(head["head"])
        stamped = _stamped(records, decision, index, previous)
        digest = record_hash(previous, _document(decision, stamped))
        rows = _node_rows(stamped, decision, digest)
        rels = [{"start": r.start, "type": r.type.value, "end": r.end} for r in stamped.rels]
        written = tx.run(
            RECORD_WRITE, rows=rows, rels=rels, chain=CHAIN_IRI, length=index, head=digest
        )
        if not written or written[0]["nodes"] != len(rows):
            raise StoreError(f"could not write the nodes of {decision}")
        if written[0]["rels"] != len(rels):
            raise StoreError(f"a relationship of {decision} points at a node not in the graph")
        for change in changes:
            if not tx.run(SET_STATUS, uri=change.asset, status=change.status):
                raise StoreError(f"the action's target {change.asset} is not in the graph")
        tx.touch(_touched(stamped, [c.asset for c in changes]))
        return Receipt(decision, index, digest, previous, created=True)

    return store.transaction(work)


def record_many(
    store: GraphStore, items: Sequence[tuple[GraphRecords, str]], *, batch: int = 5000
) -> list[Receipt]:
    """Chain many decision records in ONE transaction (an import, or a backfill).

    Each item is a decision's records and its IRI, chained in the given order exactly as
    :func:`record` would chain them one by one; decisions already recorded are skipped
    (``created=False``). No effect on existing assets is applied here: effects go with
    :func:`record`. ``batch`` bounds the rows of one statement.
    """
    for records, decision in items:
        for rel in records.rels:
            if not owns(decision, rel.start):
                raise StoreError(f"a record may only add relationships from its own nodes: {rel}")
    items = [(canonical_values(records), decision) for records, decision in items]

    def work(tx: StoreTx) -> list[Receipt]:
        head = tx.run(CHAIN_LOCK, chain=CHAIN_IRI, chain_class=str(TK.ProvenanceChain), uri="")[0]
        index, previous = int(head["length"]), str(head["head"])
        done = {
            row["uri"]: row for row in tx.run(RECEIPTS, uris=[decision for _, decision in items])
        }
        receipts: list[Receipt] = []
        nodes: list[dict[str, Any]] = []
        rels: list[dict[str, str]] = []
        for records, decision in items:
            if decision in done:
                receipts.append(_receipt(done[decision], created=False))
                continue
            index += 1
            stamped = _stamped(records, decision, index, previous)
            digest = record_hash(previous, _document(decision, stamped))
            nodes += _node_rows(stamped, decision, digest)
            tx.touch(_touched(stamped, ()))
            rels += [{"start": r.start, "type": r.type.value, "end": r.end} for r in stamped.rels]
            receipts.append(Receipt(decision, index, digest, previous, created=True))
            previous = digest
        for i in range(0, len(nodes), batch):
            chunk = nodes[i : i + batch]
            if tx.run(RECORD_NODES, rows=chunk)[0]["written"] != len(chunk):
                raise StoreError("could not write the nodes of a batch of records")
        for i in range(0, len(rels), batch):
            chunk2 = rels[i : i + batch]
            if tx.run(RECORD_RELATIONSHIPS, rows=chunk2)[0]["written"] != len(chunk2):
                raise StoreError("a relationship of a record points at a node not in the graph")
        tx.run(CHAIN_ADVANCE, chain=CHAIN_IRI, length=index, head=previous)
        return receipts

    return store.transaction(work)


def _hold(tx: StoreTx, premise: Premise, decision: str) -> None:
    """Lock the premise's nodes and read the context again; raise unless it is the same.

    Every record transaction holds the chain head's lock already, so what other decisions
    applied is seen; the nodes' locks make other writers (run feedback, people) wait or be seen.
    Locked in IRI order, so two holders never wait on each other."""
    tx.run(PREMISE_LOCK, uris=sorted(set(premise.nodes)))
    nodes = tx.run(CONTEXT_NODES, uri=premise.target)
    now = ""  # the target is gone
    if nodes:
        rels = tx.run(CONTEXT_RELATIONSHIPS, **context_params(nodes))
        now = graph_version(context_from_rows(nodes, rels))
    if now != premise.version:
        raise ContextChangedError(
            f"the context of {premise.target} changed after the guard judged {decision} "
            f"(version {premise.version[:12]} then, {now[:12] or 'no asset'} now): "
            "nothing was applied"
        )


def _touched(records: GraphRecords, assets: Iterable[str]) -> list[str]:
    """What writing ``records`` changes, for the change log: their nodes, the start of each
    relationship, the status-changed ``assets``, and the chain head."""
    uris = [n.uri for n in records.nodes] + [r.start for r in records.rels]
    return [*uris, *assets, CHAIN_IRI]


def _receipt(row: dict[str, Any], *, created: bool) -> Receipt:
    return Receipt(
        str(row["uri"]),
        int(row["chain_index"] or 0),
        str(row["record_hash"] or ""),
        str(row["previous_hash"] or ""),
        created,
    )


def receipt(store: GraphStore, decision: str) -> Receipt:
    """The chain position of a stored decision; :class:`DecisionNotFoundError` if none."""
    rows = store.read(RECEIPT, uri=decision)
    if not rows:
        raise DecisionNotFoundError(f"no decision {decision!r} in the graph")
    return _receipt(rows[0], created=False)


def decision_ref(value: str) -> str:
    """A decision IRI from an IRI or a short id (``<run id>/<step>``)."""
    return value if value.startswith(("http://", "https://")) else DECISION_BASE + value
