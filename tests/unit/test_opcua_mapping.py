"""The OPC UA mapping file and the unit table, without a server (decision 0058): a mapping
round-trips through its writer, every refusal is one line naming the file, entry and field, and
hostile TOML values give a refusal or a valid mapping, never another exception."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinkg.agents.state import ActionKind
from twinkg.connect.opcua.mapping import WRITABLE_ACTIONS, OpcUaMapping, parse_mapping
from twinkg.connect.opcua.units import UNECE_NAMESPACE, common_code, qudt_unit, table, unit_id
from twinkg.connect.opcua.writer import entry_lines, render_mapping, toml_string
from twinkg.ontology.errors import OpcUaMappingError
from twinkg.ontology.units import import_units

UNIT = "http://qudt.org/vocab/unit/"
SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
PUMP = "https://w3id.org/twinkg/plant/skab-testbed/pump"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"

GOOD = f"""
version = 1
server = "opc.tcp://plant:4840/"

[[telemetry]]
node = "nsu=urn:plant;s=Pump.Flow"
browse_path = "Objects/Pump/Flow"
sensor = "{SENSOR}"
unit = "{UNIT}L-PER-MIN"
data_type = "Double"
min = 0.0
max = 250.0

[[setpoint]]
node = "ns=2;i=17"
action = "setpoint_change"
asset = "{PUMP}"
quantity_kind = "{FLOW}"
data_type = "Float"
min = 0.0
max = 200.0

