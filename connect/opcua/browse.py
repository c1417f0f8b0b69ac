"""A draft mapping from an OPC UA address space: a live server's, browsed from the Objects
folder down (OPC 10000-4 §5.8 Browse), or a NodeSet2 XML file's (OPC 10000-6 Annex F).

Every variable with a numeric built-in data type is found with its EngineeringUnits
(``EUInformation``, OPC 10000-8 §5.6.3) and EURange properties. A read-only one becomes a
``[[telemetry]]`` entry, a writable one a ``[[setpoint]]`` entry; the unit is the QUDT unit of
its UNECE code (``connect.opcua.units``), the range its EURange. What a person must decide is
left blank with a comment (the sensor, an unknown unit), so the draft does not load until it
has been reviewed.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from asyncua import ua
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from twinkg.connect.opcua.mapping import NUMERIC_TYPES, SETPOINT_TYPES, node_text, with_uri
from twinkg.connect.opcua.units import common_code, qudt_unit
from twinkg.connect.opcua.writer import DraftLine, render_mapping
from twinkg.ontology.errors import OpcUaMappingError

MAX_NODES: Final = 20_000
"""The most nodes a browse visits (a guard against a huge or cyclic address space)."""
MAX_NODESET_BYTES: Final = 64 * 1024 * 1024
_UA_NS: Final = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
_TYPES_NS: Final = "{http://opcfoundation.org/UA/2008/02/Types.xsd}"
_CURRENT_WRITE: Final = 0x02
_PARENT_REFS: Final = frozenset(("HasComponent", "Organizes", "HasOrderedComponent"))


@dataclass(frozen=True, slots=True)
class VariableInfo:
    """A variable of the address space as the draft needs it."""

    node: str  # its NodeId text; a namespace URI rather than an index where it has one
    browse_path: str  # from the Objects folder, for people
    data_type: str  # the built-in type's name ("Double"), or "" when it is not a built-in one
    writable: bool
    unit: str | None  # the QUDT unit IRI, when the EngineeringUnits are in the table
    unit_text: str  # what the EngineeringUnits say, for the reviewer ("" when there are none)
    eu_range: tuple[float, float] | None


def _builtin(datatype: ua.NodeId) -> str:
    if datatype.NamespaceIndex == 0 and isinstance(datatype.Identifier, int):
        try:
            return ua.VariantType(datatype.Identifier).name
        except ValueError:
            return ""
    return ""


def _unit_text(eu: Any) -> str:
    if eu is None:
        return ""
    shown = getattr(getattr(eu, "DisplayName", None), "Text", None) or ""
    code = common_code(int(getattr(eu, "UnitId", 0) or 0))
    return f"{shown} (UNECE {code})" if code else str(shown) or "no unit id"


def _range(value: Any) -> tuple[float, float] | None:
    low, high = getattr(value, "Low", None), getattr(value, "High", None)
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    return (float(low), float(high)) if low < high else None


# -- a live server -------------------------------------------------------------------------


def _namespaced(node: ua.NodeId, namespaces: Sequence[str]) -> str:
    if node.NamespaceIndex == 0 or node.NamespaceIndex >= len(namespaces):
        return node_text(node)
    return with_uri(node, namespaces[node.NamespaceIndex])


async def _properties(var: Node) -> tuple[Any, Any]:
    eu: Any = None
    eu_range: Any = None
    for prop in await var.get_properties():
        name = (await prop.read_browse_name()).Name
        if name == "EngineeringUnits":
            eu = await prop.read_value()
        elif name == "EURange":
            eu_range = await prop.read_value()
    return eu, eu_range


async def _variable(var: Node, path: str, namespaces: Sequence[str]) -> VariableInfo:
    data_type = _builtin(await var.read_data_type())
    access = await var.read_attribute(AttributeIds.AccessLevel)
    level = access.Value.Value if access.Value is not None else 0
    eu, eu_range = await _properties(var)
    return VariableInfo(
        node=_namespaced(var.nodeid, namespaces),
        browse_path=path,
        data_type=data_type,
        writable=bool(int(level or 0) & _CURRENT_WRITE),
        unit=None if eu is None else qudt_unit(eu.NamespaceUri, eu.UnitId),
        unit_text=_unit_text(eu),
        eu_range=_range(eu_range),
    )


async def browse_server(objects: Node, namespaces: Sequence[str]) -> list[VariableInfo]:
    """Every variable under ``objects`` (the Objects folder of a connected client) in the
    server's own namespaces, depth first in browse order; ``namespaces`` is the server's
    NamespaceArray (NodeIds are written with the namespace URI)."""
    found: list[VariableInfo] = []
    seen: set[ua.NodeId] = set()
    stack: list[tuple[Node, str]] = [(objects, "Objects")]
    while stack:
        node, path = stack.pop()
        children: list[Node] = []
        for refs in (ObjectIds.Organizes, ObjectIds.HasComponent):
            children += await node.get_children(refs=refs)
        later: list[tuple[Node, str]] = []
        for child in children:
            if child.nodeid.NamespaceIndex == 0 or child.nodeid in seen:
                continue  # the server's own objects (ns 0), or a node met before
            seen.add(child.nodeid)
            if len(seen) > MAX_NODES:
                raise OpcUaMappingError(f"the address space has more than {MAX_NODES} nodes")
            node_class = await child.read_node_class()
            if node_class not in (ua.NodeClass.Object, ua.NodeClass.Variable):
                continue
            child_path = f"{path}/{(await child.read_browse_name()).Name}"
            if node_class == ua.NodeClass.Variable:
                found.append(await _variable(child, child_path, namespaces))
            later.append((child, child_path))
        stack.extend(reversed(later))
    return found


# -- a NodeSet2 file --------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _text(element: ET.Element | None, *path: str) -> str | None:
    for name in path:
        if element is None:
            return None
        element = _child(element, name)
    return None if element is None or element.text is None else element.text.strip()


class _NodeSet:
    """A parsed NodeSet2 document: its nodes by NodeId, aliases and namespace URIs."""

    def __init__(self, root: ET.Element, source: str) -> None:
        self.source = source
        self.namespaces = [u.text or "" for u in root.iter(f"{_UA_NS}Uri")]
        self.aliases = {
            a.get("Alias", ""): (a.text or "").strip() for a in root.iter(f"{_UA_NS}Alias")
        }
        self.nodes: dict[str, ET.Element] = {}
        for element in root:
            node = element.get("NodeId")
            if node is not None and _local(element.tag).startswith("UA"):
                self.nodes[node] = element
        self.parents: dict[str, str] = {}
        self.properties: dict[str, list[str]] = {}
        for node, element in self.nodes.items():
            self._references(node, element)

    def _references(self, node: str, element: ET.Element) -> None:
        parent = element.get("ParentNodeId")
        refs = _child(element, "References")
        for ref in [] if refs is None else list(refs):
            kind = self.aliases.get(ref.get("ReferenceType", ""), ref.get("ReferenceType", ""))
            kind = {"i=46": "HasProperty", "i=47": "HasComponent", "i=35": "Organizes"}.get(
                kind, kind
            )
            target = (ref.text or "").strip()
            forward = ref.get("IsForward", "true").lower() != "false"
            if kind == "HasProperty" and forward:
                self.properties.setdefault(node, []).append(target)
            elif kind == "HasProperty":
                self.properties.setdefault(target, []).append(node)
            elif kind in _PARENT_REFS and not forward:
                parent = parent or target
            elif kind in _PARENT_REFS:
                self.parents.setdefault(target, node)
        if parent:
            self.parents.setdefault(node, parent)

    def node_id(self, text: str) -> str:
        """The NodeId with the file's namespace index replaced by its URI."""
        try:
            parsed = ua.NodeId.from_string(text)
        except Exception:
            raise OpcUaMappingError(f"{self.source}: bad NodeId {text[:80]!r}") from None
        index = parsed.NamespaceIndex
        if index == 0 or index > len(self.namespaces):
            return node_text(parsed)
        return with_uri(parsed, self.namespaces[index - 1])

    def browse_path(self, node: str) -> str:
        names: list[str] = []
        seen: set[str] = set()
        current: str | None = node
        while current is not None and current in self.nodes and current not in seen:
            seen.add(current)
            names.append(self.nodes[current].get("BrowseName", "").split(":", 1)[-1])
            current = self.parents.get(current)
        return "/".join(["Objects", *reversed(names)])

    def data_type(self, element: ET.Element) -> str:
        given = element.get("DataType", "BaseDataType")
        resolved = self.aliases.get(given, given)
        try:
            return _builtin(ua.NodeId.from_string(resolved))
        except Exception:
            return given if given in SETPOINT_TYPES else ""

    def property_body(self, node: str, name: str) -> ET.Element | None:
        for prop in self.properties.get(node, []):
            element = self.nodes.get(prop)
            if element is not None and element.get("BrowseName", "").split(":")[-1] == name:
                value = _child(element, "Value")
                body = None if value is None else next(value.iter(f"{_TYPES_NS}Body"), None)
                return None if body is None or not len(body) else body[0]
        return None


