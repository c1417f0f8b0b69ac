"""Scenario files: the shipped ones load, hashes, line-precise errors, the fault schedule."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from twinkg.ontology.errors import ScenarioError
from twinkg.sim.scenario import (
    FaultSpec,
    Scenario,
    epanet_library,
    fault_schedule,
    load_scenario,
    parse_scenario,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.toml"))

BASE = """\
schema = "twinkg-scenario/1"
name = "net1-test"
version = "1.0.0"
description = "a test"

[plant]
kind = "epanet"
model = "Net1"

[time]
horizon_h = 48.0
step_s = 900.0
telemetry_s = 900.0
decide_s = 3600.0
warmup_h = 12.0

[demand]
multiplier = 1.0

[[fault]]
kind = "pump_wear"
target = "9"
at_h = 20.0
magnitude = 2.0

[[fault]]
kind = "power_outage"
target = "9"
rate_per_h = 0.05
duration_h = 2.0

[maintenance]
crews = 1
repair_h = 8.0

[approver]
behaviour = "approve"
delay_h = 0.25

[run]
seeds = [1, 2, 3]
"""
BASE_LINES = BASE.count("\n")


def _line(text: str, needle: str, nth: int = 0) -> int:
    """The 1-based line of the ``nth`` line that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth]


def _errors(text: str) -> list[tuple[int, str]]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "f.toml")
    out = []
    for row in str(caught.value).splitlines():
        match = re.match(r"f\.toml:(\d+): (.*)$", row)
        assert match, row
        out.append((int(match.group(1)), match.group(2)))
    return out


# --------------------------------------------------------------------------------------------
# The shipped scenarios


def test_six_scenarios_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"tep-a-feed-loss", "tep-reactor-cooling-step", "tep-random-variation"} <= names
    assert {"net1-pump-wear", "net3-station-faults", "net6-large-network"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.faults, "every shipped scenario has faults"
    assert len(scenario.run.seeds) == 5
    assert len(scenario.content_hash) == 64
    assert scenario.source == str(path)
    if scenario.plant.kind == "tep":
        assert scenario.time.horizon_h == 48.0
        assert (scenario.time.step_s, scenario.time.telemetry_s) == (36.0, 180.0)
        assert (scenario.time.decide_s, scenario.time.warmup_h) == (900.0, 4.0)
        assert any(f.kind == "disturbance" for f in scenario.faults)
        assert any(f.kind.startswith("sensor_") for f in scenario.faults)
    else:
        assert scenario.time.horizon_h == 168.0
        assert (scenario.time.step_s, scenario.time.telemetry_s) == (900.0, 900.0)
        assert (scenario.time.decide_s, scenario.time.warmup_h) == (3600.0, 24.0)
        assert scenario.model_file is not None and scenario.model_file.is_file()
    events = fault_schedule(scenario, scenario.run.seeds[0])
    assert all(scenario.time.warmup_s <= e.time_s < scenario.time.horizon_s for e in events)


def test_water_scenarios_cover_every_fault_kind() -> None:
    kinds = {
        f.kind
        for p in SHIPPED
        for f in load_scenario(p).faults
        if load_scenario(p).plant.kind == "epanet"
    }
    assert kinds >= {
        "pump_wear",
        "bearing_failure",
        "seal_leak",
        "pipe_leak",
        "pipe_burst",
        "power_outage",
        "stuck_valve",
        "sensor_drift",
        "sensor_stuck",
        "sensor_dropout",
    }


def test_tep_a_feed_loss_is_idv6_after_the_warmup() -> None:
    scenario = load_scenario(SCENARIOS / "tep-a-feed-loss.toml")
    (idv,) = [f for f in scenario.faults if f.kind == "disturbance"]
    assert idv.target == "idv:6"
    assert idv.at_h is not None and scenario.time.warmup_h < idv.at_h
    # tep-studio's trip comes ~7.5 h after the onset: well inside the horizon.
    assert idv.at_h + 7.5 < scenario.time.horizon_h


# --------------------------------------------------------------------------------------------
# Hashes


def test_content_hash_ignores_formatting_comments_order_and_defaults() -> None:
    base = parse_scenario(BASE, "f.toml")
    lines = BASE.splitlines()
    reordered = "\n".join(
        ["# a comment", *lines[:4][::-1], ""]  # top-level keys reversed
        + [line + "   # trailing" if "=" in line else line for line in lines[4:]]
    )
    reordered = reordered.replace("horizon_h = 48.0", "horizon_h = 48").replace(
        "[time]\n", "[time]\nwarmup_h = 12.0\n", 1
    )
    reordered = reordered.replace("warmup_h = 12.0   # trailing\n", "")
    reordered = reordered.replace("[demand]\nmultiplier = 1.0   # trailing", "[demand]")
    reordered = reordered.replace("crews = 1   # trailing", "crews=1\ncost_per_repair = 4000.0")
    reordered = reordered.replace(
        '[plant]\nkind = "epanet"   # trailing\nmodel = "Net1"   # trailing',
        'plant = { model = "Net1", kind = "epanet" }',
    )
    assert reordered != BASE
    other = parse_scenario(reordered, "g.toml")
    assert other.content_hash == base.content_hash
    assert other.raw_hash != base.raw_hash


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('name = "net1-test"', 'name = "net1-test2"'),
        ('version = "1.0.0"', 'version = "1.0.1"'),
        ('description = "a test"', 'description = "a test."'),
        ("horizon_h = 48.0", "horizon_h = 49.0"),
        ("warmup_h = 12.0", "warmup_h = 12.25"),
        ("multiplier = 1.0", "multiplier = 1.000001"),
        ("magnitude = 2.0", "magnitude = 2.5"),
        ("rate_per_h = 0.05", "rate_per_h = 0.06"),
        ("crews = 1", "crews = 2"),
        ('behaviour = "approve"', 'behaviour = "reject"'),
        ("seeds = [1, 2, 3]", "seeds = [1, 3, 2]"),
        ("repair_h = 8.0", "repair_h = 8.0\npreventive_h = 2.5"),
    ],
)
def test_content_hash_changes_with_any_value(old: str, new: str) -> None:
    assert old in BASE
    changed = parse_scenario(BASE.replace(old, new), "f.toml")
    assert changed.content_hash != parse_scenario(BASE, "f.toml").content_hash


