"""Inferred classes in the real Neo4j: labels and ``inferredType`` follow the facts."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import Driver
from rdflib import Literal, URIRef
from rdflib.namespace import XSD
from typer.testing import CliRunner

from tests.conftest import Neo4jTarget
from twinkg.api.cli.reason import app
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.inferred import write_inferred
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.records import GraphRecords, NodeRecord, PropValue, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import TK, PropKey, RelType
from twinkg.reasoner.inference import reclassify

pytestmark = pytest.mark.neo4j

SKAB = plant_namespace("skab-testbed")
PUMP, MOTOR, ALARM = SKAB + "pump", SKAB + "motor", SKAB + "alarm-1"


@pytest.fixture
def skab(empty_store: GraphStore) -> GraphStore:
    records = seeding.with_ontology(plant_records(Plant.SKAB_TESTBED))
    seeding.load(empty_store, Plant.SKAB_TESTBED.value, records)
    return empty_store


def _node(driver: Driver, uri: str) -> dict[str, Any]:
    records, _, _ = driver.execute_query(
        "MATCH (n:Resource {uri: $uri}) RETURN labels(n) AS labels, n.inferredType AS inferred",
        uri=uri,
    )
    return {"labels": set(records[0]["labels"]), "inferred": records[0]["inferred"]}


def _alarm(store: GraphStore, *, status: str, severity: str | list[str] = "critical") -> None:
    props: dict[PropKey, PropValue] = {PropKey.SEVERITY: severity, PropKey.STATUS: status}
    alarm = NodeRecord(ALARM, (str(TK.Alarm),), props)
    store.write(GraphRecords((alarm,), (RelRecord(RelType.CONCERNS, ALARM, MOTOR),)))


def test_the_skab_pump_is_labelled_a_single_point_of_failure(
    skab: GraphStore, driver: Driver
) -> None:
    summary = reclassify(skab)
    assert summary.consistent
    assert summary.added == 1 and summary.removed == 0
    assert summary.tags[PUMP] == "P-1"
    pump = _node(driver, PUMP)
    assert "SinglePointOfFailure" in pump["labels"]
    assert {"CentrifugalPump", "Pump", "Equipment", "Asset"} <= pump["labels"]
    assert pump["inferred"] == [str(TK.SinglePointOfFailure)]
    assert _node(driver, MOTOR)["inferred"] is None


def test_an_alarm_puts_the_motor_at_risk_until_it_is_closed(
    skab: GraphStore, driver: Driver
) -> None:
    reclassify(skab)
    before = _node(driver, MOTOR)["labels"]

    _alarm(skab, status="open")
    opened = reclassify(skab)
    assert (opened.added, opened.removed) == (2, 0)  # the motor and the alarm itself
    motor = _node(driver, MOTOR)
    assert motor["labels"] == before | {"AtRiskAsset"}
    assert motor["inferred"] == [str(TK.AtRiskAsset)]
    assert "CriticalOpenAlarm" in _node(driver, ALARM)["labels"]

    _alarm(skab, status="closed")
    closed = reclassify(skab)
    assert (closed.added, closed.removed) == (0, 2)
    motor = _node(driver, MOTOR)
    assert motor["labels"] == before  # asserted labels untouched, the inferred one gone
    assert motor["inferred"] is None
    assert "CriticalOpenAlarm" not in _node(driver, ALARM)["labels"]
    assert "SinglePointOfFailure" in _node(driver, PUMP)["labels"]


def test_reclassifying_unchanged_facts_changes_nothing(skab: GraphStore, driver: Driver) -> None:
    reclassify(skab)
    pump = _node(driver, PUMP)
    again = reclassify(skab)
    assert (again.added, again.removed) == (0, 0)
    assert _node(driver, PUMP) == pump


def test_an_asserted_label_is_never_removed(skab: GraphStore, driver: Driver) -> None:
    """A node that asserts a defined class keeps its label when it is no longer inferred."""
    write_inferred(skab, {MOTOR: frozenset({str(TK.AtRiskAsset)})})
    skab.write(GraphRecords((NodeRecord(MOTOR, (str(TK.Motor), str(TK.AtRiskAsset))),), ()))
    summary = reclassify(skab)
    assert summary.removed == 1  # no longer in the inferred list ...
    motor = _node(driver, MOTOR)
    assert "AtRiskAsset" in motor["labels"]  # ... but the asserted label stays
    assert motor["inferred"] is None


def test_an_inconsistent_graph_writes_nothing(skab: GraphStore, driver: Driver) -> None:
    reclassify(skab)
    _alarm(skab, status="open", severity=["critical", "low"])  # severity is functional
    summary = reclassify(skab)
    assert not summary.consistent
    assert summary.explanation and str(TK.severity) in summary.explanation
    assert (summary.added, summary.removed) == (0, 0)
    assert "AtRiskAsset" not in _node(driver, MOTOR)["labels"]
    assert "SinglePointOfFailure" in _node(driver, PUMP)["labels"]  # the previous result stays


def test_export_round_trips_with_inferred_types(skab: GraphStore) -> None:
    _alarm(skab, status="open")
    reclassify(skab)
    exported = skab.export(prefix=SKAB)
    assert (
        URIRef(MOTOR),
        TK.inferredType,
        Literal(str(TK.AtRiskAsset), datatype=XSD.anyURI),
    ) in exported
    records = rdf_to_records(exported)  # anyURI literals map back without loss
    motor = next(n for n in records.nodes if n.uri == MOTOR)
    assert motor.props[PropKey.INFERRED_TYPE] == str(TK.AtRiskAsset)
    assert motor.types == (str(TK.Motor),)  # the inferred class is not an asserted type


def test_cli_prints_the_inferred_classes(skab: GraphStore, neo4j_target: Neo4jTarget) -> None:
    result = CliRunner().invoke(app, ["classify"], env=neo4j_target.env())
    assert result.exit_code == 0, result.output
    assert "P-1" in result.output
    assert "SinglePointOfFailure" in result.output
    assert "+1 -0" in result.output


def test_cli_reports_an_inconsistent_graph(skab: GraphStore, neo4j_target: Neo4jTarget) -> None:
    _alarm(skab, status="open", severity=["critical", "low"])
    result = CliRunner().invoke(app, ["classify"], env=neo4j_target.env())
    assert result.exit_code == 5
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error[ontology_inconsistent]: ")
