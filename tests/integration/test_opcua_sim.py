"""A simulated plant served over OPC UA (decision 0061), for real: asyncua's server and client,
Basic256Sha256 SignAndEncrypt with certificates, the EPANET Net1 network (the cheapest plant
with units, ranges, inputs and faults) as the served simulator.

The differential test runs the same scenario in process and over OPC UA and compares every
component's outputs at every step bit for bit. The other tests share one served plant.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import Neo4jTarget
from twinkg.api.cli.main import app as cli_app
from twinkg.api.sim_opcua import (
    CLIENT_URI,
    OpcUaPlantConfig,
    credentials,
    over_opcua,
    secured_server,
)
from twinkg.api.sim_plants import build, loop_config
from twinkg.api.sim_service import shortened
from twinkg.connect.opcua.security import ensure_credentials, secure_client
from twinkg.kg.local_server import free_port
from twinkg.ontology.errors import OpcUaError, OpcUaUntrustedError, SimulatorError
from twinkg.sim.loop import run_plant, run_prefix
from twinkg.sim.opcua import address as space
from twinkg.sim.opcua.hosting import ServedPlant
from twinkg.sim.opcua.loop_thread import LoopThread
from twinkg.sim.opcua.remote import ForkableRemoteSimulator, RemoteSimulator, connect_plant
from twinkg.sim.scenario import load_scenario
from twinkg.sim.water import WaterNetworkSimulator

ROOT = Path(__file__).resolve().parents[2]
NET1 = ROOT / "scenarios" / "net1-pump-wear.toml"
TWINKG = str(Path(sys.executable).parent / "twinkg")
PARAMETERS = {"step_s": 900.0, "horizon_s": 2 * 86400.0}
STEP = 900.0
T = TypeVar("T")


def _bits(values: Mapping[str, float]) -> dict[str, bytes]:
    """Each value's IEEE 754 bytes: equal only when bit for bit equal (NaN included)."""
    return {name: struct.pack("<d", value) for name, value in values.items()}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> OpcUaPlantConfig:
    return OpcUaPlantConfig(directory=tmp_path_factory.mktemp("opcua"), timeout_s=20.0)


@pytest.fixture(scope="module")
def served(config: OpcUaPlantConfig) -> Iterator[ServedPlant]:
    """One Net1 network served securely on a free loopback port for the module."""
    server = secured_server(WaterNetworkSimulator("Net1"), config, plant="plant")
    with ServedPlant(server) as plant:
        yield plant


def _security(config: OpcUaPlantConfig) -> Any:
    server_creds, client_creds = credentials(config.directory)

    async def security(client: Client) -> None:
        await secure_client(client, client_creds, server_creds.cert_file)

    return security


@pytest.fixture
def remote(served: ServedPlant, config: OpcUaPlantConfig) -> Iterator[RemoteSimulator]:
    simulator = connect_plant(
        served.server.url, security=_security(config), timeout_s=config.timeout_s
    )
    yield simulator
    simulator.close()


class RawClient:
    """A plain asyncua client (the sim client's certificate) on its own loop thread."""

    def __init__(self, url: str, config: OpcUaPlantConfig) -> None:
        self.thread = LoopThread("test-raw-client")
        self.client = Client(url, timeout=config.timeout_s)
        self.client.session_timeout = 600_000  # what the server grants (no warning)
        self.idx = 0
        security = _security(config)

        async def open_session() -> int:
            await security(self.client)
            await self.client.connect()
            return await self.client.get_namespace_index(space.NAMESPACE)

        self.idx = self.thread.call(open_session(), config.timeout_s)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.thread.call(coro, 20.0)

    def node(self, *parts: str) -> Any:
        return self.client.get_node(space.node_id(self.idx, "plant", *parts))

    def write(self, *parts: str, value: ua.Variant) -> ua.StatusCode:
        async def write() -> ua.StatusCode:
            (code,) = await self.client.uaclient.write_attributes(
                [self.node(*parts).nodeid], [ua.DataValue(value)], AttributeIds.Value
            )
            return code

        return self.run(write())

    def close(self) -> None:
        self.run(self.client.disconnect())
        self.thread.stop()


@pytest.fixture(scope="module")
def raw(served: ServedPlant, config: OpcUaPlantConfig) -> Iterator[RawClient]:
    client = RawClient(served.server.url, config)
    yield client
    client.close()


# ----------------------------------------------------------------------------- the same run


