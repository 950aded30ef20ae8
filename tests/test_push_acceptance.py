"""Acceptance of pushing corrections on a small demo tenant.

The plan built from the audit's findings is applied to the tenant; a second audit
no longer finds what the plan targeted, and rolling the whole run back gives the
tenant's earlier export back exactly (by id, ignoring lastModified).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scimtools import SCIMClient
from scimtools.audit import audit_tenant, load_idp_views
from scimtools.frames import export_tenant
from scimtools.journal import Journal
from scimtools.paging import export_resources
from scimtools.plan import approve_rows, plan_from_findings, validate_plan
from scimtools.push import apply_plan, rollback_run

PEOPLE = 600
TTL = 30 * 86400


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from scimtools.demo.build import build_demo
    from scimtools.sandbox import Sandbox

    db = tmp_path_factory.mktemp("push-demo") / "tenant.sqlite"
    build_demo(db, people=PEOPLE)
    with Sandbox(db) as sb:
        token = sb.mint_token("migrator", ttl=TTL)
        with SCIMClient(sb.base_url, token=token, progress=False) as client:
            yield {"client": client, "views": load_idp_views(db.parent / "idp-views")}


def audit_findings(client: SCIMClient, views: list[dict[str, Any]]) -> pd.DataFrame:
    users = export_resources(client, "Users", progress=False).resources
    groups = export_resources(client, "Groups", progress=False).resources
    return audit_tenant(users, groups, views=views).findings


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


def test_the_plan_from_findings_removes_them_and_a_rollback_restores_all(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    client, views = demo["client"], demo["views"]
    findings = audit_findings(client, views)
    plan = validate_plan(approve_rows(plan_from_findings(findings)))
    before = exact_export(client)
    assert len(plan) >= 100
    assert set(plan["op"]) >= {"patch", "deactivate", "remove_member"}

    with Journal(tmp_path / "journal.sqlite") as journal:
        applied = apply_plan(
            client, plan, journal, run_id="fix", concurrency=4, allow_mass_change=True
        )
        assert applied.counts["failed"] == applied.counts["stale"] == 0
        assert applied.applied + applied.unchanged == len(plan)

        after = audit_findings(client, views)
        targeted = set(plan["source"])
        assert targeted <= set(findings["finding_id"])
        assert not targeted & set(after["finding_id"]), "targeted findings remain"

        rollback = rollback_run(client, journal, "fix", concurrency=4)
        assert rollback.counts["failed"] == rollback.counts["stale"] == 0
        assert rollback.applied == applied.applied

    restored = exact_export(client)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(restored[name], frame, obj=name)
