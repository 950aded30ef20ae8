"""Replay the demo streams into a sandbox database: the demo tenant.

The two streams of :mod:`scimtools.demo.generate` are merged on ``seq`` and
replayed in order, each request with its own IdP's token, through the sandbox's
HTTP API. Only the lookup and create of people whom a single IdP provisions are
loaded straight into storage (``Tenant.ingest_users``): no request order can
change their outcome (they are loaded a day per batch, each batch created at its
first request's time). Everything whose outcome depends on order goes over HTTP,
so the conflicts of two SCIM clients on one tenant arise as FusionAuth would
produce them: 409s when the other IdP took the userName or email first, a PUT of
one IdP overwriting what the other created, groups of one name adopted or
refused.

The sandbox clock follows the replay (each request happens at its ``at``) and
its ids come from ``seed``, so building twice gives the same tenant.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     report = build_demo(pathlib.Path(tmp) / "tenant.sqlite", people=60)
>>> report.users > 0 and report.groups > 0
True
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import logging
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .generate import (
    DEFAULT_SEED,
    ENTERPRISE,
    IDPS,
    DemoData,
    generate_demo,
    write_jsonl,
)

__all__ = ["DEFAULT_DB", "BuildReport", "build_demo", "main"]

logger = logging.getLogger(__name__)

DEFAULT_DB = Path("out/demo/tenant.sqlite")
TOKEN_TTL = 10 * 366 * 86400
"""Token lifetime for the replay: the sandbox clock runs through 2023-2025."""

_PLACEHOLDER = re.compile(r"\$\{(user|group|base)(?::([^}]+))?\}")
_ERROR_URN = "urn:ietf:params:scim:schemas:extension:fusionauth:2.0:Error"


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_demo` built, and how long it took.

    ``statuses`` counts the HTTP statuses of the replayed requests (bulk loads
    count as 201); ``conflicts`` is the number of 409s; ``mess`` is the
    generator's count of each kind of mess.
    """

    db_path: Path
    seed: int
    people: int
    users: int
    groups: int
    memberships: int
    http_requests: int
    bulk_users: int
    skipped: int
    conflicts: int
    statuses: dict[str, int]
    outcomes: dict[str, dict[str, int]]
    mess: dict[str, int]
    seconds: float = field(compare=False)

    def summary(self) -> str:
        """Return a few lines for a terminal."""
        return (
            f"Built {self.db_path} from {self.people:,} people (seed {self.seed}) in"
            f" {self.seconds:.1f} s\n"
            f"tenant: {self.users:,} users, {self.groups:,} groups,"
            f" {self.memberships:,} memberships\n"
            f"replay: {self.http_requests:,} HTTP requests, {self.bulk_users:,} bulk"
            f" users, {self.skipped:,} skipped, {self.conflicts:,} answered 409\n"
            f"statuses: {json.dumps(self.statuses, sort_keys=True)}"
        )