def _eu_from_xml(body: ET.Element | None) -> tuple[str | None, str]:
    if body is None:
        return None, ""
    namespace = _text(body, "NamespaceUri")
    raw = _text(body, "UnitId")
    try:
        unit_id = int(raw) if raw is not None else None
    except ValueError:
        unit_id = None
    shown = _text(body, "DisplayName", "Text") or ""
    code = common_code(unit_id or 0)
    text = f"{shown} (UNECE {code})" if code else shown or "no unit id"
    return qudt_unit(namespace, unit_id), text


def _range_from_xml(body: ET.Element | None) -> tuple[float, float] | None:
    try:
        low, high = float(_text(body, "Low") or "nan"), float(_text(body, "High") or "nan")
    except ValueError:
        return None
    return (low, high) if low < high else None


def read_nodeset(path: Path) -> list[VariableInfo]:
    """The variables of a NodeSet2 XML file (in file order) with their units and ranges;
    :class:`OpcUaMappingError` when the file cannot be read or is no NodeSet2."""
    try:
        if path.stat().st_size > MAX_NODESET_BYTES:
            raise OpcUaMappingError(f"{path}: larger than {MAX_NODESET_BYTES} bytes")
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise OpcUaMappingError(f"{path}: cannot read the NodeSet ({exc.strerror})") from None
    except ET.ParseError as exc:
        raise OpcUaMappingError(f"{path}: not XML: {exc}") from None
    if root.tag != f"{_UA_NS}UANodeSet":
        raise OpcUaMappingError(f"{path}: not a NodeSet2 file (root {_local(root.tag)!r})")
    nodeset = _NodeSet(root, str(path))
    found: list[VariableInfo] = []
    for node, element in nodeset.nodes.items():
        if _local(element.tag) != "UAVariable" or node in _all_properties(nodeset):
            continue
        try:
            level = int(element.get("AccessLevel", "1"))
        except ValueError:
            level = 1
        unit, unit_text = _eu_from_xml(nodeset.property_body(node, "EngineeringUnits"))
        found.append(
            VariableInfo(
                node=nodeset.node_id(node),
                browse_path=nodeset.browse_path(node),
                data_type=nodeset.data_type(element),
                writable=bool(level & _CURRENT_WRITE),
                unit=unit,
                unit_text=unit_text,
                eu_range=_range_from_xml(nodeset.property_body(node, "EURange")),
            )
        )
    return found


