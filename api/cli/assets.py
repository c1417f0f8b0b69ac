"""``twinkg assets`` and ``twinkg context``: the API's asset routes at the terminal."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, open_store, out
from twinkg.api.twin import Twin


def _local(iri: object) -> str:
    text = str(iri or "")
    return text.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


@errors_as_exit_codes
def assets_command(
    kind: Annotated[str | None, typer.Option("--kind", help="a class, e.g. Pump")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """The plant's assets in IRI order (what GET /assets answers)."""
    settings = load_settings()
    with open_store(settings) as store:
        rows = Twin(settings, store).assets(kind=kind, offset=offset, limit=limit)
    if as_json:
        out.print_json(json.dumps([asdict(row) for row in rows], default=str))
        return
    table = Table(*(Column(header=h) for h in ("tag", "class", "criticality", "status", "IRI")))
    for row in rows:
        table.add_row(
            Text(str(row.tag or "")),
            Text(", ".join(_local(t) for t in row.types)),
            Text(str(row.criticality or "")),
            Text(str(row.status or "")),
            Text(str(row.uri)),
        )
    out.print(table)
    out.print(f"{len(rows)} asset(s)")


@errors_as_exit_codes
def context_command(
    asset: Annotated[str, typer.Argument(help="the asset's IRI")],
    events: Annotated[int, typer.Option("--events", min=0, max=500)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
) -> None:
    """One asset's context: failure modes, sensors with their trust, neighbours, policies and
    the newest events (what GET /assets/context answers)."""
    settings = load_settings()
    with open_store(settings) as store:
        context = asdict(Twin(settings, store).asset_context(asset, events=events))
    if as_json:
        out.print_json(json.dumps(context, default=str))
        return
    _print_context(context)


def _print_context(c: dict[str, Any]) -> None:
    types = ", ".join(_local(t) for t in c["types"])
    out.print(Text(f"{c['tag']} ({types}), criticality {c['criticality']}, status {c['status']}"))
    out.print(Text(f"  {c['asset']}"))
    for mode in c["failure_modes"]:
        mitigations = ", ".join(mode["mitigations"] or []) or "none"
        out.print(Text(f"  failure mode {_local(mode['mode'])} (mitigated by {mitigations})"))
    for sensor in c["sensors"]:
        confidence = sensor.get("confidence")
        trust = "no trust score yet" if confidence is None else f"confidence {confidence:.2f}"
        out.print(Text(f"  sensor {sensor['tag']} ({_local(sensor['quantity_kind'])}): {trust}"))
    for n in c["neighbours"]:
        out.print(
            Text(
                f"  {n['relation']} {n['tag']} ({n['hops']} hop(s)): {n['status']}, "
                f"{n['findings']} open finding(s)"
            )
        )
    for e in c["events"]:
        types = ", ".join(_local(t) for t in e["types"])
        state = e["status"] or e["severity"]
        out.print(Text(f"  event {types} at {e['occurred_at']}" + (f" ({state})" if state else "")))
