"""What a caller may do: roles, their permissions, and the authenticated principal.

Least privilege: each role holds exactly the permissions its users need (issue 5's matrix);
approvals are further limited by the criticality of the asset acted on. Used by
``api/security.py`` (who is calling) and the routes (what they may do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from twinkg.api.errors import PermissionDeniedError
from twinkg.ontology.errors import InvalidInputError


class Role(StrEnum):
    """What a caller is, as far as TwinKG's permissions go."""

    VIEWER = "viewer"
    ENGINEER = "engineer"
    AGENT = "agent"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    COMPLIANCE = "compliance"
    PRODUCER = "producer"
    ADMIN = "admin"


class Permission(StrEnum):
    """One kind of operation an endpoint performs."""

    READ = "read"  # assets, context, decision summaries, approval lists, run status
    QUERY = "query"  # Cypher and SPARQL
    VALIDATE = "validate"  # validate a posted graph against a contract
    INGEST = "ingest"  # telemetry
    PROPOSE = "propose"  # propose an action
    RUN_AGENTS = "run_agents"  # start agent runs
    APPROVE = "approve"  # approve, edit or reject a proposed action
    AUDIT = "audit"  # lineage, verify, replay, the audit log
    ADMIN = "admin"  # manage keys


_P = Permission
GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({_P.READ}),
    Role.ENGINEER: frozenset({_P.READ, _P.QUERY, _P.VALIDATE}),
    Role.AGENT: frozenset({_P.READ, _P.QUERY, _P.PROPOSE, _P.RUN_AGENTS}),
    Role.OPERATOR: frozenset({_P.READ, _P.APPROVE}),
    Role.SUPERVISOR: frozenset({_P.READ, _P.APPROVE, _P.RUN_AGENTS}),
    Role.COMPLIANCE: frozenset({_P.READ, _P.QUERY, _P.AUDIT}),
    Role.PRODUCER: frozenset({_P.INGEST, _P.VALIDATE}),
    Role.ADMIN: frozenset(Permission),
}
"""Least privilege: each role holds exactly the permissions its users need."""

APPROVABLE_CRITICALITY: Mapping[Role, frozenset[str]] = {
    Role.OPERATOR: frozenset({"B", "C"}),
    Role.SUPERVISOR: frozenset({"A", "B", "C"}),
    Role.ADMIN: frozenset({"A", "B", "C"}),
}
"""Which asset criticalities (``tk:criticality``) each approving role may approve actions on."""

AuthMethod = Literal["api_key", "jwt", "oidc"]


def _role_names(roles: frozenset[Role]) -> str:
    return ", ".join(sorted(roles)) or "none"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str  # the API key's id, or the token's `sub`
    name: str
    roles: frozenset[Role]
    person: str | None  # the Person IRI this caller approves as
    method: AuthMethod
    sites: frozenset[str] = frozenset()  # the sites (tags) its telemetry may name; none: all

    @property
    def permissions(self) -> frozenset[Permission]:
        """Everything the caller's roles grant."""
        return frozenset().union(*(GRANTS[role] for role in self.roles))

    def require(self, permission: Permission) -> None:
        """Raise :class:`PermissionDeniedError` unless one of the caller's roles grants it."""
        if permission not in self.permissions:
            raise PermissionDeniedError(
                f"{permission.value!r} is not granted to {self.name!r} "
                f"(roles: {_role_names(self.roles)})"
            )


def may_approve(principal: Principal, criticality: str | None) -> bool:
    """Whether ``principal`` may approve an action on an asset of ``criticality``.

    An asset without a (known) criticality counts as the most critical, "A".
    """
    if Permission.APPROVE not in principal.permissions:
        return False
    wanted = criticality if criticality in {"A", "B", "C"} else "A"
    return any(wanted in APPROVABLE_CRITICALITY.get(role, frozenset()) for role in principal.roles)


def parse_roles(names: list[str] | tuple[str, ...]) -> frozenset[Role]:
    """Roles from their names; an unknown name is :class:`InvalidInputError`."""
    known = {role.value for role in Role}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown role {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})"
        )
    return frozenset(Role(name) for name in names)