[[setpoint]]
node = "ns=2;s=Pump.Run"
action = "controlled_stop"
asset = "{PUMP}"
value = false
data_type = "Boolean"
"""


def _render(mapping: OpcUaMapping) -> str:
    tables = [("telemetry", entry_lines(e)) for e in mapping.telemetry]
    tables += [("setpoint", entry_lines(e)) for e in mapping.setpoints]
    return render_mapping(["a mapping"], {"version": 1}, tables)


def test_a_mapping_round_trips_through_its_writer() -> None:
    mapping = parse_mapping(GOOD, source="plant.toml")
    assert mapping.telemetry[0].node == "nsu=urn:plant;s=Pump.Flow"
    assert mapping.setpoint_for("setpoint_change", PUMP, FLOW) == mapping.setpoints[0]
    assert mapping.setpoint_for("controlled_stop", PUMP, None) == mapping.setpoints[1]
    assert mapping.setpoint_for("restart", PUMP, None) is None
    again = parse_mapping(_render(mapping), source="plant.toml")
    assert (again.telemetry, again.setpoints) == (mapping.telemetry, mapping.setpoints)
    assert mapping.site is None  # bound to no site unless it names one (decision 0085)
    sited = parse_mapping(GOOD.replace("version = 1", 'version = 1\nsite = "SKT"'))
    assert sited.site == "SKT" and sited.telemetry == mapping.telemetry


BAD = [  # (what is changed, into what), the refusal that names the entry and field
    ('unit = "{UNIT}L-PER-MIN"', 'unit = "http://example.org/litre"',
     r"telemetry\[0\] \(nsu=urn:plant;s=Pump.Flow\)\.unit is not a QUDT unit IRI"),
    ("min = 0.0\nmax = 250.0", "min = 9.0\nmax = 1.0",
     r"telemetry\[0\] .*\.min \(9\) is not below max"),
    ('data_type = "Double"', 'data_type = "String"', r"\.data_type is 'String', not one of"),
    ('node = "ns=2;i=17"', 'node = "ns=2;x=17"', r"setpoint\[0\]\.node is not an OPC UA NodeId"),
    ("value = false", "value = 1", r"setpoint\[1\] .*\.value is an integer, not a boolean"),
    ('action = "controlled_stop"', 'action = "self_destruct"', r"\.action is 'self_destruct'"),
    ("version = 1", "version = 2", r"version is 2: this TwinKG reads version 1"),
    ('server = "opc.tcp', 'colour = "red"\nserver = "opc.tcp', r"colour is not a field"),
    ('sensor = "', 'sensor = "not an iri', r"\.sensor is not an http\(s\) IRI"),
    ('server = "opc.tcp', 'site = "a/b"\nserver = "opc.tcp', r"site is not a site tag .*'a/b'"),
    ('server = "opc.tcp', 'site = 7\nserver = "opc.tcp', r"site is an integer, not a string"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "reason"), BAD)
def test_a_bad_mapping_is_refused_naming_file_entry_and_field(
    old: str, new: str, reason: str
) -> None:
    old = old.replace("{UNIT}", UNIT)
    assert old in GOOD
    with pytest.raises(OpcUaMappingError, match=r"^plant\.toml: " + "(.*)?" + reason) as caught:
        parse_mapping(GOOD.replace(old, new, 1), source="plant.toml")
    assert "\n" not in str(caught.value)


def test_two_entries_for_one_variable_or_sensor_are_refused() -> None:
    first = GOOD.index("[[telemetry]]")
    block = GOOD[first : GOOD.index("[[setpoint]]")]
    with pytest.raises(
        OpcUaMappingError, match=r"telemetry\[1\]\.node repeats what telemetry\[0\]"
    ):
        parse_mapping(GOOD + block, source="plant.toml")


def test_the_writable_actions_are_action_kinds() -> None:
    assert set(WRITABLE_ACTIONS) <= {kind.value for kind in ActionKind}


def test_the_unit_table_reads_unece_codes() -> None:
    assert unit_id("CEL") == 4408652 and common_code(4408652) == "CEL"
    assert unit_id("L2") == 19506 and common_code(19506) == "L2"
    assert qudt_unit(UNECE_NAMESPACE, unit_id("CEL")) == UNIT + "DEG_C"
    assert qudt_unit(UNECE_NAMESPACE, unit_id("XYZ")) is None
    assert qudt_unit("http://example.org/units", unit_id("CEL")) is None
    known = {str(u) for u in import_units()}
    outside = sorted(iri for iri in table().values() if iri not in known)
    assert outside == [UNIT + "HZ"]  # a QUDT unit TwinKG's closed lists do not hold (yet)
    for code in ("CEL", "KEL", "BAR", "PAL", "KPA", "MQH", "L2", "P1", "RPM", "AMP", "VLT",
                 "KWT", "C16", "HTZ", "MTR"):  # fmt: skip
        assert code in table(), code


# -- hostile values ------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["ns=2;s=A", "i=5", "nsu=urn:x;s=B", "", "Double", "Boolean",
                     "setpoint_change", "restart", SENSOR, PUMP, UNIT + "A", "ns=99999999;i=1"]),
)  # fmt: skip
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3))
_TELEMETRY_KEYS = ["node", "browse_path", "sensor", "asset", "quantity_kind", "unit", "data_type",
                   "min", "max", "extra"]  # fmt: skip
_SETPOINT_KEYS = ["node", "action", "asset", "quantity_kind", "argument", "value", "data_type",
                  "min", "max"]  # fmt: skip


def _toml(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return toml_string(value)
    parts = [_toml(v) for v in value]
    return "[" + ", ".join(p for p in parts if p is not None) + "]"


@st.composite
def _documents(draw: st.DrawFn) -> str:
    lines = [f"version = {_toml(draw(st.sampled_from([1, 1, 2, True, 'one'])))}"]
    for name, keys in (("telemetry", _TELEMETRY_KEYS), ("setpoint", _SETPOINT_KEYS)):
        for _ in range(draw(st.integers(0, 2))):
            lines.append(f"[[{name}]]")
            for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys))):
                text = _toml(draw(_VALUES))
                if text is not None:
                    lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_hostile_values_are_refused_or_make_a_valid_mapping(text: str) -> None:
    tomllib.loads(text)  # the generator writes TOML: only the mapping's rules are under test
    try:
        mapping = parse_mapping(text, source="hostile.toml")
    except OpcUaMappingError as exc:
        message = str(exc)
        assert message.startswith("hostile.toml: ") and "\n" not in message
        return
    assert mapping.telemetry or mapping.setpoints
    again = parse_mapping(_render(mapping), source="again.toml")
    assert (again.telemetry, again.setpoints) == (mapping.telemetry, mapping.setpoints)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_refused_or_read(text: str) -> None:
    try:
        parse_mapping(text, source="any.toml")
    except OpcUaMappingError as exc:
        assert str(exc).startswith("any.toml: ") and "\n" not in str(exc)
