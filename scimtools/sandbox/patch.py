"""Apply a SCIM PATCH request to a rendered resource, as FusionAuth does.

FusionAuth does not check a PATCH against the SCIM schema. It turns each SCIM
operation into RFC 6902 JSON Patch operations on the SCIM JSON that the response
lambda rendered, applies them, and hands the result to the request lambda, which
keeps what it maps and drops the rest (fusionauth-scim.md §4, "PATCH mechanics"
and "Net effect"). This module does the first two steps on plain dicts:

- ``name.givenName`` becomes ``/name/givenName``; a schema URN prefix becomes
  its own member (``/urn:...:User/manager``).
- A path naming an array of the current resource appends (``add``, one
  operation per element of an array value) or is replaced whole (``replace``).
- A value-filter path (``emails[type eq "work"].value``) is resolved against the
  current resource, one operation per matching element; no match drops the
  operation silently.
- ``remove`` with a value removes the elements whose attribute named by the
  value's *first* key equals it, highest index first, after the other operations.
- No path: ``add`` becomes one operation on ``/`` (the member named ``""``, per
  RFC 6901), any other op one operation per top-level key of an object value.

How the JSON Patch is applied is inferred, not documented: ``add`` and
``replace`` set an object member whether it exists or not, creating missing
parent objects (Entra replaces ``name.familyName`` on users the response lambda
renders without a name), and ``remove`` of a missing member does nothing. A
missing array index, or a parent that is a string or number, is an error (400
``[invalid]patch``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from scim2_models.path.expressions import (
    CompareOperator,
    Comparison,
    FilterNode,
    Present,
)

from .filters import FilterError, parse_filter
from .store import BadRequestError

__all__ = ["PATCH_URN", "apply_patch", "to_json_patch"]

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

_OPS = ("add", "remove", "replace")
_FILTER_PATH = re.compile(r"(.*)\[(.*)](.*)", re.S)
_SCHEMA_PATH = re.compile(r"^/?(.+:)?([^:]*)$", re.S)
_MISSING = object()


class _PatchFailed(Exception):
    """A JSON Patch operation could not be applied."""


def _invalid_patch() -> BadRequestError:
    return BadRequestError(
        "Request failed, see errors for additional details.",
        general_errors=[
            {"code": "[invalid]patch", "message": "Invalid SCIM patch request."}
        ],
        field_errors={},
    )


def _schemas_error(code: str, message: str) -> BadRequestError:
    return BadRequestError(
        "Request failed, see errors for additional details.",
        field_errors={"schemas": [{"code": code, "message": message}]},
    )


def _check_request(body: Any) -> list[dict[str, Any]]:
    """Return the operations of a PatchOp body, op names in lower case."""
    if not isinstance(body, dict):
        raise BadRequestError(
            "Request failed, see errors for additional details.",
            general_errors=[{"code": "[invalid]", "message": "Your JSON was invalid"}],
            field_errors={},
        )
    schemas = body.get("schemas")
    if not schemas:
        raise _schemas_error(
            "[missing]schemas", "You must specify the [schemas] property."
        )
    if schemas != [PATCH_URN]:
        raise _schemas_error(
            "[invalid]schemas", f"The [schemas] property must be [{PATCH_URN}]."
        )

    operations = body.get("Operations")
    if not isinstance(operations, list) or not all(
        isinstance(op, dict) for op in operations
    ):
        raise _invalid_patch()
    checked = []
    for operation in operations:
        # Op names bind case-insensitively (Entra sends Add, Remove, Replace);
        # anything else binds to null and the JSON Patch cannot be applied.
        op = operation.get("op")
        if not isinstance(op, str) or op.lower() not in _OPS:
            raise _invalid_patch()
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise _invalid_patch()
        checked.append({**operation, "op": op.lower()})
    return checked


# --- JSON Pointer (RFC 6901) -------------------------------------------------


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _PatchFailed(pointer)
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(array: list[Any], token: str, *, extra: int = 0) -> int:
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _PatchFailed(token)
    index = int(token)
    if index >= len(array) + extra:
        raise _PatchFailed(token)
    return index


def _resolve(doc: Any, pointer: str) -> Any:
    """Return the value at ``pointer`` or ``_MISSING``."""
    node = doc
    try:
        for token in _tokens(pointer):
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list):
                node = node[_index(node, token)]
            else:
                return _MISSING
    except _PatchFailed:
        return _MISSING
    return node


def _parent(doc: dict[str, Any], tokens: list[str], *, create: bool) -> Any:
    """Return the container that holds the last token, creating objects if asked."""
    node: Any = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node and create:
                node[token] = {}
            node = node.get(token, _MISSING)
        elif isinstance(node, list):
            node = node[_index(node, token)]
        else:
            return _MISSING
    return node


def _apply_one(doc: dict[str, Any], op: str, pointer: str, value: Any) -> None:
    tokens = _tokens(pointer)
    if not tokens:
        raise _PatchFailed(pointer)  # the root itself; no SCIM path leads here
    parent = _parent(doc, tokens, create=op != "remove")
    last = tokens[-1]

    if isinstance(parent, dict):
        if op == "remove":
            parent.pop(last, None)
        else:
            parent[last] = value
    elif isinstance(parent, list):
        if op == "add":
            where = len(parent) if last == "-" else _index(parent, last, extra=1)
            parent.insert(where, value)
        elif op == "replace":
            parent[_index(parent, last)] = value
        else:
            del parent[_index(parent, last)]
    elif op != "remove" or parent is not _MISSING:
        raise _PatchFailed(pointer)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# --- value filters -------------------------------------------------------------


def _as_text(node: Any) -> str:
    """Render a JSON value as Jackson's ``JsonNode.asText()`` does."""
    if node is _MISSING or isinstance(node, dict | list):
        return ""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _matches(node: FilterNode, element: Any) -> bool:
    """Match one array element as FusionAuth's patch filter matcher does.

    Only a single comparison or presence test can match; ``and``/``or``/``not``
    and nested value paths never do. Text comparisons are case-sensitive.
    """
    if not isinstance(node, Present | Comparison):
        return False
    found = _resolve(element, "/" + str(node.attr_path).replace(".", "/"))
    if isinstance(node, Present):
        return found is not _MISSING

    wanted = node.value
    if wanted is None:
        equal = element is None
    elif isinstance(wanted, bool):
        equal = isinstance(found, bool) and found is wanted
    elif isinstance(wanted, int | float):
        equal = isinstance(found, int | float) and found == wanted
    else:
        equal = _as_text(found) == str(wanted)

    text = _as_text(found)
    if node.op == CompareOperator.eq:
        return equal
    if node.op == CompareOperator.ne:
        return not equal
    if node.op == CompareOperator.pr:
        return True
    if not isinstance(wanted, str):
        return False
    if node.op == CompareOperator.co:
        return wanted in text
    if node.op == CompareOperator.sw:
        return text.startswith(wanted)
    if node.op == CompareOperator.ew:
        return text.endswith(wanted)
    # gt/ge/lt/le on text compare the filter value with the attribute, in
    # FusionAuth's order (value > attribute for gt).
    if node.op == CompareOperator.gt:
        return wanted > text
    if node.op == CompareOperator.ge:
        return wanted > text or equal
    if node.op == CompareOperator.lt:
        return wanted < text
    return wanted < text or equal


