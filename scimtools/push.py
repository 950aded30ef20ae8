"""Push a plan to a tenant: dry run, apply with a journal, resume, roll back.

Every write goes through the same steps, in `dry_run` and `apply_plan` alike:

1. Read the target fresh (a GET by id; for a create, a lookup by userName,
   externalId or displayName).
2. Decide: already in effect (``unchanged``), no longer as planned (``stale``:
   the ``expected`` value or ``meta.lastModified`` differs, or the target is
   gone), or ``ready``. FusionAuth has no ETag (``etag.supported: false``), so
   this check runs right before each write.
3. Record the operation in the `Journal` as ``sent``, with the before-state.
4. Write: PATCH where the server takes it, else PUT of the freshly read
   resource with the change made; DELETE; POST for creates.
5. Record the answer. When the answer is lost (a 5xx, a timeout, a crash), the
   target is read again instead of sending the write twice: a create is looked
   up, a change is compared with what was wanted.

`resume_run` continues an interrupted run from the journal; `rollback_run`
undoes a run (or some rows) from the before-states, as a run of its own.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from scimtools.auth import require_permissions
from scimtools.client import SCIMClient
from scimtools.errors import (
    ConflictError,
    NotFoundError,
    SCIMServerError,
    SCIMToolsError,
)
from scimtools.journal import FINAL_STATES, Journal, JournalError
from scimtools.plan import (
    RESOURCE_TYPES,
    is_empty,
    make_plan,
    plan_fingerprint,
    validate_plan,
)

__all__ = [
    "MassChangeError",
    "RunSummary",
    "apply_plan",
    "dry_run",
    "resource_diffs",
    "resume_run",
    "rollback_run",
]

logger = logging.getLogger(__name__)

_PERMISSION_VERBS = {
    "create": "create",
    "replace": "replace",
    "patch": "patch",
    "deactivate": "patch",
    "add_member": "patch",
    "remove_member": "patch",
    "delete": "delete",
}
_PERMISSION_KINDS = {"User": "users", "EnterpriseUser": "enterprise users"}
_PERMISSION_KINDS["Group"] = "groups"
_AMBIGUOUS = (httpx.TransportError,)
#: Sends of one write at most, when its answers are lost or say "try again"
#: and a fresh read shows that it did not land.
_WRITE_ATTEMPTS = 5


def _transient(exc: Exception) -> bool:
    """Whether a failed write may succeed when sent again (once seen not landed).

    A lost answer, 429, a 5xx, or a 2xx whose body could not be read.
    """
    if isinstance(exc, _AMBIGUOUS):
        return True
    status = getattr(exc, "status", None)
    return isinstance(status, int) and (status == 429 or status >= 500 or status < 300)


class MassChangeError(SCIMToolsError):
    """A plan deactivates or deletes more users than the allowed share.

    Attributes
    ----------
    count, total : int
        Users the plan deactivates or deletes, and users in the tenant.
    share, limit : float
        ``count / total`` and the allowed share.
    """

    def __init__(self, count: int, total: int, limit: float) -> None:
        self.count = count
        self.total = total
        self.share = count / total if total else 1.0
        self.limit = limit
        super().__init__(
            f"the plan deactivates or deletes {count:,} of {total:,} users"
            f" ({self.share:.1%}), more than the allowed {limit:.0%}; check that the"
            " findings come from a complete export, then pass"
            " allow_mass_change=True (or a larger max_share) to run it anyway"
        )


# -- the operations ------------------------------------------------------------


@dataclass
class _Op:
    op_id: str
    op: str
    resource_type: str
    resource_id: str | None
    path: str | None
    expected: Any
    expected_modified: str | None
    value: Any
    step: int

    @property
    def endpoint(self) -> str:
        return RESOURCE_TYPES[self.resource_type]

    @property
    def kind(self) -> str:
        return "Group" if self.resource_type == "Group" else "User"

    @property
    def attribute(self) -> str | None:
        return "active" if self.op == "deactivate" else self.path

    @property
    def wanted(self) -> Any:
        return False if self.op == "deactivate" else self.value

    @classmethod
    def from_row(cls, row: pd.Series) -> _Op:
        def cell(name: str) -> Any:
            value = row.get(name)
            return None if is_empty(value) else value

        return cls(
            op_id=str(row["op_id"]),
            op=str(row["op"]),
            resource_type=str(row["resource_type"]),
            resource_id=cell("resource_id"),
            path=cell("path"),
            expected=cell("expected"),
            expected_modified=cell("expected_modified"),
            value=cell("value"),
            step=int(row["step"]),
        )


def _same(a: Any, b: Any) -> bool:
    if is_empty(a) and is_empty(b):
        return True
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(
        b, sort_keys=True, default=str
    )


def _split(path: str) -> tuple[str | None, list[str]]:
    if path.startswith("urn:"):
        urn, _, rest = path.rpartition(":")
        return urn, rest.split(".")
    return None, path.split(".")


def read_value(resource: dict[str, Any] | None, path: str) -> Any:
    """Return the value at a plan path (``emails[primary].value`` included).

    Examples
    --------
    >>> read_value({"emails": [{"value": "a@x", "primary": True}]},
    ...            "emails[primary].value")
    'a@x'
    """
    if resource is None:
        return None
    urn, parts = _split(path)
    node: Any = resource.get(urn) if urn else resource
    for part in parts:
        if not isinstance(node, dict):
            return None
        if part.endswith("[primary]"):
            items = [i for i in node.get(part[:-9]) or [] if isinstance(i, dict)]
            flagged = [i for i in items if i.get("primary") is True]
            node = (flagged or items or [None])[0]
        else:
            node = node.get(part)
    return node


def _readable(resource: dict[str, Any], path: str) -> bool:
    """Tell whether every node on the way to ``path`` is an object or absent.

    Examples
    --------
    >>> urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    >>> _readable({urn: {"manager": {"value": "m-7"}}}, f"{urn}:manager.value")
    True
    >>> _readable({urn: {"manager": "m-7"}}, f"{urn}:manager.value")
    False
    """
    urn, parts = _split(path)
    node: Any = resource.get(urn) if urn else resource
    for part in parts[:-1]:
        if node is None:
            return True
        if not isinstance(node, dict):
            return False
        node = node.get(part.removesuffix("[primary]"))
    return node is None or isinstance(node, dict | list)


def write_value(resource: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, for None, remove) the value at a plan path, in place.

    Examples
    --------
    >>> write_value({"name": {"givenName": "A"}}, "name.familyName", "B")
    {'name': {'givenName': 'A', 'familyName': 'B'}}
    >>> write_value({}, "emails[primary].value", "a@x")
    {'emails': [{'primary': True, 'value': 'a@x'}]}
    """
    urn, parts = _split(path)
    node = resource
    if urn:
        if not isinstance(node.get(urn), dict):
            node[urn] = {}
        node = node[urn]
        schemas = resource.setdefault("schemas", [])
        if isinstance(schemas, list) and urn not in schemas:
            schemas.append(urn)
    for part in parts[:-1]:
        if part.endswith("[primary]"):
            name = part[:-9]
            items = node.get(name)
            if not isinstance(items, list):
                items = node[name] = []
            dicts = [i for i in items if isinstance(i, dict)]
            flagged = [i for i in dicts if i.get("primary") is True]
            target = (flagged or dicts or [None])[0]
            if target is None:
                target = {"primary": True}
                items.append(target)
            node = target
        else:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return resource


