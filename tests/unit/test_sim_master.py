"""The co-simulation master: Jacobi coupling, seeds, failures, timeouts and forking."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from twinkg.ontology.errors import InvalidInputError, SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable
from twinkg.sim.degradation import PumpDegradation
from twinkg.sim.master import Connection, CoSimulation, Outputs, component_seed
from twinkg.sim.sensor_faults import SensorFaults


class Integrator:
    """x' = u + noise: output ``x``, input ``u``; records its seed and calls (Forkable)."""

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = noise
        self.seed: int | None = None
        self.x = 0.0
        self.u = 0.0
        self.rng = np.random.default_rng(0)
        self.terminated = 0

    def info(self) -> ModelInfo:
        return ModelInfo("integrator", "1", (Variable("u", "input"), Variable("x", "output", "m")))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        self.seed = seed
        self.x = float(parameters.get("x0", 0.0))
        self.rng = np.random.default_rng(seed)

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        for name, value in inputs.items():
            if name != "u":
                raise SimulatorError(f"no input {name}")
            self.u = value

    def do_step(self, t: float, dt: float) -> None:
        self.x += self.u * dt + self.noise * float(self.rng.normal())

    def get_outputs(self) -> dict[str, float]:
        return {"x": self.x}

    def terminate(self) -> None:
        self.terminated += 1

    def snapshot(self) -> object:
        return (self.x, self.u, dict(self.rng.bit_generator.state))

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        self.x, self.u, state = snapshot
        self.rng.bit_generator.state = state


class Clock:
    """Outputs the time it has reached (not Forkable)."""

    def __init__(self) -> None:
        self.t = 0.0

    def info(self) -> ModelInfo:
        return ModelInfo("clock", "1", (Variable("t", "output", "s"),))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        self.t = 0.0

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        if inputs:
            raise SimulatorError("clock has no inputs")

    def do_step(self, t: float, dt: float) -> None:
        self.t = t + dt

    def get_outputs(self) -> dict[str, float]:
        return {"t": self.t}

    def terminate(self) -> None:
        """Nothing held."""


class Faulty(Clock):
    """A clock that raises, hangs on an event, or returns NaN at a given step."""

    def __init__(self, mode: str, at_step: int = 2, release: threading.Event | None = None) -> None:
        super().__init__()
        self.mode = mode
        self.at_step = at_step
        self.steps = 0
        self.release = release
        self.terminate_raises = False
        self.value = 0.0

    def do_step(self, t: float, dt: float) -> None:
        self.steps += 1
        if self.steps == self.at_step:
            if self.mode == "raise":
                raise RuntimeError("pressure solver diverged")
            if self.mode == "hang":
                assert self.release is not None
                self.release.wait()
            if self.mode == "nan":
                self.value = math.nan
            if self.mode == "inf":
                self.value = math.inf
        super().do_step(t, dt)

    def get_outputs(self) -> dict[str, float]:
        return {"t": self.t, "v": self.value}

    def terminate(self) -> None:
        if self.terminate_raises:
            raise RuntimeError("license server gone")


class Nullable(Faulty):
    """Declares ``v`` nullable."""

    def nullable_outputs(self) -> frozenset[str]:
        return frozenset({"v"})


def _run(master: CoSimulation, steps: int) -> list[Outputs]:
    return [master.step() for _ in range(steps)]


def _values(outputs: list[Outputs]) -> list[dict[str, dict[str, str]]]:
    """Every value bit for bit (``float.hex``, so NaN compares equal to NaN)."""
    return [{c: {k: v.hex() for k, v in o[c].items()} for c in o} for o in outputs]


def test_jacobi_routes_the_outputs_of_the_previous_communication_point() -> None:
    clock, echo = Clock(), Integrator()
    master = CoSimulation(
        {"clock": clock, "echo": echo}, [Connection("clock", "t", "echo", "u")], dt=2.0
    )
    start = master.instantiate({}, seed=1)
    assert start.time == 0.0 and start["clock"]["t"] == 0.0
    xs = []
    for _ in range(4):
        out = master.step()
        xs.append(out["echo"]["x"])
    # echo integrates u = clock's t at the START of each step: 0, 2, 4, 6 -> x = 0, 4, 12, 24
    assert xs == [0.0, 4.0, 12.0, 24.0]
    assert master.time == 8.0 and out.time == 8.0 and out["clock"]["t"] == 8.0


def test_feedthrough_components_read_the_new_outputs() -> None:
    master = CoSimulation(
        {"clock": Clock(), "echo": Integrator()},
        [Connection("clock", "t", "echo", "u")],
        dt=2.0,
        feedthrough=["echo"],
    )
    master.instantiate({}, seed=1)
    xs = [o["echo"]["x"] for o in _run(master, 3)]
    # u = clock's t at the END of each step: 2, 4, 6 -> x = 4, 12, 24
    assert xs == [4.0, 12.0, 24.0]


