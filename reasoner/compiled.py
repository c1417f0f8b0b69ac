"""The telemetry contract compiled into vectorised checks (the fast path; pySHACL is the oracle).

:func:`compile_contract` reads the SHACL shapes of the telemetry contract and turns each
constraint into a numpy/pyarrow function over a whole :class:`~reasoner.points.PointBatch`:
``sh:minCount``/``sh:maxCount`` (value counts), ``sh:datatype`` (parser flags), ``sh:in`` and
``sh:pattern`` (pyarrow compute over the lexical forms), ``sh:minInclusive``/``…Exclusive``,
``sh:class tk:Sensor`` (a lookup in the sensor table) and the contract's SPARQL constraints
(range, unit, future, monotonic), each recognised by IRI *and* query text, so an edited query is
never silently mis-compiled: anything not understood raises :class:`ShapesError` and the caller
falls back to pySHACL. Results are per record and per constraint, keyed exactly as pySHACL keys
its results (source shape, constraint component, source constraint).

SHACL Core: https://www.w3.org/TR/shacl/#core-components; SHACL-SPARQL: §5.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from rdflib import RDF, RDFS, SH, XSD, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.term import Node

from twinkg.ontology.errors import ShapesError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.points import Bools, Floats, Ints, PointBatch
from twinkg.reasoner.validation import Severity

# Which column of a PointBatch holds each property path, and the datatype that column carries.
PATH_FIELDS: Mapping[URIRef, str] = {
    TK.observedBy: "sensor",
    TK.value: "value",
    TK.hasUnit: "unit",
    TK.occurredAt: "time",
    TK.sequence: "sequence",
    TK.quality: "quality",
    TK.producer: "producer",
    TK.inBatch: "batch",
}
FIELD_DATATYPES: Mapping[str, URIRef] = {
    "value": XSD.double,
    "time": XSD.dateTime,
    "sequence": XSD.integer,
    "quality": XSD.string,
    "producer": XSD.string,
}
_LEXICAL = {"time": "time_lexical", "quality": "quality", "producer": "producer"}
_NUMERIC = {"value": "value", "sequence": "sequence"}
_IGNORED = {
    SH.path,
    SH.message,
    SH.severity,
    SH.name,
    SH.description,
    RDF.type,
    RDFS.label,
    RDFS.comment,
    SH.order,
    SH.group,
}


@dataclass(frozen=True, slots=True)
class SensorTable:
    """What the contract needs to know of the sensors: one row per known sensor IRI."""

    uris: pa.StringArray
    physical_min: Floats
    physical_max: Floats
    units: pa.StringArray
    last_ns: Ints
    has_last: Bools

    def __len__(self) -> int:
        return len(self.uris)


@dataclass(frozen=True, slots=True)
class Context:
    """A batch with everything its checks look up, computed once."""

    batch: PointBatch
    sensors: SensorTable
    sensor_index: Ints  # row in the sensor table, -1 when unknown or missing
    latest_acceptable_ns: int

    @property
    def known(self) -> Bools:
        """Points whose sensor is an IRI string naming a known sensor."""
        iri = self.batch.ok.get("sensor")
        found = self.sensor_index >= 0
        return found if iri is None else found & iri


Check = Callable[[Context], Bools]
BoolMatrix = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class CompiledConstraint:
    """One constraint, keyed like a pySHACL result, with the function that finds its failures."""

    source_shape: str
    component: str
    source_constraint: str | None
    path: str | None
    message: str
    severity: Severity
    check: Check

    @property
    def key(self) -> tuple[str, str, str | None]:
        """``(sh:sourceShape, sh:sourceConstraintComponent, sh:sourceConstraint)``."""
        return (self.source_shape, self.component, self.source_constraint)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Per record and constraint: ``failures[i, j]`` is True when record i breaks constraint j.

    ``defects`` are the parser's reasons per record (null when none; see ``reasoner.points``):
    what the contract cannot see but TwinKG cannot keep as given. They reject a record too,
    without touching ``failures``, which stay keyed exactly as pySHACL keys its results."""

    constraints: tuple[CompiledConstraint, ...]
    failures: BoolMatrix
    defects: pa.StringArray | None = None

    @property
    def defective(self) -> Bools:
        """Records the parser found a defect in."""
        if self.defects is None:
            return np.zeros(len(self.failures), np.bool_)
        return np.asarray(self.defects.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)

    @property
    def rejected(self) -> Bools:
        """Records that break a constraint of severity Violation, or have a defect."""
        blocking = [c.severity is Severity.VIOLATION for c in self.constraints]
        return np.asarray(self.failures[:, blocking].any(axis=1) | self.defective)

    def reasons(self) -> list[str]:
        """A one-line reason per rejected record: the messages of what it broke, then its
        defect."""
        rejected = self.rejected
        if not rejected.any():
            return []
        patterns, inverse = np.unique(self.failures[rejected], axis=0, return_inverse=True)
        texts = [
            " | ".join(c.message for c, hit in zip(self.constraints, row, strict=True) if hit)
            for row in patterns
        ]
        broke = [texts[i] for i in np.asarray(inverse).ravel()]
        if self.defects is None or not self.defective[rejected].any():
            return broke
        found = self.defects.filter(pa.array(rejected)).to_pylist()
        joined: dict[tuple[str, str | None], str] = {}  # one string per distinct reason
        return [
            joined.setdefault((text, defect), " | ".join(p for p in (text, defect) if p))
            for text, defect in zip(broke, found, strict=True)
        ]


