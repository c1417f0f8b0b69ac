"""The property-graph form of TwinKG data: what the mapping produces and the writer stores.

A node is identified by its IRI (``uri``); ``types`` are the *asserted* classes (stored as the
``rdf_type`` property), from which the writer derives the labels of the class and all its
superclasses. Property keys and relationship types come only from the generated vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from twinkg.ontology.vocab import PropKey, RelType


@dataclass(frozen=True, slots=True, order=True)
class LangString:
    """A text with its language tag (``""`` for a plain string beside tagged ones); stored as
    the text under the property's key and the tag under ``<key>__lang`` (decision 0038)."""

    text: str
    lang: str


Scalar = str | int | float | bool | datetime | date | LangString
PropValue = (
    Scalar
    | list[str]
    | list[int]
    | list[float]
    | list[bool]
    | list[datetime]
    | list[date]
    | list[LangString]
)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node: its IRI, asserted class IRIs and properties (lists for multi-valued ones)."""

    uri: str
    types: tuple[str, ...] = ()
    props: Mapping[PropKey, PropValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RelRecord:
    """One relationship ``(start)-[type]->(end)`` between two node IRIs."""

    type: RelType
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class GraphRecords:
    """A batch of nodes and relationships; every relationship end is one of the nodes."""

    nodes: tuple[NodeRecord, ...]
    rels: tuple[RelRecord, ...]

    def merged_with(self, other: GraphRecords) -> GraphRecords:
        """Both batches as one (a node present in both keeps the fuller record)."""
        by_uri = {n.uri: n for n in self.nodes}
        for node in other.nodes:
            mine = by_uri.get(node.uri)
            if mine is None or (not mine.types and not mine.props):
                by_uri[node.uri] = node
        rels = dict.fromkeys(self.rels + other.rels)
        return GraphRecords(tuple(by_uri.values()), tuple(rels))


class RecordBuilder:
    """Collects the nodes and relationships of one record (a decision's, an edge decision's)
    as they are named: properties that are ``None`` and relationships to no end are left out."""

    def __init__(self) -> None:
        self.nodes: list[NodeRecord] = []
        self.rels: list[RelRecord] = []

    def node(self, uri: str, cls: object, **props: PropValue | None) -> str:
        """Add the node ``uri`` of class ``cls`` with ``props``; its IRI."""
        clean = {PropKey(k): v for k, v in props.items() if v is not None}
        self.nodes.append(NodeRecord(uri, (str(cls),), clean))
        return uri

    def rel(self, rel: RelType, start: str, end: str | None) -> None:
        """Add ``(start)-[rel]->(end)`` when ``end`` is given."""
        if end:
            self.rels.append(RelRecord(rel, start, end))

    def records(self) -> GraphRecords:
        """What was added, each relationship once."""
        return GraphRecords(tuple(self.nodes), tuple(dict.fromkeys(self.rels)))
