"""check_discovery against the sandbox, which under-reports as FusionAuth does."""

import pandas as pd

from scimtools import SCIMClient
from scimtools.discovery import check_discovery
from scimtools.sandbox import Sandbox, SandboxConfig


def _auditor(sandbox: Sandbox, **options: object) -> SCIMClient:
    token = sandbox.mint_token("auditor", ttl=30 * 86400)
    return SCIMClient(sandbox.base_url, token=token, progress=False, **options)


def _user(n: int) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": f"person{n:03d}@example.com",
    }


def test_discovery_shows_where_fusionauth_under_reports(sandbox: Sandbox):
    with _auditor(sandbox) as client:
        table = check_discovery(client).set_index("capability")

    assert table.loc["filter", "claimed"] == False  # noqa: E712
    assert table.loc["filter", "observed"] == True  # noqa: E712
    assert table.loc["filter", "agrees"] == False  # noqa: E712
    assert table.loc["EnterpriseUsers endpoint", "claimed"] == False  # noqa: E712
    assert table.loc["EnterpriseUsers endpoint", "observed"] == True  # noqa: E712
    assert table.loc["filter.maxResults", "claimed"] == 500
    assert pd.isna(table.loc["patch", "observed"])
    assert client.capabilities.filter is True


def test_window_row_observes_a_refusal_past_a_small_window(make_sandbox):
    sandbox = make_sandbox(SandboxConfig(window=5))
    sandbox.tenant.ingest_users([_user(n) for n in range(8)])

    with _auditor(sandbox, window=5) as client:
        table = check_discovery(client).set_index("capability")

    assert table.loc["result window of 5", "observed"] == True  # noqa: E712


def test_window_row_is_unknown_when_the_tenant_fits_inside(make_sandbox):
    sandbox = make_sandbox(SandboxConfig(window=5))
    sandbox.tenant.ingest_users([_user(n) for n in range(3)])

    with _auditor(sandbox, window=5) as client:
        table = check_discovery(client).set_index("capability")

    assert pd.isna(table.loc["result window of 5", "observed"])
