"""The bad-input corpus: each malformed input and the error it must give.

Inputs that are files live in tests/bad_inputs/; server answers are built here
and served through httpx.MockTransport; big inputs (a 20 MB cell, a 9,000-
resource page, a 20 MB body) are generated at test time. Every case must raise
a scimtools error (a SCIMToolsError, or ValueError for a bad argument) whose
message names the input, never a library's own exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from scimtools.attribution import read_client_view
from scimtools.audit import load_idp_views
from scimtools.client import SCIMClient
from scimtools.errors import (
    BadRequestError,
    BadResponseError,
    IncompleteExportError,
    InputError,
    InputFileNotFoundError,
    SCIMToolsError,
    ServerUnavailableError,
    UnauthorizedError,
)
from scimtools.imports import read_source, validate_import
from scimtools.mapping import DEFAULT_LAMBDA_DIR, LambdaModel
from scimtools.plan import PlanError, read_plan, validate_plan
from scimtools.sandbox.lambdas import LambdaError

CORPUS = Path(__file__).parent / "bad_inputs"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
MAPPING = {"fields": {"login": "userName", "mail": "email"}}


@dataclass(frozen=True)
class Case:
    """One malformed input: how to feed it, the error and words it must show."""

    id: str
    run: Callable[[], Any]
    error: type[BaseException]
    names: tuple[str, ...]


# -- server answers ----------------------------------------------------------------


def _user(n: int) -> dict[str, Any]:
    return {"schemas": [USER], "id": f"u{n}", "userName": f"user{n}"}


def _serve(*answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
    """A client whose server gives ``answers`` in turn (the last one repeats)."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(request)
        return answer(request) if callable(answer) else answer

    return SCIMClient(
        "https://scim.example.com/api/scim/resource/v2",
        token="opaque-test-token",
        transport=httpx.MockTransport(handler),
        max_retries=0,
        progress=False,
        sleep=lambda _: None,
    )


def _export(*answers: Any) -> Callable[[], Any]:
    def run() -> Any:
        with _serve(*answers) as client:
            return client.export("Users", max_workers=1)

    return run


def _get(*answers: Any) -> Callable[[], Any]:
    def run() -> Any:
        with _serve(*answers) as client:
            return client.get("Users", "u1")

    return run


def _listing(resources: Any, total: Any = "absent", **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"schemas": [LIST], "Resources": resources, **extra}
    if total != "absent":
        body["totalResults"] = total
    return httpx.Response(200, json=body)


def _text(status: int, text: str, kind: str | None) -> httpx.Response:
    headers = {"Content-Type": kind} if kind else {}
    return httpx.Response(status, content=text.encode(), headers=headers)


PROXY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad"
    " Gateway</h1></center><hr><center>nginx</center></body></html>"
)
LOGIN_PAGE = "<!doctype html><html><body><form action='/login'>Sign in</form>"


def _huge_body(_: httpx.Request) -> httpx.Response:
    return _text(200, '{"Resources": [' + "x" * 20_000_000, "application/json")


