"""The co-simulation master: several simulators coupled at one fixed communication step.

:class:`CoSimulation` holds named components (each a :class:`twinkg.sim.adapter.Simulator`), the
:class:`Connection` list that wires an output of one to an input of another, and the step ``dt``
in simulated seconds. One :meth:`CoSimulation.step` is a **Jacobi** step: the outputs of every
component at ``t`` are routed to the inputs, the inputs the caller queued with
:meth:`CoSimulation.set_inputs` are applied over them, and every component advances from ``t`` to
``t + dt`` in the fixed order the components were given. Components named as *feedthrough* (a
sensor-fault injector that only transforms what the plant outputs) step after the others and read
their sources' outputs at ``t + dt`` instead, so a measurement is not a step late.

Each component gets its own seed, derived from the run seed and the component's name
(:func:`component_seed`): the same run seed gives the same outputs, and adding a component leaves
the others' random streams unchanged.

A component that raises, runs past the wall-clock step timeout, or returns NaN or infinity for an
output that cannot be NaN (only a component offering :class:`NullableOutputs` may return NaN,
for the outputs it names; infinity never) ends the run:
:class:`twinkg.ontology.errors.SimulatorError` names the component, the simulated time (the
step's start for a call that raised or hung, the output's time for a bad value) and the reason,
:attr:`CoSimulation.failure` keeps them as data, and the master refuses every later step.

The timeout is enforced by running the components in one worker thread and giving up waiting
for it. **A thread cannot be killed**: a native simulator that hangs keeps its (daemon) thread
until it returns or the process exits, so the master that lost it is unusable for good, and
:meth:`CoSimulation.terminate` does not call into the hung component.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from twinkg.ontology.errors import InvalidInputError, SimulatorError
from twinkg.sim.adapter import Forkable, Simulator

T = TypeVar("T")

DEFAULT_STEP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Connection:
    """``target.input`` takes the value of ``source.output`` at every communication point."""

    source: str
    output: str
    target: str
    input: str


@dataclass(frozen=True, slots=True)
class StepFailure:
    """Why the co-simulation stopped: the component, the simulated second and the reason."""

    component: str
    time: float
    reason: str

    def message(self) -> str:
        """The one line :class:`SimulatorError` carries."""
        return f"simulator {self.component!r} failed at t={self.time:g} s: {self.reason}"


@runtime_checkable
class NullableOutputs(Protocol):
    """A component some of whose outputs may legitimately be NaN (a sensor dropout)."""

    def nullable_outputs(self) -> frozenset[str]:
        """The outputs that may be NaN; every other output must be finite."""
        ...


class Outputs(Mapping[str, Mapping[str, float]]):
    """Every component's outputs at one communication point (read-only): ``outputs[c][name]``."""

    __slots__ = ("_by_component", "_time")

    def __init__(self, time: float, by_component: Mapping[str, Mapping[str, float]]) -> None:
        self._time = time
        self._by_component: dict[str, Mapping[str, float]] = {
            name: MappingProxyType(dict(values)) for name, values in by_component.items()
        }

    @property
    def time(self) -> float:
        """The simulated second these outputs belong to."""
        return self._time

    def __getitem__(self, component: str) -> Mapping[str, float]:
        return self._by_component[component]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_component)

    def __len__(self) -> int:
        return len(self._by_component)

    def __repr__(self) -> str:
        return f"Outputs(time={self._time!r}, components={list(self._by_component)!r})"


@dataclass(frozen=True, slots=True)
class MasterSnapshot:
    """A copy of the whole co-simulation: the step count, outputs, queued inputs, every state."""

    steps: int
    outputs: Outputs
    pending: Mapping[str, Mapping[str, float]]
    states: Mapping[str, object]


def component_seed(run_seed: int, component: str) -> int:
    """The seed of ``component`` in a run seeded ``run_seed`` (an int in ``[0, 2**32)``).

    NumPy's :class:`~numpy.random.SeedSequence` mixes the run seed with a spawn key taken from
    the SHA-256 of the component's name: independent streams, stable across runs, platforms and
    the set of other components.
    """
    if run_seed < 0:
        raise InvalidInputError(f"a run seed must be >= 0, got {run_seed}")
    digest = hashlib.sha256(component.encode("utf-8")).digest()
    key = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    sequence = np.random.SeedSequence(run_seed, spawn_key=key)
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


