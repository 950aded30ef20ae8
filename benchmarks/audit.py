"""Audit 100,000 users: time and peak memory. Prints figures; not a test.

Synthetic users in the demo's shapes (one IdP view per user, the default
lambdas, a tenant export with the usual losses) go through `audit_tenant`.
Target on the reference machine: under 30 s and 4 GiB. The last line is
``BENCH {json}`` for benchmarks/run_all.py (wall and CPU seconds of the audit,
peak RSS of the whole process before and after it).

Run: .venv/bin/python benchmarks/audit.py [USERS]
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time

from scimtools.audit import audit_tenant
from scimtools.mapping import load_lambdas

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def make(count: int, seed: int = 7) -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(seed)
    views, users = [], []
    for i in range(count):
        email = f"user{i}@example.com"
        primary = rng.random() > 0.02
        sent = {
            "schemas": [USER, ENTERPRISE],
            "externalId": f"ext-{i}",
            "userName": email,
            "active": True,
            "displayName": f"User {i}",
            "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
            "emails": [{"value": email, "type": "work", "primary": primary}],
            "phoneNumbers": [
                {
                    "value": f"(201) 555-{i % 10000:04d}",
                    "type": "mobile",
                    "primary": True,
                }
            ],
            ENTERPRISE: {"department": rng.choice(["R&D", "Sales", "HR"])},
        }
        stored = {
            "id": f"id-{i}",
            "userName": email,
            "active": rng.random() > 0.05,
            "name": dict(sent["name"]),
            "phoneNumbers": [
                {
                    "value": f"+1 201-555-{i % 10000:04d}",
                    "type": "mobile",
                    "primary": True,
                }
            ],
            ENTERPRISE: dict(sent[ENTERPRISE]),
        }
        if primary:
            stored["emails"] = [{"value": email, "type": "work", "primary": True}]
        idp = "okta" if i % 2 else "entra"
        views.append(
            {
                "kind": "user",
                "idp": idp,
                "key": f"k{i}",
                "tenant_id": f"id-{i}",
                "profile": sent,
            }
        )
        users.append(stored)
    groups = [
        {
            "id": f"g{g}",
            "displayName": f"Group {g}",
            "members": [{"value": f"id-{i}"} for i in range(g * 500, g * 500 + 150)],
        }
        for g in range(max(1, count // 1000))
    ]
    return views, users, groups


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    views, users, groups = make(count)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    with load_lambdas() as lambdas:
        start, cpu = time.perf_counter(), time.process_time()
        audit = audit_tenant(users, groups, views=views, lambdas=lambdas)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"audited {count:,} users and {len(groups):,} groups in {seconds:.1f} s")
    print(f"findings: {len(audit.findings):,}; peak RSS {peak:.2f} GiB (whole process)")
    print(audit.counts().to_string())
    figures = {
        "users": count,
        "groups": len(groups),
        "findings": len(audit.findings),
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_gib": peak,
        "before_rss_gib": before,
    }
    print("BENCH " + json.dumps({"benchmark": "audit", "figures": figures}))


if __name__ == "__main__":
    main()
