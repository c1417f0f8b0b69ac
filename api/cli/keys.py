"""``twinkg keys`` (API keys: create, list, revoke) and ``twinkg audit`` (show, verify the log).

A key is printed once, when it is created; the key file keeps only a hash of its secret. A
revoked key stops working at once, also in a running server (it re-reads the file).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from twinkg.api.cli.common import err, errors_as_exit_codes, load_settings, out
from twinkg.api.offline import OfflineTwin
from twinkg.api.security import KeyRecord, KeyStore, Role
from twinkg.api.settings import api_keys_path
from twinkg.ontology.errors import AuditLogTamperedError

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of state-changing requests.", no_args_is_help=True)


def _store() -> KeyStore:
    return KeyStore(api_keys_path(load_settings()))


def _status(record: KeyRecord) -> str:
    if record.revoked_at is not None:
        return f"revoked {record.revoked_at:%Y-%m-%d %H:%M}"
    if record.expires_at is not None:
        return f"expires {record.expires_at:%Y-%m-%d %H:%M}"
    return "active"


@app.command("create")
@errors_as_exit_codes
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")],
    role: Annotated[list[Role], typer.Option("--role", help="a role (repeat for several)")],
    person: Annotated[
        str | None, typer.Option("--person", help="the Person IRI the caller approves as")
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option("--expires-in-days", min=0.001, help="lifetime in days")
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            help="bind it to this site, by its tag: its telemetry may name only that site's "
            "sensors (repeat for several; default: every site)",
        ),
    ] = None,
) -> None:
    """Create an API key and print it once."""
    expires = timedelta(days=expires_in_days) if expires_in_days is not None else None
    record, key = _store().create(
        name=name, roles=role, person=person, expires_in=expires, sites=site or ()
    )
    err.print("This key is shown once and cannot be shown again; store it now.")
    out.print(key, markup=False)
    roles = ", ".join(record.roles)
    sites = f"sites {', '.join(record.sites)}" if record.sites else "every site"
    err.print(
        f"id {record.id} · {record.name} · roles {roles} · {sites} · {_status(record)}",
        markup=False,
    )


@app.command("list")
@errors_as_exit_codes
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """List the keys (their ids, names, roles and state; never the keys)."""
    records = _store().list()
    if as_json:
        shown = [{k: v for k, v in r.to_json().items() if k != "sha256"} for r in records]
        out.print_json(json.dumps(shown))
        return
    table = Table("id", "name", "roles", "sites", "person", "created", "state")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            ", ".join(r.roles),
            ", ".join(r.sites) or "all",
            r.person or "",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            _status(r),
        )
    out.print(table)


@app.command("revoke")
@errors_as_exit_codes
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id")]) -> None:
    """Revoke a key; it stops working at once."""
    record = _store().revoke(key_id)
    out.print(f"{record.id} ({record.name}) {_status(record)}", markup=False)


@audit_app.command("show")
@errors_as_exit_codes
def audit_show(
    limit: Annotated[int, typer.Option("--limit", min=1, help="the last N entries")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table")] = False,
) -> None:
    """The latest entries of the audit log, newest last."""
    entries = OfflineTwin(load_settings()).audit_entries(limit=limit)
    if as_json:
        for entry in entries:
            out.print(json.dumps(entry.document()), markup=False, soft_wrap=True)
        return
    table = Table("#", "time", "phase", "caller", "roles", "request", "status", "error")
    for entry in entries:
        e = entry.event
        request = f"{e.method} {e.path}" + (f"?{e.query}" if e.query else "")
        phase = "" if e.phase is None else str(e.phase)
        if e.intent is not None:
            phase += f" of #{e.intent}"
        table.add_row(
            str(entry.index),
            e.time,
            phase,
            e.name if e.name == e.subject else f"{e.name} ({e.subject})",
            ", ".join(e.roles),
            request,
            str(e.status) if e.status else "",
            e.error_code or "",
        )
    out.print(table)


@audit_app.command("verify")
@errors_as_exit_codes
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(help="a head hash printed by an earlier verify and kept elsewhere"),
    ] = None,
    expect_count: Annotated[
        int | None,
        typer.Option(min=0, help="an entry count printed by an earlier verify"),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain; exit 16 at the first altered, moved or lost entry,
    or when what was kept elsewhere (a head, a count) is no longer in the log (a cut tail).

    Requests whose intent has no outcome (killed, or still running) are listed.
    """
    twin = OfflineTwin(load_settings())
    report = twin.verify_audit(expect_head=expect_head, expect_count=expect_count)
    if not report.ok:
        where = f" line {report.first_bad_line}" if report.first_bad_line else ""
        raise AuditLogTamperedError(
            f"{twin.audit_log.path}{where}: {report.reason} ({report.count} entries check out)"
        )
    for request_id in report.open_intents:
        out.print(f"intent without an outcome: request {request_id}", markup=False)
    out.print(
        f"audit log ok: {report.count} entries; head {report.head or '(empty)'}; "
        f"{len(report.open_intents)} intent(s) without an outcome"
    )
