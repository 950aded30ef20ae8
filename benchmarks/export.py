"""Export speed: scimtools against a naive pager and scim2-client, and past the window.

Both run on the same sandbox with a fixed latency added to every request (100 ms by
default), so the figures measure how the client pages, not how fast the sandbox is.

- 9,000 users (inside the 10,000 window, where the naive pager works): users per
  second for a naive httpx pager (count=100, one request at a time), for
  scim2-client used one page at a time (``query(User[EnterpriseUser],
  SearchRequest(start_index, count=100))`` in a loop, each page validated into
  scim2-models objects, its default), and for scimtools' export; the ratios.
- 30,000 users (three times the window): a complete scimtools export through
  userName partitions, its time and its number of requests against the minimum
  (30,000 / count).

The last line is ``BENCH {json}`` for benchmarks/run_all.py.

Run: ``.venv/bin/python benchmarks/export.py [--latency-ms 100] [--workers 8]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from faker import Faker
from scim2_client import BaseSyncSCIMClient
from scim2_client.errors import RequestNetworkException
from scim2_models import (
    EnterpriseUser,
    Group,
    ResourceType,
    ScimProvider,
    SearchRequest,
    User,
)

from scimtools import SCIMClient, export_resources
from scimtools.sandbox import Sandbox, SandboxConfig

COUNT = 100


def make_users(n: int, seed: int = 7) -> list[dict]:
    """Return ``n`` SCIM users with realistic, unique userNames."""
    fake = Faker()
    fake.seed_instance(seed)
    rng = random.Random(seed)
    users = []

    for i in range(n):
        first, last = fake.first_name(), fake.last_name()
        user_name = f"{first}.{last}{rng.randrange(1000)}.{i}@example.com".lower()
        users.append(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "name": {"givenName": first, "familyName": last},
                "emails": [{"value": user_name, "type": "work", "primary": True}],
                "active": True,
            }
        )

    return users


def naive_export(base_url: str, token: str) -> int:
    """Page /Users one request at a time, as a first script would."""
    headers = {"Authorization": f"Bearer {token}"}
    seen = 0
    start = 1

    with httpx.Client(headers=headers, timeout=60) as http:
        while True:
            page = http.get(
                f"{base_url}/Users", params={"startIndex": start, "count": COUNT}
            ).json()
            resources = page.get("Resources", [])
            seen += len(resources)
            if not resources or start + len(resources) > page["totalResults"]:
                return seen
            start += len(resources)


class HTTPXSCIMClient(BaseSyncSCIMClient):
    """A scim2-client engine over a plain ``httpx.Client``.

    scim2-client 0.13 ships an engine for httpx2 only; this is the engine of
    tests/test_sandbox_tester.py.
    """

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


def scim2_client_export(base_url: str, token: str) -> int:
    """Page /Users with scim2-client, one page at a time, as its docs show.

    scim2-client has no paging helper: a caller loops over ``query`` with a
    ``SearchRequest``. The models are scim2-models' standard ones (discovery
    from this FusionAuth-shaped sandbox yields schemas that refuse ``name``).
    """
    headers = {"Authorization": f"Bearer {token}"}
    seen = 0
    start = 1
    model = User[EnterpriseUser]

    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        provider = ScimProvider(
            models=[User, EnterpriseUser, Group],
            resource_types=[
                ResourceType.from_resource(model),
                ResourceType.from_resource(Group),
            ],
        )
        scim = HTTPXSCIMClient(http, provider=provider)
        while True:
            page = scim.query(
                model, query_parameters=SearchRequest(start_index=start, count=COUNT)
            )
            resources = page.resources or []
            seen += len(resources)
            if not resources or start + len(resources) > page.total_results:
                return seen
            start += len(resources)


def run(size: int, latency: float, workers: int, naive: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        with Sandbox(db) as sandbox:
            started = time.perf_counter()
            users = make_users(size)
            for i in range(0, size, 2000):
                sandbox.tenant.ingest_users(users[i : i + 2000])
            load_s = time.perf_counter() - started

        # The state survives the restart; the latency applies from here on.
        with Sandbox(db, config=SandboxConfig(latency=latency)) as sandbox:
            figures = {"users": size, "load_s": load_s}

            if naive:
                started = time.perf_counter()
                seen = naive_export(
                    sandbox.base_url, sandbox.mint_token("auditor", ttl=3600)
                )
                elapsed = time.perf_counter() - started
                assert seen == size, f"naive pager saw {seen} of {size}"
                figures["naive_users_per_s"] = size / elapsed

                started = time.perf_counter()
                seen = scim2_client_export(
                    sandbox.base_url, sandbox.mint_token("auditor", ttl=3600)
                )
                elapsed = time.perf_counter() - started
                assert seen == size, f"scim2-client saw {seen} of {size}"
                figures["scim2_client_users_per_s"] = size / elapsed

            client = SCIMClient(
                sandbox.base_url,
                token=sandbox.mint_token("auditor", ttl=86400 * 30),
                page_size=COUNT,
                max_workers=workers,
                progress=False,
            )
            with client:
                started = time.perf_counter()
                result = export_resources(client, "Users")
                elapsed = time.perf_counter() - started
            assert result.count == size, f"scimtools exported {result.count}"
            figures["scimtools_s"] = elapsed
            figures["scimtools_users_per_s"] = size / elapsed
            figures["requests"] = result.requests
            figures["minimum_requests"] = -(-size // COUNT)
            figures["partitions"] = len(result.partitions)
            return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--inside", type=int, default=9_000)
    parser.add_argument("--past", type=int, default=30_000)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    latency = args.latency_ms / 1000

    inside = run(args.inside, latency, args.workers, naive=True)
    ratio = inside["scimtools_users_per_s"] / inside["naive_users_per_s"]
    ratio_scim2 = inside["scimtools_users_per_s"] / inside["scim2_client_users_per_s"]
    print(f"latency per request: {args.latency_ms:.0f} ms, workers: {args.workers}")
    print(
        f"{inside['users']:,} users inside the window: naive pager "
        f"{inside['naive_users_per_s']:,.0f} users/s, scim2-client "
        f"{inside['scim2_client_users_per_s']:,.0f} users/s, scimtools "
        f"{inside['scimtools_users_per_s']:,.0f} users/s; ratio {ratio:.1f} against"
        f" the naive pager, {ratio_scim2:.1f} against scim2-client"
    )

    past = run(args.past, latency, args.workers, naive=False)
    print(
        f"{past['users']:,} users past the window: complete export in "
        f"{past['scimtools_s']:.1f} s ({past['scimtools_users_per_s']:,.0f} users/s),"
        f" {past['requests']} requests against a minimum of "
        f"{past['minimum_requests']} ({past['partitions']} partitions)"
    )
    bench = {
        "latency_ms": args.latency_ms,
        "workers": args.workers,
        "inside": inside,
        "past": past,
    }
    print("BENCH " + json.dumps({"benchmark": "export", "figures": bench}))


if __name__ == "__main__":
    main()