SERVER = [
    Case(
        "resources-is-an-object",
        _export(_listing({"id": "u1"}, 1)),
        BadResponseError,
        ("GET /api/scim/resource/v2/Users", "Resources is a JSON dict"),
    ),
    Case(
        "resources-is-a-string",
        _export(_listing("u1,u2", 2)),
        BadResponseError,
        ("GET /api/scim/resource/v2/Users", "Resources is a JSON str"),
    ),
    Case(
        "resources-holds-a-string",
        _export(_listing([_user(1), "u2"], 2)),
        BadResponseError,
        ("/Users", "resource 2 is a JSON str"),
    ),
    Case(
        "resource-without-id",
        _export(_listing([_user(1), {"userName": "ghost"}], 2)),
        BadResponseError,
        ("/Users", "resource 2 ('ghost') has no id"),
    ),
    Case(
        "resource-with-null-id",
        _export(_listing([{**_user(1), "id": None}], 1)),
        BadResponseError,
        ("/Users", "resource 1 ('user1') has no id"),
    ),
    Case(
        "html-proxy-page-with-200",
        _export(_text(200, PROXY_PAGE, "text/html")),
        BadResponseError,
        ("/Users", "text/html", "proxy", "base URL"),
    ),
    Case(
        "html-login-page-on-get",
        _get(_text(200, LOGIN_PAGE, "text/html; charset=utf-8")),
        BadResponseError,
        ("GET /api/scim/resource/v2/Users/u1", "text/html"),
    ),
    Case(
        "json-as-text-plain",
        _export(_text(200, json.dumps({"Resources": []}), "text/plain")),
        BadResponseError,
        ("/Users", "Content-Type text/plain"),
    ),
    Case(
        "xml-body",
        _export(_text(200, "<ListResponse/>", "application/xml")),
        BadResponseError,
        ("/Users", "application/xml"),
    ),
    Case(
        "200-carrying-a-scim-401",
        _export(
            httpx.Response(
                200,
                json={"schemas": [ERROR], "status": "401", "detail": "token expired"},
            )
        ),
        UnauthorizedError,
        ("/Users", "200 carrying", "token expired"),
    ),
    Case(
        "200-carrying-a-scim-400",
        _get(
            httpx.Response(
                200,
                json={"schemas": [ERROR], "status": 400, "scimType": "invalidFilter"},
            )
        ),
        BadRequestError,
        ("/Users/u1", "invalidFilter"),
    ),
    Case(
        "200-carrying-an-error-without-status",
        _export(httpx.Response(200, json={"schemas": [ERROR], "detail": "boom"})),
        SCIMToolsError,
        ("/Users", "boom"),
    ),
    Case(
        "not-json-without-content-type",
        _export(_text(200, "OK", None)),
        BadResponseError,
        ("/Users", "not JSON"),
    ),
    Case(
        "truncated-json",
        _export(_text(200, '{"schemas": ["x"], "Resources": [{"id": "u1"', None)),
        BadResponseError,
        ("/Users", "cut short"),
    ),
    Case(
        "empty-body",
        _export(_text(200, "", "application/scim+json")),
        BadResponseError,
        ("/Users", "empty body"),
    ),
    Case(
        "top-level-array",
        _export(httpx.Response(200, json=[_user(1)])),
        BadResponseError,
        ("Users", "not a list response"),
    ),
    Case(
        "top-level-string",
        _export(httpx.Response(200, json="Users")),
        BadResponseError,
        ("Users", "not a list response"),
    ),
    Case(
        "502-proxy-page",
        _export(_text(502, PROXY_PAGE, "text/html")),
        ServerUnavailableError,
        ("GET /api/scim/resource/v2/Users", "502", "retry later"),
    ),
    Case(
        "401-html",
        _get(_text(401, LOGIN_PAGE, "text/html")),
        UnauthorizedError,
        ("/Users/u1", "401", "token"),
    ),
    Case(
        "fewer-resources-than-totalResults",
        _export(_listing([_user(1), _user(2)], 5), _listing([], 5)),
        IncompleteExportError,
        ("Users", "totalResults said 5"),
    ),
    Case(
        "one-id-twice-on-a-page",
        _export(_listing([_user(1), _user(1)], 2), _listing([], 2)),
        IncompleteExportError,
        ("Users", "1 unique", "totalResults said 2"),
    ),
    Case(
        "huge-body-cut-short",
        _export(_huge_body),
        BadResponseError,
        ("/Users", "cut short"),
    ),
]


# -- IdP views and CSV / JSON / Parquet sources ----------------------------------


def _source(name: str) -> Callable[[], Any]:
    return lambda: read_source(CORPUS / "sources" / name)


def _validate(name: str) -> Callable[[], Any]:
    return lambda: validate_import(CORPUS / "sources" / name, MAPPING, model=_NO_LAMBDA)


def _view(name: str) -> Callable[[], Any]:
    return lambda: read_client_view(CORPUS / "views" / name)


def _big_cell(tmp: Path) -> Path:
    path = tmp / "big-cell.csv"
    path.write_text("login,mail\nada," + "a" * 20_000_000 + "\nbob,b@example.com\n")
    return path


class _NoLambda:
    """A model that keeps payloads as they are (lambdas are tested elsewhere)."""

    def predict(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(p) for p in payloads]


_NO_LAMBDA: Any = _NoLambda()


