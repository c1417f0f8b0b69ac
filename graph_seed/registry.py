"""The seed plants TwinKG knows, by name."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from twinkg.graph_seed.generator import generate
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.records import GraphRecords
from twinkg.ontology.catalog import parse_turtle
from twinkg.ontology.errors import InvalidInputError, UnknownPlantError

PLANTS_DIR = Path(__file__).resolve().parent / "plants"


class Plant(StrEnum):
    """Names accepted by ``twinkg seed --plant``."""

    SKAB_TESTBED = "skab-testbed"
    TEP = "tep"
    GENERATED = "generated"


def parse_plant(name: str) -> Plant:
    """The plant called ``name``, or :class:`UnknownPlantError` listing the known ones."""
    try:
        return Plant(name)
    except ValueError:
        known = ", ".join(p.value for p in Plant)
        raise UnknownPlantError(f"unknown plant {name!r}; known plants: {known}") from None


def turtle_plant(path: Path) -> GraphRecords:
    """The records of a plant described in a Turtle file."""
    return rdf_to_records(parse_turtle([path]))


def plant_records(plant: Plant, *, assets: int = 1000, seed: int = 0) -> GraphRecords:
    """The records of ``plant``; ``assets`` and ``seed`` apply to the generated plant only."""
    if plant is Plant.GENERATED:
        if assets < 1:
            raise InvalidInputError(f"--assets must be at least 1, got {assets}")
        return generate(assets=assets, seed=seed)
    if plant is Plant.TEP:
        # Imported here: building it loads tep-studio (and SciPy), which other plants never need.
        from twinkg.graph_seed.tep import tep_plant  # noqa: PLC0415

        return rdf_to_records(tep_plant()[0])
    return turtle_plant(PLANTS_DIR / f"{plant.value}.ttl")
