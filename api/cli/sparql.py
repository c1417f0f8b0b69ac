"""``twinkg sparql``: a SPARQL 1.1 query at the terminal, over the persisted RDF projection.

The same projection as the API's (``TWINKG_HOME/projection``, decision 0026), the same code, the
same refusals of updates, ``LOAD`` and ``SERVICE``, the same formats, and the same isolation:
the query runs in a worker process with the time, memory and size limits of the settings.
When no other process writes the projection, the command opens it, catches it up with the
change log (building it the first time) and answers on the graph as it is now. When the API
writes it, the command reads the API's newest published snapshot and says on stderr how far
it lags (and when that API follows another database, it builds a temporary projection).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.resources import build_projection
from twinkg.api.settings import projection_folder
from twinkg.kg.projection import Projection
from twinkg.kg.sparql_query import check, negotiate


class SparqlFormat(StrEnum):
    """How ``twinkg sparql`` prints the answer."""

    TABLE = "table"
    JSON = "json"
    XML = "xml"
    CSV = "csv"
    TSV = "tsv"
    TURTLE = "turtle"
    NT = "nt"


_BATCH = 10_000  # change log entries per catch-up; a full batch means more may wait

_ACCEPT = {
    SparqlFormat.TABLE: "application/sparql-results+json, text/turtle;q=0.9",
    SparqlFormat.JSON: "application/sparql-results+json",
    SparqlFormat.XML: "application/sparql-results+xml",
    SparqlFormat.CSV: "text/csv",
    SparqlFormat.TSV: "text/tab-separated-values",
    SparqlFormat.TURTLE: "text/turtle",
    SparqlFormat.NT: "application/n-triples",
}


def _term(binding: dict[str, Any] | None) -> Text:
    if binding is None:
        return Text("")
    value = str(binding.get("value", ""))
    return Text(f"<{value}>" if binding.get("type") == "uri" else value)


def _print_table(document: dict[str, Any], *, truncated: bool) -> None:
    if "boolean" in document:
        out.print("true" if document["boolean"] else "false")
        return
    names = list(document["head"]["vars"])
    table = Table(*(Column(header=Text(n)) for n in names))
    rows = document["results"]["bindings"]
    for row in rows:
        table.add_row(*(_term(row.get(name)) for name in names))
    out.print(table)
    cut = " (truncated at the row cap)" if truncated else ""
    out.print(f"{len(rows)} row(s){cut}")


@errors_as_exit_codes
def sparql_command(
    query: Annotated[str, typer.Argument(help="a SPARQL 1.1 query (SELECT, ASK, CONSTRUCT)")],
    fmt: Annotated[
        SparqlFormat, typer.Option("--format", help="a table, or a standard result format")
    ] = SparqlFormat.TABLE,
) -> None:
    """Run a SPARQL query over the RDF projection of the graph (ontology, plant, provenance);
    updates, LOAD and SERVICE are refused."""
    settings = load_settings()
    negotiate(check(query), _ACCEPT[fmt])  # refusals first, before any work on the projection
    with open_store(settings) as store:
        projection = build_projection(settings, store, workers=1)
        try:
            if not projection.open() and not projection.follows_this_graph():
                note(f"{projection_folder(settings)} follows another database: built a new one")
                projection.close()
                projection = Projection(store, limits=projection.pool.limits)
            if projection.open():  # no other process writes it: bring it up to date
                while projection.catch_up(limit=_BATCH).entries == _BATCH:
                    pass
            answer = projection.query(
                query,
                accept=_ACCEPT[fmt],
                timeout_s=settings.sparql_timeout_s,
                row_cap=settings.sparql_row_cap,
            )
        finally:
            projection.close()
    if answer.lag.pending:
        note(
            f"the projection is {answer.lag.pending} change(s) behind the graph "
            f"({answer.lag.seconds:.1f} s): the API applies them"
        )
    if fmt is SparqlFormat.TABLE and answer.media_type.startswith("application/sparql-results"):
        _print_table(json.loads(answer.body), truncated=answer.truncated)
        return
    typer.echo(answer.body.decode("utf-8"), nl=False)
