"""The sensor-fault injector: exact pass-through and each fault kind."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.sensor_faults import SensorFault, SensorFaults

SIGNALS = ("tank:1:level", "pump:10:flow")


def _model(*faults: SensorFault, seed: int = 4) -> SensorFaults:
    model = SensorFaults()
    model.instantiate({"signals": list(SIGNALS), "faults": list(faults)}, seed)
    return model


def _readings(model: SensorFaults, values: list[float], dt: float = 600.0) -> list[float]:
    """The readings of ``tank:1:level`` while the plant's level takes ``values``."""
    out = []
    for k, value in enumerate(values):
        model.set_inputs({"tank:1:level": value, "pump:10:flow": 0.1})
        model.do_step(k * dt, dt)
        out.append(model.get_outputs()["tank:1:level"])
    return out


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
def test_unfaulted_values_pass_bit_for_bit(values: list[float]) -> None:
    model = _model(SensorFault("noise", "pump:10:flow", 0.0, magnitude=1.0))
    got = _readings(model, values)
    assert [_bits(x) for x in got] == [_bits(x) for x in values]


def test_drift_adds_rate_times_time_since_onset() -> None:
    model = _model(SensorFault("drift", "tank:1:level", onset_s=1800.0, magnitude=0.5))
    got = _readings(model, [2.0] * 6)  # readings at 600 .. 3600 s
    assert got[:2] == [2.0, 2.0]
    assert got[2:] == pytest.approx([2.0, 2.0 + 0.5 * 600 / 3600, 2.0 + 0.5 * 1200 / 3600, 2.25])


def test_stuck_holds_the_value_at_onset_until_the_end() -> None:
    fault = SensorFault("stuck", "tank:1:level", onset_s=1200.0, end_s=3000.0)
    got = _readings(_model(fault), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # at 600 .. 4200 s
    assert got == [1.0, 2.0, 2.0, 2.0, 5.0, 6.0, 7.0]


def test_dropout_reads_nan_and_the_signal_is_declared_nullable() -> None:
    model = _model(SensorFault("dropout", "tank:1:level", onset_s=1200.0, end_s=2400.0))
    got = _readings(model, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert got[0:1] == [1.0] and got[3:] == [4.0, 5.0]
    assert math.isnan(got[1]) and math.isnan(got[2])
    assert model.nullable_outputs() == frozenset({"tank:1:level"})
    assert _model().nullable_outputs() == frozenset()


def test_noise_is_gaussian_seeded_and_only_while_active() -> None:
    fault = SensorFault("noise", "tank:1:level", onset_s=600.0, magnitude=0.2)
    values = [3.0] * 400
    a, b, c = (_readings(_model(fault, seed=s), values) for s in (1, 1, 2))
    assert a == b and a != c
    errors = [x - 3.0 for x in a]
    assert all(e != 0.0 for e in errors)
    mean = sum(errors) / len(errors)
    sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / len(errors))
    assert abs(mean) < 0.05 and 0.15 < sd < 0.25
    late = _readings(_model(SensorFault("noise", "tank:1:level", 1800.0, magnitude=1.0)), [3.0] * 3)
    assert late[:2] == [3.0, 3.0] and late[2] != 3.0


def test_snapshot_restore_and_schedule() -> None:
    model = _model(SensorFault("noise", "tank:1:level", 0.0, magnitude=1.0))
    _readings(model, [1.0] * 3)
    snap = model.snapshot()
    first = _readings(model, [1.0] * 5)
    model.restore(snap)
    assert _readings(model, [1.0] * 5) == first
    model.schedule(SensorFault("dropout", "pump:10:flow", 0.0))
    _readings(model, [1.0])
    assert math.isnan(model.get_outputs()["pump:10:flow"])
    model.restore(snap)  # the fault scheduled after the snapshot is gone with it
    assert model.faults == (SensorFault("noise", "tank:1:level", 0.0, magnitude=1.0),)


def test_bad_faults_and_names_are_refused() -> None:
    model = _model()
    with pytest.raises(SimulatorError, match="unknown sensor fault 'spike'"):
        model.schedule(SensorFault("spike", "tank:1:level", 0.0))
    with pytest.raises(SimulatorError, match="unknown signal 'tank:9:level'"):
        model.schedule(SensorFault("stuck", "tank:9:level", 0.0))
    with pytest.raises(SimulatorError, match="ends before it starts"):
        model.schedule(SensorFault("stuck", "tank:1:level", 10.0, end_s=5.0))
    with pytest.raises(SimulatorError, match="no signal 'x'"):
        model.set_inputs({"x": 1.0})
    with pytest.raises(SimulatorError, match="unknown sensor-fault parameters"):
        SensorFaults().instantiate({"signal": ["a"]}, 0)
    info = model.info()
    assert {(v.name, v.causality) for v in info.variables} == {
        (s, c) for s in SIGNALS for c in ("input", "output")
    }
