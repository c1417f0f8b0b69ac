"""The ``twinkg`` command line against the real Neo4j, as a user runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import REPO, Neo4jTarget
from twinkg.kg.local_server import free_port

pytestmark = pytest.mark.neo4j
TWINKG = str(Path(sys.executable).parent / "twinkg")  # the one installed with this interpreter


def run(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWINKG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _counts(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN count(n) AS n } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS r } RETURN n, r"
    )
    return records[0]["n"], records[0]["r"]


@pytest.fixture(scope="module")
def seeded(neo4j_target: Neo4jTarget, driver: Driver) -> Neo4jTarget:
    with driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()
    done = run("seed", "--plant", "skab-testbed", env=neo4j_target.env())
    assert done.returncode == 0, done.stderr
    assert "seeded skab-testbed" in done.stdout
    return neo4j_target


def test_cypher_prints_a_table(seeded: Neo4jTarget) -> None:
    done = run(
        "cypher",
        "MATCH (p:CentrifugalPump) RETURN p.tag AS tag, labels(p) AS labels",
        env=seeded.env(),
    )
    assert done.returncode == 0, done.stderr
    assert "tag" in done.stdout and "RotatingEquipment" in done.stdout and "1 row(s)" in done.stdout


def test_cypher_parameters_and_json(seeded: Neo4jTarget) -> None:
    done = run(
        "cypher",
        "MATCH (s:Sensor) WHERE s.physicalMax > $m RETURN count(s) AS n",
        "--param",
        "m=100",
        "--json",
        env=seeded.env(),
    )
    assert done.returncode == 0, done.stderr
    assert '"n":' in done.stdout.replace(" ", "")


@pytest.mark.parametrize(
    "query",
    [
        "CREATE (n:Pump {uri: 'urn:evil'})",
        "MATCH (n) DETACH DELETE n",
        "MATCH (p:Pump) SET p.tag = 'X'",
        "MATCH (n) WITH n LIMIT 1 CALL (n) { SET n.hacked = true } RETURN 1",
        "LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row",
        "MATCH (n) RETURN n; CREATE (m)",
    ],
)
def test_cypher_refuses_writes_and_leaves_the_graph_alone(
    seeded: Neo4jTarget, driver: Driver, query: str
) -> None:
    before = _counts(driver)
    done = run("cypher", query, env=seeded.env())
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert done.stderr.startswith("error[query_rejected]:") and done.stderr.count("\n") == 1
    assert _counts(driver) == before
    hacked, _, _ = driver.execute_query(
        "MATCH (n) WHERE n.hacked OR n.tag = 'X' RETURN count(n) AS c"
    )
    assert hacked[0]["c"] == 0


def test_unknown_plant_is_a_one_line_error(seeded: Neo4jTarget) -> None:
    done = run("seed", "--plant", "atlantis", env=seeded.env())
    assert done.returncode == 5
    assert done.stderr.strip() == (
        "error[unknown_plant]: unknown plant 'atlantis'; known plants: skab-testbed, tep, generated"
    )


def test_unreachable_neo4j_is_a_one_line_error(neo4j_target: Neo4jTarget) -> None:
    env = {**neo4j_target.env(), "TWINKG_NEO4J_URI": f"bolt://127.0.0.1:{free_port()}"}
    done = run("cypher", "RETURN 1", env=env)
    assert done.returncode == 3
    assert done.stderr.startswith("error[store_unavailable]: Neo4j is unreachable")
    assert done.stderr.count("\n") == 1


def test_wrong_password_is_a_one_line_error(neo4j_target: Neo4jTarget) -> None:
    done = run(
        "cypher", "RETURN 1", env={**neo4j_target.env(), "TWINKG_NEO4J_PASSWORD": "nope-nope"}
    )
    assert done.returncode == 3
    assert "refused the credentials" in done.stderr and done.stderr.count("\n") == 1


def test_bad_setting_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "TWINKG_NEO4J_BOLT_PORT": "not-a-port", "TWINKG_HOME": str(tmp_path)}
    done = run("db", "status", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error[config_invalid]: TWINKG_NEO4J_BOLT_PORT")


def test_db_start_status_stop_and_a_taken_port(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINKG_NEO4J")}
    env |= {
        "TWINKG_HOME": str(tmp_path),
        "TWINKG_NEO4J_BOLT_PORT": str(port),
        "TWINKG_NEO4J_HEAP": "512m",
        "TWINKG_NEO4J_PAGECACHE": "64m",
    }
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        taken = run("db", "start", env=env)
    assert taken.returncode == 6
    assert taken.stderr.strip().startswith(f"error[port_in_use]: port {port} on 127.0.0.1")

    try:
        started = run("db", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert f"bolt://127.0.0.1:{port}" in started.stdout
        status = run("db", "status", env=env)
        assert status.returncode == 0 and "is running" in status.stdout
        assert (tmp_path / "neo4j" / "password").stat().st_mode & 0o077 == 0
        seeded = run("seed", "--plant", "skab-testbed", env=env)
        assert seeded.returncode == 0, seeded.stderr
        shown = run("cypher", "MATCH (s:Sensor) RETURN count(s) AS sensors", env=env)
        assert shown.returncode == 0 and "8" in shown.stdout
    finally:
        stopped = run("db", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    after = run("db", "status", env=env)
    assert after.returncode == 3 and "not running" in after.stdout

    try:  # a restart finds the same password and the data it had
        again = run("cypher", "MATCH (s:Sensor) RETURN count(s) AS sensors", env=env)
        assert again.returncode == 0, again.stderr
        assert "8" in again.stdout
    finally:
        run("db", "stop", env=env)


MY_PLANT = """@prefix tk: <https://w3id.org/twinkg/ontology#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix my: <https://plant.example.org/> .
my:p-201 a tk:CentrifugalPump ; rdfs:label "Feed pump" ; tk:tag "P-201" ; tk:criticality "B" .
my:m-201 a tk:Motor ; rdfs:label "Feed pump motor" ; tk:tag "M-201" ; tk:criticality "C" ;
    tk:drives my:p-201 .