def test_raw_hash_is_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_scenario(path).raw_hash == hashlib.sha256(BASE.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Errors name the line


ERROR_CASES = [
    # (id, old, new, needle of the expected line, expected path, reason fragment)
    ("unknown key", "crews = 1", "crews = 1\ncrew = 2", "crew = 2", "maintenance.crew", "unknown"),
    (
        "unknown top key",
        'version = "1.0.0"',
        'version = "1.0.0"\nowner = "x"',
        "owner",
        "owner",
        "",
    ),
    ("unknown table", "[run]", "[extra]\na = 1\n[run]", "[extra]", "extra", "unknown"),
    ("wrong type", "horizon_h = 48.0", 'horizon_h = "48"', "horizon_h", "time.horizon_h", ""),
    ("out of range", "step_s = 900.0", "step_s = -900.0", "step_s", "time.step_s", "greater"),
    ("crews range", "crews = 1", "crews = -1", "crews", "maintenance.crews", ""),
    (
        "both onsets",
        "rate_per_h = 0.05",
        "rate_per_h = 0.05\nat_h = 30.0",
        "rate_per_h",
        "fault[1].rate_per_h",
        "not both",
    ),
    ("no onset", "at_h = 20.0\n", "", "[[fault]]", "fault[0].rate_per_h", "give at_h"),
    (
        "telemetry multiple",
        "telemetry_s = 900.0",
        "telemetry_s = 1000.0",
        "telemetry_s",
        "time.telemetry_s",
        "multiple of step_s",
    ),
    (
        "decide multiple",
        "decide_s = 3600.0",
        "decide_s = 3700.0",
        "decide_s",
        "time.decide_s",
        "multiple of step_s",
    ),
    (
        "warmup >= horizon",
        "warmup_h = 12.0",
        "warmup_h = 48.0",
        "warmup_h",
        "time.warmup_h",
        "less than horizon_h",
    ),
    (
        "unknown fault kind",
        'kind = "pump_wear"',
        'kind = "pump_melt"',
        "pump_melt",
        "fault[0].kind",
        "",
    ),
    ("unknown plant kind", 'kind = "epanet"', 'kind = "aspen"', "aspen", "plant.kind", ""),
    (
        "disturbance on water",
        'kind = "power_outage"\ntarget = "9"',
        'kind = "disturbance"\ntarget = "idv:6"',
        "disturbance",
        "fault[1].kind",
        "not a fault of a epanet plant",
    ),
    (
        "duplicate fault",
        "[maintenance]",
        '[[fault]]  # dup\nkind = "pump_wear"\ntarget = "9"\nat_h = 20.0\n\n[maintenance]',
        "# dup",
        "fault[2]",
        "duplicates fault[0]",
    ),
    ("seeds not unique", "seeds = [1, 2, 3]", "seeds = [1, 2, 2]", "seeds", "run.seeds", "unique"),
    (
        "seed not positive",
        "seeds = [1, 2, 3]",
        "seeds = [1, 0, 3]",
        "seeds",
        "run.seeds[1]",
        "greater than 0",
    ),
    ("no seeds", "seeds = [1, 2, 3]", "seeds = []", "seeds", "run.seeds", ""),
    ("name", 'name = "net1-test"', 'name = "Net1_Test"', "name =", "name", "[a-z0-9-]"),
    ("version", 'version = "1.0.0"', 'version = "1.0"', "version", "version", "semantic"),
    (
        "schema",
        'schema = "twinkg-scenario/1"',
        'schema = "twinkg-scenario/2"',
        "schema",
        "schema",
        "",
    ),
    ("missing key", "step_s = 900.0\n", "", "[time]", "time.step_s", "missing"),
    ("missing table", "[run]\nseeds = [1, 2, 3]\n", "", "schema", "run", "missing"),
    (
        "model missing",
        'model = "Net1"',
        'model = "nets/missing.inp"',
        "model",
        "plant.model",
        "no such file",
    ),
    ("not a network", 'model = "Net1"', 'model = "Net99"', "model", "plant.model", "neither"),
    (
        "unbalanced value",
        'model = "Net1"',
        'model = "Net1"\nunbalanced = "sometimes"',
        "unbalanced",
        "plant.unbalanced",
        "continue",
    ),
    (
        "unbalanced off epanet",
        'kind = "epanet"\nmodel = "Net1"',
        'kind = "tep"\nmodel = "mode1"\nunbalanced = "stop"',
        "[plant]",
        "plant",
        "epanet networks only",
    ),
    (
        "risk horizon negative",
        "warmup_h = 12.0",
        "warmup_h = 12.0\nrisk_horizon_h = -1.0",
        "risk_horizon_h",
        "time.risk_horizon_h",
        "greater than or equal",
    ),
    (
        "tep mode",
        'kind = "epanet"\nmodel = "Net1"',
        'kind = "tep"\nmodel = "mode7"',
        "[plant]",
        "plant",
        "mode1",
    ),
    (
        "pump id",
        'target = "9"\nat_h',
        'target = "99"\nat_h',
        'target = "99"',
        "fault[0].target",
        "not a pump",
    ),
    (
        "station id",
        'target = "9"\nrate',
        'target = "10"\nrate',
        'target = "10"',
        "fault[1].target",
        "pumping station",
    ),
    ("onset in warmup", "at_h = 20.0", "at_h = 2.0", "at_h", "fault[0].at_h", "warm-up"),
    ("onset after horizon", "at_h = 20.0", "at_h = 50.0", "at_h", "fault[0].at_h", "horizon"),
    ("outage without duration", "duration_h = 2.0\n", "", "[[fault]]@1", "fault[1]", "duration_h"),
    (
        "wear with duration",
        "magnitude = 2.0",
        "magnitude = 2.0\nduration_h = 3.0",
        "duration_h = 3.0",
        "fault[0].duration_h",
        "until repaired",
    ),
    (
        "magnitude kind",
        "duration_h = 2.0",
        "duration_h = 2.0\nmagnitude = 3.0",
        "magnitude = 3.0",
        "fault[1].magnitude",
        "no magnitude",
    ),
    (
        "approve_after without after_h",
        'behaviour = "approve"',
        'behaviour = "approve_after"',
        "[approver]",
        "approver.after_h",
        "needs after_h",
    ),
    (
        "multi-line array item",
        "seeds = [1, 2, 3]",
        "seeds = [\n  1,\n  -2,\n]",
        "seeds",
        "run.seeds[1]",
        "greater than 0",
    ),
    (
        "inline table key",
        '[approver]\nbehaviour = "approve"\ndelay_h = 0.25',
        '[approver]\nbehaviour = "approve"\ndelay_h = { x = 1 }',
        "delay_h",
        "approver.delay_h",
        "number",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "needle", "path", "reason"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_schema_error_names_the_line(
    old: str, new: str, needle: str, path: str, reason: str
) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    errors = _errors(text)
    needle, _, nth = needle.partition("@")
    expected_line = _line(text, needle, int(nth or 0))
    matching = [(line, msg) for line, msg in errors if msg.startswith(f"{path}: ")]
    assert matching, errors
    line, message = matching[0]
    assert line == expected_line, (errors, expected_line)
    assert reason in message


def test_toml_syntax_error_has_line_and_column() -> None:
    text = BASE.replace("step_s = 900.0", "step_s = = 900.0")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "dir/f.toml")
    line = _line(text, "step_s")
    assert re.fullmatch(rf"dir/f\.toml:{line}:\d+: .+", str(caught.value))


def test_every_error_is_reported_once_in_line_order() -> None:
    text = BASE.replace("crews = 1", "crews = -1").replace("horizon_h = 48.0", "horizon_h = 0")
    text = text.replace('version = "1.0.0"', 'version = "one"')
    errors = _errors(text)
    assert [line for line, _ in errors] == sorted(line for line, _ in errors)
    paths = [msg.split(":")[0] for _, msg in errors]
    assert paths == ["version", "time.horizon_h", "maintenance.crews"]


def test_inline_table_errors_point_at_its_key() -> None:
    text = BASE.replace("[demand]\nmultiplier = 1.0\n", "").replace(
        'description = "a test"', 'description = "a test"\ndemand = { multiplier = -1.0 }'
    )
    errors = _errors(text)
    assert errors == [(_line(text, "demand ="), errors[0][1])]
    assert errors[0][1].startswith("demand.multiplier: ")


def test_integers_are_floats_but_strings_are_not_numbers() -> None:
    assert (
        parse_scenario(BASE.replace("horizon_h = 48.0", "horizon_h = 48"), "f").time.horizon_h
        == 48.0
    )
    errors = _errors(BASE.replace("crews = 1", "crews = 1.5"))
    assert errors[0][1].startswith("maintenance.crews: ")
    errors = _errors(BASE.replace("crews = 1", "crews = true"))
    assert errors[0][1].startswith("maintenance.crews: ")


def test_relative_model_path_resolves_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "nets").mkdir()
    shutil.copy(epanet_library()["Net1"], tmp_path / "nets" / "my.inp")
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace('model = "Net1"', 'model = "nets/my.inp"'), encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.model_file == tmp_path / "nets" / "my.inp"
    (tmp_path / "nets" / "my.inp").unlink()
    with pytest.raises(ScenarioError, match=rf"s\.toml:{_line(BASE, 'model')}: plant\.model"):
        load_scenario(path)


def test_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'schema = "x"\nname = "\xff"\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml:2: not UTF-8"):
        load_scenario(bad)


def test_models_built_in_python_keep_the_cross_field_rules() -> None:
    data = parse_scenario(BASE, "f.toml").model_dump(by_alias=True)
    data["fault"][0]["at_h"] = 1.0  # inside the warm-up
    with pytest.raises(ValidationError, match="warm-up"):
        Scenario.model_validate(data)
    with pytest.raises(ValidationError, match="not both"):
        FaultSpec(kind="pump_wear", target="9", at_h=1.0, rate_per_h=0.1)


@pytest.mark.parametrize("network", ["Net1", "Net3", "Net6"])
def test_element_ids_agree_with_wntr_and_the_water_simulator(network: str) -> None:
    from wntr.network import (  # type: ignore[import-untyped]  # noqa: PLC0415
        WaterNetworkModel,
    )

    from twinkg.sim.scenario import _inp_elements  # noqa: PLC0415
    from twinkg.sim.water import pump_stations  # noqa: PLC0415

    path = epanet_library()[network]
    wn = WaterNetworkModel(str(path))
    elements = _inp_elements(path)
    assert elements.pumps == set(wn.pump_name_list)
    assert elements.pipes == set(wn.pipe_name_list)
    assert elements.valves == set(wn.valve_name_list)
    assert elements.tanks == set(wn.tank_name_list)
    assert elements.nodes == set(wn.node_name_list)
    assert elements.stations == set(pump_stations(wn))


def test_tep_targets_are_checked() -> None:
    text = (SCENARIOS / "tep-a-feed-loss.toml").read_text(encoding="utf-8")
    errors = _errors(text.replace('"idv:6"', '"idv:29"'))
    assert errors[0][0] == _line(text, '"idv:6"')
    assert "TEP disturbance" in errors[0][1]
    errors = _errors(text.replace("xmeas:compressor_work", "xmeas:compressor_wrk"))
    assert errors[0][0] == _line(text, "xmeas:compressor_work")
    errors = _errors(text.replace('kind = "sensor_stuck"', 'kind = "power_outage"'))
    assert "not a fault of a tep plant" in errors[0][1]


# Values a mutation may put in place of a key's value (TOML literals).
TOML_VALUES = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "true", "false", "[]", "{}", '""', "0", "1e308"]),
    st.text(st.characters(codec="ascii", exclude_characters='"\\\n\r'), max_size=12).map(
        lambda s: f'"{s}"'
    ),
    st.lists(st.integers(-5, 5), max_size=4).map(lambda xs: "[" + ", ".join(map(str, xs)) + "]"),
)
VALUE_LINES = [i for i, line in enumerate(BASE.splitlines()) if " = " in line]


