"""Tokens: the client-credentials grant, static tokens, permissions, settings."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import types
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from scimtools import (
    ClientCredentialsAuth,
    ConfigError,
    InsecureTransportError,
    MissingPermissionError,
    SCIMClient,
    StaticTokenAuth,
    TokenError,
    TokenExpiredError,
    TokenExpiresSoonWarning,
    UnauthorizedError,
    connect,
    describe_token,
    export_resources,
    load_settings,
    missing_permissions,
    require_permissions,
)

FA = "https://auth.example.com"
BASE = f"{FA}/api/scim/resource/v2"
TOKEN_URL = f"{FA}/oauth2/token"
CLIENT_ID = "2e6a8c0d-3f5b-4c7d-8e9f-1a2b3c4d5e6f"
SECRET = "very-secret-client-secret"
SERVER = "a8c1e2f4-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
KEY = "test-signing-key-of-thirty-two-bytes!"


class Clock:
    """A settable clock in seconds since the epoch."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mint(exp: float, permissions: list[str] | None = None, *, aud: Any = SERVER) -> str:
    perms = ["scim:user:read"] if permissions is None else permissions
    claims = {
        "aud": aud,
        "sub": CLIENT_ID,
        "exp": int(exp),
        "iat": int(exp) - 3600,
        "permissions": {SERVER: perms},
        "use": "scim_server",
    }
    return jwt.encode(claims, KEY, algorithm="HS256")


class FusionAuthStub:
    """Token endpoint plus /Users that checks tokens against an injected clock."""

    def __init__(self, clock: Clock, *, ttl: int = 3600, total: int = 50) -> None:
        self.clock = clock
        self.ttl = ttl
        self.total = total
        self.token_requests: list[httpx.Request] = []
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.on_list: Any = None
        self.reject_all = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            self.token_requests.append(request)
            token = mint(self.clock() + self.ttl, [f"n{len(self.issued)}"])
            self.issued.append(token)
            body = {"access_token": token, "expires_in": self.ttl, "token_type": "B"}
            return httpx.Response(200, json=body)

        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(
            token,
            KEY,
            algorithms=["HS256"],
            audience=SERVER,
            options={"verify_exp": False},
        )
        if claims["exp"] <= self.clock() or token in self.revoked or self.reject_all:
            return httpx.Response(401, json={"status": "401", "detail": "expired"})
        if self.on_list:
            self.on_list()

        start = int(request.url.params["startIndex"])
        count = int(request.url.params["count"])
        ids = range(start, min(start + count, self.total + 1))
        return httpx.Response(
            200,
            json={
                "totalResults": self.total,
                "Resources": [{"id": f"u{i}", "userName": f"u{i}"} for i in ids],
            },
        )


def grant(clock: Clock, **options: Any) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        TOKEN_URL, CLIENT_ID, SECRET, SERVER, clock=clock, **options
    )


# -- client-credentials grant -------------------------------------------------------


def test_grant_request_uses_basic_auth_and_the_bare_scope() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)

    with SCIMClient(BASE, auth=grant(clock), transport=httpx.MockTransport(stub)) as c:
        c.list_page("Users")
        c.list_page("Users")

    assert len(stub.token_requests) == 1
    request = stub.token_requests[0]
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    form = parse_qs(request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": [f"target-entity:{SERVER}"],
    }


def test_grant_with_explicit_permissions_lists_them_in_the_scope() -> None:
    auth = grant(Clock(), permissions=["scim:user:read", "scim:group:read"])

    assert auth.scope == f"target-entity:{SERVER}:scim:user:read,scim:group:read"


def test_token_expiring_in_the_middle_of_an_export_is_renewed() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock, ttl=300, total=50)
    stub.on_list = lambda: setattr(clock, "now", clock.now + 100)
    auth = grant(clock, renew_margin=60)

    with SCIMClient(
        BASE, auth=auth, transport=httpx.MockTransport(stub), progress=False
    ) as client:
        result = export_resources(client, "Users", count=5, ordered=True)

    assert result.count == 50
    assert len(stub.issued) == 4
    assert auth.tokens_fetched == 4


