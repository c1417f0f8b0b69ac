"""The audit log's hash chain, and the HTTP layer that authenticates callers and audits them."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from twinkg.api.cli import keys as cli_keys
from twinkg.api.errors import AuthenticationError, PermissionDeniedError, error_headers
from twinkg.api.http.auth import AuditMiddleware, requires
from twinkg.api.security import Authenticator, KeyStore, Permission, Principal, Role
from twinkg.kg.audit_log import AuditEntry, AuditEvent, AuditLog, AuditPhase, entry_hash
from twinkg.ontology.errors import StoreError, TwinKGError


def event(path: str = "/x", status: int = 200, subject: str = "k1") -> AuditEvent:
    return AuditEvent(
        time=datetime.now(UTC).isoformat(),
        request_id="r1",
        subject=subject,
        name="someone",
        roles=("engineer",),
        person=None,
        auth="api_key",
        client="127.0.0.1",
        method="POST",
        path=path,
        query="",
        status=status,
        error_code=None,
    )


def filled(path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(event(f"/e{i}"))
    return log


def test_entries_chain_and_read_back_newest_last(tmp_path: Path) -> None:
    log = filled(tmp_path / "audit.jsonl")
    entries = log.entries()
    assert [e.index for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].prev == "" and all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert [e.event.path for e in log.entries(limit=2)] == ["/e3", "/e4"]
    assert log.entries(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    report = log.verify()
    assert report.ok and report.count == 5 and report.head == entries[-1].hash


def _rewrite(path: Path, edit: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in edit))


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "garble"])
def test_tampering_is_found_at_its_line(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path)
    lines = path.read_text().splitlines()
    if tamper == "edit":
        document = json.loads(lines[2])
        document["subject"] = "someone-else"
        lines[2] = json.dumps(document)
    elif tamper == "delete":
        del lines[2]
    elif tamper == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines[2] = lines[2][:-10]
    _rewrite(path, lines)
    report = AuditLog(path).verify()
    assert not report.ok and report.first_bad_line == 3 and report.count == 2
    assert report.reason


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path)
    lines = path.read_text().splitlines()
    document = json.loads(lines[1])
    document["status"] = 204
    values = {k: v for k, v in document.items() if k not in {"index", "prev", "hash"}}
    values["roles"] = tuple(values["roles"])
    document["hash"] = entry_hash(1, AuditEvent(**values), document["prev"])
    lines[1] = json.dumps(document)
    _rewrite(path, lines)
    report = AuditLog(path).verify()
    assert (report.ok, report.first_bad_line) == (False, 3)


def test_appends_from_many_threads_form_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    other = AuditLog(tmp_path / "audit.jsonl")  # a second writer, as another process would be

    def write(writer: AuditLog, k: int) -> None:
        for i in range(25):
            writer.append(event(f"/t{k}/{i}"))

    threads = [threading.Thread(target=write, args=(log if k % 2 else other, k)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = log.verify()
    assert report.ok and report.count == 200
    assert len({e.event.path for e in log.entries()}) == 200


def test_a_torn_last_line_stops_appends_and_shows_in_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled(path, 2)
    with path.open("ab") as handle:
        handle.write(b'{"index": 2, "ti')
    with pytest.raises(StoreError, match="unreadable"):
        log.append(event())
    assert log.verify().first_bad_line == 3


def test_a_cut_tail_is_found_against_what_was_kept_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled(path, 5)
    kept = log.verify()
    assert log.verify(expect_head=kept.head, expect_count=kept.count).ok
    log.append(event("/later"))  # the log grows: an older head is still in it
    assert log.verify(expect_head=kept.head, expect_count=kept.count).ok
    _rewrite(path, path.read_text().splitlines()[:3])  # a consistent, shorter chain
    assert log.verify().ok
    cut = log.verify(expect_head=kept.head)
    assert not cut.ok and cut.first_bad_line is None and "tail was cut off" in (cut.reason or "")
    short = log.verify(expect_count=5)
    assert not short.ok and "3 entries where at least 5" in (short.reason or "")


def intent_and_outcome(log: AuditLog, request_id: str, *, finished: bool) -> None:
    intent = log.append(replace(event(), request_id=request_id, status=0, phase=AuditPhase.INTENT))
    if finished:
        log.append(
            replace(event(), request_id=request_id, phase=AuditPhase.OUTCOME, intent=intent.index)
        )


def test_intents_pair_with_outcomes_and_open_ones_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled(path, 2)  # entries from before write-ahead: no phase, still verified
    intent_and_outcome(log, "done-1", finished=True)
    intent_and_outcome(log, "killed-2", finished=False)
    intent_and_outcome(log, "done-3", finished=True)
    report = log.verify()
    assert report.ok and report.count == 7 and report.open_intents == ("killed-2",)
    legacy, intent = json.loads(path.read_text().splitlines()[0]), log.entries()[2]
    assert "phase" not in legacy and "intent" not in legacy
    assert (intent.event.phase, intent.event.status) == (AuditPhase.INTENT, 0)
    assert log.entries()[3].event.intent == intent.index


def test_audit_cli_shows_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("TWINKG_AUDIT_LOG", str(path))
    filled(path, 3)
    runner = CliRunner()
    shown = runner.invoke(cli_keys.audit_app, ["show", "--limit", "2", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line)["path"] for line in shown.stdout.splitlines()] == ["/e1", "/e2"]
    assert runner.invoke(cli_keys.audit_app, ["verify"]).exit_code == 0
    lines = path.read_text().splitlines()
    _rewrite(path, [lines[0], lines[2]])
    broken = runner.invoke(cli_keys.audit_app, ["verify"])
    assert broken.exit_code == 16 and "audit_tampered" in broken.output


def test_audit_cli_verifies_against_a_kept_head_and_count_and_lists_open_intents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("TWINKG_AUDIT_LOG", str(path))
    log = filled(path, 3)
    intent_and_outcome(log, "killed-9", finished=False)
    head, count = log.verify().head, 4
    runner = CliRunner()
    ok = runner.invoke(
        cli_keys.audit_app, ["verify", "--expect-head", head, "--expect-count", str(count)]
    )
    assert ok.exit_code == 0, ok.output
    assert "intent without an outcome: request killed-9" in ok.output
    assert "4 entries" in ok.output and "1 intent(s) without an outcome" in ok.output
    shown = runner.invoke(cli_keys.audit_app, ["show"])
    assert shown.exit_code == 0 and "intent" in shown.output
    _rewrite(path, path.read_text().splitlines()[:2])
    for option in (["--expect-head", head], ["--expect-count", str(count)]):
        cut = runner.invoke(cli_keys.audit_app, ["verify", *option])
        assert cut.exit_code == 16 and "tail was cut off" in cut.output, cut.output


# --- the HTTP layer ---------------------------------------------------------------------------


def _status(exc: TwinKGError) -> int:
    if isinstance(exc, AuthenticationError):
        return 401
    return 403 if isinstance(exc, PermissionDeniedError) else 500


CALLS: list[str] = []
"""Who reached the test app's state-changing route."""


