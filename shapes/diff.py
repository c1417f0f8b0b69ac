"""Breaking and compatible changes between two versions of a SHACL contract.

A change is *breaking* when data that conformed to the old shapes can fail the new ones (a
producer must change), *compatible* when every such data still conforms. Shapes are matched by
IRI, property shapes by their node shape and ``sh:path`` (W3C SHACL §2.3), whatever their own IRI,
so renaming a property shape is no change. Each core constraint parameter (SHACL §4) has a rule:
a raised ``sh:minCount`` or a new bound narrows, a removed ``sh:in`` value narrows, a value added
to a parameter that only conjoins (``sh:class``, ``sh:datatype``, targets, SPARQL constraints …)
narrows; the opposite loosenings and changed messages or labels are compatible. Where
compatibility cannot be proved (a changed pattern or ``sh:or``), the change counts as breaking.
See docs/decisions/0009-versioned-contracts.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from math import inf
from typing import Any

from rdflib import RDF, SH, BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import XSD
from rdflib.term import Node


class Aspect(StrEnum):
    """What a change is about: a shape, or SHACL parameters compared together.

    Any other SHACL parameter (``sh:datatype``, ``sh:class``, ``sh:sparql`` …) only conjoins a
    constraint, so it is compared on its own under its prefixed name.
    """

    SHAPE = "node shape"
    PROPERTY = "property shape"
    TARGET = "target"
    MIN_COUNT = "sh:minCount"
    MAX_COUNT = "sh:maxCount"
    MIN_LENGTH = "sh:minLength"
    MAX_LENGTH = "sh:maxLength"
    LOWER_BOUND = "lower bound"
    UPPER_BOUND = "upper bound"
    IN = "sh:in"
    LANGUAGE_IN = "sh:languageIn"
    IGNORED_PROPERTIES = "sh:ignoredProperties"
    CLOSED = "sh:closed"
    UNIQUE_LANG = "sh:uniqueLang"
    DEACTIVATED = "sh:deactivated"
    SEVERITY = "sh:severity"
    MESSAGE = "sh:message"
    ANNOTATION = "annotation"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: which shape and path, which parameter, old and new value, and the verdict."""

    shape: str
    path: str | None
    component: str
    old: str | None
    new: str | None
    breaking: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ContractDiff:
    """All changes from one contract version to another; ``prefixes`` shorten IRIs for display."""

    changes: tuple[Change, ...]
    prefixes: tuple[tuple[str, str], ...] = ()

    @property
    def breaking(self) -> bool:
        """Whether any change can make conforming data fail."""
        return any(c.breaking for c in self.changes)

    def describe(self, change: Change) -> str:
        """One line: verdict, shape, path, parameter, old → new, and why."""
        verdict = "BREAKING" if change.breaking else "compatible"
        shape, path = self.short(change.shape), self.short(change.path or "-")
        values = f"{self.short(change.old or '(none)')} -> {self.short(change.new or '(none)')}"
        return f"{verdict:<10}  {shape}  {path}  {change.component}: {values}  ({change.reason})"

    def summary(self) -> str:
        """One line counting the changes and saying which version bump they need."""
        breaking = sum(c.breaking for c in self.changes)
        count = f"{len(self.changes)} change{'' if len(self.changes) == 1 else 's'}"
        if breaking:
            return f"{count}, {breaking} breaking: a new major version"
        return (
            f"{count}, none breaking: a new minor or patch version"
            if self.changes
            else "no changes"
        )

    def short(self, text: str) -> str:
        """``text`` with every IRI it names written as prefix:local where a prefix is known."""
        if "<" not in text:
            return self._qname(text)
        return re.sub(r"<([^<>\s\"]*)>", lambda m: self._qname(m.group(1)), text)

    def _qname(self, iri: str) -> str:
        best = max(
            ((p, ns) for p, ns in self.prefixes if iri.startswith(ns)), key=_ns_len, default=None
        )
        return iri if best is None or not best[0] else f"{best[0]}:{iri[len(best[1]) :]}"


def _ns_len(item: tuple[str, str]) -> int:
    return len(item[1])


# ---- Reading shapes ----

