"""Replay every documented IdP PATCH against the sandbox (FusionAuth's mechanics)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimtools.sandbox import Sandbox

FIXTURES = Path("/work/shared/idp-requests")
PREFIX = "/api/scim/resource/v2"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# Ids the fixtures use for users that must exist, as written (RFC files shorten
# them) -> a name for the user the test creates.
USER_IDS = {
    "6f0c2e8a4b1d4f7e9c3a": "member",
    "3b9e5c1a-7d4f-4e2b-8c6a-0f9d3e5b1c74": "member",
    "2f7a9c3e-5d1b-4b8e-a6f0-9c3d7e1b5a28": "member",
    "d3b8f1a2-6c4e-4e9b-8a17-2f5c9e0d7b64": "other",
    "5f0c9a2e-8b1d-4c3e-a7f2-0d6b4e9c1a83": "member",
    "5f0c9a2e-8b1d-...0d6b4e9c1a83": "member",
    "5f0c9a2e...a7f2-0d6b4e9c1a83": "member",
    "5f0c9a2e...0d6b4e9c1a83": "member",
    "3a9e7c15...9e2f5a7d0b46": "other",
}


def patch_fixtures() -> list[Path]:
    found = []
    for idp in ("entra", "okta", "rfc"):
        for path in sorted((FIXTURES / idp).glob("*.json")):
            if json.loads(path.read_text())["request"]["method"] == "PATCH":
                found.append(path)
    return found


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name[:2]}"


def new_user(**extra: Any) -> dict[str, Any]:
    """An Entra-style user: enterprise URN listed, a name and a primary email."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    return {
        "schemas": [USER, ENTERPRISE],
        "userName": name,
        "name": {"givenName": "Ana", "familyName": "Ito"},
        "emails": [{"value": f"{name}@example.com", "type": "work", "primary": True}],
        **extra,
    }


@pytest.fixture
def client(fresh_sandbox: Sandbox, client_for) -> Iterator[httpx.Client]:  # noqa: ANN001
    with client_for(fresh_sandbox, "okta") as client:
        yield client


def replay(
    client: httpx.Client, path: Path, *, members: tuple[str, ...] = ("member",)
) -> dict[str, Any]:
    """Create what ``path`` refers to, send its PATCH with real ids, read back.

    A group starts with the users named in ``members``.
    """
    request = json.loads(path.read_text())["request"]
    endpoint, placeholder = request["path"].removeprefix(PREFIX).strip("/").split("/")
    users = {
        role: client.post("/Users", json=new_user()).json()["id"]
        for role in ("member", "other")
    }

    if endpoint == "Groups":
        group = {
            "schemas": [GROUP],
            "displayName": f"g-{uuid.uuid4().hex[:8]}",
            "members": [{"value": users[role]} for role in members],
        }
        target = client.post("/Groups", json=group).json()["id"]
    else:
        target = client.post("/Users", json=new_user()).json()["id"]

    text = json.dumps(request["body"])
    for fixture_value in sorted(USER_IDS, key=len, reverse=True):
        text = text.replace(fixture_value, users[USER_IDS[fixture_value]])
    response = client.patch(
        f"/{endpoint}/{target}", content=text.replace(placeholder, target)
    )
    return {
        "response": response,
        "stored": client.get(f"/{endpoint}/{target}").json(),
        "users": users,
    }


@pytest.mark.parametrize("path", patch_fixtures(), ids=fixture_id)
def test_every_documented_patch_is_answered_200(
    client: httpx.Client, path: Path
) -> None:
    result = replay(client, path)

    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json() == result["stored"]


def test_entra_manager_add_on_bare_path_is_silently_lost(client: httpx.Client) -> None:
    result = replay(client, FIXTURES / "entra/15-patch-user-manager-add.json")

    assert result["response"].status_code == 200
    assert "manager" not in result["stored"]
    assert result["stored"][ENTERPRISE] == {}


def test_entra_manager_string_is_stored_in_the_extension(client: httpx.Client) -> None:
    result = replay(client, FIXTURES / "entra/16-patch-user-manager-string.json")

    assert result["response"].status_code == 200
    assert result["stored"][ENTERPRISE] == {"manager": "4417"}


def test_okta_deactivate_sets_active_false(client: httpx.Client) -> None:
    result = replay(client, FIXTURES / "okta/07-patch-user-deactivate.json")

    assert result["stored"]["active"] is False


def test_entra_string_false_disables(client: httpx.Client) -> None:
    result = replay(client, FIXTURES / "entra/14-disable-user-string-false.json")

    assert result["stored"]["active"] is False


def test_entra_filtered_email_and_family_name_are_replaced(
    client: httpx.Client,
) -> None:
    result = replay(client, FIXTURES / "entra/09-patch-user-email-filter-path.json")

    assert result["stored"]["emails"][0]["value"] == "updatedEmail@example.com"
    assert result["stored"]["name"] == {
        "givenName": "Ana",
        "familyName": "updatedFamilyName",
    }


def test_entra_default_update_sets_the_enterprise_employee_number(
    client: httpx.Client,
) -> None:
    result = replay(client, FIXTURES / "entra/11-patch-user-replace-many-default.json")

    stored = result["stored"]
    assert stored[ENTERPRISE] == {"employeeNumber": "Olwe"}
    assert stored["externalId"] == "Olwe"
    assert stored["name"] == {"givenName": "Mirt", "familyName": "Dunsa"}
    assert "displayName" not in stored


