"""The address space of a served plant: node ids, method names and engineering units.

One Object per plant under ``Objects`` (string node ids in the namespace :data:`NAMESPACE`)::

    <plant>                       Object
      ModelName, ModelVersion     Properties (String)
      Forkable                    Property (Boolean): Snapshot/Restore/Release work
      LastError                   Variable (String): why the last method call failed
      Outputs/<name>              Variable (Double, read-only), with EngineeringUnits, EURange
      Inputs/<name>               Variable (Double, read-write), with EngineeringUnits, EURange
      Parameters/<name>           Variable (Double, read-only, no value): the model's parameters
      Instantiate(String parameters JSON, UInt32 seed)
      Step(Double t, Double dt)
      Snapshot() -> UInt32 id;  Restore(UInt32 id);  Release(UInt32 id)
      Terminate()

EngineeringUnits is an ``EUInformation`` in the UNECE Recommendation 20 namespace (OPC 10000-8
§5.6.3: ``UnitId`` packs the common code's characters, -1 where the unit has none); EURange a
``Range`` with an open side as ±infinity (OPC 10000-8 §5.6.2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from asyncua import ua

NAMESPACE = "urn:twinkg:sim"
"""The namespace URI of every served plant's nodes."""

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
"""EUInformation.NamespaceUri of UNECE Recommendation 20 codes (OPC 10000-8 §5.6.3)."""

OUTPUTS, INPUTS, PARAMETERS = "Outputs", "Inputs", "Parameters"
FOLDERS = {"output": OUTPUTS, "input": INPUTS, "parameter": PARAMETERS}
INSTANTIATE, STEP, SNAPSHOT, RESTORE, RELEASE, TERMINATE = (
    "Instantiate",
    "Step",
    "Snapshot",
    "Restore",
    "Release",
    "Terminate",
)
MODEL_NAME, MODEL_VERSION, FORKABLE, LAST_ERROR = (
    "ModelName",
    "ModelVersion",
    "Forkable",
    "LastError",
)
ENGINEERING_UNITS, EU_RANGE = "EngineeringUnits", "EURange"

# the units the project's simulators state (UCUM-like text) → UNECE Rec. 20 common code
UNECE: dict[str, str] = {
    "1": "C62",
    "%": "P1",
    "mol %": "P1",
    "m": "MTR",
    "mm": "MMT",
    "m2": "MTK",
    "m3": "MTQ",
    "m3/s": "MQS",
    "m3/h": "MQH",
    "L/s": "G51",
    "m/s": "MTS",
    "mm/s": "C16",
    "s": "SEC",
    "h": "HUR",
    "kg/h": "E93",
    "kg/s": "KGS",
    "Pa": "PAL",
    "kPa": "KPA",
    "kPa gauge": "KPA",
    "bar": "BAR",
    "degC": "CEL",
    "K": "KEL",
    "W": "WTT",
    "kW": "KWT",
    "MW": "MAW",
    "kWh": "KWH",
    "Hz": "HTZ",
    "A": "AMP",
    "V": "VLT",
}


def node(plant: str, *parts: str) -> str:
    """The string identifier of a node of ``plant`` (``plant/Outputs/level``)."""
    return "/".join((plant, *parts))


def node_id(idx: int, plant: str, *parts: str) -> ua.NodeId:
    """The NodeId of a node of ``plant`` in namespace ``idx``."""
    return ua.NodeId(ua.String(node(plant, *parts)), ua.Int16(idx))


def standard(identifier: int) -> ua.NodeId:
    """A NodeId of namespace 0 (a standard data type)."""
    return ua.NodeId(ua.Int32(identifier))


def status(code: int) -> ua.StatusCode:
    """A StatusCode from its value (``StatusCodes.BadOutOfRange``)."""
    return ua.StatusCode(ua.UInt32(code))


def unit_id(code: str) -> int:
    """The ``UnitId`` of a UNECE common code (OPC 10000-8 §5.6.3: its bytes, big-endian)."""
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def eu_information(unit: str, description: str = "") -> ua.EUInformation:
    """``EUInformation`` for a simulator's unit text (``UnitId`` -1 where it has no UNECE code;
    the display name is the unit text itself, so nothing is lost either way)."""
    code = UNECE.get(unit)
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unit_id(code) if code else -1,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(description or unit),
    )


def eu_range(minimum: float | None, maximum: float | None) -> ua.Range | None:
    """``Range`` from a variable's bounds (an open side as ±infinity); None when it has none."""
    if minimum is None and maximum is None:
        return None
    low = -math.inf if minimum is None else float(minimum)
    high = math.inf if maximum is None else float(maximum)
    return ua.Range(Low=low, High=high)


def bound(value: float) -> float | None:
    """A range side read back: an infinite side is no bound."""
    return None if math.isinf(value) else value


def parameters_json(parameters: Mapping[str, Any]) -> str:
    """A component's parameters as the ``Instantiate`` method takes them (compact JSON)."""
    return json.dumps(dict(parameters), allow_nan=False, sort_keys=True, separators=(",", ":"))