_TARGETS = (SH.targetClass, SH.targetNode, SH.targetSubjectsOf, SH.targetObjectsOf, SH.target)
_OWN = {SH.property, SH.path, RDF.type}  # structure, compared separately
_ASPECT_OF: Mapping[URIRef, Aspect] = {
    **{SH[a.value.removeprefix("sh:")]: a for a in Aspect if a.value.startswith("sh:")},
    **dict.fromkeys(_TARGETS, Aspect.TARGET),
    **dict.fromkeys((SH.minInclusive, SH.minExclusive), Aspect.LOWER_BOUND),
    **dict.fromkeys((SH.maxInclusive, SH.maxExclusive), Aspect.UPPER_BOUND),
}
_ANNOTATIONS = {SH.name, SH.description, SH.order, SH.group, SH.defaultValue}
_IGNORED_IN_CANON = {SH.message, SH.name, SH.description, SH.order, SH.group}
_SEVERITY_RANK = {SH.Info: 0, SH.Warning: 1, SH.Violation: 2}
_OPTIONAL_OK = {str(SH.datatype), str(SH.maxCount)}  # a new optional property may carry these


def _component(predicate: URIRef) -> str:
    """The aspect of ``predicate``; a parameter that only conjoins is its own (``sh:class``)."""
    if predicate in _ASPECT_OF:
        return _ASPECT_OF[predicate]
    if predicate in _ANNOTATIONS or not str(predicate).startswith(str(SH)):
        return Aspect.ANNOTATION
    return f"sh:{str(predicate)[len(str(SH)) :]}"


@dataclass(frozen=True, slots=True)
class _Shape:
    graph: Graph
    node: Node
    values: Mapping[str, tuple[tuple[URIRef, Node], ...]]  # by component

    def get(self, aspect: str) -> tuple[tuple[URIRef, Node], ...]:
        return self.values.get(aspect, ())

    def show(self, aspect: str) -> str | None:
        shown = sorted(_show(self.graph, p, o, aspect) for p, o in self.get(aspect))
        return ", ".join(shown) or None


def _read(graph: Graph, node: Node, *, top: bool) -> _Shape:
    # nested property shapes of a property shape are compared as opaque constraints
    own = _OWN if top else _OWN - {SH.property}
    values: dict[str, list[tuple[URIRef, Node]]] = {}
    for p, o in graph.predicate_objects(node):
        if isinstance(p, URIRef) and p not in own:
            values.setdefault(_component(p), []).append((p, o))
    return _Shape(graph, node, {a: tuple(v) for a, v in values.items()})


def _canon(graph: Graph, node: Node, name: Callable[[Node], str] = lambda n: n.n3()) -> str:
    """A text for ``node`` that is the same in any graph: blank nodes are spelled out."""
    if isinstance(node, Literal):
        if node.datatype not in (None, XSD.string):
            return name(node)
        return Literal(
            " ".join(str(node).split()), lang=node.language
        ).n3()  # "a" = "a"^^xsd:string
    if not isinstance(node, BNode):
        return name(node)
    if graph.value(node, RDF.first) is not None:
        return "(" + " ".join(_canon(graph, i, name) for i in Collection(graph, node)) + ")"
    pairs = sorted(
        f"{name(p)} {_canon(graph, o, name)}"
        for p, o in graph.predicate_objects(node)
        if p not in _IGNORED_IN_CANON
    )
    return "[" + " ; ".join(pairs) + "]"


def _path(graph: Graph, node: Node) -> str:
    """A property path in SPARQL syntax (full IRIs; a plain IRI for a predicate path)."""
    if not isinstance(node, BNode):
        return str(node) if isinstance(node, URIRef) else _canon(graph, node)
    if graph.value(node, RDF.first) is not None:
        return "/".join(_inner(graph, i) for i in Collection(graph, node))
    for p, suffix in ((SH.zeroOrMorePath, "*"), (SH.oneOrMorePath, "+"), (SH.zeroOrOnePath, "?")):
        if (inner := graph.value(node, p)) is not None:
            return f"({_inner(graph, inner)}){suffix}"
    if (inner := graph.value(node, SH.inversePath)) is not None:
        return f"^{_inner(graph, inner)}"
    if (alts := graph.value(node, SH.alternativePath)) is not None:
        return "(" + "|".join(_inner(graph, i) for i in Collection(graph, alts)) + ")"
    return _canon(graph, node)


def _inner(graph: Graph, node: Node) -> str:
    return f"<{node}>" if isinstance(node, URIRef) else _path(graph, node)


