"""The water network simulator (sim/water.py): EPANET 2.2 stepped in the loop.

Differential against wntr's own ``EpanetSimulator`` on the unchanged network, the loop's inputs
(stops, leaks, outages, wear, demand), determinism and forks, and line-precise errors for
malformed ``.inp`` files.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinkg.ontology.errors import ModelFileError, SimulatorError
from twinkg.sim.adapter import Forkable, Simulator
from twinkg.sim.water import (
    LIBRARY_DIR,
    WaterNetworkSimulator,
    library_networks,
    pump_stations,
    read_network,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import wntr  # type: ignore[import-untyped]

HOUR = 3600.0


def _run(sim: WaterNetworkSimulator, hours: int, step: float = HOUR) -> list[dict[str, float]]:
    out = [sim.get_outputs()]
    t = 0.0
    for _ in range(int(hours * HOUR / step)):
        sim.do_step(t, step)
        t += step
        out.append(sim.get_outputs())
    return out


def _fresh(model: str = "Net1", **params: float | str) -> WaterNetworkSimulator:
    sim = WaterNetworkSimulator(model)
    sim.instantiate({"step_s": HOUR, **params}, seed=0)
    return sim


def test_it_is_a_forkable_simulator_with_the_naming_convention() -> None:
    sim = WaterNetworkSimulator("Net3")
    assert isinstance(sim, Simulator) and isinstance(sim, Forkable)
    names = {v.name: v for v in sim.info().variables}
    wn = read_network("Net3")
    for pump in wn.pump_name_list:
        assert names[f"pump:{pump}:status"].causality == "input"
        assert names[f"pump:{pump}:flow"].unit == "m3/s"
    assert {f"tank:{t}:level" for t in wn.tank_name_list} <= set(names)
    assert {f"station:{s}:power" for s in pump_stations(wn)} <= set(names)
    assert {"Net1", "Net3"} <= set(library_networks())


@pytest.mark.parametrize("demand_model", ["PDA", "DDA"])
def test_stepping_matches_wntr_epanet_simulator(tmp_path: Path, demand_model: str) -> None:
    """Net1 for 6 h, one communication step per hydraulic step: the same EPANET run."""
    wn = read_network("Net1")
    wn.options.time.duration = int(6 * HOUR)
    wn.options.hydraulic.demand_model = demand_model
    wn.options.hydraulic.required_pressure = 14.0
    wn.options.hydraulic.minimum_pressure = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = wntr.sim.EpanetSimulator(wn).run_sim(file_prefix=str(tmp_path / "ref"))
    sim = _fresh("Net1", demand_model=demand_model)
    outputs = _run(sim, 6)
    sim.terminate()
    pressure, flow = reference.node["pressure"], reference.link["flowrate"]
    for k, out in enumerate(outputs):
        t = int(k * HOUR)
        assert out["tank:2:level"] == pytest.approx(pressure.loc[t, "2"], rel=1e-5)
        assert out["pump:9:flow"] == pytest.approx(flow.loc[t, "9"], rel=1e-5)
        for j in wn.junction_name_list:
            assert out[f"node:{j}:pressure"] == pytest.approx(
                pressure.loc[t, j], rel=1e-5, abs=1e-4
            )
        for p in wn.pipe_name_list:
            assert out[f"pipe:{p}:flow"] == pytest.approx(flow.loc[t, p], rel=1e-4, abs=1e-7)


def test_finer_steps_stay_close_to_the_hourly_solution() -> None:
    hourly = _run(_fresh(), 4)[-1]
    fine = _run(_fresh(step_s=900.0), 4, step=900.0)[-1]
    assert fine["tank:2:level"] == pytest.approx(hourly["tank:2:level"], rel=2e-2)
    assert fine["pump:9:flow"] == pytest.approx(hourly["pump:9:flow"], rel=2e-2)


def test_a_stopped_pump_delivers_nothing_and_the_tank_drains() -> None:
    base = _fresh()
    stopped = _fresh()
    stopped.set_inputs({"pump:9:status": 0.0})
    b, s = _run(base, 3)[-1], _run(stopped, 3)[-1]
    assert b["pump:9:running"] == 1.0 and b["pump:9:flow"] > 0.05 and b["pump:9:power"] > 0
    assert s["pump:9:running"] == 0.0 and s["pump:9:flow"] == 0.0 and s["pump:9:power"] == 0.0
    assert s["tank:2:level"] < b["tank:2:level"]
    assert s["plant:power"] == 0.0 < b["plant:power"]


def test_the_networks_controls_cannot_restart_a_stopped_pump() -> None:
    """Net3's pump 10 is opened by a timer control at 01:00; held stopped it stays stopped,
    released it runs again."""
    sim = WaterNetworkSimulator("Net3")
    sim.instantiate({"step_s": HOUR}, 0)
    free = WaterNetworkSimulator("Net3")
    free.instantiate({"step_s": HOUR}, 0)
    sim.set_inputs({"pump:10:status": 0.0})
    held, ran = _run(sim, 3)[-1], _run(free, 3)[-1]
    assert ran["pump:10:running"] == 1.0
    assert held["pump:10:running"] == 0.0
    sim.set_inputs({"pump:10:status": 1.0})
    sim.do_step(3 * HOUR, HOUR)
    assert sim.get_outputs()["pump:10:running"] == 1.0


def test_a_hand_start_runs_a_pump_its_schedule_keeps_off_until_handed_back() -> None:
    """Net3's pump 10 runs 01:00-15:00 by its timer controls (decision 0054). Started by hand at
    16:00 it runs whatever they say; a forced stop still stops it; handed back to its controls
    it stops until the next one (25:00) starts it. A fork replays all of it bit for bit."""
    sim = WaterNetworkSimulator("Net3")
    sim.instantiate({"step_s": HOUR}, 0)
    assert sim.initial_inputs()["pump:10:hand"] == 0.0
    assert _run(sim, 16)[-1]["pump:10:running"] == 0.0  # its 15:00 control closed it
    sim.set_inputs({"pump:10:hand": 1.0})
    sim.do_step(16 * HOUR, HOUR)
    assert sim.get_outputs()["pump:10:running"] == 1.0
    assert sim.get_outputs()["pump:10:flow"] > 0.0
    snap = sim.snapshot()
    sim.set_inputs({"pump:10:status": 0.0})  # a forced stop wins over the hand start
    sim.do_step(17 * HOUR, HOUR)
    assert sim.get_outputs()["pump:10:running"] == 0.0
    sim.set_inputs({"pump:10:status": 1.0})  # released from the stop: still in hand
    sim.do_step(18 * HOUR, HOUR)
    assert sim.get_outputs()["pump:10:running"] == 1.0
    sim.set_inputs({"pump:10:hand": 0.0})  # handed back: off until a control starts it
    for hour in range(19, 24):
        sim.do_step(hour * HOUR, HOUR)
        assert sim.get_outputs()["pump:10:running"] == 0.0, hour
    sim.do_step(24 * HOUR, HOUR)
    sim.do_step(25 * HOUR, HOUR)
    assert sim.get_outputs()["pump:10:running"] == 1.0  # its 25:00 control opened it
    # a fork from the hand start replays to the same state as the run that never forked
    fork = WaterNetworkSimulator("Net3")
    fork.restore(snap)
    straight = WaterNetworkSimulator("Net3")
    straight.instantiate({"step_s": HOUR}, 0)
    _run(straight, 16)
    straight.set_inputs({"pump:10:hand": 1.0})
    straight.do_step(16 * HOUR, HOUR)
    fork.do_step(17 * HOUR, HOUR)
    straight.do_step(17 * HOUR, HOUR)
    assert fork.get_outputs() == straight.get_outputs()
    assert fork.get_outputs()["pump:10:running"] == 1.0
    for s in (sim, fork, straight):
        s.terminate()


def test_a_hand_start_of_a_level_controlled_pump_overrides_its_stop_level() -> None:
    """Net1's pump 9 is stopped by tank 2's high level; in hand it keeps running past it."""
    auto, hand = _fresh(), _fresh()
    hand.set_inputs({"pump:9:hand": 1.0})
    a, h = _run(auto, 24), _run(hand, 24)
    assert all(out["pump:9:running"] == 1.0 for out in h)
    assert any(out["pump:9:running"] == 0.0 for out in a)  # its controls stopped it at times
    assert max(out["tank:2:level"] for out in h) >= max(out["tank:2:level"] for out in a)


def test_a_station_outage_stops_all_its_pumps() -> None:
    sim = _fresh("Net3")
    stations = pump_stations(sim.wn)
    station, pumps = next(iter(stations.items()))
    sim.set_inputs({f"station:{station}:power": 0.0})
    out = _run(sim, 3)[-1]
    assert all(out[f"pump:{p}:running"] == 0.0 for p in pumps)
    sim.set_inputs({f"station:{station}:power": 1.0})
    sim.do_step(3 * HOUR, HOUR)
    assert any(sim.get_outputs()[f"pump:{p}:running"] == 1.0 for p in pumps)


def test_a_leak_loses_water_and_the_pump_works_harder() -> None:
    base, leaking = _fresh(), _fresh()
    leaking.set_inputs({"pipe:12:leak_area": 0.002})
    b, s = _run(base, 2)[-1], _run(leaking, 2)[-1]
    assert b["plant:leakage"] == 0.0
    # orifice law at the leak node's pressure: Q = 0.75 A sqrt(2 g p)
    p = s["node:13:pressure"]
    assert s["plant:leakage"] == pytest.approx(0.75 * 0.002 * math.sqrt(2 * 9.80665 * p), rel=1e-3)
    assert s["pump:9:flow"] > b["pump:9:flow"] or s["tank:2:level"] < b["tank:2:level"]
    assert s["plant:demand_served"] == pytest.approx(b["plant:demand_served"], rel=1e-2)
    leaking.set_inputs({"pipe:12:leak_area": 0.0})
    leaking.do_step(2 * HOUR, HOUR)
    assert leaking.get_outputs()["plant:leakage"] == 0.0


def test_wear_lowers_head_and_flow_and_raises_power_per_flow() -> None:
    new, worn = _fresh(), _fresh()
    worn.set_inputs({"pump:9:head_factor": 0.7, "pump:9:efficiency_factor": 0.8})
    n, w = new.get_outputs(), worn.get_outputs()
    assert w["pump:9:flow"] < n["pump:9:flow"]
    assert w["pump:9:power"] / w["pump:9:flow"] > n["pump:9:power"] / n["pump:9:flow"]


def test_demand_multiplier_scales_required_demand() -> None:
    base, more = _fresh(), _fresh()
    more.set_inputs({"plant:demand_multiplier": 1.5})
    b, m = base.get_outputs(), more.get_outputs()
    assert m["plant:demand_required"] == pytest.approx(1.5 * b["plant:demand_required"], rel=1e-4)


def test_a_closed_pipe_carries_no_flow() -> None:
    sim = _fresh()
    sim.set_inputs({"pipe:11:status": 0.0})
    out = _run(sim, 1)[-1]
    assert out["pipe:11:flow"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("model", ["Net1", "Net3", "Net6"])
def test_the_initial_inputs_change_nothing(model: str) -> None:
    fresh, told = _fresh(model), _fresh(model)
    initial = told.initial_inputs()
    declared = {v.name for v in told.info().variables if v.causality == "input"}
    assert set(initial) == declared
    told.set_inputs(initial)
    assert _run(told, 2) == _run(fresh, 2)


def test_a_valve_setting_moves_and_a_stuck_valve_ignores_it() -> None:
    """An active PRV of ky10 (one that passes flow) holds its downstream junction at its
    setting (m): lowered by 5 m, the junction follows; stuck, it does not."""
    probe = _fresh("ky10")
    out, wn = probe.get_outputs(), probe.wn
    valve = next(
        v
        for v in sorted(wn.valve_name_list)
        if wn.get_link(v).valve_type == "PRV" and out[f"valve:{v}:flow"] > 1e-3
    )
    downstream = f"node:{wn.get_link(valve).end_node_name}:pressure"
    setting = probe.initial_inputs()[f"valve:{valve}:setting"]
    assert out[downstream] == pytest.approx(setting, abs=1e-3)
    moved, stuck = _fresh("ky10"), _fresh("ky10")
    stuck.set_inputs({f"valve:{valve}:stuck": 1.0})
    for sim in (moved, stuck):
        sim.set_inputs({f"valve:{valve}:setting": setting - 5.0})
    assert moved.get_outputs()[downstream] == pytest.approx(setting - 5.0, abs=1e-3)
    assert stuck.get_outputs()[downstream] == pytest.approx(setting, abs=1e-6)


def test_same_inputs_give_identical_outputs() -> None:
    def scripted() -> list[dict[str, float]]:
        sim = _fresh("Net3", step_s=900.0)
        rows = []
        for k in range(16):
            if k == 4:
                sim.set_inputs({"pump:335:head_factor": 0.8, "pipe:20:leak_area": 0.001})
            sim.do_step(k * 900.0, 900.0)
            rows.append(sim.get_outputs())
        sim.terminate()
        return rows

    assert scripted() == scripted()


def test_restore_continues_bit_for_bit() -> None:
    sim = _fresh("Net3", step_s=900.0)
    for k in range(6):
        if k == 2:
            sim.set_inputs({"pump:10:status": 0.0, "plant:demand_multiplier": 1.2})
        sim.do_step(k * 900.0, 900.0)
    fork = sim.snapshot()

    def continue_for(n: int) -> list[dict[str, float]]:
        rows = []
        for k in range(6, 6 + n):
            sim.do_step(k * 900.0, 900.0)
            rows.append(sim.get_outputs())
        return rows

    first = continue_for(5)
    sim.restore(fork)
    assert continue_for(5) == first
    with pytest.raises(SimulatorError, match="snapshot"):
        sim.restore("not a snapshot")


def test_epanet_warnings_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Demand-driven Net1 with its pump stopped and 20 times the demand: negative pressures
    (EPANET warning 6), counted on the simulator, nothing on the log."""
    sim = _fresh(demand_model="DDA")
    sim.set_inputs({"pump:9:status": 0.0, "plant:demand_multiplier": 20.0})
    with caplog.at_level("WARNING"):
        _run(sim, 6)
    assert sim.warnings.get(6, 0) > 0
    assert not [r for r in caplog.records if r.name.startswith("wntr")]
    assert _fresh().warnings == {}


