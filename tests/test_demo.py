"""The demo tenant: generator determinism, mess, request shapes and the build."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimtools.demo.build import BuildReport, build_demo
from scimtools.demo.generate import ENTERPRISE, DemoData, generate_demo
from scimtools.sandbox import Sandbox

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "idp-requests"
PEOPLE = 600
SEED = 11


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate_demo(seed=SEED, people=PEOPLE)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    db = tmp_path_factory.mktemp("demo") / "tenant.sqlite"
    return db, build_demo(db, seed=SEED, people=PEOPLE)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def export_tenant(db: Path) -> dict[str, list[dict[str, Any]]]:
    """List every user and group of a built tenant through the SCIM API."""
    exported: dict[str, list[dict[str, Any]]] = {}
    with Sandbox(db) as sb:
        headers = {"Authorization": f"Bearer {sb.mint_token('auditor')}"}
        for endpoint in ("Users", "Groups"):
            resources: list[dict[str, Any]] = []
            while True:
                page = httpx.get(
                    f"{sb.base_url}/{endpoint}",
                    params={"startIndex": len(resources) + 1, "count": 500},
                    headers=headers,
                ).json()
                resources += page.get("Resources", [])
                if len(resources) >= page["totalResults"]:
                    break
            # meta.location names the port, which differs between runs.
            text = json.dumps(resources).replace(sb.url, "http://sandbox")
            exported[endpoint] = json.loads(text)
    return exported


def requests_of(demo: DemoData, idp: str, action: str) -> Iterator[dict[str, Any]]:
    for record in demo.streams[idp]:
        if record["action"] == action:
            yield record["request"]


# -- the generator ----------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed() -> None:
    first = generate_demo(seed=3, people=200)

    second = generate_demo(seed=3, people=200)
    other = generate_demo(seed=4, people=200)

    assert first == second
    assert first.streams != other.streams


def test_generation_refuses_too_few_people() -> None:
    with pytest.raises(ValueError, match="at least 50"):
        generate_demo(people=10)


def test_about_eight_percent_of_people_are_in_both_idps() -> None:
    demo = generate_demo(seed=SEED, people=3000)

    both = sum(1 for p in demo.people if len(p.idps) == 2)

    assert 0.065 < both / 3000 < 0.095
    assert demo.mess["both_idps"] == both


def test_people_are_created_over_two_years(demo: DemoData) -> None:
    months = Counter(p.created.strftime("%Y-%m") for p in demo.people)

    assert len(months) >= 23
    assert min(months) == "2023-01" and max(months) == "2024-12"


def test_streams_share_one_replay_order(demo: DemoData) -> None:
    merged = demo.merged_stream()

    assert [r["seq"] for r in merged] == list(range(len(merged)))
    assert [r["at"] for r in merged] == sorted(r["at"] for r in merged)


def _creates(demo: DemoData) -> Iterator[tuple[str, dict[str, Any]]]:
    for idp in demo.streams:
        for request in requests_of(demo, idp, "user.create"):
            yield idp, request["body"]


def _count_mess(demo: DemoData) -> Counter[str]:
    """Count each kind of mess from the streams themselves, not the generator."""
    found: Counter[str] = Counter()
    phone_patterns = {
        "phone_us_dashed": r"^\+1 \d{3}-\d{3}-\d{4}$",
        "phone_us_parens": r"^\(\d{3}\) \d{3}-\d{4}$",
        "phone_tel_uri": r"^tel:\+1-\d{3}-\d{3}-\d{4}$",
        "phone_digits": r"^\d{10}$",
        "phone_international": r"^\+(44|49|33) ",
    }
    emails: dict[tuple[str, int], str] = {}

    for idp, body in _creates(demo):
        primaries = [e for e in body["emails"] if e.get("primary")]
        found["emails_without_primary"] += not primaries
        found["two_primary_emails"] += len(primaries) == 2
        for phone in body.get("phoneNumbers", []):
            for kind, pattern in phone_patterns.items():
                found[kind] += bool(re.match(pattern, phone["value"]))
        name = body["name"]
        found["formatted_name_only"] += set(name) == {"formatted"}
        found["empty_family_name"] += name.get("familyName") == ""
        found["accented_names"] += any(
            not c.isascii() for c in json.dumps(name, ensure_ascii=False)
        )
        found["username_not_email"] += "@" not in body["userName"]
        emails[idp, body["userName"]] = body["emails"][0]["value"]

    for person in demo.people:
        if len(person.idps) != 2:
            continue
        values = {
            record["idp"]: record["request"]["body"]["emails"][0]["value"]
            for idp in person.idps
            for record in demo.streams[idp]
            if record["person"] == person.index and record["action"] == "user.create"
        }
        okta, entra = values["okta"], values["entra"]
        found["email_case_differs"] += okta != entra and okta.lower() == entra.lower()

    deactivated = {
        (r["idp"], r["person"])
        for idp in demo.streams
        for r in demo.streams[idp]
        if r["action"] == "user.deactivate"
    }
    for person in demo.people:
        if len(person.idps) == 2:
            off = sum((idp, person.index) in deactivated for idp in person.idps)
            found["deactivated_in_one_idp_only"] += off == 1

    groups = {
        idp: {v["displayName"]: v for v in demo.views[idp] if v["kind"] == "group"}
        for idp in demo.views
    }
    for name in set(groups["okta"]) & set(groups["entra"]):
        if groups["okta"][name]["members"] != groups["entra"][name]["members"]:
            found["same_name_groups"] += 1
    for idp in groups:
        found["groups_over_100"] += sum(
            len(g["members"]) > 100 for g in groups[idp].values()
        )
    return found


MESS = (
    "emails_without_primary",
    "two_primary_emails",
    "phone_us_dashed",
    "phone_us_parens",
    "phone_tel_uri",
    "phone_digits",
    "phone_international",
    "formatted_name_only",
    "empty_family_name",
    "accented_names",
    "username_not_email",
    "email_case_differs",
    "deactivated_in_one_idp_only",
    "same_name_groups",
    "groups_over_100",
)


@pytest.mark.parametrize("kind", MESS)
def test_every_kind_of_mess_is_in_the_streams(demo: DemoData, kind: str) -> None:
    found = _count_mess(demo)

    assert found[kind] >= 1, f"no {kind} in {PEOPLE} people"
    assert demo.mess[kind] >= 1


def test_mess_counts_match_what_the_streams_hold(demo: DemoData) -> None:
    found = _count_mess(demo)

    for kind in ("emails_without_primary", "two_primary_emails"):
        assert found[kind] == demo.mess[kind], kind
    for kind in ("email_case_differs", "deactivated_in_one_idp_only"):
        assert found[kind] == demo.mess[kind], kind
    assert found["groups_over_100"] == demo.mess["groups_over_100"]


# -- request shapes ----------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    if not FIXTURES.is_dir():
        pytest.skip(f"the IdP request fixtures are not at {FIXTURES}")
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))["request"]


def _id_free(path: str) -> str:
    return re.sub(r"/(Users|Groups)/[^/]+$", r"/\1/{id}", path)


SHAPES = [
    ("okta", "user.lookup", "okta/01-user-lookup-username-eq", set()),
    ("okta", "user.create", "okta/03-create-user", {"phoneNumbers"}),
    ("okta", "user.link", "okta/06-put-user-full-replace", {"phoneNumbers"}),
    ("okta", "user.update", "okta/06-put-user-full-replace", {"phoneNumbers"}),
    ("okta", "user.deactivate", "okta/07-patch-user-deactivate", set()),
    ("okta", "group.create", "okta/09-create-group", set()),
    ("entra", "user.lookup", "entra/01-user-lookup-username-eq", set()),
    ("entra", "user.create", "entra/04-create-user", {"phoneNumbers", ENTERPRISE}),
    ("entra", "user.deactivate", "entra/14-disable-user-string-false", set()),
    ("entra", "user.manager", "entra/15-patch-user-manager-add", set()),
    ("entra", "group.lookup", "entra/19-group-lookup-displayname", set()),
    ("entra", "group.create", "entra/21-create-group", set()),
]


@pytest.mark.parametrize(("idp", "action", "name", "extra"), SHAPES)
def test_requests_have_the_shape_of_the_idp_fixture(
    demo: DemoData, idp: str, action: str, name: str, extra: set[str]
) -> None:
    expected = fixture(name)

    # Entra's guest accounts are matched on externalId instead, and some
    # manager links take the shape of 16-patch-user-manager-string (below).
    requests = [
        r
        for r in requests_of(demo, idp, action)
        if "externalId eq" not in r["query"]
        and ENTERPRISE not in json.dumps((r["body"] or {}).get("Operations"))
    ]

    assert requests
    for request in requests:
        assert request["method"] == expected["method"]
        assert _id_free(request["path"]) == _id_free(expected["path"])
        assert sorted(request["headers"]) == sorted(expected["headers"])
        assert bool(re.fullmatch(_query_pattern(expected["query"]), request["query"]))
        if expected["body"] is None:
            assert request["body"] is None
            continue
        body, wanted = request["body"], expected["body"]
        assert set(body) - extra == set(wanted) - extra
        assert body.get("schemas") == wanted.get("schemas")
        if "Operations" in wanted:
            assert _op_shapes(body) == _op_shapes(wanted)


def test_planted_manager_links_have_the_shape_of_the_string_fixture(
    demo: DemoData,
) -> None:
    expected = fixture("entra/16-patch-user-manager-string")
    planted = {key for _, key in demo.planted["manager_as_string"]}

    links = [r for r in demo.streams["entra"] if r["action"] == "user.manager"]
    strings = [r for r in links if r["key"] in planted]

    assert len(strings) == len(planted) > 0
    for record in strings:
        request = record["request"]
        assert request["method"] == expected["method"]
        assert sorted(request["headers"]) == sorted(expected["headers"])
        [op] = request["body"]["Operations"]
        [want] = expected["body"]["Operations"]
        assert (op["op"], op["path"]) == (want["op"], want["path"])
        assert re.fullmatch(r"\$\{user:[^}]+\}", op["value"])


def test_guest_lookups_match_on_external_id_with_the_value_quoted(
    demo: DemoData,
) -> None:
    # The documented shape (03-user-lookup-externalid-unquoted) leaves the value
    # unquoted, which FusionAuth's filter parser refuses; the demo quotes it
    # and percent-encodes the '#' of the guest ids, which would end the query.
    expected = fixture("entra/03-user-lookup-externalid-unquoted")
    guests = {key for _, key in demo.planted["duplicate_account"][1::2]}

    lookups = [
        r
        for r in demo.streams["entra"]
        if r["action"] == "user.lookup" and "externalId eq" in r["request"]["query"]
    ]

    assert {r["key"] for r in lookups} == guests
    for record in lookups:
        request = record["request"]
        assert request["path"] == expected["path"]
        assert sorted(request["headers"]) == sorted(expected["headers"])
        value = record["key"].replace("#", "%23")
        assert request["query"] == f'filter=externalId eq "{value}"'


def _query_pattern(query: str) -> str:
    """Turn a fixture's query into a regex where the quoted value is free."""
    parts = re.split(r'(%22.*?%22|".*?")', query)
    pattern = ""
    for part in parts:
        if part.startswith("%22"):
            pattern += "%22[^&]+%22"
        elif part.startswith('"'):
            pattern += '"[^"]+"'
        else:
            pattern += re.escape(part)
    return pattern


