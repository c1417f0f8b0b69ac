"""The generated plant: exact size, deterministic, redundant, and consistent."""

from __future__ import annotations

from collections import Counter

import pytest

from twinkg.graph_seed.generator import generate
from twinkg.kg.mapping import rdf_to_records, records_to_rdf
from twinkg.kg.records import NodeRecord
from twinkg.kg.store import labels_for
from twinkg.ontology.vocab import Label, PropKey, RelType


def _assets(nodes: tuple[NodeRecord, ...]) -> int:
    return sum(Label.ASSET in labels_for(n.types) for n in nodes)


@pytest.mark.parametrize("size", [1, 7, 100, 2345])
def test_exactly_the_requested_number_of_assets(size: int) -> None:
    assert _assets(generate(assets=size, seed=3).nodes) == size


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    assert generate(assets=500, seed=7) == generate(assets=500, seed=7)
    a, b = generate(assets=500, seed=7), generate(assets=500, seed=8)
    assert [n.props for n in a.nodes] != [n.props for n in b.nodes]


def test_smaller_plant_is_a_prefix_of_a_larger_one() -> None:
    small, large = generate(assets=300, seed=1), generate(assets=900, seed=1)
    small_typed = [n for n in small.nodes if n.types]
    assert [n for n in large.nodes if n.types][: len(small_typed)] == small_typed


def test_duty_standby_pairs_sensors_envelopes_and_policies() -> None:
    records = generate(assets=2000, seed=7)
    rels = Counter(r.type for r in records.rels)
    assert rels[RelType.STANDBY_FOR] > 10
    assert rels[RelType.MONITORS] > 500
    assert rels[RelType.HAS_ENVELOPE] > 10
    kinds = Counter(label for n in records.nodes for label in labels_for(n.types))
    assert kinds[Label.TRUST_THRESHOLD] >= 1 and kinds[Label.APPROVAL_REQUIREMENT] >= 1
    roles = {n.props.get(PropKey.DUTY_ROLE) for n in records.nodes}
    assert {"duty", "standby"} <= roles


def test_every_relationship_end_is_a_node() -> None:
    records = generate(assets=1000, seed=2)
    uris = {n.uri for n in records.nodes}
    assert all(r.start in uris and r.end in uris for r in records.rels)


def test_generated_plant_maps_to_rdf_and_back() -> None:
    records = generate(assets=400, seed=5)
    graph = records_to_rdf(records)
    again = rdf_to_records(graph)
    assert {n.uri: n for n in again.nodes if n.types} == {
        n.uri: n for n in records.nodes if n.types
    }
    assert set(again.rels) == set(records.rels)
