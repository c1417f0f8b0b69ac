"""The pump degradation model: wear, hazard, failure, repair, faults, determinism, forking."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.degradation import PumpDegradation

HOUR = 3600.0


def _model(seed: int = 1, **parameters: Any) -> PumpDegradation:
    model = PumpDegradation()
    parameters.setdefault("pumps", ["P1"])
    model.instantiate(parameters, seed)
    return model


def _run(model: PumpDegradation, hours: int, pump: str = "P1", flow: float = 0.05) -> None:
    model.set_inputs({f"pump:{pump}:running": 1.0, f"pump:{pump}:flow": flow})
    for k in range(hours):
        model.do_step(k * HOUR, HOUR)


def _failure_hour(seed: int, limit: int = 400) -> int | None:
    model = _model(seed, hazard_base_per_h=0.02, hazard_growth=0.0)
    model.set_inputs({"pump:P1:running": 1.0})
    for k in range(limit):
        model.do_step(k * HOUR, HOUR)
        if model.get_outputs()["pump:P1:failed"] == 1.0:
            return k + 1
    return None


def test_info_declares_every_output_and_input() -> None:
    model = _model(pumps=["10", "335"])
    info = model.info()
    outputs = {v.name for v in info.variables if v.causality == "output"}
    inputs = {v.name for v in info.variables if v.causality == "input"}
    assert outputs == set(model.get_outputs())
    assert inputs == {f"pump:{p}:{q}" for p in ("10", "335") for q in ("running", "flow", "repair")}
    assert next(v for v in info.variables if v.name == "pump:10:vibration").unit == "mm/s"


def test_hazard_rises_with_wear() -> None:
    model = _model(pumps={str(w): {"initial_wear": w / 10} for w in range(11)})
    out = model.get_outputs()
    hazards = [out[f"pump:{w}:hazard"] for w in range(11)]
    assert all(a < b for a, b in itertools.pairwise(hazards))
    heads = [out[f"pump:{w}:head_factor"] for w in range(11)]
    assert all(a > b for a, b in itertools.pairwise(heads))


def test_wear_grows_only_while_running_and_faster_away_from_best_efficiency() -> None:
    rates = {}
    for flow in (0.05, 0.04, 0.07):
        model = _model(pumps={"P1": {"bep_flow": 0.05, "wear_rate_per_h": 1e-3}})
        _run(model, 10, flow=flow)
        rates[flow] = model.get_outputs()["pump:P1:wear"]
    assert rates[0.05] == pytest.approx(1e-2)  # at BEP: the base rate
    assert rates[0.05] < rates[0.04] < rates[0.07]  # off BEP, and run-out cavitation most
    stopped = _model(pumps={"P1": {"wear_rate_per_h": 1e-3}})
    for k in range(10):
        stopped.do_step(k * HOUR, HOUR)
    out = stopped.get_outputs()
    assert out["pump:P1:wear"] == 0.0
    assert out["pump:P1:vibration"] == 0.0


def test_bearing_fault_raises_vibration_and_temperature_then_fails() -> None:
    healthy, faulty = _model(seed=3), _model(seed=3)
    faulty.inject("bearing_failure", "P1", 0.6)
    for model in (healthy, faulty):
        _run(model, 20)
    h, f = healthy.get_outputs(), faulty.get_outputs()
    assert f["pump:P1:vibration"] > h["pump:P1:vibration"] + 4.0
    assert f["pump:P1:bearing_temperature"] > h["pump:P1:bearing_temperature"] + 20.0
    assert f["pump:P1:hazard"] > 50 * h["pump:P1:hazard"]
    assert f["pump:P1:efficiency_factor"] < h["pump:P1:efficiency_factor"]
    assert f["pump:P1:failed"] == 0.0
    faulty.set_inputs({"pump:P1:running": 1.0})
    for k in range(20, 60):
        faulty.do_step(k * HOUR, HOUR)
    # the damage grows 1 %/h while running: 0.6 reaches 1 after ln(1/0.6)/0.01 = 51 h
    assert faulty.get_outputs()["pump:P1:failed"] == 1.0
    broken = _model()
    broken.inject("bearing_failure", "P1", 1.0)
    assert broken.get_outputs()["pump:P1:failed"] == 1.0  # magnitude 1: failed at onset


def test_failure_latches_until_repair_which_restores_the_pump_to_new() -> None:
    model = _model(pumps={"P1": {"wear_rate_per_h": 1e-3}})
    model.inject("pump_wear", "P1", 5.0)  # +0.05 per hour: worn out after 20 h
    model.inject("seal_leak", "P1", 0.4)
    _run(model, 30)
    out = model.get_outputs()
    assert out["pump:P1:failed"] == 1.0
    assert out["pump:P1:seal_leak"] == 0.4
    wear = out["pump:P1:wear"]
    model.set_inputs({"pump:P1:running": 1.0})
    model.do_step(30 * HOUR, HOUR)
    assert model.get_outputs()["pump:P1:failed"] == 1.0  # latched
    assert model.get_outputs()["pump:P1:wear"] == wear  # a failed pump does not run
    model.set_inputs({"pump:P1:repair": 1.0})
    model.do_step(31 * HOUR, HOUR)
    out = model.get_outputs()
    assert out["pump:P1:failed"] == 0.0
    assert out["pump:P1:seal_leak"] == 0.0
    assert out["pump:P1:head_factor"] == pytest.approx(1.0, abs=1e-3)
    # the injected faults went with the repair: wear grows at the base rate again
    for k in range(32, 42):
        model.do_step(k * HOUR, HOUR)
    assert model.get_outputs()["pump:P1:wear"] == pytest.approx(1e-3 * 11)


def test_same_seed_same_failure_time_and_seeds_differ() -> None:
    times = [_failure_hour(seed) for seed in range(1, 7)]
    assert times == [_failure_hour(seed) for seed in range(1, 7)]
    assert all(t is not None for t in times)
    assert len(set(times)) > 1


def test_failure_times_follow_the_hazard() -> None:
    # constant hazard 0.02/h: the mean time to failure is 50 h (a loose bound over 60 seeds)
    times = [_failure_hour(seed, limit=2000) for seed in range(60)]
    assert all(t is not None for t in times)
    mean = sum(t for t in times if t is not None) / len(times)
    assert 35.0 < mean < 70.0


def test_concealed_lives_fail_only_when_worn_out() -> None:
    """While concealed (a look-ahead fork), the drawn random life never fails a pump: only wear
    out does; the hazard is stated as before; revealed again, the life counts once more."""
    seed = next(s for s in range(1, 50) if (_failure_hour(s) or 999) < 100)
    hour = _failure_hour(seed)
    assert hour is not None
    model = _model(seed, hazard_base_per_h=0.02, hazard_growth=0.0)
    model.conceal_lives(True)
    model.set_inputs({"pump:P1:running": 1.0})
    for k in range(hour + 20):
        model.do_step(k * HOUR, HOUR)
    out = model.get_outputs()
    assert out["pump:P1:failed"] == 0.0 and out["pump:P1:hazard"] == pytest.approx(0.02)
    model.conceal_lives(False)
    model.do_step((hour + 20) * HOUR, HOUR)  # its cumulative hazard is long past its life
    assert model.get_outputs()["pump:P1:failed"] == 1.0
    worn = _model(seed, pumps={"P1": {"wear_rate_per_h": 0.1}}, hazard_base_per_h=1e-9)
    worn.conceal_lives(True)
    _run(worn, 11)
    assert worn.get_outputs()["pump:P1:failed"] == 1.0  # worn out: physics, not chance


def test_snapshot_restore_gives_the_same_future() -> None:
    model = _model(seed=9, hazard_base_per_h=0.05, hazard_growth=2.0)
    _run(model, 3)
    snap = model.snapshot()
    futures = []
    for _ in range(2):
        model.restore(snap)
        model.set_inputs({"pump:P1:running": 1.0})
        trace = []
        for k in range(3, 40):
            model.do_step(k * HOUR, HOUR)
            trace.append(tuple(model.get_outputs().values()))
        futures.append(trace)
    assert futures[0] == futures[1]
    with pytest.raises(SimulatorError):
        _model(pumps=["A", "B"]).restore(snap)


def test_bad_names_and_parameters_are_refused() -> None:
    model = _model()
    with pytest.raises(SimulatorError, match="no input 'pump:P2:flow'"):
        model.set_inputs({"pump:P2:flow": 1.0})
    with pytest.raises(SimulatorError, match="unknown pump fault 'rust'"):
        model.inject("rust", "P1", 1.0)
    with pytest.raises(SimulatorError, match="no pump 'P9'"):
        model.inject("seal_leak", "P9", 1.0)
    with pytest.raises(SimulatorError, match="unknown degradation parameters: speed"):
        _model(speed=3)
    with pytest.raises(SimulatorError):
        _model(pumps={"P1": {"colour": "red"}})
    with pytest.raises(SimulatorError, match="not instantiated"):
        PumpDegradation().get_outputs()


_steps = st.lists(
    st.tuples(
        st.booleans(),  # running
        st.floats(0.0, 0.2),  # flow m³/s
        st.floats(1.0, 4 * HOUR),  # dt
        st.sampled_from([None, "pump_wear", "bearing_failure", "seal_leak"]),
        st.floats(0.0, 20.0),  # magnitude
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(steps=_steps, seed=st.integers(0, 2**32 - 1))
def test_wear_never_falls_and_factors_stay_in_range(
    steps: list[tuple[bool, float, float, str | None, float]], seed: int
) -> None:
    model = _model(seed, pumps={"P1": {"bep_flow": 0.05, "wear_rate_per_h": 1e-3}})
    t, wear, failed = 0.0, 0.0, 0.0
    for running, flow, dt, fault, magnitude in steps:
        if fault is not None:
            model.inject(fault, "P1", magnitude)
        model.set_inputs({"pump:P1:running": float(running), "pump:P1:flow": flow})
        model.do_step(t, dt)
        t += dt
        out = model.get_outputs()
        assert all(math.isfinite(v) for v in out.values())
        assert out["pump:P1:wear"] >= wear
        if not running:
            assert out["pump:P1:wear"] == wear
        assert out["pump:P1:failed"] >= failed  # latches without a repair
        wear, failed = out["pump:P1:wear"], out["pump:P1:failed"]
        assert 0.0 <= wear <= 1.0
        for factor in ("head_factor", "efficiency_factor"):
            assert 0.0 <= out[f"pump:P1:{factor}"] <= 1.0
        assert out["pump:P1:vibration"] >= 0.0
        assert out["pump:P1:hazard"] > 0.0
        assert out["pump:P1:failed"] in (0.0, 1.0)
