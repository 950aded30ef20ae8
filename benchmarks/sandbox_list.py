"""Print how many users per second the sandbox lists through HTTP (count=100).

Loads 12,000 users with ``Tenant.ingest_users`` (lambdas, no HTTP), then pages
``GET /Users`` from a single thread, twice (ingest_users already rendered and
cached each user's SCIM JSON, so both passes serve cached JSON). The last line
is ``BENCH {json}`` for benchmarks/run_all.py.
"""

from __future__ import annotations

import json
import tempfile
import time

import httpx

from scimtools.sandbox import Sandbox

USERS = 12_000
COUNT = 100
WINDOW = 10_000


def make_users(n: int) -> list[dict[str, object]]:
    """Return n SCIM users with a primary email and a name."""
    return [
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"user{i:05d}",
            "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
            "emails": [{"value": f"user{i:05d}@example.com", "primary": True}],
            "active": True,
        }
        for i in range(n)
    ]


def list_all(client: httpx.Client) -> tuple[int, float]:
    """Page /Users up to the window; return users fetched and seconds taken."""
    fetched, start = 0, 1
    started = time.perf_counter()
    while start + COUNT - 1 <= WINDOW:
        body = client.get("/Users", params={"startIndex": start, "count": COUNT})
        resources = body.json().get("Resources", [])
        if not resources:
            break
        fetched += len(resources)
        start += len(resources)
    return fetched, time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print the figures."""
    with tempfile.TemporaryDirectory() as tmp, Sandbox(f"{tmp}/bench.sqlite") as sb:
        started = time.perf_counter()
        sb.tenant.ingest_users(make_users(USERS))
        loaded = time.perf_counter() - started
        print(f"ingest_users: {USERS:,} users in {loaded:.1f} s")

        figures: dict[str, float] = {"users": USERS, "ingest_s": loaded}
        token = sb.mint_token("auditor")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=sb.base_url, headers=headers) as client:
            for label in ("first pass", "second pass"):
                fetched, seconds = list_all(client)
                print(
                    f"list {label}: {fetched:,} users in {seconds:.2f} s,"
                    f" {fetched / seconds:,.0f} users/s (count={COUNT})"
                )
                key = label.replace(" ", "_")
                figures[f"{key}_users"] = fetched
                figures[f"{key}_users_per_s"] = fetched / seconds
    bench = {"benchmark": "sandbox_list", "figures": figures}
    print("BENCH " + json.dumps(bench))


if __name__ == "__main__":
    main()
