"""SHACL validation with a typed outcome (W3C SHACL §3.6, the validation report).

pySHACL is the reference implementation: :func:`validate` runs it and turns its report graph
into :class:`Violation` records an agent or a producer can act on, keeping the report graph
itself for provenance. Non-conformance is a result, not an exception; only unusable *shapes*
(a shapes graph that fails meta-SHACL, or that pySHACL cannot run) raise :class:`ShapesError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pyshacl
from pyshacl.errors import ReportableRuntimeError
from rdflib import RDF, SH, Graph
from rdflib.term import Node

from twinkg.ontology.errors import ShapesError
from twinkg.reasoner import sparql_cache
from twinkg.shapes.meta import check_shapes

__all__ = ["Severity", "ValidationOutcome", "Violation", "check_shapes", "validate"]


class Severity(enum.Enum):
    """SHACL severities and the policy TwinKG attaches to each."""

    VIOLATION = str(SH.Violation)  # blocks
    WARNING = str(SH.Warning)  # needs a person's approval
    INFO = str(SH.Info)  # recorded only

    @property
    def rank(self) -> int:
        """Higher is more serious (Info 0, Warning 1, Violation 2)."""
        return (Severity.INFO, Severity.WARNING, Severity.VIOLATION).index(self)


@dataclass(frozen=True, slots=True)
class Violation:
    """One ``sh:ValidationResult``: which node broke which constraint, and why."""

    focus_node: str
    path: str | None
    value: str | None
    severity: Severity
    message: str
    source_shape: str
    component: str
    source_constraint: str | None = None


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    """Whether the data conforms, the SHACL report graph, and its results as records."""

    conforms: bool
    report: Graph
    violations: tuple[Violation, ...]

    @property
    def worst(self) -> Severity | None:
        """The most serious severity among the results, or ``None`` when there are none."""
        return max((v.severity for v in self.violations), key=lambda s: s.rank, default=None)

    def of_severity(self, severity: Severity) -> tuple[Violation, ...]:
        """The results of exactly ``severity``."""
        return tuple(v for v in self.violations if v.severity is severity)


def _text(node: Node | None) -> str | None:
    return None if node is None else str(node)


def _results(report: Graph) -> tuple[Violation, ...]:
    found = []
    for result in report.subjects(RDF.type, SH.ValidationResult):
        messages = sorted(str(m) for m in report.objects(result, SH.resultMessage))
        severity = report.value(result, SH.resultSeverity)
        found.append(
            Violation(
                focus_node=str(report.value(result, SH.focusNode)),
                path=_text(report.value(result, SH.resultPath)),
                value=_text(report.value(result, SH.value)),
                severity=Severity(str(severity)),
                message="; ".join(messages),
                source_shape=str(report.value(result, SH.sourceShape)),
                component=str(report.value(result, SH.sourceConstraintComponent)),
                source_constraint=_text(report.value(result, SH.sourceConstraint)),
            )
        )
    # A total order: the same report always gives the same sequence (replays compare them).
    found.sort(
        key=lambda v: (
            -v.severity.rank,
            v.focus_node,
            v.path or "",
            v.component,
            v.source_shape,
            v.value or "",
            v.message,
        )
    )
    return tuple(found)


def validate(
    data: Graph,
    shapes: Graph,
    *,
    ontology: Graph | None = None,
    meta_shacl: bool = False,
) -> ValidationOutcome:
    """Validate ``data`` against ``shapes`` (RDFS inference over ``ontology`` when given).

    With ``ontology``, class targets and ``sh:class`` see subclasses (a CentrifugalPump is a
    Pump). ``meta_shacl`` first checks the shapes graph itself against SHACL-SHACL.
    """
    if meta_shacl:
        check_shapes(shapes)
    sparql_cache.install()
    try:
        conforms, report, _ = pyshacl.validate(
            data,
            shacl_graph=shapes,
            ont_graph=ontology,
            inference="rdfs" if ontology is not None else "none",
            allow_warnings=False,
            allow_infos=False,
        )
    except ReportableRuntimeError as exc:
        raise ShapesError(f"the shapes cannot be applied: {exc.message}") from exc
    assert isinstance(report, Graph)
    return ValidationOutcome(bool(conforms), report, _results(report))
