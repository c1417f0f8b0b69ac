"""Local rules: what an edge decides by itself, next to the plant, without the central twin.

A rule is a threshold trip: ``sensor`` above ``above`` for ``count`` readings in a row starts
``action`` on ``target`` (a ``controlled_stop``, judged by the bundle's safety shapes, or an
``alarm``, which changes nothing and is only recorded). A rule that tripped stays latched
until a reading of its sensor is at or below the threshold again, so one excursion is one
decision. Readings are taken in the order of their time; a reading that is not a finite number
(the telemetry contract quarantines it centrally) neither counts nor re-arms. The counters live
in memory: a restarted edge counts afresh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twinkg.connect.mqtt.topics import segment
from twinkg.ontology.errors import InvalidInputError

MAX_COUNT = 100_000


class RuleAction(StrEnum):
    """What a rule does when it trips."""

    CONTROLLED_STOP = "controlled_stop"  # the safety shapes judge it first
    ALARM = "alarm"  # changes nothing: raised and recorded


@dataclass(frozen=True, slots=True)
class Rule:
    """One local rule (see the module docstring)."""

    id: str
    sensor: str
    above: float
    count: int
    action: RuleAction
    target: str
    demanded_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The rule as the bundle and the decision records carry it."""
        return {
            "id": self.id,
            "sensor": self.sensor,
            "above": self.above,
            "count": self.count,
            "action": self.action.value,
            "target": self.target,
            "demanded_by": self.demanded_by,
        }


def _iri(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidInputError(f"{what} must be an IRI, not {str(value)[:80]!r}")
    if len(value) > 2000 or any(c in value for c in ' <>"{}|\\^`\n'):
        raise InvalidInputError(f"{what} {value[:80]!r} is not a well-formed IRI")
    return value


def parse_rule(row: object) -> Rule:
    """One rule from its JSON object (:class:`InvalidInputError` naming the bad field)."""
    if not isinstance(row, Mapping):
        raise InvalidInputError("a rule is a JSON object")
    known = {"id", "sensor", "above", "count", "action", "target", "demanded_by"}
    if unknown := sorted(set(row) - known):
        raise InvalidInputError(f"a rule has unknown fields: {', '.join(unknown)}")
    rule_id = segment(str(row.get("id", "")), "rule id")
    above, count = row.get("above"), row.get("count")
    if isinstance(above, bool) or not isinstance(above, int | float) or not math.isfinite(above):
        raise InvalidInputError(f"rule {rule_id}: 'above' must be a finite number")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInputError(f"rule {rule_id}: 'count' must be an integer 1..{MAX_COUNT}")
    try:
        action = RuleAction(str(row.get("action")))
    except ValueError:
        choices = ", ".join(a.value for a in RuleAction)
        raise InvalidInputError(f"rule {rule_id}: 'action' must be one of {choices}") from None
    demanded = row.get("demanded_by")
    return Rule(
        rule_id,
        _iri(row.get("sensor"), f"rule {rule_id}: sensor"),
        float(above),
        count,
        action,
        _iri(row.get("target"), f"rule {rule_id}: target"),
        None if demanded is None else _iri(demanded, f"rule {rule_id}: demanded_by"),
    )


def parse_rules(document: object) -> tuple[Rule, ...]:
    """The rules of a rules document ``{"rules": [...]}`` (ids unique)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("rules"), list):
        raise InvalidInputError('a rules document is {"rules": [ ... ]}')
    rules = tuple(parse_rule(row) for row in document["rules"])
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("rule ids must be unique")
    return rules


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of a sensor: its time (ISO 8601 as sent) and value."""

    sensor: str
    time: str
    value: float


@dataclass(frozen=True, slots=True)
class Trip:
    """A rule that tripped, with the readings that tripped it (its evidence)."""

    rule: Rule
    readings: tuple[Reading, ...]


@dataclass(slots=True)
class _Counter:
    run: list[Reading] = field(default_factory=list)
    latched: bool = False


class RuleBook:
    """The rules in force and their counters."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = ()
        self._counters: dict[str, _Counter] = {}
        self._by_sensor: dict[str, list[Rule]] = {}
        self.replace(rules)

    def replace(self, rules: Iterable[Rule]) -> None:
        """Rules of a newly applied bundle; a rule kept unchanged keeps its counter."""
        old = {r.id: (r, self._counters[r.id]) for r in self.rules}
        self.rules = tuple(rules)
        self._counters = {}
        self._by_sensor = {}
        for rule in self.rules:
            kept = old.get(rule.id)
            self._counters[rule.id] = kept[1] if kept and kept[0] == rule else _Counter()
            self._by_sensor.setdefault(rule.sensor, []).append(rule)

    def observe(self, readings: Iterable[Reading]) -> list[Trip]:
        """Count ``readings`` (in time order) and return the rules they trip."""
        trips: list[Trip] = []
        for reading in readings:
            for rule in self._by_sensor.get(reading.sensor, ()):
                if not math.isfinite(reading.value):
                    continue
                counter = self._counters[rule.id]
                if reading.value <= rule.above:
                    counter.run.clear()
                    counter.latched = False
                    continue
                if counter.latched:
                    continue
                counter.run.append(reading)
                if len(counter.run) >= rule.count:
                    trips.append(Trip(rule, tuple(counter.run[-rule.count :])))
                    counter.run.clear()
                    counter.latched = True
        return trips
