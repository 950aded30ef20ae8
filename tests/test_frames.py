"""Frames: the column table, wide and long tables, Parquet exports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from scimtools import (
    COLUMNS,
    Export,
    SCIMClient,
    emails_frame,
    export_tenant,
    groups_frame,
    memberships_frame,
    phones_frame,
    users_frame,
)
from scimtools.frames import ENTERPRISE, column_for, path_for, read_path, to_scim

ADA = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
    "id": "u1",
    "externalId": "okta-1",
    "userName": "ada",
    "active": True,
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [
        {"value": "ada@home.example", "type": "home"},
        {"value": "ada@work.example", "type": "work", "primary": True},
    ],
    "phoneNumbers": [{"value": "+44 1", "type": "mobile", "primary": True}],
    ENTERPRISE: {
        "department": "Engines",
        "employeeNumber": "42",
        "manager": {"managerId": "u0", "displayName": "Babbage"},
    },
    "meta": {
        "resourceType": "User",
        "created": "2022-04-08T21:03:32.359Z",
        "lastModified": "2022-04-09T08:00:00Z",
    },
}
BOB = {"id": "u2", "userName": "bob", "meta": {"created": "2023-01-01T00:00:00Z"}}


def test_every_column_maps_to_a_path_and_back() -> None:
    for column in COLUMNS:
        assert path_for(column.name, table=column.table) == column.path
        assert column_for(column.path, table=column.table) == column.name


def test_the_table_knows_both_spellings_of_the_names_the_issue_lists() -> None:
    assert path_for("user_name") == "userName"
    assert path_for("given_name") == "name.givenName"
    assert path_for("email") == "emails[primary].value"
    assert path_for("department") == f"{ENTERPRISE}:department"
    assert path_for("manager_id") == f"{ENTERPRISE}:manager.value"
    assert path_for("created") == "meta.created"
    assert column_for(f"{ENTERPRISE}:manager.managerId") == "manager_id"
    with pytest.raises(ValueError, match="no users column"):
        path_for("shoe_size")


def test_users_frame_holds_primary_values_and_aware_timestamps() -> None:
    frame = users_frame([ADA, BOB])

    ada = frame.iloc[0]
    assert ada["email"] == "ada@work.example"
    assert ada["phone"] == "+44 1"
    assert ada["department"] == "Engines"
    assert ada["manager_id"] == "u0"
    assert ada["manager_name"] == "Babbage"
    assert ada["family_name"] == "Lovelace"
    assert frame["created"].tolist() == [
        pd.Timestamp("2022-04-08T21:03:32.359", tz="UTC"),
        pd.Timestamp("2023-01-01T00:00:00", tz="UTC"),
    ]
    assert str(frame["created"].dt.tz) == "UTC"
    assert frame["active"].tolist() == [True, pd.NA]
    assert pd.isna(frame.iloc[1]["email"])


def test_manager_value_wins_over_fusionauth_manager_id() -> None:
    user = {"id": "u", ENTERPRISE: {"manager": {"value": "rfc", "managerId": "fa"}}}

    assert users_frame([user]).loc[0, "manager_id"] == "rfc"


def test_long_tables_keep_every_email_and_phone() -> None:
    emails = emails_frame([ADA, BOB])
    phones = phones_frame([ADA])

    assert emails[["user_id", "value", "type", "primary"]].values.tolist() == [
        ["u1", "ada@home.example", "home", False],
        ["u1", "ada@work.example", "work", True],
    ]
    assert phones["value"].tolist() == ["+44 1"]


def test_groups_and_memberships_accept_display_and_display_name() -> None:
    groups = [
        {
            "id": "g1",
            "displayName": "Ops",
            "members": [
                {"value": "u1", "display": "ada", "$ref": "https://x/Users/u1"},
                {"value": "u2", "displayName": "bob"},
            ],
            "meta": {"created": "2022-04-08T21:03:32Z"},
        },
        {"id": "g2", "displayName": "Empty"},
    ]

    frame = groups_frame(groups)
    members = memberships_frame(groups)

    assert frame["member_count"].tolist() == [2, 0]
    assert frame["created"].iloc[0] == pd.Timestamp("2022-04-08T21:03:32Z")
    assert members.fillna("-").values.tolist() == [
        ["g1", "u1", "ada", "https://x/Users/u1", "-"],
        ["g1", "u2", "bob", "-", "-"],
    ]


def test_empty_inputs_give_empty_frames_with_columns() -> None:
    assert list(users_frame([]).columns)[:3] == ["id", "external_id", "user_name"]
    assert emails_frame([]).empty
    assert list(memberships_frame([]).columns) == [
        "group_id",
        "user_id",
        "display",
        "ref",
        "type",
    ]


def test_rows_map_back_to_scim_through_the_same_table() -> None:
    row = users_frame([ADA]).iloc[0].to_dict()

    resource = to_scim(row)

    for column in ("user_name", "given_name", "email", "department", "external_id"):
        assert read_path(resource, path_for(column)) == row[column]
    assert resource["active"] is True
    assert "id" not in resource and "meta" not in resource
    assert resource["emails"] == [
        {"value": "ada@work.example", "type": "work", "primary": True}
    ]


def _export() -> Export:
    groups = [{"id": "g1", "displayName": "Ops", "members": [{"value": "u1"}]}]
    return Export(
        users=users_frame([ADA, BOB]),
        enterprise_users=users_frame([ADA]),
        emails=emails_frame([ADA, BOB]),
        phones=phones_frame([ADA, BOB]),
        groups=groups_frame(groups),
        memberships=memberships_frame(groups),
        metadata={"server": "https://x", "partitions": ['userName sw "a"']},
    )


def test_export_saves_and_loads_parquet_with_metadata(tmp_path: Path) -> None:
    export = _export()

    export.save(tmp_path / "run")
    loaded = Export.load(tmp_path / "run")

    assert loaded.metadata == export.metadata
    for name in ("users", "enterprise_users", "emails", "groups", "memberships"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(export, name))
    assert str(loaded.users["created"].dt.tz) == "UTC"


def test_loading_a_directory_without_an_export_says_what_is_missing(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError, match=r"users.parquet is missing"):
        Export.load(tmp_path)


def test_export_tenant_collects_every_endpoint_and_the_run_metadata() -> None:
    enterprise = dict(ADA, meta=dict(ADA["meta"], resourceType="EnterpriseUser"))
    collections: dict[str, list[dict[str, Any]]] = {
        "Users": [ADA, BOB],
        "EnterpriseUsers": [enterprise],
        "Groups": [{"id": "g1", "displayName": "Ops", "members": [{"value": "u2"}]}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        items = collections[request.url.path.rsplit("/", 1)[-1]]
        return httpx.Response(
            200, json={"totalResults": len(items), "Resources": items}
        )

    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with SCIMClient(
        "https://x/v2",
        token="t",
        transport=httpx.MockTransport(handler),
        progress=False,
    ) as client:
        export = export_tenant(client, clock=lambda: when)

    assert export.counts() == {
        "users": 2,
        "enterprise_users": 1,
        "emails": 2,
        "phones": 1,
        "groups": 1,
        "memberships": 1,
    }
    assert export.metadata["exported_at"] == "2024-05-01T00:00:00+00:00"
    assert export.metadata["server"] == "https://x/v2"
    assert export.metadata["reports"]["Users"]["complete"] is True
    assert export.enterprise_users.loc[0, "resource_type"] == "EnterpriseUser"


def test_sandbox_tenant_exports_into_frames(fresh_sandbox: Any) -> None:
    sb = fresh_sandbox
    people = [
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": f"person{i}",
            "name": {"givenName": "P", "familyName": str(i)},
            "emails": [{"value": f"p{i}@example.com", "primary": True}],
            ENTERPRISE: {"department": "Ops"},
        }
        for i in range(12)
    ]

    ids = sb.tenant.ingest_users(people, resource="EnterpriseUser")
    sb.tenant.create("Group", {"displayName": "Ops", "members": [{"value": ids[0]}]})
    token = sb.mint_token("auditor", ttl=30 * 86400)

    with SCIMClient(sb.base_url, token=token, progress=False) as client:
        export = export_tenant(client)

    assert sorted(export.users["id"]) == sorted(ids)
    assert set(export.users["department"]) == {"Ops"}
    assert export.users["created"].notna().all()
    assert export.memberships["user_id"].tolist() == [ids[0]]
