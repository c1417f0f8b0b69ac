"""A real asyncua OPC UA server for the OPC UA tests: a small pump loop, served with
Basic256Sha256 SignAndEncrypt only and trusting the certificates it is given, on its own event
loop in a thread (the tests and the twin stay synchronous)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds

from twinkg.connect.opcua.security import OpcUaCredentials, secure_server
from twinkg.connect.opcua.units import UNECE_NAMESPACE, unit_id

NAMESPACE = "urn:twinkg:test:pump-loop"
T = TypeVar("T")

# name: (initial value, data type, UNECE code or None, EURange or None, writable)
VARIABLES: dict[str, tuple[Any, ua.VariantType, str | None, tuple[float, float] | None, bool]] = {
    "Flow": (120.0, ua.VariantType.Double, "L2", (0.0, 250.0), False),
    "Pressure": (1.5, ua.VariantType.Double, "BAR", (-2.0, 5.0), False),
    "Current": (4.0, ua.VariantType.Double, "AMP", (0.0, 10.0), False),
    "Vibration": (0.2, ua.VariantType.Double, "IU", None, False),  # inch per second: no QUDT
    "Tag": ("P-101", ua.VariantType.String, None, None, False),
    "FlowSetpoint": (80.0, ua.VariantType.Double, "L2", (0.0, 200.0), True),
    "PressureSetpoint": (1.0, ua.VariantType.Double, "BAR", (0.0, 4.0), False),  # locked
}


def _now() -> ua.DateTime:
    moment = datetime.now(UTC)
    return ua.DateTime(*moment.timetuple()[:6], moment.microsecond, tzinfo=UTC)


class PlantServer:
    """The pump loop's server; :meth:`call` runs a coroutine on its loop."""

    def __init__(self, creds: OpcUaCredentials, trusted: list[Path], port: int) -> None:
        self.creds, self.trusted, self.port = creds, trusted, port
        self.url = f"opc.tcp://127.0.0.1:{port}/twinkg-test/"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.nodes: dict[str, Node] = {}
        self.values: dict[str, Any] = {}  # what was last written, for a restart

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> None:
        """Build the address space (values as last set, or the initial ones) and serve it."""
        self.call(self._start())

    def stop(self) -> None:
        """Stop serving (the connections drop); the values are kept for the next start."""
        self.call(self._stop())

    def close(self) -> None:
        """Stop the server and its loop."""
        if self.server is not None:
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def write(self, name: str, value: Any, variant: ua.VariantType | None = None) -> None:
        """Set variable ``name`` as the plant would, stamped with the time now."""
        kind = variant or VARIABLES[name][1]
        now = _now()
        data = ua.DataValue(ua.Variant(value, kind), SourceTimestamp=now, ServerTimestamp=now)
        self.call(self.nodes[name].write_value(data))
        self.values[name] = value

    def write_status(self, name: str, value: Any, status: ua.StatusCode) -> None:
        """Set variable ``name`` with a StatusCode other than Good (a failing sensor)."""
        now = _now()
        variant = ua.Variant(value, VARIABLES[name][1])
        data = ua.DataValue(variant, StatusCode=status, SourceTimestamp=now, ServerTimestamp=now)
        self.call(self.nodes[name].write_value(data))
        self.values[name] = value

    def read(self, name: str) -> Any:
        """The variable's current value."""
        return self.call(self.nodes[name].read_value())

    def node_id(self, name: str) -> str:
        """The variable's NodeId as a mapping names it (namespace URI, string identifier)."""
        return f"nsu={NAMESPACE};s=Loop.Pump.{name}"

    async def _start(self) -> None:
        values = self.values
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("TwinKG test pump loop")
        await secure_server(server, self.creds, self.trusted)
        idx = await server.register_namespace(NAMESPACE)
        loop_obj = await server.nodes.objects.add_object(f"ns={idx};s=Loop", f"{idx}:Loop")
        pump = await loop_obj.add_object(f"ns={idx};s=Loop.Pump", f"{idx}:Pump")
        nodes: dict[str, Node] = {}
        for name, (initial, kind, code, span, writable) in VARIABLES.items():
            node_id = f"ns={idx};s=Loop.Pump.{name}"
            value = values.get(name, initial)
            var = await pump.add_variable(node_id, f"{idx}:{name}", ua.Variant(value, kind))
            if code is not None:
                eu = ua.EUInformation(
                    NamespaceUri=UNECE_NAMESPACE,
                    UnitId=unit_id(code),
                    DisplayName=ua.LocalizedText(code),
                    Description=ua.LocalizedText(code),
                )
                await var.add_property(
                    f"{node_id}.EngineeringUnits",
                    ua.QualifiedName("EngineeringUnits", 0),
                    ua.Variant(eu, ua.VariantType.ExtensionObject),
                    datatype=ua.NodeId(ua.Int32(ObjectIds.EUInformation)),
                )
            if span is not None:
                await var.add_property(
                    f"{node_id}.EURange",
                    ua.QualifiedName("EURange", 0),
                    ua.Variant(ua.Range(Low=span[0], High=span[1]), ua.VariantType.ExtensionObject),
                    datatype=ua.NodeId(ua.Int32(ObjectIds.Range)),
                )
            if writable:
                await var.set_writable()
            nodes[name] = var
        await server.start()
        self.server, self.nodes = server, nodes

    async def _stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
