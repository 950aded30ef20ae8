"""The tenant's SCIM lambdas as a model: what FusionAuth would keep of a payload.

FusionAuth stores what its request lambda maps and serves what its response
lambda renders; everything else in a SCIM payload is lost. `LambdaModel` runs a
tenant's two user lambdas offline (in V8, through mini-racer, as FusionAuth
does) to predict the stored view of each payload. `compare_resources` lines two
payloads up attribute by attribute along SCIM paths with SCIM's rules:
attribute names case-insensitive (RFC 7643 §2.1), canonical values such as
``type`` compared without case, ``caseExact: false`` attributes such as
``userName`` and email values equal up to case, multi-valued attributes matched
by value and type rather than by position (RFC 7643 §2.4). `bench_lambda` is the
bench: a side-by-side table of sent, stored and returned values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scimtools.frames import ENTERPRISE, USER_SCHEMA

if TYPE_CHECKING:
    from scimtools.sandbox.lambdas import LambdaError

__all__ = [
    "DEFAULT_LAMBDA_DIR",
    "Difference",
    "LambdaModel",
    "compare_resources",
    "flatten_resource",
    "generic_path",
    "load_lambdas",
    "normalise_phone",
    "same_phone",
    "bench_lambda",
]

logger = logging.getLogger(__name__)

DEFAULT_LAMBDA_DIR = Path(__file__).resolve().parents[1] / "data" / "lambdas"

_FILES = {
    "User": ("scim-user-request.js", "scim-user-response.js"),
    "EnterpriseUser": (
        "scim-enterprise-user-request.js",
        "scim-enterprise-user-response.js",
    ),
}
_SLOTS = (
    "userRequest",
    "userResponse",
    "enterpriseUserRequest",
    "enterpriseUserResponse",
    "groupRequest",
    "groupResponse",
)
_NOOP = "function convert() {}"
_BATCH = 10_000

#: Statuses of a `Difference`, from sent to the other side.
STATUSES = ("kept", "changed_form", "changed", "missing", "added")

MULTI_VALUED = (
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "groups",
    "members",
)
_MULTI = frozenset(MULTI_VALUED)
_KNOWN = [
    "id",
    "externalId",
    "userName",
    "name",
    "givenName",
    "familyName",
    "middleName",
    "formatted",
    "honorificPrefix",
    "honorificSuffix",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "groups",
    "members",
    "value",
    "type",
    "primary",
    "display",
    "meta",
    "schemas",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
    "managerId",
    "$ref",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
]
_CANONICAL = {name.lower(): name for name in _KNOWN} | {ENTERPRISE.lower(): ENTERPRISE}
_IGNORED = ("id", "meta", "schemas", "password", "externalId", "groups")
# RFC 7643 §4.1: caseExact false for these; a case-only change is one of form.
_CASE_INSENSITIVE = ("userName", "emails.value")


@dataclass(frozen=True)
class Difference:
    """One attribute of a payload against the same attribute elsewhere.

    Attributes
    ----------
    path : str
        SCIM path, e.g. ``name.givenName``, ``emails[type eq "work"].value`` or
        ``urn:…:enterprise:2.0:User:manager.value``.
    status : str
        ``kept`` (equal), ``changed_form`` (equal once normalised: case of a
        caseExact-false value, phone format, a type, a boolean sent as text, a
        manager sent as a bare string), ``changed``, ``missing`` (sent, absent
        on the other side) or ``added`` (only on the other side).
    sent, other : object
        The two values (None when absent).
    """

    path: str
    status: str
    sent: Any
    other: Any


# -- lambdas ---------------------------------------------------------------------


class LambdaModel:
    """Run a tenant's user request and response lambdas on SCIM payloads.

    Parameters
    ----------
    request_source, response_source : str
        JavaScript defining ``function convert(user, options, scimUser)`` and
        ``function convert(scimUser, user)``, FusionAuth's signatures.
    resource : {"User", "EnterpriseUser"}
        Which endpoint the lambdas serve; decides the ``schemas`` FusionAuth
        fills in before the response lambda runs.
    names : tuple of str, optional
        Names of the two lambdas for error messages (the file names).
    timeout : float
        Seconds one payload may take.

    Examples
    --------
    >>> model = load_lambdas()
    >>> sent = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    ...         "userName": "ada", "title": "Countess",
    ...         "emails": [{"value": "ada@example.com", "type": "home"}]}
    >>> stored = model.predict([sent])[0]
    >>> "title" in stored, "emails" in stored
    (False, False)
    >>> model.close()
    """

    def __init__(
        self,
        request_source: str,
        response_source: str,
        *,
        resource: str = "User",
        names: tuple[str, str] | None = None,
        timeout: float = 1.0,
    ) -> None:
        if resource not in _FILES:
            raise ValueError(
                f"resource must be 'User' or 'EnterpriseUser', not {resource!r}"
            )
        self.resource = resource
        self.request_source = request_source
        self.response_source = response_source
        self.names = names or ("request lambda", "response lambda")
        self.timeout = timeout
        self._lambdas: Any = None

    @classmethod
    def from_files(
        cls,
        request: str | Path,
        response: str | Path,
        *,
        resource: str = "User",
        timeout: float = 1.0,
    ) -> LambdaModel:
        """Load the two lambdas from JavaScript files (as exported from FusionAuth).

        Raises
        ------
        FileNotFoundError
            When a file does not exist; the message names it.
        """
        from scimtools.errors import InputFileNotFoundError
        from scimtools.inputs import read_text

        sources = []
        for file in (Path(request), Path(response)):
            if not file.is_file():
                raise InputFileNotFoundError(
                    f"lambda file {file} does not exist; export the tenant's SCIM"
                    " lambdas from FusionAuth or use data/lambdas/"
                )
            sources.append(read_text(file, "lambda file"))
        return cls(
            sources[0],
            sources[1],
            resource=resource,
            names=(Path(request).name, Path(response).name),
            timeout=timeout,
        )

    def _runner(self) -> Any:
        if self._lambdas is None:
            # The runner lives with the sandbox, the one package that imports
            # mini-racer; imported here so that `import scimtools` stays light.
            from scimtools.sandbox.lambdas import LambdaSet

            sources = dict.fromkeys(_SLOTS, _NOOP)
            sources["userRequest"] = self.request_source
            sources["userResponse"] = self.response_source
            names = dict.fromkeys(_SLOTS, "unused")
            names["userRequest"], names["userResponse"] = self.names
            self._lambdas = LambdaSet(sources, names=names, timeout=self.timeout)
        return self._lambdas

    def to_fusionauth(self, payloads: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Run the request lambda: SCIM payloads -> FusionAuth users.

        ``active`` sent as the text ``"True"``/``"False"`` (Entra) is read as the
        boolean first, as FusionAuth's JSON binding does.
        """
        return self._to_fusionauth(payloads)

    def _to_fusionauth(
        self,
        payloads: Sequence[Mapping[str, Any]],
        canonical: Sequence[dict[str, Any]] | None = None,
    ) -> list[dict]:
        """`to_fusionauth`; ``canonical``: the payloads' `_canonical_keys`, if known."""
        runner = self._runner()
        users: list[dict] = []

        for start in range(0, len(payloads), _BATCH):
            if canonical is None:
                part = [_canonical_keys(p) for p in payloads[start : start + _BATCH]]
            else:
                part = canonical[start : start + _BATCH]
            batch = [(_bind(p),) for p in part]
            users.extend(r["user"] for r in _run(runner, "userRequest", batch))
        return users

    def to_scim(
        self,
        users: Sequence[Mapping[str, Any]],
        *,
        prefill: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict]:
        """Run the response lambda: FusionAuth users -> SCIM resources.

        ``prefill`` holds what FusionAuth sets before the lambda runs (``id``,
        ``externalId``); ``schemas`` and ``meta.resourceType`` are added here.
        """
        runner = self._runner()
        schemas = [USER_SCHEMA] + ([ENTERPRISE] if self.resource != "User" else [])
        out: list[dict] = []

        for start in range(0, len(users), _BATCH):
            batch = []
            for offset, user in enumerate(users[start : start + _BATCH]):
                scim: dict[str, Any] = {"schemas": list(schemas)}
                if prefill is not None:
                    scim.update({k: v for k, v in prefill[start + offset].items() if v})
                scim["meta"] = {"resourceType": self.resource}
                batch.append((scim, _stored(user)))
            out.extend(_prune(r) for r in _run(runner, "userResponse", batch))
        return out

    def predict(self, payloads: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Return what FusionAuth would serve for each payload after storing it.

        Raises
        ------
        scimtools.sandbox.LambdaError
            When a lambda throws or runs longer than the timeout.
        """
        return self._predict(list(payloads))

    def _predict(
        self,
        payloads: Sequence[Mapping[str, Any]],
        canonical: Sequence[dict[str, Any]] | None = None,
    ) -> list[dict]:
        """`predict`; ``canonical``: the payloads' `_canonical_keys`, if known."""
        users = self._to_fusionauth(payloads, canonical)
        prefill = [
            {"id": p.get("id"), "externalId": p.get("externalId")} for p in payloads
        ]
        return self.to_scim(users, prefill=prefill)

    def close(self) -> None:
        """Free the V8 isolate."""
        if self._lambdas is not None:
            self._lambdas.close()
            self._lambdas = None

    def __enter__(self) -> LambdaModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(runner: Any, slot: str, batch: list[tuple[Any, ...]]) -> list[Any]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return runner.run(slot, batch)
    # mini-racer refuses timeouts inside a running event loop (Jupyter's), so
    # the call goes to a worker thread, which has none.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(runner.run, slot, batch).result()


def load_lambdas(
    directory: str | Path | None = None,
    *,
    resource: str = "User",
    request: str | None = None,
    response: str | None = None,
) -> LambdaModel:
    """Load a tenant's user lambdas from a directory of JavaScript files.

    Parameters
    ----------
    directory
        Where the files are; default ``data/lambdas/`` (FusionAuth's defaults).
    resource : {"User", "EnterpriseUser"}
        Picks the default file names (``scim-user-request.js`` …).
    request, response
        Other file names inside ``directory``.
    """
    if resource not in _FILES:
        raise ValueError(f"resource must be 'User' or 'EnterpriseUser', not {resource}")
    folder = Path(directory) if directory is not None else DEFAULT_LAMBDA_DIR
    default_request, default_response = _FILES[resource]
    return LambdaModel.from_files(
        folder / (request or default_request),
        folder / (response or default_response),
        resource=resource,
    )


def _bind(payload: dict[str, Any]) -> dict[str, Any]:
    # ``payload`` has canonical keys and may be shared: copied before a change.
    active = payload.get("active")
    if isinstance(active, str) and active.lower() in ("true", "false"):
        payload = dict(payload)
        payload["active"] = active.lower() == "true"
    return payload


def _stored(user: Mapping[str, Any]) -> dict[str, Any]:
    # FusionAuth saves no nulls, no password, and a user is active by default.
    stored = {k: v for k, v in user.items() if v is not None and k != "password"}
    stored.setdefault("active", True)
    return stored


def _prune(doc: Mapping[str, Any]) -> dict[str, Any]:
    pruned: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key != "meta":
            value = {k: v for k, v in value.items() if v is not None}
            if not value and not key.startswith("urn:"):
                continue
        if value is None or value == []:
            continue
        pruned[key] = value
    return pruned


def _canonical_key(key: str) -> str:
    try:
        return _KEY_CACHE[key]
    except KeyError:
        canonical = _CANONICAL.get(key.lower(), key)
        if len(_KEY_CACHE) < 65_536:
            _KEY_CACHE[key] = canonical
        return canonical


_KEY_CACHE: dict[str, str] = {}


def _canonical_keys(value: Any) -> Any:
    """Copy ``value`` with every attribute name spelled canonically.

    Dicts and lists are copied (lists keep their order); other mappings met at
    the top become dicts; anything else is kept as it is.
    """
    if isinstance(value, dict):
        return _canonical_dict(value)
    if isinstance(value, list):
        return _canonical_list(value)
    if isinstance(value, Mapping):
        return _canonical_dict(dict(value))
    return value


def _canonical_dict(node: dict[Any, Any]) -> dict[Any, Any]:
    cache = _KEY_CACHE
    out = {}
    for key, value in node.items():
        if type(key) is str:
            canonical = cache.get(key)
            key = canonical if canonical is not None else _canonical_key(key)
        elif isinstance(key, str):
            key = _canonical_key(key)
        kind = type(value)
        if kind is dict:
            value = _canonical_dict(value)
        elif kind is list:
            value = _canonical_list(value)
        elif kind not in _LEAVES and isinstance(value, dict | list):
            value = _canonical_keys(value)
        out[key] = value
    return out


def _canonical_list(items: list[Any]) -> list[Any]:
    return [
        item
        if type(item) in _LEAVES or not isinstance(item, dict | list)
        else _canonical_keys(item)
        for item in items
    ]


_LEAVES = (str, int, float, bool, type(None))


# -- phones ----------------------------------------------------------------------


def normalise_phone(value: Any, *, region: str = "US") -> str | None:
    """Return a phone number in E.164, or None when it does not parse.

    ``tel:`` URIs (RFC 3966, which RFC 7643 §4.1.2 recommends) and national
    formats are read; national numbers are read in ``region``. An extension
    follows as ``;ext=`` (RFC 3966), so a number that lost it is another one.

    Examples
    --------
    >>> normalise_phone("tel:+1-201-555-0123"), normalise_phone("(201) 555-0123")
    ('+12015550123', '+12015550123')
    >>> normalise_phone("+1 201-555-0123 ext. 45")
    '+12015550123;ext=45'
    >>> normalise_phone("call me") is None
    True
    """
    if not isinstance(value, str) or not value.strip():
        return None
    return _parse_phone(value, region)


@functools.lru_cache(maxsize=262_144)
def _parse_phone(value: str, region: str) -> str | None:
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # An extension is part of the number: losing it is a change, not a form.
    return f"{e164};ext={number.extension}" if number.extension else e164


def same_phone(a: Any, b: Any, *, region: str = "US") -> bool:
    """Tell whether two phone values are the same number in any format.

    Examples
    --------
    >>> same_phone("tel:+1-201-555-0123", "(201) 555-0123")
    True
    """
    left = normalise_phone(a, region=region)
    return left is not None and left == normalise_phone(b, region=region)


# -- paths and comparison --------------------------------------------------------


def generic_path(path: str) -> str:
    """Drop value filters from a path: ``emails[type eq "work"].value`` ->
    ``emails.value``.

    Examples
    --------
    >>> generic_path('emails[type eq "work"].value')
    'emails.value'
    """
    if "[" not in path:
        return path
    return _generic_path(path)


@functools.lru_cache(maxsize=65_536)
def _generic_path(path: str) -> str:
    out, depth = [], 0
    for char in path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _item_key(attribute: str, item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if isinstance(kind, str) and kind:
        return f'{attribute}[type eq "{kind.lower()}"]'
    return f'{attribute}[value eq "{item.get("value")}"]'


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def flatten_resource(
    resource: Mapping[str, Any], *, ignore: Iterable[str] = _IGNORED
) -> dict[str, Any]:
    """Return a resource's leaf values keyed by SCIM path.

    Attribute names are spelled canonically whatever their case; items of
    multi-valued attributes are keyed by their ``type`` (lower case) or, when
    untyped, their value; a bare-string enterprise manager is read as
    ``manager.value``; blank values are left out.

    Examples
    --------
    >>> flatten_resource({"UserName": "ada", "name": {"givenName": "Ada"},
    ...                   "emails": [{"value": "a@x", "type": "Work"}]})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'userName': 'ada', 'name.givenName': 'Ada',
     'emails[type eq "work"].value': 'a@x', 'emails[type eq "work"].type': 'Work'}
    """
    flat: dict[str, Any] = {}
    _walk(resource, "", flat, frozenset(ignore))
    return flat


def _walk(
    node: Mapping[str, Any],
    prefix: str,
    flat: dict[str, Any],
    skip: frozenset[str] | set[str] | None,
) -> None:
    """Add the leaves of ``node`` to ``flat``; ``skip``: top-level names left out."""
    cache = _KEY_CACHE
    for raw_key, value in node.items():
        key = cache.get(raw_key) if type(raw_key) is str else None
        if key is None:
            key = _CANONICAL.get(str(raw_key).lower(), raw_key)
        if (
            skip
            and key in skip
            or value is None
            or value == ""
            or value == []
            or value == {}
        ):
            continue
        path = f"{prefix}{key}"
        kind = type(value)
        if kind in _LEAVES:
            flat[path] = value
            continue
        is_mapping = kind is dict or isinstance(value, Mapping)
        if key == ENTERPRISE and is_mapping:
            _walk(_manager_object(value), f"{ENTERPRISE}:", flat, None)
        elif key in _MULTI and isinstance(value, list):
            for item in value:
                if type(item) is dict or isinstance(item, Mapping):
                    _walk(item, _item_key(path, item) + ".", flat, None)
                elif not _blank(item):
                    flat[f'{path}[value eq "{item}"].value'] = item
        elif is_mapping:
            _walk(value, f"{path}.", flat, None)
        else:
            flat[path] = value


def _manager_object(block: Mapping[str, Any]) -> dict[str, Any]:
    block = dict(block)
    manager = block.get("manager")
    if isinstance(manager, str):
        block["manager"] = {"value": manager}
    return block


def _manager_is_text(resource: Mapping[str, Any]) -> bool:
    block = resource.get(ENTERPRISE)
    return isinstance(block, Mapping) and isinstance(block.get("manager"), str)


def _compare_values(path: str, sent: Any, other: Any) -> str:
    if sent == other and type(sent) is type(other):
        return "kept"
    generic = generic_path(path)
    if generic.endswith(".type") or generic.endswith(".primary"):
        # A canonical value in other case is the same; another type ("home"
        # kept as "work") relabels the value, which is a change.
        if str(sent).lower() == str(other).lower():
            return "kept"
        return "changed"
    if isinstance(sent, bool) or isinstance(other, bool):
        return "changed_form" if str(sent).lower() == str(other).lower() else "changed"
    if isinstance(sent, str) and isinstance(other, str):
        if generic in _CASE_INSENSITIVE and sent.lower() == other.lower():
            return "changed_form"
        if unicodedata.normalize("NFC", sent) == unicodedata.normalize("NFC", other):
            return "changed_form"  # composed and decomposed accents
        if generic.startswith("phoneNumbers") and same_phone(sent, other):
            return "changed_form"
        if sent.strip() == other.strip():
            return "changed_form"
    if str(sent) == str(other):
        return "changed_form"
    return "changed"


def _same_value(attribute: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        if a.lower() == b.lower():
            return True
        return attribute == "phoneNumbers" and same_phone(a, b)
    return False


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _match_items(
    attribute: str, sent: list[Any], other: list[Any]
) -> list[tuple[Any, Any]]:
    """Pair items by value (and type), then by type; unmatched ones alone."""
    left = [o for o in other if _is_mapping(o)]
    pairs: list[tuple[Any, Any]] = []
    unpaired = []

    for item in sent:
        if not _is_mapping(item):
            continue
        value = item.get("value")
        match = None
        if left:
            kind = str(item.get("type", "")).lower()
            first = None
            for o in left:
                if _same_value(attribute, value, o.get("value")):
                    if str(o.get("type", "")).lower() == kind:
                        match = o
                        break
                    if first is None:
                        first = o
            if match is None:
                match = first
        if match is None:
            unpaired.append(item)
            continue
        left.remove(match)
        pairs.append((item, match))

    for item in unpaired:
        kind = str(item.get("type", "")).lower()
        match = next(
            (o for o in left if kind and str(o.get("type", "")).lower() == kind), None
        )
        if match is not None:
            left.remove(match)
        pairs.append((item, match))
    pairs.extend((None, o) for o in left)
    return pairs


def compare_resources(
    sent: Mapping[str, Any],
    other: Mapping[str, Any] | None,
    *,
    ignore: Iterable[str] = _IGNORED,
    unchanged: bool = True,
) -> list[Difference]:
    """Compare two SCIM resources attribute by attribute.

    Parameters
    ----------
    sent
        What a SCIM client sent (or believes the server holds).
    other
        The predicted or stored resource; None means absent (every attribute
        is then ``missing``).
    ignore
        Top-level attributes left out: by default ``id``, ``meta``,
        ``schemas``, ``password``, ``externalId`` (kept outside the user by
        FusionAuth) and ``groups`` (read-only).
    unchanged
        Also return the ``kept`` attributes.

    Returns
    -------
    list of Difference
        Sorted by path. An item of a multi-valued attribute that has no match
        on the other side gives one ``missing`` (or ``added``) entry, on its
        ``value``.

    Examples
    --------
    >>> a = {"emails": [{"value": "a@x", "type": "Work", "primary": True}]}
    >>> b = {"emails": [{"value": "a@x", "type": "work", "primary": True}]}
    >>> compare_resources(a, b, unchanged=False)
    []
    >>> [d.status for d in compare_resources({"active": "False"}, {"active": False})]
    ['changed_form']
    """
    ignored = tuple(ignore)
    rows = _compare_prepared(
        _prepare(_canonical_keys(sent), ignored),
        _prepare(_canonical_keys(other or {}), ignored),
    )
    rows.sort(key=_path_of_row)
    return [Difference(*row) for row in rows if unchanged or row[1] != "kept"]


def _path_of_row(row: tuple[str, str, Any, Any]) -> str:
    return row[0]


class _Prepared:
    """A resource with canonical keys, split once for any number of comparisons.

    ``multi``: the multi-valued attributes (``value or []``); ``flat``: the
    other leaves by path; ``manager_text``: the enterprise manager is a bare
    string; ``items``: flattened items, by ``id``, filled as they are needed.
    """

    __slots__ = ("multi", "flat", "manager_text", "items")

    def __init__(
        self, multi: dict[str, Any], flat: dict[str, Any], manager_text: bool
    ) -> None:
        self.multi = multi
        self.flat = flat
        self.manager_text = manager_text
        self.items: dict[int, dict[str, Any]] = {}


def _prepare(
    resource: dict[str, Any], ignored: tuple[str, ...] = _IGNORED
) -> _Prepared:
    """Split a resource whose keys are canonical (`_canonical_keys`)."""
    multi: dict[str, Any] = {}
    skip = set(ignored)
    for attribute in MULTI_VALUED:
        if attribute in resource and attribute not in skip:
            multi[attribute] = resource[attribute] or []
    skip.update(multi)
    flat: dict[str, Any] = {}
    _walk(resource, "", flat, skip)
    return _Prepared(multi, flat, _manager_is_text(resource))


def _flat_item(prepared: _Prepared, item: Mapping[str, Any]) -> dict[str, Any]:
    flat = prepared.items.get(id(item))
    if flat is None:
        flat = prepared.items[id(item)] = {}
        _walk(item, "", flat, None)
    return flat


_MANAGER_PATH = f"{ENTERPRISE}:manager.value"


def _compare_prepared(
    sent: _Prepared, other: _Prepared, positions: list[int] | None = None
) -> list[tuple[str, str, Any, Any]]:
    """Compare two prepared resources: ``(path, status, sent, other)`` rows.

    The rows come in the order of `compare_resources` before its sort by path.
    Items that share a type share a path: ``positions``, when given, receives
    for each row the position of its sent item in its attribute's list (-1 for
    a row outside a sent item), which tells such rows apart.
    """
    out: list[tuple[str, str, Any, Any]] = []
    multi_s, multi_o = sent.multi, other.multi

    if multi_s or multi_o:
        for attribute in MULTI_VALUED:
            items_s = multi_s.get(attribute, [])
            items_o = multi_o.get(attribute, [])
            if not isinstance(items_s, list) or not isinstance(items_o, list):
                continue
            if not items_s and not items_o:
                continue
            where = {id(item): i for i, item in enumerate(items_s)}
            for item_s, item_o in _match_items(attribute, items_s, items_o):
                key = _item_key(attribute, item_s if item_s is not None else item_o)
                if item_o is None:
                    out.append((f"{key}.value", "missing", item_s.get("value"), None))
                elif item_s is None:
                    out.append((f"{key}.value", "added", None, item_o.get("value")))
                else:
                    _compare_flat(
                        _flat_item(sent, item_s),
                        _flat_item(other, item_o),
                        f"{key}.",
                        out,
                    )
                if positions is not None:
                    position = where.get(id(item_s), -1)
                    positions.extend([position] * (len(out) - len(positions)))

    _compare_flat(sent.flat, other.flat, "", out)
    if positions is not None:
        positions.extend([-1] * (len(out) - len(positions)))
    if sent.manager_text != other.manager_text:
        out = [
            (row[0], "changed_form", row[2], row[3])
            if row[0] == _MANAGER_PATH and row[1] == "kept"
            else row
            for row in out
        ]
    return out


def _compare_flat(
    flat_s: Mapping[str, Any],
    flat_o: Mapping[str, Any],
    prefix: str,
    out: list[tuple[str, str, Any, Any]],
) -> None:
    append = out.append
    for key, value_s in flat_s.items():
        path = prefix + key
        if key not in flat_o:
            append((path, "missing", value_s, None))
            continue
        value_o = flat_o[key]
        if value_s == value_o and type(value_s) is type(value_o):
            append((path, "kept", value_s, value_o))
        else:
            append((path, _compare_values(path, value_s, value_o), value_s, value_o))
    for key, value_o in flat_o.items():
        if key not in flat_s:
            append((prefix + key, "added", None, value_o))


# -- the test bench ----------------------------------------------------------------


def bench_lambda(
    model: LambdaModel,
    payloads: Sequence[Mapping[str, Any]],
    *,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Show, for each payload, what is sent, stored and returned, side by side.

    Parameters
    ----------
    model
        The lambdas to try (e.g. a corrected request lambda).
    payloads
        SCIM payloads as an IdP sends them.
    labels
        A name per payload (default ``payload 1``, ``payload 2`` …).

    Returns
    -------
    pandas.DataFrame
        One row per payload and SCIM path: ``payload``, ``path``, ``sent``,
        ``stored`` (the FusionAuth user field the path lands in, as
        ``field=value``), ``returned`` and ``status`` (sent against returned,
        see `Difference`). A payload a lambda fails on gets one row with
        ``status`` ``"error"`` and the lambda's message in ``returned``; the
        other payloads are shown as usual.

    Raises
    ------
    scimtools.sandbox.LambdaError
        When the lambdas fail on every payload.

    Examples
    --------
    >>> with load_lambdas() as model:
    ...     bench = bench_lambda(model, [{"userName": "ada", "title": "Countess"}])
    >>> bench[["path", "sent", "returned", "status"]].values.tolist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [['active', None, True, 'added'], ['title', 'Countess', None, 'missing'],
     ['userName', 'ada', 'ada', 'kept']]
    """
    from scimtools.errors import InputError
    from scimtools.sandbox.lambdas import LambdaError

    payloads = list(payloads)
    for index, payload in enumerate(payloads):
        if not isinstance(payload, Mapping):
            raise InputError(
                f"payload #{index} is {type(payload).__name__}, not a SCIM user"
                " object; pass dicts"
            )
    payloads = [dict(p) for p in payloads]
    for payload in payloads:
        payload.setdefault("schemas", [USER_SCHEMA])
    labels = list(labels or [f"payload {i + 1}" for i in range(len(payloads))])
    if len(labels) != len(payloads):
        raise InputError(
            f"{len(labels)} label(s) for {len(payloads)} payload(s): give one label"
            " per payload, or none"
        )
    rows = []

    for label, payload, outcome in zip(
        labels, payloads, _run_each(model, payloads), strict=True
    ):
        if isinstance(outcome, LambdaError):
            rows.append(
                {
                    "payload": label,
                    "path": None,
                    "sent": None,
                    "stored": None,
                    "returned": outcome.detail,
                    "status": "error",
                }
            )
            continue
        user, scim = outcome
        stored = _flat_user(user)
        for diff in compare_resources(payload, scim):
            rows.append(
                {
                    "payload": label,
                    "path": diff.path,
                    "sent": _show(diff.sent),
                    "stored": _stored_field(stored, diff.sent, diff.other, diff.path),
                    "returned": _show(diff.other),
                    "status": diff.status,
                }
            )
    columns = ["payload", "path", "sent", "stored", "returned", "status"]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _run_each(
    model: LambdaModel, payloads: list[dict[str, Any]]
) -> list[tuple[dict, dict] | LambdaError]:
    """Each payload's stored user and returned resource, or the lambda's error.

    All payloads go through the lambdas together; when a lambda fails, each is
    run alone so that one bad payload does not hide what the others show.
    """
    from scimtools.sandbox.lambdas import LambdaError

    def run(part: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
        users = model.to_fusionauth(part)
        prefill = [{"externalId": p.get("externalId")} for p in part]
        return list(zip(users, model.to_scim(users, prefill=prefill), strict=True))

    try:
        return list(run(payloads))
    except LambdaError:
        if len(payloads) == 1:
            raise
    outcomes: list[tuple[dict, dict] | LambdaError] = []
    for payload in payloads:
        try:
            outcomes.extend(run([payload]))
        except LambdaError as error:
            outcomes.append(error)
    if all(isinstance(o, LambdaError) for o in outcomes):
        raise next(o for o in outcomes if isinstance(o, LambdaError))
    return outcomes


def _flat_user(user: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in user.items():
        if isinstance(value, Mapping):
            flat.update(_flat_user(value, f"{prefix}{key}."))
        elif not _blank(value) and key != "password":
            flat[f"{prefix}{key}"] = value
    return flat


_FIELD_HINTS = {
    "emails": "email",
    "phoneNumbers": "mobilePhone",
    "userName": "username",
}


def _stored_field(
    stored: Mapping[str, Any], sent: Any, returned: Any, path: str = ""
) -> Any:
    hint = _FIELD_HINTS.get(path.split("[")[0].split(".")[0])
    fields = sorted(stored.items(), key=lambda item: item[0] != hint)
    for wanted in (returned, sent):
        if _blank(wanted):
            continue
        for field, value in fields:
            if value == wanted or str(value) == str(wanted):
                return f"{field}={_show(value)}"
    return None


def _show(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value