def _paths_of_base() -> dict[int, str]:
    """The dotted path of each key line of BASE, worked out by hand from its headers."""
    paths: dict[int, str] = {}
    prefix, faults = "", 0
    for i, line in enumerate(BASE.splitlines()):
        if line == "[[fault]]":
            prefix, faults = f"fault[{faults}].", faults + 1
        elif line.startswith("["):
            prefix = line.strip("[]") + "."
        elif " = " in line:
            paths[i] = prefix + line.split(" = ", 1)[0]
    return paths


BASE_PATHS = _paths_of_base()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.sampled_from(VALUE_LINES), value=TOML_VALUES)
def test_mutated_values_fail_on_a_line_inside_the_file(index: int, value: str) -> None:
    lines = BASE.splitlines()
    key = lines[index].split(" = ", 1)[0]
    lines[index] = f"{key} = {value}"
    text = "\n".join(lines) + "\n"
    try:
        parse_scenario(text, "f.toml")
    except ScenarioError as exc:
        rows = str(exc).splitlines()
        assert rows
        for row in rows:
            match = re.match(r"f\.toml:(\d+)(?::\d+)?: (\S+?)(?:\[\d+\])?: ", row)
            if match is None:  # a TOML syntax error: FILE:LINE:COL: reason
                match = re.match(r"f\.toml:(\d+):\d+: \S", row)
                assert match, row
                assert int(match.group(1)) == index + 1
                continue
            assert 1 <= int(match.group(1)) <= BASE_LINES
            if match.group(2) == BASE_PATHS[index]:  # an error about the mutated key itself
                assert int(match.group(1)) == index + 1, row


