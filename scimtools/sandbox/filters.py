"""FusionAuth's SCIM filter subset: syntax checks, SQL translation, evaluation.

scim2-models parses the filter (RFC 7644 §3.4.2.2). On top of it, FusionAuth's
parser recognises operators and keywords in lower case only and rejects a
sub-attribute after a value path (``emails[type eq "work"].value``). Filters on
the columns the store indexes become SQL; the rest are evaluated on the rendered
SCIM JSON.
"""

from __future__ import annotations

import re
from typing import Any

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path.expressions import (
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

__all__ = ["FilterError", "Query", "parse_filter"]

_KEYWORDS = {"eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le"}
_LOGICAL = {"and", "or", "not", "true", "false", "null"}
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z][\w:.$-]*|\]\.|.', re.S)


class FilterError(ValueError):
    """The filter is not one FusionAuth's parser accepts; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _check_fusionauth_syntax(text: str) -> None:
    """Reject what FusionAuth's parser rejects and scim2-models accepts."""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == "].":
            raise FilterError(f"Invalid state transition at [{text[: match.end()]}]")
        lower = token.lower()
        if lower != token and lower in _KEYWORDS:
            raise FilterError(f"No comparison operator for [{text}]")
        if lower != token and lower in _LOGICAL:
            raise FilterError(f"[{token}] is not a valid comparison value")


def parse_filter(text: str) -> FilterNode:
    """Parse ``text`` as FusionAuth would, returning the scim2-models tree.

    Raises
    ------
    FilterError
        When FusionAuth would refuse the filter; ``detail`` carries a text in
        the style of FusionAuth's parser.

    Examples
    --------
    >>> parse_filter('userName eq "bjensen"').op
    <CompareOperator.eq: 'eq'>
    >>> parse_filter('userName EQ "x"')
    Traceback (most recent call last):
    ...
    scimtools.sandbox.filters.FilterError: No comparison operator for [userName EQ "x"]
    """
    _check_fusionauth_syntax(text)
    try:
        return ScimFilter(text).ast
    except InvalidFilterException as exc:
        raise FilterError(f"Invalid filter [{text}]: {exc.detail}") from exc


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _like_prefix(value: str) -> tuple[str, str]:
    """Return the [low, high) range of strings that start with ``value``."""
    return value, value + "\U0010ffff"


