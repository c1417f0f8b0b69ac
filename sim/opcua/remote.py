"""A :class:`twinkg.sim.adapter.Simulator` that is an OPC UA client of a served plant.

:func:`connect_plant` opens a session (secured by the injected ``security``) on a private event
loop thread, browses the plant's variables once, and returns a :class:`RemoteSimulator`, or a
:class:`ForkableRemoteSimulator` when the served plant says it can fork. ``set_inputs`` is one
Write of the inputs, ``do_step`` the ``Step`` method, ``get_outputs`` one Read of every output
variable: Doubles travel as IEEE 754 binary64, so the values are the served simulator's, bit for
bit.

Every call waits at most ``timeout_s``. A call that fails (the server refused it, the connection
dropped, no answer in time) raises :class:`twinkg.ontology.errors.SimulatorError` with the
plant's URL, the call and the reason the server left in ``LastError`` where it left one, so a
run over OPC UA ends ``failed`` with a clear reason instead of hanging. Connecting raises
:class:`~twinkg.ontology.errors.OpcUaUntrustedError` when the server refuses this client's
certificate and :class:`~twinkg.ontology.errors.OpcUaError` when it cannot be reached.

The session lives on a thread of the process that connected: a process forked from it (the
look-ahead's workers, decision 0053) cannot use it and gets a SimulatorError saying so.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from twinkg.ontology.errors import OpcUaError, OpcUaUntrustedError, SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable
from twinkg.sim.opcua import address as space
from twinkg.sim.opcua.loop_thread import LoopThread

T = TypeVar("T")
ClientSecurity = Callable[[Client], Awaitable[None]]
"""Secures a client before ``connect()`` (``connect.opcua.security.secure_client``)."""

DEFAULT_TIMEOUT_S = 30.0
SESSION_TIMEOUT_MS = 600_000  # asyncua's server grants at most this (10 min without a call)
_UNTRUSTED = frozenset(
    {
        StatusCodes.BadCertificateUntrusted,
        StatusCodes.BadCertificateUriInvalid,
        StatusCodes.BadSecurityChecksFailed,
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadSecurityPolicyRejected,
    }
)


class RemoteSnapshot:
    """A snapshot held by the served plant; released there when this handle is collected."""

    __slots__ = ("__weakref__", "key", "owner")

    def __init__(self, owner: RemoteSimulator, key: int) -> None:
        self.owner = owner
        self.key = key


class RemoteSimulator:
    """A served plant as a co-simulation component (built by :func:`connect_plant`)."""

    def __init__(
        self, thread: LoopThread, client: Client, url: str, plant: str, timeout_s: float
    ) -> None:
        self._thread = thread
        self._client = client
        self.url = url
        self.plant = plant
        self.timeout_s = timeout_s
        self._idx = 0
        self._info = ModelInfo("opcua", "")
        self._outputs: list[tuple[str, Node]] = []
        self._inputs: dict[str, Node] = {}
        self._closed = False
        self._broken = False  # a call failed on the wire (not a refusal by the server)

    # ------------------------------------------------------------------ Simulator

    def info(self) -> ModelInfo:
        """The served model's name, version and variables (as browsed)."""
        return self._info

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """``Instantiate`` with the parameters as JSON and the seed."""
        if not 0 <= seed < 2**32:
            raise SimulatorError(f"{self._who()}: a seed is a UInt32, not {seed}")
        try:
            text = space.parameters_json(parameters)
        except (TypeError, ValueError) as exc:
            raise SimulatorError(f"{self._who()}: parameters are not JSON: {exc}") from exc
        self._method(
            space.INSTANTIATE,
            ua.Variant(text, ua.VariantType.String),
            ua.Variant(seed, ua.VariantType.UInt32),
        )
        self._call("browse", self._browse())  # a model may declare variables only now

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """One Write of ``inputs``; an unknown name or a non-finite value is refused first."""
        nodes, values = [], []
        for name, value in inputs.items():
            node = self._inputs.get(name)
            if node is None:
                raise SimulatorError(f"{self._who()}: no input {name!r}")
            number = float(value)
            if not math.isfinite(number):
                raise SimulatorError(f"{self._who()}: input {name!r}: {number} is not finite")
            nodes.append(node)
            values.append(ua.DataValue(ua.Variant(number, ua.VariantType.Double)))
        if not nodes:
            return
        results = self._call(
            "write inputs",
            self._client.uaclient.write_attributes(
                [n.nodeid for n in nodes], values, AttributeIds.Value
            ),
        )
        bad = [
            f"{name}: {code.name}"
            for name, code in zip(inputs, results, strict=True)
            if not code.is_good()
        ]
        if bad:
            raise SimulatorError(f"{self._who()}: the write was refused ({'; '.join(bad)})")

    def do_step(self, t: float, dt: float) -> None:
        """``Step(t, dt)``."""
        self._method(
            space.STEP,
            ua.Variant(float(t), ua.VariantType.Double),
            ua.Variant(float(dt), ua.VariantType.Double),
        )

    def get_outputs(self) -> dict[str, float]:
        """One Read of every output variable."""
        values = self._call(
            "read outputs",
            self._client.read_attributes([n for _, n in self._outputs], AttributeIds.Value),
        )
        out: dict[str, float] = {}
        for (name, _), dv in zip(self._outputs, values, strict=True):
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                raise SimulatorError(f"{self._who()}: output {name!r}: {dv.StatusCode.name}")
            value = None if dv.Value is None else dv.Value.Value
            if not isinstance(value, float):
                raise SimulatorError(f"{self._who()}: output {name!r} is not a Double: {value!r}")
            out[name] = value
        return out

    def terminate(self) -> None:
        """``Terminate``, then close the session and its thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread.alive and not self._broken:  # a lost server has nothing to end
                self._method(space.TERMINATE)
        finally:
            self.close()

    def close(self) -> None:
        """Close the session and stop its thread, without terminating the served plant."""
        self._closed = True
        if self._thread.alive:
            _disconnect(self._thread, self._client, self.timeout_s, broken=self._broken)

    # ------------------------------------------------------------------ internals

    def _who(self) -> str:
        return f"remote plant {self.plant} at {self.url}"

    def _call(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.alive:
            coro.close()
            raise SimulatorError(
                f"{self._who()}: {what}: the session belongs to another process or was closed"
            )
        try:
            return self._thread.call(coro, self.timeout_s)
        except SimulatorError:
            raise
        except TimeoutError as exc:
            self._broken = True
            raise SimulatorError(f"{self._who()}: {what}: {exc}") from exc
        except Exception as exc:
            self._broken = True  # the session is gone or unusable: no more calls on it
            raise SimulatorError(
                f"{self._who()}: {what} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _method(self, name: str, *args: ua.Variant) -> list[Any]:
        plant = space.node_id(self._idx, self.plant)
        method = space.node_id(self._idx, self.plant, name)

        async def call() -> list[Any]:
            request = ua.CallMethodRequest()
            request.ObjectId = plant
            request.MethodId = method
            request.InputArguments = list(args)
            (result,) = await self._client.uaclient.call([request])
            if not result.StatusCode.is_good():
                reason = await self._last_error()
                raise SimulatorError(f"{self._who()}: {reason or name} ({result.StatusCode.name})")
            return [v.Value for v in result.OutputArguments or []]

        return self._call(name, call())

    async def _last_error(self) -> str:
        try:
            node = self._client.get_node(space.node_id(self._idx, self.plant, space.LAST_ERROR))
            return str(await node.read_value())
        except Exception:  # the reason is a courtesy; the status code is said regardless
            return ""

    async def _browse(self) -> None:
        """Read the model's name, version and variables (with units and ranges)."""
        self._idx = await self._client.get_namespace_index(space.NAMESPACE)
        name, version = await self._client.read_values(
            [self._node(space.MODEL_NAME), self._node(space.MODEL_VERSION)]
        )
        variables: list[Variable] = []
        outputs: list[tuple[str, Node]] = []
        inputs: dict[str, Node] = {}
        for causality, folder in space.FOLDERS.items():
            children = await self._node(folder).get_children()
            names = await self._client.read_attributes(children, AttributeIds.BrowseName)
            texts = await self._client.read_attributes(children, AttributeIds.Description)
            labels = [dv.Value.Value.Name for dv in names]  # type: ignore[union-attr]
            units = await self._client.read_values(
                [self._node(folder, n, space.ENGINEERING_UNITS) for n in labels]
            )
            ranges = await self._client.read_values(
                [self._node(folder, n, space.EU_RANGE) for n in labels]
            )
            for child, label, text, unit, limits in zip(
                children, labels, texts, units, ranges, strict=True
            ):
                description = text.Value.Value.Text if text.Value and text.Value.Value else ""
                low = space.bound(limits.Low) if isinstance(limits, ua.Range) else None
                high = space.bound(limits.High) if isinstance(limits, ua.Range) else None
                eu = unit.DisplayName.Text if isinstance(unit, ua.EUInformation) else None
                variables.append(Variable(label, causality, eu, description or "", low, high))
                if causality == "output":
                    outputs.append((label, child))
                elif causality == "input":
                    inputs[label] = child
        self._info = ModelInfo(str(name), str(version), tuple(variables))
        self._outputs, self._inputs = outputs, inputs

    def _node(self, *parts: str) -> Node:
        return self._client.get_node(space.node_id(self._idx, self.plant, *parts))

    def _release(self, key: int) -> None:
        """Forget a snapshot on the server (from a finalizer: never waits, never raises)."""
        if self._closed or not self._thread.alive:
            return
        request = ua.CallMethodRequest()
        request.ObjectId = space.node_id(self._idx, self.plant)
        request.MethodId = space.node_id(self._idx, self.plant, space.RELEASE)
        request.InputArguments = [ua.Variant(key, ua.VariantType.UInt32)]

        async def release() -> None:
            try:
                await self._client.uaclient.call([request])
            except Exception:  # the session may be closing; the server drops it with the session
                return

        self._thread.submit(release())


