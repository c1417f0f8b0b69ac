"""A standard SPARQL client (SPARQLWrapper), unchanged, against the running endpoint.

The server is the real app under uvicorn on a loopback port, over the real Neo4j; the only
thing the client is told beyond the endpoint's URL is the API key header.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from neo4j import Driver
from rdflib import Graph, URIRef
from SPARQLWrapper import CSV, JSON, POST, TURTLE, XML, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import QueryBadFormed, SPARQLWrapperException

from tests.conftest import Neo4jTarget
from tests.integration.api_world import PUMP, make_keys, seed_and_ingest, serving
from twinkg.api.app import create_app
from twinkg.api.security import Role
from twinkg.api.settings import Settings

pytestmark = pytest.mark.neo4j

PREFIXES = (
    "PREFIX tk: <https://w3id.org/twinkg/ontology#> "
    "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> "
)
PUMP_TAGS = PREFIXES + "SELECT ?tag WHERE { ?p a/rdfs:subClassOf* tk:Pump ; tk:tag ?tag }"


@dataclass
class Endpoint:
    """The SPARQL endpoint's URL and an engineer's and a viewer's key."""

    url: str
    engineer: str
    viewer: str
    driver: Driver

    def client(self, key: str | None = None) -> SPARQLWrapper:
        """A SPARQLWrapper for the endpoint, authenticated with ``key`` (an engineer's)."""
        wrapper = SPARQLWrapper(self.url)
        wrapper.addCustomHttpHeader("X-API-Key", key or self.engineer)
        return wrapper


@pytest.fixture(scope="module")
def endpoint(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    home = tmp_path_factory.mktemp("sparql-client")
    store = seed_and_ingest(driver, neo4j_target, home, ingest=False)
    settings = Settings(home=home, projection_poll_s=0.1)
    keys = make_keys(settings)
    with serving(create_app(settings, store=store)) as url:
        yield Endpoint(f"{url}/sparql", keys[Role.ENGINEER], keys[Role.VIEWER], driver)


def _tags(endpoint: Endpoint, wrapper: SPARQLWrapper) -> list[str]:
    """The pump tags, once the projection has caught up with the seed."""
    deadline = time.monotonic() + 60
    while True:
        result = wrapper.queryAndConvert()
        assert isinstance(result, dict)
        tags = [row["tag"]["value"] for row in result["results"]["bindings"]]
        if tags or time.monotonic() > deadline:
            return tags
        time.sleep(0.2)


def test_select_json_over_get_and_post(endpoint: Endpoint) -> None:
    get = endpoint.client()
    get.setQuery(PUMP_TAGS)
    get.setReturnFormat(JSON)
    assert _tags(endpoint, get) == ["P-1"]

    post = endpoint.client()
    post.setMethod(POST)  # form-encoded `query=`, as the protocol allows
    post.setQuery(PUMP_TAGS)
    post.setReturnFormat(JSON)
    assert _tags(endpoint, post) == ["P-1"]


def test_select_xml_and_csv(endpoint: Endpoint) -> None:
    xml = endpoint.client()
    xml.setQuery(PUMP_TAGS)
    xml.setReturnFormat(XML)
    document = xml.queryAndConvert()  # an xml.dom.minidom document
    values = [node.firstChild.data for node in document.getElementsByTagName("literal")]  # type: ignore[union-attr]
    assert values == ["P-1"]

    csv = endpoint.client()
    csv.setQuery(PUMP_TAGS)
    csv.setReturnFormat(CSV)
    raw = csv.queryAndConvert()
    assert isinstance(raw, bytes)
    assert raw.decode().split() == ["tag", "P-1"]


def test_ask_and_construct(endpoint: Endpoint) -> None:
    ask = endpoint.client()
    ask.setQuery(PREFIXES + f"ASK {{ <{PUMP}> tk:criticality 'A' }}")
    ask.setReturnFormat(JSON)
    answer = ask.queryAndConvert()
    assert isinstance(answer, dict)
    assert answer["boolean"] is True

    construct = endpoint.client()
    construct.setQuery(PREFIXES + f"CONSTRUCT {{ <{PUMP}> ?p ?o }} WHERE {{ <{PUMP}> ?p ?o }}")
    construct.setReturnFormat(TURTLE)
    body = construct.queryAndConvert()
    assert isinstance(body, bytes)
    graph = Graph().parse(data=body, format="turtle")
    assert len(graph) > 5
    assert set(graph.subjects()) == {URIRef(PUMP)}


def _counts(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "MATCH (n) OPTIONAL MATCH (n)-[r]->() RETURN count(DISTINCT n) AS n, count(r) AS r"
    )
    return int(records[0]["n"]), int(records[0]["r"])


def test_an_update_through_the_client_is_refused(endpoint: Endpoint) -> None:
    before = _counts(endpoint.driver)
    update = endpoint.client()
    update.setMethod(POST)
    update.setQuery(PREFIXES + f"INSERT DATA {{ <{PUMP}> tk:tag 'HACKED' }}")  # sent as update=
    with pytest.raises(QueryBadFormed) as refused:
        update.query()
    assert "sparql_refused" in str(refused.value)
    check = endpoint.client()
    check.setQuery(PUMP_TAGS)
    check.setReturnFormat(JSON)
    assert _tags(endpoint, check) == ["P-1"]
    assert _counts(endpoint.driver) == before


def test_the_client_needs_a_key_with_the_query_role(endpoint: Endpoint) -> None:
    viewer = endpoint.client(endpoint.viewer)
    viewer.setQuery(PUMP_TAGS)
    viewer.setReturnFormat(JSON)
    with pytest.raises((SPARQLWrapperException, OSError)) as refused:
        viewer.query()
    assert "403" in str(refused.value) or "forbidden" in str(refused.value)


def test_an_update_in_the_url_is_refused_alone_or_beside_a_query(endpoint: Endpoint) -> None:
    headers = {"X-API-Key": endpoint.engineer}
    for params in (
        {"update": "INSERT DATA { <urn:a> <urn:b> <urn:c> }"},
        {"query": "ASK {}", "update": "CLEAR ALL"},
    ):
        response = httpx.get(endpoint.url, params=params, headers=headers, timeout=60)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "sparql_refused"
    posted = httpx.post(
        endpoint.url,
        params={"update": "CLEAR ALL"},
        content=b"ASK {}",
        headers={**headers, "Content-Type": "application/sparql-query"},
        timeout=60,
    )
    assert posted.status_code == 400 and posted.json()["error"]["code"] == "sparql_refused"
    anonymous = httpx.get(endpoint.url, params={"update": "CLEAR ALL"}, timeout=60)
    assert anonymous.status_code == 401  # credentials are checked first


def test_options_lists_the_methods(endpoint: Endpoint) -> None:
    response = httpx.options(endpoint.url, timeout=60)
    assert response.status_code == 204
    assert [m.strip() for m in response.headers["allow"].split(",")] == ["GET", "POST", "OPTIONS"]