# --- SCIM operations -> JSON Patch ----------------------------------------------


def _scim_pointer(path: str) -> str:
    """Turn a SCIM attribute path into a JSON Pointer (URN prefix kept whole)."""
    match = _SCHEMA_PATH.match(path)
    if match is None:
        raise _invalid_patch()
    schema, rest = match.groups()
    pointer = "/"
    if schema:
        pointer += schema[:-1] + "/"
    return pointer + rest.replace(".", "/")


def to_json_patch(
    current: dict[str, Any], operations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Convert checked SCIM operations to JSON Patch operations on ``current``.

    Parameters
    ----------
    current
        The resource as the response lambda renders it; paths with value
        filters and array targets are resolved against it.
    operations
        SCIM PATCH operations with lower-case op names.

    Returns
    -------
    list of dict
        RFC 6902 operations (``op``, ``path`` and, unless a removal, ``value``).

    Examples
    --------
    >>> to_json_patch({"members": [{"value": "a"}]},
    ...               [{"op": "add", "path": "members", "value": [{"value": "b"}]}])
    [{'op': 'add', 'path': '/members/-', 'value': {'value': 'b'}}]
    """
    converted: list[dict[str, Any]] = []
    for operation in operations:
        op, path = operation["op"], operation.get("path")
        has_value = "value" in operation
        value = operation.get("value")

        def emit(
            pointer: str, item: Any, op: str = op, carry: bool = has_value
        ) -> None:
            converted.append(
                {"op": op, "path": pointer, "value": item}
                if carry
                else {"op": op, "path": pointer}
            )

        if path is None:
            if op != "add" and isinstance(value, dict):
                for key, item in value.items():
                    emit("/" + key, item)
            else:
                emit("/", value)
            continue

        filtered = _FILTER_PATH.fullmatch(path)
        if filtered:
            attr, text, sub = filtered.groups()
            try:
                node = parse_filter(text)
            except FilterError as exc:
                raise _invalid_patch() from exc
            base = "/" + attr.replace(".", "/")
            array = _resolve(current, base)
            if isinstance(array, list):
                for i, element in enumerate(array):
                    if _matches(node, element):
                        emit(f"{base}/{i}{sub.replace('.', '/')}", value)
            continue

        pointer = _scim_pointer(path)
        if not isinstance(_resolve(current, pointer), list):
            emit(pointer, value)
        elif isinstance(value, list):
            if op == "replace":
                emit(pointer, value)
            else:
                target = pointer + "/-" if op == "add" else pointer
                for item in value:
                    emit(target, item)
        # An array target with a value that is not an array: no operation.

    return _expand_valued_removes(current, converted)


_ELEMENT = re.compile(r"^(/.+)/(\d+)$")


def _expand_valued_removes(
    current: dict[str, Any], converted: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Turn each remove-with-value into removals of the matching elements.

    The value's first key names the compared attribute, so Entra's
    ``{"$ref": null, "value": "<id>"}`` compares ``$ref`` with the text "null".
    Removals of elements (these and those of value-filter paths) go last,
    sorted by path and then highest index first.
    """
    kept, removals = [], []
    for entry in converted:
        element = _ELEMENT.match(entry["path"]) if entry["op"] == "remove" else None
        if element is not None and "value" not in entry:
            # A value-filter path resolved to an element: removed with the others,
            # highest index first, so that no removal shifts another's element
            # (before 1.52.1 the wrong members went, #2834).
            removals.append((element.group(1), int(element.group(2))))
            continue
        if entry["op"] != "remove" or "value" not in entry:
            kept.append(entry)
            continue
        array = _resolve(current, entry["path"])
        value = entry["value"]
        if not isinstance(array, list) or not isinstance(value, dict) or not value:
            continue
        key = next(iter(value))
        wanted = _as_text(value[key])
        for i, element in enumerate(array):
            if _as_text(_resolve(element, "/" + _escape(key))) == wanted:
                removals.append((entry["path"], i))

    removals.sort(key=lambda removal: (removal[0], -removal[1]))
    return kept + [{"op": "remove", "path": f"{p}/{i}"} for p, i in removals]


def apply_patch(resource: str, current: dict[str, Any], body: Any) -> dict[str, Any]:
    """Return the SCIM JSON of ``current`` after the PATCH request ``body``.

    The result still has to go through the request lambda: attributes that the
    lambda does not map (a top-level ``manager``, ``roles``) are lost there.

    Parameters
    ----------
    resource
        ``"User"``, ``"EnterpriseUser"`` or ``"Group"``; the mechanics are the
        same for all three.
    current
        The resource as the response lambda renders it.
    body
        The PatchOp request.

    Returns
    -------
    dict
        The patched SCIM JSON, for the request lambda.

    Raises
    ------
    BadRequestError
        ``[missing]schemas``, ``[invalid]schemas``, or ``[invalid]patch`` for an
        unknown op, a malformed path or filter, or an operation whose parent or
        array index does not exist.

    Examples
    --------
    >>> body = {"schemas": [PATCH_URN],
    ...         "Operations": [{"op": "Add", "path": "manager", "value": "x"}]}
    >>> apply_patch("User", {"userName": "bjensen"}, body)
    {'userName': 'bjensen', 'manager': 'x'}
    """
    operations = _check_request(body)
    patched = json.loads(json.dumps(current))

    for entry in to_json_patch(current, operations):
        try:
            _apply_one(patched, entry["op"], entry["path"], entry.get("value"))
        except _PatchFailed as exc:
            raise _invalid_patch() from exc

    if "externalId" in current and "externalId" not in patched:
        patched["externalId"] = None
    return patched