SOURCES = [
    Case("latin1-csv", _source("latin1.csv"), InputError, ("latin1.csv", "UTF-8")),
    Case("utf16-csv", _source("utf16.csv"), InputError, ("utf16.csv", "UTF-16")),
    Case("empty-csv", _source("empty.csv"), InputError, ("empty.csv", "header")),
    Case(
        "blank-lines-csv",
        _source("blank-lines.csv"),
        InputError,
        ("blank-lines.csv", "empty"),
    ),
    Case(
        "duplicate-header-csv",
        _source("duplicate-header.csv"),
        InputError,
        ("duplicate-header.csv", "'mail' twice"),
    ),
    Case(
        "ragged-row-csv",
        _source("ragged-row.csv"),
        InputError,
        ("ragged-row.csv", "more fields than the header"),
    ),
    Case(
        "unclosed-quote-csv",
        _source("unclosed-quote.csv"),
        InputError,
        ("unclosed-quote.csv", "quote"),
    ),
    Case(
        "gzip-named-csv",
        _source("gzip-named-csv.csv"),
        InputError,
        ("gzip-named-csv.csv", "not UTF-8"),
    ),
    Case(
        "missing-mapped-column",
        _validate("missing-column.csv"),
        InputError,
        ("missing-column.csv", "'mail'", "fix the mapping"),
    ),
    Case(
        "jsonl-bad-line",
        _source("bad-line.jsonl"),
        InputError,
        ("line 2", "bad-line.jsonl"),
    ),
    Case(
        "jsonl-array-line",
        _source("array-line.jsonl"),
        InputError,
        ("line 2", "array-line.jsonl", "not an object"),
    ),
    Case(
        "corrupt-parquet",
        _source("corrupt.parquet"),
        InputError,
        ("corrupt.parquet", "Parquet"),
    ),
    Case("xlsx-source", _source("legacy.xlsx"), ValueError, ("legacy.xlsx", ".csv")),
    Case(
        "missing-source",
        _source("no-such-file.csv"),
        InputFileNotFoundError,
        ("no-such-file.csv", "does not exist"),
    ),
    Case(
        "view-latin1-csv",
        _view("okta-latin1.csv"),
        InputError,
        ("okta-latin1.csv", "UTF-8"),
    ),
    Case(
        "view-without-key",
        _view("no-key.csv"),
        InputError,
        ("no-key.csv", "'key' or 'external_id'"),
    ),
    Case(
        "view-groups-without-key",
        _view("groups-no-key.csv"),
        InputError,
        ("groups-no-key.csv", "'key' or 'external_id'"),
    ),
    Case(
        "view-status-not-a-number",
        _view("bad-status.csv"),
        InputError,
        ("bad-status.csv", "conflict"),
    ),
    Case(
        "view-duplicate-header",
        _view("duplicate-header.csv"),
        InputError,
        ("duplicate-header.csv", "'key' twice"),
    ),
    Case(
        "view-json-scalar",
        _view("scalar.json"),
        InputError,
        ("scalar.json", "ListResponse"),
    ),
    Case(
        "view-json-truncated",
        _view("truncated.json"),
        InputError,
        ("truncated.json", "not JSON"),
    ),
    Case(
        "view-json-numbers",
        _view("numbers.json"),
        InputError,
        ("numbers.json", "list of resources"),
    ),
    Case(
        "view-json-resources-object",
        _view("resources-object.json"),
        InputError,
        ("resources-object.json", "ListResponse"),
    ),
    Case("view-json-empty", _view("empty.json"), InputError, ("empty.json", "empty")),
    Case(
        "view-jsonl-bad-line",
        _view("bad-line.jsonl"),
        InputError,
        ("line 2", "bad-line.jsonl"),
    ),
    Case(
        "view-jsonl-array-line",
        _view("array-line.jsonl"),
        InputError,
        ("line 2", "array-line.jsonl"),
    ),
    Case(
        "view-profile-not-an-object",
        _view("profile-number.jsonl"),
        InputError,
        ("profile-number.jsonl",),
    ),
    Case("view-txt-suffix", _view("okta.txt"), ValueError, ("okta.txt", ".csv")),
    Case(
        "idp-views-bad-line",
        lambda: load_idp_views(CORPUS / "idp_bad_line"),
        InputError,
        ("line 3", "okta.jsonl"),
    ),
    Case(
        "idp-views-latin1",
        lambda: load_idp_views(CORPUS / "idp_latin1"),
        InputError,
        ("entra.jsonl", "UTF-8"),
    ),
    Case(
        "idp-views-none",
        lambda: load_idp_views(CORPUS / "lambdas"),
        InputFileNotFoundError,
        ("lambdas", "*.jsonl"),
    ),
]


# -- plans -------------------------------------------------------------------------


def _plan(*rows: dict[str, Any]) -> Callable[[], Any]:
    return lambda: validate_plan(list(rows))


def _plan_file(name: str) -> Callable[[], Any]:
    return lambda: validate_plan(read_plan(CORPUS / "plans" / name))


def _patch(rid: str = "u1", path: str = "title", value: Any = "CEO", **kw: Any):
    row = {"op": "patch", "resource_type": "User", "resource_id": rid}
    return {**row, "path": path, "value": value, **kw}


