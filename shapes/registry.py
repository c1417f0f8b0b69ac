"""The published data contracts: where they are, their versions, and which data they accept.

A contract is a SHACL shapes graph published as ``shapes/contracts/<name>/<major.minor.patch>.ttl``
(semantic versioning: a breaking change, as :mod:`shapes.diff` judges it, needs a new major
version). Each file declares ``<…/contracts/<name>> a owl:Ontology ; owl:versionInfo "<version>"``;
a file whose declared version or name disagrees with its path, or that fails meta-SHACL, is refused
with :class:`ShapesError`. The latest version of a contract is its *current* one: data declared
against an older version is accepted when nothing breaking changed since (:func:`accept`).
See docs/decisions/0009-versioned-contracts.md.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF

from twinkg.ontology.catalog import parse_turtle
from twinkg.ontology.errors import (
    ContractIncompatibleError,
    InvalidInputError,
    ShapesError,
    UnknownContractError,
)
from twinkg.shapes.diff import diff
from twinkg.shapes.meta import check_shapes

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
INGEST_CONTRACTS = ("asset", "sensor", "event")
"""The contracts that gate plant data (assets, sensors, events) on its way into the graph."""

_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_NAME = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A semantic version ``major.minor.patch`` (no pre-release or build parts)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """The version written ``text``, e.g. ``1.2.0``; :class:`InvalidInputError` otherwise."""
        match = _VERSION.fullmatch(text.strip())
        if match is None:
            raise InvalidInputError(f"{text!r} is not a version of the form major.minor.patch")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True, slots=True)
class ContractRef:
    """A contract as data declares it: ``telemetry@1.0.0``, or ``telemetry`` for the current one."""

    name: str
    version: Version | None = None

    @classmethod
    def parse(cls, text: str) -> ContractRef:
        """Read ``name`` or ``name@major.minor.patch``; :class:`InvalidInputError` otherwise."""
        name, at, version = text.strip().partition("@")
        if _NAME.fullmatch(name) is None or (at and not version):
            raise InvalidInputError(
                f"{text!r} is not a contract reference such as telemetry@1.0.0 or telemetry"
            )
        return cls(name, Version.parse(version) if at else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True, eq=False)
class Contract:
    """One published contract version and its shapes graph (shared: do not modify it)."""

    name: str
    version: Version
    path: Path
    graph: Graph

    @property
    def ref(self) -> ContractRef:
        """``name@version``."""
        return ContractRef(self.name, self.version)


def read_shapes(path: Path) -> Graph:
    """A shapes graph from a Turtle file, checked with meta-SHACL."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    graph = parse_turtle([path])
    check_shapes(graph)
    return graph


def declared_version(graph: Graph, *, source: Path) -> tuple[URIRef, str]:
    """The contract ontology IRI and the ``owl:versionInfo`` a shapes graph declares."""
    declared = [
        (s, v)
        for s, v in graph.subject_objects(OWL.versionInfo)
        if isinstance(s, URIRef) and (s, RDF.type, OWL.Ontology) in graph
    ]
    if len(declared) != 1:
        raise ShapesError(
            f"{source}: a contract declares exactly one owl:Ontology with owl:versionInfo, "
            f"found {len(declared)}"
        )
    iri, version = declared[0]
    if not isinstance(version, Literal):
        raise ShapesError(f"{source}: owl:versionInfo must be a literal, got {version}")
    return iri, str(version)


