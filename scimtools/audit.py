"""Audit a tenant: what each IdP sent against what the tenant kept, and why.

Two families of findings go into one DataFrame (`FINDING_COLUMNS`):

Mapping findings, per user, attribute and SCIM client, from what the client sent
(an IdP view), what the tenant's lambdas keep of it (`scimtools.mapping`) and
what the tenant holds:

``dropped_by_lambda``
    the lambdas do not keep the attribute (fix the lambda);
``lost_although_mapped``
    the lambdas keep it, the tenant holds something else or nothing: a later
    write, another SCIM client, a manual edit (fix the data);
``changed_in_form``
    the tenant holds the same value in another form: a phone format, a type,
    the case of an email, a boolean sent as text (nothing to fix);
``missing_on_tenant``
    the client provisioned the user or group, the tenant has no such resource;
``present_only_on_tenant``
    the tenant holds a value (or a user) this client never sent.

Data-quality findings on the tenant (and on what was sent): duplicate userNames
and emails compared without case, users without an email, emails sent with no
primary or two, invalid email syntax (email-validator), phone numbers that do not
parse (phonenumbers), blank name parts, the enterprise manager as a bare string,
inactive users still in groups, group members that do not exist, empty groups
and groups above 100 members. Attribute names and schema URNs are read without
case (RFC 7643 §2.1). A value of the wrong JSON type is reported under the kind
it defeats, its explanation naming the value and the shape wanted: emails that
are not a list of objects (``user_without_email``), an email that is not text
(``invalid_email``), a name that is not an object (``blank_name_part``), a
manager that is not ``{"value": "<id>"}`` (``manager_not_object``); active
"True"/"False" as text is read as FusionAuth's JSON binding reads it. A member
a group lists twice is one member. Explanations show at most 80 characters of a
value; the value columns hold it whole.

FusionAuth refuses a second user with the same userName or email, compared
without case (409), and lists only existing users as group members; so on a
FusionAuth tenant, duplicates and members that do not exist show up in what a
client sends: two of its accounts with one userName or email, a member the
tenant has no user for. Those findings name the client and its key.

Each finding carries a stable ``finding_id`` and the fix it calls for as data:
``fix`` (``lambda``, ``data`` or ``none``), ``fix_path`` and ``fix_value`` (the
value wanted, JSON text); `fixes` decodes them.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import html
import json
import logging
import multiprocessing
import os
import re
import sys
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scimtools.frames import ENTERPRISE, to_scim
from scimtools.mapping import (
    LambdaModel,
    _canonical_keys,
    _compare_prepared,
    _prepare,
    generic_path,
    load_lambdas,
    normalise_phone,
)

if TYPE_CHECKING:
    from scimtools.frames import Export

__all__ = [
    "FINDING_COLUMNS",
    "FINDING_KINDS",
    "Audit",
    "audit_tenant",
    "fixes",
    "load_idp_views",
    "mapping_findings",
    "quality_findings",
    "tenant_resources",
]

logger = logging.getLogger(__name__)

FINDING_COLUMNS = (
    "finding_id",
    "kind",
    "category",
    "severity",
    "resource_type",
    "resource_id",
    "client",
    "client_key",
    "attribute",
    "sent",
    "kept",
    "expected",
    "fix",
    "fix_path",
    "fix_value",
    "explanation",
)
"""Columns of the findings DataFrame, in order."""

MAPPING_KINDS = (
    "dropped_by_lambda",
    "lost_although_mapped",
    "changed_in_form",
    "missing_on_tenant",
    "present_only_on_tenant",
)
QUALITY_KINDS = (
    "duplicate_user_name",
    "duplicate_email",
    "user_without_email",
    "email_without_primary",
    "two_primary_emails",
    "invalid_email",
    "invalid_phone",
    "blank_name_part",
    "manager_not_object",
    "inactive_in_group",
    "member_not_found",
    "empty_group",
    "group_over_100",
)
FINDING_KINDS = MAPPING_KINDS + QUALITY_KINDS
"""Every kind of finding: the mapping kinds, then the data-quality kinds."""

_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
_HIGH = ("userName", "emails.value", "active")
_MEDIUM = (
    "name.givenName",
    "name.familyName",
    "phoneNumbers.value",
    f"{ENTERPRISE}:manager.value",
    f"{ENTERPRISE}:employeeNumber",
)
_NAME_PARTS = ("givenName", "familyName")
GROUP_LIMIT = 100
# Views compared per task, and when `mapping_findings` starts worker processes
# by itself: below 20,000 views, starting them costs more than they save.
_CHUNK = 5_000
_PARALLEL_VIEWS = 20_000
_AUTO_WORKERS = 2


@dataclass
class Audit:
    """The findings of an audit and the survival of each attribute per client.

    Attributes
    ----------
    findings : pandas.DataFrame
        One row per finding, columns `FINDING_COLUMNS`, sorted by severity,
        kind and finding_id.
    survival : pandas.DataFrame
        Per ``client`` and ``attribute`` (filters dropped, e.g.
        ``emails.value``), counting values (a user's two work emails count
        two): ``sent``, ``kept`` (the tenant holds it, possibly in another
        form), ``changed_in_form`` (a part of ``kept``), ``dropped`` (by the
        lambda), ``lost`` (mapped, yet not on the tenant) and ``missing``
        (mapped, but the tenant has no such user: ``missing_on_tenant``).
        ``sent`` = ``kept`` + ``dropped`` + ``lost`` + ``missing``.
    """

    findings: pd.DataFrame
    survival: pd.DataFrame

    def counts(self) -> pd.Series:
        """Return the number of findings per kind, in `FINDING_KINDS` order."""
        counts = self.findings["kind"].value_counts()
        kinds = [k for k in FINDING_KINDS if k in counts.index]
        return counts.reindex(kinds).rename("findings")

    def summary(self) -> pd.DataFrame:
        """Return the survival table with the shares of what was sent.

        Each share is over every value sent: ``share_kept``, ``share_lost``
        (what the lambda dropped and what was lost although mapped) and
        ``share_missing`` (the tenant has no such user); they add up to 1.
        """
        table = self.survival.copy()
        sent = table["sent"].where(table["sent"] > 0)
        table["share_kept"] = (table["kept"] / sent).round(3)
        table["share_lost"] = ((table["dropped"] + table["lost"]) / sent).round(3)
        table["share_missing"] = (table["missing"] / sent).round(3)
        return table

    def to_csv(self, path: str | Path, *, spreadsheet_safe: bool = True) -> Path:
        """Write the findings to a CSV file (UTF-8, header, no index).

        Values come from the IdPs and the tenant: a cell whose first character
        other than whitespace and control characters is ``=``, ``+``, ``-`` or
        ``@`` (or that starts with a tab or a carriage return) would run as a
        formula when a spreadsheet opens the file, so by default such a cell
        gets a leading ``'`` (OWASP's advice on CSV injection), and so does a
        cell that starts with ``'``. Pass ``spreadsheet_safe=False`` for the
        values exactly as they are. A cell holding a line break is quoted
        either way (`scimtools.csvfiles.write_csv`).
        """
        from scimtools.csvfiles import write_csv

        return write_csv(self.findings, path, spreadsheet_safe=spreadsheet_safe)

    def to_html(
        self,
        path: str | Path,
        *,
        title: str = "SCIM mapping audit",
        max_rows: int = 2_000,
    ) -> Path:
        """Write a self-contained HTML report: counts, survival, findings.

        The page has no scripts and no external files; the findings table
        shows the first ``max_rows`` findings by severity (the CSV has all).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render_html(self, title, max_rows), encoding="utf-8")
        return path


# -- inputs ------------------------------------------------------------------------


