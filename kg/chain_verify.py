"""Verifying the hash chain of decision records, and reading records back as stored.

:func:`verify` walks the chain in index order, recomputes every record's hash from what Neo4j
holds now (``kg.provenance.record_document``), and checks each record's link to the one before
and the head. It reports an altered record (its hash no longer matches), a missing one (a gap,
a broken link, a head that disagrees), a decision outside the chain, and, given the head hash
kept outside the database, a chain cut short together with its head.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rdflib import Graph

from twinkg.kg.mapping import node_triples, relationship_triple
from twinkg.kg.provenance import CHAIN_IRI, UNHASHED, hashes_to, owns, record_document
from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import Label, PropKey

_RESOURCE, _DECISION = token(Label.RESOURCE), token(Label.DECISION)
_INDEX, _HASH, _PREV = (
    token(PropKey.CHAIN_INDEX),
    token(PropKey.RECORD_HASH),
    token(PropKey.PREVIOUS_HASH),
)

CHAIN_HEAD = NamedQuery(
    "provenance.chain_head",
    f"OPTIONAL MATCH (c:{_RESOURCE} {{uri: $chain}}) "
    f"RETURN coalesce(c.{_INDEX}, 0) AS length, coalesce(c.{_HASH}, '') AS head",
)

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

_OWNED = "n.uri = d.uri OR n.uri STARTS WITH d.uri + '/'"
_SCALAR = "STRING | INTEGER | FLOAT | BOOLEAN"
_PROPERTY = (  # times (and anything not a plain scalar) as text, as the driver's iso_format
    f"CASE WHEN n[k] IS :: {_SCALAR} THEN n[k] "
    f"WHEN n[k] IS :: LIST<ANY> THEN [v IN n[k] | CASE WHEN v IS :: {_SCALAR} THEN v "
    "ELSE toString(v) END] ELSE toString(n[k]) END"
)
_DOCUMENT = (
    f"CALL {{ WITH d MATCH (n:{_RESOURCE}) WHERE {_OWNED} "
    f"WITH n, [k IN keys(n) WHERE NOT k IN $unhashed] AS ks "
    "RETURN collect([n.uri, coalesce(n.rdf_type, []), ks, "
    f"[k IN ks | {_PROPERTY}]]) AS nodes }} "
    f"CALL {{ WITH d MATCH (n:{_RESOURCE})-[r]->(m:{_RESOURCE}) WHERE {_OWNED} "
    "RETURN collect([n.uri, type(r), m.uri]) AS rels } "
    f"RETURN d.uri AS uri, d.{_INDEX} AS chain_index, d.{_HASH} AS record_hash, "
    f"d.{_PREV} AS previous_hash, nodes, rels ORDER BY chain_index, uri"
)

PAGE_DOCUMENTS = NamedQuery(
    "provenance.page_documents",
    f"MATCH (d:{_DECISION}) WHERE d.{_INDEX} >= $start AND d.{_INDEX} < $stop {_DOCUMENT}",
    plain=True,
)
"""A page of the chain, one row per record with its owned nodes and relationships collected:
one round trip and one Bolt record per decision (instead of one per node and relationship),
and times as text from Cypher (the driver's temporal objects cost more than the hash)."""

DOCUMENT_BY_HASH = NamedQuery(
    "provenance.document_by_hash",
    f"MATCH (d:{_DECISION}) WHERE d.{_HASH} = $hash {_DOCUMENT}",
    plain=True,
)
"""The records whose hash is ``$hash`` (an index seek), as :data:`PAGE_DOCUMENTS` gives them:
the trusted head of ``--since``."""

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


def row_document(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The hashed form of one record as a :data:`PAGE_DOCUMENTS` row gives it; ``None`` when a
    time no longer reads as a time (a value changed in type: the record is altered)."""
    uri = str(row["uri"])
    try:
        return record_document(
            (
                (n[0], n[1], dict(zip(n[2], n[3], strict=True)))
                for n in row["nodes"]
                if owns(uri, n[0])
            ),
            ((r[0], r[1], r[2]) for r in row["rels"]),
        )
    except ValueError:
        return None


def intact(row: Mapping[str, Any]) -> bool:
    """Whether one record, as a :data:`PAGE_DOCUMENTS` row gives it, still hashes to its stored
    hash from its previous hash and owned triples."""
    document = row_document(row)
    return document is not None and hashes_to(
        str(row["previous_hash"] or ""), document, str(row["record_hash"] or "")
    )


def stored_record(store: GraphStore, decisions: Sequence[str]) -> dict[str, Graph]:
    """The owned triples of each decision as Neo4j holds them now (``tk:recordHash`` aside)."""
    graphs: dict[str, Graph] = {d: Graph() for d in decisions}
    for row in store.read(OWNED_NODES, records=list(decisions)):
        graph = graphs[row["record"]]
        if not owns(row["record"], row["uri"]):
            continue
        props = {k: v for k, v in row["props"].items() if k not in UNHASHED}
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
    kind: str  # altered | missing | broken_link | duplicate | unchained | head_mismatch | since
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify` checked and found."""

    records: int
    head_hash: str
    problems: tuple[ChainProblem, ...]
    checked: int = 0  # records whose hash was recomputed (all of them, or those after since)
    since_index: int = 0  # the chain index of the trusted head (0: the whole chain)

    @property
    def ok(self) -> bool:
        """True when every record's hash and link checks out and the head agrees."""
        return not self.problems


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic collector held off for one page: its rows are many small lists freed by
    reference counting, and collections over them took half of a verify's time. Held for a
    page at a time (a fraction of a second), so other threads' cycles wait no longer."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pages(length: int, size: int, first: int = 1) -> Iterator[tuple[int, int]]:
    for start in range(first, length + 1, size):
        yield start, min(start + size, length + 1)


def _trusted(store: GraphStore, since: str) -> tuple[int, list[ChainProblem]]:
    """The chain index of the record hashed ``since`` once it is found intact; otherwise 0
    and why not (a record at that hash no longer there, or no longer hashing to it)."""
    rows = store.read(DOCUMENT_BY_HASH, hash=since, unhashed=list(UNHASHED))
    if len(rows) != 1 or rows[0]["chain_index"] is None:
        why = "no record" if not rows else f"{len(rows)} records or one outside the chain"
        detail = f"{why} has the trusted head hash {since}: the chain was rewritten or cut"
        return 0, [ChainProblem(None, None, "since", detail)]
    row = rows[0]
    uri, index = str(row["uri"]), int(row["chain_index"])
    if not intact(row):
        detail = "the trusted head's own triples no longer match its hash"
        return 0, [ChainProblem(index, uri, "altered", detail)]
    return index, []


def _checked_pages(
    store: GraphStore, pages: Iterator[tuple[int, int]]
) -> Iterator[tuple[list[dict[str, Any]], list[bool]]]:
    """Each page's rows with whether each record is intact, the next page read (Neo4j's work
    and the socket) while this one is hashed (Python's)."""

    def read(bounds: tuple[int, int]) -> list[dict[str, Any]]:
        start, stop = bounds
        return store.read(PAGE_DOCUMENTS, start=start, stop=stop, unhashed=list(UNHASHED))

    with ThreadPoolExecutor(1, thread_name_prefix="verify-read") as pool:
        ahead = [pool.submit(read, bounds) for bounds in itertools.islice(pages, 1)]
        while ahead:
            with _collector_paused():  # a page is ~10^5 short-lived lists, none in a cycle
                rows = ahead.pop().result()
                ahead = [pool.submit(read, bounds) for bounds in itertools.islice(pages, 1)]
                verdicts = [intact(row) for row in rows]
            yield rows, verdicts


def verify(
    store: GraphStore,
    *,
    page: int = 500,
    expect_head: str | None = None,
    since: str | None = None,
) -> VerifyReport:
    """Recompute every record's hash from what Neo4j holds and check the links and the head.

    ``expect_head`` is a head hash kept outside the database (printed by an earlier verify):
    when given, a chain whose head differs (records cut off the end together with the head's
    update) is reported too. ``since`` is such a head, trusted: only the record it names and
    the records after it are recomputed, each linked to the one before from there on, so a
    daily audit costs what was added that day. What came before the trusted head is taken as
    the earlier audit found it; a full verify still checks it.
    """
    head = store.read(CHAIN_HEAD, chain=CHAIN_IRI)[0]
    length, head_hash = int(head["length"]), str(head["head"])
    problems: list[ChainProblem] = []
    previous = ""
    expected_index = 1
    first = 1
    if since is not None:
        trusted, problems = _trusted(store, since)
        if problems:
            return VerifyReport(length, head_hash, tuple(problems))
        previous, expected_index, first = since, trusted + 1, trusted + 1
    checked = 0
    for rows, verdicts in _checked_pages(store, _pages(length, page, first)):
        for row, ok in zip(rows, verdicts, strict=True):
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
            checked += 1
            if not ok:
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
    return VerifyReport(length, head_hash, tuple(problems), checked, first - 1)
