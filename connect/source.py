"""The telemetry source interface: what every way telemetry comes in from a plant provides.

A :class:`Source` yields :class:`Batch` es: points (``reasoner.points.PointBatch``, the domain
type the ingest consumes) with their content hash, producer, declared contract and a name for
messages. A file is a source with one batch; a push source (a broker subscription, a server's
monitored items) yields a batch whenever it has gathered one, for as long as it runs. A source
only reads and converts: the contract, the limits, the telemetry log, the graph write and the
reclassification that follows belong to the ingest (``api.twin.Twin.ingest``), which treats
every source alike.

What a source needs from the twin comes in a :class:`SourceContext` (the graph's sensors,
limits from the settings, a progress callback), never from the settings directly: ``connect``
does not import ``api``. How a source is named on a command line is a :class:`SourceRequest`;
``connect.registry`` turns a kind name and a request into a source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from twinkg.kg.telemetry_state import SensorRow
from twinkg.reasoner.points import PointBatch
from twinkg.reasoner.progress import IngestPhase, Progress

JSON_MAX_DEPTH = 32  # the default of TWINKG_INGEST_JSON_MAX_DEPTH


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of telemetry a source produced, as the ingest takes it.

    ``contract`` is the contract the producer declares (``telemetry`` or ``telemetry@1.0.0``);
    ``name`` says where the batch came from in messages and in the telemetry log (a file name,
    ``api:<subject>``, a topic). ``replay`` and ``fit_rows`` are the source's defaults for the
    ingest (a recorded run is judged as of its newest point; SKAB fits its detectors on the
    first 400 rows); the caller may override them."""

    points: PointBatch
    content_hash: str
    producer: str | None
    contract: str
    name: str
    replay: bool = False
    fit_rows: int | None = None


def _no_sensors() -> Sequence[SensorRow]:
    return ()


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source may need from the twin while it reads.

    ``sensors`` is called only by a source that maps its own names to the graph's sensors (a CSV
    column is a sensor's ``tk:externalId``); ``max_points`` lets a source refuse a batch past the
    limit before it converts it (the ingest enforces the limit in any case); ``progress`` hears
    the parse phase as ``(IngestPhase.PARSE, done, total)``."""

    sensors: Callable[[], Sequence[SensorRow]] = _no_sensors
    max_points: int | None = None
    json_max_depth: int = JSON_MAX_DEPTH
    progress: Progress | None = None

    def parsing(self) -> Callable[[int, int], None] | None:
        """The readers' ``(done, total)`` reports as the ingest's parse phase (or ``None``)."""
        report = self.progress
        if report is None:
            return None
        return lambda done, total: report(IngestPhase.PARSE, done, total)


@runtime_checkable
class Source(Protocol):
    """A way telemetry comes in: it yields batches, one for a file, many for a stream."""

    @property
    def name(self) -> str:
        """Where the batches come from, for messages (a path, ``api:<subject>``, a URL)."""
        ...

    def batches(self, context: SourceContext) -> Iterator[Batch]:
        """The batches, each read when the caller asks for the next one. A source that cannot
        be read at all raises :class:`InvalidInputError` (or a subclass) with a one-line reason.
        """
        ...


@dataclass(frozen=True, slots=True)
class SourceRequest:
    """A source as a caller names it: a target and the options its kind reads.

    ``target`` is a path (``-`` for stdin) or, for a network protocol, an address; ``contract``
    the contract the caller says the data was written for; ``options`` the kind's own settings
    (CSV: ``tz``, ``delimiter``, ``time_column``, ``time_format``), as text; a kind ignores
    the options it does not read."""

    target: str
    contract: str | None = None
    producer: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def option(self, name: str, default: str) -> str:
        """The option ``name`` as given, else ``default``."""
        return self.options.get(name, default)


SourceFactory = Callable[[SourceRequest], Source]
"""Makes a source of one kind from a request (``connect.registry`` maps kind names to these)."""
