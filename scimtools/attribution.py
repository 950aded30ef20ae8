"""Attribute tenant users and groups to the SCIM clients that provisioned them.

FusionAuth does not record which SCIM client sent a request, so a tenant shared
by two clients (Okta and Entra ID, say) cannot tell who owns a user. Each
client's own view of what it provisioned can: this module reads those views
(the demo's IdP views, or CSV and SCIM JSON exports) and matches their records
to tenant users, rule by rule, never silently:

1. ``id``: the tenant id the client holds for its record (score 100);
2. ``externalId``: equal externalIds, without case (100);
3. ``userName``: equal userNames, without case (95);
4. ``email``: one of the record's emails or its userName equals one of the
   user's emails or its userName, without case (90); FusionAuth's
   ``userName eq`` lookup matches emails too, which is how IdPs adopt users;
5. ``fuzzy``: a rapidfuzz token-sort ratio of the folded full names, with the
   phone numbers (digits only) agreeing or not (0-100, ``fuzzy_threshold``).

A rule accepts a match only when it names exactly one tenant user; a record
that several users fit is left ``ambiguous`` with its candidates. Records whose
create failed with 409 are ``blocked``: the client believes in a user that is
not there. Rules that recognise a client by the shape of an externalId or by an
email domain are data (`ClientRule`); they say who probably wrote an externalId
or who an unclaimed user probably came from.

Examples
--------
>>> import pandas as pd
>>> users = pd.DataFrame({"id": ["u1"], "external_id": ["00u1"],
...                       "user_name": ["ada@example.com"]})
>>> view = client_view_from_frame(
...     "okta", pd.DataFrame({"key": ["00u1"], "user_name": ["Ada@Example.com"]}))
>>> matches = match_users(users, [view])
>>> matches[["client", "key", "tenant_id", "rule", "score"]].values.tolist()
[['okta', '00u1', 'u1', 'externalId', 100.0]]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scimtools.errors import InputError
from scimtools.frames import Export, emails_frame, users_frame
from scimtools.inputs import read_csv, read_json, read_jsonl

__all__ = [
    "DEFAULT_CLIENT_RULES",
    "MATCH_RULES",
    "VIEW_USER_COLUMNS",
    "Attribution",
    "ClientRule",
    "ClientView",
    "attribute_tenant",
    "client_view_from_frame",
    "isin",
    "join_values",
    "match_groups",
    "match_users",
    "normalise_phone",
    "read_client_view",
    "recognise_client",
]

logger = logging.getLogger(__name__)

#: The rules in the order they are tried, and the score an exact match gets.
MATCH_RULES: dict[str, float] = {
    "id": 100.0,
    "externalId": 100.0,
    "userName": 95.0,
    "email": 90.0,
    "fuzzy": float("nan"),
}

#: The user columns of a client view (``key`` is the client's own id).
VIEW_USER_COLUMNS = (
    "key",
    "external_id",
    "user_name",
    "email",
    "given_name",
    "family_name",
    "formatted_name",
    "phone",
    "active",
    "department",
    "employee_number",
    "cost_center",
    "tenant_id",
    "create_status",
)
#: Attributes compared between clients; the others identify the record.
_STR_COLUMNS = [c for c in VIEW_USER_COLUMNS if c not in ("active", "create_status")]
_GROUP_COLUMNS = ("key", "display_name", "external_id", "tenant_id", "create_status")


@dataclass(frozen=True)
class ClientRule:
    """Recognise a SCIM client by the shape of one column's value.

    Attributes
    ----------
    client : str
        The client the rule points to.
    column : str
        ``external_id``, ``email`` or ``user_name``.
    pattern : str
        A regular expression, matched from the start (``re.match``), without case.
    note : str
        Why the shape belongs to that client.
    """

    client: str
    column: str
    pattern: str
    note: str = ""


#: Okta's user ids are ``00u`` and 17 base-62 characters; Entra ID sends the
#: object id GUID (or, when so mapped, the mailNickname, which no rule can tell).
DEFAULT_CLIENT_RULES: tuple[ClientRule, ...] = (
    ClientRule("okta", "external_id", r"00u[0-9A-Za-z]{17}$", "Okta user id"),
    ClientRule("okta", "external_id", r"00g[0-9A-Za-z]{17}$", "Okta group id"),
    ClientRule(
        "entra",
        "external_id",
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        "Entra ID object id (GUID)",
    ),
)


@dataclass
class ClientView:
    """What one SCIM client believes it provisioned.

    Attributes
    ----------
    client : str
        The client's name, e.g. ``"okta"``.
    users : pandas.DataFrame
        One row per user, columns `VIEW_USER_COLUMNS`; ``tenant_id`` and
        ``create_status`` are null when the export does not say.
    emails : pandas.DataFrame
        Every email of every user: ``key``, ``value``.
    groups : pandas.DataFrame
        ``key``, ``display_name``, ``external_id``, ``tenant_id``,
        ``create_status``.
    members : pandas.DataFrame
        ``group_key``, ``user_key``: the members the client pushed.
    """

    client: str
    users: pd.DataFrame
    emails: pd.DataFrame = field(default_factory=lambda: _empty(["key", "value"]))
    groups: pd.DataFrame = field(default_factory=lambda: _empty(_GROUP_COLUMNS))
    members: pd.DataFrame = field(
        default_factory=lambda: _empty(["group_key", "user_key"])
    )


def _empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in columns})


def _conform_users(users: pd.DataFrame) -> pd.DataFrame:
    users = users.copy()
    if "key" not in users:
        if "external_id" not in users:
            raise ValueError(
                "a client view needs a 'key' or 'external_id' column to name its"
                f" records; it has {sorted(users.columns)}"
            )
        users["key"] = users["external_id"]
    if "external_id" not in users:
        # An IdP's own id is what it sends as externalId (Okta, Entra ID).
        users["external_id"] = users["key"]
    for column in VIEW_USER_COLUMNS:
        if column not in users:
            users[column] = None
    users = users[list(VIEW_USER_COLUMNS)].reset_index(drop=True)
    for column in _STR_COLUMNS:
        users[column] = users[column].astype("str")
    active = users["active"]
    if active.dtype == object or pd.api.types.is_string_dtype(active):
        words = {"true": True, "false": False, "1": True, "0": False}
        active = active.map(lambda v: words.get(str(v).strip().lower(), v))
    users["active"] = active.astype("boolean")
    users["create_status"] = pd.to_numeric(users["create_status"]).astype("Int64")
    return users


def client_view_from_frame(
    client: str,
    users: pd.DataFrame,
    *,
    emails: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    members: pd.DataFrame | None = None,
) -> ClientView:
    """Build a `ClientView` from DataFrames whose columns are a subset of ours.

    Missing columns are added empty; ``key`` defaults to ``external_id``; the
    ``email`` column is added to ``emails`` when that frame is not given.

    Examples
    --------
    >>> view = client_view_from_frame("entra", pd.DataFrame({"external_id": ["g"]}))
    >>> view.users.loc[0, "key"], len(view.emails)
    ('g', 0)
    """
    users = _conform_users(users)
    if emails is None:
        emails = users.loc[users["email"].notna(), ["key", "email"]]
        emails = emails.rename(columns={"email": "value"})
    groups = _empty(_GROUP_COLUMNS) if groups is None else groups.copy()
    for column in _GROUP_COLUMNS:
        if column not in groups:
            groups[column] = None
    groups["create_status"] = pd.to_numeric(groups["create_status"]).astype("Int64")
    if members is None:
        members = _empty(["group_key", "user_key"])
    return ClientView(
        client,
        users,
        emails.reset_index(drop=True)[["key", "value"]].astype("str"),
        groups[list(_GROUP_COLUMNS)].reset_index(drop=True),
        members.reset_index(drop=True)[["group_key", "user_key"]].astype("str"),
    )


def _status_of(record: Mapping[str, Any]) -> int | None:
    """The HTTP status of the record's create, when the export says."""
    status = record.get("status") if "status" in record else None
    if record.get("outcome") == "conflict":
        return 409
    return (
        int(status) if isinstance(status, int | str) and str(status).isdigit() else None
    )