def _modified(resource: Any) -> str | None:
    if isinstance(resource, dict):
        meta = resource.get("meta")
        if isinstance(meta, dict):
            return meta.get("lastModified")
    return None


def _member_ids(group: dict[str, Any] | None) -> list[str]:
    members = (group or {}).get("members") or []
    return [m.get("value") for m in members if isinstance(m, dict)]


def _put_body(resource: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(resource)
    body.pop("meta", None)
    return body


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- pacing ----------------------------------------------------------------------


class _Pacer:
    """Space request starts at least 1/rate seconds apart, across threads."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate_limit must be positive or None, not {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


# -- summary --------------------------------------------------------------------


@dataclass
class RunSummary:
    """What one run did.

    Attributes
    ----------
    run_id, kind : str
        The journal's run id and ``"apply"`` or ``"rollback"``.
    results : pandas.DataFrame
        One row per operation: ``op_id``, ``op``, ``resource_type``,
        ``resource_id``, ``path``, ``outcome`` (``applied``, ``stale``,
        ``failed``, ``unchanged``, ``skipped``, or ``rolled_back`` for an
        applied operation a later rollback undid), ``status`` and ``reason``.
    seconds : float
        Wall time of the run.
    requests : int
        HTTP requests sent during the run.
    not_approved : int
        Rows of the plan left out because they were not approved.
    """

    run_id: str
    kind: str
    results: pd.DataFrame
    seconds: float
    requests: int = 0
    not_approved: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Return the number of operations per outcome (all outcomes listed)."""
        found = self.results["outcome"].value_counts().to_dict()
        names = ("applied", "unchanged", "stale", "failed", "skipped", "rolled_back")
        return {name: int(found.get(name, 0)) for name in names}

    @property
    def applied(self) -> int:
        """Operations applied (including those found applied after a lost answer)."""
        return self.counts["applied"]

    @property
    def stale(self) -> int:
        """Operations skipped as stale: the target changed after the plan."""
        return self.counts["stale"]

    @property
    def failed(self) -> int:
        """Operations the server refused or that could not be confirmed."""
        return self.counts["failed"]

    @property
    def unchanged(self) -> int:
        """Operations already in effect, so not sent."""
        return self.counts["unchanged"]

    @property
    def rolled_back(self) -> int:
        """Applied operations that a later rollback undid."""
        return self.counts["rolled_back"]

    def __str__(self) -> str:
        c = self.counts
        return (
            f"{self.kind} run {self.run_id}: {c['applied']} applied,"
            f" {c['unchanged']} unchanged, {c['stale']} skipped as stale,"
            f" {c['failed']} failed, {c['skipped']} skipped,"
            f" {c['rolled_back']} rolled back; {self.requests} requests"
            f" in {self.seconds:.1f} s"
        )

    def problems(self) -> pd.DataFrame:
        """Return the stale, failed and skipped operations with their reasons."""
        bad = self.results["outcome"].isin(["stale", "failed", "skipped"])
        return self.results[bad].reset_index(drop=True)


# -- the engine ------------------------------------------------------------------


class _Engine:
    """Read, decide, journal and write one operation at a time."""

    def __init__(
        self,
        client: SCIMClient,
        journal: Journal | None,
        run_id: str | None,
        *,
        pacer: _Pacer,
        lookup_attempts: int,
        lookup_wait: float,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.journal = journal
        self.run_id = run_id
        self.pacer = pacer
        self.lookup_attempts = lookup_attempts
        self.lookup_wait = lookup_wait
        self.sleep = sleep
        self.created: dict[str, str] = {}
        self.written: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    # ---- state from the journal

    def load(self) -> None:
        """Learn the ids this run created and the lastModified it produced."""
        assert self.journal is not None and self.run_id is not None
        ops = self.journal.operations(self.run_id)
        for rec in ops.itertuples():
            if rec.state != "applied":
                continue
            kind = "Group" if rec.resource_type == "Group" else "User"
            if rec.op == "create" and rec.resource_id:
                self.created[rec.op_id] = rec.resource_id
            modified = _modified(rec.response)
            if modified and rec.resource_id:
                self.written[(kind, rec.resource_id)] = modified

    # ---- reading

    def _get(self, endpoint: str, resource_id: str) -> dict[str, Any] | None:
        self.pacer.wait()
        try:
            return self.client.get(endpoint, resource_id)
        except NotFoundError:
            return None

    def lookup(self, op: _Op, *, patient: bool = False) -> dict[str, Any] | None:
        """Find the resource a create makes, by userName/externalId/displayName."""
        value = op.value if isinstance(op.value, dict) else {}
        keys = (
            [("displayName", value.get("displayName"))]
            if op.kind == "Group"
            else [("userName", value.get("userName"))]
        )
        keys.append(("externalId", value.get("externalId")))
        attempts = self.lookup_attempts if patient else 1

        for attempt in range(attempts):
            for attribute, wanted in keys:
                if not isinstance(wanted, str) or not wanted:
                    continue
                self.pacer.wait()
                try:
                    page = self.client.list_page(
                        op.endpoint,
                        count=10,
                        filter=f"{attribute} eq {_quote(wanted)}",
                    )
                except (SCIMServerError, *_AMBIGUOUS) as exc:
                    # A patient lookup outlasts a read that failed for now.
                    if attempt + 1 < attempts and _transient(exc):
                        break
                    raise
                for found in page.resources:
                    # FusionAuth's userName eq also matches emails: check the hit.
                    have = found.get(attribute)
                    if isinstance(have, str) and have.lower() == wanted.lower():
                        return found
            if attempt + 1 < attempts:
                # The search index shows a write after a refresh (about 1 s).
                self.sleep(self.lookup_wait * 2**attempt)
        return None

    def target_id(self, op: _Op) -> str | None:
        if op.op == "create":
            return self.created.get(op.op_id)
        return op.resource_id

    def member_id(self, op: _Op) -> str | None:
        value = op.value
        if isinstance(value, str) and value.startswith("ref:"):
            return self.created.get(value[4:])
        return value if isinstance(value, str) else None

    def read(self, op: _Op, *, patient: bool = False) -> dict[str, Any] | None:
        if op.op == "create":
            return self.lookup(op, patient=patient)
        assert op.resource_id is not None
        return self._get(op.endpoint, op.resource_id)

    # ---- deciding

    def in_effect(self, op: _Op, current: dict[str, Any] | None) -> bool:
        if op.op == "create":
            return current is not None
        if op.op == "delete":
            return current is None
        if current is None:
            return False
        if op.op in ("add_member", "remove_member"):
            member = self.member_id(op)
            present = member in _member_ids(current)
            return present if op.op == "add_member" else not present
        if op.op == "replace" and op.attribute is None:
            wanted = _put_body(op.value or {})
            return all(
                _same(current.get(k), v)
                for k, v in wanted.items()
                if k not in ("schemas", "id")
            )
        assert op.attribute is not None
        return _same(read_value(current, op.attribute), op.wanted)

    def assess(self, op: _Op, current: dict[str, Any] | None) -> tuple[str, str]:
        """Return (status, reason): ready, unchanged, stale or exists."""
        if op.op == "create":
            if current is not None:
                return "exists", f"{op.kind} exists already with id {current.get('id')}"
            return "ready", ""
        if op.op in ("add_member", "remove_member") and self.member_id(op) is None:
            return "skipped", f"{op.value} was not created in this run"
        if current is None:
            if op.op == "delete":
                return "unchanged", "already deleted"
            return "stale", f"{op.kind} {op.resource_id} no longer exists"
        if self.in_effect(op, current):
            return "unchanged", "already as wanted"

        attribute = op.attribute
        member_op = op.op in ("add_member", "remove_member", "delete")
        if op.expected is not None and attribute and not member_op:
            have = read_value(current, attribute)
            if not _same(have, op.expected):
                return (
                    "stale",
                    f"{attribute} is {have!r} now, the plan expected {op.expected!r}",
                )
        if op.expected_modified is not None:
            modified = _modified(current)
            ours = self.written.get((op.kind, str(op.resource_id)))
            if modified not in (op.expected_modified, ours):
                return (
                    "stale",
                    f"changed at {modified}, after the plan was made"
                    f" ({op.expected_modified})",
                )
        return "ready", ""

    # ---- writing

    def request_for(self, op: _Op, current: dict[str, Any] | None) -> dict[str, Any]:
        """Return the request to send: method and body (PATCH operations or PUT)."""
        if op.op == "create":
            return {"method": "POST", "body": op.value}
        if op.op == "delete":
            return {"method": "DELETE", "body": None}
        assert current is not None
        if op.op == "replace" and op.attribute is None:
            body = _put_body(op.value)
            body["id"] = op.resource_id
            return {"method": "PUT", "body": body}

        use_patch = self.client.capabilities.patch is not False
        if op.op in ("add_member", "remove_member"):
            member = self.member_id(op)
            if use_patch and op.op == "add_member":
                ops = [{"op": "add", "path": "members", "value": [{"value": member}]}]
                return {"method": "PATCH", "body": ops}
            if use_patch:
                path = f"members[value eq {_quote(str(member))}]"
                return {"method": "PATCH", "body": [{"op": "remove", "path": path}]}
            body = _put_body(current)
            members = [m for m in body.get("members") or [] if isinstance(m, dict)]
            if op.op == "add_member":
                members.append({"value": member})
            else:
                members = [m for m in members if m.get("value") != member]
            body["members"] = members
            return {"method": "PUT", "body": body}

        attribute = op.attribute
        assert attribute is not None
        # Filtered paths are resolved by the server and silently dropped when
        # they match nothing, so [primary] paths go by PUT of the fresh read; so
        # does a path through a value that is not an object (a manager kept as
        # a bare string), which a PATCH cannot enter.
        if use_patch and "[" not in attribute and _readable(current, attribute):
            if op.wanted is None:
                return {
                    "method": "PATCH",
                    "body": [{"op": "remove", "path": attribute}],
                }
            return {
                "method": "PATCH",
                "body": [{"op": "replace", "path": attribute, "value": op.wanted}],
            }
        body = write_value(_put_body(current), attribute, op.wanted)
        return {"method": "PUT", "body": body}

    def send(self, op: _Op, request: dict[str, Any]) -> tuple[int, Any]:
        method, body = request["method"], request["body"]
        self.pacer.wait()
        if method == "POST":
            return 201, self.client.create(op.endpoint, body)
        target = self.target_id(op)
        assert target is not None
        if method == "DELETE":
            self.client.delete(op.endpoint, target)
            return 204, None
        if method == "PUT":
            return 200, self.client.replace(op.endpoint, target, body)
        return 200, self.client.patch(op.endpoint, target, body)

    def run(self, op: _Op, previous: str | None) -> str:
        """Run one operation of the journaled run; return its outcome."""
        assert self.journal is not None and self.run_id is not None
        journal, run_id = self.journal, self.run_id
        if previous in FINAL_STATES:
            return previous
        was_sent = previous == "sent"

        try:
            current = self.read(op, patient=was_sent)
            if was_sent and self.in_effect(op, current):
                # The answer was lost (crash, timeout): the write had landed.
                self._applied(op, current, None, "answer lost; found applied")
                return "applied"
            status, reason = self.assess(op, current)
            if status != "ready":
                state = "stale" if status in ("stale", "exists") else status
                journal.record_answer(
                    run_id,
                    op.op_id,
                    state,
                    reason=reason,
                    op=op.op,
                    resource_type=op.resource_type,
                    resource_id=self.target_id(op) or op.resource_id,
                    before=current,
                )
                if state == "stale":
                    logger.info("%s %s skipped as stale", op.op_id, op.op)
                return state

            request = self.request_for(op, current)
            journal.record_sent(
                run_id,
                op.op_id,
                op=op.op,
                resource_type=op.resource_type,
                resource_id=op.resource_id,
                before=current,
                request=request,
            )
            return self._write(op, request, current, was_sent)
        except (SCIMServerError, *_AMBIGUOUS) as exc:
            reason = _describe(exc)
            journal.record_answer(
                run_id,
                op.op_id,
                "failed",
                status=getattr(exc, "status", None),
                reason=reason,
                op=op.op,
                resource_type=op.resource_type,
                resource_id=op.resource_id,
            )
            logger.warning("%s %s failed: %s", op.op_id, op.op, type(exc).__name__)
            return "failed"

    def _write(
        self,
        op: _Op,
        request: dict[str, Any],
        current: dict[str, Any] | None,
        was_sent: bool,
        tries: int = _WRITE_ATTEMPTS,
    ) -> str:
        assert self.journal is not None and self.run_id is not None
        try:
            status, answer = self.send(op, request)
        except SCIMServerError as exc:
            if exc.status in (405, 501) and request["method"] == "PATCH":
                # PATCH refused: PUT the freshly read resource instead.
                return self._write(
                    op, self.request_for(op, current), current, was_sent, tries
                )
            if exc.status == 404 and op.op == "delete":
                self._finish(op, "unchanged", 404, current, "deleted meanwhile")
                return "unchanged"
            if isinstance(exc, ConflictError) or _transient(exc):
                return self._recheck(op, exc, was_sent, tries)
            self._finish(op, "failed", exc.status, current, _describe(exc))
            return "failed"
        except _AMBIGUOUS as exc:
            return self._recheck(op, exc, was_sent, tries)

        sets_attribute = op.op in ("patch", "replace", "deactivate") and op.attribute
        if (
            sets_attribute
            and isinstance(answer, dict)
            and not self.in_effect(op, answer)
        ):
            # FusionAuth answers 200 even when the request lambda drops the
            # attribute; the write changed nothing that was asked for.
            assert op.attribute is not None
            reason = (
                f"the server answered {status} but {op.attribute} is"
                f" {read_value(answer, op.attribute)!r}: its request lambda"
                " does not keep this attribute"
            )
            self._finish(op, "failed", status, current, reason)
            return "failed"
        self._applied(op, answer, status, None)
        return "applied"

    def _recheck(self, op: _Op, exc: Exception, was_sent: bool, tries: int = 1) -> str:
        """After an answer that does not say whether the write landed, look.

        A write that did not land after a lost answer, a 429, a 5xx or an
        unreadable 2xx is sent again from the fresh read, ``tries - 1`` more
        times at most; each send is journaled.
        """
        current = self.read(op, patient=True)
        landed = self.in_effect(op, current)
        if landed and (not isinstance(exc, ConflictError) or was_sent):
            self._applied(op, current, None, f"{_describe(exc)}; found applied")
            return "applied"
        if landed:
            # 409 on a create we had not sent before: someone else made it.
            reason = f"exists already ({_describe(exc)})"
            self._finish(op, "stale", 409, current, reason)
            return "stale"
        gone = current is None and op.op not in ("create", "delete")
        if tries > 1 and _transient(exc) and not gone:
            assert self.journal is not None and self.run_id is not None
            request = self.request_for(op, current)
            logger.info(
                "%s %s not applied (%s); sending again",
                op.op_id,
                op.op,
                type(exc).__name__,
            )
            self.journal.record_sent(
                self.run_id,
                op.op_id,
                op=op.op,
                resource_type=op.resource_type,
                resource_id=op.resource_id,
                before=current,
                request=request,
            )
            return self._write(op, request, current, True, tries - 1)
        status = getattr(exc, "status", None)
        self._finish(op, "failed", status, current, _describe(exc))
        return "failed"

    def _applied(
        self, op: _Op, answer: Any, status: int | None, reason: str | None
    ) -> None:
        resource_id = op.resource_id
        if op.op == "create" and isinstance(answer, dict):
            resource_id = answer.get("id")
            with self._lock:
                self.created[op.op_id] = str(resource_id)
        modified = _modified(answer)
        if modified and resource_id:
            with self._lock:
                self.written[(op.kind, str(resource_id))] = modified
        assert self.journal is not None and self.run_id is not None
        self.journal.record_answer(
            self.run_id,
            op.op_id,
            "applied",
            status=status,
            response=answer,
            reason=reason,
            resource_id=resource_id,
            op=op.op,
            resource_type=op.resource_type,
        )

    def _finish(
        self,
        op: _Op,
        state: str,
        status: int | None,
        current: Any,
        reason: str,
    ) -> None:
        assert self.journal is not None and self.run_id is not None
        self.journal.record_answer(
            self.run_id,
            op.op_id,
            state,
            status=status,
            reason=reason,
            op=op.op,
            resource_type=op.resource_type,
            before=current,
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, SCIMServerError):
        codes = f" {exc.codes}" if getattr(exc, "codes", None) else ""
        return f"{exc.status}{codes}: {exc.detail}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


# -- plans in and out of the journal ---------------------------------------------


def _records(plan: pd.DataFrame) -> list[dict[str, Any]]:
    frame = plan.astype(object).where(plan.notna(), None)
    return json.loads(frame.to_json(orient="records"))


def _ops(plan: pd.DataFrame) -> list[_Op]:
    approved = plan[plan["approved"].map(lambda v: bool(v) and v is not None)]
    return [_Op.from_row(row) for _, row in approved.iterrows()]


def _chains(ops: list[_Op]) -> list[list[_Op]]:
    """Group one step's operations by target; each chain runs in order."""
    chains: dict[tuple[str, str], list[_Op]] = defaultdict(list)
    for op in ops:
        key = (op.kind, op.resource_id or f"create:{op.op_id}")
        chains[key].append(op)
    return list(chains.values())


def _needed_operations(ops: Iterable[_Op]) -> list[str]:
    needed: set[str] = set()
    for op in ops:
        kind = _PERMISSION_KINDS[op.resource_type]
        needed.add(f"{_PERMISSION_VERBS[op.op]} {kind}")
        needed.add(f"read {kind}")
        if op.op in ("add_member", "remove_member"):
            needed.add("read users")
    return sorted(needed)


def _check_mass_change(
    client: SCIMClient, ops: list[_Op], max_share: float, allow: bool
) -> None:
    users = {
        op.resource_id
        for op in ops
        if op.kind == "User" and op.op in ("deactivate", "delete")
    }
    if not users or allow:
        return
    total = client.list_page("Users", count=1).total_results or 0
    if total == 0 or len(users) / total > max_share:
        raise MassChangeError(len(users), total, max_share)


def _summarize(
    journal: Journal,
    run_id: str,
    kind: str,
    plan: pd.DataFrame,
    seconds: float,
    requests: int,
) -> RunSummary:
    ops = journal.operations(run_id)
    approved = plan[plan["approved"].map(lambda v: bool(v) and v is not None)]
    rolled = set()
    for child in journal.children(run_id, kind="rollback"):
        states = journal.states(child)
        rolled |= {op_id for op_id, state in states.items() if state == "applied"}

    by_id = {r.op_id: r for r in ops.itertuples()}
    rows = []
    for _, row in approved.iterrows():
        rec = by_id.get(row["op_id"])
        outcome = rec.state if rec is not None else "pending"
        if outcome == "applied" and row["op_id"] in rolled:
            outcome = "rolled_back"
        rows.append(
            {
                "op_id": row["op_id"],
                "op": row["op"],
                "resource_type": row["resource_type"],
                "resource_id": (rec.resource_id if rec is not None else None)
                or row["resource_id"],
                "path": row["path"],
                "outcome": outcome,
                "status": None if rec is None else rec.status,
                "reason": None if rec is None else rec.reason,
            }
        )
    results = pd.DataFrame(
        rows,
        dtype=object,
        columns=[
            "op_id",
            "op",
            "resource_type",
            "resource_id",
            "path",
            "outcome",
            "status",
            "reason",
        ],
    )
    return RunSummary(
        run_id=run_id,
        kind=kind,
        results=results,
        seconds=seconds,
        requests=requests,
        not_approved=len(plan) - len(approved),
    )


# -- public functions ----------------------------------------------------------------


def dry_run(client: SCIMClient, plan: pd.DataFrame) -> pd.DataFrame:
    """Read each target and show what applying the plan would do; write nothing.

    Parameters
    ----------
    client : SCIMClient
        The connection (read permissions suffice).
    plan : DataFrame
        A plan; validated and ordered first.

    Returns
    -------
    pandas.DataFrame
        One row per approved operation: ``op_id``, ``op``, ``resource_type``,
        ``resource_id``, ``path``, ``status`` (``ready``, ``unchanged``,
        ``stale``, ``exists`` for a create whose resource is there, or
        ``skipped``), ``before`` and ``after`` (the attribute's value now and
        wanted), ``last_modified`` and ``reason``.

    Raises
    ------
    PlanError
        The plan is not valid.
    """
    plan = validate_plan(plan)
    engine = _Engine(
        client,
        None,
        None,
        pacer=_Pacer(None, time.monotonic, time.sleep),
        lookup_attempts=1,
        lookup_wait=0.0,
        sleep=time.sleep,
    )
    rows = []
    for op in _ops(plan):
        ref = isinstance(op.value, str) and op.value.startswith("ref:")
        current = engine.read(op)
        if ref and op.op in ("add_member", "remove_member"):
            status, reason = "ready", f"after {op.value[4:]} creates the user"
            if current is None:
                status, reason = "stale", f"Group {op.resource_id} no longer exists"
        else:
            status, reason = engine.assess(op, current)
        found_id = current.get("id") if isinstance(current, dict) else None
        rows.append(
            {
                "op_id": op.op_id,
                "op": op.op,
                "resource_type": op.resource_type,
                "resource_id": op.resource_id or found_id,
                "path": op.attribute,
                "status": status,
                "before": _shown_before(op, current),
                "after": _shown_after(op),
                "last_modified": _modified(current),
                "reason": reason or None,
            }
        )
    columns = [
        "op_id",
        "op",
        "resource_type",
        "resource_id",
        "path",
        "status",
        "before",
        "after",
        "last_modified",
        "reason",
    ]
    logger.info("Dry run of %d operations", len(rows))
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _shown_before(op: _Op, current: dict[str, Any] | None) -> Any:
    if op.op in ("add_member", "remove_member"):
        return "member" if op.value in _member_ids(current) else "not a member"
    if op.op in ("create", "delete"):
        return "exists" if current is not None else "absent"
    if op.attribute is None:
        return None if current is None else "resource"
    return read_value(current, op.attribute)


def _shown_after(op: _Op) -> Any:
    if op.op == "add_member":
        return "member"
    if op.op == "remove_member":
        return "not a member"
    if op.op == "create":
        return "exists"
    if op.op == "delete":
        return "absent"
    return op.wanted if op.attribute else "resource"


def resource_diffs(dry: pd.DataFrame) -> pd.DataFrame:
    """Return a dry run's changes per resource: one row per resource and path.

    Examples
    --------
    >>> dry = pd.DataFrame([
    ...     {"resource_type": "User", "resource_id": "u1", "path": "title",
    ...      "status": "ready", "before": "a", "after": "b", "op_id": "op-1"},
    ...     {"resource_type": "User", "resource_id": "u1", "path": "active",
    ...      "status": "stale", "before": True, "after": False, "op_id": "op-2"}])
    >>> resource_diffs(dry)[["path", "change"]].values.tolist()
    [['title', "'a' -> 'b'"]]
    """
    ready = dry[dry["status"] == "ready"]
    rows = [
        {
            "resource_type": r.resource_type,
            "resource_id": r.resource_id,
            "path": r.path if isinstance(r.path, str) else "",
            "change": f"{r.before!r} -> {r.after!r}",
            "op_id": r.op_id,
        }
        for r in ready.itertuples()
    ]
    frame = pd.DataFrame(
        rows, columns=["resource_type", "resource_id", "path", "change", "op_id"]
    )
    return frame.sort_values(["resource_type", "resource_id", "path"]).reset_index(
        drop=True
    )


def apply_plan(
    client: SCIMClient,
    plan: pd.DataFrame,
    journal: Journal,
    *,
    run_id: str | None = None,
    concurrency: int = 1,
    rate_limit: float | None = None,
    max_share: float = 0.05,
    allow_mass_change: bool = False,
    check_permissions: bool = True,
    retry_failed: bool = False,
    lookup_attempts: int = 4,
    lookup_wait: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    _kind: str = "apply",
    _parent: str | None = None,
) -> RunSummary:
    """Apply a plan's approved rows, journaling each write; resumable.

    Before the first write the token's permissions are checked against what the
    plan needs (`scimtools.require_permissions`) and the share of users the plan
    deactivates or deletes is compared with ``max_share``. Then each step of the
    plan runs in order; within a step, operations on different resources run
    ``concurrency`` at a time, operations on one resource in plan order. Each
    operation reads its target fresh, is skipped as stale when the target no
    longer matches ``expected`` / ``expected_modified``, and otherwise is
    journaled, sent and journaled again (see the module docstring).

    Calling it again with the same ``run_id`` (after a crash, a kill, a lost
    connection) continues the run: finished operations are not touched, and
    one whose answer was lost is looked up before anything is sent again.

    Parameters
    ----------
    client : SCIMClient
        The connection; its token needs the plan's create/update/delete
        permissions.
    plan : DataFrame
        The plan; validated and ordered here.
    journal : Journal
        Where the run is recorded.
    run_id : str, optional
        Continue this run, or start it under this id; generated when omitted.
    concurrency : int, default 1
        Operations in flight at once.
    rate_limit : float, optional
        Requests per second, reads included; unlimited when None.
    max_share : float, default 0.05
        Largest share of the tenant's users the plan may deactivate or delete.
    allow_mass_change : bool, default False
        Run even when the plan exceeds ``max_share``.
    check_permissions : bool, default True
        Check the token's permissions first (needs a JWT).
    retry_failed : bool, default False
        When continuing a run, try its failed operations again.
    lookup_attempts : int, default 4
        Lookups of a create whose answer was lost, ``lookup_wait`` seconds
        apart and doubling (the search index lags behind writes).
    lookup_wait : float, default 0.5
        First wait between lookups.
    clock, sleep : callable
        For tests.

    Returns
    -------
    RunSummary

    Raises
    ------
    PlanError
        The plan is not valid.
    MissingPermissionError
        The token lacks a permission the plan needs; nothing was written.
    MassChangeError
        The plan deactivates or deletes too many users; nothing was written.
    JournalError
        ``run_id`` exists with another plan.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    started = clock()
    sent_before = client.requests_sent
    plan = validate_plan(plan)
    ops = _ops(plan)

    if check_permissions and ops:
        require_permissions(client, _needed_operations(ops))
    _check_mass_change(client, ops, max_share, allow_mass_change)

    run_id = journal.start_run(
        run_id,
        kind=_kind,
        fingerprint=plan_fingerprint(plan),
        parent_run_id=_parent,
        plan=_records(plan),
        meta={"concurrency": concurrency, "rate_limit": rate_limit},
    )
    engine = _Engine(
        client,
        journal,
        run_id,
        pacer=_Pacer(rate_limit, clock, sleep),
        lookup_attempts=lookup_attempts,
        lookup_wait=lookup_wait,
        sleep=sleep,
    )
    engine.load()
    states = journal.states(run_id)
    if retry_failed:
        states = {k: ("sent" if v == "failed" else v) for k, v in states.items()}
    logger.info("Run %s: %d operations (%d done before)", run_id, len(ops), len(states))

    def run_chain(chain: list[_Op]) -> None:
        for op in chain:
            engine.run(op, states.get(op.op_id))

    steps = sorted({op.step for op in ops})
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for step in steps:
            chains = _chains([op for op in ops if op.step == step])
            if concurrency == 1:
                for chain in chains:
                    run_chain(chain)
            else:
                list(pool.map(run_chain, chains))

    seconds = clock() - started
    summary = _summarize(
        journal, run_id, _kind, plan, seconds, client.requests_sent - sent_before
    )
    journal.finish_run(run_id, "finished", counts=summary.counts, seconds=seconds)
    logger.info("%s", summary)
    return summary


def resume_run(
    client: SCIMClient, journal: Journal, run_id: str, **options: Any
) -> RunSummary:
    """Continue an interrupted run with the plan the journal stored for it.

    Parameters
    ----------
    client : SCIMClient
        The connection.
    journal : Journal
        The journal holding the run.
    run_id : str
        The run to continue (an apply or a rollback).
    **options
        As for `apply_plan` (``concurrency``, ``rate_limit``,
        ``retry_failed``...). The mass-change check is not repeated: it passed
        when the run started.

    Returns
    -------
    RunSummary

    Raises
    ------
    JournalError
        The journal has no such run, or no plan stored with it.
    """
    run = journal.run(run_id)
    assert run is not None
    if not run["plan"]:
        raise JournalError(
            f"run {run_id!r} has no stored plan; pass the plan to apply_plan with"
            " run_id= instead"
        )
    plan = make_plan(pd.DataFrame(run["plan"]))
    options.setdefault("allow_mass_change", True)
    return apply_plan(
        client,
        plan,
        journal,
        run_id=run_id,
        _kind=run["kind"],
        _parent=run["parent_run_id"],
        **options,
    )


def rollback_run(
    client: SCIMClient,
    journal: Journal,
    run_id: str,
    *,
    op_ids: Iterable[str] | None = None,
    rollback_id: str | None = None,
    **options: Any,
) -> RunSummary:
    """Undo a run's applied operations (or chosen ones) from their before-states.

    The rollback is a run of its own in the journal (kind ``"rollback"``, parent
    ``run_id``), so it is journaled, resumable with `resume_run`, and it skips
    as stale any attribute changed again since the run wrote it. Operations are
    undone in reverse order: an attribute set goes back to its before value
    (removed if it had none), a deactivation is reactivated, added members are
    removed and removed ones added back, a created resource is deleted, a
    deleted one created again from its before-state (with a new id: FusionAuth
    assigns ids; its group memberships are not restored).

    Parameters
    ----------
    client : SCIMClient
        The connection.
    journal : Journal
        The journal holding the run.
    run_id : str
        The apply run to undo.
    op_ids : iterable of str, optional
        Only these operations; default every applied one not yet rolled back.
    rollback_id : str, optional
        The rollback run's id (to resume it); generated when omitted.
    **options
        As for `apply_plan`. ``allow_mass_change`` defaults to true: a rollback
        only deletes what the run created.

    Returns
    -------
    RunSummary
        Of the rollback run; its operations have the ids of those undone.

    Raises
    ------
    JournalError
        No such run, or an op id that the run did not apply.
    """
    journal.run(run_id)
    done = journal.operations(run_id)
    applied = done[done["state"] == "applied"]
    wanted = set(op_ids) if op_ids is not None else None
    if wanted is not None:
        unknown = wanted - set(applied["op_id"])
        if unknown:
            raise JournalError(
                f"run {run_id!r} applied no operation {sorted(unknown)}; choose"
                " among Journal.operations(run_id) rows in state 'applied'"
            )
    undone: set[str] = set()
    for child in journal.children(run_id, kind="rollback"):
        if child == rollback_id:
            continue
        undone |= {k for k, v in journal.states(child).items() if v == "applied"}

    original = journal.run(run_id)
    assert original is not None
    planned = {r["op_id"]: r for r in (original["plan"] or []) if isinstance(r, dict)}
    created = {
        r.op_id: r.resource_id
        for r in done.itertuples()
        if r.op == "create" and r.state == "applied"
    }
    rows = []
    for rec in applied.sort_values("seq", ascending=False).itertuples():
        if rec.op_id in undone or (wanted is not None and rec.op_id not in wanted):
            continue
        row = _undo(rec, planned.get(rec.op_id, {}), created)
        if row is not None:
            rows.append(row)

    plan = make_plan(rows)
    options.setdefault("allow_mass_change", True)
    return apply_plan(
        client,
        plan,
        journal,
        run_id=rollback_id,
        _kind="rollback",
        _parent=run_id,
        **options,
    )


def _undo(
    rec: Any, planned: dict[str, Any], created: dict[str, str]
) -> dict[str, Any] | None:
    before = rec.before
    base = {
        "op_id": rec.op_id,
        "resource_type": rec.resource_type,
        "resource_id": rec.resource_id,
        "reason": f"roll back {rec.op_id}",
        "source": rec.run_id,
        "approved": True,
    }
    op = rec.op
    if op == "create":
        return {**base, "op": "delete"}
    if op == "delete":
        if not isinstance(before, dict):
            return None
        body = _put_body(before)
        body.pop("id", None)
        if rec.resource_type == "Group":
            body.pop("members", None)
        return {**base, "op": "create", "resource_id": None, "value": body}
    if op in ("add_member", "remove_member"):
        value = planned.get("value")
        request = rec.request or {}
        member = _member_from_request(request) or value
        if isinstance(member, str) and member.startswith("ref:"):
            member = created.get(member[4:], member)
        return {
            **base,
            "op": "remove_member" if op == "add_member" else "add_member",
            "value": member,
        }
    if op == "replace" and not planned.get("path"):
        if not isinstance(before, dict):
            return None
        return {**base, "op": "replace", "value": _put_body(before)}
    path = "active" if op == "deactivate" else planned.get("path")
    if not path:
        return None
    if isinstance(before, dict) and not _readable(before, path):
        # The path went through a value that is not an object (a manager kept
        # as a bare string): setting the path back cannot restore it, the
        # whole before-state can.
        return {**base, "op": "replace", "value": _put_body(before)}
    written = False if op == "deactivate" else planned.get("value")
    return {
        **base,
        "op": "patch",
        "path": path,
        "expected": written,
        "value": read_value(before, path) if isinstance(before, dict) else None,
    }


def _member_from_request(request: dict[str, Any]) -> str | None:
    body = request.get("body")
    if request.get("method") == "PATCH" and isinstance(body, list) and body:
        first = body[0]
        if isinstance(first.get("value"), list) and first["value"]:
            return first["value"][0].get("value")
        path = str(first.get("path", ""))
        if path.startswith("members[value eq "):
            return json.loads(path[len("members[value eq ") : -1])
    return None