class Query:
    """A parsed filter bound to a resource kind (``"user"`` or ``"group"``).

    ``sql`` is a WHERE clause over the store's table (with ``params``) when
    every node has a column, else None and :meth:`matches` evaluates the
    rendered JSON. ``single`` is True for a bare ``userName eq``, which
    FusionAuth answers with at most one user.
    """

    def __init__(self, text: str, kind: str, *, username_matches_email: bool) -> None:
        self.text = text
        self.kind = kind
        self.username_matches_email = username_matches_email
        self.ast = parse_filter(text)
        self.single = (
            kind == "user"
            and isinstance(self.ast, Comparison)
            and self.ast.attr_path.attr.lower() == "username"
            and self.ast.attr_path.sub_attr is None
            and self.ast.op == CompareOperator.eq
        )
        self.params: list[Any] = []
        self.sql = self._sql(self.ast)

    # --- SQL -------------------------------------------------------------

    def _sql(self, node: FilterNode) -> str | None:
        if isinstance(node, LogicalExpr):
            parts = [self._sql(term) for term in node.terms]
            if any(part is None for part in parts):
                return None
            joiner = " AND " if node.op == LogicalOperator.and_ else " OR "
            return "(" + joiner.join(parts) + ")"  # type: ignore[arg-type]
        if isinstance(node, Not):
            inner = self._sql(node.expr)
            return None if inner is None else f"NOT ({inner})"
        if isinstance(node, Comparison):
            return self._sql_comparison(node)
        if isinstance(node, ValuePath):
            return self._sql_value_path(node)
        return None

    def _column(self, attr: str, sub: str | None) -> str | None:
        name = attr.lower() if sub is None else f"{attr}.{sub}".lower()
        if self.kind == "user":
            return {
                "username": "username_lower",
                "externalid": "external_id",
                "id": "id",
                "active": "active",
            }.get(name)
        return {
            "displayname": "name_lower",
            "externalid": "external_id",
            "id": "id",
        }.get(name)

    def _compare(self, column: str, op: CompareOperator, value: Any) -> str | None:
        if column == "active":
            if op not in (CompareOperator.eq, CompareOperator.ne) or not isinstance(
                value, bool
            ):
                return None
            self.params.append(int(value))
            return f"active {'=' if op == CompareOperator.eq else '<>'} ?"
        if not isinstance(value, str):
            return None
        if column.endswith("_lower"):
            value = value.lower()
        if op == CompareOperator.eq:
            self.params.append(value)
            return f"{column} = ?"
        if op == CompareOperator.ne:
            self.params.append(value)
            return f"({column} IS NULL OR {column} <> ?)"
        if op == CompareOperator.sw:
            self.params.extend(_like_prefix(value))
            return f"({column} >= ? AND {column} < ?)"
        if op == CompareOperator.co:
            self.params.append(value)
            return f"instr({column}, ?) > 0"
        if op == CompareOperator.ew and value:
            self.params.extend([len(value), value])
            return f"({column} IS NOT NULL AND substr({column}, -?) = ?)"
        return None

    def _sql_comparison(self, node: Comparison) -> str | None:
        path = node.attr_path
        if path.uri is not None:
            return None
        if (
            self.kind == "user"
            and path.attr.lower() == "username"
            and path.sub_attr is None
            and node.op == CompareOperator.eq
            and isinstance(node.value, str)
            and self.username_matches_email
        ):
            # FusionAuth searches username OR email for userName eq.
            self.params.extend([node.value.lower(), node.value.lower()])
            return "(username_lower = ? OR email_lower = ?)"
        if self.kind == "user" and path.attr.lower() == "emails":
            if path.sub_attr in (None, "value"):
                return self._sql_email(node.op, node.value)
            return None
        column = self._column(path.attr, path.sub_attr)
        if column is None:
            return None
        if column == "external_id" and node.op != CompareOperator.eq:
            return None
        return self._compare(column, node.op, node.value)

    def _sql_email(self, op: CompareOperator, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        if op in (CompareOperator.co, CompareOperator.ew):
            # FusionAuth turns these into searches that find nothing (#3195).
            return "0"
        return self._compare("email_lower", op, value)

    def _sql_value_path(self, node: ValuePath) -> str | None:
        if self.kind != "user" or node.attr_path.attr.lower() != "emails":
            return None
        inner = node.val_filter
        if (
            isinstance(inner, Comparison)
            and inner.attr_path.attr.lower() == "value"
            and inner.attr_path.sub_attr is None
        ):
            return self._sql_email(inner.op, inner.value)
        return None

    # --- evaluation on rendered SCIM JSON ---------------------------------

    def matches(self, doc: dict[str, Any]) -> bool:
        """Tell whether the rendered resource ``doc`` matches the filter."""
        return self._eval(self.ast, doc)

    def _eval(self, node: FilterNode, doc: dict[str, Any]) -> bool:
        if isinstance(node, LogicalExpr):
            results = (self._eval(term, doc) for term in node.terms)
            return all(results) if node.op == LogicalOperator.and_ else any(results)
        if isinstance(node, Not):
            return not self._eval(node.expr, doc)
        if isinstance(node, Present):
            values = _values(doc, node.attr_path)
            return any(v not in (None, "", [], {}) for v in values)
        if isinstance(node, Comparison):
            return self._eval_comparison(node, doc)
        if isinstance(node, ValuePath):
            if node.attr_path.attr.lower() == "emails" and _has_op(
                node.val_filter, (CompareOperator.co, CompareOperator.ew)
            ):
                return False
            items = _values(doc, node.attr_path)
            return any(
                isinstance(item, dict) and self._eval(node.val_filter, item)
                for item in items
            )
        return False

    def _eval_comparison(self, node: Comparison, doc: dict[str, Any]) -> bool:
        path = node.attr_path
        attr = path.attr.lower()
        if (
            self.kind == "user"
            and attr == "username"
            and path.uri is None
            and node.op == CompareOperator.eq
            and self.username_matches_email
            and isinstance(node.value, str)
        ):
            emails = [e.get("value") for e in doc.get("emails") or [] if e]
            if any(_lower(e) == node.value.lower() for e in emails):
                return True
        if attr == "emails" and node.op in (CompareOperator.co, CompareOperator.ew):
            return False
        values = _values(doc, path)
        if values and all(isinstance(v, dict) for v in values):
            values = [v.get("value") for v in values]
        if node.op == CompareOperator.ne:
            return not any(_compare(v, CompareOperator.eq, node.value) for v in values)
        return any(_compare(v, node.op, node.value) for v in values)


def _has_op(node: FilterNode, ops: tuple[CompareOperator, ...]) -> bool:
    if isinstance(node, Comparison):
        return node.op in ops
    if isinstance(node, LogicalExpr):
        return any(_has_op(term, ops) for term in node.terms)
    if isinstance(node, Not):
        return _has_op(node.expr, ops)
    return False


def _get(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


def _values(doc: dict[str, Any], path: Any) -> list[Any]:
    """Return the values at an attribute path, flattening multi-valued ones."""
    base = _get(doc, path.uri) if path.uri else doc
    value = _get(base, path.attr)
    values = value if isinstance(value, list) else [value]
    if path.sub_attr is not None:
        values = [_get(v, path.sub_attr) for v in values]
        values = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return [v for v in values if v is not None]


def _compare(left: Any, op: CompareOperator, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if op == CompareOperator.eq:
        return left == right
    if right is None:
        return False
    if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
        if not (isinstance(left, str) and isinstance(right, str)):
            return False
        if op == CompareOperator.co:
            return right in left
        if op == CompareOperator.sw:
            return left.startswith(right)
        return left.endswith(right)
    try:
        if op == CompareOperator.gt:
            return left > right
        if op == CompareOperator.ge:
            return left >= right
        if op == CompareOperator.lt:
            return left < right
        if op == CompareOperator.le:
            return left <= right
    except TypeError:
        return False
    return False
