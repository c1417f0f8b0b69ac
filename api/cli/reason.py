"""``twinkg reason``: OWL inference over the stored graph.

``classify`` reads the assets and events from Neo4j, classifies them with HermiT into the
ontology's defined classes, and writes the result back as inferred labels (see
reasoner/inference.py). Facts that contradict the ontology print one line
``error[ontology_inconsistent]: …`` and exit 5; nothing is written then.
"""

from __future__ import annotations

import typer
from rich.table import Column, Table
from rich.text import Text

from twinkg.api.cli.common import err, errors_as_exit_codes, load_settings, open_store, out
from twinkg.reasoner.inference import ReclassifySummary, reclassify

INCONSISTENT_CODE = "ontology_inconsistent"
INCONSISTENT_EXIT = 5

app = typer.Typer(
    help="OWL inference: classify assets into the ontology's defined classes.",
    no_args_is_help=True,
)


@app.callback()
def reason() -> None:
    """OWL inference over the stored graph (a group, even with one command)."""


def _local(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _print(summary: ReclassifySummary) -> None:
    table = Table(
        Column(header="asset"), Column(header="class"), Column(header="node", overflow="fold")
    )
    for iri, classes in sorted(summary.inferred.items()):
        for cls in sorted(classes):
            table.add_row(Text(summary.tags.get(iri, "-")), Text(_local(cls)), Text(iri))
    out.print(table)
    inferred = sum(len(c) for c in summary.inferred.values())
    out.print(
        f"{inferred} inferred class(es) on {len(summary.inferred)} node(s); "
        f"labels +{summary.added} -{summary.removed}; classified in {summary.seconds:.1f} s"
    )


@app.command()
def classify() -> None:
    """Classify the stored assets and events with HermiT; write inferred labels."""

    @errors_as_exit_codes
    def run() -> ReclassifySummary:
        with open_store(load_settings()) as store:
            return reclassify(store)

    summary = run()
    if not summary.consistent:
        reason = " ".join(str(summary.explanation).split())
        err.print(f"error[{INCONSISTENT_CODE}]: {reason}", markup=False, soft_wrap=True)
        raise typer.Exit(INCONSISTENT_EXIT)
    _print(summary)
