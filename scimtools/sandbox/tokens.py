"""Entities, the client credentials grant and token checks, as FusionAuth does them.

A SCIM client entity asks ``POST /oauth2/token`` for a JWT with
``scope=target-entity:<server entity id>:<perm>,<perm>``; the SCIM server
checks the token's signature, expiry, audience, ``use``, tenant and the
permission the endpoint needs. Every failure of the check is the same 401.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

__all__ = [
    "PERMISSIONS",
    "OAuthError",
    "SandboxClient",
    "TokenIssuer",
    "TokenRejected",
]

PERMISSIONS = (
    "scim:user:create",
    "scim:user:read",
    "scim:user:update",
    "scim:user:delete",
    "scim:enterprise:user:create",
    "scim:enterprise:user:read",
    "scim:enterprise:user:update",
    "scim:enterprise:user:delete",
    "scim:group:create",
    "scim:group:read",
    "scim:group:update",
    "scim:group:delete",
    "scim:resource-types:read",
    "scim:schemas:read",
    "scim:service-provider-config:read",
)
"""The 15 SCIM server permission names FusionAuth knows."""


@dataclass(frozen=True)
class SandboxClient:
    """A SCIM client entity: its name, client id, secret and granted permissions.

    The secret never shows in the repr.

    Examples
    --------
    >>> SandboxClient("okta", "c0ffee", "s3cret", ("scim:user:read",))
    SandboxClient(name='okta', client_id='c0ffee', permissions=('scim:user:read',))
    """

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    permissions: tuple[str, ...] = ()


class OAuthError(Exception):
    """The token endpoint refuses the grant; ``body`` is the OAuth error JSON."""

    def __init__(self, status: int, error: str, description: str, reason: str):
        super().__init__(description)
        self.status = status
        self.body = {
            "error": error,
            "error_description": description,
            "error_reason": reason,
        }


class TokenRejected(Exception):
    """The bearer token does not allow the request (always answered with 401)."""


class TokenIssuer:
    """Mint and check the access tokens of one tenant's SCIM server entity.

    Parameters
    ----------
    tenant_id, issuer
        The tenant's id and ``tenant.issuer``.
    key
        The HMAC key signing HS256 tokens.
    key_id
        The ``kid`` header.
    server_entity_id
        The SCIM server entity, the token's audience.
    clients
        The SCIM client entities, by name.
    ttl
        Token lifetime in seconds.
    clock
        Returns the current aware UTC datetime.
    aud_as_array
        Mint ``aud`` as ``[server id]`` (current FusionAuth) or as a string.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        issuer: str,
        key: bytes,
        key_id: str,
        server_entity_id: str,
        clients: Mapping[str, SandboxClient],
        ttl: int,
        clock: Callable[[], dt.datetime],
        aud_as_array: bool = True,
    ) -> None:
        self.tenant_id = tenant_id
        self.issuer = issuer
        self._key = key
        self.key_id = key_id
        self.server_entity_id = server_entity_id
        self.clients = dict(clients)
        self._by_id = {c.client_id: c for c in self.clients.values()}
        self.ttl = ttl
        self.clock = clock
        self.aud_as_array = aud_as_array
        self._checked: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"TokenIssuer(issuer={self.issuer!r}, clients={sorted(self.clients)})"

    def mint(
        self,
        client: SandboxClient,
        permissions: list[str] | tuple[str, ...] | None = None,
        *,
        ttl: int | None = None,
        scope: str | None = None,
    ) -> str:
        """Sign a token for ``client`` with ``permissions`` (None: all granted)."""
        granted = sorted(client.permissions if permissions is None else permissions)
        now = int(self.clock().timestamp())
        server = self.server_entity_id
        claims = {
            "aud": [server] if self.aud_as_array else server,
            "exp": now + (self.ttl if ttl is None else ttl),
            "iat": now,
            "iss": self.issuer,
            "sub": client.client_id,
            "jti": str(uuid.uuid4()),
            "scope": scope or f"target-entity:{server}:{','.join(granted)}",
            "tid": self.tenant_id,
            "permissions": {server: granted},
            "use": "scim_server",
            "gty": ["client_credentials"],
        }
        return jwt.encode(
            claims, self._key, algorithm="HS256", headers={"kid": self.key_id}
        )

    def _authenticate(
        self, form: Mapping[str, str], authorization: str | None
    ) -> SandboxClient:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
                client_id, _, secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = secret = None

        client = self._by_id.get(client_id or "")
        if client is None or not hmac.compare_digest(
            (secret or "").encode(), client.client_secret.encode()
        ):
            raise OAuthError(
                401,
                "invalid_client",
                "Invalid client authentication credentials.",
                "invalid_client_authentication",
            )
        return client

    def _scope_permissions(self, client: SandboxClient, scope: str) -> list[str]:
        if not scope.strip():
            raise OAuthError(
                400,
                "invalid_scope",
                "The [scope] parameter is required for the client_credentials"
                " grant and must contain a target-entity scope.",
                "invalid_entity_permission_scope",
            )
        targets = scope.split()
        if len(targets) != 1 or not targets[0].startswith("target-entity:"):
            raise OAuthError(
                400,
                "invalid_scope",
                f"Invalid target-entity scope [{scope}]. The SCIM server accepts"
                " one target-entity scope.",
                "invalid_target_entity_scope",
            )

        rest = targets[0][len("target-entity:") :]
        target, _, perms = rest.partition(":")
        if target != self.server_entity_id:
            raise OAuthError(
                400,
                "invalid_scope",
                f"Invalid target-entity scope. The entity id [{target}] is invalid.",
                "invalid_target_entity_scope",
            )
        if not perms:
            return sorted(client.permissions)

        requested = [p for p in perms.split(",") if p]
        invalid = [
            p for p in requested if p not in PERMISSIONS or p not in client.permissions
        ]
        if invalid or not requested:
            raise OAuthError(
                400,
                "invalid_scope",
                "Invalid target-entity scope. The permission names"
                f" [{','.join(invalid) or perms}] are invalid.",
                "invalid_entity_permission_scope",
            )
        return sorted(set(requested))

    def grant(
        self, form: Mapping[str, str], authorization: str | None
    ) -> dict[str, Any]:
        """Answer a client credentials grant with FusionAuth's response JSON.

        Raises
        ------
        OAuthError
            For a wrong grant type, client credentials or scope.
        """
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"The grant_type [{form.get('grant_type')}] is not supported.",
                "invalid_grant_type",
            )
        client = self._authenticate(form, authorization)
        scope = form.get("scope", "")
        permissions = self._scope_permissions(client, scope)

        token = self.mint(client, permissions, scope=scope)
        return {
            "access_token": token,
            "expires_in": self.ttl,
            "scope": scope,
            "token_type": "Bearer",
        }

    def check(self, authorization: str | None, permission: str | None) -> str:
        """Return the client id of a valid bearer token holding ``permission``.

        Raises
        ------
        TokenRejected
            For a missing, malformed, expired, foreign or under-privileged token.
        """
        if not authorization or not authorization.lower().startswith("bearer "):
            raise TokenRejected("no bearer token")
        token = authorization[7:].strip()
        claims = self._checked.get(token)
        if claims is None:
            claims = self._verify(token)
        if claims["exp"] <= int(self.clock().timestamp()):
            raise TokenRejected("expired")

        granted = (claims.get("permissions") or {}).get(self.server_entity_id) or []
        if permission is not None and permission not in granted:
            raise TokenRejected(f"missing permission {permission}")
        return str(claims["sub"])

    def _verify(self, token: str) -> dict[str, Any]:
        """Check signature and claims once; remember the claims of a good token."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                # Time is checked below against the sandbox's clock.
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub"],
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(type(exc).__name__) from exc

        now = int(self.clock().timestamp())
        header = jwt.get_unverified_header(token)
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        use = claims.get("use", header.get("use"))
        checks = (
            claims["exp"] > now,
            len(audiences) == 1 and audiences[0] == self.server_entity_id,
            use == "scim_server",
            claims.get("tid") == self.tenant_id,
            claims.get("iss") == self.issuer,
            claims["sub"] in self._by_id,
        )
        if not all(checks):
            raise TokenRejected("claims do not match the tenant")

        if len(self._checked) > 1000:
            self._checked.clear()
        self._checked[token] = claims
        return claims