# --------------------------------------------------------------------------------------------
# The fault schedule


def _rate_scenario(rate: float = 0.2) -> Scenario:
    text = BASE.replace("rate_per_h = 0.05", f"rate_per_h = {rate}").replace(
        "horizon_h = 48.0", "horizon_h = 240.0"
    )
    return parse_scenario(text, "f.toml")


def test_fault_schedule_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    scenario = _rate_scenario()
    first = fault_schedule(scenario, 7)
    assert first == fault_schedule(scenario, 7)
    assert first != fault_schedule(scenario, 8)
    outages = [e for e in first if e.kind == "power_outage"]
    assert outages
    for event in outages:
        assert scenario.time.warmup_s <= event.time_s < scenario.time.horizon_s
        assert event.end_s == pytest.approx(event.time_s + 2.0 * 3600.0)
    assert [e.time_s for e in first] == sorted(e.time_s for e in first)


def test_at_h_fault_is_one_exact_event() -> None:
    scenario = _rate_scenario()
    wear = [e for e in fault_schedule(scenario, 3) if e.kind == "pump_wear"]
    assert len(wear) == 1
    assert (wear[0].time_s, wear[0].target, wear[0].magnitude, wear[0].end_s) == (
        72000.0,
        "9",
        2.0,
        None,
    )