def test_a_feedthrough_component_cannot_read_one_that_steps_after_it() -> None:
    with pytest.raises(InvalidInputError, match="steps after it"):
        CoSimulation(
            {"a": Integrator(), "b": Integrator()},
            [Connection("b", "x", "a", "u")],
            feedthrough=["a", "b"],
        )


def test_external_inputs_apply_at_the_next_step_and_override_connections() -> None:
    master = CoSimulation(
        {"clock": Clock(), "echo": Integrator()}, [Connection("clock", "t", "echo", "u")], dt=1.0
    )
    master.instantiate({"echo": {"x0": 10.0}}, seed=3)
    master.set_inputs("echo", {"u": 100.0})
    assert master.outputs["echo"]["x"] == 10.0  # queued, not applied yet
    first = master.step()
    assert first["echo"]["x"] == 110.0  # u = 100 beat the connection's 0
    second = master.step()
    assert second["echo"]["x"] == 111.0  # the connection's u = 1 again
    with pytest.raises(InvalidInputError, match="nope"):
        master.set_inputs("nope", {"u": 1.0})
    with pytest.raises(InvalidInputError, match="must be numbers"):
        master.set_inputs("echo", {"u": "fast"})  # type: ignore[dict-item]


def test_wiring_names_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="no component named 'ghost'"):
        CoSimulation({"a": Integrator()}, [Connection("ghost", "x", "a", "u")])
    master = CoSimulation(
        {"a": Integrator(), "b": Integrator()}, [Connection("a", "flow", "b", "u")]
    )
    with pytest.raises(InvalidInputError, match="has no output 'flow'"):
        master.instantiate({}, seed=0)
    master = CoSimulation({"a": Integrator(), "b": Integrator()}, [Connection("a", "x", "b", "y")])
    with pytest.raises(InvalidInputError, match="has no input 'y'"):
        master.instantiate({}, seed=0)
    with pytest.raises(InvalidInputError, match="unknown components: c"):
        CoSimulation({"a": Integrator()}).instantiate({"c": {}}, seed=0)
    with pytest.raises(InvalidInputError):
        CoSimulation({"a": Integrator()}, dt=0.0)


def _noisy_master(seed: int) -> CoSimulation:
    master = CoSimulation(
        {"p": Integrator(noise=1.0), "q": Integrator(noise=1.0)},
        [Connection("p", "x", "q", "u")],
        dt=1.0,
    )
    master.instantiate({}, seed=seed)
    return master


def test_same_seed_gives_identical_outputs_and_another_seed_differs() -> None:
    a, b, c = (_values(_run(_noisy_master(s), 20)) for s in (7, 7, 8))
    assert a == b
    assert a != c
    assert a[-1]["p"] != a[-1]["q"]


def test_component_seeds_are_independent_stable_and_do_not_depend_on_the_other_components() -> None:
    p1, q1 = Integrator(), Integrator()
    CoSimulation({"p": p1, "q": q1}).instantiate({}, seed=42)
    p2 = Integrator()
    CoSimulation({"p": p2, "extra": Clock()}).instantiate({}, seed=42)
    assert p1.seed == p2.seed == component_seed(42, "p")
    assert p1.seed != q1.seed
    assert component_seed(42, "p") != component_seed(43, "p")
    assert all(0 <= component_seed(s, "p") < 2**32 for s in range(20))
    with pytest.raises(InvalidInputError):
        component_seed(-1, "p")


def test_a_component_that_raises_fails_the_run_with_its_name_and_time() -> None:
    ok, bad = Integrator(), Faulty("raise", at_step=3)
    master = CoSimulation({"ok": ok, "pump-model": bad}, dt=60.0)
    master.instantiate({}, seed=1)
    _run(master, 2)
    with pytest.raises(SimulatorError) as caught:
        master.step()
    message = str(caught.value)
    assert "'pump-model'" in message and "t=120 s" in message
    assert "pressure solver diverged" in message
    assert master.failure is not None
    assert (master.failure.component, master.failure.time) == ("pump-model", 120.0)
    assert master.time == 120.0  # the failed step did not advance time
    with pytest.raises(SimulatorError, match="has failed"):
        master.step()
    with pytest.raises(SimulatorError, match="has failed"):
        master.snapshot()
    master.terminate()
    assert ok.terminated == 1


def test_a_hanging_component_times_out_and_the_master_is_unusable() -> None:
    release = threading.Event()
    ok, hung = Integrator(), Faulty("hang", at_step=2, release=release)
    master = CoSimulation({"ok": ok, "stuck": hung}, dt=10.0, step_timeout_s=0.5)
    master.instantiate({}, seed=1)
    master.step()
    try:
        with pytest.raises(SimulatorError) as caught:
            master.step()
        assert "'stuck'" in str(caught.value) and "t=10 s" in str(caught.value)
        assert "did not return within 0.5 s" in str(caught.value)
        assert master.failure is not None and master.failure.component == "stuck"
        with pytest.raises(SimulatorError, match="has failed"):
            master.step()
        with pytest.raises(SimulatorError, match="stuck: not terminated"):
            master.terminate()
        assert ok.terminated == 1
    finally:
        release.set()


