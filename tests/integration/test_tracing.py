"""OpenTelemetry traces of an agent run (``api.tracing``), on the real Neo4j, in a process of
their own (``trace_probe``): one trace holds the run's span, a span per agent node under it,
and the store's calls under the nodes; the record node's span carries the decision's IRI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import REPO, Neo4jTarget, seed_skab

pytestmark = pytest.mark.neo4j


def test_a_decision_s_trace_holds_its_nodes_its_store_calls_and_its_iri(
    neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    seed_skab(driver)
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.trace_probe"],
        env={**neo4j_target.env(), "TWINKG_HOME": str(tmp_path)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    decision = json.loads(first)["decision"]
    spans = [json.loads(line) for line in rest]
    runs = [s for s in spans if s["name"] == "twinkg.agents.run"]
    assert len(runs) == 1
    run = runs[0]
    in_run = [s for s in spans if s["trace"] == run["trace"]]
    nodes = {s["name"]: s for s in in_run if s["name"].startswith("twinkg.agent.")}
    assert {"twinkg.agent.monitor", "twinkg.agent.guard", "twinkg.agent.record"} <= set(nodes)
    assert all(s["parent"] == run["span"] for s in nodes.values())
    record = nodes["twinkg.agent.record"]
    assert record["attributes"]["twinkg.decision"] == decision
    assert record["attributes"]["twinkg.outcome"] == "awaiting_approval"
    node_ids = {s["span"] for s in nodes.values()}
    store_calls = [s for s in in_run if s["name"].startswith("twinkg.store ")]
    assert store_calls and all(s["attributes"]["db.system"] == "neo4j" for s in store_calls)
    parent_of = {s["span"]: s["parent"] for s in in_run}

    def under_a_node(span_id: str | None) -> bool:
        while span_id is not None and span_id not in node_ids:
            span_id = parent_of.get(span_id)  # a statement inside a transaction's span
        return span_id is not None

    assert all(under_a_node(s["parent"]) for s in store_calls)
    assert any(s["name"] == "twinkg.store provenance.chain_lock" for s in store_calls)