def load_idp_views(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Read the IdP views (``*.jsonl`` in a folder, or one such file).

    Each record says what one SCIM client believes it provisioned (see
    `scimtools.demo.generate`); an IdP export can be given in the same shape:
    ``kind`` (``user``/``group``), ``idp``, ``key``, ``profile`` (the SCIM
    resource sent) and, if known, ``tenant_id`` (a user view without one is
    matched by externalId, then userName without case, unless an ``outcome``,
    ``status`` or ``error`` says its create failed); groups carry
    ``displayName`` and ``members`` (the keys of their users).

    Raises
    ------
    FileNotFoundError
        When the path does not exist or the directory has no ``.jsonl`` file.
    scimtools.errors.InputError
        A file is not UTF-8 or a line is not a JSON object (names file and
        line), or no file holds a record (an empty file alone is logged).
    """
    if directory is None:
        from scimtools.config import demo_db_path

        directory = demo_db_path().parent / "idp-views"
    from scimtools.errors import InputError, InputFileNotFoundError
    from scimtools.inputs import read_jsonl

    folder = Path(directory)
    if not folder.exists():
        raise InputFileNotFoundError(
            f"IdP views {folder} do not exist; check the path (a folder of *.jsonl"
            " files or one such file), or build the demo tenant with `scimtools"
            " demo build`"
        )
    files = [folder] if folder.is_file() else sorted(folder.glob("*.jsonl"))
    if not files:
        raise InputFileNotFoundError(
            f"no IdP views (*.jsonl) in {directory}; build the demo tenant with"
            " `scimtools demo build` or pass the folder of an IdP export"
        )

    views = []
    for file in files:
        records = read_jsonl(file, "IdP view")
        if not records:
            logger.warning("IdP view file %s holds no records", file)
        views.extend(records)
    if not views:
        raise InputError(
            f"the IdP views in {directory} hold no records: an audit against them"
            " would check the tenant's data quality only; export the IdP's"
            " provisioned users again"
        )
    logger.info("Read %d IdP view records from %d files", len(views), len(files))
    return views


def tenant_resources(export: Export) -> tuple[list[dict], list[dict]]:
    """Rebuild SCIM Users and Groups from an `Export`'s DataFrames.

    Every email and phone number comes from the long tables. A manager kept
    as a bare string does not survive the wide table; audit raw resources
    (`scimtools.export_resources`) to see it.
    """
    emails = _values_by_user(export.emails)
    phones = _values_by_user(export.phones)
    users = []

    for row in export.users.to_dict("records"):
        resource = to_scim(row)
        resource["id"] = row["id"]
        resource.pop("emails", None)
        resource.pop("phoneNumbers", None)
        if emails.get(row["id"]):
            resource["emails"] = emails[row["id"]]
        if phones.get(row["id"]):
            resource["phoneNumbers"] = phones[row["id"]]
        users.append(resource)

    members: dict[str, list[dict]] = defaultdict(list)
    for row in export.memberships.to_dict("records"):
        members[row["group_id"]].append({"value": row["user_id"]})
    groups = [
        {
            "id": row["id"],
            "displayName": _text(row.get("display_name")),
            "members": members.get(row["id"], []),
        }
        for row in export.groups.to_dict("records")
    ]
    return users, groups


def _text(value: Any) -> Any:
    return (
        None
        if value is None or (isinstance(value, float) and value != value)
        else value
    )


def _values_by_user(frame: pd.DataFrame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in frame.to_dict("records"):
        item = {"value": _text(row["value"]), "type": _text(row["type"])}
        if row["primary"] is True:
            item["primary"] = True
        out[row["user_id"]].append({k: v for k, v in item.items() if v is not None})
    return out


# -- findings ------------------------------------------------------------------------


def _finding_id(*parts: Any) -> str:
    text = "|".join("" if p is None else str(p) for p in parts)
    return "F" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _json(value)


def _severity(attribute: str) -> str:
    generic = generic_path(attribute)
    if generic in _HIGH:
        return "high"
    return "medium" if generic in _MEDIUM else "low"


def _finding(
    kind: str,
    *,
    resource_type: str,
    resource_id: str | None,
    attribute: str,
    explanation: str,
    client: str | None = None,
    client_key: str | None = None,
    sent: Any = None,
    kept: Any = None,
    expected: Any = None,
    fix: str = "none",
    fix_value: Any = None,
    severity: str | None = None,
) -> dict[str, Any]:
    return {
        "finding_id": _finding_id(
            kind, resource_type, resource_id, client, client_key, attribute
        ),
        "kind": kind,
        "category": "mapping" if kind in MAPPING_KINDS else "data_quality",
        "severity": severity or _severity(attribute),
        "resource_type": resource_type,
        "resource_id": resource_id,
        "client": client,
        "client_key": client_key,
        "attribute": attribute,
        "sent": _show(sent),
        "kept": _show(kept),
        "expected": _show(expected),
        "fix": fix,
        "fix_path": attribute if fix != "none" else None,
        "fix_value": _json(fix_value) if fix != "none" else None,
        "explanation": explanation,
    }


def _unique_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated findings; tell apart the others that share an id.

    An id names kind, resource, client and attribute; two findings on one
    attribute (two work emails lost) get ids that hash all their columns.
    """
    shared = Counter(row["finding_id"] for row in rows)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if shared[row["finding_id"]] > 1:
            row = {**row, "finding_id": _finding_id(*row.values())}
        out.setdefault(row["finding_id"], row)
    return list(out.values())


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    rows = _unique_ids(rows)
    frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS), dtype=object)
    if frame.empty:
        return frame.astype("str")
    frame["_order"] = frame["severity"].map(_SEVERITY_ORDER)
    frame["_kind"] = frame["kind"].map(FINDING_KINDS.index)
    frame = frame.sort_values(["_order", "_kind", "finding_id"], kind="stable")
    frame = frame.drop(columns=["_order", "_kind"]).reset_index(drop=True)
    return frame.astype("str").where(frame.notna(), None)


def _user_views(views: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        v
        for v in views
        if v.get("kind", "user") == "user" and isinstance(v.get("profile"), Mapping)
    ]


def _match_tenant(
    views: Sequence[Mapping[str, Any]], users: Mapping[str, Mapping[str, Any]]
) -> list[str | None]:
    """The tenant id of each user view, None when the tenant has no such user.

    A view's ``tenant_id`` decides; so does a null one beside an ``outcome``,
    ``status`` or ``error`` (the client's create failed: it got no id).
    Otherwise the view is matched by externalId, then by userName without case.
    """
    by_external: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for user_id, user in users.items():
        external = _name_key(user.get("externalId"), fold=False)
        if external is not None:
            by_external.setdefault(external, user_id)
        name = _name_key(user.get("userName"))
        if name is not None:
            by_name.setdefault(name, user_id)

    matched = []
    for view in views:
        tenant_id = view.get("tenant_id")
        if tenant_id is not None or _got_no_id(view):
            matched.append(tenant_id if tenant_id in users else None)
            continue
        profile = view["profile"]
        found = by_external.get(_name_key(profile.get("externalId"), fold=False) or "")
        if found is None:
            found = by_name.get(_name_key(profile.get("userName")) or "")
        matched.append(found)
    return matched


def _got_no_id(view: Mapping[str, Any]) -> bool:
    return "outcome" in view or any(
        view.get(k) is not None for k in ("status", "error")
    )


def _name_key(value: Any, *, fold: bool = True) -> str | None:
    """A userName or externalId as text (numbers too), or None when blank."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text:
        return None
    return text.casefold() if fold else text


def mapping_findings(
    views: Iterable[Mapping[str, Any]],
    users: Iterable[Mapping[str, Any]],
    *,
    lambdas: LambdaModel | None = None,
    groups: Iterable[Mapping[str, Any]] = (),
    workers: int | None = None,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Compare what each client sent with the lambdas' prediction and the tenant.

    Parameters
    ----------
    views
        IdP view records (`load_idp_views`).
    users
        The tenant's SCIM Users.
    lambdas
        The tenant's user lambdas; default FusionAuth's (`load_lambdas`).
    groups
        The tenant's Groups, to find the groups a client pushed that are
        missing.
    workers
        Processes that compare the views with the prediction and the tenant
        while this one runs the lambdas, chunk after chunk (the findings are
        the same whatever the number). 1 compares here and starts nothing;
        None starts two for 20,000 user views or more on a machine with 2
        CPUs or more, none otherwise. The processes are spawned, so they import
        the main module again: a script that passes 2 or more must call this
        under ``if __name__ == "__main__":`` (None stays in this process when
        the script has no such guard).

    Returns
    -------
    (list of dict, pandas.DataFrame)
        The finding records and the survival table (see `Audit`).

    Raises
    ------
    ValueError
        When ``workers`` is not None or a positive integer.
    """
    rows, table, _ = _mapping_findings(
        _canonical_views(views),
        [_canonical_keys(u) for u in users],
        lambdas=lambdas,
        groups=[_canonical_keys(g) for g in groups],
        workers=workers,
    )
    return rows, table


def _mapping_findings(
    views: Iterable[Mapping[str, Any]],
    users: Iterable[Mapping[str, Any]],
    *,
    lambdas: LambdaModel | None,
    groups: Iterable[Mapping[str, Any]],
    workers: int | None,
    meanwhile: Callable[[], list[dict[str, Any]]] = list,
) -> tuple[list[dict[str, Any]], pd.DataFrame, list[dict[str, Any]]]:
    """Return `mapping_findings` and what ``meanwhile()`` returns.

    ``meanwhile`` runs here once every chunk is predicted, while the workers
    finish their comparisons.
    """
    views = list(views)
    user_views = _user_views(views)
    tenant = {u["id"]: u for u in users if u.get("id")}
    matched = _match_tenant(user_views, tenant)
    count = _worker_count(workers, len(user_views))
    own_model = lambdas is None
    model = lambdas or load_lambdas()
    rows: list[dict[str, Any]] = []
    survival: dict[tuple[str, str], dict[str, int]] = defaultdict(_counters)

    try:
        chunks = _predicted_chunks(model, user_views, matched, tenant)
        if count > 1:
            parts, later = _compare_in_pool(chunks, count, meanwhile)
        else:
            parts = [_compare_views(*chunk) for chunk in chunks]
            later = meanwhile()
    finally:
        if own_model:
            model.close()

    for part_rows, part_survival in parts:
        rows += part_rows
        for name, counts in part_survival.items():
            total = survival[name]
            for column, number in counts.items():
                total[column] += number
    _name_holders(rows, user_views, tenant)
    rows.extend(_unclaimed_users(tenant, matched))
    groups = list(groups)
    views = _match_groups(views, groups)
    rows.extend(_group_mapping(views, groups))
    rows.extend(_lost_memberships(views, groups, user_views, matched))
    table = pd.DataFrame(
        [{"client": c, "attribute": a, **n} for (c, a), n in survival.items()],
        columns=["client", "attribute", *_SURVIVAL],
    )
    table = table.sort_values(["client", "attribute"]).reset_index(drop=True)
    logger.info("Mapping audit: %d users, %d findings", len(user_views), len(rows))
    return rows, table, later