def test_pathless_replace_with_dotted_keys_changes_only_the_email(
    client: httpx.Client,
) -> None:
    result = replay(
        client, FIXTURES / "entra/12-patch-user-pathless-replace-flagged.json"
    )

    stored = result["stored"]
    assert stored["emails"][0]["value"] == "TestQzuvyk@example.com"
    assert stored["name"] == {"givenName": "Ana", "familyName": "Ito"}
    assert stored[ENTERPRISE] == {}


def test_pathless_add_goes_to_the_empty_member_and_changes_nothing(
    client: httpx.Client,
) -> None:
    target = client.post("/Users", json=new_user()).json()
    body = json.loads((FIXTURES / "rfc/10-patch-add-pathless.json").read_text())

    response = client.patch(f"/Users/{target['id']}", json=body["request"]["body"])

    assert response.status_code == 200
    assert response.json()["emails"] == target["emails"]
    assert "nickname" not in response.json()


@pytest.mark.parametrize(
    ("name", "start", "expected"),
    [
        ("entra/23-patch-group-add-member.json", (), ["member"]),
        ("entra/23-patch-group-add-member.json", ("other",), ["other", "member"]),
        # The value's first key ($ref, null) is compared, not value: no match.
        ("entra/24-patch-group-remove-member.json", ("member",), ["member"]),
        ("entra/25-patch-group-remove-member-flagged.json", ("member",), []),
        ("okta/13-patch-group-remove-add-members.json", ("member",), ["other"]),
        # Members are listed in the order they joined the group.
        ("okta/15-patch-group-replace-members.json", ("member",), ["member", "other"]),
        ("rfc/09-patch-add-member.json", (), ["member"]),
        ("rfc/11-patch-remove-member.json", ("other", "member"), ["other"]),
        ("rfc/12-patch-remove-and-add-member.json", ("member",), ["other"]),
        ("rfc/13-patch-replace-members.json", ("other",), ["other", "member"]),
    ],
)
def test_group_member_patches_leave_exact_member_lists(
    client: httpx.Client, name: str, start: tuple[str, ...], expected: list[str]
) -> None:
    result = replay(client, FIXTURES / name, members=start)

    members = [m["value"] for m in result["stored"].get("members", [])]
    assert members == [result["users"][role] for role in expected]


def test_remove_by_value_with_value_key_first_removes_the_member(
    client: httpx.Client,
) -> None:
    first, second = (client.post("/Users", json=new_user()).json()["id"] for _ in "ab")
    group = {
        "schemas": [GROUP],
        "displayName": "g-remove",
        "members": [{"value": first}, {"value": second}],
    }
    group_id = client.post("/Groups", json=group).json()["id"]
    op = {
        "op": "Remove",
        "path": "members",
        "value": [{"value": second, "$ref": None}, {"value": first}],
    }

    response = client.patch(
        f"/Groups/{group_id}", json={"schemas": [PATCH], "Operations": [op]}
    )

    assert response.status_code == 200
    assert "members" not in response.json()


def test_several_filtered_removals_remove_exactly_their_members(
    client: httpx.Client,
) -> None:
    # Okta removes members one filtered path each, then adds; before 1.52.1
    # FusionAuth removed by index in order and took the wrong members (#2834).
    ids = [client.post("/Users", json=new_user()).json()["id"] for _ in "abcde"]
    group = {
        "schemas": [GROUP],
        "displayName": "g-several",
        "members": [{"value": i} for i in ids[:4]],
    }
    group_id = client.post("/Groups", json=group).json()["id"]
    ops = [
        {"op": "remove", "path": f'members[value eq "{ids[0]}"]'},
        {"op": "remove", "path": f'members[value eq "{ids[1]}"]'},
        {"op": "add", "path": "members", "value": [{"value": ids[4]}]},
    ]

    response = client.patch(
        f"/Groups/{group_id}", json={"schemas": [PATCH], "Operations": ops}
    )

    assert response.status_code == 200
    # (Members of one instant are listed by userId, #2798.)
    assert sorted(m["value"] for m in response.json()["members"]) == sorted(ids[2:])


def test_filtered_path_that_matches_nothing_changes_nothing(
    client: httpx.Client,
) -> None:
    before = client.post("/Users", json=new_user()).json()
    op = {"op": "replace", "path": 'emails[type eq "home"].value', "value": "x@y.org"}

    response = client.patch(
        f"/Users/{before['id']}", json={"schemas": [PATCH], "Operations": [op]}
    )

    assert response.status_code == 200
    after = response.json()
    assert {k: v for k, v in after.items() if k != "meta"} == {
        k: v for k, v in before.items() if k != "meta"
    }


@pytest.mark.parametrize("op", ["move", "copy", "test", "merge", None])
def test_unknown_op_is_invalid_patch(client: httpx.Client, op: str | None) -> None:
    user_id = client.post("/Users", json=new_user()).json()["id"]
    body = {"schemas": [PATCH], "Operations": [{"op": op, "path": "active"}]}

    response = client.patch(f"/Users/{user_id}", json=body)

    assert response.status_code == 400
    errors = response.json()[
        "urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error"
    ]["generalErrors"]
    assert errors == [
        {"code": "[invalid]patch", "message": "Invalid SCIM patch request."}
    ]


def test_add_below_a_string_is_invalid_patch(client: httpx.Client) -> None:
    user_id = client.post("/Users", json=new_user()).json()["id"]
    op = {"op": "add", "path": "userName.first", "value": "x"}

    response = client.patch(
        f"/Users/{user_id}", json={"schemas": [PATCH], "Operations": [op]}
    )

    assert response.status_code == 400