def build_demo(
    db_path: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    people: int = 12_000,
    bulk: bool = True,
    sockets: bool = False,
    seed_dir: str | Path | None = None,
) -> BuildReport:
    """Generate the demo streams and replay them into a new sandbox database.

    Parameters
    ----------
    db_path
        The SQLite file to create; an existing file is replaced. The streams go
        to ``streams/{okta,entra}.jsonl`` and the IdP views to
        ``idp-views/{okta,entra}.jsonl`` in the same folder.
    seed
        Seed of the generator and of the sandbox's ids.
    people
        How many people to generate.
    bulk
        Load the people that only one IdP provisions straight into storage;
        False sends every request over HTTP (slower, same tenant).
    sockets
        Send the requests to the sandbox's TCP port. By default they go to the
        same WSGI app in-process (``httpx.WSGITransport``): the same routing,
        tokens and FusionAuth behaviour, three times faster.
    seed_dir
        The sandbox seed directory (tenant, entities, secrets); the sandbox's
        default when None.

    Returns
    -------
    BuildReport
        Sizes, statuses and the time taken.
    """
    from scimtools.sandbox import Sandbox, SandboxConfig

    started = time.perf_counter()
    db_path = Path(db_path)
    out_dir = db_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build beside the target and move it in place at the end, so that a sandbox
    # serving the old tenant never sees a half-built one.
    building = db_path.with_name(db_path.name + ".building")
    _remove_database(building)

    data = generate_demo(seed=seed, people=people)
    clock = _ReplayClock()
    config = SandboxConfig(clock=clock, id_seed=seed, token_ttl=TOKEN_TTL)

    with Sandbox(building, seed_dir=seed_dir, port=0, config=config) as sandbox:
        replay = _Replay(sandbox, data, clock, bulk=bulk, sockets=sockets)
        try:
            replay.run()
        finally:
            replay.close()
        counts = sandbox.tenant.counts()
    _move_database(building, db_path)

    views = replay.annotate_views()
    for idp in IDPS:
        write_jsonl(out_dir / "streams" / f"{idp}.jsonl", replay.annotated(idp))
        write_jsonl(out_dir / "idp-views" / f"{idp}.jsonl", views[idp])
    seconds = time.perf_counter() - started
    report = BuildReport(
        db_path=db_path,
        seed=seed,
        people=people,
        users=counts["users"],
        groups=counts["groups"],
        memberships=counts["memberships"],
        http_requests=replay.http_requests,
        bulk_users=replay.bulk_users,
        skipped=replay.skipped,
        conflicts=replay.statuses.get("409", 0),
        statuses=dict(sorted(replay.statuses.items())),
        outcomes={
            idp: dict(sorted(Counter(v["outcome"] for v in views[idp]).items()))
            for idp in IDPS
        },
        mess=dict(data.mess),
        seconds=seconds,
    )
    logger.info(
        "Built the demo tenant: %s users, %s groups in %.1f s",
        report.users,
        report.groups,
        seconds,
    )
    return report


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _move_database(source: Path, target: Path) -> None:
    """Fold the WAL into ``source`` and move it onto ``target`` atomically."""
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(source, target)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scimtools demo build [--db PATH]``: build the tenant, print a summary.

    ``argv`` is what follows ``scimtools demo``, so it starts with ``build``.

    Examples
    --------
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = argparse.ArgumentParser(
        prog="scimtools demo",
        description="Build the demo tenant (a sandbox database) from invented "
        "people provisioned by Okta and Entra ID.",
    )
    parser.add_argument("command", choices=["build"], help="what to do")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="SQLite file")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--people", type=int, default=12_000)
    parser.add_argument(
        "--sockets",
        action="store_true",
        help="talk to the sandbox over TCP instead of in-process WSGI",
    )
    parser.add_argument(
        "--no-bulk",
        action="store_true",
        help="send every request over HTTP, also for single-IdP people",
    )
    args = parser.parse_args(argv)

    report = build_demo(
        args.db,
        seed=args.seed,
        people=args.people,
        bulk=not args.no_bulk,
        sockets=args.sockets,
    )
    print(report.summary())
    return 0


class _ReplayClock:
    """The sandbox clock: the time of the request being replayed."""

    def __init__(self) -> None:
        self.now = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, stamp: str) -> dt.datetime:
        self.now = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return self.now


class _Unresolved(Exception):
    """A placeholder names a resource the IdP holds no tenant id for."""


