"""Look-ahead planning: fork the simulated plant, try each candidate action, keep the best.

:class:`LookaheadPlanner` implements ``agents.planning.Planner``. It asks its inner planner (the
rule planner, or the LLM planner) for its candidates, adds the plant's own candidates for the case
from the plant binding (a setpoint cut by 10 or 20 %, a controlled stop, a switch to the standby, a
work order, and doing nothing but gather data; for a restart-due case only a restart and keeping
it stopped, decision 0049), and for each one forks the co-simulation
(``CoSimulation.snapshot``), applies it, runs a short horizon (``horizon_s``, the scenario's
``lookahead_h``, default 2 simulated hours; a repair's duration when a work order that repairs
something is among the candidates), scores the outcome and restores the fork. The fork knows each
pump's hazard but not when it will fail (``PumpDegradation.conceal_lives``), and it only tries
what the plant can carry out (a setpoint of its actuator's own quantity kind). Where a case's
own sensor fell under its envelope's floor (a zone short of service pressure), it also tries a
hand start of each available pump its controls keep idle and each running pump a tenth faster;
the supply chosen for one such case at an instant is applied first in the forks of the next
(decision 0054).

Short-horizon replanning under the long-horizon objective: the score orders, lexicographically by
weight, a trip avoided ≫ unplanned downtime ≫ throughput lost (against doing nothing's, or the
best candidate's where doing nothing makes nothing) ≫ maintenance cost. Unplanned
downtime counts what the fork saw, the corrective repair hours still owed at its end, and the
failures the hazard expects, each at a repair's hours: inside the fork, and past it over the
scenario's ``risk_horizon_h`` (the terminal cost; decision 0048). It proposes the best (ties: the
inner planner's order, then the gentler kind) and records every candidate's predicted KPIs in
the plan's transcript, so the look-ahead lands in the decision's provenance as evidence.

Deterministic: the fork starts from the same state with the same random streams, and the
candidates are tried in a fixed order.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from twinkg.agents.planning import Plan, Planner, PlanningCase
from twinkg.agents.state import ActionKind, Candidate, ProposedAction, Trigger
from twinkg.ontology.errors import ConfigError, SimulatorError
from twinkg.sim.policies import Command

if TYPE_CHECKING:
    from twinkg.sim.loop import LoopState

CUTS = (0.10, 0.20)
RAISE = 0.10  # a running pump's speed, where service falls short (decision 0054)
_NOTHING = ActionKind.GATHER_DATA
DEFAULT_HORIZON_S = 2 * 3600.0
W_TRIP, W_DOWN, W_LOSS, W_COST = 1e6, 1e3, 1e1, 1e-3
_GENTLE = (
    ActionKind.GATHER_DATA,
    ActionKind.RESTART,
    ActionKind.SETPOINT_CHANGE,
    ActionKind.SWITCH_TO_STANDBY,
    ActionKind.WORK_ORDER,
    ActionKind.CONTROLLED_STOP,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a candidate led to over the look-ahead horizon."""

    trips: int
    unplanned_h: float
    expected_failures: float
    throughput: float
    cost: float
    failures_after: float = 0.0  # expected past the horizon, over the risk horizon (terminal)
    repair_owed_h: float = 0.0  # corrective repair hours still owed at the fork's end

    def down_h(self, repair_h: float) -> float:
        """Unplanned downtime seen, owed and expected (each expected failure a repair's hours)."""
        failures = self.expected_failures + self.failures_after
        return self.unplanned_h + self.repair_owed_h + failures * repair_h

    def score(self, repair_h: float, reference: float) -> float:
        """Higher is better; ``reference`` is the throughput a loss is counted against (doing
        nothing's; the best candidate's where doing nothing makes nothing)."""
        down = self.down_h(repair_h)
        loss = 0.0 if reference <= 0 else max(0.0, (reference - self.throughput) / reference)
        return -(W_TRIP * self.trips + W_DOWN * down + W_LOSS * loss + W_COST * self.cost)

    def as_dict(self) -> dict[str, float]:
        """The predicted KPIs, for the transcript."""
        return {
            "trips": float(self.trips),
            "unplanned_h": round(self.unplanned_h, 6),
            "expected_failures": round(self.expected_failures, 6),
            "failures_after": round(self.failures_after, 6),
            "repair_owed_h": round(self.repair_owed_h, 6),
            "throughput": round(self.throughput, 6),
            "cost": round(self.cost, 3),
        }


