"""The SKAB benchmark reads the detector subjects from the seed's Turtle with SPARQL, so it needs
no database; the ingest reads them from Neo4j with Cypher. Both must give the same subjects."""

from __future__ import annotations

from neo4j import Driver

from benchmarks import skab
from tests.conftest import seed_skab
from twinkg.kg.telemetry_state import detector_subjects


def test_the_benchmark_and_the_ingest_watch_the_same_channels(driver: Driver) -> None:
    store = seed_skab(driver)
    stored = detector_subjects(store)
    assert stored, "the SKAB testbed has monitored equipment"
    assert tuple(stored) == skab.subjects()
    # the instrument accuracies reach the detectors (the two temperature sensors state one)
    stated = {
        sensor: accuracy
        for subject in stored
        for sensor, accuracy in zip(subject.sensors, subject.accuracy, strict=True)
        if accuracy > 0
    }
    assert set(stated) == {
        "https://w3id.org/twinkg/plant/skab-testbed/sensor-temperature",
        "https://w3id.org/twinkg/plant/skab-testbed/sensor-thermocouple",
    }
    assert set(stated.values()) == {1.5}