PLANS = [
    Case(
        "unknown-op",
        _plan({**_patch(), "op": "upsert"}),
        PlanError,
        ("row 0", "'upsert'"),
    ),
    Case(
        "path-not-in-schema",
        _plan(_patch(path="nickname")),
        PlanError,
        ("row 0", "'nickname'", "schema"),
    ),
    Case(
        "contradictory-values",
        _plan(_patch(value="CEO"), _patch(value="CTO")),
        PlanError,
        ("row 1", "title", "u1"),
    ),
    Case(
        "activate-and-deactivate",
        _plan(
            {"op": "deactivate", "resource_type": "User", "resource_id": "u1"},
            _patch(path="active", value=True),
        ),
        PlanError,
        ("row 1", "active", "u1"),
    ),
    Case(
        "add-and-remove-member",
        _plan(
            {"op": "add_member", "resource_type": "Group", "resource_id": "g1"}
            | {"value": "u1"},
            {"op": "remove_member", "resource_type": "Group", "resource_id": "g1"}
            | {"value": "u1"},
        ),
        PlanError,
        ("row 1", "opposite", "u1"),
    ),
    Case(
        "duplicate-op-id",
        _plan(_patch(op_id="fix-1"), _patch(rid="u2", op_id="fix-1")),
        PlanError,
        ("'fix-1'", "used again"),
    ),
    Case(
        "unknown-resource-type",
        _plan(_patch(resource_type="Device")),
        PlanError,
        ("row 0", "Device"),
    ),
    Case(
        "patch-without-resource-id",
        _plan(_patch(rid=None)),
        PlanError,
        ("row 0", "resource_id"),
    ),
    Case(
        "create-without-value",
        _plan({"op": "create", "resource_type": "User"}),
        PlanError,
        ("row 0", "value"),
    ),
    Case(
        "ref-to-unknown-op",
        _plan(
            {"op": "add_member", "resource_type": "Group", "resource_id": "g1"}
            | {"value": "ref:op-9999"}
        ),
        PlanError,
        ("row 0", "op-9999"),
    ),
    Case(
        "plan-file-latin1",
        _plan_file("latin1.csv"),
        InputError,
        ("latin1.csv", "UTF-8"),
    ),
    Case("plan-file-empty", _plan_file("empty.csv"), InputError, ("empty.csv",)),
    Case(
        "plan-file-duplicate-header",
        _plan_file("duplicate-header.csv"),
        InputError,
        ("duplicate-header.csv", "'value' twice"),
    ),
    Case(
        "plan-file-unclosed-quote",
        _plan_file("unclosed-quote.csv"),
        InputError,
        ("unclosed-quote.csv", "quote"),
    ),
    Case(
        "plan-file-value-not-json",
        _plan_file("create-value-not-json.csv"),
        PlanError,
        ("row 0", "value"),
    ),
    Case(
        "plan-file-unknown-op",
        _plan_file("unknown-op.csv"),
        PlanError,
        ("row 0", "'upsert'"),
    ),
]


# -- lambda files --------------------------------------------------------------------


def _lambda(request: str, response: str | None = None) -> Callable[[], Any]:
    def run() -> Any:
        folder = CORPUS / "lambdas"
        model = LambdaModel.from_files(
            folder / request,
            folder / response
            if response
            else DEFAULT_LAMBDA_DIR / "scim-user-response.js",
            timeout=0.2,
        )
        with model:
            return model.predict([{"schemas": [USER], "userName": "ada"}])

    return run


LAMBDAS = [
    Case(
        "lambda-syntax-error",
        _lambda("syntax-error.js"),
        LambdaError,
        ("syntax-error.js", "does not compile", "syntax-error.js line 4"),
    ),
    Case(
        "lambda-without-convert",
        _lambda("no-convert.js"),
        LambdaError,
        ("no-convert.js", "define function convert(user, options, scimUser)"),
    ),
    Case(
        "lambda-empty",
        _lambda("empty.js"),
        LambdaError,
        ("empty.js", "define function convert("),
    ),
    Case(
        "lambda-loops",
        _lambda("loops.js"),
        LambdaError,
        ("loops.js", "longer than 0.2 s"),
    ),
    Case(
        "lambda-loops-at-load",
        _lambda("loops-at-load.js"),
        LambdaError,
        ("loops-at-load.js",),
    ),
    Case(
        "lambda-throws",
        _lambda("throws.js"),
        LambdaError,
        ("throws.js", "no userName mapping", "line 2 of throws.js"),
    ),
    Case(
        "lambda-convert-not-a-function",
        _lambda("not-a-function.js"),
        LambdaError,
        ("not-a-function.js", "not a function", "define function convert("),
    ),
    Case(
        "lambda-recurses",
        _lambda("recurses.js"),
        LambdaError,
        ("recurses.js", "stack"),
    ),
    Case(
        "response-lambda-throws",
        _lambda("../../../data/lambdas/scim-user-request.js", "response-throws.js"),
        LambdaError,
        ("response-throws.js", "threw"),
    ),
    Case(
        "lambda-latin1",
        _lambda("latin1.js"),
        InputError,
        ("latin1.js", "UTF-8", "iconv"),
    ),
    Case(
        "lambda-missing",
        _lambda("no-such-lambda.js"),
        InputFileNotFoundError,
        ("no-such-lambda.js", "does not exist"),
    ),
]

