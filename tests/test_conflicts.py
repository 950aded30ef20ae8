"""Attribution of tenant users to SCIM clients, and the conflicts between them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scimtools.attribution import (
    attribute_tenant,
    client_view_from_frame,
    match_users,
    read_client_view,
)
from scimtools.conflicts import (
    COMPARED_ATTRIBUTES,
    CONFLICT_KINDS,
    find_conflicts,
    normalise_values,
    tenant_frames,
)
from scimtools.frames import users_frame

OKTA_ALICE = "00uAl1ce0000000000AA"
ENTRA_GUID = "7d3c1a52-58a4-4b0e-9a51-2f8f6d1e0c11"


def kinds(conflicts: pd.DataFrame) -> list[str]:
    return sorted(conflicts["kind"])


# -- attribution ----------------------------------------------------------------------


def test_every_match_carries_its_rule_and_score() -> None:
    tenant = pd.DataFrame(
        {
            "id": ["u1", "u2", "u3", "u4"],
            "external_id": ["00uA", None, None, None],
            "user_name": ["a@x.com", "b@x.com", "cc", "dd"],
            "email": [None, None, "c@x.com", None],
            "given_name": [None, None, None, "Zoë"],
            "family_name": [None, None, None, "Kowalská"],
            "phone": [None, None, None, "+1 (212) 555-0101"],
        }
    )
    view = client_view_from_frame(
        "okta",
        pd.DataFrame(
            {
                "key": ["00uA", "k2", "k3", "k4", "k5"],
                "user_name": ["zz", "B@X.COM", "C@x.com", "zk", "nobody"],
                "given_name": [None, None, None, "Zoe", None],
                "family_name": [None, None, None, "Kowalska", None],
                "phone": [None, None, None, "212-555-0101", None],
            }
        ),
    )

    matches = match_users(tenant, [view]).set_index("key")

    assert matches.loc["00uA", ["tenant_id", "rule", "score"]].tolist() == [
        "u1",
        "externalId",
        100.0,
    ]
    assert matches.loc["k2", ["tenant_id", "rule"]].tolist() == ["u2", "userName"]
    assert matches.loc["k3", ["tenant_id", "rule"]].tolist() == ["u3", "email"]
    assert matches.loc["k4", ["tenant_id", "rule"]].tolist() == ["u4", "fuzzy"]
    assert matches.loc["k4", "score"] == 100.0
    assert matches.loc["k5", "status"] == "unmatched"


def test_a_record_two_users_fit_is_ambiguous_not_merged() -> None:
    tenant = pd.DataFrame(
        {"id": ["u1", "u2"], "user_name": ["ann", "ann2"], "email": ["a@x", "a@x"]}
    )
    view = client_view_from_frame(
        "okta", pd.DataFrame({"key": ["k"], "email": ["a@x"]})
    )

    match = match_users(tenant, [view]).iloc[0]

    assert match["status"] == "ambiguous" and pd.isna(match["tenant_id"])
    assert match["candidates"] == "u1,u2"


def test_a_csv_export_is_read_as_a_client_view(tmp_path: Path) -> None:
    path = tmp_path / "entra.csv"
    path.write_text(
        "external_id,user_name,email,active,groups\n"
        f"{ENTRA_GUID},alice@example.com,alice@example.com,true,Engineering;Sales\n"
    )

    view = read_client_view(path)

    assert view.client == "entra"
    assert view.users.loc[0, "key"] == ENTRA_GUID
    assert sorted(view.members["group_key"]) == ["Engineering", "Sales"]


def test_a_scim_list_response_is_read_as_a_client_view(tmp_path: Path) -> None:
    path = tmp_path / "okta.json"
    body = {
        "Resources": [
            {"id": "u1", "externalId": OKTA_ALICE, "userName": "alice@example.com"}
        ]
    }
    path.write_text(json.dumps(body))

    view = read_client_view(path)

    assert view.users.loc[0, ["key", "tenant_id"]].tolist() == [OKTA_ALICE, "u1"]


# -- cases from public reports ---------------------------------------------------------


def test_a_create_of_a_taken_email_in_other_case_is_a_create_conflict() -> None:
    # Okta creates alice@example.com; Entra's later create of Alice@Example.com
    # fails with 409, and Entra retries it every cycle.
    tenant = tenant_frames(
        pd.DataFrame(
            {
                "id": ["u1"],
                "external_id": [OKTA_ALICE],
                "user_name": ["alice@example.com"],
                "email": ["alice@example.com"],
                "active": [True],
            }
        )
    )
    okta = client_view_from_frame(
        "okta", pd.DataFrame({"key": [OKTA_ALICE], "user_name": ["alice@example.com"]})
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame(
            {
                "key": [ENTRA_GUID],
                "user_name": ["Alice@Example.com"],
                "email": ["Alice@Example.com"],
                "create_status": [409],
            }
        ),
    )

    conflict = find_conflicts(tenant, [okta, entra]).iloc[0]

    assert conflict["kind"] == "create_conflict" and conflict["severity"] == "high"
    assert conflict["tenant_ids"] == "u1" and conflict["clients"] == "entra,okta"
    assert conflict["evidence"]["taken_value"] == "alice@example.com"
    assert conflict["evidence"]["held_by"] == ["okta"]
    assert conflict["resolution"]["client_actions"] == [
        {"client": "entra", "action": "link", "key": ENTRA_GUID, "tenant_id": "u1"}
    ]
    assert conflict["action"] == conflict["resolution"]["action"] == "link_to_existing"


def test_a_taken_address_held_by_the_same_client_calls_for_a_merge_in_the_idp() -> None:
    # Entra's guest account carries the member account's address in other case:
    # linking it would have two Entra accounts write one user.
    tenant = tenant_frames(
        pd.DataFrame(
            {
                "id": ["u1"],
                "external_id": [ENTRA_GUID],
                "user_name": ["alice@example.com"],
                "email": ["alice@example.com"],
                "active": [True],
            }
        )
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame(
            {
                "key": [ENTRA_GUID, "alice_example.com#EXT#"],
                "user_name": ["alice@example.com", "Alice@Example.com"],
                "email": ["alice@example.com", "Alice@Example.com"],
                "create_status": [201, 409],
            }
        ),
    )

    conflicts = find_conflicts(tenant, [entra])
    conflict = conflicts[conflicts["kind"] == "create_conflict"].iloc[0]

    assert conflict["evidence"]["held_by"] == ["entra"]
    assert conflict["action"] == conflict["resolution"]["action"] == "merge_in_idp"
    assert conflict["resolution"]["client_actions"] == [
        {
            "client": "entra",
            "action": "merge",
            "key": "alice_example.com#EXT#",
            "tenant_id": "u1",
        }
    ]


def test_one_person_created_under_two_external_ids_is_a_duplicate() -> None:
    tenant = tenant_frames(
        pd.DataFrame(
            {
                "id": ["u1", "u2"],
                "external_id": [OKTA_ALICE, ENTRA_GUID],
                "user_name": ["alice@example.com", "asmith@example.org"],
                "email": ["alice@example.com", None],
                "given_name": ["Alice", "Alice"],
                "family_name": ["Smith", "Smith"],
                "phone": ["+1 212-555-0101", "(212) 555-0101"],
                "active": [True, True],
            }
        ),
        memberships=pd.DataFrame({"group_id": ["g1"], "user_id": ["u2"]}),
    )
    okta = client_view_from_frame(
        "okta",
        pd.DataFrame(
            {
                "key": [OKTA_ALICE],
                "user_name": ["alice@example.com"],
                "given_name": ["Alice"],
                "family_name": ["Smith"],
                "phone": ["+1 212-555-0101"],
            }
        ),
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame(
            {
                "key": [ENTRA_GUID],
                "user_name": ["asmith@example.org"],
                "given_name": ["Alice"],
                "family_name": ["Smith"],
                "phone": ["(212) 555-0101"],
            }
        ),
    )

    conflicts = find_conflicts(tenant, [okta, entra])
    duplicate = conflicts[conflicts["kind"] == "duplicate_identity"].iloc[0]

    assert kinds(conflicts) == ["duplicate_identity"]
    assert duplicate["tenant_ids"] == "u1,u2"
    assert duplicate["evidence"]["rule"] == "fuzzy"
    assert duplicate["evidence"]["score"] == 100.0
    resolution = duplicate["resolution"]
    assert (resolution["keep"], resolution["remove"]) == ("u1", "u2")
    assert resolution["operations"] == [
        {
            "method": "PATCH",
            "endpoint": "Groups",
            "id": "g1",
            "op": "add",
            "path": "members",
            "value": [{"value": "u1"}],
        },
        {"method": "DELETE", "endpoint": "Users", "id": "u2"},
    ]


def test_okta_deactivates_and_entra_reactivates_a_shared_user() -> None:
    # Okta deactivated with PUT active=false; Entra's PATCH on its next cycle
    # re-activated, so the tenant holds Entra's value.
    tenant = tenant_frames(
        pd.DataFrame(
            {
                "id": ["u1"],
                "external_id": [ENTRA_GUID],
                "user_name": ["alice@example.com"],
                "active": [True],
            }
        )
    )
    okta = client_view_from_frame(
        "okta",
        pd.DataFrame(
            {"key": [OKTA_ALICE], "user_name": ["alice@example.com"], "active": [False]}
        ),
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame(
            {"key": [ENTRA_GUID], "user_name": ["alice@example.com"], "active": [True]}
        ),
    )

    conflicts = find_conflicts(tenant, [okta, entra])
    status = conflicts[conflicts["kind"] == "status_disagreement"].iloc[0]

    assert kinds(conflicts) == [
        "external_id_overwritten",
        "shared_ownership",
        "status_disagreement",
    ]
    assert status["evidence"] == {
        "active": {"entra": True, "okta": False},
        "tenant_active": True,
        "written_by": "entra",
    }
    assert status["winner"] == "okta"
    assert status["resolution"]["operations"] == [
        {
            "method": "PATCH",
            "endpoint": "Users",
            "id": "u1",
            "op": "replace",
            "path": "active",
            "value": False,
        }
    ]


def test_okta_replaces_engineering_and_entra_adds_members_back() -> None:
    users = pd.DataFrame(
        {
            "id": ["ua", "ub", "uc"],
            "external_id": ["00uA", "00uB", ENTRA_GUID],
            "user_name": ["a@x.com", "b@x.com", "c@x.com"],
            "active": [True, True, True],
        }
    )
    groups = pd.DataFrame({"id": ["g1"], "display_name": ["Engineering"]})
    # Okta's replace left a and b; Entra will add c back one by one.
    memberships = pd.DataFrame({"group_id": ["g1", "g1"], "user_id": ["ua", "ub"]})
    tenant = tenant_frames(users, groups=groups, memberships=memberships)
    group = pd.DataFrame({"key": ["Engineering"], "display_name": ["Engineering"]})
    okta = client_view_from_frame(
        "okta",
        pd.DataFrame({"key": ["00uA", "00uB"], "user_name": ["a@x.com", "b@x.com"]}),
        groups=group,
        members=pd.DataFrame(
            {"group_key": ["Engineering", "Engineering"], "user_key": ["00uA", "00uB"]}
        ),
    )
    entra = client_view_from_frame(
        "entra",
        pd.DataFrame({"key": [ENTRA_GUID, "eb"], "user_name": ["c@x.com", "b@x.com"]}),
        groups=group,
        members=pd.DataFrame(
            {
                "group_key": ["Engineering", "Engineering"],
                "user_key": [ENTRA_GUID, "eb"],
            }
        ),
    )

    conflicts = find_conflicts(tenant, [okta, entra])
    groups_found = conflicts[conflicts["kind"] == "group_members_differ"]
    flips = conflicts[conflicts["kind"] == "membership_flip_flop"]

    assert groups_found["tenant_ids"].tolist() == ["g1"]
    assert groups_found.iloc[0]["resolution"]["add"] == ["uc"]
    assert sorted(flips["tenant_ids"]) == ["g1,ua", "g1,uc"]
    flip_c = flips[flips["tenant_ids"] == "g1,uc"].iloc[0]
    assert flip_c["evidence"]["listed_by"] == ["entra"]
    assert flip_c["resolution"]["operations"] == [
        {
            "method": "PATCH",
            "endpoint": "Groups",
            "id": "g1",
            "op": "add",
            "path": "members",
            "value": [{"value": "uc"}],
        }
    ]


def test_a_user_no_client_claims_is_an_orphan() -> None:
    tenant = tenant_frames(
        pd.DataFrame(
            {"id": ["u1"], "external_id": [OKTA_ALICE], "active": [True]},
        )
    )
    view = client_view_from_frame("entra", pd.DataFrame({"key": ["x"]}))

    conflict = find_conflicts(tenant, [view]).iloc[0]

    assert conflict["kind"] == "orphan"
    assert conflict["evidence"]["recognised_as"] == "okta"


def test_no_conflicts_give_an_empty_frame_with_the_columns() -> None:
    tenant = tenant_frames(pd.DataFrame({"id": ["u1"], "external_id": ["k"]}))
    view = client_view_from_frame("okta", pd.DataFrame({"key": ["k"]}))

    conflicts = find_conflicts(tenant, [view])

    assert conflicts.empty and "resolution" in conflicts


# -- acceptance: the demo tenant -----------------------------------------------------

PEOPLE = 1_500
SEED = 5


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def demo_tenant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from scimtools import SCIMClient, export_tenant
    from scimtools.demo.build import build_demo
    from scimtools.sandbox import Sandbox

    db = tmp_path_factory.mktemp("conflicts") / "tenant.sqlite"
    build_demo(db, seed=SEED, people=PEOPLE)
    with Sandbox(db) as sb:
        token = sb.mint_token("auditor", ttl=30 * 86400)
        with SCIMClient(sb.base_url, token=token, progress=False) as client:
            export = export_tenant(client)
    views = {i: _read(db.parent / f"idp-views/{i}.jsonl") for i in ("okta", "entra")}
    streams = {i: _read(db.parent / f"streams/{i}.jsonl") for i in ("okta", "entra")}
    return {"db": db, "export": export, "views": views, "streams": streams}


def _planted(demo: dict[str, Any]) -> tuple[dict[str, set[Any]], Any, Any]:
    """Ground truth from the generator's views and the builder's outcomes, plus
    orphans and deactivations this test plants itself."""
    views, export = demo["views"], demo["export"]
    truth: dict[str, set[Any]] = defaultdict(set)
    people: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for idp, records in views.items():
        for record in records:
            if record["kind"] == "user":
                people[record["person"]][idp] = record
            if record["outcome"] == "conflict":
                truth["create_conflict"].add((idp, record["key"]))

    # Plant: drop 20 single-client people from their view (orphans), and
    # deactivate 20 other single-client users on the tenant (claimed_inactive).
    alone = sorted(
        p for p, d in people.items() if len(d) == 1 and next(iter(d.values()))["active"]
    )
    dropped = {next(iter(people[p].values()))["key"] for p in alone[:20]}
    truth["orphan"] = {next(iter(people[p].values()))["tenant_id"] for p in alone[:20]}
    switched = {next(iter(people[p].values()))["tenant_id"] for p in alone[20:40]}
    truth["claimed_inactive"] = switched
    users = export.users.copy()
    users.loc[users["id"].isin(switched), "active"] = False

    writes = _external_id_writes(demo["streams"])
    for pair in people.values():
        if len(pair) < 2:
            continue
        okta, entra = pair["okta"], pair["entra"]
        if not (okta["tenant_id"] and entra["tenant_id"]):
            continue
        if okta["tenant_id"] != entra["tenant_id"]:
            truth["duplicate_identity"].add(
                ",".join(sorted([okta["tenant_id"], entra["tenant_id"]]))
            )
            continue
        tenant_id = okta["tenant_id"]
        truth["shared_ownership"].add(tenant_id)
        if okta["active"] != entra["active"]:
            truth["status_disagreement"].add(tenant_id)
        writer = max(
            ("okta", "entra"), key=lambda i: writes.get((i, pair[i]["key"]), -1)
        )
        loser = "entra" if writer == "okta" else "okta"
        if pair[loser]["externalId"] != pair[writer]["externalId"]:
            truth["external_id_overwritten"].add((tenant_id, loser))
        profiles = users_frame([okta["profile"], entra["profile"]])
        for attribute in COMPARED_ATTRIBUTES:
            values = normalise_values(attribute, profiles[attribute]).dropna()
            if values.nunique() > 1:
                truth["attribute_disagreement"].add((tenant_id, attribute))

    groups: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for idp, records in views.items():
        ids = {r["key"]: r["tenant_id"] for r in records if r["kind"] == "user"}
        for record in records:
            if record["kind"] == "group" and record["tenant_id"]:
                members = {ids[k] for k in record["members"] if ids.get(k)}
                groups[record["tenant_id"]][idp] = members
    for group_id, lists in groups.items():
        if len(lists) == 2:
            differ = lists["okta"] ^ lists["entra"]
            if differ:
                truth["group_members_differ"].add(group_id)
            truth["membership_flip_flop"] |= {f"{group_id},{u}" for u in differ}

    return truth, users, dropped


def _external_id_writes(streams: dict[str, list[dict[str, Any]]]) -> dict[Any, int]:
    """The seq of each client's last request that set a user's externalId."""
    last: dict[Any, int] = {}
    for idp, records in streams.items():
        for record in records:
            result = record.get("result") or {}
            body = record["request"]["body"] or {}
            sets = record["action"] == "user.create" or any(
                op.get("path") == "externalId" for op in body.get("Operations", [])
            )
            if sets and result.get("status") in (200, 201):
                last[(idp, record["key"])] = record["seq"]
    return last


def _found(conflicts: pd.DataFrame, kind: str) -> set[Any]:
    rows = conflicts[conflicts["kind"] == kind]
    if kind == "create_conflict":
        return {(e["client"], e["key"]) for e in rows["evidence"]}
    if kind == "external_id_overwritten":
        return {
            (t, e["lost"]["client"])
            for t, e in zip(rows["tenant_ids"], rows["evidence"], strict=True)
        }
    if kind == "attribute_disagreement":
        return set(zip(rows["tenant_ids"], rows["attribute"], strict=True))
    return set(rows["tenant_ids"])


@pytest.mark.slow
def test_conflicts_on_a_demo_tenant_match_what_was_planted(
    demo_tenant: dict[str, Any], tmp_path: Path
) -> None:
    truth, users, dropped = _planted(demo_tenant)
    export = demo_tenant["export"]
    export = type(export)(**{**export.__dict__, "users": users})
    views = []
    for idp, records in demo_tenant["views"].items():
        path = tmp_path / f"{idp}.jsonl"
        kept = [r for r in records if r["key"] not in dropped]
        # Withhold the tenant ids the IdPs got back: attribution must find them.
        path.write_text(
            "\n".join(json.dumps({**r, "tenant_id": None}) for r in kept) + "\n"
        )
        views.append(read_client_view(path))

    attribution = attribute_tenant(export, views)
    conflicts = find_conflicts(export, views, attribution=attribution)

    scores = {}
    for kind in CONFLICT_KINDS:
        found, planted = _found(conflicts, kind), truth[kind]
        hits = len(found & planted)
        precision = hits / len(found) if found else 1.0
        recall = hits / len(planted) if planted else 1.0
        scores[kind] = (round(precision, 3), round(recall, 3), len(planted))
    print(json.dumps(scores, indent=1))
    assert all(len(truth[k]) > 0 for k in CONFLICT_KINDS), truth.keys()
    assert all(p >= 0.95 and r >= 0.95 for p, r, _ in scores.values()), scores
