"""The FMI 2.0 path for real: a tank FMU built with pythonfmu, run through fmpy by the master.

The FMU is built at test time from ``tests/fmu/tank_slave.py`` (``python -m pythonfmu build``);
pythonfmu ships the compiled FMI wrapper, so no C compiler is needed. Malformed and unsupported
FMUs are derived from the built one by rewriting its archive.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from twinkg.ontology.errors import ModelFileError, SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable
from twinkg.sim.fmu import FmuSimulator
from twinkg.sim.master import Connection, CoSimulation

SLAVE = Path(__file__).resolve().parents[1] / "fmu" / "tank_slave.py"
AREA, LEVEL0, INFLOW = 2.0, 1.5, 0.04


def _build(out: Path, *options: str) -> Path:
    pytest.importorskip("pythonfmu", reason="pythonfmu (a dev dependency) is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "pythonfmu", "build", "-f", str(SLAVE), "-d", str(out), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"pythonfmu build failed: {result.stderr}"
    fmu = out / "Tank.fmu"
    with zipfile.ZipFile(fmu) as archive:
        binaries = [n for n in archive.namelist() if n.startswith("binaries/linux64/")]
        if sys.platform.startswith("linux") and not binaries:
            pytest.skip("pythonfmu ships no linux64 binary for this machine")
    return fmu


@pytest.fixture(scope="module")
def tank_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tank FMU, without state handling."""
    return _build(tmp_path_factory.mktemp("fmu"))


@pytest.fixture(scope="module")
def forkable_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tank FMU built with ``--handle-state`` (canGetAndSetFMUstate)."""
    return _build(tmp_path_factory.mktemp("fmu-state"), "--handle-state")


class Source:
    """A constant flow source (m³/s) in Python, coupled to the FMU by a connection."""

    def __init__(self) -> None:
        self.flow = 0.0

    def info(self) -> ModelInfo:
        return ModelInfo("source", "1", (Variable("flow", "output", "m3/s"),))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        self.flow = float(parameters["flow"])

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        if inputs:
            raise SimulatorError("source has no inputs")

    def do_step(self, t: float, dt: float) -> None:
        """Constant."""

    def get_outputs(self) -> dict[str, float]:
        return {"flow": self.flow}

    def terminate(self) -> None:
        """Nothing held."""

    def snapshot(self) -> object:
        return self.flow

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, float)
        self.flow = snapshot


def _master(fmu: Path, dt: float = 10.0) -> tuple[CoSimulation, FmuSimulator]:
    tank = FmuSimulator(fmu)
    master = CoSimulation(
        {"source": Source(), "tank": tank}, [Connection("source", "flow", "tank", "inflow")], dt=dt
    )
    master.instantiate(
        {"source": {"flow": INFLOW}, "tank": {"area": AREA, "level0": LEVEL0}}, seed=3
    )
    return master, tank


def test_the_model_description_becomes_the_variables(tank_fmu: Path) -> None:
    info = FmuSimulator(tank_fmu).info()
    assert info.name == "fmpy:Tank"
    assert "fmpy 0.3" in info.version and "guid" in info.version
    causality = {v.name: v.causality for v in info.variables}
    assert causality == {
        "area": "parameter",
        "level0": "parameter",
        "max_level": "parameter",
        "inflow": "input",
        "outflow": "input",
        "level": "output",
        "overflowing": "output",
    }


def test_units_and_ranges_come_from_the_model_description(tank_fmu: Path, tmp_path: Path) -> None:
    def with_unit(xml: str) -> str:
        units = '<UnitDefinitions><Unit name="m"><BaseUnit m="1"/></Unit></UnitDefinitions>'
        xml = xml.replace("<LogCategories>", units + "<LogCategories>", 1)
        head, tail = xml.split('name="level"', 1)
        return (
            head + 'name="level"' + tail.replace("<Real/>", '<Real unit="m" min="0" max="8"/>', 1)
        )

    info = FmuSimulator(_rewrite(tank_fmu, tmp_path / "units.fmu", with_unit)).info()
    level = next(v for v in info.variables if v.name == "level")
    assert (level.unit, level.minimum, level.maximum) == ("m", 0.0, 8.0)


def test_the_level_follows_inflow_minus_outflow(tank_fmu: Path) -> None:
    master, tank = _master(tank_fmu)
    assert master.outputs["tank"]["level"] == LEVEL0  # the parameter set as a start value
    outflow = 0.01
    master.set_inputs("tank", {"outflow": outflow})
    levels = []
    for _ in range(30):
        levels.append(master.step()["tank"]["level"])
    # Jacobi: the tank's first step sees the source's flow at t = 0, already INFLOW
    expected = [LEVEL0 + (INFLOW - outflow) * 10.0 * (k + 1) / AREA for k in range(30)]
    assert levels == pytest.approx(expected, rel=1e-12)
    master.set_inputs("tank", {"outflow": 0.1})  # draining now
    for _ in range(10):
        out = master.step()
    assert out["tank"]["level"] == pytest.approx(expected[-1] + (INFLOW - 0.1) * 100.0 / AREA)
    assert out.time == 400.0
    assert out["tank"]["overflowing"] == 0.0
    extracted = tank._dir
    assert extracted is not None and Path(extracted).is_dir()
    master.terminate()
    assert not Path(extracted).exists()
    master.terminate()  # idempotent


def test_boolean_outputs_and_unknown_names(tank_fmu: Path) -> None:
    master, tank = _master(tank_fmu, dt=100.0)
    master.set_inputs("tank", {"outflow": 0.0})
    for _ in range(30):  # 1.5 + 0.04 * 3000 / 2 = 61.5 m > max_level
        out = master.step()
    assert out["tank"]["overflowing"] == 1.0
    with pytest.raises(SimulatorError, match="has no input 'level'"):
        tank.set_inputs({"level": 3.0})
    master.terminate()
    with pytest.raises(SimulatorError, match="has no parameter or input 'volume'"):
        FmuSimulator(tank_fmu).instantiate({"volume": 1.0}, seed=0)
    with pytest.raises(SimulatorError, match="not instantiated"):
        tank.do_step(0.0, 1.0)


def test_snapshot_restore_through_fmi_state(forkable_fmu: Path) -> None:
    master, tank = _master(forkable_fmu)
    assert tank.can_fork
    master.set_inputs("tank", {"outflow": 0.02})
    for _ in range(5):
        master.step()
    snap = master.snapshot()
    first = [master.step()["tank"]["level"] for _ in range(5)]
    master.restore(snap)
    assert master.time == 50.0
    second = [master.step()["tank"]["level"] for _ in range(5)]
    master.restore(snap)
    master.set_inputs("tank", {"outflow": 0.0})
    third = [master.step()["tank"]["level"] for _ in range(5)]
    assert first == second
    assert third[-1] > first[-1]
    master.terminate()
    with pytest.raises(SimulatorError):
        tank.restore(snap.states["tank"])


def test_an_fmu_without_state_handling_cannot_fork(tank_fmu: Path) -> None:
    master, tank = _master(tank_fmu)
    assert not tank.can_fork
    with pytest.raises(SimulatorError, match="component tank cannot fork"):
        master.snapshot()
    master.step()  # still usable
    master.terminate()


def _rewrite(source: Path, target: Path, edit: Any) -> Path:
    """A copy of ``source`` whose modelDescription.xml went through ``edit`` (str -> str)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "modelDescription.xml":
                data = edit(data.decode("utf-8")).encode("utf-8")
            dst.writestr(item, data)
    return target


