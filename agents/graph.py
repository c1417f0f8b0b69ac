"""The agent graph: monitor → diagnose → plan → guard → act → record, and approval.

An explicit LangGraph ``StateGraph`` over :class:`agents.state.AgentState` with the
:class:`agents.context.RunContext` as its run context. Each node is the function of its name in
the module of its name (``agents.monitor.monitor``, ``agents.diagnose.diagnose``, …), listed in
:data:`NODES`. Routing is data: nothing found ends the run after the monitor; the guard's outcome
decides whether the run acts, records a refusal, or records a request and waits for a person
(``approval``, an interrupt); a resumed run is guarded again before it may act.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from opentelemetry import trace

from twinkg.agents import act, approval, diagnose, guard, monitor, plan, record
from twinkg.agents.context import RunContext
from twinkg.agents.state import AgentState, Outcome

Node = Callable[[AgentState, RunContext], dict[str, Any]]
_tracer = trace.get_tracer("twinkg.agents")

NODES: dict[str, Node] = {
    "monitor": monitor.monitor,
    "diagnose": diagnose.diagnose,
    "plan": plan.plan,
    "guard": guard.guard,
    "approval": approval.approval,
    "act": act.act,
    "record": record.record,
}


class _Bound(Protocol):
    __name__: str

    def __call__(self, state: AgentState, *, runtime: Runtime[RunContext]) -> dict[str, Any]: ...


def _bind(node: Node) -> _Bound:
    """The node as LangGraph calls it: the run context arrives as ``runtime.context``."""

    def run(state: AgentState, *, runtime: Runtime[RunContext]) -> dict[str, Any]:
        with _tracer.start_as_current_span(f"twinkg.agent.{node.__name__}") as span:
            span.set_attribute("twinkg.trigger", str(state.trigger))
            if state.asset or state.scope:
                span.set_attribute("twinkg.asset", state.asset or state.scope or "")
            update = node(state, runtime.context)
            steps = update.get("steps")
            if steps:  # the record node: the trace carries the provenance it wrote
                span.set_attribute("twinkg.decision", steps[-1].decision)
                span.set_attribute("twinkg.outcome", str(steps[-1].outcome))
            return update

    run.__name__ = node.__name__
    run.__doc__ = node.__doc__
    return run


def after_monitor(state: AgentState) -> str:
    """Nothing to decide on ends the run."""
    return "diagnose" if state.asset else END


def after_guard(state: AgentState) -> str:
    """Act only when the guard allowed it; record refusals and approval requests as they are."""
    return "act" if state.outcome is Outcome.APPLIED else "record"


def after_record(state: AgentState) -> str:
    """Wait for a person after recording an approval request; otherwise the run is done."""
    return "approval" if state.outcome is Outcome.AWAITING_APPROVAL else END


def build() -> StateGraph[AgentState, RunContext, AgentState, AgentState]:
    """The uncompiled graph (its shape is pinned by a test)."""
    graph = StateGraph(AgentState, context_schema=RunContext)
    for name, node in NODES.items():
        graph.add_node(name, _bind(node))
    graph.add_edge(START, "monitor")
    graph.add_conditional_edges("monitor", after_monitor, ["diagnose", END])
    graph.add_edge("diagnose", "plan")
    graph.add_edge("plan", "guard")
    graph.add_conditional_edges("guard", after_guard, ["act", "record"])
    graph.add_edge("act", "record")
    graph.add_conditional_edges("record", after_record, ["approval", END])
    graph.add_edge("approval", "guard")
    return graph


def compile_graph(
    checkpointer: BaseCheckpointSaver[Any] | None,
) -> CompiledStateGraph[AgentState, RunContext, AgentState, AgentState]:
    """The compiled graph with ``checkpointer`` (None: in memory only, as replays run)."""
    return build().compile(checkpointer=checkpointer, name="twinkg-agents")
