"""Staged imports from a legacy directory: validate, import in stages, audit, resume.

A migration moves people from a legacy export (CSV, Parquet, JSON lines or a
DataFrame) into a tenant over SCIM. FusionAuth has no bulk endpoint
(``bulk.supported: false``), so an import is thousands of single requests, each
of which can fail, time out after saving, or collide with a user that exists.

1. `ImportMapping` declares, as data (a dict or a small YAML text), which source
   column goes to which SCIM attribute path and through which named transform
   (`TRANSFORMS`: ``lower``, ``strip``, ``e164``, ``split_name``...).
2. `validate_import` maps every row and checks it before anything is written:
   required attributes, email and phone syntax, duplicate keys inside the source
   (userName, email and externalId, without case), values the tenant's request
   lambda would drop (`scimtools.LambdaModel`), and collisions with users already
   in the tenant. Rows with problems are held back; they are never sent.
3. `start_import` records the valid rows and their stages (sizes, shares or
   ``"rest"``) in the `Journal`; `StagedImport.run_stage` matches each row of a
   stage to the tenant (by externalId, else userName), creates or updates the
   users through `scimtools.push.apply_plan` (every write journaled; a create
   whose answer was lost is looked up, not sent again), adds group memberships
   after their users, reads the users back and audits them against what the
   mapping model predicts. A gate stops the import when a stage's error or
   mismatch rate passes its threshold.
4. `resume_import` continues an import from the journal alone after a crash;
   `StagedImport.rollback_stage` deletes what a stage created and restores what
   it updated; `reconcile_import` lines the source up against the tenant.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from scimtools.client import SCIMClient
from scimtools.errors import (
    InputError,
    InputFileNotFoundError,
    NotFoundError,
    SCIMServerError,
    SCIMToolsError,
)
from scimtools.frames import COLUMNS, USER_SCHEMA, read_path
from scimtools.inputs import check_cells, read_csv, read_jsonl, read_parquet
from scimtools.journal import FINAL_STATES, Journal, JournalError
from scimtools.mapping import LambdaModel, compare_resources, normalise_phone
from scimtools.push import (
    _WRITE_ATTEMPTS,
    RunSummary,
    _transient,
    apply_plan,
    resume_run,
    rollback_run,
)

__all__ = [
    "TRANSFORMS",
    "ImportMapping",
    "ImportReport",
    "StageResult",
    "StagedImport",
    "StagedImportError",
    "read_source",
    "reconcile_import",
    "resume_import",
    "split_stages",
    "start_import",
    "validate_import",
]

logger = logging.getLogger(__name__)

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
_EMAIL = "emails[primary].value"
_PHONE = "phoneNumbers[primary].value"
_KEY_PATHS = {"userName": "user name", _EMAIL: "email", "externalId": "externalId"}
# Differences between a prediction and a read-back that are no mismatch.
_AUDIT_OK = ("kept", "changed_form", "added")


class StagedImportError(SCIMToolsError):
    """An import cannot start or continue as asked (see the message for why)."""


# -- transforms --------------------------------------------------------------------


class _Invalid(ValueError):
    """A transform could not read a value; the message names it."""


def _lower(value: str, **_: Any) -> str:
    return value.strip().lower()


def _strip(value: str, **_: Any) -> str:
    return value.strip()


def _e164(value: str, *, region: str = "US", **_: Any) -> str:
    phone = normalise_phone(value, region=region)
    if phone is None:
        raise _Invalid(f"{value!r} is not a phone number (read in region {region})")
    return phone


def _split_name(value: str, **_: Any) -> dict[str, str]:
    text = " ".join(value.split())
    if "," in text:
        family, _, given = (p.strip() for p in text.partition(","))
        parts = given.split()
    else:
        parts = text.split()
        family = parts.pop() if len(parts) > 1 else ""
    if not parts or not family:
        raise _Invalid(f"{value!r} is not a full name (given and family name)")
    name = {"givenName": parts[0], "familyName": family}
    if len(parts) > 1:
        name["middleName"] = " ".join(parts[1:])
    return name


def _boolean(value: str, **_: Any) -> bool:
    text = value.strip().lower()
    if text in ("true", "yes", "y", "1", "active", "enabled"):
        return True
    if text in ("false", "no", "n", "0", "inactive", "disabled"):
        return False
    raise _Invalid(f"{value!r} is not a yes/no value")


#: Named value transforms a mapping may use. Each takes the source text (and the
#: mapping's ``options``) and returns the value, or raises for a value it cannot
#: read. ``split_name`` returns ``{givenName, middleName, familyName}`` and maps
#: onto ``name``.
TRANSFORMS: dict[str, Callable[..., Any]] = {
    "lower": _lower,
    "strip": _strip,
    "e164": _e164,
    "split_name": _split_name,
    "boolean": _boolean,
}


# -- the mapping -------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    column: str
    path: str
    transform: str | None


@dataclass
class ImportMapping:
    """Which source column becomes which SCIM attribute, and how.

    Parameters
    ----------
    fields : mapping
        ``{column: path}`` or ``{column: {"path": ..., "transform": ...}}``. A
        path is a SCIM path as in `scimtools.COLUMNS` (``userName``,
        ``name.givenName``, ``emails[primary].value``, an enterprise URN path)
        or one of its column names (``email``, ``department``). A
        ``split_name`` transform maps onto ``name``.
    required : list of str
        Paths every row must have after mapping; default ``userName``.
    groups : mapping, optional
        ``{"column": ..., "separator": ";"}``: group displayNames per row.
    options : mapping, optional
        Passed to the transforms (``region`` for ``e164``, default ``"US"``).

    Examples
    --------
    >>> mapping = ImportMapping.from_yaml('''
    ... fields:
    ...   login: userName
    ...   mail: {path: email, transform: lower}
    ...   name: {path: name, transform: split_name}
    ... required: [userName, email]
    ... ''')
    >>> payload, groups, problems = mapping.map_row(
    ...     {"login": "ada", "mail": "Ada@Example.COM", "name": "Lovelace, Ada"})
    >>> payload["emails"], payload["name"], problems
    ([{'primary': True, 'value': 'ada@example.com'}], \
{'givenName': 'Ada', 'familyName': 'Lovelace'}, [])
    """

    fields: Mapping[str, Any]
    required: Sequence[str] = ("userName",)
    groups: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parsed = []
        for column, spec in self.fields.items():
            if isinstance(spec, str):
                spec = {"path": spec}
            if not isinstance(spec, Mapping) or not spec.get("path"):
                raise ValueError(
                    f"mapping of column {column!r} needs a path, e.g."
                    " {'path': 'userName'}; got {spec!r}"
                )
            transform = spec.get("transform")
            if transform is not None and transform not in TRANSFORMS:
                raise ValueError(
                    f"unknown transform {transform!r} for column {column!r}; use one"
                    f" of {', '.join(sorted(TRANSFORMS))}"
                )
            parsed.append(_Field(str(column), _scim_path(spec["path"]), transform))
        self._fields = parsed
        self.required = [_scim_path(p) for p in self.required]
        if self.groups is not None and "column" not in self.groups:
            raise ValueError("groups needs a column: {'column': 'groups'}")

    @classmethod
    def from_yaml(cls, text: str | Path) -> ImportMapping:
        """Read a mapping from YAML text or a ``.yaml`` file (needs pyyaml)."""
        try:
            import yaml
        except ModuleNotFoundError as exc:  # pragma: no cover - dev extra
            raise StagedImportError(
                "reading a YAML mapping needs pyyaml (pip install pyyaml); or pass"
                " the mapping as a dict to ImportMapping.from_dict"
            ) from exc
        if isinstance(text, Path) or (
            isinstance(text, str) and "\n" not in text and text.endswith(".yaml")
        ):
            text = Path(text).read_text(encoding="utf-8")
        return cls.from_dict(yaml.safe_load(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportMapping:
        """Build a mapping from ``{"fields": ..., "required": ..., "groups": ...}``."""
        unknown = set(data) - {"fields", "required", "groups", "options"}
        if unknown or "fields" not in data:
            raise ValueError(
                f"a mapping has the keys fields, required, groups and options;"
                f" got {sorted(data)}"
            )
        return cls(
            fields=data["fields"],
            required=tuple(data.get("required") or ("userName",)),
            groups=data.get("groups"),
            options=data.get("options") or {},
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the mapping as plain data (for the journal)."""
        return {
            "fields": {
                f.column: {"path": f.path, "transform": f.transform}
                for f in self._fields
            },
            "required": list(self.required),
            "groups": dict(self.groups) if self.groups else None,
            "options": dict(self.options),
        }

    @property
    def columns(self) -> list[str]:
        """Return the source columns the mapping reads."""
        extra = [self.groups["column"]] if self.groups else []
        return [f.column for f in self._fields] + extra

    def map_row(
        self, row: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[str], list[tuple[str, str, Any, str]]]:
        """Map one source row to a SCIM payload.

        Returns
        -------
        tuple
            The payload, the row's group displayNames, and its problems as
            ``(column, path, value, problem)``.
        """
        payload: dict[str, Any] = {"schemas": [USER_SCHEMA]}
        problems: list[tuple[str, str, Any, str]] = []

        for f in self._fields:
            raw = _text(row.get(f.column))
            if raw is None:
                continue
            try:
                value = (
                    TRANSFORMS[f.transform](raw, **self.options) if f.transform else raw
                )
            except _Invalid as exc:
                problems.append((f.column, f.path, raw, str(exc)))
                continue
            if isinstance(value, dict):
                for key, sub in value.items():
                    set_path(payload, f"{f.path}.{key}", sub)
            else:
                set_path(payload, f.path, value)

        for path in self.required:
            if _text(read_path(payload, path)) is None:
                column = next((f.column for f in self._fields if f.path == path), "")
                if not column:
                    column = next(
                        (
                            f.column
                            for f in self._fields
                            if path.startswith(f.path + ".")
                        ),
                        "",
                    )
                problems.append((column, path, None, f"{path} is required"))

        groups: list[str] = []
        if self.groups:
            cell = _text(row.get(self.groups["column"]))
            separator = self.groups.get("separator", ";")
            if cell:
                for name in cell.split(separator):
                    name = name.strip()
                    if name and name.lower() not in {g.lower() for g in groups}:
                        groups.append(name)
        return payload, groups, problems