"""


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (MY_PLANT.replace("tk:drives my:p-201 .", "tk:drives my:p-201"), "turtle_malformed"),
        (MY_PLANT.replace('tk:tag "P-201"', 'tk:colour "red"'), "mapping_invalid"),
        (
            MY_PLANT.replace('"Feed pump" ;', '"Feed pump" ; tk:ratedPower "big" ;'),
            "mapping_invalid",
        ),
        (MY_PLANT.replace('tk:criticality "B"', 'tk:criticality "Z"'), "contract_violation"),
    ],
)
def test_bad_plant_file_is_refused_and_nothing_is_written(
    seeded: Neo4jTarget, driver: Driver, tmp_path: Path, text: str, code: str
) -> None:
    before = _counts(driver)
    path = tmp_path / "plant.ttl"
    path.write_text(text, encoding="utf-8")
    done = run("seed", "--file", str(path), env=seeded.env())
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith(f"error[{code}]: ") and done.stderr.count("\n") == 1
    assert _counts(driver) == before


def test_own_plant_file_loads(seeded: Neo4jTarget, driver: Driver, tmp_path: Path) -> None:
    path = tmp_path / "plant.ttl"
    path.write_text(MY_PLANT, encoding="utf-8")
    done = run("seed", "--file", str(path), env=seeded.env())
    assert done.returncode == 0, done.stderr
    records, _, _ = driver.execute_query(
        "MATCH (m:Motor {tag: 'M-201'})-[:DRIVES]->(p:RotatingEquipment) RETURN p.tag AS tag"
    )
    assert [r["tag"] for r in records] == ["P-201"]


@pytest.mark.parametrize(
    "args", [[], ["--plant", "skab-testbed", "--file", "x.ttl"], ["--file", "/no/such/plant.ttl"]]
)
def test_seed_needs_exactly_one_existing_source(seeded: Neo4jTarget, args: list[str]) -> None:
    done = run("seed", *args, env=seeded.env())
    assert done.returncode == 5
    assert done.stderr.startswith("error[invalid_input]: ")


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:7474", "localhost:7687", "neo4j+x://db.example:7687"]
)
def test_malformed_neo4j_uri_is_a_configuration_error(uri: str, tmp_path: Path) -> None:
    env = {**os.environ, "TWINKG_NEO4J_URI": uri, "TWINKG_HOME": str(tmp_path)}
    done = run("cypher", "RETURN 1", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error[config_invalid]: ") and done.stderr.count("\n") == 1


def test_row_cap_truncates_and_says_so(seeded: Neo4jTarget) -> None:
    env = {**seeded.env(), "TWINKG_QUERY_ROW_CAP": "3"}
    done = run("cypher", "MATCH (n:Resource) RETURN n.uri AS uri", env=env)
    assert done.returncode == 0, done.stderr
    assert "3 row(s) (truncated at the row or byte cap)" in done.stdout


def test_byte_cap_truncates_and_says_so(seeded: Neo4jTarget) -> None:
    env = {**seeded.env(), "TWINKG_QUERY_MAX_BYTES": "1024"}
    done = run("cypher", "UNWIND range(1, 5000) AS x RETURN x", "--json", env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["truncated"] is True and 0 < len(shown["rows"]) < 5000


def test_an_unbounded_query_is_refused_before_it_runs(seeded: Neo4jTarget) -> None:
    done = run("cypher", "RETURN reduce(s = 0, x IN range(1, 10000000) | s + x)", env=seeded.env())
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert done.stderr.startswith("error[query_unbounded]: refused: range()")


def test_server_side_timeout_stops_a_runaway_query(seeded: Neo4jTarget) -> None:
    env = {**seeded.env(), "TWINKG_QUERY_TIMEOUT_S": "0.5"}
    query = "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN count(*)"
    done = run("cypher", query, env=env)
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert done.stderr.startswith("error[query_timeout]: ") and "timeout" in done.stderr.lower()


def test_invalid_cypher_names_the_position_in_the_users_query(seeded: Neo4jTarget) -> None:
    done = run("cypher", "MATC (n) RETURN n", env=seeded.env())
    assert done.returncode == 4
    assert done.stderr.startswith("error[query_rejected]: invalid Cypher: Invalid input 'MATC'")
    assert "(line 1, column 1 (offset: 0))" in done.stderr


SPARQL_PREFIXES = (
    "PREFIX tk: <https://w3id.org/twinkg/ontology#> "
    "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> "
)


def test_sparql_prints_a_table_over_the_projection(seeded: Neo4jTarget) -> None:
    done = run(
        "sparql",
        SPARQL_PREFIXES + "SELECT ?tag WHERE { ?p a/rdfs:subClassOf* tk:Pump ; tk:tag ?tag }",
        env=seeded.env(),
    )
    assert done.returncode == 0, done.stderr
    # Other tests of this module load plants of their own: the SKAB pump is one of the rows.
    assert "│ P-1 " in done.stdout and "row(s)" in done.stdout


def test_sparql_standard_formats(seeded: Neo4jTarget) -> None:
    ask = run("sparql", SPARQL_PREFIXES + "ASK { ?p tk:tag 'P-1' }", env=seeded.env())
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip() == "true"
    csv = run(
        "sparql",
        SPARQL_PREFIXES + "SELECT ?tag WHERE { ?p a tk:CentrifugalPump ; tk:tag ?tag }",
        "--format",
        "csv",
        env=seeded.env(),
    )
    assert csv.returncode == 0, csv.stderr
    header, *tags = csv.stdout.split()
    assert header == "tag" and "P-1" in tags


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("INSERT DATA { <urn:x> <urn:y> <urn:z> }", "sparql_refused"),
        ("SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }", "sparql_refused"),
        ("SELECT * WHERE { ?s ?p ", "sparql_invalid"),
    ],
)
def test_sparql_refusals_are_one_line_errors(
    seeded: Neo4jTarget, driver: Driver, query: str, code: str
) -> None:
    before = _counts(driver)
    done = run("sparql", query, env=seeded.env())
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(f"error[{code}]") and done.stderr.count("\n") == 1
    assert _counts(driver) == before


def test_assets_and_context_at_the_terminal(seeded: Neo4jTarget) -> None:
    pumps = run("assets", "--kind", "Pump", "--json", env=seeded.env())
    assert pumps.returncode == 0, pumps.stderr
    (pump,) = [p for p in json.loads(pumps.stdout) if p["tag"] == "P-1"]
    assert pump["criticality"] == "A" and pump["types"][0].endswith("#CentrifugalPump")
    context = run("context", pump["uri"], env=seeded.env())
    assert context.returncode == 0, context.stderr
    assert "P-1 (CentrifugalPump), criticality A" in context.stdout
    assert "failure mode Cavitation" in context.stdout and "sensor FT-8" in context.stdout


def test_context_of_an_unknown_asset_and_an_unknown_class(seeded: Neo4jTarget) -> None:
    missing = run("context", "https://example.org/no-such-asset", env=seeded.env())
    assert missing.returncode == 8
    assert missing.stderr.startswith("error[not_found]") and missing.stderr.count("\n") == 1
    wrong = run("assets", "--kind", "Unicorn", env=seeded.env())
    assert wrong.returncode == 5
    assert wrong.stderr.startswith("error[invalid_input]")