def _view_from_records(client: str, records: Sequence[Mapping[str, Any]]) -> ClientView:
    users = [r for r in records if r.get("kind", "user") == "user"]
    groups = [r for r in records if r.get("kind") == "group"]

    profiles = []
    for record in users:
        profile = dict(record.get("profile") or record)
        profile["id"] = record.get("key") or profile.get("externalId")
        if "active" in record:
            profile["active"] = record["active"]
        profiles.append(profile)
    frame = users_frame(profiles).rename(columns={"id": "key"})
    frame["tenant_id"] = [r.get("tenant_id") for r in users]
    frame["create_status"] = [_status_of(r) for r in users]
    emails = emails_frame(profiles).rename(columns={"user_id": "key"})

    group_frame = pd.DataFrame(
        {
            "key": [g.get("key") for g in groups],
            "display_name": [g.get("displayName") for g in groups],
            "external_id": [g.get("externalId") for g in groups],
            "tenant_id": [g.get("tenant_id") for g in groups],
            "create_status": [_status_of(g) for g in groups],
        }
    )
    members = pd.DataFrame(
        [
            {"group_key": g.get("key"), "user_key": m}
            for g in groups
            for m in g.get("members") or []
        ],
        columns=["group_key", "user_key"],
    )
    return client_view_from_frame(
        client, frame, emails=emails, groups=group_frame, members=members
    )