def _op_shapes(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    shapes = []
    for op in body["Operations"]:
        value = op.get("value")
        inner = value[0] if isinstance(value, list) and value else value
        keys = tuple(sorted(inner)) if isinstance(inner, dict) else type(inner).__name__
        shapes.append((op["op"], op.get("path"), keys))
    return shapes


def test_entra_patches_use_capitalised_ops_and_fixture_paths(demo: DemoData) -> None:
    fixture_paths = {
        op["path"]
        for name in (
            "entra/09-patch-user-email-filter-path",
            "entra/11-patch-user-replace-many-default",
        )
        for op in fixture(name)["body"]["Operations"]
    }
    allowed = fixture_paths | {
        f"{ENTERPRISE}:department",
        "name.formatted",
        'phoneNumbers[type eq "mobile"].value',
    }

    for action in ("user.link", "user.update"):
        for request in requests_of(demo, "entra", action):
            for op in request["body"]["Operations"]:
                assert op["op"] in ("Replace", "Add")
                assert op["path"] in allowed


def test_group_member_pushes_have_the_fixture_shapes(demo: DemoData) -> None:
    okta_shapes = {
        (op["op"], "filter" if "[" in op.get("path", "") else op.get("path"))
        for name in (
            "okta/13-patch-group-remove-add-members",
            "okta/15-patch-group-replace-members",
        )
        for op in fixture(name)["body"]["Operations"]
    }
    entra_ops = {
        op["op"]
        for name in (
            "entra/23-patch-group-add-member",
            "entra/24-patch-group-remove-member",
        )
        for op in fixture(name)["body"]["Operations"]
    }

    for request in requests_of(demo, "okta", "group.members"):
        for op in request["body"]["Operations"]:
            path = "filter" if "[" in op["path"] else op["path"]
            assert (op["op"], path) in okta_shapes
            for member in op.get("value", []):
                assert sorted(member) == ["display", "value"]
    for request in requests_of(demo, "entra", "group.members"):
        for op in request["body"]["Operations"]:
            assert op["op"] in entra_ops and op["path"] == "members"
            assert all(m["$ref"] is None for m in op["value"])


def test_okta_ids_and_entra_guids_have_their_documented_shape(
    demo: DemoData,
) -> None:
    okta = [b["externalId"] for i, b in _creates(demo) if i == "okta"]
    entra = [b["externalId"] for i, b in _creates(demo) if i == "entra"]

    assert all(re.fullmatch(r"00u[0-9A-Za-z]{17}", e) for e in okta)
    guids = [e for e in entra if re.fullmatch(r"[0-9a-f-]{36}", e)]
    assert len(guids) > 0.8 * len(entra)


# -- the build ---------------------------------------------------------------------


def test_building_twice_gives_the_same_tenant(
    built: tuple[Path, BuildReport], tmp_path: Path
) -> None:
    first_db, first = built

    second = build_demo(tmp_path / "tenant.sqlite", seed=SEED, people=PEOPLE)

    assert replace(second, db_path=first_db) == first
    assert export_tenant(first_db) == export_tenant(tmp_path / "tenant.sqlite")
    for part in ("streams/okta", "streams/entra", "idp-views/okta", "idp-views/entra"):
        left = (first_db.parent / f"{part}.jsonl").read_bytes()
        assert left == (tmp_path / f"{part}.jsonl").read_bytes(), part


def test_the_report_matches_the_tenant(built: tuple[Path, BuildReport]) -> None:
    db, report = built

    exported = export_tenant(db)

    assert report.users == len(exported["Users"])
    assert report.groups == len(exported["Groups"])
    members = sum(len(g.get("members", [])) for g in exported["Groups"])
    assert report.memberships == members
    assert any(len(g.get("members", [])) > 100 for g in exported["Groups"])


def test_tenant_users_carry_their_provisioning_time(
    built: tuple[Path, BuildReport],
) -> None:
    db, _ = built

    users = export_tenant(db)["Users"]

    months = Counter(u["meta"]["created"][:7] for u in users)
    assert len(months) >= 20
    assert min(months) >= "2023-01"


def test_a_409_arises_when_the_other_idp_took_the_email(
    built: tuple[Path, BuildReport],
) -> None:
    db, report = built
    views = {
        i: read_jsonl(db.parent / f"idp-views/{i}.jsonl") for i in ("okta", "entra")
    }
    users = {u["id"]: u for u in export_tenant(db)["Users"]}

    conflicts = [
        v
        for i in views
        for v in views[i]
        if v["kind"] == "user" and v["outcome"] == "conflict"
    ]

    assert report.conflicts >= len(conflicts) > 0
    for view in conflicts:
        assert view["status"] == 409 and view["tenant_id"] is None
        assert "[duplicate]user.email" in view["error"]["detail"]["codes"]
        # The holder is the other IdP's account of the person, or for a guest
        # account the member account of the same IdP.
        holder = next(
            v
            for i in views
            for v in views[i]
            if v["person"] == view["person"] and v["key"] != view["key"]
        )
        assert (holder["idp"] == view["idp"]) == view["key"].endswith("#EXT#")
        taken = users[holder["tenant_id"]]["emails"][0]["value"]
        sent = [e["value"] for e in view["profile"]["emails"] if e.get("primary")]
        assert taken.lower() in [s.lower() for s in sent]


def test_views_and_streams_record_the_outcomes(
    built: tuple[Path, BuildReport],
) -> None:
    db, report = built

    streams = {
        i: read_jsonl(db.parent / f"streams/{i}.jsonl") for i in ("okta", "entra")
    }
    views = {
        i: read_jsonl(db.parent / f"idp-views/{i}.jsonl") for i in ("okta", "entra")
    }

    for idp in streams:
        assert all(r["result"] is not None for r in streams[idp])
        outcomes = Counter(v["outcome"] for v in views[idp])
        assert outcomes == report.outcomes[idp]
        assert outcomes["matched"] > 0
    vias = Counter(r["result"]["via"] for i in streams for r in streams[i])
    assert vias["bulk"] > 0 and vias["http"] == report.http_requests


def test_the_package_exposes_what_all_names() -> None:
    import scimtools.demo as package

    public = {n for n in vars(package) if not n.startswith("_")}

    assert sorted(package.__all__) == package.__all__
    assert set(package.__all__) <= public
    assert public - set(package.__all__) <= {"build", "generate", "legacy"}


def test_a_sandbox_serving_the_old_tenant_never_sees_a_half_built_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tenant.sqlite"
    seed_dir = Path(__file__).resolve().parents[1] / "data" / "demo"
    with Sandbox(db, seed_dir=seed_dir) as old:
        old.tenant.ingest_users([{"userName": "before@example.com"}])

        build_demo(db, people=60)
        still_served = old.tenant.counts()["users"]

    with Sandbox(db) as new:
        rebuilt = new.tenant.counts()["users"]

    assert still_served == 1
    assert rebuilt >= 60
    assert sorted(p.name for p in tmp_path.iterdir() if "building" in p.name) == []
