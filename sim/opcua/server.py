"""Any :class:`twinkg.sim.adapter.Simulator` served as an OPC UA server (asyncua's ``Server``).

:class:`PlantServer` builds the address space :mod:`twinkg.sim.opcua.address` describes from the
simulator's :class:`~twinkg.sim.adapter.ModelInfo`, and answers the lockstep methods by calling
the simulator on one worker thread (one call at a time, in the order they came; the server's
event loop stays free for other clients and subscriptions). Inputs written by a client are held
and handed to ``set_inputs`` at the next ``Step``, as the in-process master hands over its queued
inputs. After ``Instantiate`` and every ``Step`` the outputs are written to their variables with
the simulated instant as the source timestamp, so a subscriber sees a data change per step.

Refusals are specific and logged: a write of another type than Double is ``BadTypeMismatch``
(asyncua's own check), a non-finite value ``BadOutOfRange``, a write to an output
``BadUserAccessDenied``; a method with wrong arguments ``BadInvalidArgument``, before
``Instantiate`` ``BadInvalidState``, a simulator that raised ``BadInternalError``. The reason of a
failed method is left in the plant's ``LastError`` variable. Nothing a client sends stops the
server. :mod:`twinkg.sim.opcua.hosting` runs one for synchronous callers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.adapter import Forkable, Simulator, Variable
from twinkg.sim.loop import sim_time
from twinkg.sim.opcua import address as space

log = logging.getLogger(__name__)

T = TypeVar("T")
ServerSecurity = Callable[[Server], Awaitable[None]]
"""Secures a server after ``init()`` and before ``start()`` (``connect.opcua.security``)."""


class _RefusedError(Exception):
    """A method call refused with a status code and a reason (into ``LastError``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class PlantServer:
    """One simulator as one OPC UA Object (see :mod:`twinkg.sim.opcua.address`).

    ``url`` is the endpoint (``opc.tcp://127.0.0.1:4841/twinkg/sim``), ``plant`` the Object's
    name; ``security`` secures the server (None: no security, for tests of the address space
    only; the CLI always secures it).
    """

    def __init__(
        self,
        simulator: Simulator,
        *,
        url: str,
        plant: str = "plant",
        security: ServerSecurity | None = None,
    ) -> None:
        self.simulator = simulator
        self.url = url
        self.plant = plant
        self._security = security
        self.server = Server()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinkg-plant")
        self._lock = asyncio.Lock()
        self._idx = 0
        self._object: Node | None = None
        self._folders: dict[str, Node] = {}
        self._variables: dict[str, tuple[str, ua.NodeId]] = {}  # name → (causality, node id)
        self._inputs_by_node: dict[ua.NodeId, str] = {}
        self._pending: dict[str, float] = {}
        self._snapshots: dict[int, object] = {}
        self._next_snapshot = 1
        self._instantiated = False
        self._forkable = isinstance(simulator, Forkable)
        self.steps = 0  # steps served (for the benchmark and tests)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Build the address space and listen."""
        server = self.server
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"TwinKG simulated plant {self.plant}")
        if self._security is not None:
            await self._security(server)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self._idx = await server.register_namespace(space.NAMESPACE)
        await self._build()
        self._guard_writes()
        await server.start()
        log.info("opcua_sim: plant %s served at %s", self.plant, self.url)

    async def stop(self) -> None:
        """Stop listening and terminate the simulator (idempotent)."""
        try:
            await self.server.stop()
        finally:
            await self._run(self.simulator.terminate)
            self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ the address space

    def _id(self, *parts: str) -> ua.NodeId:
        return space.node_id(self._idx, self.plant, *parts)

    async def _build(self) -> None:
        info = self.simulator.info()
        objects = self.server.nodes.objects
        plant = await objects.add_object(self._id(), ua.QualifiedName(self.plant, self._idx))
        self._object = plant
        for name, value, vtype in (
            (space.MODEL_NAME, info.name, ua.VariantType.String),
            (space.MODEL_VERSION, info.version, ua.VariantType.String),
            (space.FORKABLE, self._forkable, ua.VariantType.Boolean),
        ):
            await plant.add_property(
                self._id(name), ua.QualifiedName(name, self._idx), ua.Variant(value, vtype)
            )
        await plant.add_variable(
            self._id(space.LAST_ERROR),
            ua.QualifiedName(space.LAST_ERROR, self._idx),
            ua.Variant("", ua.VariantType.String),
        )
        for folder in (space.OUTPUTS, space.INPUTS, space.PARAMETERS):
            self._folders[folder] = await plant.add_folder(
                self._id(folder), ua.QualifiedName(folder, self._idx)
            )
        await self._add_variables(info.variables)
        await self._add_methods(plant)

    async def _add_variables(self, variables: tuple[Variable, ...]) -> None:
        for v in variables:
            if v.name in self._variables or v.causality not in space.FOLDERS:
                continue
            folder = space.FOLDERS[v.causality]
            nodeid = self._id(folder, v.name)
            var = await self._folders[folder].add_variable(
                nodeid,
                ua.QualifiedName(v.name, self._idx),
                ua.Variant(0.0, ua.VariantType.Double),
                datatype=space.standard(ObjectIds.Double),
            )
            await var.write_attribute(
                AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(v.description))),
            )
            if v.unit:
                await var.add_property(
                    space.node_id(self._idx, self.plant, folder, v.name, space.ENGINEERING_UNITS),
                    ua.QualifiedName(space.ENGINEERING_UNITS, 0),
                    ua.Variant(space.eu_information(v.unit, v.description)),
                    datatype=space.standard(ObjectIds.EUInformation),
                )
            limits = space.eu_range(v.minimum, v.maximum)
            if limits is not None:
                await var.add_property(
                    space.node_id(self._idx, self.plant, folder, v.name, space.EU_RANGE),
                    ua.QualifiedName(space.EU_RANGE, 0),
                    ua.Variant(limits),
                    datatype=space.standard(ObjectIds.Range),
                )
            if v.causality == "input":
                await var.set_writable(True)
                self._inputs_by_node[nodeid] = v.name
                self.server.set_attribute_value_setter(nodeid, self._setter(v.name))
            else:  # no value until the model gives one
                await self.server.write_attribute_value(
                    nodeid,
                    ua.DataValue(StatusCode=space.status(StatusCodes.BadWaitingForInitialData)),
                )
            self._variables[v.name] = (v.causality, nodeid)

    async def _add_methods(self, plant: Node) -> None:
        arg = _argument
        methods: list[tuple[str, Any, list[ua.Argument], list[ua.Argument]]] = [
            (
                space.INSTANTIATE,
                self._instantiate,
                [arg("parameters", ObjectIds.String), arg("seed", ObjectIds.UInt32)],
                [],
            ),
            (
                space.STEP,
                self._step,
                [arg("t", ObjectIds.Double), arg("dt", ObjectIds.Double)],
                [],
            ),
            (space.SNAPSHOT, self._snapshot, [], [arg("id", ObjectIds.UInt32)]),
            (space.RESTORE, self._restore, [arg("id", ObjectIds.UInt32)], []),
            (space.RELEASE, self._release, [arg("id", ObjectIds.UInt32)], []),
            (space.TERMINATE, self._terminate, [], []),
        ]
        for name, fn, inputs, outputs in methods:
            await plant.add_method(
                self._id(name),
                ua.QualifiedName(name, self._idx),
                self._method(name, fn),
                inputs,
                outputs,
            )

    # ------------------------------------------------------------------ writes

    def _setter(self, name: str) -> Callable[[Any, AttributeIds, ua.DataValue], None]:
        def setter(node: Any, attr: AttributeIds, value: ua.DataValue) -> None:
            attribute = node.attributes[attr]
            attribute.value = value
            attribute.value_callback = None
            if value.Value is not None and isinstance(value.Value.Value, float):
                self._pending[name] = value.Value.Value

        return setter

    def _guard_writes(self) -> None:
        """Refuse a non-finite value to an input with ``BadOutOfRange`` (that node only; OPC UA
        writes are per node), before asyncua's service stores anything."""
        service = self.server.iserver.attribute_service
        write = service.write

        async def guarded(params: ua.WriteParameters, *args: Any, **kwargs: Any) -> Any:
            refused: dict[int, str] = {}
            for i, wv in enumerate(params.NodesToWrite):
                name = self._inputs_by_node.get(wv.NodeId)
                value = None if wv.Value is None or wv.Value.Value is None else wv.Value.Value.Value
                if name is not None and isinstance(value, float) and not math.isfinite(value):
                    refused[i] = name
            if not refused:
                return await write(params, *args, **kwargs)
            for name in refused.values():
                log.warning("opcua_sim_write_refused: input %s: a non-finite value", name)
            kept = [wv for i, wv in enumerate(params.NodesToWrite) if i not in refused]
            answers = iter(await write(ua.WriteParameters(NodesToWrite=kept), *args, **kwargs))
            return [
                space.status(StatusCodes.BadOutOfRange) if i in refused else next(answers)
                for i in range(len(params.NodesToWrite))
            ]

        service.write = guarded  # type: ignore[method-assign]

    # ------------------------------------------------------------------ methods

    def _method(
        self, name: str, fn: Callable[..., Awaitable[list[ua.Variant]]]
    ) -> Callable[..., Awaitable[Any]]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
            del parent
            try:
                async with self._lock:
                    return await fn(*args)
            except _RefusedError as exc:
                reason = f"{name}: {exc}"
                status = exc.status
            except SimulatorError as exc:
                reason, status = f"{name}: {exc}", StatusCodes.BadInternalError
            except Exception as exc:  # the simulator's own failure: said, the server lives on
                reason = f"{name}: {type(exc).__name__}: {exc}"
                status = StatusCodes.BadInternalError
            log.warning("opcua_sim_call_refused: plant %s: %s", self.plant, reason)
            await self.server.write_attribute_value(
                self._id(space.LAST_ERROR), ua.DataValue(ua.Variant(reason, ua.VariantType.String))
            )
            return space.status(status)

        return call

    async def _instantiate(self, *args: ua.Variant) -> list[ua.Variant]:
        text, seed = _args(args, (ua.VariantType.String, ua.VariantType.UInt32))
        try:
            parameters = json.loads(text)
        except ValueError as exc:
            raise _RefusedError(
                StatusCodes.BadInvalidArgument, f"parameters: not JSON: {exc}"
            ) from exc
        if not isinstance(parameters, dict):
            raise _RefusedError(StatusCodes.BadInvalidArgument, "parameters: not a JSON object")
        self._instantiated = False
        self._pending.clear()
        self._snapshots.clear()
        await self._run(lambda: self.simulator.instantiate(parameters, int(seed)))
        await self._add_variables(self.simulator.info().variables)  # some declare them now
        self._instantiated = True
        self.steps = 0
        await self._publish(0.0)
        return []

    async def _step(self, *args: ua.Variant) -> list[ua.Variant]:
        t, dt = _args(args, (ua.VariantType.Double, ua.VariantType.Double))
        if not (math.isfinite(t) and math.isfinite(dt) and dt > 0):
            raise _RefusedError(StatusCodes.BadInvalidArgument, f"t={t!r}, dt={dt!r}: not a step")
        self._live()
        pending, self._pending = self._pending, {}

        def step() -> None:
            if pending:
                self.simulator.set_inputs(pending)
            self.simulator.do_step(t, dt)

        await self._run(step)
        self.steps += 1
        await self._publish(t + dt)
        return []

    async def _snapshot(self, *args: ua.Variant) -> list[ua.Variant]:
        _args(args, ())
        simulator = self._fork()
        state = await self._run(simulator.snapshot)
        key = self._next_snapshot
        self._next_snapshot += 1
        self._snapshots[key] = state
        return [ua.Variant(key, ua.VariantType.UInt32)]

    async def _restore(self, *args: ua.Variant) -> list[ua.Variant]:
        (key,) = _args(args, (ua.VariantType.UInt32,))
        simulator = self._fork()
        if key not in self._snapshots:
            raise _RefusedError(StatusCodes.BadInvalidArgument, f"no snapshot {key}")
        state = self._snapshots[key]
        self._pending.clear()
        await self._run(lambda: simulator.restore(state))
        return []

    async def _release(self, *args: ua.Variant) -> list[ua.Variant]:
        (key,) = _args(args, (ua.VariantType.UInt32,))
        self._snapshots.pop(key, None)
        return []

    async def _terminate(self, *args: ua.Variant) -> list[ua.Variant]:
        _args(args, ())
        self._instantiated = False
        self._snapshots.clear()
        await self._run(self.simulator.terminate)
        return []

    # ------------------------------------------------------------------ internals

    def _live(self) -> None:
        if not self._instantiated:
            raise _RefusedError(StatusCodes.BadInvalidState, "the plant is not instantiated")

    def _fork(self) -> Forkable:
        self._live()
        if not isinstance(self.simulator, Forkable):
            raise _RefusedError(StatusCodes.BadNotSupported, "the plant cannot fork")
        return self.simulator

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _publish(self, t: float) -> None:
        """Every output's value, stamped with the simulated instant ``t``."""
        values = await self._run(self.simulator.get_outputs)
        missing = [n for n in values if n not in self._variables]
        if missing:  # an output the model did not declare: served from now on
            await self._add_variables(tuple(Variable(n, "output") for n in missing))
        stamp = sim_time(t)  # the outputs' source timestamp: the simulated instant
        now = datetime.now(UTC)
        for name, value in values.items():
            await self.server.write_attribute_value(
                self._variables[name][1],
                ua.DataValue(
                    ua.Variant(float(value), ua.VariantType.Double),
                    SourceTimestamp=cast("ua.DateTime", stamp),
                    ServerTimestamp=cast("ua.DateTime", now),
                ),
            )


def _argument(name: str, datatype: int) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = space.standard(datatype)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(name)
    return arg


def _args(args: tuple[ua.Variant, ...], types: tuple[ua.VariantType, ...]) -> list[Any]:
    """The arguments' values, or ``BadInvalidArgument`` naming the one of the wrong type."""
    if len(args) != len(types):
        raise _RefusedError(
            StatusCodes.BadInvalidArgument, f"{len(types)} arguments expected, {len(args)} given"
        )
    for i, (arg, vtype) in enumerate(zip(args, types, strict=True)):
        if not isinstance(arg, ua.Variant) or arg.VariantType != vtype:
            got = arg.VariantType.name if isinstance(arg, ua.Variant) else type(arg).__name__
            raise _RefusedError(
                StatusCodes.BadInvalidArgument, f"argument {i + 1}: {vtype.name} expected, {got}"
            )
    return [arg.Value for arg in args]