def concat_results(results: Sequence[CheckResult]) -> CheckResult:
    """The verdicts of several batches checked one after the other, in the order of
    ``reasoner.points.concat_points`` over the same batches."""
    if len(results) == 1:
        return results[0]
    defects = None
    if any(r.defects is not None for r in results):
        defects = pa.concat_arrays(
            [
                pa.nulls(len(r.failures), pa.string()) if r.defects is None else r.defects
                for r in results
            ]
        )
    return CheckResult(results[0].constraints, np.vstack([r.failures for r in results]), defects)


def advance(sensors: SensorTable, batch: PointBatch, result: CheckResult) -> SensorTable:
    """``sensors`` as the next batch's check sees them once ``batch`` is applied: each
    sensor's newest accepted reading, kept to the microsecond as the graph keeps it
    (``reasoner.aggregates.latest_state``), is its last. Checking messages one after the other
    with this is what ingesting them one at a time does (decision 0067)."""
    index = sensor_index(batch, sensors)
    take = ~result.rejected & (index >= 0)
    if not take.any():
        return sensors
    last_ns = sensors.last_ns.copy()
    has_last = sensors.has_last.copy()
    newest = np.full(len(sensors), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(newest, index[take], batch.time_ns[take])
    seen = newest > np.iinfo(np.int64).min
    floored = newest[seen] // 1000 * 1000
    last_ns[seen] = np.where(has_last[seen], np.maximum(last_ns[seen], floored), floored)
    has_last[seen] = True
    return dataclasses.replace(sensors, last_ns=last_ns, has_last=has_last)


def sensor_index(batch: PointBatch, sensors: SensorTable) -> Ints:
    """Row of each point's sensor in the table, -1 when unknown or missing."""
    found = pc.index_in(batch.sensor, value_set=sensors.uris)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


_NO_SENSOR = SensorTable(
    uris=pa.array([None], pa.string()),
    physical_min=np.array([np.nan]),
    physical_max=np.array([np.nan]),
    units=pa.array([None], pa.string()),
    last_ns=np.zeros(1, np.int64),
    has_last=np.zeros(1, np.bool_),
)
"""The one row a batch of only unknown sensors indexes (its points are all masked out)."""


class CompiledContract:
    """The telemetry contract as vectorised checks; :meth:`check` runs them all on a batch."""

    def __init__(self, constraints: tuple[CompiledConstraint, ...]) -> None:
        self.constraints = constraints

    def check(
        self, batch: PointBatch, sensors: SensorTable, *, latest_acceptable_ns: int
    ) -> CheckResult:
        """Run every constraint over ``batch``; nothing is written anywhere."""
        index = sensor_index(batch, sensors)
        if len(sensors) == 0:  # none known: every look-up is masked out, but must still index
            sensors = _NO_SENSOR
        ctx = Context(batch, sensors, index, latest_acceptable_ns)
        failures = np.zeros((len(batch), len(self.constraints)), dtype=np.bool_)
        for j, constraint in enumerate(self.constraints):
            failures[:, j] = constraint.check(ctx)
        return CheckResult(self.constraints, failures, batch.defects)


# ---- Core constraint components ----


def _given(ctx: Context, field: str) -> Bools:
    return np.asarray(ctx.batch.counts[field] > 0)


def _lexical(ctx: Context, field: str) -> pa.StringArray:
    column: pa.StringArray = getattr(ctx.batch, _LEXICAL[field])
    return column


def _min_count(field: str, bound: int) -> Check:
    return lambda ctx: np.asarray(ctx.batch.counts[field] < bound)


def _max_count(field: str, bound: int) -> Check:
    return lambda ctx: np.asarray(ctx.batch.counts[field] > bound)


def _datatype(field: str, datatype: URIRef) -> Check:
    if FIELD_DATATYPES.get(field) != datatype:
        # IRIs are never literals, and a column only ever holds its own datatype.
        return lambda ctx: _given(ctx, field)
    return lambda ctx: _given(ctx, field) & ~ctx.batch.ok[field]


def _matches(mask: pa.BooleanArray) -> Bools:
    return np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _pattern(field: str, regex: str, flags: str | None) -> Check:
    if field not in _LEXICAL or flags:
        raise ShapesError(f"sh:pattern on {field!r} (flags {flags!r}) cannot be compiled")

    def check(ctx: Context) -> Bools:
        hit = pc.match_substring_regex(_lexical(ctx, field), pattern=regex)
        return _given(ctx, field) & ~_matches(hit)

    return check


def _in(field: str, members: list[Node]) -> Check:
    if field not in ("quality", "producer") or not all(
        isinstance(m, Literal) and m.datatype in (None, XSD.string) for m in members
    ):
        raise ShapesError(f"sh:in on {field!r} with non-string members cannot be compiled")
    allowed = pa.array([str(m) for m in members], pa.string())

    def check(ctx: Context) -> Bools:
        hit = pc.is_in(_lexical(ctx, field), value_set=allowed)
        return _given(ctx, field) & ~(ctx.batch.ok[field] & _matches(hit))

    return check


def _bound(field: str, component: URIRef, bound: Literal) -> Check:
    if field not in _NUMERIC or not isinstance(bound.toPython(), (int, float)):
        raise ShapesError(f"{component} on {field!r} cannot be compiled")
    limit = float(bound.toPython())
    compare = {
        SH.minInclusive: np.greater_equal,
        SH.minExclusive: np.greater,
        SH.maxInclusive: np.less_equal,
        SH.maxExclusive: np.less,
    }[component]

    def check(ctx: Context) -> Bools:
        values = getattr(ctx.batch, _NUMERIC[field])
        inside = ctx.batch.ok[field] & compare(values, limit)
        return np.asarray(_given(ctx, field) & ~inside, dtype=np.bool_)

    return check


def _class(field: str, cls: Node) -> Check:
    if field != "sensor" or cls != TK.Sensor:
        raise ShapesError(f"sh:class {cls} on {field!r} cannot be compiled")
    return lambda ctx: _given(ctx, field) & ~ctx.known


_COMPONENTS = {
    SH.minCount: SH.MinCountConstraintComponent,
    SH.maxCount: SH.MaxCountConstraintComponent,
    SH.datatype: SH.DatatypeConstraintComponent,
    SH.pattern: SH.PatternConstraintComponent,
    SH["in"]: SH.InConstraintComponent,
    SH.minInclusive: SH.MinInclusiveConstraintComponent,
    SH.minExclusive: SH.MinExclusiveConstraintComponent,
    SH.maxInclusive: SH.MaxInclusiveConstraintComponent,
    SH.maxExclusive: SH.MaxExclusiveConstraintComponent,
    SH["class"]: SH.ClassConstraintComponent,
}


def _core_check(shapes: Graph, shape: Node, field: str, parameter: URIRef, value: Node) -> Check:
    if parameter in (SH.minCount, SH.maxCount):
        bound = int(value.toPython()) if isinstance(value, Literal) else -1
        return (_min_count if parameter == SH.minCount else _max_count)(field, bound)
    if parameter == SH.datatype:
        assert isinstance(value, URIRef)
        return _datatype(field, value)
    if parameter == SH.pattern:
        flags = shapes.value(shape, SH.flags)
        return _pattern(field, str(value), None if flags is None else str(flags))
    if parameter == SH["in"]:
        return _in(field, list(Collection(shapes, value)))
    if parameter == SH["class"]:
        return _class(field, value)
    assert isinstance(value, Literal)
    return _bound(field, parameter, value)


# ---- The contract's SPARQL constraints ----


def _range(ctx: Context) -> Bools:
    b, idx = ctx.batch, ctx.sensor_index
    safe = np.where(ctx.known, idx, 0)
    # a bound the sensor does not have is an infinite one (``reasoner.telemetry_rdf`` writes
    # it as ±INF for pySHACL): a sensor with only a minimum is checked against its minimum
    lo = np.nan_to_num(ctx.sensors.physical_min[safe], nan=-np.inf)
    hi = np.nan_to_num(ctx.sensors.physical_max[safe], nan=np.inf)
    inside = (b.value >= lo) & (b.value <= hi)
    return _given(ctx, "value") & ctx.known & ~(b.ok["value"] & inside)


def _unit(ctx: Context) -> Bools:
    safe = np.where(ctx.known, ctx.sensor_index, 0)
    expected = ctx.sensors.units.take(pa.array(safe))
    same = _matches(pc.equal(ctx.batch.unit, expected))
    return _given(ctx, "unit") & ctx.known & ~same


def _zoned(ctx: Context) -> Bools:
    # what the SPARQL casts read: a time with a zone that rdflib reads as an instant, whether
    # or not TwinKG keeps it (sh:datatype refuses those); compared to the microsecond, as rdflib
    return _given(ctx, "time") & ctx.batch.time_tz


def _future(ctx: Context) -> Bools:
    late = ctx.batch.time_us > ctx.latest_acceptable_ns // 1000
    return _zoned(ctx) & _given(ctx, "batch") & late


def _monotonic(ctx: Context) -> Bools:
    b = ctx.batch
    n = len(b)
    zoned = _zoned(ctx) & _given(ctx, "sensor")
    # (a) not newer than the sensor's newest accepted reading
    safe = np.where(ctx.known, ctx.sensor_index, 0)
    last_us = ctx.sensors.last_ns[safe] // 1000
    stale = ctx.known & ctx.sensors.has_last[safe] & (b.time_us <= last_us)
    # (b) not newer than an earlier point (smaller sequence) of the same sensor in this batch
    sensor = b.sensor
    iri = b.ok.get("sensor")
    if iri is not None and not iri.all():  # a Text is a literal, never the IRI of that text
        # (control characters are escaped by ``reasoner.points``, so "\x00" starts no IRI)
        marked = pc.binary_join_element_wise("\x00", sensor, "")
        sensor = pc.if_else(pa.array(iri), sensor, marked)
    codes = pc.dictionary_encode(sensor).indices
    group = np.asarray(codes.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    seq_ok = _given(ctx, "sequence") & b.ok["sequence"]
    rank = np.unique(b.time_us, return_inverse=True)[1].astype(np.int64).ravel()
    order = np.lexsort((b.sequence, group))
    g, s = group[order], b.sequence[order]
    participates = (zoned & seq_ok)[order]
    keyed = np.where(participates, g * n + rank[order], g * n - 1)
    running = np.maximum.accumulate(keyed) if n else keyed
    # the max over strictly smaller sequences: look just before the first of equal (group, seq)
    new_block = np.ones(n, np.bool_)
    new_block[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    block_start = np.maximum.accumulate(np.where(new_block, np.arange(n), 0))
    before = np.where(block_start > 0, running[np.maximum(block_start - 1, 0)], -1)
    earlier = np.zeros(n, np.bool_)
    earlier[order] = participates & (before >= g * n + rank[order]) & (g >= 0)
    return np.asarray(zoned & (stale | earlier), dtype=np.bool_)


def _query_digest(query: str) -> str:
    return hashlib.sha256(" ".join(query.split()).encode()).hexdigest()[:16]


# Each known SPARQL constraint: its local name and the digest of its (whitespace-normalised) query.
_SPARQL: Mapping[str, tuple[str, Check]] = {
    "valueInPhysicalRange": ("812e30d12c41f9ad", _range),
    "unitMatchesSensor": ("d0fdc34b86828623", _unit),
    "notInFuture": ("1d3294bd46253033", _future),
    "monotonicPerSensor": ("87511a762bdd84c4", _monotonic),
}


def _sparql_check(shapes: Graph, constraint: Node) -> Check:
    name = str(constraint).rpartition("#")[2]
    known = _SPARQL.get(name)
    query = str(shapes.value(constraint, SH.select) or "")
    if known is None:
        raise ShapesError(f"SPARQL constraint {constraint} has no compiled form")
    digest, check = known
    if _query_digest(query) != digest:
        raise ShapesError(f"SPARQL constraint {constraint} changed; recompile it")
    return check


def _severity(shapes: Graph, shape: Node) -> Severity:
    value = shapes.value(shape, SH.severity)
    return Severity(str(value)) if value is not None else Severity.VIOLATION


def _message(shapes: Graph, node: Node) -> str:
    # SPARQL messages name {?value}; one text per kind of failure reads better without it.
    return str(shapes.value(node, SH.message) or node).replace(" {?value}", "")


def compile_contract(shapes: Graph) -> CompiledContract:
    """Compile the node shape that targets tk:TelemetryPoint; ShapesError if any part cannot be."""
    targets = list(shapes.subjects(SH.targetClass, TK.TelemetryPoint))
    if len(targets) != 1:
        raise ShapesError(f"expected one shape targeting tk:TelemetryPoint, found {len(targets)}")
    node_shape = targets[0]
    compiled: list[CompiledConstraint] = []
    for prop in sorted(shapes.objects(node_shape, SH.property), key=str):
        path = shapes.value(prop, SH.path)
        field = PATH_FIELDS.get(path) if isinstance(path, URIRef) else None
        if field is None:
            raise ShapesError(f"property shape {prop} has a path the compiler does not know")
        for parameter, value in sorted(shapes.predicate_objects(prop), key=str):
            if parameter in _IGNORED or parameter == SH.flags:
                continue
            if parameter not in _COMPONENTS:
                raise ShapesError(f"{parameter} on {prop} cannot be compiled")
            assert isinstance(parameter, URIRef)
            compiled.append(
                CompiledConstraint(
                    str(prop),
                    str(_COMPONENTS[parameter]),
                    None,
                    str(path),
                    _message(shapes, prop),
                    _severity(shapes, prop),
                    _core_check(shapes, prop, field, parameter, value),
                )
            )
    for constraint in sorted(shapes.objects(node_shape, SH.sparql), key=str):
        compiled.append(
            CompiledConstraint(
                str(node_shape),
                str(SH.SPARQLConstraintComponent),
                str(constraint),
                None,
                _message(shapes, constraint),
                _severity(shapes, node_shape),
                _sparql_check(shapes, constraint),
            )
        )
    for parameter in set(shapes.predicates(node_shape)) - {
        SH.targetClass,
        SH.property,
        SH.sparql,
        *_IGNORED,
    }:
        raise ShapesError(f"{parameter} on {node_shape} cannot be compiled")
    return CompiledContract(tuple(compiled))
