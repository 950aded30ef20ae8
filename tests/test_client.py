"""SCIMClient: typed errors, retries, discovery, PATCH; sandbox and scim2-server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scimtools import (
    BadRequestError,
    ClientCredentialsAuth,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    SCIMClient,
    SCIMServerError,
    ServerUnavailableError,
    StaticTokenAuth,
    UnauthorizedError,
    export_resources,
    export_tenant,
)
from scimtools.errors import FUSIONAUTH_ERROR_SCHEMA, SCIM_ERROR_SCHEMA

BASE = "https://scim.example.com/api/scim/resource/v2"
TOKEN = "secret-token-value"


class Recorder:
    """Stands in for time.sleep; records the requested delays."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def make_client(handler: Any, **options: Any) -> SCIMClient:
    options.setdefault("sleep", Recorder())
    options.setdefault("progress", False)
    options.setdefault("rng", lambda: 1.0)
    return SCIMClient(
        BASE, token=TOKEN, transport=httpx.MockTransport(handler), **options
    )


def user_list(start: int, count: int, total: int) -> dict[str, Any]:
    ids = range(start, min(start + count, total + 1))
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "itemsPerPage": count,
        "startIndex": start,
        "Resources": [{"id": f"u{i}", "userName": f"user{i}"} for i in ids],
    }


# -- error bodies -----------------------------------------------------------------

FUSIONAUTH_DUPLICATE = {
    "detail": "Request failed, see errors for additional details.",
    FUSIONAUTH_ERROR_SCHEMA: {
        "generalErrors": [],
        "fieldErrors": {
            "user.username": [
                {
                    "code": "[duplicate]user.username",
                    "message": "A User with username = [johnny123] already exists.",
                }
            ]
        },
    },
    "schemas": [FUSIONAUTH_ERROR_SCHEMA, SCIM_ERROR_SCHEMA],
    "status": "409",
}


@pytest.mark.parametrize(
    ("status", "body", "error", "detail"),
    [
        (
            401,
            json.dumps(
                {
                    "detail": "[UnauthorizedException] Your supplied token is not"
                    " authorized to make this SCIM request.",
                    "schemas": [SCIM_ERROR_SCHEMA],
                    "status": "401",
                }
            ),
            UnauthorizedError,
            "[UnauthorizedException] Your supplied token",
        ),
        (409, json.dumps(FUSIONAUTH_DUPLICATE), ConflictError, "Request failed"),
        (
            400,
            json.dumps({"status": 400, "scimType": "invalidFilter", "detail": "bad"}),
            BadRequestError,
            "bad",
        ),
        (
            500,
            json.dumps(
                {
                    "fieldErrors": {},
                    "generalErrors": [
                        {
                            "code": "[Exception]",
                            "message": "FusionAuth encountered an unexpected error.",
                        }
                    ],
                }
            ),
            SCIMServerError,
            "FusionAuth encountered an unexpected error.",
        ),
        (404, "", NotFoundError, "empty body"),
        (
            503,
            "<html><body>Service Unavailable</body></html>",
            ServerUnavailableError,
            "body is not JSON",
        ),
        (400, "[1, 2]", BadRequestError, "not an object"),
    ],
)
def test_error_bodies_become_typed_errors(
    status: int, body: str, error: type[SCIMServerError], detail: str
) -> None:
    client = make_client(lambda r: httpx.Response(status, text=body), max_retries=0)

    with client, pytest.raises(error) as caught:
        client.get("Users", "u1")

    assert caught.value.status == status
    assert detail in (caught.value.detail or "")
    assert TOKEN not in str(caught.value)


def test_fusionauth_field_errors_and_codes_are_kept() -> None:
    client = make_client(lambda r: httpx.Response(409, json=FUSIONAUTH_DUPLICATE))

    with client, pytest.raises(ConflictError) as caught:
        client.create("Users", {"userName": "johnny123"})

    assert caught.value.codes == ["[duplicate]user.username"]
    assert "user.username" in caught.value.field_errors
    assert "[duplicate]user.username" in str(caught.value)


def test_scim_type_is_kept() -> None:
    body = {"status": "400", "scimType": "invalidFilter", "detail": "no"}
    client = make_client(lambda r: httpx.Response(400, json=body))

    with client, pytest.raises(BadRequestError, match=r"\(invalidFilter\)") as caught:
        client.list_page("Users", filter="userName EQ 1")

    assert caught.value.scim_type == "invalidFilter"


def test_401_names_missing_permission_as_a_likely_cause() -> None:
    client = make_client(lambda r: httpx.Response(401, text=""))

    with client, pytest.raises(UnauthorizedError, match="missing permission"):
        client.list_page("Users")


def test_success_with_a_body_that_is_not_json_is_an_error() -> None:
    client = make_client(lambda r: httpx.Response(200, text="<html>login</html>"))

    with client, pytest.raises(SCIMServerError, match="not JSON"):
        client.get("Users", "u1")


