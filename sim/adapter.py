"""One interface for every simulator, shaped like FMI 2.0 co-simulation.

A :class:`Simulator` is instantiated with parameters and a seed, takes inputs, advances by
``do_step(t, dt)`` (simulated seconds), offers its outputs, and is terminated. Inputs and outputs
are flat ``name → float`` maps (an FMU's variable names, a TEP variable, ``"pump:10:speed"`` for a
network element), so the master couples any of them the same way. A simulator that can copy its
state offers :meth:`Simulator.snapshot` and :meth:`Simulator.restore`; the look-ahead planner forks
the plant with them. Errors are :class:`twinkg.ontology.errors.SimulatorError` with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable a simulator exposes: its name, causality, unit (UCUM or the model's) and range."""

    name: str
    causality: str  # "input" | "output" | "parameter"
    unit: str | None = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the simulator is: its name and version (recorded on every run) and its variables."""

    name: str  # e.g. "tep-studio", "wntr", "fmpy:<model name>"
    version: str
    variables: tuple[Variable, ...] = field(default_factory=tuple)


@runtime_checkable
class Simulator(Protocol):
    """A co-simulation slave (FMI 2.0 vocabulary)."""

    def info(self) -> ModelInfo:
        """Name, version and variables."""
        ...

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Set up from the scenario's parameters; every random draw comes from ``seed``."""
        ...

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """Set input variables; an unknown name raises ``SimulatorError``."""
        ...

    def do_step(self, t: float, dt: float) -> None:
        """Advance from simulated second ``t`` to ``t + dt``."""
        ...

    def get_outputs(self) -> dict[str, float]:
        """Every output variable at the current time."""
        ...

    def terminate(self) -> None:
        """Release what the simulator holds (idempotent)."""
        ...


@runtime_checkable
class Forkable(Protocol):
    """A simulator whose state can be copied and put back (for look-ahead)."""

    def snapshot(self) -> object:
        """An opaque copy of the whole state."""
        ...

    def restore(self, snapshot: object) -> None:
        """Return to a state :meth:`snapshot` gave."""
        ...


def working_dir(owner: object, prefix: str) -> tuple[str, Callable[[], object]]:
    """A fresh working directory for a simulator, and the call that removes it.

    The directory goes when the call is made or when ``owner`` is garbage-collected, but only in
    the process that made it. A look-ahead worker forked from the run (decision 0053) shares
    its parent's directories. When it shuts its copy of a simulator down, they stay. The
    directories it makes itself are its own, and they go.
    """
    path = tempfile.mkdtemp(prefix=prefix)
    return path, weakref.finalize(owner, _remove_own, path, os.getpid())


def _remove_own(path: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)