def read_client_view(path: str | Path, client: str | None = None) -> ClientView:
    """Read what a SCIM client believes it provisioned.

    Parameters
    ----------
    path : str or Path
        ``.jsonl``: the demo's IdP views (``out/demo/idp-views/okta.jsonl``) or
        one SCIM resource per line; ``.json``: a SCIM ListResponse or a list of
        resources (``id`` is read as the tenant id); ``.csv``: one user per row
        with the columns of `VIEW_USER_COLUMNS` (a subset will do, ``groups``
        may list group names separated by ``;``).
    client : str, optional
        The client's name; default the file name's stem (``okta``).

    Returns
    -------
    ClientView

    Raises
    ------
    ValueError
        The file's suffix is none of the above.
    InputError
        The file cannot be read or lacks what a view needs; the message names it.
    """
    path = Path(path)
    client = client or path.stem
    try:
        return _read_client_view(path, client)
    except InputError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(
            f"client view {path} cannot be read: {exc}; fix the file (see"
            " scimtools.read_client_view for the formats)"
        ) from exc


def _read_client_view(path: Path, client: str) -> ClientView:
    suffix = path.suffix.lower()
    what = "client view"

    if suffix == ".csv":
        frame = read_csv(path, what, keep_default_na=False, na_values=[""])
        if "key" not in frame and "external_id" not in frame:
            raise InputError(
                f"client view {path} has no 'key' or 'external_id' column to name"
                f" its records (columns: {list(frame.columns)}); add one"
            )
        members = None
        if "groups" in frame:
            exploded = frame.assign(group=frame["groups"].str.split(";")).explode(
                "group"
            )
            exploded = exploded[exploded["group"].notna()]
            key = "key" if "key" in frame else "external_id"
            members = pd.DataFrame(
                {
                    "group_key": exploded["group"].str.strip(),
                    "user_key": exploded[key],
                }
            )
            names = sorted(members["group_key"].unique())
            groups = pd.DataFrame({"key": names, "display_name": names})
            frame = frame.drop(columns="groups")
            return client_view_from_frame(client, frame, groups=groups, members=members)
        return client_view_from_frame(client, frame)

    if suffix == ".jsonl":
        records = read_jsonl(path, what)
    elif suffix == ".json":
        loaded = read_json(path, what)
        resources = loaded.get("Resources", []) if isinstance(loaded, dict) else loaded
        if not isinstance(resources, list) or not all(
            isinstance(r, dict) for r in resources
        ):
            raise InputError(
                f"client view {path} is neither a SCIM ListResponse nor a list of"
                " resources (JSON objects); export the client's users again"
            )
        records = [_from_scim(r) for r in resources]
    else:
        raise ValueError(
            f"cannot read a client view from {path}: use .jsonl (IdP views), .json"
            " (SCIM ListResponse or list) or .csv"
        )
    view = _view_from_records(client, records)
    logger.info(
        "Read %s users, %s groups of %s", len(view.users), len(view.groups), client
    )
    return view


def _from_scim(resource: Mapping[str, Any]) -> dict[str, Any]:
    is_group = "displayName" in resource and "userName" not in resource
    record: dict[str, Any] = {
        "kind": "group" if is_group else "user",
        "key": resource.get("externalId") or resource.get("id"),
        "tenant_id": resource.get("id"),
        "externalId": resource.get("externalId"),
        "displayName": resource.get("displayName"),
        "profile": dict(resource),
    }
    if is_group:
        record["members"] = [m.get("value") for m in resource.get("members") or []]
    return record


