"""The telemetry source kinds: a kind name (``csv``, ``skab``, ``json``) → the factory that makes
a source of that kind from a :class:`SourceRequest`.

The CLI's choices and the twin's dispatch come from here, so a new protocol is one module (its
:class:`Source` and factory) plus one :func:`register` line in :data:`BUILT_IN`. A factory may
import its protocol's client library itself, so a kind costs nothing until it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinkg.connect.csv import csv_source
from twinkg.connect.json import json_source
from twinkg.connect.skab import skab_source
from twinkg.connect.source import Source, SourceFactory, SourceRequest
from twinkg.ontology.errors import ConfigError, InvalidInputError


@dataclass(frozen=True, slots=True)
class SourceKind:
    """A registered kind: its name, its factory and one line that says what it reads."""

    name: str
    factory: SourceFactory
    summary: str


_KINDS: dict[str, SourceKind] = {}


def register(name: str, factory: SourceFactory, summary: str) -> SourceKind:
    """Make ``name`` a source kind (:class:`ConfigError` when it is one already)."""
    if not name or not name.isidentifier() or name != name.lower():
        raise ConfigError(f"a source kind is a lower-case identifier, not {name!r}")
    if name in _KINDS:
        raise ConfigError(f"the source kind {name!r} is registered already")
    kind = SourceKind(name, factory, summary)
    _KINDS[name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget the kind ``name`` (a test's own kind; unknown names are ignored)."""
    _KINDS.pop(name, None)


def kinds() -> tuple[SourceKind, ...]:
    """The registered kinds, in the order they were registered."""
    return tuple(_KINDS.values())


def open_source(name: str, request: SourceRequest) -> Source:
    """A source of kind ``name`` for ``request`` (:class:`InvalidInputError` for a kind that is
    not registered, naming those that are)."""
    kind = _KINDS.get(name)
    if kind is None:
        known = ", ".join(_KINDS) or "none"
        raise InvalidInputError(f"no telemetry source kind {name!r} (known: {known})")
    return kind.factory(request)


BUILT_IN = (
    register("skab", skab_source, "a SKAB run: replayed, detectors fitted on its first 400 s"),
    register("csv", csv_source, "a wide CSV file (one column per sensor's externalId)"),
    register("json", json_source, 'a JSON batch {"contract", "producer", "points"}; - = stdin'),
)
