"""OPC UA connectivity against a real asyncua server and the real Neo4j (issue 15, decision 0058).

The server is the pump loop of ``opcua_world``: Basic256Sha256 SignAndEncrypt only, trusting
the twin's certificate. The tests draft a mapping from the live address space and from a
NodeSet2 file (QUDT units from the EngineeringUnits, EURange as the range), ingest data changes
through the telemetry contract (what does not conform quarantined with its reason), survive a
server restart, refuse an untrusted client and the None policy, and write back only what the
guard allowed and the recorder wrote, recording each write's result without breaking the chain.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError
from neo4j import Driver
from typer.testing import CliRunner, Result

from tests.conftest import REPO, Neo4jTarget, forget_decisions, seed_skab
from tests.integration.opcua_world import PlantServer
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.runner import Agents
from twinkg.agents.state import ActionKind, ApprovalInput, Outcome, ProposedAction
from twinkg.api.cli.main import app
from twinkg.api.opcua_connect import ConnectReport, connect, twin_sink
from twinkg.api.reclassification import Reclassify
from twinkg.api.settings import Settings
from twinkg.api.site_scope import mapping_on_site
from twinkg.api.twin import Twin
from twinkg.connect.opcua.browse import browse_server, draft_mapping, read_nodeset
from twinkg.connect.opcua.ingest import IngestOptions, OpcUaIngest, bind
from twinkg.connect.opcua.mapping import OpcUaMapping, parse_mapping
from twinkg.connect.opcua.security import OpcUaCredentials, ensure_credentials, secure_client
from twinkg.connect.opcua.writeback import write_back
from twinkg.kg import actuation, chain_verify
from twinkg.kg.lineage import lineage
from twinkg.kg.local_server import free_port
from twinkg.ontology.errors import OpcUaError, OpcUaMappingError, OpcUaUntrustedError
from twinkg.ontology.namespaces import WRITEBACK_BASE
from twinkg.reasoner.prov_check import check_prov

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP, MOTOR = PLANT + "pump", PLANT + "motor"
IVANOVA = PLANT + "person-ivanova"
SUPERVISOR = "https://w3id.org/twinkg/ontology#SupervisorRole"
QK = "http://qudt.org/vocab/quantitykind/"
UNIT = "http://qudt.org/vocab/unit/"
NODESET = REPO / "tests" / "opcua" / "pump_loop.NodeSet2.xml"
TWIN_URI = "urn:twinkg:test:twin"


@dataclass(frozen=True)
class Pki:
    server: OpcUaCredentials
    twin: OpcUaCredentials
    stranger: OpcUaCredentials


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("opcua-pki")
    return Pki(
        ensure_credentials(folder, "server", "urn:twinkg:test:plant"),
        ensure_credentials(folder, "twin", TWIN_URI),
        ensure_credentials(folder, "stranger", "urn:twinkg:test:stranger"),
    )


@pytest.fixture(scope="module")
def plant(pki: Pki) -> Iterator[PlantServer]:
    server = PlantServer(pki.server, [pki.twin.cert_file], free_port())
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("opcua-home")


@pytest.fixture(scope="module")
def twin(driver: Driver, home: Path) -> Iterator[Twin]:
    store = seed_skab(driver)
    twin = Twin(Settings(home=home), store)
    yield twin
    twin.close()
    forget_decisions(driver)
    driver.execute_query(  # and the write-back records of this module's decisions
        "MATCH (n:Resource) WHERE n.uri STARTS WITH $base DETACH DELETE n", base=WRITEBACK_BASE
    )


def _secure(pki: Pki, creds: OpcUaCredentials | None = None, pinned: Path | None = None) -> Any:
    async def secure(client: Client) -> None:
        await secure_client(client, creds or pki.twin, pinned or pki.server.cert_file)

    return secure


def _mapping(plant: PlantServer, extra: str = "") -> OpcUaMapping:
    return parse_mapping(_mapping_text(plant, extra), source="plant.toml")


def _mapping_text(plant: PlantServer, extra: str = "") -> str:
    return f"""
version = 1
[[telemetry]]
node = "{plant.node_id("Flow")}"
sensor = "{PLANT}sensor-flow"
unit = "{UNIT}L-PER-MIN"
data_type = "Double"
min = 0.0
max = 250.0

