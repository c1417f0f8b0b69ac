"""``twinkg contracts``: list, check and diff the versioned SHACL data contracts.

Exit codes: 0 success (and, for ``diff``, no breaking change); 5 invalid input (a missing file,
malformed Turtle, an unknown contract, shapes failing meta-SHACL); 7 ``diff`` found a breaking
change, so a producer's CI can refuse it. Errors are one line on stderr:
``error[<code>]: <reason>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rdflib import Graph

from twinkg.api.offline import OfflineTwin
from twinkg.ontology.catalog import parse_turtle
from twinkg.ontology.errors import (
    ContractViolationError,
    InvalidInputError,
    ShapesError,
    TwinKGError,
)
from twinkg.reasoner.validation import Severity
from twinkg.shapes.diff import diff as diff_shapes
from twinkg.shapes.registry import ContractRef, default_registry, read_shapes

BREAKING_EXIT: Final = 7
"""Exit status of ``diff`` when any change is breaking."""

app = typer.Typer(
    help="Versioned SHACL data contracts: list, check, diff two versions, validate data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _report(exc: TwinKGError) -> int:
    """Print ``exc`` as one line on stderr; 1 (one failure) for counting."""
    typer.echo(f"error[{exc.code}]: {' '.join(str(exc).split())}", err=True)
    return 1


def _fail(exc: TwinKGError) -> typer.Exit:
    _report(exc)
    return typer.Exit(exc.exit_code)


def _shapes(source: str) -> Graph:
    """A shapes graph from a Turtle file, or from a published contract given as name@version."""
    path = Path(source)
    if path.suffix == ".ttl" or path.exists() or "@" not in source:
        return read_shapes(path)
    ref = ContractRef.parse(source)
    return default_registry().contract(ref.name, ref.version).graph


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="The old shapes: a .ttl file or name@version.")],
    new: Annotated[str, typer.Argument(help="The new shapes: a .ttl file or name@version.")],
) -> None:
    """One line per change between two contract versions; exit 7 when any change is breaking."""
    try:
        result = diff_shapes(_shapes(old), _shapes(new))
    except TwinKGError as exc:
        raise _fail(exc) from None
    for change in result.changes:
        typer.echo(result.describe(change))
    typer.echo(result.summary())
    if result.breaking:
        raise typer.Exit(BREAKING_EXIT)


@app.command(name="list")
def list_contracts() -> None:
    """The published contracts and their versions; the current (latest) one is marked."""
    registry = default_registry()
    for name in registry.names():
        try:
            published = [str(v) for v in registry.versions(name)]
        except TwinKGError as exc:
            raise _fail(exc) from None
        published[-1] += " (current)"
        typer.echo(f"{name:<12} {', '.join(published)}")


@app.command()
def check() -> None:
    """Load every published contract file: version and name as its path says, meta-SHACL clean."""
    registry = default_registry()
    failures = 0
    for name in registry.names():
        try:
            published = registry.versions(name)
        except TwinKGError as exc:
            failures += _report(exc)
            continue
        for version in published:
            try:
                loaded = registry.contract(name, version)
            except TwinKGError as exc:
                failures += _report(exc)
                continue
            typer.echo(f"ok  {loaded.ref}  {loaded.path}")
    if failures:
        raise typer.Exit(ShapesError.exit_code)


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="The data to check, in Turtle.")],
    contract: Annotated[
        str, typer.Option(help="The contract, name or name@version (the version data declares).")
    ] = "asset",
) -> None:
    """Check a Turtle file against a contract (with the ontology, so subclasses count).

    Prints one line per result; exit 0 when the data conforms, 5 (``contract_violation``) when
    it does not, so a producer's CI can gate on it. Asset references must resolve in the file.
    """
    try:
        if not data.is_file():
            raise InvalidInputError(f"{data}: no such file")
        outcome = OfflineTwin.validate(contract, lambda: parse_turtle([data]))
    except TwinKGError as exc:
        raise _fail(exc) from None
    for v in outcome.violations:
        where = f"{v.focus_node} {v.path or ''}".strip()
        typer.echo(f"{v.severity.name.lower():<9} {where}: {v.message}")
    blocking = outcome.of_severity(Severity.VIOLATION)
    if blocking:
        raise _fail(ContractViolationError(f"{data} breaks {contract} in {len(blocking)} place(s)"))
    typer.echo(f"{data} conforms to {contract} ({len(outcome.violations)} non-blocking results)")
