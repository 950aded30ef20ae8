"""Pushing plans to the sandbox: dry run, apply, stale rows, resume, rollback."""

from __future__ import annotations

import collections
import io
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from scimtools import MissingPermissionError, SCIMClient
from scimtools.frames import export_tenant
from scimtools.journal import Journal
from scimtools.plan import make_plan, write_plan
from scimtools.push import (
    MassChangeError,
    _Pacer,
    apply_plan,
    dry_run,
    resource_diffs,
    resume_run,
    rollback_run,
)
from scimtools.sandbox import Sandbox, SandboxConfig

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
TTL = 30 * 86400


def client_of(sb: Sandbox, name: str = "migrator", **kwargs: Any) -> SCIMClient:
    token = sb.mint_token(name, ttl=TTL)
    return SCIMClient(sb.base_url, token=token, progress=False, **kwargs)


def user_body(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER_URN],
        "userName": f"user{i:03d}",
        "externalId": f"ext-{i:03d}",
        "active": True,
        "name": {"givenName": f"Given{i}", "familyName": "Family"},
        "emails": [{"value": f"user{i:03d}@example.com", "primary": True}],
        **extra,
    }


def seed(client: SCIMClient, users: int = 20, members: int = 5) -> dict[str, Any]:
    made = [client.create("Users", user_body(i)) for i in range(users)]
    group = client.create(
        "Groups",
        {
            "schemas": [GROUP_URN],
            "displayName": "Engineering",
            "members": [{"value": u["id"]} for u in made[:members]],
        },
    )
    return {"users": made, "group": group}


def snapshot(client: SCIMClient) -> dict[str, list[Any]]:
    """The tenant by natural keys (userName, displayName), without timestamps."""
    export = export_tenant(client, enterprise_users=False, progress=False)
    names = dict(zip(export.users["id"], export.users["user_name"], strict=True))
    groups = dict(zip(export.groups["id"], export.groups["display_name"], strict=True))
    drop = ["id", "created", "last_modified", "location", "manager_id"]
    users = export.users.drop(columns=drop).sort_values("user_name")
    group_rows = export.groups.drop(columns=drop[:4]).sort_values("display_name")
    members = sorted(
        (groups[g], names.get(u, u))
        for g, u in zip(
            export.memberships["group_id"], export.memberships["user_id"], strict=True
        )
    )
    return {
        "users": users.astype(object).where(users.notna(), None).values.tolist(),
        "groups": group_rows.astype(object)
        .where(group_rows.notna(), None)
        .values.tolist(),
        "members": members,
    }


def exact_export(client: SCIMClient) -> dict[str, pd.DataFrame]:
    """The export by id, without lastModified (a rollback writes, so it moves)."""
    export = export_tenant(client, progress=False)
    frames = {}
    for name in ("users", "enterprise_users", "emails", "phones", "groups"):
        frame = getattr(export, name)
        frame = frame.drop(columns=[c for c in ["last_modified"] if c in frame])
        frames[name] = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    frames["memberships"] = export.memberships.sort_values(
        ["group_id", "user_id"]
    ).reset_index(drop=True)
    return frames


@pytest.fixture
def tenant(fresh_sandbox: Sandbox) -> Iterator[tuple[Sandbox, SCIMClient, dict]]:
    client = client_of(fresh_sandbox)
    data = seed(client)
    yield fresh_sandbox, client, data
    client.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as j:
        yield j


def test_dry_run_reads_marks_stale_rows_and_writes_nothing(tenant, journal) -> None:
    sb, client, data = tenant
    u = data["users"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[0]["id"],
                "path": "given_name",
                "expected": "Given0",
                "value": "Ada",
            },
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[1]["id"],
                "path": "given_name",
                "expected": "Someone else",
                "value": "Bo",
            },
            {"op": "create", "resource_type": "User", "value": user_body(2)},
            {"op": "deactivate", "resource_type": "User", "resource_id": u[3]["id"]},
        ]
    )
    before = snapshot(client)
    sent = client.requests_sent

    dry = dry_run(client, plan)
    reads = client.requests_sent - sent

    assert dict(zip(dry["op_id"], dry["status"], strict=True)) == {
        "op-0001": "ready",
        "op-0002": "stale",
        "op-0003": "exists",
        "op-0004": "ready",
    }
    assert (
        "the plan expected 'Someone else'"
        in dry.set_index("op_id").loc["op-0002", "reason"]
    )
    assert reads == 4  # three reads by id and one lookup by userName
    assert snapshot(client) == before
    diffs = resource_diffs(dry)
    assert sorted(diffs["change"]) == ["'Given0' -> 'Ada'", "True -> False"]