[[telemetry]]
node = "{plant.node_id("Pressure")}"
sensor = "{PLANT}sensor-pressure"
unit = "{UNIT}BAR"
data_type = "Double"

[[telemetry]]  # named by asset and quantity kind: the motor's one current sensor
node = "{plant.node_id("Current")}"
asset = "{MOTOR}"
quantity_kind = "{QK}ElectricCurrent"
unit = "{UNIT}A"
data_type = "Double"

[[telemetry]]  # a String variable mapped as a number: its values are quarantined
node = "{plant.node_id("Tag")}"
sensor = "{PLANT}sensor-voltage"
unit = "{UNIT}V"
data_type = "Double"
{extra}"""


def _until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def _until_async(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- drafting a mapping ------------------------------------------------------------------------


def test_browsing_the_server_drafts_a_mapping_with_qudt_units_and_ranges(
    plant: PlantServer, pki: Pki
) -> None:
    async def browse() -> Any:
        client = Client(plant.url, timeout=10)
        await secure_client(client, pki.twin, pki.server.cert_file)
        async with client:
            return await browse_server(client.nodes.objects, await client.get_namespace_array())

    text, telemetry, setpoints = draft_mapping(asyncio.run(browse()), origin=plant.url)
    assert (telemetry, setpoints) == (5, 1)  # Tag (a String) is skipped; one writable variable
    draft = tomllib.loads(text)
    by_node = {e["node"]: e for e in draft["telemetry"]}
    flow = by_node[plant.node_id("Flow")]
    assert flow["unit"] == UNIT + "L-PER-MIN"
    assert (flow["min"], flow["max"], flow["data_type"]) == (0.0, 250.0, "Double")
    assert flow["browse_path"] == "Objects/Loop/Pump/Flow"
    assert by_node[plant.node_id("Current")]["unit"] == UNIT + "A"
    vibration = by_node[plant.node_id("Vibration")]
    assert vibration["unit"] == "" and "min" not in vibration  # inch/s: no QUDT unit, no EURange
    assert 'unit = ""  # fill in a QUDT unit IRI (EngineeringUnits: IU (UNECE IU))' in text
    [setpoint] = draft["setpoint"]
    assert setpoint["node"] == plant.node_id("FlowSetpoint")
    assert (setpoint["action"], setpoint["min"], setpoint["max"]) == ("setpoint_change", 0, 200)
    # a draft is not a mapping until a person has filled in the sensors
    with pytest.raises(OpcUaMappingError, match=r"^plant\.toml: telemetry\[0\] \(nsu=.*Flow\)"):
        parse_mapping(text, source="plant.toml")


def _cli(*args: str, env: dict[str, str]) -> Result:
    """The real ``twinkg`` command, in this process (a subprocess costs seconds to start)."""
    return CliRunner().invoke(app, list(args), env=env)


def _last_line(text: str) -> str:
    """The refusal (the server in this process may log to the same stream before it)."""
    return text.strip().splitlines()[-1]


def _env(target: Neo4jTarget, **more: str) -> dict[str, str]:
    return {k: v for k, v in target.env().items() if k.startswith("TWINKG_")} | more


def test_a_nodeset_file_drafts_the_same_mapping_through_the_cli(
    neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    variables = {v.browse_path.rsplit("/", 1)[-1]: v for v in read_nodeset(NODESET)}
    assert variables["Flow"].unit == UNIT + "L-PER-MIN"
    assert variables["Flow"].eu_range == (0.0, 250.0)
    assert variables["Pressure"].eu_range == (-2.0, 5.0)
    assert variables["Vibration"].unit is None  # UNECE IU (inch per second) is not in the table
    assert variables["FlowSetpoint"].writable and not variables["Flow"].writable
    assert variables["Flow"].node == "nsu=urn:twinkg:test:pump-loop;s=Loop.Pump.Flow"
    target = tmp_path / "plant.toml"
    env = _env(neo4j_target, TWINKG_HOME=str(tmp_path))
    assert _cli("connect", "opcua", "--help", env=env).exit_code == 0
    done = _cli("connect", "opcua", "--nodeset", str(NODESET), "--write-map", str(target), env=env)
    assert done.exit_code == 0, done.output
    assert "drafted 3 telemetry and 2 setpoint entries" in done.stdout
    draft = tomllib.loads(target.read_text())
    assert [e["browse_path"] for e in draft["telemetry"]] == [
        "Objects/Loop/Pump/Flow",
        "Objects/Loop/Pump/Pressure",
        "Objects/Loop/Pump/Vibration",
    ]
    assert draft["telemetry"][1]["unit"] == UNIT + "BAR"
    # every bad way in: one line with a stable code and a non-zero exit, nothing started
    bad = [
        (["--nodeset", str(NODESET)], "invalid_input", 5),
        (["http://x:1/", "--map", str(target)], "invalid_input", 5),
        (["opc.tcp://127.0.0.1:1/", "--map", str(target)], "opcua_mapping_invalid", 5),
        (["--nodeset", str(target), "--write-map", str(tmp_path / "x")],
         "opcua_mapping_invalid", 5),
    ]  # fmt: skip
    for args, code, status in bad:
        done = _cli("connect", "opcua", *args, env=env)
        assert done.exit_code == status, (args, done.output)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), (args, done.stderr)


# -- telemetry ---------------------------------------------------------------------------------


def test_mapped_sensors_must_be_in_the_graph_in_their_unit(twin: Twin, plant: PlantServer) -> None:
    bindings = bind(twin.store, _mapping(plant))
    assert [b.sensor for b in bindings][2] == PLANT + "sensor-current"  # motor + current
    for extra, reason in [
        (f'sensor = "{PLANT}no-such-sensor"', "is not in the graph"),
        (f'asset = "{PUMP}"\nquantity_kind = "{QK}ElectricCurrent"', "no sensor of"),
        (f'sensor = "{PLANT}sensor-thermocouple"', "is not the sensor's unit"),
    ]:
        text = f'\n[[telemetry]]\nnode = "ns=2;s=X"\nunit = "{UNIT}A"\ndata_type = "Double"\n'
        with pytest.raises(OpcUaMappingError, match=reason):
            bind(twin.store, _mapping(plant, text + extra))


def test_a_mapping_bound_to_a_site_feeds_and_writes_only_that_sites_things(
    twin: Twin, plant: PlantServer
) -> None:
    """Decision 0085: a mapping naming a site is refused when it binds, naming the file, the
    entry and where the thing is, if a sensor it feeds or an asset it writes is elsewhere."""
    text = _mapping_text(plant)

    def on(site: str, extra: str = "") -> OpcUaMapping:
        top = f'version = 1\nsite = "{site}"'  # the top level, before the first table
        return parse_mapping(text.replace("version = 1", top, 1) + extra, source="p.toml")

    sited = on("SKT")
    assert sited.site == "SKT"
    mapping_on_site(twin.store, sited, bind(twin.store, sited))  # every thing is SKT's
    elsewhere = on("OTHER")
    refusal = r"^p\.toml: telemetry\[0\] .* is on site 'SKT', not on the mapping's site 'OTHER'$"
    with pytest.raises(OpcUaMappingError, match=refusal):
        mapping_on_site(twin.store, elsewhere, bind(twin.store, elsewhere))
    stop = (
        '\n[[setpoint]]\nnode = "ns=2;s=Stop"\naction = "controlled_stop"\n'
        'asset = "https://example.org/nowhere/pump"\nvalue = false\ndata_type = "Boolean"\n'
    )
    writes = on("SKT", stop)
    with pytest.raises(OpcUaMappingError, match=r"setpoint\[0\] .*/pump is not in the graph"):
        mapping_on_site(twin.store, writes, bind(twin.store, writes))
    mapping_on_site(twin.store, _mapping(plant), bind(twin.store, _mapping(plant)))  # no site


def test_data_changes_are_ingested_through_the_contract(
    twin: Twin, plant: PlantServer, pki: Pki
) -> None:
    mapping = _mapping(plant)
    options = IngestOptions(batch_points=6, batch_ms=300.0, publishing_interval_ms=50.0)
    ingest = OpcUaIngest(
        plant.url,
        bind(twin.store, mapping),
        secure=_secure(pki),
        sink=twin_sink(twin, plant.url, reclassify=Reclassify.OFF),
        options=options,
    )
    bad = ua.StatusCode(ua.UInt32(StatusCodes.BadSensorFailure))
    uncertain = ua.StatusCode(ua.UInt32(StatusCodes.UncertainLastUsableValue))

    async def scenario() -> None:
        runner = asyncio.create_task(ingest.run(max_points=10, duration_s=60))
        await _until_async(lambda: ingest.stats.notifications >= 4, "the first values")
        for name, value in [("Flow", 121.0), ("Flow", 400.0), ("Flow", 122.0), ("Pressure", 1.6)]:
            await asyncio.to_thread(plant.write, name, value)
        await asyncio.to_thread(plant.write_status, "Pressure", 1.7, uncertain)
        await asyncio.to_thread(plant.write_status, "Current", 4.5, bad)  # Bad: no usable value
        await runner

    asyncio.run(scenario())
    stats = ingest.stats
    assert stats.points == 10 and stats.not_good == 2 and stats.refused_batches == 0
    log = twin.log
    why = [
        (r["sensor"][-12:], r["time"], r["value"], r["reason"])
        for r in log.quarantined().to_pylist()
    ]
    assert (stats.accepted, stats.quarantined) == (7, 3), why
    flow = log.window(sensors=[PLANT + "sensor-flow"]).to_pylist()
    assert [row["value"] for row in flow] == [120.0, 121.0, 122.0]
    pressure = log.window(sensors=[PLANT + "sensor-pressure"]).to_pylist()
    assert [(row["value"], row["quality"]) for row in pressure] == [
        (1.5, "good"), (1.6, "good"), (1.7, "uncertain"),
    ]  # fmt: skip
    current = log.window(sensors=[PLANT + "sensor-current"]).to_pylist()
    assert [row["value"] for row in current] == [4.0]
    quarantined = {row["sensor"]: row for row in log.quarantined().to_pylist()}
    assert quarantined[PLANT + "sensor-flow"]["value"] == 400.0
    assert "outside the sensor's physical range" in quarantined[PLANT + "sensor-flow"]["reason"]
    assert (
        "value is a JSON string 'P-101', not a number"
        in quarantined[PLANT + "sensor-voltage"]["reason"]
    )
    assert "exactly one numeric" in quarantined[PLANT + "sensor-current"]["reason"]
    # the source timestamp is the point's time
    assert all(row["time"].tzinfo is not None for row in flow)


def test_a_lost_connection_is_made_again_and_subscribed_again(
    twin: Twin, plant: PlantServer, pki: Pki
) -> None:
    mapping = _mapping(plant)
    bindings = [b for b in bind(twin.store, mapping) if b.sensor == PLANT + "sensor-flow"]
    options = IngestOptions(
        batch_points=100, batch_ms=100.0, publishing_interval_ms=50.0, reconnect_min_s=0.25
    )
    ingest = OpcUaIngest(
        plant.url,
        bindings,
        secure=_secure(pki),
        sink=twin_sink(twin, plant.url, reclassify=Reclassify.OFF),
        options=options,
    )
    stop = asyncio.Event()

    async def scenario() -> None:
        runner = asyncio.create_task(ingest.run(stop=stop, duration_s=90))
        await _until_async(lambda: ingest.stats.connects == 1, "the first connection")
        await asyncio.to_thread(plant.write, "Flow", 130.0)
        await _until_async(lambda: ingest.stats.accepted >= 1, "130 stored")
        await asyncio.to_thread(plant.stop)
        await _until_async(lambda: ingest.stats.lost == 1, "the loss noticed")
        await asyncio.to_thread(plant.start)
        await _until_async(lambda: ingest.stats.connects == 2, "a new connection")
        await asyncio.to_thread(plant.write, "Flow", 131.0)
        await _until_async(
            lambda: (
                any(p.get("value") == 131.0 for p in ingest.pending)
                or ingest.stats.accepted >= 2 + ingest.stats.quarantined
            ),
            "131 taken",
        )
        stop.set()
        await runner

    asyncio.run(scenario())
    assert ingest.stats.lost >= 1 and ingest.stats.connects == 2
    values = [row["value"] for row in twin.log.window(sensors=[PLANT + "sensor-flow"]).to_pylist()]
    assert values.index(130.0) < values.index(131.0)


def test_the_cli_ingests_by_the_mapping(  # noqa: PLR0917 - fixtures
    twin: Twin, plant: PlantServer, pki: Pki, neo4j_target: Neo4jTarget, home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "plant.toml"
    target.write_text(
        f'[[telemetry]]\nnode = "{plant.node_id("Pressure")}"\nsensor = "{PLANT}sensor-pressure"\n'
        f'unit = "{UNIT}BAR"\ndata_type = "Double"\n'
    )
    env = _env(
        neo4j_target,
        TWINKG_HOME=str(home),
        TWINKG_OPCUA_CERT_FILE=str(pki.twin.cert_file),
        TWINKG_OPCUA_KEY_FILE=str(pki.twin.key_file),
        TWINKG_OPCUA_APPLICATION_URI=TWIN_URI,
        TWINKG_OPCUA_SERVER_CERT_FILE=str(pki.server.cert_file),
        TWINKG_OPCUA_TIMEOUT_S="1",
    )
    plant.write("Pressure", 2.5)  # newer than anything stored: the subscription's first value
    args = ("connect", "opcua", plant.url, "--map", str(target), "--max-points", "1")
    done = _cli(*args, env=env)
    assert done.exit_code == 0, done.output
    assert "1 points in 1 batches: 1 accepted, 0 quarantined" in done.stdout
    draft = tmp_path / "draft.toml"
    done = _cli("connect", "opcua", plant.url, "--write-map", str(draft), env=env)
    assert done.exit_code == 0, done.output
    assert "drafted 5 telemetry and 1 setpoint entries" in done.stdout
    assert tomllib.loads(draft.read_text())["server"] == plant.url
    impostor = env | {"TWINKG_OPCUA_SERVER_CERT_FILE": str(pki.stranger.cert_file)}
    done = _cli(*args, env=impostor)
    assert done.exit_code == 18, done.output
    assert _last_line(done.stderr).startswith("error[opcua_unreachable]: "), done.stderr
    stranger = env | {
        "TWINKG_OPCUA_CERT_FILE": str(pki.stranger.cert_file),
        "TWINKG_OPCUA_KEY_FILE": str(pki.stranger.key_file),
        "TWINKG_OPCUA_APPLICATION_URI": "urn:twinkg:test:stranger",
    }
    done = _cli(*args, env=stranger)
    assert done.exit_code == 18, done.output
    assert _last_line(done.stderr).startswith("error[opcua_untrusted]: "), done.stderr
    assert "BadCertificateUntrusted" in _last_line(done.stderr)


# -- security -----------------------------------------------------------------------------------


def test_only_signed_and_encrypted_sessions_from_trusted_clients(
    twin: Twin, plant: PlantServer, pki: Pki
) -> None:
    async def endpoints() -> list[Any]:
        return list(await Client(plant.url, timeout=5).connect_and_get_server_endpoints())

    offered = {
        (e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in asyncio.run(endpoints())
    }
    assert offered == {("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)}

    async def plain() -> None:
        async with Client(plant.url, timeout=5):
            pass

    with pytest.raises((UaError, OSError, TimeoutError)):
        asyncio.run(plain())  # the None policy: no endpoint, no session

    def ingest_as(secure: Any) -> OpcUaIngest:
        bindings = bind(twin.store, _mapping(plant))
        sink = twin_sink(twin, plant.url, reclassify=Reclassify.OFF)
        options = IngestOptions(timeout_s=1.0)
        return OpcUaIngest(plant.url, bindings, secure=secure, sink=sink, options=options)

    stranger = ingest_as(_secure(pki, pki.stranger))
    with pytest.raises(OpcUaUntrustedError, match="BadCertificateUntrusted"):
        asyncio.run(stranger.run(duration_s=5))
    impostor = ingest_as(_secure(pki, pinned=pki.stranger.cert_file))  # not the server's cert
    with pytest.raises(OpcUaError):
        asyncio.run(impostor.run(duration_s=5))
    assert stranger.stats.points == impostor.stats.points == 0


# -- write-back -------------------------------------------------------------------------------


def _decide(agents: Agents, as_of: datetime, kind: str, current: float, proposed: float) -> str:
    """The decision on a setpoint change of the pump, approved by a supervisor if it waits."""
    action = ProposedAction(
        kind=ActionKind.SETPOINT_CHANGE, target=PUMP, confidence=0.95,
        proposed_at=as_of.isoformat(), quantity_kind=QK + kind,
        current_setpoint=current, proposed_setpoint=proposed, ramp_s=60.0,
    )  # fmt: skip
    step = agents.run(scope=PUMP, as_of=as_of, action=action).steps[-1]
    if step.outcome is not Outcome.AWAITING_APPROVAL:
        return step.decision
    decision = step.decision
    request = agents.request_for(decision)
    now = datetime.now(UTC)
    answer = ApprovalInput(
        outcome="approved", approver=IVANOVA, role=SUPERVISOR,
        action_hash=request["action_hash"], graph_version=request["graph_version"],
        expires_at=(now + timedelta(minutes=30)).isoformat(), given_at=now.isoformat(),
    )  # fmt: skip
    return agents.answer(decision, answer).steps[-1].decision


def test_only_allowed_recorded_actions_are_written_back_and_recorded(
    twin: Twin, plant: PlantServer, pki: Pki, home: Path
) -> None:
    mapping = _mapping(
        plant,
        f"""
