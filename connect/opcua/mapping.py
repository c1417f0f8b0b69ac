"""The OPC UA mapping file: which server variable feeds which TwinKG sensor, and which variable
an allowed action writes (decision 0058).

A mapping is a TOML file a person reviews and edits (``twinkg connect opcua URL --write-map``
drafts one). ``[[telemetry]]`` entries map a variable (``node``: its NodeId string;
``browse_path`` for humans) to a ``sensor`` IRI, or to an ``asset`` and ``quantity_kind`` that
name one sensor, with the ``unit`` as a QUDT unit IRI and the variable's EURange as ``min`` and
``max``. ``[[setpoint]]`` entries map an action kind on an asset (and, for a setpoint change, a
quantity kind; the value written is the action's ``proposed_setpoint``, or a fixed ``value`` for
a stop or a restart) to a writable variable with its ``data_type`` and range. An optional
top-level ``site`` (a site's tag) binds the mapping to that site: every sensor it feeds and every
asset it writes must be on it, checked when it is bound to the graph (decision 0085).

:func:`parse_mapping` checks everything and refuses a bad file with one line naming the file,
the entry and the field (:class:`OpcUaMappingError`); :func:`render_mapping` writes a mapping
(or a draft with blanks a person fills) deterministically (``connect.opcua.writer``).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from asyncua import ua

from twinkg.connect.mqtt.topics import segment
from twinkg.connect.opcua.units import QUDT_UNIT
from twinkg.ontology.errors import InvalidInputError, OpcUaMappingError

VERSION: Final = 1
MAX_BYTES: Final = 8 * 1024 * 1024
MAX_ENTRIES: Final = 100_000

NUMERIC_TYPES: Final = frozenset(
    ("Double", "Float", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64")
)
"""OPC UA built-in types a telemetry variable may have (its values are numbers)."""
SETPOINT_TYPES: Final = NUMERIC_TYPES | {"Boolean"}

WRITABLE_ACTIONS: Final = ("setpoint_change", "controlled_stop", "restart", "switch_to_standby")
"""Action kinds (``agents.state.ActionKind`` values) whose effect a variable can carry."""

_IRI = re.compile(r"^https?://[^\s<>\"{}|\\^`]+$")
_UNIT = re.compile(r"^[A-Za-z0-9_-]+$")
_TOP = frozenset(("version", "server", "site", "telemetry", "setpoint"))
_TELEMETRY = frozenset(
    ("node", "browse_path", "sensor", "asset", "quantity_kind", "unit", "data_type", "min", "max")
)
_SETPOINT = frozenset(
    (
        "node",
        "browse_path",
        "action",
        "asset",
        "quantity_kind",
        "argument",
        "value",
        "data_type",
        "min",
        "max",
    )
)


@dataclass(frozen=True, slots=True)
class TelemetryEntry:
    """An OPC UA variable whose data changes become points of one sensor."""

    node: str
    unit: str
    data_type: str
    sensor: str | None = None
    asset: str | None = None
    quantity_kind: str | None = None
    browse_path: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def names(self) -> str:
        """The sensor, or the asset and quantity kind, for messages."""
        return self.sensor or f"{self.asset} {self.quantity_kind}"


@dataclass(frozen=True, slots=True)
class SetpointEntry:
    """A writable OPC UA variable that carries the effect of one kind of action on an asset."""

    node: str
    action: str
    asset: str
    data_type: str
    quantity_kind: str | None = None
    argument: str | None = None  # "proposed_setpoint" for a setpoint change
    value: float | bool | None = None  # the fixed value a stop or a restart writes
    browse_path: str = ""
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class OpcUaMapping:
    """A checked mapping file."""

    telemetry: tuple[TelemetryEntry, ...]
    setpoints: tuple[SetpointEntry, ...]
    server: str | None = None
    source: str = "mapping"
    site: str | None = None  # the site (its tag) every mapped sensor and asset must be on

    def setpoint_for(
        self, action: str, asset: str, quantity_kind: str | None
    ) -> SetpointEntry | None:
        """The entry an action of ``action`` on ``asset`` (and quantity kind) writes, if any."""
        for entry in self.setpoints:
            if (entry.action, entry.asset) == (action, asset) and (
                entry.quantity_kind is None or entry.quantity_kind == quantity_kind
            ):
                return entry
        return None


class _Entry:
    """One table of the file being checked: refusals name the file, the entry and the field."""

    def __init__(self, source: str, where: str, table: Any, allowed: frozenset[str]) -> None:
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail("", f"is {_kind(table)}, not a table")
        self.table: dict[str, Any] = table
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(unknown[0], "is not a field of this entry")

    def fail(self, field: str, problem: str) -> NoReturn:
        name = f"{self.where}.{field}" if self.where and field else field or self.where
        raise OpcUaMappingError(f"{self.source}: {name} {problem}")

    def text(self, field: str, *, required: bool = True, limit: int = 2000) -> str | None:
        value = self.table.get(field)
        if value is None:
            if required:
                self.fail(field, "is missing")
            return None
        if not isinstance(value, str):
            self.fail(field, f"is {_kind(value)}, not a string")
        if required and not value.strip():
            self.fail(field, "is blank: fill it in")
        if len(value) > limit:
            self.fail(field, f"is longer than {limit} characters")
        return value

    def iri(self, field: str, *, required: bool = True) -> str | None:
        value = self.text(field, required=required)
        if value is None or (not required and not value):
            return None
        if not _IRI.match(value):
            self.fail(field, f"is not an http(s) IRI: {_shown(value)}")
        return value

    def node(self) -> str:
        value = self.text("node")
        assert value is not None
        try:
            parsed = ua.NodeId.from_string(value)
        except Exception:
            self.fail("node", f"is not an OPC UA NodeId string: {_shown(value)}")
        if parsed.is_null():
            self.fail("node", "is the null NodeId")
        text = node_text(parsed)
        try:
            again = ua.NodeId.from_string(text)
        except Exception:
            again = None
        if not node_fits(parsed) or again != parsed or node_text(again) != text:
            self.fail("node", f"is not a valid OPC UA NodeId: {_shown(value)}")
        return text

    def unit(self) -> str:
        value = self.iri("unit")
        assert value is not None
        if not value.startswith(QUDT_UNIT) or not _UNIT.match(value[len(QUDT_UNIT) :]):
            self.fail("unit", f"is not a QUDT unit IRI ({QUDT_UNIT}…): {_shown(value)}")
        return value

    def number(self, field: str) -> float | None:
        value = self.table.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, f"is {_kind(value)}, not a number")
        number = float(value)
        if not math.isfinite(number):
            self.fail(field, "is not a finite number")
        return number

    def choice(self, field: str, allowed: Sequence[str] | frozenset[str]) -> str:
        value = self.text(field)
        assert value is not None
        if value not in allowed:
            self.fail(field, f"is {_shown(value)}, not one of {', '.join(sorted(allowed))}")
        return value

    def span(self) -> tuple[float | None, float | None]:
        low, high = self.number("min"), self.number("max")
        if low is not None and high is not None and not low < high:
            self.fail("min", f"({low:g}) is not below max ({high:g})")
        return low, high


def node_text(node: ua.NodeId) -> str:
    """The OPC UA text form of a NodeId (``ns=2;s=Pump.Flow``), or of an ExpandedNodeId with
    its namespace URI first (``nsu=urn:plant;s=Pump.Flow``: stable across server restarts)."""
    text = node.to_string()
    uri = getattr(node, "NamespaceUri", None)
    if not uri:
        return text
    identifier = ";".join(p for p in text.split(";") if not p.startswith(("nsu=", "ns=")))
    return f"nsu={uri};{identifier}"


def with_uri(node: ua.NodeId, uri: str) -> str:
    """The text of ``node`` with its namespace named by ``uri`` instead of its index."""
    text = node.to_string()
    if text.startswith("ns="):
        text = text.split(";", 1)[1]
    return f"nsu={uri};{text}"


def node_fits(node: ua.NodeId) -> bool:
    """Whether the NodeId's namespace index and numeric identifier fit their OPC UA types."""
    if not 0 <= node.NamespaceIndex <= 0xFFFF:
        return False
    ident = node.Identifier
    if node.NodeIdType in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        return isinstance(ident, int) and 0 <= ident <= 0xFFFFFFFF
    if node.NodeIdType is ua.NodeIdType.ByteString:
        return isinstance(ident, bytes) and len(ident) > 0
    return not isinstance(ident, str) or (0 < len(ident) <= 4096 and ";nsu=" not in ident)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "…")