_SURVIVAL = ("sent", "kept", "changed_in_form", "dropped", "lost", "missing")


def _counters() -> dict[str, int]:
    return dict.fromkeys(_SURVIVAL, 0)


def _worker_count(workers: int | None, views: int) -> int:
    """Return how many processes compare ``views`` user views (1: this one)."""
    if workers is None:
        cpus = os.cpu_count() or 1
        if views < _PARALLEL_VIEWS or cpus < 2:
            return 1
        if not _main_is_guarded():
            logger.info(
                "Comparing %d user views in this process: the main script has no"
                ' `if __name__ == "__main__":` guard, which worker processes need',
                views,
            )
            return 1
        return min(cpus, _AUTO_WORKERS)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"workers must be None (automatic), 1 (serial) or more, not {workers!r}"
        )
    return workers


def _main_is_guarded() -> bool:
    """Whether a spawned process can import ``__main__`` without running it all.

    Spawned processes import the main module again (Python's multiprocessing
    does); an interactive session, a notebook or ``python -c`` has none to run.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None and (name == "__main__" or name.endswith(".__main__")):
        return True
    path = getattr(main, "__file__", None)
    if path is None:
        return name is None
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return _MAIN_GUARD.search(source) is not None


_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.M)


_Chunk = tuple[
    list[Mapping[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[str | None],
    list[Mapping[str, Any] | None],
]


def _predicted_chunks(
    model: LambdaModel,
    user_views: Sequence[Mapping[str, Any]],
    matched: Sequence[str | None],
    tenant: Mapping[str, Mapping[str, Any]],
) -> Iterator[_Chunk]:
    """Yield chunks of views with what `_compare_views` needs, predicted here."""
    # The runner lives with the sandbox (imported there only when used).
    from scimtools.sandbox.lambdas import LambdaError

    for start in range(0, len(user_views), _CHUNK):
        views = list(user_views[start : start + _CHUNK])
        # The callers made the profiles' names canonical (`_canonical_views`)
        # once, for the lambdas and both comparisons.
        sent_canonical = [v["profile"] for v in views]
        # What the lambdas received, where it differs from what the client
        # believes it sent (a manager PATCHed on the bare path).
        received = [
            _as_received(v, c) or c for v, c in zip(views, sent_canonical, strict=True)
        ]
        try:
            predicted = model._predict(received, received)
        except LambdaError as exc:
            raise _name_failing_view(model, views, sent_canonical, exc) from exc
        ids = list(matched[start : start + _CHUNK])
        stored = [tenant.get(i) if i else None for i in ids]
        yield views, sent_canonical, predicted, ids, stored


def _name_failing_view(
    model: LambdaModel,
    views: Sequence[Mapping[str, Any]],
    sent_canonical: Sequence[dict[str, Any]],
    error: Exception,
) -> Exception:
    """Find the view whose payload the lambdas fail on (one at a time)."""
    from scimtools.sandbox.lambdas import LambdaError

    for view, sent in zip(views, sent_canonical, strict=True):
        try:
            model._predict([view["profile"]], [sent])
        except LambdaError as exc:
            return LambdaError(
                exc.slot,
                f"the lambdas fail on the profile of IdP view idp"
                f" {view.get('idp')!r}, key {view.get('key')!r}: {exc}; correct that"
                " record (or the lambda) and audit again",
            )
    return error


_Part = tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, int]]]


def _compare_in_pool(
    chunks: Iterable[_Chunk],
    workers: int,
    meanwhile: Callable[[], list[dict[str, Any]]],
) -> tuple[list[_Part], list[dict[str, Any]]]:
    """Compare the chunks in ``workers`` processes, run ``meanwhile`` here.

    Returns the chunks' results in order and what ``meanwhile`` returned. The
    processes are spawned, never forked: this process runs V8, which does not
    survive a fork. The pool is shut down whatever happens.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker
    )
    parts: list[_Part] = []
    pending: deque[Future[_Part]] = deque()

    try:
        for chunk in chunks:
            pending.append(pool.submit(_compare_views, *chunk))
            while pending and pending[0].done():
                parts.append(pending.popleft().result())
        logger.debug(
            "Compared %d chunks of user views; %d left to %d worker processes",
            len(parts),
            len(pending),
            workers,
        )
        later = meanwhile()
        parts.extend(future.result() for future in pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return parts, later


def _start_worker() -> None:
    # A chunk arrives as some 100,000 new containers: at the default threshold
    # (700) the collector runs over them hundreds of times while they unpickle.
    gc.set_threshold(10_000, 10, 10)


def _compare_views(
    views: Sequence[Mapping[str, Any]],
    sent_canonical: Sequence[dict[str, Any]],
    predicted: Sequence[dict[str, Any]],
    matched: Sequence[str | None],
    stored: Sequence[Mapping[str, Any] | None],
) -> _Part:
    """Compare a chunk of user views: their findings and survival counters.

    Run in this process or in a worker of `_compare_in_pool`.
    """
    rows: list[dict[str, Any]] = []
    survival: dict[tuple[str, str], dict[str, int]] = defaultdict(_counters)
    for view, sent_c, prediction, tenant_id, user in zip(
        views, sent_canonical, predicted, matched, stored, strict=True
    ):
        _compare_view(view, sent_c, prediction, tenant_id, user, rows, survival)
    return rows, dict(survival)


def _compare_view(
    view: Mapping[str, Any],
    sent_c: dict[str, Any],
    prediction: dict[str, Any],
    tenant_id: str | None,
    stored: Mapping[str, Any] | None,
    rows: list[dict[str, Any]],
    survival: dict[tuple[str, str], dict[str, int]],
) -> None:
    """Add the findings of one user view to ``rows``, its counts to ``survival``."""
    client, key = view.get("idp"), view.get("key")
    sent = view["profile"]
    common = {
        "resource_type": "User",
        "resource_id": tenant_id,
        "client": client,
        "client_key": key,
    }
    # What was sent is flattened once for both comparisons.
    sent_p = _prepare(sent_c)
    # Rows are keyed by path and the position of the sent item: items that
    # share a type (two work emails) share a path.
    by_prediction: dict[tuple[str, int], tuple[str, str, Any, Any]] = {}
    predicted_paths = set()
    predicted_items = set()
    for row, position in _keyed_rows(sent_p, prediction or {}):
        if row[2] is not None:
            by_prediction[(row[0], position)] = row
        if row[3] is not None:
            predicted_paths.add(row[0])
            predicted_items.add((row[0], _folded(row[3])))
    if stored is None:
        rows.append(
            _finding(
                "missing_on_tenant",
                attribute="id",
                severity="high",
                sent=sent.get("userName"),
                fix="data",
                fix_value=prediction,
                explanation=f"{client} provisioned {_brief_value(sent.get('userName'))}"
                " but the tenant has no such user"
                + _error_note(view)
                + "; create it (or link the client to the existing user).",
                **common,
            )
        )
    by_tenant: dict[tuple[str, int], tuple[str, str, Any, Any]] = {}
    only_tenant = []
    for row, position in _keyed_rows(sent_p, stored) if stored else []:
        if row[2] is not None:
            by_tenant[(row[0], position)] = row
        else:
            only_tenant.append(row)

    for (path, position), (_, status, value, other) in sorted(by_prediction.items()):
        counter = survival[(client, generic_path(path))]
        counter["sent"] += 1
        if (
            status in ("missing", "changed")
            and path.startswith(_MANAGER)
            and (_bare_manager(view))
        ):
            # The client believes it set the extension's manager; it sent a
            # PATCH on the bare path "manager", which these lambdas do not map.
            counter["dropped"] += 1
            rows.append(
                _dropped(
                    path,
                    value,
                    None,
                    f"{client} sends the manager as a PATCH on the bare path"
                    " 'manager' (not the enterprise extension's), which the lambdas"
                    " do not map, so the tenant holds none; map scimUser.manager in"
                    " the request lambda (data/lambdas/corrected/ does), or have"
                    " the IdP write the enterprise manager.",
                    common,
                    expected=None,
                )
            )
            continue
        if status in ("missing", "changed"):
            counter["dropped"] += 1
            rows.append(
                _dropped(
                    path,
                    value,
                    other,
                    f"The lambdas do not keep {path} as {client} sends it"
                    f" ({_quote(value)}"
                    + (")" if other is None else f" becomes {_quote(other)})")
                    + "; map it in the request and response lambdas.",
                    common,
                )
            )
            continue
        if stored is None:
            counter["missing"] += 1
            continue
        actual = by_tenant.get((path, position))
        if actual is None and "]." in path and not path.endswith("].value"):
            # The whole item is missing: its value's finding covers it.
            counter["lost"] += 1
            continue
        if actual is None or actual[1] in ("missing", "changed"):
            counter["lost"] += 1
            kept = None if actual is None else actual[3]
            if (
                kept is None
                and path.startswith(ENTERPRISE)
                and _lacks_extension(stored)
            ):
                why = (
                    " the user's schemas do not list the enterprise extension"
                    " (another client created it), and the default lambdas keep"
                    " the extension only when they do; write it again through"
                    " /EnterpriseUsers (correction plans do), or keep the"
                    " extension in the request lambda whatever schemas say."
                )
            elif kept is None and (miss := _filtered_miss(view, path, stored)):
                why = miss
            else:
                why = (
                    " a later write, another SCIM client or a manual edit; write"
                    " the value again."
                )
            rows.append(
                _finding(
                    "lost_although_mapped",
                    attribute=path,
                    sent=value,
                    kept=kept,
                    expected=other,
                    fix="data",
                    fix_value=other,
                    explanation=f"The lambdas keep {path}, but the tenant holds"
                    f" {_quote(kept)} where {client} sent {_quote(value)}:" + why,
                    **common,
                )
            )
            continue
        counter["kept"] += 1
        if actual[1] == "changed_form":
            counter["changed_in_form"] += 1
            rows.append(
                _finding(
                    "changed_in_form",
                    attribute=path,
                    sent=value,
                    kept=actual[3],
                    expected=other,
                    severity="low",
                    explanation=f"{path} is kept in another form:"
                    f" {_quote(value)} was sent, {_quote(actual[3])} is"
                    " stored; the same value, nothing to fix.",
                    **common,
                )
            )

    if stored is None:
        return
    for path, status, _, other in sorted(only_tenant, key=_row_order):
        if status != "added":
            continue
        if ("[" in path and (path, _folded(other)) in predicted_items) or (
            "[" not in path and path in predicted_paths
        ):
            # The lambdas write it themselves.
            continue
        rows.append(
            _finding(
                "present_only_on_tenant",
                attribute=path,
                kept=other,
                severity="low",
                explanation=f"The tenant holds {path} = {_quote(other)},"
                f" which {client} never sent: another SCIM client or a manual"
                " edit wrote it.",
                **common,
            )
        )


_MANAGER = f"{ENTERPRISE}:manager"


def _keyed_rows(
    sent_p: Any, other: Mapping[str, Any]
) -> list[tuple[tuple[str, str, Any, Any], int]]:
    """Compare with ``other``: each row with the position of its sent item."""
    positions: list[int] = []
    rows = _compare_prepared(sent_p, _prepare(_canonical_keys(other)), positions)
    return list(zip(rows, positions, strict=True))


def _folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else _show(value)


def _row_order(row: tuple[str, str, Any, Any]) -> tuple[str, str]:
    return row[0], str(row[3])


def _dropped(
    path: str,
    value: Any,
    kept: Any,
    explanation: str,
    common: Mapping[str, Any],
    *,
    expected: Any = None,
) -> dict[str, Any]:
    """A ``dropped_by_lambda`` finding: the lambda must keep ``value``."""
    return _finding(
        "dropped_by_lambda",
        attribute=path,
        sent=value,
        kept=kept,
        expected=kept if expected is None else expected,
        fix="lambda",
        fix_value=value,
        explanation=explanation,
        **common,
    )


def _lacks_extension(stored: Mapping[str, Any] | None) -> bool:
    schemas = stored.get("schemas") if stored else None
    return isinstance(schemas, list) and ENTERPRISE not in schemas


_TYPE_FILTER = re.compile(
    r'^([A-Za-z]+)\[\s*type\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]\.', re.I
)


def _filtered_miss(
    view: Mapping[str, Any], path: str, stored: Mapping[str, Any]
) -> str | None:
    """Why a value sent on a type-filtered path may be lost, if that is why.

    FusionAuth applies a PATCH on ``emails[type eq "work"].value`` only to an
    item that already matches the filter; with none, it drops the operation
    and answers 200 (fusionauth-scim.md, PATCH). Entra sets values this way.

    Examples
    --------
    >>> view = {"idp": "entra", "last_sent": {"Operations": [{"op": "Add",
    ...     "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 201"}]}}
    >>> _filtered_miss(view, 'phoneNumbers[type eq "mobile"].value', {})[:40]
    " entra's last PATCH set phoneNumbers[typ"
    >>> _filtered_miss(view, 'phoneNumbers[type eq "mobile"].value',
    ...     {"phoneNumbers": [{"type": "Mobile", "value": "+1 202"}]}) is None
    True
    """
    match = _TYPE_FILTER.match(path)
    if match is None:
        return None
    attribute, wanted = match.group(1), match.group(2).casefold()
    items = next(
        (v for k, v in stored.items() if k.casefold() == attribute.casefold()), None
    )
    if isinstance(items, list) and any(
        isinstance(item, Mapping) and str(item.get("type", "")).casefold() == wanted
        for item in items
    ):
        return None
    client = view.get("idp")
    fix = (
        f" write the whole item (a correction plan does), or have {client} add"
        f" the item on the path {attribute!r}."
    )
    if _patched_on(view, path):
        return (
            f" {client}'s last PATCH set {path} through its filter, and the tenant"
            f" user has no {match.group(2)!r} item for the filter to match, so"
            " FusionAuth dropped the operation and answered 200;" + fix
        )
    return (
        f" the tenant user has no {match.group(2)!r} item in {attribute}, and"
        f" FusionAuth drops a PATCH on {path} (as Entra sets values) when no item"
        " matches the filter; or a later write or another client removed it;" + fix
    )


def _patched_on(view: Mapping[str, Any], path: str) -> bool:
    """Tell whether the client's last request was a PATCH writing ``path``."""
    wanted = "".join(path.casefold().split())
    return any(
        str(op.get("op", "")).casefold() in ("add", "replace")
        and "".join(str(op.get("path", "")).casefold().split()) == wanted
        for op in _last_operations(view)
    )


def _last_operations(view: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The PATCH operations of the client's last request (none for a PUT)."""
    body = view.get("last_sent")
    operations = body.get("Operations") if isinstance(body, Mapping) else None
    if not isinstance(operations, list):
        return []
    return [op for op in operations if isinstance(op, Mapping)]


def _as_received(
    view: Mapping[str, Any], sent_c: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The payload the lambdas got, when it is not the view's profile; else None.

    A client that PATCHes the bare path "manager" believes it set the
    enterprise manager; FusionAuth applies the op to the rendered user, so the
    request lambda finds the manager at the top level, not in the extension.
    ``sent_c`` has canonical keys (`_canonical_keys`), and so has the answer.
    """
    if not _bare_manager(view):
        return None
    extension = sent_c.get(ENTERPRISE)
    if not isinstance(extension, Mapping) or "manager" not in extension:
        return None
    received = dict(sent_c)
    received[ENTERPRISE] = {k: v for k, v in extension.items() if k != "manager"}
    received["manager"] = [extension["manager"]]
    return received


def _bare_manager(view: Mapping[str, Any]) -> bool:
    """Tell whether the client's last request set "manager" on the bare path.

    Examples
    --------
    >>> _bare_manager({"last_sent": {"Operations": [{"op": "Add",
    ...     "path": "manager", "value": [{"value": "m-7"}]}]}})
    True
    >>> _bare_manager({"last_sent": {"Operations": [{"op": "Add",
    ...     "path": f"{ENTERPRISE}:manager", "value": "m-7"}]}})
    False
    """
    return any(
        str(op.get("path", "")).lower() == "manager" for op in _last_operations(view)
    )


def _error_note(view: Mapping[str, Any]) -> str:
    error = view.get("error")
    if isinstance(error, Mapping) and error.get("status"):
        return f" (its {error.get('action', 'request')} answered {error['status']})"
    return ""


def _quote(value: Any) -> str:
    return "nothing" if value is None else _brief_value(value)


_BRIEF = 80


def _brief_value(value: Any) -> str:
    """Show a value in an explanation: its repr, or its first 80 characters.

    The findings' value columns keep the whole value.

    Examples
    --------
    >>> _brief_value("ada"), _brief_value(5)
    ("'ada'", '5')
    >>> _brief_value("x" * 5_000)[-25:]
    "xxxx'… (5,000 characters)"
    """
    text = value if isinstance(value, str) else _show(value) or "null"
    if len(text) <= _BRIEF:
        return repr(value) if isinstance(value, str) else text
    cut = repr(text[:_BRIEF]) if isinstance(value, str) else text[:_BRIEF]
    return f"{cut}… ({len(text):,} characters)"


def _unclaimed_users(
    tenant: Mapping[str, Mapping[str, Any]], matched: Sequence[str | None]
) -> list[dict[str, Any]]:
    claimed = set(matched)
    return [
        _finding(
            "present_only_on_tenant",
            resource_type="User",
            resource_id=user_id,
            attribute="id",
            kept=user.get("userName"),
            severity="medium",
            explanation=f"No SCIM client claims user"
            f" {_brief_value(user.get('userName'))}:"
            " created by hand or by a client not audited here.",
        )
        for user_id, user in sorted(tenant.items())
        if user_id not in claimed
    ]


def _refused(view: Mapping[str, Any]) -> bool:
    """Tell whether the client's create of this view answered 409."""
    error = view.get("error")
    status = view.get("status")
    return status == 409 or (isinstance(error, Mapping) and error.get("status") == 409)


def _fold(value: Any) -> str | None:
    return value.casefold() if isinstance(value, str) and value else None


def _holders(tenant: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Tenant user ids by userName and email, compared without case."""
    holders: dict[str, str] = {}
    for user_id, user in sorted(tenant.items()):
        values = [user.get("userName")]
        values += [e.get("value") for e in _items(user, "emails")]
        for value in values:
            folded = _fold(value)
            if folded is not None:
                holders.setdefault(folded, user_id)
    return holders


def _sent_addresses(profile: Mapping[str, Any]) -> list[str]:
    values = [profile.get("userName")]
    values += [e.get("value") for e in _items(profile, "emails")]
    return [f for f in (_fold(v) for v in values) if f is not None]


def _name_holders(
    rows: list[dict[str, Any]],
    user_views: Sequence[Mapping[str, Any]],
    tenant: Mapping[str, Mapping[str, Any]],
) -> None:
    """Say which tenant user took the userName or email of a refused create."""
    missing = [
        r for r in rows if r["kind"] == "missing_on_tenant" and r["attribute"] == "id"
    ]
    if not missing:
        return
    holders = _holders(tenant)
    by_key = {(v.get("idp"), v.get("key")): v for v in user_views}
    for row in missing:
        view = by_key.get((row["client"], row["client_key"]))
        if view is None:
            continue
        found = [holders[a] for a in _sent_addresses(view["profile"]) if a in holders]
        if not found:
            continue
        holder = tenant[found[0]]
        row["expected"] = found[0]
        row["fix_value"] = None
        row["explanation"] = (
            f"{row['client']} provisioned {_brief_value(row['sent'])}, but the tenant"
            " has no user of its own for it" + _error_note(view) + ": user"
            f" {_brief_value(holder.get('userName'))} ({found[0]}) already holds that"
            " userName or email. Link the client's account to that user (notebook 03,"
            " create_conflict) rather than create it again, or merge the accounts"
            " if they are two people's."
        )


def _lost_memberships(
    views: Sequence[Mapping[str, Any]],
    groups: Iterable[Mapping[str, Any]],
    user_views: Sequence[Mapping[str, Any]],
    matched: Sequence[str | None],
) -> list[dict[str, Any]]:
    """Members a client pushed to a tenant group that the group does not list."""
    members = {
        g["id"]: {m.get("value") for m in _items(g, "members")}
        for g in groups
        if g.get("id")
    }
    tenant_of = {
        (v.get("idp"), v.get("key")): tenant_id
        for v, tenant_id in zip(user_views, matched, strict=True)
    }
    rows = []
    for view in views:
        group_id = view.get("tenant_id")
        if view.get("kind") != "group" or group_id not in members:
            continue
        client, name = view.get("idp"), view.get("displayName")
        for item in view.get("members") or []:
            member = item.get("value") if isinstance(item, Mapping) else item
            user_id = tenant_of.get((client, str(member)))
            if user_id is None or user_id in members[group_id]:
                continue
            rows.append(
                _finding(
                    "lost_although_mapped",
                    resource_type="Group",
                    resource_id=group_id,
                    client=client,
                    client_key=view.get("key"),
                    attribute=f'members[value eq "{user_id}"]',
                    sent=str(member),
                    expected=user_id,
                    severity="medium",
                    fix="data",
                    fix_value=user_id,
                    explanation=f"{client} pushed its account {member} (tenant user"
                    f" {user_id}) to group {_brief_value(name)}, but the tenant's"
                    " group does not"
                    " list it: a later write, another client replacing the members,"
                    " or FusionAuth truncating a group above 100 members before"
                    " 1.51.1 (#2784); add the member again.",
                )
            )
    return rows


def _match_groups(
    views: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The views, with the tenant id of a group view that has none filled in.

    A group view without ``tenant_id`` is matched by displayName without case,
    unless an ``outcome``, ``status`` or ``error`` says its create failed
    (then the group of that name belongs to someone else).
    """
    names = _group_names(groups)
    out: list[Mapping[str, Any]] = []
    for view in views:
        if (
            view.get("kind") == "group"
            and view.get("tenant_id") is None
            and not _got_no_id(view)
            and (found := names.get(_fold(view.get("displayName")) or ""))
        ):
            view = {**view, "tenant_id": found}
        out.append(view)
    return out


def _group_names(groups: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """displayName without case -> the id of the first group (by id) holding it."""
    names: dict[str, str] = {}
    for group in sorted(groups, key=lambda g: str(g.get("id"))):
        folded = _fold(group.get("displayName"))
        if folded is not None and group.get("id"):
            names.setdefault(folded, group["id"])
    return names


def _group_mapping(
    views: Sequence[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    groups = {g["id"]: g for g in groups if g.get("id")}
    if not groups:
        return []
    names = _group_names(groups.values())
    rows = []
    for view in views:
        if view.get("kind") != "group":
            continue
        tenant_id = view.get("tenant_id")
        if tenant_id in groups:
            continue
        holder = names.get(_fold(view.get("displayName")) or "")
        if holder is not None:
            rows.append(
                _finding(
                    "missing_on_tenant",
                    resource_type="Group",
                    resource_id=tenant_id,
                    client=view.get("idp"),
                    client_key=view.get("key"),
                    attribute="id",
                    severity="high",
                    sent=view.get("displayName"),
                    expected=holder,
                    fix="data",
                    explanation=f"{view.get('idp')} pushes group"
                    f" {_brief_value(view.get('displayName'))} but has no group of"
                    " its own on the tenant"
                    + _error_note(view)
                    + f": group {holder} holds that name"
                    + (
                        " (another client created it)"
                        if _got_no_id(view)
                        else " (the client's own group is gone)"
                    )
                    + ". Link the client's group to it, or rename one of them.",
                )
            )
            continue
        rows.append(
            _finding(
                "missing_on_tenant",
                resource_type="Group",
                resource_id=tenant_id,
                client=view.get("idp"),
                client_key=view.get("key"),
                attribute="id",
                severity="high",
                sent=view.get("displayName"),
                fix="data",
                fix_value={"displayName": view.get("displayName")},
                explanation=f"{view.get('idp')} pushes group"
                f" {_brief_value(view.get('displayName'))}, which the tenant does not"
                " have" + _error_note(view) + ".",
            )
        )
    return rows


# -- data quality ----------------------------------------------------------------------


def quality_findings(
    users: Iterable[Mapping[str, Any]],
    groups: Iterable[Mapping[str, Any]] = (),
    *,
    views: Iterable[Mapping[str, Any]] = (),
    region: str = "US",
) -> list[dict[str, Any]]:
    """Check the tenant's data (and what the clients sent) for known troubles.

    Parameters
    ----------
    users, groups
        The tenant's SCIM resources.
    views
        IdP views, for what FusionAuth cannot show: emails sent with no primary
        or two, and the email a user without one should have.
    region
        Region for phone numbers written without a country code.

    Returns
    -------
    list of dict
        Finding records (see `FINDING_COLUMNS`).
    """
    # Attribute names and schema URNs are case-insensitive (RFC 7643 §2.1,
    # RFC 7644 §3.10): the checks read them spelled canonically.
    return _quality(
        [_canonical_keys(u) for u in users if u.get("id")],
        [_canonical_keys(g) for g in groups if g.get("id")],
        _canonical_views(views),
        region,
    )


def _quality(
    users: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    views: list[Mapping[str, Any]],
    region: str,
) -> list[dict[str, Any]]:
    """`quality_findings` on resources and views with canonical names already."""
    user_views = _user_views(views)
    sent_email = _sent_emails(user_views)
    rows: list[dict[str, Any]] = []

    rows += _duplicates(users, "userName", lambda u: [u.get("userName")])
    rows += _duplicates(
        users, "emails.value", lambda u: [e.get("value") for e in _items(u, "emails")]
    )
    rows += _sent_duplicates(user_views, "userName", lambda p: [p.get("userName")])
    rows += _sent_duplicates(
        user_views,
        "emails.value",
        lambda p: [e.get("value") for e in _items(p, "emails")],
    )
    for user in users:
        rows += _user_quality(user, sent_email.get(user["id"]), region)
    for view in user_views:
        rows += _sent_email_quality(view)
    rows += _group_quality(users, groups)
    rows += _sent_members(views, users, groups)
    logger.info(
        "Data-quality audit: %d users, %d groups, %d findings",
        len(users),
        len(groups),
        len(rows),
    )
    return rows


def _canonical_views(views: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The views, each user profile's attribute names spelled canonically."""
    return [
        {**v, "profile": _canonical_keys(v["profile"])}
        if isinstance(v.get("profile"), Mapping)
        else v
        for v in views
    ]


def _items(resource: Mapping[str, Any], attribute: str) -> list[Mapping[str, Any]]:
    values = resource.get(attribute)
    return (
        [v for v in values if isinstance(v, Mapping)]
        if isinstance(values, list)
        else []
    )


def _sent_emails(views: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for view in views:
        value = _email_value(_email_items(view["profile"].get("emails"))[0])
        if view.get("tenant_id") and value:
            wanted.setdefault(view["tenant_id"], value)
    return wanted


def _duplicates(
    users: Sequence[Mapping[str, Any]], attribute: str, values: Any
) -> list[dict[str, Any]]:
    holders: dict[str, set[str]] = defaultdict(set)
    spelled: dict[tuple[str, str], str] = {}
    for user in users:
        for value in values(user):
            if isinstance(value, str) and value:
                holders[value.casefold()].add(user["id"])
                spelled[(value.casefold(), user["id"])] = value

    kind = "duplicate_user_name" if attribute == "userName" else "duplicate_email"
    rows = []
    for folded, ids in sorted(holders.items()):
        if len(ids) < 2:
            continue
        for user_id in sorted(ids):
            others = sorted(spelled[(folded, i)] for i in ids if i != user_id)
            rows.append(
                _finding(
                    kind,
                    resource_type="User",
                    resource_id=user_id,
                    attribute=attribute,
                    kept=spelled[(folded, user_id)],
                    severity="high",
                    fix="data",
                    explanation=f"{attribute}"
                    f" {_brief_value(spelled[(folded, user_id)])} is also"
                    f" held by {len(ids) - 1} other user(s) ({', '.join(others)}),"
                    " compared without case; merge the users or change one.",
                )
            )
    return rows


def _sent_duplicates(
    views: Sequence[Mapping[str, Any]], attribute: str, values: Any
) -> list[dict[str, Any]]:
    """Accounts of one client that send the same value, compared without case."""
    holders: dict[tuple[Any, str], dict[Any, str]] = defaultdict(dict)
    for view in views:
        for value in values(view["profile"]):
            if isinstance(value, str) and value:
                key = (view.get("idp"), value.casefold())
                holders[key].setdefault(view.get("key"), value)
    by_view = {(v.get("idp"), v.get("key")): v for v in views}

    kind = "duplicate_user_name" if attribute == "userName" else "duplicate_email"
    rows = []
    for (client, _), accounts in sorted(holders.items(), key=lambda i: str(i[0])):
        if len(accounts) < 2:
            continue
        for key, value in sorted(accounts.items(), key=lambda i: str(i[0])):
            others = sorted(str(k) for k in accounts if k != key)
            rows.append(
                _finding(
                    kind,
                    resource_type="User",
                    resource_id=by_view[(client, key)].get("tenant_id"),
                    client=client,
                    client_key=key,
                    attribute=attribute,
                    sent=value,
                    severity="high",
                    fix="data",
                    explanation=f"{client} sends {attribute} {_brief_value(value)} for"
                    f" {len(others)} other account(s) of its own too"
                    f" ({', '.join(others)}), compared without case; FusionAuth"
                    " keeps one user per value, so one create is refused (409) or"
                    " both accounts write the same user. Merge the accounts in the"
                    f" IdP or map {attribute} from a unique attribute.",
                )
            )
    return rows


def _user_quality(
    user: Mapping[str, Any], wanted_email: str | None, region: str
) -> list[dict[str, Any]]:
    common = {"resource_type": "User", "resource_id": user["id"]}
    user_name = _user_label(user)
    rows = []
    emails, shape = _email_items(user.get("emails"))

    if shape is not None or not [e for e in emails if not _blank(e.get("value"))]:
        found = _email_value(emails)
        rows.append(
            _finding(
                "user_without_email",
                attribute='emails[type eq "work"].value',
                kept=user.get("emails") if shape is not None else None,
                severity="high",
                fix="data",
                fix_value=found or wanted_email,
                expected=_email_list(found) if shape else wanted_email,
                explanation=f"User {user_name} has no email"
                + (
                    f" FusionAuth can read: emails is {shape}"
                    f" ({_brief_value(user.get('emails'))}), where RFC 7643 §4.1.2"
                    " wants a list of objects such as"
                    f" {_show(_email_list(found or 'ada@example.com'))}; write it"
                    " in that shape."
                    if shape is not None
                    else f"; the IdP sent {_brief_value(wanted_email)} without a"
                    " primary flag, so FusionAuth kept none."
                    if wanted_email
                    else "; logins and notices by email will fail."
                ),
                **common,
            )
        )
    for email in emails:
        value = email.get("value")
        if _blank(value):
            continue
        if isinstance(value, str):
            problem = _email_problem(value)
        else:
            problem = (
                f"it is {_type_name(value)}, not text; RFC 7643 §4.1.2 wants a"
                ' string such as "ada@example.com".'
            )
        if problem is not None:
            rows.append(
                _finding(
                    "invalid_email",
                    attribute=_path_of("emails", email),
                    kept=value,
                    severity="high",
                    fix="data",
                    explanation=f"Email {_brief_value(value)} of {user_name} is not"
                    f" valid: {problem}",
                    **common,
                )
            )
    for phone in _items(user, "phoneNumbers"):
        value = phone.get("value")
        if isinstance(value, str) and normalise_phone(value, region=region) is None:
            rows.append(
                _finding(
                    "invalid_phone",
                    attribute=_path_of("phoneNumbers", phone),
                    kept=value,
                    severity="medium",
                    fix="data",
                    explanation=f"Phone number {_brief_value(value)} of {user_name}"
                    f" does not parse as a number (region {region}).",
                    **common,
                )
            )

    rows += _name_quality(user, user_name, common)
    rows += _manager_quality(user, user_name, common)
    return rows


def _user_label(user: Mapping[str, Any]) -> str:
    """How explanations name a user: its userName, or its id and why not."""
    value = user.get("userName")
    if isinstance(value, str) and value.strip():
        return _brief_value(value)
    if value is None:
        return f"{user.get('id')} (no userName)"
    return (
        f"{user.get('id')} (userName {_brief_value(value)} is {_type_name(value)},"
        " not text)"
    )


def _type_name(value: Any) -> str:
    """Name the JSON type of ``value``: 'a number', 'a JSON object' …"""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a JSON object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _email_items(value: Any) -> tuple[list[Mapping[str, Any]], str | None]:
    """The email objects in ``value``, and what is wrong with its shape, if any.

    RFC 7643 §4.1.2: ``emails`` is a list of objects. An object, a string or
    a list holding strings is read as the emails it means, and named.
    """
    if value is None or value == []:
        return [], None
    if isinstance(value, Mapping):
        return [value], "a JSON object, not a list of objects"
    if isinstance(value, str):
        return ([{"value": value}] if value.strip() else []), "a string, not a list"
    if not isinstance(value, list):
        return [], f"{_type_name(value)}, not a list of objects"
    items = [v if isinstance(v, Mapping) else {"value": v} for v in value]
    others = sorted({_type_name(v) for v in value if not isinstance(v, Mapping)})
    if others:
        return items, f"a list holding {' and '.join(others)}, not objects"
    return items, None


def _email_value(emails: Sequence[Mapping[str, Any]]) -> str | None:
    """The text email a user means: the primary one, else the first."""
    texts = [e for e in emails if isinstance(e.get("value"), str) and e["value"]]
    primary = [e for e in texts if _truth(e.get("primary")) is True] or texts
    return primary[0]["value"] if primary else None


def _email_list(value: str | None) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    return [{"value": value, "type": "work", "primary": True}]


def _truth(value: Any) -> Any:
    """A boolean as FusionAuth's JSON binding reads it: "True"/"false" too."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _name_quality(
    user: Mapping[str, Any], user_name: str, common: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """blank_name_part findings: a part missing, blank or not text."""
    raw = user.get("name")
    name = raw if isinstance(raw, Mapping) else {}
    rows = []
    for part in _NAME_PARTS:
        value = name.get(part)
        if isinstance(value, str) and value.strip():
            continue
        if raw is not None and not isinstance(raw, Mapping):
            why = (
                f" (name is {_type_name(raw)}, {_brief_value(raw)}, where RFC 7643"
                ' §4.1.1 wants an object: {"givenName": …, "familyName": …})'
            )
        elif not _blank(value):
            why = f" that is text (it is {_type_name(value)}, {_brief_value(value)})"
        elif name.get("formatted"):
            why = f" (name.formatted is {_brief_value(name['formatted'])})"
        else:
            why = ""
        rows.append(
            _finding(
                "blank_name_part",
                attribute=f"name.{part}",
                kept=value if raw is None or isinstance(raw, Mapping) else raw,
                severity="medium",
                fix="data",
                explanation=f"User {user_name} has no name.{part}{why}; apps that"
                " greet by name show a blank.",
                **common,
            )
        )
    return rows


def _manager_quality(
    user: Mapping[str, Any], user_name: str, common: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """manager_not_object: the enterprise manager is not {"value": "<id>"}."""
    block = user.get(ENTERPRISE)
    if not isinstance(block, Mapping) or block.get("manager") is None:
        return []
    manager = block["manager"]
    if isinstance(manager, list) and len(manager) == 1:
        # Entra's PATCH sends the manager as a list of one object.
        inner, shape = manager[0], "a list of one object, not an object"
    else:
        inner, shape = manager, None
    value = inner.get("value") if isinstance(inner, Mapping) else inner
    if shape is None and isinstance(manager, Mapping) and isinstance(value, str):
        return []
    if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
        wanted: dict[str, Any] | None = {"value": str(value)}
    else:
        wanted = None
    if isinstance(manager, str):
        what = f"the bare string {_brief_value(manager)}"
    elif shape is not None:
        what = f"{shape} ({_brief_value(manager)})"
    elif isinstance(manager, Mapping):
        what = (
            f"an object without a text value ({_brief_value(manager)}), where the"
            " value is the manager's user id"
        )
    else:
        what = f"{_type_name(manager)}, {_brief_value(manager)}"
    shown = _show(wanted) if wanted else '{"value": "<manager id>"}'
    return [
        _finding(
            "manager_not_object",
            attribute=f"{ENTERPRISE}:manager",
            kept=manager,
            expected=wanted,
            severity="medium",
            fix="data",
            fix_value=wanted,
            explanation=f"The manager of {user_name} is {what}; RFC 7643 §4.3"
            f" wants an object {shown}"
            + ("." if wanted else "; set the manager's id in the IdP."),
            **common,
        )
    ]


# A plain dot-atom address (RFC 5322 §3.2.3) with a plain ASCII domain: its
# local part is valid whatever the domain, so only the domain (cached) needs
# email-validator; anything else goes to email-validator whole.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9]+(?:[._+-][A-Za-z0-9]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _email_problem(value: str) -> str | None:
    """Return why email-validator rejects ``value``, or None when it is valid."""
    match = _PLAIN_EMAIL.fullmatch(value)
    if (
        match is not None
        and len(value) <= 200
        and value.index("@") <= 64
        and _email_check("a@" + match.group(1)) is None
    ):
        return None
    return _email_check(value)


@functools.lru_cache(maxsize=65_536)
def _email_check(value: str) -> str | None:
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _path_of(attribute: str, item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if isinstance(kind, str) and kind:
        return f'{attribute}[type eq "{kind.lower()}"].value'
    return f'{attribute}[value eq "{item.get("value")}"].value'


def _sent_email_quality(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    emails = _items(view["profile"], "emails")
    if not emails:
        return []
    primaries = [e for e in emails if _truth(e.get("primary")) is True]
    if len(primaries) == 1:
        return []
    common = {
        "resource_type": "User",
        "resource_id": view.get("tenant_id"),
        "client": view.get("idp"),
        "client_key": view.get("key"),
        "severity": "high",
        "fix": "data",
    }
    user_name = _user_label({**view["profile"], "id": f"account {view.get('key')}"})
    if not primaries:
        first = emails[0]
        return [
            _finding(
                "email_without_primary",
                attribute=_path_of("emails", first).replace(".value", ".primary"),
                sent=[e.get("value") for e in emails],
                fix_value=True,
                explanation=f"{view.get('idp')} sends the emails of {user_name}"
                " with no primary flag, so FusionAuth keeps no email; flag"
                f" {_brief_value(first.get('value'))} as primary in the IdP.",
                **common,
            )
        ]
    last = primaries[-1]
    return [
        _finding(
            "two_primary_emails",
            attribute=_path_of("emails", last).replace(".value", ".primary"),
            sent=[e.get("value") for e in primaries],
            fix_value=False,
            explanation=f"{view.get('idp')} flags {len(primaries)} emails of"
            f" {user_name} as primary (RFC 7643 §2.4 allows one); FusionAuth"
            f" keeps the last, {_brief_value(last.get('value'))}. Clear the extra"
            " flag in the IdP.",
            **common,
        )
    ]


def _group_quality(
    users: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    by_id = {u["id"]: u for u in users}
    rows = []
    for group in groups:
        name = group.get("displayName")
        members = _items(group, "members")
        # A member listed twice is one member: counted and reported once.
        listed = Counter(
            m["value"]
            for m in members
            if isinstance(m.get("value"), str) and m["value"]
        )
        unnamed = [
            (position, m)
            for position, m in enumerate(members)
            if not isinstance(m.get("value"), str) or not m["value"]
        ]
        size = len(listed) + len(unnamed)
        repeated = sum(listed.values()) - len(listed)
        common = {"resource_type": "Group", "resource_id": group["id"]}
        if not members:
            rows.append(
                _finding(
                    "empty_group",
                    attribute="members",
                    severity="low",
                    explanation=f"Group {_brief_value(name)} has no members.",
                    **common,
                )
            )
        if size > GROUP_LIMIT:
            rows.append(
                _finding(
                    "group_over_100",
                    attribute="members",
                    kept=size,
                    severity="medium",
                    explanation=f"Group {_brief_value(name)} has {size} members"
                    + (f" ({repeated} more entries repeat them)" if repeated else "")
                    + "; FusionAuth before 1.51.1 truncated groups above 100 on"
                    " PUT/PATCH (#2784): check the version before pushing it.",
                    **common,
                )
            )
        for position, member in unnamed:
            # No id to name it by: its position tells it from the others.
            rows.append(
                _finding(
                    "member_not_found",
                    attribute=f"members[{position}]",
                    kept=member,
                    severity="medium",
                    explanation=f"Group {_brief_value(name)} lists a member"
                    f" without an id (entry {position + 1}:"
                    f" {_brief_value(dict(member))}); the server or the export sent"
                    " it malformed, and no write can remove it by id.",
                    **common,
                )
            )
        for user_id, times in listed.items():
            path = f'members[value eq "{user_id}"]'
            user = by_id.get(user_id)
            again = f" (listed {times} times)" if times > 1 else ""
            if user is None:
                rows.append(
                    _finding(
                        "member_not_found",
                        attribute=path,
                        kept=user_id,
                        severity="medium",
                        fix="data",
                        explanation=f"Group {_brief_value(name)} lists member"
                        f" {_brief_value(user_id)}{again}, who is not a user of the"
                        " tenant; remove the member.",
                        **common,
                    )
                )
            elif _truth(user.get("active")) is False:
                rows.append(
                    _finding(
                        "inactive_in_group",
                        attribute=path,
                        kept=user.get("userName"),
                        severity="medium",
                        fix="data",
                        explanation=f"Inactive user {_user_label(user)} is still a"
                        f" member of {_brief_value(name)}{again}; remove the member"
                        " if deactivation should revoke group access.",
                        **common,
                    )
                )
    return rows


def _sent_members(
    views: Sequence[Mapping[str, Any]],
    users: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Members a client pushes to a tenant group that the tenant has no user for."""
    group_ids = {g["id"] for g in groups}
    pushed = [
        v
        for v in views
        if v.get("kind") == "group"
        and v.get("tenant_id") in group_ids
        and isinstance(v.get("members"), list)
        and v["members"]
    ]
    if not pushed:
        return []
    user_views = _user_views(views)
    tenant = {u["id"]: u for u in users}
    matched = _match_tenant(user_views, tenant)
    tenant_of = {
        (v.get("idp"), v.get("key")): tenant_id
        for v, tenant_id in zip(user_views, matched, strict=True)
    }
    by_key = {(v.get("idp"), v.get("key")): v for v in user_views}
    rows = []
    for view in pushed:
        client, name = view.get("idp"), view.get("displayName")
        for item in view["members"]:
            # Keys, as the demo's views hold them, or SCIM member objects.
            member = item.get("value") if isinstance(item, Mapping) else item
            if not isinstance(member, str | int) or isinstance(member, bool):
                continue
            member = str(member)
            if tenant_of.get((client, member)) is not None:
                continue
            known = (client, member) in tenant_of
            refused = known and _refused(by_key[(client, member)])
            row = _finding(
                "member_not_found",
                resource_type="Group",
                resource_id=view["tenant_id"],
                client=client,
                client_key=view.get("key"),
                attribute=f'members[value eq "{member}"]',
                sent=member,
                severity="medium",
                fix="data",
                explanation=f"{client} counts its account {member} as a member"
                f" of {_brief_value(name)}, but the tenant has no user for it"
                + (
                    " (its create was refused with 409: another user holds its"
                    " userName or email), so the membership is missing; link the"
                    " account to that user, then push the group again."
                    if refused
                    else " (it was never created there), so the membership is"
                    " missing; create the user, then push the group again."
                    if known
                    else " (it is not among the client's users either);"
                    " remove the member in the IdP."
                ),
            )
            # The member is the client's key, not a tenant id: no tenant write
            # expresses the fix, a person makes it.
            row["fix_path"] = None
            rows.append(row)
    return rows


# -- together ------------------------------------------------------------------------


def audit_tenant(
    users: Iterable[Mapping[str, Any]] | Export,
    groups: Iterable[Mapping[str, Any]] = (),
    *,
    views: Iterable[Mapping[str, Any]] = (),
    lambdas: LambdaModel | None = None,
    region: str = "US",
    workers: int | None = None,
) -> Audit:
    """Audit a tenant: mapping findings per client and data-quality findings.

    Parameters
    ----------
    users
        The tenant's SCIM Users (e.g. ``export_resources(client, "Users")``),
        or an `Export` (its groups are then used too).
    groups
        The tenant's SCIM Groups.
    views
        What each SCIM client sent (`load_idp_views`); without them only
        data-quality findings are made.
    lambdas
        The tenant's user lambdas; default FusionAuth's.
    region
        Region for phone numbers written without a country code.
    workers
        Processes for the mapping comparison (see `mapping_findings`): None
        decides, 1 starts none. The data-quality checks run here meanwhile.

    Returns
    -------
    Audit

    Examples
    --------
    >>> users = [{"id": "u1", "userName": "Ada"}, {"id": "u2", "userName": "ada",
    ...           "name": {"givenName": "Ada", "familyName": "King"},
    ...           "emails": [{"value": "ada@example.com", "primary": True}]}]
    >>> audit = audit_tenant(users)
    >>> audit.counts().to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'duplicate_user_name': 2, 'user_without_email': 1, 'blank_name_part': 2}
    """
    if hasattr(users, "memberships"):
        users, groups = tenant_resources(users)  # type: ignore[arg-type]
    users = list(users)  # type: ignore[arg-type]
    groups = list(groups)
    views = list(views)
    _check_inputs(users, groups, views)
    # Canonical attribute names for the matching (userName, externalId) and
    # the group checks too; the checks of what was sent read the profiles.
    users = [_canonical_keys(u) for u in users]
    groups = [_canonical_keys(g) for g in groups]
    views = _canonical_views(views)
    rows: list[dict[str, Any]] = []
    survival = pd.DataFrame(columns=["client", "attribute", *_SURVIVAL])

    def quality() -> list[dict[str, Any]]:
        # Canonical already, and every resource has an id (`_check_inputs`).
        return _quality(users, groups, views, region)

    if views:
        # The data-quality checks run while the workers finish their comparisons.
        mapped, survival, checked = _mapping_findings(
            views,
            users,
            lambdas=lambdas,
            groups=groups,
            workers=workers,
            meanwhile=quality,
        )
        rows += mapped + checked
    else:
        rows += quality()
    return Audit(findings=_frame(rows), survival=survival)


def _check_inputs(
    users: Sequence[Any], groups: Sequence[Any], views: Sequence[Any]
) -> None:
    """Refuse what the audit would otherwise skip or mix up, naming it.

    Raises
    ------
    scimtools.errors.InputError
        A resource or view that is not an object, a tenant resource without an
        id or with another's, a user view without a profile object, or two
        views of one client with the same key.
    """
    from scimtools.errors import InputError

    for label, items in (("tenant user", users), ("tenant group", groups)):
        seen: set[Any] = set()
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InputError(
                    f"{label} #{index} is {type(item).__name__}, not a SCIM resource"
                    " object; pass the resources as dicts (export_resources(...)"
                    ".resources)"
                )
            if item.get("id") in (None, ""):
                raise InputError(
                    f"{label} #{index} ({_brief(item)}) has no id; audit the"
                    " resources as the server returns them"
                )
            if item["id"] in seen:
                raise InputError(
                    f"{label} id {item['id']!r} occurs twice (#{index}); remove the"
                    " duplicate from the export"
                )
            seen.add(item["id"])
    keys: set[tuple[Any, Any]] = set()
    for index, view in enumerate(views):
        if not isinstance(view, Mapping):
            raise InputError(
                f"IdP view #{index} is {type(view).__name__}, not an object; see"
                " load_idp_views for the format"
            )
        kind = view.get("kind", "user")
        where = f"IdP view #{index} (idp {view.get('idp')!r}, key {view.get('key')!r})"
        if kind not in ("user", "group"):
            raise InputError(
                f"{where} has kind {kind!r}: use 'user' or 'group' (lower case)"
            )
        if kind == "user" and not isinstance(view.get("profile"), Mapping):
            raise InputError(
                f"{where} has no profile object (got"
                f" {type(view.get('profile')).__name__}); a user view needs the SCIM"
                " user the client sent as 'profile'"
            )
        key = (kind, view.get("idp"), view.get("key"))
        if view.get("key") is None:
            raise InputError(
                f"{where} has no key: give the client's id of the resource"
            )
        if key in keys:
            raise InputError(
                f"{where} repeats the key of an earlier view of that client; keep one"
            )
        keys.add(key)


def _brief(item: Mapping[str, Any]) -> str:
    name = item.get("userName") or item.get("displayName")
    return f"userName {name!r}" if name is not None else "no userName"


def fixes(findings: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the fixes the findings call for, decoded, for a correction plan.

    Each item: ``finding_id``, ``fix`` (``lambda`` or ``data``),
    ``resource_type``, ``resource_id``, ``client``, ``path`` and ``value``
    (the value wanted, None when a person must decide). Findings that call for
    nothing are left out.

    Examples
    --------
    >>> audit = audit_tenant([{"id": "u1", "userName": "ada",
    ...     "name": {"givenName": "Ada", "familyName": "King"},
    ...     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
    ...         {"manager": "m-7"}, "emails": [{"value": "a@example.com"}]}])
    >>> [(f["path"].rsplit(":", 1)[-1], f["value"]) for f in fixes(audit.findings)]
    [('manager', {'value': 'm-7'})]
    """
    out = []
    for row in findings.to_dict("records"):
        if row["fix"] == "none":
            continue
        value = row["fix_value"]
        out.append(
            {
                "finding_id": row["finding_id"],
                "fix": row["fix"],
                "resource_type": row["resource_type"],
                "resource_id": row["resource_id"],
                "client": row["client"],
                "path": row["fix_path"],
                "value": None if pd.isna(value) else json.loads(value),
            }
        )
    return out


# -- HTML ----------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; }
.high { color: #a00; font-weight: bold; } .medium { color: #a60; }
"""


_CELL_LIMIT = 500


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float | type(pd.NA)) and pd.isna(value)):
        return ""
    text = str(value)
    if len(text) > _CELL_LIMIT:
        # One huge value would swell the page; the CSV has it whole.
        text = f"{text[:_CELL_LIMIT]}… ({len(text):,} characters; see the CSV)"
    return html.escape(text)


def _render_html(audit: Audit, title: str, max_rows: int) -> str:
    findings = audit.findings
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(findings):,} findings.</p>",
        "<h2>Findings per kind</h2><table><tr><th>kind</th><th>findings</th></tr>",
    ]
    for kind, count in audit.counts().items():
        parts.append(f"<tr><td>{kind}</td><td class=num>{count:,}</td></tr>")
    parts.append("</table>")

    summary = audit.summary()
    if not summary.empty:
        parts.append("<h2>Attribute survival per client</h2><table><tr>")
        parts += [f"<th>{_cell(c)}</th>" for c in summary.columns]
        parts.append("</tr>")
        for row in summary.itertuples(index=False):
            kept = row.share_kept if row.share_kept == row.share_kept else 0
            shade = f"hsl({int(120 * kept)}, 60%, 85%)"
            parts.append("<tr>")
            for column, value in zip(summary.columns, row, strict=True):
                style = f' style="background:{shade}"' if column == "share_kept" else ""
                parts.append(f"<td{style}>{_cell(value)}</td>")
            parts.append("</tr>")
        parts.append("</table>")

    shown = findings.head(max_rows)
    parts.append(f"<h2>Findings ({len(shown):,} of {len(findings):,})</h2><table><tr>")
    columns = ["finding_id", "severity", "kind", "resource_type", "resource_id"]
    columns += ["client", "attribute", "sent", "kept", "expected", "fix"]
    columns += ["explanation"]
    parts += [f"<th>{c}</th>" for c in columns]
    parts.append("</tr>")
    for row in shown.to_dict("records"):
        cells = "".join(
            f'<td class="{row["severity"]}">{_cell(row[c])}</td>'
            if c == "severity"
            else f"<td>{_cell(row[c])}</td>"
            for c in columns
        )
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
