"""The token endpoint and the 401 for every token problem, through HTTP."""

from __future__ import annotations

import datetime as dt

import httpx
import jwt
import pytest

from scimtools.sandbox import PERMISSIONS, Sandbox, SandboxConfig

UNAUTHORIZED = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
    "status": "401",
    "detail": "[UnauthorizedException] Your supplied token is not authorized to"
    " make this SCIM request.",
}


def grant(
    sb: Sandbox, client: str, scope: str, *, basic: bool = True
) -> httpx.Response:
    creds = sb.clients[client]
    data = {"grant_type": "client_credentials", "scope": scope}
    if basic:
        return httpx.post(
            sb.token_url, data=data, auth=(creds.client_id, creds.client_secret)
        )
    data.update(client_id=creds.client_id, client_secret=creds.client_secret)
    return httpx.post(sb.token_url, data=data)


def test_grant_with_basic_auth_returns_fusionauth_claims(sandbox: Sandbox) -> None:
    scope = f"target-entity:{sandbox.server_entity_id}:scim:user:read,scim:group:read"

    response = grant(sandbox, "okta", scope)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == scope
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == [sandbox.server_entity_id]
    assert claims["sub"] == sandbox.clients["okta"].client_id
    assert claims["tid"] == sandbox.tenant_id
    assert claims["iss"] == "acme.com"
    assert claims["use"] == "scim_server"
    assert claims["gty"] == ["client_credentials"]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["permissions"] == {
        sandbox.server_entity_id: ["scim:group:read", "scim:user:read"]
    }
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"


def test_bare_target_entity_grants_every_permission_of_the_client(
    sandbox: Sandbox,
) -> None:
    response = grant(
        sandbox, "auditor", f"target-entity:{sandbox.server_entity_id}", basic=False
    )

    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert claims["permissions"][sandbox.server_entity_id] == sorted(
        sandbox.clients["auditor"].permissions
    )
    assert (
        "scim:service-provider-config:read"
        in claims["permissions"][sandbox.server_entity_id]
    )


def test_grant_of_a_permission_the_client_lacks_is_invalid_scope(
    sandbox: Sandbox,
) -> None:
    scope = f"target-entity:{sandbox.server_entity_id}:scim:user:delete"

    response = grant(sandbox, "auditor", scope)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_scope",
        "error_description": "Invalid target-entity scope. The permission names"
        " [scim:user:delete] are invalid.",
        "error_reason": "invalid_entity_permission_scope",
    }


def test_grant_with_a_wrong_secret_is_invalid_client(sandbox: Sandbox) -> None:
    response = httpx.post(
        sandbox.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"target-entity:{sandbox.server_entity_id}",
        },
        auth=(sandbox.clients["okta"].client_id, "wrong"),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_the_fifteen_permissions_are_fusionauths() -> None:
    assert len(PERMISSIONS) == 15
    assert "scim:enterprise:user:update" in PERMISSIONS


def _get(sb: Sandbox, token: str | None, path: str = "/Users") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(sb.base_url + path, headers=headers)


def _forge(sb: Sandbox, **changes: object) -> str:
    claims = jwt.decode(sb.mint_token("okta"), options={"verify_signature": False})
    claims.update(changes)
    key = sb.issuer._key  # the tenant's HMAC key
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.mark.parametrize(
    "case",
    [
        "no token",
        "bad signature",
        "expired",
        "wrong audience",
        "wrong use",
        "wrong tenant",
        "missing permission",
    ],
)
def test_every_token_problem_answers_the_same_401(sandbox: Sandbox, case: str) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = {
        "no token": None,
        "bad signature": sandbox.mint_token("okta")[:-4] + "AAAA",
        "expired": _forge(sandbox, exp=now - 10, iat=now - 100),
        "wrong audience": _forge(sandbox, aud=["00000000-0000-4000-8000-000000000000"]),
        "wrong use": _forge(sandbox, use="client"),
        "wrong tenant": _forge(sandbox, tid="00000000-0000-4000-8000-000000000000"),
        "missing permission": sandbox.mint_token("okta", ["scim:group:read"]),
    }[case]

    response = _get(sandbox, token)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_token_without_discovery_permissions_cannot_read_discovery(
    sandbox: Sandbox,
) -> None:
    response = _get(sandbox, sandbox.mint_token("okta"), "/ServiceProviderConfig")

    assert response.status_code == 401


def test_string_audience_is_accepted(sandbox: Sandbox) -> None:
    token = _forge(sandbox, aud=sandbox.server_entity_id)

    assert _get(sandbox, token).status_code == 200


def test_token_expiry_follows_the_injected_clock(make_sandbox) -> None:  # noqa: ANN001
    moment = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    sb = make_sandbox(SandboxConfig(clock=lambda: moment, token_ttl=60))
    token = sb.mint_token("okta")

    claims = jwt.decode(token, options={"verify_signature": False})

    assert claims["iat"] == int(moment.timestamp())
    assert claims["exp"] == int(moment.timestamp()) + 60
    assert _get(sb, token).status_code == 200


def test_tenant_header_must_match_the_token(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {sandbox.mint_token('okta')}"}

    wrong = httpx.get(
        sandbox.base_url + "/Users",
        headers={
            **headers,
            "X-FusionAuth-TenantId": "00000000-0000-4000-8000-000000000000",
        },
    )
    garbled = httpx.get(
        sandbox.base_url + "/Users", headers={**headers, "X-FusionAuth-TenantId": "x"}
    )

    assert wrong.status_code == 401
    assert garbled.status_code == 400
    assert "X-FusionAuth-TenantId" in garbled.json()["detail"]


def test_client_repr_hides_the_secret(sandbox: Sandbox) -> None:
    client = sandbox.clients["okta"]

    assert client.client_secret not in repr(client)
    assert client.client_secret not in repr(sandbox)


@pytest.mark.parametrize(
    "path",
    ["/Users", "/ServiceProviderConfig", "/Schemas", "/ResourceTypes", "/Me"],
)
def test_tenant_header_is_checked_on_every_scim_endpoint(
    sandbox: Sandbox, path: str
) -> None:
    token = sandbox.mint_token("auditor")
    other = "00000000-0000-4000-8000-000000000000"

    def get(tenant: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if tenant is not None:
            headers["X-FusionAuth-TenantId"] = tenant
        return httpx.get(sandbox.base_url + path, headers=headers)

    wrong, garbled = get(other), get("nope")
    matching = get(sandbox.tenant_id)

    assert wrong.status_code == 401
    assert wrong.json() == UNAUTHORIZED
    assert garbled.status_code == 400
    assert "X-FusionAuth-TenantId" in garbled.json()["detail"]
    assert matching.status_code == (501 if path == "/Me" else 200)


@pytest.mark.parametrize(
    ("method", "path", "authenticated"),
    [
        ("GET", "/Me", 501),
        ("GET", "/Me/123", 501),
        ("GET", "/Nope", 404),
        ("GET", "", 404),
        ("OPTIONS", "/Users", 405),
        ("HEAD", "/Users", 405),
        ("POST", "/Bulk", 404),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer garbage", "Basic eDp5"])
def test_every_request_under_the_scim_base_is_authenticated_before_routing(
    sandbox: Sandbox,
    method: str,
    path: str,
    authenticated: int,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    good = {"Authorization": f"Bearer {sandbox.mint_token('okta')}"}

    refused = httpx.request(method, sandbox.base_url + path, headers=headers)
    routed = httpx.request(method, sandbox.base_url + path, headers=good)

    assert refused.status_code == 401
    if method != "HEAD":
        assert refused.json() == UNAUTHORIZED
    assert routed.status_code == authenticated
