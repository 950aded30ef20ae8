"""Print users per second imported into the sandbox with 50 ms added per request.

Each run imports fresh users into an empty tenant in one stage: per user a
lookup by userName and by externalId before the create (the journaled engine
of `scimtools.push` checks that the user does not exist yet), the POST, and a
GET for the read-back audit. The stage's memberships (one PATCH per group) and
the per-stage export of the tenant come on top. Printed, never asserted; the
last line is ``BENCH {json}`` for benchmarks/run_all.py.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from scimtools.client import SCIMClient
from scimtools.demo.legacy import LEGACY_MAPPING
from scimtools.imports import start_import, validate_import
from scimtools.journal import Journal
from scimtools.sandbox import Sandbox, SandboxConfig

LATENCY = 0.050
RUNS = ((1, 40), (8, 240))  # (concurrency, users)
SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


def make_source(n: int) -> pd.DataFrame:
    """Return n legacy rows, a third of them in one of two groups."""
    return pd.DataFrame(
        {
            "employee_id": f"L{i:06d}",
            "login": f"user{i}",
            "email": f"User{i}@Example.org",
            "full_name": f"Given{i} Family{i}",
            "phone": f"(201) 555-{i:04d}",
            "department": "Sales",
            "groups": "" if i % 3 else ("Sales" if i % 2 else "Support"),
        }
        for i in range(1, n + 1)
    )


def run(concurrency: int, users: int) -> dict[str, float]:
    """Import ``users`` at ``concurrency``, print the figures and return them."""
    with tempfile.TemporaryDirectory() as tmp:
        config = SandboxConfig(latency=LATENCY)
        with Sandbox(Path(tmp) / "t.sqlite", seed_dir=SEED_DIR, config=config) as sb:
            token = sb.mint_token("migrator", ttl=30 * 86400)
            client = SCIMClient(sb.base_url, token=token, progress=False)
            report = validate_import(make_source(users), LEGACY_MAPPING, client=client)
            with Journal(Path(tmp) / "journal.sqlite") as journal:
                staged = start_import(
                    client,
                    journal,
                    report,
                    stages=["rest"],
                    concurrency=concurrency,
                    progress=False,
                )
                sent = client.requests_sent
                started = time.perf_counter()
                result = staged.run_stage()
                seconds = time.perf_counter() - started
            requests = client.requests_sent - sent
    print(
        f"concurrency {concurrency}: {result.counts['created']} users in"
        f" {seconds:.1f} s = {result.counts['created'] / seconds:.1f} users/s"
        f" ({requests} requests, {requests / users:.1f} per user,"
        f" {requests / seconds:.0f} requests/s)"
    )
    return {
        f"c{concurrency}_created": result.counts["created"],
        f"c{concurrency}_users_per_s": result.counts["created"] / seconds,
        f"c{concurrency}_requests": requests,
    }


def main() -> None:
    logging.getLogger("scimtools.paging").setLevel(logging.ERROR)
    print(f"staged import into the sandbox, {LATENCY * 1000:.0f} ms per request")
    figures: dict[str, float] = {"latency_ms": LATENCY * 1000}
    for concurrency, users in RUNS:
        figures.update(run(concurrency, users))
    print("BENCH " + json.dumps({"benchmark": "import", "figures": figures}))


if __name__ == "__main__":
    main()
