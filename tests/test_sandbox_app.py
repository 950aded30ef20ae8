"""FusionAuth's SCIM behaviours, each checked through HTTP against the sandbox."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimtools.sandbox import Sandbox, SandboxConfig

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
FA_ERROR = "urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error"


def new_user(user_name: str | None = None, **extra: Any) -> dict[str, Any]:
    name = user_name or f"u-{uuid.uuid4().hex[:10]}"
    return {
        "schemas": [USER],
        "userName": name,
        "emails": [{"value": f"{name}@example.com", "primary": True}],
        **extra,
    }


def patch(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(ops)}


# --- endpoints and statuses ------------------------------------------------


def test_crud_statuses_and_content_type(okta: httpx.Client) -> None:
    created = okta.post("/Users", json=new_user())
    user_id = created.json()["id"]

    read = okta.get(f"/Users/{user_id}")
    replaced = okta.put(f"/Users/{user_id}", json=new_user(created.json()["userName"]))
    patched = okta.patch(
        f"/Users/{user_id}",
        json=patch({"op": "replace", "path": "active", "value": False}),
    )
    deleted = okta.delete(f"/Users/{user_id}")
    gone = okta.get(f"/Users/{user_id}")

    assert [created.status_code, read.status_code, replaced.status_code] == [
        201,
        200,
        200,
    ]
    assert patched.status_code == 200
    assert patched.json()["active"] is False
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert gone.status_code == 404
    assert created.headers["content-type"] == "application/scim+json; charset=UTF-8"
    assert created.headers["cache-control"] == "no-store"


def test_created_user_has_server_filled_id_schemas_and_meta(
    okta: httpx.Client, sandbox: Sandbox
) -> None:
    body = okta.post("/Users", json=new_user(externalId="ext-1")).json()

    assert uuid.UUID(body["id"])
    assert body["externalId"] == "ext-1"
    assert body["schemas"] == [USER]
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"] == f"{sandbox.base_url}/Users/{body['id']}"
    assert body["meta"]["created"].endswith("Z")
    assert len(body["meta"]["created"]) == len("2022-04-08T21:03:32.359Z")


def test_enterprise_users_are_the_same_rows_shown_with_the_extension(
    okta: httpx.Client, sandbox: Sandbox
) -> None:
    user = new_user(schemas=[USER, ENTERPRISE], **{ENTERPRISE: {"department": "Ops"}})
    created = okta.post("/EnterpriseUsers", json=user).json()

    as_user = okta.get(f"/Users/{created['id']}").json()
    as_enterprise = okta.get(f"/EnterpriseUsers/{created['id']}").json()

    assert as_enterprise["schemas"] == [USER, ENTERPRISE]
    assert as_enterprise["meta"]["resourceType"] == "EnterpriseUser"
    assert as_enterprise["meta"]["location"].endswith(
        f"/EnterpriseUsers/{created['id']}"
    )
    assert as_enterprise[ENTERPRISE] == {"department": "Ops"}
    assert as_user["meta"]["resourceType"] == "User"
    assert as_user[ENTERPRISE] == {"department": "Ops"}


def test_me_is_not_implemented(okta: httpx.Client) -> None:
    response = okta.get("/Me")

    assert response.status_code == 501


def test_bulk_and_dot_search_have_no_route(okta: httpx.Client) -> None:
    assert okta.post("/Bulk", json={}).status_code == 404
    assert okta.post("/Users/.search", json={}).status_code == 404


def test_put_is_a_full_replacement(okta: httpx.Client) -> None:
    user = new_user(name={"givenName": "Ada", "familyName": "Lovelace"})
    user_id = okta.post("/Users", json=user).json()["id"]

    replaced = okta.put(f"/Users/{user_id}", json=new_user(user["userName"])).json()

    assert "name" not in replaced


# --- default lambdas ----------------------------------------------------------


def test_default_lambdas_keep_only_primary_email_and_phone(okta: httpx.Client) -> None:
    user = new_user(
        displayName="Ada L.",
        title="Countess",
        addresses=[{"streetAddress": "1 Main St"}],
        emails=[
            {"value": "home@example.com", "type": "home"},
            {"value": "Work@Example.com", "type": "home", "primary": True},
        ],
        phoneNumbers=[
            {"value": "+1 555 0100", "type": "work"},
            {"value": "+1 555 0101", "type": "work", "primary": True},
        ],
    )

    body = okta.post("/Users", json=user).json()

    assert body["emails"] == [
        {"primary": True, "value": "Work@Example.com", "type": "work"}
    ]
    assert body["phoneNumbers"] == [
        {"primary": True, "value": "+1 555 0101", "type": "mobile"}
    ]
    for dropped in ("displayName", "title", "addresses"):
        assert dropped not in body


def test_emails_without_primary_leave_the_user_without_email(
    okta: httpx.Client,
) -> None:
    user = new_user()
    user["emails"] = [{"value": "np@example.com", "type": "work"}]

    body = okta.post("/Users", json=user).json()

    assert "emails" not in body


def test_password_is_never_returned(okta: httpx.Client) -> None:
    body = okta.post("/Users", json=new_user(password="s3cret!")).json()

    assert "password" not in body


def test_group_members_keep_value_and_ref_and_list_existing_users_only(
    okta: httpx.Client,
) -> None:
    user_id = okta.post("/Users", json=new_user()).json()["id"]
    ghost = str(uuid.uuid4())
    group = {
        "schemas": [GROUP],
        "displayName": f"g-{uuid.uuid4().hex[:8]}",
        "members": [
            {"value": user_id, "$ref": f"../Users/{user_id}", "display": "x"},
            {"value": ghost},
        ],
    }

    body = okta.post("/Groups", json=group).json()

    assert body["members"] == [{"value": user_id, "$ref": f"../Users/{user_id}"}]
    okta.delete(f"/Users/{user_id}")
    assert "members" not in okta.get(f"/Groups/{body['id']}").json()


# --- list and paging ----------------------------------------------------------


def test_list_defaults_and_itemsperpage_echoing_count(
    fresh: httpx.Client, fresh_sandbox: Sandbox
) -> None:
    fresh_sandbox.tenant.ingest_users([new_user() for _ in range(30)])

    default = fresh.get("/Users").json()
    last = fresh.get("/Users", params={"startIndex": 28, "count": 10}).json()

    assert (default["startIndex"], default["itemsPerPage"]) == (1, 25)
    assert len(default["Resources"]) == 25
    assert default["totalResults"] == 30
    assert (last["itemsPerPage"], len(last["Resources"])) == (10, 3)


def test_empty_list_leaves_resources_out_by_default(fresh: httpx.Client) -> None:
    body = fresh.get("/Groups").json()

    assert body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "itemsPerPage": 25,
        "startIndex": 1,
    }


def test_empty_list_can_send_an_empty_resources_array(make_sandbox, client_for) -> None:  # noqa: ANN001
    sb = make_sandbox(SandboxConfig(empty_resources="empty"))
    with client_for(sb) as client:
        assert client.get("/Groups").json()["Resources"] == []


@pytest.mark.parametrize(
    ("overflow", "status", "returned"),
    [("400", 400, None), ("503", 503, None), ("empty", 200, 0), ("truncate", 200, 2)],
)
def test_window_overflow(
    make_sandbox, client_for, overflow: str, status: int, returned
) -> None:  # noqa: ANN001
    sb = make_sandbox(SandboxConfig(window=5, overflow=overflow))  # type: ignore[arg-type]
    sb.tenant.ingest_users([new_user() for _ in range(8)])

    with client_for(sb) as client:
        inside = client.get("/Users", params={"startIndex": 4, "count": 2})
        response = client.get("/Users", params={"startIndex": 4, "count": 3})

    assert inside.status_code == 200
    assert response.status_code == status
    if returned is not None:
        assert len(response.json().get("Resources", [])) == returned
        assert response.json()["totalResults"] == 8


def test_the_default_window_is_10000_and_refuses_with_400(
    sandbox: Sandbox, client_for
) -> None:  # noqa: ANN001
    with client_for(sandbox) as client:
        edge = client.get("/Users", params={"startIndex": 9901, "count": 100})
        past = client.get("/Users", params={"startIndex": 9902, "count": 100})

    assert edge.status_code == 200
    assert past.status_code == 400
    assert "10,000" in past.json()["detail"]


def test_total_can_be_capped_at_the_window(make_sandbox, client_for) -> None:  # noqa: ANN001
    sb = make_sandbox(SandboxConfig(window=5, cap_total=True))
    sb.tenant.ingest_users([new_user() for _ in range(8)])

    with client_for(sb) as client:
        page = client.get("/Users", params={"count": 2})

    assert page.json()["totalResults"] == 5


def test_attributes_and_sort_are_ignored(okta: httpx.Client) -> None:
    body = okta.get(
        "/Users", params={"attributes": "userName", "sortBy": "userName", "count": 1}
    ).json()

    assert "meta" in body["Resources"][0]


# --- filters --------------------------------------------------------------------


@pytest.fixture(scope="module")
def people(sandbox: Sandbox) -> dict[str, str]:
    """Users and groups of the shared sandbox that the filter tests look for."""
    tag = uuid.uuid4().hex[:6]
    users = [
        new_user(f"flt{tag}-alice", externalId=f"ext-{tag}-a"),
        new_user(f"flt{tag}-bob"),
        {
            **new_user(f"flt{tag}-carol"),
            "emails": [{"value": f"flt{tag}-alice@corp.example", "primary": True}],
        },
    ]
    ids = sandbox.tenant.ingest_users(users)
    groups = [
        {"displayName": f"Flt{tag} Engineering", "externalId": f"gext-{tag}"},
        {"displayName": f"flt{tag} Sales"},
    ]
    gids = sandbox.tenant.ingest_groups(groups)
    return {"tag": tag, "alice": ids[0], "bob": ids[1], "carol": ids[2], "eng": gids[0]}


def _ids(client: httpx.Client, endpoint: str, text: str) -> list[str]:
    response = client.get(endpoint, params={"filter": text, "count": 100})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json().get("Resources", [])]


def test_username_eq_is_case_insensitive_and_matches_email(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    tag = people["tag"]

    by_name = _ids(okta, "/Users", f'userName eq "FLT{tag}-ALICE"')
    by_email = _ids(okta, "/Users", f'userName eq "flt{tag}-bob@example.com"')
    ambiguous = _ids(okta, "/Users", f'userName eq "flt{tag}-alice@corp.example"')

    assert by_name == [people["alice"]]
    assert by_email == [people["bob"]]
    assert ambiguous == [people["carol"]]


def test_username_eq_answers_at_most_one_user(
    okta: httpx.Client, sandbox: Sandbox
) -> None:
    tag = uuid.uuid4().hex[:6]
    sandbox.tenant.ingest_users(
        [
            {**new_user(f"x{tag}@corp.example"), "emails": []},
            {
                **new_user(f"y{tag}"),
                "emails": [{"value": f"x{tag}@corp.example", "primary": True}],
            },
        ]
    )

    body = okta.get("/Users", params={"filter": f'userName eq "x{tag}@corp.example"'})

    assert body.json()["totalResults"] == 1
    assert body.json()["Resources"][0]["userName"] == f"x{tag}@corp.example"


def test_username_sw_co_ew_are_case_insensitive(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    tag = people["tag"]

    assert len(_ids(okta, "/Users", f'userName sw "FLT{tag}-"')) == 3
    assert _ids(okta, "/Users", f'userName co "{tag}-BO"') == [people["bob"]]
    assert _ids(okta, "/Users", f'userName ew "{tag}-CAROL"') == [people["carol"]]


def test_logical_operators(okta: httpx.Client, people: dict[str, str]) -> None:
    tag = people["tag"]
    prefix = f'userName sw "flt{tag}-"'

    both = _ids(okta, "/Users", f'{prefix} and not (userName ew "bob")')
    either = _ids(
        okta, "/Users", f'userName eq "flt{tag}-bob" or externalId eq "ext-{tag}-a"'
    )

    assert sorted(both) == sorted([people["alice"], people["carol"]])
    assert sorted(either) == sorted([people["alice"], people["bob"]])


def test_external_id_eq_on_users_and_groups(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    tag = people["tag"]

    assert _ids(okta, "/Users", f'externalId eq "ext-{tag}-a"') == [people["alice"]]
    assert _ids(okta, "/Groups", f'externalId eq "gext-{tag}"') == [people["eng"]]


@pytest.mark.parametrize("op", ["eq", "co", "sw", "ew"])
def test_group_display_name_filters_are_case_insensitive(
    okta: httpx.Client, people: dict[str, str], op: str
) -> None:
    value = {
        "eq": f"FLT{people['tag']} ENGINEERING",
        "co": f"{people['tag']} engin",
        "sw": f"flt{people['tag']} eng",
        "ew": "ENGINEERING",
    }[op]

    found = _ids(okta, "/Groups", f'displayName {op} "{value}"')

    assert people["eng"] in found


def test_emails_value_co_and_ew_find_nothing(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    assert _ids(okta, "/Users", 'emails[value co "@example.com"]') == []
    assert _ids(okta, "/Users", 'emails[value ew "example.com"]') == []
    tag = people["tag"]
    assert _ids(okta, "/Users", f'emails[value eq "flt{tag}-bob@example.com"]') == [
        people["bob"]
    ]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('userName EQ "x"', 'No comparison operator for [userName EQ "x"]'),
        (
            'emails[type eq "work"].value eq "x"',
            'Invalid state transition at [emails[type eq "work"].]',
        ),
        ('userName eq "x" AND active eq true', "[AND] is not a valid comparison"),
        ("userName eq", "Invalid filter"),
    ],
)
def test_filters_fusionauth_rejects_answer_400_with_the_parser_text(
    okta: httpx.Client, text: str, detail: str
) -> None:
    response = okta.get("/Users", params={"filter": text})

    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_other_attributes_are_evaluated_on_the_rendering(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    tag = people["tag"]

    found = _ids(
        okta, "/Users", f'userName sw "flt{tag}" and emails.value co "corp.example"'
    )

    assert found == []  # emails co finds nothing, in any form
    assert _ids(okta, "/Users", f'name.familyName pr and userName sw "flt{tag}"') == []


# --- excludedAttributes ---------------------------------------------------------


def test_excluded_attributes_on_top_level_names_untrimmed(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    path = f"/Users/{people['alice']}"

    plain = okta.get(path, params={"excludedAttributes": "emails,meta"}).json()
    spaced = okta.get(path, params={"excludedAttributes": "emails, meta"}).json()
    nested = okta.get(path, params={"excludedAttributes": "name.givenName"}).json()

    assert "emails" not in plain and "meta" not in plain
    assert "emails" not in spaced and "meta" in spaced
    assert nested == okta.get(path).json()


def test_excluded_members_on_group_list(
    okta: httpx.Client, people: dict[str, str]
) -> None:
    body = okta.get(
        "/Groups",
        params={
            "filter": f'externalId eq "gext-{people["tag"]}"',
            "excludedAttributes": "members",
        },
    ).json()

    assert all("members" not in g for g in body["Resources"])


# --- discovery ------------------------------------------------------------------


@pytest.fixture
def auditor(sandbox: Sandbox, client_for):  # noqa: ANN001, ANN201
    with client_for(sandbox, "auditor") as client:
        yield client


def test_service_provider_config_under_reports(
    auditor: httpx.Client, sandbox: Sandbox
) -> None:
    body = auditor.get("/ServiceProviderConfig").json()

    assert body["filter"] == {"supported": False, "maxResults": 500}
    assert body["patch"] == {"supported": False}
    assert body["bulk"]["supported"] is False
    assert body["changePassword"] == {"supported": True}
    assert body["etag"] == {"supported": False}
    assert body["sort"] == {"supported": False}
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["meta"]["location"] == f"{sandbox.base_url}/ServiceProviderConfig"


def test_resource_types_have_no_enterprise_user(auditor: httpx.Client) -> None:
    body = auditor.get("/ResourceTypes").json()

    assert [r["id"] for r in body["Resources"]] == ["User", "Group"]
    assert (body["totalResults"], body["itemsPerPage"], body["startIndex"]) == (
        2,
        10,
        1,
    )
    assert body["Resources"][0]["schemaExtensions"] == [
        {"schema": ENTERPRISE, "required": True}
    ]
    missing = auditor.get("/ResourceTypes/EnterpriseUser")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "ResourceType EnterpriseUser not found."


def test_schemas_as_documented(auditor: httpx.Client) -> None:
    body = auditor.get("/Schemas").json()
    by_id = {s["id"]: s for s in body["Resources"]}

    assert body["totalResults"] == body["itemsPerPage"] == 4
    assert [a["name"] for a in by_id[USER]["attributes"]] == ["userName", "active"]
    assert [a["name"] for a in by_id[GROUP]["attributes"]] == ["displayName", "members"]
    assert by_id[ENTERPRISE]["attributes"] == []
    assert by_id[ENTERPRISE]["meta"]["location"].endswith(
        f"/Schemas/v2/Schemas/{ENTERPRISE}"
    )
    assert FA_ERROR in by_id
    assert auditor.get(f"/Schemas/{USER}").json()["name"] == "User"


# --- errors ---------------------------------------------------------------------


def test_duplicate_username_or_email_is_409_with_field_errors(
    okta: httpx.Client,
) -> None:
    user = new_user()
    okta.post("/Users", json=user)
    same_name = {**new_user(user["userName"].upper()), "emails": []}
    same_email = {
        **new_user(),
        "emails": [{"value": user["emails"][0]["value"].upper(), "primary": True}],
    }

    by_name = okta.post("/Users", json=same_name)
    by_email = okta.post("/Users", json=same_email)

    assert by_name.status_code == by_email.status_code == 409
    assert list(by_name.json()[FA_ERROR]["fieldErrors"]) == ["user.username"]
    assert by_name.json()[FA_ERROR]["fieldErrors"]["user.username"][0]["code"] == (
        "[duplicate]user.username"
    )
    assert by_email.json()[FA_ERROR]["fieldErrors"]["user.email"][0]["code"] == (
        "[duplicate]user.email"
    )
    assert by_name.json()["schemas"] == [
        FA_ERROR,
        "urn:ietf:params:scim:api:messages:2.0:Error",
    ]
    assert by_name.json()["status"] == "409"


def test_invalid_json_is_400_with_general_errors(okta: httpx.Client) -> None:
    response = okta.post(
        "/Users",
        content=b"{not json",
        headers={"Content-Type": "application/scim+json"},
    )

    assert response.status_code == 400
    assert response.json()[FA_ERROR]["generalErrors"] == [
        {"code": "[invalid]", "message": "Your JSON was invalid"}
    ]


def test_user_without_username_and_email_is_400(okta: httpx.Client) -> None:
    response = okta.post("/Users", json={"schemas": [USER], "active": True})

    assert response.status_code == 400
    assert "user.email" in response.json()[FA_ERROR]["fieldErrors"]


@pytest.mark.parametrize(
    ("schemas", "code"),
    [(None, "[missing]schemas"), (["urn:wrong"], "[invalid]schemas")],
)
def test_patch_schemas_missing_or_wrong_is_400(
    okta: httpx.Client, schemas: list[str] | None, code: str
) -> None:
    user_id = okta.post("/Users", json=new_user()).json()["id"]
    body: dict[str, Any] = {
        "Operations": [{"op": "replace", "path": "active", "value": False}]
    }
    if schemas:
        body["schemas"] = schemas

    response = okta.patch(f"/Users/{user_id}", json=body)

    assert response.status_code == 400
    assert response.json()[FA_ERROR]["fieldErrors"]["schemas"][0]["code"] == code


# --- PATCH ------------------------------------------------------------------------


def test_patch_ops_are_case_insensitive_and_string_false_is_false(
    okta: httpx.Client,
) -> None:
    user_id = okta.post("/Users", json=new_user()).json()["id"]

    response = okta.patch(
        f"/Users/{user_id}",
        json=patch({"op": "Replace", "path": "active", "value": "False"}),
    )

    assert response.status_code == 200
    assert response.json()["active"] is False


def test_string_false_for_active_on_create_is_false(okta: httpx.Client) -> None:
    assert okta.post("/Users", json=new_user(active="False")).json()["active"] is False


def test_patch_whose_filter_matches_nothing_is_dropped(okta: httpx.Client) -> None:
    user_id = okta.post("/Users", json=new_user()).json()["id"]

    response = okta.patch(
        f"/Users/{user_id}",
        json=patch(
            {
                "op": "replace",
                "path": 'emails[type eq "home"].value',
                "value": "x@y.org",
            },
            {"op": "Add", "path": "name.givenName", "value": "Grace"},
        ),
    )

    assert response.status_code == 200
    assert response.json()["name"] == {"givenName": "Grace"}
    assert response.json()["emails"][0]["value"].endswith("@example.com")


def test_patch_with_enterprise_urn_path(okta: httpx.Client) -> None:
    user = new_user(schemas=[USER, ENTERPRISE])
    user_id = okta.post("/EnterpriseUsers", json=user).json()["id"]

    body = okta.patch(
        f"/EnterpriseUsers/{user_id}",
        json=patch({"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Ops"}),
    ).json()

    assert body[ENTERPRISE] == {"department": "Ops"}


def test_patch_group_members_add_remove_entra_style(okta: httpx.Client) -> None:
    first, second = (okta.post("/Users", json=new_user()).json()["id"] for _ in "ab")
    group = {"schemas": [GROUP], "displayName": f"g-{uuid.uuid4().hex[:8]}"}
    group_id = okta.post("/Groups", json=group).json()["id"]

    okta.patch(
        f"/Groups/{group_id}",
        json=patch(
            {
                "op": "Add",
                "path": "members",
                "value": [{"value": first}, {"value": second}],
            }
        ),
    )
    removed = okta.patch(
        f"/Groups/{group_id}",
        json=patch({"op": "Remove", "path": "members", "value": [{"value": first}]}),
    )

    assert removed.status_code == 200
    assert [m["value"] for m in removed.json()["members"]] == [second]


def test_patch_loses_what_the_response_lambda_does_not_emit(
    okta: httpx.Client, sandbox: Sandbox
) -> None:
    user_id = okta.post("/Users", json=new_user()).json()["id"]
    before = sandbox.tenant.store.db.execute(
        "SELECT password_hash FROM users WHERE id = ?", (user_id,)
    ).fetchone()

    okta.patch(
        f"/Users/{user_id}",
        json=patch({"op": "replace", "path": "password", "value": "n3w-secret"}),
    )

    after = sandbox.tenant.store.db.execute(
        "SELECT password_hash FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    assert before[0] is None and after[0] is not None


# --- sandbox settings --------------------------------------------------------------


def test_latency_adds_a_fixed_delay(make_sandbox, client_for) -> None:  # noqa: ANN001
    sb = make_sandbox(SandboxConfig(latency=0.2))
    with client_for(sb) as client:
        client.get("/Groups")
        started = time.perf_counter()
        client.get("/Groups")
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.2


def test_clock_and_id_seed_make_builds_deterministic(
    tmp_path: Path, seed_dir: Path
) -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    config = SandboxConfig(clock=lambda: moment, id_seed=7)
    bodies = []

    for name in ("a.sqlite", "b.sqlite"):
        with Sandbox(tmp_path / name, seed_dir=seed_dir, config=config) as sb:
            ids = sb.tenant.ingest_users([new_user("same")])
            bodies.append((ids, sb.tenant.get("User", ids[0])["meta"]["created"]))

    assert bodies[0] == bodies[1]
    assert bodies[0][1] == "2024-05-06T07:08:09.123Z"


def test_state_survives_a_restart(tmp_path: Path, seed_dir: Path, client_for) -> None:  # noqa: ANN001
    with Sandbox(tmp_path / "t.sqlite", seed_dir=seed_dir) as sb:
        (user_id,) = sb.tenant.ingest_users([new_user()])

    with Sandbox(tmp_path / "t.sqlite") as sb, client_for(sb) as client:
        assert client.get(f"/Users/{user_id}").status_code == 200


def test_ingest_users_with_external_ids_and_resource(fresh_sandbox: Sandbox) -> None:
    user = new_user(schemas=[USER, ENTERPRISE], **{ENTERPRISE: {"division": "R&D"}})
    when = dt.datetime(2023, 1, 2, tzinfo=dt.UTC)

    (user_id,) = fresh_sandbox.tenant.ingest_users(
        [user], resource="EnterpriseUser", external_ids=["okta-1"], when=when
    )

    body = fresh_sandbox.tenant.get("EnterpriseUser", user_id)
    assert body["externalId"] == "okta-1"
    assert body[ENTERPRISE] == {"division": "R&D"}
    assert body["meta"]["created"] == "2023-01-02T00:00:00.000Z"


# --- input limits ------------------------------------------------------------

INVALID_JSON = [{"code": "[invalid]", "message": "Your JSON was invalid"}]


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", b"caf\xe9", b"\xed\xa0\x80", b"\xc0\xaf"],
    ids=["ff-fe", "latin-1", "utf8-surrogate", "overlong"],
)
def test_invalid_utf8_body_is_400_invalid_json_and_stores_nothing(
    fresh: httpx.Client, fresh_sandbox: Sandbox, raw: bytes
) -> None:
    body = b'{"schemas":["' + USER.encode() + b'"],"userName":"' + raw + b'"}'

    response = fresh.post(
        "/Users", content=body, headers={"Content-Type": "application/scim+json"}
    )

    assert response.status_code == 400
    assert response.json()[FA_ERROR]["generalErrors"] == INVALID_JSON
    assert response.json()["detail"].startswith("Request failed")
    assert fresh_sandbox.tenant.counts()["users"] == 0


def test_escaped_lone_surrogate_is_400_invalid_json(
    fresh: httpx.Client, fresh_sandbox: Sandbox
) -> None:
    body = b'{"schemas":["' + USER.encode() + b'"],"userName":"a\\udcffb"}'

    response = fresh.post("/Users", content=body)

    assert response.status_code == 400
    assert response.json()[FA_ERROR]["generalErrors"] == INVALID_JSON
    assert fresh_sandbox.tenant.counts()["users"] == 0


def test_invalid_utf8_is_refused_on_put_and_patch_too(fresh: httpx.Client) -> None:
    user_id = fresh.post("/Users", json=new_user("ada")).json()["id"]
    bad = b'{"schemas":["' + USER.encode() + b'"],"userName":"\xff"}'

    put = fresh.put(f"/Users/{user_id}", content=bad)
    patched = fresh.patch(f"/Users/{user_id}", content=bad)

    assert (put.status_code, patched.status_code) == (400, 400)
    assert fresh.get(f"/Users/{user_id}").json()["userName"] == "ada"


def test_body_above_the_limit_is_413_naming_the_limit(
    fresh: httpx.Client, fresh_sandbox: Sandbox
) -> None:
    huge = new_user("x" * (10 * 1024 * 1024))

    response = fresh.post("/Users", json=huge)

    assert response.status_code == 413
    assert response.json()["status"] == "413"
    assert "1,048,576 bytes" in response.json()["detail"]
    assert "max_body_bytes" in response.json()["detail"]
    assert fresh_sandbox.tenant.counts()["users"] == 0


def test_body_limit_applies_to_chunked_bodies_and_is_a_setting(
    make_sandbox,  # noqa: ANN001
    client_for,  # noqa: ANN001
) -> None:
    sb = make_sandbox(SandboxConfig(max_body_bytes=1000))
    body = json.dumps(new_user("y" * 2000)).encode()

    with client_for(sb) as client:
        chunked = client.post("/Users", content=iter([body[:500], body[500:]]))
        small = client.post("/Users", json=new_user("small"))

    assert chunked.status_code == 413
    assert "1,000 bytes" in chunked.json()["detail"]
    assert small.status_code == 201
    assert sb.tenant.counts()["users"] == 1


@pytest.mark.parametrize(
    ("user", "field"),
    [
        ({"userName": "nul\u0000byte"}, "user.username"),
        (
            {
                "userName": "nul-email",
                "emails": [{"value": "a\u0000@example.com", "primary": True}],
            },
            "user.email",
        ),
    ],
)
def test_nul_character_in_username_or_email_is_400_naming_the_field(
    fresh: httpx.Client, fresh_sandbox: Sandbox, user: dict[str, Any], field: str
) -> None:
    response = fresh.post("/Users", json={"schemas": [USER], **user})

    assert response.status_code == 400
    errors = response.json()[FA_ERROR]["fieldErrors"]
    assert list(errors) == [field]
    assert errors[field][0]["code"] == f"[invalid]{field}"
    assert "NUL" in errors[field][0]["message"]
    assert fresh_sandbox.tenant.counts()["users"] == 0


def test_username_and_email_are_limited_to_191_characters(
    fresh: httpx.Client, fresh_sandbox: Sandbox
) -> None:
    at_limit = fresh.post("/Users", json={"schemas": [USER], "userName": "a" * 191})
    long_name = fresh.post("/Users", json={"schemas": [USER], "userName": "b" * 192})
    long_email = fresh.post(
        "/Users",
        json=new_user(
            "c", emails=[{"value": "c" * 180 + "@example.com", "primary": True}]
        ),
    )

    assert at_limit.status_code == 201
    assert long_name.status_code == 400
    assert long_name.json()[FA_ERROR]["fieldErrors"]["user.username"] == [
        {
            "code": "[tooLong]user.username",
            "message": "The [user.username] property is 192 characters long;"
            " the maximum is 191.",
        }
    ]
    assert long_email.status_code == 400
    assert list(long_email.json()[FA_ERROR]["fieldErrors"]) == ["user.email"]
    assert fresh_sandbox.tenant.counts()["users"] == 1


def test_field_limit_is_a_setting_and_guards_put_and_patch(
    make_sandbox,  # noqa: ANN001
    client_for,  # noqa: ANN001
) -> None:
    sb = make_sandbox(SandboxConfig(max_field_length=10))
    with client_for(sb) as client:
        user_id = client.post(
            "/Users", json={"schemas": [USER], "userName": "ten-chars!"}
        )
        user_id = user_id.json()["id"]
        put = client.put(
            f"/Users/{user_id}", json={"schemas": [USER], "userName": "x" * 11}
        )
        patched = client.patch(
            f"/Users/{user_id}",
            json=patch({"op": "replace", "path": "userName", "value": "y" * 11}),
        )
        kept = client.get(f"/Users/{user_id}").json()["userName"]

    assert (put.status_code, patched.status_code) == (400, 400)
    assert "user.username" in patched.json()[FA_ERROR]["fieldErrors"]
    assert kept == "ten-chars!"
