"""The provenance recorder: decisions written with their action, hash-chained (W3C PROV-O).

A *record* is everything one decision owns: the ``tk:Decision`` node (a ``prov:Activity``) with
IRI ``D`` and every node whose IRI starts with ``D + "/"`` (the proposed action, the validation
report, evidence, hypotheses, the approval, the effect), with their properties, asserted types and
outgoing relationships. :func:`record` writes a record, the effect on existing assets, and the
new chain head in ONE Neo4j transaction, so an action never exists without its provenance.

Records form a hash chain: record *n* carries ``tk:chainIndex`` *n*, ``tk:previousHash`` (the hash
of record *n − 1*, empty for the first) and ``tk:recordHash`` = SHA-256 over the previous hash and
the record's triples in canonical N-Triples (times in canonical form, lines sorted), its own
``tk:recordHash`` triple excluded. The chain head (one ``tk:ProvenanceChain`` node) holds the
count and the last hash; writing takes its lock, so records get gap-free indexes even with
several writers. :func:`verify` recomputes every hash from what Neo4j holds now, so it finds an
altered record (hash mismatch), a deleted one (a gap, a broken link, a head that disagrees) and a
record added beside the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rdflib import Graph, URIRef

from kg.mapping import canonical_times, node_triples, records_to_rdf, relationship_triple
from kg.queries import NamedQuery, token
from kg.records import GraphRecords, NodeRecord
from kg.store import GraphStore, StoreTx, labels_for
from ontology.errors import DecisionNotFoundError, StoreError
from ontology.namespaces import DECISION_BASE
from ontology.vocab import TK, Label, PropKey

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

CHAIN_LOCK = NamedQuery(
    "provenance.chain_lock",
    f"MERGE (c:{_RESOURCE}:{_CHAIN} {{uri: $chain}}) "
    f"ON CREATE SET c.{_INDEX} = 0, c.{_HASH} = '', c.rdf_type = [$chain_class] "
    f"SET c.{_INDEX} = c.{_INDEX} "
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

CHAIN_HEAD = NamedQuery(
    "provenance.chain_head",
    f"OPTIONAL MATCH (c:{_RESOURCE} {{uri: $chain}}) "
    f"RETURN coalesce(c.{_INDEX}, 0) AS length, coalesce(c.{_HASH}, '') AS head",
)

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

SET_STATUS = NamedQuery(
    "provenance.set_status",
    f"MATCH (a:{_RESOURCE}:{_ASSET} {{uri: $uri}}) "
    f"WITH a, a.{_STATUS} AS before SET a.{_STATUS} = $status "
    "RETURN before",
)
"""An effect on an existing asset: its operational status (a stop, a switch to standby)."""

PAGE = NamedQuery(
    "provenance.page",
    f"MATCH (d:{_DECISION}) WHERE d.{_INDEX} >= $start AND d.{_INDEX} < $stop "
    f"RETURN d.uri AS uri, d.{_INDEX} AS chain_index, d.{_HASH} AS record_hash, "
    f"d.{_PREV} AS previous_hash ORDER BY chain_index, uri",
)

UNCHAINED = NamedQuery(
    "provenance.unchained",
    f"MATCH (d:{_DECISION}) WHERE d.{_INDEX} IS NULL OR d.{_INDEX} > $length "
    f"OR d.{_INDEX} < 1 RETURN d.uri AS uri, d.{_INDEX} AS chain_index ORDER BY uri LIMIT 100",
)

OWNED_NODES = NamedQuery(
    "provenance.owned_nodes",
    f"UNWIND $records AS d MATCH (n:{_RESOURCE}) "
    "WHERE n.uri = d OR n.uri STARTS WITH d + '/' "
    "RETURN d AS record, n.uri AS uri, coalesce(n.rdf_type, []) AS types, "
    "properties(n) AS props ORDER BY record, uri",
)

OWNED_RELATIONSHIPS = NamedQuery(
    "provenance.owned_relationships",
    f"UNWIND $records AS d MATCH (n:{_RESOURCE})-[r]->(m:{_RESOURCE}) "
    "WHERE n.uri = d OR n.uri STARTS WITH d + '/' "
    "RETURN d AS record, n.uri AS start, type(r) AS type, m.uri AS end "
    "ORDER BY record, start, type, end",
)

_NOT_PROPERTIES = (PropKey.URI.value, PropKey.RDF_TYPE.value, PropKey.RECORD_HASH.value)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """An effect on an asset that already exists: its operational status becomes ``status``."""

    asset: str
    status: str


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


def record_hash(previous: str, triples: Graph) -> str:
    """SHA-256 over the previous hash and the record's canonical triples."""
    digest = hashlib.sha256()
    digest.update(previous.encode())
    digest.update(b"\n")
    digest.update(canonical_ntriples(triples).encode())
    return digest.hexdigest()


