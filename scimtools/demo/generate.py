"""Generate the demo tenant's people and the SCIM streams two IdPs send for them.

Everything here is pure data: no server, no clock, no global random state. The
same ``seed`` and ``people`` give the same output, byte for byte, with one Faker
version (Faker's name lists change between its releases).

People and IdPs
---------------
Each :class:`Person` is hired at ``created`` (spread over 2023-2024) and has a
name from one of nine Faker locales (accents included), an ``example.com`` work
email, a login, an optional phone and the enterprise attributes ``department``,
``costCenter``, ``employeeNumber`` and ``manager``. About 52 % are assigned to
Okta only, 40 % to Entra ID only and 8 % to both; the second IdP of a shared
person provisions them hours to months after the first.

Streams (``out/demo/streams/{okta,entra}.jsonl``)
-------------------------------------------------
One JSON object per request, ordered by ``seq``, which is global across both
IdPs (merge the two files on it to get the replay order). Keys:

``seq``
    position in the merged replay order.
``idp``
    ``"okta"`` or ``"entra"``.
``at``
    when the IdP sends it, ``yyyy-MM-ddTHH:mm:ss.SSSZ``.
``action``
    ``user.lookup``, ``user.create``, ``user.link`` (sent instead of the create
    when the lookup found a user), ``user.update``, ``user.deactivate``,
    ``user.manager``, ``group.lookup``, ``group.create``, ``group.members``.
``person``
    the person's index, or null for group requests.
``key``
    the IdP's own id for the user or group: Okta's ``00u…``/``00g…`` ids, Entra's
    externalId (a GUID or a mailNickname).
``when``
    ``always``; ``lookup_empty`` (only if the preceding lookup found nobody);
    ``lookup_matched`` (only if it found someone).
``bulk``
    true for the lookup and create of a person only one IdP provisions: no order
    can change their outcome, so the builder may load them straight into storage.
``request``
    ``{method, path, query, headers, body}`` exactly as the fixtures in
    ``idp-requests/`` are written (Okta's query percent-encoded, Entra's raw;
    op casing as each IdP sends it; ``Authorization: Bearer <token>``).
    Server-assigned ids are unknown until replay, so paths and bodies hold
    placeholders: ``${user:KEY}`` / ``${group:KEY}`` for the tenant id the same
    IdP got back for its own ``KEY``, and ``${base}`` for the SCIM base URL.
``result``
    added by the builder: ``{via, status, id, detail}``. ``via`` is ``http``,
    ``bulk`` or ``skipped`` (a ``when`` that did not hold, or a placeholder the
    IdP cannot resolve because its create failed; ``detail`` then says which).
    ``id`` is the resource id answered (for a lookup, the one found). For an
    error, ``detail`` is ``{detail, codes}`` with FusionAuth's error codes, e.g.
    ``[duplicate]user.email``.

IdP views (``out/demo/idp-views/{okta,entra}.jsonl``)
-----------------------------------------------------
What each IdP believes it provisioned, one record per user or group it manages:

``kind``
    ``user`` or ``group``.
``idp``, ``key``, ``person``
    as in the streams (``person`` is null for groups).
``externalId``
    what the IdP sends as externalId (Okta groups send none: null).
``userName`` / ``displayName``
    the IdP's value.
``profile``
    the full SCIM resource the IdP believes the target holds (for Entra, its
    create body with every later PATCH applied). The enterprise manager holds
    a ``${user:KEY}`` placeholder, which the builder replaces with the tenant id
    the IdP sent (and removes when the manager never got one).
``last_sent``
    the body of the last request it sent about this resource.
``active``
    the IdP's idea of ``active`` (users only).
``groups``
    users: the displayNames of the IdP's groups the user is pushed to.
``members``
    groups: the keys of the users the IdP pushed (and did not remove).
``first_sent``, ``last_sent_at``
    times of its first and last request about the resource.
``tenant_id``, ``outcome``, ``status``, ``error``
    added by the builder: the id the IdP got back (or null); ``created``,
    ``matched`` (the lookup found an existing resource, which the IdP adopted),
    ``conflict`` (409) or ``error``; the HTTP status of the create (of the link
    request after a match); ``{action, at, status, detail}`` of the first
    request that failed or could not be sent, else null.
``failed``
    added by the builder: how many of its requests failed or were skipped.

Planted data-quality troubles
-----------------------------
Besides the everyday mess (``DemoData.mess`` counts it), a few records carry the
troubles a data-quality audit looks for; ``DemoData.planted`` lists them as
``(idp, key)`` of the view concerned, by kind. They are drawn from a random
stream of their own, so the rest of the demo is the same with or without them:

``invalid_email``
    an Okta-only person whose kept email has a typo (two dots in a row, or no
    top-level domain), which FusionAuth stores as sent.
``invalid_phone``
    an Okta-only person whose mobile is an extension or a stub of digits.
``manager_as_string``
    an Entra-only person whose manager link is Entra's other shape: ``Add`` on
    the enterprise URN path with the bare id as a string (the
    ``16-patch-user-manager-string`` fixture), kept by the default lambdas.
``duplicate_account``
    an Entra-only person for whom Entra also provisions a guest account
    (``…#EXT#``) whose userName and email differ from the member account's only
    in case; Entra matches it by externalId, finds nothing, and the create
    answers 409. Both accounts are listed, the member's first.
``empty_group``
    a group each IdP creates and never pushes members to.

Examples
--------
>>> demo = generate_demo(seed=7, people=60)
>>> len(demo.people), sorted(demo.streams)
(60, ['entra', 'okta'])
>>> demo == generate_demo(seed=7, people=60)
True
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import string
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from faker import Faker

__all__ = [
    "DEFAULT_SEED",
    "IDPS",
    "DemoData",
    "Person",
    "format_time",
    "generate_demo",
    "write_jsonl",
]

DEFAULT_SEED = 20240601
IDPS = ("okta", "entra")

BASE = "/api/scim/resource/v2"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
OKTA_AGENT = "Okta SCIM Client 1.0.0"
TOKEN = "Bearer <token>"

START = dt.datetime(2023, 1, 2, tzinfo=dt.UTC)
HIRING_DAYS = 728
END = dt.datetime(2025, 1, 31, tzinfo=dt.UTC)

# Share of people per IdP assignment: both IdPs, Okta only, the rest Entra only.
SHARE_BOTH = 0.08
SHARE_OKTA_ONLY = 0.52

LOCALES = (
    ("en_US", 40),
    ("en_GB", 8),
    ("fr_FR", 10),
    ("de_DE", 10),
    ("es_ES", 9),
    ("pt_BR", 8),
    ("sv_SE", 5),
    ("pl_PL", 5),
    ("it_IT", 5),
)
DEPARTMENTS = (
    "Engineering",
    "Sales",
    "Support",
    "Finance",
    "Marketing",
    "Operations",
    "Research",
    "Legal",
    "HR",
    "IT",
    "Product",
    "Design",
)
SHARED_GROUPS = ("Engineering", "Sales", "Support", "Finance")
OWN_GROUPS = {
    "okta": (
        "Okta Admins",
        "VPN Users",
        "Marketing",
        "Design",
        "Contractors",
        "Berlin Office",
        "London Office",
        "Product",
        "Security Champions",
        "Onboarding 2023",
        "Data Platform",
        "Customer Success",
        "Field Ops",
        "Mobile Team",
    ),
    "entra": (
        "HR",
        "Legal",
        "IT Operations",
        "Research",
        "All Staff EMEA",
        "All Staff Americas",
        "Procurement",
        "Facilities",
        "Executives",
        "Interns",
        "Paris Office",
        "Madrid Office",
        "Quality",
        "Partners",
    ),
}
EMPTY_GROUPS = {"okta": "Alumni Network", "entra": "Board Observers"}
LARGE_GROUPS = {"okta": ("Engineering", "VPN Users"), "entra": ("All Staff EMEA",)}

PHONE_FORMATS = ("us_dashed", "us_parens", "tel_uri", "digits", "international")
_ASCII_FOLD = str.maketrans(
    {"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "đ": "d"}
)
_BASE62 = string.digits + string.ascii_letters


@dataclass(frozen=True)
class Person:
    """One invented employee, independent of how any IdP describes them."""

    index: int
    locale: str
    given_name: str
    middle_name: str
    family_name: str
    name_style: str  # "full", "formatted_only" or "no_family"
    email: str
    login: str
    phone: tuple[str, str] | None  # (country, national digits)
    department: str
    cost_center: str
    employee_number: str
    manager: int | None
    created: dt.datetime
    idps: tuple[str, ...]

    @property
    def formatted(self) -> str:
        """Return the full name as a person would write it."""
        parts = (self.given_name, self.middle_name, self.family_name)
        return " ".join(p for p in parts if p)


@dataclass
class DemoData:
    """The generated people, the two request streams and the two IdP views."""

    seed: int
    people: list[Person]
    streams: dict[str, list[dict[str, Any]]]
    views: dict[str, list[dict[str, Any]]]
    mess: dict[str, int] = field(default_factory=dict)
    planted: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def merged_stream(self) -> list[dict[str, Any]]:
        """Return both streams in replay order (by ``seq``)."""
        return sorted(
            itertools.chain.from_iterable(self.streams.values()),
            key=lambda r: r["seq"],
        )


def format_time(moment: dt.datetime) -> str:
    """Format an aware datetime as SCIM does, with milliseconds and ``Z``.

    Examples
    --------
    >>> format_time(dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC))
    '2024-05-01T08:30:00.000Z'
    """
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` to ``path`` as JSON Lines; return how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            handle.write("\n")
            count += 1

    return count


def generate_demo(*, seed: int = DEFAULT_SEED, people: int = 12_000) -> DemoData:
    """Generate the demo people and what Okta and Entra ID send for them.

    Parameters
    ----------
    seed
        Seeds Faker and the one ``random.Random`` used throughout.
    people
        How many people to invent; 12,000 makes a listing cross the 10,000
        window.

    Returns
    -------
    DemoData
        People, the streams and views without replay results, and ``mess``:
        how many times each kind of real-tenant mess was put in.

    Raises
    ------
    ValueError
        If ``people`` is below 50 (too few for every kind of mess).
    """
    if people < 50:
        raise ValueError(f"people must be at least 50, not {people}")
    return _Generator(seed, people).run()


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in " -'"))
    return "".join(c for c in kept.lower() if c.isalnum() or c == "-")


def _has_accent(text: str) -> bool:
    return any(not c.isascii() for c in text)


class _Generator:
    def __init__(self, seed: int, count: int) -> None:
        self.seed = seed
        self.count = count
        self.rng = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        for offset, (locale, _) in enumerate(LOCALES):
            faker = Faker(locale)
            faker.seed_instance(seed * 100 + offset)
            self.fakers[locale] = faker

        self.order = itertools.count()
        self.events: list[tuple[dt.datetime, int, dict[str, Any]]] = []
        self.keys: dict[str, dict[int, str]] = {idp: {} for idp in IDPS}
        self.views: dict[str, dict[str, dict[str, Any]]] = {idp: {} for idp in IDPS}
        self.mess: dict[str, int] = dict.fromkeys(_MESS_KINDS, 0)
        # The planted troubles draw from their own stream, so that the rest of
        # the demo does not depend on them.
        self.plant_rng = random.Random(f"{seed}-planted")
        self.planted: dict[str, list[tuple[str, str]]] = {
            kind: [] for kind in PLANTED_KINDS
        }
        self.bad_email: set[int] = set()
        self.bad_phone: dict[int, str] = {}
        self.manager_text: set[int] = set()
        self.guests: set[int] = set()

    # -- people -----------------------------------------------------------------

    def run(self) -> DemoData:
        people = self._make_people()
        self._choose_planted(people)
        self.person_at: dict[str, dict[int, dt.datetime]] = {i: {} for i in IDPS}
        self.deactivated_at: dict[str, dict[int, dt.datetime]] = {i: {} for i in IDPS}

        for person in people:
            self._plan_users(person, people)
        for person in people:
            self._plan_manager(person, people)
        for idp in IDPS:
            self._plan_groups(idp, people)
        for person in people:
            if person.index in self.guests:
                self._plan_entra_guest(person)
        for idp in IDPS:
            self._plan_empty_group(idp)

        self.events.sort(key=lambda e: (e[0], e[1]))
        streams: dict[str, list[dict[str, Any]]] = {idp: [] for idp in IDPS}
        for seq, (_, _, record) in enumerate(self.events):
            record["seq"] = seq
            streams[record["idp"]].append(record)

        views = {idp: list(self.views[idp].values()) for idp in IDPS}
        self.mess["phone_formats"] = sum(
            1 for k in PHONE_FORMATS if self.mess[f"phone_{k}"]
        )
        planted = {kind: list(items) for kind, items in self.planted.items()}
        return DemoData(self.seed, people, streams, views, dict(self.mess), planted)

    def _choose_planted(self, people: list[Person]) -> None:
        """Pick the people who carry a planted data-quality trouble."""
        rng = self.plant_rng
        okta_only = [p.index for p in people if p.idps == ("okta",)]
        entra_only = [p.index for p in people if p.idps == ("entra",)]
        with_phone = [i for i in okta_only if people[i].phone is not None]

        def pick(pool: list[int], share: float, taken: set[int]) -> list[int]:
            pool = [i for i in pool if i not in taken]
            count = min(len(pool), max(3, round(len(people) * share)))
            return sorted(rng.sample(pool, count))

        self.bad_email = set(pick(okta_only, 0.0015, set()))
        for index in pick(with_phone, 0.0015, self.bad_email):
            stub = f"{rng.randint(1000, 9999)}"
            self.bad_phone[index] = f"ext. {stub}" if index % 2 else stub[:3] + "01"
        managed = [i for i in entra_only if people[i].manager is not None]
        managed = [i for i in managed if people[people[i].manager].idps == ("entra",)]
        self.manager_text = set(pick(managed, 0.002, set()))
        self.guests = set(pick(entra_only, 0.001, self.manager_text))

    def _make_people(self) -> list[Person]:
        rng = self.rng
        locales = [loc for loc, _ in LOCALES]
        weights = [w for _, w in LOCALES]
        numbers = rng.sample(range(100_000, 1_000_000), self.count)
        emails: set[str] = set()
        logins: set[str] = set()
        drafts = []

        for n in range(self.count):
            locale = rng.choices(locales, weights)[0]
            faker = self.fakers[locale]
            given, family = faker.first_name(), faker.last_name()
            middle = faker.first_name() if rng.random() < 0.12 else ""
            email = self._unique(f"{_fold(given)}.{_fold(family)}", emails)
            login = self._unique(f"{_fold(given)[:1]}{_fold(family)}", logins)
            created = START + dt.timedelta(
                days=int(HIRING_DAYS * rng.random() ** 0.8),
                hours=rng.randint(7, 17),
                minutes=rng.randint(0, 59),
                seconds=rng.randint(0, 59),
            )
            drafts.append((created, n, locale, given, middle, family, email, login))

        drafts.sort()
        people: list[Person] = []
        managers: dict[str, list[int]] = {d: [] for d in DEPARTMENTS}

        for index, draft in enumerate(drafts):
            created, n, locale, given, middle, family, email, login = draft
            department = rng.choice(DEPARTMENTS)
            pool = managers[department] or [i for m in managers.values() for i in m]
            manager = rng.choice(pool[-40:]) if pool and index >= 10 else None
            if index < 10 or rng.random() < 0.08:
                managers[department].append(index)

            style = rng.random()
            name_style = (
                "formatted_only"
                if style < 0.025
                else "no_family"
                if style < 0.04
                else "full"
            )
            share = rng.random()
            idps = (
                ("okta", "entra")
                if share < SHARE_BOTH
                else ("okta",)
                if share < SHARE_BOTH + SHARE_OKTA_ONLY
                else ("entra",)
            )
            if len(idps) == 2 and rng.random() < 0.5:
                idps = ("entra", "okta")

            people.append(
                Person(
                    index=index,
                    locale=locale,
                    given_name=given,
                    middle_name=middle,
                    family_name="" if name_style == "no_family" else family,
                    name_style=name_style,
                    email=f"{email}@example.com",
                    login=login,
                    phone=self._phone(locale),
                    department=department,
                    cost_center=f"CC-{DEPARTMENTS.index(department) + 1:02d}"
                    f"{rng.randint(10, 14)}",
                    employee_number=f"E{numbers[n]}",
                    manager=manager,
                    created=created,
                    idps=idps,
                )
            )
        return people

    def _unique(self, stem: str, taken: set[str]) -> str:
        stem = stem.strip(".-") or "user"
        candidate, n = stem, 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}{n}"
        taken.add(candidate)
        return candidate

    def _phone(self, locale: str) -> tuple[str, str] | None:
        rng = self.rng
        if rng.random() < 0.15:
            return None
        if locale == "en_GB":
            return ("44", f"2079460{rng.randint(0, 999):03d}")
        if locale == "de_DE":
            return ("49", f"30{rng.randint(1000000, 9999999)}")
        if locale == "fr_FR":
            return ("33", f"1{rng.randint(10000000, 99999999)}")
        return ("1", f"{rng.randint(201, 989)}5550{rng.randint(100, 199)}")

    def _format_phone(self, phone: tuple[str, str]) -> str:
        country, digits = phone
        if country != "1":
            self.mess["phone_international"] += 1
            if country == "44":
                return f"+44 {digits[:2]} {digits[2:6]} {digits[6:]}"
            if country == "49":
                return f"+49 {digits[:2]} {digits[2:]}"
            pairs = " ".join(digits[i : i + 2] for i in range(1, 9, 2))
            return f"+33 {digits[0]} {pairs}"

        kind = self.rng.choice(PHONE_FORMATS[:4])
        self.mess[f"phone_{kind}"] += 1
        area, mid, last = digits[:3], digits[3:6], digits[6:]
        return {
            "us_dashed": f"+1 {area}-{mid}-{last}",
            "us_parens": f"({area}) {mid}-{last}",
            "tel_uri": f"tel:+1-{area}-{mid}-{last}",
            "digits": digits,
        }[kind]

    # -- users ------------------------------------------------------------------

    def _emit(
        self,
        idp: str,
        at: dt.datetime,
        action: str,
        request: dict[str, Any],
        *,
        person: int | None,
        key: str,
        when: str = "always",
        bulk: bool = False,
    ) -> dict[str, Any]:
        record = {
            "seq": -1,
            "idp": idp,
            "at": format_time(at),
            "action": action,
            "person": person,
            "key": key,
            "when": when,
            "bulk": bulk,
            "request": request,
        }
        self.events.append((at, next(self.order), record))

        view = self.views[idp].get(key)
        if view is not None and request["body"] is not None:
            view["last_sent"] = request["body"]
            view["last_sent_at"] = record["at"]
        return record

    def _plan_users(self, person: Person, people: list[Person]) -> None:
        rng = self.rng
        first_at = person.created
        overlap = len(person.idps) == 2
        upn_style = rng.random() if overlap else 1.0
        if overlap:
            self.mess["both_idps"] += 1

        for position, idp in enumerate(person.idps):
            at = first_at
            if position == 1:
                at = first_at + dt.timedelta(seconds=rng.randint(3600, 180 * 86400))
                if at > END - dt.timedelta(days=1):
                    at = END - dt.timedelta(days=1, seconds=rng.randint(0, 3600))
            self.person_at[idp][person.index] = at

            if idp == "okta":
                self._plan_okta_user(person, at, overlap)
            else:
                self._plan_entra_user(person, at, overlap, upn_style)

        if overlap:
            off = [i for i in IDPS if person.index in self.deactivated_at[i]]
            if len(off) == 1:
                self.mess["deactivated_in_one_idp_only"] += 1

    def _emails(self, value: str, *, entra: bool) -> list[dict[str, Any]]:
        roll = self.rng.random()
        if roll < 0.02:
            self.mess["emails_without_primary"] += 1
            return [{"type": "work", "value": value}]
        if roll < 0.035:
            self.mess["two_primary_emails"] += 1
            home = value.split("@")[0] + ".home@example.net"
            return [
                {"primary": True, "type": "work", "value": value},
                {"primary": True, "type": "home", "value": home},
            ]
        if entra:
            return [{"primary": True, "type": "work", "value": value}]
        return [{"primary": True, "value": value, "type": "work"}]

    def _phones(self, person: Person) -> list[dict[str, Any]]:
        if person.phone is None:
            return []
        value = self._format_phone(person.phone)
        value = self.bad_phone.get(person.index, value)
        return [{"primary": True, "type": "mobile", "value": value}]

    def _name(self, person: Person, *, entra: bool) -> dict[str, str]:
        if person.name_style == "formatted_only":
            return {"formatted": person.formatted}

        name = {"givenName": person.given_name}
        if person.middle_name:
            name["middleName"] = person.middle_name
        name["familyName"] = person.family_name
        if entra:
            return {"formatted": person.formatted, **name}
        return name

    def _new_view(
        self, idp: str, key: str, person: Person, profile: dict[str, Any]
    ) -> dict[str, Any]:
        view = {
            "kind": "user",
            "idp": idp,
            "key": key,
            "person": person.index,
            "externalId": profile["externalId"],
            "userName": profile["userName"],
            "profile": profile,
            "last_sent": None,
            "last_sent_at": None,
            "first_sent": None,
            "active": True,
            "groups": [],
            "members": None,
            "displayName": None,
        }
        self.views[idp][key] = view
        return view

    def _plan_okta_user(self, person: Person, at: dt.datetime, overlap: bool) -> None:
        rng = self.rng
        key = "00u" + "".join(rng.choices(_BASE62, k=17))
        self.keys["okta"][person.index] = key
        user_name = person.email
        if rng.random() < 0.08:
            user_name = person.login
            self.mess["username_not_email"] += 1
        self._count_name(person, "okta")

        emails = self._emails(person.email, entra=False)
        primaries = [e for e in emails if e.get("primary") is True]
        if person.index in self.bad_email and primaries:
            primaries[-1]["value"] = _typo(primaries[-1]["value"], person.index)
            self.planted["invalid_email"].append(("okta", key))
        phones = self._phones(person)
        if person.index in self.bad_phone and phones:
            self.planted["invalid_phone"].append(("okta", key))
        body: dict[str, Any] = {
            "schemas": [CORE_USER],
            "userName": user_name,
            "name": self._name(person, entra=False),
            "emails": emails,
            "displayName": person.formatted,
            "locale": "en-US" if person.locale.startswith("en") else "en-GB",
            "externalId": key,
            "groups": [],
            "password": "".join(rng.choices(_BASE62, k=12)),
            "active": True,
        }
        if phones:
            body["phoneNumbers"] = phones
        profile = {k: v for k, v in body.items() if k != "password"}
        view = self._new_view("okta", key, person, profile)
        view["first_sent"] = format_time(at)

        headers = {"User-Agent": OKTA_AGENT, "Authorization": TOKEN}
        value = quote(user_name, safe="")
        lookup = {
            "method": "GET",
            "path": f"{BASE}/Users",
            "query": f"filter=userName%20eq%20%22{value}%22&startIndex=1&count=100",
            "headers": headers,
            "body": None,
        }
        common = {"person": person.index, "key": key}
        self._emit("okta", at, "user.lookup", lookup, bulk=not overlap, **common)
        create = self._request("POST", "/Users", body, headers)
        self._emit(
            "okta",
            at + _S,
            "user.create",
            create,
            when="lookup_empty",
            bulk=not overlap,
            **common,
        )
        if overlap:
            link = self._okta_put(key, view)
            self._emit(
                "okta", at + _S, "user.link", link, when="lookup_matched", **common
            )

        later = at + dt.timedelta(days=rng.uniform(10, 500))
        off_at = self._deactivation_time(at, overlap)
        if rng.random() < (0.25 if overlap else 0.10) and later < (off_at or END):
            self._change_okta_profile(person, view, rng)
            self._emit(
                "okta", later, "user.update", self._okta_put(key, view), **common
            )

        if off_at is not None:
            self.deactivated_at["okta"][person.index] = off_at
            patch = {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            }
            request = self._request("PATCH", f"/Users/${{user:{key}}}", patch, headers)
            self._emit("okta", off_at, "user.deactivate", request, **common)
            view["active"] = False
            view["profile"]["active"] = False

    def _deactivation_time(self, at: dt.datetime, overlap: bool) -> dt.datetime | None:
        if self.rng.random() >= (0.25 if overlap else 0.06):
            return None
        off_at = at + dt.timedelta(days=self.rng.uniform(20, 600))
        return off_at if off_at < END else None

    def _change_okta_profile(
        self, person: Person, view: dict[str, Any], rng: random.Random
    ) -> None:
        name = view["profile"]["name"]
        if "givenName" not in name or rng.random() < 0.4:
            phones = self._phones(person) if person.phone else []
            if phones:
                view["profile"]["phoneNumbers"] = phones
                return
        if "givenName" in name:
            family = self.fakers[person.locale].last_name()
            name["familyName"] = family
            view["profile"]["displayName"] = f"{name['givenName']} {family}"
            self._count_accent(family)

    def _okta_put(self, key: str, view: dict[str, Any]) -> dict[str, Any]:
        profile = view["profile"]
        body: dict[str, Any] = {
            "schemas": [CORE_USER],
            "id": f"${{user:{key}}}",
            "userName": profile["userName"],
            "name": dict(profile["name"]),
            "emails": [
                {**email, "display": email["value"]} for email in profile["emails"]
            ],
            "active": profile["active"],
            "groups": [],
            "meta": {"resourceType": "User"},
        }
        if "phoneNumbers" in profile:
            body["phoneNumbers"] = profile["phoneNumbers"]
        headers = {"User-Agent": OKTA_AGENT, "Authorization": TOKEN}
        return self._request("PUT", f"/Users/${{user:{key}}}", body, headers)

    def _plan_entra_user(
        self, person: Person, at: dt.datetime, overlap: bool, upn_style: float
    ) -> None:
        rng = self.rng
        if rng.random() < 0.1:
            key = person.login
            self.mess["externalid_mailnickname"] += 1
        else:
            key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.keys["entra"][person.index] = key

        email = person.email
        user_name = email
        if overlap and upn_style < 0.35:
            local, domain = email.split("@")
            email = ".".join(p.capitalize() for p in local.split(".")) + "@" + domain
            user_name = email
            self.mess["email_case_differs"] += 1
        elif overlap and upn_style < 0.65:
            user_name = f"{person.login}@example.org"
            self.mess["overlap_username_differs"] += 1
        self._count_name(person, "entra")

        body: dict[str, Any] = {
            "schemas": [CORE_USER, ENTERPRISE],
            "externalId": key,
            "userName": user_name,
            "active": True,
            "emails": self._emails(email, entra=True),
            "meta": {"resourceType": "User"},
            "name": self._name(person, entra=True),
            "roles": [],
            ENTERPRISE: {
                "employeeNumber": person.employee_number,
                "department": person.department,
                "costCenter": person.cost_center,
            },
        }
        # Some mobiles reach Entra only later; the update then sends an Add.
        phones = self._phones(person) if rng.random() < 0.7 else []
        if phones:
            body["phoneNumbers"] = phones
        view = self._new_view("entra", key, person, json.loads(json.dumps(body)))
        view["first_sent"] = format_time(at)

        headers = {"Authorization": TOKEN}
        lookup = {
            "method": "GET",
            "path": f"{BASE}/Users",
            "query": f'filter=userName eq "{user_name}"',
            "headers": headers,
            "body": None,
        }
        common = {"person": person.index, "key": key}
        self._emit("entra", at, "user.lookup", lookup, bulk=not overlap, **common)
        create = self._entra_request("POST", "/Users", body)
        self._emit(
            "entra",
            at + _S,
            "user.create",
            create,
            when="lookup_empty",
            bulk=not overlap,
            **common,
        )
        if overlap:
            ops = [
                _op("Replace", "externalId", key),
                _op("Replace", 'emails[type eq "work"].value', email),
                _op("Replace", f"{ENTERPRISE}:department", person.department),
                _op("Replace", f"{ENTERPRISE}:employeeNumber", person.employee_number),
            ]
            if "givenName" in body["name"]:
                ops.insert(2, _op("Replace", "name.givenName", person.given_name))
                ops.insert(3, _op("Replace", "name.familyName", person.family_name))
            link = self._entra_patch(f"/Users/${{user:{key}}}", ops)
            self._emit(
                "entra", at + _S, "user.link", link, when="lookup_matched", **common
            )

        later = at + dt.timedelta(days=rng.uniform(10, 500))
        off_at = self._deactivation_time(at, overlap)
        if rng.random() < (0.25 if overlap else 0.10) and later < (off_at or END):
            ops = self._change_entra_profile(person, view, rng)
            patch = self._entra_patch(f"/Users/${{user:{key}}}", ops)
            self._emit("entra", later, "user.update", patch, **common)

        if off_at is not None:
            self.deactivated_at["entra"][person.index] = off_at
            ops = [_op("Replace", "active", "False")]
            patch = self._entra_patch(f"/Users/${{user:{key}}}", ops)
            self._emit("entra", off_at, "user.deactivate", patch, **common)
            view["active"] = False
            view["profile"]["active"] = False

    def _change_entra_profile(
        self, person: Person, view: dict[str, Any], rng: random.Random
    ) -> list[dict[str, Any]]:
        profile = view["profile"]
        roll = rng.random()
        if roll < 0.35:
            department = rng.choice([d for d in DEPARTMENTS if d != person.department])
            profile[ENTERPRISE]["department"] = department
            return [_op("Replace", f"{ENTERPRISE}:department", department)]

        if roll < 0.6 and "phoneNumbers" not in profile and person.phone:
            phones = self._phones(person)
            profile["phoneNumbers"] = phones
            self.mess["entra_add_on_empty_filter"] += 1
            path = 'phoneNumbers[type eq "mobile"].value'
            return [_op("Add", path, phones[0]["value"])]

        family = self.fakers[person.locale].last_name()
        self._count_accent(family)
        name = profile["name"]
        if "givenName" not in name:
            name["formatted"] = f"{person.given_name} {family}"
            return [_op("Replace", "name.formatted", name["formatted"])]

        op_name = "Replace" if name.get("familyName") else "Add"
        name["familyName"] = family
        name["formatted"] = f"{name['givenName']} {family}"
        return [
            _op(op_name, "name.familyName", family),
            _op("Replace", "name.formatted", name["formatted"]),
        ]

    def _plan_manager(self, person: Person, people: list[Person]) -> None:
        if person.manager is None or "entra" not in person.idps:
            return
        manager = people[person.manager]
        if "entra" not in manager.idps:
            return

        at = max(
            self.person_at["entra"][person.index],
            self.person_at["entra"][manager.index],
        ) + dt.timedelta(minutes=5)
        if at >= END:
            return
        key = self.keys["entra"][person.index]
        manager_key = self.keys["entra"][manager.index]
        ref = f"${{user:{manager_key}}}"
        profile = self.views["entra"][key]["profile"]
        if person.index in self.manager_text:
            ops = [_op("Add", f"{ENTERPRISE}:manager", ref)]
            profile[ENTERPRISE]["manager"] = ref
            self.planted["manager_as_string"].append(("entra", key))
        else:
            ops = [
                _op(
                    "Add",
                    "manager",
                    [{"$ref": f"${{base}}/Users/{ref}", "value": ref}],
                )
            ]
            profile[ENTERPRISE]["manager"] = {"value": ref}
        patch = self._entra_patch(f"/Users/${{user:{key}}}", ops)
        self._emit("entra", at, "user.manager", patch, person=person.index, key=key)
        self.mess["manager_links"] += 1

    def _count_name(self, person: Person, idp: str) -> None:
        if idp != person.idps[0]:
            return
        if person.name_style == "formatted_only":
            self.mess["formatted_name_only"] += 1
        if person.name_style == "no_family":
            self.mess["empty_family_name"] += 1
        if _has_accent(person.given_name + person.family_name + person.middle_name):
            self.mess["accented_names"] += 1

    def _count_accent(self, text: str) -> None:
        if _has_accent(text):
            self.mess["accented_names"] += 1

    def _plan_entra_guest(self, person: Person) -> None:
        """Entra provisions a guest account of a member: the same userName and
        email but for case, matched by externalId, so its create answers 409."""
        rng = self.plant_rng
        member_key = self.keys["entra"][person.index]
        member = self.views["entra"][member_key]["profile"]
        local, domain = person.email.split("@")
        key = f"{local}_{domain}#EXT#"
        email = ".".join(p.capitalize() for p in local.split(".")) + "@" + domain
        if email == person.email:
            email = person.email.upper()
        at = self.person_at["entra"][person.index] + dt.timedelta(
            days=rng.uniform(1, 60)
        )
        at = min(at, END - dt.timedelta(hours=2))
        body: dict[str, Any] = {
            "schemas": [CORE_USER, ENTERPRISE],
            "externalId": key,
            "userName": email,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": email}],
            "meta": {"resourceType": "User"},
            "name": dict(member["name"]),
            "roles": [],
            ENTERPRISE: {"department": person.department},
        }
        view = self._new_view("entra", key, person, json.loads(json.dumps(body)))
        view["first_sent"] = format_time(at)
        lookup = {
            "method": "GET",
            "path": f"{BASE}/Users",
            # '#' would start the URL's fragment: Entra percent-encodes it.
            "query": f'filter=externalId eq "{key.replace("#", "%23")}"',
            "headers": {"Authorization": TOKEN},
            "body": None,
        }
        common = {"person": person.index, "key": key}
        self._emit("entra", at, "user.lookup", lookup, **common)
        create = self._entra_request("POST", "/Users", body)
        self._emit(
            "entra", at + _S, "user.create", create, when="lookup_empty", **common
        )
        self.planted["duplicate_account"] += [("entra", member_key), ("entra", key)]

    def _plan_empty_group(self, idp: str) -> None:
        rng = self.plant_rng
        if idp == "okta":
            key = "00g" + "".join(rng.choices(_BASE62, k=17))
        else:
            key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = START + dt.timedelta(days=rng.uniform(0, 120))
        self._plan_group(idp, EMPTY_GROUPS[idp], key, [], created)
        self.planted["empty_group"].append((idp, key))

    # -- groups -----------------------------------------------------------------

    def _plan_groups(self, idp: str, people: list[Person]) -> None:
        rng = self.rng
        mine = [p.index for p in people if p.index in self.keys[idp]]
        names = SHARED_GROUPS + OWN_GROUPS[idp]

        for name in names:
            if name in LARGE_GROUPS[idp]:
                size = rng.randint(150, 450)
            else:
                size = rng.randint(5, 90)
            members = sorted(rng.sample(mine, min(size, len(mine))))
            created = START + dt.timedelta(days=rng.uniform(0, 120))
            if idp == "okta":
                key = "00g" + "".join(rng.choices(_BASE62, k=17))
            else:
                key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            self._plan_group(idp, name, key, members, created)

        self.mess["same_name_groups"] = len(SHARED_GROUPS)

    def _plan_group(
        self,
        idp: str,
        name: str,
        key: str,
        members: list[int],
        created: dt.datetime,
    ) -> None:
        headers = {"Authorization": TOKEN}
        view = {
            "kind": "group",
            "idp": idp,
            "key": key,
            "person": None,
            "externalId": key if idp == "entra" else None,
            "userName": None,
            "displayName": name,
            "profile": None,
            "last_sent": None,
            "last_sent_at": None,
            "first_sent": format_time(created),
            "active": None,
            "groups": None,
            "members": [],
        }
        self.views[idp][key] = view
        common = {"person": None, "key": key}

        if idp == "okta":
            headers = {"User-Agent": OKTA_AGENT, "Authorization": TOKEN}
            body = {"schemas": [CORE_GROUP], "displayName": name, "members": []}
            create = self._request("POST", "/Groups", body, headers)
            self._emit(idp, created, "group.create", create, **common)
        else:
            lookup = {
                "method": "GET",
                "path": f"{BASE}/Groups",
                "query": f'excludedAttributes=members&filter=displayName eq "{name}"',
                "headers": headers,
                "body": None,
            }
            self._emit(idp, created, "group.lookup", lookup, **common)
            body = {
                "schemas": [CORE_GROUP, MS_GROUP],
                "externalId": key,
                "displayName": name,
                "meta": {"resourceType": "Group"},
            }
            create = self._entra_request("POST", "/Groups", body)
            self._emit(
                idp, created + _S, "group.create", create, when="lookup_empty", **common
            )
        view["profile"] = {k: v for k, v in body.items() if k != "meta"}

        pushed: set[int] = set()
        first_push = True
        for push_at in _pushes(created):
            due = {
                m
                for m in members
                if self.person_at[idp][m] <= push_at
                and self.deactivated_at[idp].get(m, END) > push_at
            }
            added, removed = sorted(due - pushed), sorted(pushed - due)
            if not added and not removed:
                continue
            request = self._member_push(idp, key, added, removed, first_push)
            self._emit(idp, push_at, "group.members", request, **common)
            pushed, first_push = due, False

        view["members"] = [self.keys[idp][m] for m in sorted(pushed)]
        for m in sorted(pushed):
            self.views[idp][self.keys[idp][m]]["groups"].append(name)
        if len(pushed) > 100:
            self.mess["groups_over_100"] += 1

    def _member_push(
        self, idp: str, key: str, added: list[int], removed: list[int], first: bool
    ) -> dict[str, Any]:
        keys = self.keys[idp]
        path = f"/Groups/${{group:{key}}}"

        if idp == "okta":
            headers = {"User-Agent": OKTA_AGENT, "Authorization": TOKEN}
            views = self.views[idp]
            adds = [
                {"value": f"${{user:{keys[m]}}}", "display": views[keys[m]]["userName"]}
                for m in added
            ]
            if first:
                ops = [{"op": "replace", "path": "members", "value": adds}]
            else:
                ops = [
                    {"op": "remove", "path": f'members[value eq "${{user:{keys[m]}}}"]'}
                    for m in removed
                ]
                if adds:
                    ops.append({"op": "add", "path": "members", "value": adds})
            body = {"schemas": [PATCH_OP], "Operations": ops}
            return self._request("PATCH", path, body, headers)

        ops = []
        for op_name, chunk_of in (("Remove", removed), ("Add", added)):
            for start in range(0, len(chunk_of), 50):
                value = [
                    {"$ref": None, "value": f"${{user:{keys[m]}}}"}
                    for m in chunk_of[start : start + 50]
                ]
                ops.append(_op(op_name, "members", value))
        return self._entra_patch(path, ops)

    # -- requests ---------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "method": method,
            "path": BASE + path,
            "query": "",
            "headers": dict(headers),
            "body": body,
        }

    def _entra_request(self, method: str, path: str, body: Any) -> dict[str, Any]:
        headers = {"Authorization": TOKEN, "Content-Type": "application/scim+json"}
        return self._request(method, path, body, headers)

    def _entra_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"schemas": [PATCH_OP], "Operations": ops}
        return self._entra_request("PATCH", path, body)


_S = dt.timedelta(seconds=1)
_MESS_KINDS = (
    "both_idps",
    "email_case_differs",
    "overlap_username_differs",
    "emails_without_primary",
    "two_primary_emails",
    "phone_us_dashed",
    "phone_us_parens",
    "phone_tel_uri",
    "phone_digits",
    "phone_international",
    "accented_names",
    "formatted_name_only",
    "empty_family_name",
    "username_not_email",
    "externalid_mailnickname",
    "deactivated_in_one_idp_only",
    "entra_add_on_empty_filter",
    "manager_links",
    "same_name_groups",
    "groups_over_100",
)


PLANTED_KINDS = (
    "invalid_email",
    "invalid_phone",
    "manager_as_string",
    "duplicate_account",
    "empty_group",
)


def _typo(email: str, index: int) -> str:
    """Break an address as hands do: a doubled dot, or no top-level domain.

    Examples
    --------
    >>> _typo("ana.silva@example.com", 1), _typo("ana.silva@example.com", 2)
    ('ana..silva@example.com', 'ana.silva@example')
    """
    local, domain = email.split("@")
    if index % 2 and "." in local:
        return local.replace(".", "..", 1) + "@" + domain
    return local + "@" + domain.rsplit(".", 1)[0]


def _op(name: str, path: str, value: Any) -> dict[str, Any]:
    return {"op": name, "path": path, "value": value}


def _pushes(created: dt.datetime) -> Iterator[dt.datetime]:
    """Yield the membership push times of a group: soon after creation, then
    every quarter until the end of the demo period."""
    at = created + dt.timedelta(hours=1)
    while at < END:
        yield at
        at += dt.timedelta(days=91)
