"""The guard's verdict on a proposed action (W3C SHACL §2.1.4.1, severity as policy).

The safety shapes in ``shapes/safety`` judge an action together with its context (the target,
what it is part of, its envelopes, policies, interlocks and duty/standby partner). SHACL severity
carries the policy: ``sh:Violation`` blocks, ``sh:Warning`` requires a person's approval and
``sh:Info`` is recorded. Results are data, never exceptions; only unusable shapes or an action
graph without an action raise.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path

from rdflib import OWL, RDF, RDFS, Graph, URIRef

from twinkg import shapes
from twinkg.ontology.catalog import load_ontology, parse_turtle
from twinkg.ontology.errors import InvalidInputError, ShapesError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.validation import (
    Severity,
    ValidationOutcome,
    Violation,
    check_shapes,
    validate,
)

SAFETY_SHAPES_DIR = Path(shapes.__file__).resolve().parent / "safety"


class Verdict(enum.Enum):
    """What the guard lets happen to a proposed action."""

    BLOCK = "block"  # a sh:Violation: the action must not be taken
    NEEDS_APPROVAL = "needs_approval"  # a sh:Warning: only with a person's approval
    ALLOW = "allow"  # nothing worse than sh:Info: the agent may act


@dataclass(frozen=True, slots=True)
class SafetyAssessment:
    """The verdict, the full validation outcome, and its results sorted by what they mean."""

    verdict: Verdict
    outcome: ValidationOutcome
    blocking: tuple[Violation, ...]
    approvals_needed: tuple[Violation, ...]
    recorded: tuple[Violation, ...]


def load_shapes(directory: Path) -> Graph:
    """Every ``*.ttl`` directly in ``directory`` as one shapes graph, checked by meta-SHACL.

    Raises :class:`ShapesError` when there is no file, the shapes fail SHACL-SHACL, or the files
    do not declare one and the same ``owl:versionInfo`` on their ``owl:Ontology``.
    """
    files = sorted(directory.glob("*.ttl"))
    if not files:
        raise ShapesError(f"no shapes files (*.ttl) in {directory}")
    graph = parse_turtle(files)
    check_shapes(graph)
    _version(graph, directory)
    return graph


def _version(graph: Graph, directory: Path) -> str:
    versions = {
        str(v)
        for o in graph.subjects(RDF.type, OWL.Ontology)
        for v in graph.objects(o, OWL.versionInfo)
    }
    if len(versions) != 1:
        found = ", ".join(sorted(versions)) or "none"
        raise ShapesError(f"shapes in {directory} must share one owl:versionInfo; found {found}")
    return versions.pop()


@functools.cache
def _safety_shapes() -> Graph:
    return load_shapes(SAFETY_SHAPES_DIR)


@functools.cache
def _hierarchy() -> tuple[Graph, dict[URIRef, frozenset[URIRef]]]:
    """The ontology's named class hierarchy: its subClassOf triples and each class's ancestors."""
    ontology = load_ontology()
    hierarchy = Graph()
    for s, o in ontology.subject_objects(RDFS.subClassOf):
        if isinstance(s, URIRef) and isinstance(o, URIRef):
            hierarchy.add((s, RDFS.subClassOf, o))
    ancestors: dict[URIRef, frozenset[URIRef]] = {}
    for cls in set(hierarchy.subjects()) | set(hierarchy.objects()):
        assert isinstance(cls, URIRef)
        found = set(hierarchy.transitive_objects(cls, RDFS.subClassOf))
        ancestors[cls] = frozenset(c for c in found if isinstance(c, URIRef))
    return hierarchy, ancestors


def _with_superclasses(data: Graph) -> Graph:
    """``data`` with every superclass type asserted and the class hierarchy added.

    This is what the shapes need of RDFS inference (class targets, ``sh:class`` and the
    ``rdfs:subClassOf+`` paths see subclasses) at a fraction of a full RDFS closure's cost; a
    test checks every safety case gives the same results both ways.
    """
    hierarchy, ancestors = _hierarchy()
    used: set[URIRef] = set()
    for s, cls in list(data.subject_objects(RDF.type)):
        if isinstance(cls, URIRef):
            used.add(cls)
            for ancestor in ancestors.get(cls, ()):
                data.add((s, RDF.type, ancestor))
                used.add(ancestor)
    # Only the part of the hierarchy above the classes present: a smaller graph to query.
    for cls in used:
        for parent in hierarchy.objects(cls, RDFS.subClassOf):
            data.add((cls, RDFS.subClassOf, parent))
    return data


def safety_shapes() -> Graph:
    """All safety shapes (``shapes/safety/*.ttl``), meta-SHACL checked once; a copy to keep."""
    shapes_graph = _safety_shapes()
    copy = Graph()
    for prefix, namespace in shapes_graph.namespaces():
        copy.bind(prefix, namespace)
    copy += shapes_graph
    return copy


def safety_shapes_version() -> str:
    """The ``owl:versionInfo`` the safety shapes files declare (cited in provenance)."""
    return _version(_safety_shapes(), SAFETY_SHAPES_DIR)


def assess(action: Graph, context: Graph, *, shapes: Graph | None = None) -> SafetyAssessment:
    """Validate ``action`` with its ``context`` against the safety shapes and give the verdict.

    Any ``sh:Violation`` blocks; otherwise any ``sh:Warning`` needs approval; otherwise the
    action is allowed, and ``sh:Info`` results are kept as ``recorded``. Every node's superclass
    types are asserted first, so the shapes see that a CentrifugalPump is a Pump and an Asset.
    Raises :class:`InvalidInputError` when ``action`` holds no ``tk:ProposedAction``: an empty
    graph must not pass as an allowed action. ``shapes``: other safety shapes than the
    installed ones (an edge judges with those of its policy bundle), already checked by
    :func:`load_shapes`' rules.
    """
    if (None, RDF.type, TK.ProposedAction) not in action:
        raise InvalidInputError("the action graph holds no tk:ProposedAction to assess")
    data = Graph()
    data += action
    data += context
    outcome = validate(_with_superclasses(data), _safety_shapes() if shapes is None else shapes)
    blocking = outcome.of_severity(Severity.VIOLATION)
    approvals = outcome.of_severity(Severity.WARNING)
    if blocking:
        verdict = Verdict.BLOCK
    elif approvals:
        verdict = Verdict.NEEDS_APPROVAL
    else:
        verdict = Verdict.ALLOW
    return SafetyAssessment(
        verdict, outcome, blocking, approvals, outcome.of_severity(Severity.INFO)
    )