def test_broken_and_unsupported_fmus_are_refused(tank_fmu: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.fmu"
    garbage.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ModelFileError, match="not a zip archive"):
        FmuSimulator(garbage)
    with pytest.raises(ModelFileError, match="no such FMU file"):
        FmuSimulator(tmp_path / "missing.fmu")
    empty = tmp_path / "empty.fmu"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no model here")
    with pytest.raises(ModelFileError, match=r"no modelDescription\.xml"):
        FmuSimulator(empty)
    fmi3 = _rewrite(tank_fmu, tmp_path / "fmi3.fmu", lambda x: x.replace('"2.0"', '"3.0"', 1))
    with pytest.raises(ModelFileError, match=r"FMI 3\.0 is not supported"):
        FmuSimulator(fmi3)
    fmi1 = _rewrite(tank_fmu, tmp_path / "fmi1.fmu", lambda x: x.replace('"2.0"', '"1.0"', 1))
    with pytest.raises(ModelFileError, match=r"FMI 1\.0 is not supported"):
        FmuSimulator(fmi1)

    def model_exchange(xml: str) -> str:
        start = xml.index("<CoSimulation")
        end = xml.index("/>", start) + 2
        return xml[:start] + '<ModelExchange modelIdentifier="Tank"/>' + xml[end:]

    me = _rewrite(tank_fmu, tmp_path / "me.fmu", model_exchange)
    with pytest.raises(ModelFileError, match="model-exchange-only"):
        FmuSimulator(me)
    broken = _rewrite(tank_fmu, tmp_path / "broken.fmu", lambda x: x[: len(x) // 2])
    with pytest.raises(ModelFileError, match=r"modelDescription\.xml"):
        FmuSimulator(broken)
    no_binary = tmp_path / "no-binary.fmu"
    with zipfile.ZipFile(tank_fmu) as src, zipfile.ZipFile(no_binary, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("binaries/"):
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ModelFileError, match="no binary for this platform"):
        FmuSimulator(no_binary)
