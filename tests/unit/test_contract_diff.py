"""The contract compatibility checker: the data cases, the published versions, and the CLI."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinkg.api.cli.contracts import BREAKING_EXIT, app
from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.ontology.catalog import parse_turtle
from twinkg.reasoner.validation import check_shapes
from twinkg.shapes import registry
from twinkg.shapes.diff import Aspect, diff

CASES = Path(__file__).resolve().parents[1] / "contract_diff_cases"
CASE_DIRS = sorted(d for d in CASES.iterdir() if d.is_dir())
SENSOR_1_0 = registry.CONTRACTS_DIR / "sensor" / "1.0.0.ttl"


def _expected(case: Path) -> tuple[str, int]:
    lines = [
        line.strip()
        for line in (case / "expected.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return lines[0], int(lines[1])


def test_there_are_enough_cases_of_both_kinds() -> None:
    verdicts = [_expected(case)[0] for case in CASE_DIRS]
    assert verdicts.count("breaking") >= 10
    assert verdicts.count("compatible") >= 10
    assert set(verdicts) == {"breaking", "compatible"}


@pytest.mark.parametrize("case", CASE_DIRS, ids=[d.name for d in CASE_DIRS])
def test_diff_case(case: Path) -> None:
    old, new = parse_turtle([case / "old.ttl"]), parse_turtle([case / "new.ttl"])
    check_shapes(old)
    check_shapes(new)
    verdict, count = _expected(case)
    result = diff(old, new)
    shown = "\n".join(result.describe(c) for c in result.changes)
    assert ("breaking" if result.breaking else "compatible") == verdict, shown
    assert len(result.changes) == count, shown


def test_a_graph_has_no_changes_against_itself() -> None:
    graph = parse_turtle([SENSOR_1_0])
    assert diff(graph, graph).changes == ()
    assert diff(graph, graph).summary() == "no changes"


def test_sensor_1_1_adds_an_optional_manufacturer_compatibly() -> None:
    old = registry.contract("sensor", "1.0.0").graph
    new = registry.contract("sensor", "1.1.0").graph
    result = diff(old, new)
    assert not result.breaking
    [change] = result.changes
    assert change.component == Aspect.PROPERTY
    assert change.path is not None and change.path.endswith("#manufacturer")
    assert change.shape.endswith("#SensorShape")
    # and back: removing an optional property is compatible too
    assert not diff(new, old).breaking


def _narrowed_sensor_range(tmp_path: Path) -> Path:
    text = SENSOR_1_0.read_text()
    narrowed = text.replace(
        '    sh:minExclusive 0 ;\n    sh:message "A sensor has exactly one nominal sampling',
        "    sh:minExclusive 0 ;\n    sh:maxInclusive 3600 ;\n"
        '    sh:message "A sensor has exactly one nominal sampling',
    )
    assert narrowed != text, "the sampling-period shape of sensor 1.0.0 changed; adapt this test"
    path = tmp_path / "sensor-narrowed.ttl"
    path.write_text(narrowed)
    return path


def test_a_narrowed_range_is_breaking(tmp_path: Path) -> None:
    result = diff(parse_turtle([SENSOR_1_0]), parse_turtle([_narrowed_sensor_range(tmp_path)]))
    assert result.breaking
    [change] = result.changes
    assert change.component == Aspect.UPPER_BOUND
    assert change.path is not None and change.path.endswith("#samplingPeriod")
    assert (change.old, change.new) == (None, "<= 3600")


def _published_pairs() -> list[tuple[str, registry.Version, registry.Version]]:
    return [
        (name, older, newer)
        for name in registry.names()
        for older, newer in pairwise(registry.versions(name))
    ]


@pytest.mark.parametrize(("name", "older", "newer"), _published_pairs(), ids=str)
def test_published_versions_follow_semver(
    name: str, older: registry.Version, newer: registry.Version
) -> None:
    result = diff(registry.contract(name, older).graph, registry.contract(name, newer).graph)
    shown = "\n".join(result.describe(c) for c in result.changes)
    if result.breaking:
        assert newer.major > older.major, f"{name} {older} -> {newer} breaks:\n{shown}"
    wording = {Aspect.MESSAGE, Aspect.ANNOTATION}
    if any(c.component not in wording for c in result.changes):
        assert (newer.major, newer.minor) > (older.major, older.minor), (
            f"{name} {older} -> {newer} changes constraints in a patch release:\n{shown}"
        )


def test_at_least_one_contract_has_two_versions() -> None:
    assert any(len(registry.versions(name)) > 1 for name in registry.names())


# ---- twinkg contracts diff / list / check ----

runner = CliRunner()


def test_cli_diff_compatible_exits_0() -> None:
    result = runner.invoke(app, ["diff", "sensor@1.0.0", "sensor@1.1.0"])
    assert result.exit_code == 0, result.output
    assert "compatible" in result.stdout
    assert "sensor:SensorShape  tk:manufacturer" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("1 change, none breaking")


def test_cli_diff_breaking_exits_7(tmp_path: Path) -> None:
    narrowed = _narrowed_sensor_range(tmp_path)
    result = runner.invoke(app, ["diff", str(SENSOR_1_0), str(narrowed)])
    assert result.exit_code == BREAKING_EXIT == 7
    first, summary = result.stdout.strip().splitlines()
    assert first.startswith("BREAKING")
    assert "tk:samplingPeriod" in first
    assert "upper bound" in first
    assert summary.startswith("1 change, 1 breaking")


def test_cli_diff_files_of_a_case() -> None:
    case = CASES / "in-value-removed"
    result = runner.invoke(app, ["diff", str(case / "old.ttl"), str(case / "new.ttl")])
    assert result.exit_code == 7
    assert '"unavailable"' in result.stdout


def _error_line(result_stderr: str) -> str:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    return lines[0]


def test_cli_diff_missing_file_exits_5(tmp_path: Path) -> None:
    result = runner.invoke(app, ["diff", str(tmp_path / "nope.ttl"), "sensor@1.0.0"])
    assert result.exit_code == 5
    assert _error_line(result.stderr).startswith("error[invalid_input]: ")
    assert "nope.ttl" in result.stderr


def test_cli_diff_malformed_turtle_exits_5(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ttl"
    bad.write_text("@prefix sh: <http://www.w3.org/ns/shacl#> .\nthis is not turtle .\n")
    result = runner.invoke(app, ["diff", str(bad), "sensor@1.0.0"])
    assert result.exit_code == 5
    assert _error_line(result.stderr).startswith("error[turtle_malformed]: ")


def test_cli_diff_unknown_contract_exits_5() -> None:
    for ref, code in (("nothing@1.0.0", "contract_unknown"), ("sensor@9.9.9", "contract_unknown")):
        result = runner.invoke(app, ["diff", ref, "sensor@1.0.0"])
        assert result.exit_code == 5, ref
        assert _error_line(result.stderr).startswith(f"error[{code}]: "), result.stderr


def test_cli_diff_shapes_failing_meta_shacl_exit_5(tmp_path: Path) -> None:
    bad = tmp_path / "bad-shapes.ttl"
    bad.write_text(
        "@prefix sh: <http://www.w3.org/ns/shacl#> .\n@prefix ex: <https://example.org/> .\n"
        'ex:S a sh:NodeShape ; sh:targetClass ex:C ; sh:minCount "many" .\n'
    )
    result = runner.invoke(app, ["diff", str(bad), "sensor@1.0.0"])
    assert result.exit_code == 5
    assert _error_line(result.stderr).startswith("error[shapes_invalid]: ")


def test_cli_list_marks_the_current_versions() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"asset", "sensor", "event"} <= lines.keys()
    assert lines["sensor"].split(None, 1)[1] == "1.0.0, 1.1.0, 2.0.0, 2.1.0 (current)"


def test_cli_check_passes_on_the_published_contracts() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    checked = [line for line in result.stdout.splitlines() if line.startswith("ok  ")]
    assert len(checked) == sum(len(registry.versions(n)) for n in registry.names())


def test_cli_validate_gates_data_on_a_contract(tmp_path: Path) -> None:
    plant = PLANTS_DIR / "skab-testbed.ttl"
    ok = runner.invoke(app, ["validate", str(plant), "--contract", "sensor@2.0.0"])
    assert ok.exit_code == 0, ok.output
    assert "conforms to sensor@2.0.0" in ok.output
    bad = tmp_path / "bad.ttl"
    bad.write_text(plant.read_text(encoding="utf-8").replace('"A"', '"Z"'), encoding="utf-8")
    refused = runner.invoke(app, ["validate", str(bad)])
    assert refused.exit_code == 5
    assert "skab-testbed/pump" in refused.output and "error[contract_violation]" in refused.output
    missing = runner.invoke(app, ["validate", str(tmp_path / "none.ttl")])
    assert missing.exit_code == 5 and "no such file" in missing.output
    unknown = runner.invoke(app, ["validate", str(plant), "--contract", "sensor@7.0.0"])
    assert unknown.exit_code == 5 and "contract_unknown" in unknown.output