class _Replay:
    def __init__(
        self,
        sandbox: Any,
        data: DemoData,
        clock: _ReplayClock,
        *,
        bulk: bool,
        sockets: bool,
    ) -> None:
        self.sandbox = sandbox
        self.data = data
        self.clock = clock
        self.bulk = bulk
        transport = None if sockets else httpx.WSGITransport(app=sandbox.app)
        self.http = httpx.Client(
            base_url=sandbox.url, timeout=60.0, transport=transport
        )
        self.tokens = {idp: self._fetch_token(idp) for idp in IDPS}

        self.ids: dict[str, dict[str, str]] = {idp: {} for idp in IDPS}
        self.found: dict[str, dict[str, str | None]] = {idp: {} for idp in IDPS}
        self.results: dict[int, dict[str, Any]] = {}
        self.statuses: Counter[str] = Counter()
        self.http_requests = 0
        self.bulk_users = 0
        self.skipped = 0
        self.pending: list[dict[str, Any]] = []

    def close(self) -> None:
        self.http.close()

    def _fetch_token(self, idp: str) -> str:
        client = self.sandbox.clients[idp]
        response = self.http.post(
            self.sandbox.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": f"target-entity:{self.sandbox.server_entity_id}",
            },
            auth=(client.client_id, client.client_secret),
        )
        if response.status_code != 200 or "access_token" not in response.json():
            raise RuntimeError(
                f"the sandbox token endpoint answered {response.status_code} for"
                f" the {idp} client; check data/demo/tenant.json"
            )
        return str(response.json()["access_token"])

    # -- the replay loop ---------------------------------------------------------

    def run(self) -> None:
        for record in self.data.merged_stream():
            idp, key = record["idp"], record["key"]
            when = record["when"]
            if when != "always":
                matched = self.found[idp].get(key) is not None
                if matched != (when == "lookup_matched"):
                    self._skip(record, "the lookup decided otherwise")
                    continue

            if self.bulk and record["bulk"]:
                self._queue_bulk(record)
                continue

            self._flush_bulk()
            self._send(record)
        self._flush_bulk()

    def _skip(self, record: dict[str, Any], reason: str) -> None:
        self.results[record["seq"]] = {"via": "skipped", "detail": reason}
        self.skipped += 1

    def _queue_bulk(self, record: dict[str, Any]) -> None:
        if record["action"] == "user.lookup":
            # Nobody else provisions this person, so the lookup finds nobody.
            self.found[record["idp"]][record["key"]] = None
            self.results[record["seq"]] = {"via": "bulk", "status": 200}
            return
        self.pending.append(record)

    def _flush_bulk(self) -> None:
        """Load the queued creates, one day per batch (all at the day's first
        request time, to keep the sandbox's lambda calls batched)."""
        from scimtools.sandbox.store import ConflictError

        tenant = self.sandbox.tenant
        while self.pending:
            day = self.pending[0]["at"][:10]
            batch = [r for r in self.pending if r["at"][:10] == day]
            self.pending = self.pending[len(batch) :]
            when = self.clock.set(batch[0]["at"])

            try:
                ids = tenant.ingest_users(
                    [r["request"]["body"] for r in batch], when=when
                )
            except ConflictError:
                ids = []
                for record in batch:
                    try:
                        ids += tenant.ingest_users(
                            [record["request"]["body"]], when=when
                        )
                    except ConflictError as exc:
                        ids.append(None)
                        self._record(record, 409, None, str(exc), via="bulk")

            for record, user_id in zip(batch, ids, strict=True):
                if user_id is None:
                    continue
                self.ids[record["idp"]][record["key"]] = user_id
                self._record(record, 201, user_id, None, via="bulk")
                self.bulk_users += 1

    def _send(self, record: dict[str, Any]) -> None:
        idp = record["idp"]
        try:
            request = self._resolve_request(idp, record["request"])
        except _Unresolved as exc:
            self._skip(record, str(exc))
            return

        self.clock.set(record["at"])
        logger.debug(
            "%s %s %s %s", idp, request["method"], request["path"], record["seq"]
        )
        response = self._exchange(idp, request)
        self.http_requests += 1
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None

        status = response.status_code
        resource_id = None
        if record["action"].endswith(".lookup"):
            found = body.get("Resources") if isinstance(body, dict) else None
            resource_id = found[0]["id"] if found and status == 200 else None
            self.found[idp][record["key"]] = resource_id
            if resource_id is not None:
                self.ids[idp][record["key"]] = resource_id
        elif isinstance(body, dict) and status < 300:
            resource_id = body.get("id")
            if record["action"].endswith(".create") and resource_id:
                self.ids[idp][record["key"]] = resource_id

        detail = _error_detail(body) if status >= 400 else None
        self._record(record, status, resource_id, detail, via="http")

    def _exchange(self, idp: str, request: dict[str, Any]) -> httpx.Response:
        headers = dict(request["headers"])
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {self.tokens[idp]}"
            content = None
            if request["body"] is not None:
                content = json.dumps(request["body"]).encode()
                headers.setdefault("Content-Type", "application/json")
            url = request["path"] + (f"?{request['query']}" if request["query"] else "")
            response = self.http.request(
                request["method"], url, headers=headers, content=content
            )
            if response.status_code != 401 or attempt:
                return response
            self.tokens[idp] = self._fetch_token(idp)
        raise AssertionError("unreachable")

    def _record(
        self,
        record: dict[str, Any],
        status: int,
        resource_id: str | None,
        detail: Any,
        *,
        via: str,
    ) -> None:
        self.statuses[str(status)] += 1
        self.results[record["seq"]] = {
            "via": via,
            "status": status,
            "id": resource_id,
            "detail": detail,
        }

    # -- placeholders ------------------------------------------------------------

    def _resolve_request(self, idp: str, request: dict[str, Any]) -> dict[str, Any]:
        resolved = dict(request)
        resolved["path"] = self._resolve_text(idp, request["path"])
        body = request["body"]
        if isinstance(body, dict) and "Operations" in body:
            body = {**body, "Operations": self._resolve_ops(idp, body["Operations"])}
            if not body["Operations"]:
                raise _Unresolved("every operation names a user the IdP never got")
        elif body is not None:
            body = self._resolve_value(idp, copy.deepcopy(body))
        resolved["body"] = body
        return resolved

    def _resolve_ops(self, idp: str, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for op in ops:
            try:
                op = dict(op)
                if "path" in op:
                    op["path"] = self._resolve_text(idp, op["path"])
                value = op.get("value")
                if isinstance(value, list) and value:
                    items = []
                    for item in value:
                        try:
                            items.append(self._resolve_value(idp, item))
                        except _Unresolved:
                            continue
                    if not items:
                        continue
                    op["value"] = items
                elif "value" in op:
                    op["value"] = self._resolve_value(idp, value)
            except _Unresolved:
                continue
            kept.append(op)
        return kept

    def _resolve_value(self, idp: str, value: Any) -> Any:
        if isinstance(value, str):
            return self._resolve_text(idp, value)
        if isinstance(value, list):
            return [self._resolve_value(idp, v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve_value(idp, v) for k, v in value.items()}
        return value

    def _resolve_text(self, idp: str, text: str) -> str:
        if "${" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            kind, key = match.group(1), match.group(2)
            if kind == "base":
                return str(self.sandbox.base_url)
            tenant_id = self.ids[idp].get(key or "")
            if tenant_id is None:
                raise _Unresolved(f"{idp} holds no tenant id for {kind} {key}")
            return tenant_id

        return _PLACEHOLDER.sub(replace, text)

    # -- outcomes ----------------------------------------------------------------

    def annotate_views(self) -> dict[str, list[dict[str, Any]]]:
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in self.data.merged_stream():
            by_key.setdefault((record["idp"], record["key"]), []).append(record)

        views: dict[str, list[dict[str, Any]]] = {}
        for idp in IDPS:
            views[idp] = []
            for view in self.data.views[idp]:
                records = by_key.get((idp, view["key"]), [])
                views[idp].append(self._annotate(idp, view, records))
        return views

    def _annotate(
        self, idp: str, view: dict[str, Any], records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        view = dict(view)
        outcome, status, error, failed = "error", None, None, 0

        for record in records:
            result = self.results.get(record["seq"], {})
            action = record["action"]
            if action.endswith(".lookup") and result.get("id"):
                outcome, status = "matched", result.get("status")
            if action == "user.link" and result.get("via") == "http":
                status = result.get("status")
            if action.endswith(".create") and result.get("via") != "skipped":
                status = result.get("status")
                outcome = {201: "created", 409: "conflict"}.get(status, "error")
            code = result.get("status")
            unresolved = result.get("via") == "skipped" and record["when"] == "always"
            if (code is not None and code >= 400) or unresolved:
                failed += 1
                if error is None:
                    error = {
                        "action": action,
                        "at": record["at"],
                        "status": code,
                        "detail": result.get("detail"),
                    }

        view["profile"] = self._resolve_profile(idp, view["profile"])
        view["tenant_id"] = self.ids[idp].get(view["key"])
        view["outcome"] = outcome
        view["status"] = status
        view["error"] = error
        view["failed"] = failed
        return view

    def _resolve_profile(self, idp: str, profile: Any) -> Any:
        """Put the tenant id the IdP sent for its manager into its view.

        An IdP sends the id the tenant gave the manager; when the manager has
        none, the link was never sent and the view holds no manager.
        """
        block = profile.get(ENTERPRISE) if isinstance(profile, dict) else None
        if not isinstance(block, dict) or "manager" not in block:
            return profile
        block = dict(block)
        try:
            block["manager"] = self._resolve_value(idp, block["manager"])
        except _Unresolved:
            del block["manager"]
        return {**profile, ENTERPRISE: block}

    def annotated(self, idp: str) -> list[dict[str, Any]]:
        return [
            {**record, "result": self.results.get(record["seq"])}
            for record in self.data.streams[idp]
        ]


def _error_detail(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    extension = body.get(_ERROR_URN) or {}
    codes = [e.get("code") for e in extension.get("generalErrors") or []]
    for errors in (extension.get("fieldErrors") or {}).values():
        codes += [e.get("code") for e in errors]
    return {"detail": body.get("detail"), "codes": codes}
