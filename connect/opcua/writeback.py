"""Writing allowed actions back to the plant over OPC UA (OPC 10000-4 §5.10.4 Write;
decision 0058).

Only what the guard allowed and the recorder wrote is ever written: the candidates are the
decisions on the provenance chain with outcome ``applied`` and an effect, whose action kind and
asset (and quantity kind) a ``[[setpoint]]`` entry maps, and that have no write-back record yet
(``kg.actuation``). For each, the record is claimed first, then the value is written, read back
and the record completed: ``written`` with the value read back, or ``failed`` with the OPC UA
status code (``BadUserAccessDenied``, ``BadOutOfRange``, ``BadTypeMismatch``, …). A value
outside the entry's range or not of its data type is not written at all and recorded as failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from twinkg.connect.opcua.ingest import resolve_node
from twinkg.connect.opcua.mapping import OpcUaMapping, SetpointEntry
from twinkg.kg import actuation
from twinkg.kg.store import GraphStore

log = logging.getLogger(__name__)

_INTEGERS = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write-back did."""

    decision: str
    node: str
    value: float | bool
    ok: bool
    status: str  # the OPC UA status code's name, or why nothing was written
    read_back: str | None = None


def _typed(entry: SetpointEntry, value: float | bool) -> tuple[Any, str | None]:
    """``value`` as the entry's data type, or why it does not fit (then nothing is written)."""
    if entry.data_type == "Boolean":
        fits = isinstance(value, bool)
        return value, None if fits else f"BadTypeMismatch: {value!r} is not a boolean"
    number = float(value)
    low, high = entry.minimum, entry.maximum
    if (
        not math.isfinite(number)
        or (low is not None and number < low)
        or (high is not None and number > high)
    ):
        return None, f"BadOutOfRange: {number!r} is outside the mapped range {low}..{high}"
    if entry.data_type in _INTEGERS:
        least, most = _INTEGERS[entry.data_type]
        if not number.is_integer() or not least <= number <= most:
            return None, f"BadTypeMismatch: {number:g} is no {entry.data_type}"
        return int(number), None
    return number, None


def _same(written: Any, read: Any, data_type: str) -> bool:
    if data_type == "Boolean" or isinstance(written, int):
        return bool(read == written)
    if not isinstance(read, (int, float)) or isinstance(read, bool):
        return False
    tolerance = 1e-6 if data_type == "Float" else 1e-12
    return math.isclose(float(read), float(written), rel_tol=tolerance, abs_tol=tolerance)


async def _write(client: Client, entry: SetpointEntry, value: Any) -> tuple[bool, str, str | None]:
    node = await resolve_node(client, entry.node)
    variant = ua.Variant(value, getattr(ua.VariantType, entry.data_type))
    try:
        await node.write_value(ua.DataValue(variant))
        read = await node.read_value()
    except UaStatusCodeError as exc:
        return False, ua.StatusCode(exc.code).name, None
    if not _same(value, read, entry.data_type):
        return False, "BadUnexpectedError: the value read back differs", repr(read)
    return True, "Good", repr(read)


async def write_back(
    client: Client,
    store: GraphStore,
    mapping: OpcUaMapping,
    *,
    max_age_s: float = 600.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
) -> list[WriteResult]:
    """Write every due action that ``mapping`` maps through the connected ``client``, oldest
    first, and record each result; the results. Only actions applied in the last
    ``max_age_s`` seconds are written (an older one would reach the plant late). A connection
    that breaks mid-write is recorded as failed (its outcome unknown) and raised, so the caller
    reconnects."""
    targets = sorted({(entry.action, entry.asset) for entry in mapping.setpoints})
    if not targets:
        return []
    since = clock() - timedelta(seconds=max_age_s)
    results: list[WriteResult] = []
    due_writes = await asyncio.to_thread(
        actuation.writes_due, store, targets, since=since, limit=limit
    )
    for due in due_writes:
        entry = mapping.setpoint_for(due.kind, due.asset, due.quantity_kind)
        if entry is None:
            continue  # no variable carries this action: nothing to write, nothing claimed
        value: float | bool | None = due.value if entry.value is None else entry.value
        if value is None:
            log.warning("opcua_writeback: %s has no value to write", due.decision)
            continue
        numeric = float(value)
        claimed = await asyncio.to_thread(
            actuation.claim_write, store, due, node=entry.node, value=numeric, at=clock()
        )
        if not claimed:
            continue  # another worker holds it
        typed, problem = _typed(entry, value)
        try:
            if problem is None:
                ok, status, read = await _write(client, entry, typed)
            else:
                ok, status, read = False, problem, None
        except (OSError, TimeoutError, UaError) as exc:
            await asyncio.to_thread(
                actuation.finish_write,
                store,
                due.decision,
                ok=False,
                reason=f"BadCommunicationError: outcome unknown ({type(exc).__name__})",
                result=None,
                at=clock(),
            )
            raise
        await asyncio.to_thread(
            actuation.finish_write,
            store,
            due.decision,
            ok=ok,
            reason=status,
            result=read,
            at=clock(),
        )
        level = logging.INFO if ok else logging.WARNING
        log.log(level, "opcua_writeback %s: %s = %r (%s)", due.decision, entry.node, value, status)
        results.append(WriteResult(due.decision, entry.node, value, ok, status, read))
    return results
