"""The agent graph's shape is pinned: which nodes exist and where each can lead."""

from __future__ import annotations

from twinkg.agents.graph import build, compile_graph


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
