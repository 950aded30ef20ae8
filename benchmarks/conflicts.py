"""Find conflicts among 1,000,000 tenant users and two client views of 600,000.

Builds synthetic frames directly (no sandbox, no HTTP): 1,000,000 tenant users,
of which 200,000 are claimed by both clients; Okta's view and Entra's view hold
600,000 users each. Planted: 2,000 creates that failed with 409, 2,000 people
created twice, status and attribute disagreements on shared users, and 300
groups (10 of one name in both clients). Prints the wall seconds, CPU seconds
(``time.process_time``) and peak resident memory (``ru_maxrss``) of
`scimtools.attribute_tenant` and of `scimtools.find_conflicts`; on a loaded
machine the CPU seconds are the steadier figure.

Run: ``.venv/bin/python benchmarks/conflicts.py [--users N]``. The issue asks for
under 60 s and 8 GiB on the project machine. Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import pandas as pd

from scimtools.attribution import attribute_tenant, client_view_from_frame
from scimtools.conflicts import find_conflicts, tenant_frames


def _ids(prefix: str, n: int, start: int = 0) -> pd.Series:
    return prefix + pd.Series(np.arange(start, start + n)).astype("str").str.zfill(9)


def build(users: int, view_size: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    shared = 2 * view_size - users
    okta_only = view_size - shared

    ids = _ids("u-", users)
    local = _ids("person", users)
    email = local + "@example.com"
    given = pd.Series(rng.choice(["Ada", "Bo", "Cy", "Di", "Ed", "Flo"], users))
    family = _ids("Fam", users)
    phone = "+1 212-" + pd.Series(rng.integers(1000000, 9999999, users)).astype("str")
    okta_key = _ids("00u", users)
    entra_key = _ids("e-", users)

    # Tenant: Okta-only users first, then shared, then Entra-only; shared users
    # hold Entra's externalId (Entra wrote last).
    is_okta = np.arange(users) < okta_only + shared
    is_entra = np.arange(users) >= okta_only
    external = np.where(is_entra, entra_key, okta_key)
    active = np.ones(users, dtype=bool)
    tenant_users = pd.DataFrame(
        {
            "id": ids,
            "external_id": external,
            "user_name": email,
            "email": email,
            "given_name": given,
            "family_name": family,
            "phone": phone,
            "active": pd.array(active, dtype="boolean"),
            "department": "Sales",
        }
    )

    def view(mask: np.ndarray, keys: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "key": keys[mask].to_numpy(),
                "user_name": email[mask].to_numpy(),
                "email": email[mask].to_numpy(),
                "given_name": given[mask].to_numpy(),
                "family_name": family[mask].to_numpy(),
                "phone": phone[mask].to_numpy(),
                "active": True,
                "department": "Sales",
            }
        )
        return frame

    okta = view(is_okta, okta_key)
    entra = view(is_entra, entra_key)

    # Shared users: 5 % deactivated in Okta only, 5 % another department in Entra.
    shared_okta = np.arange(okta_only, okta_only + shared)
    flip = rng.choice(shared_okta, shared // 20, replace=False)
    okta.loc[flip, "active"] = False
    moved = rng.choice(np.arange(shared), shared // 20, replace=False)
    entra.loc[moved, "department"] = "Research"

    # 2,000 Entra creates that failed with 409 on an Okta-only user's email.
    blocked = pd.DataFrame(
        {
            "key": _ids("e-blocked-", 2_000),
            "user_name": email[:2_000].str.upper().to_numpy(),
            "email": email[:2_000].to_numpy(),
            "create_status": 409,
        }
    )
    # 2,000 people created twice: the Entra copy is its own tenant user.
    twins = np.arange(2_000, 4_000)
    dup_ids = _ids("u-dup-", 2_000)
    dup_keys = _ids("e-dup-", 2_000)
    dup_users = tenant_users.iloc[twins].assign(
        id=dup_ids.to_numpy(),
        external_id=dup_keys.to_numpy(),
        user_name=(local[twins] + "@example.org").to_numpy(),
        email=None,
    )
    dup_view = view(np.isin(np.arange(users), twins), okta_key)
    dup_view["key"] = dup_keys.to_numpy()
    dup_view["user_name"] = dup_users["user_name"].to_numpy()
    tenant_users = pd.concat([tenant_users, dup_users], ignore_index=True)
    entra = pd.concat([entra, blocked, dup_view], ignore_index=True)

    # Groups: 300 per client, the first 10 of each share a name.
    names_okta = [f"Okta group {n}" for n in range(300)]
    names_entra = [f"Entra group {n}" for n in range(300)]
    names_okta[:10] = names_entra[:10] = [f"Shared {n}" for n in range(10)]
    tenant_groups = pd.DataFrame(
        {
            "id": [f"g-{n}" for n in range(590)],
            "display_name": sorted(set(names_okta) | set(names_entra)),
        }
    )
    members_okta = pd.DataFrame(
        {
            "group_key": rng.choice(names_okta, 300_000),
            "user_key": rng.choice(okta["key"].to_numpy(), 300_000),
        }
    ).drop_duplicates()
    members_entra = pd.DataFrame(
        {
            "group_key": rng.choice(names_entra, 300_000),
            "user_key": rng.choice(entra["key"].to_numpy()[:view_size], 300_000),
        }
    ).drop_duplicates()
    okta_ids = pd.Series(ids.to_numpy(), index=okta_key.to_numpy())
    entra_ids = pd.Series(ids.to_numpy(), index=entra_key.to_numpy())
    group_ids = tenant_groups.set_index("display_name")["id"]
    memberships = (
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "group_id": group_ids.reindex(m["group_key"]).to_numpy(),
                        "user_id": ids_of.reindex(m["user_key"]).to_numpy(),
                    }
                )
                for m, ids_of in ((members_okta, okta_ids), (members_entra, entra_ids))
            ]
        )
        .dropna()
        .drop_duplicates()
    )

    def groups_of(names: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"key": names, "display_name": names})

    tenant = tenant_frames(tenant_users, groups=tenant_groups, memberships=memberships)
    views = [
        client_view_from_frame(
            "okta", okta, groups=groups_of(names_okta), members=members_okta
        ),
        client_view_from_frame(
            "entra", entra, groups=groups_of(names_entra), members=members_entra
        ),
    ]
    return tenant, views


def _peak_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--view", type=int, default=600_000)
    args = parser.parse_args()

    started = time.perf_counter()
    tenant, views = build(args.users, args.view)
    built = time.perf_counter() - started
    before = _peak_gib()

    wall, cpu = time.perf_counter(), time.process_time()
    attribution = attribute_tenant(tenant, views)
    attributed = (time.perf_counter() - wall, time.process_time() - cpu, _peak_gib())
    wall, cpu = time.perf_counter(), time.process_time()
    conflicts = find_conflicts(tenant, views, attribution=attribution)
    found = (time.perf_counter() - wall, time.process_time() - cpu, _peak_gib())

    print(
        f"tenant users {len(tenant.users):,}; view records"
        f" {', '.join(f'{v.client} {len(v.users):,}' for v in views)}"
    )
    print(
        f"synthetic frames built in {built:.1f} s (not counted);"
        f" peak RSS after building {before:.2f} GiB"
    )
    for label, (seconds, cpu_seconds, peak) in (
        ("attribution", attributed),
        ("conflicts", found),
    ):
        print(
            f"{label}: wall {seconds:.1f} s, CPU {cpu_seconds:.1f} s,"
            f" peak RSS {peak:.2f} GiB"
        )
    print(
        f"attribution + conflicts: wall {attributed[0] + found[0]:.1f} s,"
        f" CPU {attributed[1] + found[1]:.1f} s (issue: under 60 s and 8 GiB)"
    )
    print(conflicts["kind"].value_counts().sort_index().to_string())
    figures = {
        "users": len(tenant.users),
        "view": args.view,
        "conflicts": len(conflicts),
        "seconds": attributed[0] + found[0],
        "cpu_s": attributed[1] + found[1],
        "attribution_s": attributed[0],
        "peak_rss_gib": found[2],
        "before_rss_gib": before,
    }
    print("BENCH " + json.dumps({"benchmark": "conflicts", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