def make_app(keys: KeyStore, log: AuditLog) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = Authenticator(keys, None)
    app.add_middleware(AuditMiddleware, audit_log=log)

    @app.exception_handler(TwinKGError)
    async def twinkg_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TwinKGError)
        body = {"error": {"code": exc.code, "message": str(exc), "details": None}}
        return JSONResponse(body, status_code=_status(exc), headers=error_headers(exc))

    @app.get("/assets")
    def assets(who: Annotated[Principal, Depends(requires(Permission.READ))]) -> dict[str, str]:
        return {"caller": who.name}

    @app.post("/crash")
    def crash(_: Annotated[Principal, Depends(requires(Permission.READ))]) -> None:
        raise RuntimeError("a bug")

    @app.post("/actions")
    def propose(who: Annotated[Principal, Depends(requires(Permission.PROPOSE))]) -> dict[str, str]:
        CALLS.append(who.subject)
        return {"proposed_by": who.subject}

    return app


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient, KeyStore, AuditLog]]:
    keys, log = KeyStore(tmp_path / "keys.json"), AuditLog(tmp_path / "audit.jsonl")
    with TestClient(make_app(keys, log)) as client:
        yield client, keys, log


def test_no_credentials_is_401_with_a_challenge(
    http: tuple[TestClient, KeyStore, AuditLog],
) -> None:
    client, _, log = http
    response = client.get("/assets")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "auth_required"
    bad = client.post("/actions", headers={"X-API-Key": "tk_aaaaaaaaaaaa_nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    intent, entry = log.entries()  # the refused POST is audited, as anonymous; the GET is not
    assert (intent.event.phase, intent.event.subject, intent.event.status) == (
        AuditPhase.INTENT,
        "anonymous",
        0,
    )
    assert (entry.event.subject, entry.event.status, entry.event.error_code) == (
        "anonymous",
        401,
        "auth_invalid",
    )
    assert (entry.event.phase, entry.event.intent) == (AuditPhase.OUTCOME, intent.index)


def test_roles_decide_and_writes_are_audited_with_the_caller(
    http: tuple[TestClient, KeyStore, AuditLog],
) -> None:
    client, keys, log = http
    viewer, viewer_key = keys.create(name="viewer", roles=[Role.VIEWER])
    agent, agent_key = keys.create(name="agent-7", roles=[Role.AGENT], person="https://p/7")
    assert client.get("/assets", headers={"X-API-Key": viewer_key}).json() == {"caller": "viewer"}
    refused = client.post("/actions?dry=1", headers={"X-API-Key": viewer_key})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    done = client.post(
        "/actions", headers={"Authorization": f"Bearer {agent_key}", "X-Request-ID": "req-42"}
    )
    assert done.status_code == 200 and done.json() == {"proposed_by": agent.id}
    assert done.headers["X-Request-ID"] == "req-42"
    assert client.get("/assets", headers={"X-API-Key": agent_key}).headers["X-Request-ID"]
    first_intent, first, second_intent, second = log.entries()
    assert first_intent.event.subject == viewer.id  # the intent names who the key says it is
    assert (second_intent.event.request_id, second_intent.event.subject) == ("req-42", agent.id)
    assert second.event.intent == second_intent.index
    assert (first.event.subject, first.event.status, first.event.error_code) == (
        viewer.id,
        403,
        "forbidden",
    )
    assert first.event.query == "dry=1" and first.event.roles == ("viewer",)
    assert second.event.subject == agent.id and second.event.name == "agent-7"
    assert (second.event.person, second.event.request_id, second.event.status) == (
        "https://p/7",
        "req-42",
        200,
    )
    assert log.verify().ok


def test_a_write_that_cannot_be_audited_is_refused_before_it_runs(
    http: tuple[TestClient, KeyStore, AuditLog],
) -> None:
    client, keys, log = http
    _, key = keys.create(name="agent", roles=[Role.AGENT])
    log.path.write_text("not json\n")  # the last entry is unreadable: appends refuse
    CALLS.clear()
    response = client.post("/actions", headers={"X-API-Key": key})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert response.headers["X-Request-ID"]
    assert CALLS == []  # the route never ran
    assert client.get("/assets", headers={"X-API-Key": key}).status_code == 200  # reads go on


def test_a_log_that_fails_after_the_check_is_not_reported_as_a_success(
    http: tuple[TestClient, KeyStore, AuditLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, keys, log = http
    _, key = keys.create(name="agent", roles=[Role.AGENT])

    append = log.append

    def disk_full(event: AuditEvent) -> AuditEntry:
        if event.phase is AuditPhase.INTENT:
            return append(event)  # the disk fills after the intent was written
        raise StoreError("cannot append to the audit log: No space left on device")

    monkeypatch.setattr(log, "append", disk_full)
    response = client.post("/actions", headers={"X-API-Key": key})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "audit_unavailable"


def test_a_crashing_write_is_audited_as_a_500(tmp_path: Path) -> None:
    keys, log = KeyStore(tmp_path / "keys.json"), AuditLog(tmp_path / "audit.jsonl")
    _, key = keys.create(name="viewer", roles=[Role.VIEWER])
    with TestClient(make_app(keys, log), raise_server_exceptions=False) as client:
        assert client.post("/crash", headers={"X-API-Key": key}).status_code == 500
    _, entry = log.entries()
    assert (entry.event.name, entry.event.status, entry.event.error_code) == (
        "viewer",
        500,
        "internal_error",
    )


def test_the_intent_is_on_disk_before_the_route_runs(tmp_path: Path) -> None:
    keys, log = KeyStore(tmp_path / "keys.json"), AuditLog(tmp_path / "audit.jsonl")
    agent, key = keys.create(name="agent", roles=[Role.AGENT])
    app = make_app(keys, log)
    seen: list[list[AuditEntry]] = []

    @app.post("/apply")
    def apply(_: Annotated[Principal, Depends(requires(Permission.PROPOSE))]) -> None:
        seen.append(AuditLog(log.path).entries())  # what a crash right now would leave

    with TestClient(app) as client:
        headers = {"X-API-Key": key, "X-Request-ID": "req-7"}
        assert client.post("/apply", headers=headers).status_code == 200
    ((intent,),) = seen
    assert (intent.event.phase, intent.event.request_id, intent.event.subject) == (
        AuditPhase.INTENT,
        "req-7",
        agent.id,
    )
    assert (intent.event.method, intent.event.path) == ("POST", "/apply")
    report = log.verify()
    assert report.ok and report.count == 2 and report.open_intents == ()


def test_both_security_schemes_show_in_the_openapi_document(
    http: tuple[TestClient, KeyStore, AuditLog],
) -> None:
    client, _, _ = http
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert {"X-API-Key"} == {s["name"] for s in schemes.values() if s["type"] == "apiKey"}
    assert len(document["paths"]["/actions"]["post"]["security"]) == 2