class LookaheadPlanner:
    """The inner planner's candidates and the plant's, each tried on a fork of the plant."""

    def __init__(
        self,
        inner: Planner,
        state: LoopState,
        horizon_s: float = DEFAULT_HORIZON_S,
        *,
        workers: int = 1,
    ):
        if workers < 1:
            raise ConfigError(f"the look-ahead needs at least one worker, got {workers}")
        self.inner = inner
        self.state = state
        self.horizon_s = horizon_s
        # forked processes need fork(); elsewhere the candidates are tried one at a time
        self.workers = workers if "fork" in mp.get_all_start_methods() else 1
        self.kind = inner.kind
        # outcomes of the forks from the current instant: every case decided at one decision
        # point forks the same state, so a candidate shared by two cases is simulated once
        self._cache: dict[tuple[Any, ...], Outcome] = {}
        self._cache_at = -1.0
        # supply chosen for earlier cases of this instant, in every later shortfall case's forks
        self._supplied: list[ProposedAction] = []
        self._first: tuple[ProposedAction, ...] = ()  # what this case's forks apply first

    def plan(self, case: PlanningCase) -> Plan:
        """Fork, try, score, restore; propose the best candidate."""
        self._at_instant()
        first = self.inner.plan(case)
        actions = [c.action for c in first.candidates]
        if first.action is not None and first.action not in actions:
            actions.insert(0, first.action)
        for action in self._plant_candidates(case):
            if not any(_same(action, a) for a in actions):
                actions.append(action)
        # where service falls short, the supply already chosen at this instant is taken as
        # going ahead: every fork applies it first, and it is not asked for twice (0054)
        short = _short_of_service(case)
        self._first = tuple(self._supplied) if short else ()
        actions = [a for a in actions if not any(_same(a, b) for b in self._first)]
        # what the plant cannot carry out (a setpoint of another quantity than its actuator
        # takes) is not tried: the plant interface would refuse it, so its fork would mislead
        dropped = [a for a in actions if not self._carried(a)]
        actions = [a for a in actions if self._carried(a)]
        if not actions:
            return first
        horizon = self._horizon(actions)
        # doing nothing first: what moves nothing in the plant shares its outcome
        order = sorted(range(len(actions)), key=lambda i: actions[i].kind is not _NOTHING)
        try:
            ordered = self._try_all([actions[i] for i in order], horizon)
            tried = dict(zip(order, ordered, strict=True))
            outcomes = [tried[i] for i in range(len(actions))]
        except SimulatorError as exc:  # a plant that cannot fork: the inner plan, said so
            note = {"lookahead": {"skipped": str(exc)}}
            return first.model_copy(update={"transcript": [*first.transcript, note]})
        nothing = next(
            (o for a, o in zip(actions, outcomes, strict=True) if a.kind is ActionKind.GATHER_DATA),
            outcomes[0],
        )
        repair_h = self.state.config.repair_s / 3600.0
        # throughput lost is against doing nothing; where doing nothing makes nothing (a
        # stopped plant), against the best candidate's, so starting it counts as a gain
        reference = nothing.throughput
        if reference <= 0:
            reference = max(o.throughput for o in outcomes)
        scored = [
            (o.score(repair_h, reference), i, a, o)
            for i, (a, o) in enumerate(zip(actions, outcomes, strict=True))
        ]
        scored.sort(key=lambda s: (-s[0], _GENTLE.index(s[2].kind), s[1]))
        best = scored[0]
        candidates = [
            Candidate(
                action=a,
                utility=round(score, 6),
                risk_reduction=round(_risk(nothing, o, repair_h), 6),
                throughput=round(o.throughput / reference if reference > 0 else 1.0, 6),
            )
            for score, _, a, o in scored
        ]
        record = {
            "lookahead": {
                "horizon_s": horizon,
                "from_s": self.state.plant.master.time,
                "weights": {"trip": W_TRIP, "downtime_h": W_DOWN, "loss": W_LOSS, "cost": W_COST},
                "candidates": [
                    {
                        "kind": a.kind.value,
                        "target": a.target,
                        "proposed_setpoint": a.proposed_setpoint,
                        "predicted": o.as_dict(),
                        "utility": round(score, 6),
                    }
                    for score, _, a, o in scored
                ],
                "chosen": best[1],
                "in_flight": [
                    {
                        "kind": a.kind.value,
                        "target": a.target,
                        "proposed_setpoint": a.proposed_setpoint,
                    }
                    for a in self._first
                ],
                "not_carried": [
                    {"kind": a.kind.value, "target": a.target, "quantity_kind": a.quantity_kind}
                    for a in dropped
                ],
            }
        }
        if short and best[2].kind is not ActionKind.GATHER_DATA and self._supplies(best[2]):
            self._supplied.append(best[2])
        action = best[2].model_copy(
            update={
                "rationale": f"{best[2].rationale} [look-ahead {horizon / 3600:g} h: "
                f"{_describe(best[3])}]".strip()
            }
        )
        return Plan(
            planner=first.planner,
            candidates=candidates,
            action=action,
            model=first.model,
            prompt_version=first.prompt_version,
            transcript=[*first.transcript, record],
        )

    # -- candidates ------------------------------------------------------------------------

    def _plant_candidates(self, case: PlanningCase) -> list[ProposedAction]:
        binding = self.state.plant.binding
        top = case.hypotheses[0].mode if case.hypotheses else None

        def make(kind: ActionKind, target: str, why: str, **kw: Any) -> ProposedAction:
            return ProposedAction(
                kind=kind,
                target=target,
                confidence=case.confidence,
                proposed_at=case.as_of,
                failure_mode=top,
                rationale=why,
                **kw,
            )

        out = [make(ActionKind.GATHER_DATA, case.asset, "watch more data first")]
        own = binding.actuator(case.asset)
        if any(f.kind == Trigger.RESTART_DUE for f in case.findings):
            # a restart case weighs starting the stopped asset against keeping it stopped
            if own is not None and own.run_input is not None:
                out.append(make(ActionKind.RESTART, own.asset, "start it again"))
            return out
        knobs = [own] if own is not None and own.setpoint_input else []
        if own is None:  # equipment with no actuator of its own: the plant's setpoints
            knobs = [a for a in binding.actuators if a.setpoint_input]
        for knob in knobs:
            assert knob.setpoint_input is not None
            current = self.state.commanded.get(knob.setpoint_input)
            if current is None or not math.isfinite(current) or current == 0:
                continue
            envelope = next(
                (e for e in case.envelopes if e.quantity_kind == knob.setpoint_quantity_kind), None
            )
            rate = None if envelope is None else envelope.max_rate
            for cut in CUTS:
                value = round(current * (1 - cut), 6)
                # ramp at half the envelope's rate of change (as the rule planner does)
                ramp = max(60.0, 2 * abs(current - value) / rate if rate else 60.0)
                out.append(
                    make(
                        ActionKind.SETPOINT_CHANGE,
                        knob.asset,
                        f"cut {knob.setpoint_input} by {cut:.0%}",
                        quantity_kind=knob.setpoint_quantity_kind,
                        current_setpoint=round(current, 6),
                        proposed_setpoint=value,
                        ramp_s=round(ramp, 3),
                    )
                )
        if _short_of_service(case):
            out += self._more_supply(make)
        if own is not None and own.run_input is not None:
            out.append(make(ActionKind.CONTROLLED_STOP, own.asset, "stop it"))
            from twinkg.sim.loop import partner_of  # noqa: PLC0415 - a cycle otherwise

            partner = partner_of(binding, own)
            if partner is not None and partner.run_input is not None:
                out.append(make(ActionKind.SWITCH_TO_STANDBY, own.asset, "start the standby"))
        if own is not None and own.repairable is not None:
            out.append(make(ActionKind.WORK_ORDER, own.asset, "repair it"))
        return out

    def _at_instant(self) -> None:
        """Forget the forks and the supply chosen at an earlier instant."""
        now = self.state.plant.master.time
        if now != self._cache_at:
            self._cache, self._cache_at, self._supplied = {}, now, []

    def _supplies(self, action: ProposedAction) -> bool:
        """Whether ``action`` starts a pump by hand or raises its speed (what adds supply)."""
        own = self.state.plant.binding.actuator(action.target)
        if own is None or own.start_input is None:
            return False
        raised = (action.proposed_setpoint or 0.0) > (action.current_setpoint or math.inf)
        return action.kind is ActionKind.RESTART or (
            action.kind is ActionKind.SETPOINT_CHANGE and raised
        )

    def _more_supply(self, make: Callable[..., ProposedAction]) -> list[ProposedAction]:
        """What adds supply where service falls short (decision 0054): a hand start of each
        available pump that its own controls keep idle, and each running one's speed raised by
        a tenth (within its input's range). Pumps failed or under repair are not offered."""
        state = self.state
        merged = state.plant.master.outputs.get(state.plant.plant, {})
        out: list[ProposedAction] = []
        for a in state.plant.binding.actuators:
            if a.start_input is None or a.running_output is None or a.run_input is None:
                continue
            if a.asset in state.failed or any(j.asset == a.asset for j in state.jobs):
                continue
            if state.commanded.get(a.run_input, 1.0) < 0.5:
                continue  # stopped on purpose: a restart of its own decides that
            if merged.get(a.running_output, 0.0) < 0.5:
                if state.commanded.get(a.start_input, 0.0) < 0.5:
                    out.append(make(ActionKind.RESTART, a.asset, "start it by hand: short supply"))
                continue
            current = state.commanded.get(a.setpoint_input or "", 1.0)
            _, top = state.ranges.get(a.setpoint_input or "", (None, None))
            value = round(current * (1 + RAISE), 6)
            if a.setpoint_input is None or (top is not None and value > top):
                continue
            out.append(
                make(
                    ActionKind.SETPOINT_CHANGE,
                    a.asset,
                    f"raise {a.setpoint_input} by {RAISE:.0%}: short supply",
                    quantity_kind=a.setpoint_quantity_kind,
                    current_setpoint=round(current, 6),
                    proposed_setpoint=value,
                    ramp_s=60.0,
                )
            )
        return out

    def _carried(self, action: ProposedAction) -> bool:
        command = Command(action.kind.value, action.target, value=action.proposed_setpoint)
        return self.state.carries(command, action.quantity_kind)

    # -- the fork --------------------------------------------------------------------------

    def _horizon(self, actions: list[ProposedAction]) -> float:
        """How far every candidate is forked: the look-ahead, or a repair's duration when a work
        order that repairs something is among them, so that what the repair itself costs (a
        tank drained while its pump is out) is seen; the same for every candidate, so their
        outcomes compare."""
        binding = self.state.plant.binding
        repairs = any(
            a.kind is ActionKind.WORK_ORDER
            and (own := binding.actuator(a.target)) is not None
            and own.repairable is not None
            for a in actions
        )
        return max(self.horizon_s, self.state.config.repair_s) if repairs else self.horizon_s

    def _try_all(self, actions: list[ProposedAction], horizon_s: float) -> list[Outcome]:
        """Each action's outcome, in order (decision 0053).

        With one worker, or fewer than two forks to run, they run one after another here. Else
        the forks not yet cached are dealt round-robin to ``workers`` groups: this process tries
        the first group (doing nothing, first in ``actions``, among it) while a forked process
        tries each other group from the same state. Every fork starts from that state with the
        same random streams, so an outcome does not depend on where it ran. If forks fail, the
        error of the first failing action in ``actions`` is raised, as one at a time would.
        """
        self._at_instant()
        keys = [self._key(a, horizon_s) for a in actions]
        pending: list[int] = []  # the first action of each fork not yet cached
        for i, key in enumerate(keys):
            if key not in self._cache and all(keys[j] != key for j in pending):
                pending.append(i)
        if self.workers > 1 and len(pending) > 1:
            groups = [pending[w :: self.workers] for w in range(self.workers)]
            found = _in_parallel(self, actions, horizon_s, [g for g in groups if g])
            for i, outcome in found.items():
                self._cache[keys[i]] = outcome
        return [self._try(a, horizon_s) for a in actions]

    def _try(self, action: ProposedAction, horizon_s: float) -> Outcome:
        from twinkg.sim.loop import try_on_fork  # noqa: PLC0415 - a cycle otherwise

        self._at_instant()
        key = self._key(action, horizon_s)
        if key not in self._cache:
            unmoved = next(
                (
                    o
                    for k, o in self._cache.items()
                    if k[0] is ActionKind.GATHER_DATA and k[-2:] == key[-2:]
                ),
                None,
            )
            self._cache[key] = try_on_fork(
                self.state, action, horizon_s, unmoved=unmoved, first=self._first
            )
        return self._cache[key]

    def _key(self, action: ProposedAction, horizon_s: float) -> tuple[Any, ...]:
        """What makes two candidates the same fork: the action, what the fork applies first,
        and the horizon."""
        first = tuple(_key(a, 0.0) for a in self._first)
        return (*_key(action, horizon_s)[:-1], first, horizon_s)


