"""The compiled telemetry checks agree with pySHACL, record by record, constraint by constraint."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from rdflib import SH, Graph, Literal, URIRef

import twinkg.shapes as shapes_package
from twinkg.connect.json import from_json_points
from twinkg.graph_seed.telemetry import START, Flaw, Telemetry, break_record, generate
from twinkg.ontology.errors import InvalidInputError, ShapesError
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.reasoner.compiled import CompiledContract, compile_contract
from twinkg.reasoner.points import from_records
from twinkg.reasoner.telemetry_rdf import points_graph
from twinkg.reasoner.validation import validate

Key = tuple[str, str, str | None]
CONTRACT = Path(shapes_package.__file__).parent / "contracts" / "telemetry" / "1.0.0.ttl"


@pytest.fixture(scope="module")
def shapes() -> Graph:
    return Graph().parse(CONTRACT)


@pytest.fixture(scope="module")
def compiled(shapes: Graph) -> CompiledContract:
    return compile_contract(shapes)


def _oracle(shapes: Graph, data: Telemetry) -> list[set[Key]]:
    batch = URIRef(f"{INGEST_BASE}test/batch")
    graph, iris = points_graph(
        data.records, data.sensors, batch=batch, latest_acceptable_ns=data.latest_acceptable_ns
    )
    outcome = validate(graph, shapes)
    found: dict[str, set[Key]] = defaultdict(set)
    for v in outcome.violations:
        found[v.focus_node].add((v.source_shape, v.component, v.source_constraint))
    return [found.get(str(iri), set()) for iri in iris]


def _compiled(compiled: CompiledContract, data: Telemetry) -> list[set[Key]]:
    result = compiled.check(
        from_records(data.records), data.sensors, latest_acceptable_ns=data.latest_acceptable_ns
    )
    return [
        {c.key for c, hit in zip(result.constraints, row, strict=True) if hit}
        for row in result.failures
    ]


def _compare(shapes: Graph, compiled: CompiledContract, data: Telemetry) -> None:
    expected, actual = _oracle(shapes, data), _compiled(compiled, data)
    differences = [
        (i, data.flaws[i], sorted(e, key=str), sorted(a, key=str))
        for i, (e, a) in enumerate(zip(expected, actual, strict=True))
        if e != a
    ]
    assert not differences, differences[:5]


def test_valid_batches_pass_both_ways(shapes: Graph, compiled: CompiledContract) -> None:
    data = generate(48, sensors=6, seed=1)
    assert _compiled(compiled, data) == [set()] * 48
    _compare(shapes, compiled, data)


@pytest.mark.parametrize("flaw", list(Flaw), ids=lambda f: f.value)
def test_each_flaw_gets_the_same_verdict(
    shapes: Graph, compiled: CompiledContract, flaw: Flaw
) -> None:
    data = generate(24, sensors=4, seed=3)
    end = START + timedelta(seconds=24 // 4 + 1)
    break_record(data.records, 13, flaw, sensors=4, end=end, rng=random.Random(0))
    data.flaws[13] = flaw
    verdicts = _compiled(compiled, data)
    assert verdicts[13], f"{flaw} was not caught"
    _compare(shapes, compiled, data)


@pytest.mark.parametrize("seed", range(6))
def test_mixed_batches_agree(shapes: Graph, compiled: CompiledContract, seed: int) -> None:
    data = generate(90, sensors=5, invalid_share=0.35, seed=seed)
    assert any(data.flaws)
    _compare(shapes, compiled, data)


def test_reasons_name_the_broken_rule(compiled: CompiledContract) -> None:
    data = generate(8, sensors=4, seed=0)
    data.records[5]["value"] = float("nan")
    data.records[6]["unit"] = data.records[0]["unit"]
    result = compiled.check(
        from_records(data.records), data.sensors, latest_acceptable_ns=data.latest_acceptable_ns
    )
    assert result.rejected.tolist() == [False] * 5 + [True, True, False]
    reasons = result.reasons()
    assert "physical range" in reasons[0]
    assert "not the sensor's unit" in reasons[1]


def test_an_edited_sparql_query_is_not_compiled(shapes: Graph) -> None:
    edited = Graph()
    for s, p, o in shapes:
        changed = p == SH.select and "?last" in str(o)
        edited.add((s, p, Literal(str(o).replace("<= ?last", "< ?last")) if changed else o))
    with pytest.raises(ShapesError, match="changed"):
        compile_contract(edited)


def test_json_points_refuse_unknown_fields() -> None:
    with pytest.raises(InvalidInputError, match="unknown fields: 'colour'"):
        from_json_points([{"sensor": "x", "colour": "red"}])
    batch = from_json_points([{"sensor": "x", "value": 1}], producer="edge-1")
    assert batch.producer.to_pylist() == ["edge-1"]
    assert batch.sequence.tolist() == [0]


def test_a_batch_of_only_unknown_sensors_is_judged_not_crashed(
    shapes: Graph, compiled: CompiledContract
) -> None:
    """No sensor of the batch is in the graph, so the sensor table is empty: every point breaks
    the contract exactly as pySHACL says (this used to raise IndexError in the look-ups)."""
    data = generate(12, sensors=2, seed=3)
    empty = dataclasses.replace(
        data.sensors,
        uris=data.sensors.uris.slice(0, 0),
        physical_min=data.sensors.physical_min[:0],
        physical_max=data.sensors.physical_max[:0],
        units=data.sensors.units.slice(0, 0),
        last_ns=data.sensors.last_ns[:0],
        has_last=data.sensors.has_last[:0],
    )
    unknown = dataclasses.replace(data, sensors=empty)
    verdicts = _compiled(compiled, unknown)
    assert all(verdicts), verdicts  # every point is refused
    _compare(shapes, compiled, unknown)