@pytest.mark.parametrize("mode", ["nan", "inf"])
def test_a_non_finite_output_fails_the_run(mode: str) -> None:
    master = CoSimulation({"clock": Clock(), "meter": Faulty(mode, at_step=2)}, dt=5.0)
    master.instantiate({}, seed=0)
    master.step()
    with pytest.raises(SimulatorError, match=r"'meter' failed at t=10 s: output 'v' is"):
        master.step()
    assert master.time == 5.0 and master.outputs.time == 5.0  # the bad step is not taken
    with pytest.raises(SimulatorError):
        master.step()


def test_nan_is_accepted_from_a_nullable_output_but_not_infinity() -> None:
    master = CoSimulation({"meter": Nullable("nan", at_step=1)}, dt=1.0)
    master.instantiate({}, seed=0)
    assert math.isnan(master.step()["meter"]["v"])
    master = CoSimulation({"meter": Nullable("inf", at_step=1)}, dt=1.0)
    master.instantiate({}, seed=0)
    with pytest.raises(SimulatorError, match="'v' is inf"):
        master.step()


def test_the_worker_thread_ends_with_terminate() -> None:
    master = _noisy_master(1)
    master.step()
    worker = master._worker
    assert worker is not None and worker.thread.is_alive()
    master.terminate()
    worker.thread.join(timeout=30.0)  # waits for the state; returns at once when it has ended
    assert not worker.thread.is_alive()


def test_terminate_is_idempotent_and_collects_errors() -> None:
    first, second = Faulty("none"), Integrator()
    first.terminate_raises = True
    master = CoSimulation({"first": first, "second": second})
    master.instantiate({}, seed=0)
    with pytest.raises(SimulatorError, match="first: RuntimeError: license server gone"):
        master.terminate()
    assert second.terminated == 1
    master.terminate()  # again: nothing happens
    assert second.terminated == 1
    with pytest.raises(SimulatorError, match="terminated"):
        master.step()


def test_snapshot_and_restore_give_identical_futures() -> None:
    master = _noisy_master(5)
    _run(master, 5)
    master.set_inputs("p", {"u": 0.5})
    snap = master.snapshot()
    first = _values(_run(master, 10))
    master.restore(snap)
    assert master.time == 5.0
    second = _values(_run(master, 10))
    master.restore(snap)
    master.set_inputs("p", {"u": -3.0})  # another candidate action: another future
    third = _values(_run(master, 10))
    assert first == second
    assert first != third


def test_snapshot_needs_every_component_forkable() -> None:
    master = CoSimulation({"p": Integrator(), "clock": Clock()})
    master.instantiate({}, seed=0)
    with pytest.raises(SimulatorError, match="component clock cannot fork"):
        master.snapshot()
    master.step()  # refusing a fork does not end the run


@pytest.fixture
def plant() -> Iterator[CoSimulation]:
    """A pump flow source, the degradation model and the sensor-fault injector coupled."""
    master = CoSimulation(
        {"flow": Integrator(noise=0.001), "wear": PumpDegradation(), "sensors": SensorFaults()},
        [
            Connection("flow", "x", "wear", "pump:P1:flow"),
            Connection("wear", "pump:P1:vibration", "sensors", "pump:P1:vibration"),
            Connection("wear", "pump:P1:wear", "sensors", "pump:P1:wear"),
        ],
        dt=900.0,
        feedthrough=["sensors"],
    )
    master.instantiate(
        {
            "flow": {"x0": 0.05},
            "wear": {"pumps": {"P1": {"bep_flow": 0.05, "wear_rate_per_h": 1e-3}}},
            "sensors": {
                "signals": ["pump:P1:vibration", "pump:P1:wear"],
                "faults": [
                    {
                        "kind": "noise",
                        "signal": "pump:P1:vibration",
                        "onset_s": 0.0,
                        "magnitude": 0.1,
                    },
                    {"kind": "dropout", "signal": "pump:P1:wear", "onset_s": 9000.0},
                ],
            },
        },
        seed=11,
    )
    master.set_inputs("wear", {"pump:P1:running": 1.0})
    yield master
    master.terminate()


def test_real_components_coupled_fork_and_pass_nan_from_a_dropout(plant: CoSimulation) -> None:
    outs = _run(plant, 8)
    assert outs[-1]["wear"]["pump:P1:wear"] > 0.0
    # feedthrough: the sensor reads the degradation model's value of the same step
    assert outs[-1]["sensors"]["pump:P1:wear"] == outs[-1]["wear"]["pump:P1:wear"]
    assert outs[-1]["sensors"]["pump:P1:vibration"] != outs[-1]["wear"]["pump:P1:vibration"]
    snap = plant.snapshot()
    first = _values(_run(plant, 6))
    plant.restore(snap)
    second = _values(_run(plant, 6))
    assert first == second
    assert second[-1]["sensors"]["pump:P1:wear"] == "nan"  # dropout from t = 9000 s
