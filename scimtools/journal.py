"""A write journal in SQLite: every write recorded before it is sent and after.

The journal is general: a *run* (an apply, a rollback, a staged import) holds
*operations* keyed by ``(run_id, op_id)``. Before a write is sent its operation
is recorded as ``sent`` with the resource's state before the write and the
request; after the answer it becomes ``applied``, ``failed``, ``stale``,
``unchanged`` or ``skipped`` with the answer. An operation left ``sent`` after a
crash is one whose answer was lost: the caller must look at the server before
sending it again. Every change is also appended to ``events``, the history.

SQLite runs in WAL mode and commits each record on its own, so a process killed
with ``kill -9`` loses at most the record it was writing, never an earlier one.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from scimtools.errors import SCIMToolsError

__all__ = ["FINAL_STATES", "Journal", "JournalError"]

#: States after which an operation is never sent again in its run.
FINAL_STATES = frozenset({"applied", "failed", "stale", "unchanged", "skipped"})
_STATES = FINAL_STATES | {"sent"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    parent_run_id TEXT,
    fingerprint TEXT,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    plan TEXT
);
CREATE TABLE IF NOT EXISTS operations (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    op_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    state TEXT NOT NULL,
    before TEXT,
    request TEXT,
    response TEXT,
    status INTEGER,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    answered_at TEXT,
    PRIMARY KEY (run_id, op_id)
);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    op_id TEXT,
    event TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_op ON events (run_id, op_id);
"""

_OP_COLUMNS = (
    "run_id",
    "op_id",
    "seq",
    "op",
    "resource_type",
    "resource_id",
    "state",
    "before",
    "request",
    "response",
    "status",
    "reason",
    "attempts",
    "sent_at",
    "answered_at",
)
_JSON_FIELDS = ("before", "request", "response")


