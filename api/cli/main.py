"""The ``twinkg`` command line: the root commands (database, seed, Cypher, export, vocabulary)
and the composition of the command groups, one module each in this folder.

The twin's operations (ingest, validation, queries, agents, verification, lineage, replay, the
audit log) go through :class:`~twinkg.api.twin.Twin`, or :class:`~twinkg.api.offline.OfflineTwin`
when they need no graph, as over HTTP and MCP; administration of the store itself (``db``,
``seed``, ``export``, ``reason classify``) works on it directly. Errors are one line on stderr,
``error[<code>]: <reason>``; the exit code is the error class's ``exit_code`` (the table in the
README's CLI section): 0 success, 1 an unexpected error, 2 bad usage or configuration, and one
code per kind of failure above that.
"""

from __future__ import annotations

import importlib
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text
from typer.core import TyperGroup

from twinkg.api.cli.common import (
    classify_and_report,
    err,
    errors_as_exit_codes,
    load_settings,
    note,
    open_store,
    out,
)
from twinkg.api.settings import connection, local_server_config
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import parse_plant
from twinkg.graph_seed.registry import plant_records as registry_records
from twinkg.kg import local_server, rdf_text
from twinkg.kg.queries import DEMO_QUERIES
from twinkg.ontology import codegen
from twinkg.ontology.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from twinkg.kg.store import QueryResult

LAZY_COMMANDS: dict[str, str] = {
    "contracts": "contracts:app",
    "reason": "reason:app",
    "agents": "agents:app",
    "sim": "sim:app",
    "verify": "lineage:verify_command",
    "lineage": "lineage:lineage_command",
    "replay": "lineage:replay_command",
    "ingest": "telemetry:ingest_command",
    "quarantine": "telemetry:quarantine_command",
    "telemetry": "telemetry:telemetry_command",
    "serve": "service:serve_command",
    "run": "run:run_command",
    "service": "run:service_app",
    "sparql": "sparql:sparql_command",
    "assets": "assets:assets_command",
    "context": "assets:context_command",
    "api": "service:app",
    "broker": "connect:broker_app",
    "connect": "connect:connect_app",
    "keys": "keys:app",
    "audit": "keys:audit_app",
    "edge": "edge:app",
}
"""The commands and groups of the other modules of this folder, as ``module:attribute``: a
module is imported only when one of its commands runs (or ``--help`` lists them all), so a
command pays for its own imports alone (decision 0082)."""