def test_apply_writes_the_plan_and_journals_each_write(tenant, journal) -> None:
    sb, client, data = tenant
    u, group = data["users"], data["group"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[0]["id"],
                "path": "emails[primary].value",
                "value": "ada@example.com",
            },
            {"op": "deactivate", "resource_type": "User", "resource_id": u[1]["id"]},
            {"op": "create", "resource_type": "User", "value": user_body(50)},
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": "ref:op-0003",
            },
            {
                "op": "remove_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": u[0]["id"],
            },
        ]
    )

    summary = apply_plan(client, plan, journal, run_id="r1")

    assert summary.counts == {
        "applied": 5,
        "unchanged": 0,
        "stale": 0,
        "failed": 0,
        "skipped": 0,
        "rolled_back": 0,
    }
    assert "5 applied" in str(summary)
    assert client.get("Users", u[0]["id"])["emails"][0]["value"] == "ada@example.com"
    assert client.get("Users", u[1]["id"])["active"] is False
    created = summary.results.set_index("op_id").loc["op-0003", "resource_id"]
    members = [m["value"] for m in client.get("Groups", group["id"])["members"]]
    assert created in members and u[0]["id"] not in members
    ops = journal.operations("r1")
    assert set(ops["state"]) == {"applied"}
    assert ops.set_index("op_id").loc["op-0002", "before"]["active"] is True


def test_a_second_apply_of_the_same_run_sends_nothing(tenant, journal) -> None:
    sb, client, data = tenant
    u = data["users"][0]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u["id"],
                "path": "name.familyName",
                "value": "Lovelace",
            }
        ]
    )
    apply_plan(client, plan, journal, run_id="r1")
    sent = client.requests_sent

    again = apply_plan(client, plan, journal, run_id="r1")

    assert client.requests_sent == sent
    assert again.applied == 1


