"""Complete listings of a SCIM collection, past short pages and the result window.

RFC 7644 §3.4.2.4 index paging looks simple, but real servers send short pages,
echo ``count`` as ``itemsPerPage``, drop ``Resources`` when a page is empty and
change ``totalResults`` while you page. FusionAuth also stops at a 10,000-result
window. `export_resources` walks a collection so that the result is complete or
an `IncompleteExportError` says why not; it never returns a silently truncated
list. Beyond the window it partitions the collection with ``sw`` filters
(``userName`` for users, ``displayName`` for groups), recursing into longer
prefixes where a partition is still too large, and checks that the partitions
cover the whole and that the server really applied the filters.
"""

from __future__ import annotations

import logging
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm.auto import tqdm

from scimtools.errors import BadRequestError, IncompleteExportError

if TYPE_CHECKING:
    from scimtools.client import Page, SCIMClient

__all__ = [
    "ExportResult",
    "Partition",
    "export_resources",
    "iter_pages",
    "partition_attribute",
    "sw_filter",
]

logger = logging.getLogger(__name__)

#: The first characters tried for partitions; others are added when they occur.
BASE_ALPHABET = string.ascii_lowercase + string.digits
MAX_PREFIX = 6
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class Partition:
    """One filtered listing used to export a collection larger than the window.

    Attributes
    ----------
    filter : str
        The filter sent.
    total : int or None
        The partition's totalResults.
    fetched : int
        Resources received for it.
    """

    filter: str
    total: int | None
    fetched: int = 0


