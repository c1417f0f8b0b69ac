"""The agent graph's shape is pinned: which nodes exist and where each can lead."""

from __future__ import annotations

import pytest

from twinkg.agents.approval import check_edits
from twinkg.agents.graph import build, compile_graph
from twinkg.ontology.errors import InvalidInputError


def test_the_graph_has_the_agents_and_the_routes_of_the_design() -> None:
    graph = compile_graph(None).get_graph()
    nodes = set(graph.nodes) - {"__start__", "__end__"}
    edges = {(e.source, e.target, e.conditional) for e in graph.edges}

    assert nodes == {"monitor", "diagnose", "plan", "guard", "approval", "act", "record"}
    assert edges == {
        ("__start__", "monitor", False),
        ("monitor", "diagnose", True),
        ("monitor", "__end__", True),  # nothing to decide on
        ("diagnose", "plan", False),
        ("plan", "guard", False),
        ("guard", "act", True),  # only when the guard allowed it
        ("guard", "record", True),  # refusals and approval requests are recorded too
        ("act", "record", False),
        ("record", "approval", True),  # an approval request waits for a person
        ("record", "__end__", True),
        ("approval", "guard", False),  # an answer is always guarded again
    }


def test_only_the_guard_leads_to_act() -> None:
    graph = build().compile().get_graph()
    assert {e.source for e in graph.edges if e.target == "act"} == {"guard"}


def test_an_approval_may_edit_only_the_setpoint_and_the_ramp() -> None:
    assert check_edits({"proposed_setpoint": 3.5, "ramp_s": 90.0}) == {
        "proposed_setpoint": 3.5,
        "ramp_s": 90.0,
    }
    with pytest.raises(InvalidInputError, match=r"not confidence, target$"):
        check_edits({"ramp_s": 90.0, "target": 1.0, "confidence": 1.0})
