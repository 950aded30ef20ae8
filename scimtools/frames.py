"""SCIM resources as pandas DataFrames, and whole-tenant exports saved as Parquet.

`COLUMNS` is the one table that knows both spellings: each DataFrame column
(snake_case) and the SCIM attribute path it comes from (RFC 7643 §4.1, §4.3,
§4.2). Everything that reads or writes SCIM attributes by column goes through it.
Wide tables hold one row per resource and the primary email and phone number;
`emails_frame` and `phones_frame` keep every value.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scimtools.errors import NotFoundError

if TYPE_CHECKING:
    from scimtools.client import SCIMClient

__all__ = [
    "COLUMNS",
    "Column",
    "ENTERPRISE",
    "Export",
    "column_for",
    "emails_frame",
    "export_tenant",
    "groups_frame",
    "memberships_frame",
    "path_for",
    "phones_frame",
    "to_scim",
    "users_frame",
]

logger = logging.getLogger(__name__)

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


@dataclass(frozen=True)
class Column:
    """One DataFrame column and the SCIM attribute path it maps to.

    Attributes
    ----------
    name : str
        The snake_case column name.
    path : str
        The SCIM path; ``emails[primary].value`` means the value of the primary
        email; a schema URN prefix means an extension attribute.
    table : str
        ``"users"`` or ``"groups"``.
    kind : str
        ``"str"``, ``"bool"`` or ``"time"``.
    also : tuple of str
        Other paths read when ``path`` is absent (FusionAuth's library spells the
        manager id ``managerId``).
    writable : bool
        Whether `to_scim` writes it back.
    """

    name: str
    path: str
    table: str = "users"
    kind: str = "str"
    also: tuple[str, ...] = ()
    writable: bool = True


def _ent(attribute: str) -> str:
    return f"{ENTERPRISE}:{attribute}"


#: The one column <-> SCIM path table (users first, then groups).
COLUMNS: tuple[Column, ...] = (
    Column("id", "id", writable=False),
    Column("external_id", "externalId"),
    Column("user_name", "userName"),
    Column("active", "active", kind="bool"),
    Column("display_name", "displayName"),
    Column("given_name", "name.givenName"),
    Column("middle_name", "name.middleName"),
    Column("family_name", "name.familyName"),
    Column("formatted_name", "name.formatted"),
    Column("honorific_prefix", "name.honorificPrefix"),
    Column("honorific_suffix", "name.honorificSuffix"),
    Column("nick_name", "nickName"),
    Column("title", "title"),
    Column("user_type", "userType"),
    Column("preferred_language", "preferredLanguage"),
    Column("locale", "locale"),
    Column("timezone", "timezone"),
    Column("email", "emails[primary].value"),
    Column("email_type", "emails[primary].type"),
    Column("phone", "phoneNumbers[primary].value"),
    Column("phone_type", "phoneNumbers[primary].type"),
    Column("employee_number", _ent("employeeNumber")),
    Column("cost_center", _ent("costCenter")),
    Column("organization", _ent("organization")),
    Column("division", _ent("division")),
    Column("department", _ent("department")),
    Column("manager_id", _ent("manager.value"), also=(_ent("manager.managerId"),)),
    Column("manager_name", _ent("manager.displayName")),
    Column("resource_type", "meta.resourceType", writable=False),
    Column("created", "meta.created", kind="time", writable=False),
    Column("last_modified", "meta.lastModified", kind="time", writable=False),
    Column("location", "meta.location", writable=False),
    Column("id", "id", table="groups", writable=False),
    Column("external_id", "externalId", table="groups"),
    Column("display_name", "displayName", table="groups"),
    Column("resource_type", "meta.resourceType", table="groups", writable=False),
    Column("created", "meta.created", table="groups", kind="time", writable=False),
    Column(
        "last_modified",
        "meta.lastModified",
        table="groups",
        kind="time",
        writable=False,
    ),
    Column("location", "meta.location", table="groups", writable=False),
)

#: Columns of the long tables of emails and phone numbers, and of memberships.
VALUE_COLUMNS = ("user_id", "value", "type", "primary", "display")
MEMBERSHIP_COLUMNS = ("group_id", "user_id", "display", "ref", "type")


def _table(table: str) -> list[Column]:
    return [c for c in COLUMNS if c.table == table]


def path_for(column: str, *, table: str = "users") -> str:
    """Return the SCIM path of a DataFrame column.

    Examples
    --------
    >>> path_for("given_name")
    'name.givenName'
    >>> path_for("department")
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department'
    """
    for c in _table(table):
        if c.name == column:
            return c.path
    raise ValueError(
        f"no {table} column {column!r}; known: {[c.name for c in _table(table)]}"
    )


def column_for(path: str, *, table: str = "users") -> str:
    """Return the DataFrame column of a SCIM path.

    Examples
    --------
    >>> column_for("emails[primary].value"), column_for("meta.created")
    ('email', 'created')
    """
    for c in _table(table):
        if path in (c.path, *c.also):
            return c.name
    raise ValueError(f"no {table} column maps to SCIM path {path!r}")


def _split_path(path: str) -> tuple[str | None, list[str]]:
    if path.startswith("urn:"):
        urn, _, rest = path.rpartition(":")
        # "…:User:manager.value" -> urn "…:User", attribute path "manager.value"
        return urn, rest.split(".")
    return None, path.split(".")


def _multi(resource: Mapping[str, Any], attribute: str) -> list[dict[str, Any]]:
    values = resource.get(attribute)
    return (
        [v for v in values or [] if isinstance(v, dict)]
        if isinstance(values, list)
        else []
    )


def _primary(values: list[dict[str, Any]]) -> dict[str, Any] | None:
    for value in values:
        if value.get("primary") is True:
            return value
    return values[0] if values else None


def read_path(resource: Mapping[str, Any], path: str) -> Any:
    """Return the value at a SCIM path of `COLUMNS`, or None when absent.

    ``attr[primary].sub`` reads the primary value, or the first one when none is
    flagged primary (RFC 7643 §2.4 allows at most one).

    Examples
    --------
    >>> read_path({"name": {"givenName": "Ada"}}, "name.givenName")
    'Ada'
    >>> emails = {"emails": [{"value": "a@x"}, {"value": "b@x", "primary": True}]}
    >>> read_path(emails, "emails[primary].value")
    'b@x'
    """
    urn, parts = _split_path(path)
    node: Any = resource.get(urn) if urn else resource
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        if part.endswith("[primary]"):
            node = _primary(_multi(node, part[: -len("[primary]")]))
        else:
            node = node.get(part)
    return node


def _parse_times(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    return parsed.dt.as_unit("ms")


def _primary_of(node: Mapping[str, Any], attribute: str) -> dict[str, Any] | None:
    """Return ``_primary(_multi(node, attribute))`` without building the list."""
    values = node.get(attribute)
    if not isinstance(values, list):
        return None
    first = None
    for value in values:
        if isinstance(value, dict):
            if value.get("primary") is True:
                return value
            if first is None:
                first = value
    return first


class _Reader:
    """Read many SCIM paths of `COLUMNS` in one pass per resource.

    Gives what `read_path` gives for each path, but paths sharing a prefix
    (``meta``, ``name``, the enterprise URN, ``emails[primary]``) resolve it once
    per resource, and the attributes under one node are read together.

    Examples
    --------
    >>> reader = _Reader(["id", "name.givenName", "emails[primary].value"])
    >>> reader.columns([{"id": "u1", "name": {"givenName": "Ada"}}, {"id": "u2"}])
    {'id': ('u1', 'u2'), 'name.givenName': ('Ada', None), \
'emails[primary].value': (None, None)}
    """

    def __init__(self, paths: Iterable[str]) -> None:
        # Intermediate nodes as (parent, step, name), parents first; node 0 is
        # the resource, node i + 1 is self.nodes[i].
        self.nodes: list[tuple[int, str, str]] = []
        found: dict[tuple[int, str, str], int] = {}
        keys: dict[int, list[str]] = {}
        where: dict[str, tuple[int, int]] = {}
        for path in dict.fromkeys(paths):
            urn, parts = _split_path(path)
            steps = [("urn", urn)] if urn else []
            steps += [
                ("primary", part[: -len("[primary]")])
                if part.endswith("[primary]")
                else ("key", part)
                for part in parts[:-1]
            ]
            parent = 0
            for step, name in steps:
                node = (parent, step, name)
                if node not in found:
                    self.nodes.append(node)
                    found[node] = len(self.nodes)
                parent = found[node]
            names = keys.setdefault(parent, [])
            where[path] = (parent, len(names))
            names.append(parts[-1])
        # The attributes read under each node, in row order.
        self.leaves = [
            (node, tuple(names), (None,) * len(names)) for node, names in keys.items()
        ]
        starts, start = {}, 0
        for node, names, _ in self.leaves:
            starts[node] = start
            start += len(names)
        self.positions = {path: starts[node] + i for path, (node, i) in where.items()}

    def _row(self, resource: Mapping[str, Any]) -> list[Any]:
        # The hot loop. isinstance() against the Mapping ABC is slow, so plain
        # dicts (the usual case) are checked first; methods are bound once.
        resolved: list[Any] = [resource]
        resolve = resolved.append
        for parent, step, name in self.nodes:
            node = resolved[parent]
            if step == "urn":
                resolve(node.get(name))
            elif type(node) is not dict and not isinstance(node, Mapping):
                resolve(None)
            elif step == "key":
                resolve(node.get(name))
            else:
                resolve(_primary_of(node, name))
        row: list[Any] = []
        extend = row.extend
        for node, names, nones in self.leaves:
            found = resolved[node]
            if type(found) is dict or isinstance(found, Mapping):
                extend(map(found.get, names))
            else:
                extend(nones)
        return row

    def columns(
        self, resources: Iterable[Mapping[str, Any]]
    ) -> dict[str, tuple[Any, ...]]:
        """Return each path's values, one per resource, in the resources' order."""
        rows = [self._row(resource) for resource in resources]
        values = list(zip(*rows, strict=True)) if rows else []
        return {path: values[i] if rows else () for path, i in self.positions.items()}


def _typed(values: Iterable[Any], kind: str) -> pd.Series:
    series = pd.Series(list(values), dtype=object)
    if kind == "time":
        return _parse_times(series)
    if kind == "bool":
        return series.astype("boolean")
    return series.astype("str")


def _wide(resources: Iterable[Mapping[str, Any]], table: str) -> pd.DataFrame:
    columns = _table(table)
    reader = _Reader(path for c in columns for path in (c.path, *c.also))
    values = reader.columns(resources)
    data = {}
    for c in columns:
        column = values[c.path]
        for alt in c.also:
            column = tuple(
                a if v is None else v for v, a in zip(column, values[alt], strict=True)
            )
        data[c.name] = _typed(column, c.kind)
    return pd.DataFrame(data, columns=[c.name for c in columns])


def users_frame(resources: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return one row per User (or EnterpriseUser) with the columns of `COLUMNS`.

    Parameters
    ----------
    resources : iterable of dict
        SCIM User resources (RFC 7643 §4.1), enterprise extension included.

    Returns
    -------
    pandas.DataFrame
        ``email`` and ``phone`` hold the primary values (see `emails_frame` for
        all); text columns have pandas' ``str`` dtype (NaN when absent);
        ``created`` and ``last_modified`` are timezone-aware (UTC, millisecond
        unit), parsed with or without milliseconds; ``active`` is a nullable
        boolean.

    Examples
    --------
    >>> users = [{"id": "u1", "userName": "ada", "active": True,
    ...           "emails": [{"value": "ada@example.com", "primary": True}],
    ...           "meta": {"created": "2022-04-08T21:03:32Z"}}]
    >>> frame = users_frame(users)
    >>> frame.loc[0, ["user_name", "email"]].tolist(), bool(frame.loc[0, "active"])
    (['ada', 'ada@example.com'], True)
    >>> str(frame.loc[0, "created"])
    '2022-04-08 21:03:32+00:00'
    """
    return _wide(resources, "users")


