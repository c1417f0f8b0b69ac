"""A run's simulated plant served over OPC UA, secured, and the loop stepping it as a client
(decision 0061).

:func:`over_opcua` takes a built :class:`twinkg.sim.loop.RunPlant`, serves its plant component
(``sim.opcua.server``) on a loopback port from a thread of this process, connects a
``sim.opcua.remote`` client to it, and hands back the same plant with that client in the
component's place: everything else (degradation, sensor faults, the loop, the twin) is as in
process. Both ends speak Basic256Sha256 SignAndEncrypt (``connect.opcua.security``); the server
trusts only the sim client's certificate (and the ones given with ``--trust``), the client only
the server's. Credentials are made once under ``HOME/opcua/sim``.

:func:`serve_scenario` serves a scenario's plant for an external client until stopped
(``twinkg sim serve``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinkg.connect.opcua.security import (
    OpcUaCredentials,
    ensure_credentials,
    local_hostnames,
    secure_client,
    secure_server,
)
from twinkg.kg.local_server import free_port
from twinkg.ontology.errors import InvalidInputError
from twinkg.sim.loop import RunPlant, run_prefix
from twinkg.sim.master import CoSimulation
from twinkg.sim.opcua.address import parameters_json
from twinkg.sim.opcua.hosting import ServedPlant
from twinkg.sim.opcua.remote import connect_plant
from twinkg.sim.opcua.server import PlantServer
from twinkg.sim.scenario import Scenario

log = logging.getLogger(__name__)

OVER_PROCESS, OVER_OPCUA = "process", "opcua"
OVER = (OVER_PROCESS, OVER_OPCUA)
"""How a run reaches its plant: in this process (the default) or over OPC UA."""

SERVER_NAME, CLIENT_NAME = "sim-plant", "sim-client"
SERVER_URI, CLIENT_URI = "urn:twinkg:sim:plant", "urn:twinkg:sim:client"
PATH = "/twinkg/sim"
VIA = "served over OPC UA (Basic256Sha256 SignAndEncrypt)"


@dataclass(frozen=True, slots=True)
class OpcUaPlantConfig:
    """Where a plant is served and whom it trusts."""

    directory: Path  # the credentials (HOME/opcua/sim)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    trusted: tuple[Path, ...] = ()  # client certificates trusted besides the sim client's
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ServedScenario:
    """What an external client needs to step a served scenario's plant."""

    url: str
    plant: str
    server_cert: Path
    client_cert: Path
    client_key: Path
    client_uri: str
    parameters: str  # the Instantiate method's JSON
    step_s: float
    steps: int


def check_over(over: str) -> str:
    """``over`` when it is one of :data:`OVER` (``InvalidInputError`` naming them otherwise)."""
    if over not in OVER:
        raise InvalidInputError(f"--over must be one of {', '.join(OVER)}, not {over!r}")
    return over


def credentials(directory: Path) -> tuple[OpcUaCredentials, OpcUaCredentials]:
    """The served plant's and the sim client's credentials (made on first use)."""
    hosts = local_hostnames()
    return (
        ensure_credentials(directory, SERVER_NAME, SERVER_URI, hosts),
        ensure_credentials(directory, CLIENT_NAME, CLIENT_URI, hosts),
    )


def _url(config: OpcUaPlantConfig) -> str:
    port = config.port or free_port(config.host)
    return f"opc.tcp://{config.host}:{port}{PATH}"


def secured_server(simulator: Any, config: OpcUaPlantConfig, *, plant: str) -> PlantServer:
    """``simulator`` behind a secured :class:`PlantServer` (not started)."""
    server_creds, client_creds = credentials(config.directory)
    trusted = (client_creds.cert_file, *config.trusted)

    async def security(server: Any) -> None:
        await secure_server(server, server_creds, trusted)

    return PlantServer(simulator, url=_url(config), plant=plant, security=security)


@contextmanager
def over_opcua(plant: RunPlant, config: OpcUaPlantConfig) -> Iterator[RunPlant]:
    """``plant`` with its plant component served over OPC UA and reached through a client."""
    name = plant.plant
    local = plant.master
    served = ServedPlant(secured_server(local.components[name], config, plant=name)).start(
        config.timeout_s
    )
    server_creds, client_creds = credentials(config.directory)

    async def security(client: Any) -> None:
        await secure_client(client, client_creds, server_creds.cert_file)

    try:
        remote = connect_plant(
            served.server.url, plant=name, security=security, timeout_s=config.timeout_s
        )
    except BaseException:
        served.stop()
        raise
    log.info("opcua_sim: run plant %s over OPC UA at %s", name, served.server.url)
    try:
        yield dataclasses.replace(
            plant,
            master=local.with_component(name, remote),
            read_inputs=_read_local(plant, local),
            # the run's record says how the loop reached its plant
            simulator_version=f"{plant.simulator_version}; {VIA}",
        )
    finally:
        remote.close()
        served.stop()


def _read_local(
    plant: RunPlant, local: CoSimulation
) -> Callable[[CoSimulation], Mapping[str, float]] | None:
    """The plant's initial setpoints, read from the served simulator object itself: the
    Simulator interface (and so the address space) has no way to read an input back."""
    read = plant.read_inputs
    if read is None:
        return None
    return lambda _master: read(local)


def serve_scenario(
    scenario: Scenario,
    config: OpcUaPlantConfig,
    *,
    seed: int,
    ready: Callable[[ServedScenario], None],
    stop: threading.Event,
) -> int:
    """Serve ``scenario``'s plant (built for ``seed``) until ``stop`` is set; ``ready`` is told
    how to reach it once it listens. The steps a client made."""
    from twinkg.api.sim_plants import build  # noqa: PLC0415 - loads the simulators

    plant = build(scenario, seed=seed, base=run_prefix("served"), twin=False)
    simulator = plant.master.components[plant.plant]
    server = secured_server(simulator, config, plant=plant.plant)
    server_creds, client_creds = credentials(config.directory)
    with ServedPlant(server).start(config.timeout_s):
        ready(
            ServedScenario(
                url=server.url,
                plant=plant.plant,
                server_cert=server_creds.cert_file,
                client_cert=client_creds.cert_file,
                client_key=client_creds.key_file,
                client_uri=CLIENT_URI,
                parameters=parameters_json(plant.parameters.get(plant.plant, {})),
                step_s=scenario.time.step_s,
                steps=round(scenario.time.horizon_s / scenario.time.step_s),
            )
        )
        try:
            while not stop.wait(1.0):  # a signal another thread took runs its handler here
                pass
        except KeyboardInterrupt:  # Ctrl-C: stop serving, said by the caller
            log.info("opcua_sim: serving stopped by Ctrl-C")
    return server.steps