# -- normalisation ------------------------------------------------------------------


def _fold(values: pd.Series) -> pd.Series:
    """Lower-case, strip and drop accents; empty strings become NaN."""
    index = values.index
    text = values.astype("str").str.strip().str.lower().reset_index(drop=True)
    # ``str.isascii`` is a pyarrow kernel; the regex ``[^\x00-\x7f]`` it replaces
    # was a third of the time of folding a million names.
    accented = ~text.str.isascii().fillna(True).to_numpy(bool) & text.notna()
    if accented.any():
        folded = text[accented].str.normalize("NFKD")
        text = text.where(
            ~accented, folded.str.replace(r"[^\x00-\x7f]", "", regex=True)
        )
    return text.where(text.str.len() > 0).set_axis(index)


def normalise_phone(values: pd.Series) -> pd.Series:
    """Return the last ten digits of each phone number (NaN below seven digits).

    Examples
    --------
    >>> normalise_phone(pd.Series(["tel:+1-753-555-0152", "(753) 555-0152", "1"]))
    0    7535550152
    1    7535550152
    2           NaN
    dtype: str
    """
    digits = values.astype("str").str.replace(r"\D", "", regex=True).str[-10:]
    return digits.where(digits.str.len() >= 7)


def _full_name(frame: pd.DataFrame) -> pd.Series:
    given = frame["given_name"].astype("str").fillna("")
    family = frame["family_name"].astype("str").fillna("")
    joined = (given + " " + family).str.strip()
    name = frame["formatted_name"].where(frame["formatted_name"].notna(), joined)
    folded = _fold(name).str.replace(r"[^a-z0-9 ]", "", regex=True)
    # Only a-z, 0-9 and spaces are left, so " +" is "\s+"; pandas runs "\s" in
    # Python's re, one string at a time, and " +" in pyarrow.
    folded = folded.str.replace(r" +", " ", regex=True).str.strip()
    return folded.where(folded.str.len() > 0)


def isin(values: Any, allowed: Any) -> np.ndarray:
    """Return ``values.isin(allowed)`` as a NumPy array, fast for text too.

    pandas' ``str`` dtype builds a Python scalar per allowed value in ``isin``;
    object arrays go through the hash table.

    Examples
    --------
    >>> isin(pd.Series(["a", "b", None]), ["b"]).tolist()
    [False, True, False]
    """
    if _is_text(values) and _is_text(allowed):
        # pyarrow's hash set, as pandas' object path: nulls match nulls.
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.is_in(
            pa.array(pd.array(values)),
            value_set=pa.array(pd.array(allowed)),
            skip_nulls=False,
        )
        return found.to_numpy(zero_copy_only=False).astype(bool)
    left = pd.Series(np.asarray(values, dtype=object), dtype=object)
    right = pd.Series(
        np.asarray(
            list(allowed) if isinstance(allowed, set) else allowed, dtype=object
        ),
        dtype=object,
    )
    return left.isin(right).to_numpy()


def _column(values: pd.Series) -> Any:
    """A Series' values for a new frame: text stays pyarrow (no object copy)."""
    return values.array if _is_text(values) else values.to_numpy()


def _is_text(values: Any) -> bool:
    return isinstance(values, pd.Series | pd.Index) and values.dtype == "str"