def test_401_renews_the_token_once_and_retries() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)
    auth = grant(clock)

    with SCIMClient(BASE, auth=auth, transport=httpx.MockTransport(stub)) as client:
        client.list_page("Users")
        stub.revoked.add(stub.issued[-1])
        page = client.list_page("Users")

    assert page.total_results == 50
    assert len(stub.issued) == 2


def test_401_that_persists_after_renewal_raises_unauthorized() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)
    auth = grant(clock)
    stub.reject_all = True

    client = SCIMClient(BASE, auth=auth, transport=httpx.MockTransport(stub))

    with client, pytest.raises(UnauthorizedError, match="missing permission"):
        client.list_page("Users")

    assert len(stub.issued) == 2


def test_async_clients_use_the_same_grant_and_renewal() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)
    auth = grant(clock)

    async def run() -> list[int]:
        async with httpx.AsyncClient(
            auth=auth, transport=httpx.MockTransport(stub)
        ) as client:
            first = await client.get(f"{BASE}/Users?startIndex=1&count=2")
            stub.revoked.add(stub.issued[-1])
            second = await client.get(f"{BASE}/Users?startIndex=1&count=2")
            return [first.status_code, second.status_code]

    assert asyncio.run(run()) == [200, 200]
    assert len(stub.issued) == 2


def test_token_endpoint_errors_explain_without_the_secret() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_client", "error_description": "bad credentials"}
        return httpx.Response(401, json=body)

    client = SCIMClient(
        BASE, auth=grant(Clock()), transport=httpx.MockTransport(handler)
    )

    with client, pytest.raises(TokenError, match="SCIM_CLIENT_ID") as caught:
        client.list_page("Users")

    assert "bad credentials" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_secrets_stay_out_of_repr_logs_and_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)
    auth = grant(clock)
    stub.reject_all = True

    with caplog.at_level(logging.DEBUG):
        client = SCIMClient(BASE, auth=auth, transport=httpx.MockTransport(stub))
        with client, pytest.raises(UnauthorizedError) as caught:
            client.list_page("Users")
    static = StaticTokenAuth(stub.issued[0], clock=clock, warn_within=0)

    texts = [repr(auth), str(auth), repr(client), repr(static), str(caught.value)]
    texts += [r.getMessage() for r in caplog.records]
    for secret in [SECRET, *stub.issued]:
        assert all(secret not in text for text in texts)


# -- transport ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9011/x", "http://localhost/x", "http://[::1]:8/x"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    client = SCIMClient(url, token="abc")
    client.close()


def test_plain_http_elsewhere_is_refused_unless_allowed() -> None:
    with pytest.raises(InsecureTransportError, match="allow_insecure_http"):
        SCIMClient("http://scim.example.com/v2", token="abc")
    with pytest.raises(InsecureTransportError):
        ClientCredentialsAuth("http://auth.example.com/oauth2/token", "a", "b", "c")

    allowed = SCIMClient(
        "http://scim.example.com/v2", token="abc", allow_insecure_http=True
    )
    allowed.close()


def test_insecure_check_also_guards_each_request() -> None:
    calls: list[httpx.Request] = []
    client = httpx.Client(
        auth=StaticTokenAuth("abc"), transport=httpx.MockTransport(calls.append)
    )

    with client, pytest.raises(InsecureTransportError):
        client.get("http://scim.example.com/v2/Users")

    assert calls == []


# -- static tokens ---------------------------------------------------------------------


def test_static_token_a_day_past_exp_fails_before_sending() -> None:
    clock = Clock()
    token = mint(clock() - 86_400)
    calls: list[httpx.Request] = []
    auth = StaticTokenAuth(token, clock=clock)

    client = SCIMClient(BASE, auth=auth, transport=httpx.MockTransport(calls.append))

    with client, pytest.raises(TokenExpiredError, match=r"expired .*\(24 hours ago\)"):
        client.list_page("Users")

    assert calls == []


