"""Generate a legacy directory export to import into the demo tenant.

Pure data, like `scimtools.demo.generate`: the same seed and sizes give the same
rows, byte for byte, with one Faker version. ``data/demo/legacy-directory.csv``
was written by ``write_legacy_directory()`` with the defaults (3,000 rows,
derived from ``generate_demo()``'s 12,000 people) as the generators stood in
commit 75d13ad; it is kept as a fixed input for notebook 05, so later changes
to the demo generator do not change it (a fresh run gives other rows).

Columns: ``employee_id`` (becomes externalId), ``login`` (userName), ``email``,
``full_name`` (``Given Family`` or ``Family, Given``), ``phone``, ``department``
and ``groups`` (``;``-separated group names). The export carries the mess such
exports have, counted in `LegacyDirectory.mess`:

``mixed_case_email``
    emails in mixed case (``Ada.Lovelace@Example.ORG``); lower-cased by the
    mapping, not a problem.
``phone_formats``
    ``(201) 555-0123``, ``201.555.0123``, ``+1 201 555 0123``, ``tel:`` URIs,
    bare digits; read to E.164 by the mapping.
``duplicate``
    a person exported twice, the second time with the email in another case
    (and half the time under the same employee id).
``missing_name`` / ``one_word_name``
    no name at all, or one word that cannot be split into given and family.
``bad_email`` / ``bad_phone``
    an email or phone number that does not parse.
``in_tenant_same_login``
    a demo tenant user exported under the userName the tenant has: matched
    and updated.
``in_tenant_other_login``
    a demo tenant user exported under another userName (their short login)
    with the email the tenant user has: it collides and is held back.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from faker import Faker

from scimtools.demo.generate import DEFAULT_SEED, DemoData, Person, generate_demo

__all__ = [
    "LEGACY_COLUMNS",
    "LEGACY_MAPPING",
    "LEGACY_SEED",
    "LegacyDirectory",
    "make_legacy_directory",
    "write_legacy_directory",
]

LEGACY_SEED = 20240907
LEGACY_COLUMNS = (
    "employee_id",
    "login",
    "email",
    "full_name",
    "phone",
    "department",
    "groups",
)
#: How the legacy columns map onto SCIM (see `scimtools.imports.ImportMapping`).
LEGACY_MAPPING: dict[str, Any] = {
    "fields": {
        "employee_id": "externalId",
        "login": {"path": "userName", "transform": "strip"},
        "email": {"path": "emails[primary].value", "transform": "lower"},
        "full_name": {"path": "name", "transform": "split_name"},
        "phone": {"path": "phoneNumbers[primary].value", "transform": "e164"},
        "department": "department",
    },
    "required": ["userName", "emails[primary].value", "name.familyName"],
    "groups": {"column": "groups", "separator": ";"},
}

_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT")
_DEPARTMENTS = ("Sales", "Support", "Finance", "Operations", "Warehouse", "IT")
_GROUPS = ("Sales", "Support", "Finance", "Warehouse", "Field Service", "Legacy Admins")
_SHARES = {
    "in_tenant_same_login": 0.03,
    "in_tenant_other_login": 0.02,
    "duplicate": 0.015,
    "missing_name": 0.008,
    "one_word_name": 0.004,
    "bad_email": 0.006,
    "bad_phone": 0.006,
}


@dataclass
class LegacyDirectory:
    """The export and what was planted in it.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows, columns `LEGACY_COLUMNS`, all text.
    mess : dict of str to int
        How many rows carry each kind of mess (module docstring).
    planted : dict of str to list of int
        Which rows (counted from 1) carry each kind.
    """

    frame: pd.DataFrame
    mess: dict[str, int] = field(default_factory=dict)
    planted: dict[str, list[int]] = field(default_factory=dict)


def make_legacy_directory(
    *,
    rows: int = 3_000,
    seed: int = LEGACY_SEED,
    demo: DemoData | None = None,
) -> LegacyDirectory:
    """Generate a legacy export of ``rows`` people, some already in the tenant.

    Parameters
    ----------
    rows : int, default 3000
        Rows of the export (duplicates included).
    seed : int
        Seeds Faker and the one ``random.Random`` used.
    demo : DemoData, optional
        The demo tenant's people; default ``generate_demo()`` (its 12,000).
        Pass the same data the tenant was built from.

    Returns
    -------
    LegacyDirectory

    Examples
    --------
    >>> from scimtools.demo.generate import generate_demo
    >>> legacy = make_legacy_directory(rows=200, demo=generate_demo(people=60))
    >>> len(legacy.frame), legacy.mess["duplicate"]
    (200, 3)
    """
    if rows < 100:
        raise ValueError(f"rows must be at least 100, not {rows}")
    demo = demo if demo is not None else generate_demo(seed=DEFAULT_SEED)
    rng = random.Random(seed)
    counts = {kind: max(1, round(rows * share)) for kind, share in _SHARES.items()}

    tenant = _tenant_people(demo)
    rng.shuffle(tenant)
    same = tenant[: counts["in_tenant_same_login"]]
    other = tenant[len(same) : len(same) + counts["in_tenant_other_login"]]
    fresh_count = rows - len(same) - len(other) - counts["duplicate"]
    records: list[tuple[str, dict[str, str]]] = []

    for person, user_name in same:
        records.append(("in_tenant_same_login", _from_person(rng, person, user_name)))
    for person, _ in other:
        records.append(
            ("in_tenant_other_login", _from_person(rng, person, person.login))
        )
    for record in _fresh(rng, seed, fresh_count):
        records.append(("", record))
    rng.shuffle(records)

    fresh_rows = [i for i, (kind, _) in enumerate(records) if not kind]
    for kind in ("missing_name", "one_word_name", "bad_email", "bad_phone"):
        for i in rng.sample(fresh_rows, counts[kind]):
            fresh_rows.remove(i)
            records[i] = (kind, _spoil(rng, kind, records[i][1]))
    keyed = [(float(i), kind, record) for i, (kind, record) in enumerate(records)]
    for source in rng.sample(fresh_rows, counts["duplicate"]):
        copy = dict(records[source][1])
        copy["email"] = _recase(rng, copy["email"], different=True)
        if rng.random() < 0.5:
            copy["employee_id"] = f"L{rng.randint(900_000, 999_999)}"
        where = rng.uniform(source + 0.5, len(records))
        keyed.append((where, "duplicate", copy))
    records = [(kind, record) for _, kind, record in sorted(keyed, key=lambda k: k[0])]

    planted: dict[str, list[int]] = {}
    for position, (kind, record) in enumerate(records, start=1):
        if kind:
            planted.setdefault(kind, []).append(position)
        if "@" in record["email"] and record["email"] != record["email"].lower():
            planted.setdefault("mixed_case_email", []).append(position)
    frame = pd.DataFrame([r for _, r in records], columns=list(LEGACY_COLUMNS))
    mess = dict(sorted(Counter({k: len(v) for k, v in planted.items()}).items()))
    return LegacyDirectory(frame=frame, mess=mess, planted=planted)


def write_legacy_directory(path: str | Path, **options: Any) -> Path:
    """Write `make_legacy_directory` as CSV (UTF-8) and return the path."""
    from scimtools.csvfiles import write_csv

    return write_csv(make_legacy_directory(**options).frame, path)


def _tenant_people(demo: DemoData) -> list[tuple[Person, str]]:
    """People only Okta provisions, with the userName and email Okta sent."""
    out = []
    for view in demo.views["okta"]:
        if view["kind"] != "user" or view["person"] is None:
            continue
        person = demo.people[view["person"]]
        emails = view["profile"].get("emails") or []
        primary = [e for e in emails if e.get("primary") is True]
        if person.idps != ("okta",) or len(primary) != 1 or len(emails) != 1:
            continue
        if primary[0]["value"] != person.email or person.name_style != "full":
            continue
        out.append((person, view["userName"]))
    return out


def _from_person(rng: random.Random, person: Person, login: str) -> dict[str, str]:
    return {
        "employee_id": f"L{rng.randint(100_000, 899_999)}",
        "login": login,
        "email": _recase(rng, person.email),
        "full_name": _full_name(rng, person.given_name, person.family_name),
        "phone": _phone(rng),
        "department": rng.choice(_DEPARTMENTS),
        "groups": _groups(rng),
    }


def _fresh(rng: random.Random, seed: int, count: int) -> list[dict[str, str]]:
    fakers = {}
    for offset, locale in enumerate(_LOCALES):
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed * 10 + offset)
    taken_ids: set[str] = set()
    taken_logins: set[str] = set()
    out = []

    while len(out) < count:
        faker = fakers[rng.choice(_LOCALES)]
        given, family = faker.first_name(), faker.last_name()
        stem = _ascii(f"{given}.{family}")
        login = _ascii(f"{given[:1]}{family}")
        if not stem or not login:
            continue
        n = 1
        while f"{login}{n if n > 1 else ''}" in taken_logins:
            n += 1
        suffix = str(n) if n > 1 else ""
        login, stem = login + suffix, stem + suffix
        taken_logins.add(login)
        employee_id = f"L{rng.randint(100_000, 899_999)}"
        while employee_id in taken_ids:
            employee_id = f"L{rng.randint(100_000, 899_999)}"
        taken_ids.add(employee_id)
        out.append(
            {
                "employee_id": employee_id,
                "login": login,
                "email": _recase(rng, f"{stem}@example.org"),
                "full_name": _full_name(rng, given, family),
                "phone": _phone(rng),
                "department": rng.choice(_DEPARTMENTS),
                "groups": _groups(rng),
            }
        )
    return out


def _ascii(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)
    return "".join(
        c for c in folded.lower() if c.isascii() and (c.isalnum() or c == ".")
    )


def _recase(rng: random.Random, email: str, *, different: bool = False) -> str:
    if not different and rng.random() > 0.3:
        return email
    local, _, domain = email.partition("@")
    styles = (
        lambda: ".".join(p.capitalize() for p in local.split(".")) + "@" + domain,
        lambda: email.upper(),
        lambda: local + "@" + domain.capitalize(),
    )
    while True:
        changed = rng.choice(styles)()
        if changed != email or not different:
            return changed


def _full_name(rng: random.Random, given: str, family: str) -> str:
    if rng.random() < 0.2:
        return f"{family}, {given}"
    return f"{given} {family}"


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return ""
    area, line = rng.randint(201, 989), rng.randint(100, 199)
    return rng.choice(
        (
            f"({area}) 555-0{line}",
            f"{area}.555.0{line}",
            f"+1 {area} 555 0{line}",
            f"tel:+1-{area}-555-0{line}",
            f"{area}5550{line}",
            f"{area}-555-0{line}",
        )
    )


def _groups(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return ""
    return ";".join(rng.sample(_GROUPS, rng.choice((1, 1, 2))))


def _spoil(rng: random.Random, kind: str, record: dict[str, str]) -> dict[str, str]:
    record = dict(record)
    if kind == "missing_name":
        record["full_name"] = ""
    elif kind == "one_word_name":
        record["full_name"] = record["full_name"].replace(",", "").split()[-1]
    elif kind == "bad_email":
        local = record["email"].partition("@")[0]
        record["email"] = rng.choice(
            (f"{local}@", f"{local} at example.org", f"{local}@@example.org")
        )
    elif kind == "bad_phone":
        record["phone"] = rng.choice(("555-01", "n/a", "12"))
    return record
