"""Exceptions and warnings raised by scimtools, and the parser of SCIM error bodies.

Every exception derives from `SCIMToolsError`, so ``except SCIMToolsError`` catches
all of them; a subclass exists for each situation a caller handles differently.
Bad arguments raise `ValueError` instead. No message ever holds a token or a secret.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "BadResponseError",
    "IncompleteExportError",
    "InputError",
    "InputFileNotFoundError",
    "InsecureTLSWarning",
    "InsecureTransportError",
    "MissingPermissionError",
    "NotFoundError",
    "RateLimitedError",
    "SCIMServerError",
    "SCIMToolsError",
    "SCIMToolsWarning",
    "ServerUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "TokenExpiresSoonWarning",
    "UnauthorizedError",
    "parse_error_body",
    "server_error",
]

SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
FUSIONAUTH_ERROR_SCHEMA = "urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error"


class SCIMToolsError(Exception):
    """Base class of every error raised by scimtools."""


class SCIMToolsWarning(UserWarning):
    """Base class of every warning issued by scimtools."""


class TokenExpiresSoonWarning(SCIMToolsWarning):
    """A static bearer token expires within the configured margin."""


class InsecureTLSWarning(SCIMToolsWarning):
    """TLS certificate verification was turned off for a client."""


class InputError(SCIMToolsError, ValueError):
    """A file or value given to scimtools is malformed; the message names it."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """An input file does not exist; the message names it."""


class ConfigError(SCIMToolsError):
    """The settings (environment, .env file or arguments) are incomplete or clash."""


class TokenError(SCIMToolsError):
    """A token could not be obtained, read or used."""


class TokenExpiredError(TokenError):
    """A static bearer token has expired; no request was sent with it."""


class MissingPermissionError(TokenError):
    """The token lacks permissions that a planned operation needs.

    Attributes
    ----------
    missing : dict of str to list of str
        For each planned operation, the permissions the token lacks.
    """

    def __init__(self, message: str, missing: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.missing = missing


class InsecureTransportError(SCIMToolsError):
    """A bearer token or client secret would travel over plain http."""


class IncompleteExportError(SCIMToolsError):
    """A listing could not be exported completely.

    Attributes
    ----------
    fetched : int
        Unique resources fetched before giving up.
    expected : int or None
        What the server's totalResults promised, if it said.
    reason : str
        Why the export is incomplete.
    result : object or None
        The partial `scimtools.paging.ExportResult`, when there is one.
    """

    def __init__(
        self,
        fetched: int,
        expected: int | None,
        reason: str,
        *,
        result: Any = None,
    ) -> None:
        self.fetched = fetched
        self.expected = expected
        self.reason = reason
        self.result = result
        of = "an unknown number" if expected is None else f"{expected:,}"
        super().__init__(f"fetched {fetched:,} of {of} resources: {reason}")


class SCIMServerError(SCIMToolsError):
    """The SCIM server answered with an error status (RFC 7644 §3.12).

    Attributes
    ----------
    status : int
        The HTTP status code.
    scim_type : str or None
        ``scimType`` from a SCIM error body (FusionAuth never sets it).
    detail : str or None
        ``detail`` from a SCIM error body, or the first general error's message.
    field_errors : dict of str to list of dict
        FusionAuth's ``fieldErrors`` (``{"user.username": [{"code": ...}]}``).
    general_errors : list of dict
        FusionAuth's ``generalErrors`` (``[{"code": "[invalid]patch", ...}]``).
    body_text : str
        The response body, shortened to 2,000 characters.
    """

    hint = "see detail and field_errors for what the server refused"

    def __init__(
        self,
        status: int,
        *,
        scim_type: str | None = None,
        detail: str | None = None,
        field_errors: dict[str, list[dict[str, Any]]] | None = None,
        general_errors: list[dict[str, Any]] | None = None,
        body_text: str = "",
        request_line: str = "",
    ) -> None:
        self.status = status
        self.scim_type = scim_type
        self.detail = detail
        self.field_errors = field_errors or {}
        self.general_errors = general_errors or []
        self.body_text = body_text[:2000]
        self.request_line = request_line
        super().__init__(self._message())

    @property
    def codes(self) -> list[str]:
        """Return every FusionAuth error code, general ones first."""
        codes = [e.get("code", "") for e in self.general_errors]
        for errors in self.field_errors.values():
            codes.extend(e.get("code", "") for e in errors)
        return [c for c in codes if c]

    def _message(self) -> str:
        where = f"{self.request_line} answered" if self.request_line else "answered"
        text = f"{where} {self.status}"
        if self.scim_type:
            text += f" ({self.scim_type})"
        if self.detail:
            text += f": {self.detail}"
        if self.codes:
            text += f" [{', '.join(self.codes)}]"
        return f"{text}; {self.hint}."


class BadResponseError(SCIMServerError):
    """The server (or a proxy before it) answered something that is not SCIM."""

    hint = (
        "the server or a proxy in front of it did not answer SCIM JSON; check that"
        " the base URL ends in /api/scim/resource/v2, and look at body_text"
    )


class BadRequestError(SCIMServerError):
    """400: the request, its filter or its body was refused."""

    hint = (
        "check the filter syntax (lower-case operators), the PatchOp body and the"
        " field_errors; FusionAuth also answers 400 when SCIM is disabled or"
        " unlicensed on the tenant"
    )


class UnauthorizedError(SCIMServerError):
    """401: the token was refused, which FusionAuth also answers for a permission."""

    hint = (
        "the token may be expired, for another tenant, or missing permission for"
        " this endpoint (FusionAuth answers 401, not 403, for a missing"
        " permission); compare the token with scimtools.missing_permissions()"
    )


class ForbiddenError(SCIMServerError):
    """403: the server refused the operation for this token."""

    hint = "the token lacks a permission this operation needs"


class NotFoundError(SCIMServerError):
    """404: no such resource or endpoint."""

    hint = "check the id and the endpoint name (Users, EnterpriseUsers, Groups)"


class ConflictError(SCIMServerError):
    """409: a resource with the same unique value (userName, email) exists."""

    hint = "find the existing resource with a userName filter and update it instead"


class RateLimitedError(SCIMServerError):
    """429: too many requests.

    Attributes
    ----------
    retry_after : float or None
        Seconds the server asked to wait, if it said.
    """

    hint = "wait retry_after seconds, or lower max_workers"

    def __init__(self, status: int, *, retry_after: float | None = None, **kw: Any):
        self.retry_after = retry_after
        super().__init__(status, **kw)


class ServerUnavailableError(SCIMServerError):
    """502, 503 or 504: the server or its search index is unavailable."""

    hint = (
        "retry later; FusionAuth answers 503 when its search index fails and 504"
        " when a transactional webhook fails"
    )


_BY_STATUS: dict[int, type[SCIMServerError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    502: ServerUnavailableError,
    503: ServerUnavailableError,
    504: ServerUnavailableError,
}


def parse_error_body(body_text: str) -> dict[str, Any]:
    """Read the error fields from any error body: SCIM, FusionAuth, empty or HTML.

    Understands RFC 7644 §3.12 bodies (``status`` as string or number),
    FusionAuth's ``urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error``
    extension and its generic body with top-level ``generalErrors``. Anything
    else yields a short ``detail`` describing the body.

    Parameters
    ----------
    body_text : str
        The response body as text.

    Returns
    -------
    dict
        Keys ``scim_type``, ``detail``, ``field_errors``, ``general_errors``.

    Examples
    --------
    >>> body = '{"status": "409", "detail": "taken", "schemas": []}'
    >>> parse_error_body(body)["detail"]
    'taken'
    >>> parse_error_body("")["detail"]
    'empty body'
    >>> parse_error_body("<html><h1>Bad gateway</h1></html>")["detail"]
    'body is not JSON: <html><h1>Bad gateway</h1></html>'
    """
    fields: dict[str, Any] = {
        "scim_type": None,
        "detail": None,
        "field_errors": {},
        "general_errors": [],
    }
    if not body_text.strip():
        fields["detail"] = "empty body"
        return fields

    try:
        body = json.loads(body_text)
    except ValueError:
        snippet = " ".join(body_text.split())[:200]
        fields["detail"] = f"body is not JSON: {snippet}"
        return fields
    if not isinstance(body, dict):
        fields["detail"] = f"body is JSON but not an object: {body_text[:200]}"
        return fields

    extension = body.get(FUSIONAUTH_ERROR_SCHEMA)
    source = extension if isinstance(extension, dict) else body
    general = source.get("generalErrors")
    field = source.get("fieldErrors")
    fields["general_errors"] = [e for e in general or [] if isinstance(e, dict)]
    if isinstance(field, dict):
        fields["field_errors"] = {
            str(k): [e for e in v if isinstance(e, dict)]
            for k, v in field.items()
            if isinstance(v, list)
        }

    scim_type = body.get("scimType")
    fields["scim_type"] = str(scim_type) if scim_type else None
    detail = body.get("detail")
    if not detail and fields["general_errors"]:
        detail = fields["general_errors"][0].get("message")
    fields["detail"] = str(detail) if detail else None

    return fields


def server_error(
    status: int,
    body_text: str,
    *,
    request_line: str = "",
    retry_after: float | None = None,
) -> SCIMServerError:
    """Build the typed exception for an error response.

    Parameters
    ----------
    status : int
        The HTTP status code.
    body_text : str
        The response body (may be empty, SCIM, FusionAuth's or not JSON at all).
    request_line : str, optional
        ``"GET /Users"``, used in the message. Never pass a URL holding a token.
    retry_after : float, optional
        Seconds from a Retry-After header, kept on `RateLimitedError`.

    Returns
    -------
    SCIMServerError
        An instance of the subclass for ``status``.

    Examples
    --------
    >>> error = server_error(401, "", request_line="GET /Users")
    >>> type(error).__name__, error.status
    ('UnauthorizedError', 401)
    >>> "missing permission" in str(error)
    True
    """
    fields = parse_error_body(body_text)
    cls = _BY_STATUS.get(status, SCIMServerError)
    kw: dict[str, Any] = dict(fields, body_text=body_text, request_line=request_line)
    if cls is RateLimitedError:
        return RateLimitedError(status, retry_after=retry_after, **kw)
    return cls(status, **kw)
