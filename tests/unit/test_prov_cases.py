"""Valid PROV-O, case by case: shapes/prov/cases/<case>/{input,expected}.ttl.

Each case folder holds an exported provenance graph (input.ttl) and the SHACL validation report
``check_prov`` must produce (expected.ttl: sh:conforms and one sh:result per expected result).
Results are compared as the SET of (focus node, severity, source shape), exactly; an ontologist
adds a case by adding a folder, without Python. A folder missing either file fails, loudly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rdflib import OWL, RDF, SH, Graph, Literal, URIRef
from rdflib.compare import isomorphic

from tests.shape_cases import Result, actual_results, expected_report, result_key
from twinkg.ontology.catalog import load_ontology
from twinkg.reasoner.prov_check import PROV_SHAPES_DIR, check_prov, prov_shapes
from twinkg.reasoner.validation import ValidationOutcome, validate

CASES_DIR = PROV_SHAPES_DIR / "cases"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())


def _read_case(case: Path) -> tuple[Graph, bool, set[Result]]:
    """The case's input graph, and whether it conforms and its results as expected.ttl says."""
    conforms, results = expected_report(case)
    return Graph().parse(case / "input.ttl"), conforms, results


def _diff(case: str, expected: set[Result], outcome: ValidationOutcome) -> str:
    actual = {result_key(v) for v in outcome.violations}
    lines = [f"case {case}: check_prov's results differ from expected.ttl"]
    for focus, _, shape in sorted(expected - actual):
        lines.append(f"  missing    {shape.rpartition('#')[2]} on {focus}")
    for result in sorted(actual - expected):
        messages = {v.message for v in outcome.violations if result_key(v) == result}
        lines.append(
            f"  unexpected {result[2].rpartition('#')[2]} on {result[0]}: "
            + "; ".join(sorted(messages))
        )
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path) -> None:
    data, conforms, expected = _read_case(case)

    outcome = check_prov(data)

    assert actual_results(outcome) == expected, _diff(case.name, expected, outcome)
    assert outcome.conforms is conforms


def test_cases_are_named_for_their_outcome() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        _, conforms, _ = _read_case(case)
        suffix = "-passes" if conforms else ("-fails", "-fail")
        assert case.name.endswith(suffix), f"{case.name}: name it …-passes or …-fails"
    assert "decision-record-passes" in {p.name for p in CASES}


def test_a_case_without_expected_report_fails_loudly(tmp_path: Path) -> None:
    case = tmp_path / "forgotten-report-passes"
    case.mkdir()
    source = CASES_DIR / "decision-record-passes"
    (case / "input.ttl").write_text((source / "input.ttl").read_text())

    with pytest.raises(AssertionError, match=r"forgotten-report-passes: no expected\.ttl"):
        _read_case(case)


def test_a_report_that_contradicts_itself_fails_loudly(tmp_path: Path) -> None:
    case = tmp_path / "confused-passes"
    case.mkdir()
    source = CASES_DIR / "used-agent-fails"
    (case / "input.ttl").write_text((source / "input.ttl").read_text())
    expected = (source / "expected.ttl").read_text()
    (case / "expected.ttl").write_text(expected.replace("sh:conforms false", "sh:conforms true"))

    with pytest.raises(AssertionError, match="disagrees with its 1 results"):
        _read_case(case)


def test_every_prov_shape_is_exercised_by_a_case() -> None:
    shapes = prov_shapes()
    named = {
        str(s) for kind in (SH.NodeShape, SH.PropertyShape) for s in shapes.subjects(RDF.type, kind)
    }
    exercised = {shape for case in CASES for _, _, shape in _read_case(case)[2]}
    assert named - exercised == set(), "shapes that no case expects"
    assert exercised - named == set(), "cases expect shapes that do not exist"


def test_shapes_are_named_versioned_and_pass_meta_shacl() -> None:
    shapes = prov_shapes()  # load_shapes ran SHACL-SHACL on them
    namespace = dict(shapes.namespaces())["provshape"]
    for kind in (SH.NodeShape, SH.PropertyShape):
        for shape in shapes.subjects(RDF.type, kind):
            assert isinstance(shape, URIRef) and str(shape).startswith(str(namespace)), shape
    (ontology,) = shapes.subjects(RDF.type, OWL.Ontology)
    assert shapes.value(ontology, OWL.versionInfo) == Literal("1.0.0")


def test_types_are_never_inferred_from_domains_or_ranges() -> None:
    # Under RDFS inference with the whole ontology, prov:used's range would make any object an
    # entity and the check would pass: this is the vacuity check_prov exists to avoid.
    data, _, _ = _read_case(CASES_DIR / "used-untyped-fails")
    vacuous = validate(data, prov_shapes(), ontology=load_ontology())

    assert vacuous.conforms
    assert not check_prov(data).conforms


def test_check_prov_leaves_its_input_alone() -> None:
    data, _, _ = _read_case(CASES_DIR / "schema-in-record-ignored-fails")
    before = Graph()
    before += data

    check_prov(data)

    assert isomorphic(data, before)


def test_the_decision_record_stays_valid_as_json_ld() -> None:
    data, _, _ = _read_case(CASES_DIR / "decision-record-passes")
    round_trip = Graph().parse(data=data.serialize(format="json-ld"), format="json-ld")

    assert len(round_trip) == len(data)
    assert check_prov(round_trip).conforms


def test_prov_shapes_returns_a_copy() -> None:
    first = prov_shapes()
    first.remove((None, None, None))
    assert len(prov_shapes()) > 0
