"""``twinkg sparql``: a SPARQL 1.1 query at the terminal, over a fresh RDF projection.

The API server keeps its projection up to date from the change log; the CLI builds one in memory
from the graph for the query (the same code, the same refusals of updates, ``LOAD`` and
``SERVICE``, the same formats), so it always answers on the graph as it is now.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from api.cli_common import errors_as_exit_codes, load_settings, open_store, out
from kg.projection import Projection


class SparqlFormat(StrEnum):
    """How ``twinkg sparql`` prints the answer."""

    TABLE = "table"
    JSON = "json"
    XML = "xml"
    CSV = "csv"
    TSV = "tsv"
    TURTLE = "turtle"
    NT = "nt"


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
    note = " (truncated at the row cap)" if truncated else ""
    out.print(f"{len(rows)} row(s){note}")


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
    with open_store(settings) as store:
        projection = Projection(store)
        projection.rebuild()
        answer = projection.query(
            query,
            accept=_ACCEPT[fmt],
            timeout_s=settings.sparql_timeout_s,
            row_cap=settings.sparql_row_cap,
        )
    if fmt is SparqlFormat.TABLE and answer.media_type.startswith("application/sparql-results"):
        _print_table(json.loads(answer.body), truncated=answer.truncated)
        return
    typer.echo(answer.body.decode("utf-8"), nl=False)
