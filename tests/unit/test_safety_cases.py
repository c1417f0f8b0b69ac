"""The safety shapes, case by case: shapes/safety/cases/<case>/{input,expected}.ttl.

Each case folder holds an action with its context (input.ttl) and the SHACL validation report
it must produce (expected.ttl: sh:conforms and one sh:result per expected result). The results
are compared as the SET of (focus node, severity, source shape), exactly; an ontologist adds a
case by adding a folder, without Python. A case is named ``<rule>-…``, the rule being the shapes
file it exercises: its ``owl:Ontology`` IRI ends in the rule, and so does the file's name
(``well-formed.ttl`` declares ``…/shapes/safety/well-formed``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rdflib import OWL, RDF, SH, Graph, Literal, URIRef

from tests.shape_cases import Result, actual_results, expected_report, result_key
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.errors import ShapesError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.safety import (
    SAFETY_SHAPES_DIR,
    assess,
    load_shapes,
    safety_shapes,
    safety_shapes_version,
)
from twinkg.reasoner.validation import ValidationOutcome, validate

CASES_DIR = SAFETY_SHAPES_DIR / "cases"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
SHAPE_FILES = sorted(SAFETY_SHAPES_DIR.glob("*.ttl"))
SHAPES_IRI = "https://w3id.org/twinkg/shapes/safety/"


def _declared_rule(path: Path) -> str:
    """The rule a shapes file declares: the last segment of its ``owl:Ontology`` IRI."""
    (ontology,) = Graph().parse(path).subjects(RDF.type, OWL.Ontology)
    return str(ontology).rpartition("/")[2]


RULES = tuple(_declared_rule(p) for p in SHAPE_FILES)


@pytest.fixture(scope="module")
def ontology() -> Graph:
    return load_ontology()


def _diff(case: str, expected: set[Result], outcome: ValidationOutcome) -> str:
    actual = actual_results(outcome)
    lines = [f"case {case}: the shapes' results differ from expected.ttl"]
    for result in sorted(expected - actual):
        lines.append(f"  missing    {_show(result)}")
    for result in sorted(actual - expected):
        messages = {v.message for v in outcome.violations if result_key(v) == result}
        lines.append(f"  unexpected {_show(result)}: {'; '.join(sorted(messages))}")
    return "\n".join(lines)


def _show(result: Result) -> str:
    focus, severity, shape = result
    return f"{severity.rpartition('#')[2]:<9} {shape.rpartition('#')[2]} on {focus}"


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path, ontology: Graph) -> None:
    conforms, expected = expected_report(case)
    data = Graph().parse(case / "input.ttl")

    outcome = validate(data, safety_shapes(), ontology=ontology)

    assert actual_results(outcome) == expected, _diff(case.name, expected, outcome)
    assert outcome.conforms is conforms


def test_every_case_folder_is_complete() -> None:
    incomplete = [
        p.name
        for p in CASES
        if not ((p / "input.ttl").is_file() and (p / "expected.ttl").is_file())
    ]
    assert not incomplete, f"case folders without input.ttl or expected.ttl: {incomplete}"


def test_each_shapes_file_declares_the_rule_it_is_named_for() -> None:
    for path in SHAPE_FILES:
        (ontology,) = Graph().parse(path).subjects(RDF.type, OWL.Ontology)
        assert str(ontology) == SHAPES_IRI + path.stem, f"{path.name} declares {ontology}"
    assert len(set(RULES)) == len(RULES) >= 6


def test_every_case_is_named_for_one_rule() -> None:
    """A case's name starts with the rule it exercises: a misnamed case fails here."""
    for case in CASES:
        rules = [rule for rule in RULES if case.name.startswith(rule + "-")]
        assert len(rules) == 1, f"case {case.name}: name it <rule>-…, a rule of {RULES}"


def test_each_rule_has_a_breaking_a_passing_and_a_third_case() -> None:
    """Every shapes file has cases: a new rule without them fails here."""
    for rule in RULES:
        names = [p.name for p in CASES if p.name.startswith(rule + "-")]
        assert len(names) >= 3, f"rule {rule} has only {names}"
        assert any(n.endswith("-passes") for n in names), f"rule {rule}: no passing case"
        assert any(n.endswith("-blocks") or n.endswith("-needs-approval") for n in names), rule