def _show(graph: Graph, predicate: URIRef, value: Node, aspect: str) -> str:
    nm = graph.namespace_manager
    text = _canon(graph, value, lambda n: n.n3(nm))
    if aspect in (Aspect.TARGET, Aspect.ANNOTATION):
        return f"{predicate.n3(nm)} {text}"
    if aspect in (Aspect.LOWER_BOUND, Aspect.UPPER_BOUND):
        op = {
            SH.minInclusive: ">=",
            SH.minExclusive: ">",
            SH.maxInclusive: "<=",
            SH.maxExclusive: "<",
        }
        return f"{op[predicate]} {value}"
    return str(value) if isinstance(value, Literal) else text


def _key_value(shape: _Shape, predicate: URIRef, value: Node) -> str:
    # SPARQL constraints are compared by their content even when they are named
    if predicate == SH.sparql and isinstance(value, URIRef):
        pairs = sorted(
            f"{p.n3()} {_canon(shape.graph, o)}"
            for p, o in shape.graph.predicate_objects(value)
            if p not in _IGNORED_IN_CANON and p != RDF.type
        )
        return f"{predicate.n3()} [" + " ; ".join(pairs) + "]"
    return f"{predicate.n3()} {_canon(shape.graph, value)}"


# ---- Which shapes exist, keyed so that versions match up ----

_Key = tuple[str, str | None]


def _shape_nodes(graph: Graph) -> set[URIRef]:
    # property shapes that nothing targets or refers to check nothing: they are left out
    found = set(graph.subjects(RDF.type, SH.NodeShape))
    found |= {s for t in _TARGETS for s in graph.subjects(t, None)}
    found |= set(graph.objects(None, SH.node))
    nested = set(graph.objects(None, SH.property))
    return {s for s in found if isinstance(s, URIRef) and s not in nested}


def _index(graph: Graph) -> tuple[dict[_Key, _Shape], dict[_Key, _Shape]]:
    """Top-level shapes by (IRI, path) and property shapes by (owner IRI, path)."""
    tops: dict[_Key, _Shape] = {}
    props: dict[_Key, _Shape] = {}
    for node in sorted(_shape_nodes(graph)):
        own_path = graph.value(node, SH.path)
        tops[(str(node), None if own_path is None else _path(graph, own_path))] = _read(
            graph, node, top=True
        )
        children = [(c, graph.value(c, SH.path)) for c in graph.objects(node, SH.property)]
        paths = [_path(graph, p) if p is not None else "?" for _, p in children]
        for (child, _), path in zip(children, paths, strict=True):
            # several property shapes on one path: tell them apart by their content
            key = path if paths.count(path) == 1 else f"{path} {_canon(graph, child)}"
            props[(str(node), key)] = _read(graph, child, top=False)
    return tops, props


# ---- Rules: each aspect has an effective value and says when a change of it narrows ----


def _count(shape: _Shape, aspect: str, default: float) -> float:
    return min((float(str(o)) for _, o in shape.get(aspect)), default=default)


def _bound(shape: _Shape, aspect: str) -> tuple[Any, bool] | None:
    """The tightest bound of ``aspect`` as (value, strict), or None when unbounded."""
    found = [
        (o.toPython() if isinstance(o, Literal) else o, p in (SH.minExclusive, SH.maxExclusive))
        for p, o in shape.get(aspect)
    ]
    upper = aspect is Aspect.UPPER_BOUND
    with suppress(TypeError):  # bounds of different datatypes in one shape: keep the first
        found.sort(key=lambda b: (b[0], b[1] != upper), reverse=not upper)
    return found[0] if found else None


def _narrower_bound(old: Any, new: Any, *, upper: bool) -> bool:
    if new is None or old is None:
        return new is not None
    (old_value, old_strict), (new_value, new_strict) = old, new
    try:
        if old_value == new_value:
            return bool(new_strict and not old_strict)
        return bool(new_value < old_value) if upper else bool(new_value > old_value)
    except TypeError:  # a bound of another datatype: cannot prove it compatible
        return True


def _items(shape: _Shape, aspect: str) -> frozenset[str] | None:
    lists = [o for _, o in shape.get(aspect)]
    if not lists:
        return None
    return frozenset(_canon(shape.graph, i) for lst in lists for i in Collection(shape.graph, lst))


def _flag(shape: _Shape, aspect: str) -> bool:
    return any(isinstance(o, Literal) and o.toPython() is True for _, o in shape.get(aspect))


