"""``twinkg seed`` lets in only plants that meet the asset, sensor and event contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.test_cli import run
from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg.store import GraphStore

pytestmark = pytest.mark.neo4j


def test_a_plant_that_breaks_a_contract_is_refused_whole(
    empty_store: GraphStore, neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    text = (PLANTS_DIR / "skab-testbed.ttl").read_text(encoding="utf-8")
    broken = tmp_path / "broken.ttl"
    broken.write_text(
        text.replace('tk:tag "P-1" ; tk:criticality "A"', 'tk:tag "P-1" ; tk:criticality "Z"'),
        encoding="utf-8",
    )
    done = run("seed", "--file", str(broken), env=neo4j_target.env())
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stderr.startswith("error[contract_violation]: ")
    assert "skab-testbed/pump" in done.stderr and "criticality" in done.stderr.lower()
    records, _, _ = driver.execute_query("MATCH (n) RETURN count(n) AS n")
    assert records[0]["n"] == 0
    ok = run("seed", "--file", str(PLANTS_DIR / "skab-testbed.ttl"), env=neo4j_target.env())
    assert ok.returncode == 0, ok.stderr