class ForkableRemoteSimulator(RemoteSimulator):
    """A served plant that can fork: ``Snapshot`` / ``Restore`` on the server."""

    def snapshot(self) -> RemoteSnapshot:
        """``Snapshot``: a handle on a state the server keeps until the handle goes."""
        (key,) = self._method(space.SNAPSHOT)
        handle = RemoteSnapshot(self, int(key))
        weakref.finalize(handle, self._release, int(key))
        return handle

    def restore(self, snapshot: object) -> None:
        """``Restore`` a state :meth:`snapshot` gave (any number of times)."""
        if not isinstance(snapshot, RemoteSnapshot) or snapshot.owner is not self:
            raise SimulatorError(f"{self._who()}: not a snapshot of this plant")
        self._method(space.RESTORE, ua.Variant(snapshot.key, ua.VariantType.UInt32))


def connect_plant(
    url: str,
    *,
    plant: str = "plant",
    security: ClientSecurity | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RemoteSimulator:
    """A session with the plant served at ``url``: a :class:`ForkableRemoteSimulator` when it
    can fork, else a :class:`RemoteSimulator`."""
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise SimulatorError(f"the OPC UA call timeout must be positive, got {timeout_s}")
    thread = LoopThread(f"twinkg-opcua-client-{plant}")
    client = Client(url, timeout=timeout_s)
    client.session_timeout = SESSION_TIMEOUT_MS

    async def open_session() -> bool:
        if security is not None:
            await security(client)
        await client.connect()
        idx = await client.get_namespace_index(space.NAMESPACE)
        node = client.get_node(space.node_id(idx, plant, space.FORKABLE))
        return bool(await node.read_value())

    try:
        forkable = thread.call(open_session(), timeout_s)
    except Exception as exc:
        _disconnect(thread, client, timeout_s, broken=True)
        if isinstance(exc, OpcUaError):
            raise
        code = exc.code if isinstance(exc, UaStatusCodeError) else None
        if code in _UNTRUSTED:
            raise OpcUaUntrustedError(f"{url}: the server refused this client ({exc})") from exc
        raise OpcUaError(f"{url}: cannot open a session: {type(exc).__name__}: {exc}") from exc
    cls = ForkableRemoteSimulator if forkable else RemoteSimulator
    remote = cls(thread, client, url, plant, timeout_s)
    try:
        remote._call("browse", remote._browse())
    except SimulatorError:
        remote.close()
        raise
    return remote


def _disconnect(thread: LoopThread, client: Client, timeout_s: float, *, broken: bool) -> None:
    """Close the session (only the socket when the wire already failed) and stop the thread."""
    try:
        if broken:
            thread.call(_close_socket(client), timeout_s)
        else:
            thread.call(client.disconnect(), timeout_s)
    except Exception:  # the server may be gone: the thread goes all the same
        client.disconnect_socket()
    thread.stop()


async def _close_socket(client: Client) -> None:
    client.disconnect_socket()
