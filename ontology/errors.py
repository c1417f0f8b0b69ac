"""The one exception tree of TwinKG.

Broken inputs and broken infrastructure raise a subclass of :class:`TwinKGError`; each carries a
stable ``code`` that the CLI maps to an exit status and the API to a JSON error. Non-conformance
of data to a contract is *not* an exception: validation returns a typed outcome instead.
It lives in the lowest layer so that every package can raise it. Errors only the interfaces
raise (credentials, permissions, media types) subclass it in ``api/errors.py``.
"""

from __future__ import annotations

from typing import ClassVar


class TwinKGError(Exception):
    """Base of every error TwinKG raises on purpose."""

    code: ClassVar[str] = "twinkg_error"
    exit_code: ClassVar[int] = 1


class ConfigError(TwinKGError):
    """A setting is missing or contradicts another one."""

    code = "config_invalid"
    exit_code = 2


class InvalidInputError(TwinKGError):
    """Input that cannot be used as given: malformed Turtle, an unknown plant, a bad option."""

    code = "invalid_input"
    exit_code = 5


class TurtleSyntaxError(InvalidInputError):
    """A Turtle file that does not parse."""

    code = "turtle_malformed"


class OntologyError(InvalidInputError):
    """The ontology files cannot be parsed or break a naming rule."""

    code = "ontology_invalid"


class MappingError(InvalidInputError):
    """RDF data that cannot be mapped to the property graph without loss."""

    code = "mapping_invalid"


class UnknownPlantError(InvalidInputError):
    """A seed plant name that the registry does not know."""

    code = "unknown_plant"


class ShapesError(InvalidInputError):
    """A shapes graph that fails meta-SHACL or cannot be applied."""

    code = "shapes_invalid"


class UnknownContractError(InvalidInputError):
    """A contract name or version that the registry does not hold."""

    code = "contract_unknown"


class ContractIncompatibleError(InvalidInputError):
    """Data declared against a contract version the current contract cannot accept."""

    code = "contract_incompatible"


class ContractViolationError(InvalidInputError):
    """Data that breaks its contract where a whole input must conform (a plant to seed)."""

    code = "contract_violation"


class StoreError(TwinKGError):
    """Neo4j is unreachable, refused the credentials, or failed a transaction."""

    code = "store_unavailable"
    exit_code = 3


class QueryRejectedError(TwinKGError):
    """A query that TwinKG refuses to run: a write on a read-only path, or invalid Cypher."""

    code = "query_rejected"
    exit_code = 4


class ServerError(TwinKGError):
    """The local Neo4j server could not be built, started or stopped."""

    code = "server_failed"
    exit_code = 6


class PortInUseError(ServerError):
    """The Bolt port of the local server is taken by another process."""

    code = "port_in_use"


class NotFoundError(InvalidInputError):
    """A resource named by the caller does not exist (a decision IRI, a person)."""

    code = "not_found"
    exit_code = 8


class DecisionNotFoundError(NotFoundError):
    """No decision record with that IRI or id."""

    code = "decision_not_found"


class ReplayInputsMissingError(InvalidInputError):
    """A replay cannot run: inputs the decision used (telemetry windows, evidence) are gone."""

    code = "replay_inputs_missing"
    exit_code = 9


class ApprovalError(InvalidInputError):
    """An approval that cannot authorise the action it is given for."""

    code = "approval_invalid"
    exit_code = 10


class NotAwaitingApprovalError(ApprovalError):
    """The decision is not waiting for an approval (already applied, refused or rejected)."""

    code = "not_awaiting_approval"


class ApprovalMismatchError(ApprovalError):
    """The approval names another action, other arguments or another graph version."""

    code = "approval_mismatch"


class ApprovalExpiredError(ApprovalError):
    """The approval expires before it could be used."""

    code = "approval_expired"


class ApprovalRequestExpiredError(ApprovalError):
    """The approval request is older than its validity: it may be rejected, not approved."""

    code = "approval_request_expired"


class ApproverRoleError(ApprovalError):
    """The approver is unknown or holds none of the roles the action's approval requires."""

    code = "approver_role"


class ApprovalStaleError(ApprovalError):
    """The graph the action was judged on has changed since; the approval no longer applies."""

    code = "approval_stale"


class UnsafeActionError(TwinKGError):
    """An action reached the point of being applied without the guard's permission."""

    code = "unsafe_action"
    exit_code = 11


class ContextChangedError(TwinKGError):
    """What the guard judged an action on changed before the action could be recorded: another
    decision, the plant's run feedback or a person wrote to the action's context in between.
    Nothing was written; the run is guarded again on the context as it is now (decision 0086)."""

    code = "context_changed"


class ChainBrokenError(TwinKGError):
    """``twinkg verify`` found an altered, missing or unchained provenance record."""

    code = "provenance_tampered"
    exit_code = 12


class ReplayDiffersError(TwinKGError):
    """A replay did not reach the recorded decision."""

    code = "replay_differs"
    exit_code = 13


class QueryTimeoutError(QueryRejectedError):
    """An untrusted query ran past its server-side time limit and was stopped."""

    code = "query_timeout"


class SparqlInvalidError(QueryRejectedError):
    """A SPARQL query that does not parse."""

    code = "sparql_invalid"


class SparqlRefusedError(QueryRejectedError):
    """A SPARQL request TwinKG never runs: an update, ``SERVICE`` or ``LOAD``."""

    code = "sparql_refused"