def _telemetry(source: str, i: int, table: Any) -> TelemetryEntry:
    entry = _Entry(source, f"telemetry[{i}]", table, _TELEMETRY)
    node = entry.node()
    entry.where = f"telemetry[{i}] ({node})"
    sensor = entry.iri("sensor", required="asset" not in entry.table)
    asset = entry.iri("asset", required=False)
    kind = entry.iri("quantity_kind", required=asset is not None and sensor is None)
    if sensor is not None and (asset is not None or kind is not None):
        entry.fail("sensor", "is given with asset/quantity_kind: name the sensor one way only")
    low, high = entry.span()
    return TelemetryEntry(
        node=node,
        unit=entry.unit(),
        data_type=entry.choice("data_type", NUMERIC_TYPES),
        sensor=sensor,
        asset=asset,
        quantity_kind=kind,
        browse_path=entry.text("browse_path", required=False) or "",
        minimum=low,
        maximum=high,
    )


def _setpoint(source: str, i: int, table: Any) -> SetpointEntry:
    entry = _Entry(source, f"setpoint[{i}]", table, _SETPOINT)
    node = entry.node()
    entry.where = f"setpoint[{i}] ({node})"
    action = entry.choice("action", WRITABLE_ACTIONS)
    asset = entry.iri("asset")
    assert asset is not None
    data_type = entry.choice("data_type", SETPOINT_TYPES)
    low, high = entry.span()
    raw = entry.table.get("value")
    if action == "setpoint_change":
        kind = entry.iri("quantity_kind")
        argument = entry.table.get("argument", "proposed_setpoint")
        if argument != "proposed_setpoint":
            entry.fail("argument", "of a setpoint change is proposed_setpoint")
        if raw is not None:
            entry.fail("value", "is not given for a setpoint change: the action's value is")
        if data_type == "Boolean":
            entry.fail("data_type", "of a setpoint change is a number type")
        if low is None or high is None:
            entry.fail("min" if low is None else "max", "is missing: a setpoint needs its range")
        return SetpointEntry(
            node, action, asset, data_type, kind, "proposed_setpoint", None,
            entry.text("browse_path", required=False) or "", low, high,
        )  # fmt: skip
    if "quantity_kind" in entry.table or "argument" in entry.table:
        entry.fail("quantity_kind", f"is only for a setpoint change, not {action}")
    value = _fixed(entry, raw, data_type, low, high)
    return SetpointEntry(
        node, action, asset, data_type, None, None, value,
        entry.text("browse_path", required=False) or "", low, high,
    )  # fmt: skip