def test_rate_onsets_count_like_a_poisson_process() -> None:
    scenario = _rate_scenario(rate=0.1)
    window_h = scenario.time.horizon_h - scenario.time.warmup_h  # 228 h → mean 22.8 onsets
    counts = [
        sum(e.kind == "power_outage" for e in fault_schedule(scenario, seed))
        for seed in range(1, 201)
    ]
    mean = sum(counts) / len(counts)
    expected = 0.1 * window_h
    # the mean of 200 Poisson counts has standard deviation sqrt(22.8 / 200) ≈ 0.34
    assert abs(mean - expected) < 5 * (expected / len(counts)) ** 0.5


def test_adding_a_fault_does_not_move_the_others() -> None:
    scenario = _rate_scenario()
    text = BASE.replace("rate_per_h = 0.05", "rate_per_h = 0.2").replace(
        "horizon_h = 48.0", "horizon_h = 240.0"
    )
    extra = text.replace(
        "[maintenance]",
        '[[fault]]\nkind = "pipe_leak"\ntarget = "12"\nrate_per_h = 0.1\nmagnitude = 0.001\n\n'
        "[maintenance]",
    )
    before = [e for e in fault_schedule(scenario, 5) if e.kind == "power_outage"]
    after = [
        e for e in fault_schedule(parse_scenario(extra, "f.toml"), 5) if e.kind == "power_outage"
    ]
    assert before == after
