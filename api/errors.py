"""The errors only the interfaces raise, and how any TwinKG error answers over HTTP.

Credentials, permissions and media types belong to the ways in (HTTP, MCP, the roles the API
grants), not to the graph or the reasoner, so their classes live here rather than in
:mod:`ontology.errors`; they still subclass its one root, :class:`TwinKGError`, so the CLI's exit
codes and the JSON error shape treat them like every other error. The HTTP status of an error
and the ``WWW-Authenticate`` challenge of a 401 are here too: the HTTP routes and the MCP
endpoint (both served over HTTP) answer with the same rule.
"""

from __future__ import annotations

from typing import Any

from twinkg.ontology import errors as e
from twinkg.ontology.errors import InvalidInputError, TwinKGError

ERROR_HEADER = "X-TwinKG-Error-Code"
"""The response header that repeats an error's code (the audit log reads it, not the body)."""


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body in a content type the endpoint does not take."""

    code = "unsupported_media_type"


class InternalIngestError(InvalidInputError):
    """A message whose ingest raised something no check anticipated (a defect, logged with its
    traceback): refused into the dead letters rather than retried for ever."""

    code = "ingest_failed"


class AuthenticationError(TwinKGError):
    """No credentials, or credentials that do not identify anyone (HTTP 401)."""

    code = "auth_required"
    exit_code = 14


class CredentialsInvalidError(AuthenticationError):
    """An unknown or revoked API key, or a token with a bad signature, issuer or audience."""

    code = "auth_invalid"


class TokenExpiredError(AuthenticationError):
    """A bearer token (or API key) past its expiry."""

    code = "token_expired"


class AmbiguousCredentialsError(CredentialsInvalidError):
    """A request that carries more than one credential (an API key and an ``Authorization``
    header, even a malformed one): which one counts would be a guess, so neither does."""

    code = "auth_ambiguous"


class PermissionDeniedError(TwinKGError):
    """The caller is known but their role does not allow this operation (HTTP 403)."""

    code = "forbidden"
    exit_code = 15


class IdentityProviderError(TwinKGError):
    """The OpenID Connect provider could not be reached, or answered out of its protocol
    (HTTP 502): the sign-in cannot go on, and nothing about the caller was decided."""

    code = "oidc_unavailable"


# Most specific first: the first class an error is an instance of decides its status.
_STATUS: tuple[tuple[type[TwinKGError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (e.ApproverRoleError, 403),
    (e.SiteMismatchError, 403),
    (e.NotFoundError, 404),
    (e.NotAcceptableError, 406),
    (e.ApprovalError, 409),
    (e.ReplayInputsMissingError, 409),
    (e.UnsafeActionError, 409),
    (e.ContextChangedError, 409),
    (e.PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (e.ContractViolationError, 422),
    (e.QueryTimeoutError, 422),
    (e.SparqlMemoryLimitError, 422),
    (e.SparqlUserLimitError, 429),
    (e.QueryRejectedError, 400),
    (e.InvalidInputError, 400),
    (IdentityProviderError, 502),
    (e.StoreError, 503),
    (e.ServerError, 503),
    (e.ConfigError, 503),
)


def status_for(exc: TwinKGError) -> int:
    """The HTTP status of a TwinKG error (500 for one no rule names)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def www_authenticate(exc: AuthenticationError) -> str:
    """The ``WWW-Authenticate`` header a 401 for ``exc`` carries (RFC 6750 §3)."""
    if isinstance(exc, TokenExpiredError | CredentialsInvalidError):
        return 'Bearer realm="twinkg", error="invalid_token"'
    return 'Bearer realm="twinkg"'


def error_headers(exc: TwinKGError) -> dict[str, str]:
    """Headers an error response for ``exc`` carries: its code, and for a 401 the challenge."""
    headers = {ERROR_HEADER: exc.code}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = www_authenticate(exc)
    return headers


def error_document(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The body of every error answer: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details}}
