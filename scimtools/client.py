"""A SCIM 2.0 client on httpx: requests, typed errors, retries and discovery.

`SCIMClient` speaks RFC 7644 to any server, with the quirks of FusionAuth's SCIM
server in mind: its ServiceProviderConfig under-reports filter and PATCH support,
its list stops at a 10,000-result window, and 401 also means a missing permission.
Complete listings live in `scimtools.paging`; `SCIMClient.export` is a shortcut.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import random
import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from scimtools.auth import StaticTokenAuth, check_no_userinfo, check_transport
from scimtools.errors import (
    SCIM_ERROR_SCHEMA,
    BadRequestError,
    BadResponseError,
    InsecureTLSWarning,
    NotFoundError,
    SCIMServerError,
    server_error,
)

if TYPE_CHECKING:
    from scimtools.paging import ExportResult

__all__ = ["Capabilities", "Page", "SCIMClient"]

logger = logging.getLogger(__name__)

SCIM_JSON = "application/scim+json"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
FUSIONAUTH_WINDOW = 10_000

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Retries of an idempotent request answered 500: a passing failure is worth
#: another try, but FusionAuth also answers 500 for lasting ones (a failing
#: lambda), which more retries would only delay.
_RETRIES_AFTER_500 = 2
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass
class Page:
    """One page of a list response (RFC 7644 §3.4.2).

    Attributes
    ----------
    resources : list of dict
        ``Resources``; empty when the key was absent.
    total_results : int or None
        ``totalResults``, None if the server left it out.
    start_index, items_per_page : int or None
        As the server reported them; ``items_per_page`` often echoes ``count``.
    requested_start, requested_count : int
        What was asked for.
    resources_key_present : bool
        Whether the body had a ``Resources`` key at all.
    """

    resources: list[dict[str, Any]]
    total_results: int | None
    start_index: int | None
    items_per_page: int | None
    requested_start: int
    requested_count: int
    resources_key_present: bool = True


@dataclass
class Capabilities:
    """What the server can really do, next to what it claims.

    Attributes
    ----------
    filter : bool or None
        Probed with a real filter query (`SCIMClient.probe_filter`); None until then.
    patch : bool or None
        Configured, or learned on the first PATCH; None until known.
    window : int or None
        The highest index a list may reach (10,000 for FusionAuth); None for none.
    claimed : dict
        The server's own ServiceProviderConfig, once read; not trusted.
    """

    filter: bool | None = None
    patch: bool | None = None
    window: int | None = FUSIONAUTH_WINDOW
    claimed: dict[str, Any] = field(default_factory=dict)


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds a Retry-After header asks to wait (RFC 9110 §10.2.3).

    Examples
    --------
    >>> parse_retry_after("2", now=0.0)
    2.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=10.0)
    20.0
    >>> parse_retry_after("soon", now=0.0) is None
    True
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class SCIMClient:
    """Talk to one SCIM 2.0 service provider.

    Parameters
    ----------
    base_url : str
        The SCIM base URL, e.g. ``https://auth.example.com/api/scim/resource/v2``.
    auth : httpx.Auth, optional
        Usually a `ClientCredentialsAuth` or `StaticTokenAuth`.
    token : str, optional
        Shortcut for ``auth=StaticTokenAuth(token)``.
    verify : bool or str, default True
        TLS verification (a CA bundle path is allowed); leave it on. False
        issues an `InsecureTLSWarning`.
    allow_insecure_http : bool, default False
        Allow a bearer token over plain http to a host other than loopback.
    timeout : float, default 30
        Seconds per request.
    max_retries : int, default 5
        Retries of one idempotent request after 429, 502, 503, 504, a timeout or
        a connection error.
    backoff : float, default 0.5
        First backoff delay in seconds; doubles per retry, with full jitter.
    max_backoff : float, default 30
        Cap of one backoff delay and of an honoured Retry-After.
    retry_patch : bool, default False
        Also retry PATCH (not idempotent in general: an ``add`` could apply twice).
    window : int or None, default 10000
        The server's result window; None if it has none.
    patch_supported : bool, optional
        Known PATCH support; otherwise learned on the first PATCH.
    page_size : int, default 100
        ``count`` used by `export`.
    max_workers : int, default 8
        Concurrent page requests used by `export`.
    progress : bool, default True
        Show tqdm progress bars in `export`.
    transport : httpx.BaseTransport, optional
        For tests (`httpx.MockTransport`).
    sleep : callable, default time.sleep
        Called with seconds to wait between retries; inject a recorder in tests.
    clock : callable, default time.time
        Seconds since the epoch, for Retry-After dates.
    rng : callable, default random.random
        Returns a float in [0, 1) for jitter.

    Examples
    --------
    >>> client = SCIMClient("https://scim.example.com/v2", token="not-a-jwt")
    >>> client.url_for("Users", "42")
    'https://scim.example.com/v2/Users/42'
    >>> "not-a-jwt" in repr(client)
    False
    >>> client.close()
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        token: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        allow_insecure_http: bool = False,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        retry_patch: bool = False,
        window: int | None = FUSIONAUTH_WINDOW,
        patch_supported: bool | None = None,
        page_size: int = 100,
        max_workers: int = 8,
        progress: bool = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        headers: dict[str, str] | None = None,
    ) -> None:
        if auth is not None and token is not None:
            raise ValueError("pass auth or token, not both")
        check_no_userinfo(base_url, "base_url")
        if token is not None:
            auth = StaticTokenAuth(token, allow_insecure_http=allow_insecure_http)
        if auth is not None:
            allowed = getattr(auth, "allow_insecure_http", allow_insecure_http)
            check_transport(base_url, allow_insecure_http=allowed)
        if window is not None and window < 1:
            raise ValueError(f"window must be positive or None, not {window}")
        if verify is False:
            warnings.warn(
                f"TLS certificate verification is off for {base_url}: anyone on the"
                " path can read the bearer token; pass verify=True or the path of"
                " the server's CA bundle",
                InsecureTLSWarning,
                stacklevel=2,
            )
        if isinstance(verify, str):
            # httpx deprecates a path; the same check through an SSL context.
            where = "capath" if Path(verify).is_dir() else "cafile"
            verify = ssl.create_default_context(**{where: verify})  # type: ignore[arg-type]

        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_patch = retry_patch
        self.page_size = page_size
        self.max_workers = max_workers
        self.progress = progress
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.capabilities = Capabilities(window=window, patch=patch_supported)
        self.discovery: dict[str, Any] = {}
        self.requests_sent = 0

        self._count_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []
        self._http = httpx.Client(
            auth=auth,
            verify=verify,
            timeout=timeout,
            transport=transport,
            headers={"Accept": f"{SCIM_JSON}, application/json", **(headers or {})},
        )

    def __repr__(self) -> str:
        return f"SCIMClient({self.base_url!r}, auth={self.auth!r})"

    def __enter__(self) -> SCIMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and anything started for this client."""
        self._http.close()
        while self._on_close:
            callback = self._on_close.pop()
            callback()

    def call_on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the client closes (e.g. stop a sandbox)."""
        self._on_close.append(callback)

    def current_token(self) -> str:
        """Return the bearer token this client sends (keep it out of output).

        Raises
        ------
        ValueError
            The client has no token-based auth.
        """
        getter = getattr(self.auth, "current_token", None)
        if getter is None:
            raise ValueError("this client has no StaticTokenAuth/ClientCredentialsAuth")
        return str(getter(self._http))

    def url_for(self, endpoint: str, resource_id: str | None = None) -> str:
        """Return the URL of an endpoint (``"Users"``) or one of its resources."""
        url = f"{self.base_url}/{endpoint.strip('/')}"
        if resource_id is not None:
            if not resource_id or "/" in resource_id:
                raise ValueError(f"resource id {resource_id!r} is not a valid id")
            url += f"/{resource_id}"
        return url

    # -- requests -----------------------------------------------------------

    def request(
        self,
        method: str,
        endpoint: str,
        resource_id: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: Iterable[int] = (200,),
    ) -> httpx.Response:
        """Send one request with retries, and raise a typed error unless ``ok``.

        Idempotent methods (GET, PUT, DELETE) are retried after 429 (honouring
        Retry-After), 502, 503, 504 (and after 500, twice at most), timeouts,
        connection errors (including a connection closed before or during the
        answer) and a success whose JSON body is cut short, with capped
        exponential backoff and full jitter. POST is never retried; PATCH only
        with ``retry_patch=True``.

        Parameters
        ----------
        method : str
            HTTP method.
        endpoint : str
            Path under the base URL (``"Users"``).
        resource_id : str, optional
            Resource id appended to the path.
        params : dict, optional
            Query parameters.
        json : object, optional
            Body, sent as ``application/scim+json``.
        ok : iterable of int, default (200,)
            Statuses that count as success.

        Returns
        -------
        httpx.Response
            The successful response.

        Raises
        ------
        SCIMServerError
            A subclass per status (`UnauthorizedError`, `NotFoundError`, ...).
        httpx.TransportError
            Connection problems that outlived the retries.
        """
        method = method.upper()
        url = self.url_for(endpoint, resource_id)
        path = httpx.URL(url).path
        retry = method in _IDEMPOTENT or (method == "PATCH" and self.retry_patch)
        content = None
        headers = {}
        if json is not None:
            content = jsonlib.dumps(json).encode()
            headers["Content-Type"] = SCIM_JSON
        ok = frozenset(ok)

        attempt = 0
        after_500 = 0
        while True:
            logger.debug(
                "%s %s startIndex=%s", method, path, (params or {}).get("startIndex")
            )
            try:
                with self._count_lock:
                    self.requests_sent += 1
                response = self._http.request(
                    method, url, params=params, content=content, headers=headers
                )
            except (
                httpx.TimeoutException,
                httpx.NetworkError,
                # The server closed the connection before or during the answer.
                httpx.RemoteProtocolError,
            ) as exc:
                if not retry or attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt)
                logger.warning(
                    "%s %s failed (%s); retry %d in %.1f s",
                    method,
                    path,
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                )
                self.sleep(delay)
                attempt += 1
                continue

            if response.status_code in ok:
                if retry and attempt < self.max_retries and _cut_short(response):
                    delay = self._backoff(attempt)
                    logger.warning(
                        "%s %s answered %d with a JSON body cut short; retry %d in"
                        " %.1f s",
                        method,
                        path,
                        response.status_code,
                        attempt + 1,
                        delay,
                    )
                    self.sleep(delay)
                    attempt += 1
                    continue
                return response

            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=self.clock()
            )
            if (
                retry
                and (
                    response.status_code in _RETRY_STATUSES
                    or (response.status_code == 500 and after_500 < _RETRIES_AFTER_500)
                )
                and attempt < self.max_retries
                and (retry_after is None or retry_after <= self.max_backoff)
            ):
                delay = (
                    retry_after if retry_after is not None else self._backoff(attempt)
                )
                after_500 += response.status_code == 500
                logger.warning(
                    "%s %s answered %d; retry %d in %.1f s",
                    method,
                    path,
                    response.status_code,
                    attempt + 1,
                    delay,
                )
                self.sleep(delay)
                attempt += 1
                continue

            raise server_error(
                response.status_code,
                response.text,
                request_line=f"{method} {path}",
                retry_after=retry_after,
            )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return ceiling * (0.5 + 0.5 * self.rng())

    def _json(self, response: httpx.Response, what: str) -> Any:
        request_line = f"{response.request.method} {response.request.url.path}"
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if kind and "json" not in kind.lower():
            looks = " (an HTML page, e.g. a proxy's or a login page)" * (
                "html" in kind.lower()
            )
            raise BadResponseError(
                response.status_code,
                detail=f"{what} answered with Content-Type {kind}{looks}, not JSON",
                body_text=response.text,
                request_line=request_line,
            )
        try:
            body = response.json()
        except ValueError as exc:
            detail = f"{what} answered with a body that is not JSON"
            if not response.content:
                detail = f"{what} answered with an empty body"
            elif response.text.rstrip()[-1:] not in ("}", "]"):
                detail += " (it looks cut short)"
            raise BadResponseError(
                response.status_code,
                detail=detail,
                body_text=response.text,
                request_line=request_line,
            ) from exc
        if isinstance(body, dict) and SCIM_ERROR_SCHEMA in (body.get("schemas") or []):
            # A SCIM error with a success status: trust the body, not the status.
            status = _to_int(body.get("status")) or response.status_code
            raise server_error(
                status if status >= 400 else 500,
                response.text,
                request_line=f"{request_line} ({response.status_code} carrying)",
            )
        return body

    # -- resources ------------------------------------------------------------

    def get(
        self,
        endpoint: str,
        resource_id: str,
        *,
        excluded_attributes: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Return one resource (RFC 7644 §3.4.1).

        Raises
        ------
        NotFoundError
            No resource with that id.
        """
        params = _excluded(excluded_attributes)
        response = self.request("GET", endpoint, resource_id, params=params)
        return self._json(response, f"GET {endpoint}/{resource_id}")

    def list_page(
        self,
        endpoint: str,
        *,
        start_index: int = 1,
        count: int = 100,
        filter: str | None = None,
        excluded_attributes: Iterable[str] | None = None,
    ) -> Page:
        """Return one page of a listing; always sends startIndex and count.

        Parameters
        ----------
        endpoint : str
            ``"Users"``, ``"EnterpriseUsers"``, ``"Groups"``...
        start_index : int, default 1
            1-based index of the first resource (RFC 7644 §3.4.2.4).
        count : int, default 100
            Page size asked for.
        filter : str, optional
            An RFC 7644 §3.4.2.2 filter; use lower-case operators.
        excluded_attributes : iterable of str, optional
            Top-level attributes to leave out.

        Returns
        -------
        Page

        Raises
        ------
        ValueError
            ``start_index`` or ``count`` below 1, or past the client's window.
        """
        if start_index < 1 or count < 1:
            raise ValueError("start_index and count must be at least 1")
        window = self.capabilities.window
        if window is not None and start_index + count - 1 > window:
            raise ValueError(
                f"startIndex {start_index} with count {count} reaches past the"
                f" {window:,}-result window; use scimtools.export_resources, which"
                " partitions the listing with filters"
            )
        params: dict[str, Any] = {"startIndex": start_index, "count": count}
        if filter is not None:
            params["filter"] = filter
        params.update(_excluded(excluded_attributes) or {})

        response = self.request("GET", endpoint, params=params)
        body = self._json(response, f"GET {endpoint}")
        request_line = f"GET {response.request.url.path}"
        if not isinstance(body, dict):
            raise BadResponseError(
                response.status_code,
                detail=f"GET {endpoint} answered with JSON that is not a list response",
                body_text=response.text,
                request_line=request_line,
            )
        resources = body.get("Resources")
        problem = None
        if resources is not None and not isinstance(resources, list):
            problem = f"Resources is a JSON {type(resources).__name__}, not a list"
        else:
            for n, resource in enumerate(resources or [], start=start_index):
                if not isinstance(resource, dict):
                    problem = f"resource {n} is a JSON {type(resource).__name__}"
                elif not isinstance(resource.get("id"), str) or not resource["id"]:
                    name = resource.get("userName") or resource.get("displayName")
                    problem = f"resource {n} ({name!r}) has no id"
                else:
                    continue
                break
        if problem:
            raise BadResponseError(
                response.status_code,
                detail=f"GET {endpoint} answered a list response whose {problem}"
                " (RFC 7644 §3.4.2: a list of resources, each with an id)",
                body_text=response.text,
                request_line=request_line,
            )
        return Page(
            resources=list(resources or []),
            total_results=_to_int(body.get("totalResults")),
            start_index=_to_int(body.get("startIndex")),
            items_per_page=_to_int(body.get("itemsPerPage")),
            requested_start=start_index,
            requested_count=count,
            resources_key_present="Resources" in body,
        )

    def create(self, endpoint: str, resource: dict[str, Any]) -> dict[str, Any]:
        """Create a resource with POST and return the server's version.

        Accepts 201 and FusionAuth's pre-1.36.8 200. Never retried.

        Raises
        ------
        ConflictError
            A resource with the same userName (or email) exists.
        """
        response = self.request("POST", endpoint, json=resource, ok=(200, 201))
        return self._json(response, f"POST {endpoint}")

    def replace(
        self, endpoint: str, resource_id: str, resource: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace a resource with PUT (RFC 7644 §3.5.1); a full overwrite."""
        response = self.request("PUT", endpoint, resource_id, json=resource)
        return self._json(response, f"PUT {endpoint}/{resource_id}")

    def patch(
        self,
        endpoint: str,
        resource_id: str,
        operations: list[dict[str, Any]],
        *,
        reread: bool = True,
    ) -> dict[str, Any] | None:
        """Modify a resource with PATCH (RFC 7644 §3.5.2).

        A server may answer 204 without a body (the stock scim2-server does);
        then the resource is read again unless ``reread`` is false.

        Parameters
        ----------
        endpoint, resource_id : str
            Which resource.
        operations : list of dict
            ``{"op": "replace", "path": "active", "value": False}`` items.
        reread : bool, default True
            GET the resource after a 204.

        Returns
        -------
        dict or None
            The resource after the change; None after a 204 with ``reread=False``.

        Raises
        ------
        BadRequestError
            The server refused the operations (FusionAuth: ``[invalid]patch``).
        """
        if not operations:
            raise ValueError("operations must hold at least one PATCH operation")
        body = {"schemas": [PATCH_OP], "Operations": operations}
        try:
            response = self.request(
                "PATCH", endpoint, resource_id, json=body, ok=(200, 204)
            )
        except SCIMServerError as exc:
            if exc.status in (405, 501):
                self.capabilities.patch = False
            raise
        self.capabilities.patch = True

        if response.status_code == 204 or not response.content:
            return self.get(endpoint, resource_id) if reread else None
        return self._json(response, f"PATCH {endpoint}/{resource_id}")

    def delete(self, endpoint: str, resource_id: str) -> None:
        """Delete a resource (FusionAuth: a hard delete, 204)."""
        self.request("DELETE", endpoint, resource_id, ok=(200, 204))

    # -- discovery ------------------------------------------------------------

    def service_provider_config(self) -> dict[str, Any]:
        """Return and record the server's ServiceProviderConfig (RFC 7643 §5).

        The claims are kept in ``capabilities.claimed`` but not trusted:
        FusionAuth reports ``filter`` and ``patch`` unsupported although both
        work. Use `probe_filter` and the first PATCH instead.
        """
        response = self.request("GET", "ServiceProviderConfig")
        body = self._json(response, "GET ServiceProviderConfig")
        self.discovery["ServiceProviderConfig"] = body
        self.capabilities.claimed = body if isinstance(body, dict) else {}
        return body

    def resource_types(self) -> list[dict[str, Any]]:
        """Return and record the ResourceTypes (RFC 7644 §4).

        FusionAuth lists only User and Group, though /EnterpriseUsers exists.
        """
        resources = self._discovery_list("ResourceTypes")
        self.discovery["ResourceTypes"] = resources
        return resources

    def schemas(self) -> list[dict[str, Any]]:
        """Return and record the Schemas (RFC 7644 §4); do not validate with them."""
        resources = self._discovery_list("Schemas")
        self.discovery["Schemas"] = resources
        return resources

    def _discovery_list(self, endpoint: str) -> list[dict[str, Any]]:
        response = self.request("GET", endpoint)
        body = self._json(response, f"GET {endpoint}")
        if isinstance(body, list):
            return body
        return list(body.get("Resources") or []) if isinstance(body, dict) else []

    def probe_filter(self, endpoint: str = "Users") -> bool:
        """Check with a real query whether the server applies filters.

        Lists ``endpoint`` with a filter that matches nothing (a random userName
        or displayName). A server that filters returns 0; one that ignores the
        filter returns everything; one that refuses filters answers 400.

        Returns
        -------
        bool
            Recorded in ``capabilities.filter``.
        """
        attribute = "displayName" if endpoint.strip("/") == "Groups" else "userName"
        needle = f"scimtools-probe-{uuid.uuid4().hex}"
        try:
            page = self.list_page(
                endpoint, count=1, filter=f'{attribute} eq "{needle}"'
            )
        except (BadRequestError, NotFoundError):
            self.capabilities.filter = False
            return False
        works = page.total_results == 0 or (
            page.total_results is None and not page.resources
        )
        self.capabilities.filter = works
        if not works:
            logger.warning(
                "the server ignored a filter on %s (%s results for a random value)",
                endpoint,
                page.total_results,
            )
        return works

    # -- listings ---------------------------------------------------------------

    def export(self, endpoint: str, **options: Any) -> ExportResult:
        """Return every resource of ``endpoint``; see `scimtools.export_resources`."""
        from scimtools.paging import export_resources

        return export_resources(self, endpoint, **options)


def _cut_short(response: httpx.Response) -> bool:
    """Return whether a body that claims to be JSON does not parse.

    Examples
    --------
    >>> headers = {"Content-Type": "application/scim+json"}
    >>> _cut_short(httpx.Response(200, headers=headers, content=b'{"id": "4'))
    True
    >>> _cut_short(httpx.Response(200, headers=headers, content=b'{"id": "42"}'))
    False
    >>> _cut_short(httpx.Response(204))
    False
    """
    kind = response.headers.get("Content-Type", "").lower()
    if not response.content or (kind and "json" not in kind):
        return False
    try:
        jsonlib.loads(response.content)
    except ValueError:
        return True
    return False


def _excluded(attributes: Iterable[str] | None) -> dict[str, str] | None:
    if not attributes:
        return None
    return {"excludedAttributes": ",".join(a.strip() for a in attributes)}
