"""The demo's HTTP part: what a plant's people and agents do through the API, step by step.

``python -m twinkg.api.demo keys`` makes one API key per demo role (kept in
``TWINKG_HOME/demo-keys.json``, mode 0600, only on this machine); ``agents`` starts an agent
job over HTTP and prints its live stream of steps; ``approve`` approves the waiting controlled
stop as the shift supervisor; ``sparql`` asks the projection a question and shows its lag.
Each step is an HTTP call any client could make; the README shows the same calls with curl.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from twinkg.api.security import KeyStore, Role
from twinkg.api.server import base_url
from twinkg.api.settings import api_keys_path, load_settings
from twinkg.ontology.errors import TwinKGError

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
KEYS = {
    "agent": ((Role.AGENT,), None),
    "supervisor": ((Role.SUPERVISOR,), PLANT + "person-ivanova"),
    "engineer": ((Role.ENGINEER,), None),
    "compliance": ((Role.COMPLIANCE,), None),
}
QUESTION = """PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX tk: <https://w3id.org/twinkg/ontology#>
SELECT ?outcome (COUNT(?d) AS ?decisions) WHERE {
  ?d a tk:Decision ; tk:outcome ?outcome ; prov:wasAssociatedWith ?agent .
} GROUP BY ?outcome ORDER BY ?outcome"""


def _keys_file() -> Path:
    return load_settings().home.resolve() / "demo-keys.json"


def make_keys() -> dict[str, str]:
    """One key per demo role, made once and reused."""
    path = _keys_file()
    store = KeyStore(api_keys_path(load_settings()))
    if path.exists():
        keys: dict[str, str] = json.loads(path.read_text())
        if set(keys) == set(KEYS) and all(_still_valid(store, key) for key in keys.values()):
            return keys
    keys = {}
    for name, (roles, person) in KEYS.items():
        _, key = store.create(name=f"demo {name}", roles=list(roles), person=person)
        keys[name] = key
    path.write_text(json.dumps(keys, indent=2))
    path.chmod(0o600)
    return keys


def _still_valid(store: KeyStore, key: str) -> bool:
    try:
        store.verify(key)
    except TwinKGError:
        return False
    return True


def _client(role: str) -> httpx.Client:
    key = make_keys()[role]
    return httpx.Client(base_url=base_url(load_settings()), headers={"X-API-Key": key}, timeout=300)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        error = response.json().get("error", {})
        print(f"  HTTP {response.status_code} {error.get('code')}: {error.get('message')}")
        sys.exit(1)
    return response.json()


def run_agents() -> None:
    """POST /agents/jobs as the agent key, then follow its server-sent events."""
    with _client("agent") as http:
        job = _check(http.post("/agents/jobs", json={"as_of": "data"}))
        print(f"  POST /agents/jobs → job {job['job_id']} ({job['state']})")
        with http.stream("GET", job["events_url"]) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1])
                    if event == "node":
                        print(f"  · {data['run_id'][:8]} {data['node']}")
                    elif event == "run":
                        for step in data["steps"]:
                            print(f"  ✓ {step['decision']}: {step['outcome']}")
                            print(f"    {step['reason']}")
                    elif event == "end":
                        print(f"  job {data['state']}: {data['runs']} run(s)")


def approve_stop() -> None:
    """GET /approvals, then approve the controlled stop as A. Ivanova (shift supervisor)."""
    with _client("supervisor") as http:
        waiting = _check(http.get("/approvals"))
        stops = [r for r in waiting if r["action"]["kind"] == "controlled_stop"]
        if not stops:
            # A second `make demo` finds the stop approved by the first: show that decision.
            done = [
                d
                for d in _check(http.get("/decisions", params={"limit": 100}))
                if d["kind"] == "controlled_stop" and d["outcome"] == "applied"
            ]
            if not done:
                print("  no controlled stop is waiting or applied")
                sys.exit(1)
            run_id, step = done[0]["uri"].rsplit("/", 2)[-2:]
            print("  no controlled stop is waiting: an earlier demo run approved it")
            print(f"  decision: {run_id}/{step}")
            return
        run_id, step = stops[0]["decision"].rsplit("/", 2)[-2:]
        print(f"  GET /approvals → {len(waiting)} waiting; approving {run_id}/{step}")
        result = _check(
            http.post(f"/decisions/{run_id}/{step}/approve", json={"comment": "demo approval"})
        )
        answered = stops[0]["decision"]
        for item in result["steps"]:
            if item["decision"] != answered:  # the waiting step itself is unchanged
                print(f"  ✓ {item['decision']}: {item['outcome']}")
        last_run, last_step = result["steps"][-1]["decision"].rsplit("/", 2)[-2:]
        print(f"  decision: {last_run}/{last_step}")


def sparql() -> None:
    """Count the decisions by outcome over PROV-O, through the SPARQL endpoint."""
    with _client("compliance") as http:
        response = http.post(
            "/sparql",
            content=QUESTION,
            headers={
                "Content-Type": "application/sparql-query",
                "Accept": "application/sparql-results+json",
            },
        )
        body = _check(response)
        lag = response.headers.get("X-TwinKG-Projection-Lag-Seconds")
        pending = response.headers.get("X-TwinKG-Projection-Pending")
        print(f"  POST /sparql (projection lag {lag} s, {pending} change(s) pending):")
        for row in body["results"]["bindings"]:
            print(f"    {row['outcome']['value']}: {row['decisions']['value']}")


def where_to_look() -> None:
    """The URLs and the keys file."""
    url = base_url(load_settings())
    print(f"API        {url}  (OpenAPI docs: {url}/docs)")
    print(f"console    {url}/console  (sign in with a key from the file below)")
    print(f"MCP        {url}/mcp/  (streamable HTTP; send a key as X-API-Key)")
    print(f"SPARQL     {url}/sparql")
    print(f"demo keys  {_keys_file()}  (one per role; keys are shown once, kept hashed)")
    print(f'try        curl -H "X-API-Key: <the engineer key in that file>" {url}/assets')


def main(argv: list[str]) -> None:
    """``python -m twinkg.api.demo keys|agents|approve|sparql|where``."""
    steps = {
        "keys": lambda: print(f"  {len(make_keys())} demo keys in {_keys_file()}"),
        "agents": run_agents,
        "approve": approve_stop,
        "sparql": sparql,
        "where": where_to_look,
    }
    if len(argv) != 1 or argv[0] not in steps:
        print(f"usage: python -m twinkg.api.demo {'|'.join(steps)}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    steps[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
