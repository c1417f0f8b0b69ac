"""The skab-testbed seed describes the real SKAB data: its columns, units and value ranges."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF

from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.ontology.catalog import parse_turtle
from twinkg.ontology.vocab import TK

SKAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab" / "data"
LABELS = ("datetime", "anomaly", "changepoint")


@pytest.fixture(scope="module")
def seed() -> Graph:
    return parse_turtle([PLANTS_DIR / "skab-testbed.ttl"])


@pytest.fixture(scope="module")
def observed() -> dict[str, tuple[float, float]]:
    """Min and max of every sensor column over all SKAB files."""
    if not SKAB.is_dir():
        pytest.skip(f"SKAB data not found at {SKAB} (it lives in ../shared/data/skab)")
    ranges: dict[str, tuple[float, float]] = {}
    for path in sorted(SKAB.glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                for column, text in row.items():
                    if column in LABELS or not text:
                        continue
                    low, high = ranges.get(column, (float("inf"), float("-inf")))
                    ranges[column] = (min(low, float(text)), max(high, float(text)))
    return ranges


def _sensors(seed: Graph) -> dict[str, URIRef]:
    return {
        str(seed.value(s, TK.externalId)): s
        for s in seed.subjects(RDF.type, TK.Sensor)
        if isinstance(s, URIRef)
    }


def _number(seed: Graph, subject: URIRef, predicate: URIRef) -> float:
    value = seed.value(subject, predicate)
    assert isinstance(value, Literal), (subject, predicate)
    return float(value.toPython())


def test_one_sensor_per_data_column(seed: Graph, observed: dict[str, tuple[float, float]]) -> None:
    assert set(_sensors(seed)) == set(observed)
    assert len(observed) == 8


def test_every_observed_value_is_inside_its_sensors_physical_range(
    seed: Graph, observed: dict[str, tuple[float, float]]
) -> None:
    for column, sensor in _sensors(seed).items():
        low, high = _number(seed, sensor, TK.physicalMin), _number(seed, sensor, TK.physicalMax)
        seen_low, seen_high = observed[column]
        assert low <= seen_low and seen_high <= high, (column, (low, high), observed[column])


def test_every_sensor_has_unit_quantity_kind_and_monitored_asset(seed: Graph) -> None:
    for sensor in _sensors(seed).values():
        assert seed.value(sensor, TK.hasUnit) is not None
        assert seed.value(sensor, TK.hasQuantityKind) is not None
        assert len(list(seed.objects(sensor, TK.monitors))) == 1


def test_the_failure_modes_the_experiments_exercise(seed: Graph) -> None:
    pump = next(seed.subjects(RDF.type, TK.CentrifugalPump))
    modes = set(seed.objects(pump, TK.susceptibleTo))
    assert {
        TK.Cavitation,
        TK.LowOutput,
        TK.ExternalLeakageProcessMedium,
        TK.Vibration,
        TK.Overheating,
    } <= modes