def _all_properties(nodeset: _NodeSet) -> frozenset[str]:
    return frozenset(p for props in nodeset.properties.values() for p in props)


# -- the draft ---------------------------------------------------------------------------------


def _common(variable: VariableInfo) -> list[DraftLine]:
    return [
        DraftLine("node", variable.node),
        DraftLine("browse_path", variable.browse_path),
    ]


def _unit_line(variable: VariableInfo) -> DraftLine:
    if variable.unit is not None:
        return DraftLine("unit", variable.unit, f"EngineeringUnits: {variable.unit_text}")
    said = variable.unit_text or "none given"
    return DraftLine("unit", "", f"fill in a QUDT unit IRI (EngineeringUnits: {said})")


def _range_lines(variable: VariableInfo) -> list[DraftLine]:
    if variable.eu_range is None:
        return [DraftLine("min", None, "no EURange: give the physical range if known")]
    low, high = variable.eu_range
    lines = [DraftLine("min", low if math.isfinite(low) else None, "EURange")]
    lines.append(DraftLine("max", high if math.isfinite(high) else None, "EURange"))
    return [line for line in lines if line.value is not None] or [
        DraftLine("min", None, "the EURange is open on both sides")
    ]


def _telemetry_lines(variable: VariableInfo, sensor: str | None) -> list[DraftLine]:
    hint = "matched by name: check it" if sensor else "fill in: the TwinKG sensor IRI"
    return [
        *_common(variable),
        DraftLine("sensor", sensor or "", hint),
        _unit_line(variable),
        DraftLine("data_type", variable.data_type),
        *_range_lines(variable),
    ]