class ContractRegistry:
    """The contracts under one folder; each version is parsed and checked once, then cached."""

    def __init__(self, root: Path = CONTRACTS_DIR) -> None:
        """Read contracts from ``root`` (``shapes/contracts`` by default)."""
        self.root = root
        self._loaded: dict[tuple[str, Version], Contract] = {}

    def names(self) -> tuple[str, ...]:
        """The names of the published contracts, sorted."""
        if not self.root.is_dir():
            return ()
        return tuple(sorted(d.name for d in self.root.iterdir() if any(d.glob("*.ttl"))))

    def versions(self, name: str) -> tuple[Version, ...]:
        """The published versions of contract ``name``, oldest first."""
        if name not in self.names():
            known = ", ".join(self.names()) or "none"
            raise UnknownContractError(f"unknown contract {name!r}; known contracts: {known}")
        found = []
        for path in (self.root / name).glob("*.ttl"):
            if _VERSION.fullmatch(path.stem) is None:
                raise ShapesError(f"{path}: a contract file is named <major.minor.patch>.ttl")
            found.append(Version.parse(path.stem))
        return tuple(sorted(found))

    def contract(self, name: str, version: Version | str | None = None) -> Contract:
        """Version ``version`` of contract ``name`` (the current one when ``None``)."""
        published = self.versions(name)
        wanted = published[-1] if version is None else _as_version(version)
        if wanted not in published:
            known = ", ".join(str(v) for v in published)
            raise UnknownContractError(
                f"contract {name!r} has no version {wanted}; published versions: {known}"
            )
        if (name, wanted) not in self._loaded:
            self._loaded[(name, wanted)] = self._load(name, wanted)
        return self._loaded[(name, wanted)]

    def accept(self, ref: ContractRef | str) -> Contract:
        """The current contract, if data declared against ``ref`` is acceptable to it.

        Acceptable: ``ref`` names a published version with the current major version, and
        nothing changed since that is breaking. Otherwise :class:`ContractIncompatibleError`.
        """
        ref = ContractRef.parse(ref) if isinstance(ref, str) else ref
        current = self.contract(ref.name)
        if ref.version is None or ref.version == current.version:
            return current
        if ref.version not in self.versions(ref.name):
            known = ", ".join(str(v) for v in self.versions(ref.name))
            raise UnknownContractError(
                f"{ref} is not a published version of contract {ref.name!r} "
                f"(published: {known}); data cannot be checked against it"
            )
        if ref.version.major != current.version.major:
            raise ContractIncompatibleError(
                f"data declared against {ref} cannot be accepted by the current "
                f"{current.ref}: the major versions differ, so the change is breaking"
            )
        changes = diff(self.contract(ref.name, ref.version).graph, current.graph)
        breaking = [c for c in changes.changes if c.breaking]
        if breaking:  # a published contract that broke semver: refuse rather than guess
            raise ContractIncompatibleError(
                f"data declared against {ref} cannot be accepted by {current.ref}: "
                f"{len(breaking)} breaking change(s), first: {changes.describe(breaking[0])}"
            )
        return current

    def ingest_shapes(self) -> Graph:
        """A new graph holding the current asset, sensor and event contracts together."""
        union = Graph()
        for name in INGEST_CONTRACTS:
            graph = self.contract(name).graph
            for prefix, namespace in graph.namespace_manager.namespaces():
                union.bind(prefix, namespace, override=False)
            union += graph
        return union

    def _load(self, name: str, version: Version) -> Contract:
        path = self.root / name / f"{version}.ttl"
        graph = parse_turtle([path])
        iri, declared = declared_version(graph, source=path)
        if declared != str(version):
            raise ShapesError(
                f"{path}: declares owl:versionInfo {declared!r}, its name says {version}"
            )
        if str(iri).rstrip("/").rsplit("/", 1)[-1] != name:
            raise ShapesError(f"{path}: declares the contract {iri}, which is not named {name!r}")
        version_iri = graph.value(iri, OWL.versionIRI)
        if version_iri is not None and not str(version_iri).endswith(f"/{name}/{version}"):
            raise ShapesError(
                f"{path}: owl:versionIRI {version_iri} disagrees with {name}@{version}"
            )
        try:
            check_shapes(graph)
        except ShapesError as exc:
            raise ShapesError(f"{path}: {exc}") from None
        return Contract(name, version, path, graph)


def _as_version(version: Version | str) -> Version:
    return version if isinstance(version, Version) else Version.parse(version)


@functools.cache
def default_registry() -> ContractRegistry:
    """The registry of the contracts shipped in ``shapes/contracts``."""
    return ContractRegistry()


def names() -> tuple[str, ...]:
    """The names of the published contracts."""
    return default_registry().names()


def versions(name: str) -> tuple[Version, ...]:
    """The published versions of contract ``name``, oldest first."""
    return default_registry().versions(name)


def contract(name: str, version: Version | str | None = None) -> Contract:
    """A published contract (the current version when ``version`` is ``None``)."""
    return default_registry().contract(name, version)


def accept(ref: ContractRef | str) -> Contract:
    """The current contract, if data declared against ``ref`` is acceptable to it."""
    return default_registry().accept(ref)


def ingest_shapes() -> Graph:
    """The current asset, sensor and event contracts in one new graph: the gate for plant data."""
    return default_registry().ingest_shapes()