def test_a_run_over_opcua_gives_the_in_process_outputs_bit_for_bit(
    config: OpcUaPlantConfig,
) -> None:
    scenario = shortened(load_scenario(NET1), 48.0)  # the pump wears from 30 h; leaks at random
    base = run_prefix("opcua-differential")

    def run(opcua: bool) -> tuple[list[dict[str, dict[str, bytes]]], Any]:
        plant = build(scenario, seed=3, base=base, twin=False)
        seen: list[dict[str, dict[str, bytes]]] = []
        with over_opcua(plant, config) if opcua else nullcontext(plant) as used:
            master = used.master
            if opcua:
                assert isinstance(master.components["plant"], ForkableRemoteSimulator)

            def each_step(_: float) -> None:
                seen.append({c: _bits(master.outputs[c]) for c in master.outputs})

            result, decisions = run_plant(
                used,
                loop_config(scenario, seed=3),
                policy="reactive",
                seed=3,
                port=None,
                recorder=None,
                progress=each_step,
                run_id="opcua-differential",
            )
        assert result.status == "completed", result.reason
        return seen, (result.kpis.values() if result.kpis else None, decisions)

    local, local_end = run(opcua=False)
    wire, wire_end = run(opcua=True)
    assert len(local) == len(wire) == 192
    for k, (a, b) in enumerate(zip(local, wire, strict=True)):
        assert a == b, f"step {k + 1}: the outputs differ"
    assert local_end == wire_end
    assert local[0]["plant"] != local[-1]["plant"]  # the network moved: the check can fail


def test_snapshot_and_restore_over_the_wire_repeat_the_same_steps(
    remote: RemoteSimulator,
) -> None:
    assert isinstance(remote, ForkableRemoteSimulator)
    remote.instantiate(PARAMETERS, 5)
    remote.do_step(0.0, STEP)
    fork = remote.snapshot()
    ahead = []
    for k in range(1, 4):
        remote.do_step(k * STEP, STEP)
        ahead.append(_bits(remote.get_outputs()))
    remote.restore(fork)
    again = []
    for k in range(1, 4):
        remote.do_step(k * STEP, STEP)
        again.append(_bits(remote.get_outputs()))
    assert again == ahead and ahead[0] != ahead[-1]


# ----------------------------------------------------------------------------- the address space


def test_outputs_and_inputs_carry_units_and_ranges(raw: RawClient) -> None:
    async def properties(*parts: str) -> tuple[Any, Any, int]:
        var = raw.node(*parts)
        eu = await (await var.get_child(ua.QualifiedName(space.ENGINEERING_UNITS, 0))).read_value()
        try:
            limits = await (await var.get_child(ua.QualifiedName(space.EU_RANGE, 0))).read_value()
        except UaError:
            limits = None
        access = (await var.read_attribute(AttributeIds.UserAccessLevel)).Value.Value
        return eu, limits, access

    eu, limits, access = raw.run(properties(space.OUTPUTS, "pump:9:flow"))
    assert eu.NamespaceUri == space.UNECE_NAMESPACE
    assert eu.UnitId == space.unit_id("MQS") == 0x4D5153 and eu.DisplayName.Text == "m3/s"
    assert limits is None  # the model states no range for it
    assert access & ua.AccessLevel.CurrentWrite.mask == 0  # read-only
    eu, limits, access = raw.run(properties(space.INPUTS, "pipe:12:leak_area"))
    assert (eu.UnitId, eu.DisplayName.Text) == (space.unit_id("MTK"), "m2")
    assert (limits.Low, limits.High) == (0.0, math.inf)  # min 0, no max: an open side
    assert access & ua.AccessLevel.CurrentWrite.mask
    eu, limits, _ = raw.run(properties(space.INPUTS, "station:9:power"))
    assert eu.UnitId == space.unit_id("C62") and (limits.Low, limits.High) == (0.0, 1.0)


def test_the_remote_simulator_reads_the_model_back_from_the_address_space(
    remote: RemoteSimulator,
) -> None:
    served = {v.name: v for v in WaterNetworkSimulator("Net1").info().variables}
    browsed = {v.name: v for v in remote.info().variables}
    assert browsed.keys() == served.keys()
    for name, v in served.items():
        b = browsed[name]
        assert (b.causality, b.unit, b.minimum, b.maximum) == (
            v.causality,
            v.unit,
            v.minimum,
            v.maximum,
        ), name