def _setpoint_lines(variable: VariableInfo) -> list[DraftLine]:
    if variable.data_type == "Boolean":
        return [
            *_common(variable),
            DraftLine("action", "", "fill in: controlled_stop, restart or switch_to_standby"),
            DraftLine("asset", "", "fill in: the asset IRI the action targets"),
            DraftLine("value", False, "the value the action writes: check it"),
            DraftLine("data_type", "Boolean"),
        ]
    return [
        *_common(variable),
        DraftLine("action", "setpoint_change"),
        DraftLine("asset", "", "fill in: the asset IRI whose setpoint this is"),
        DraftLine("quantity_kind", "", "fill in: the QUDT quantity kind IRI of the setpoint"),
        DraftLine("data_type", variable.data_type),
        *_range_lines(variable),
    ]


def draft_mapping(
    variables: Sequence[VariableInfo],
    *,
    origin: str,
    suggestions: Mapping[str, str] | None = None,
) -> tuple[str, int, int]:
    """The draft mapping file's text for ``variables`` read from ``origin`` (a URL or a file),
    and how many telemetry and setpoint entries it drafts. ``suggestions`` maps a variable's
    browse name to a sensor IRI (a sensor of the graph whose external id is that name)."""
    hints = suggestions or {}
    tables: list[tuple[str, Sequence[DraftLine]]] = []
    telemetry = setpoints = skipped = 0
    for variable in variables:
        if variable.writable and variable.data_type in SETPOINT_TYPES:
            tables.append(("setpoint", _setpoint_lines(variable)))
            setpoints += 1
        elif variable.data_type in NUMERIC_TYPES:
            name = variable.browse_path.rsplit("/", 1)[-1]
            tables.append(("telemetry", _telemetry_lines(variable, hints.get(name))))
            telemetry += 1
        else:
            skipped += 1
    header = [
        f"TwinKG OPC UA mapping drafted from {' '.join(origin.split())} (decision 0058).",
        "Review every entry: fill in what is blank, delete what the twin should not use.",
        "[[telemetry]]: a variable -> a sensor (or asset + quantity_kind), unit, EURange.",
        "[[setpoint]]: an allowed action -> the variable it writes, with its type and range.",
        'site = "TAG" (top level, optional): every sensor and asset mapped must be that site\'s.',
        f"{telemetry} telemetry and {setpoints} setpoint entries; {skipped} variable(s) skipped "
        "(not a number).",
    ]
    return render_mapping(header, {"version": 1, "server": origin}, tables), telemetry, setpoints
