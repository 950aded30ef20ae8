"""Flatten 100,000 SCIM users: scimtools.frames against pandas.json_normalize.

Both sides read the same list of user dicts (as an export holds them: id, meta,
name, two emails, a phone number, the enterprise extension with a manager) and
produce one wide row per user plus one row per email:

- scimtools: ``users_frame(records)`` and ``emails_frame(records)`` (typed
  columns: ``str``, nullable booleans, UTC timestamps, the primary email chosen);
- pandas: ``pd.json_normalize(records)`` and ``pd.json_normalize(records,
  record_path="emails", meta=["id"])`` (object columns, lists left in cells,
  nothing parsed).

The two run alternately, ``--repeat`` times each; the best time of each counts.
Prints the figures; the last line is ``BENCH {json}`` for benchmarks/run_all.py.

Run: ``.venv/bin/python benchmarks/frames.py [--users 100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from scimtools.frames import ENTERPRISE, emails_frame, users_frame

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GIVEN = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth", "Ritchie", "Kay"]
DEPARTMENTS = ["R&D", "Sales", "HR", "Support", "Finance"]


def make_users(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Return ``n`` SCIM users shaped as a FusionAuth export returns them."""
    rng = random.Random(seed)
    users = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        work = f"{given}.{family}.{i}@example.com".lower()
        created = f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T08:{i % 60:02d}:00.123Z"
        users.append(
            {
                "schemas": [USER, ENTERPRISE],
                "id": f"6f1d{i:08d}-0000-4000-8000-000000000000",
                "externalId": f"00u{i:09d}",
                "userName": work,
                "displayName": f"{given} {family}",
                "active": rng.random() > 0.05,
                "name": {
                    "givenName": given,
                    "familyName": family,
                    "formatted": f"{given} {family}",
                },
                "emails": [
                    {"value": work, "type": "work", "primary": True},
                    {"value": f"{given}{i}@home.example".lower(), "type": "home"},
                ],
                "phoneNumbers": [
                    {"value": f"+1 201-555-{i % 10000:04d}", "type": "mobile"}
                ],
                ENTERPRISE: {
                    "employeeNumber": str(100000 + i),
                    "department": rng.choice(DEPARTMENTS),
                    "manager": {"value": f"6f1d{i // 10:08d}"},
                },
                "meta": {
                    "resourceType": "User",
                    "created": created,
                    "lastModified": created,
                    "location": f"/scim/v2/Users/6f1d{i:08d}",
                },
            }
        )
    return users


def scimtools_flatten(records: list[dict[str, Any]]) -> tuple[int, int]:
    users, emails = users_frame(records), emails_frame(records)
    return len(users), len(emails)


def pandas_flatten(records: list[dict[str, Any]]) -> tuple[int, int]:
    users = pd.json_normalize(records)
    emails = pd.json_normalize(records, record_path="emails", meta=["id"])
    return len(users), len(emails)


def best_of(
    repeat: int, fns: dict[str, Callable[[], tuple[int, int]]]
) -> dict[str, tuple[float, tuple[int, int]]]:
    """Run each function ``repeat`` times, alternating; keep each one's best."""
    best: dict[str, tuple[float, tuple[int, int]]] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            started = time.perf_counter()
            shape = fn()
            seconds = time.perf_counter() - started
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, shape)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    records = make_users(args.users)
    best = best_of(
        args.repeat,
        {
            "scimtools": lambda: scimtools_flatten(records),
            "json_normalize": lambda: pandas_flatten(records),
        },
    )
    ours, theirs = best["scimtools"], best["json_normalize"]
    assert ours[1] == theirs[1], f"row counts differ: {ours[1]} against {theirs[1]}"
    ratio = theirs[0] / ours[0]
    print(
        f"flatten {args.users:,} users ({ours[1][1]:,} emails), best of"
        f" {args.repeat}: scimtools users_frame + emails_frame {ours[0]:.2f} s,"
        f" pandas.json_normalize {theirs[0]:.2f} s; scimtools speed ratio"
        f" {ratio:.2f} (json_normalize time / scimtools time)"
    )
    figures = {
        "users": args.users,
        "emails": ours[1][1],
        "repeat": args.repeat,
        "scimtools_s": ours[0],
        "json_normalize_s": theirs[0],
        "ratio": ratio,
    }
    print("BENCH " + json.dumps({"benchmark": "frames", "figures": figures}))


if __name__ == "__main__":
    main()