@pytest.mark.parametrize("damage", ["truncated", "bad base64"])
def test_static_token_with_a_damaged_signature_still_has_its_expiry_checked(
    damage: str,
) -> None:
    clock = Clock()
    header, payload, signature = mint(clock() - 86_400).split(".")
    signature = signature[:5] if damage == "truncated" else "!!not*base64!!"
    auth = StaticTokenAuth(f"{header}.{payload}.{signature}", clock=clock)

    with pytest.raises(TokenExpiredError, match="24 hours ago"):
        auth.check_expiry()


def test_static_token_close_to_exp_warns_once() -> None:
    clock = Clock()
    auth = StaticTokenAuth(mint(clock() + 3600), clock=clock, warn_within=7200)

    with pytest.warns(TokenExpiresSoonWarning, match="expires in 60 minutes"):
        auth.check_expiry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auth.check_expiry()

    assert auth.expires_at is not None


def test_static_opaque_token_is_sent_as_is() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"id": "u1"})

    with SCIMClient(BASE, token="opaque", transport=httpx.MockTransport(handler)) as c:
        c.get("Users", "u1")

    assert seen == ["Bearer opaque"]


# -- describing tokens and permissions -------------------------------------------------


def test_describe_token_lists_claims_and_permissions() -> None:
    token = mint(1_700_000_000, ["scim:user:read", "scim:group:read"], aud=[SERVER])

    frame = describe_token(token)

    permissions = frame[frame["section"] == "permission"]
    assert permissions["name"].tolist() == ["scim:group:read", "scim:user:read"]
    assert set(permissions["value"]) == {SERVER}
    exp = frame[(frame["section"] == "claim") & (frame["name"] == "exp")]
    assert exp["value"].item() == "2023-11-14T22:13:20+00:00"
    assert token not in frame.to_string()


def test_describe_token_of_an_opaque_token_says_so() -> None:
    with pytest.raises(TokenError, match="not a JWT"):
        describe_token("opaque")


def test_missing_permissions_are_named_per_operation() -> None:
    token = mint(0, ["scim:user:read", "scim:group:read"], aud=[SERVER])

    missing = missing_permissions(
        token, ["export users", "read discovery", "patch users", "export groups"]
    )

    assert missing == {
        "read discovery": [
            "scim:resource-types:read",
            "scim:schemas:read",
            "scim:service-provider-config:read",
        ],
        "patch users": ["scim:user:update"],
    }


def test_require_permissions_raises_before_any_request() -> None:
    auth = StaticTokenAuth(mint(10, ["scim:user:read"]), clock=lambda: 20.0)

    with pytest.raises(MissingPermissionError, match="export tenant") as caught:
        require_permissions(auth, ["export users", "export tenant"])

    assert caught.value.missing == {
        "export tenant": ["scim:enterprise:user:read", "scim:group:read"]
    }


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        missing_permissions(mint(0), ["export everything"])


def test_permissions_of_a_grant_are_read_from_its_current_token() -> None:
    clock = Clock()
    stub = FusionAuthStub(clock)
    auth = grant(clock)

    with httpx.Client(transport=httpx.MockTransport(stub)) as http:
        token = auth.current_token(http)

    assert token == stub.issued[0]
    assert missing_permissions(token, ["export users"]) == {
        "export users": ["scim:user:read"]
    }


# -- settings and connect --------------------------------------------------------------


def test_partial_grant_settings_name_the_missing_variables() -> None:
    environ = {"FUSIONAUTH_URL": FA, "SCIM_CLIENT_ID": CLIENT_ID}

    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=environ)

    assert "SCIM_CLIENT_SECRET, SCIM_SERVER_ENTITY_ID are missing" in str(caught.value)