def _key(action: ProposedAction, horizon_s: float) -> tuple[Any, ...]:
    """What makes two candidates the same fork (with nothing applied before them)."""
    return (action.kind, action.target, action.proposed_setpoint, action.ramp_s, horizon_s)


# what a worker answers: each action's index in the batch and its outcome, or the exception
# that stopped the worker's group there (the last entry then)
_Answer = list[tuple[int, Outcome | BaseException]]


def _tries(
    planner: LookaheadPlanner, actions: list[ProposedAction], group: list[int], horizon_s: float
) -> _Answer:
    """Try ``group``'s actions one after another until the first raises."""
    answer: _Answer = []
    for i in group:
        try:
            answer.append((i, planner._try(actions[i], horizon_s)))
        except Exception as exc:  # carried back and raised in order by the caller
            answer.append((i, exc))
            break
    return answer


def _worker(
    conn: Connection,
    planner: LookaheadPlanner,
    actions: list[ProposedAction],
    group: list[int],
    horizon_s: float,
) -> None:
    """A forked process's work: its group's outcomes, sent back through ``conn``."""
    gc.disable()  # short-lived: a collection would copy every page of the parent it touches
    master = planner.state.plant.master
    master.after_fork()
    answer = _tries(planner, actions, group, horizon_s)
    try:
        conn.send(answer)
    except Exception as exc:  # an exception that does not pickle: its type and message
        i, raised = answer[-1]
        conn.send([*answer[:-1], (i, SimulatorError(f"{type(raised).__name__}: {exc}"))])
    conn.close()
    # this process's copies of the simulators: what they made here goes (a restored water
    # network's working directory), what the parent made stays (sim.adapter.working_dir)
    with contextlib.suppress(SimulatorError):
        master.terminate()


