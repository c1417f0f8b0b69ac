"""The TEP's own stepper (decision 0053) against tep-studio's ``advance``, bit for bit.

``KernelStepper.advance`` replaces ``TennesseeEastmanProcess.advance`` inside
``TepSimulator.do_step``. These tests run two simulators side by side, one with the stepper and
one with a stand-in that calls tep-studio's ``advance`` itself, and require every output of every
step to have the same bits: under random seeds, disturbances, setpoint moves and manual valves
(Hypothesis), across a trip, a controlled stop and restart, and a snapshot restored.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tep_studio import TennesseeEastmanProcess

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.tep import (
    CONTROL_INTERVAL_H,
    DISTURBANCES,
    MANIPULATED,
    SETPOINTS,
    KernelStepper,
    TepSimulator,
    TepStep,
)

STEP = 180.0  # s, 100 control intervals


class LibraryStepper:
    """tep-studio's own ``advance``, as the simulator called it before decision 0053."""

    def __init__(self, plant: TennesseeEastmanProcess) -> None:
        self.plant = plant
        self.calls = 0

    def advance(self, action: np.ndarray, idv: np.ndarray, interval_h: float) -> TepStep:
        self.calls += 1
        result = self.plant.advance(action, control_interval=interval_h, disturbances=idv)
        return TepStep(
            measurements=result.measurements,
            implemented=result.implemented_action,
            shutdown_code=float(result.shutdown_status["code"]),
            cost_per_h=float(result.objective_terms["operating_cost_internal_per_hour"]),
        )


def pair(seed: int) -> tuple[TepSimulator, TepSimulator, LibraryStepper]:
    """A simulator with the stepper and one with tep-studio's ``advance``, same seed."""
    ours, theirs = TepSimulator(), TepSimulator()
    ours.instantiate({"mode": "mode1"}, seed=seed)
    theirs.instantiate({"mode": "mode1"}, seed=seed)
    assert theirs._plant is not None
    library = LibraryStepper(theirs._plant)
    theirs._stepper = library  # type: ignore[assignment]
    return ours, theirs, library


def bits(outputs: dict[str, float]) -> dict[str, bytes]:
    """Each output's IEEE 754 bits (so -0.0 and 0.0, or two NaNs, are told apart honestly)."""
    return {name: struct.pack("<d", value) for name, value in outputs.items()}


def step_both(ours: TepSimulator, theirs: TepSimulator, steps: int) -> None:
    for _ in range(steps):
        t = ours.time_s
        ours.do_step(t, STEP)
        theirs.do_step(t, STEP)
        assert bits(ours.get_outputs()) == bits(theirs.get_outputs()), f"differs after {t} s"


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    before=st.integers(0, 6),
    after=st.integers(1, 10),
    idv=st.lists(st.integers(1, DISTURBANCES), max_size=4, unique=True),
    setpoint=st.none() | st.tuples(st.sampled_from(SETPOINTS), st.floats(0.8, 1.1)),
    manual=st.none() | st.tuples(st.sampled_from(MANIPULATED), st.floats(0.0, 100.0)),
)
def test_every_output_of_every_step_has_the_library_s_bits(  # noqa: PLR0917 - one per input
    seed: int,
    before: int,
    after: int,
    idv: list[int],
    setpoint: tuple[str, float] | None,
    manual: tuple[str, float] | None,
) -> None:
    ours, theirs, library = pair(seed)
    step_both(ours, theirs, before)
    given_inputs = {f"idv:{n}": 1.0 for n in idv}
    if setpoint is not None:
        name, share = setpoint
        given_inputs[f"sp:{name}"] = getattr(ours.setpoints, name) * share
    if manual is not None:
        mv, value = manual
        given_inputs[f"xmv:{mv}:manual"] = value
    ours.set_inputs(given_inputs)
    theirs.set_inputs(given_inputs)
    step_both(ours, theirs, after)
    assert library.calls > 0  # the stand-in was the one stepping


def test_the_same_bits_through_a_trip_a_stop_a_restart_and_a_restored_snapshot() -> None:
    ours, theirs, library = pair(seed=7)
    ours.set_inputs({"idv:6": 1.0})  # the A-feed loss trips the plant within hours
    theirs.set_inputs({"idv:6": 1.0})
    forks = (ours.snapshot(), theirs.snapshot())
    for _ in range(round(12 * 3600 / STEP)):
        step_both(ours, theirs, 1)
        if ours.get_outputs()["plant:running"] == 0.0:
            break
    assert ours.get_outputs()["plant:shutdown_code"] > 0  # an interlock tripped it
    ours.restore(forks[0])
    theirs.restore(forks[1])
    step_both(ours, theirs, 5)
    for sim in (ours, theirs):
        sim.set_inputs({"idv:6": 0.0, "plant:run": 0.0})
    step_both(ours, theirs, 2)
    assert ours.get_outputs()["plant:shutdown_code"] == -1.0  # a controlled stop
    for sim in (ours, theirs):
        sim.set_inputs({"plant:run": 1.0})
    step_both(ours, theirs, round(8.5 * 3600 / STEP))
    assert ours.get_outputs()["plant:running"] == 1.0  # restarted after the 8 h hold-off
    step_both(ours, theirs, 5)
    assert library.calls > 0


def test_a_diverging_integration_ends_the_step_with_the_reason() -> None:
    sim = TepSimulator()
    sim.instantiate({"mode": "mode1"}, seed=1)
    controller = sim._controller
    assert controller is not None

    def nonsense(measurements: object, *, time: float) -> tuple[np.ndarray, None]:
        return np.full(len(MANIPULATED), np.nan), None

    controller.compute_action = nonsense
    with pytest.raises(SimulatorError, match=r"the kernel failed at .*diverged"):
        sim.do_step(0.0, STEP)


def test_only_the_rk4_the_simulator_uses_is_stepped() -> None:
    with pytest.raises(SimulatorError, match="RK4, not 'RK45'"):
        KernelStepper(TennesseeEastmanProcess(solver_method="RK45"))
    assert CONTROL_INTERVAL_H * 3600.0 * 100 == STEP


def test_inputs_of_the_wrong_length_are_refused_before_the_kernel_reads_them() -> None:
    sim = TepSimulator()
    sim.instantiate({"mode": "mode1"}, seed=1)
    assert sim._plant is not None
    stepper = KernelStepper(sim._plant)
    before = sim._plant.time
    with pytest.raises(ValueError, match="expected 12 manipulated variables and 28"):
        stepper.advance(np.zeros(11), np.zeros(DISTURBANCES), CONTROL_INTERVAL_H)
    with pytest.raises(ValueError, match=r"got shapes \(12,\) and \(27,\)"):
        stepper.advance(np.zeros(12), np.zeros(27), CONTROL_INTERVAL_H)
    assert sim._plant.time == before  # nothing moved
