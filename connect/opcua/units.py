"""OPC UA engineering units to QUDT units (OPC 10000-8 §5.6.3 EUInformation; UNECE
Recommendation 20 common codes).

An OPC UA analog variable names its unit with an ``EUInformation`` whose ``NamespaceUri`` is the
UNECE namespace and whose ``UnitId`` packs the three-character UNECE common code into an Int32
(each character's ASCII code, high byte first). TwinKG's telemetry carries QUDT unit IRIs; this
module keeps the table for the units plants commonly use. A unit not in the table maps to
nothing: the draft mapping leaves it blank for a person to fill in.
"""

from __future__ import annotations

from typing import Final

from twinkg.ontology.namespaces import PREFIXES

UNECE_NAMESPACE: Final = "http://www.opcfoundation.org/UA/units/un/cefact"
"""``EUInformation.NamespaceUri`` of units given by their UNECE common code."""

QUDT_UNIT: Final = PREFIXES["unit"]
"""The QUDT unit vocabulary: a mapping file's units live here."""

# UNECE Rec. 20 common code -> QUDT unit local name.
_TABLE: Final[dict[str, str]] = {
    "CEL": "DEG_C",  # degree Celsius
    "KEL": "K",  # kelvin
    "FAH": "DEG_F",  # degree Fahrenheit
    "BAR": "BAR",  # bar
    "MBR": "MilliBAR",  # millibar
    "PAL": "PA",  # pascal
    "KPA": "KiloPA",  # kilopascal
    "MPA": "MegaPA",  # megapascal
    "PS": "PSI",  # pound-force per square inch
    "MQH": "M3-PER-HR",  # cubic metre per hour
    "MQS": "M3-PER-SEC",  # cubic metre per second
    "L2": "L-PER-MIN",  # litre per minute
    "G51": "L-PER-SEC",  # litre per second
    "E93": "KiloGM-PER-HR",  # kilogram per hour
    "KGS": "KiloGM-PER-SEC",  # kilogram per second
    "P1": "PERCENT",  # percent
    "RPM": "REV-PER-MIN",  # revolutions per minute
    "2A": "RAD-PER-SEC",  # radian per second
    "AMP": "A",  # ampere
    "4K": "MilliA",  # milliampere
    "VLT": "V",  # volt
    "2Z": "MilliV",  # millivolt
    "KVT": "KiloV",  # kilovolt
    "WTT": "W",  # watt
    "KWT": "KiloW",  # kilowatt
    "MAW": "MegaW",  # megawatt
    "C16": "MilliM-PER-SEC",  # millimetre per second (vibration velocity)
    "MTS": "M-PER-SEC",  # metre per second
    "MSK": "M-PER-SEC2",  # metre per second squared
    "K40": "G",  # standard acceleration of free fall
    "HTZ": "HZ",  # hertz
    "MTR": "M",  # metre
    "CMT": "CentiM",  # centimetre
    "MMT": "MilliM",  # millimetre
    "SEC": "SEC",  # second
    "C26": "MilliSEC",  # millisecond
    "MIN": "MIN",  # minute
    "HUR": "HR",  # hour
    "C62": "UNITLESS",  # one
}


def unit_id(common_code: str) -> int:
    """The ``EUInformation.UnitId`` of a UNECE common code (``"CEL"`` → 4408652)."""
    value = 0
    for char in common_code.upper():
        value = (value << 8) | ord(char)
    return value


def common_code(unit_id_value: int) -> str:
    """The UNECE common code an ``EUInformation.UnitId`` packs; empty when it packs none."""
    chars: list[str] = []
    value = unit_id_value
    while value > 0:
        chars.append(chr(value & 0xFF))
        value >>= 8
    code = "".join(reversed(chars))
    return code if code and code.isascii() and code.isalnum() else ""


_BY_ID: Final[dict[int, str]] = {unit_id(code): name for code, name in _TABLE.items()}


def qudt_unit(namespace_uri: str | None, unit_id_value: int | None) -> str | None:
    """The QUDT unit IRI of an EUInformation (its namespace and UnitId); None when the unit is
    not a UNECE one or not in the table (a person fills it in)."""
    if unit_id_value is None or (namespace_uri and namespace_uri != UNECE_NAMESPACE):
        return None
    name = _BY_ID.get(int(unit_id_value))
    return None if name is None else QUDT_UNIT + name


def table() -> dict[str, str]:
    """The table, UNECE common code → QUDT unit IRI (for the docs and the tests)."""
    return {code: QUDT_UNIT + name for code, name in _TABLE.items()}
