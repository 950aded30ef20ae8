"""The fault matrix: export, push, rollback and staged import under each fault.

Not a test module: tests/test_fault_matrix.py runs it small, and
benchmarks/fault_matrix.py runs it larger and prints the table. `Matrix` builds
one template tenant without faults, records the fault-free result of each
operation, then runs each operation on a copy of the tenant behind a sandbox
with a `FaultPlan` and compares: the same tenant (users by userName, groups
with their members' userNames), no duplicate, and every operation of the
journal in a final state, as in the fault-free run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scimtools.auth import ClientCredentialsAuth
from scimtools.client import SCIMClient
from scimtools.demo.legacy import LEGACY_MAPPING
from scimtools.imports import start_import, validate_import
from scimtools.journal import FINAL_STATES, Journal
from scimtools.plan import make_plan, read_plan, write_plan
from scimtools.push import apply_plan, resume_run, rollback_run
from scimtools.sandbox import Sandbox
from scimtools.sandbox.faults import FAULTS, FaultPlan

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
WORKER = Path(__file__).with_name("fault_worker.py")
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
TTL = 30 * 86400
OPERATIONS = ("export", "push", "rollback", "import")
DONE = frozenset({"applied", "unchanged"})

#: Each fault alone, then all at once. Retry-After is 0 to keep runs short.
FAULT_CASES: dict[str, dict[str, Any]] = {
    "latency+jitter": {"latency": 0.002, "jitter": 0.004},
    "429": {"rates": {"429": 0.2}},
    "500": {"rates": {"500": 0.1}},
    "502": {"rates": {"502": 0.1}},
    "503": {"rates": {"503": 0.1}},
    "saved-500": {"rates": {"saved-500": 0.3}},
    "saved-drop": {"rates": {"saved-drop": 0.3}},
    "reset": {"rates": {"reset": 0.1}},
    "truncate": {"rates": {"truncate": 0.1}},
    "html": {"rates": {"html": 0.1}},
    "token-ttl": {"token_ttl": 2},
    "all": {
        "rates": dict.fromkeys(FAULTS, 0.04),
        "latency": 0.001,
        "jitter": 0.002,
        "token_ttl": 2,
    },
}


def fault_plan(name: str, *, seed: int = 7, max_faults: int = 8) -> FaultPlan:
    """Return the `FaultPlan` of a case of `FAULT_CASES`."""
    bound = max_faults * 2 if name == "all" else max_faults
    return FaultPlan(seed=seed, max_faults=bound, retry_after=0, **FAULT_CASES[name])


def copy_db(source: Path, target: Path) -> Path:
    """Copy a SQLite file (tenant or journal) with the backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    with src, dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


def user_body(i: int) -> dict[str, Any]:
    return {
        "schemas": [USER_URN],
        "userName": f"user{i:04d}",
        "externalId": f"ext-{i:04d}",
        "active": True,
        "name": {"givenName": f"Given{i}", "familyName": "Family"},
        "emails": [{"value": f"user{i:04d}@example.com", "primary": True}],
    }


def person(n: int) -> dict[str, str]:
    return {
        "employee_id": f"L{n:06d}",
        "login": f"new{n}",
        "email": f"new{n}@example.org",
        "full_name": f"Given{n} Family{n}",
        "phone": f"(201) 555-{n % 10000:04d}",
        "department": "Sales",
        "groups": "Sales" if n % 3 else "Sales;Warehouse",
    }


def connect(sb: Sandbox, *, short_tokens: bool = False) -> SCIMClient:
    """A client with quick retries; client-credentials tokens for short TTLs."""
    options: dict[str, Any] = {
        "progress": False,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "max_retries": 8,
    }
    if short_tokens:
        c = sb.clients["migrator"]
        auth = ClientCredentialsAuth(
            sb.token_url,
            c.client_id,
            c.client_secret,
            sb.server_entity_id,
            renew_margin=0.0,
        )
        return SCIMClient(sb.base_url, auth=auth, **options)
    return SCIMClient(sb.base_url, token=sb.mint_token("migrator", ttl=TTL), **options)


def snapshot(client: SCIMClient) -> dict[str, Any]:
    """The tenant without ids and times: users, and groups with member names."""
    users = client.export("Users", progress=False).resources
    names = {u["id"]: u["userName"] for u in users}
    shown = sorted(
        json.dumps(
            {k: v for k, v in u.items() if k not in ("id", "meta")}, sort_keys=True
        )
        for u in users
    )
    groups = sorted(
        (
            g["displayName"],
            sorted(names.get(m["value"], "?") for m in g.get("members") or []),
        )
        for g in client.export("Groups", progress=False).resources
    )
    return {"users": shown, "groups": groups}


