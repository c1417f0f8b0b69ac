"""The telemetry log: raw points, append-only, partitioned by day, in Parquet; and the quarantine.

Raw points never go into Neo4j. Each ingest batch writes one Parquet file per day it covers under
``points/date=YYYY-MM-DD/`` and its rejected points under ``quarantine/date=YYYY-MM-DD/`` (the day
it was received), each with the violation that rejected it. Files are written under a temporary
name and renamed into place, and a batch becomes visible only when its manifest
(``batches/<id>.json``) is written, which the ingest does after Neo4j committed the same batch;
readers ignore files without a manifest, so a crash leaves nothing half-applied. Reading a window
back is deterministic: rows come sorted by sensor, time, batch and position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ontology.errors import InvalidInputError, StoreError

POINTS_SCHEMA = pa.schema(
    [
        ("sensor", pa.string()),
        ("time", pa.timestamp("ns", tz="UTC")),
        ("value", pa.float64()),
        ("quality", pa.string()),
        ("producer", pa.string()),
        ("batch", pa.string()),
        ("seq", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("batch", pa.string()),
        ("seq", pa.int64()),
        ("received_at", pa.timestamp("ns", tz="UTC")),
        ("sensor", pa.string()),
        ("time", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality", pa.string()),
        ("producer", pa.string()),
        ("reason", pa.string()),
    ]
)
_DAY_NS = 86_400 * 10**9
_SORT = [
    ("sensor", "ascending"),
    ("time", "ascending"),
    ("batch", "ascending"),
    ("seq", "ascending"),
]


@dataclass(frozen=True, slots=True)
class BatchManifest:
    """What a committed batch wrote: its id, contract, counts and files (relative paths)."""

    batch_id: str
    contract: str
    received_at: str
    accepted: int
    rejected: int
    files: tuple[str, ...]


@dataclass(slots=True)
class StagedBatch:
    """Files written under temporary names, waiting for :meth:`TelemetryLog.commit`."""

    manifest: BatchManifest
    temporary: list[tuple[Path, Path]] = field(default_factory=list)


class TelemetryLog:
    """The append-only telemetry log and quarantine under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def _batches(self) -> Path:
        return self.root / "batches"

    def committed(self, batch_id: str) -> bool:
        """Whether batch ``batch_id`` was applied already."""
        return (self._batches / f"{batch_id}.json").exists()

    def manifests(self) -> list[BatchManifest]:
        """Every committed batch, oldest file name first."""
        if not self._batches.exists():
            return []
        found = []
        for path in sorted(self._batches.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            found.append(BatchManifest(**{**data, "files": tuple(data["files"])}))
        return found

    def stage(
        self, *, manifest: BatchManifest, points: pa.Table, quarantine: pa.Table
    ) -> StagedBatch:
        """Write the batch's files under temporary names; nothing is visible yet."""
        staged = StagedBatch(manifest)
        files: list[str] = []
        try:
            for kind, table, column in (
                ("points", points, "time"),
                ("quarantine", quarantine, "received_at"),
            ):
                for day, part in _by_day(table, column):
                    final = self.root / kind / f"date={day}" / f"{manifest.batch_id}.parquet"
                    temp = final.with_name(final.name + ".tmp")
                    temp.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(part, temp, compression="zstd")
                    staged.temporary.append((temp, final))
                    files.append(str(final.relative_to(self.root)))
        except OSError as exc:
            self.abort(staged)
            raise StoreError(f"cannot write the telemetry log under {self.root}: {exc}") from exc
        staged.manifest = replace(manifest, files=tuple(files))
        return staged

    def commit(self, staged: StagedBatch) -> BatchManifest:
        """Rename the files into place, then write the manifest that makes them visible."""
        for temp, final in staged.temporary:
            temp.replace(final)
        self._batches.mkdir(parents=True, exist_ok=True)
        path = self._batches / f"{staged.manifest.batch_id}.json"
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(_asdict(staged.manifest), indent=1), encoding="utf-8")
        temp.replace(path)
        return staged.manifest

    @staticmethod
    def abort(staged: StagedBatch) -> None:
        """Remove what :meth:`stage` wrote."""
        for temp, _ in staged.temporary:
            temp.unlink(missing_ok=True)
        staged.temporary.clear()

    def _files(self, kind: str) -> list[str]:
        return [
            str(self.root / f)
            for m in self.manifests()
            for f in m.files
            if f.startswith(kind + "/")
        ]

    def window(
        self,
        *,
        sensors: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """Accepted points with ``start <= time < end`` (of ``sensors``), in a stable order."""
        clauses = (
            None if sensors is None else ds.field("sensor").isin(list(sensors)),
            None if start is None else ds.field("time") >= _timestamp(start),
            None if end is None else ds.field("time") < _timestamp(end),
        )
        files = self._files("points")
        if not files or (sensors is not None and not sensors):  # isin([]) is untyped: Arrow fails
            return POINTS_SCHEMA.empty_table()
        dataset = ds.dataset(files, schema=POINTS_SCHEMA, format="parquet")
        condition = None
        for clause in clauses:
            if clause is not None:
                condition = clause if condition is None else condition & clause
        return dataset.to_table(filter=condition).sort_by(_SORT)

    def quarantined(
        self, *, batch: str | None = None, sensor: str | None = None, limit: int | None = None
    ) -> pa.Table:
        """Quarantined points with their reasons, newest batch last, in a stable order."""
        files = self._files("quarantine")
        if not files:
            return QUARANTINE_SCHEMA.empty_table()
        table = ds.dataset(files, schema=QUARANTINE_SCHEMA, format="parquet").to_table()
        if batch is not None:
            table = table.filter(pc.equal(table["batch"], batch))
        if sensor is not None:
            table = table.filter(pc.equal(table["sensor"], sensor))
        table = table.sort_by(
            [("received_at", "ascending"), ("batch", "ascending"), ("seq", "ascending")]
        )
        return table if limit is None else table.slice(0, limit)


def _asdict(manifest: BatchManifest) -> dict[str, object]:
    return {
        "batch_id": manifest.batch_id,
        "contract": manifest.contract,
        "received_at": manifest.received_at,
        "accepted": manifest.accepted,
        "rejected": manifest.rejected,
        "files": list(manifest.files),
    }


def _timestamp(moment: datetime) -> pa.TimestampScalar:
    if moment.tzinfo is None:
        raise InvalidInputError(f"{moment.isoformat()} has no time zone")
    return pa.scalar(moment, type=pa.timestamp("ns", tz="UTC"))


def _by_day(table: pa.Table, column: str) -> list[tuple[str, pa.Table]]:
    if table.num_rows == 0:
        return []
    # whole days since the epoch, from the integers (formatting a million timestamps is slow)
    days = table[column].cast(pa.int64()).to_numpy() // _DAY_NS
    parts = []
    for day in np.unique(days):
        label = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day))).strftime("%Y-%m-%d")
        parts.append((label, table.filter(pa.array(days == day))))
    return parts