def test_bad_calls_raise_simulator_errors() -> None:
    sim = _fresh()
    with pytest.raises(SimulatorError, match="unknown input"):
        sim.set_inputs({"pump:nope:status": 0.0})
    with pytest.raises(SimulatorError, match="finite"):
        sim.set_inputs({"pump:9:speed": float("nan")})
    with pytest.raises(SimulatorError, match="network is at"):
        sim.do_step(HOUR, HOUR)
    with pytest.raises(SimulatorError, match="multiple"):
        sim.do_step(0.0, 1000.0)
    sim.terminate()
    sim.terminate()  # idempotent
    with pytest.raises(SimulatorError, match="not instantiated"):
        sim.get_outputs()


# ---- malformed and unsupported files: FILE:LINE: reason, one line ----

NET1 = (LIBRARY_DIR / "Net1.inp").read_text(encoding="utf-8").splitlines()


def _row(section: str, first_word: str) -> int:
    """0-based index of the row of ``section`` whose first word is ``first_word``."""
    current = None
    for i, line in enumerate(NET1):
        words = line.split(";")[0].split()
        if words and words[0].startswith("["):
            current = words[0]
        elif words and current == section and words[0] == first_word:
            return i
    raise AssertionError(f"no {first_word} in {section}")


def _mutated(tmp_path: Path, index: int, line: str) -> Path:
    lines = list(NET1)
    lines[index] = line
    path = tmp_path / "net.inp"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _expect_line(path: Path, line: int, *words: str) -> None:
    with pytest.raises(ModelFileError) as caught:
        WaterNetworkSimulator(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    for word in words:
        assert word in message


# case → (section, first word of the row replaced or None for the header, new text, words)
CASES: dict[str, tuple[str, str | None, str, tuple[str, ...]]] = {
    "bad number": ("[JUNCTIONS]", "11", " 11 7x0 150 ;", ("illegal numeric value",)),
    "unknown section": ("[TAGS]", None, "[BOGUS]", ("syntax error",)),
    "undefined node": (
        "[PIPES]",
        "12",
        " 12 12 99 5280 10 100 0 Open ;",
        ("undefined node", "[PIPES]"),
    ),
    "undefined pattern": ("[JUNCTIONS]", "13", " 13 695 100 NOPAT ;", ("pattern",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_files_name_the_line(tmp_path: Path, case: str) -> None:
    section, first, text, words = CASES[case]
    if first is None:
        index = next(i for i, line in enumerate(NET1) if line.strip().startswith(section))
    else:
        index = _row(section, first)
    _expect_line(_mutated(tmp_path, index, text), index + 1, *words)


def test_rules_are_refused_at_the_first_rule_line(tmp_path: Path) -> None:
    index = next(i for i, line in enumerate(NET1) if line.strip().startswith("[RULES]"))
    lines = list(NET1)
    lines[index + 1 : index + 1] = [
        "RULE 1",
        "IF TANK 2 LEVEL ABOVE 140",
        "THEN PUMP 9 STATUS IS CLOSED",
    ]
    path = tmp_path / "net.inp"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _expect_line(path, index + 2, "[RULES]", "not supported")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    junction=st.sampled_from(["10", "11", "12", "13", "21", "22", "23", "31", "32"]),
    junk=st.from_regex(r"[0-9]{0,2}[a-dA-Df-hF-Hj-mJ-Mo-zO-Z#$%]{1,3}[0-9]{0,2}", fullmatch=True),
)
def test_any_non_numeric_elevation_names_its_line(tmp_path: Path, junction: str, junk: str) -> None:
    index = _row("[JUNCTIONS]", junction)
    path = _mutated(tmp_path, index, f" {junction} {junk} 100 ;")
    _expect_line(path, index + 1, junk)


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "latin.inp"
    path.write_bytes(b"[TITLE]\nok\n[JUNCTIONS]\n 1 \xe9 10\n")
    _expect_line(path, 4, "UTF-8")
    with pytest.raises(ModelFileError, match=r"no such \.inp file"):
        WaterNetworkSimulator(tmp_path / "missing.inp")


def test_a_network_that_does_not_converge_says_so() -> None:
    """EPANET halts an unbalanced network whose UNBALANCED option is STOP: the run fails naming
    that, not a horizon it never reached."""
    sim = WaterNetworkSimulator("Net3")
    sim.wn.options.hydraulic.trials = 1  # too few for Net3 to converge
    sim.wn.options.hydraulic.unbalanced = "STOP"
    sim.instantiate({"step_s": 900, "horizon_s": 86400}, 1)
    with pytest.raises(SimulatorError, match=r"did not converge in 1 trials .* is STOP"):
        sim.do_step(0.0, 900.0)


def test_a_scenario_may_let_an_unbalanced_network_go_on() -> None:
    """``unbalanced = "continue"`` overrides the file's STOP: the same non-converging network
    runs its day, each unbalanced solution counted; ``"stop"`` halts it whatever the file says;
    anything else is refused by name. The network model itself is left as read."""
    sim = WaterNetworkSimulator("Net3")
    sim.wn.options.hydraulic.trials = 1
    sim.wn.options.hydraulic.unbalanced = "STOP"
    sim.instantiate({"step_s": 900, "horizon_s": 86400, "unbalanced": "continue"}, 1)
    for k in range(8):
        sim.do_step(k * 900.0, 900.0)
    # EPANET warning 1 (unbalanced) or 2 (solved only with link status frozen), every solution
    assert sim.warnings.get(1, 0) + sim.warnings.get(2, 0) >= 8
    assert sim.get_outputs()["plant:demand_required"] > 0
    assert sim.wn.options.hydraulic.unbalanced == "STOP"
    sim.terminate()

    sim.wn.options.hydraulic.unbalanced = "CONTINUE"
    sim.instantiate({"step_s": 900, "horizon_s": 86400, "unbalanced": "stop"}, 1)
    with pytest.raises(SimulatorError, match="did not converge"):
        sim.do_step(0.0, 900.0)
    sim.terminate()
    with pytest.raises(SimulatorError, match="unbalanced must be one of file, stop, continue"):
        sim.instantiate({"step_s": 900, "unbalanced": "maybe"}, 1)
