"""The twin's operations that need no graph: checking data against a contract, and reading or
verifying the audit log of state-changing requests.

:class:`~api.twin.Twin` extends :class:`OfflineTwin`, so they are Twin operations like any
other; a CLI command that needs nothing else uses an :class:`OfflineTwin` and starts no Neo4j.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rdflib import Graph

from twinkg.api.settings import Settings, audit_log_path
from twinkg.kg.audit_log import AuditEntry, AuditLog, AuditVerifyReport
from twinkg.ontology.catalog import load_ontology
from twinkg.reasoner.validation import ValidationOutcome
from twinkg.reasoner.validation import validate as validate_graph
from twinkg.shapes.registry import default_registry


@dataclass
class OfflineTwin:
    """The settings, and what can be done with them alone."""

    settings: Settings

    @staticmethod
    def validate(contract: str, data: Graph | Callable[[], Graph]) -> ValidationOutcome:
        """Check RDF data against a contract (``name`` or ``name@version``: the version the
        data declares), with the ontology, so subclasses count. ``data`` may be a function that
        reads it: it is called after the contract is resolved, so an unknown contract is what
        a caller hears first. Nothing is stored; it needs no settings either (a producer's CI
        calls it as ``OfflineTwin.validate``)."""
        shapes = default_registry().accept(contract).graph
        graph = data if isinstance(data, Graph) else data()
        return validate_graph(graph, shapes, ontology=load_ontology())

    @property
    def audit_log(self) -> AuditLog:
        """The audit log of state-changing requests (``TWINKG_AUDIT_LOG``, else under home)."""
        return AuditLog(audit_log_path(self.settings))

    def audit_entries(self, *, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries of the audit log, newest last."""
        return self.audit_log.entries(limit=limit)

    def verify_audit(
        self, *, expect_head: str | None = None, expect_count: int | None = None
    ) -> AuditVerifyReport:
        """Recompute the audit log's hash chain; the report names the first entry that does not
        fit, or the expectation kept elsewhere (a head, a count) the log no longer meets."""
        return self.audit_log.verify(expect_head=expect_head, expect_count=expect_count)
