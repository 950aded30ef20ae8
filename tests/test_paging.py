"""Complete paging: odd servers through MockTransport, then the sandbox itself."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimtools import IncompleteExportError, SCIMClient, export_resources, iter_pages
from scimtools.paging import partition_attribute, sw_filter
from scimtools.sandbox import Sandbox, SandboxConfig

BASE = "https://scim.example.com/api/scim/resource/v2"

# -- a small SCIM list server -----------------------------------------------------

_TOKEN = re.compile(r'\s*(\(|\)|"(?:\\.|[^"\\])*"|[^\s()"]+)')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        assert match, f"cannot tokenise {text[pos:]!r}"
        out.append(match.group(1))
        pos = match.end()
    return out


def parse_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """Parse the subset of RFC 7644 filters the tests send (eq, sw, and, or, not)."""
    tokens = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr() -> Callable[[dict[str, Any]], bool]:
        left = term()
        while peek() == "or":
            take()
            right, prev = term(), left
            left = lambda r, a=prev, b=right: a(r) or b(r)  # noqa: E731
        return left

    def term() -> Callable[[dict[str, Any]], bool]:
        left = factor()
        while peek() == "and":
            take()
            right, prev = factor(), left
            left = lambda r, a=prev, b=right: a(r) and b(r)  # noqa: E731
        return left

    def factor() -> Callable[[dict[str, Any]], bool]:
        if peek() == "not":
            take()
            inner = factor()
            return lambda r: not inner(r)
        if peek() == "(":
            take()
            inner = expr()
            assert take() == ")"
            return inner
        attribute, op, value = take(), take(), json.loads(take())
        value = value.lower()
        if op == "sw":
            return lambda r: str(r.get(attribute, "")).lower().startswith(value)
        if op == "eq":
            return lambda r: str(r.get(attribute, "")).lower() == value
        raise AssertionError(f"operator {op} not supported by the fake")

    matcher = expr()
    assert pos == len(tokens), f"trailing tokens in {text!r}"
    return matcher


class FakeSCIM:
    """A MockTransport handler serving /Users and /Groups with configurable quirks.

    Attributes record every list request as (startIndex, count, filter).
    """

    def __init__(
        self,
        users: list[dict[str, Any]],
        *,
        window: int | None = None,
        overflow_status: int = 400,
        max_page: int | None = None,
        require_paging: bool = False,
        ignore_filter: bool = False,
        refuse_not: bool = False,
        drop_resources_when_empty: bool = True,
        total_offset: int = 0,
        before_page: Callable[[FakeSCIM, int], None] | None = None,
    ) -> None:
        self.users = users
        self.groups: list[dict[str, Any]] = []
        self.window = window
        self.overflow_status = overflow_status
        self.max_page = max_page
        self.require_paging = require_paging
        self.ignore_filter = ignore_filter
        self.refuse_not = refuse_not
        self.drop_resources_when_empty = drop_resources_when_empty
        self.total_offset = total_offset
        self.before_page = before_page
        self.calls: list[tuple[int, int, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        items = {"Users": self.users, "Groups": self.groups, "Widgets": self.groups}
        items = items.get(endpoint)
        if items is None:
            return httpx.Response(404, json={"status": "404", "detail": "no route"})
        params = request.url.params
        if self.require_paging and not {"startIndex", "count"} <= set(params):
            body = {"schemas": [], "totalResults": 0, "itemsPerPage": 0}
            return httpx.Response(200, json=body)

        start = int(params.get("startIndex", 1))
        count = int(params.get("count", 25))
        flt = params.get("filter")
        with self.lock:
            self.calls.append((start, count, flt))
            if self.before_page:
                self.before_page(self, len(self.calls))

        if self.window is not None and start + count - 1 > self.window:
            detail = f"startIndex {start} + count {count} is past the window"
            return httpx.Response(
                self.overflow_status,
                json={"status": str(self.overflow_status), "detail": detail},
            )
        if flt and self.refuse_not and "not (" in flt:
            return httpx.Response(400, json={"status": "400", "detail": "no not"})
        matching = items
        if flt and not self.ignore_filter:
            matcher = parse_filter(flt)
            matching = [r for r in items if matcher(r)]

        size = count if self.max_page is None else min(count, self.max_page)
        page = matching[start - 1 : start - 1 + size]
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(matching) + self.total_offset,
            "itemsPerPage": count,
            "startIndex": start,
        }
        if page or not self.drop_resources_when_empty:
            body["Resources"] = page
        return httpx.Response(200, json=body)


def make_users(names: list[str]) -> list[dict[str, Any]]:
    return [
        {"id": f"id-{i:06d}", "userName": name, "schemas": []}
        for i, name in enumerate(names)
    ]


def client_for(server: FakeSCIM, **options: Any) -> SCIMClient:
    options.setdefault("progress", False)
    options.setdefault("sleep", lambda s: None)
    return SCIMClient(
        BASE, token="t0k3n", transport=httpx.MockTransport(server), **options
    )


def spread_names(n: int, prefix: str = "") -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [
        f"{prefix}{letters[i % 36]}{letters[(i // 36) % 36]}.user{i}" for i in range(n)
    ]


# -- cases from public reports ----------------------------------------------------


def test_export_sends_start_index_and_count_to_a_server_that_needs_them() -> None:
    server = FakeSCIM(make_users(spread_names(30)), require_paging=True)

    with client_for(server) as client:
        result = export_resources(client, "Users", count=10)

    assert result.count == 30
    assert result.complete
    assert all(start >= 1 and count == 10 for start, count, _ in server.calls)


def test_export_continues_past_short_pages_that_echo_count() -> None:
    server = FakeSCIM(make_users(spread_names(30)), max_page=3)

    with client_for(server) as client:
        result = export_resources(client, "Users", count=25, ordered=True)

    assert [r["id"] for r in result.resources] == [f"id-{i:06d}" for i in range(30)]
    # Ten pages of 3; the last one asked for exactly the 3 left, so 9 echo 25.
    assert len(result.problems) == 1
    assert "itemsPerPage differed" in result.problems[0]
    assert "on 9 page(s)" in result.problems[0]
    assert [c[0] for c in server.calls[:3]] == [1, 4, 7]


def test_the_report_of_a_concurrent_export_does_not_depend_on_timing() -> None:
    server = FakeSCIM(make_users(spread_names(60)), max_page=7)
    problems = []

    for _ in range(3):
        with client_for(server) as client:
            problems.append(export_resources(client, "Users", count=10).problems)

    assert problems[0] == problems[1] == problems[2]
    assert problems[0]


def test_concurrent_export_fills_the_gaps_left_by_short_pages() -> None:
    server = FakeSCIM(make_users(spread_names(95)), max_page=7)

    with client_for(server, max_workers=4) as client:
        result = export_resources(client, "Users", count=20)

    assert sorted(r["id"] for r in result.resources) == [
        f"id-{i:06d}" for i in range(95)
    ]
    assert result.complete


def test_empty_result_without_resources_is_an_empty_complete_export() -> None:
    server = FakeSCIM([])

    with client_for(server) as client:
        result = export_resources(client, "Users")

    assert result.resources == []
    assert result.expected == 0
    assert result.complete
    assert len(server.calls) == 1


def test_window_refusal_at_10001_is_avoided_by_partitions() -> None:
    names = spread_names(11_900) + ["_under", "-dash", "Zed", "ÉLodie", "é2"]
    names += [f"a{i}" for i in range(95)]
    server = FakeSCIM(make_users(names), window=10_000, overflow_status=503)

    with client_for(server, page_size=100) as client:
        result = export_resources(client, "Users")

    assert result.expected == 12_000
    assert result.count == 12_000
    assert len({r["id"] for r in result.resources}) == 12_000
    assert all(start + count - 1 <= 10_000 for start, count, _ in server.calls)
    assert result.partitions
    assert sum(p.total or 0 for p in result.partitions) == 12_000
    assert result.complete


def test_partitions_recurse_into_longer_prefixes() -> None:
    names = [f"ab{i}" for i in range(120)] + [f"ac{i}" for i in range(30)]
    names += [f"b{i}" for i in range(40)] + ["a"]
    server = FakeSCIM(make_users(names), window=100)

    with client_for(server, window=100, page_size=50) as client:
        result = export_resources(client, "Users")

    filters = {p.filter for p in result.partitions if p.total}
    assert result.count == len(names)
    assert sw_filter("userName", "ab1") in filters
    assert sw_filter("userName", "ac") in filters
    assert sw_filter("userName", "a") not in filters
    assert sw_filter("userName", "ab") not in filters
    assert any(f.startswith('userName sw "a" and not (') for f in filters)
    assert all(start + count - 1 <= 100 for start, count, _ in server.calls)


def test_server_that_ignores_the_filter_is_detected() -> None:
    server = FakeSCIM(make_users(spread_names(300)), window=100, ignore_filter=True)

    with (
        client_for(server, window=100) as client,
        pytest.raises(IncompleteExportError, match="ignored the filter") as caught,
    ):
        export_resources(client, "Users")

    assert caught.value.expected == 300


def test_refused_remainder_filter_makes_the_export_fail_loudly() -> None:
    names = spread_names(150) + ["_odd"]
    server = FakeSCIM(make_users(names), window=100, refuse_not=True)

    with (
        client_for(server, window=100) as client,
        pytest.raises(IncompleteExportError, match="refused a partition filter"),
    ):
        export_resources(client, "Users")


def test_collection_without_partition_attribute_past_the_window_fails() -> None:
    server = FakeSCIM(make_users(spread_names(150)), window=100)
    server.groups = [{"id": f"g{i}", "displayName": f"g{i}"} for i in range(150)]

    with client_for(server, window=100) as client:
        result = export_resources(client, "Groups", count=50)
        with pytest.raises(IncompleteExportError, match="no attribute to partition"):
            export_resources(client, "Widgets")

    assert result.count == 150
    assert partition_attribute("Widgets") is None


# -- reconciliation ---------------------------------------------------------------


def test_fewer_resources_than_total_results_raises_with_counts() -> None:
    server = FakeSCIM(make_users(spread_names(40)), total_offset=10)

    with client_for(server) as client, pytest.raises(IncompleteExportError) as caught:
        export_resources(client, "Users", count=10)

    assert (caught.value.fetched, caught.value.expected) == (40, 50)
    assert caught.value.result.count == 40


def test_fewer_resources_than_total_results_is_reported_when_not_strict() -> None:
    server = FakeSCIM(make_users(spread_names(40)), total_offset=10)

    with client_for(server) as client:
        result = export_resources(client, "Users", count=10, strict=False)

    assert not result.complete
    assert any("totalResults said 50" in p for p in result.problems)


def test_duplicates_from_a_shifting_collection_are_dropped_and_reported() -> None:
    users = make_users(spread_names(30))

    def insert_front(server: FakeSCIM, call: int) -> None:
        if call == 2:
            server.users.insert(0, {"id": "new", "userName": "new"})

    server = FakeSCIM(users, before_page=insert_front)

    with client_for(server) as client:
        result = export_resources(client, "Users", count=10, ordered=True, strict=False)

    assert result.duplicates == {"id-000009": 1}
    assert result.expected == 31
    assert not result.complete
    assert len({r["id"] for r in result.resources}) == result.count
    assert any("duplicate" in p for p in result.problems)


def test_iter_pages_stops_at_total_and_at_the_window() -> None:
    server = FakeSCIM(make_users(spread_names(250)), window=200)

    with client_for(server, window=200) as client:
        pages = list(iter_pages(client, "Users", count=90))

    assert [p.requested_start for p in pages] == [1, 91, 181]
    assert pages[-1].requested_count == 20


def test_progress_bar_can_be_shown(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeSCIM(make_users(spread_names(20)))

    with client_for(server) as client:
        result = export_resources(client, "Users", count=5, progress=True)

    assert result.count == 20


# -- integration: the sandbox --------------------------------------------------------


def _grant_client(sb: Any, **options: Any) -> SCIMClient:
    from scimtools import ClientCredentialsAuth

    auditor = sb.clients["auditor"]
    auth = ClientCredentialsAuth(
        sb.token_url, auditor.client_id, auditor.client_secret, sb.server_entity_id
    )
    options.setdefault("progress", False)
    return SCIMClient(sb.base_url, auth=auth, **options)


def test_sandbox_export_past_its_window_returns_every_user_once(
    make_sandbox: Any,
) -> None:
    names = spread_names(560) + ["_under", "Zed", "9lives", "a"]
    people = [
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "emails": [{"value": f"u{i}@example.com", "primary": True}],
        }
        for i, name in enumerate(names)
    ]

    sb = make_sandbox(SandboxConfig(window=200))
    sb.tenant.ingest_users(people)

    with _grant_client(sb, window=200, page_size=50) as client:
        result = export_resources(client, "Users")
    stored = {row[0] for row in sb.store.db.execute("SELECT id FROM users")}

    assert result.complete
    assert sorted(r["id"] for r in result.resources) == sorted(stored)
    assert len(stored) == len(names)
    assert result.partitions


@pytest.mark.slow
def test_demo_tenant_export_returns_every_user_exactly_once(tmp_path: Path) -> None:
    from scimtools.config import demo_db_path

    db_path = demo_db_path()
    if not db_path.exists():
        pytest.skip(f"no demo tenant at {db_path}; run `make demo` first")
    # A consistent snapshot, so that a build running meanwhile cannot change it.
    snapshot = tmp_path / "tenant.sqlite"
    with sqlite3.connect(db_path) as source, sqlite3.connect(snapshot) as target:
        source.backup(target)

    with Sandbox(snapshot) as sb, _grant_client(sb) as client:
        result = export_resources(client, "Users")
        stored = {row[0] for row in sb.store.db.execute("SELECT id FROM users")}

    assert result.complete
    assert len(result.resources) == len(stored)
    assert {r["id"] for r in result.resources} == stored