class SaveThen500(httpx.BaseTransport):
    """Pass POST /Users to the server, then answer 500 as if it had failed."""

    def __init__(self, failures: int = 1) -> None:
        self.inner = httpx.HTTPTransport()
        self.failures = failures
        self.posts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/Users"):
            self.posts.append(json.loads(request.content)["userName"])
            if self.failures:
                self.failures -= 1
                response.read()
                response.close()
                body = {
                    "fieldErrors": {},
                    "generalErrors": [{"code": "[Exception]", "message": "boom"}],
                }
                return httpx.Response(500, json=body, request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_create_answered_500_after_it_was_saved_is_found_not_repeated(
    fresh_sandbox: Sandbox, journal: Journal
) -> None:
    transport = SaveThen500(failures=0)
    client = client_of(fresh_sandbox, transport=transport)
    seed(client, users=5, members=0)
    transport.posts.clear()
    transport.failures = 1
    plan = make_plan(
        [
            {"op": "create", "resource_type": "User", "value": user_body(7)},
            {"op": "create", "resource_type": "User", "value": user_body(8)},
        ]
    )

    summary = apply_plan(client, plan, journal, run_id="r1", lookup_wait=0.01)

    assert summary.applied == 2 and summary.failed == 0
    assert transport.posts == ["user007", "user008"]  # no second POST, no 409
    found = client.list_page("Users", filter='userName eq "user007"')
    assert found.total_results == 1
    result = summary.results.set_index("op_id").loc["op-0001"]
    assert result["resource_id"] == found.resources[0]["id"]
    assert "found applied" in result["reason"]


class Crash(BaseException):
    """Stands for the process dying."""


class SaveThenCrash(httpx.BaseTransport):
    """Pass the first POST /Users to the server, then die before the answer."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.posts = 0
        self.armed = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/Users"):
            self.posts += 1
            if self.armed:
                self.armed = False
                response.read()
                raise Crash
        return response


def test_resume_after_a_lost_create_answer_looks_the_user_up(
    fresh_sandbox: Sandbox, journal: Journal
) -> None:
    transport = SaveThenCrash()
    transport.armed = False
    client = client_of(fresh_sandbox, transport=transport)
    group = seed(client, users=3, members=1)["group"]
    transport.armed, transport.posts = True, 0
    plan = make_plan(
        [
            {"op": "create", "resource_type": "User", "value": user_body(9)},
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": "ref:op-0001",
            },
        ]
    )
    with pytest.raises(Crash):
        apply_plan(client, plan, journal, run_id="r1")
    assert journal.states("r1") == {"op-0001": "sent"}

    summary = resume_run(client, journal, "r1", lookup_wait=0.01)

    assert transport.posts == 1
    assert summary.applied == 2
    user_id = summary.results.set_index("op_id").loc["op-0001", "resource_id"]
    members = [m["value"] for m in client.get("Groups", group["id"])["members"]]
    assert user_id in members


def test_a_group_of_150_members_loses_none_when_patched(
    fresh_sandbox: Sandbox, journal: Journal
) -> None:
    client = client_of(fresh_sandbox)
    data = seed(client, users=152, members=150)
    group, users = data["group"], data["users"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "Group",
                "resource_id": group["id"],
                "path": "displayName",
                "value": "Engineering (all)",
            },
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": users[150]["id"],
            },
            {
                "op": "remove_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": users[0]["id"],
            },
        ]
    )

    summary = apply_plan(client, plan, journal)

    assert summary.applied == 3
    members = {m["value"] for m in client.get("Groups", group["id"])["members"]}
    assert members == {u["id"] for u in users[1:151]}


def test_without_patch_a_group_is_put_whole_from_a_fresh_read(
    fresh_sandbox: Sandbox, journal: Journal
) -> None:
    client = client_of(fresh_sandbox, patch_supported=False)
    data = seed(client, users=151, members=150)
    group, users = data["group"], data["users"]
    plan = make_plan(
        [
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": users[150]["id"],
            }
        ]
    )

    summary = apply_plan(client, plan, journal, run_id="r1")

    assert summary.applied == 1
    assert journal.operation("r1", "op-0001")["request"]["method"] == "PUT"
    members = {m["value"] for m in client.get("Groups", group["id"])["members"]}
    assert members == {u["id"] for u in users}


def test_a_user_changed_after_the_plan_is_skipped_as_stale(tenant, journal) -> None:
    sb, client, data = tenant
    u = data["users"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[0]["id"],
                "path": "given_name",
                "expected": "Given0",
                "value": "Ada",
            },
            {
                "op": "deactivate",
                "resource_type": "User",
                "resource_id": u[1]["id"],
                "expected_modified": u[1]["meta"]["lastModified"],
            },
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[2]["id"],
                "path": "given_name",
                "expected": "Given2",
                "value": "Cy",
            },
        ]
    )
    # Someone edits two of the users after the plan was made.
    time.sleep(0.002)
    client.patch(
        "Users",
        u[0]["id"],
        [{"op": "replace", "path": "name.givenName", "value": "Edited"}],
    )
    client.patch(
        "Users",
        u[1]["id"],
        [{"op": "replace", "path": "name.familyName", "value": "Edited"}],
    )

    summary = apply_plan(client, plan, journal)

    assert (summary.applied, summary.stale) == (1, 2)
    problems = summary.problems().set_index("op_id")
    assert (
        "is 'Edited' now, the plan expected 'Given0'"
        in problems.loc["op-0001", "reason"]
    )
    assert "after the plan was made" in problems.loc["op-0002", "reason"]
    assert client.get("Users", u[0]["id"])["name"]["givenName"] == "Edited"
    assert client.get("Users", u[1]["id"])["active"] is True


def test_a_plan_deactivating_30_percent_of_users_is_refused_until_overridden(
    tenant, journal
) -> None:
    sb, client, data = tenant
    plan = make_plan(
        [
            {"op": "deactivate", "resource_type": "User", "resource_id": u["id"]}
            for u in data["users"][:6]
        ]
    )
    sent = client.requests_sent

    with pytest.raises(MassChangeError, match=r"6 of 20 users \(30.0%\)"):
        apply_plan(client, plan, journal)

    assert client.requests_sent - sent == 1  # the count of users, nothing else
    assert journal.runs().empty
    summary = apply_plan(client, plan, journal, allow_mass_change=True)
    assert summary.applied == 6


def test_missing_permissions_stop_the_run_before_any_write(tenant, journal) -> None:
    sb, client, data = tenant
    auditor = client_of(sb, "auditor")
    plan = make_plan(
        [
            {
                "op": "delete",
                "resource_type": "User",
                "resource_id": data["users"][0]["id"],
            }
        ]
    )

    with pytest.raises(MissingPermissionError, match="delete users"):
        apply_plan(auditor, plan, journal)

    assert auditor.requests_sent == 0
    assert journal.runs().empty


def test_rollback_of_a_whole_run_gives_back_the_earlier_export_exactly(
    tenant, journal
) -> None:
    sb, client, data = tenant
    u, group = data["users"], data["group"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[0]["id"],
                "path": "given_name",
                "value": "Ada",
            },
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[0]["id"],
                "path": "emails[primary].value",
                "value": "ada@example.com",
            },
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[1]["id"],
                "path": "external_id",
                "value": None,
            },
            {"op": "deactivate", "resource_type": "User", "resource_id": u[2]["id"]},
            {"op": "create", "resource_type": "User", "value": user_body(60)},
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": "ref:op-0005",
            },
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": u[10]["id"],
            },
            {
                "op": "remove_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": u[1]["id"],
            },
            {
                "op": "patch",
                "resource_type": "Group",
                "resource_id": group["id"],
                "path": "displayName",
                "value": "Eng",
            },
        ]
    )
    before = exact_export(client)
    applied = apply_plan(client, plan, journal, run_id="r1")
    assert applied.applied == 9

    rollback = rollback_run(client, journal, "r1")

    assert rollback.applied == 9 and rollback.kind == "rollback"
    after = exact_export(client)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)
    assert apply_plan(client, plan, journal, run_id="r1").rolled_back == 9
    assert journal.children("r1") == [rollback.run_id]


def test_rollback_of_chosen_rows_leaves_the_others(tenant, journal) -> None:
    sb, client, data = tenant
    u = data["users"]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": u[i]["id"],
                "path": "family_name",
                "value": f"New{i}",
            }
            for i in range(3)
        ]
    )
    apply_plan(client, plan, journal, run_id="r1")

    rollback = rollback_run(client, journal, "r1", op_ids=["op-0002"])

    assert rollback.applied == 1
    names = [client.get("Users", u[i]["id"])["name"]["familyName"] for i in range(3)]
    assert names == ["New0", "Family", "New2"]
    again = rollback_run(client, journal, "r1")
    assert sorted(again.results["op_id"]) == ["op-0001", "op-0003"]


def test_a_bare_string_manager_becomes_an_object_and_rolls_back_to_the_string(
    tenant, journal
) -> None:
    # Entra's other manager shape leaves a bare string, which a PATCH of
    # manager.value cannot enter: the push writes by PUT, the rollback restores
    # the whole user.
    from scimtools.audit import audit_tenant
    from scimtools.plan import plan_from_findings

    sb, client, data = tenant
    urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    boss, user = data["users"][0]["id"], data["users"][1]["id"]
    ops = [{"op": "add", "path": f"{urn}:manager", "value": boss}]
    client.patch("EnterpriseUsers", user, ops)
    before = client.get("EnterpriseUsers", user)
    assert before[urn]["manager"] == boss
    audit = audit_tenant([before])
    plan = make_plan(plan_from_findings(audit.findings).assign(approved=True))
    assert plan["path"].tolist() == [f"{urn}:manager.value"]

    applied = apply_plan(client, plan, journal, run_id="m1")

    assert applied.counts["applied"] == 1
    assert client.get("EnterpriseUsers", user)[urn]["manager"] == {"value": boss}
    assert (
        audit_tenant([client.get("EnterpriseUsers", user)])
        .counts()
        .get("manager_not_object", 0)
        == 0
    )
    rollback = rollback_run(client, journal, "m1")
    assert rollback.counts["applied"] == 1
    assert client.get("EnterpriseUsers", user)[urn]["manager"] == boss


def test_rollback_skips_a_value_changed_again_since_the_run(tenant, journal) -> None:
    sb, client, data = tenant
    user = data["users"][0]
    plan = make_plan(
        [
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": user["id"],
                "path": "given_name",
                "value": "Ada",
            }
        ]
    )
    apply_plan(client, plan, journal, run_id="r1")
    client.patch(
        "Users", user["id"], [{"op": "replace", "path": "name.givenName", "value": "Z"}]
    )

    rollback = rollback_run(client, journal, "r1")

    assert rollback.stale == 1
    assert client.get("Users", user["id"])["name"]["givenName"] == "Z"


def test_rollback_of_a_delete_creates_the_user_again(tenant, journal) -> None:
    sb, client, data = tenant
    user = data["users"][19]
    plan = make_plan(
        [{"op": "delete", "resource_type": "User", "resource_id": user["id"]}]
    )
    apply_plan(client, plan, journal, run_id="r1")
    before = client.list_page("Users", filter='userName eq "user019"').total_results

    rollback = rollback_run(client, journal, "r1")

    assert before == 0 and rollback.applied == 1
    again = client.list_page("Users", filter='userName eq "user019"').resources
    assert again[0]["name"] == user["name"] and again[0]["id"] != user["id"]


def test_concurrency_gives_the_same_tenant_as_one_at_a_time(
    make_sandbox, tmp_path: Path
) -> None:
    states = []
    for concurrency, name in ((1, "a.sqlite"), (8, "b.sqlite")):
        sb = make_sandbox(SandboxConfig(id_seed=7), name)
        client = client_of(sb)
        data = seed(client)
        plan = make_plan(
            [
                {
                    "op": "patch",
                    "resource_type": "User",
                    "resource_id": u["id"],
                    "path": "family_name",
                    "value": f"F{i}",
                }
                for i, u in enumerate(data["users"])
            ]
        )
        with Journal(tmp_path / f"{name}.journal") as journal:
            summary = apply_plan(client, plan, journal, concurrency=concurrency)
        assert summary.applied == 20
        states.append(snapshot(client))

    assert states[0] == states[1]


def test_the_rate_limit_spaces_requests() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = _Pacer(4.0, lambda: now[0], sleep)
    for _ in range(5):
        pacer.wait()

    assert waits == [0.25, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="rate_limit must be positive"):
        _Pacer(0, time.monotonic, time.sleep)


# -- acceptance: kill -9 at random points, then resume -----------------------------


class Recorder:
    """WSGI middleware: count writes by request, and requests in flight."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.writes: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            self.in_flight += 1
        try:
            method = environ["REQUEST_METHOD"]
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                if "/api/scim/" in environ["PATH_INFO"]:
                    key = (method, environ["PATH_INFO"], body.decode())
                    with self.lock:
                        self.writes[key] += 1
            return self.app(environ, start_response)
        finally:
            with self.lock:
                self.in_flight -= 1

    def settle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)


