"""Any FMI 2.0 co-simulation FMU as a :class:`twinkg.sim.adapter.Simulator`, through fmpy.

:class:`FmuSimulator` reads the FMU's ``modelDescription.xml`` when it is constructed and refuses
what it cannot run with :class:`twinkg.ontology.errors.ModelFileError`: a file that is not a zip
archive, a missing or malformed model description, an FMI version other than 2.0, a
model-exchange-only FMU, or no binary for this platform. Its variables are the FMU's Real, Integer,
Enumeration and Boolean variables of causality ``input``, ``output`` and ``parameter`` (all values
are floats at this interface), with their units and ranges.

``instantiate(parameters, seed)`` extracts the FMU to a temporary folder, instantiates it, sets up
the experiment at t = 0, sets ``parameters`` as start values (inputs or parameters), and enters
and leaves initialization mode. FMI 2.0 has no seed: an FMU that declares a parameter named
``seed`` gets it unless the parameters set it; any other FMU is deterministic or its own business.
``snapshot``/``restore`` use ``fmi2GetFMUstate``/``fmi2SetFMUstate`` when the FMU declares
``canGetAndSetFMUstate``; otherwise ``snapshot`` raises SimulatorError. FMU states are freed when
their snapshot is garbage-collected, and at the latest by :meth:`FmuSimulator.terminate`.
"""

from __future__ import annotations

import math
import weakref
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import fmpy  # type: ignore[import-untyped]
from fmpy.fmi2 import FMU2Slave  # type: ignore[import-untyped]

from twinkg.ontology.errors import ModelFileError, SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable, working_dir

_TYPES = ("Real", "Integer", "Enumeration", "Boolean")
_CAUSALITIES = ("input", "output", "parameter")


@dataclass(frozen=True, slots=True)
class _Var:
    """An FMU variable as the adapter uses it."""

    name: str
    reference: int
    type: str
    causality: str


class FmuSnapshot:
    """A handle on an FMU state held by the FMU (freed with the handle or at terminate)."""

    __slots__ = ("__weakref__", "owner", "token")

    def __init__(self, owner: FmuSimulator, token: int) -> None:
        self.owner = owner
        self.token = token