CASES = SERVER + SOURCES + PLANS + LAMBDAS


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_clear_scimtools_error(case: Case) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked below
        case.run()
    error = info.value
    assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
    ours = isinstance(error, SCIMToolsError) or type(error) is ValueError
    assert ours, f"{type(error).__module__}.{type(error).__name__} escaped"
    message = str(error)
    for name in case.names:
        assert name in message, f"{name!r} not in {message!r}"
    assert len(message) < 3000, "the message must stay readable"
    assert "opaque-test-token" not in message + repr(error)


# -- generated inputs and tolerated ones --------------------------------------------


def test_a_20_mb_cell_is_refused_with_its_row_and_column(tmp_path: Path) -> None:
    path = _big_cell(tmp_path)
    with pytest.raises(InputError, match="row 1, column 'mail'") as info:
        read_source(path)
    assert "big-cell.csv" in str(info.value)
    assert "20,000,000 characters" in str(info.value)


def test_a_20_mb_cell_in_a_client_view_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "okta.csv"
    path.write_text("key,user_name\n00u1," + "a" * 20_000_000 + "\n")
    with pytest.raises(InputError, match="okta.csv: row 1, column 'user_name'"):
        read_client_view(path)


def test_a_20_mb_cell_in_json_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "legacy.jsonl"
    path.write_text(json.dumps({"login": "ada", "mail": "x" * 20_000_000}) + "\n")
    with pytest.raises(InputError, match="legacy.jsonl: row 1, column 'mail'"):
        read_source(path)


def test_a_byte_order_mark_is_read_past() -> None:
    frame = read_source(CORPUS / "sources" / "bom.csv")
    assert list(frame.columns) == ["login", "mail"]
    assert frame["login"].tolist() == ["ada"]


def test_a_list_without_totalResults_is_exported_and_noted() -> None:
    result = _export(_listing([_user(1), _user(2)]), _listing([]))()
    assert [r["id"] for r in result.resources] == ["u1", "u2"]
    assert any("no totalResults" in p for p in result.problems)


def test_a_huge_page_is_exported_and_noted() -> None:
    users = [_user(n) for n in range(9_000)]
    result = _export(_listing(users, 9_000))()
    assert result.count == 9_000 and result.requests == 1
    assert any("more resources than the count" in p for p in result.problems)


def test_totalResults_that_is_not_a_number_is_treated_as_absent() -> None:
    result = _export(_listing([_user(1)], "many"), _listing([], "many"))()
    assert result.count == 1
    assert any("no totalResults" in p for p in result.problems)


# -- no partial write --------------------------------------------------------------


def test_an_invalid_plan_writes_nothing_and_journals_nothing(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    from scimtools.journal import Journal
    from scimtools.push import apply_plan

    token = fresh_sandbox.mint_token("okta", ttl=30 * 86400)
    plan = [
        {"op": "create", "resource_type": "User", "value": {"userName": "ok1"}},
        {"op": "upsert", "resource_type": "User", "resource_id": "u1"},
    ]
    journal = Journal(tmp_path / "journal.sqlite")
    with SCIMClient(fresh_sandbox.base_url, token=token, progress=False) as client:
        before = client.list_page("Users", count=1).total_results
        with pytest.raises(PlanError, match="'upsert'"):
            apply_plan(client, pd.DataFrame(plan), journal)
        after = client.list_page("Users", count=1).total_results
    assert after == before
    assert journal.runs().empty
    journal.close()


def test_a_bad_source_stops_the_import_before_the_journal(tmp_path: Path) -> None:
    from scimtools.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    for name in ("latin1.csv", "duplicate-header.csv", "missing-column.csv"):
        with pytest.raises(InputError, match=name):
            validate_import(CORPUS / "sources" / name, MAPPING, model=_NO_LAMBDA)
    assert journal.runs().empty
    journal.close()