# -- retries ----------------------------------------------------------------------


def test_429_with_retry_after_on_every_fifth_request_completes() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            return httpx.Response(429, headers={"Retry-After": "2"})
        params = request.url.params
        return httpx.Response(
            200, json=user_list(int(params["startIndex"]), int(params["count"]), 95)
        )

    sleeper = Recorder()
    with make_client(handler, sleep=sleeper) as client:
        result = export_resources(client, "Users", count=10, ordered=True)

    assert result.count == 95
    assert result.complete
    assert sleeper.sleeps == [2.0, 2.0]
    assert calls["n"] == 12


def test_retry_after_as_http_date_is_honoured_with_the_injected_clock() -> None:
    responses = iter(
        [
            httpx.Response(
                429, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:13 GMT"}
            ),
            httpx.Response(200, json={"id": "u1"}),
        ]
    )
    sleeper = Recorder()

    with make_client(lambda r: next(responses), sleep=sleeper, clock=lambda: 10.0) as c:
        assert c.get("Users", "u1") == {"id": "u1"}

    assert sleeper.sleeps == [3.0]


def test_server_errors_back_off_exponentially_with_a_cap() -> None:
    sleeper = Recorder()
    client = make_client(
        lambda r: httpx.Response(503, json={"status": "503", "detail": "index"}),
        sleep=sleeper,
        max_retries=5,
        backoff=1.0,
        max_backoff=5.0,
        rng=lambda: 0.0,
    )

    with client, pytest.raises(ServerUnavailableError, match="index"):
        client.get("Users", "u1")

    assert sleeper.sleeps == [0.5, 1.0, 2.0, 2.5, 2.5]


def test_timeouts_and_connection_errors_are_retried_for_get() -> None:
    failures = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json={"id": "u1"})

    sleeper = Recorder()
    with make_client(handler, sleep=sleeper) as client:
        assert client.get("Users", "u1")["id"] == "u1"

    assert len(sleeper.sleeps) == 2


def test_post_is_never_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503, headers={"Retry-After": "1"})

    with make_client(handler) as client, pytest.raises(ServerUnavailableError):
        client.create("Users", {"userName": "x"})

    assert calls == ["POST"]


def test_post_rate_limited_carries_retry_after() -> None:
    client = make_client(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))

    with client, pytest.raises(RateLimitedError) as caught:
        client.create("Users", {"userName": "x"})

    assert caught.value.retry_after == 7.0


def test_patch_is_retried_only_when_asked() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            return httpx.Response(502)
        return httpx.Response(200, json={"id": "u1", "active": False})

    with make_client(handler) as client, pytest.raises(ServerUnavailableError):
        client.patch("Users", "u1", [{"op": "replace", "path": "active", "value": 0}])
    calls.clear()
    with make_client(handler, retry_patch=True) as client:
        patched = client.patch("Users", "u1", [{"op": "replace", "path": "active"}])

    assert patched == {"id": "u1", "active": False}
    assert calls == ["PATCH", "PATCH"]


def test_retry_after_longer_than_the_cap_is_not_waited_for() -> None:
    sleeper = Recorder()
    client = make_client(
        lambda r: httpx.Response(429, headers={"Retry-After": "3600"}), sleep=sleeper
    )

    with client, pytest.raises(RateLimitedError):
        client.get("Users", "u1")

    assert sleeper.sleeps == []


# -- requests and logging ---------------------------------------------------------


def test_requests_log_method_path_and_start_index_but_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(lambda r: httpx.Response(200, json=user_list(1, 5, 3)))

    with caplog.at_level(logging.DEBUG), client:
        client.list_page("Users", start_index=1, count=5)

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("scim")]
    assert "GET /api/scim/resource/v2/Users startIndex=1" in messages
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_list_page_refuses_to_reach_past_the_window() -> None:
    client = make_client(lambda r: httpx.Response(500))

    with client, pytest.raises(ValueError, match="window"):
        client.list_page("Users", start_index=9_950, count=100)


def test_create_replace_delete_use_the_right_methods_and_bodies() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path.rsplit("/", 2)[-1], body))
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if request.method == "POST":
            return httpx.Response(201, json={"id": "u1", **body})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "u1", **body})

    with make_client(handler) as client:
        created = client.create("Users", {"userName": "ada"})
        replaced = client.replace("Users", "u1", {"userName": "ada2"})
        client.delete("Users", "u1")

    assert created["id"] == "u1" and replaced["userName"] == "ada2"
    assert [(m, p) for m, p, _ in seen] == [
        ("POST", "Users"),
        ("PUT", "u1"),
        ("DELETE", "u1"),
    ]


