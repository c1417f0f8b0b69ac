"""The generated vocabulary matches the ontology, and the naming rules hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinkg.ontology import codegen
from twinkg.ontology.errors import OntologyError
from twinkg.ontology.naming import label_for, prop_key_for, rel_type_for
from twinkg.ontology.vocab import LABEL_ANCESTORS, TK, UNIT, Label, RelType


def test_generated_vocabulary_has_not_drifted_from_the_ontology() -> None:
    assert not codegen.drifted(), "ontology/vocab.py is stale: run `twinkg vocab generate`"


def test_drift_is_detected(tmp_path: Path) -> None:
    stale = tmp_path / "vocab.py"
    stale.write_text(codegen.generate().replace("Pump", "Pimp", 1), encoding="utf-8")
    assert codegen.drifted(stale)


@pytest.mark.parametrize(
    ("iri", "label"),
    [
        ("https://w3id.org/twinkg/ontology#CentrifugalPump", "CentrifugalPump"),
        ("http://www.w3.org/ns/prov#Activity", "prov_Activity"),
        ("http://www.w3.org/ns/sosa/Observation", "sosa_Observation"),
    ],
)
def test_class_labels(iri: str, label: str) -> None:
    assert label_for(iri) == label


def test_relationship_types_and_property_keys() -> None:
    assert rel_type_for("https://w3id.org/twinkg/ontology#partOf") == "PART_OF"
    assert rel_type_for("http://www.w3.org/2000/01/rdf-schema#subClassOf") == "RDFS_SUB_CLASS_OF"
    assert prop_key_for("https://w3id.org/twinkg/ontology#ratedPower") == "ratedPower"
    assert prop_key_for("http://www.w3.org/2000/01/rdf-schema#label") == "rdfs_label"


def test_term_outside_known_namespaces_is_refused() -> None:
    with pytest.raises(OntologyError, match="no known namespace"):
        label_for("http://example.org/Thing")


def test_closed_namespaces_refuse_unknown_terms() -> None:
    assert str(TK.CentrifugalPump).endswith("#CentrifugalPump")
    assert str(UNIT["L-PER-MIN"]).endswith("/L-PER-MIN")
    with pytest.raises(AttributeError):
        _ = TK.NoSuchTerm


def test_centrifugal_pump_carries_the_whole_asset_chain() -> None:
    ancestors = set(LABEL_ANCESTORS[Label.CENTRIFUGAL_PUMP])
    assert {Label.PUMP, Label.ROTATING_EQUIPMENT, Label.EQUIPMENT, Label.ASSET} <= ancestors


def test_decision_is_a_prov_activity() -> None:
    assert Label.PROV_ACTIVITY in LABEL_ANCESTORS[Label.DECISION]


def test_core_relations_exist() -> None:
    for rel in ("PART_OF", "FEEDS", "DRIVES", "MONITORS", "STANDBY_FOR"):
        assert RelType(rel)