class _LazyCommands(TyperGroup):
    """The root group: the commands of this module at once, the others on first use.

    Typer builds its commands with its own copy of click, whose classes it does not export:
    the context and the commands are typed ``Any`` here for that reason alone."""

    def list_commands(self, ctx: Any) -> list[str]:
        listed = super().list_commands(ctx)
        return [*listed, *(name for name in LAZY_COMMANDS if name not in listed)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return super().get_command(ctx, cmd_name)


def load_command(name: str) -> Any:
    """The click command (or group) ``name`` of :data:`LAZY_COMMANDS`, built as
    ``app.command(name)`` or ``app.add_typer(…, name=name)`` would build it."""
    module, attribute = LAZY_COMMANDS[name].split(":")
    target = getattr(importlib.import_module(f"twinkg.api.cli.{module}"), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False)  # one command: get_command builds it alone
    single.command(name)(target)
    command = typer.main.get_command(single)
    command.name = name
    return command


app = typer.Typer(
    cls=_LazyCommands,
    help="TwinKG: a knowledge graph for agentic digital twins.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the local Neo4j server.", no_args_is_help=True)
vocab_app = typer.Typer(help="The generated vocabulary module.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(vocab_app, name="vocab")

GATE_MAX_ASSETS = 2000  # generated plants larger than this skip the (pySHACL) contract gate


@db_app.command("start")
@errors_as_exit_codes
def db_start() -> None:
    """Build (first time), start the local Neo4j in the background, and wait until it is ready."""
    settings = load_settings()
    if settings.neo4j_uri:
        raise ConfigError("TWINKG_NEO4J_URI is set, so TwinKG uses that server and starts none")
    config = local_server_config(settings)
    state = local_server.start(config, wait_s=settings.neo4j_start_timeout_s, log=note)
    out.print(f"Neo4j is running (pid {state.pid}) at {state.bolt_uri}")
    source = "TWINKG_NEO4J_PASSWORD" if settings.neo4j_password else config.home / "password"
    out.print(f"user neo4j, password in {source}; log in {config.log_file}")


@db_app.command("stop")
@errors_as_exit_codes
def db_stop() -> None:
    """Stop the local Neo4j cleanly."""
    stopped = local_server.stop(local_server_config(load_settings()))
    out.print("Neo4j stopped" if stopped else "Neo4j was not running")


@db_app.command("status")
@errors_as_exit_codes
def db_status() -> None:
    """Say whether the local Neo4j runs (exit 3 when it does not), or which server is configured."""
    settings = load_settings()
    conn = connection(settings)
    if not conn.local:
        with open_store(settings) as store:
            counts = store.counts()
        out.print(f"using {conn.uri}: {counts.nodes} nodes, {counts.relationships} relationships")
        return
    state = local_server.status(local_server_config(settings))
    if not state.running:
        out.print(f"Neo4j is not running (would listen at {state.bolt_uri})")
        raise typer.Exit(3)
    out.print(f"Neo4j is running (pid {state.pid}) at {state.bolt_uri}")


@app.command()
@errors_as_exit_codes
def seed(
    *,
    plant: Annotated[str | None, typer.Option(help="skab-testbed, tep or generated")] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="your own plant in Turtle, or a `twinkg export` (.trig or .nq)"),
    ] = None,
    inp: Annotated[
        Path | None,
        typer.Option(help="an EPANET network (.inp file), mapped from wntr's own model"),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="--inp: the IRI namespace of its instances")
    ] = None,
    assets: Annotated[int, typer.Option(help="generated plant: number of assets")] = 1000,
    seed: Annotated[int, typer.Option(help="generated plant: random seed")] = 0,
    classify: Annotated[bool, typer.Option(help="run the reasoner afterwards")] = True,
) -> None:
    """Load the ontology and a plant (idempotent, all or nothing), then classify its assets."""
    from twinkg.graph_seed import plant_check  # noqa: PLC0415 - pySHACL, for this command alone

    settings = load_settings()
    if [plant, file, inp].count(None) != 2:
        raise InvalidInputError("give one of --plant NAME, --file PLANT.ttl or --inp NETWORK.inp")
    if inp is not None:  # malformed or unsupported: ModelFileError (FILE:LINE), nothing written
        from twinkg.graph_seed.epanet import epanet_records  # noqa: PLC0415 - loads wntr (1 s)

        name, plant_records = str(inp), epanet_records(inp, base)  # a path or a wntr network name
    elif file is not None:
        if not file.is_file():
            raise InvalidInputError(f"{file}: no such file")
        name, plant_records = str(file), seeding.plant_file(file)
    else:
        chosen = parse_plant(str(plant))
        name = chosen.value
        plant_records = registry_records(chosen, assets=assets, seed=seed)
    small = file is not None or inp is not None or assets <= GATE_MAX_ASSETS or plant != "generated"
    if small:  # judged with the stored graph it touches (decision 0039); nothing written yet
        with open_store(settings) as store:
            check = plant_check.check_plant(plant_records, store=store)
        plant_check.require_conformance(name, check)
    else:
        note(
            f"{assets} generated assets: too many to check with pySHACL or classify with "
            "HermiT here; the generator's output is checked by the test suite"
        )
    records = seeding.with_ontology(plant_records)
    with (
        open_store(settings) as store,
        Progress(
            TextColumn("seeding {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task(name, total=len(records.nodes) + len(records.rels))
        summary = seeding.load(
            store,
            name,
            records,
            batch_size=settings.seed_batch_size,
            progress=lambda n: bar.advance(task, n),
        )
    added_nodes = summary.after.nodes - summary.before.nodes
    added_rels = summary.after.relationships - summary.before.relationships
    out.print(
        f"seeded {name}: {summary.nodes} nodes and {summary.relationships} "
        f"relationships written; graph now {summary.after.nodes} nodes "
        f"(+{added_nodes}), {summary.after.relationships} relationships (+{added_rels})"
    )
    if classify and small:
        with open_store(settings) as store:
            classify_and_report(store)


class RdfFormat(StrEnum):
    """RDF syntaxes ``twinkg export`` writes: TriG and N-Quads hold the whole twin (the
    ontology and the twin graph, decision 0038); the others the twin graph alone."""

    TRIG = "trig"
    NQUADS = "nquads"
    TURTLE = "turtle"
    JSON_LD = "json-ld"
    NT = "nt"


_DATASET_FORMATS = (RdfFormat.TRIG, RdfFormat.NQUADS)


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.isidentifier():
            raise InvalidInputError(f"--param expects name=value, got {pair!r}")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def _print_result(result: QueryResult, *, as_json: bool) -> None:
    if as_json:
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        out.print_json(json.dumps({"rows": rows, "truncated": result.truncated}, default=str))
        return
    # Text(), not str: values are data, never rich markup.
    table = Table(*(Column(header=Text(c)) for c in result.columns), show_lines=False)
    for row in result.rows:
        table.add_row(*(Text(v if isinstance(v, str) else json.dumps(v, default=str)) for v in row))
    out.print(table)
    note = " (truncated at the row or byte cap)" if result.truncated else ""
    out.print(f"{len(result.rows)} row(s){note}")


@app.command()
@errors_as_exit_codes
def cypher(
    query: Annotated[str, typer.Argument(help="a read-only Cypher query")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (JSON or text)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Run a read-only Cypher query and print the result; writes are refused."""
    from twinkg.api.twin import Twin  # noqa: PLC0415 - what this command needs, on its use

    settings = load_settings()
    params = _parse_params(param or [])
    with open_store(settings) as store:
        result = Twin(settings, store).cypher(query, params)
    _print_result(result, as_json=as_json)


@app.command()
@errors_as_exit_codes
def show() -> None:
    """Show the twin: a few example questions, their Cypher, and the answers."""
    from twinkg.api.twin import Twin  # noqa: PLC0415 - what this command needs, on its use

    settings = load_settings()
    with open_store(settings) as store:
        twin = Twin(settings, store)
        for demo in DEMO_QUERIES:
            out.rule(demo.question)
            out.print(demo.query.cypher, markup=False, style="cyan")
            _print_result(twin.cypher(demo.query.cypher, demo.params), as_json=False)


@app.command()
@errors_as_exit_codes
def export(
    prefix: Annotated[str, typer.Option(help="only nodes whose IRI starts with this")] = "",
    fmt: Annotated[
        RdfFormat | None,
        typer.Option("--format", help="RDF syntax [default: trig; turtle with --prefix]"),
    ] = None,
) -> None:
    """Export the twin as RDF on stdout: by default (TriG, or N-Quads) everything `twinkg seed
    --file` needs to rebuild it, the ontology as loaded included; in Turtle, N-Triples or
    JSON-LD the twin graph alone (or the nodes under --prefix)."""
    if fmt is None:
        fmt = RdfFormat.TURTLE if prefix else RdfFormat.TRIG
    if prefix and fmt in _DATASET_FORMATS:
        raise InvalidInputError("--prefix exports part of the twin graph: use --format turtle")
    with open_store(load_settings()) as store:
        if fmt in _DATASET_FORMATS:
            typer.echo(rdf_text.serialize(store.export_dataset(), fmt.value))
            return
        graph = store.export(prefix=prefix)
    typer.echo(rdf_text.serialize(graph, fmt.value))


@vocab_app.command("generate")
@errors_as_exit_codes
def vocab_generate() -> None:
    """Regenerate ontology/vocab.py from the ontology's Turtle."""
    changed = codegen.write()
    out.print(f"{codegen.VOCAB_PATH} {'regenerated' if changed else 'already up to date'}")


@vocab_app.command("check")
@errors_as_exit_codes
def vocab_check() -> None:
    """Exit 1 when ontology/vocab.py differs from what the ontology generates."""
    if codegen.drifted():
        err.print("error[vocab_drift]: ontology/vocab.py is stale; run `twinkg vocab generate`")
        raise typer.Exit(1)
    out.print("ontology/vocab.py matches the ontology")


def main() -> None:
    """Entry point of the ``twinkg`` console script."""
    app()


if __name__ == "__main__":
    main()