def test_static_token_without_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SCIM_BASE_URL is missing"):
        load_settings(None, environ={"SCIM_TOKEN": "abc"})


def test_token_and_grant_together_are_a_config_error() -> None:
    environ = {"SCIM_TOKEN": "abc", "SCIM_CLIENT_ID": "x", "SCIM_BASE_URL": BASE}

    with pytest.raises(ConfigError, match="either"):
        load_settings(None, environ=environ)


def test_settings_come_from_a_dotenv_file_and_hide_secrets(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f"FUSIONAUTH_URL={FA}\nSCIM_CLIENT_ID={CLIENT_ID}\n"
        f"SCIM_CLIENT_SECRET={SECRET}\nSCIM_SERVER_ENTITY_ID={SERVER}\n"
    )

    settings = load_settings(env, environ={"SCIM_CLIENT_ID": "from-env"})

    assert settings.mode == "grant"
    assert settings.client_id == "from-env"
    assert settings.base_url == BASE
    assert settings.token_url == TOKEN_URL
    assert SECRET not in repr(settings)


def test_connect_builds_a_grant_client() -> None:
    environ = {
        "FUSIONAUTH_URL": FA,
        "SCIM_CLIENT_ID": CLIENT_ID,
        "SCIM_CLIENT_SECRET": SECRET,
        "SCIM_SERVER_ENTITY_ID": SERVER,
    }

    with connect(env_file=None, environ=environ, progress=False) as client:
        assert isinstance(client.auth, ClientCredentialsAuth)
        assert client.base_url == BASE


def test_connect_with_static_settings_uses_the_token() -> None:
    environ = {"SCIM_BASE_URL": BASE, "SCIM_TOKEN": "abc"}

    with connect(env_file=None, environ=environ) as client:
        assert isinstance(client.auth, StaticTokenAuth)


def test_connect_without_settings_starts_the_sandbox_and_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events: list[str] = []

    class FakeSandbox:
        url = "http://127.0.0.1:5999"
        base_url = url + "/api/scim/resource/v2"
        token_url = url + "/oauth2/token"
        server_entity_id = SERVER
        clients = {"auditor": types.SimpleNamespace(client_id="a", client_secret="b")}

        def __init__(self, db_path: Path, seed_dir: Any = None, port: int = 0):
            events.append(f"init {Path(db_path).name}")

        def __enter__(self) -> FakeSandbox:
            events.append("start")
            return self

        def __exit__(self, *exc: object) -> None:
            events.append("stop")

    def build_demo(db_path: Path) -> None:
        events.append("build")

    monkeypatch.setitem(
        sys.modules, "scimtools.sandbox", types.SimpleNamespace(Sandbox=FakeSandbox)
    )
    monkeypatch.setitem(
        sys.modules,
        "scimtools.demo.build",
        types.SimpleNamespace(build_demo=build_demo),
    )
    environ = {"SCIMTOOLS_DEMO_DB": str(tmp_path / "demo.sqlite")}

    client = connect(env_file=None, environ=environ)
    out = capsys.readouterr().out
    client.close()

    assert events == ["build", "init demo.sqlite", "start", "stop"]
    assert out.count("\n") == 1
    assert "sandbox at http://127.0.0.1:5999" in out
    assert isinstance(client.auth, ClientCredentialsAuth)


def test_the_sandbox_auditor_may_export_but_not_patch(sandbox: Any) -> None:
    auditor = sandbox.clients["auditor"]
    auth = ClientCredentialsAuth(
        sandbox.token_url,
        auditor.client_id,
        auditor.client_secret,
        sandbox.server_entity_id,
    )

    with SCIMClient(sandbox.base_url, auth=auth) as client:
        missing = missing_permissions(client, ["export tenant", "patch users"])
        frame = describe_token(client)

    assert missing == {"patch users": ["scim:user:update"]}
    assert "scim:user:read" in frame["name"].tolist()
