"""Operations per second that apply_plan pushes to the sandbox, 50 ms per request.

Each operation is a fresh read and a PATCH (two requests); the journal is a
SQLite file. Prints one line per concurrency, then ``BENCH {json}`` for
benchmarks/run_all.py. Run: ``.venv/bin/python benchmarks/push.py [--users N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from scimtools.client import SCIMClient
from scimtools.journal import Journal
from scimtools.plan import make_plan
from scimtools.push import apply_plan
from scimtools.sandbox import Sandbox, SandboxConfig

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=80)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        config = SandboxConfig(latency=args.latency_ms / 1000)
        sb = Sandbox(Path(tmp) / "t.sqlite", seed_dir=SEED_DIR, config=config)
        with sb:
            sb.tenant.ingest_users(
                [
                    {"schemas": [USER_URN], "userName": f"bench{i:05d}", "active": True}
                    for i in range(args.users)
                ]
            )
            token = sb.mint_token("migrator", ttl=30 * 86400)
            client = SCIMClient(sb.base_url, token=token, progress=False)
            ids = [
                r["id"] for r in client.list_page("Users", count=args.users).resources
            ]
            print(
                f"apply_plan on the sandbox, {args.latency_ms:.0f} ms per request,"
                f" {len(ids)} PATCH operations (read + write each)"
            )
            figures: dict[str, float] = {"latency_ms": args.latency_ms}
            for round_, concurrency in enumerate((1, 8)):
                plan = make_plan(
                    {
                        "op": "patch",
                        "resource_type": "User",
                        "resource_id": user_id,
                        "path": "name.familyName",
                        "value": f"Round{round_}",
                    }
                    for user_id in ids
                )
                with Journal(Path(tmp) / f"journal{round_}.sqlite") as journal:
                    started = time.perf_counter()
                    summary = apply_plan(client, plan, journal, concurrency=concurrency)
                    seconds = time.perf_counter() - started
                print(
                    f"concurrency {concurrency}: {summary.applied} applied in"
                    f" {seconds:.1f} s = {summary.applied / seconds:.1f} ops/s"
                    f" ({summary.requests} requests)"
                )
                figures[f"c{concurrency}_applied"] = summary.applied
                figures[f"c{concurrency}_ops_per_s"] = summary.applied / seconds
                figures[f"c{concurrency}_requests"] = summary.requests
            client.close()
    print("BENCH " + json.dumps({"benchmark": "push", "figures": figures}))


if __name__ == "__main__":
    main()
