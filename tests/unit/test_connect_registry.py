"""The telemetry source registry: the built-in kinds, dispatch by name, and a new protocol added
by one module plus one registration line (the toy source below, registered by the test)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from twinkg.api.cli.telemetry import _chosen
from twinkg.connect import registry
from twinkg.connect.csv import CsvSource
from twinkg.connect.json import JsonSource, from_json_points
from twinkg.connect.skab import SKAB_FIT_ROWS
from twinkg.connect.source import Batch, Source, SourceContext, SourceRequest
from twinkg.kg.telemetry_state import SensorRow
from twinkg.ontology.errors import ConfigError, InvalidInputError, PayloadTooLargeError
from twinkg.reasoner.progress import IngestPhase

PLANT = "https://example.org/test-connect/"
SENSORS = [
    SensorRow(PLANT + "sensor-a", "A", PLANT + "unit-a", None, None, None, None, ()),
    SensorRow(PLANT + "sensor-b", "B", None, None, None, None, None, ()),
    SensorRow(PLANT + "sensor-c", None, None, None, None, None, None, ()),  # no externalId
]


# ---- a toy protocol: what a new kind of source is (a push source: one batch per message) ----


@dataclass(frozen=True, slots=True)
class ToySource:
    """Messages ``sensor=value@time`` from a queue, one batch per message."""

    name: str
    messages: tuple[str, ...]

    def batches(self, context: SourceContext) -> Iterator[Batch]:
        """One batch per message, as a broker subscription would deliver them."""
        for message in self.messages:
            sensor, _, rest = message.partition("=")
            value, _, time = rest.partition("@")
            point = {"sensor": sensor, "value": float(value), "time": time}
            points = from_json_points([point], producer="toy")
            digest = hashlib.sha256(message.encode()).hexdigest()
            yield Batch(points, digest, "toy", "telemetry", f"{self.name}#{message}")


def toy_source(request: SourceRequest) -> ToySource:
    """The toy kind's factory: the target is the queue's name, ``messages`` ';'-separated."""
    return ToySource(request.target, tuple(request.option("messages", "").split(";")))


@pytest.fixture
def toy() -> Iterator[registry.SourceKind]:
    kind = registry.register("toy", toy_source, "a toy queue (tests)")  # the one line
    try:
        yield kind
    finally:
        registry.unregister("toy")


# ---- the registry ----


def test_the_built_in_kinds_are_skab_csv_and_json() -> None:
    names = [k.name for k in registry.kinds()]
    assert names[:3] == ["skab", "csv", "json"]
    assert all(k.summary for k in registry.kinds())


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match=r"no telemetry source kind 'mqtt' \(known: skab"):
        registry.open_source("mqtt", SourceRequest("tcp://broker"))


def test_a_kind_is_registered_once_under_a_lower_case_name(toy: registry.SourceKind) -> None:
    with pytest.raises(ConfigError, match="registered already"):
        registry.register("toy", toy_source, "again")
    for bad in ("", "Toy", "to y", "toy:1"):
        with pytest.raises(ConfigError, match="lower-case identifier"):
            registry.register(bad, toy_source, "bad")


def test_a_new_protocol_is_one_module_plus_its_registration(toy: registry.SourceKind) -> None:
    assert toy in registry.kinds()
    request = SourceRequest("queue-1", options={"messages": "x=1.5@2026-01-01T00:00:00Z;x=2@t"})
    source = registry.open_source("toy", request)
    assert isinstance(source, Source)
    batches = list(source.batches(SourceContext()))
    assert [len(b.points) for b in batches] == [1, 1]
    assert [b.name for b in batches] == ["queue-1#x=1.5@2026-01-01T00:00:00Z", "queue-1#x=2@t"]
    assert batches[0].points.value[0] == 1.5 and batches[0].producer == "toy"
    assert batches[0].content_hash != batches[1].content_hash
    # the CLI takes any registered kind as --source KIND:TARGET
    assert _chosen([("skab", None), ("csv", None), ("json", None)], "toy:queue-1") == (
        "toy",
        "queue-1",
    )
    registry.unregister("toy")
    with pytest.raises(InvalidInputError, match="no telemetry source kind 'toy'"):
        registry.open_source("toy", request)


def test_the_cli_takes_exactly_one_source() -> None:
    assert _chosen([("skab", "a.csv"), ("csv", None)], None) == ("skab", "a.csv")
    with pytest.raises(InvalidInputError, match="exactly one of"):
        _chosen([("skab", "a.csv"), ("csv", "b.csv")], None)
    with pytest.raises(InvalidInputError, match="exactly one of"):
        _chosen([("skab", None)], None)
    with pytest.raises(InvalidInputError, match="KIND:TARGET"):
        _chosen([("skab", None)], "csv")


# ---- the built-in kinds through the registry ----


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "run.csv"
    path.write_text(
        "datetime;A;B;anomaly\n2020-01-01 00:00:00;1;2;0\n2020-01-01 00:00:01;3;4;0\n",
        encoding="utf-8",
    )
    return path


def test_csv_and_skab_read_the_same_file_with_their_own_defaults(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    seen: list[tuple[str, int, int]] = []
    context = SourceContext(sensors=lambda: SENSORS, progress=lambda *r: seen.append(r))
    request = SourceRequest(str(path), producer="edge-1", options={"tz": "Europe/Moscow"})
    (csv,) = registry.open_source("csv", request).batches(context)
    (skab,) = registry.open_source("skab", request).batches(context)
    assert (csv.replay, csv.fit_rows) == (False, None)
    assert (skab.replay, skab.fit_rows) == (True, SKAB_FIT_ROWS)
    for batch in (csv, skab):
        assert batch.name == "run.csv" and batch.contract == "telemetry"
        assert batch.producer == "edge-1" and len(batch.points) == 4
        assert batch.points.sensor.to_pylist()[:2] == [PLANT + "sensor-a", PLANT + "sensor-b"]
        assert batch.points.unit.to_pylist()[:2] == [PLANT + "unit-a", None]
        assert batch.points.time_lexical.to_pylist()[0] == "2019-12-31T21:00:00Z"  # UTC+3
    assert csv.content_hash == skab.content_hash
    assert {phase for phase, _, _ in seen} == {IngestPhase.PARSE}
    assert seen[-1] == (IngestPhase.PARSE, 3, 3)  # the time column, then A and B


def test_a_csv_source_needs_sensors_with_an_external_id(tmp_path: Path) -> None:
    source = CsvSource(_csv(tmp_path))
    with pytest.raises(InvalidInputError, match="no sensors with a tk:externalId"):
        list(source.batches(SourceContext(sensors=lambda: SENSORS[2:])))


def test_json_reads_a_file_or_a_body_with_the_limits_of_the_context(tmp_path: Path) -> None:
    body = {
        "contract": "telemetry@1.0.0",
        "producer": "edge-2",
        "points": [{"sensor": PLANT + "sensor-a", "value": 1, "time": "2026-01-01T00:00:00Z"}],
    }
    path = tmp_path / "batch.json"
    path.write_bytes(json.dumps(body).encode())
    request = SourceRequest(str(path), contract="telemetry@1.0.0")
    (from_file,) = registry.open_source("json", request).batches(SourceContext())
    assert from_file.name == "batch.json" and from_file.producer == "edge-2"
    assert from_file.contract == "telemetry@1.0.0"
    assert from_file.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    posted = JsonSource("api:someone", body=path.read_bytes())
    (from_body,) = posted.batches(SourceContext())
    assert from_body.name == "api:someone" and from_body.content_hash == from_file.content_hash
    with pytest.raises(PayloadTooLargeError, match="1 points exceed the 0"):
        list(posted.batches(SourceContext(max_points=0)))
    with pytest.raises(InvalidInputError, match="no such file"):
        list(JsonSource(str(tmp_path / "missing.json")).batches(SourceContext()))
    wrong = JsonSource("api:someone", body=path.read_bytes(), contract="telemetry@2.0.0")
    with pytest.raises(InvalidInputError, match=r"declares 'telemetry@1\.0\.0'"):
        list(wrong.batches(SourceContext()))