def _record_triples(decision: str, records: GraphRecords) -> Graph:
    """The triples the hash covers: owned nodes and their outgoing relationships."""
    owned = GraphRecords(
        tuple(n for n in records.nodes if owns(decision, n.uri)),
        tuple(r for r in records.rels if owns(decision, r.start)),
    )
    return records_to_rdf(owned)


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
) -> Receipt:
    """Write a decision's record, its effect on existing assets, and the chain head, atomically.

    Idempotent by ``decision``: when a record with that IRI exists, nothing is written and its
    receipt comes back with ``created=False`` (a resumed run never applies an action twice).
    Raises :class:`StoreError` when Neo4j fails or a changed asset does not exist; then nothing
    was written.
    """

    for rel in records.rels:
        if not owns(decision, rel.start):
            raise StoreError(f"a record may only add relationships from its own nodes: {rel}")

    def work(tx: StoreTx) -> Receipt:
        head = tx.run(
            CHAIN_LOCK, chain=CHAIN_IRI, chain_class=str(TK.ProvenanceChain), uri=decision
        )[0]
        if head["done"] is not None:
            return _receipt({**head, "uri": head["done"]}, created=False)
        index, previous = int(head["length"]) + 1, str(head["head"])
        stamped = _stamped(records, decision, index, previous)
        digest = record_hash(previous, _record_triples(decision, stamped))
        rows = _node_rows(stamped, decision, digest)
        if tx.run(RECORD_NODES, rows=rows)[0]["written"] != len(rows):
            raise StoreError(f"could not write the nodes of {decision}")
        rels = [{"start": r.start, "type": r.type.value, "end": r.end} for r in stamped.rels]
        if rels and tx.run(RECORD_RELATIONSHIPS, rows=rels)[0]["written"] != len(rels):
            raise StoreError(f"a relationship of {decision} points at a node not in the graph")
        for change in changes:
            if not tx.run(SET_STATUS, uri=change.asset, status=change.status):
                raise StoreError(f"the action's target {change.asset} is not in the graph")
        tx.run(CHAIN_ADVANCE, chain=CHAIN_IRI, length=index, head=digest)
        return Receipt(decision, index, digest, previous, created=True)

    return store.transaction(work)


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


def stored_record(store: GraphStore, decisions: Sequence[str]) -> dict[str, Graph]:
    """The owned triples of each decision as Neo4j holds them now (``tk:recordHash`` aside)."""
    graphs: dict[str, Graph] = {d: Graph() for d in decisions}
    for row in store.read(OWNED_NODES, records=list(decisions)):
        graph = graphs[row["record"]]
        if not owns(row["record"], row["uri"]):
            continue
        props = {k: v for k, v in row["props"].items() if k not in _NOT_PROPERTIES}
        graph += node_triples(row["uri"], row["types"], props)
    for row in store.read(OWNED_RELATIONSHIPS, records=list(decisions)):
        if owns(row["record"], row["start"]):
            graphs[row["record"]].add(relationship_triple(row["start"], row["type"], row["end"]))
    return graphs


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One thing wrong with the chain: which record, what kind, and the detail."""

    chain_index: int | None
    decision: str | None
    kind: str  # altered | missing | broken_link | duplicate | unchained | head_mismatch
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify` checked and found."""

    records: int
    head_hash: str
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        """True when every record's hash and link checks out and the head agrees."""
        return not self.problems


def _pages(length: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(1, length + 1, size):
        yield start, min(start + size, length + 1)


def verify(store: GraphStore, *, page: int = 500, expect_head: str | None = None) -> VerifyReport:
    """Recompute every record's hash from what Neo4j holds and check the links and the head.

    ``expect_head`` is a head hash kept outside the database (printed by an earlier verify):
    when given, a chain whose head differs (records cut off the end together with the head's
    update) is reported too.
    """
    head = store.read(CHAIN_HEAD, chain=CHAIN_IRI)[0]
    length, head_hash = int(head["length"]), str(head["head"])
    problems: list[ChainProblem] = []
    previous = ""
    expected_index = 1
    for start, stop in _pages(length, page):
        rows = store.read(PAGE, start=start, stop=stop)
        graphs = stored_record(store, [r["uri"] for r in rows])
        for row in rows:
            index, uri = int(row["chain_index"]), str(row["uri"])
            if index < expected_index:
                problems.append(ChainProblem(index, uri, "duplicate", "two records share it"))
                continue
            while expected_index < index:
                problems.append(
                    ChainProblem(expected_index, None, "missing", "no record at this index")
                )
                previous = ""  # unknown: the next link cannot be checked against it
                expected_index += 1
            if previous and row["previous_hash"] != previous:
                problems.append(
                    ChainProblem(index, uri, "broken_link", "previousHash is not the hash before")
                )
            recomputed = record_hash(str(row["previous_hash"] or ""), graphs[uri])
            if recomputed != row["record_hash"]:
                problems.append(
                    ChainProblem(index, uri, "altered", "its triples no longer match its hash")
                )
            previous = str(row["record_hash"] or "")
            expected_index = index + 1
    while expected_index <= length:
        problems.append(ChainProblem(expected_index, None, "missing", "no record at this index"))
        expected_index += 1
    if length and previous and previous != head_hash:
        problems.append(
            ChainProblem(length, None, "head_mismatch", "the head's hash is not the last record's")
        )
    for row in store.read(UNCHAINED, length=length):
        problems.append(
            ChainProblem(row["chain_index"], row["uri"], "unchained", "outside the chain")
        )
    if expect_head is not None and expect_head != head_hash:
        problems.append(
            ChainProblem(length, None, "head_mismatch", f"head is {head_hash}, not {expect_head}")
        )
    return VerifyReport(length, head_hash, tuple(problems))


def decision_ref(value: str) -> str:
    """A decision IRI from an IRI or a short id (``<run id>/<step>``)."""
    return value if value.startswith(("http://", "https://")) else DECISION_BASE + value


def is_decision(uri: URIRef | str) -> bool:
    """Whether ``uri`` names a decision record (not the chain head or an owned node)."""
    rest = str(uri).removeprefix(DECISION_BASE)
    return str(uri).startswith(DECISION_BASE) and rest.count("/") == 1