def _severity(shape: _Shape, _: str) -> int:
    ranks = (
        _SEVERITY_RANK.get(o, 2) if isinstance(o, URIRef) else 2
        for _, o in shape.get(Aspect.SEVERITY)
    )
    return max(ranks, default=2)


def _keys(shape: _Shape, aspect: str) -> frozenset[str]:
    return frozenset(_key_value(shape, p, o) for p, o in shape.get(aspect))


@dataclass(frozen=True, slots=True)
class _Rule:
    value: Callable[[_Shape, str], Any]  # what is compared
    narrows: Callable[[Any, Any], bool]  # (old value, new value) -> breaking
    why: tuple[str, str]  # (reason when breaking, reason when compatible)


_MIN = _Rule(
    lambda s, a: _count(s, a, 0), lambda o, n: n > o, ("raised: fewer values fail", "lowered")
)
_MAX = _Rule(
    lambda s, a: _count(s, a, inf),
    lambda o, n: n < o,
    ("new or lowered: more values fail", "raised"),
)
_LOW = _Rule(_bound, partial(_narrower_bound, upper=False), ("narrowed from below", "widened"))
_UP = _Rule(_bound, partial(_narrower_bound, upper=True), ("narrowed from above", "widened"))
_ENUM = _Rule(
    _items,
    lambda o, n: n is not None and (o is None or bool(o - n)),
    ("values no longer allowed", "values added or the list removed"),
)
_IGNORE = _Rule(
    lambda s, a: _items(s, a) or frozenset(),
    lambda o, n: bool(o - n),
    ("properties no longer ignored", "more properties ignored"),
)
_ON = _Rule(_flag, lambda o, n: n and not o, ("newly switched on", "switched off"))
_ANY_NEW = _Rule(
    _keys, lambda o, n: bool(n - o), ("new or changed: not provably looser", "removed")
)

# A closed table inside a SPARQL constraint: "|key=a, b|key2=c|" (decision 0039's unit lists).
_TABLE = re.compile(r'\\?"(\|(?:[^"|=\\]+=[^"|\\]*\|)+)\\?"')  # quotes escaped in the key


def _table(text: str) -> dict[str, frozenset[str]]:
    match = _TABLE.search(text)
    assert match is not None
    rows = (row.split("=", 1) for row in match.group(1).strip("|").split("|"))
    return {k: frozenset(v.split(", ")) if v else frozenset() for k, v in rows}


def _widens_table(old: str, new: str) -> bool:
    """Whether ``new`` is ``old`` with only entries added to its one closed table: the same query
    with more (kind, unit) pairs allowed, which fails a subset of what the old one failed."""
    if len(_TABLE.findall(old)) != 1 or len(_TABLE.findall(new)) != 1:
        return False
    if _TABLE.sub('""', old) != _TABLE.sub('""', new):
        return False
    before, after = _table(old), _table(new)
    return all(k in after and v <= after[k] for k, v in before.items())


def _sparql_narrows(old: frozenset[str], new: frozenset[str]) -> bool:
    """A new or changed SPARQL constraint narrows, unless it only widens an old one's table."""
    return any(not any(_widens_table(o, n) for o in old - new) for n in new - old)


_SPARQL = _Rule(
    _keys, _sparql_narrows, ("new or changed: not provably looser", "removed or widened")
)
_RULES: Mapping[str, _Rule] = {
    **dict.fromkeys((Aspect.MIN_COUNT, Aspect.MIN_LENGTH), _MIN),
    **dict.fromkeys((Aspect.MAX_COUNT, Aspect.MAX_LENGTH), _MAX),
    Aspect.LOWER_BOUND: _LOW,
    Aspect.UPPER_BOUND: _UP,
    **dict.fromkeys((Aspect.IN, Aspect.LANGUAGE_IN), _ENUM),
    Aspect.IGNORED_PROPERTIES: _IGNORE,
    **dict.fromkeys((Aspect.CLOSED, Aspect.UNIQUE_LANG), _ON),
    Aspect.DEACTIVATED: _Rule(_flag, lambda o, n: o and not n, ("reactivated", "deactivated")),
    Aspect.SEVERITY: _Rule(_severity, lambda o, n: n > o, ("severity raised", "severity lowered")),
    "sh:sparql": _SPARQL,
    **dict.fromkeys(
        (Aspect.MESSAGE, Aspect.ANNOTATION), _Rule(_keys, lambda o, n: False, ("", "wording only"))
    ),
}