def _fmi_version(path: Path) -> str:
    """The ``fmiVersion`` attribute of the archive's model description (before fmpy reads it)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("modelDescription.xml") as xml:
            for _, element in ElementTree.iterparse(xml, events=("start",)):
                return str(element.get("fmiVersion", "(no fmiVersion)"))
    except (ElementTree.ParseError, zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path}: modelDescription.xml is not well-formed XML: {exc}") from exc
    raise ModelFileError(f"{path}: modelDescription.xml is empty")


def _float(text: object) -> float | None:
    try:
        return None if text is None else float(str(text))
    except ValueError:
        return None


class FmuSimulator:
    """One FMI 2.0 co-simulation FMU (a co-simulation component; Forkable when the FMU can)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        if not self._path.is_file():
            raise ModelFileError(f"{self._path}: no such FMU file")
        if not zipfile.is_zipfile(self._path):
            raise ModelFileError(f"{self._path}: not an FMU (not a zip archive)")
        try:
            with zipfile.ZipFile(self._path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelFileError(f"{self._path}: unreadable zip archive: {exc}") from exc
        if "modelDescription.xml" not in names:
            raise ModelFileError(f"{self._path}: no modelDescription.xml in the archive")
        version = _fmi_version(self._path)
        if version != "2.0":
            raise ModelFileError(
                f"{self._path}: FMI {version} is not supported (FMI 2.0 co-simulation only)"
            )
        try:
            md = fmpy.read_model_description(str(self._path), validate=True)
        except Exception as exc:
            raise ModelFileError(f"{self._path}: modelDescription.xml is invalid: {exc}") from exc
        if md.fmiVersion != "2.0":
            raise ModelFileError(
                f"{self._path}: FMI {md.fmiVersion} is not supported (FMI 2.0 co-simulation only)"
            )
        if md.coSimulation is None:
            raise ModelFileError(
                f"{self._path}: a model-exchange-only FMU (FMI 2.0 co-simulation needed)"
            )
        identifier = md.coSimulation.modelIdentifier
        binary = f"binaries/{fmpy.platform}/{identifier}{fmpy.sharedLibraryExtension}"
        if binary not in names:
            raise ModelFileError(f"{self._path}: no binary for this platform ({binary})")
        self._md = md
        self._identifier: str = identifier
        self._can_fork = bool(md.coSimulation.canGetAndSetFMUstate)
        self._vars: dict[str, _Var] = {}
        variables: list[Variable] = []
        for v in md.modelVariables:
            if v.type not in _TYPES or v.causality not in _CAUSALITIES:
                continue
            unit = v.unit or (v.declaredType.unit if v.declaredType is not None else None)
            low = _float(v.min if v.min is not None else getattr(v.declaredType, "min", None))
            high = _float(v.max if v.max is not None else getattr(v.declaredType, "max", None))
            self._vars[v.name] = _Var(v.name, int(v.valueReference), v.type, v.causality)
            variables.append(Variable(v.name, v.causality, unit, v.description or "", low, high))
        self._info = ModelInfo(
            f"fmpy:{md.modelName}",
            f"fmpy {fmpy.__version__}; FMU {md.version or '-'} guid {md.guid}",
            tuple(variables),
        )
        self._outputs = [v for v in self._vars.values() if v.causality == "output"]
        self._fmu: Any = None
        self._dir: str | None = None
        self._remove_dir: Callable[[], object] = lambda: None
        self._states: dict[int, Any] = {}
        self._next_token = 0

    @property
    def can_fork(self) -> bool:
        """Whether the FMU declares ``canGetAndSetFMUstate``."""
        return self._can_fork

    # ------------------------------------------------------------------ Simulator

    def info(self) -> ModelInfo:
        """``fmpy:<model name>``, fmpy's and the FMU's version, and the FMU's variables."""
        return self._info

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Extract, instantiate and initialize the FMU with ``parameters`` as start values."""
        self.terminate()
        values = {str(k): float(v) for k, v in parameters.items()}
        for name in values:
            var = self._vars.get(name)
            if var is None or var.causality == "output":
                raise SimulatorError(f"FMU {self._identifier} has no parameter or input {name!r}")
        seed_var = self._vars.get("seed")
        if seed_var is not None and seed_var.causality == "parameter" and "seed" not in values:
            values["seed"] = float(seed)
        # the extracted files go at terminate, or when this object is garbage-collected
        self._dir, self._remove_dir = working_dir(self, "twinkg-fmu-")
        try:
            fmpy.extract(str(self._path), self._dir)
            fmu = FMU2Slave(
                guid=self._md.guid,
                unzipDirectory=self._dir,
                modelIdentifier=self._identifier,
                instanceName=self._identifier,
            )
            fmu.instantiate()
            self._fmu = fmu
            fmu.setupExperiment(startTime=0.0)
            self._set(values)
            fmu.enterInitializationMode()
            fmu.exitInitializationMode()
        except SimulatorError:
            raise
        except Exception as exc:
            raise SimulatorError(f"FMU {self._identifier}: instantiate failed: {exc}") from exc

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """Set input variables; an unknown name (or not an input) raises SimulatorError."""
        self._live()
        for name in inputs:
            var = self._vars.get(name)
            if var is None or var.causality != "input":
                raise SimulatorError(f"FMU {self._identifier} has no input {name!r}")
        self._call("set inputs", lambda: self._set(inputs))

    def do_step(self, t: float, dt: float) -> None:
        """``fmi2DoStep`` from ``t`` by ``dt`` seconds."""
        fmu = self._live()
        self._call(
            "doStep",
            lambda: fmu.doStep(currentCommunicationPoint=t, communicationStepSize=dt),
        )

    def get_outputs(self) -> dict[str, float]:
        """Every output variable now."""
        fmu = self._live()
        out: dict[str, float] = {}

        def read() -> None:
            for kind, getter in (
                ("Real", fmu.getReal),
                ("Integer", fmu.getInteger),
                ("Enumeration", fmu.getInteger),
                ("Boolean", fmu.getBoolean),
            ):
                group = [v for v in self._outputs if v.type == kind]
                if group:
                    values = getter([v.reference for v in group])
                    out.update({v.name: float(x) for v, x in zip(group, values, strict=True)})

        self._call("get outputs", read)
        return out

    def terminate(self) -> None:
        """``fmi2Terminate`` and ``fmi2FreeInstance``, and remove the extracted files
        (idempotent; a failure is raised after everything was released)."""
        fmu, self._fmu = self._fmu, None
        error: Exception | None = None
        if fmu is not None:
            for state in self._states.values():
                try:
                    fmu.freeFMUstate(state)
                except Exception as exc:
                    error = error or exc
            self._states.clear()
            for call in (fmu.terminate, fmu.freeInstance):
                try:
                    call()
                except Exception as exc:
                    error = error or exc
        if self._dir is not None:
            self._remove_dir()
            self._dir = None
        if error is not None:
            raise SimulatorError(f"FMU {self._identifier}: terminate failed: {error}") from error

    # ------------------------------------------------------------------ Forkable

    def snapshot(self) -> FmuSnapshot:
        """``fmi2GetFMUstate``; SimulatorError when the FMU cannot get and set its state."""
        fmu = self._live()
        if not self._can_fork:
            raise SimulatorError(f"FMU {self._identifier} cannot get and set its state")
        state = self._call("getFMUstate", fmu.getFMUstate)
        token = self._next_token
        self._next_token += 1
        self._states[token] = state
        handle = FmuSnapshot(self, token)
        weakref.finalize(handle, self._free_state, token)
        return handle

    def restore(self, snapshot: object) -> None:
        """``fmi2SetFMUstate`` to a state :meth:`snapshot` gave (any number of times)."""
        fmu = self._live()
        if (
            not isinstance(snapshot, FmuSnapshot)
            or snapshot.owner is not self
            or snapshot.token not in self._states
        ):
            raise SimulatorError(f"not a live snapshot of FMU {self._identifier}")
        state = self._states[snapshot.token]
        self._call("setFMUstate", lambda: fmu.setFMUstate(state))

    # ------------------------------------------------------------------ internals

    def _live(self) -> Any:
        if self._fmu is None:
            raise SimulatorError(f"FMU {self._identifier} is not instantiated")
        return self._fmu

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SimulatorError:
            raise
        except Exception as exc:
            raise SimulatorError(f"FMU {self._identifier}: {what} failed: {exc}") from exc

    def _set(self, values: Mapping[str, float]) -> None:
        fmu = self._fmu
        groups: dict[str, list[tuple[int, float]]] = {}
        for name, value in values.items():
            var = self._vars[name]
            groups.setdefault(var.type, []).append((var.reference, value))
        for kind, pairs in groups.items():
            refs = [r for r, _ in pairs]
            if kind == "Real":
                fmu.setReal(refs, [float(v) for _, v in pairs])
            elif kind == "Boolean":
                fmu.setBoolean(refs, [bool(v) for _, v in pairs])
            else:
                if not all(math.isfinite(v) for _, v in pairs):
                    raise SimulatorError(f"FMU {self._identifier}: an integer input is not finite")
                fmu.setInteger(refs, [round(v) for _, v in pairs])

    def _free_state(self, token: int) -> None:
        state = self._states.pop(token, None)
        if state is not None and self._fmu is not None:
            try:
                self._fmu.freeFMUstate(state)
            except Exception:  # a finalizer must not raise; terminate frees the rest
                return
