"""Namespaces TwinKG uses, and the prefixes that name foreign terms in Neo4j.

The prefix of a foreign namespace becomes part of the Neo4j label, relationship type or property
key derived from a term (``prov:Activity`` → label ``prov_Activity``), so these prefixes are part of
the storage format: change one only with a migration.
"""

from __future__ import annotations

from typing import Final

TK: Final = "https://w3id.org/twinkg/ontology#"
"""The TwinKG ontology namespace (terms map to Neo4j names without a prefix)."""

ONTOLOGY_IRI: Final = "https://w3id.org/twinkg/ontology"
PLANT_BASE: Final = "https://w3id.org/twinkg/plant/"
"""Instances of a seed plant live under ``PLANT_BASE + <plant name> + "/"``."""

INGEST_BASE: Final = "https://w3id.org/twinkg/ingest/"
"""Ingest batches, window aggregates, anomalies and alarms TwinKG mints live under this base."""

SHAPES_BASE: Final = "https://w3id.org/twinkg/shapes/"
"""Contracts and safety shapes: ``SHAPES_BASE + "contracts/<name>"`` and ``+ "safety"``."""

DECISION_BASE: Final = "https://w3id.org/twinkg/decision/"
"""Agents' decisions and what each owns: ``DECISION_BASE + <run id> + "/" + <step>`` and below."""

WRITEBACK_BASE: Final = "https://w3id.org/twinkg/writeback/"
"""Results of writing an applied action to the plant: ``WRITEBACK_BASE + <run id>/<step>``."""

AGENT_BASE: Final = "https://w3id.org/twinkg/agent/"
"""The software agents (one IRI per agent and code version)."""

PREFIXES: Final[dict[str, str]] = {
    "tk": TK,
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "sosa": "http://www.w3.org/ns/sosa/",
    "ssn": "http://www.w3.org/ns/ssn/",
    "qudt": "http://qudt.org/schema/qudt/",
    "unit": "http://qudt.org/vocab/unit/",
    "quantitykind": "http://qudt.org/vocab/quantitykind/",
}


def plant_namespace(plant: str) -> str:
    """The IRI namespace of the instances of seed plant ``plant``."""
    return f"{PLANT_BASE}{plant}/"
