"""Writing a mapping file: TOML with comments for the person who reviews it, the same bytes
for the same input (``twinkg connect opcua --write-map``; decision 0058). ``tomllib`` reads it
back (``connect.opcua.mapping``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twinkg.connect.opcua.mapping import SetpointEntry, TelemetryEntry


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (control characters escaped, lone surrogates replaced)."""
    parts = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            parts.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            parts.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            parts.append("\ufffd")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


@dataclass(frozen=True, slots=True)
class DraftLine:
    """A field of a drafted entry, with a comment for the person who reviews it."""

    key: str
    value: object
    comment: str = ""


def render_mapping(
    header: Sequence[str],
    top: Mapping[str, object],
    tables: Sequence[tuple[str, Sequence[DraftLine]]],
) -> str:
    """A mapping file: ``header`` comment lines, ``top`` fields, then ``[[name]]`` tables in
    the order given; deterministic for the same input."""
    lines = [f"# {line}" if line else "#" for line in header]
    lines += [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    for name, fields in tables:
        lines += ["", f"[[{name}]]"]
        for field in fields:
            comment = f"  # {' '.join(field.comment.split())}" if field.comment else ""
            if field.value is None:
                lines.append(f"# {field.key} ={comment}")
            else:
                lines.append(f"{field.key} = {_toml_value(field.value)}{comment}")
    return "\n".join(lines) + "\n"


def entry_lines(entry: TelemetryEntry | SetpointEntry) -> list[DraftLine]:
    """The fields of a checked entry, in the file's order (for writing a mapping back)."""
    if isinstance(entry, TelemetryEntry):
        fields: list[tuple[str, object]] = [
            ("node", entry.node),
            ("browse_path", entry.browse_path or None),
            ("sensor", entry.sensor),
            ("asset", entry.asset),
            ("quantity_kind", entry.quantity_kind),
            ("unit", entry.unit),
            ("data_type", entry.data_type),
            ("min", entry.minimum),
            ("max", entry.maximum),
        ]
    else:
        fields = [
            ("node", entry.node),
            ("browse_path", entry.browse_path or None),
            ("action", entry.action),
            ("asset", entry.asset),
            ("quantity_kind", entry.quantity_kind),
            ("value", entry.value),
            ("data_type", entry.data_type),
            ("min", entry.minimum),
            ("max", entry.maximum),
        ]
    return [DraftLine(key, value) for key, value in fields if value is not None]
