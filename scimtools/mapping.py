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
        from scimtools.inputs import JS_ADVICE, read_text

        sources = []
        for file in (Path(request), Path(response)):
            if not file.is_file():
                raise InputFileNotFoundError(
                    f"lambda file {file} does not exist; export the tenant's SCIM"
                    " lambdas from FusionAuth or use data/lambdas/"
                )
            sources.append(read_text(file, "lambda file", advice=JS_ADVICE))
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

    A filter's quoted values are JSON strings (RFC 7644 §3.4.2.2), so a ``]``
    or an escaped ``"`` inside the quotes does not end the filter.

    Examples
    --------
    >>> generic_path('emails[type eq "work"].value')
    'emails.value'
    >>> generic_path('emails[value eq "a]b@x.co"].value')
    'emails.value'
    """
    if "[" not in path:
        return path
    return _generic_path(path)


@functools.lru_cache(maxsize=65_536)
def _generic_path(path: str, quotes: bool = True) -> str:
    out, depth, quoted, escaped = [], 0, False, False
    for char in path:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif quotes and depth and char == '"':
            quoted = True
        elif char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    if quoted:  # an unclosed quote: read the brackets alone, as written
        return _generic_path(path, quotes=False)
    return "".join(out)


def _quoted(value: Any) -> str:
    """``value`` as a filter's string literal: a JSON string (RFC 7644 §3.4.2.2)."""
    return json.dumps(str(value), ensure_ascii=False)


def _item_key(
    attribute: str, item: Mapping[str, Any], *, with_value: bool = False
) -> str:
    """The filter that names ``item``: by type; by type and value if asked."""
    kind = item.get("type")
    if isinstance(kind, str) and kind:
        if with_value:
            value = _quoted(item.get("value"))
            return f"{attribute}[type eq {_quoted(kind.lower())} and value eq {value}]"
        return f"{attribute}[type eq {_quoted(kind.lower())}]"
    return f"{attribute}[value eq {_quoted(item.get('value'))}]"


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def flatten_resource(
    resource: Mapping[str, Any], *, ignore: Iterable[str] = _IGNORED
) -> dict[str, Any]:
    """Return a resource's leaf values keyed by SCIM path.

    Attribute names are spelled canonically whatever their case; items of
    multi-valued attributes are keyed by their ``type`` (lower case) or, when
    untyped, their value; items that share a type are all kept, keyed by type
    and value (``emails[type eq "work" and value eq "b@x.co"].value``); a
    bare-string enterprise manager is read as ``manager.value``; blank values
    are left out.

    Raises
    ------
    ValueError
        When two attributes flatten to one path with different values: names
        that differ only in case (``userName``, ``UserName``), or a dotted name
        next to a nested one (``{"a.b": {"c": 1}, "a": {"b.c": 2}}``).

    Examples
    --------
    >>> flatten_resource({"UserName": "ada", "name": {"givenName": "Ada"},
    ...                   "emails": [{"value": "a@x", "type": "Work"}]})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'userName': 'ada', 'name.givenName': 'Ada',
     'emails[type eq "work"].value': 'a@x', 'emails[type eq "work"].type': 'Work'}
    >>> list(flatten_resource({"emails": [{"value": "a@x", "type": "work"},
    ...                                   {"value": "b@x", "type": "work"}]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['emails[type eq "work" and value eq "a@x"].value',
     'emails[type eq "work" and value eq "a@x"].type',
     'emails[type eq "work" and value eq "b@x"].value',
     'emails[type eq "work" and value eq "b@x"].type']
    """
    flat: dict[str, Any] = {}
    _walk(resource, "", flat, frozenset(ignore), strict=True)
    return flat


def _collide(path: str, strict: bool) -> None:
    """Two attributes flatten to ``path`` with different values."""
    if strict:
        raise ValueError(
            f"two attributes flatten to the path {path!r} with different values:"
            " names that differ only in case, or a dotted name next to a nested"
            " one; rename one of them"
        )
    logger.warning(
        "Two attributes flatten to %s with different values; the later one is compared",
        path,
    )