[[setpoint]]
node = "{plant.node_id("FlowSetpoint")}"
action = "setpoint_change"
asset = "{PUMP}"
quantity_kind = "{QK}VolumeFlowRate"
data_type = "Double"
min = 0.0
max = 200.0

[[setpoint]]  # a variable the server does not let us write
node = "{plant.node_id("PressureSetpoint")}"
action = "setpoint_change"
asset = "{PUMP}"
quantity_kind = "{QK}Pressure"
data_type = "Double"
min = 0.0
max = 4.0
""",
    )
    as_of = datetime.now(UTC)
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        agents = Agents(store=twin.store, log=twin.log, checkpointer=saver)

        flow = _decide(agents, as_of, "VolumeFlowRate", 80.0, 72.0)
        refused = _decide(agents, as_of, "VolumeFlowRate", 80.0, 500.0)  # outside the envelope
        pressure = _decide(agents, as_of, "Pressure", 1.0, 1.2)
    outcomes = {d: twin.decision(d).outcome for d in (flow, refused, pressure)}
    assert outcomes == {flow: "applied", refused: "refused", pressure: "applied"}
    targets = [("setpoint_change", PUMP)]
    due = {d.decision for d in actuation.writes_due(twin.store, targets, since=as_of)}
    assert due == {flow, pressure}  # the refused action is no candidate
    later = datetime.now(UTC) + timedelta(seconds=1)  # applied before: too old to be written
    assert actuation.writes_due(twin.store, targets, since=later) == []

    async def write() -> list[Any]:
        client = Client(plant.url, timeout=10)
        await secure_client(client, pki.twin, pki.server.cert_file)
        async with client:
            return await write_back(client, twin.store, mapping)

    def prov_findings() -> set[tuple[str, str]]:
        outcome = check_prov(lineage(twin.store, flow))
        return {(str(v.focus_node), str(v.source_shape)) for v in outcome.violations}

    before = prov_findings()

    async def serve() -> ConnectReport:  # what `twinkg connect opcua --write-back` runs
        stop = asyncio.Event()

        def done() -> bool:
            records = [actuation.write_record(twin.store, d) for d in (flow, pressure)]
            return all(r is not None and r.status != "writing" for r in records)

        task = asyncio.create_task(
            connect(plant.url, twin, mapping, [], secure=_secure(pki), write=True, stop=stop)
        )
        await _until_async(done, "both actions written back")
        stop.set()
        return await task

    first = asyncio.run(serve()).writes
    assert asyncio.run(write()) == []  # each action is written once
    results = {r.decision: r for r in first}
    assert set(results) == {flow, pressure}
    assert results[flow].ok and results[flow].status == "Good"
    assert (results[pressure].ok, results[pressure].status) == (False, "BadUserAccessDenied")
    assert plant.read("FlowSetpoint") == 72.0 and plant.read("PressureSetpoint") == 1.0
    record = actuation.write_record(twin.store, flow)
    assert record is not None
    assert (record.status, record.reason, record.value, record.result) == (
        "written", "Good", 72.0, "72.0",
    )  # fmt: skip
    failed = actuation.write_record(twin.store, pressure)
    assert failed is not None and (failed.status, failed.reason) == (
        "failed",
        "BadUserAccessDenied",
    )
    assert actuation.write_record(twin.store, refused) is None
    # the hash chain and the decision's PROV-O lineage are as they were
    report = chain_verify.verify(twin.store)
    assert report.ok, report
    # (an envelope alarm the decision used is judged as before: the write adds nothing to it)
    assert prov_findings() == before