class JournalError(SCIMToolsError):
    """The journal does not hold what the caller asked for, or disagrees with it."""


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Journal:
    """Record runs of writes and each write's before-state in one SQLite file.

    Safe to share between threads of one process (one connection, one lock) and
    to reopen after a crash. Writers in other processes wait for the lock
    (``timeout``).

    Parameters
    ----------
    path : str or Path
        The database file; created with its tables when missing.
    clock : callable, optional
        Returns an ISO 8601 UTC timestamp; for tests.
    timeout : float, default 30
        Seconds to wait for another process's write lock.
    on_record : callable, optional
        Called with ``(event, run_id, op_id)`` after each committed record;
        tests use it to crash at a chosen point.

    Examples
    --------
    >>> journal = Journal(":memory:")
    >>> run = journal.start_run("r1", kind="apply")
    >>> journal.record_sent(run, "op-1", op="patch", resource_type="User",
    ...                     resource_id="u1", before={"title": "a"},
    ...                     request={"title": "b"})
    >>> journal.record_answer(run, "op-1", "applied", status=200,
    ...                       response={"title": "b"})
    >>> journal.operation(run, "op-1")["state"], journal.counts(run)
    ('applied', {'applied': 1})
    >>> journal.close()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], str] | None = None,
        timeout: float = 30.0,
        on_record: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.clock = clock or _utc_now
        self.on_record = on_record
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------

    def _write(
        self,
        statements: Iterable[tuple[str, tuple[Any, ...]]],
        event: str,
        run_id: str,
        op_id: str | None,
        detail: Any = None,
    ) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    db.execute(sql, args)
                db.execute(
                    "INSERT INTO events (run_id, op_id, event, at, detail)"
                    " VALUES (?,?,?,?,?)",
                    (run_id, op_id, event, self.clock(), _dumps(detail)),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        if self.on_record is not None:
            self.on_record(event, run_id, op_id)

    def _next_seq(self, run_id: str) -> int:
        # Only orders operations for display; a tie between threads is harmless.
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM operations WHERE run_id=?",
                (run_id,),
            ).fetchone()
        return int(row[0])

    def start_run(
        self,
        run_id: str | None = None,
        *,
        kind: str,
        fingerprint: str | None = None,
        parent_run_id: str | None = None,
        meta: dict[str, Any] | None = None,
        plan: Any = None,
    ) -> str:
        """Open a run, or reopen an unfinished one with the same id.

        Parameters
        ----------
        run_id : str, optional
            Generated (a UUID) when omitted.
        kind : str
            ``"apply"``, ``"rollback"``, ``"import"``...
        fingerprint : str, optional
            What the run does (`scimtools.plan.plan_fingerprint`); a reopened run
            must have the same one.
        parent_run_id : str, optional
            The run this one undoes or continues.
        meta : dict, optional
            Settings worth keeping (JSON).
        plan : object, optional
            The run's plan as JSON records, so that it can be resumed from the
            journal alone.

        Returns
        -------
        str
            The run id.

        Raises
        ------
        JournalError
            The run exists with another kind or fingerprint.
        """
        run_id = run_id or str(uuid.uuid4())
        existing = self.run(run_id, missing_ok=True)
        if existing is not None:
            if existing["kind"] != kind or (
                fingerprint is not None and existing["fingerprint"] != fingerprint
            ):
                raise JournalError(
                    f"run {run_id!r} exists as a {existing['kind']} of another plan"
                    f" (fingerprint {existing['fingerprint']}); resume it with the"
                    " plan it started with, or start a new run id"
                )
            self._write(
                [("UPDATE runs SET status='running' WHERE run_id=?", (run_id,))],
                "run.resumed",
                run_id,
                None,
            )
            return run_id

        self._write(
            [
                (
                    "INSERT INTO runs (run_id, kind, parent_run_id, fingerprint,"
                    " status, started_at, meta, plan) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        run_id,
                        kind,
                        parent_run_id,
                        fingerprint,
                        "running",
                        self.clock(),
                        _dumps(meta or {}),
                        _dumps(plan),
                    ),
                )
            ],
            "run.started",
            run_id,
            None,
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished", **meta: Any) -> None:
        """Mark a run finished (or ``"failed"``, ``"refused"``), merging ``meta``."""
        run = self.run(run_id)
        merged = {**run["meta"], **meta}
        self._write(
            [
                (
                    "UPDATE runs SET status=?, finished_at=?, meta=? WHERE run_id=?",
                    (status, self.clock(), _dumps(merged), run_id),
                )
            ],
            f"run.{status}",
            run_id,
            None,
        )

    def record_sent(
        self,
        run_id: str,
        op_id: str,
        *,
        op: str,
        resource_type: str | None,
        resource_id: str | None,
        before: Any,
        request: Any,
    ) -> None:
        """Record that an operation is about to be sent, with the before-state.

        Call it right before the request; if the process dies before
        `record_answer`, the operation stays ``sent``.
        """
        seq = self._next_seq(run_id)
        self._write(
            [
                (
                    "INSERT INTO operations (run_id, op_id, seq, op, resource_type,"
                    " resource_id, state, before, request, attempts, sent_at)"
                    " VALUES (?,?,?,?,?,?,'sent',?,?,1,?)"
                    " ON CONFLICT (run_id, op_id) DO UPDATE SET state='sent',"
                    " resource_id=excluded.resource_id, request=excluded.request,"
                    " before=COALESCE(operations.before, excluded.before),"
                    " attempts=operations.attempts + 1, sent_at=excluded.sent_at",
                    (
                        run_id,
                        op_id,
                        seq,
                        op,
                        resource_type,
                        resource_id,
                        _dumps(before),
                        _dumps(request),
                        self.clock(),
                    ),
                )
            ],
            "op.sent",
            run_id,
            op_id,
        )

    def record_answer(
        self,
        run_id: str,
        op_id: str,
        state: str,
        *,
        status: int | None = None,
        response: Any = None,
        reason: str | None = None,
        resource_id: str | None = None,
        op: str | None = None,
        resource_type: str | None = None,
        before: Any = None,
    ) -> None:
        """Record an operation's outcome: one of `FINAL_STATES`.

        An operation never sent (``stale``, ``unchanged``, ``skipped``) is
        recorded here directly; pass ``op`` and ``resource_type`` then.
        """
        if state not in FINAL_STATES:
            raise ValueError(
                f"state must be one of {sorted(FINAL_STATES)}, not {state}"
            )
        seq = self._next_seq(run_id)
        self._write(
            [
                (
                    "INSERT INTO operations (run_id, op_id, seq, op, resource_type,"
                    " resource_id, state, before, response, status, reason,"
                    " answered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (run_id, op_id) DO UPDATE SET state=excluded.state,"
                    " response=excluded.response, status=excluded.status,"
                    " reason=excluded.reason, answered_at=excluded.answered_at,"
                    " resource_id=COALESCE(excluded.resource_id,"
                    " operations.resource_id),"
                    " before=COALESCE(operations.before, excluded.before)",
                    (
                        run_id,
                        op_id,
                        seq,
                        op or "",
                        resource_type,
                        resource_id,
                        state,
                        _dumps(before),
                        _dumps(response),
                        status,
                        reason,
                        self.clock(),
                    ),
                )
            ],
            f"op.{state}",
            run_id,
            op_id,
            {"status": status, "reason": reason} if status or reason else None,
        )

    # -- reading ---------------------------------------------------------------

    def run(self, run_id: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """Return a run's record (``meta`` and ``plan`` decoded).

        Raises
        ------
        JournalError
            No such run (unless ``missing_ok``).
        """
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        if row is None:
            if missing_ok:
                return None
            raise JournalError(
                f"the journal {self.path} has no run {run_id!r}; list them with"
                " Journal.runs()"
            )
        record = dict(zip(names, row, strict=True))
        record["meta"] = _loads(record["meta"]) or {}
        record["plan"] = _loads(record["plan"])
        return record

    def runs(self) -> pd.DataFrame:
        """Return every run, oldest first, with its operation counts by state."""
        with self._lock:
            frame = pd.read_sql_query(
                "SELECT r.run_id, r.kind, r.parent_run_id, r.status, r.started_at,"
                " r.finished_at, COUNT(o.op_id) AS operations FROM runs r"
                " LEFT JOIN operations o ON o.run_id = r.run_id"
                " GROUP BY r.run_id ORDER BY r.started_at, r.rowid",
                self._db,
            )
        return frame

    def operation(self, run_id: str, op_id: str) -> dict[str, Any] | None:
        """Return one operation's record (JSON fields decoded), or None."""
        with self._lock:
            cursor = self._db.execute(
                f"SELECT {', '.join(_OP_COLUMNS)} FROM operations"
                " WHERE run_id=? AND op_id=?",
                (run_id, op_id),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        record = dict(zip(_OP_COLUMNS, row, strict=True))
        for name in _JSON_FIELDS:
            record[name] = _loads(record[name])
        return record

    def operations(self, run_id: str) -> pd.DataFrame:
        """Return a run's operations in the order they were first recorded.

        JSON fields (``before``, ``request``, ``response``) are decoded.
        """
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_OP_COLUMNS)} FROM operations WHERE run_id=?"
                " ORDER BY seq",
                (run_id,),
            ).fetchall()
        records = [dict(zip(_OP_COLUMNS, row, strict=True)) for row in rows]
        for record in records:
            for name in _JSON_FIELDS:
                record[name] = _loads(record[name])
        return pd.DataFrame(records, columns=list(_OP_COLUMNS), dtype=object)

    def states(self, run_id: str) -> dict[str, str]:
        """Return ``{op_id: state}`` for a run."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op_id, state FROM operations WHERE run_id=?", (run_id,)
            ).fetchall()
        return dict(rows)

    def counts(self, run_id: str) -> dict[str, int]:
        """Return the number of a run's operations in each state."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM operations WHERE run_id=?"
                " GROUP BY state ORDER BY state",
                (run_id,),
            ).fetchall()
        return dict(rows)

    def events(self, run_id: str) -> pd.DataFrame:
        """Return a run's history: one row per record, in order."""
        with self._lock:
            return pd.read_sql_query(
                "SELECT event_id, op_id, event, at, detail FROM events"
                " WHERE run_id=? ORDER BY event_id",
                self._db,
                params=(run_id,),
            )

    def children(self, run_id: str, kind: str | None = None) -> list[str]:
        """Return the ids of runs whose parent is ``run_id`` (e.g. its rollbacks)."""
        sql = "SELECT run_id FROM runs WHERE parent_run_id=?"
        args: tuple[Any, ...] = (run_id,)
        if kind is not None:
            sql += " AND kind=?"
            args += (kind,)
        with self._lock:
            return [r[0] for r in self._db.execute(sql + " ORDER BY rowid", args)]