def copy_db(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


def kill_plan(data: dict[str, Any]) -> pd.DataFrame:
    users, group = data["users"], data["group"]
    rows: list[dict[str, Any]] = []
    for i, user in enumerate(users[:8]):
        rows.append(
            {
                "op": "patch",
                "resource_type": "User",
                "resource_id": user["id"],
                "path": "family_name",
                "expected": "Family",
                "value": f"Renamed{i}",
            }
        )
    rows.append(
        {"op": "deactivate", "resource_type": "User", "resource_id": users[13]["id"]}
    )
    for i in (70, 71):
        rows.append(
            {
                "op": "create",
                "resource_type": "User",
                "value": user_body(i),
                "op_id": f"c{i}",
            }
        )
        rows.append(
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": f"ref:c{i}",
            }
        )
    for user in users[14:16]:
        rows.append(
            {
                "op": "add_member",
                "resource_type": "Group",
                "resource_id": group["id"],
                "value": user["id"],
            }
        )
    rows.append(
        {
            "op": "remove_member",
            "resource_type": "Group",
            "resource_id": group["id"],
            "value": users[0]["id"],
        }
    )
    rows.append(
        {
            "op": "patch",
            "resource_type": "Group",
            "resource_id": group["id"],
            "path": "displayName",
            "value": "Engineering 2",
        }
    )
    return make_plan(rows)


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("kill")
    template = root / "template.sqlite"
    with Sandbox(template, seed_dir=SEED_DIR) as sb:
        client = client_of(sb)
        data = seed(client, users=40, members=5)
        client.close()
    plan_file = write_plan(kill_plan(data), root / "plan.csv")
    return {"root": root, "template": template, "plan": plan_file}


