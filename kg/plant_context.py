"""The part of the stored graph that a plant file is checked with (decision 0039).

A plant file may describe new nodes, restate stored ones and reference stored ones. Its contracts
are judged on the graph as it will be after the write, so the checker needs the stored nodes the
file names, the nodes those reach, the ``tk:partOf`` ancestors of the named nodes (a hierarchy
cycle can close through the store) and the stored assets that already carry one of the file's
tags (tags are unique across the plant). This module reads exactly that, as RDF.
"""

from __future__ import annotations

from collections.abc import Collection

from rdflib import Graph

from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import Label, PropKey, RelType

# One hop out of the named nodes, their partOf ancestors (with their partOf chain), and the
# assets that carry the file's tags. Only IRIs: the nodes are then read as the export reads them.
AROUND = NamedQuery(
    "seed.context_around",
    "CALL () { UNWIND $uris AS u MATCH (:Resource {uri: u})-->(b:Resource) RETURN b.uri AS uri "
    "UNION UNWIND $uris AS u MATCH (:Resource {uri: u})-[:"
    + token(RelType.PART_OF)
    + "*1..]->(a:Resource) RETURN a.uri AS uri "
    "UNION UNWIND $tags AS t MATCH (a:"
    + token(Label.ASSET)
    + ") WHERE a."
    + token(PropKey.TAG)
    + " = t RETURN a.uri AS uri } "
    "RETURN collect(uri) AS uris",
)


def stored_context(store: GraphStore, *, uris: Collection[str], tags: Collection[str]) -> Graph:
    """The stored part a plant file is checked with, as RDF (types, properties, outgoing edges).

    ``uris`` are the IRIs the file names (as subjects or as relationship objects, ontology terms
    left out); ``tags`` are the plant tags it gives. The result holds the stored nodes among
    ``uris``, every node they link to, their ``tk:partOf`` ancestors and the stored assets
    carrying one of ``tags``, each with its properties and outgoing relationships. IRIs that are
    not stored are simply absent.
    """
    named = sorted(set(uris))
    if not named and not tags:
        return Graph()
    [row] = store.read(AROUND, uris=named, tags=sorted(set(tags)))
    return store.export(uris=sorted(set(named) | set(row["uris"])))