def test_patch_answered_204_is_read_again() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            body = json.loads(request.content)
            assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "u1", "active": False})

    with make_client(handler) as client:
        patched = client.patch(
            "Users", "u1", [{"op": "replace", "path": "active", "value": False}]
        )

    assert patched == {"id": "u1", "active": False}
    assert client.capabilities.patch is True


def test_bad_resource_ids_are_refused() -> None:
    client = make_client(lambda r: httpx.Response(500))

    with client, pytest.raises(ValueError, match="not a valid id"):
        client.get("Users", "../Groups")


# -- discovery --------------------------------------------------------------------

FUSIONAUTH_SPC = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "filter": {"supported": False, "maxResults": 500},
    "patch": {"supported": False},
    "bulk": {"supported": False},
}


def test_discovery_is_recorded_and_filter_support_is_probed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("ServiceProviderConfig"):
            return httpx.Response(200, json=FUSIONAUTH_SPC)
        if path.endswith("ResourceTypes"):
            return httpx.Response(200, json={"Resources": [{"id": "User"}]})
        total = 0 if "filter" in request.url.params else 12
        return httpx.Response(200, json=user_list(1, 1, total))

    with make_client(handler) as client:
        claimed = client.service_provider_config()
        types = client.resource_types()
        works = client.probe_filter()

    assert claimed["filter"]["supported"] is False
    assert client.capabilities.claimed is claimed
    assert types == [{"id": "User"}]
    assert works is True
    assert client.capabilities.filter is True
    assert client.capabilities.window == 10_000
    assert set(client.discovery) == {"ServiceProviderConfig", "ResourceTypes"}


def test_probe_detects_a_server_that_ignores_filters() -> None:
    with make_client(lambda r: httpx.Response(200, json=user_list(1, 1, 12))) as c:
        assert c.probe_filter() is False

    assert c.capabilities.filter is False


# -- integration: the sandbox and the stock scim2-server ------------------------------


def test_sandbox_answers_401_for_a_token_without_user_read(sandbox: Any) -> None:
    auditor = sandbox.clients["auditor"]
    auth = ClientCredentialsAuth(
        sandbox.token_url,
        auditor.client_id,
        auditor.client_secret,
        sandbox.server_entity_id,
        permissions=["scim:group:read"],
    )
    client = SCIMClient(sandbox.base_url, auth=auth, progress=False)

    with client:
        groups = client.list_page("Groups")
        with pytest.raises(UnauthorizedError, match="missing permission"):
            client.list_page("Users")

    assert groups.total_results is not None
    assert auth.tokens_fetched == 2


def test_sandbox_discovery_under_reports_and_the_probe_corrects_it(
    sandbox: Any,
) -> None:
    auth = StaticTokenAuth(sandbox.mint_token("auditor"), warn_within=60)

    with SCIMClient(sandbox.base_url, auth=auth, progress=False) as client:
        claimed = client.service_provider_config()
        types = client.resource_types()
        works = client.probe_filter()

    assert claimed["filter"]["supported"] is False
    assert {t["id"] for t in types} == {"User", "Group"}
    assert works is True


@pytest.fixture
def stock_server() -> Iterator[str]:
    """The stock scim2-server (not FusionAuth) in a thread on 127.0.0.1."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from scim2_models import ScimProvider
    from scim2_server.memory import InMemoryStorage
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BearerTokenApplication
    from scim2_server.testserver.cli import ThreadingWSGIServer
    from scim2_server.utils import (
        load_default_resource_types,
        load_default_schemas,
        load_default_service_provider_config,
    )

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=load_default_service_provider_config(),
    )
    app = BearerTokenApplication(
        InMemoryStorage(),
        provider,
        service=ScimService(provider, secret="x" * 32),
        bearer_tokens=[TOKEN],
    )
    server = make_server(
        "127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v2"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_stock_scim2_server_round_trip_and_export(stock_server: str) -> None:
    with SCIMClient(stock_server, token=TOKEN, progress=False, page_size=7) as client:
        ids = [
            client.create("Users", {"userName": f"user{i:02d}", "active": True})["id"]
            for i in range(40)
        ]
        group = client.create(
            "Groups",
            {"displayName": "Ops", "members": [{"value": ids[0]}, {"value": ids[1]}]},
        )
        patched = client.patch(
            "Users", ids[3], [{"op": "replace", "path": "active", "value": False}]
        )
        replaced = client.replace("Users", ids[4], {"userName": "renamed"})
        client.delete("Users", ids[5])
        result = export_resources(client, "Users", max_workers=3)
        export = export_tenant(client)

    assert patched is not None and patched["active"] is False
    assert replaced["userName"] == "renamed"
    assert result.complete
    assert sorted(r["id"] for r in result.resources) == sorted(
        i for i in ids if i != ids[5]
    )
    assert len(export.users) == 39
    assert "EnterpriseUsers" in export.metadata["skipped"]
    assert export.memberships["group_id"].tolist() == [group["id"]] * 2