def _walk(
    node: Mapping[str, Any],
    prefix: str,
    flat: dict[str, Any],
    skip: frozenset[str] | set[str] | None,
    strict: bool = False,
) -> None:
    """Add the leaves of ``node`` to ``flat``; ``skip``: top-level names left out.

    A path met twice with different values raises (``strict``) or is logged.
    """
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
            if path in flat and flat[path] != value:
                _collide(path, strict)
            flat[path] = value
            continue
        is_mapping = kind is dict or isinstance(value, Mapping)
        if key == ENTERPRISE and is_mapping:
            _walk(_manager_object(value), f"{ENTERPRISE}:", flat, None, strict)
        elif key in _MULTI and isinstance(value, list):
            _walk_items(path, value, flat, strict)
        elif is_mapping:
            _walk(value, f"{path}.", flat, None, strict)
        else:
            if path in flat and flat[path] != value:
                _collide(path, strict)
            flat[path] = value


def _walk_items(
    path: str, items: list[Any], flat: dict[str, Any], strict: bool
) -> None:
    """`_walk` for the items of a multi-valued attribute; none is overwritten."""
    keys = [_item_key(path, item) if _is_mapping(item) else None for item in items]
    shared = {key for key in keys if key is not None and keys.count(key) > 1}

    for item, key in zip(items, keys, strict=True):
        if key is not None:
            if key in shared:
                key = _item_key(path, item, with_value=True)
            _walk(item, key + ".", flat, None, strict)
        elif not _blank(item):
            leaf = f"{path}[value eq {_quoted(item)}].value"
            if leaf in flat and flat[leaf] != item:
                _collide(leaf, strict)
            flat[leaf] = item


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
        ``stored`` (the FusionAuth user fields the request lambda writes a sent
        path into, or the response lambda renders a returned-only path from, as
        ``field=value``, comma-separated; None when no field holds it: found by
        running the lambda again with that one value changed), ``returned``
        and ``status`` (sent against returned, see `Difference`). That costs
        one more lambda run per sent and per stored value, so the bench is for a
        handful of payloads. A payload a lambda fails on gets one row with
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
        written = _written_fields(model, payload, user)
        rendered = _rendered_fields(model, payload, user, scim)
        for diff in compare_resources(payload, scim):
            if diff.sent is not None:
                fields = written.get((diff.path, _show(diff.sent)))
            else:
                fields = rendered.get(diff.path)
            rows.append(
                {
                    "payload": label,
                    "path": diff.path,
                    "sent": _show(diff.sent),
                    "stored": ", ".join(fields) if fields else None,
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

    Raises the error when the lambdas fail on every payload.
    """
    from scimtools.sandbox.lambdas import LambdaError

    def run(part: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
        users = model.to_fusionauth(part)
        prefill = [{"externalId": p.get("externalId")} for p in part]
        return list(zip(users, model.to_scim(users, prefill=prefill), strict=True))

    outcomes = _each_or_error(run, payloads)
    errors = [o for o in outcomes if isinstance(o, LambdaError)]
    if len(errors) == len(outcomes) and errors:
        raise errors[0]
    return outcomes


def _run_or_skip(convert: Any, docs: list[Any]) -> list[Any]:
    """``convert(docs)``, or one by one when a lambda fails (None for a failure)."""
    from scimtools.sandbox.lambdas import LambdaError

    return [
        None if isinstance(o, LambdaError) else o for o in _each_or_error(convert, docs)
    ]


def _each_or_error(convert: Any, docs: list[Any]) -> list[Any]:
    """``convert(docs)``; when a lambda fails, each doc alone, its error in its place.

    All docs go through the lambdas together first; one by one only then, so
    that one bad doc does not hide what the others show.
    """
    from scimtools.sandbox.lambdas import LambdaError

    try:
        return list(convert(docs))
    except LambdaError:
        pass
    out: list[Any] = []
    for doc in docs:
        try:
            out.extend(convert([doc]))
        except LambdaError as error:
            out.append(error)
    return out


def _leaves(node: Any, location: tuple[Any, ...] = ()) -> Iterable[tuple[tuple, Any]]:
    """The scalar leaves of a JSON document as ``(location, value)`` pairs."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*location, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*location, index))
    elif node is not None and not _blank(node):
        yield location, node


def _replaced(doc: Any, location: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with the leaf at ``location`` replaced by ``value``."""
    if not location:
        return value
    head, rest = location[0], location[1:]
    copy: Any = list(doc) if isinstance(doc, list) else dict(doc)
    copy[head] = _replaced(doc[head], rest, value)
    return copy


def _probe(value: Any, marker: str) -> Any:
    """A value of the same kind as ``value`` that is told apart from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return f"{marker}{value}"  # the original text keeps formats (a@b) valid


def _carries(value: Any, probe: Any, marker: str) -> bool:
    """Whether a stored or returned ``value`` holds the ``probe`` sent in."""
    if isinstance(probe, str):
        return marker.lower() in str(value).lower()
    return value == probe or str(value).lower() == str(probe).lower()


def _field_name(location: tuple[Any, ...]) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name.lstrip(".")


def _markers(doc: Any, count: int) -> list[str]:
    text = json.dumps(doc, default=str).lower()
    tag = "zqx"
    while tag in text:
        tag += "q"
    return [f"{tag}{index}{tag}" for index in range(count)]


def _written_fields(
    model: LambdaModel, payload: Mapping[str, Any], user: Mapping[str, Any]
) -> dict[tuple[str, Any], list[str]]:
    """(SCIM path, value sent) -> the user fields the request lambda writes it into.

    Each sent leaf is replaced in turn by a probe (a marked text, a flipped
    boolean, a number plus one) and the request lambda runs again: a field that
    then holds the probe is where the path is stored. A field that merely
    changes (the email that a ``primary`` flag selects) is not.
    """
    ignored = {name.lower() for name in _IGNORED}
    leaves = [
        (location, value)
        for location, value in _leaves(payload)
        if str(location[0]).lower() not in ignored
    ]
    markers = _markers(payload, len(leaves))
    probes = [_probe(value, m) for (_, value), m in zip(leaves, markers, strict=True)]
    variants = [
        _replaced(payload, location, probe)
        for (location, _), probe in zip(leaves, probes, strict=True)
    ]
    users = _run_or_skip(model.to_fusionauth, variants)
    base = dict(_leaves(_stored_user(user)))
    fields: dict[str, list[str]] = {}

    for variant, other, probe, marker in zip(
        variants, users, probes, markers, strict=True
    ):
        if other is None:
            continue
        written = [
            f"{_field_name(location)}={_show(base.get(location))}"
            for location, value in _leaves(_stored_user(other))
            if location in base and _carries(value, probe, marker)
        ]
        if not written:
            continue
        for diff in compare_resources(payload, variant, unchanged=False):
            if diff.status != "added":
                # Items of one type share a path: the value sent tells them apart.
                known = fields.setdefault((diff.path, _show(diff.sent)), [])
                known.extend(f for f in written if f not in known)
    return fields


def _rendered_fields(
    model: LambdaModel,
    payload: Mapping[str, Any],
    user: Mapping[str, Any],
    scim: Mapping[str, Any],
) -> dict[str, list[str]]:
    """SCIM path returned -> the user fields the response lambda renders it from.

    The same probes as `_written_fields`, on the stored user and the response
    lambda; for the paths that come back without being sent.
    """
    stored = _stored(user)
    leaves = list(_leaves(_stored_user(stored)))
    markers = _markers(stored, len(leaves))
    probes = [_probe(value, m) for (_, value), m in zip(leaves, markers, strict=True)]
    variants = [
        _replaced(stored, location, probe)
        for (location, _), probe in zip(leaves, probes, strict=True)
    ]
    prefill = [{"externalId": payload.get("externalId")}] * len(variants)
    scims = _run_or_skip(
        lambda users: model.to_scim(users, prefill=prefill[: len(users)]), variants
    )
    fields: dict[str, list[str]] = {}

    for (location, value), other, probe, marker in zip(
        leaves, scims, probes, markers, strict=True
    ):
        if other is None:
            continue
        for diff in compare_resources(scim, other, unchanged=False):
            if diff.status != "missing" and _carries(diff.other, probe, marker):
                known = fields.setdefault(diff.path, [])
                field = f"{_field_name(location)}={_show(value)}"
                if field not in known:
                    known.append(field)
    return fields


def _stored_user(user: Mapping[str, Any]) -> dict[str, Any]:
    """The user without its password, which FusionAuth never shows."""
    return {k: v for k, v in user.items() if k != "password"}


def _show(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value