def groups_frame(resources: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return one row per Group, with ``member_count``.

    Examples
    --------
    >>> groups_frame([{"id": "g1", "displayName": "Ops", "members": [{}, {}]}])[
    ...     ["display_name", "member_count"]
    ... ].values.tolist()
    [['Ops', 2]]
    """
    resources = list(resources)
    frame = _wide(resources, "groups")
    frame["member_count"] = pd.array(
        [len(_multi(r, "members")) for r in resources], dtype="Int64"
    )
    return frame


def _long(resources: Iterable[Mapping[str, Any]], attribute: str) -> pd.DataFrame:
    rows = [
        (
            user_id,
            value.get("value"),
            value.get("type"),
            value.get("primary") is True,
            value.get("display"),
        )
        for resource in resources
        for user_id in (resource.get("id"),)
        for value in _multi(resource, attribute)
    ]
    return _frame(rows, VALUE_COLUMNS, booleans=("primary",))


def _frame(
    rows: list[tuple[Any, ...]],
    names: tuple[str, ...],
    booleans: tuple[str, ...] = (),
) -> pd.DataFrame:
    values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pd.DataFrame(
        {
            name: _typed(column, "bool" if name in booleans else "str")
            for name, column in zip(names, values, strict=True)
        },
        columns=list(names),
    )


def emails_frame(resources: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return every email of every user: user_id, value, type, primary, display.

    Examples
    --------
    >>> users = [{"id": "u1", "emails": [{"value": "a@x", "type": "work"},
    ...                                  {"value": "b@x", "primary": True}]}]
    >>> emails_frame(users)[["value", "primary"]].values.tolist()
    [['a@x', False], ['b@x', True]]
    """
    return _long(resources, "emails")


def phones_frame(resources: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return every phone number of every user, like `emails_frame`."""
    return _long(resources, "phoneNumbers")


def memberships_frame(groups: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return one row per group member: group_id, user_id, display, ref, type.

    ``display`` is read from ``display`` or, as FusionAuth's examples spell it,
    ``displayName``.

    Examples
    --------
    >>> groups = [{"id": "g1", "members": [{"value": "u1", "$ref": "/Users/u1"}]}]
    >>> memberships_frame(groups)[["group_id", "user_id", "ref"]].values.tolist()
    [['g1', 'u1', '/Users/u1']]
    """
    rows = [
        (
            group_id,
            member.get("value"),
            member.get("display", member.get("displayName")),
            member.get("$ref"),
            member.get("type"),
        )
        for group in groups
        for group_id in (group.get("id"),)
        for member in _multi(group, "members")
    ]
    return _frame(rows, MEMBERSHIP_COLUMNS)


def to_scim(row: Mapping[str, Any], *, table: str = "users") -> dict[str, Any]:
    """Build a SCIM resource from a row's writable columns, through `COLUMNS`.

    Missing and null values are left out; the primary email and phone become
    one-element lists flagged ``primary`` (what FusionAuth's default lambda keeps).

    Examples
    --------
    >>> to_scim({"user_name": "ada", "given_name": "Ada", "email": "a@x",
    ...          "department": "R&D"})  # doctest: +NORMALIZE_WHITESPACE
    {'schemas': ['urn:ietf:params:scim:schemas:core:2.0:User',
                 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'],
     'userName': 'ada', 'name': {'givenName': 'Ada'},
     'emails': [{'value': 'a@x', 'primary': True}],
     'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User':
         {'department': 'R&D'}}
    """
    schema = USER_SCHEMA if table == "users" else GROUP_SCHEMA
    resource: dict[str, Any] = {"schemas": [schema]}

    for c in _table(table):
        if not c.writable or c.name not in row:
            continue
        value = row[c.name]
        if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
            continue
        if hasattr(value, "item"):
            value = value.item()
        urn, parts = _split_path(c.path)
        node = resource
        if urn:
            node = resource.setdefault(urn, {})
            if urn not in resource["schemas"]:
                resource["schemas"].append(urn)
        for part in parts[:-1]:
            if part.endswith("[primary]"):
                name = part[: -len("[primary]")]
                items = node.setdefault(name, [{}])
                node = items[0]
                node["primary"] = True
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value
    # Keep "primary" after "value" for readability.
    for attribute in ("emails", "phoneNumbers"):
        for item in resource.get(attribute, []):
            item["primary"] = item.pop("primary")
    return resource


# -- whole-tenant exports ---------------------------------------------------------

FRAMES = ("users", "enterprise_users", "emails", "phones", "groups", "memberships")
_META_KEY = b"scimtools.export"


@dataclass
class Export:
    """The DataFrames of one tenant export and the metadata of the run.

    Attributes
    ----------
    users, enterprise_users, groups : pandas.DataFrame
        Wide tables (`users_frame`, `groups_frame`).
    emails, phones, memberships : pandas.DataFrame
        Long tables.
    metadata : dict
        ``server``, ``exported_at`` (ISO 8601 UTC), ``counts``, and per endpoint
        the export report (``requests``, ``partitions``, ``duplicates``,
        ``problems``), plus ``skipped`` endpoints the server does not serve.
    """

    users: pd.DataFrame
    enterprise_users: pd.DataFrame
    emails: pd.DataFrame
    phones: pd.DataFrame
    groups: pd.DataFrame
    memberships: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write one Parquet file per frame into directory ``path``.

        The metadata travels in each file's schema metadata (and in
        ``metadata.json`` for people reading the directory).

        Returns
        -------
        pathlib.Path
            The directory.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(self.metadata, default=str, sort_keys=True)

        for name in FRAMES:
            table = pa.Table.from_pandas(getattr(self, name), preserve_index=False)
            schema_meta = dict(table.schema.metadata or {})
            schema_meta[_META_KEY] = meta.encode()
            pq.write_table(
                table.replace_schema_metadata(schema_meta),
                directory / f"{name}.parquet",
            )
        (directory / "metadata.json").write_text(meta + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, path: str | Path) -> Export:
        """Read an export written by `save`.

        Raises
        ------
        FileNotFoundError
            A frame's Parquet file is missing from ``path``.
        """
        directory = Path(path)
        frames: dict[str, pd.DataFrame] = {}
        metadata: dict[str, Any] = {}
        for name in FRAMES:
            file = directory / f"{name}.parquet"
            if not file.exists():
                raise FileNotFoundError(
                    f"{file} is missing; is {directory} a directory written by"
                    " Export.save()?"
                )
            table = pq.read_table(file)
            frames[name] = table.to_pandas()
            raw = (table.schema.metadata or {}).get(_META_KEY)
            if raw and not metadata:
                metadata = json.loads(raw)
        return cls(**frames, metadata=metadata)

    def counts(self) -> dict[str, int]:
        """Return the number of rows per frame."""
        return {name: len(getattr(self, name)) for name in FRAMES}


def export_tenant(
    client: SCIMClient,
    *,
    enterprise_users: bool = True,
    count: int | None = None,
    max_workers: int | None = None,
    progress: bool | None = None,
    clock: Any = None,
) -> Export:
    """Export Users, EnterpriseUsers, Groups and memberships of a tenant.

    Each collection goes through `scimtools.export_resources`, so it is complete
    past the window or an `IncompleteExportError` is raised. An endpoint the
    server does not serve (404; EnterpriseUsers on a non-FusionAuth server) is
    skipped and listed in ``metadata["skipped"]``.

    Parameters
    ----------
    client : SCIMClient
        The connection.
    enterprise_users : bool, default True
        Also export /EnterpriseUsers (FusionAuth's enterprise view of the users).
    count, max_workers, progress
        Passed to `export_resources`.
    clock : callable, optional
        Returns an aware datetime for ``exported_at``; for tests.

    Returns
    -------
    Export
    """
    from scimtools.paging import export_resources

    options: dict[str, Any] = {
        "count": count,
        "max_workers": max_workers,
        "progress": progress,
    }
    reports: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    resources: dict[str, list[dict[str, Any]]] = {}
    endpoints = ["Users", "EnterpriseUsers", "Groups"]
    if not enterprise_users:
        endpoints.remove("EnterpriseUsers")

    for endpoint in endpoints:
        try:
            result = export_resources(client, endpoint, **options)
        except NotFoundError as exc:
            if endpoint == "Users":
                raise
            logger.warning("%s is not served (%s); skipped", endpoint, exc.status)
            skipped[endpoint] = f"{exc.status}: {exc.detail}"
            resources[endpoint] = []
            continue
        resources[endpoint] = result.resources
        reports[endpoint] = result.summary()

    now = clock() if clock is not None else dt.datetime.now(dt.UTC)
    export = Export(
        users=users_frame(resources["Users"]),
        enterprise_users=users_frame(resources.get("EnterpriseUsers", [])),
        emails=emails_frame(resources["Users"]),
        phones=phones_frame(resources["Users"]),
        groups=groups_frame(resources["Groups"]),
        memberships=memberships_frame(resources["Groups"]),
    )
    export.metadata = {
        "server": client.base_url,
        "exported_at": now.isoformat(),
        "counts": export.counts(),
        "reports": reports,
        "skipped": skipped,
    }
    logger.info("Exported tenant: %s", export.metadata["counts"])
    return export
