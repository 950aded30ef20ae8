"""Bearer tokens for FusionAuth's SCIM server: the client-credentials grant, static
tokens, and what a token is allowed to do.

FusionAuth issues SCIM tokens with the OAuth client-credentials grant: the SCIM
client entity's id and secret in HTTP Basic, and the scope
``target-entity:<SCIM server entity id>`` (every granted permission) or
``target-entity:<id>:<perm>,<perm>`` (exactly those). There is no refresh token;
the grant is repeated. Tokens carry a ``permissions`` claim, so what a token may do
can be checked before any request is made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import ipaddress
import json
import logging
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any

import httpx
import jwt
import pandas as pd

from scimtools.errors import (
    InsecureTransportError,
    MissingPermissionError,
    TokenError,
    TokenExpiredError,
    TokenExpiresSoonWarning,
)

__all__ = [
    "ClientCredentialsAuth",
    "OPERATIONS",
    "PERMISSIONS",
    "StaticTokenAuth",
    "check_no_userinfo",
    "check_transport",
    "describe_token",
    "missing_permissions",
    "require_permissions",
]

logger = logging.getLogger(__name__)

#: The 15 SCIM permissions a FusionAuth SCIM server entity can grant.
PERMISSIONS: tuple[str, ...] = tuple(
    f"scim:{kind}:{verb}"
    for kind in ("user", "enterprise:user", "group")
    for verb in ("create", "read", "update", "delete")
) + (
    "scim:resource-types:read",
    "scim:schemas:read",
    "scim:service-provider-config:read",
)

_VERBS = {
    "create": "create",
    "read": "read",
    "list": "read",
    "export": "read",
    "replace": "update",
    "update": "update",
    "patch": "update",
    "delete": "delete",
}
_KINDS = {"users": "user", "enterprise users": "enterprise:user", "groups": "group"}
_DISCOVERY = (
    "scim:resource-types:read",
    "scim:schemas:read",
    "scim:service-provider-config:read",
)

#: The permissions each planned operation needs, e.g. ``"patch users"``.
OPERATIONS: dict[str, tuple[str, ...]] = {
    f"{verb} {kind}": (f"scim:{perm_kind}:{perm_verb}",)
    for verb, perm_verb in _VERBS.items()
    for kind, perm_kind in _KINDS.items()
}
OPERATIONS["read discovery"] = _DISCOVERY
OPERATIONS["export tenant"] = (
    "scim:user:read",
    "scim:enterprise:user:read",
    "scim:group:read",
)

Clock = Callable[[], float]


def check_transport(url: httpx.URL | str, *, allow_insecure_http: bool) -> None:
    """Refuse to send credentials over plain http, except to a loopback address.

    Parameters
    ----------
    url : httpx.URL or str
        Where the credentials would go.
    allow_insecure_http : bool
        Let plain http through anyway (a lab network you trust).

    Raises
    ------
    InsecureTransportError
        ``url`` is http, not loopback, and ``allow_insecure_http`` is false.

    Examples
    --------
    >>> check_transport("http://127.0.0.1:9011/oauth2/token", allow_insecure_http=False)
    >>> check_transport("http://auth.example.com/x", allow_insecure_http=False)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.errors.InsecureTransportError: refusing to send a bearer token or ...
    """
    url = httpx.URL(url)
    if url.scheme != "http" or allow_insecure_http or _is_loopback(url.host):
        return
    raise InsecureTransportError(
        f"refusing to send a bearer token or client secret over plain http to"
        f" {url.host}; use https, or pass allow_insecure_http=True if this network"
        " is trusted"
    )


def check_no_userinfo(url: httpx.URL | str, name: str = "the URL") -> None:
    """Refuse a URL with a user name or password in it (``https://user:pw@host``).

    Such a URL would carry the secret into reprs, logs and error messages; the
    message names the setting, never the URL.

    Raises
    ------
    scimtools.errors.ConfigError
        ``url`` has a user-information part, a query or fragment, or is not an
        http(s) URL with a host.

    Examples
    --------
    >>> check_no_userinfo("https://auth.example.com", "FUSIONAUTH_URL")
    >>> check_no_userinfo("https://me:s3cret@auth.example.com", "FUSIONAUTH_URL")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.errors.ConfigError: FUSIONAUTH_URL holds a user name or password ...
    """
    from scimtools.errors import ConfigError

    text = str(url)
    shape = "https://host[:port][/path]"
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        raise ConfigError(f"{name} is not a valid URL; give {shape}") from None
    if parsed.userinfo or "@" in text.split("?", 1)[0].split("#", 1)[0]:
        raise ConfigError(
            f"{name} holds a user name or password before the host; remove it"
            f" ({shape}) and give the secret as SCIM_CLIENT_SECRET or"
            " SCIM_TOKEN, which are never shown"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host or "\\" in text:
        raise ConfigError(
            f"{name} is not an http(s) URL with a host; give {shape} (the value"
            " is not shown, in case it holds a secret)"
        )
    if parsed.query or parsed.fragment:
        raise ConfigError(
            f"{name} carries a query or fragment (?... or #...); remove it and"
            " give a token as SCIM_TOKEN, which is never shown"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ClientCredentialsAuth(httpx.Auth):
    """Authenticate with tokens from FusionAuth's client-credentials grant.

    Caches the token and fetches a new one ``renew_margin`` seconds before it
    expires; when the SCIM server answers 401 it fetches a new token once and
    retries the request. The token request goes through the same httpx client as
    the SCIM request, in sync and async clients alike.

    Parameters
    ----------
    token_url : str
        ``{FUSIONAUTH_URL}/oauth2/token``.
    client_id, client_secret : str
        The SCIM client entity's credentials, sent in HTTP Basic.
    server_entity_id : str
        The SCIM server entity id named in the scope.
    permissions : iterable of str, optional
        Request exactly these permissions. The default, the bare
        ``target-entity:<id>`` scope, returns every granted permission, so a client
        lacking one of them still gets a token.
    renew_margin : float, default 60
        Seconds before expiry at which the token is renewed.
    allow_insecure_http : bool, default False
        Allow plain http to hosts other than loopback.
    clock : callable, optional
        Returns the time in seconds since the epoch; for tests.

    Examples
    --------
    >>> auth = ClientCredentialsAuth(
    ...     "https://auth.example.com/oauth2/token", "client-1", "s3cret", "srv-1"
    ... )
    >>> auth.scope
    'target-entity:srv-1'
    >>> "s3cret" in repr(auth)
    False
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        server_entity_id: str,
        *,
        permissions: Iterable[str] | None = None,
        renew_margin: float = 60.0,
        allow_insecure_http: bool = False,
        clock: Clock = time.time,
    ) -> None:
        if not client_id or not client_secret or not server_entity_id:
            raise ValueError(
                "client_id, client_secret and server_entity_id must all be non-empty"
            )
        check_no_userinfo(token_url, "token_url")
        check_transport(token_url, allow_insecure_http=allow_insecure_http)
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.server_entity_id = server_entity_id
        self.permissions = tuple(permissions) if permissions is not None else None
        self.renew_margin = renew_margin
        self.allow_insecure_http = allow_insecure_http
        self.clock = clock
        self.tokens_fetched = 0

        self._token: str | None = None
        self._expires_at: float | None = None
        self._lock = threading.Lock()
        self._async_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsAuth(token_url={self.token_url!r},"
            f" client_id={self.client_id!r}, scope={self.scope!r})"
        )

    @property
    def scope(self) -> str:
        """Return the scope sent with the grant."""
        scope = f"target-entity:{self.server_entity_id}"
        if self.permissions:
            scope += ":" + ",".join(self.permissions)
        return scope

    @property
    def expires_at(self) -> dt.datetime | None:
        """Return when the cached token expires, or None without a token."""
        if self._expires_at is None:
            return None
        return dt.datetime.fromtimestamp(self._expires_at, dt.UTC)

    def current_token(self, client: httpx.Client | None = None) -> str:
        """Return a valid token, running the grant first if needed.

        Parameters
        ----------
        client : httpx.Client, optional
            Client for the token request; a temporary one (TLS verified) if None.

        Returns
        -------
        str
            The access token. Keep it out of logs and output.
        """
        with self._lock:
            if self._is_stale():
                request = self._token_request()
                if client is None:
                    with httpx.Client() as temporary:
                        response = temporary.send(request, auth=None)
                else:
                    response = client.send(request, auth=None)
                self._accept(response)
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token, so that the next request runs the grant."""
        with self._lock:
            self._token = None
            self._expires_at = None

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Authenticate ``request``, renewing the token when stale or refused."""
        check_transport(request.url, allow_insecure_http=self.allow_insecure_http)
        with self._lock:
            if self._is_stale():
                response = yield self._token_request()
                response.read()
                self._accept(response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return

        with self._lock:
            if self._token == token:
                logger.debug("401 from %s; renewing the token once", request.url.path)
                response = yield self._token_request()
                response.read()
                self._accept(response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authenticate ``request`` in an async client, like `sync_auth_flow`."""
        check_transport(request.url, allow_insecure_http=self.allow_insecure_http)
        async with self._async_lock:
            if self._is_stale():
                response = yield self._token_request()
                await response.aread()
                self._accept(response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return

        async with self._async_lock:
            if self._token == token:
                logger.debug("401 from %s; renewing the token once", request.url.path)
                response = yield self._token_request()
                await response.aread()
                self._accept(response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _is_stale(self) -> bool:
        if self._token is None:
            return True
        if self._expires_at is None:
            return False
        return self.clock() >= self._expires_at - self.renew_margin

    def _token_request(self) -> httpx.Request:
        check_transport(self.token_url, allow_insecure_http=self.allow_insecure_http)
        pair = f"{self.client_id}:{self._client_secret}".encode()
        basic = base64.b64encode(pair).decode("ascii")
        return httpx.Request(
            "POST",
            self.token_url,
            data={"grant_type": "client_credentials", "scope": self.scope},
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )

    def _accept(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        token = body.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            reason = body.get("error_description") or body.get("error") or "no reason"
            raise TokenError(
                f"{self.token_url} answered {response.status_code} without an"
                f" access_token ({reason}); check SCIM_CLIENT_ID, SCIM_CLIENT_SECRET"
                " and that SCIM_SERVER_ENTITY_ID names the SCIM server entity"
                " this client is granted permissions on"
            )

        now = self.clock()
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float):
            self._expires_at = now + float(expires_in)
        else:
            exp = _claims(token).get("exp")
            self._expires_at = float(exp) if isinstance(exp, int | float) else None
        self._token = token
        self.tokens_fetched += 1
        logger.debug("Fetched SCIM token %d", self.tokens_fetched)


class StaticTokenAuth(httpx.Auth):
    """Authenticate with a bearer token obtained elsewhere (pasted, long-lived).

    If the token is a JWT its ``exp`` claim is read, without verifying the
    signature: requests are refused once it has expired, and a
    `TokenExpiresSoonWarning` is issued (once) when it expires within
    ``warn_within`` seconds. Opaque tokens are sent as they are.

    Parameters
    ----------
    token : str
        The bearer token.
    warn_within : float, default 7 days
        Warn when the token expires within this many seconds.
    allow_insecure_http : bool, default False
        Allow plain http to hosts other than loopback.
    clock : callable, optional
        Returns the time in seconds since the epoch; for tests.

    Raises
    ------
    TokenExpiredError
        When a request is attempted after ``exp`` (nothing is sent).

    Examples
    --------
    >>> auth = StaticTokenAuth("opaque-token")
    >>> auth.expires_at is None, "opaque" in repr(auth)
    (True, False)
    """

    def __init__(
        self,
        token: str,
        *,
        warn_within: float = 7 * 86400.0,
        allow_insecure_http: bool = False,
        clock: Clock = time.time,
    ) -> None:
        if not token or not token.strip():
            raise ValueError("token must be a non-empty string")
        self._token = token.strip()
        self.warn_within = warn_within
        self.allow_insecure_http = allow_insecure_http
        self.clock = clock
        self._warned = False

        exp = _claims(self._token).get("exp")
        self._exp = float(exp) if isinstance(exp, int | float) else None

    def __repr__(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        return f"StaticTokenAuth(expires_at={expires!r})"

    @property
    def expires_at(self) -> dt.datetime | None:
        """Return the token's ``exp`` as an aware datetime, or None if unknown."""
        if self._exp is None:
            return None
        return dt.datetime.fromtimestamp(self._exp, dt.UTC)

    def current_token(self, client: httpx.Client | None = None) -> str:
        """Return the token after checking its expiry (``client`` is ignored)."""
        self.check_expiry()
        return self._token

    def check_expiry(self) -> None:
        """Raise if the token has expired; warn once if it expires soon.

        Raises
        ------
        TokenExpiredError
            The token's ``exp`` is in the past.
        """
        if self._exp is None:
            return
        left = self._exp - self.clock()
        if left <= 0:
            raise TokenExpiredError(
                f"the static SCIM token expired at {self.expires_at:%Y-%m-%d %H:%M}"
                f" UTC ({_ago(-left)} ago); run the client-credentials grant again"
                " and set the new token in SCIM_TOKEN, or configure FUSIONAUTH_URL,"
                " SCIM_CLIENT_ID, SCIM_CLIENT_SECRET and SCIM_SERVER_ENTITY_ID so"
                " that tokens renew themselves"
            )
        if left <= self.warn_within and not self._warned:
            self._warned = True
            warnings.warn(
                f"the static SCIM token expires in {_ago(left)}"
                f" ({self.expires_at:%Y-%m-%d %H:%M} UTC); renew it before then",
                TokenExpiresSoonWarning,
                stacklevel=4,
            )

    def auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the Authorization header after checking expiry and transport."""
        check_transport(request.url, allow_insecure_http=self.allow_insecure_http)
        self.check_expiry()
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _ago(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 7200:
        return f"{seconds / 3600:.0f} hours"
    return f"{abs(seconds) / 60:.0f} minutes"


def _claims(token: str) -> dict[str, Any]:
    """Decode a JWT's payload without verification; {} for an opaque token."""
    try:
        claims = jwt.decode(
            token,
            options={
                "verify_signature": False,
                "verify_exp": False,
                "verify_aud": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError:
        # A damaged signature (a truncated paste) must not hide an expired exp:
        # read the payload segment on its own.
        claims = _payload_segment(token)
    return claims if isinstance(claims, dict) else {}


def _payload_segment(token: str) -> Any:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return {}


def _header(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.get_unverified_header(token))
    except jwt.PyJWTError:
        return {}


TokenSource = Any  # str, StaticTokenAuth, ClientCredentialsAuth or SCIMClient


def _resolve_token(source: TokenSource) -> str:
    if isinstance(source, str):
        return source
    # An expired static token can still be described: read it without the check.
    auth = source if isinstance(source, StaticTokenAuth) else getattr(source, "auth", 0)
    if isinstance(auth, StaticTokenAuth):
        return auth._token
    for name in ("current_token",):
        method = getattr(source, name, None)
        if callable(method):
            return str(method())
    raise ValueError(
        "pass a token string, a StaticTokenAuth, a ClientCredentialsAuth or a"
        f" SCIMClient, not {type(source).__name__}"
    )


def _granted(claims: dict[str, Any]) -> set[str]:
    permissions = claims.get("permissions")
    if not isinstance(permissions, dict):
        return set()
    aud = claims.get("aud")
    targets = [aud] if isinstance(aud, str) else list(aud or [])
    chosen = [t for t in targets if t in permissions] or list(permissions)
    granted: set[str] = set()
    for target in chosen:
        granted.update(p for p in permissions.get(target) or [] if isinstance(p, str))
    return granted


def describe_token(source: TokenSource) -> pd.DataFrame:
    """Return a token's claims and permissions as a table, without the token.

    The payload is decoded without verifying the signature (the server does that).
    Header fields FusionAuth used to put there (``gty``, ``use``) are included.

    Parameters
    ----------
    source : str, StaticTokenAuth, ClientCredentialsAuth or SCIMClient
        The token, or something that holds or fetches one.

    Returns
    -------
    pandas.DataFrame
        Columns ``section`` ("header", "claim" or "permission"), ``name`` and
        ``value``. Times (``exp``, ``iat``, ``nbf``) are ISO 8601 UTC strings; a
        permission row's value is the target entity id.

    Raises
    ------
    TokenError
        The token is not a JWT, so there is nothing to describe.

    Examples
    --------
    >>> import jwt
    >>> token = jwt.encode(
    ...     {"aud": "srv", "exp": 0, "permissions": {"srv": ["scim:user:read"]}},
    ...     "k" * 32,
    ... )
    >>> describe_token(token)[["section", "name"]].to_records(index=False).tolist()
    [('header', 'alg'), ('header', 'typ'), ('claim', 'aud'), ('claim', 'exp'), \
('permission', 'scim:user:read')]
    """
    token = _resolve_token(source)
    claims = _claims(token)
    if not claims:
        raise TokenError(
            "the token is not a JWT, so its claims cannot be read; FusionAuth SCIM"
            " tokens are JWTs, so check that this is the access_token of the grant"
        )

    rows: list[dict[str, Any]] = []
    for name, value in _header(token).items():
        rows.append({"section": "header", "name": name, "value": _show(name, value)})
    for name, value in claims.items():
        if name != "permissions":
            rows.append({"section": "claim", "name": name, "value": _show(name, value)})
    permissions = claims.get("permissions")
    if isinstance(permissions, dict):
        for target, granted in permissions.items():
            for permission in sorted(granted or []):
                rows.append(
                    {"section": "permission", "name": permission, "value": target}
                )

    return pd.DataFrame(rows, columns=["section", "name", "value"], dtype=object)


def _show(name: str, value: Any) -> Any:
    if name in {"exp", "iat", "nbf"} and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
    if isinstance(value, list | dict):
        return repr(value)
    return value


def missing_permissions(
    source: TokenSource, operations: Iterable[str]
) -> dict[str, list[str]]:
    """Name the permissions each planned operation needs and the token lacks.

    FusionAuth answers 401 (not 403) when a token lacks an endpoint's permission,
    so checking first gives a clearer answer than the server.

    Parameters
    ----------
    source : str, StaticTokenAuth, ClientCredentialsAuth or SCIMClient
        The token, or something that holds or fetches one.
    operations : iterable of str
        Keys of `OPERATIONS`, e.g. ``"export users"``, ``"read discovery"``,
        ``"patch users"``, ``"export tenant"``.

    Returns
    -------
    dict of str to list of str
        Only the operations that lack something; empty when all is granted.

    Raises
    ------
    ValueError
        An operation is unknown.
    TokenError
        The token is not a JWT.

    Examples
    --------
    >>> import jwt
    >>> token = jwt.encode(
    ...     {"aud": "srv", "permissions": {"srv": ["scim:user:read"]}}, "k" * 32
    ... )
    >>> missing_permissions(token, ["export users", "patch users"])
    {'patch users': ['scim:user:update']}
    """
    operations = list(operations)
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ValueError(
            f"unknown operation(s) {unknown}; use one of {sorted(OPERATIONS)}"
        )

    token = _resolve_token(source)
    claims = _claims(token)
    if not claims:
        raise TokenError(
            "the token is not a JWT, so its permissions cannot be checked;"
            " skip the check or use the access_token from the grant"
        )
    granted = _granted(claims)

    missing: dict[str, list[str]] = {}
    for op in operations:
        lacking = [p for p in OPERATIONS[op] if p not in granted]
        if lacking:
            missing[op] = lacking
    return missing


def require_permissions(source: TokenSource, operations: Iterable[str]) -> None:
    """Raise unless the token holds every permission the operations need.

    Parameters
    ----------
    source : str, StaticTokenAuth, ClientCredentialsAuth or SCIMClient
        The token, or something that holds or fetches one.
    operations : iterable of str
        Keys of `OPERATIONS`.

    Raises
    ------
    MissingPermissionError
        Naming each operation and the permissions it lacks.

    Examples
    --------
    >>> import jwt
    >>> token = jwt.encode({"permissions": {"srv": []}}, "k" * 32)
    >>> require_permissions(token, ["read discovery"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.errors.MissingPermissionError: the token lacks read discovery: ...
    """
    missing = missing_permissions(source, operations)
    if not missing:
        return
    parts = "; ".join(f"{op}: {', '.join(perms)}" for op, perms in missing.items())
    raise MissingPermissionError(
        f"the token lacks {parts}; grant these permissions to the SCIM client entity"
        " on the SCIM server entity in FusionAuth (Entity Management), then fetch"
        " a new token",
        missing,
    )