class _HungError(Exception):
    """The worker did not answer within the timeout."""


class _Worker:
    """One daemon thread that runs the components' calls, so the master can stop waiting."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="twinkg-cosim", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def stop(self) -> None:
        """Let the thread end once the call it runs (if any) returns."""
        self._jobs.put(None)

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        """``fn()`` on the worker thread, its exception re-raised here; timeout: ``_HungError``."""
        done = threading.Event()
        box: list[Any] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            finally:
                done.set()

        self._jobs.put(job)
        if not done.wait(timeout_s):
            raise _HungError
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


class CoSimulation:
    """Named simulators coupled at a fixed communication step ``dt`` (simulated seconds).

    ``components`` is stepped in its iteration order (feedthrough components last, in theirs).
    ``step_timeout_s`` bounds the wall-clock time of one whole step (``None``: no bound, the
    components run on the caller's thread).
    """

    def __init__(
        self,
        components: Mapping[str, Simulator],
        connections: Sequence[Connection] = (),
        dt: float = 1.0,
        *,
        feedthrough: Sequence[str] = (),
        step_timeout_s: float | None = DEFAULT_STEP_TIMEOUT_S,
    ) -> None:
        if not components:
            raise InvalidInputError("a co-simulation needs at least one component")
        if not (math.isfinite(dt) and dt > 0):
            raise InvalidInputError(f"the communication step must be a positive number, got {dt}")
        if step_timeout_s is not None and not (step_timeout_s > 0):
            raise InvalidInputError(f"the step timeout must be positive, got {step_timeout_s}")
        for name in feedthrough:
            if name not in components:
                raise InvalidInputError(f"feedthrough component {name!r} is not a component")
        self._components = dict(components)
        self._feedthrough = tuple(dict.fromkeys(feedthrough))
        self._order = tuple(
            [n for n in self._components if n not in self._feedthrough] + list(self._feedthrough)
        )
        self._connections = tuple(connections)
        self._check_wiring()
        self._incoming = {
            name: tuple(c for c in self._connections if c.target == name)
            for name in self._components
        }
        self._dt = float(dt)
        self._timeout = step_timeout_s
        self._worker: _Worker | None = None
        self._stop_worker: Callable[[], object] = lambda: None
        self._steps = 0
        self._instantiated = False
        self._terminated = False
        self._failure: StepFailure | None = None
        self._hung: str | None = None
        self._outputs = Outputs(0.0, {})
        self._pending: dict[str, dict[str, float]] = {}
        self._current = ""  # the component the worker is calling (named when a step hangs)

    # ------------------------------------------------------------------ properties

    @property
    def time(self) -> float:
        """The current simulated second (``steps * dt``, so no rounding accumulates)."""
        return self._steps * self._dt

    @property
    def dt(self) -> float:
        """The communication step (s)."""
        return self._dt

    @property
    def components(self) -> Mapping[str, Simulator]:
        """The components by name (read-only view)."""
        return MappingProxyType(self._components)

    @property
    def outputs(self) -> Outputs:
        """Every component's outputs at :attr:`time`."""
        return self._outputs

    @property
    def failure(self) -> StepFailure | None:
        """Why the run failed, or None while it is usable."""
        return self._failure

    # ------------------------------------------------------------------ lifecycle

    def instantiate(
        self, parameters_by_component: Mapping[str, Mapping[str, Any]], seed: int
    ) -> Outputs:
        """Instantiate every component with its parameters and its own seed; time starts at 0."""
        self._usable()
        unknown = sorted(set(parameters_by_component) - set(self._components))
        if unknown:
            raise InvalidInputError(f"parameters for unknown components: {', '.join(unknown)}")
        seeds = {name: component_seed(seed, name) for name in self._components}
        self._steps = 0
        self._pending = {}

        def run() -> dict[str, dict[str, float]]:
            for name in self._order:
                self._current = name
                self._components[name].instantiate(
                    parameters_by_component.get(name, {}), seeds[name]
                )
            return self._read_all()

        values = self._guarded(run, "instantiate")
        self._outputs = Outputs(0.0, values)
        self._check_connections()
        self._instantiated = True
        return self._outputs

    def set_inputs(self, component: str, inputs: Mapping[str, float]) -> None:
        """Queue inputs for ``component``; they are applied at the next step, over connections."""
        if component not in self._components:
            raise InvalidInputError(f"no component named {component!r}")
        try:
            values = {str(k): float(v) for k, v in inputs.items()}
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"inputs for {component!r} must be numbers: {exc}") from exc
        self._pending.setdefault(component, {}).update(values)

    def step(self) -> Outputs:
        """Advance every component by ``dt``; the outputs at the new time."""
        self._usable()
        if not self._instantiated:
            raise SimulatorError("the co-simulation is not instantiated")
        t, dt = self.time, self._dt
        before = self._outputs
        pending, self._pending = self._pending, {}

        def run() -> dict[str, dict[str, float]]:
            fresh: dict[str, dict[str, float]] = {}
            for name in self._order:
                self._current = name
                live = name in self._feedthrough
                inputs: dict[str, float] = {}
                for c in self._incoming[name]:
                    source = fresh[c.source] if live else before[c.source]
                    inputs[c.input] = source[c.output]
                inputs.update(pending.get(name, {}))
                component = self._components[name]
                if inputs:
                    component.set_inputs(inputs)
                component.do_step(t, dt)
                fresh[name] = component.get_outputs()
            return fresh

        values = self._guarded(run, "step", at=t)
        self._check_values(values, (self._steps + 1) * self._dt)
        self._steps += 1
        self._outputs = Outputs(self.time, values)
        return self._outputs

    def terminate(self) -> None:
        """Terminate every component (idempotent); errors are collected into one SimulatorError."""
        if self._terminated:
            return
        self._terminated = True
        self._stop_worker()
        errors: list[str] = []
        for name in self._order:
            if name == self._hung:
                errors.append(f"{name}: not terminated, its call never returned")
                continue
            try:
                self._components[name].terminate()
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if errors:
            raise SimulatorError("terminate failed for " + "; ".join(errors))

    def with_component(self, name: str, simulator: Simulator) -> CoSimulation:
        """A new master like this one (same wiring, step, feedthrough and timeout) with
        ``simulator`` in place of component ``name`` (a plant served over OPC UA, decision 0061).
        Only before :meth:`instantiate`: a running master's state does not carry over."""
        if name not in self._components:
            raise InvalidInputError(f"no component named {name!r}")
        if self._instantiated or self._terminated:
            raise SimulatorError("a component is replaced only before the run is instantiated")
        components = {n: simulator if n == name else c for n, c in self._components.items()}
        return CoSimulation(
            components,
            self._connections,
            self._dt,
            feedthrough=self._feedthrough,
            step_timeout_s=self._timeout,
        )

    # ------------------------------------------------------------------ forking

    def after_fork(self) -> None:
        """Make this master usable in a child process forked from the one that built it.

        The worker thread that runs the components' calls did not survive ``fork()``: the child
        starts its own on its next call, under the same step timeout. The parent's master is not
        touched.
        """
        self._worker = None
        self._stop_worker = lambda: None

    def snapshot(self) -> MasterSnapshot:
        """A copy of the whole co-simulation; every component must be :class:`Forkable`."""
        self._usable()
        forkable = self._forkable()

        def run() -> dict[str, object]:
            states: dict[str, object] = {}
            for name in self._order:
                self._current = name
                try:
                    states[name] = forkable[name].snapshot()
                except SimulatorError as exc:
                    raise SimulatorError(f"component {name} cannot fork: {exc}") from exc
            return states

        states = self._guarded(run, "snapshot", at=self.time, passthrough=True)
        pending = {k: MappingProxyType(dict(v)) for k, v in self._pending.items()}
        return MasterSnapshot(self._steps, self._outputs, MappingProxyType(pending), states)

    def restore(self, snapshot: MasterSnapshot) -> None:
        """Return to ``snapshot`` (it can be restored any number of times)."""
        self._usable()
        if set(snapshot.states) != set(self._components):
            raise SimulatorError("the snapshot belongs to another co-simulation")
        forkable = self._forkable()

        def run() -> None:
            for name in self._order:
                self._current = name
                forkable[name].restore(snapshot.states[name])

        self._guarded(run, "restore", at=snapshot.steps * self._dt)
        self._steps = snapshot.steps
        self._outputs = snapshot.outputs
        self._pending = {k: dict(v) for k, v in snapshot.pending.items()}

    # ------------------------------------------------------------------ internals

    def _forkable(self) -> dict[str, Forkable]:
        forkable: dict[str, Forkable] = {}
        for name, component in self._components.items():
            if not isinstance(component, Forkable):
                raise SimulatorError(f"component {name} cannot fork")
            forkable[name] = component
        return forkable

    def _usable(self) -> None:
        if self._failure is not None:
            raise SimulatorError(f"the co-simulation has failed ({self._failure.message()})")
        if self._terminated:
            raise SimulatorError("the co-simulation is terminated")

    def _fail(self, component: str, at: float, reason: str) -> SimulatorError:
        self._failure = StepFailure(component, at, reason)
        return SimulatorError(self._failure.message())

    def _guarded(
        self, fn: Callable[[], T], what: str, at: float = 0.0, *, passthrough: bool = False
    ) -> T:
        """Run ``fn`` (which calls the components) under the timeout; failures end the run.

        ``passthrough``: a :class:`SimulatorError` from ``fn`` is re-raised as is, without
        failing the run (a snapshot that a component refuses leaves the run usable).
        """
        self._current = ""
        try:
            if self._timeout is None:
                return fn()
            if self._worker is None:
                self._worker = _Worker()
                # the thread ends at terminate, or when the master is garbage-collected
                self._stop_worker = weakref.finalize(self, self._worker.stop)
            return self._worker.call(fn, self._timeout)
        except _HungError:
            self._hung = self._current
            raise self._fail(
                self._current, at, f"{what} did not return within {self._timeout:g} s (wall clock)"
            ) from None
        except SimulatorError as exc:
            if passthrough:
                raise
            raise self._fail(self._current, at, f"{what}: {exc}") from exc
        except Exception as exc:
            raise self._fail(self._current, at, f"{what}: {type(exc).__name__}: {exc}") from exc

    def _read_all(self) -> dict[str, dict[str, float]]:
        values: dict[str, dict[str, float]] = {}
        for name in self._order:
            self._current = name
            values[name] = self._components[name].get_outputs()
        return values

    def _check_values(self, values: Mapping[str, Mapping[str, float]], at: float) -> None:
        for name in self._order:
            outputs = values[name]
            bad = [k for k, v in outputs.items() if not math.isfinite(v)]
            if not bad:
                continue
            component = self._components[name]
            nullable = (
                component.nullable_outputs()
                if isinstance(component, NullableOutputs)
                else frozenset()
            )
            for k in bad:
                v = outputs[k]
                if math.isnan(v) and k in nullable:
                    continue
                raise self._fail(name, at, f"output {k!r} is {v} (it cannot be NaN or infinite)")

    def _check_wiring(self) -> None:
        position = {name: i for i, name in enumerate(self._order)}
        for c in self._connections:
            for end in (c.source, c.target):
                if end not in self._components:
                    raise InvalidInputError(f"connection {c}: no component named {end!r}")
            if c.target in self._feedthrough and position[c.source] >= position[c.target]:
                raise InvalidInputError(
                    f"connection {c}: feedthrough component {c.target!r} reads {c.source!r},"
                    " which steps after it"
                )

    def _check_connections(self) -> None:
        """Every connection names a declared output and a declared input (after instantiate,
        when every component knows its variables)."""
        for c in self._connections:
            outputs = self._declared(c.source, "output")
            if c.output not in outputs and c.output not in self._outputs_now(c.source):
                raise InvalidInputError(f"connection {c}: {c.source!r} has no output {c.output!r}")
            if c.input not in self._declared(c.target, "input"):
                raise InvalidInputError(f"connection {c}: {c.target!r} has no input {c.input!r}")

    def _declared(self, component: str, causality: str) -> set[str]:
        info = self._components[component].info()
        return {v.name for v in info.variables if v.causality == causality}

    def _outputs_now(self, component: str) -> Mapping[str, float]:
        return self._outputs.get(component, {})