@dataclass
class ExportResult:
    """Every resource of a collection, with the report of how it was fetched.

    Attributes
    ----------
    endpoint : str
        ``"Users"``, ``"Groups"``...
    resources : list of dict
        Unique resources (by ``id``), in the order first received.
    expected : int or None
        The unfiltered totalResults at the start, None if never reported.
    requests : int
        List requests sent.
    duplicates : dict of str to int
        Ids received more than once within one listing, with the extra count;
        a sign that the collection changed while paging.
    partitions : list of Partition
        Filtered listings used (empty inside the window).
    problems : list of str
        Deviations noticed and tolerated (itemsPerPage echoes, totals that
        changed, partition totals that overlap).
    complete : bool
        Whether the unique count reached ``expected``.
    """

    endpoint: str
    resources: list[dict[str, Any]]
    expected: int | None
    requests: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    partitions: list[Partition] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    complete: bool = True

    @property
    def count(self) -> int:
        """Return the number of unique resources."""
        return len(self.resources)

    def summary(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready values (no resources)."""
        return {
            "endpoint": self.endpoint,
            "count": self.count,
            "expected": self.expected,
            "requests": self.requests,
            "duplicates": dict(self.duplicates),
            "partitions": [vars(p).copy() for p in self.partitions],
            "problems": list(self.problems),
            "complete": self.complete,
        }


def partition_attribute(endpoint: str) -> str | None:
    """Return the attribute that partitions ``endpoint``, or None.

    Examples
    --------
    >>> partition_attribute("/EnterpriseUsers"), partition_attribute("Groups")
    ('userName', 'displayName')
    """
    name = endpoint.strip("/")
    if name in {"Users", "EnterpriseUsers"}:
        return "userName"
    if name == "Groups":
        return "displayName"
    return None


def sw_filter(attribute: str, prefix: str) -> str:
    """Return ``attribute sw "prefix"`` with the value quoted as JSON (RFC 7644).

    Examples
    --------
    >>> sw_filter("userName", 'a"b')
    'userName sw "a\\\\"b"'
    """
    value = prefix.replace("\\", "\\\\").replace('"', '\\"')
    return f'{attribute} sw "{value}"'


def _remainder_filter(attribute: str, parent: str, siblings: Iterable[str]) -> str:
    terms = " or ".join(sw_filter(attribute, s) for s in siblings)
    rest = f"not ({terms})"
    return f"{sw_filter(attribute, parent)} and {rest}" if parent else rest


def _and(base: str | None, extra: str) -> str:
    return f"({base}) and ({extra})" if base else extra


@dataclass
class _Query:
    filter: str | None
    first: Page
    prefix: str | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)


class _Exporter:
    def __init__(
        self,
        client: SCIMClient,
        endpoint: str,
        *,
        count: int,
        base_filter: str | None,
        max_workers: int,
        ordered: bool,
        progress: bool,
        excluded_attributes: list[str] | None,
    ) -> None:
        self.client = client
        self.endpoint = endpoint.strip("/")
        self.window = client.capabilities.window
        self.count = count if self.window is None else min(count, self.window)
        self.base_filter = base_filter
        self.workers = 1 if ordered else max(1, max_workers)
        self.progress = progress
        self.excluded = excluded_attributes
        self.requests = 0
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._echoes = 0
        self._oversized = 0
        self._bar: Any = None
        self.empty_partitions: list[_Query] = []
        self.latest_total: dict[str | None, int] = {}

    # -- one request ----------------------------------------------------------

    def page(self, start: int, count: int, filter: str | None) -> Page:
        page = self.client.list_page(
            self.endpoint,
            start_index=start,
            count=count,
            filter=filter,
            excluded_attributes=self.excluded,
        )
        with self._lock:
            self.requests += 1
            if page.total_results is not None:
                seen = self.latest_total.get(filter, 0)
                self.latest_total[filter] = max(seen, page.total_results)
            got = len(page.resources)
            if page.items_per_page is not None and page.items_per_page != got and got:
                # Counted here, noted once at the end: with concurrent pages the
                # first such page depends on timing, and the report must not.
                self._echoes += 1
            if got > count:
                self._oversized += 1
        return page

    def note(self, problem: str) -> None:
        logger.warning("%s: %s", self.endpoint, problem)
        self.problems.append(problem)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def map(self, fn: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        if self.workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(fn, items))

    # -- walking --------------------------------------------------------------

    def walk_range(
        self, first: int, last: int | None, filter: str | None
    ) -> list[dict[str, Any]]:
        """Fetch indices first..last, advancing by what arrives; stop when empty."""
        out: list[dict[str, Any]] = []
        start = first
        limit = last if last is not None else self.window

        while limit is None or start <= limit:
            n = self.count if limit is None else min(self.count, limit - start + 1)
            page = self.page(start, n, filter)
            if not page.resources:
                if last is not None:
                    self.note(f"empty page at startIndex {start} before index {last}")
                return out
            out.extend(page.resources)
            self.advance(len(page.resources))
            start += len(page.resources)

        if last is None:
            raise IncompleteExportError(
                len(out),
                None,
                f"{self.endpoint} reports no totalResults and still had resources at"
                f" the {limit:,}-result window; the rest cannot be reached",
            )
        return out

    def chunks(self, query: _Query) -> list[tuple[_Query, int, int | None]]:
        got = len(query.first.resources)
        total = query.first.total_results
        if not got:
            return []
        if total is None:
            return [(query, 1 + got, None)]
        last = total if self.window is None else min(total, self.window)
        starts = range(1 + got, last + 1, self.count)
        return [(query, s, min(s + self.count - 1, last)) for s in starts]

    def complete_queries(self, queries: list[_Query]) -> None:
        tasks = [c for q in queries for c in self.chunks(q)]
        for q in queries:
            q.resources = list(q.first.resources)
            self.advance(len(q.first.resources))

        results = self.map(lambda t: self.walk_range(t[1], t[2], t[0].filter), tasks)
        for (query, _, _), resources in zip(tasks, results, strict=True):
            query.resources.extend(resources)

        # totalResults may grow while paging: walk on to the latest total.
        for query in queries:
            planned = query.first.total_results
            latest = self.latest_total.get(query.filter)
            if planned is None or latest is None or latest <= planned:
                continue
            self.note(f"totalResults grew from {planned} to {latest} while paging")
            end = latest if self.window is None else min(latest, self.window)
            if end > planned:
                query.resources.extend(self.walk_range(planned + 1, end, query.filter))

    # -- partitions -----------------------------------------------------------

    def probe(self, filters: list[str]) -> list[Page]:
        try:
            return self.map(lambda f: self.page(1, self.count, f), filters)
        except BadRequestError as exc:
            raise IncompleteExportError(
                0,
                None,
                f"the server refused a partition filter ({exc.detail}); it cannot"
                " export more than the window without filters",
            ) from exc

    def partition(self, unfiltered: Page, attribute: str) -> list[_Query]:
        """Split the listing into sw partitions no larger than the window."""
        assert self.window is not None and unfiltered.total_results is not None
        seen = [r.get(attribute) for r in unfiltered.resources]
        extra = {n[0].lower() for n in seen if isinstance(n, str) and n}
        alphabet = list(BASE_ALPHABET) + sorted(extra - set(BASE_ALPHABET))
        leaves: list[_Query] = []
        self.split("", unfiltered, attribute, alphabet, leaves)
        return leaves

    def split(
        self,
        parent: str,
        parent_page: Page,
        attribute: str,
        alphabet: list[str],
        leaves: list[_Query],
    ) -> None:
        assert self.window is not None
        window = self.window
        parent_total = parent_page.total_results or 0
        known = [n for n in (r.get(attribute) for r in parent_page.resources) if n]
        tried: list[str] = []
        covered = 0
        new = [parent + c for c in alphabet]

        for _ in range(4):
            filters = [_and(self.base_filter, sw_filter(attribute, s)) for s in new]
            pages = self.probe(filters)
            tried += new
            for prefix, flt, page in zip(new, filters, pages, strict=True):
                self.check_filtered(prefix, page, parent_total, known, attribute)
                total = page.total_results or 0
                covered += total
                if total > window:
                    self.split_further(prefix, page, attribute, alphabet, leaves)
                elif total:
                    leaves.append(_Query(flt, page, prefix))
                else:
                    self.empty_partitions.append(_Query(flt, page, prefix))

            if covered >= parent_total:
                if covered > parent_total:
                    self.note(
                        f"partitions under {parent!r} add up to {covered:,}, more"
                        f" than {parent_total:,} (overlapping matches)"
                    )
                return

            rest = _and(self.base_filter, _remainder_filter(attribute, parent, tried))
            page = self.probe([rest])[0]
            remainder = page.total_results or 0
            if remainder == 0:
                self.note(
                    f"partitions under {parent!r} add up to {covered:,} of"
                    f" {parent_total:,} and the remainder filter finds none"
                )
                return
            self.check_remainder(page, tried, attribute)
            if remainder <= window:
                leaves.append(_Query(rest, page, None))
                return

            # The remainder is too large: learn which characters occur in it.
            taken = {p[len(parent) :] for p in tried}
            names = [r.get(attribute) for r in page.resources]
            more = {
                n[len(parent)].lower()
                for n in names
                if isinstance(n, str) and len(n) > len(parent)
            } - taken
            if not more:
                break
            new = [parent + c for c in sorted(more)]

        raise IncompleteExportError(
            0,
            parent_total,
            f"resources under prefix {parent!r} that start with other characters"
            f" exceed the {self.window:,}-result window and cannot be partitioned",
        )

    def split_further(
        self,
        prefix: str,
        page: Page,
        attribute: str,
        alphabet: list[str],
        leaves: list[_Query],
    ) -> None:
        if len(prefix) >= MAX_PREFIX:
            raise IncompleteExportError(
                0,
                page.total_results,
                f"partition {sw_filter(attribute, prefix)!r} still holds"
                f" {page.total_results:,} resources, more than the"
                f" {self.window:,}-result window",
            )
        self.split(prefix, page, attribute, alphabet, leaves)

    def check_filtered(
        self,
        prefix: str,
        page: Page,
        parent_total: int,
        known: list[str],
        attribute: str,
    ) -> None:
        """Raise if the server ignored the sw filter for ``prefix``."""
        lower = prefix.lower()
        total = page.total_results or 0
        outside = [n for n in known if not n.lower().startswith(lower)]
        if total and total == parent_total and outside:
            raise IncompleteExportError(
                0,
                parent_total,
                f"the server ignored the filter {sw_filter(attribute, prefix)!r}: it"
                f" returned all {total:,} resources although {outside[0]!r} does not"
                " match; it cannot export more than the window",
            )
        for resource in page.resources:
            if not _matches(resource, attribute, lower):
                raise IncompleteExportError(
                    0,
                    parent_total,
                    f"the server did not apply the filter"
                    f" {sw_filter(attribute, prefix)!r}: it returned"
                    f" {resource.get(attribute)!r}",
                )

    def check_remainder(self, page: Page, siblings: list[str], attr: str) -> None:
        for resource in page.resources:
            name = resource.get(attr)
            if isinstance(name, str) and name.lower().startswith(tuple(siblings)):
                raise IncompleteExportError(
                    0,
                    page.total_results,
                    f"the server did not apply the remainder filter: it returned"
                    f" {name!r}",
                )

    # -- the whole export -------------------------------------------------------

    def run(self) -> ExportResult:
        first = self.page(1, self.count, self.base_filter)
        expected = first.total_results
        if expected is None:
            self.note(
                "no totalResults in the list response (RFC 7644 §3.4.2 requires"
                " it): paged until an empty page, completeness not checked"
            )
        if not first.resources_key_present and first.total_results not in (None, 0):
            self.note(f"no Resources key although totalResults is {expected}")

        self._bar = tqdm(
            total=expected,
            desc=self.endpoint,
            unit=" resources",
            disable=not self.progress,
            leave=False,
        )
        try:
            queries, partitions = self.plan(first, expected)
            self.complete_queries(queries)
        finally:
            self._bar.close()
            self._bar = None

        if not partitions and expected is not None:
            expected = self.latest_total.get(self.base_filter, expected)
        return self.assemble(queries, partitions, expected)

    def plan(
        self, first: Page, expected: int | None
    ) -> tuple[list[_Query], list[Partition]]:
        if expected is None or self.window is None or expected <= self.window:
            return [_Query(self.base_filter, first)], []

        attribute = partition_attribute(self.endpoint)
        if attribute is None:
            raise IncompleteExportError(
                0,
                expected,
                f"{self.endpoint} holds {expected:,} resources, more than the"
                f" {self.window:,}-result window, and scimtools knows no attribute"
                " to partition it by",
            )
        logger.warning(
            "%s holds %s resources, more than the %s-result window; exporting by"
            " %s partitions",
            self.endpoint,
            f"{expected:,}",
            f"{self.window:,}",
            attribute,
        )
        leaves = self.partition(first, attribute)
        partitions = [Partition(q.filter or "", q.first.total_results) for q in leaves]
        partitions += [Partition(q.filter or "", 0) for q in self.empty_partitions]
        return leaves, partitions

    def assemble(
        self,
        queries: list[_Query],
        partitions: list[Partition],
        expected: int | None,
    ) -> ExportResult:
        unique: dict[str, dict[str, Any]] = {}
        without_id: list[dict[str, Any]] = []
        duplicates: Counter[str] = Counter()
        overlaps = 0

        for index, query in enumerate(queries):
            within: set[str] = set()
            for resource in query.resources:
                rid = resource.get("id")
                if not isinstance(rid, str):
                    without_id.append(resource)
                elif rid in within:
                    duplicates[rid] += 1
                else:
                    within.add(rid)
                    if rid in unique:
                        overlaps += 1
                    else:
                        unique[rid] = resource
            if index < len(partitions):
                partitions[index].fetched = len(query.resources)

        if self._echoes:
            self.note(
                f"itemsPerPage differed from the number of resources on"
                f" {self._echoes} page(s): the server echoes count (RFC 7644"
                " §3.4.2 says it should be the number returned); paging went by"
                " the resources received"
            )
        if self._oversized:
            self.note(
                f"{self._oversized} page(s) held more resources than the count"
                " asked for; paging went by the resources received"
            )
        if duplicates:
            self.note(
                f"{sum(duplicates.values())} duplicate(s) of {len(duplicates)} id(s)"
                " received; the collection probably changed while paging"
            )
        if overlaps:
            self.note(f"{overlaps} resource(s) matched more than one partition")
        if without_id:
            self.note(f"{len(without_id)} resource(s) without an id kept as they are")

        resources = list(unique.values()) + without_id
        result = ExportResult(
            endpoint=self.endpoint,
            resources=resources,
            expected=expected,
            requests=self.requests,
            duplicates=dict(duplicates),
            partitions=partitions,
            problems=self.problems,
        )
        return result


def _matches(resource: dict[str, Any], attribute: str, prefix: str) -> bool:
    name = resource.get(attribute)
    if isinstance(name, str) and name.lower().startswith(prefix):
        return True
    # FusionAuth's userName filter also searches the email (#2455).
    emails = resource.get("emails") if attribute == "userName" else None
    return any(
        isinstance(e, dict)
        and isinstance(e.get("value"), str)
        and e["value"].lower().startswith(prefix)
        for e in emails or []
    )


def export_resources(
    client: SCIMClient,
    endpoint: str,
    *,
    count: int | None = None,
    filter: str | None = None,
    max_workers: int | None = None,
    ordered: bool = False,
    progress: bool | None = None,
    strict: bool = True,
    excluded_attributes: Iterable[str] | None = None,
) -> ExportResult:
    """Return every resource of a collection, or raise saying why that failed.

    Always sends ``startIndex`` and ``count``; advances by the resources actually
    received; a short page does not end the walk while ``totalResults`` says more;
    a page without resources ends it. When ``totalResults`` is known, pages are
    fetched concurrently. No request reaches past the client's window: larger
    collections are exported by ``sw`` partitions (see the module docstring).
    Duplicates are dropped and reported; the final count is reconciled with
    ``totalResults``.

    Parameters
    ----------
    client : SCIMClient
        The connection; its ``capabilities.window`` bounds every request.
    endpoint : str
        ``"Users"``, ``"EnterpriseUsers"``, ``"Groups"``...
    count : int, optional
        Page size; default ``client.page_size``.
    filter : str, optional
        Export only what matches (partitions are combined with it by ``and``).
    max_workers : int, optional
        Concurrent requests; default ``client.max_workers``.
    ordered : bool, default False
        Fetch one page at a time in index order.
    progress : bool, optional
        Show a tqdm progress bar; default ``client.progress``.
    strict : bool, default True
        Raise when fewer unique resources arrive than ``totalResults`` promised;
        with False, return them with ``complete=False`` and the problem reported.
    excluded_attributes : iterable of str, optional
        Top-level attributes the server should leave out (e.g. ``members``).

    Returns
    -------
    ExportResult
        The unique resources and the report.

    Raises
    ------
    IncompleteExportError
        The export cannot be complete: the server ignored or refused a partition
        filter, a partition cannot be split below the window, or fewer resources
        arrived than promised (``strict``).
    """
    exporter = _Exporter(
        client,
        endpoint,
        count=count or client.page_size,
        base_filter=filter,
        max_workers=max_workers or client.max_workers,
        ordered=ordered,
        progress=client.progress if progress is None else progress,
        excluded_attributes=list(excluded_attributes or []) or None,
    )
    result = exporter.run()

    if result.expected is not None and result.count < result.expected:
        result.complete = False
        reason = (
            f"{result.endpoint} returned {result.count:,} unique resources but"
            f" totalResults said {result.expected:,}; resources were deleted while"
            " paging, or the server skipped some"
        )
        if strict:
            raise IncompleteExportError(
                result.count, result.expected, reason, result=result
            )
        exporter.note(reason)
    elif result.expected is not None and result.count > result.expected:
        exporter.note(
            f"{result.count:,} unique resources, more than totalResults"
            f" {result.expected:,}; resources were added while paging"
        )

    logger.info(
        "Exported %s %s in %s requests",
        f"{result.count:,}",
        result.endpoint,
        result.requests,
    )
    return result


def iter_pages(
    client: SCIMClient, endpoint: str, *, count: int = 100, filter: str | None = None
) -> Iterator[Page]:
    """Yield the pages of ``endpoint`` in index order, one request at a time.

    Advances by the resources received and stops at a page without resources or
    once ``totalResults`` is reached; never reaches past the client's window.
    """
    start = 1
    window = client.capabilities.window

    while window is None or start <= window:
        n = count if window is None else min(count, window - start + 1)
        page = client.list_page(endpoint, start_index=start, count=n, filter=filter)
        yield page

        total = page.total_results
        if not page.resources or (
            total is not None and start + len(page.resources) > total
        ):
            return
        start += len(page.resources)