def _scim_path(path: str) -> str:
    if path in ("name",) or "." in path or "[" in path or path.startswith("urn:"):
        return path
    for c in COLUMNS:
        if c.table == "users" and c.name == path and c.writable:
            return c.path
    return path


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def set_path(resource: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set the value at a SCIM path of `scimtools.COLUMNS`, in place.

    ``attr[primary].sub`` sets the primary value, creating it flagged
    ``primary: true`` (FusionAuth keeps only primary emails and phones); an
    enterprise URN path adds the URN to ``schemas``.

    Examples
    --------
    >>> set_path({}, "emails[primary].value", "a@x")
    {'emails': [{'primary': True, 'value': 'a@x'}]}
    >>> urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    >>> set_path({"schemas": []}, urn + ":department", "IT")
    ... # doctest: +NORMALIZE_WHITESPACE
    {'schemas': ['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'],
     'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User':
     {'department': 'IT'}}
    """
    node: dict[str, Any] = resource
    if path.startswith("urn:"):
        urn, _, rest = path.rpartition(":")
        schemas = resource.setdefault("schemas", [USER_SCHEMA])
        if urn not in schemas:
            schemas.append(urn)
        node = resource.setdefault(urn, {})
        parts = rest.split(".")
    else:
        parts = path.split(".")
    for part in parts[:-1]:
        if part.endswith("[primary]"):
            items = node.setdefault(part[: -len("[primary]")], [])
            target = next((i for i in items if i.get("primary") is True), None)
            if target is None:
                target = {"primary": True}
                items.append(target)
            node = target
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value
    return resource


# -- sources -----------------------------------------------------------------------


def read_source(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a legacy export as text cells: CSV, Parquet, JSON lines or a DataFrame.

    Every cell is read as text (``""`` for empty) so that leading zeros and
    phone numbers survive; the index becomes ``row``, counted from 1 as a
    spreadsheet shows data rows.

    Examples
    --------
    >>> frame = read_source(pd.DataFrame({"login": ["ada", None]}))
    >>> frame.index.name, frame["login"].tolist()
    ('row', ['ada', ''])
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        path = Path(source)
        if not path.is_file():
            raise InputFileNotFoundError(f"source {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            frame = read_parquet(path, "source")
        elif suffix in (".jsonl", ".ndjson"):
            frame = pd.DataFrame(read_jsonl(path, "source"))
        elif suffix in (".csv", ".txt"):
            frame = read_csv(path, "source")
        else:
            raise ValueError(
                f"cannot read {path.name}: use a .csv, .parquet or .jsonl file, or"
                " pass a DataFrame"
            )
    frame = frame.astype(object).map(lambda v: _text(v) or "")
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    if not isinstance(source, pd.DataFrame):
        check_cells(frame, source, "source")
    return frame


# -- validation --------------------------------------------------------------------


@dataclass
class ImportReport:
    """The validated source: every row, its payload and its problems.

    Attributes
    ----------
    rows : pandas.DataFrame
        One row per source row (index ``row``): ``external_id``, ``user_name``,
        ``email``, ``groups``, ``valid``, ``problems`` (how many),
        ``match`` (``externalId``, ``userName`` or ``new``) and ``tenant_id``.
    problems : pandas.DataFrame
        One row per problem: ``row``, ``user_name``, ``column``, ``path``,
        ``value``, ``problem``.
    payloads, predicted : dict of int to dict
        The SCIM payload of each row, and what the tenant's lambdas would keep
        of it (valid rows only for ``predicted``).
    groups : dict of int to list of str
        Group displayNames per row.
    mapping : ImportMapping
    """

    rows: pd.DataFrame
    problems: pd.DataFrame
    payloads: dict[int, dict[str, Any]]
    predicted: dict[int, dict[str, Any]]
    groups: dict[int, list[str]]
    mapping: ImportMapping

    @property
    def valid_rows(self) -> list[int]:
        """Return the rows without problems, in source order."""
        return [int(r) for r in self.rows.index[self.rows["valid"]]]

    @property
    def invalid_rows(self) -> list[int]:
        """Return the rows held back, in source order."""
        return [int(r) for r in self.rows.index[~self.rows["valid"]]]

    def summary(self) -> pd.DataFrame:
        """Return how many rows have each kind of problem (a row counts once)."""
        kinds = self.problems.assign(kind=self.problems["problem"].map(_problem_kind))
        counts = kinds.drop_duplicates(["row", "kind"])["kind"].value_counts()
        frame = counts.rename_axis("problem").reset_index(name="rows")
        return frame.sort_values(["rows", "problem"], ascending=[False, True])[
            ["problem", "rows"]
        ].reset_index(drop=True)

    def __str__(self) -> str:
        return (
            f"{len(self.rows):,} rows: {len(self.valid_rows):,} valid,"
            f" {len(self.invalid_rows):,} held back with {len(self.problems):,}"
            " problems"
        )


def _problem_kind(text: str) -> str:
    for marker, kind in (
        ("is required", "required attribute missing"),
        ("not a valid email", "email syntax"),
        ("not a phone number", "phone syntax"),
        ("not a full name", "name cannot be split"),
        ("duplicate", "duplicate in the source"),
        ("lambda drops", "dropped by the tenant's lambda"),
        ("lambda changes", "changed by the tenant's lambda"),
        ("belongs to tenant user", "collides with a tenant user"),
    ):
        if marker in text:
            return kind
    return "other"


def validate_import(
    source: str | Path | pd.DataFrame,
    mapping: ImportMapping | Mapping[str, Any] | str,
    *,
    model: LambdaModel | None = None,
    client: SCIMClient | None = None,
    tenant_users: Iterable[Mapping[str, Any]] | None = None,
) -> ImportReport:
    """Map and check every row of a source before anything is written.

    Checks, each a row of ``problems``: a transform that cannot read its value;
    a required attribute missing; an email that is not valid
    (``email_validator``, without a DNS lookup); a phone number that does not
    parse; a userName, email or externalId that an earlier row has too (without
    case: RFC 7643 makes userName and email ``caseExact: false``); a value the
    tenant's request lambda would drop or change (``model``); and a collision
    with a tenant user: the row's email or userName belongs to a user other than
    the one the row matches (by externalId, else userName). FusionAuth rejects
    such a create or update with 409.

    Parameters
    ----------
    source : path or DataFrame
        See `read_source`.
    mapping : ImportMapping, dict or YAML text
        The columns' SCIM paths and transforms.
    model : LambdaModel, optional
        The tenant's user lambdas; default FusionAuth's defaults
        (`scimtools.load_lambdas`).
    client : SCIMClient, optional
        Read the tenant's users from it (one export) for the collision check.
    tenant_users : iterable of dict, optional
        The tenant's users, instead of ``client``. With neither, collisions are
        not checked.

    Returns
    -------
    ImportReport
    """
    frame = read_source(source)
    mapping = _as_mapping(mapping)
    missing = [c for c in mapping.columns if c not in frame.columns]
    if missing:
        name = "the source" if isinstance(source, pd.DataFrame) else str(source)
        raise InputError(
            f"{name} has no column {missing}; its columns are"
            f" {list(frame.columns)}: fix the mapping's column names"
        )
    payloads: dict[int, dict[str, Any]] = {}
    groups: dict[int, list[str]] = {}
    problems: list[dict[str, Any]] = []

    def add(row: int, column: str, path: str, value: Any, text: str) -> None:
        user = payloads.get(row, {}).get("userName")
        problems.append(
            {
                "row": row,
                "user_name": user,
                "column": column,
                "path": path,
                "value": value,
                "problem": text,
            }
        )

    for row, record in zip(frame.index, frame.to_dict("records"), strict=True):
        payload, names, found = mapping.map_row(record)
        payloads[int(row)] = payload
        groups[int(row)] = names
        for column, path, value, text in found:
            add(int(row), column, path, value, text)

    columns = {f.path: f.column for f in mapping._fields}
    _check_syntax(payloads, columns, add)
    _check_duplicates(payloads, columns, add)
    predicted = _check_lambda(payloads, model, add)

    if client is not None and tenant_users is None:
        tenant_users = client.export("Users").resources
    matches = _check_tenant(payloads, tenant_users, columns, add)

    table = pd.DataFrame(
        problems, columns=["row", "user_name", "column", "path", "value", "problem"]
    )
    table = table.drop_duplicates(["row", "path", "problem"])
    table = table.sort_values(["row", "path"], kind="stable").reset_index(drop=True)
    counts = table["row"].value_counts()
    rows = pd.DataFrame(
        {
            "external_id": [p.get("externalId") for p in payloads.values()],
            "user_name": [p.get("userName") for p in payloads.values()],
            "email": [read_path(p, _EMAIL) for p in payloads.values()],
            "groups": [";".join(groups[r]) for r in payloads],
            "problems": [int(counts.get(r, 0)) for r in payloads],
            "match": [matches.get(r, (None, None))[0] or "new" for r in payloads],
            "tenant_id": [matches.get(r, (None, None))[1] for r in payloads],
        },
        index=pd.Index(list(payloads), name="row"),
    )
    rows.insert(4, "valid", rows["problems"] == 0)
    valid = set(rows.index[rows["valid"]])
    report = ImportReport(
        rows=rows,
        problems=table,
        payloads=payloads,
        predicted={r: p for r, p in predicted.items() if r in valid},
        groups=groups,
        mapping=mapping,
    )
    logger.info(
        "Validated %d rows: %d valid, %d problems",
        len(rows),
        len(valid),
        len(table),
    )
    return report


def _as_mapping(mapping: ImportMapping | Mapping[str, Any] | str) -> ImportMapping:
    if isinstance(mapping, ImportMapping):
        return mapping
    if isinstance(mapping, str | Path):
        return ImportMapping.from_yaml(mapping)
    return ImportMapping.from_dict(mapping)


def _check_syntax(
    payloads: dict[int, dict[str, Any]], columns: dict[str, str], add: Callable
) -> None:
    from email_validator import EmailNotValidError, validate_email

    for row, payload in payloads.items():
        email = read_path(payload, _EMAIL)
        if isinstance(email, str):
            try:
                validate_email(email, check_deliverability=False)
            except EmailNotValidError as exc:
                add(
                    row,
                    columns.get(_EMAIL, ""),
                    _EMAIL,
                    email,
                    f"{email!r} is not a valid email: {exc}",
                )
        phone = read_path(payload, _PHONE)
        if isinstance(phone, str) and normalise_phone(phone) is None:
            add(
                row,
                columns.get(_PHONE, ""),
                _PHONE,
                phone,
                f"{phone!r} is not a phone number",
            )


def _check_duplicates(
    payloads: dict[int, dict[str, Any]], columns: dict[str, str], add: Callable
) -> None:
    for path, label in _KEY_PATHS.items():
        first: dict[str, int] = {}
        for row, payload in payloads.items():
            value = read_path(payload, path)
            if not isinstance(value, str) or not value:
                continue
            key = value.casefold()
            if key in first:
                add(
                    row,
                    columns.get(path, ""),
                    path,
                    value,
                    f"duplicate {label}: row {first[key]} has {value!r} too"
                    " (compared without case); the first row is kept",
                )
            else:
                first[key] = row


def _check_lambda(
    payloads: dict[int, dict[str, Any]], model: LambdaModel | None, add: Callable
) -> dict[int, dict[str, Any]]:
    own = model is None
    if model is None:
        from scimtools.mapping import load_lambdas

        model = load_lambdas()
    try:
        rows = list(payloads)
        predicted = model.predict([payloads[r] for r in rows])
    finally:
        if own:
            model.close()
    out: dict[int, dict[str, Any]] = {}

    for row, stored in zip(rows, predicted, strict=True):
        stored = {k: v for k, v in stored.items() if k not in ("id", "meta")}
        out[row] = stored
        for diff in compare_resources(payloads[row], stored, unchanged=False):
            if diff.status in ("missing", "changed"):
                verb = "drops" if diff.status == "missing" else "changes"
                add(
                    row,
                    "",
                    diff.path,
                    diff.sent,
                    f"the tenant's request lambda {verb} {diff.path}"
                    f" (sent {diff.sent!r}, kept {diff.other!r})",
                )
    return out


def _check_tenant(
    payloads: dict[int, dict[str, Any]],
    users: Iterable[Mapping[str, Any]] | None,
    columns: dict[str, str],
    add: Callable,
) -> dict[int, tuple[str | None, str | None]]:
    if users is None:
        return {}
    index = _TenantIndex(users)
    matches: dict[int, tuple[str | None, str | None]] = {}

    for row, payload in payloads.items():
        how, user = index.match(payload)
        matched = user.get("id") if user else None
        matches[row] = (how, matched)
        for path in ("userName", _EMAIL):
            value = read_path(payload, path)
            owner = index.owner(path, value)
            if owner is None or owner.get("id") == matched:
                continue
            add(
                row,
                columns.get(path, ""),
                path,
                value,
                f"{_KEY_PATHS[path]} {value!r} belongs to tenant user"
                f" {owner.get('userName')!r} ({owner.get('id')}), not the user"
                " this row matches; map the row to that user (its externalId or"
                " userName) or change the value",
            )
    return matches


class _TenantIndex:
    """The tenant's users by externalId, userName and email (without case)."""

    def __init__(self, users: Iterable[Mapping[str, Any]]) -> None:
        self.by: dict[str, dict[str, Mapping[str, Any]]] = {
            "externalId": {},
            "userName": {},
            _EMAIL: {},
        }
        for user in users:
            for path in self.by:
                value = read_path(user, path)
                if isinstance(value, str) and value:
                    self.by[path].setdefault(value.casefold(), user)

    def owner(self, path: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, str) or not value:
            return None
        return self.by[path].get(value.casefold())

    def match(self, payload: Mapping[str, Any]) -> tuple[str | None, Any]:
        for path in ("externalId", "userName"):
            user = self.owner(path, payload.get(path))
            if user is not None:
                return path, user
        return None, None


# -- stages ------------------------------------------------------------------------


def split_stages(total: int, stages: Sequence[int | float | str]) -> list[int]:
    """Return the number of rows in each stage.

    A stage is a count (``50``), a share of all rows (``"10%"`` or ``0.1``,
    rounded up) or ``"rest"`` (what is left; only last). Stages that would hold
    no row are dropped; rows left over after the last stage form one more.

    Examples
    --------
    >>> split_stages(3000, [50, "10%", "rest"])
    [50, 300, 2650]
    >>> split_stages(40, [50, "rest"])
    [40]
    """
    sizes: list[int] = []
    left = total

    for position, stage in enumerate(stages):
        if isinstance(stage, str) and stage.strip().lower() == "rest":
            if position != len(stages) - 1:
                raise ValueError(f"'rest' must be the last stage, not {position + 1}")
            size = left
        elif isinstance(stage, str) and stage.strip().endswith("%"):
            size = math.ceil(total * float(stage.strip()[:-1]) / 100)
        elif isinstance(stage, float) and 0 < stage < 1:
            size = math.ceil(total * stage)
        elif isinstance(stage, int | float) and stage >= 1 and stage == int(stage):
            size = int(stage)
        else:
            raise ValueError(
                f"stage {stage!r} is not a count (50), a share ('10%', 0.1) or 'rest'"
            )
        size = min(size, left)
        if size:
            sizes.append(size)
        left -= size
    if left:
        sizes.append(left)
    return sizes


# -- the staged import -------------------------------------------------------------


@dataclass
class StageResult:
    """What one stage did and whether it passed the gate.

    Attributes
    ----------
    stage : int
        Counted from 1.
    rows : int
        Source rows in the stage.
    counts : dict
        ``created``, ``updated``, ``unchanged``, ``skipped`` (existing users left
        alone), ``failed`` (refused or stale writes) and ``memberships`` added.
    audit : pandas.DataFrame
        The read-back: one row per difference between what the mapping model
        predicts and what the tenant holds (``row``, ``user_name``, ``path``,
        ``expected``, ``found``, ``status``).
    error_rate, mismatch_rate : float
        Failed writes over rows; users that differ over users read back.
    passed : bool
        Whether both rates are within the thresholds.
    reason : str
        Why the gate stopped the import, or ``""``.
    """

    stage: int
    rows: int
    counts: dict[str, int]
    audit: pd.DataFrame
    error_rate: float
    mismatch_rate: float
    passed: bool
    reason: str = ""
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __str__(self) -> str:
        c = self.counts
        gate = "passed" if self.passed else f"STOPPED ({self.reason})"
        return (
            f"stage {self.stage}: {self.rows} rows, {c['created']} created,"
            f" {c['updated']} updated, {c['unchanged']} unchanged,"
            f" {c['skipped']} skipped, {c['failed']} failed,"
            f" {c['memberships']} memberships; error rate {self.error_rate:.1%},"
            f" mismatch rate {self.mismatch_rate:.1%}; gate {gate}"
        )


class StagedImport:
    """An import recorded in a journal, run one stage at a time.

    Build it with `start_import` or `resume_import`. The journal holds one run
    of kind ``"import"`` (id ``import_id``) whose plan is the staged rows and
    whose operations are the stages' gate results, and for each stage the runs
    ``<import_id>.s<k>.users`` (user creates and updates, group creates) and
    ``<import_id>.s<k>.members`` (memberships) made by `scimtools.push`.
    """

    def __init__(
        self,
        client: SCIMClient,
        journal: Journal,
        import_id: str,
        rows: list[dict[str, Any]],
        settings: dict[str, Any],
    ) -> None:
        self.client = client
        self.journal = journal
        self.import_id = import_id
        self.rows = rows
        self.settings = settings
        self.stages = sorted({r["stage"] for r in rows})

    def __repr__(self) -> str:
        return (
            f"StagedImport({self.import_id!r}, {len(self.rows)} rows,"
            f" {len(self.stages)} stages)"
        )

    # ---- state

    def _run_id(self, stage: int, part: str) -> str:
        return f"{self.import_id}.s{stage}.{part}"

    def _gate(self, stage: int) -> dict[str, Any] | None:
        return self.journal.operation(self.import_id, f"stage-{stage}")

    def stage_rows(self, stage: int) -> list[dict[str, Any]]:
        """Return the stored rows of a stage (row, payload, predicted, groups)."""
        return [r for r in self.rows if r["stage"] == stage]

    @property
    def next_stage(self) -> int | None:
        """Return the first stage not yet through its gate, or None."""
        for stage in self.stages:
            gate = self._gate(stage)
            if gate is None or gate["state"] not in FINAL_STATES:
                return stage
        return None

    @property
    def stopped(self) -> bool:
        """Whether a stage's gate stopped the import."""
        return any((self._gate(s) or {}).get("state") == "failed" for s in self.stages)

    def status(self) -> pd.DataFrame:
        """Return one row per stage: rows, gate outcome, rates and counts."""
        records = []
        for stage in self.stages:
            gate = self._gate(stage)
            result = (gate or {}).get("response") or {}
            rolled = self.journal.operation(self.import_id, f"rollback-{stage}")
            state = "pending"
            if gate is not None:
                state = {"applied": "passed", "failed": "stopped"}.get(
                    gate["state"], gate["state"]
                )
            if rolled is not None and rolled["state"] == "applied":
                state = "rolled back"
            records.append(
                {
                    "stage": stage,
                    "rows": len(self.stage_rows(stage)),
                    "state": state,
                    **{k: result.get("counts", {}).get(k) for k in _COUNT_NAMES},
                    "error_rate": result.get("error_rate"),
                    "mismatch_rate": result.get("mismatch_rate"),
                }
            )
        return pd.DataFrame(records)

    # ---- running

    def run(self) -> list[StageResult]:
        """Run the remaining stages until the last one or a gate that stops.

        Returns
        -------
        list of StageResult
            The stages run by this call.
        """
        results = []
        while not self.stopped and self.next_stage is not None:
            result = self.run_stage()
            results.append(result)
            if not result.passed:
                break
        if not self.stopped and self.next_stage is None:
            self.journal.finish_run(self.import_id, "finished")
        return results

    def run_stage(self, stage: int | None = None) -> StageResult:
        """Run one stage (default the next): write, add members, audit, gate.

        A stage interrupted earlier continues from its journaled runs: nothing
        finished is sent again and a create whose answer was lost is looked up
        first.

        Raises
        ------
        StagedImportError
            A gate has stopped the import, or the stage ran already.
        """
        if stage is None:
            stage = self.next_stage
            if stage is None:
                raise StagedImportError(
                    f"import {self.import_id!r} has run all its stages; see status()"
                )
        if self.stopped:
            raise StagedImportError(
                f"import {self.import_id!r} was stopped by a stage's gate; roll the"
                " stage back or start a new import with other thresholds"
            )
        gate = self._gate(stage)
        if gate is not None and gate["state"] in FINAL_STATES:
            raise StagedImportError(f"stage {stage} of {self.import_id!r} ran already")

        rows = self.stage_rows(stage)
        users = self._write_users(stage, rows)
        members = self._write_members(stage, rows, users)
        result = self._audit(stage, rows, users, members)
        self.journal.record_answer(
            self.import_id,
            f"stage-{stage}",
            "applied" if result.passed else "failed",
            op="stage",
            resource_type="Import",
            reason=result.reason or None,
            response={
                "counts": result.counts,
                "error_rate": result.error_rate,
                "mismatch_rate": result.mismatch_rate,
            },
        )
        logger.info("Import %s %s", self.import_id, result)
        return result

    def _apply(
        self, run_id: str, build: Callable[[], list[dict[str, Any]]], what: str
    ) -> RunSummary | None:
        options = {
            "concurrency": self.settings["concurrency"],
            "rate_limit": self.settings["rate_limit"],
            "lookup_wait": self.settings["lookup_wait"],
        }
        existing = self.journal.run(run_id, missing_ok=True)
        if existing is not None:
            with self._progress(run_id, len(existing["plan"] or []), what):
                return resume_run(self.client, self.journal, run_id, **options)
        plan = build()
        if not plan:
            return None
        with self._progress(run_id, len(plan), what):
            return apply_plan(
                self.client, pd.DataFrame(plan), self.journal, run_id=run_id, **options
            )

    def _progress(self, run_id: str, total: int, what: str) -> _Progress:
        return _Progress(self.journal, run_id, total, what, self.settings["progress"])

    def _write_users(self, stage: int, rows: list[dict[str, Any]]) -> RunSummary | None:
        def build() -> list[dict[str, Any]]:
            tenant = _TenantIndex(self.client.export("Users", progress=False).resources)
            plan = []
            for row in rows:
                how, user = tenant.match(row["payload"])
                op_id = f"row-{row['row']}"
                source = f"{self.import_id} row {row['row']}"
                if user is None:
                    plan.append(
                        {
                            "op_id": op_id,
                            "op": "create",
                            "resource_type": "User",
                            "value": row["payload"],
                            "source": source,
                            "reason": "not in the tenant",
                        }
                    )
                elif self.settings["on_existing"] == "update":
                    plan.append(
                        {
                            "op_id": op_id,
                            "op": "replace",
                            "resource_type": "User",
                            "resource_id": user["id"],
                            "expected_modified": (user.get("meta") or {}).get(
                                "lastModified"
                            ),
                            "value": merge_user(user, row["predicted"]),
                            "source": source,
                            "reason": f"matched by {how}",
                        }
                    )
            plan.extend(self._group_creates(rows))
            return plan

        return self._apply(self._run_id(stage, "users"), build, f"stage {stage} users")

    def _group_creates(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = {g.casefold(): g for row in rows for g in row["groups"]}
        if not names:
            return []
        have = self._group_ids()
        return [
            {
                "op_id": f"group-{_slug(name)}",
                "op": "create",
                "resource_type": "Group",
                "value": {"schemas": [GROUP_SCHEMA], "displayName": name},
                "reason": "group of imported users",
            }
            for key, name in sorted(names.items())
            if key not in have
        ]

    def _group_ids(self) -> dict[str, str]:
        groups = self.client.export(
            "Groups", progress=False, excluded_attributes=["members"]
        ).resources
        return {
            g["displayName"].casefold(): g["id"]
            for g in groups
            if isinstance(g.get("displayName"), str)
        }

    def _user_ids(self, stage: int) -> dict[int, str]:
        ops = self.journal.operations(self._run_id(stage, "users"))
        ids = {}
        for rec in ops.itertuples():
            done = rec.state in ("applied", "unchanged") and rec.resource_id
            if rec.op_id.startswith("row-") and done:
                ids[int(rec.op_id[4:])] = str(rec.resource_id)
        return ids

    def _write_members(
        self, stage: int, rows: list[dict[str, Any]], users: RunSummary | None
    ) -> dict[str, tuple[str, int]]:
        """Add the stage's users to their groups: one PATCH per group and chunk.

        FusionAuth renders, patches and stores the whole group on each PATCH,
        so one request per member is slow for large groups. Each request is
        journaled (run ``<import>.s<k>.members``) with the members it adds, and
        made from a fresh read that leaves out those already there; a request
        whose answer was lost is settled by reading the group again.

        Returns
        -------
        dict
            ``{op_id: (state, members added)}``.
        """
        wanted: dict[str, tuple[str, list[str]]] = {}
        ids = self._user_ids(stage)
        for row in rows:
            user = ids.get(row["row"])
            for name in row["groups"]:
                entry = wanted.setdefault(name.casefold(), (name, []))
                if user is not None and user not in entry[1]:
                    entry[1].append(user)
        if users is None or not wanted:
            return {}

        run_id = self._run_id(stage, "members")
        self.journal.start_run(
            run_id, kind="members", parent_run_id=self.import_id, meta={}
        )
        groups = self._group_ids()
        work = []
        for key, (name, members) in sorted(wanted.items()):
            for start in range(0, len(members), _MEMBER_CHUNK):
                chunk = members[start : start + _MEMBER_CHUNK]
                op_id = f"group-{_slug(name)}-{start // _MEMBER_CHUNK + 1}"
                work.append((op_id, name, groups.get(key), chunk))

        out: dict[str, tuple[str, int]] = {}
        lock = threading.Lock()

        def run(item: tuple[str, str, str | None, list[str]]) -> None:
            op_id, name, group, chunk = item
            result = self._add_members(run_id, op_id, name, group, chunk)
            with lock:
                out[op_id] = result

        with self._progress(run_id, len(work), f"stage {stage} members"):
            workers = max(1, int(self.settings["concurrency"]))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(run, work))
        self.journal.finish_run(run_id, "finished")
        return out

    def _add_members(
        self,
        run_id: str,
        op_id: str,
        name: str,
        group: str | None,
        chunk: list[str],
        tries: int = _WRITE_ATTEMPTS,
    ) -> tuple[str, int]:
        journal = self.journal
        previous = journal.operation(run_id, op_id)
        if previous is not None and previous["state"] in FINAL_STATES:
            return previous["state"], len((previous["request"] or {}).get("added", []))
        if group is None:
            journal.record_answer(
                run_id,
                op_id,
                "failed",
                op="add_members",
                resource_type="Group",
                reason=f"group {name!r} does not exist (its create failed)",
            )
            return "failed", 0

        added_before = list(((previous or {}).get("request") or {}).get("added", []))
        try:
            current = self.client.get("Groups", group)
            have = {m.get("value") for m in current.get("members") or []}
            missing = [u for u in chunk if u not in have]
            added = added_before + [u for u in missing if u not in added_before]
            if not missing:
                state = "applied" if added else "unchanged"
                journal.record_answer(
                    run_id,
                    op_id,
                    state,
                    op="add_members",
                    resource_type="Group",
                    resource_id=group,
                    reason="found applied" if added else "already members",
                )
                return state, len(added)
            operations = [
                {
                    "op": "add",
                    "path": "members",
                    "value": [{"value": u} for u in missing],
                }
            ]
            journal.record_sent(
                run_id,
                op_id,
                op="add_members",
                resource_type="Group",
                resource_id=group,
                before={"members": sorted(have & set(chunk))},
                request={"method": "PATCH", "body": operations, "added": added},
            )
            self.client.patch("Groups", group, operations, reread=False)
        except (SCIMServerError, *_AMBIGUOUS) as exc:
            if tries > 1 and _transient(exc):
                # Read the group again and send what is still missing.
                return self._add_members(run_id, op_id, name, group, chunk, tries - 1)
            return self._settle_members(run_id, op_id, group, chunk, exc)
        journal.record_answer(
            run_id, op_id, "applied", status=200, resource_id=group, op="add_members"
        )
        return "applied", len(added)

    def _settle_members(
        self, run_id: str, op_id: str, group: str, chunk: list[str], exc: Exception
    ) -> tuple[str, int]:
        """After an answer that does not say whether the members landed, look."""
        reason = f"{type(exc).__name__}: {exc}"[:300]
        status = getattr(exc, "status", None)
        try:
            current = self.client.get("Groups", group)
            have = {m.get("value") for m in current.get("members") or []}
        except (SCIMServerError, *_AMBIGUOUS):
            have = set()
        previous = self.journal.operation(run_id, op_id) or {}
        added = (previous.get("request") or {}).get("added", [])
        state = "applied" if set(chunk) <= have else "failed"
        self.journal.record_answer(
            run_id,
            op_id,
            state,
            status=status,
            reason=reason + ("; found applied" if state == "applied" else ""),
            op="add_members",
            resource_type="Group",
            resource_id=group,
        )
        return state, len(added) if state == "applied" else 0

    def _audit(
        self,
        stage: int,
        rows: list[dict[str, Any]],
        users: RunSummary | None,
        members: dict[str, tuple[str, int]],
    ) -> StageResult:
        outcomes = _outcomes(users)
        ids = self._user_ids(stage)
        counts = dict.fromkeys(_COUNT_NAMES, 0)
        failures = []

        for row in rows:
            outcome, op, reason = outcomes.get(f"row-{row['row']}", ("", "", None))
            if not outcome:
                counts["skipped"] += 1
            elif outcome == "applied":
                counts["created" if op == "create" else "updated"] += 1
            elif outcome == "unchanged":
                counts["unchanged"] += 1
            else:
                counts["failed"] += 1
                failures.append(
                    {
                        "row": row["row"],
                        "user_name": row["payload"].get("userName"),
                        "outcome": outcome,
                        "reason": reason,
                    }
                )
        counts["memberships"] = sum(n for _, n in members.values())
        failed_members = sum(1 for state, _ in members.values() if state == "failed")
        audit = self.read_back(rows, ids)
        mismatched = audit["row"].nunique() if len(audit) else 0
        audited = sum(1 for row in rows if row["row"] in ids)

        error_rate = (counts["failed"] + failed_members) / max(len(rows), 1)
        mismatch_rate = mismatched / max(audited, 1)
        reasons = []
        if error_rate > self.settings["max_error_rate"]:
            reasons.append(
                f"error rate {error_rate:.1%} > {self.settings['max_error_rate']:.1%}"
            )
        if mismatch_rate > self.settings["max_mismatch_rate"]:
            reasons.append(
                f"mismatch rate {mismatch_rate:.1%} >"
                f" {self.settings['max_mismatch_rate']:.1%}"
            )
        return StageResult(
            stage=stage,
            rows=len(rows),
            counts=counts,
            audit=audit,
            error_rate=error_rate,
            mismatch_rate=mismatch_rate,
            passed=not reasons,
            reason="; ".join(reasons),
            failures=pd.DataFrame(
                failures, columns=["row", "user_name", "outcome", "reason"]
            ),
        )

    def read_back(
        self, rows: list[dict[str, Any]], ids: Mapping[int, str]
    ) -> pd.DataFrame:
        """Read users back by id and compare them with the mapping model's view.

        Returns
        -------
        pandas.DataFrame
            One row per difference: ``row``, ``user_name``, ``path``,
            ``expected``, ``found``, ``status`` (``changed``, ``missing``, or
            ``gone`` for a user that cannot be read).
        """
        wanted = [row for row in rows if row["row"] in ids]

        def check(row: dict[str, Any]) -> list[dict[str, Any]]:
            try:
                found = self.client.get("Users", ids[row["row"]])
            except NotFoundError:
                found = None
            return _audit_user(row, found)

        workers = max(1, int(self.settings["concurrency"]))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = [d for diffs in pool.map(check, wanted) for d in diffs]
        columns = ["row", "user_name", "path", "expected", "found", "status"]
        frame = pd.DataFrame(found, columns=columns)
        return frame.sort_values(["row", "path"]).reset_index(drop=True)

    # ---- rollback

    def rollback_stage(self, stage: int) -> list[RunSummary]:
        """Undo a stage: remove its memberships, delete the users and groups it
        created, put back the users it updated (from their before-states).

        Each undo is a journaled rollback run (``<run>.rollback``), resumable by
        calling this again. An attribute changed again since the stage wrote it
        is left alone (reported as stale by `scimtools.push.rollback_run`).
        """
        summaries = []
        failed = self._remove_members(stage)
        run_id = self._run_id(stage, "users")
        if self.journal.run(run_id, missing_ok=True) is not None:
            rollback_id = f"{run_id}.rollback"
            if self.journal.run(rollback_id, missing_ok=True) is not None:
                summary = resume_run(self.client, self.journal, rollback_id)
            else:
                summary = rollback_run(
                    self.client,
                    self.journal,
                    run_id,
                    rollback_id=rollback_id,
                    concurrency=self.settings["concurrency"],
                    rate_limit=self.settings["rate_limit"],
                )
            summaries.append(summary)
        failed += sum(s.failed + s.stale for s in summaries)
        self.journal.record_answer(
            self.import_id,
            f"rollback-{stage}",
            "applied" if not failed else "failed",
            op="rollback",
            resource_type="Import",
            reason=f"{failed} undo operations failed or stale" if failed else None,
            response={"applied": sum(s.applied for s in summaries)},
        )
        return summaries

    def _remove_members(self, stage: int) -> int:
        """Take the members a stage added out of their groups; return failures."""
        run_id = self._run_id(stage, "members")
        if self.journal.run(run_id, missing_ok=True) is None:
            return 0
        rollback_id = f"{run_id}.rollback"
        self.journal.start_run(rollback_id, kind="rollback", parent_run_id=run_id)
        done = self.journal.states(rollback_id)
        failed = 0

        for rec in self.journal.operations(run_id).itertuples():
            added = (rec.request or {}).get("added", [])
            if (
                rec.state != "applied"
                or not added
                or done.get(rec.op_id)
                in (
                    "applied",
                    "unchanged",
                )
            ):
                continue
            try:
                current = self.client.get("Groups", rec.resource_id)
            except NotFoundError:
                current = {}
            have = {m.get("value") for m in current.get("members") or []}
            present = [u for u in added if u in have]
            if not present:
                self.journal.record_answer(
                    rollback_id,
                    rec.op_id,
                    "unchanged",
                    op="remove_members",
                    resource_type="Group",
                    resource_id=rec.resource_id,
                )
                continue
            # One remove with the members as its value (as Entra sends it):
            # FusionAuth resolves it in one go, highest index first.
            values = [{"value": u} for u in present]
            operations = [{"op": "remove", "path": "members", "value": values}]
            self.journal.record_sent(
                rollback_id,
                rec.op_id,
                op="remove_members",
                resource_type="Group",
                resource_id=rec.resource_id,
                before={"members": present},
                request={"method": "PATCH", "body": operations},
            )
            try:
                self.client.patch("Groups", rec.resource_id, operations, reread=False)
                state = "applied"
            except (SCIMServerError, *_AMBIGUOUS):
                state = "failed"
                failed += 1
            self.journal.record_answer(
                rollback_id,
                rec.op_id,
                state,
                op="remove_members",
                resource_type="Group",
                resource_id=rec.resource_id,
            )
        self.journal.finish_run(rollback_id, "finished")
        return failed


_MEMBER_CHUNK = 200
_AMBIGUOUS = (httpx.TransportError,)
_COUNT_NAMES = ("created", "updated", "unchanged", "skipped", "failed", "memberships")


def _outcomes(summary: RunSummary | None) -> dict[str, tuple[str, str, Any]]:
    if summary is None:
        return {}
    return {r.op_id: (r.outcome, r.op, r.reason) for r in summary.results.itertuples()}


def _audit_user(row: Mapping[str, Any], found: Mapping[str, Any] | None) -> list:
    user_name = row["payload"].get("userName")
    if found is None:
        return [
            {
                "row": row["row"],
                "user_name": user_name,
                "path": "",
                "expected": "the user",
                "found": None,
                "status": "gone",
            }
        ]
    out = []
    expected = row["predicted"]
    for diff in compare_resources(expected, found):
        if diff.status not in _AUDIT_OK:
            out.append(
                {
                    "row": row["row"],
                    "user_name": user_name,
                    "path": diff.path,
                    "expected": diff.sent,
                    "found": diff.other,
                    "status": diff.status,
                }
            )
    want_id = row["payload"].get("externalId")
    if want_id and found.get("externalId") != want_id:
        out.append(
            {
                "row": row["row"],
                "user_name": user_name,
                "path": "externalId",
                "expected": want_id,
                "found": found.get("externalId"),
                "status": "changed",
            }
        )
    return out


def merge_user(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict:
    """Return ``current`` with the attributes of ``wanted`` written over it.

    Used to update an existing user by PUT (FusionAuth's PUT replaces the whole
    user, so everything else is carried over from the fresh read). Complex
    attributes (``name``, an extension) are merged key by key; a primary email
    or phone replaces the primary value only.

    Examples
    --------
    >>> merge_user({"userName": "a", "title": "t", "name": {"givenName": "A"}},
    ...            {"userName": "a", "name": {"familyName": "B"}})
    {'userName': 'a', 'title': 't', 'name': {'givenName': 'A', 'familyName': 'B'}}
    """
    body = copy.deepcopy(dict(current))
    body.pop("meta", None)
    for key, value in wanted.items():
        if key in ("id", "meta"):
            continue
        if key == "schemas":
            body["schemas"] = list(
                dict.fromkeys([*(body.get("schemas") or []), *value])
            )
        elif isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        elif key in ("emails", "phoneNumbers") and isinstance(value, list):
            body[key] = _merge_primary(body.get(key), value)
        else:
            body[key] = copy.deepcopy(value)
    return body


def _merge_primary(have: Any, wanted: list[Any]) -> list[Any]:
    new = next((v for v in wanted if isinstance(v, dict) and v.get("primary")), None)
    items = [i for i in have or [] if isinstance(i, dict)]
    old = next((i for i in items if i.get("primary") is True), None)
    if new is None or old is None:
        return copy.deepcopy(wanted)
    old = {**old, "value": new.get("value")}
    return [old if i.get("primary") is True else i for i in items]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-") or "group"


class _Progress:
    """A tqdm bar fed by the journal's records of one run."""

    def __init__(
        self, journal: Journal, run_id: str, total: int, what: str, show: bool
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.total = total
        self.what = what
        self.show = show
        self._bar: Any = None
        self._previous: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> _Progress:
        if not self.show:
            return self
        from tqdm.auto import tqdm

        done = sum(
            1 for s in self.journal.states(self.run_id).values() if s in FINAL_STATES
        )
        self._bar = tqdm(total=self.total, initial=done, desc=self.what, unit="op")
        self._previous = self.journal.on_record

        def on_record(event: str, run_id: str, op_id: str | None) -> None:
            if self._previous is not None:
                self._previous(event, run_id, op_id)
            if run_id == self.run_id and event[3:] in FINAL_STATES:
                with self._lock:
                    self._bar.update(1)

        self.journal.on_record = on_record
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self.journal.on_record = self._previous
            self._bar.close()


# -- starting and resuming ---------------------------------------------------------


def _fingerprint(rows: list[dict[str, Any]], settings: Mapping[str, Any]) -> str:
    text = json.dumps(
        [[r["row"], r["stage"], r["payload"], r["groups"]] for r in rows],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def start_import(
    client: SCIMClient,
    journal: Journal,
    report: ImportReport,
    *,
    stages: Sequence[int | float | str] = (50, "10%", "rest"),
    import_id: str | None = None,
    on_existing: str = "update",
    max_error_rate: float = 0.02,
    max_mismatch_rate: float = 0.02,
    concurrency: int = 4,
    rate_limit: float | None = None,
    lookup_wait: float = 0.5,
    progress: bool = True,
) -> StagedImport:
    """Record the valid rows of a report and their stages; return the import.

    Nothing is written to the tenant here; call `StagedImport.run_stage` or
    `StagedImport.run`. The rows held back by validation are not recorded, so
    they can never be sent. Starting again with an ``import_id`` the journal
    holds continues that import (the rows must be the same).

    Parameters
    ----------
    client : SCIMClient
        The tenant; its token needs user and group create, read and update (and
        delete for a rollback).
    journal : Journal
        Where the import and every write are recorded.
    report : ImportReport
        From `validate_import`.
    stages : sequence, default (50, "10%", "rest")
        See `split_stages`.
    import_id : str, optional
        The import's run id; generated when omitted.
    on_existing : {"update", "skip"}, default "update"
        What to do with a row that matches a tenant user.
    max_error_rate, max_mismatch_rate : float, default 0.02
        The gate: a stage whose failed writes, or read-back mismatches, exceed
        this share of its rows stops the import.
    concurrency : int, default 4
        Writes in flight at once.
    rate_limit : float, optional
        Requests per second, reads included; unlimited when None.
    lookup_wait : float, default 0.5
        First wait between lookups of a create whose answer was lost.
    progress : bool, default True
        Show tqdm progress bars.

    Returns
    -------
    StagedImport

    Raises
    ------
    JournalError
        ``import_id`` exists with other rows or stages.
    """
    if on_existing not in ("update", "skip"):
        raise ValueError(f"on_existing must be 'update' or 'skip', not {on_existing!r}")
    rates = {"max_error_rate": max_error_rate, "max_mismatch_rate": max_mismatch_rate}
    for name, rate in rates.items():
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} must be between 0 and 1, not {rate}")
    valid = report.valid_rows
    sizes = split_stages(len(valid), stages)
    rows: list[dict[str, Any]] = []
    position = 0

    for stage, size in enumerate(sizes, start=1):
        for row in valid[position : position + size]:
            rows.append(
                {
                    "row": row,
                    "stage": stage,
                    "payload": report.payloads[row],
                    "predicted": report.predicted[row],
                    "groups": report.groups[row],
                }
            )
        position += size
    settings = {
        "stages": [str(s) for s in stages],
        "on_existing": on_existing,
        "max_error_rate": max_error_rate,
        "max_mismatch_rate": max_mismatch_rate,
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "lookup_wait": lookup_wait,
        "held_back": report.invalid_rows,
    }
    import_id = journal.start_run(
        import_id,
        kind="import",
        fingerprint=_fingerprint(rows, settings),
        meta=settings,
        plan=rows,
    )
    settings["progress"] = progress
    logger.info(
        "Import %s: %d rows in %d stages, %d held back",
        import_id,
        len(rows),
        len(sizes),
        len(report.invalid_rows),
    )
    return StagedImport(client, journal, import_id, rows, settings)


def resume_import(
    client: SCIMClient, journal: Journal, import_id: str, **overrides: Any
) -> StagedImport:
    """Return an import from the journal alone, to continue it after a crash.

    Parameters
    ----------
    client : SCIMClient
        The tenant.
    journal : Journal
        The journal the import was started with.
    import_id : str
        Its id.
    **overrides
        ``concurrency``, ``rate_limit``, ``lookup_wait``, ``progress``.

    Raises
    ------
    JournalError
        The journal has no such import.
    """
    run = journal.run(import_id)
    assert run is not None
    if run["kind"] != "import":
        raise JournalError(f"run {import_id!r} is a {run['kind']}, not an import")
    allowed = {"concurrency", "rate_limit", "lookup_wait", "progress"}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; only {sorted(allowed)}")
    settings = {"progress": True, **run["meta"], **overrides}
    journal.start_run(import_id, kind="import")
    return StagedImport(client, journal, import_id, run["plan"] or [], settings)


# -- reconciliation ----------------------------------------------------------------


def reconcile_import(
    report: ImportReport,
    tenant_users: Iterable[Mapping[str, Any]] | SCIMClient,
    *,
    rows: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Line up the source against the tenant, row by row.

    Parameters
    ----------
    report : ImportReport
        The validated source.
    tenant_users : SCIMClient or iterable of dict
        The tenant (exported here) or its users.
    rows : iterable of int, optional
        The rows expected in the tenant; default every valid row.

    Returns
    -------
    pandas.DataFrame
        One row per source row: ``row``, ``user_name``, ``valid``, ``state``:
        ``match`` (the user holds what the mapping model predicts), ``differs``
        (``differences`` lists the paths), ``missing`` (no user matches), or
        for rows held back ``held back`` / ``held back, in tenant`` (a user
        with its externalId or userName exists, e.g. from before the import).
    """
    if isinstance(tenant_users, SCIMClient):
        tenant_users = tenant_users.export("Users", progress=False).resources
    index = _TenantIndex(tenant_users)
    expected = set(report.valid_rows if rows is None else rows)
    records = []

    for row in report.rows.index:
        row = int(row)
        payload = report.payloads[row]
        _, user = index.match(payload)
        state, paths = "", ""
        if row not in expected:
            state = "held back, in tenant" if user is not None else "held back"
            if report.rows.loc[row, "valid"]:
                state = "not imported" if user is None else "in tenant"
        elif user is None:
            state = "missing"
        else:
            diffs = _audit_user(
                {"row": row, "payload": payload, "predicted": report.predicted[row]},
                user,
            )
            state = "differs" if diffs else "match"
            paths = ", ".join(sorted({d["path"] for d in diffs}))
        records.append(
            {
                "row": row,
                "user_name": payload.get("userName"),
                "valid": bool(report.rows.loc[row, "valid"]),
                "state": state,
                "differences": paths,
            }
        )
    return pd.DataFrame(records)