def _compare(key: _Key, old: _Shape, new: _Shape) -> Iterator[Change]:
    for aspect in sorted(old.values.keys() | new.values.keys()):
        rule = _RULES.get(aspect, _ANY_NEW)
        before, after = rule.value(old, aspect), rule.value(new, aspect)
        if before == after:
            continue
        breaking = bool(rule.narrows(before, after))
        reason = rule.why[0] if breaking else rule.why[1]
        yield Change(*key, str(aspect), old.show(aspect), new.show(aspect), breaking, reason)


def _constraining(shape: _Shape) -> set[str]:
    quiet = (Aspect.MESSAGE, Aspect.ANNOTATION, Aspect.SEVERITY)
    return {str(p) for a, pairs in shape.values.items() if a not in quiet for p, _ in pairs}


def _closed_to(owner: _Shape, path: Node | None) -> bool:
    """Whether the closed ``owner`` kept conforming data from having values for ``path``."""
    ignored = _items(owner, Aspect.IGNORED_PROPERTIES) or frozenset()
    return _flag(owner, Aspect.CLOSED) and isinstance(path, URIRef) and path.n3() not in ignored


def _added_property(key: _Key, shape: _Shape, owner: _Shape | None) -> Change:
    if _flag(shape, Aspect.DEACTIVATED):
        breaking, reason = False, "a new deactivated property shape"
    elif _count(shape, Aspect.MIN_COUNT, 0) >= 1:
        breaking, reason = True, "a new required property: existing data lacks it"
    elif owner is not None and _closed_to(owner, shape.graph.value(shape.node, SH.path)):
        breaking, reason = False, "the old shape was closed, so conforming data never had it"
    elif _constraining(shape) - {str(SH.minCount)} <= _OPTIONAL_OK:
        breaking, reason = False, "a new optional property"
    else:
        breaking, reason = True, "a new property shape constrains values existing data may carry"
    return Change(
        *key, str(Aspect.PROPERTY), None, _canon(shape.graph, shape.node), breaking, reason
    )


def _name(shape: _Shape) -> str:
    return _canon(shape.graph, shape.node, lambda n: n.n3(shape.graph.namespace_manager))


def _added_shape(key: _Key, shape: _Shape) -> Change:
    targeted = bool(shape.get(Aspect.TARGET)) and not _flag(shape, Aspect.DEACTIVATED)
    reason = (
        "a new shape with targets constrains existing data"
        if targeted
        else ("a new shape without targets applies only where another shape refers to it")
    )
    return Change(*key, str(Aspect.SHAPE), None, shape.show(Aspect.TARGET), targeted, reason)


def diff(old: Graph, new: Graph) -> ContractDiff:
    """The changes from the shapes graph ``old`` to ``new``, each judged breaking or compatible."""
    old_tops, old_props = _index(old)
    new_tops, new_props = _index(new)
    changes: list[Change] = []
    for key in sorted(old_tops.keys() | new_tops.keys(), key=_sort_key):
        if key not in new_tops:
            gone = old_tops[key]
            changes.append(Change(*key, str(Aspect.SHAPE), _name(gone), None, False, "removed"))
        elif key not in old_tops:
            changes.append(_added_shape(key, new_tops[key]))
        else:
            changes.extend(_compare(key, old_tops[key], new_tops[key]))
    in_both = {k[0] for k in old_tops} & {k[0] for k in new_tops}
    for key in sorted(old_props.keys() | new_props.keys(), key=_sort_key):
        if key[0] not in in_both:
            continue  # the whole node shape was added or removed: reported once above
        if key not in new_props:
            gone = old_props[key]
            changes.append(Change(*key, str(Aspect.PROPERTY), _name(gone), None, False, "removed"))
        elif key not in old_props:
            owner = next((s for k, s in old_tops.items() if k[0] == key[0]), None)
            changes.append(_added_property(key, new_props[key], owner))
        else:
            changes.extend(_compare(key, old_props[key], new_props[key]))
    changes.sort(key=lambda c: (c.shape, c.path or "", c.component))
    return ContractDiff(tuple(changes), _prefixes(new, old))


def _sort_key(key: _Key) -> tuple[str, str]:
    return key[0], key[1] or ""


def _prefixes(*graphs: Graph) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for graph in graphs:
        for prefix, ns in graph.namespace_manager.namespaces():
            found.setdefault(str(ns), prefix)
    return tuple(sorted((p, ns) for ns, p in found.items()))
