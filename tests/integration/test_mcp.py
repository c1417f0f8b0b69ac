"""The MCP server through the official MCP client, over real HTTP, on the real Neo4j.

uvicorn serves a Starlette app that mounts the endpoint at ``/mcp`` (as the API does) on a free
loopback port; each test connects with ``mcp.client.streamable_http`` and a ``ClientSession``,
with an API key for the role it plays, on the seeded SKAB testbed.
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from neo4j import Driver
from rdflib import Graph, URIRef
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.conftest import forget_decisions, seed_skab
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.state import ActionKind
from twinkg.api.mcp.server import create_mcp_app
from twinkg.api.security import Authenticator, KeyStore, Role
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin
from twinkg.kg.store import GraphStore

pytestmark = pytest.mark.neo4j
PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP = PLANT + "pump"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
CAVITATION = "https://w3id.org/twinkg/ontology#Cavitation"
TOOLS = {"cypher", "sparql", "asset_context", "lineage", "propose_action"}


@dataclass(frozen=True)
class Served:
    url: str
    keys: dict[str, str]  # role name → API key
    twin: Twin


def _projection(store: GraphStore) -> Any:
    try:  # written alongside this module: the SPARQL test runs once it is there
        module = importlib.import_module("twinkg.kg.projection")
    except ImportError:
        return None
    projection = module.Projection(store)
    projection.rebuild()
    return projection


@pytest.fixture(scope="module")
def served(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = seed_skab(driver)
    home = tmp_path_factory.mktemp("mcp")
    key_store = KeyStore(home / "api-keys.json")
    keys = {
        role.value: key_store.create(name=f"mcp-{role.value}", roles={role})[1]
        for role in (Role.AGENT, Role.VIEWER, Role.COMPLIANCE)
    }
    authenticator = Authenticator(key_store, None)
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        twin = Twin(Settings(home=home), store, checkpointer=saver, projection=_projection(store))
        endpoint = create_mcp_app(twin=lambda: twin, authenticator=lambda: authenticator)

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with endpoint.lifespan():
                yield

        app = Starlette(routes=[Mount("/mcp", app=endpoint.app)], lifespan=lifespan)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", keys, twin)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()
    forget_decisions(driver)


Work = Callable[[ClientSession], Awaitable[Any]]


def _with_session(
    served: Served,
    work: Work,
    *,
    headers: dict[str, str] | None,
    statuses: list[int] | None = None,
) -> Any:
    """Run ``work`` in an initialised MCP session that sends ``headers`` on every request
    (and notes the HTTP status of every response in ``statuses``)."""

    async def note(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async def main() -> Any:
        http = create_mcp_http_client(headers=headers)
        http.event_hooks["response"].append(note)
        async with (
            http,
            streamable_http_client(served.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    return anyio.run(main)


def _as(role: str, served: Served, work: Work) -> Any:
    return _with_session(served, work, headers={"X-API-Key": served.keys[role]})


def _call(role: str, served: Served, tool: str, **arguments: Any) -> CallToolResult:
    async def work(session: ClientSession) -> CallToolResult:
        return await session.call_tool(tool, arguments)

    result: CallToolResult = _as(role, served, work)
    return result


def _body(result: CallToolResult) -> dict[str, Any]:
    """The result's JSON, read from the text an LLM sees (and checked against the structured)."""
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent)
    document: dict[str, Any] = json.loads(result.content[0].text)
    assert result.structured_content == document
    return document


def _error_code(result: CallToolResult) -> str:
    assert result.is_error, _body(result)
    code: str = _body(result)["error"]["code"]
    return code


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _count(driver: Driver, label: str) -> int:
    records, _, _ = driver.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n")
    return int(records[0]["n"])


