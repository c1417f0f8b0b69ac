"""``twinkg ingest``, ``quarantine`` and ``telemetry``: telemetry in (through its contract) and out.

``ingest`` reads a telemetry source (a SKAB file, another wide CSV, a JSON batch, or any kind
``connect.registry`` knows) and hands it to ``Twin.ingest``: every point is checked against the
declared telemetry contract, each batch applied all or nothing (see reasoner/ingest.py), and the
reasoner reclassifies the assets afterwards. Exit 0 also when points
were quarantined: the summary says how many and why; ``twinkg quarantine`` lists them. Input
that is not a batch at all (not UTF-8 JSON, JSON nested too deep, a CSV that is not a table)
exits non-zero with one line ``error[<code>]: <reason>`` and changes nothing. On a
terminal, progress bars on stderr follow each phase (parse, contract check, derive, graph write,
log staging) and vanish before the summary is printed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.table import Column, Table
from rich.text import Text

from twinkg.api.cli.common import (
    errors_as_exit_codes,
    load_settings,
    note,
    open_store,
    out,
    report_classification,
    telemetry_log,
)
from twinkg.api.cli.progress import ProgressOption, phase_bars
from twinkg.api.reclassification import Reclassify
from twinkg.api.twin import Twin
from twinkg.connect.registry import kinds, open_source
from twinkg.connect.source import SourceRequest
from twinkg.kg import telemetry_state
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.ingest import IngestReport


def _chosen(given: list[tuple[str, str | None]], source: str | None) -> tuple[str, str]:
    """``(kind, target)`` of the one source given: a ``--skab``/``--csv``/``--json`` file, or
    ``--source KIND:TARGET`` for any registered kind."""
    chosen = [(kind, target) for kind, target in given if target is not None]
    if source is not None:
        kind, colon, target = source.partition(":")
        if not colon or not target:
            raise InvalidInputError(f"--source takes KIND:TARGET, e.g. csv:run.csv, not {source!r}")
        chosen.append((kind, target))
    if len(chosen) != 1:
        raise InvalidInputError(
            "give exactly one of --skab FILE, --csv FILE, --json FILE or --source KIND:TARGET"
        )
    return chosen[0]


def _print_report(report: IngestReport, tags: dict[str, str]) -> None:
    if report.duplicate:
        out.print(f"batch {report.batch_id[:12]} was ingested before: nothing to do")
        return
    out.print(
        f"batch {report.batch_id[:12]} ({report.contract}): {report.points} points, "
        f"{report.accepted} accepted, {report.rejected} quarantined; "
        f"{report.aggregates} window aggregates; {len(report.anomalies)} anomalies, "
        f"{report.alarms} alarms"
    )
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1])[:5]:
        # reasons quote what producers sent: never read as markup
        out.print(f"  quarantined {count}: {reason}", markup=False)
    for a in report.anomalies:
        alarm = " → critical alarm" if a.alarm else ""
        out.print(
            f"  anomaly on {tags.get(a.asset, a.asset)}: {a.start:%Y-%m-%d %H:%M:%S} to "
            f"{a.end:%H:%M:%S} ({a.points} readings, peak {a.peak:.2f}){alarm}"
        )
    assets = [t for t in report.trust if t.inputs]
    for t in assets:
        out.print(
            f"  trust {tags.get(t.subject, t.subject)}: confidence {t.confidence:.2f} "
            f"(quality {t.quality:.2f}, freshness {t.freshness:.2f}, anomaly {t.anomaly:.2f})"
        )
    for message in report.notes:
        note(message)


def _tags(store: GraphStore) -> dict[str, str]:
    return {s.asset: s.tag or s.asset for s in telemetry_state.detector_subjects(store)}


_KINDS = ", ".join(k.name for k in kinds())


@errors_as_exit_codes
def ingest_command(  # noqa: PLR0917 - one parameter per command-line option
    skab: Annotated[
        Path | None, typer.Option(help="a SKAB file: replayed, detectors fitted on its first 400 s")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="a wide CSV file (one column per sensor)")
    ] = None,
    json_batch: Annotated[
        Path | None, typer.Option("--json", help='a JSON batch {"contract", "points"}; - = stdin')
    ] = None,
    source: Annotated[
        str | None, typer.Option(help=f"KIND:TARGET, a source of any kind ({_KINDS})")
    ] = None,
    contract: Annotated[
        str | None, typer.Option(help="the contract the data was written for, e.g. telemetry@1.0.0")
    ] = None,
    tz: Annotated[str, typer.Option(help="CSV: time zone of the timestamps")] = "UTC",
    delimiter: Annotated[str, typer.Option(help="CSV: column separator")] = ";",
    time_column: Annotated[str, typer.Option(help="CSV: name of the time column")] = "datetime",
    time_format: Annotated[str, typer.Option(help="CSV: strptime format")] = "%Y-%m-%d %H:%M:%S",
    fit_rows: Annotated[
        int | None, typer.Option(help="fit each detector on this many leading rows first")
    ] = None,
    replay: Annotated[
        bool | None, typer.Option(help="judge freshness at the newest point (default for SKAB)")
    ] = None,
    producer: Annotated[str | None, typer.Option(help="CSV: the producer's identifier")] = None,
    classify: Annotated[bool, typer.Option(help="reclassify assets afterwards")] = True,
    progress: ProgressOption = None,
) -> None:
    """Check a batch of telemetry against its contract and apply it, all or nothing."""
    given = [
        ("skab", None if skab is None else str(skab)),
        ("csv", None if csv is None else str(csv)),
        ("json", None if json_batch is None else str(json_batch)),
    ]
    kind, target = _chosen(given, source)
    options = {"tz": tz, "delimiter": delimiter, "time_column": time_column}
    request = SourceRequest(target, contract, producer, {**options, "time_format": time_format})
    reader = open_source(kind, request)
    settings = load_settings()
    with open_store(settings) as store:
        twin = Twin(settings, store)
        then = Reclassify.WAIT if classify else Reclassify.OFF
        try:
            with phase_bars(progress) as bars:
                results = list(
                    twin.ingest(
                        reader, replay=replay, fit_rows=fit_rows, reclassify=then, progress=bars
                    )
                )
        finally:
            twin.close()
        tags = _tags(store)
        for result in results:
            _print_report(result.report, tags)
            report_classification(result.classification, result.classification_error)


def _show(
    table: pa.Table, columns: tuple[str, ...], *, limit: int, count: bool, as_json: bool, noun: str
) -> None:
    """Print ``table``: its row count, JSON lines, or a table of its first ``limit`` rows."""
    if count:
        out.print(str(table.num_rows))
        return
    rows = _exact_times(table.slice(0, limit)).to_pylist()
    if as_json:
        for row in rows:
            out.print(json.dumps(row, default=str), markup=False)
        return
    view = Table(
        *(Column(c, overflow="fold", max_width=12 if c == "batch" else None) for c in columns)
    )
    for row in rows:
        view.add_row(*(Text(str(row[c])) for c in columns))
    out.print(view)
    out.print(f"{min(limit, table.num_rows)} of {table.num_rows} {noun}")


def _exact_times(table: pa.Table) -> pa.Table:
    """``table`` with every timestamp column as ISO 8601 text to the nanosecond: Python's
    datetime holds microseconds, and Arrow refuses to convert a time with nanoseconds to one."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            as_ns = table.column(i).cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
            text = pa.array([_iso_ns(ns) for ns in as_ns.to_pylist()], pa.string())
            table = table.set_column(i, field.name, text)
    return table