class ProjectionError(StoreError):
    """The RDF projection (the SPARQL store) cannot be built or brought up to date."""

    code = "projection_unavailable"


class SparqlBusyError(ProjectionError):
    """Every SPARQL worker is taken and the queue is full, or the wait for one ran out."""

    code = "sparql_busy"


class PayloadTooLargeError(InvalidInputError):
    """A request body larger than the configured limit."""

    code = "payload_too_large"


class SiteMismatchError(InvalidInputError):
    """Telemetry on one site's topic that names a sensor the graph places on another site (or
    on none): a producer is bound to its site, its payload as much as its topic."""

    code = "site_mismatch"


class NotAcceptableError(InvalidInputError):
    """No representation the endpoint offers matches the request's ``Accept`` header."""

    code = "not_acceptable"


class AuditLogTamperedError(TwinKGError):
    """``twinkg audit verify`` found an altered, missing, reordered or unreadable audit entry."""

    code = "audit_tampered"
    exit_code = 16


class SparqlWorkerFailedError(ProjectionError):
    """A SPARQL query crashed the worker process that ran it (a panic in the query engine);
    the worker was replaced, nothing else was affected."""

    code = "sparql_worker_failed"


class SparqlMemoryLimitError(QueryRejectedError):
    """A SPARQL query needed more memory than a worker process may use and was stopped."""

    code = "sparql_memory_limit"


class SparqlUserLimitError(SparqlBusyError):
    """The caller already has as many SPARQL queries running or waiting as one caller may."""

    code = "sparql_user_limit"


class ProjectionBuildingError(ProjectionError):
    """SPARQL cannot answer yet: no projection was ever published here, the first build runs."""

    code = "projection_building"


class JsonTooDeepError(InvalidInputError):
    """A JSON body nested deeper than the configured limit; refused before it is parsed."""

    code = "json_too_deep"


class QueryUnboundedError(QueryRejectedError):
    """Untrusted Cypher whose cost within one row the guard cannot bound (a long ``range``,
    nested iterations, a growing ``reduce``, a value combined with itself clause after clause)."""

    code = "query_unbounded"


class UnknownQuantityKindError(InvalidInputError):
    """A proposal names a quantity kind that is not in the graph."""

    code = "quantity_kind_unknown"


class ScenarioError(InvalidInputError):
    """A scenario file that does not parse or breaks the scenario schema (names the line)."""

    code = "scenario_invalid"


class ModelFileError(InvalidInputError):
    """A simulator model file (an EPANET ``.inp``, an FMU) that is malformed or unsupported;
    the message names the line or the part at fault."""

    code = "model_file_invalid"


class SimulatorError(TwinKGError):
    """A simulator raised, hung past its step timeout, or returned values that cannot be used;
    the run ends as failed with this reason and its partial results marked so."""

    code = "simulator_failed"
    exit_code = 17


class OpcUaError(TwinKGError):
    """An OPC UA server could not be reached, or the session with it failed."""

    code = "opcua_unreachable"
    exit_code = 18


class OpcUaUntrustedError(OpcUaError):
    """The OPC UA peer's certificate is not the one trusted, or the server offers no
    Basic256Sha256 SignAndEncrypt endpoint."""

    code = "opcua_untrusted"


class OpcUaMappingError(InvalidInputError):
    """An OPC UA mapping file (or NodeSet2 file) that does not parse or breaks the mapping rules;
    the message names the file, the entry and the field."""

    code = "opcua_mapping_invalid"


class BundleRefusedError(InvalidInputError):
    """An edge refused a policy bundle; the bundle in force stays in force (decision 0059)."""

    code = "bundle_refused"
    exit_code = 23


class BundleUntrustedError(BundleRefusedError):
    """A policy bundle signed by a key this edge does not trust."""

    code = "bundle_untrusted"


class BundleForgedError(BundleRefusedError):
    """A policy bundle whose signature or member hashes do not check out."""

    code = "bundle_forged"


class BundleStaleError(BundleRefusedError):
    """A policy bundle whose version is not newer than the one in force."""

    code = "bundle_stale"


class BundleInvalidError(BundleRefusedError):
    """A policy bundle that is not one, or whose shapes, policies or rules do not validate."""

    code = "bundle_invalid"


class EdgeDecisionRefusedError(InvalidInputError):
    """A forwarded edge decision the central twin will not record (malformed, or its hash
    does not match its content)."""

    code = "edge_decision_invalid"


class EdgeChainBrokenError(EdgeDecisionRefusedError):
    """A forwarded edge decision that does not link to the edge's chain as recorded centrally
    (another record under the same index, or a previous hash that differs)."""

    code = "edge_chain_broken"


class EdgeOutOfOrderError(EdgeDecisionRefusedError):
    """A forwarded edge decision whose predecessor is not recorded yet: the edge sends it again
    after the gap is filled."""

    code = "edge_out_of_order"


class EdgeChainTamperedError(TwinKGError):
    """``twinkg edge verify`` found an altered, missing or reordered local decision record."""

    code = "edge_chain_tampered"
    exit_code = 24


class EdgeBufferFullError(TwinKGError):
    """The edge's store-and-forward buffer is at its bound: new telemetry is refused (left
    where it came from) until the link drains it."""

    code = "edge_buffer_full"
    exit_code = 25
