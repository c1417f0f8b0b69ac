"""The TEP slave (sim/tep.py): tep-studio's plant and Ricker's controller, short horizons."""

from __future__ import annotations

import math
from importlib.metadata import version

import pytest
from tep_studio import list_disturbances, list_manipulated_variables, list_measurements

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.adapter import Forkable, Simulator
from twinkg.sim.tep import CONTROL_INTERVAL_S, SETPOINTS, TepSimulator

STEP = 36.0  # s, 20 control intervals


def plant(seed: int = 1, **parameters: object) -> TepSimulator:
    sim = TepSimulator()
    sim.instantiate({"mode": "mode1", **parameters}, seed=seed)
    return sim


def run(sim: TepSimulator, hours: float) -> dict[str, float]:
    t = sim.time_s
    for _ in range(round(hours * 3600 / STEP)):
        sim.do_step(t, STEP)
        t += STEP
    return sim.get_outputs()


def test_is_a_forkable_simulator() -> None:
    sim = TepSimulator()
    assert isinstance(sim, Simulator)
    assert isinstance(sim, Forkable)


def test_outputs_and_inputs_are_named_as_documented() -> None:
    sim = plant()
    info = sim.info()
    assert info.name == "tep-studio"
    assert info.version == version("tep-studio")
    outputs = {v.name for v in info.variables if v.causality == "output"}
    inputs = {v.name for v in info.variables if v.causality == "input"}
    expected = {f"xmeas:{name}" for name, _, _ in list_measurements()}
    expected |= {f"xmv:{name}" for name, _, _ in list_manipulated_variables()}
    expected |= {
        "plant:running",
        "plant:throughput",
        "plant:cost_per_h",
        "plant:shutdown_code",
        "plant:down_h",
    }
    assert outputs == expected
    assert set(sim.get_outputs()) == outputs
    assert {f"sp:{name}" for name in SETPOINTS} <= inputs
    assert {f"idv:{n}" for n in range(1, len(list_disturbances()) + 1)} <= inputs
    assert {"plant:run", "plant:restart"} <= inputs
    units = {v.name: v.unit for v in info.variables}
    assert units["xmeas:reactor_pressure"] == "kPa gauge"
    assert units["plant:throughput"] == "m3/h"
    out = sim.get_outputs()
    assert out["plant:running"] == 1.0
    assert out["plant:shutdown_code"] == 0.0
    assert 2600.0 < out["xmeas:reactor_pressure"] < 2800.0


def test_idv6_cuts_the_a_feed() -> None:
    base, lost = plant(), plant()
    lost.set_inputs({"idv:6": 1.0})
    normal = run(base, 0.5)["xmeas:feed_A_flow"]
    starved = run(lost, 0.5)["xmeas:feed_A_flow"]
    assert normal > 0.15
    assert starved < 0.05


def test_a_setpoint_input_moves_the_controller() -> None:
    base, lower = plant(), plant()
    target = base.setpoints.production_rate * 0.9
    lower.set_inputs({"sp:production_rate": target})
    assert lower.setpoints.production_rate == target
    a, b = run(base, 2.0), run(lower, 2.0)
    assert b["plant:throughput"] < a["plant:throughput"] - 0.2
    assert b["xmv:d_feed_valve"] < a["xmv:d_feed_valve"]


def test_snapshot_and_restore_give_the_same_future() -> None:
    sim = plant()
    sim.set_inputs({"idv:8": 1.0})  # a random disturbance: its generator must be copied too
    run(sim, 0.25)
    snap = sim.snapshot()
    first = run(sim, 0.25)
    sim.restore(snap)
    second = run(sim, 0.25)
    assert first == second
    sim.restore(snap)  # the snapshot is reusable
    assert run(sim, 0.25) == first


def test_a_restored_fork_forgets_what_happened_after_the_snapshot() -> None:
    sim = plant()
    run(sim, 0.1)
    snap = sim.snapshot()
    before = sim.setpoints
    sim.set_inputs({"sp:production_rate": before.production_rate * 0.8, "idv:6": 1.0})
    changed = run(sim, 0.25)
    sim.restore(snap)
    assert sim.setpoints == before
    again = run(sim, 0.25)
    assert again["xmeas:feed_A_flow"] > 0.15 > changed["xmeas:feed_A_flow"]