def _iso_ns(ns: int | None) -> str | None:
    """``2020-02-08T18:57:29.123456789Z`` for nanoseconds since the epoch (UTC)."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 10**9)
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:"
        f"{at.second:02d}.{fraction:09d}Z"
    )


@errors_as_exit_codes
def quarantine_command(
    batch: Annotated[str | None, typer.Option(help="only this batch (id or its first 12)")] = None,
    sensor: Annotated[str | None, typer.Option(help="only this sensor IRI")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows to show")] = 20,
    count: Annotated[bool, typer.Option(help="only print how many")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """List (or count) quarantined points with the reason each was rejected."""
    log = telemetry_log(load_settings())
    if batch is not None:
        matches = [m.batch_id for m in log.manifests() if m.batch_id.startswith(batch)]
        if len(matches) != 1:
            raise InvalidInputError(f"{batch!r} matches {len(matches)} batches")
        batch = matches[0]
    table = log.quarantined(batch=batch, sensor=sensor)
    columns = ("batch", "seq", "sensor", "time", "value", "reason")
    _show(table, columns, limit=limit, count=count, as_json=as_json, noun="quarantined points")


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"--{name} {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise InvalidInputError(f"--{name} {text!r} needs a time zone, e.g. {text}Z")
    return moment


@errors_as_exit_codes
def telemetry_command(  # noqa: PLR0917 - one parameter per command-line option
    sensor: Annotated[list[str] | None, typer.Option(help="only these sensor IRIs")] = None,
    start: Annotated[str | None, typer.Option(help="from this time (inclusive, ISO 8601)")] = None,
    end: Annotated[str | None, typer.Option(help="to this time (exclusive, ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows to show")] = 20,
    count: Annotated[bool, typer.Option(help="only print how many")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Replay a window of accepted points from the telemetry log, in a stable order."""
    log = telemetry_log(load_settings())
    table = log.window(
        sensors=sensor or None, start=_moment(start, "start"), end=_moment(end, "end")
    )
    columns = ("sensor", "time", "value", "batch")
    _show(table, columns, limit=limit, count=count, as_json=as_json, noun="points")
