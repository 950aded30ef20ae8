"""Plans of corrections: a DataFrame with one row per write, validated and ordered.

A plan is written by hand (a DataFrame or a CSV file) or built from the audit's
findings and the conflicts' resolutions; `validate_plan` checks it before anything
runs and `order_plan` puts its rows in an order that can run. `scimtools.push`
dry-runs and applies it.

Columns (`PLAN_COLUMNS`)
------------------------
``op_id``
    A unique id of the row; generated (``op-0001``...) when absent. The journal
    keys every write by run id and op id, so keep it stable when a plan is re-run.
``op``
    One of `OPS`: ``create``, ``replace``, ``patch``, ``deactivate``, ``delete``,
    ``add_member``, ``remove_member`` (``"add member"`` and ``"add-member"`` are
    accepted and normalised).
``resource_type``
    ``User``, ``EnterpriseUser`` or ``Group`` (``Users``... are accepted).
``resource_id``
    The target's id; empty for ``create``. For members: the group's id.
``path``
    The SCIM attribute path a ``patch`` or ``replace`` sets (``name.givenName``,
    ``emails[primary].value``, an enterprise URN path), or a column name of
    `scimtools.frames.COLUMNS` (``given_name``). Empty for a ``replace`` of the
    whole resource.
``expected``
    The value expected now; when it no longer holds the row is stale and skipped.
    Empty means "not checked".
``expected_modified``
    ``meta.lastModified`` when the plan was made (FusionAuth has no ETag); empty
    means "not checked".
``value``
    The value wanted: the attribute's value, the whole resource (``create``,
    ``replace`` without path), or the member's user id (``add_member``,
    ``remove_member``). ``ref:<op_id>`` names the user a ``create`` row of the
    same plan makes.
``reason``, ``source``
    Why, and the finding or conflict id the row comes from.
``approved``
    Whether the row may run. A plan written by hand without this column is
    approved as a whole; plans built from findings start unapproved.
``kind``, ``client``, ``severity``
    Optional labels for review.

In a CSV file ``expected`` and ``value`` hold JSON (``"Ada"``, ``false``,
``{"userName": ...}``); a cell that is not JSON is read as a plain string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scimtools.errors import SCIMToolsError
from scimtools.frames import COLUMNS, ENTERPRISE

__all__ = [
    "OPS",
    "PLAN_COLUMNS",
    "PlanError",
    "approve_rows",
    "check_plan",
    "make_plan",
    "order_plan",
    "plan_fingerprint",
    "plan_from_conflicts",
    "plan_from_findings",
    "read_plan",
    "validate_plan",
    "write_plan",
]

logger = logging.getLogger(__name__)

#: The operations a plan may hold.
OPS: tuple[str, ...] = (
    "create",
    "replace",
    "patch",
    "deactivate",
    "delete",
    "add_member",
    "remove_member",
)

#: The columns of a plan, in order.
PLAN_COLUMNS: tuple[str, ...] = (
    "op_id",
    "op",
    "resource_type",
    "resource_id",
    "path",
    "expected",
    "expected_modified",
    "value",
    "reason",
    "source",
    "approved",
    "kind",
    "client",
    "severity",
)

RESOURCE_TYPES = {
    "User": "Users",
    "EnterpriseUser": "EnterpriseUsers",
    "Group": "Groups",
}
_TYPE_ALIASES = {
    "user": "User",
    "users": "User",
    "enterpriseuser": "EnterpriseUser",
    "enterpriseusers": "EnterpriseUser",
    "group": "Group",
    "groups": "Group",
}
_JSON_COLUMNS = ("expected", "value")
_TEXT_COLUMNS = tuple(
    c for c in PLAN_COLUMNS if c not in (*_JSON_COLUMNS, "approved", "op_id")
)

#: Order in which operations run (lower first); see `order_plan`.
_RANK = {
    ("create", "User"): 0,
    ("create", "EnterpriseUser"): 0,
    ("create", "Group"): 1,
    ("replace", None): 2,
    ("patch", None): 2,
    ("add_member", None): 3,
    ("remove_member", None): 4,
    ("deactivate", None): 5,
    ("delete", "Group"): 6,
    ("delete", None): 7,
}

_GROUP_PATHS = frozenset({"displayName", "externalId", "members"})


class PlanError(SCIMToolsError):
    """A plan failed validation; ``problems`` holds one row per problem.

    Attributes
    ----------
    problems : pandas.DataFrame
        Columns ``row`` (the plan's index label), ``op_id``, ``column`` and
        ``problem``.
    """

    def __init__(self, problems: pd.DataFrame) -> None:
        self.problems = problems
        lines = [
            f"row {p.row} ({p.op_id}), {p.column}: {p.problem}"
            for p in problems.head(20).itertuples()
        ]
        more = len(problems) - len(lines)
        tail = f"\n... and {more} more (see .problems)" if more > 0 else ""
        super().__init__(
            f"the plan has {len(problems)} problem(s); fix these rows and validate"
            " again:\n" + "\n".join(lines) + tail
        )


def is_empty(value: Any) -> bool:
    """Return whether a cell holds nothing (None, NaN, NA or an empty string).

    Examples
    --------
    >>> [is_empty(v) for v in (None, float("nan"), "", "x", 0, False, [])]
    [True, True, True, False, False, False, False]
    """
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def _writable_paths(table: str) -> set[str]:
    return {c.path for c in COLUMNS if c.table == table and c.writable}


def allowed_paths(resource_type: str) -> frozenset[str]:
    """Return the SCIM paths a plan may set on a resource type.

    They are the writable paths of `scimtools.frames.COLUMNS` (the one table of
    attributes the toolkit reads and writes) and, for groups, ``members``.
    FusionAuth's /Schemas under-reports, so it is not used.

    Examples
    --------
    >>> "name.givenName" in allowed_paths("User")
    True
    >>> sorted(allowed_paths("Group"))
    ['displayName', 'externalId', 'members']
    """
    if resource_type == "Group":
        return frozenset(_writable_paths("groups") | _GROUP_PATHS)
    return frozenset(_writable_paths("users"))


def _column_path(path: str, resource_type: str) -> str:
    """Turn a frames column name into its SCIM path; leave SCIM paths alone."""
    table = "groups" if resource_type == "Group" else "users"
    for c in COLUMNS:
        if c.table == table and c.name == path:
            return c.path
    return path


def _normalise_op(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return value.strip().lower().replace(" ", "_").replace("-", "_")


def _normalise_type(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return _TYPE_ALIASES.get(value.strip().lower().replace(" ", ""), value.strip())


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if is_empty(value):
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "y"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "n"):
        return False
    if isinstance(value, int | float):
        return bool(value)
    return value


def make_plan(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Return a plan with every column of `PLAN_COLUMNS`, normalised but unchecked.

    Missing columns are added empty, ``op`` and ``resource_type`` spellings are
    normalised, ``op_id`` is generated where empty and ``approved`` defaults to
    true when the column is absent (a plan written by hand is its own approval).

    Parameters
    ----------
    rows : DataFrame or iterable of dict
        The plan's rows.

    Returns
    -------
    pandas.DataFrame
        Object columns, a fresh RangeIndex, extra columns kept at the end.

    Examples
    --------
    >>> plan = make_plan([{"op": "Add Member", "resource_type": "groups",
    ...                    "resource_id": "g1", "value": "u1"}])
    >>> plan.loc[0, ["op_id", "op", "resource_type", "approved"]].tolist()
    ['op-0001', 'add_member', 'Group', True]
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame = frame.reset_index(drop=True)
    had_approved = "approved" in frame.columns

    for column in PLAN_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in PLAN_COLUMNS]
    frame = frame[list(PLAN_COLUMNS) + extra].astype(object)
    frame = frame.where(frame.notna(), None)

    frame["op"] = frame["op"].map(_normalise_op)
    frame["resource_type"] = frame["resource_type"].map(_normalise_type)
    approved = (
        [_to_bool(v) for v in frame["approved"]]
        if had_approved
        else [True] * len(frame)
    )
    frame["approved"] = pd.Series(approved, index=frame.index, dtype=object)
    frame["op_id"] = _objects(
        frame,
        [
            f"op-{i + 1:04d}" if is_empty(v) else str(v)
            for i, v in enumerate(frame["op_id"])
        ],
    )
    for column in _TEXT_COLUMNS:
        frame[column] = _objects(
            frame, [None if is_empty(v) else v for v in frame[column]]
        )
    frame["path"] = _objects(
        frame,
        [
            None if is_empty(p) else _column_path(str(p), str(t))
            for p, t in zip(frame["path"], frame["resource_type"], strict=True)
        ],
    )
    return frame


def _objects(frame: pd.DataFrame, values: list[Any]) -> pd.Series:
    # A plain list would be inferred as pandas' str dtype, turning None into NaN.
    return pd.Series(values, index=frame.index, dtype=object)


def _problem(
    rows: list[dict[str, Any]], label: Any, op_id: Any, col: str, msg: str
) -> None:
    rows.append({"row": label, "op_id": op_id, "column": col, "problem": msg})


def check_plan(plan: pd.DataFrame) -> pd.DataFrame:
    """Return the problems of a plan, one row each; empty when it can run.

    Checks per row: a known op and resource type, an id where one is needed,
    a path in `allowed_paths`, a value of the right shape. Checks across rows:
    duplicate op ids, two rows setting one attribute to different values, a row
    that changes a resource another row deletes, a member both added and
    removed, two creates of one userName/displayName, and ``ref:`` values that
    name no create.

    Parameters
    ----------
    plan : DataFrame
        A plan; normalised first with `make_plan`.

    Returns
    -------
    pandas.DataFrame
        Columns ``row``, ``op_id``, ``column``, ``problem``.

    Examples
    --------
    >>> check_plan(make_plan([{"op": "rename", "resource_type": "User",
    ...                        "resource_id": "u1"}]))["problem"].tolist()
    ["unknown op 'rename'; use one of create, replace, patch, deactivate, \
delete, add_member, remove_member"]
    """
    plan = make_plan(plan)
    problems: list[dict[str, Any]] = []
    creates: dict[str, str] = {}

    for label, row in plan.iterrows():
        for problem in _row_problems(row):
            _problem(problems, label, row["op_id"], *problem)
        if row["op"] == "create":
            creates[row["op_id"]] = row["resource_type"]

    for label, row in plan.iterrows():
        ref = _ref(row["value"])
        member_op = row["op"] in ("add_member", "remove_member")
        if member_op and ref is not None and creates.get(ref) != "User":
            _problem(
                problems,
                label,
                row["op_id"],
                "value",
                f"ref:{ref} names no create of a user in this plan",
            )

    problems.extend(_cross_problems(plan))
    frame = pd.DataFrame(problems, columns=["row", "op_id", "column", "problem"])
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


def _ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("ref:"):
        return value[4:]
    return None


def _row_problems(row: pd.Series) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    op, rtype, rid, path, value = (
        row["op"],
        row["resource_type"],
        row["resource_id"],
        row["path"],
        row["value"],
    )
    if op not in OPS:
        out.append(("op", f"unknown op {op!r}; use one of {', '.join(OPS)}"))
        return out
    if rtype not in RESOURCE_TYPES:
        out.append(
            (
                "resource_type",
                f"unknown resource type {rtype!r}; use User, EnterpriseUser or Group",
            )
        )
        return out

    if op == "create":
        if not is_empty(rid):
            out.append(("resource_id", "a create has no resource_id; leave it empty"))
        if not isinstance(value, dict) or not _create_key(rtype, value):
            key = "displayName" if rtype == "Group" else "userName"
            out.append(("value", f"a create needs the resource as a dict with {key}"))
        return out

    if is_empty(rid):
        out.append(("resource_id", f"{op} needs the id of the {rtype} it changes"))
    if op in ("add_member", "remove_member"):
        if rtype != "Group":
            out.append(("resource_type", f"{op} works on a Group, not a {rtype}"))
        if not isinstance(value, str) or is_empty(value):
            out.append(("value", f"{op} needs the member's user id (or ref:<op_id>)"))
    elif op in ("deactivate",) and rtype == "Group":
        out.append(("op", "groups cannot be deactivated; delete the group instead"))
    elif op == "patch" and is_empty(path):
        out.append(("path", "a patch needs the attribute path it sets"))
    elif op == "replace" and is_empty(path) and not isinstance(value, dict):
        out.append(("value", "a replace without path needs the whole resource"))

    if op in ("patch", "replace") and not is_empty(path):
        allowed = allowed_paths(rtype)
        if path not in allowed:
            out.append(
                (
                    "path",
                    f"{path!r} is not an attribute of {rtype} in the schema;"
                    f" use one of {', '.join(sorted(allowed))}",
                )
            )
        elif path == "members":
            out.append(("path", "change members with add_member/remove_member"))
    return out


def _create_key(rtype: str, value: Mapping[str, Any]) -> str | None:
    key = value.get("displayName") if rtype == "Group" else value.get("userName")
    return key if isinstance(key, str) and key else None


def _cross_problems(plan: pd.DataFrame) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    seen_ids: dict[str, Any] = {}
    sets: dict[tuple[Any, ...], tuple[Any, Any]] = {}
    deleted: dict[tuple[Any, Any], Any] = {}
    members: dict[tuple[Any, Any], tuple[str, Any]] = {}
    create_keys: dict[tuple[str, str], Any] = {}

    for label, row in plan.iterrows():
        op_id, op = row["op_id"], row["op"]
        if op_id in seen_ids:
            _problem(
                problems,
                label,
                op_id,
                "op_id",
                f"op_id {op_id!r} is used again (first at row {seen_ids[op_id]})",
            )
        seen_ids.setdefault(op_id, label)
        target = (_kind(row["resource_type"]), row["resource_id"])
        if op == "delete":
            deleted.setdefault(target, label)
        if op in ("patch", "replace", "deactivate") and not is_empty(row["path"]):
            key = (*target, row["path"])
            wanted = _canon(row["value"])
            if key in sets and sets[key][1] != wanted:
                _problem(
                    problems,
                    label,
                    op_id,
                    "value",
                    f"row {sets[key][0]} sets {row['path']} of {row['resource_id']}"
                    " to another value; keep one of the two rows",
                )
            sets.setdefault(key, (label, wanted))
        if op == "deactivate":
            key = (*target, "active")
            if key in sets and sets[key][1] != _canon(False):
                _problem(
                    problems,
                    label,
                    op_id,
                    "op",
                    f"row {sets[key][0]} sets active of {row['resource_id']} to"
                    " another value; keep one of the two rows",
                )
            sets.setdefault(key, (label, _canon(False)))
        if op in ("add_member", "remove_member"):
            key = (row["resource_id"], row["value"])
            if key in members and members[key][0] != op:
                _problem(
                    problems,
                    label,
                    op_id,
                    "op",
                    f"row {members[key][1]} does the opposite with member"
                    f" {row['value']}; keep one of the two rows",
                )
            members.setdefault(key, (op, label))
        if op == "create" and isinstance(row["value"], dict):
            name = _create_key(row["resource_type"], row["value"])
            if name:
                ckey = (_kind(row["resource_type"]), name.lower())
                if ckey in create_keys:
                    _problem(
                        problems,
                        label,
                        op_id,
                        "value",
                        f"row {create_keys[ckey]} creates {name!r} too",
                    )
                create_keys.setdefault(ckey, label)

    for label, row in plan.iterrows():
        target = (_kind(row["resource_type"]), row["resource_id"])
        changes = row["op"] in ("patch", "replace", "add_member", "remove_member")
        if changes and target in deleted:
            _problem(
                problems,
                label,
                row["op_id"],
                "op",
                f"row {deleted[target]} deletes {row['resource_id']}; a change"
                " to a deleted resource contradicts it",
            )
    return problems


def _kind(resource_type: Any) -> str:
    return "Group" if resource_type == "Group" else "User"


def _canon(value: Any) -> str:
    return json.dumps(None if is_empty(value) else value, sort_keys=True, default=str)


def validate_plan(plan: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return the plan normalised and ordered, or raise with every problem.

    Parameters
    ----------
    plan : DataFrame or iterable of dict
        The plan.

    Returns
    -------
    pandas.DataFrame
        `make_plan` then `order_plan` applied.

    Raises
    ------
    PlanError
        One line per problem (row, op_id, column, what is wrong);
        ``.problems`` holds them as a DataFrame.

    Examples
    --------
    >>> validate_plan([{"op": "patch", "resource_type": "User",
    ...                 "resource_id": "u1", "path": "nickname", "value": "A"}])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.plan.PlanError: the plan has 1 problem(s); fix these rows and ...
    row 0 (op-0001), path: 'nickname' is not an attribute of User in the schema; ...
    """
    frame = make_plan(plan)
    problems = check_plan(frame)
    if len(problems):
        raise PlanError(problems)
    return order_plan(frame)


def order_plan(plan: pd.DataFrame) -> pd.DataFrame:
    """Return the plan in an order that can run, with a ``step`` column.

    Users and then groups are created first, attributes set next, members
    added after the users exist and removed after that; users are deactivated
    before anything is deleted, and groups are deleted before users. Rows keep
    their order within a step.

    Examples
    --------
    >>> plan = make_plan([
    ...     {"op": "delete", "resource_type": "User", "resource_id": "u1"},
    ...     {"op": "add_member", "resource_type": "Group", "resource_id": "g1",
    ...      "value": "ref:op-0003"},
    ...     {"op": "create", "resource_type": "User", "value": {"userName": "a"}},
    ...     {"op": "deactivate", "resource_type": "User", "resource_id": "u1"},
    ... ])
    >>> order_plan(plan)[["op", "step"]].values.tolist()
    [['create', 0], ['add_member', 3], ['deactivate', 5], ['delete', 7]]
    """
    frame = plan.copy()
    frame["step"] = pd.Series(
        [
            _RANK.get((op, rtype), _RANK.get((op, None), 9))
            for op, rtype in zip(frame["op"], frame["resource_type"], strict=True)
        ],
        index=frame.index,
        dtype=int,
    )
    frame["_pos"] = range(len(frame))
    frame = frame.sort_values(["step", "_pos"], kind="stable").drop(columns="_pos")
    return frame.reset_index(drop=True)


def approve_rows(
    plan: pd.DataFrame, mask: pd.Series | Iterable[bool] | None = None, **equal: Any
) -> pd.DataFrame:
    """Return a copy of the plan with rows approved by a mask or by column values.

    Outside Jupyter (CI, papermill) this is the review: a rule that sets the
    ``approved`` column. Rows not selected keep their approval.

    Parameters
    ----------
    plan : DataFrame
        The plan.
    mask : boolean Series or iterable, optional
        Rows to approve.
    **equal
        Approve rows whose column equals the value (a list means "is in").

    Examples
    --------
    >>> plan = make_plan([{"op": "delete", "resource_type": "User",
    ...                    "resource_id": "u1", "approved": False},
    ...                   {"op": "patch", "resource_type": "User",
    ...                    "resource_id": "u2", "path": "title", "value": "x",
    ...                    "approved": False}])
    >>> approve_rows(plan, op="patch")["approved"].tolist()
    [False, True]
    """
    frame = plan.copy()
    selected = pd.Series(True, index=frame.index)
    if mask is not None:
        selected &= pd.Series(list(mask), index=frame.index).astype(bool)
    for column, wanted in equal.items():
        values = wanted if isinstance(wanted, list | tuple | set) else [wanted]
        selected &= frame[column].isin(values)
    frame.loc[selected, "approved"] = True
    return frame


def plan_fingerprint(plan: pd.DataFrame) -> str:
    """Return a hash of what the plan's approved rows do (to match a resume).

    Examples
    --------
    >>> p = make_plan([{"op": "delete", "resource_type": "User", "resource_id": "u"}])
    >>> len(plan_fingerprint(p))
    16
    """
    rows = [
        [_canon(row[c]) for c in PLAN_COLUMNS if c not in ("reason", "approved")]
        for _, row in plan.iterrows()
        if row["approved"] is not None and bool(row["approved"])
    ]
    text = json.dumps(sorted(rows))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _from_cell(text: Any) -> Any:
    if is_empty(text):
        return None
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_plan(path: str | Path) -> pd.DataFrame:
    """Read a plan from a CSV file (``expected`` and ``value`` hold JSON).

    A cell's leading ``'`` (the mark `write_plan` puts on what a spreadsheet
    would run as a formula) is taken off.

    Returns
    -------
    pandas.DataFrame
        Normalised with `make_plan`, not validated.

    Raises
    ------
    scimtools.errors.InputError
        The file is not UTF-8, empty or damaged CSV; the message names it.
    """
    from scimtools.csvfiles import restore_cell
    from scimtools.inputs import read_csv

    frame = read_csv(path, "plan")
    # write_plan defuses formulas for spreadsheets: a leading ' is its mark.
    for column in frame.columns:
        frame[column] = frame[column].map(restore_cell, na_action="ignore")
    for column in _JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype(object).map(_from_cell)
    return make_plan(frame)


def write_plan(plan: pd.DataFrame, path: str | Path) -> Path:
    """Write a plan to a CSV file that `read_plan` reads back.

    A cell a spreadsheet would run as a formula gets a leading ``'``
    (`scimtools.csvfiles.defuse_cell`); cells with a line break are quoted.

    Examples
    --------
    >>> import tempfile, os
    >>> plan = make_plan([{"op": "patch", "resource_type": "User",
    ...                    "resource_id": "u1", "path": "active", "value": False}])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back = read_plan(write_plan(plan, os.path.join(tmp, "plan.csv")))
    >>> back.loc[0, "value"], back.loc[0, "approved"]
    (False, True)
    """
    frame = make_plan(plan)
    for column in _JSON_COLUMNS:
        frame[column] = [
            "" if is_empty(v) else json.dumps(v, sort_keys=True) for v in frame[column]
        ]
    from scimtools.csvfiles import write_csv

    # Plans are approved in spreadsheets: formulas are defused, read_plan
    # takes the mark off.
    return write_csv(frame, path, spreadsheet_safe=True)


def enterprise_path(attribute: str) -> str:
    """Return the SCIM path of an enterprise extension attribute.

    Examples
    --------
    >>> enterprise_path("department")[-11:]
    ':department'
    """
    return f"{ENTERPRISE}:{attribute}"


# -- plans from the audit's findings and the conflicts' resolutions ------------------

_MEMBER_PATH = re.compile(r'^members\[value eq "([^"]+)"\]$')
_ENDPOINT_TYPES = {"Users": "User", "EnterpriseUsers": "EnterpriseUser"}
_ENDPOINT_TYPES["Groups"] = "Group"


def _finding_rows(finding: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rules: one finding's data fix as plan rows; [] when it is not expressible."""
    if finding.get("fix") != "data":
        return []
    path = finding.get("fix_path")
    rtype = _normalise_type(finding.get("resource_type"))
    value = _from_cell(finding.get("fix_value"))
    if is_empty(path) or is_empty(finding.get("resource_id")):
        return []
    base = {
        "resource_type": rtype,
        "resource_id": finding["resource_id"],
        "reason": finding.get("kind"),
        "source": finding.get("finding_id"),
        "approved": False,
        "kind": finding.get("kind"),
        "client": finding.get("client"),
        "severity": finding.get("severity"),
    }
    member = _MEMBER_PATH.match(str(path))
    if rtype == "Group" and member and value is None:
        return [{**base, "op": "remove_member", "value": member.group(1)}]
    if rtype == "Group" and member and value == member.group(1):
        return [{**base, "op": "add_member", "value": value}]  # a lost membership
    if value is None:
        return []  # a person must decide the value
    kept = finding.get("kept")
    if isinstance(value, dict) and set(value) == {"value"}:
        # A manager as an object: the bare string the tenant holds cannot be
        # read at manager.value, so it is no precondition.
        path, value, kept = f"{path}.value", value["value"], None
    path = {"emails.value": "emails[primary].value"}.get(str(path), str(path))
    if path not in allowed_paths(str(rtype)):
        return []
    if path == "active" and value is False:
        return [{**base, "op": "deactivate", "expected": True}]
    expected = kept if isinstance(kept, str) and kept and "[" not in path else None
    if expected is not None and not isinstance(value, str):
        expected = _from_cell(expected)  # the audit shows non-text values as JSON
    base["resource_type"] = _writing_type(str(rtype), path)
    return [{**base, "op": "patch", "path": path, "value": value, "expected": expected}]


def _writing_type(resource_type: str, path: Any) -> str:
    """EnterpriseUser for an enterprise path of a user: /Users drops the extension
    unless the user's ``schemas`` already lists it, /EnterpriseUsers keeps it."""
    if resource_type == "User" and str(path).startswith(ENTERPRISE):
        return "EnterpriseUser"
    return resource_type


def plan_from_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Build an unapproved plan from the data fixes of `scimtools.audit` findings.

    Declared rules, one finding at a time: a member to drop from a group
    (``members[value eq "<id>"]`` without a value) becomes ``remove_member``,
    one to add again (the same path with the id as the value) ``add_member``;
    ``active`` set to false becomes ``deactivate``; a manager given as a bare
    string becomes a patch of ``manager.value``; any other fix with a value on a
    path of `allowed_paths` becomes a ``patch`` whose ``expected`` is the value
    the tenant held (``kept``, decoded from JSON unless the wanted value is a
    string); enterprise paths are written through ``EnterpriseUser`` (/Users
    drops the extension of a user whose ``schemas`` lacks it). Fixes of
    lambdas, fixes without a value (a
    person must decide) and paths the plan cannot write are left out and
    counted in the log. ``source`` is the ``finding_id``.

    Examples
    --------
    >>> findings = pd.DataFrame([
    ...     {"finding_id": "f1", "kind": "member_not_found", "severity": "high",
    ...      "resource_type": "Group", "resource_id": "g1", "fix": "data",
    ...      "fix_path": 'members[value eq "u9"]', "fix_value": None},
    ...     {"finding_id": "f2", "kind": "dropped_by_lambda", "resource_type": "User",
    ...      "resource_id": "u1", "fix": "lambda", "fix_path": "title"}])
    >>> plan = plan_from_findings(findings)
    >>> plan[["op", "value", "source", "approved"]].values.tolist()
    [['remove_member', 'u9', 'f1', False]]
    """
    rows: list[dict[str, Any]] = []
    left_out: dict[str, int] = {}
    for finding in findings.to_dict("records"):
        made = _finding_rows(finding)
        if not made and finding.get("fix") != "none":
            kind = str(finding.get("kind"))
            left_out[kind] = left_out.get(kind, 0) + 1
        rows += made
    if left_out:
        logger.info("Findings left out of the plan, by kind: %s", left_out)
    return make_plan(_with_op_ids(rows, "f"))


def _with_op_ids(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        row["op_id"] = f"{prefix}-{row.get('source')}-{i + 1:04d}"
    return rows


def _conflict_rows(conflict: Mapping[str, Any]) -> list[dict[str, Any]]:
    resolution = conflict.get("resolution")
    if not isinstance(resolution, Mapping):
        return []
    base = {
        "reason": f"{conflict.get('kind')}: {resolution.get('action')}",
        "source": conflict.get("conflict_id"),
        "approved": False,
        "kind": conflict.get("kind"),
        "client": resolution.get("winner"),
        "severity": conflict.get("severity"),
    }
    rows = []
    for operation in resolution.get("operations") or []:
        rtype = _ENDPOINT_TYPES.get(str(operation.get("endpoint")))
        method = str(operation.get("method", "")).upper()
        target = {**base, "resource_type": rtype, "resource_id": operation.get("id")}
        path, value = operation.get("path"), operation.get("value")
        op = str(operation.get("op", "")).lower()
        member = _MEMBER_PATH.match(str(path))
        if method == "DELETE":
            rows.append({**target, "op": "delete"})
        elif rtype == "Group" and op == "add" and path == "members":
            for item in value or []:
                rows.append({**target, "op": "add_member", "value": item.get("value")})
        elif rtype == "Group" and op == "remove" and member:
            rows.append({**target, "op": "remove_member", "value": member.group(1)})
        elif path == "active" and value is False:
            rows.append({**target, "op": "deactivate"})
        else:
            target["resource_type"] = _writing_type(str(rtype), path)
            rows.append({**target, "op": "patch", "path": path, "value": value})
    return rows


def plan_from_conflicts(conflicts: pd.DataFrame) -> pd.DataFrame:
    """Build an unapproved plan from the resolutions of `scimtools.conflicts`.

    Each resolution's SCIM ``operations`` become rows: DELETE becomes
    ``delete``, a PATCH adding group members one ``add_member`` per member, a
    PATCH removing ``members[value eq "<id>"]`` a ``remove_member``, ``active``
    set to false a ``deactivate``, any other PATCH replace a ``patch`` (of an
    ``EnterpriseUser`` for an enterprise path, as in `plan_from_findings`).
    ``client_actions`` (what the IdPs must change) are not tenant writes and stay
    in the conflicts frame. ``source`` is the ``conflict_id``; validate the
    plan before running it (two resolutions can contradict each other).

    Examples
    --------
    >>> conflicts = pd.DataFrame([{"conflict_id": "c1", "kind": "duplicate_identity",
    ...     "severity": "high", "resolution": {"action": "merge_users",
    ...     "winner": "okta", "operations": [
    ...         {"method": "PATCH", "endpoint": "Groups", "id": "g1", "op": "add",
    ...          "path": "members", "value": [{"value": "u1"}]},
    ...         {"method": "DELETE", "endpoint": "Users", "id": "u2"}]}}])
    >>> plan_from_conflicts(conflicts)[["op", "resource_id", "value"]].values.tolist()
    [['add_member', 'g1', 'u1'], ['delete', 'u2', None]]
    """
    rows: list[dict[str, Any]] = []
    for conflict in conflicts.to_dict("records"):
        rows += _conflict_rows(conflict)
    return make_plan(_with_op_ids(rows, "c"))