def test_same_seed_same_outputs_other_seed_other_noise() -> None:
    a, b, c = plant(seed=3), plant(seed=3), plant(seed=4)
    oa, ob, oc = run(a, 0.3), run(b, 0.3), run(c, 0.3)
    assert oa == ob
    assert oa["xmeas:reactor_pressure"] != oc["xmeas:reactor_pressure"]


def test_shutdown_keeps_the_plant_down_until_a_restart_after_the_restart_time() -> None:
    sim = plant(restart_h=0.1)
    sim.set_inputs({"sp:reactor_temperature": 180.0})  # drives the plant into an interlock
    out = run(sim, 0.2)
    assert out["plant:running"] == 0.0
    assert 1.0 <= out["plant:shutdown_code"] <= 8.0
    assert out["plant:throughput"] == 0.0
    assert out["xmeas:feed_A_flow"] == 0.0
    assert out["xmv:a_feed_valve"] == 0.0
    assert out["plant:down_h"] > 0.0
    sim.set_inputs({"sp:reactor_temperature": 120.4})  # back to the mode-1 setpoint
    frozen = run(sim, 0.05)
    assert frozen["plant:running"] == 0.0  # nobody asked for a restart
    assert frozen["xmeas:reactor_pressure"] == out["xmeas:reactor_pressure"]
    sim.set_inputs({"plant:restart": 1.0})
    after = run(sim, 0.3)
    assert after["plant:running"] == 1.0
    assert after["plant:shutdown_code"] == 0.0
    assert after["plant:throughput"] > 15.0


def test_a_restart_waits_for_the_restart_time() -> None:
    sim = plant()  # default: 24 h after a trip
    sim.set_inputs({"sp:reactor_temperature": 180.0})
    run(sim, 0.2)
    sim.set_inputs({"sp:reactor_temperature": 120.4, "plant:restart": 1.0})
    assert run(sim, 1.0)["plant:running"] == 0.0


def test_controlled_stop_and_start() -> None:
    sim = plant(stop_restart_h=0.1)
    run(sim, 0.05)
    sim.set_inputs({"plant:run": 0.0})
    stopped = run(sim, 0.2)
    assert stopped["plant:running"] == 0.0
    assert stopped["plant:shutdown_code"] == -1.0
    sim.set_inputs({"plant:run": 1.0})
    assert run(sim, 0.1)["plant:running"] == 1.0


@pytest.mark.parametrize(
    "inputs",
    [
        {"sp:nonsense": 1.0},
        {"idv:29": 1.0},
        {"idv:0": 1.0},
        {"pump:1:speed": 1.0},
        {"xmv:x:manual": 1},
    ],
)
def test_unknown_input_raises(inputs: dict[str, float]) -> None:
    with pytest.raises(SimulatorError):
        plant().set_inputs(inputs)


def test_bad_steps_and_parameters_raise() -> None:
    sim = plant()
    with pytest.raises(SimulatorError):
        sim.do_step(0.0, 10.0)  # not a multiple of 1.8 s
    with pytest.raises(SimulatorError):
        sim.do_step(3600.0, CONTROL_INTERVAL_S)  # not where the plant is
    with pytest.raises(SimulatorError):
        sim.set_inputs({"sp:production_rate": math.nan})
    with pytest.raises(SimulatorError):
        TepSimulator().instantiate({"mode": "mode9"}, seed=0)
    with pytest.raises(SimulatorError):
        TepSimulator().instantiate({"reactor": 1}, seed=0)
    sim.terminate()
    sim.terminate()
    with pytest.raises(SimulatorError):
        sim.get_outputs()


def test_manual_valve_position_overrides_the_controller() -> None:
    sim = plant()
    sim.set_inputs({"xmv:purge_valve:manual": 10.0})
    assert run(sim, 0.05)["xmv:purge_valve"] == 10.0
    sim.set_inputs({"xmv:purge_valve:manual": math.nan})
    assert run(sim, 0.05)["xmv:purge_valve"] != 10.0
