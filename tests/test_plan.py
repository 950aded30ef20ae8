"""Plans: normalising, validating with a problem per row, ordering, CSV files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scimtools.plan import (
    PLAN_COLUMNS,
    PlanError,
    approve_rows,
    check_plan,
    make_plan,
    order_plan,
    plan_fingerprint,
    read_plan,
    validate_plan,
    write_plan,
)

USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada"}


def patch(resource_id: str, path: str, value: object, **extra: object) -> dict:
    return {
        "op": "patch",
        "resource_type": "User",
        "resource_id": resource_id,
        "path": path,
        "value": value,
        **extra,
    }


def problems_of(rows: list[dict]) -> list[tuple[object, str, str]]:
    found = check_plan(make_plan(rows))
    return list(zip(found["row"], found["column"], found["problem"], strict=True))


def test_make_plan_adds_every_column_and_normalises_spellings() -> None:
    plan = make_plan(
        [{"op": "Remove-Member", "resource_type": "groups", "resource_id": "g1"}]
    )

    assert list(plan.columns[: len(PLAN_COLUMNS)]) == list(PLAN_COLUMNS)
    assert plan.loc[0, "op"] == "remove_member"
    assert plan.loc[0, "resource_type"] == "Group"
    assert plan.loc[0, "path"] is None


def test_a_column_name_becomes_its_scim_path() -> None:
    plan = make_plan([patch("u1", "department", "R&D")])

    assert plan.loc[0, "path"] == (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
    )


def test_a_valid_plan_has_no_problems() -> None:
    rows = [
        patch("u1", "name.givenName", "Ada", expected="Ad"),
        {"op": "deactivate", "resource_type": "User", "resource_id": "u2"},
        {"op": "create", "resource_type": "User", "value": USER},
        {
            "op": "add_member",
            "resource_type": "Group",
            "resource_id": "g1",
            "value": "ref:op-0003",
        },
    ]

    assert check_plan(make_plan(rows)).empty


def test_unknown_ops_and_resource_types_are_named_per_row() -> None:
    found = problems_of(
        [
            patch("u1", "title", "x"),
            {"op": "rename", "resource_type": "User", "resource_id": "u1"},
            {"op": "delete", "resource_type": "Device", "resource_id": "d1"},
        ]
    )

    assert [(row, column) for row, column, _ in found] == [
        (1, "op"),
        (2, "resource_type"),
    ]
    assert "unknown op 'rename'" in found[0][2]
    assert "'Device'" in found[1][2]


def test_paths_not_in_the_schema_are_refused_with_the_allowed_ones() -> None:
    found = problems_of(
        [
            patch("u1", "nickname", "A"),
            patch("u2", 'emails[type eq "work"].value', "a@x"),
            {
                "op": "patch",
                "resource_type": "Group",
                "resource_id": "g1",
                "path": "name.givenName",
                "value": "x",
            },
        ]
    )

    assert [(row, column) for row, column, _ in found] == [
        (0, "path"),
        (1, "path"),
        (2, "path"),
    ]
    assert "'nickname' is not an attribute of User" in found[0][2]
    assert "nickName" in found[0][2]


def test_rows_missing_what_their_op_needs_are_refused() -> None:
    found = problems_of(
        [
            {"op": "patch", "resource_type": "User", "path": "title", "value": "x"},
            {"op": "create", "resource_type": "User", "value": {"name": {}}},
            {"op": "add_member", "resource_type": "User", "resource_id": "u1"},
            {"op": "deactivate", "resource_type": "Group", "resource_id": "g1"},
        ]
    )

    assert {(row, column) for row, column, _ in found} == {
        (0, "resource_id"),
        (1, "value"),
        (2, "resource_type"),
        (2, "value"),
        (3, "op"),
    }


def test_contradictions_are_found_across_rows() -> None:
    found = problems_of(
        [
            patch("u1", "title", "Boss"),
            patch("u1", "title", "Chief"),
            {"op": "delete", "resource_type": "User", "resource_id": "u2"},
            patch("u2", "title", "x"),
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": "g1",
                "value": "u3",
            },
            {
                "op": "remove_member",
                "resource_type": "Group",
                "resource_id": "g1",
                "value": "u3",
            },
            {"op": "create", "resource_type": "User", "value": USER},
            {"op": "create", "resource_type": "User", "value": USER},
            patch("u4", "active", True),
            {"op": "deactivate", "resource_type": "User", "resource_id": "u4"},
        ]
    )

    rows = sorted(row for row, _, _ in found)
    assert rows == [1, 3, 5, 7, 9]
    messages = " | ".join(problem for _, _, problem in found)
    assert "row 0 sets title of u1 to another value" in messages
    assert "row 2 deletes u2" in messages
    assert "does the opposite with member u3" in messages
    assert "creates 'ada' too" in messages


def test_duplicate_op_ids_and_dangling_refs_are_refused() -> None:
    found = problems_of(
        [
            patch("u1", "title", "a", op_id="x"),
            patch("u2", "title", "b", op_id="x"),
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": "g1",
                "value": "ref:nope",
            },
        ]
    )

    assert {(row, column) for row, column, _ in found} == {(1, "op_id"), (2, "value")}


def test_validate_plan_raises_with_one_line_per_problem() -> None:
    rows = [patch("u1", "nickname", "A"), {"op": "zap", "resource_type": "User"}]

    with pytest.raises(PlanError, match="2 problem") as info:
        validate_plan(rows)

    assert len(info.value.problems) == 2
    assert "row 0 (op-0001), path:" in str(info.value)
    assert "row 1 (op-0002), op:" in str(info.value)


def test_order_puts_members_after_creates_and_deactivation_before_delete() -> None:
    plan = make_plan(
        [
            {"op": "delete", "resource_type": "User", "resource_id": "u1"},
            {"op": "delete", "resource_type": "Group", "resource_id": "g2"},
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": "g1",
                "value": "ref:op-0005",
            },
            {"op": "deactivate", "resource_type": "User", "resource_id": "u3"},
            {"op": "create", "resource_type": "User", "value": USER},
            {"op": "create", "resource_type": "Group", "value": {"displayName": "G"}},
            patch("u9", "title", "x"),
        ]
    )

    ordered = order_plan(plan)

    assert ordered["op_id"].tolist() == [
        "op-0005",
        "op-0006",
        "op-0007",
        "op-0003",
        "op-0004",
        "op-0002",
        "op-0001",
    ]


def test_a_hand_written_csv_plan_reads_back(tmp_path: Path) -> None:
    csv = tmp_path / "plan.csv"
    csv.write_text(
        "op,resource_type,resource_id,path,expected,value,reason\n"
        'patch,User,u1,given_name,"""Ad""","""Ada""",typo\n'
        "deactivate,User,u2,,true,,left\n"
        'create,User,,,,"{""userName"": ""bo""}",new\n',
        encoding="utf-8",
    )

    plan = validate_plan(read_plan(csv))

    assert plan["op"].tolist() == ["create", "patch", "deactivate"]
    assert plan.loc[1, ["path", "expected", "value"]].tolist() == [
        "name.givenName",
        "Ad",
        "Ada",
    ]
    assert plan.loc[2, "expected"] is True
    assert plan.loc[0, "value"] == {"userName": "bo"}
    assert plan["approved"].tolist() == [True, True, True]


def test_write_and_read_keep_values_and_approval(tmp_path: Path) -> None:
    plan = make_plan(
        [
            patch("u1", "active", False, approved=False),
            {"op": "create", "resource_type": "User", "value": USER, "approved": 1},
        ]
    )

    back = read_plan(write_plan(plan, tmp_path / "p.csv"))

    assert back["value"].tolist() == [False, USER]
    assert back["approved"].tolist() == [False, True]
    assert plan_fingerprint(back) == plan_fingerprint(plan)


def test_approve_rows_by_rule_changes_only_the_chosen_rows() -> None:
    plan = make_plan(
        [
            patch("u1", "title", "a", approved=False, severity="low"),
            patch("u2", "title", "b", approved=False, severity="high"),
        ]
    )

    approved = approve_rows(plan, severity=["low"])

    assert approved["approved"].tolist() == [True, False]
    assert plan["approved"].tolist() == [False, False]
    assert plan_fingerprint(approved) != plan_fingerprint(plan)


def test_with_an_approved_column_an_empty_cell_is_not_approved() -> None:
    plan = make_plan(
        [patch("u1", "title", "a", approved=True), patch("u2", "title", "b")]
    )

    assert plan["approved"].tolist() == [True, False]


def test_an_empty_plan_is_valid() -> None:
    assert validate_plan(pd.DataFrame()).empty


def test_the_review_panel_filters_and_approves_rows() -> None:
    from scimtools.widgets import review_plan

    plan = make_plan(
        [
            patch("u1", "title", "a", approved=False, severity="high", kind="x"),
            patch("u2", "title", "b", approved=False, severity="low", kind="x"),
        ]
    )
    panel = review_plan(plan)

    panel.filters["severity"].value = "low"
    panel._set_shown(True)
    panel.filters["severity"].value = "(all)"
    first_box = panel.rows.children[0].children[0]
    first_box.value = True

    assert panel.plan["approved"].tolist() == [True, True]
    assert panel.counts.value == "2 shown; 2 of 2 approved"


def test_the_package_does_not_import_ipywidgets() -> None:
    import subprocess
    import sys

    code = "import sys, scimtools; print('ipywidgets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "False"


def test_a_plan_from_real_audit_findings_validates() -> None:
    from scimtools.audit import audit_tenant
    from scimtools.plan import plan_from_findings

    users = [
        {
            "id": "u1",
            "userName": "ada",
            "active": False,
            "name": {"givenName": "Ada", "familyName": "King"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "manager": "m-7"
            },
            "emails": [{"value": "ada@example.com", "primary": True}],
        }
    ]
    groups = [{"id": "g1", "displayName": "G", "members": [{"value": "u9"}]}]
    findings = audit_tenant(users, groups).findings

    plan = validate_plan(plan_from_findings(findings))

    assert sorted(zip(plan["op"], plan["resource_id"], plan["value"], strict=True)) == [
        ("patch", "u1", "m-7"),
        ("remove_member", "g1", "u9"),
    ]
    assert set(plan["source"]) <= set(findings["finding_id"])
    assert not plan["approved"].any()


def test_a_plan_from_conflict_resolutions_keeps_their_ids() -> None:
    from scimtools.plan import plan_from_conflicts

    conflicts = pd.DataFrame(
        [
            {
                "conflict_id": "c1",
                "kind": "status_disagreement",
                "severity": "high",
                "resolution": {
                    "action": "set_status",
                    "winner": "okta",
                    "operations": [
                        {
                            "method": "PATCH",
                            "endpoint": "Users",
                            "id": "u1",
                            "op": "replace",
                            "path": "active",
                            "value": False,
                        },
                        {
                            "method": "PATCH",
                            "endpoint": "Groups",
                            "id": "g1",
                            "op": "remove",
                            "path": 'members[value eq "u1"]',
                        },
                    ],
                },
            }
        ]
    )

    plan = validate_plan(plan_from_conflicts(conflicts))

    assert plan[["op", "resource_id", "value", "source", "client"]].values.tolist() == [
        ["remove_member", "g1", "u1", "c1", "okta"],
        ["deactivate", "u1", None, "c1", "okta"],
    ]


def test_kept_values_that_are_not_text_are_expected_as_such() -> None:
    # The audit shows a kept boolean as the text "false"; the tenant holds False.
    from scimtools.plan import plan_from_findings

    findings = pd.DataFrame(
        [
            {
                "finding_id": "f1",
                "kind": "lost_although_mapped",
                "resource_type": "User",
                "resource_id": "u1",
                "kept": "false",
                "fix": "data",
                "fix_path": "active",
                "fix_value": "true",
            },
            {
                "finding_id": "f2",
                "kind": "lost_although_mapped",
                "resource_type": "User",
                "resource_id": "u1",
                "kept": "0042",
                "fix": "data",
                "fix_path": "name.familyName",
                "fix_value": '"King"',
            },
        ]
    )

    plan = plan_from_findings(findings)

    assert plan["expected"].tolist() == [False, "0042"]
    assert plan["value"].tolist() == [True, "King"]


def test_enterprise_fixes_are_written_through_enterprise_users() -> None:
    from scimtools.frames import ENTERPRISE
    from scimtools.plan import plan_from_findings

    findings = pd.DataFrame(
        [
            {
                "finding_id": "f1",
                "kind": "lost_although_mapped",
                "resource_type": "User",
                "resource_id": "u1",
                "fix": "data",
                "fix_path": f"{ENTERPRISE}:department",
                "fix_value": '"Sales"',
            },
            {
                "finding_id": "f2",
                "kind": "lost_although_mapped",
                "resource_type": "User",
                "resource_id": "u1",
                "fix": "data",
                "fix_path": "name.familyName",
                "fix_value": '"King"',
            },
        ]
    )

    plan = validate_plan(plan_from_findings(findings))

    assert plan[["resource_type", "path"]].values.tolist() == [
        ["EnterpriseUser", f"{ENTERPRISE}:department"],
        ["User", "name.familyName"],
    ]


def test_a_plan_from_what_find_conflicts_really_returns() -> None:
    # The adapter is checked against find_conflicts' own output, not a copy of
    # its format: one row per SCIM operation, each read the way it was meant.
    from scimtools.attribution import client_view_from_frame
    from scimtools.conflicts import find_conflicts, tenant_frames
    from scimtools.frames import ENTERPRISE
    from scimtools.plan import plan_from_conflicts

    tenant = pd.DataFrame(
        {
            "id": ["u1", "u2", "u3"],
            "external_id": ["00uA", "e-2", "00uC"],
            "user_name": ["a@example.com", "b@example.com", "c@example.com"],
            "family_name": ["Lovelace", "Byron", "Curie"],
            "department": ["R&D", "Ops", "Lab"],
            "active": [False, True, True],
        }
    )
    okta = client_view_from_frame(
        "okta",
        pd.DataFrame(
            {
                "key": ["00uA", "00uC"],
                "user_name": ["a@example.com", "c@example.com"],
                "family_name": ["King", "Curie"],
                "department": ["R&D", "Lab"],
                "active": [True, True],
            }
        ),
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame(
            {
                "key": ["e-1", "e-2", "e-3"],
                "user_name": ["a@example.com", "b@example.com", "c@example.com"],
                "family_name": ["Lovelace", "Byron", "Curie"],
                "department": ["R&D", "Ops", "Physics"],
                "active": [False, True, True],
            }
        ),
    )
    conflicts = find_conflicts(tenant_frames(tenant), [okta, entra])
    operations = [
        (c["conflict_id"], o)
        for c in conflicts.to_dict("records")
        for o in c["resolution"]["operations"]
    ]

    plan = validate_plan(plan_from_conflicts(conflicts))

    assert len(operations) == len(plan) >= 3
    rows = {(r.source, r.resource_id, r.path): r for r in plan.itertuples()}
    for conflict_id, o in operations:
        row = rows[(conflict_id, o["id"], o["path"])]
        assert row.op == "patch" and row.value == o["value"]
        enterprise = o["path"].startswith(ENTERPRISE)
        assert row.resource_type == ("EnterpriseUser" if enterprise else "User")
    assert {p for _, _, p in rows} >= {"active", "name.familyName"}
    assert f"{ENTERPRISE}:department" in {p for _, _, p in rows}