def _in_parallel(
    planner: LookaheadPlanner,
    actions: list[ProposedAction],
    horizon_s: float,
    groups: list[list[int]],
) -> dict[int, Outcome]:
    """The first group tried here, every other in a forked process; the outcomes by index, or
    the exception of the first action (by index) that raised."""
    context = mp.get_context("fork")
    sys.stdout.flush()  # what is buffered would otherwise be written again by each child
    sys.stderr.flush()
    children: list[tuple[Any, Connection, list[int]]] = []
    try:
        gc.freeze()  # the parent's objects stay out of the children's collections
        try:
            for group in groups[1:]:
                receive, send = context.Pipe(duplex=False)
                child = context.Process(
                    target=_worker,
                    args=(send, planner, actions, group, horizon_s),
                    name="twinkg-lookahead",
                    daemon=True,
                )
                child.start()
                send.close()
                children.append((child, receive, group))
        finally:
            gc.unfreeze()
        answers = _tries(planner, actions, groups[0], horizon_s)
        for child, receive, group in children:
            try:
                answers += receive.recv()
            except EOFError:
                child.join()
                code = child.exitcode
                reason = f"a look-ahead worker ended (exit code {code}) before it answered"
                answers.append((group[0], SimulatorError(reason)))
            except Exception as exc:  # an answer that does not unpickle (an odd exception)
                reason = f"a look-ahead worker's answer could not be read: {exc}"
                answers.append((group[0], SimulatorError(reason)))
            child.join()  # it has answered: it only shuts its copies down, however long that takes
    finally:
        for child, receive, _ in children:
            receive.close()
            if child.is_alive():  # only when this process is leaving early (an interrupt)
                child.kill()
                child.join()
    failed = [(i, exc) for i, exc in answers if isinstance(exc, BaseException)]
    if failed:
        raise min(failed, key=lambda f: f[0])[1]
    return {i: o for i, o in answers if not isinstance(o, BaseException)}


def _short_of_service(case: PlanningCase) -> bool:
    """Whether one of the case's own sensors fell below its envelope's minimum: it read at or
    above it before the finding and below it during (a zone's service pressure dropping under
    the level it must get, say). A reading that was under the floor before as well is how the
    network runs, not a shortfall to add supply for (decision 0054)."""
    return any(
        s.relation == "own"
        and e.quantity_kind == s.quantity_kind
        and s.mean < e.minimum <= s.baseline_mean
        for s in case.symptoms
        for e in case.envelopes
    )


def _same(a: ProposedAction, b: ProposedAction) -> bool:
    return (a.kind, a.target, a.proposed_setpoint) == (b.kind, b.target, b.proposed_setpoint)


def _risk(nothing: Outcome, o: Outcome, repair_h: float) -> float:
    def exposure(x: Outcome) -> float:
        return x.down_h(repair_h) + 10 * x.trips

    base, now = exposure(nothing), exposure(o)
    return 0.0 if base <= 0 else max(0.0, min(1.0, (base - now) / base))


def _describe(o: Outcome) -> str:
    parts: Mapping[str, float] = o.as_dict()
    return ", ".join(f"{k} {v:g}" for k, v in parts.items())