def test_every_safety_shape_is_exercised_by_a_case() -> None:
    shapes = safety_shapes()
    named = {
        str(s) for kind in (SH.NodeShape, SH.PropertyShape) for s in shapes.subjects(RDF.type, kind)
    }
    exercised = {shape for case in CASES for _, _, shape in expected_report(case)[1]}
    assert named - exercised == set(), "shapes that no case expects"
    assert exercised - named == set(), "cases expect shapes that do not exist"


def test_shapes_are_named_versioned_and_pass_meta_shacl() -> None:
    shapes = safety_shapes()  # load_shapes ran SHACL-SHACL on them
    namespace = dict(shapes.namespaces())["safety"]
    for kind in (SH.NodeShape, SH.PropertyShape):
        for shape in shapes.subjects(RDF.type, kind):
            assert isinstance(shape, URIRef) and str(shape).startswith(str(namespace)), shape
    assert len(SHAPE_FILES) >= 6
    for path in SHAPE_FILES:
        graph = Graph().parse(path)
        (ontology,) = graph.subjects(RDF.type, OWL.Ontology)
        assert graph.value(ontology, OWL.versionInfo) == Literal("1.2.0"), path.name
    assert safety_shapes_version() == "1.2.0"


def test_safety_shapes_returns_a_copy() -> None:
    first = safety_shapes()
    first.remove((None, None, None))
    assert len(safety_shapes()) > 0


def test_a_shapes_file_failing_meta_shacl_is_refused(tmp_path: Path) -> None:
    graph = Graph().parse(SAFETY_SHAPES_DIR / "trust.ttl")
    shape = next(s for s in graph.subjects(RDF.type, SH.PropertyShape))
    graph.add((shape, SH.minCount, Literal("one")))  # sh:minCount must be an integer
    graph.serialize(tmp_path / "broken.ttl", format="turtle")

    with pytest.raises(ShapesError, match="meta-SHACL"):
        load_shapes(tmp_path)


def test_shapes_files_must_agree_on_their_version(tmp_path: Path) -> None:
    for name in ("trust.ttl", "envelope.ttl"):
        (tmp_path / name).write_text((SAFETY_SHAPES_DIR / name).read_text())
    graph = Graph().parse(tmp_path / "trust.ttl")
    (ontology,) = graph.subjects(RDF.type, OWL.Ontology)
    graph.set((ontology, OWL.versionInfo, Literal("2.0.0")))
    graph.serialize(tmp_path / "trust.ttl", format="turtle")

    with pytest.raises(ShapesError, match="one owl:versionInfo"):
        load_shapes(tmp_path)


def test_an_empty_folder_holds_no_shapes(tmp_path: Path) -> None:
    with pytest.raises(ShapesError, match="no shapes files"):
        load_shapes(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_the_guard_judges_as_full_rdfs_inference_would(case: Path, ontology: Graph) -> None:
    """``assess`` asserts superclass types instead of running RDFS inference: same results."""
    data = Graph().parse(case / "input.ttl")
    actions = set(data.subjects(RDF.type, TK.ProposedAction))
    action, context = Graph(), Graph()
    for triple in data:
        (action if triple[0] in actions else context).add(triple)

    fast = assess(action, context).outcome
    full = validate(data, safety_shapes(), ontology=ontology)

    assert actual_results(fast) == actual_results(full)
    assert fast.conforms is full.conforms


_ORDER_SCRIPT = """
import sys
from rdflib import RDF, Graph, Literal
from twinkg.ontology.vocab import TK
from twinkg.reasoner.safety import assess
data = Graph().parse(sys.argv[1])
for action in list(data.subjects(RDF.type, TK.ProposedAction)):
    data.set((action, TK.confidence, Literal(0.3)))  # a trust warning beside the approval one
actions = set(data.subjects(RDF.type, TK.ProposedAction))
action_graph, context = Graph(), Graph()
for triple in data:
    (action_graph if triple[0] in actions else context).add(triple)
print(repr([v.message for v in assess(action_graph, context).approvals_needed]))
"""


def test_results_come_in_one_order_in_every_process() -> None:
    """Replays compare reasons made of result messages: their order must not depend on the
    process (set and hash order change with PYTHONHASHSEED)."""
    case = SAFETY_SHAPES_DIR / "cases" / "criticality-stop-pump-needs-approval" / "input.ttl"
    orders = set()
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run(
            [sys.executable, "-c", _ORDER_SCRIPT, str(case)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        orders.add(done.stdout.strip())
    assert len(orders) == 1, orders
    assert next(iter(orders)).count("', '") == 1  # two warnings