def test_the_five_tools_are_listed_with_precise_input_schemas(served: Served) -> None:
    async def work(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in _as("viewer", served, work)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.input_schema["type"] == "object", tool.name
        assert "ctx" not in tool.input_schema["properties"], tool.name
    propose = tools["propose_action"].input_schema
    kind = propose["$defs"][propose["properties"]["kind"]["$ref"].rsplit("/", 1)[-1]]
    assert kind["enum"] == [k.value for k in ActionKind]
    assert set(propose["required"]) == {"kind", "target", "confidence"}
    assert propose["properties"]["confidence"]["maximum"] == 1.0
    assert tools["cypher"].input_schema["required"] == ["query"]
    assert tools["lineage"].input_schema["properties"]["format"]["enum"] == ["turtle", "json-ld"]
    assert tools["cypher"].annotations and tools["cypher"].annotations.read_only_hint
    assert tools["propose_action"].output_schema is not None


def test_cypher_reads_rows_and_refuses_a_write(served: Served, driver: Driver) -> None:
    result = _call(
        "agent",
        served,
        "cypher",
        query="MATCH (s:Sensor)-[:MONITORS]->(p {uri: $pump}) RETURN s.tag AS tag ORDER BY tag",
        params={"pump": PUMP},
    )
    assert not result.is_error, _body(result)
    body = _body(result)
    assert body["columns"] == ["tag"]
    assert [row[0] for row in body["rows"]] == ["FT-8", "PT-4", "VT-1", "VT-2"]
    assert body["truncated"] is False
    before = _count(driver, "Resource")
    write = _call(
        "agent", served, "cypher", query="CREATE (:Resource {uri: 'urn:mcp-test:written'})"
    )
    assert _error_code(write) == "query_rejected"
    assert _count(driver, "Resource") == before


def test_asset_context_gives_the_pumps_sensors_and_failure_modes(served: Served) -> None:
    body = _body(_call("viewer", served, "asset_context", asset=PUMP))
    assert body["tag"] == "P-1" and body["criticality"] == "A"
    sensors = {s["sensor"] for s in body["sensors"]}
    assert PLANT + "sensor-flow" in sensors and PLANT + "sensor-pressure" in sensors
    assert CAVITATION in {m["mode"] for m in body["failure_modes"]}
    unknown = _call("viewer", served, "asset_context", asset=PLANT + "no-such-asset")
    assert _error_code(unknown) == "not_found"


def test_an_unsafe_setpoint_is_refused_recorded_and_auditable(
    served: Served, driver: Driver
) -> None:
    context = _body(_call("agent", served, "asset_context", asset=PUMP))
    flow = next(e for e in context["policies"]["envelopes"] if e["quantity_kind"] == FLOW)
    proposal = _call(
        "agent",
        served,
        "propose_action",
        kind="setpoint_change",
        target=PUMP,
        confidence=0.95,
        quantity_kind=FLOW,
        current_setpoint=(flow["minimum"] + flow["maximum"]) / 2,
        proposed_setpoint=flow["maximum"] + 60.0,
        ramp_s=600.0,
        rationale="more flow (an MCP test: beyond the envelope on purpose)",
    )
    body = _body(proposal)
    assert not proposal.is_error and body["status"] == "done"
    step = body["steps"][-1]
    assert step["outcome"] == "refused" and step["reason"]
    assert body["approval_request"] is None
    records, _, _ = driver.execute_query(
        "MATCH (d:Decision {uri: $uri}) RETURN d.outcome AS outcome", uri=step["decision"]
    )
    assert [r["outcome"] for r in records] == ["refused"]

    lineage = _body(_call("compliance", served, "lineage", decision=step["decision"]))
    assert lineage["decision"] == step["decision"]
    assert lineage["prov_valid"] is True and lineage["violations"] == []
    graph = Graph().parse(data=lineage["document"], format="turtle")
    assert len(graph) == lineage["triples"] > 0
    assert (URIRef(step["decision"]), None, None) in graph
    assert "beyond the envelope on purpose" in lineage["document"]  # the client's rationale
    as_json = _body(
        _call("compliance", served, "lineage", decision=step["decision"], format="json-ld")
    )
    assert len(Graph().parse(data=as_json["document"], format="json-ld")) == len(graph)


def test_least_privilege_the_viewer_may_neither_propose_nor_audit(
    served: Served, driver: Driver
) -> None:
    decisions = _count(driver, "Decision")
    refused = _call(
        "viewer",
        served,
        "propose_action",
        kind="controlled_stop",
        target=PUMP,
        confidence=0.9,
    )
    assert _error_code(refused) == "forbidden"
    assert "viewer" in _body(refused)["error"]["message"]
    assert _count(driver, "Decision") == decisions  # nothing was run or recorded
    latest, _, _ = driver.execute_query("MATCH (d:Decision) RETURN d.uri AS uri LIMIT 1")
    decision = latest[0]["uri"] if latest else PLANT + "no-decision"
    assert _error_code(_call("viewer", served, "lineage", decision=decision)) == "forbidden"
    assert _error_code(_call("viewer", served, "cypher", query="RETURN 1")) == "forbidden"

    # The agent may propose but not audit; the error leaves the session usable.
    async def work(session: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        denied = await session.call_tool("lineage", {"decision": decision})
        allowed = await session.call_tool("cypher", {"query": "RETURN 1 AS one"})
        return denied, allowed

    denied, allowed = _as("agent", served, work)
    assert _error_code(denied) == "forbidden"
    assert _body(allowed)["rows"] == [[1]]


def test_without_valid_credentials_the_endpoint_answers_401(served: Served) -> None:
    async def work(session: ClientSession) -> Any:
        return await session.list_tools()

    for headers in (None, {"X-API-Key": "tk_aaaaaaaaaaaa_not-a-key"}):
        statuses: list[int] = []
        with pytest.raises(BaseExceptionGroup) as caught:
            _with_session(served, work, headers=headers, statuses=statuses)
        assert any(isinstance(e, MCPError) for e in _leaves(caught.value)), caught.value
        # /mcp redirects to /mcp/ (307, as any Starlette mount), where initialize is refused.
        assert statuses == [307, 401]
    listing = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    for headers, code in (
        (accept, "auth_required"),
        ({**accept, "X-API-Key": "tk_aaaaaaaaaaaa_not-a-key"}, "auth_invalid"),
        ({**accept, "Authorization": "Bearer not-a-token"}, "auth_invalid"),
    ):
        response = httpx.post(served.url + "/", json=listing, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == code


def test_sparql_reads_the_projection(served: Served) -> None:
    if served.twin.projection is None:
        pytest.skip("kg/projection.py (the SPARQL projection) is not importable yet")
    result = _call(
        "compliance",
        served,
        "sparql",
        query="SELECT ?tag WHERE { <" + PUMP + "> <https://w3id.org/twinkg/ontology#tag> ?tag }",
    )
    body = _body(result)
    assert not result.is_error and "json" in body["media_type"]
    bindings = json.loads(body["body"])["results"]["bindings"]
    assert [b["tag"]["value"] for b in bindings] == ["P-1"]
    refused = _call("compliance", served, "sparql", query="CLEAR ALL")
    assert _error_code(refused) in {"sparql_refused", "sparql_invalid"}
    assert _error_code(_call("viewer", served, "sparql", query="ASK {}")) == "forbidden"
