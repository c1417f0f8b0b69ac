"""Water distribution and pumping networks: any EPANET ``.inp`` stepped in the loop.

The network is read with wntr (its own model feeds :mod:`twinkg.graph_seed.epanet`) and run with
EPANET 2.2's hydraulic toolkit (``wntr.epanet.toolkit.ENepanet``): ``ENopenH``/``ENinitH``, then
``ENrunH``/``ENnextH`` up to the end of each communication step, with the loop's inputs applied
between steps. See docs/decisions/0042-water-networks-in-the-loop.md for the choices made here:
inputs through the network's own simple controls, pressure-dependent demand, forks by replay.

Variable names follow the ``<kind>:<element id>:<quantity>`` convention; units are SI (m³/s, m,
kW). A malformed or unsupported ``.inp`` raises :class:`ModelFileError` naming ``FILE:LINE``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinkg.ontology.errors import ModelFileError, SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable, working_dir

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import wntr  # type: ignore[import-untyped]
    from wntr.epanet.exceptions import (  # type: ignore[import-untyped]
        EN_ERROR_CODES,
        EpanetException,
    )
    from wntr.epanet.toolkit import ENepanet  # type: ignore[import-untyped]

LIBRARY_DIR = Path(wntr.__file__).resolve().parent / "library" / "networks"

# EPANET 2.2 toolkit codes (epanet2_enums.h)
_N_ELEVATION, _N_EMITTER, _N_DEMAND, _N_HEAD, _N_PRESSURE, _N_DEFICIT = 0, 3, 9, 10, 11, 27
_L_INITSETTING, _L_FLOW, _L_STATUS, _L_SETTING, _L_ENERGY = 5, 8, 11, 12, 13
_T_DURATION, _T_HYDSTEP, _T_REPORTSTEP, _T_REPORTSTART = 0, 1, 5, 6
_O_DEMANDMULT = 4
_W_UNBALANCED = 1  # EPANET warning: the hydraulic solver did not converge
# the ``unbalanced`` parameter → wntr's (UNBALANCED, its value); "file" keeps the network's own
_UNBALANCED: dict[str, tuple[str, int | None]] = {
    "file": ("", None),
    "stop": ("STOP", None),
    "continue": ("CONTINUE", 10),
}
_LPS = 5  # litres per second: the SI flow unit the network is run in
_GRAVITY = 9.80665
_LEAK_DISCHARGE_COEFFICIENT = 0.75  # orifice Cd of a leak (wntr's leak model uses the same)
_EPS = 1e-9

_LOG = logging.getLogger(__name__)


# ---- Reading a network ----


def library_networks() -> tuple[str, ...]:
    """The names of the networks that ship with wntr (``Net1``, ``Net3``, ``ky10`` …)."""
    return tuple(sorted(p.stem for p in LIBRARY_DIR.glob("*.inp")))


def resolve_inp(source: str | Path) -> Path:
    """The ``.inp`` file of ``source``: a wntr library network name or a path.

    Raises :class:`ModelFileError` when it is neither.
    """
    text = str(source)
    library = LIBRARY_DIR / f"{text}.inp"
    if "/" not in text and "\\" not in text and library.is_file():
        return library
    path = Path(source)
    if path.is_file():
        return path
    known = ", ".join(library_networks())
    raise ModelFileError(f"{text}: no such .inp file, nor a wntr library network ({known})")


_REPORTED = re.compile(
    r"Error (\d+): (.*?)(?: in \[(\w+)\] section)?:?\s*\n(?:[ \t]+(\S.*)\n)?", re.MULTILINE
)


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ModelFileError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None


def _line_of(lines: list[str], text: str, section: str | None) -> int | None:
    """The 1-based number of the first line whose words are ``text``'s, in ``section`` when the
    section is known (EPANET reports the offending line's text, not its number)."""
    wanted = text.split(";", maxsplit=1)[0].split()
    current: str | None = None
    fallback: int | None = None
    for number, line in enumerate(lines, start=1):
        words = line.split(";", maxsplit=1)[0].split()
        if words and words[0].startswith("["):
            current = words[0].strip("[]").upper()
        if words == wanted:
            if section is None or current == section.upper():
                return number
            fallback = fallback or number
    return fallback


def _defining_line(lines: list[str], element: str) -> int | None:
    """The line that defines node or link ``element`` (first word of a section row)."""
    for number, line in enumerate(lines, start=1):
        words = line.split(";", maxsplit=1)[0].split()
        if words and words[0] == element:
            return number
    return None


def _epanet_check(path: Path, lines: list[str]) -> None:
    """Parse with EPANET's own reader (what will run); its errors become ``FILE:LINE: reason``."""
    with tempfile.TemporaryDirectory(prefix="twinkg-inp-") as tmp:
        report = Path(tmp) / "check.rpt"
        en = ENepanet(version=2.2)
        failed = False
        try:
            en.ENopen(str(path), str(report), "")
        except EpanetException:
            failed = True
        finally:
            en.ENlib.EN_close(en._project)
            en.ENlib.EN_deleteproject(en._project)
        if not failed:
            return
        text = report.read_text(encoding="latin-1") if report.is_file() else ""
    for match in _REPORTED.finditer(text):
        code, reason, section, offending = match.groups()
        if code == "200":
            continue
        reason = " ".join(reason.split())
        where = section and f" in [{section}]"
        number = _line_of(lines, offending, section) if offending else None
        if number is None:
            named = re.search(r"ID (\S+)$|node (\S+)$|link (\S+)$", reason)
            element = next((g for g in named.groups() if g), None) if named else None
            number = _defining_line(lines, element) if element else None
        if number is None:
            raise ModelFileError(f"{path}: EPANET error {code}: {reason}{where or ''}")
        raise ModelFileError(f"{path}:{number}: EPANET error {code}: {reason}{where or ''}")
    raise ModelFileError(f"{path}: EPANET cannot read it (error 200, no detail reported)")


def _wntr_line(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        found = re.search(r"at line (\d+)", str(seen))
        if found:
            return int(found.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def _unsupported(path: Path, lines: list[str]) -> None:
    section: str | None = None
    for number, line in enumerate(lines, start=1):
        words = line.split(";", maxsplit=1)[0].split()
        if not words:
            continue
        if words[0].startswith("["):
            section = words[0].upper()
            continue
        if section == "[RULES]":
            raise ModelFileError(
                f"{path}:{number}: rule-based controls ([RULES]) are not supported: the loop "
                "applies stops, speeds and closures through the network's simple controls, and "
                "a rule could silently undo them; express the logic as [CONTROLS]"
            )


def read_network(source: str | Path) -> wntr.network.WaterNetworkModel:
    """wntr's model of ``source`` (a library name or an ``.inp`` path), checked first by EPANET's
    own reader. Raises :class:`ModelFileError` as ``FILE:LINE: reason`` (one line)."""
    path = resolve_inp(source)
    lines = _lines(path)
    _epanet_check(path, lines)
    _unsupported(path, lines)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return wntr.network.WaterNetworkModel(str(path))
    except Exception as exc:  # wntr raises ValueError, KeyError, RuntimeError … on odd input
        number = _wntr_line(exc)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = f"{path}:{number}" if number else str(path)
        raise ModelFileError(f"{where}: wntr cannot read it: {reason}") from None


# ---- Stations and parallel pumps (shared with graph_seed.epanet) ----


def pump_stations(wn: wntr.network.WaterNetworkModel) -> dict[str, tuple[str, ...]]:
    """Pumping stations: pumps that share a suction or a discharge node form one station
    (transitively). The station's id is its lowest suction node id; pump ids sorted."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    pumps = sorted(wn.pump_name_list)
    for name in pumps:
        pump = wn.get_link(name)
        a, b = find(f"s:{pump.start_node_name}"), find(f"d:{pump.end_node_name}")
        parent[a] = b
        parent[find(f"p:{name}")] = find(b)
    groups: dict[str, list[str]] = {}
    for name in pumps:
        groups.setdefault(find(f"p:{name}"), []).append(name)
    stations: dict[str, tuple[str, ...]] = {}
    for members in groups.values():
        suction = min(wn.get_link(p).start_node_name for p in members)
        stations[suction] = tuple(members)
    return dict(sorted(stations.items()))


def parallel_pumps(wn: wntr.network.WaterNetworkModel) -> list[tuple[str, ...]]:
    """Groups of two or more pumps between the same suction and discharge nodes."""
    by_nodes: dict[tuple[str, str], list[str]] = {}
    for name in sorted(wn.pump_name_list):
        pump = wn.get_link(name)
        by_nodes.setdefault((pump.start_node_name, pump.end_node_name), []).append(name)
    return [tuple(v) for v in by_nodes.values() if len(v) > 1]


def controlled_links(wn: wntr.network.WaterNetworkModel) -> frozenset[str]:
    """The links some control of the network acts on."""
    names: set[str] = set()
    for _, control in wn.controls():
        for action in control.actions():
            target = action.target()[0]
            names.add(str(getattr(target, "name", target)))
    return frozenset(names)


def initially_open(wn: wntr.network.WaterNetworkModel, link: str) -> bool:
    """Whether ``link`` starts open (its .inp status; pumps and pipes)."""
    status = wn.get_link(link).initial_status
    return int(status) != 0  # wntr LinkStatus: Closed 0, Open 1, Active 2, CV 3


def leak_coefficient(area_m2: float) -> float:
    """EPANET emitter coefficient (L/s per m^0.5) of an orifice of ``area_m2``:
    Q = Cd·A·√(2g·p), Cd = 0.75."""
    return 1000.0 * _LEAK_DISCHARGE_COEFFICIENT * max(area_m2, 0.0) * math.sqrt(2 * _GRAVITY)


# ---- The simulator ----


@dataclass(frozen=True, slots=True)
class WaterSnapshot:
    """A fork point: the simulated time and every call that led there (replayed on restore)."""

    time: int
    parameters: tuple[tuple[str, Any], ...]
    seed: int
    calls: tuple[tuple[str, Any], ...]


@dataclass(slots=True)
class _Pump:
    name: str
    index: int
    start: int
    end: int
    station: str
    controls: tuple[
        tuple[int, int, int, float, int, float], ...
    ]  # (index, type, link, set, node, level)
    status: float = 1.0
    speed: float = 1.0
    head_factor: float = 1.0
    efficiency_factor: float = 1.0
    hand: float = 0.0  # 1: run whatever its controls say (an operator's hand start)
    forced_off: bool = False
    in_hand: bool = False


@dataclass(slots=True)
class _Pipe:
    name: str
    index: int
    start: int
    end: int
    leak_node: int | None
    controls: tuple[tuple[int, int, int, float, int, float], ...]
    status: float = 1.0
    leak_area: float = 0.0
    forced_closed: bool = False


@dataclass(slots=True)
class _Valve:
    name: str
    index: int
    setting: float
    stuck: float = 0.0


class WaterNetworkSimulator:
    """A water network in the loop (``Simulator`` and ``Forkable``).

    ``model`` is a wntr library network name (``"Net3"``) or an ``.inp`` path. Parameters of
    :meth:`instantiate`: ``step_s`` (the communication step, default 900), ``horizon_s`` (how far
    it may run, default 366 days), ``demand_model`` (``"PDA"`` default, or ``"DDA"`` to keep the
    file's demand-driven analysis), ``required_pressure_m`` (PDA: full demand at or above it,
    default 14 m), ``minimum_pressure_m`` (PDA: no demand below it, default 0 m),
    ``service_fraction`` (``plant:running`` is 1 while served ≥ this share of required demand,
    default 0.9), ``unbalanced`` (what EPANET does when a hydraulic solution does not converge:
    ``"file"``, the network's own ``[OPTIONS] UNBALANCED``, by default; ``"stop"``, halt, which
    fails the run; ``"continue"``, ten more trials with link status frozen and then go on with the
    solution it has, each counted in :attr:`warnings`: code 1, or 2 where it converged only with
    link status frozen).
    """

    def __init__(self, model: str | Path) -> None:
        self.path = resolve_inp(model)
        self.wn = read_network(self.path)
        self.name = self.path.stem  # "Net3", never a server path (it is recorded on every run)
        self._stations = pump_stations(self.wn)
        self._station_of = {p: s for s, ps in self._stations.items() for p in ps}
        self._controlled = controlled_links(self.wn)
        self._variables = self._declare()
        self._en: ENepanet | None = None
        self._tmp: str | None = None  # the working directory (the .inp EPANET reads, its report)
        self._remove_tmp: Callable[[], object] = lambda: None
        self._time = 0
        self._solved = False
        self._calls: list[tuple[str, Any]] = []
        self._parameters: dict[str, Any] = {}
        self._seed = 0
        self.warnings: dict[int, int] = {}
        """EPANET warning code → how many hydraulic solutions raised it since instantiate."""

    # -- declaration --

    def _declare(self) -> tuple[Variable, ...]:
        wn = self.wn
        v: list[Variable] = []
        for p in sorted(wn.pump_name_list):
            v += [
                Variable(
                    f"pump:{p}:status",
                    "input",
                    "1",
                    "1 available/run, 0 forced stop; starts at 0 for a pump closed in the .inp "
                    "that no control acts on (a standby), else 1",
                    0.0,
                    1.0,
                ),
                Variable(f"pump:{p}:speed", "input", "1", "relative speed (1 nominal)", 0.0, 2.0),
                Variable(
                    f"pump:{p}:hand",
                    "input",
                    "1",
                    "1 runs it whatever its controls say (hand), 0 leaves it to them (auto: "
                    "handed back, it stops until they start it); a forced stop still stops it",
                    0.0,
                    1.0,
                ),
                Variable(f"pump:{p}:head_factor", "input", "1", "head left by wear", 0.0, 1.0),
                Variable(
                    f"pump:{p}:efficiency_factor",
                    "input",
                    "1",
                    "efficiency left by wear",
                    0.01,
                    1.0,
                ),
                Variable(f"pump:{p}:flow", "output", "m3/s"),
                Variable(f"pump:{p}:head", "output", "m", "head gain while running, else 0"),
                Variable(f"pump:{p}:power", "output", "kW"),
                Variable(f"pump:{p}:running", "output", "1"),
            ]
        for s in self._stations:
            v.append(Variable(f"station:{s}:power", "input", "1", "1 on, 0 outage", 0.0, 1.0))
        for name in sorted(wn.pipe_name_list):
            v += [
                Variable(f"pipe:{name}:status", "input", "1", "1 open, 0 closed", 0.0, 1.0),
                Variable(f"pipe:{name}:leak_area", "input", "m2", "leak orifice area", 0.0),
                Variable(f"pipe:{name}:flow", "output", "m3/s"),
            ]
        for name in sorted(wn.valve_name_list):
            kind = str(wn.get_link(name).valve_type)
            v += [
                Variable(
                    f"valve:{name}:setting",
                    "input",
                    _VALVE_UNITS.get(kind),
                    f"{kind} setting as EPANET takes it in SI units",
                ),
                Variable(f"valve:{name}:stuck", "input", "1", "1 ignores setting changes", 0, 1),
                Variable(f"valve:{name}:flow", "output", "m3/s"),
            ]
        for name in sorted(wn.tank_name_list):
            v.append(Variable(f"tank:{name}:level", "output", "m"))
        for name in sorted(wn.junction_name_list):
            v.append(Variable(f"node:{name}:pressure", "output", "m"))
        v += [
            Variable("plant:demand_multiplier", "input", "1", "multiplies every demand", 0.0),
            Variable("plant:demand_required", "output", "m3/s"),
            Variable("plant:demand_served", "output", "m3/s"),
            Variable("plant:leakage", "output", "m3/s", "flow lost through leaks"),
            Variable("plant:power", "output", "kW"),
            Variable("plant:running", "output", "1"),
        ]
        return tuple(v)

    def initial_inputs(self) -> dict[str, float]:
        """Every input's value at the start, as the network runs with no input set: a pump closed
        in the .inp that no control acts on (a standby) starts at status 0, every other at 1;
        valve settings are the file's (in the units of :meth:`info`; once instantiated, exactly
        as EPANET runs them, which the written file rounds). Setting these changes nothing."""
        wn, out = self.wn, {"plant:demand_multiplier": 1.0}
        for p in sorted(wn.pump_name_list):
            standby = not initially_open(wn, p) and p not in self._controlled
            out[f"pump:{p}:status"] = 0.0 if standby else 1.0
            out[f"pump:{p}:hand"] = 0.0
            out |= {f"pump:{p}:{q}": 1.0 for q in ("speed", "head_factor", "efficiency_factor")}
        out |= {f"station:{s}:power": 1.0 for s in self._stations}
        for name in sorted(wn.pipe_name_list):
            closed = not initially_open(wn, name) and name not in self._controlled
            out[f"pipe:{name}:status"] = 0.0 if closed else 1.0
            out[f"pipe:{name}:leak_area"] = 0.0
        running = {v.name: v.setting for v in self._valves} if self._en is not None else {}
        for name in sorted(wn.valve_name_list):
            valve = wn.get_link(name)
            scale = 1000.0 if valve.valve_type == "FCV" else 1.0  # m³/s → L/s
            out[f"valve:{name}:setting"] = running.get(name, float(valve.initial_setting) * scale)
            out[f"valve:{name}:stuck"] = 0.0
        return out

    def info(self) -> ModelInfo:
        """wntr 1.5 / EPANET 2.2 and the network's variables."""
        return ModelInfo(f"wntr:{self.name}", f"{wntr.__version__}+epanet2.2", self._variables)

    # -- life cycle --

    def _write_inp(self, inp: Path) -> Path:
        """The network in SI units for EPANET, with the run's ``unbalanced`` choice; the network
        model itself stays as read."""
        hydraulic = self.wn.options.hydraulic
        kept = (hydraulic.unbalanced, hydraulic.unbalanced_value)
        unbalanced = str(self._parameters.get("unbalanced", "file")).lower()
        if unbalanced not in _UNBALANCED:
            raise SimulatorError(
                f"unbalanced must be one of {', '.join(_UNBALANCED)}, not {unbalanced!r}"
            )
        if unbalanced != "file":
            hydraulic.unbalanced, hydraulic.unbalanced_value = _UNBALANCED[unbalanced]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wntr.network.write_inpfile(self.wn, str(inp), units="LPS")
        finally:
            hydraulic.unbalanced, hydraulic.unbalanced_value = kept
        return inp

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Open the network with EPANET (SI units) and initialise the hydraulics at time 0.

        The hydraulics are deterministic; ``seed`` is recorded only (nothing here is random).
        """
        self.terminate()
        self._parameters = dict(parameters)
        self._seed = seed
        step = int(self._parameters.get("step_s", 900))
        horizon = int(self._parameters.get("horizon_s", 366 * 86400))
        if step <= 0 or horizon <= 0:
            raise SimulatorError(f"step_s and horizon_s must be positive, got {step}, {horizon}")
        self._step = step
        self._tmp, self._remove_tmp = working_dir(self, "twinkg-water-")
        inp = self._write_inp(Path(self._tmp) / "network.inp")
        en = ENepanet(version=2.2)
        try:
            en.ENopen(str(inp), str(Path(self._tmp) / "run.rpt"), "")
            en.ENlib.EN_setreport(en._project, b"STATUS NO")
            hydstep = min(int(self.wn.options.time.hydraulic_timestep), step)
            en.ENsettimeparam(_T_DURATION, horizon)
            en.ENsettimeparam(_T_HYDSTEP, hydstep)
            en.ENsettimeparam(_T_REPORTSTEP, step)
            en.ENsettimeparam(_T_REPORTSTART, 0)
            if str(self._parameters.get("demand_model", "PDA")).upper() == "PDA":
                pmin = float(self._parameters.get("minimum_pressure_m", 0.0))
                preq = float(self._parameters.get("required_pressure_m", 14.0))
                code = en.ENlib.EN_setdemandmodel(
                    en._project,
                    1,
                    ctypes.c_double(pmin),
                    ctypes.c_double(preq),
                    ctypes.c_double(0.5),
                )
                if code:
                    raise SimulatorError(f"EPANET refused the PDA pressures {pmin}, {preq} m")
            self._base_mult = self._getoption(en, _O_DEMANDMULT)
        except EpanetException as exc:
            raise SimulatorError(f"EPANET cannot open {self.path}: {exc}") from exc
        self._en = en
        try:
            self._index(en)
            en.ENopenH()
            en.ENinitH(0)
        except EpanetException as exc:
            self.terminate()
            raise SimulatorError(f"EPANET cannot start {self.path}: {exc}") from exc
        self._time = 0
        self._solved = False
        self._calls = []
        self.warnings = {}

    @staticmethod
    def _getoption(en: ENepanet, code: int) -> float:
        value = ctypes.c_double()
        en.ENlib.EN_getoption(en._project, code, ctypes.byref(value))
        return float(value.value)

    def _index(self, en: ENepanet) -> None:
        wn = self.wn
        controls: dict[int, list[tuple[int, int, int, float, int, float]]] = {}
        for i in range(1, en.ENgetcount(5) + 1):  # EN_CONTROLCOUNT
            c = en.ENgetcontrol(i)
            row = (i, c["type"], c["linkindex"], c["setting"], c["nodeindex"], c["level"])
            controls.setdefault(c["linkindex"], []).append(row)
        node = en.ENgetnodeindex
        self._pumps: list[_Pump] = []
        for name in sorted(wn.pump_name_list):
            link = wn.get_link(name)
            i = en.ENgetlinkindex(name)
            standby = not initially_open(wn, name) and name not in self._controlled
            self._pumps.append(
                _Pump(
                    name,
                    i,
                    node(link.start_node_name),
                    node(link.end_node_name),
                    self._station_of[name],
                    tuple(controls.get(i, ())),
                    status=0.0 if standby else 1.0,
                )
            )
        junctions = set(wn.junction_name_list)
        self._pipes: list[_Pipe] = []
        for name in sorted(wn.pipe_name_list):
            link = wn.get_link(name)
            ends = [link.end_node_name, link.start_node_name]
            leak = next((node(n) for n in ends if n in junctions), None)
            i = en.ENgetlinkindex(name)
            closed = not initially_open(wn, name) and name not in self._controlled
            self._pipes.append(
                _Pipe(
                    name,
                    i,
                    node(link.start_node_name),
                    node(link.end_node_name),
                    leak,
                    tuple(controls.get(i, ())),
                    status=0.0 if closed else 1.0,
                    forced_closed=closed,
                )
            )
        self._valves = [
            _Valve(v, en.ENgetlinkindex(v), en.ENgetlinkvalue(en.ENgetlinkindex(v), _L_INITSETTING))
            for v in sorted(wn.valve_name_list)
        ]
        self._pump_by = {p.name: p for p in self._pumps}
        self._pipe_by = {p.name: p for p in self._pipes}
        self._valve_by = {v.name: v for v in self._valves}
        self._power = dict.fromkeys(self._stations, 1.0)
        self._mult = 1.0
        self._junctions = [(j, node(j)) for j in sorted(wn.junction_name_list)]
        self._tanks = [(t, node(t)) for t in sorted(wn.tank_name_list)]
        self._emitters = {i: en.ENgetnodevalue(i, _N_EMITTER) for _, i in self._junctions}
        self._emitter_now = {i: c for i, c in self._emitters.items() if c > 0}
        self._keys = {
            p.name: tuple(f"pump:{p.name}:{q}" for q in ("flow", "head", "power", "running"))
            for p in self._pumps
        }
        self._link_flows = [(f"pipe:{p.name}:flow", p.index) for p in self._pipes] + [
            (f"valve:{v.name}:flow", v.index) for v in self._valves
        ]
        self._tank_levels = [(f"tank:{t}:level", i) for t, i in self._tanks]
        self._pressures = [(f"node:{j}:pressure", i) for j, i in self._junctions]
        for pump in self._pumps:
            if pump.status == 0.0:  # a standby: held off until the loop starts it
                pump.forced_off = True
                self._apply_pump(en, pump)

    def terminate(self) -> None:
        """Close EPANET and remove the working files (idempotent)."""
        if self._en is not None:
            en, self._en = self._en, None
            try:
                en.ENcloseH()
                en.ENclose()
            except EpanetException:
                _LOG.debug("EPANET close failed", exc_info=True)
        if self._tmp is not None:
            self._remove_tmp()
            self._tmp = None

    def _open(self) -> ENepanet:
        if self._en is None:
            raise SimulatorError("the water network is not instantiated")
        return self._en

    # -- inputs --

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """Apply inputs (see :meth:`info`); an unknown name or a non-finite value raises
        :class:`SimulatorError`. They act from the current time on."""
        en = self._open()
        changes = dict(inputs)
        for name, value in changes.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise SimulatorError(f"input {name} must be a finite number, got {value!r}")
            self._set(en, name, float(value))
        self._calls.append(("in", tuple(sorted(changes.items()))))
        self._solved = False

    def _set(self, en: ENepanet, name: str, value: float) -> None:
        kind, _, rest = name.partition(":")
        element, _, quantity = rest.rpartition(":")
        if kind == "plant" and name == "plant:demand_multiplier":
            self._mult = max(value, 0.0)
            en.ENlib.EN_setoption(
                en._project, _O_DEMANDMULT, ctypes.c_double(self._base_mult * self._mult)
            )
            return
        if kind == "pump" and element in self._pump_by and quantity in _PUMP_INPUTS:
            pump = self._pump_by[element]
            setattr(pump, quantity, value)
            self._apply_pump(en, pump)
            return
        if kind == "station" and element in self._power and quantity == "power":
            self._power[element] = value
            for pump in self._pumps:
                if pump.station == element:
                    self._apply_pump(en, pump)
            return
        if kind == "pipe" and element in self._pipe_by and quantity in ("status", "leak_area"):
            pipe = self._pipe_by[element]
            setattr(pipe, quantity, value)
            self._apply_pipe(en, pipe)
            return
        if kind == "valve" and element in self._valve_by and quantity in ("setting", "stuck"):
            valve = self._valve_by[element]
            if quantity == "stuck":
                valve.stuck = value
            elif valve.stuck < 0.5 and value != valve.setting:  # the same setting: nothing moves
                valve.setting = value
                en.ENsetlinkvalue(valve.index, _L_SETTING, value)
            return
        raise SimulatorError(f"unknown input {name!r} for water network {self.name}")

    def _apply_pump(self, en: ENepanet, pump: _Pump) -> None:
        off = pump.status < 0.5 or self._power[pump.station] < 0.5
        hand = not off and pump.hand >= 0.5
        speed = max(pump.speed, 0.0) * math.sqrt(min(max(pump.head_factor, 0.0), 1.0))
        for index, ctype, link, setting, node, level in pump.controls:
            # in hand every control of it runs it at its speed: its own logic no longer acts
            new = 0.0 if off else speed if hand else 0.0 if setting == 0.0 else setting * speed
            en.ENsetcontrol(index, ctype, link, new, node, level)
        released = pump.in_hand and not hand
        pump.in_hand = hand
        if off:
            en.ENsetlinkvalue(pump.index, _L_STATUS, 0)
        elif hand:
            if speed > _EPS:
                en.ENsetlinkvalue(pump.index, _L_STATUS, 1)
                en.ENsetlinkvalue(pump.index, _L_SETTING, speed)
            else:
                en.ENsetlinkvalue(pump.index, _L_STATUS, 0)
        elif released and not pump.forced_off:
            # handed back to its controls: it stops until one of them starts it
            en.ENsetlinkvalue(pump.index, _L_STATUS, 0)
        elif pump.forced_off or en.ENgetlinkvalue(pump.index, _L_STATUS) > 0.5:
            # released from a stop (it restarts; its controls decide from the next step on), or
            # running: the new speed applies now (a pump closed by its controls stays closed)
            if speed > _EPS:
                en.ENsetlinkvalue(pump.index, _L_SETTING, speed)
            else:
                en.ENsetlinkvalue(pump.index, _L_STATUS, 0)
        pump.forced_off = off

    def _apply_pipe(self, en: ENepanet, pipe: _Pipe) -> None:
        closed = pipe.status < 0.5
        for index, ctype, link, setting, node, level in pipe.controls:
            en.ENsetcontrol(index, ctype, link, 0.0 if closed else setting, node, level)
        if closed != pipe.forced_closed:
            en.ENsetlinkvalue(pipe.index, _L_STATUS, 0 if closed else 1)
        pipe.forced_closed = closed
        if pipe.leak_node is not None:
            leaks = sum(
                leak_coefficient(p.leak_area) for p in self._pipes if p.leak_node == pipe.leak_node
            )
            coefficient = self._emitters[pipe.leak_node] + leaks
            en.ENsetnodevalue(pipe.leak_node, _N_EMITTER, coefficient)
            self._emitter_now[pipe.leak_node] = coefficient

    # -- stepping --

    def do_step(self, t: float, dt: float) -> None:
        """Advance from ``t`` to ``t + dt`` (``dt`` a multiple of ``step_s``); EPANET takes its
        own hydraulic steps in between (tank fills, controls, pattern changes)."""
        en = self._open()
        if abs(t - self._time) > 1e-6:
            raise SimulatorError(f"do_step at t={t} s but the network is at {self._time} s")
        if dt <= 0 or abs(dt / self._step - round(dt / self._step)) > 1e-9:
            raise SimulatorError(f"dt={dt} s is not a positive multiple of step_s={self._step} s")
        target = self._time + round(dt)
        if not self._solved:
            self._run_h(en)
        while self._time < target:
            if self._next_h(en) <= 0:
                if self.warnings.get(_W_UNBALANCED):  # EPANET ends the run (Htime = duration)
                    raise SimulatorError(
                        f"EPANET halted at {self._time} s: the hydraulics did not converge in "
                        f"{self.wn.options.hydraulic.trials} trials (system unbalanced) and the "
                        "network's UNBALANCED option is STOP (a scenario may set [plant] "
                        'unbalanced = "continue")'
                    )
                raise SimulatorError(f"past the horizon at {self._time} s")
            self._run_h(en)
        if self._time != target:
            raise SimulatorError(f"EPANET stepped to {self._time} s, not {target} s")
        self._solved = True
        self._calls.append(("step", (float(t), float(dt))))

    def _run_h(self, en: ENepanet) -> None:
        """EPANET's ``runH`` at the current time; warnings (codes 1-6: unbalanced, negative
        pressures …) are kept in :attr:`warnings`, not logged; errors raise."""
        clock = ctypes.c_long()
        code = en.ENlib.EN_runH(en._project, ctypes.byref(clock))
        self._check(code)
        self._time = int(clock.value)

    def _next_h(self, en: ENepanet) -> int:
        step = ctypes.c_long()
        self._check(en.ENlib.EN_nextH(en._project, ctypes.byref(step)))
        return int(step.value)

    def _check(self, code: int) -> None:
        if code >= 100:
            reason = EN_ERROR_CODES.get(code, "unknown error").replace("%s", "")
            raise SimulatorError(f"EPANET error {code} at {self._time} s: {reason.strip()}")
        if code:
            self.warnings[code] = self.warnings.get(code, 0) + 1

    # -- outputs --

    def get_outputs(self) -> dict[str, float]:
        """Every output at the current time (solved at the end of the last step)."""
        en = self._open()
        if not self._solved:
            self._run_h(en)
            self._solved = True
        out: dict[str, float] = {}
        link, nodev = _fast_getters(en)
        total_power = 0.0
        for pump in self._pumps:
            flow = link(pump.index, _L_FLOW) / 1000.0
            running = link(pump.index, _L_STATUS) > 0.5 and flow > _EPS
            head = nodev(pump.end, _N_HEAD) - nodev(pump.start, _N_HEAD) if running else 0.0
            power = link(pump.index, _L_ENERGY) / max(pump.efficiency_factor, 0.01)
            power = power if running else 0.0
            total_power += power
            keys = self._keys[pump.name]
            out[keys[0]] = flow if running else 0.0
            out[keys[1]] = head
            out[keys[2]] = power
            out[keys[3]] = 1.0 if running else 0.0
        for key, i in self._link_flows:
            out[key] = link(i, _L_FLOW) / 1000.0
        for key, i in self._tank_levels:
            out[key] = nodev(i, _N_HEAD) - nodev(i, _N_ELEVATION)
        delivered = deficit = leakage = 0.0
        for key, i in self._pressures:
            pressure = nodev(i, _N_PRESSURE)
            out[key] = pressure
            coefficient = self._emitter_now.get(i, 0.0)
            emitted = coefficient * math.sqrt(pressure) if coefficient and pressure > 0 else 0.0
            delivered += nodev(i, _N_DEMAND) - emitted
            deficit += nodev(i, _N_DEFICIT)
            leakage += emitted
        served = max(delivered, 0.0) / 1000.0
        required = served + max(deficit, 0.0) / 1000.0
        fraction = float(self._parameters.get("service_fraction", 0.9))
        out["plant:demand_required"] = required
        out["plant:demand_served"] = served
        out["plant:leakage"] = leakage / 1000.0
        out["plant:power"] = total_power
        out["plant:running"] = 1.0 if served >= fraction * required - _EPS else 0.0
        return out

    # -- forks --

    def snapshot(self) -> WaterSnapshot:
        """The current state as the calls that made it (EPANET's C state cannot be copied)."""
        return WaterSnapshot(
            self._time, tuple(sorted(self._parameters.items())), self._seed, tuple(self._calls)
        )

    def restore(self, snapshot: object) -> None:
        """Re-open the network and replay the snapshot's calls: the same inputs at the same
        times give EPANET the same state, bit for bit (cost grows with the simulated time)."""
        if not isinstance(snapshot, WaterSnapshot):
            raise SimulatorError(f"not a water network snapshot: {type(snapshot).__name__}")
        self.instantiate(dict(snapshot.parameters), snapshot.seed)
        for kind, args in snapshot.calls:
            if kind == "in":
                self.set_inputs(dict(args))
            else:
                self.do_step(*args)


def _fast_getters(
    en: ENepanet,
) -> tuple[Callable[[int, int], float], Callable[[int, int], float]]:
    """Link and node value readers that call EPANET directly (the wrapper's per-call error
    handling costs more than the call; indices and codes here are always valid)."""
    project, value = en._project, ctypes.c_double()
    ref = ctypes.byref(value)
    get_link, get_node = en.ENlib.EN_getlinkvalue, en.ENlib.EN_getnodevalue

    def link(index: int, code: int) -> float:
        get_link(project, index, code, ref)
        return float(value.value)

    def node(index: int, code: int) -> float:
        get_node(project, index, code, ref)
        return float(value.value)

    return link, node


_PUMP_INPUTS = frozenset({"status", "speed", "hand", "head_factor", "efficiency_factor"})
_VALVE_UNITS = {"PRV": "m", "PSV": "m", "PBV": "m", "FCV": "L/s", "TCV": "1"}
