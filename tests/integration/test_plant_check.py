"""A plant file is judged with the stored graph it touches, and units come from closed lists.

Real Neo4j holding the SKAB testbed; the files below add a sensor to it or break it on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from neo4j import Driver
from rdflib import SH

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.test_cli import run
from twinkg.graph_seed import plant_check
from twinkg.graph_seed.registry import turtle_plant
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ContractViolationError

pytestmark = pytest.mark.neo4j

PREFIXES = """\
@prefix skab: <https://w3id.org/twinkg/plant/skab-testbed/> .
@prefix my: <https://w3id.org/twinkg/plant/my-extension/> .
@prefix tk: <https://w3id.org/twinkg/ontology#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix unit: <http://qudt.org/vocab/unit/> .
@prefix quantitykind: <http://qudt.org/vocab/quantitykind/> .
"""

# A second pressure transmitter on the stored SKAB pump, in the stored loop: the file holds only
# the sensor; the pump and the loop (with their tags and criticality) are in Neo4j.
SENSOR = (
    PREFIXES
    + """
my:pt-9 a tk:Sensor ; tk:tag "PT-9" ; tk:criticality "C" ;
    tk:hasQuantityKind quantitykind:Pressure ; tk:hasUnit unit:PSI ;
    tk:physicalMin "-30.0"^^xsd:double ; tk:physicalMax "70.0"^^xsd:double ;
    tk:samplingPeriod "1.0"^^xsd:double ;
    tk:partOf skab:loop ;
    tk:monitors skab:pump .
"""
)
PT9 = "https://w3id.org/twinkg/plant/my-extension/pt-9"


def _counts(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN count(n) AS n } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS r } RETURN n, r"
    )
    return records[0]["n"], records[0]["r"]


@pytest.fixture(scope="module")
def skab(neo4j_target: Neo4jTarget, driver: Driver) -> GraphStore:
    return seed_skab(driver)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extension.ttl"
    path.write_text(text, encoding="utf-8")
    return path


def _check(store: GraphStore, tmp_path: Path, text: str) -> plant_check.PlantCheck:
    return plant_check.check_plant(turtle_plant(_file(tmp_path, text)), store=store)


def _refusal(store: GraphStore, tmp_path: Path, text: str) -> str:
    check = _check(store, tmp_path, text)
    assert not check.conforms
    with pytest.raises(ContractViolationError) as raised:
        plant_check.require_conformance("extension.ttl", check)
    return str(raised.value)


def test_a_sensor_on_stored_assets_is_judged_with_them(skab: GraphStore, tmp_path: Path) -> None:
    alone = plant_check.check_plant(turtle_plant(_file(tmp_path, SENSOR)))
    assert not alone.conforms  # checked alone, the stored pump and loop look like bare assets
    assert {v.focus_node for v in alone.blocking} >= {
        "https://w3id.org/twinkg/plant/skab-testbed/pump"
    }
    with_store = _check(skab, tmp_path, SENSOR)
    assert with_store.conforms, with_store.violations + with_store.dangling


def test_a_real_error_is_named_not_the_stored_assets(skab: GraphStore, tmp_path: Path) -> None:
    broken = SENSOR.replace('tk:samplingPeriod "1.0"^^xsd:double ;', "")
    message = _refusal(skab, tmp_path, broken)
    assert f"first: {PT9} https://w3id.org/twinkg/ontology#samplingPeriod" in message
    assert "1 place(s)" in message
    assert "criticality" not in message and "skab-testbed/pump" not in message


def test_a_unit_of_another_kind_is_refused_naming_the_allowed_ones(
    skab: GraphStore, tmp_path: Path
) -> None:
    message = _refusal(skab, tmp_path, SENSOR.replace("unit:PSI", "unit:DEG_C"))
    assert f"first: {PT9} https://w3id.org/twinkg/ontology#hasUnit: " in message
    assert (
        "The unit unit:DEG_C is not a unit of quantitykind:Pressure (allowed: unit:BAR, "
        "unit:KiloPA, unit:MegaPA, unit:MilliBAR, unit:PA, unit:PSI)." in message
    )


def test_a_unit_outside_the_qudt_set_is_refused(skab: GraphStore, tmp_path: Path) -> None:
    message = _refusal(skab, tmp_path, SENSOR.replace("unit:PSI", "unit:FURLONG-PER-FORTNIGHT"))
    # the contract explains the unknown unit better than "dangling reference" would
    assert "The unit unit:FURLONG-PER-FORTNIGHT is not a unit of quantitykind:Pressure" in message


def test_a_dangling_reference_is_named(skab: GraphStore, tmp_path: Path) -> None:
    message = _refusal(skab, tmp_path, SENSOR.replace("skab:pump", "skab:no-such-pump"))
    assert (
        f"first: {PT9} https://w3id.org/twinkg/ontology#monitors: "
        "https://w3id.org/twinkg/plant/skab-testbed/no-such-pump is not in the file, not stored "
        "and not a term of the ontology"
    ) in message


def test_a_tag_already_stored_is_refused(skab: GraphStore, tmp_path: Path) -> None:
    check = _check(skab, tmp_path, SENSOR.replace('"PT-9"', '"PT-4"'))  # the stored pressure one
    assert [(v.focus_node, v.component) for v in check.blocking] == [
        ("PT-4", str(SH.MaxCountConstraintComponent))
    ]
    assert "several" in check.blocking[0].message


def test_a_hierarchy_cycle_through_the_store_is_refused(skab: GraphStore, tmp_path: Path) -> None:
    # the file makes the stored site part of a new area under the stored pump: the cycle closes
    # through the stored chain pump -> loop -> ... -> site
    text = (
        PREFIXES
        + """
my:area a tk:Area ; tk:tag "AREA-9" ; tk:criticality "C" ; tk:partOf skab:pump .
skab:site tk:partOf my:area .
"""
    )
    check = _check(skab, tmp_path, text)
    cyclic = {v.value for v in check.blocking if "part of itself" in v.message}
    assert "https://w3id.org/twinkg/plant/my-extension/area" in cyclic


def test_cli_accepts_psi_refuses_other_units_and_writes_nothing(
    skab: GraphStore, neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    before = _counts(driver)
    for unit in ("unit:DEG_C", "unit:FURLONG-PER-FORTNIGHT"):
        path = _file(tmp_path, SENSOR.replace("unit:PSI", unit))
        done = run("seed", "--file", str(path), "--no-classify", env=neo4j_target.env())
        assert done.returncode == 5, done.stdout + done.stderr
        assert done.stderr.startswith("error[contract_violation]: ")
        assert done.stderr.count("\n") == 1
        assert f"The unit {unit} is not a unit of quantitykind:Pressure (allowed: " in done.stderr
        assert _counts(driver) == before
    ok = run(
        "seed", "--file", str(_file(tmp_path, SENSOR)), "--no-classify", env=neo4j_target.env()
    )
    assert ok.returncode == 0, ok.stderr
    records, _, _ = driver.execute_query(
        "MATCH (:Sensor {uri: $s})-[:HAS_UNIT]->(u) RETURN labels(u) AS labels, u.qudt_symbol AS s",
        s=PT9,
    )
    # PSI is a unit of the ontology's QUDT set, not a bare node minted by the seed
    assert [(set(r["labels"]) >= {"qudt_Unit"}, r["s"]) for r in records] == [(True, "psi")]
