"""Audit 100,000 users: time and peak memory. Prints figures; not a test.

Synthetic users in the demo's shapes (one IdP view per user, the default
lambdas, a tenant export with the usual losses) go through `audit_tenant`.
Target on the reference machine: under 30 s and 4 GiB in total. The last line
is ``BENCH {json}`` for benchmarks/run_all.py: wall and CPU seconds of the
audit (this process, and its worker processes), peak RSS of this process
before and after it, the largest worker's ru_maxrss, and the total peak.

A worker's ru_maxrss counts this process's RSS at the moment it was forked
(before its exec), so ``parent + workers x child peak`` is an upper bound;
``sampled_total_peak_gib`` adds up the RSS of this process and its children,
read from /proc every 50 ms.

Run: .venv/bin/python benchmarks/audit.py [USERS] [--workers N]
(``--workers 1``: serial; default: `audit_tenant` decides.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import threading
import time
from pathlib import Path

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


class TreeRSS(threading.Thread):
    """Sample the RSS of this process and its children; keep the largest sum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.workers: set[str] = set()
        self.stop = threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self, pid: str) -> int:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page
        except (OSError, IndexError, ValueError):
            return 0

    def children(self) -> list[str]:
        me, found = os.getpid(), []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    found.append(entry.name)
        return found

    def run(self) -> None:
        while not self.stop.wait(0.05):
            children = self.children()
            total = self.rss("self") + sum(self.rss(p) for p in children)
            self.peak = max(self.peak, total)
            for pid in set(children) - self.workers:
                try:
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        self.workers.add(pid)
                except OSError:
                    pass


def gib(kib: float) -> float:
    return kib / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("users", nargs="?", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    count = args.users
    views, users, groups = make(count)
    before = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    sampler = TreeRSS()
    sampler.start()
    with load_lambdas() as lambdas:
        start, cpu = time.perf_counter(), time.process_time()
        audit = audit_tenant(
            users, groups, views=views, lambdas=lambdas, workers=args.workers
        )
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    sampler.stop.set()
    sampler.join()
    peak = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_cpu = children.ru_utime + children.ru_stime
    child_peak = gib(children.ru_maxrss)
    started = len(sampler.workers)
    total = peak + started * child_peak
    sampled = sampler.peak / 1024**3
    print(f"audited {count:,} users and {len(groups):,} groups in {seconds:.1f} s")
    print(
        f"CPU: {cpu:.1f} s in this process, {children_cpu:.1f} s in"
        f" {started} worker process(es)"
    )
    print(
        f"peak RSS: {peak:.2f} GiB this process, {child_peak:.2f} GiB the largest"
        f" worker (ru_maxrss); total at most {total:.2f} GiB,"
        f" {sampled:.2f} GiB sampled"
    )
    print(f"findings: {len(audit.findings):,}")
    print(audit.counts().to_string())
    figures = {
        "users": count,
        "groups": len(groups),
        "findings": len(audit.findings),
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_gib": peak,
        "before_rss_gib": before,
        "workers": started,
        "children_cpu_s": children_cpu,
        "children_peak_rss_gib": child_peak,
        "total_peak_rss_gib": total,
        "sampled_total_peak_gib": sampled,
    }
    print("BENCH " + json.dumps({"benchmark": "audit", "figures": figures}))


if __name__ == "__main__":
    main()
