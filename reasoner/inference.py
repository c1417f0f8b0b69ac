"""OWL 2 inference: which defined classes of the ontology each asset and event belongs to.

HermiT (OWL 2 DL, shipped with owlready2, run on the JVM that Neo4j already needs) realises the
facts against the ontology; the result is the *defined* TwinKG classes (those with an
``owl:equivalentClass``, e.g. ``tk:AtRiskAsset``, ``tk:SinglePointOfFailure``) that each
individual is inferred to belong to without asserting them. OWL reasons under the open-world
assumption, so properties that a defined class counts (``tk:hasStandby max 0``) are closed for
the run first: each individual in their domain is given a ``max n`` restriction, ``n`` being
the number of values it is known to have (docs/decisions/0011-owl-inference.md).

:func:`reclassify` reads the facts from the graph store, classifies them and writes the
inferred labels back (kg/inferred.py); an inconsistent result is reported, never written.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import owlready2
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS, XSD
from rdflib.term import Node

from twinkg.kg.inferred import StoredFacts, WriteCounts, read_stored_facts, write_inferred
from twinkg.kg.mapping import GENID, node_triples
from twinkg.kg.store import GraphStore
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.errors import ServerError
from twinkg.ontology.namespaces import ONTOLOGY_IRI
from twinkg.ontology.vocab import PROPERTIES, RELATIONSHIPS, TK, PropKey, RelType

# owlready2 keeps per-process state (default world, namespace stack) and is not thread-safe.
_OWLREADY_LOCK = threading.Lock()
_CLASS_EXPRESSIONS = (
    OWL.intersectionOf,
    OWL.unionOf,
    OWL.complementOf,
    OWL.someValuesFrom,
    OWL.allValuesFrom,
    OWL.onClass,
)


class ReasonerError(ServerError):
    """The OWL reasoner could not run: no Java, or HermiT failed."""

    code = "reasoner_failed"


@dataclass(frozen=True, slots=True)
class InferenceOutcome:
    """What HermiT concluded: consistency, and the defined classes inferred per individual.

    ``inferred`` maps an individual's IRI to the IRIs of the defined TwinKG classes it belongs
    to but does not assert; it is empty when the facts contradict the ontology, and
    ``explanation`` then says what the reasoner reported.
    """

    consistent: bool
    explanation: str | None
    inferred: Mapping[str, frozenset[str]]
    seconds: float


@dataclass(frozen=True, slots=True)
class ReasoningTerms:
    """The data properties and relationships that the defined classes use (and inverses)."""

    keys: frozenset[PropKey]
    rel_types: frozenset[RelType]


@dataclass(frozen=True, slots=True)
class ReclassifySummary:
    """One read → classify → write round: what was inferred and what changed in the graph.

    ``tags`` maps the IRI of each classified individual to its tag where it has one.
    """

    consistent: bool
    explanation: str | None
    inferred: Mapping[str, frozenset[str]]
    added: int
    removed: int
    seconds: float
    tags: Mapping[str, str] = field(default_factory=dict)


def defined_classes(ontology: Graph) -> frozenset[str]:
    """IRIs of the named TwinKG classes that have an ``owl:equivalentClass`` definition."""
    return frozenset(
        str(s)
        for s in ontology.subjects(OWL.equivalentClass, None)
        if isinstance(s, URIRef) and str(s).startswith(str(TK))
    )


def _expression_nodes(ontology: Graph, root: Node) -> Iterator[Node]:
    """Every node of the class expression at ``root`` (restrictions, lists, operands)."""
    todo, seen = [root], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        for predicate in _CLASS_EXPRESSIONS:
            for value in ontology.objects(node, predicate):
                if predicate in (OWL.intersectionOf, OWL.unionOf):
                    todo.extend(Collection(ontology, value))
                elif isinstance(value, BNode):
                    todo.append(value)


def _restrictions(ontology: Graph) -> Iterator[Node]:
    for cls in sorted(defined_classes(ontology)):
        for definition in ontology.objects(URIRef(cls), OWL.equivalentClass):
            for node in _expression_nodes(ontology, definition):
                if (node, OWL.onProperty, None) in ontology:
                    yield node


def _with_inverses(ontology: Graph, props: set[Node]) -> set[Node]:
    out = set(props)
    for prop in props:
        out.update(ontology.objects(prop, OWL.inverseOf))
        out.update(ontology.subjects(OWL.inverseOf, prop))
    return out


def reasoning_terms(ontology: Graph) -> ReasoningTerms:
    """The facts the defined classes look at: the properties their restrictions are on."""
    used = {p for r in _restrictions(ontology) for p in ontology.objects(r, OWL.onProperty)}
    used = _with_inverses(ontology, used)
    keys = frozenset(PROPERTIES[str(p)][0] for p in used if str(p) in PROPERTIES)
    rels = frozenset(RELATIONSHIPS[str(p)] for p in used if str(p) in RELATIONSHIPS)
    return ReasoningTerms(keys, rels)


def _counted_properties(ontology: Graph) -> set[Node]:
    """Properties a defined class bounds with a maximum cardinality: the ones to close."""
    bounds = (OWL.maxCardinality, OWL.maxQualifiedCardinality, OWL.cardinality)
    return {
        prop
        for r in _restrictions(ontology)
        if any((r, b, None) in ontology for b in bounds)
        for prop in ontology.objects(r, OWL.onProperty)
    }


def closure(ontology: Graph, facts: Graph) -> Graph:
    """``max n`` restrictions that close the counted properties over the known individuals.

    For each counted property (``tk:hasStandby``), every individual of the facts that is typed
    with its domain (or a subclass of it), or that has a value for it, gets
    ``P max n`` where ``n`` is the number of distinct values the facts give it (directly or
    through the inverse property).
    """
    axioms = Graph()
    for prop in sorted(_counted_properties(ontology), key=str):
        inverses = _with_inverses(ontology, {prop}) - {prop}
        values: dict[Node, set[Node]] = defaultdict(set)
        for domain in ontology.objects(prop, RDFS.domain):
            for cls in ontology.transitive_subjects(RDFS.subClassOf, domain):
                for individual in facts.subjects(RDF.type, cls):
                    values.setdefault(individual, set())  # known, maybe without a value
        for s, o in facts.subject_objects(prop):
            values[s].add(o)
        for inverse in inverses:
            for s, o in facts.subject_objects(inverse):
                values[o].add(s)
        for individual, known in sorted(values.items(), key=lambda item: str(item[0])):
            restriction = BNode()
            axioms.add((individual, RDF.type, restriction))
            axioms.add((restriction, RDF.type, OWL.Restriction))
            axioms.add((restriction, OWL.onProperty, prop))
            count = Literal(len(known), datatype=XSD.nonNegativeInteger)
            axioms.add((restriction, OWL.maxCardinality, count))
    return axioms


def _functional_clashes(ontology: Graph, facts: Graph) -> list[str]:
    """A cheap hint for the commonest contradiction: two values of a functional data property."""
    clashes = []
    for prop in ontology.subjects(RDF.type, OWL.FunctionalProperty):
        if (prop, RDF.type, OWL.DatatypeProperty) not in ontology:
            continue
        values: dict[Node, set[Node]] = defaultdict(set)
        for s, o in facts.subject_objects(prop):
            values[s].add(o)
        clashes += [
            f"{s} has {len(v)} values for functional {prop}"
            for s, v in values.items()
            if len(v) > 1
        ]
    return sorted(clashes)


def _explain(ontology: Graph, facts: Graph, error: Exception) -> str:
    said = " ".join(str(error).split()) or "the ontology is inconsistent"
    message = f"HermiT (owlready2 {type(error).__name__}): {said}"
    clashes = _functional_clashes(ontology, facts)
    if clashes:
        message += f"; likely cause: {clashes[0]}"
        if len(clashes) > 1:
            message += f" (and {len(clashes) - 1} more)"
    return message


def _reason(world: owlready2.World, document: bytes) -> None:
    world.get_ontology(ONTOLOGY_IRI).load(fileobj=io.BytesIO(document), format="ntriples")
    try:
        owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
    except owlready2.OwlReadyJavaError as exc:
        detail = next((ln for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ReasonerError(f"HermiT failed: {detail.strip()}") from exc
    except OSError as exc:
        raise ReasonerError(f"HermiT could not be started: {exc}") from exc


def _members(
    world: owlready2.World, classes: frozenset[str], individuals: set[str]
) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for iri in sorted(classes):
        cls = world[iri]
        if cls is None:
            continue
        for individual in cls.instances(world=world):
            if individual.iri in individuals:
                found[individual.iri].add(iri)
    return found


def interchangeable(ontology: Graph, facts: Graph) -> dict[URIRef, list[URIRef]]:
    """Groups of individuals the reasoner cannot tell apart, each as its first IRI → the rest.

    An individual belongs to a group when the facts say nothing of it but its asserted types:
    no property value, no relationship from it or to it, and the ontology does not name it. Two
    such individuals with the same set of types are indistinguishable to any OWL reasoner:
    whatever is entailed of one is entailed of the other, and either makes the facts
    inconsistent if one does. The window aggregates the ingest stores are such individuals, one
    per sensor and window, and they are most of the events.
    """
    referenced = {o for o in facts.objects() if isinstance(o, URIRef)}
    groups: dict[frozenset[Node], list[URIRef]] = defaultdict(list)
    for subject in set(facts.subjects()):
        if not isinstance(subject, URIRef) or subject in referenced:
            continue
        if any(p != RDF.type for p in facts.predicates(subject, None)):
            continue
        if (subject, None, None) in ontology or (None, None, subject) in ontology:
            continue
        groups[frozenset(facts.objects(subject, RDF.type))].append(subject)
    out = {}
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=str)
            out[members[0]] = members[1:]
    return out


def classify(ontology: Graph, facts: Graph, *, collapse: bool = True) -> InferenceOutcome:
    """Realise ``facts`` against ``ontology`` with HermiT; the inferred defined classes.

    Only defined TwinKG classes (see :func:`defined_classes`) that an individual of ``facts``
    does not assert are reported. Facts that contradict the ontology give
    ``consistent=False`` with the reasoner's explanation. Raises :class:`ReasonerError` when
    Java is missing or HermiT fails. Each call uses a fresh owlready2 world.

    With ``collapse`` (the default), each group of :func:`interchangeable` individuals goes to
    HermiT as one, and its classes are given to every member: the same answer, with the cost
    of a reasoner run no longer growing with the window aggregates stored. ``collapse=False``
    reasons over every individual (the reference the tests compare with).
    """
    started = time.perf_counter()
    if shutil.which(owlready2.JAVA_EXE) is None:
        raise ReasonerError(
            f"HermiT needs Java: {owlready2.JAVA_EXE!r} is not on PATH (install a JRE 11 or later)"
        )
    groups = interchangeable(ontology, facts) if collapse else {}
    reasoned = facts
    if groups:
        reasoned = Graph()
        reasoned += facts
        for others in groups.values():
            for other in others:
                reasoned.remove((other, None, None))
    merged = Graph()
    merged += ontology
    merged += reasoned
    merged += closure(ontology, reasoned)
    merged.remove((None, OWL.imports, None))  # imports are merged in already; never download
    document = merged.serialize(format="nt", encoding="utf-8")
    individuals = {str(s) for s in reasoned.subjects() if isinstance(s, URIRef)}
    with _OWLREADY_LOCK:
        world = owlready2.World()
        try:
            _reason(world, document)
            members = _members(world, defined_classes(ontology), individuals)
        except owlready2.OwlReadyInconsistentOntologyError as exc:
            seconds = time.perf_counter() - started
            return InferenceOutcome(False, _explain(ontology, facts, exc), {}, seconds)
        finally:
            world.close()
    for first, others in groups.items():
        for other in others:
            if str(first) in members:
                members[str(other)] = set(members[str(first)])
    inferred = {}
    for iri, classes in sorted(members.items()):
        asserted = {str(c) for c in facts.objects(URIRef(iri), RDF.type)}
        if new := frozenset(classes - asserted):
            inferred[iri] = new
    return InferenceOutcome(True, None, inferred, time.perf_counter() - started)


def collapse_stored(ontology: Graph, stored: StoredFacts) -> tuple[Graph, dict[str, list[str]]]:
    """The facts to reason over, one bare node standing for each group of its twins.

    Bare nodes with the same types are :func:`interchangeable` (a bare node is linked to no
    other, so nothing refers to it), except those the ontology names and blank nodes: these go
    in one by one. The answer maps each standing node's IRI to its twins' IRIs, which take its
    classes. Unlike :func:`interchangeable`, the twins never become RDF, so a run's cost no
    longer grows with the window aggregates stored (decision 0068).
    """
    facts = Graph()
    facts += stored.graph
    named = {term for term in ontology.all_nodes() if isinstance(term, URIRef)}
    twins: dict[str, list[str]] = {}
    for types, uris in sorted(stored.bare.items(), key=lambda item: sorted(item[0])):
        grouped: list[str] = []
        for uri in uris:
            if not uri.startswith(GENID) and URIRef(uri) not in named:
                grouped.append(uri)
            else:  # a blank node, or one the ontology names: reasoned about on its own
                node_triples(uri, types, {}, into=facts)
        if grouped:
            node_triples(grouped[0], types, {}, into=facts)
            twins[grouped[0]] = grouped[1:]
    return facts, twins


def reclassify(store: GraphStore, *, ontology: Graph | None = None) -> ReclassifySummary:
    """Read the facts from ``store``, classify them, and write the inferred labels back.

    Run after a seed or an ingest: inferred labels are recomputed from the current facts. An
    inconsistent result writes nothing (``added == removed == 0``) and says why.
    """
    ontology = load_ontology() if ontology is None else ontology
    terms = reasoning_terms(ontology)
    stored = read_stored_facts(store, keys=terms.keys | {PropKey.TAG}, rel_types=terms.rel_types)
    facts, twins = collapse_stored(ontology, stored)
    outcome = classify(ontology, facts)
    inferred = dict(outcome.inferred)
    for first, others in twins.items():
        if first in inferred:
            inferred.update((other, inferred[first]) for other in others)
    counts = write_inferred(store, inferred) if outcome.consistent else WriteCounts(0, 0)
    tags = {str(s): str(o) for s, o in facts.subject_objects(TK.tag) if str(s) in inferred}
    return ReclassifySummary(
        outcome.consistent,
        outcome.explanation,
        inferred,
        counts.added,
        counts.removed,
        outcome.seconds,
        tags,
    )
