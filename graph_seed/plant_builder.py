"""What the simulated plants' graphs state the same way (``graph_seed.tep``, ``graph_seed.epanet``).

:class:`PlantGraphBuilder` holds one plant's rdflib graph under a base IRI and writes the
statements both plants make alike: an asset (class, label, tag, criticality, parent), a sensor
with its QUDT quantity kind and unit, physical range and sampling period (returning the
:class:`~twinkg.sim.binding.SensorBinding` that ties it to the simulator's output), an operating
envelope, a failure mode with its symptom patterns, and the plant's policies and simulated
supervisor. What differs between plants (which equipment there is, its IRIs and tags, the labels)
stays with each plant's own builder, which subclasses this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rdflib import RDF, RDFS, XSD, Graph, Literal, URIRef

from twinkg.ontology.vocab import TK
from twinkg.sim.binding import SensorBinding

__all__ = ["Measure", "PlantGraphBuilder", "double"]


@dataclass(frozen=True, slots=True)
class Measure:
    """How a simulator's value is stated in the graph: QUDT quantity kind, unit, and the factor
    on the value (graph value = simulator value × ``scale``)."""

    kind: URIRef
    unit: URIRef
    scale: float = 1.0


def double(value: float) -> Literal:
    """``value`` as an ``xsd:double`` literal."""
    return Literal(float(value), datatype=XSD.double)


class PlantGraphBuilder:
    """One plant's graph under ``base`` (its site is ``<base>site``).

    ``typed_text``: text literals as ``xsd:string`` (the water networks' graphs) or as plain
    literals (the TEP graph). Both are the same literal in RDF 1.1; each plant keeps the form
    its graph has always had, so that a seeded graph does not change.
    """

    def __init__(self, base: str, *, typed_text: bool) -> None:
        self.base = base
        self.g = Graph()
        self.site = URIRef(f"{base}site")
        self._typed_text = typed_text

    def add(self, s: URIRef, p: URIRef, o: URIRef | Literal) -> None:
        """Add one statement."""
        self.g.add((s, p, o))

    def text(self, value: str) -> Literal:
        """A text literal, in the plant's form (see the class docstring)."""
        return Literal(value, datatype=XSD.string) if self._typed_text else Literal(value)

    def add_asset(
        self,
        node: URIRef,
        cls: URIRef,
        *,
        label: str,
        tag: str,
        criticality: str,
        parent: URIRef | None = None,
        external_id: str | None = None,
    ) -> None:
        """An asset: its class, label, tag and criticality, ``tk:partOf`` ``parent`` and the
        simulator's id for it (``tk:externalId``) where given."""
        self.add(node, RDF.type, cls)
        self.add(node, RDFS.label, self.text(label))
        self.add(node, TK.tag, self.text(tag))
        self.add(node, TK.criticality, self.text(criticality))
        if parent is not None:
            self.add(node, TK.partOf, parent)
        if external_id is not None:
            self.add(node, TK.externalId, self.text(external_id))

    def add_sensor(
        self,
        node: URIRef,
        equipment: URIRef,
        measure: Measure,
        *,
        output: str,
        label: str,
        tag: str,
        parent: URIRef,
        low: float,
        high: float,
        sampling_s: float,
    ) -> SensorBinding:
        """A criticality-C ``tk:Sensor`` that monitors ``equipment`` and reads simulator output
        ``output`` (its ``tk:externalId``) in ``measure``'s kind and unit, with the physical
        range ``low``..``high`` in the graph's unit; the binding of the sensor to the output."""
        self.add_asset(
            node,
            TK.Sensor,
            label=label,
            tag=tag,
            criticality="C",
            parent=parent,
            external_id=output,
        )
        self.add(node, TK.hasQuantityKind, measure.kind)
        self.add(node, TK.hasUnit, measure.unit)
        self.add(node, TK.physicalMin, double(low))
        self.add(node, TK.physicalMax, double(high))
        self.add(node, TK.samplingPeriod, double(sampling_s))
        self.add(node, TK.monitors, equipment)
        return SensorBinding(
            sensor=str(node),
            output=output,
            unit=str(measure.unit),
            quantity_kind=str(measure.kind),
            equipment=str(equipment),
            scale=measure.scale,
        )

    def add_envelope(
        self,
        node: URIRef,
        owner: URIRef,
        measure: Measure,
        *,
        label: str,
        low: float,
        high: float,
        max_rate: float | None = None,
    ) -> None:
        """``owner``'s operating envelope ``low``..``high`` (and ``max_rate`` per second), in the
        graph's unit, of ``measure``'s quantity kind."""
        self.add(node, RDF.type, TK.OperatingEnvelope)
        self.add(node, RDFS.label, self.text(label))
        self.add(node, TK.forQuantityKind, measure.kind)
        self.add(node, TK.hasUnit, measure.unit)
        self.add(node, TK.minValue, double(low))
        self.add(node, TK.maxValue, double(high))
        if max_rate is not None:
            self.add(node, TK.maxRateOfChange, double(max_rate))
        self.add(node, TK.appliesTo, owner)
        self.add(owner, TK.hasEnvelope, node)

    def add_failure_mode(
        self,
        node: URIRef,
        *,
        label: str,
        comment: str,
        mitigations: Iterable[str],
        manifests_as: URIRef | None = None,
        external_id: str | None = None,
    ) -> None:
        """A ``tk:FailureMode``, the ISO 14224 mode it manifests as, the actions that mitigate
        it; its symptoms come from :meth:`add_symptom`."""
        self.add(node, RDF.type, TK.FailureMode)
        self.add(node, RDFS.label, self.text(label))
        self.add(node, RDFS.comment, self.text(comment))
        if external_id is not None:
            self.add(node, TK.externalId, self.text(external_id))
        if manifests_as is not None:
            self.add(node, TK.manifestsAs, manifests_as)
        for action in mitigations:
            self.add(node, TK.mitigatedBy, self.text(action))

    def add_symptom(
        self, mode: URIRef, pattern: URIRef, *, label: str, kind: URIRef, direction: str
    ) -> None:
        """A symptom pattern of failure mode ``mode``: ``kind`` moves in ``direction``."""
        self.add(pattern, RDF.type, TK.SymptomPattern)
        self.add(pattern, RDFS.label, self.text(label))
        self.add(pattern, TK.inQuantityKind, kind)
        self.add(pattern, TK.direction, self.text(direction))
        self.add(mode, TK.hasSymptom, pattern)
        self.add(mode, TK.manifestsIn, kind)

    def add_policies(
        self,
        *,
        trust_comment: str,
        approval_label: str,
        supervisor_label: str,
        supervisor_comment: str | None = None,
    ) -> URIRef:
        """The site's policies: agents act alone only at confidence ≥ 0.8, and a supervisor
        approves stopping and restarting criticality-A equipment; and the simulated shift
        supervisor (a supervisor and an operator) who answers. Returns the supervisor."""
        trust = URIRef(f"{self.base}policy-trust")
        self.add(trust, RDF.type, TK.TrustThreshold)
        self.add(trust, RDFS.label, self.text("Autonomy trust threshold"))
        self.add(trust, RDFS.comment, self.text(trust_comment))
        self.add(trust, TK.threshold, double(0.8))
        self.add(trust, TK.appliesTo, self.site)
        approval = URIRef(f"{self.base}policy-approval-critical-stop")
        self.add(approval, RDF.type, TK.ApprovalRequirement)
        self.add(approval, RDFS.label, self.text(approval_label))
        self.add(approval, TK.appliesToCriticality, self.text("A"))
        self.add(approval, TK.appliesToActionKind, self.text("controlled_stop"))
        self.add(approval, TK.appliesToActionKind, self.text("restart"))
        self.add(approval, TK.requiredRole, TK.SupervisorRole)
        self.add(approval, TK.appliesTo, self.site)
        supervisor = URIRef(f"{self.base}person-shift-supervisor")
        self.add(supervisor, RDF.type, TK.Person)
        self.add(supervisor, RDFS.label, self.text(supervisor_label))
        if supervisor_comment is not None:
            self.add(supervisor, RDFS.comment, self.text(supervisor_comment))
        self.add(supervisor, TK.hasRole, TK.SupervisorRole)
        self.add(supervisor, TK.hasRole, TK.OperatorRole)
        return supervisor
