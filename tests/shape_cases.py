"""Shape cases as data: a folder with ``input.ttl`` and the report it must give, ``expected.ttl``.

Shared by the safety-shape and PROV-O cases. Results are compared as the set of (focus node,
severity, source shape); an ontologist adds a case by adding a folder, without Python.
"""

from __future__ import annotations

from pathlib import Path

from rdflib import RDF, SH, Graph, Literal

from twinkg.reasoner.validation import ValidationOutcome, Violation

Result = tuple[str, str, str]  # focus node, severity, source shape


def expected_report(case: Path) -> tuple[bool, set[Result]]:
    """Whether the case's data conforms and its results, as its ``expected.ttl`` says.

    Fails loudly when a file is missing, the report is malformed, or its ``sh:conforms``
    contradicts its results.
    """
    for name in ("input.ttl", "expected.ttl"):
        assert (case / name).is_file(), f"case {case.name}: no {name} in {case}"
    report = Graph().parse(case / "expected.ttl")
    node = report.value(predicate=RDF.type, object=SH.ValidationReport)
    assert node is not None, f"case {case.name}: expected.ttl holds no sh:ValidationReport"
    conforms = report.value(node, SH.conforms)
    assert isinstance(conforms, Literal), f"case {case.name}: the report has no sh:conforms"
    results = {
        (
            str(report.value(r, SH.focusNode)),
            str(report.value(r, SH.resultSeverity)),
            str(report.value(r, SH.sourceShape)),
        )
        for r in report.objects(node, SH.result)
    }
    assert bool(conforms.toPython()) is (not results), (
        f"case {case.name}: sh:conforms {conforms} disagrees with its {len(results)} results"
    )
    return bool(conforms.toPython()), results


def result_key(v: Violation) -> Result:
    """A validation result as the cases compare it."""
    return (v.focus_node, v.severity.value, v.source_shape)


def actual_results(outcome: ValidationOutcome) -> set[Result]:
    """The results of a validation, as the cases compare them."""
    return {result_key(v) for v in outcome.violations}
