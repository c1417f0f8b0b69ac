"""How a simulated plant's graph and its simulator meet: which output each sensor reads, which
input each action moves.

The seeders that build a plant graph from a simulator's own model (``graph_seed.tep``,
``graph_seed.epanet``) return a :class:`PlantBinding` built from the same element ids as the
graph's IRIs, so the loop (``sim.loop``) turns outputs into telemetry and allowed actions into
inputs without a hand-written table.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SensorBinding:
    """A graph sensor fed from a simulator output: ``value = output * scale + offset``."""

    sensor: str  # the tk:Sensor IRI
    output: str  # the simulator output it reads
    unit: str  # the QUDT unit IRI the sensor states (tk:hasUnit)
    quantity_kind: str  # the QUDT quantity kind IRI
    equipment: str  # the IRI of the equipment it monitors
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Actuator:
    """What an action on a graph asset moves in the simulator.

    ``run_input`` takes 1.0 (run) or 0.0 (stop): a controlled stop, a switch to standby (the
    partner's ``run_input`` goes to 1.0). ``setpoint_input`` takes a setpoint change's new value,
    in the unit of ``setpoint_unit``, for the quantity kind ``setpoint_quantity_kind``.
    ``repairable`` names what a work order restores (``sim.degradation`` element id), or None.
    ``start_input`` takes 1.0 to run an available asset whatever its own automatic controls say
    (a hand start: a restart of an asset that is available but idle, such as a pump its
    schedule keeps off) and 0.0 to leave it to them; ``running_output`` is the output that says
    whether it runs (its run feedback), or None.
    """

    asset: str
    kind: str  # the equipment's class local name: "Pump", "Valve", "Reactor", …
    element: str  # the simulator's own id for it (EPANET id, TEP variable)
    run_input: str | None = None
    setpoint_input: str | None = None
    setpoint_quantity_kind: str | None = None
    setpoint_unit: str | None = None
    standby_for: str | None = None  # the asset IRI it stands by for (duty/standby pairs)
    repairable: str | None = None
    start_input: str | None = None
    running_output: str | None = None


@dataclass(frozen=True, slots=True)
class PlantBinding:
    """A simulated plant's graph side: its site (the agents' scope), sensors and actuators."""

    plant: str  # "tep", "epanet:Net3", "fmu:<model>"
    site: str  # the tk:Site IRI
    sensors: tuple[SensorBinding, ...]
    actuators: tuple[Actuator, ...]
    # KPI name → the simulator output that carries it per step (e.g. "throughput" → "product_rate")
    kpi_outputs: dict[str, str] = field(default_factory=dict)

    def actuator(self, asset: str) -> Actuator | None:
        """The actuator of ``asset``, or None when the asset moves nothing in the simulator."""
        return next((a for a in self.actuators if a.asset == asset), None)