def test_a_subscriber_sees_a_data_change_per_step_stamped_with_simulated_time(
    remote: RemoteSimulator, raw: RawClient
) -> None:
    remote.instantiate(PARAMETERS, 2)
    seen: list[tuple[float, datetime]] = []
    enough = threading.Event()

    class Handler:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            seen.append((value, data.monitored_item.Value.SourceTimestamp))
            if len(seen) >= 4:
                enough.set()

    async def subscribe() -> Any:
        subscription = await raw.client.create_subscription(20, Handler())
        await subscription.subscribe_data_change(
            raw.node(space.OUTPUTS, "tank:2:level"), queuesize=10
        )
        return subscription

    subscription = raw.run(subscribe())
    try:
        levels = []
        for k in range(3):
            remote.do_step(k * STEP, STEP)
            levels.append(remote.get_outputs()["tank:2:level"])
        assert enough.wait(10.0), seen
    finally:
        raw.run(subscription.delete())
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [(t.replace(tzinfo=UTC) - epoch).total_seconds() for _, t in seen]
    assert stamps == [0.0, 900.0, 1800.0, 2700.0]  # the initial value, then one per step
    assert [v for v, _ in seen[1:]] == levels and len(set(levels)) == 3


# ----------------------------------------------------------------------------- refusals


def test_a_client_with_an_untrusted_certificate_is_refused(
    served: ServedPlant, config: OpcUaPlantConfig, tmp_path: Path
) -> None:
    intruder = ensure_credentials(tmp_path, "intruder", CLIENT_URI)  # same URI, other key
    server_creds, _ = credentials(config.directory)

    async def security(client: Client) -> None:
        await secure_client(client, intruder, server_creds.cert_file)

    with pytest.raises(OpcUaUntrustedError):
        connect_plant(served.server.url, security=security, timeout_s=config.timeout_s)
    with pytest.raises(OpcUaError):  # no security at all: no endpoint takes it
        connect_plant(served.server.url, timeout_s=config.timeout_s)


def test_a_wrong_typed_write_is_refused_and_changes_nothing(
    remote: RemoteSimulator, raw: RawClient
) -> None:
    reference = WaterNetworkSimulator("Net1")
    reference.instantiate(PARAMETERS, 7)
    remote.instantiate(PARAMETERS, 7)
    leak = "pipe:12:leak_area"
    refused = {
        "Int32": raw.write(space.INPUTS, leak, value=ua.Variant(1, ua.VariantType.Int32)),
        "String": raw.write(space.INPUTS, leak, value=ua.Variant("0.1", ua.VariantType.String)),
        "NaN": raw.write(space.INPUTS, leak, value=ua.Variant(math.nan, ua.VariantType.Double)),
        "output": raw.write(space.OUTPUTS, "pump:9:flow", value=ua.Variant(1.0)),
    }
    assert {k: c.value for k, c in refused.items()} == {
        "Int32": StatusCodes.BadTypeMismatch,
        "String": StatusCodes.BadTypeMismatch,
        "NaN": StatusCodes.BadOutOfRange,
        "output": StatusCodes.BadUserAccessDenied,
    }
    with pytest.raises(SimulatorError, match="not finite"):
        remote.set_inputs({leak: math.inf})
    with pytest.raises(SimulatorError, match="no input 'pipe:99:leak_area'"):
        remote.set_inputs({"pipe:99:leak_area": 0.001})
    for k in range(3):  # nothing of the refused writes reached the simulator
        reference.do_step(k * STEP, STEP)
        remote.do_step(k * STEP, STEP)
        assert _bits(remote.get_outputs()) == _bits(reference.get_outputs())


_VALUES = st.one_of(
    st.floats().map(lambda x: ua.Variant(x, ua.VariantType.Double)),
    st.floats(width=32).map(lambda x: ua.Variant(x, ua.VariantType.Float)),
    st.integers(-(2**31), 2**31 - 1).map(lambda x: ua.Variant(x, ua.VariantType.Int32)),
    st.integers(0, 2**64 - 1).map(lambda x: ua.Variant(x, ua.VariantType.UInt64)),
    st.text(max_size=20).map(lambda x: ua.Variant(x, ua.VariantType.String)),
    st.booleans().map(lambda x: ua.Variant(x, ua.VariantType.Boolean)),
    st.binary(max_size=20).map(lambda x: ua.Variant(x, ua.VariantType.ByteString)),
)