def duplicates(client: SCIMClient) -> list[str]:
    """userNames and displayNames held by more than one resource."""
    users = client.export("Users", progress=False).resources
    groups = client.export("Groups", progress=False).resources
    counts = Counter(u["userName"].lower() for u in users)
    counts.update(f"group:{g['displayName'].lower()}" for g in groups)
    return sorted(k for k, n in counts.items() if n > 1)


def journal_states(path: Path) -> dict[str, dict[str, str]]:
    """Every run's operation states, by run id."""
    with Journal(path) as journal:
        return {r: journal.states(r) for r in journal.runs()["run_id"]}


@dataclass
class Result:
    """One cell of the matrix."""

    operation: str
    fault: str
    users: int
    faults: int
    outcome: str
    seconds: float
    kills: int = 0

    def row(self) -> dict[str, Any]:
        return dict(vars(self))


class Matrix:
    """The template tenant, the fault-free references and the runs."""

    def __init__(self, root: Path, *, users: int = 30, people: int = 20) -> None:
        self.root = root
        self.users = users
        self.people = people
        self._n = 0

    # ---- setup without faults

    def build(self, model: Any) -> Matrix:
        root = self.root
        self.template = root / "template.sqlite"
        with Sandbox(self.template, seed_dir=SEED_DIR) as sb:
            client = connect(sb)
            made = [client.create("Users", user_body(i)) for i in range(self.users)]
            for name, members in (("Engineering", made[:5]), ("Sales", made[5:8])):
                client.create(
                    "Groups",
                    {
                        "schemas": [GROUP_URN],
                        "displayName": name,
                        "members": [{"value": u["id"]} for u in members],
                    },
                )
            groups = {
                g["displayName"]: g["id"]
                for g in client.export("Groups", progress=False).resources
            }
            self.export_ref = {
                "Users": sorted(u["id"] for u in made),
                "Groups": sorted(groups.values()),
            }
            self.before = snapshot(client)
            source = pd.DataFrame([person(n) for n in range(1, self.people + 1)])
            self.report = validate_import(
                source, LEGACY_MAPPING, model=model, client=client
            )
            client.close()
        self.plan = write_plan(self._plan(made, groups), root / "plan.csv")

        # Fault-free references, on copies.
        self.push_ref = self._reference("push")
        self.rollback_ref = self._reference("rollback")
        self.import_ref = self._reference("import")
        return self

    def _plan(self, users: list[dict], groups: dict[str, str]) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        n = len(users)
        for i, user in enumerate(users[: max(4, n // 4)]):
            rows.append(
                {
                    "op": "patch",
                    "resource_type": "User",
                    "resource_id": user["id"],
                    "path": "name.familyName",
                    "expected": "Family",
                    "value": f"Renamed{i}",
                }
            )
        rows.append(
            {
                "op": "deactivate",
                "resource_type": "User",
                "resource_id": users[-1]["id"],
            }
        )
        for i in range(n, n + max(2, n // 10)):
            rows.append(
                {
                    "op": "create",
                    "resource_type": "User",
                    "value": user_body(i),
                    "op_id": f"c{i}",
                }
            )
            rows.append(
                {
                    "op": "add_member",
                    "resource_type": "Group",
                    "resource_id": groups["Engineering"],
                    "value": f"ref:c{i}",
                }
            )
        for user in users[10:12]:
            rows.append(
                {
                    "op": "add_member",
                    "resource_type": "Group",
                    "resource_id": groups["Sales"],
                    "value": user["id"],
                }
            )
        rows.append(
            {
                "op": "remove_member",
                "resource_type": "Group",
                "resource_id": groups["Engineering"],
                "value": users[0]["id"],
            }
        )
        rows.append(
            {
                "op": "patch",
                "resource_type": "Group",
                "resource_id": groups["Sales"],
                "path": "displayName",
                "value": "Sales EMEA",
            }
        )
        return make_plan(rows)

    def _reference(self, operation: str) -> dict[str, Any]:
        with self.case(operation, None) as (sb, client, journal_path):
            self.perform(operation, client, journal_path)
            return {
                "state": snapshot(client),
                "journal": journal_states(journal_path),
            }

    # ---- one run

    @contextlib.contextmanager
    def case(
        self, operation: str, plan: FaultPlan | None
    ) -> Iterator[tuple[Sandbox, SCIMClient, Path]]:
        self._n += 1
        db = self.root / f"case{self._n}.sqlite"
        journal_path = self.root / f"case{self._n}.journal"
        if operation == "rollback" and hasattr(self, "applied"):
            copy_db(self.applied[0], db)
            copy_db(self.applied[1], journal_path)
        else:
            copy_db(self.template, db)
        sb = Sandbox(db, faults=plan).start()
        client = connect(sb, short_tokens=bool(plan and plan.token_ttl))
        try:
            yield sb, client, journal_path
        finally:
            client.close()
            sb.stop()

    def perform(self, operation: str, client: SCIMClient, journal_path: Path) -> Any:
        if operation == "export":
            return {
                name: client.export(name, count=7, max_workers=3, progress=False)
                for name in ("Users", "Groups")
            }
        with Journal(journal_path) as journal:
            if operation == "push":
                summary = apply_plan(
                    client,
                    read_plan(self.plan),
                    journal,
                    run_id="run",
                    concurrency=2,
                    lookup_wait=0.01,
                )
                if not hasattr(self, "applied"):
                    # The fault-free apply is the starting point of rollbacks.
                    self.applied = (
                        copy_db(
                            journal_path.with_suffix(".sqlite"),
                            self.root / "applied.sqlite",
                        ),
                        copy_db(journal_path, self.root / "applied.journal"),
                    )
                return summary
            if operation == "rollback":
                return rollback_run(
                    client,
                    journal,
                    "run",
                    rollback_id="undo",
                    concurrency=2,
                    lookup_wait=0.01,
                )
            staged = start_import(
                client,
                journal,
                self.report,
                import_id="imp",
                stages=[5, "rest"],
                concurrency=2,
                lookup_wait=0.01,
                progress=False,
            )
            return staged.run()

    # ---- checks

    def check(
        self, operation: str, client: SCIMClient, journal_path: Path, done: Any
    ) -> list[str]:
        """Return what differs from the fault-free run (empty when nothing)."""
        if operation == "export":
            problems = []
            for name, result in done.items():
                ids = [r["id"] for r in result.resources]
                if len(ids) != len(set(ids)):
                    problems.append(f"{name}: an id twice")
                if sorted(ids) != self.export_ref[name]:
                    problems.append(
                        f"{name}: {len(ids)} ids, not the tenant's"
                        f" {len(self.export_ref[name])}"
                    )
            return problems
        ref = {
            "push": self.push_ref,
            "rollback": self.rollback_ref,
            "import": self.import_ref,
        }[operation]
        problems = []
        twice = duplicates(client)
        if twice:
            problems.append(f"duplicates {twice[:3]}")
        state = snapshot(client)
        if state != ref["state"]:
            problems.append(_state_diff(ref["state"], state))
        states = journal_states(journal_path)
        for run_id, expected in ref["journal"].items():
            got = states.get(run_id, {})
            if set(got) != set(expected):
                problems.append(f"{run_id}: ops {sorted(set(expected) ^ set(got))[:3]}")
            bad = {k: v for k, v in got.items() if v not in FINAL_STATES}
            with Journal(journal_path) as journal:
                ops = journal.operations(run_id) if run_id in states else None
            reasons = {}
            if ops is not None:
                reasons = dict(zip(ops["op_id"], ops["reason"], strict=True))
            bad |= {
                k: v for k, v in got.items() if (v in DONE) != (expected.get(k) in DONE)
            }
            if bad:
                shown = {k: (v, reasons.get(k)) for k, v in list(bad.items())[:3]}
                problems.append(f"{run_id}: {shown}")
        return problems

    def run(self, operation: str, fault: str, *, seed: int = 7) -> Result:
        """Run one cell of the matrix."""
        plan = fault_plan(fault, seed=seed)
        started = time.monotonic()
        with self.case(operation, plan) as (sb, client, journal_path):
            try:
                done = self.perform(operation, client, journal_path)
                problems = self.check(operation, client, journal_path, done)
            except Exception as exc:  # reported in the table
                problems = [f"{type(exc).__name__}: {exc}"[:200]]
            injected = sb.faults.total if sb.faults else 0
        return Result(
            operation,
            fault,
            self.involved(operation),
            injected,
            "; ".join(problems) or "same as without faults",
            time.monotonic() - started,
        )

    def involved(self, operation: str) -> int:
        """Users the operation touches (all of them for an export)."""
        if operation == "export":
            return self.users
        if operation == "import":
            return len(self.report.valid_rows)
        plan = read_plan(self.plan)
        return len(
            set(plan["resource_id"].dropna())
            | set(plan["op_id"][plan["op"] == "create"])
        )

    # ---- kill -9 and resume

    def kill_runs(
        self, operation: str, runs: int, *, fault: str = "all", seed: int = 11
    ) -> Result:
        """Kill the operation at random points under faults, resume, compare."""
        rng = random.Random(seed)
        worker = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        problems: list[str] = []
        kills = injected = 0
        started = time.monotonic()
        durations: list[float] = []
        try:
            # Two runs without a kill measure the duration (the first also
            # warms the worker up), then ``runs`` runs are killed.
            for index in range(runs + 2):
                plan = fault_plan(fault, seed=seed + index)
                with self.case(operation, plan) as (sb, client, journal_path):
                    job = self._job(operation, sb, client, journal_path)
                    t0 = time.monotonic()
                    worker.stdin.write(json.dumps(job) + "\n")  # type: ignore[union-attr]
                    worker.stdin.flush()  # type: ignore[union-attr]
                    pid = int(worker.stdout.readline())  # type: ignore[union-attr]
                    if index >= 2:
                        time.sleep(rng.uniform(0.0, min(durations) * 0.9))
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    status = int(worker.stdout.readline())  # type: ignore[union-attr]
                    if index < 2:
                        durations.append(time.monotonic() - t0)
                    kills += int(os.WIFSIGNALED(status))
                    if not os.WIFSIGNALED(status) and status:
                        problems.append(f"run {index}: the worker failed ({status})")
                    time.sleep(0.05)  # let the sandbox finish a request in flight
                    done = self._resume(operation, client, journal_path)
                    found = self.check(operation, client, journal_path, done)
                    problems += [f"run {index}: {p}" for p in found]
                    if found and os.environ.get("FAULT_MATRIX_DEBUG"):
                        print(sb.faults.log if sb.faults else None, file=sys.stderr)
                        with Journal(journal_path) as journal:
                            for rid in journal.runs()["run_id"]:
                                ev = journal.events(rid)
                                print(ev.to_string(), file=sys.stderr)
                    injected += sb.faults.total if sb.faults else 0
        finally:
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait(timeout=30)
            worker.stdout.close()  # type: ignore[union-attr]
        return Result(
            f"{operation} + kill -9 + resume",
            fault,
            self.involved(operation),
            injected,
            "; ".join(problems[:6]) or "same as without faults",
            time.monotonic() - started,
            kills,
        )

    def _job(
        self, operation: str, sb: Sandbox, client: SCIMClient, journal_path: Path
    ) -> dict[str, Any]:
        job = {
            "kind": {"push": "apply"}.get(operation, operation),
            "base_url": sb.base_url,
            "token": sb.mint_token("migrator", ttl=TTL),
            "journal": str(journal_path),
            "plan": str(self.plan),
            "run_id": "run",
            "rollback_id": "undo",
            "import_id": "imp",
        }
        if operation == "import":
            with Journal(journal_path) as journal:
                start_import(
                    client,
                    journal,
                    self.report,
                    import_id="imp",
                    stages=[5, "rest"],
                    concurrency=2,
                    lookup_wait=0.01,
                    progress=False,
                )
        return job

    def _resume(self, operation: str, client: SCIMClient, journal_path: Path) -> Any:
        from scimtools.imports import resume_import

        with Journal(journal_path) as journal:
            if operation == "import":
                staged = resume_import(
                    client,
                    journal,
                    "imp",
                    concurrency=2,
                    lookup_wait=0.01,
                    progress=False,
                )
                return staged.run()
            run_id = "run" if operation == "push" else "undo"
            if journal.run(run_id, missing_ok=True) is not None:
                return resume_run(client, journal, run_id, lookup_wait=0.01)
        return self.perform(operation, client, journal_path)


def _state_diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    users = set(want["users"]) ^ set(got["users"])
    groups = [g for g in got["groups"] if g not in want["groups"]]
    return f"state differs: {len(users)} user record(s), groups {groups[:2]}"


def table(results: list[Result]) -> str:
    """Return the matrix as a Markdown table."""
    lines = [
        "| operation | fault | users involved | faults injected | kills | outcome |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.operation} | {r.fault} | {r.users} | {r.faults} | {r.kills} |"
            f" {r.outcome} |"
        )
    return "\n".join(lines)
