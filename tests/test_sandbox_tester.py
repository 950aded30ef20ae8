"""scim2-tester's checks, run over HTTP against the running sandbox.

scim2-client 0.13 ships an engine for httpx2 only, so a small engine for plain
httpx is defined here. Results that cannot pass, and why:

- User CRUD (create, read, replace, delete, attribute queries): FusionAuth's
  documented /ResourceTypes marks the enterprise extension of User as
  ``required: true`` while /Users resources carry it only when the user has
  one; scim2-client refuses such User payloads ("requires the extension").
- Group replacement and attribute queries: they create a User member first,
  which fails for the same reason.
- PATCH checks are skipped by the tester: it believes the ServiceProviderConfig,
  which under-reports (``patch.supported: false``) as FusionAuth's does.
- EnterpriseUsers are not checked at all: the tester routes only the resource
  types of /ResourceTypes, which has no EnterpriseUser (as in FusionAuth).

Everything else (discovery, misc, Group create/read/list/delete) must succeed.
"""

from __future__ import annotations

from typing import Any

import httpx
from scim2_client import BaseSyncSCIMClient
from scim2_client.errors import RequestNetworkException
from scim2_tester import Status, check_server

from scimtools.sandbox import PERMISSIONS, Sandbox

EXPECTED_FAILURES = {
    ("User", "object_creation"),
    ("User", "object_query"),
    ("User", "object_query_without_id"),
    ("User", "object_query_with_attributes"),
    ("User", "object_list_with_attributes"),
    ("User", "search_with_attributes"),
    ("User", "object_replacement"),
    ("User", "object_deletion"),
    ("Group", "object_query_with_attributes"),
    ("Group", "object_list_with_attributes"),
    ("Group", "search_with_attributes"),
    ("Group", "object_replacement"),
}


class HTTPXSCIMClient(BaseSyncSCIMClient):
    """A scim2-client engine over a plain ``httpx.Client``."""

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        url = self.client.build_request("GET", endpoint).url
        same_origin = (url.scheme, url.host, url.port) == (
            base.scheme,
            base.host,
            base.port,
        )
        return same_origin and url.raw_path.startswith(base.raw_path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            raise RequestNetworkException() from exc


def test_scim2_tester_passes_except_the_recorded_fusionauth_gaps(
    fresh_sandbox: Sandbox,
) -> None:
    okta = fresh_sandbox.clients["okta"]
    token = fresh_sandbox.issuer.mint(okta, list(PERMISSIONS))
    headers = {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=fresh_sandbox.base_url, headers=headers) as http:
        results = check_server(HTTPXSCIMClient(http))

    failed = {
        (r.resource_type, r.title)
        for r in results
        if r.status not in (Status.SUCCESS, Status.SKIPPED)
    }
    skipped = {
        (r.resource_type, r.title) for r in results if r.status == Status.SKIPPED
    }
    assert failed == EXPECTED_FAILURES
    assert {title for _, title in skipped} == {
        "check_add_attribute",
        "check_remove_attribute",
        "check_replace_attribute",
    }
    assert any(
        r.title == "query_all_resource_types" and r.status == Status.SUCCESS
        for r in results
    )
    assert ("Group", "object_creation") not in failed