class ForkServer:
    """tests/push_worker.py: send it jobs, read its tagged lines, kill its child."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("push_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self.buffer = b""

    def line(self, timeout: float = 60.0) -> tuple[str, int]:
        """The next line as (tag, number); wait at most ``timeout`` s for it."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0.0))
            if not ready:
                raise TimeoutError(f"the push worker said nothing for {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("the push worker exited")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        tag, number = line.decode().split()
        return tag, int(number)

    def run(
        self, job: dict[str, Any], kill_at: int | None = None, delay: float = 0.0
    ) -> tuple[int, bool]:
        """Run a job and return (writes reported, whether SIGKILL ended it).

        With ``kill_at`` N the child holds its N-th write (``job["hold"]``) and
        is sent SIGKILL ``delay`` s after it reports that write.
        """
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({**job, "hold_at": kill_at}) + "\n").encode())
        pid = writes = 0
        while True:
            tag, number = self.line()
            if tag == "pid":
                pid = number
            elif tag == "write":
                writes = max(writes, number)
                if number == kill_at:
                    time.sleep(delay)  # the other threads, if any, go on
                    os.kill(pid, signal.SIGKILL)
            else:
                assert tag == "status", tag
                return writes, os.WIFSIGNALED(number)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def test_killing_the_apply_at_random_points_and_resuming_ends_the_same(
    kill_setup: dict[str, Any],
) -> None:
    """SIGKILL the apply at a seeded random write, resume: the same tenant.

    Each killed run holds one write, chosen at random between the first and the
    last, just before it is sent or just after the server answered, and is killed
    there after a small random delay (with 4 threads the others go on meanwhile),
    so every run is interrupted inside the apply however loaded the machine is.
    """
    root, template, plan_file = (
        kill_setup["root"],
        kill_setup["template"],
        kill_setup["plan"],
    )
    config = SandboxConfig(latency=0.002)
    worker = ForkServer()
    stopping: list[threading.Thread] = []

    def run(
        index: int, kill_at: int | None = None, hold: str = "before", delay: float = 0
    ) -> tuple[dict, Recorder, int, bool]:
        db = copy_db(template, root / f"run{index}.sqlite")
        journal_path = root / f"run{index}.journal"
        sb = Sandbox(db, config=config)
        recorder = Recorder(sb.app)
        sb.app = recorder
        sb.start()
        try:
            job = {
                "base_url": sb.base_url,
                "token": sb.mint_token("migrator", ttl=TTL),
                "journal": str(journal_path),
                "plan": str(plan_file),
                "run_id": "run",
                "concurrency": 1 + 3 * (index % 2),
                "hold": hold,
            }
            writes, killed = worker.run(job, kill_at, delay)
            recorder.settle()

            client = client_of(sb)
            with Journal(journal_path) as journal:
                if journal.run("run", missing_ok=True) is not None:
                    resume_run(client, journal, "run", lookup_wait=0.01)
                else:  # killed before the run started
                    from scimtools.plan import read_plan

                    apply_plan(client, read_plan(plan_file), journal, run_id="run")
                states = journal.states("run")
            assert set(states.values()) == {"applied"}, states
            state = snapshot(client)
            client.close()
        finally:
            # Stopping waits for the server's poll (0.5 s): let it happen aside.
            stopping.append(threading.Thread(target=sb.stop))
            stopping[-1].start()
        return state, recorder, writes, killed

    try:
        reference, recorder, writes, _ = run(0)  # also warms the sandbox up
        assert max(recorder.writes.values()) == 1
        assert writes == sum(recorder.writes.values()) > 10
        threaded_state, _, threaded_writes, _ = run(1)
        assert threaded_state == reference and threaded_writes == writes
        rng = random.Random(20240806)
        kills = 0
        for index in range(2, 24):
            kill_at = rng.randint(1, writes)
            hold = rng.choice(("before", "after"))
            delay = rng.uniform(0.0, 0.02)
            where = f"run {index}: kill at write {kill_at} ({hold}) + {delay:.3f} s"
            state, recorder, _, killed = run(index, kill_at, hold, delay)
            assert killed, f"{where} was not interrupted"
            kills += 1
            assert state == reference, where
            duplicated = [k for k, n in recorder.writes.items() if n > 1]
            assert not duplicated, f"{where} sent twice: {duplicated}"
    finally:
        worker.close()
        for thread in stopping:
            thread.join()

    assert kills == 22  # every run was really interrupted
    assert len(reference["users"]) == 42