def join_values(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Return the sorted, comma-joined distinct ``values`` of each key.

    Vectorised for the few distinct values client names take.

    Examples
    --------
    >>> join_values(pd.Series(["u1", "u1", "u2"]), pd.Series(["okta", "entra", "okta"]))
    u1    entra,okta
    u2          okta
    dtype: str
    """
    frame = pd.DataFrame(
        {"k": _column(keys), "v": _column(values)}, index=range(len(keys))
    ).dropna()
    distinct = sorted(frame["v"].unique())
    if len(distinct) > 16:
        frame = frame.drop_duplicates().sort_values(["k", "v"])
        return frame.groupby("k")["v"].agg(",".join).rename_axis(None).astype("str")

    # Each key's set of values as a bit mask, then one string per distinct mask.
    keys_n, index = pd.factorize(frame["k"])
    values_n, uniques = pd.factorize(frame["v"])
    bit = np.zeros(len(uniques), dtype="int64")
    for n, value in enumerate(distinct):
        bit[list(uniques).index(value)] = 1 << n
    masks = np.zeros(len(index), dtype="int64")
    np.bitwise_or.at(masks, keys_n, bit[values_n])
    combos, which = np.unique(masks, return_inverse=True)
    labels = np.array(
        [
            ",".join(v for n, v in enumerate(distinct) if int(c) >> n & 1)
            for c in combos
        ],
        dtype=object,
    )
    joined = pd.Series(labels[which], index=pd.Index(index), dtype="str")
    return joined.sort_index()


def recognise_client(
    frame: pd.DataFrame, rules: Sequence[ClientRule] = DEFAULT_CLIENT_RULES
) -> pd.Series:
    """Return, per row, the client the first matching `ClientRule` names (or NaN).

    Examples
    --------
    >>> frame = pd.DataFrame({"external_id": ["00uAbCdEfGhIjKlMnOpQ", "x", None]})
    >>> recognise_client(frame).tolist()
    ['okta', nan, nan]
    """
    found = pd.Series(np.nan, index=frame.index, dtype="object")
    for rule in rules:
        if rule.column not in frame:
            continue
        hit = (
            frame[rule.column]
            .astype("str")
            .str.match(rule.pattern, case=False)
            .fillna(False)
            .astype(bool)
        )
        found = found.where(found.notna() | ~hit, rule.client)
    return found.astype("str")


# -- matching -------------------------------------------------------------------------


def _records(views: Sequence[ClientView]) -> pd.DataFrame:
    frames = [v.users.assign(client=v.client) for v in views]
    records = (
        pd.concat(frames, ignore_index=True)
        if frames
        else _conform_users(pd.DataFrame(columns=["key"])).assign(
            client=pd.Series(dtype="str")
        )
    )
    records["client"] = records["client"].astype("str")
    return records


def _unique_hits(hits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split (row, tenant_id) hits into rows with one tenant user and the rest."""
    hits = hits.drop_duplicates(["row", "tenant_id"])
    counts = hits.groupby("row")["tenant_id"].transform("size")
    return hits[counts == 1], hits[counts > 1]


def _exact(
    left: pd.DataFrame, right: pd.DataFrame, on: str, rows: pd.Index
) -> pd.DataFrame:
    left = left[left.index.isin(rows) & left[on].notna()]
    right = right[right[on].notna()]
    hits = left[[on]].reset_index(names="row").merge(right[[on, "tenant_id"]], on=on)
    return hits[["row", "tenant_id"]]


def _person_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The folded full name, folded family name and phone digits of each row."""
    return pd.DataFrame(
        {
            "name": _full_name(frame),
            "phone_n": normalise_phone(frame["phone"]),
            "family_n": _fold(frame["family_name"]),
        },
        index=frame.index,
    )


def _fuzzy(
    records: pd.DataFrame, tenant: pd.DataFrame, rows: pd.Index, threshold: float
) -> pd.DataFrame:
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    # Names and phones are folded only for the records still open and, once
    # there are some, for the tenant: the exact rules match nearly everything.
    left = records.loc[records.index.isin(rows)]
    if left.empty:
        return pd.DataFrame(columns=["row", "tenant_id", "score"])
    left = _person_keys(left).reset_index(names="row")
    right = tenant[["tenant_id"]].join(_person_keys(tenant))

    blocks = []
    for on in ("phone_n", "family_n"):
        block = left.dropna(subset=[on]).merge(
            right.dropna(subset=[on]), on=on, suffixes=("", "_t")
        )
        blocks.append(block.assign(**{f"{on}_t": block[on]}))
    pairs = pd.concat(blocks, ignore_index=True)
    if pairs.empty:
        return pd.DataFrame(columns=["row", "tenant_id", "score"])
    pairs = pairs.drop_duplicates(["row", "tenant_id"]).reset_index(drop=True)

    names = cpdist(
        pairs["name"].fillna("").tolist(),
        pairs["name_t"].fillna("").tolist(),
        scorer=fuzz.token_sort_ratio,
        workers=-1,
    )
    both = pairs["phone_n"].notna() & pairs["phone_n_t"].notna()
    same = both & (pairs["phone_n"] == pairs["phone_n_t"])
    phone = np.where(same, 100.0, np.where(both, 0.0, 50.0))
    pairs["score"] = np.round(0.6 * names + 0.4 * phone, 1)
    pairs = pairs[pairs["score"] >= threshold]

    best = pairs.groupby("row")["score"].transform("max")
    return pairs.loc[pairs["score"] == best, ["row", "tenant_id", "score"]]


def _tenant_keys(users: pd.DataFrame) -> pd.DataFrame:
    tenant = pd.DataFrame({"tenant_id": users["id"].astype("str")})
    for column in ("external_id", "user_name"):
        if column not in users:
            users = users.assign(**{column: pd.Series(np.nan, index=users.index)})
    tenant["ext_n"] = _fold(users["external_id"])
    tenant["user_n"] = _fold(users["user_name"])
    for column in ("given_name", "family_name", "formatted_name", "phone"):
        tenant[column] = users.get(column)
    return tenant


def _tenant_addresses(users: pd.DataFrame, emails: pd.DataFrame | None) -> pd.DataFrame:
    parts = [pd.DataFrame({"tenant_id": users["id"], "addr": users["user_name"]})]
    if "email" in users:
        parts.append(pd.DataFrame({"tenant_id": users["id"], "addr": users["email"]}))
    if emails is not None and len(emails):
        parts.append(
            pd.DataFrame({"tenant_id": emails["user_id"], "addr": emails["value"]})
        )
    addresses = pd.concat(parts, ignore_index=True)
    addresses["addr"] = _fold(addresses["addr"])
    return addresses.dropna().drop_duplicates()


def _record_addresses(
    records: pd.DataFrame, views: Sequence[ClientView], rows: Any = None
) -> pd.DataFrame:
    """Every folded userName and email of the records (of ``rows`` only, if given):
    ``row`` (the record's index label), ``addr``."""
    if rows is not None:
        records = records[records.index.isin(rows)]
    index = records.index.to_numpy()
    user_n = records["user_n"] if "user_n" in records else _fold(records["user_name"])
    parts = [
        pd.DataFrame({"row": index, "addr": user_n.array}),
        pd.DataFrame({"row": index, "addr": _fold(records["email"]).array}),
    ]
    clients = records["client"].to_numpy()
    keys = records["key"].array
    for view in views:
        if view.emails.empty:
            continue
        # The record of each email, per client: one hash lookup on the keys
        # instead of a (client, key) MultiIndex over every record.
        mine = clients == view.client
        found = pd.Index(keys[mine]).get_indexer(view.emails["key"])
        hit = found >= 0
        parts.append(
            pd.DataFrame(
                {
                    "row": index[mine][found[hit]],
                    "addr": _fold(view.emails["value"][hit]).array,
                }
            )
        )
    addresses = pd.concat(parts, ignore_index=True)
    addresses = addresses[addresses["addr"].notna().to_numpy()]
    addresses["row"] = addresses["row"].astype("int64")
    return addresses.drop_duplicates()


def match_users(
    users: pd.DataFrame,
    views: Sequence[ClientView],
    *,
    emails: pd.DataFrame | None = None,
    fuzzy_threshold: float = 90.0,
) -> pd.DataFrame:
    """Match every client record to a tenant user, by the rules of `MATCH_RULES`.

    Parameters
    ----------
    users : pandas.DataFrame
        Tenant users (`scimtools.users_frame` columns; ``id``, ``external_id``,
        ``user_name`` at least).
    views : sequence of ClientView
        The clients' views.
    emails : pandas.DataFrame, optional
        Every tenant email (`scimtools.emails_frame`), to match non-primary ones.
    fuzzy_threshold : float, default 90.0
        The least fuzzy score (0-100) that makes a match.

    Returns
    -------
    pandas.DataFrame
        One row per client record: ``client``, ``key``, ``tenant_id`` (null when
        unmatched), ``rule``, ``score``, ``status`` (``matched``, ``blocked``:
        its create failed with 409, ``ambiguous``, ``unmatched``) and
        ``candidates`` (tenant ids of an ambiguous record).
    """
    records = _records(views)
    records["ext_n"] = _fold(records["external_id"])
    records["user_n"] = _fold(records["user_name"])
    tenant = _tenant_keys(users)
    known = pd.Index(tenant["tenant_id"])

    result = pd.DataFrame(
        {
            "client": records["client"],
            "key": records["key"],
            "tenant_id": pd.Series(np.nan, index=records.index, dtype="str"),
            "rule": pd.Series(np.nan, index=records.index, dtype="str"),
            "score": np.nan,
            "status": "unmatched",
            "candidates": pd.Series(np.nan, index=records.index, dtype="str"),
        }
    )
    by_id = records["tenant_id"].notna() & isin(records["tenant_id"], known)
    result.loc[by_id, "tenant_id"] = records.loc[by_id, "tenant_id"]
    result.loc[by_id, ["rule", "status"]] = ["id", "matched"]
    result.loc[by_id, "score"] = MATCH_RULES["id"]
    blocked = ~by_id & (records["create_status"] == 409).fillna(False)
    result.loc[blocked, "status"] = "blocked"

    open_rows = records.index[~by_id & ~blocked]
    # Each step folds what it needs for the records still open when it runs.
    steps = (
        ("externalId", lambda rows: _exact(records, tenant, "ext_n", rows)),
        ("userName", lambda rows: _exact(records, tenant, "user_n", rows)),
        (
            "email",
            lambda rows: _record_addresses(records, views, rows).merge(
                _tenant_addresses(users, emails), on="addr"
            )[["row", "tenant_id"]],
        ),
        ("fuzzy", lambda rows: _fuzzy(records, tenant, rows, fuzzy_threshold)),
    )
    for rule, find in steps:
        if len(open_rows) == 0:
            break
        hits = find(open_rows)
        one, many = _unique_hits(hits)
        index = pd.Index(one["row"].astype("int64"))
        result.loc[index, "tenant_id"] = one["tenant_id"].to_numpy()
        result.loc[index, "rule"] = rule
        result.loc[index, "status"] = "matched"
        scores = one["score"].to_numpy() if rule == "fuzzy" else MATCH_RULES[rule]
        result.loc[index, "score"] = scores

        if len(many):
            grouped = many.groupby("row")["tenant_id"].agg(
                lambda s: ",".join(sorted(s))
            )
            result.loc[grouped.index, "status"] = "ambiguous"
            result.loc[grouped.index, "candidates"] = grouped.to_numpy()
        open_rows = open_rows.difference(index).difference(
            pd.Index(many["row"].unique())
        )

    logger.info(
        "Matched %s of %s client records",
        int((result["status"] == "matched").sum()),
        len(result),
    )
    return result.reset_index(drop=True)


def match_groups(groups: pd.DataFrame, views: Sequence[ClientView]) -> pd.DataFrame:
    """Match every client group to a tenant group: by id, externalId, displayName.

    Returns
    -------
    pandas.DataFrame
        ``client``, ``key``, ``display_name``, ``tenant_id``, ``rule``, ``status``
        (``matched``, ``blocked``: its create failed with 409, ``unmatched``).
    """
    frames = [v.groups.assign(client=v.client) for v in views]
    records = pd.concat(frames, ignore_index=True)
    tenant = pd.DataFrame(
        {
            "tenant_id": groups["id"].astype("str"),
            "ext_n": _fold(groups["external_id"]),
            "name_n": _fold(groups["display_name"]),
        }
    )
    records["ext_n"] = _fold(records["external_id"])
    records["name_n"] = _fold(records["display_name"])
    result = records[["client", "key", "display_name"]].copy()
    result["tenant_id"] = pd.Series(np.nan, index=records.index, dtype="str")
    result["rule"] = pd.Series(np.nan, index=records.index, dtype="str")
    result["status"] = "unmatched"

    by_id = records["tenant_id"].notna() & isin(
        records["tenant_id"], tenant["tenant_id"]
    )
    result.loc[by_id, "tenant_id"] = records.loc[by_id, "tenant_id"]
    result.loc[by_id, ["rule", "status"]] = ["id", "matched"]
    blocked = ~by_id & (records["create_status"] == 409).fillna(False)
    result.loc[blocked, "status"] = "blocked"

    open_rows = records.index[~by_id & ~blocked]
    for rule, column in (("externalId", "ext_n"), ("displayName", "name_n")):
        one, _ = _unique_hits(_exact(records, tenant, column, open_rows))
        index = pd.Index(one["row"].astype("int64"))
        result.loc[index, "tenant_id"] = one["tenant_id"].to_numpy()
        result.loc[index, ["rule", "status"]] = [rule, "matched"]
        open_rows = open_rows.difference(index)
    return result.reset_index(drop=True)


@dataclass
class Attribution:
    """Who provisioned what: client records matched to tenant users and groups.

    Attributes
    ----------
    users : pandas.DataFrame
        `match_users` output.
    groups : pandas.DataFrame
        `match_groups` output.
    members : pandas.DataFrame
        What each client believes a tenant group holds: ``client``,
        ``group_id``, ``user_id`` (tenant ids).
    claims : pandas.DataFrame
        Per tenant user: ``tenant_id``, ``clients`` (sorted, comma-joined),
        ``claims`` (how many clients).
    """

    users: pd.DataFrame
    groups: pd.DataFrame
    members: pd.DataFrame
    claims: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Count per client: records, matched by each rule, blocked, unmatched,
        users owned alone, users shared.

        Returns
        -------
        pandas.DataFrame
            Indexed by client, plus a row ``(none)`` counting unclaimed users.
        """
        users = self.users
        by_rule = (
            users[users["status"] == "matched"]
            .pivot_table(index="client", columns="rule", values="key", aggfunc="size")
            .reindex(columns=[r for r in MATCH_RULES], fill_value=0)
            .fillna(0)
            .astype("int64")
        )
        by_rule.columns = [f"by_{c}" for c in by_rule.columns]
        status = users.pivot_table(
            index="client", columns="status", values="key", aggfunc="size"
        ).reindex(columns=["blocked", "ambiguous", "unmatched"], fill_value=0)
        status = status.fillna(0).astype("int64")

        claimed = self.claims[self.claims["claims"] > 0]
        exploded = claimed.assign(client=claimed["clients"].str.split(",")).explode(
            "client"
        )
        owned = exploded[exploded["claims"] == 1].groupby("client").size()
        shared = exploded[exploded["claims"] > 1].groupby("client").size()
        summary = pd.concat(
            [users.groupby("client").size().rename("records"), by_rule, status],
            axis=1,
        )
        summary["owns_alone"] = owned.reindex(summary.index, fill_value=0)
        summary["shares"] = shared.reindex(summary.index, fill_value=0)
        orphans = int((self.claims["claims"] == 0).sum())
        summary.loc["(none)"] = 0
        summary.loc["(none)", "owns_alone"] = orphans
        return summary.fillna(0).astype("int64").sort_index()


def attribute_tenant(
    export: Export,
    views: Sequence[ClientView],
    *,
    fuzzy_threshold: float = 90.0,
) -> Attribution:
    """Attribute an exported tenant's users and groups to the clients' views.

    Parameters
    ----------
    export : Export
        `scimtools.export_tenant` output (or frames with the same columns).
    views : sequence of ClientView
        One per SCIM client, e.g. from `read_client_view`.
    fuzzy_threshold : float, default 90.0
        See `match_users`.

    Returns
    -------
    Attribution
    """
    if len({v.client for v in views}) != len(views):
        raise ValueError(
            f"client names must differ: {[v.client for v in views]}; pass client="
            " to read_client_view"
        )
    users = match_users(
        export.users, views, emails=export.emails, fuzzy_threshold=fuzzy_threshold
    )
    groups = match_groups(export.groups, views)

    user_ids = users.dropna(subset=["tenant_id"]).set_index(["client", "key"])[
        "tenant_id"
    ]
    group_ids = groups.dropna(subset=["tenant_id"]).set_index(["client", "key"])[
        "tenant_id"
    ]
    parts = []
    for view in views:
        members = view.members
        client = np.full(len(members), view.client)
        group = group_ids.reindex(
            pd.MultiIndex.from_arrays([client, members["group_key"]])
        )
        user = user_ids.reindex(
            pd.MultiIndex.from_arrays([client, members["user_key"]])
        )
        parts.append(
            pd.DataFrame(
                {
                    "client": client,
                    "group_id": group.to_numpy(),
                    "user_id": user.to_numpy(),
                }
            ).dropna()
        )
    members = pd.concat(parts, ignore_index=True).drop_duplicates()
    members = members.astype("str")

    matched = users[users["status"] == "matched"][["tenant_id", "client"]]
    matched = matched.drop_duplicates().sort_values(["tenant_id", "client"])
    joined = join_values(matched["tenant_id"], matched["client"])
    claims = pd.DataFrame({"tenant_id": export.users["id"].astype("str")})
    claims["clients"] = claims["tenant_id"].map(joined).astype("str")
    claims["claims"] = (
        claims["clients"].str.count(",").add(1).where(claims["clients"].notna(), 0)
    ).astype("int64")
    return Attribution(users, groups, members, claims)
