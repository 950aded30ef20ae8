"""The sandbox's WSGI app: FusionAuth's SCIM endpoints and token endpoint.

Routing comes from scim2-server (:func:`scim2_server.routing.match`); the rest
is FusionAuth's behaviour as fusionauth-scim.md describes it: the 401 for every
token problem, the list envelope, the 10,000 window, the filter subset,
``excludedAttributes`` and the error bodies.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
import uuid
from typing import Any

from scim2_models import NotFoundException
from scim2_server.errors import MethodNotAllowedException
from scim2_server.routing import Operation, match
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Request, Response

from .config import SandboxConfig
from .filters import FilterError, Query
from .lambdas import LambdaError
from .store import BASE_MARK, BadRequestError, SandboxError, Tenant
from .tokens import OAuthError, TokenIssuer, TokenRejected

__all__ = ["SCIM_PREFIX", "SandboxApp"]

logger = logging.getLogger(__name__)

SCIM_PREFIX = "/api/scim/resource/v2"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
FA_ERROR_URN = "urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
CONTENT_TYPE = "application/scim+json; charset=UTF-8"
UNAUTHORIZED = (
    "[UnauthorizedException] Your supplied token is not authorized to make this"
    " SCIM request."
)

_RESOURCES = {"Users": "User", "EnterpriseUsers": "EnterpriseUser", "Groups": "Group"}
_PERMISSION_PREFIX = {
    "User": "scim:user",
    "EnterpriseUser": "scim:enterprise:user",
    "Group": "scim:group",
}
_ACTIONS = {
    Operation.create: "create",
    Operation.query: "read",
    Operation.search: "read",
    Operation.replace: "update",
    Operation.patch: "update",
    Operation.delete: "delete",
}
_DISCOVERY_PERMISSIONS = {
    Operation.service_provider_config: "scim:service-provider-config:read",
    Operation.resource_types: "scim:resource-types:read",
    Operation.resource_type: "scim:resource-types:read",
    Operation.schemas: "scim:schemas:read",
    Operation.schema: "scim:schemas:read",
}


def _load(name: str) -> Any:
    path = importlib.resources.files("scimtools.sandbox") / "resources" / name
    return json.loads(path.read_text(encoding="utf-8"))


class _ScimError(Exception):
    def __init__(self, status: int, detail: str, **extension: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extension = extension


class SandboxApp:
    """Serve one tenant's SCIM server and token endpoint as a WSGI app.

    Parameters
    ----------
    tenant
        Users, groups and lambdas.
    issuer
        Mints and checks the tokens.
    config
        The FusionAuth choices and the latency.
    """

    def __init__(
        self, tenant: Tenant, issuer: TokenIssuer, config: SandboxConfig
    ) -> None:
        self.tenant = tenant
        self.issuer = issuer
        self.config = config
        self._spc = json.dumps(_load("service-provider-config.json"))
        self._resource_types = _load("resource-types.json")
        self._schemas = _load("schemas.json")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.tenant.store.session():
            response = self.dispatch(request)
        return response(environ, start_response)

    # --- plumbing --------------------------------------------------------

    def _json(self, status: int, body: str | None, base: str) -> Response:
        response = Response(
            None if body is None else body.replace(BASE_MARK, base),
            status=status,
            content_type=CONTENT_TYPE,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def _error(self, status: int, detail: str, base: str, **ext: Any) -> Response:
        if self.config.empty_error_bodies and status in (401, 404, 500):
            return self._json(status, None, base)
        body: dict[str, Any] = {
            "schemas": [ERROR_URN],
            "status": str(status),
            "detail": detail,
        }
        if ext.get("general_errors") is not None or ext.get("field_errors") is not None:
            body["schemas"] = [FA_ERROR_URN, ERROR_URN]
            body[FA_ERROR_URN] = {
                "generalErrors": ext.get("general_errors") or [],
                "fieldErrors": ext.get("field_errors") or {},
            }
        return self._json(status, json.dumps(body), base)

    def dispatch(self, request: Request) -> Response:
        """Answer one request."""
        path = request.path
        if path == "/oauth2/token":
            return self._token(request)

        base = request.host_url.rstrip("/") + SCIM_PREFIX
        if not (path == SCIM_PREFIX or path.startswith(SCIM_PREFIX + "/")):
            return self._error(404, f"No endpoint at [{path}].", base)
        if self.config.latency:
            time.sleep(self.config.latency)

        logger.debug("%s %s", request.method, path)
        try:
            return self._scim(request, path[len(SCIM_PREFIX) :] or "/", base)
        except _ScimError as exc:
            return self._error(exc.status, exc.detail, base, **exc.extension)
        except SandboxError as exc:
            return self._error(
                exc.status,
                exc.detail,
                base,
                general_errors=exc.general_errors,
                field_errors=exc.field_errors,
            )
        except LambdaError as exc:
            logger.warning("lambda failed: %s", exc.slot)
            return self._error(500, exc.detail, base)
        except Exception:
            # FusionAuth's generic body for unexpected exceptions (#3307).
            logger.exception("unexpected error on %s %s", request.method, path)
            body = {
                "fieldErrors": {},
                "generalErrors": [
                    {
                        "code": "[Exception]",
                        "message": "FusionAuth encountered an unexpected error."
                        " Please review the troubleshooting guide found in the"
                        " documentation for assistance and the available support"
                        " channels.",
                    }
                ],
            }
            return self._json(500, json.dumps(body), base)

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(status=405, headers={"Allow": "POST"})
        try:
            answer = self.issuer.grant(
                request.form, request.headers.get("Authorization")
            )
        except OAuthError as exc:
            return Response(
                json.dumps(exc.body), status=exc.status, content_type="application/json"
            )
        response = Response(json.dumps(answer), content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- SCIM ------------------------------------------------------------

    def _scim(self, request: Request, path: str, base: str) -> Response:
        # Authenticate before routing: every request under the SCIM prefix,
        # whatever its path or method, answers 401 for a bad token or tenant
        # header before any 404, 405 or 501 (FusionAuth answers 401 for every
        # authorization failure).
        self._authorize(request, None)
        self._check_tenant_header(request)
        if path == "/Me" or path.startswith("/Me/"):
            # FusionAuth routes /Me and /Me/{id} but implements none of their
            # methods.
            raise _ScimError(501, "The /Me endpoint is not implemented.")
        try:
            target = match(request.method, path)
        except NotFoundException as exc:
            raise _ScimError(404, f"No SCIM endpoint at [{path}].") from exc
        except MethodNotAllowedException as exc:
            raise _ScimError(405, f"Method {request.method} not allowed.") from exc

        if target.me:
            # FusionAuth routes /Me but implements none of its methods.
            raise _ScimError(501, "The /Me endpoint is not implemented.")
        operation = target.operation
        if operation in (Operation.bulk, Operation.search_with_body) or (
            operation == Operation.search and target.endpoint is None
        ):
            raise _ScimError(404, f"No SCIM endpoint at [{path}].")

        if operation in _DISCOVERY_PERMISSIONS:
            self._authorize(request, _DISCOVERY_PERMISSIONS[operation])
            return self._discovery(operation, target.resource_id, base)

        resource = _RESOURCES.get(target.endpoint or "")
        if resource is None:
            raise _ScimError(404, f"No SCIM endpoint at [{path}].")
        permission = f"{_PERMISSION_PREFIX[resource]}:{_ACTIONS[operation]}"
        self._authorize(request, permission)

        excluded = request.args.get("excludedAttributes")
        if operation == Operation.search:
            return self._list(request, resource, base, excluded)
        if operation == Operation.delete:
            self.tenant.delete(resource, target.resource_id or "")
            return self._json(204, None, base)
        if operation == Operation.query:
            text = self.tenant.get_json(resource, target.resource_id or "")
            return self._json(200, self._exclude(text, excluded), base)

        body = self._body(request)
        if operation == Operation.create:
            doc = self.tenant.create(resource, body)
            status = 201
        elif operation == Operation.replace:
            doc = self.tenant.replace(resource, target.resource_id or "", body)
            status = 200
        else:
            doc = self.tenant.patch(resource, target.resource_id or "", body)
            status = 200
        return self._json(status, self._exclude(json.dumps(doc), excluded), base)

    def _authorize(self, request: Request, permission: str | None) -> None:
        """Raise the 401 unless the token is good (and holds ``permission``)."""
        try:
            self.issuer.check(request.headers.get("Authorization"), permission)
        except TokenRejected as exc:
            logger.debug("token rejected: %s", exc)
            raise _ScimError(401, UNAUTHORIZED) from exc

    def _check_tenant_header(self, request: Request) -> None:
        value = request.headers.get("X-FusionAuth-TenantId")
        if value is None:
            return
        try:
            uuid.UUID(value)
        except ValueError as exc:
            raise _ScimError(
                400,
                "The specified value in the X-FusionAuth-TenantId HTTP header is"
                " invalid.",
            ) from exc
        if value != self.issuer.tenant_id:
            raise _ScimError(401, UNAUTHORIZED)

    def _body(self, request: Request) -> Any:
        """Read the JSON body: at most ``max_body_bytes``, strict UTF-8.

        FusionAuth's HTTP server (java-http) answers a body above its configured
        maximum with 413 Content Too Large; the sandbox does the same, with a
        SCIM error body naming the limit. Bytes that are not UTF-8 are malformed
        JSON (RFC 8259 section 8.1), and so are escaped lone surrogates: 400
        ``[invalid]``, nothing stored.
        """
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _ScimError(413, self._too_large(length, limit))
        raw = request.stream.read(limit + 1)
        if len(raw) > limit:
            raise _ScimError(413, self._too_large(None, limit))
        try:
            doc = json.loads(raw.decode("utf-8"))
            # A lone surrogate escape ("\ud800") decodes to text that no UTF-8
            # column can store: invalid too, rather than a 500 at the database.
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
            return doc
        except (ValueError, BadRequest) as exc:
            # UnicodeDecodeError and UnicodeEncodeError are ValueErrors.
            raise BadRequestError(
                "Request failed, see errors for additional details.",
                general_errors=[
                    {"code": "[invalid]", "message": "Your JSON was invalid"}
                ],
                field_errors={},
            ) from exc

    @staticmethod
    def _too_large(length: int | None, limit: int) -> str:
        size = "is larger" if length is None else f"of {length:,} bytes is larger"
        return (
            f"The request body {size} than the limit of {limit:,} bytes"
            " (SandboxConfig.max_body_bytes). Send a smaller body, or start the"
            " sandbox with a larger max_body_bytes."
        )

    @staticmethod
    def _exclude(text: str, excluded: str | None) -> str:
        """Drop the top-level attributes named in excludedAttributes.

        FusionAuth splits the parameter on commas without trimming the entries
        and ignores sub-attribute paths such as ``name.givenName``.
        """
        if not excluded:
            return text
        names = {name.lower() for name in excluded.split(",")}
        doc = json.loads(text)
        kept = {k: v for k, v in doc.items() if k.lower() not in names or k == "id"}
        return json.dumps(kept, ensure_ascii=False)

    def _list(
        self, request: Request, resource: str, base: str, excluded: str | None
    ) -> Response:
        args = request.args
        try:
            start = int(args.get("startIndex", 1))
            count = int(args.get("count", 25))
        except ValueError as exc:
            raise _ScimError(
                400, "The startIndex and count parameters must be integers."
            ) from exc
        start = max(start, 1)
        count = max(count, 0)
        if count > 500 and self.config.count_above_max == "reject":
            raise _ScimError(400, f"The count [{count}] is above the maximum of 500.")
        fetch = min(count, 500) if self.config.count_above_max == "cap" else count

        window = self.config.window
        if start + fetch - 1 > window:
            overflow = self.config.overflow
            if overflow in ("400", "500", "503"):
                raise _ScimError(
                    int(overflow),
                    f"The search results are limited to {window:,} resources, and"
                    f" startIndex [{start}] plus count [{count}] go past them. Use"
                    " a filter that matches fewer resources.",
                )
            fetch = 0 if overflow == "empty" else max(window - start + 1, 0)

        query = None
        text = args.get("filter")
        if text:
            kind = "group" if resource == "Group" else "user"
            try:
                query = Query(
                    text,
                    kind,
                    username_matches_email=self.config.username_eq_matches_email,
                )
            except FilterError as exc:
                raise _ScimError(400, exc.detail) from exc

        total, page = self.tenant.search(resource, query, start, fetch)
        if self.config.cap_total:
            total = min(total, window)
        if excluded:
            page = [self._exclude(doc, excluded) for doc in page]

        head = (
            f'{{"schemas":["{LIST_URN}"],"totalResults":{total},'
            f'"itemsPerPage":{count},"startIndex":{start}'
        )
        if page or self.config.empty_resources == "empty":
            body = head + ',"Resources":[' + ",".join(page) + "]}"
        else:
            body = head + "}"
        return self._json(200, body, base)

    def _discovery(
        self, operation: Operation, resource_id: str | None, base: str
    ) -> Response:
        if operation == Operation.service_provider_config:
            return self._json(200, self._spc, base)

        if operation in (Operation.resource_types, Operation.schemas):
            docs = (
                self._resource_types
                if operation == Operation.resource_types
                else self._schemas
            )
            per_page = 10 if operation == Operation.resource_types else len(docs)
            body = {
                "schemas": [LIST_URN],
                "totalResults": len(docs),
                "itemsPerPage": per_page,
                "startIndex": 1,
                "Resources": docs,
            }
            return self._json(200, json.dumps(body), base)

        docs = (
            self._resource_types
            if operation == Operation.resource_type
            else self._schemas
        )
        for doc in docs:
            if doc["id"] == resource_id:
                return self._json(200, json.dumps(doc), base)
        kind = "ResourceType" if operation == Operation.resource_type else "Schema"
        raise _ScimError(404, f"{kind} {resource_id} not found.")
