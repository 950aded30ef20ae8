"""Find the conflicts between SCIM clients that provision one tenant.

FusionAuth advises one SCIM client per tenant and resolves none of the conflicts
when there are more: the second create of a person fails with 409 or makes a
duplicate, one client's update overwrites the other's, one deactivates what the
other re-activates, group members flip on every sync. `find_conflicts` lists
them in one DataFrame, each with its evidence and a proposed resolution as data
that a correction plan can be built from.

Kinds (`SEVERITY` ranks them):

``duplicate_identity``
    one person, two tenant users, each claimed by a different client.
``create_conflict``
    a client's user (or group) is missing because its create answered 409: the
    userName, email or displayName was taken by the other client's resource
    (``link_to_existing``), or by another account of the same client, such as
    a guest account beside a member account (``merge_in_idp``: linking would
    have two accounts write one user).
``status_disagreement``
    a shared user active in one client and deactivated in the other (the
    flip-flop: each sync writes its own ``active``).
``membership_flip_flop``
    a member of a shared group that one client lists and the other does not,
    so one client's sync removes what the other's adds back.
``group_members_differ``
    a group claimed by several clients whose member lists differ.
``external_id_overwritten``
    a shared user whose externalId is the other client's.
``claimed_inactive``
    a user its clients believe active but the tenant holds deactivated.
``attribute_disagreement``
    a shared user whose clients send different values for an attribute; the
    evidence says which value the tenant holds (who wrote last).
``orphan``
    a tenant user no client claims.
``shared_ownership``
    a tenant user claimed by several clients (the root of the kinds above).

Resolutions follow a declared precedence per attribute and client
(`DEFAULT_PRECEDENCE`): ``resolution`` holds the ``action``, the ``winner``,
``keep``/``remove`` tenant ids, the ``attribute`` and winning ``value``, the
SCIM ``operations`` the tenant needs and the ``client_actions`` the IdPs need.

Examples
--------
>>> import pandas as pd
>>> from scimtools.attribution import client_view_from_frame
>>> tenant = pd.DataFrame({"id": ["u1"], "external_id": ["00uAlice"],
...                        "user_name": ["alice@example.com"], "active": [True]})
>>> okta = client_view_from_frame("okta", pd.DataFrame(
...     {"key": ["00uAlice"], "user_name": ["alice@example.com"]}))
>>> entra = client_view_from_frame("entra", pd.DataFrame(
...     {"key": ["e-1"], "user_name": ["Alice@Example.com"], "create_status": [409]}))
>>> conflicts = find_conflicts(tenant_frames(tenant), [okta, entra])
>>> conflicts[["kind", "severity", "tenant_ids", "clients"]].values.tolist()
[['create_conflict', 'high', 'u1', 'entra,okta']]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scimtools.attribution import (
    DEFAULT_CLIENT_RULES,
    Attribution,
    ClientRule,
    ClientView,
    _fold,
    _full_name,
    _record_addresses,
    _records,
    _tenant_addresses,
    attribute_tenant,
    isin,
    join_values,
    normalise_phone,
    recognise_client,
)
from scimtools.frames import Export, path_for

__all__ = [
    "COMPARED_ATTRIBUTES",
    "CONFLICT_COLUMNS",
    "CONFLICT_KINDS",
    "DEFAULT_PRECEDENCE",
    "SEVERITY",
    "find_conflicts",
    "normalise_values",
    "tenant_frames",
]

logger = logging.getLogger(__name__)

#: Severity of each kind, most urgent first.
SEVERITY: dict[str, str] = {
    "duplicate_identity": "high",
    "create_conflict": "high",
    "status_disagreement": "high",
    "membership_flip_flop": "medium",
    "group_members_differ": "medium",
    "external_id_overwritten": "medium",
    "claimed_inactive": "medium",
    "attribute_disagreement": "low",
    "orphan": "low",
    "shared_ownership": "info",
}
CONFLICT_KINDS = tuple(SEVERITY)
_RANK = {"high": 0, "medium": 1, "low": 2, "info": 3}

#: Which client's value wins, per attribute (a column of `scimtools.COLUMNS`),
#: first listed first. ``owner`` decides which account to keep and who owns a
#: shared user; ``members`` may be ``"union"`` (a member if any client says so);
#: ``default`` covers the attributes not named.
DEFAULT_PRECEDENCE: dict[str, tuple[str, ...] | str] = {
    "default": ("okta", "entra"),
    "owner": ("okta", "entra"),
    "active": ("okta", "entra"),
    "external_id": ("okta", "entra"),
    "department": ("entra", "okta"),
    "employee_number": ("entra", "okta"),
    "cost_center": ("entra", "okta"),
    "members": "union",
}

#: Attributes compared between the clients of a shared user.
COMPARED_ATTRIBUTES = (
    "user_name",
    "email",
    "given_name",
    "family_name",
    "formatted_name",
    "phone",
    "department",
    "employee_number",
    "cost_center",
)

CONFLICT_COLUMNS = (
    "conflict_id",
    "kind",
    "severity",
    "tenant_ids",
    "clients",
    "attribute",
    "action",
    "winner",
    "evidence",
    "resolution",
)


def tenant_frames(
    users: pd.DataFrame,
    *,
    emails: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    memberships: pd.DataFrame | None = None,
) -> Export:
    """Wrap tenant DataFrames (a subset of the export's columns) as an `Export`.

    For tests and benchmarks that build frames directly; missing columns are
    added empty.

    Examples
    --------
    >>> tenant_frames(pd.DataFrame({"id": ["u1"]})).counts()["users"]
    1
    """
    from scimtools.frames import COLUMNS, MEMBERSHIP_COLUMNS, VALUE_COLUMNS

    def conform(frame: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
        frame = pd.DataFrame() if frame is None else frame.copy()
        for column in columns:
            if column not in frame:
                frame[column] = pd.Series(np.nan, index=frame.index, dtype="object")
        return frame

    user_columns = [c.name for c in COLUMNS if c.table == "users"]
    group_columns = [c.name for c in COLUMNS if c.table == "groups"]
    users = conform(users, user_columns)
    return Export(
        users=users,
        enterprise_users=users.iloc[0:0],
        emails=conform(emails, VALUE_COLUMNS),
        phones=conform(None, VALUE_COLUMNS),
        groups=conform(groups, group_columns),
        memberships=conform(memberships, MEMBERSHIP_COLUMNS),
    )


def normalise_values(attribute: str, values: pd.Series) -> pd.Series:
    """Return values as compared: phone digits, other text folded (case, accents).

    Examples
    --------
    >>> normalise_values("phone", pd.Series(["+1 753-555-0152"])).tolist()
    ['7535550152']
    >>> normalise_values("family_name", pd.Series(["Müller "])).tolist()
    ['muller']
    """
    if attribute == "phone":
        return normalise_phone(values)
    return _fold(values)


def _order(precedence: Mapping[str, Any], attribute: str) -> tuple[str, ...]:
    order = precedence.get(attribute, precedence.get("default", ()))
    return tuple(order) if not isinstance(order, str) else ()


def _rank(clients: pd.Series, order: Sequence[str]) -> pd.Series:
    """Rank of each client in ``order`` (unlisted clients last, by name)."""
    ranks = {client: n for n, client in enumerate(order)}
    return clients.map(ranks).fillna(len(order)).astype("int64")


def _pick(long: pd.DataFrame, by: str, order: Sequence[str]) -> pd.DataFrame:
    """The row of ``long`` per ``by`` whose client comes first in ``order``."""
    ranked = long.assign(_rank=_rank(long["client"], order))
    ranked = ranked.sort_values([by, "_rank", "client"], kind="stable")
    return ranked.drop_duplicates(by).drop(columns="_rank")


def _joined(long: pd.DataFrame, by: str, column: str) -> pd.Series:
    """The sorted, comma-joined distinct values of ``column`` per ``by``."""
    return join_values(long[by], long[column])


def _frame(kind: str, **columns: Any) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame.insert(0, "kind", kind)
    return frame


def _records_with_claims(
    views: Sequence[ClientView], attribution: Attribution
) -> pd.DataFrame:
    records = _records(views).drop(columns="tenant_id")
    matches = attribution.users[
        ["client", "key", "tenant_id", "rule", "score", "status"]
    ]
    if (
        len(matches) == len(records)
        and matches["client"].equals(records["client"])
        and matches["key"].equals(records["key"])
    ):
        # `match_users` keeps the records' order: the merge would only copy.
        claims = matches.drop(columns=["client", "key"])
        return pd.concat([records, claims.set_axis(records.index)], axis=1)
    return records.merge(matches, on=["client", "key"], how="left")


def find_conflicts(
    export: Export,
    views: Sequence[ClientView],
    *,
    attribution: Attribution | None = None,
    precedence: Mapping[str, tuple[str, ...] | str] | None = None,
    rules: Sequence[ClientRule] = DEFAULT_CLIENT_RULES,
    fuzzy_threshold: float = 90.0,
) -> pd.DataFrame:
    """Find every conflict kind of `CONFLICT_KINDS` between the clients' views.

    Parameters
    ----------
    export : Export
        The tenant (`scimtools.export_tenant`, or `tenant_frames`).
    views : sequence of ClientView
        What each client believes it provisioned (`read_client_view`).
    attribution : Attribution, optional
        A finished `attribute_tenant`; computed when not given.
    precedence : mapping, optional
        Whose value wins per attribute; default `DEFAULT_PRECEDENCE`.
    rules : sequence of ClientRule
        Recognise the client behind an unclaimed user's externalId.
    fuzzy_threshold : float, default 90.0
        For attribution and for recognising one person in two clients' records.

    Returns
    -------
    pandas.DataFrame
        Columns `CONFLICT_COLUMNS`, sorted by severity, kind and tenant ids.
        ``tenant_ids`` and ``clients`` are comma-joined and sorted;
        ``evidence`` and ``resolution`` are dicts; ``action`` and ``winner``
        repeat the resolution's for filtering.
    """
    precedence = dict(DEFAULT_PRECEDENCE if precedence is None else precedence)
    if attribution is None:
        attribution = attribute_tenant(export, views, fuzzy_threshold=fuzzy_threshold)
    records = _records_with_claims(views, attribution)
    claimed = records[records["status"] == "matched"].drop_duplicates(
        ["tenant_id", "client"]
    )
    tenant = export.users.set_index(export.users["id"].astype("str"))
    counts = claimed.groupby("tenant_id")["client"].transform("size")
    shared = claimed[counts > 1]

    parts = [
        _shared_ownership(shared, precedence),
        _attribute_disagreements(shared, tenant, precedence),
        _status_disagreements(shared, tenant, precedence),
        _external_ids_overwritten(shared, tenant, precedence),
        _create_conflicts(records, export, views, attribution),
        _duplicates(claimed, records, views, precedence, fuzzy_threshold, export),
        _orphans(attribution, tenant, rules),
        _claimed_inactive(claimed, tenant, precedence),
        *_group_conflicts(attribution, export, precedence),
    ]
    conflicts = _finish([p for p in parts if len(p)])
    logger.info(
        "Found %s conflicts: %s",
        len(conflicts),
        conflicts["kind"].value_counts().sort_index().to_dict(),
    )
    return conflicts


def _finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in CONFLICT_COLUMNS})
    frame = pd.concat(parts, ignore_index=True)
    for column in ("attribute", "winner"):
        if column not in frame:
            frame[column] = np.nan
    frame["severity"] = frame["kind"].map(SEVERITY)
    frame["_rank"] = frame["severity"].map(_RANK)
    frame["attribute"] = frame["attribute"].astype("str")
    key = (
        frame["kind"]
        + "|"
        + frame["tenant_ids"].fillna("")
        + "|"
        + frame["clients"]
        + "|"
        + frame["attribute"].fillna("")
        + "|"
        + frame.get("_extra", pd.Series("", index=frame.index)).fillna("")
    )
    hashes = pd.util.hash_pandas_object(key, index=False).to_numpy()
    frame["conflict_id"] = pd.Series(hashes).map("{:016x}".format).str[:12].to_numpy()
    frame = frame.sort_values(
        ["_rank", "kind", "tenant_ids", "clients", "attribute", "conflict_id"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)
    return frame[list(CONFLICT_COLUMNS)]


def _dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts without the null entries."""
    return [
        {k: v for k, v in row.items() if not _is_null(v)}
        for row in frame.to_dict("records")
    ]


def _is_null(value: Any) -> bool:
    if isinstance(value, str):
        return False
    return not isinstance(value, list | dict | tuple) and pd.isna(value)


def _it(values: Any) -> Any:
    """``values`` as a list when that is exactly what iterating them yields (a
    Series or Index of a NumPy or ``str`` dtype); iterating a pyarrow-backed
    Series one value at a time is the slow part of building the dicts."""
    if isinstance(values, pd.Series | pd.Index) and (
        isinstance(values.dtype, np.dtype) or values.dtype == "str"
    ):
        return values.tolist()
    return values


def _zip(*columns: Any, strict: bool = True) -> Any:
    """``zip(*columns, strict=True)``, fast for Series (see `_it`)."""
    return zip(*(_it(c) for c in columns), strict=strict)


def _op(method: str, endpoint: str, resource_id: Any, **body: Any) -> dict[str, Any]:
    return {"method": method, "endpoint": endpoint, "id": resource_id, **body}


# -- users claimed by several clients ------------------------------------------------


def _shared_ownership(shared: pd.DataFrame, precedence: Mapping[str, Any]) -> Any:
    if shared.empty:
        return shared
    owner = _pick(shared, "tenant_id", _order(precedence, "owner"))
    clients = _joined(shared, "tenant_id", "client")
    rules: dict[str, list[dict[str, Any]]] = {}
    columns = ["tenant_id", "client", "key", "rule", "score"]
    for tenant_id, client, key, rule, score in _zip(*(shared[c] for c in columns)):
        rules.setdefault(tenant_id, []).append(
            {"client": client, "key": key, "rule": rule, "score": score}
        )
    ids = owner["tenant_id"]
    evidence = [{"claims": rules[i]} for i in ids]
    resolution = [
        {
            "action": "assign_owner",
            "winner": w,
            "keep": i,
            "operations": [],
            "client_actions": [
                {"client": c, "action": "stop_provisioning", "tenant_id": i}
                for c in cs.split(",")
                if c != w
            ],
        }
        for i, w, cs in _zip(ids, owner["client"], clients.reindex(ids), strict=True)
    ]
    return _frame(
        "shared_ownership",
        tenant_ids=ids.to_numpy(),
        clients=clients.reindex(ids).to_numpy(),
        action="assign_owner",
        winner=owner["client"].to_numpy(),
        evidence=evidence,
        resolution=resolution,
    )


def _disagreements(
    shared: pd.DataFrame,
    tenant: pd.DataFrame,
    attribute: str,
    precedence: Mapping[str, Any],
) -> pd.DataFrame | None:
    """Shared users whose claiming clients send different values of ``attribute``."""
    long = shared[["tenant_id", "client", attribute]].dropna(subset=[attribute])
    if attribute == "active":
        long = long.assign(_n=long[attribute].astype("bool").astype("str"))
    else:
        long = long.assign(_n=normalise_values(attribute, long[attribute]))
        long = long.dropna(subset=["_n"])
    distinct = long.groupby("tenant_id")["_n"].transform("nunique")
    long = long[distinct > 1]
    if long.empty:
        return None

    held = tenant[attribute].reindex(long["tenant_id"])
    if attribute == "active":
        held_n = held.astype("boolean").astype("str")
    else:
        held_n = normalise_values(attribute, held.astype("object"))
    long = long.assign(_held=held_n.to_numpy())
    winner = _pick(long, "tenant_id", _order(precedence, attribute)).set_index(
        "tenant_id"
    )
    writers = _joined(long[long["_n"] == long["_held"]], "tenant_id", "client")
    values = long.pivot_table(
        index="tenant_id", columns="client", values=attribute, aggfunc="first"
    )
    ids = winner.index
    result = pd.DataFrame(
        {
            "tenant_id": ids,
            "clients": _joined(long, "tenant_id", "client").reindex(ids).to_numpy(),
            "winner": winner["client"].to_numpy(),
            "value": winner[attribute].to_numpy(),
            "tenant_value": tenant[attribute].reindex(ids).to_numpy(),
            "written_by": writers.reindex(ids).to_numpy(),
            "tenant_holds_winner": (winner["_n"] == winner["_held"]).to_numpy(),
        }
    )
    result["values"] = _dicts(values.reindex(ids))
    return result


def _attribute_disagreements(
    shared: pd.DataFrame, tenant: pd.DataFrame, precedence: Mapping[str, Any]
) -> pd.DataFrame:
    parts = []
    for attribute in COMPARED_ATTRIBUTES:
        found = _disagreements(shared, tenant, attribute, precedence)
        if found is None:
            continue
        path = path_for(attribute)
        evidence = [
            {"values": v, "tenant_value": t, "written_by": w}
            for v, t, w in _zip(
                found["values"], found["tenant_value"], found["written_by"], strict=True
            )
        ]
        resolution = [
            {
                "action": "set_attribute",
                "winner": w,
                "keep": i,
                "attribute": attribute,
                "path": path,
                "value": v,
                "operations": []
                if ok
                else [_op("PATCH", "Users", i, op="replace", path=path, value=v)],
                "client_actions": [
                    {"client": c, "action": "stop_sending", "attribute": attribute}
                    for c in cs.split(",")
                    if c != w
                ],
            }
            for i, w, v, ok, cs in _zip(
                found["tenant_id"],
                found["winner"],
                found["value"],
                found["tenant_holds_winner"],
                found["clients"],
                strict=True,
            )
        ]
        parts.append(
            _frame(
                "attribute_disagreement",
                tenant_ids=found["tenant_id"].to_numpy(),
                clients=found["clients"].to_numpy(),
                attribute=attribute,
                action="set_attribute",
                winner=found["winner"].to_numpy(),
                evidence=evidence,
                resolution=resolution,
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _status_disagreements(
    shared: pd.DataFrame, tenant: pd.DataFrame, precedence: Mapping[str, Any]
) -> pd.DataFrame:
    found = _disagreements(shared, tenant, "active", precedence)
    if found is None:
        return pd.DataFrame()
    evidence = [
        {"active": v, "tenant_active": _plain(t), "written_by": w}
        for v, t, w in _zip(
            found["values"], found["tenant_value"], found["written_by"], strict=True
        )
    ]
    resolution = [
        {
            "action": "set_active",
            "winner": w,
            "keep": i,
            "attribute": "active",
            "path": "active",
            "value": bool(v),
            "operations": []
            if ok
            else [_op("PATCH", "Users", i, op="replace", path="active", value=bool(v))],
            "client_actions": [
                {"client": c, "action": "stop_sending", "attribute": "active"}
                for c in cs.split(",")
                if c != w
            ],
        }
        for i, w, v, ok, cs in _zip(
            found["tenant_id"],
            found["winner"],
            found["value"],
            found["tenant_holds_winner"],
            found["clients"],
            strict=True,
        )
    ]
    return _frame(
        "status_disagreement",
        tenant_ids=found["tenant_id"].to_numpy(),
        clients=found["clients"].to_numpy(),
        attribute="active",
        action="set_active",
        winner=found["winner"].to_numpy(),
        evidence=evidence,
        resolution=resolution,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if _is_null(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _external_ids_overwritten(
    shared: pd.DataFrame, tenant: pd.DataFrame, precedence: Mapping[str, Any]
) -> pd.DataFrame:
    long = shared[["tenant_id", "client", "external_id"]].copy()
    long["_n"] = _fold(long["external_id"])
    held = tenant["external_id"].reindex(long["tenant_id"])
    long["held"] = held.to_numpy()
    long["held_n"] = _fold(held).to_numpy()
    writer = long[long["_n"] == long["held_n"]].drop_duplicates("tenant_id")
    writer = writer.set_index("tenant_id")["client"]
    lost = long[long["_n"].notna() & (long["_n"] != long["held_n"])]
    if lost.empty:
        return pd.DataFrame()

    owner = _pick(
        shared[shared["external_id"].notna()],
        "tenant_id",
        _order(precedence, "external_id"),
    ).set_index("tenant_id")
    ids = lost["tenant_id"]
    wrote = writer.reindex(ids).to_numpy()
    win = owner["client"].reindex(ids).to_numpy()
    value = owner["external_id"].reindex(ids).to_numpy()
    held_values = lost["held"].to_numpy()
    evidence = [
        {
            "lost": {"client": c, "externalId": e},
            "tenant_external_id": _plain(h),
            "written_by": _plain(w),
        }
        for c, e, h, w in _zip(
            lost["client"], lost["external_id"], held_values, wrote, strict=True
        )
    ]
    resolution = [
        {
            "action": "set_external_id",
            "winner": w,
            "keep": i,
            "attribute": "external_id",
            "path": "externalId",
            "value": v,
            "operations": []
            if v == h
            else [_op("PATCH", "Users", i, op="replace", path="externalId", value=v)],
            "client_actions": [
                {"client": by, "action": "stop_sending", "attribute": "external_id"}
            ]
            if isinstance(by, str) and by != w
            else [],
        }
        for i, w, v, h, by in _zip(ids, win, value, held_values, wrote, strict=True)
    ]
    pair = [
        ",".join(sorted({c, w})) if isinstance(w, str) else c
        for c, w in _zip(lost["client"], wrote, strict=True)
    ]
    return _frame(
        "external_id_overwritten",
        tenant_ids=ids.to_numpy(),
        clients=pair,
        attribute="external_id",
        action="set_external_id",
        winner=win,
        evidence=evidence,
        resolution=resolution,
        _extra=lost["client"].to_numpy(),
    )


def _claimed_inactive(
    claimed: pd.DataFrame, tenant: pd.DataFrame, precedence: Mapping[str, Any]
) -> pd.DataFrame:
    inactive = tenant["active"].astype("boolean").eq(False).fillna(False)
    long = claimed[isin(claimed["tenant_id"], tenant.index[inactive.to_numpy()])]
    believes = long["active"].astype("boolean").fillna(True)
    anyone_off = (~believes).groupby(long["tenant_id"]).transform("any")
    long = long[~anyone_off]
    if long.empty:
        return pd.DataFrame()
    clients = _joined(long, "tenant_id", "client")
    owner = _pick(long, "tenant_id", _order(precedence, "active"))
    ids = owner["tenant_id"]
    return _frame(
        "claimed_inactive",
        tenant_ids=ids.to_numpy(),
        clients=clients.reindex(ids).to_numpy(),
        attribute="active",
        action="set_active",
        winner=owner["client"].to_numpy(),
        evidence=[
            {"tenant_active": False, "believed_active_by": c.split(",")}
            for c in clients.reindex(ids)
        ],
        resolution=[
            {
                "action": "set_active",
                "winner": w,
                "keep": i,
                "attribute": "active",
                "path": "active",
                "value": True,
                "operations": [
                    _op("PATCH", "Users", i, op="replace", path="active", value=True)
                ],
                "client_actions": [],
            }
            for i, w in _zip(ids, owner["client"], strict=True)
        ],
    )


# -- users in one client only ---------------------------------------------------------


def _create_conflicts(
    records: pd.DataFrame,
    export: Export,
    views: Sequence[ClientView],
    attribution: Attribution,
) -> pd.DataFrame:
    parts = []
    blocked = records[records["status"] == "blocked"]
    if len(blocked):
        addresses = _record_addresses(records, views, blocked.index)
        holders = addresses.merge(
            _tenant_addresses(export.users, export.emails), on="addr"
        ).drop_duplicates(["row", "tenant_id"])
        holders = holders.groupby("row").agg(
            tenant_id=("tenant_id", lambda s: ",".join(sorted(set(s)))),
            addr=("addr", "first"),
        )
        blocked = blocked.join(holders[["addr"]]).assign(
            holder=holders["tenant_id"].reindex(blocked.index).to_numpy()
        )
        claims = attribution.claims.set_index("tenant_id")["clients"]
        held_by = [
            ",".join(
                sorted(
                    {
                        c
                        for h in str(hs).split(",")
                        for c in str(claims.get(h, "")).split(",")
                        if c and c != "nan"
                    }
                )
            )
            if isinstance(hs, str)
            else ""
            for hs in blocked["holder"]
        ]
        # The holder already belongs to another account of the same client (a
        # guest and a member account with one address): linking would make two
        # accounts write one user; the accounts must be merged in the IdP.
        actions = [
            "merge_in_idp"
            if c in h.split(",")
            else "link_to_existing"
            if isinstance(t, str)
            else "create_again"
            for c, h, t in _zip(
                blocked["client"], held_by, blocked["holder"], strict=True
            )
        ]
        parts.append(
            _frame(
                "create_conflict",
                tenant_ids=blocked["holder"].to_numpy(),
                clients=[
                    ",".join(sorted({c, *h.split(",")} - {""}))
                    for c, h in _zip(blocked["client"], held_by, strict=True)
                ],
                attribute="user_name",
                action=[
                    "link_to_existing" if a == "create_again" else a for a in actions
                ],
                winner=np.nan,
                evidence=[
                    {
                        "resource": "Users",
                        "client": c,
                        "key": k,
                        "user_name": _plain(u),
                        "email": _plain(e),
                        "create_status": 409,
                        "taken_value": _plain(a),
                        "held_by": h.split(",") if h else [],
                    }
                    for c, k, u, e, a, h in _zip(
                        blocked["client"],
                        blocked["key"],
                        blocked["user_name"],
                        blocked["email"],
                        blocked["addr"],
                        held_by,
                        strict=True,
                    )
                ],
                resolution=[
                    {
                        "action": a,
                        "keep": _plain(t),
                        "operations": [],
                        "client_actions": [
                            {
                                "client": c,
                                "action": "merge" if a == "merge_in_idp" else "link",
                                "key": k,
                                "tenant_id": _plain(t),
                            }
                        ],
                    }
                    for c, k, t, a in _zip(
                        blocked["client"],
                        blocked["key"],
                        blocked["holder"],
                        actions,
                        strict=True,
                    )
                ],
                _extra=(blocked["client"] + ":" + blocked["key"]).to_numpy(),
            )
        )

    groups = attribution.groups
    blocked_groups = groups[groups["status"] == "blocked"]
    if len(blocked_groups):
        names = export.groups.assign(_n=_fold(export.groups["display_name"]))
        holder = names.drop_duplicates("_n").set_index("_n")["id"]
        ids = holder.reindex(_fold(blocked_groups["display_name"])).to_numpy()
        by = attribution.groups[attribution.groups["status"] == "matched"]
        by = by.groupby("tenant_id")["client"].agg(lambda s: ",".join(sorted(set(s))))
        parts.append(
            _frame(
                "create_conflict",
                tenant_ids=ids,
                clients=[
                    ",".join(sorted({c, *str(by.get(i, "")).split(",")} - {""}))
                    for c, i in _zip(blocked_groups["client"], ids, strict=True)
                ],
                attribute="display_name",
                action="link_to_existing",
                evidence=[
                    {
                        "resource": "Groups",
                        "client": c,
                        "key": k,
                        "display_name": n,
                        "create_status": 409,
                        "held_by": str(by.get(i, "")).split(","),
                    }
                    for c, k, n, i in _zip(
                        blocked_groups["client"],
                        blocked_groups["key"],
                        blocked_groups["display_name"],
                        ids,
                        strict=True,
                    )
                ],
                resolution=[
                    {
                        "action": "link_to_existing",
                        "keep": _plain(i),
                        "operations": [],
                        "client_actions": [
                            {
                                "client": c,
                                "action": "link",
                                "key": k,
                                "tenant_id": _plain(i),
                            }
                        ],
                    }
                    for c, k, i in _zip(
                        blocked_groups["client"],
                        blocked_groups["key"],
                        ids,
                        strict=True,
                    )
                ],
                _extra=(
                    blocked_groups["client"] + ":" + blocked_groups["key"]
                ).to_numpy(),
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _duplicates(
    claimed: pd.DataFrame,
    records: pd.DataFrame,
    views: Sequence[ClientView],
    precedence: Mapping[str, Any],
    threshold: float,
    export: Export,
) -> pd.DataFrame:
    """Pairs of records of different clients that describe one person but are
    matched to different tenant users."""
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    rows = records[records["status"] == "matched"]
    addresses = _record_addresses(records, views, rows.index)
    by_address = addresses.merge(addresses, on="addr", suffixes=("", "_b"))
    by_address = by_address.assign(rule="email", score=90.0)

    # A record pairs by phone only with another record of the same phone (its
    # pair with itself is dropped below): fold names only for shared phones.
    phone_n = normalise_phone(rows["phone"])
    phone_n = phone_n[phone_n.notna() & phone_n.duplicated(keep=False)]
    rows_p = rows.loc[phone_n.index]
    person = pd.DataFrame(
        {
            "row": rows_p.index,
            "name": _full_name(rows_p).to_numpy(),
            "phone_n": phone_n.to_numpy(),
        }
    ).dropna()
    by_phone = person.merge(person, on="phone_n", suffixes=("", "_b"))
    pairs = pd.concat(
        [
            by_address[["row", "row_b", "rule", "score"]],
            by_phone[["row", "row_b", "name", "name_b"]].assign(rule="fuzzy"),
        ],
        ignore_index=True,
    )
    pairs = pairs[pairs["row"] < pairs["row_b"]]
    clients = records["client"]
    tenant_ids = records["tenant_id"]
    pairs = pairs[
        (
            clients.reindex(pairs["row"]).to_numpy()
            != clients.reindex(pairs["row_b"]).to_numpy()
        )
        & (
            tenant_ids.reindex(pairs["row"]).to_numpy()
            != tenant_ids.reindex(pairs["row_b"]).to_numpy()
        )
    ].reset_index(drop=True)
    fuzzy = pairs["rule"] == "fuzzy"
    if fuzzy.any():
        names = cpdist(
            pairs.loc[fuzzy, "name"].tolist(),
            pairs.loc[fuzzy, "name_b"].tolist(),
            scorer=fuzz.token_sort_ratio,
            workers=-1,
        )
        pairs.loc[fuzzy, "score"] = np.round(0.6 * names + 40.0, 1)
    pairs = pairs[pairs["score"] >= threshold]
    if pairs.empty:
        return pd.DataFrame()
    pairs = pairs.sort_values(["row", "row_b", "score"], ascending=[True, True, False])
    pairs = pairs.drop_duplicates(["row", "row_b"])

    a = records.loc[pairs["row"], ["client", "key", "tenant_id"]].reset_index(drop=True)
    b = records.loc[pairs["row_b"], ["client", "key", "tenant_id"]].reset_index(
        drop=True
    )
    order = _order(precedence, "owner")
    a_first = (
        _rank(a["client"], order).to_numpy() <= _rank(b["client"], order).to_numpy()
    )
    keep = np.where(a_first, a["tenant_id"], b["tenant_id"])
    drop = np.where(a_first, b["tenant_id"], a["tenant_id"])
    winner = np.where(a_first, a["client"], b["client"])
    loser = np.where(a_first, b["client"], a["client"])
    loser_key = np.where(a_first, b["key"], a["key"])
    ids = [
        ",".join(sorted(p)) for p in _zip(a["tenant_id"], b["tenant_id"], strict=True)
    ]

    moving = export.memberships[isin(export.memberships["user_id"], drop)]
    groups_of: dict[str, list[str]] = {}
    for group_id, user_id in (
        moving[["group_id", "user_id"]]
        .drop_duplicates()
        .sort_values(["user_id", "group_id"])
        .itertuples(index=False)
    ):
        groups_of.setdefault(user_id, []).append(group_id)
    evidence = [
        {
            "records": [
                {"client": ac, "key": ak, "tenant_id": at},
                {"client": bc, "key": bk, "tenant_id": bt},
            ],
            "rule": r,
            "score": float(s),
        }
        for ac, ak, at, bc, bk, bt, r, s in _zip(
            a["client"],
            a["key"],
            a["tenant_id"],
            b["client"],
            b["key"],
            b["tenant_id"],
            pairs["rule"],
            pairs["score"],
            strict=True,
        )
    ]
    resolution = [
        {
            "action": "merge_users",
            "winner": w,
            "keep": k,
            "remove": d,
            "operations": [
                _op(
                    "PATCH", "Groups", g, op="add", path="members", value=[{"value": k}]
                )
                for g in groups_of.get(d, [])
            ]
            + [_op("DELETE", "Users", d)],
            "client_actions": [
                {"client": lc, "action": "link", "key": lk, "tenant_id": k}
            ],
        }
        for k, d, w, lc, lk in _zip(keep, drop, winner, loser, loser_key, strict=True)
    ]
    return _frame(
        "duplicate_identity",
        tenant_ids=ids,
        clients=[
            ",".join(sorted({x, y}))
            for x, y in _zip(a["client"], b["client"], strict=True)
        ],
        action="merge_users",
        winner=winner,
        evidence=evidence,
        resolution=resolution,
    ).drop_duplicates("tenant_ids")


def _orphans(
    attribution: Attribution, tenant: pd.DataFrame, rules: Sequence[ClientRule]
) -> pd.DataFrame:
    claims = attribution.claims
    ids = claims.loc[claims["claims"] == 0, "tenant_id"]
    if ids.empty:
        return pd.DataFrame()
    users = tenant.reindex(ids)
    suggested = recognise_client(users, rules).to_numpy()
    return _frame(
        "orphan",
        tenant_ids=ids.to_numpy(),
        clients="",
        action="deactivate",
        evidence=[
            {
                "external_id": _plain(e),
                "user_name": _plain(u),
                "active": _plain(a),
                "recognised_as": _plain(s),
            }
            for e, u, a, s in _zip(
                users["external_id"],
                users["user_name"],
                users["active"],
                suggested,
                strict=True,
            )
        ],
        resolution=[
            {
                "action": "deactivate",
                "keep": i,
                "attribute": "active",
                "path": "active",
                "value": False,
                "operations": [
                    _op("PATCH", "Users", i, op="replace", path="active", value=False)
                ]
                if a is not False and not _is_null(a) and bool(a)
                else [],
                "client_actions": [
                    {"client": s, "action": "review_assignment", "tenant_id": i}
                ]
                if isinstance(s, str)
                else [],
            }
            for i, a, s in _zip(ids, users["active"], suggested, strict=True)
        ],
    )


# -- groups ---------------------------------------------------------------------------


def _group_conflicts(
    attribution: Attribution, export: Export, precedence: Mapping[str, Any]
) -> list[pd.DataFrame]:
    matched = attribution.groups[attribution.groups["status"] == "matched"]
    matched = matched.drop_duplicates(["tenant_id", "client"])
    counts = matched.groupby("tenant_id")["client"].transform("size")
    shared = matched[counts > 1]
    if shared.empty:
        return []

    group_clients = _joined(shared, "tenant_id", "client")
    members = attribution.members
    members = members[isin(members["group_id"], group_clients.index)]
    members = members[
        members.set_index(["group_id", "client"]).index.isin(
            shared.set_index(["tenant_id", "client"]).index
        )
    ]
    pair = members["group_id"] + "," + members["user_id"]
    listed = join_values(pair, members["client"])
    per_member = pd.DataFrame({"pair": listed.index, "listed_by": listed.to_numpy()})
    per_member[["group_id", "user_id"]] = per_member["pair"].str.split(
        ",", n=1, expand=True
    )
    per_member["claimers"] = per_member["group_id"].map(group_clients)
    differ = per_member[per_member["listed_by"] != per_member["claimers"]].copy()
    if differ.empty:
        return []

    in_tenant = pd.MultiIndex.from_frame(export.memberships[["group_id", "user_id"]])
    differ["in_tenant"] = pd.MultiIndex.from_frame(
        differ[["group_id", "user_id"]]
    ).isin(in_tenant)
    rule = precedence.get("members", "union")
    if rule == "union":
        differ["desired"] = True
        winner = np.full(len(differ), None)
    else:
        order = tuple(rule)
        winners = _pick(
            shared.rename(columns={"tenant_id": "group_id"}), "group_id", order
        ).set_index("group_id")["client"]
        winner = differ["group_id"].map(winners).to_numpy()
        differ["desired"] = [
            w in lb.split(",")
            for w, lb in _zip(winner, differ["listed_by"], strict=True)
        ]
    differ["winner"] = winner

    ops = [
        []
        if want == has
        else [
            _op(
                "PATCH",
                "Groups",
                g,
                op="add" if want else "remove",
                path="members" if want else f'members[value eq "{u}"]',
                **({"value": [{"value": u}]} if want else {}),
            )
        ]
        for g, u, want, has in _zip(
            differ["group_id"],
            differ["user_id"],
            differ["desired"],
            differ["in_tenant"],
            strict=True,
        )
    ]
    flips = _frame(
        "membership_flip_flop",
        tenant_ids=(differ["group_id"] + "," + differ["user_id"]).to_numpy(),
        clients=differ["claimers"].to_numpy(),
        attribute="members",
        action="set_membership",
        winner=differ["winner"].to_numpy(),
        evidence=[
            {
                "group_id": g,
                "user_id": u,
                "listed_by": lb.split(","),
                "in_tenant": bool(t),
            }
            for g, u, lb, t in _zip(
                differ["group_id"],
                differ["user_id"],
                differ["listed_by"],
                differ["in_tenant"],
                strict=True,
            )
        ],
        resolution=[
            {
                "action": "set_membership",
                "winner": _plain(w),
                "keep": g,
                "member": u,
                "value": bool(want),
                "operations": o,
                "client_actions": [],
            }
            for g, u, want, w, o in _zip(
                differ["group_id"],
                differ["user_id"],
                differ["desired"],
                differ["winner"],
                ops,
                strict=True,
            )
        ],
    )

    differ["op"] = ops
    grouped = differ.groupby("group_id")
    summary = pd.DataFrame(
        {
            "only": grouped["listed_by"].agg(lambda s: s.value_counts().to_dict()),
            "ops": grouped["op"].agg(lambda s: [o for ops in s for o in ops]),
            "add": grouped.apply(
                lambda g: sorted(g.loc[g["desired"] & ~g["in_tenant"], "user_id"]),
                include_groups=False,
            ),
            "remove": grouped.apply(
                lambda g: sorted(g.loc[~g["desired"] & g["in_tenant"], "user_id"]),
                include_groups=False,
            ),
        }
    )
    names = export.groups.set_index("id")["display_name"]
    ids = summary.index
    differs = _frame(
        "group_members_differ",
        tenant_ids=ids.to_numpy(),
        clients=group_clients.reindex(ids).to_numpy(),
        attribute="members",
        action="set_members",
        winner=None if rule == "union" else np.nan,
        evidence=[
            {"display_name": _plain(names.get(g)), "members_listed_by_only": o}
            for g, o in _zip(ids, summary["only"], strict=True)
        ],
        resolution=[
            {
                "action": "set_members",
                "policy": rule if isinstance(rule, str) else list(rule),
                "keep": g,
                "add": a,
                "remove": r,
                "operations": o,
                "client_actions": [],
            }
            for g, a, r, o in _zip(
                ids, summary["add"], summary["remove"], summary["ops"], strict=True
            )
        ],
    )
    return [flips, differs]