@settings(max_examples=60, deadline=None)
@given(value=_VALUES)
def test_only_a_finite_double_is_taken_by_an_input(raw: RawClient, value: ua.Variant) -> None:
    speed = (space.INPUTS, "pump:9:speed")
    before = raw.run(raw.node(*speed).read_value())
    code = raw.write(*speed, value=value)
    after = raw.run(raw.node(*speed).read_value())
    taken = value.VariantType == ua.VariantType.Double and math.isfinite(value.Value)
    assert code.is_good() == taken, (value, code)
    assert _bits({"v": after}) == _bits({"v": value.Value if taken else before})


def test_a_method_with_wrong_arguments_is_refused_with_its_reason(
    remote: RemoteSimulator, raw: RawClient
) -> None:
    remote.instantiate(PARAMETERS, 1)

    async def call(*args: ua.Variant) -> ua.StatusCode:
        request = ua.CallMethodRequest()
        request.ObjectId = raw.node().nodeid
        request.MethodId = raw.node(space.STEP).nodeid
        request.InputArguments = list(args)
        (result,) = await raw.client.uaclient.call([request])
        code: ua.StatusCode = result.StatusCode
        return code

    code = raw.run(call(ua.Variant("0", ua.VariantType.String), ua.Variant(900.0)))
    assert code.value == StatusCodes.BadInvalidArgument
    reason = raw.run(raw.node(space.LAST_ERROR).read_value())
    assert reason == "Step: argument 1: Double expected, String"
    with pytest.raises(SimulatorError, match=r"Step: t=0.0, dt=-1.0: not a step"):
        remote.do_step(0.0, -1.0)
    with pytest.raises(SimulatorError, match="not JSON"):
        remote.instantiate({"step_s": math.nan}, 1)
    remote.do_step(0.0, STEP)  # the server lives on


# ----------------------------------------------------------------------------- a killed server


def test_a_killed_server_mid_run_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    """``twinkg sim serve`` in a child process, stepped over OPC UA, then killed outright."""
    port = free_port()
    env = {**os.environ, "TWINKG_HOME": str(tmp_path)}
    scenario = ROOT / "scenarios" / "net1-pump-wear.toml"
    child = subprocess.Popen(
        [TWINKG, "sim", "serve", str(scenario), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:  # ends when the child exits
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        assert lines and lines[-1].startswith("Ctrl-C stops"), "".join(lines)
        parameters = next(li for li in lines if li.startswith("instantiate")).split()[1]
        config = OpcUaPlantConfig(directory=tmp_path / "opcua" / "sim", timeout_s=20.0)
        url = f"opc.tcp://127.0.0.1:{port}/twinkg/sim"
        remote = connect_plant(url, security=_security(config), timeout_s=20.0)
        remote.instantiate(json.loads(parameters.removeprefix("parameters=")), 1)
        for k in range(3):
            remote.do_step(k * STEP, STEP)
        child.kill()
        child.wait(timeout=20)
        started = time.monotonic()
        with pytest.raises(SimulatorError, match=rf"remote plant plant at {url}: Step") as lost:
            remote.do_step(3 * STEP, STEP)
        waited = time.monotonic() - started
        print(f"server killed: {lost.value} (after {waited:.2f} s)")
        assert waited < 10.0  # the dropped connection says so at once, not at the 20 s limit
        remote.close()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=20)


# ----------------------------------------------------------------------------- the CLI switch


@pytest.mark.neo4j
def test_cli_sim_run_over_opcua_completes_and_records_the_run(
    neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    env = {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path)}
    args = ["sim", "run", "--scenario", str(NET1), "--policy", "reactive", "--seeds", "2"]
    done = CliRunner().invoke(cli_app, [*args, "--horizon-h", "30", "--over", "opcua"], env=env)
    assert done.exit_code == 0, done.output
    assert "seed 2  completed  run https://w3id.org/twinkg/sim/" in done.stdout, done.stdout
    iri = done.stdout.split(" run ")[1].split()[0]
    shown = CliRunner().invoke(cli_app, ["sim", "show", iri], env=env)
    assert "served over OPC UA (Basic256Sha256 SignAndEncrypt)" in shown.stdout, shown.output
    assert (tmp_path / "opcua" / "sim" / "sim-plant.der").is_file()  # its certificates
    bad = CliRunner().invoke(cli_app, [*args, "--over", "carrier-pigeon"], env=env)
    assert bad.exit_code != 0 and bad.stdout == ""
    assert bad.stderr.startswith("error[invalid_input]: --over must be one of process, opcua")