def _fixed(
    entry: _Entry, raw: Any, data_type: str, low: float | None, high: float | None
) -> float | bool:
    if raw is None:
        entry.fail("value", "is missing: the value this action writes")
    if data_type == "Boolean":
        if not isinstance(raw, bool):
            entry.fail("value", f"is {_kind(raw)}, not a boolean (data_type Boolean)")
        return bool(raw)
    number = entry.number("value")
    assert number is not None
    if (low is not None and number < low) or (high is not None and number > high):
        entry.fail("value", f"({number:g}) is outside min..max")
    return number


def parse_mapping(text: str, *, source: str = "mapping") -> OpcUaMapping:
    """The mapping in ``text`` (TOML), checked; :class:`OpcUaMappingError` with one line naming
    ``source``, the entry and the field when anything is wrong."""
    if len(text) > MAX_BYTES:
        raise OpcUaMappingError(f"{source}: larger than {MAX_BYTES} bytes")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OpcUaMappingError(f"{source}: not TOML: {' '.join(str(exc).split())}") from None
    top = _Entry(source, "", document, _TOP)
    version = document.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        top.fail("version", f"is {version!r}: this TwinKG reads version {VERSION}")
    server = top.text("server", required=False)
    site = top.text("site", required=False, limit=64) or None
    if site is not None:
        try:
            segment(site, "site")
        except InvalidInputError:
            top.fail("site", f"is not a site tag (a topic segment: A-Z a-z 0-9 _ . -): {site!r}")
    lists: dict[str, list[Any]] = {}
    for name in ("telemetry", "setpoint"):
        items = document.get(name, [])
        if not isinstance(items, list):
            top.fail(name, f"is {_kind(items)}, not an array of tables ([[{name}]])")
        if len(items) > MAX_ENTRIES:
            top.fail(name, f"has more than {MAX_ENTRIES} entries")
        lists[name] = items
    telemetry = tuple(_telemetry(source, i, t) for i, t in enumerate(lists["telemetry"]))
    setpoints = tuple(_setpoint(source, i, t) for i, t in enumerate(lists["setpoint"]))
    if not telemetry and not setpoints:
        raise OpcUaMappingError(f"{source}: maps nothing (no [[telemetry]] or [[setpoint]])")
    _unique(source, telemetry, setpoints)
    return OpcUaMapping(telemetry, setpoints, server or None, source, site)


def _unique(
    source: str, telemetry: Sequence[TelemetryEntry], setpoints: Sequence[SetpointEntry]
) -> None:
    seen: dict[object, str] = {}
    keyed: list[tuple[str, object]] = []
    for i, t in enumerate(telemetry):
        keyed += [(f"telemetry[{i}].node", ("node", t.node))]
        keyed += [(f"telemetry[{i}]", ("sensor", t.sensor, t.asset, t.quantity_kind))]
    for i, s in enumerate(setpoints):
        keyed += [(f"setpoint[{i}].node", ("setnode", s.node))]
        keyed += [(f"setpoint[{i}]", ("action", s.action, s.asset, s.quantity_kind))]
    for where, key in keyed:
        if key in seen:
            raise OpcUaMappingError(f"{source}: {where} repeats what {seen[key]} maps")
        seen[key] = where


def load_mapping(path: Path) -> OpcUaMapping:
    """The mapping file at ``path``, checked (:func:`parse_mapping`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OpcUaMappingError(f"{path}: cannot read the mapping ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OpcUaMappingError(f"{path}: not UTF-8 text") from None
    return parse_mapping(text, source=str(path))
