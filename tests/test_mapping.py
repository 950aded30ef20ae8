"""The lambdas as a model, SCIM-aware comparison and the lambda bench."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scimtools.mapping import (
    LambdaModel,
    bench_lambda,
    compare_resources,
    flatten_resource,
    generic_path,
    load_lambdas,
    normalise_phone,
    same_phone,
)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORRECTED = Path(__file__).resolve().parents[1] / "data" / "lambdas" / "corrected"
TWO_PRIMARIES = {
    "schemas": [USER],
    "userName": "ada",
    "emails": [
        {"primary": True, "type": "work", "value": "ada@example.com"},
        {"primary": True, "type": "home", "value": "ada@example.net"},
    ],
}


@pytest.fixture(scope="module")
def model() -> Iterator[LambdaModel]:
    with load_lambdas() as lambdas:
        yield lambdas


def statuses(sent: dict, other: dict) -> dict[str, str]:
    return {d.path: d.status for d in compare_resources(sent, other)}


# -- cases from public reports ------------------------------------------------------


def test_two_primary_emails_keep_the_last_one_as_work(model: LambdaModel) -> None:
    sent = TWO_PRIMARIES

    stored = model.predict([sent])[0]

    assert stored["emails"] == [
        {"primary": True, "value": "ada@example.net", "type": "work"}
    ]
    assert statuses(sent, stored) == {
        'emails[type eq "home"].primary': "kept",
        'emails[type eq "home"].type': "changed",
        'emails[type eq "home"].value': "kept",
        'emails[type eq "work"].value': "missing",
        "userName": "kept",
        "active": "added",
    }


def test_emails_without_a_primary_leave_the_user_without_email(
    model: LambdaModel,
) -> None:
    sent = {
        "schemas": [USER],
        "userName": "ada",
        "emails": [{"type": "work", "value": "ada@example.com"}],
    }

    stored = model.predict([sent])[0]

    assert "emails" not in stored
    assert statuses(sent, stored)['emails[type eq "work"].value'] == "missing"


def test_work_and_Work_are_the_same_email_type() -> None:
    sent = {"emails": [{"value": "a@example.com", "type": "Work", "primary": True}]}
    kept = {"emails": [{"value": "a@example.com", "type": "work", "primary": True}]}

    assert compare_resources(sent, kept, unchanged=False) == []


def test_a_phone_as_tel_uri_and_as_national_format_is_one_number() -> None:
    sent = {"phoneNumbers": [{"value": "tel:+1-201-555-0123", "type": "mobile"}]}
    kept = {"phoneNumbers": [{"value": "(201) 555-0123", "type": "mobile"}]}

    assert same_phone("tel:+1-201-555-0123", "(201) 555-0123")
    assert normalise_phone("tel:+1-201-555-0123") == "+12015550123"
    assert statuses(sent, kept)['phoneNumbers[type eq "mobile"].value'] == (
        "changed_form"
    )


def test_a_user_with_only_name_formatted_keeps_it(model: LambdaModel) -> None:
    sent = {"schemas": [USER], "userName": "ada", "name": {"formatted": "Ada King"}}

    stored = model.predict([sent])[0]

    assert stored["name"] == {"formatted": "Ada King"}
    assert statuses(sent, stored)["name.formatted"] == "kept"


def test_an_empty_family_name_counts_as_absent(model: LambdaModel) -> None:
    sent = {
        "schemas": [USER],
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": ""},
    }

    stored = model.predict([sent])[0]

    assert "name.familyName" not in flatten_resource(sent)
    assert compare_resources(sent, stored, unchanged=False)[0].path == "active"


def test_a_manager_as_a_bare_string_is_the_same_manager_in_another_form() -> None:
    sent = {ENTERPRISE: {"manager": "m-7"}}
    kept = {ENTERPRISE: {"manager": {"value": "m-7"}}}

    assert statuses(sent, kept) == {f"{ENTERPRISE}:manager.value": "changed_form"}


def test_composed_and_decomposed_accents_are_one_value_in_two_forms() -> None:
    composed, decomposed = "Jos\u00e9", "Jose\u0301"

    assert statuses(
        {"name": {"givenName": composed}}, {"name": {"givenName": decomposed}}
    ) == {"name.givenName": "changed_form"}


def test_a_phone_that_lost_its_extension_changed() -> None:
    sent = {"phoneNumbers": [{"value": "+1 201-555-0123 ext. 45", "type": "work"}]}
    kept = {"phoneNumbers": [{"value": "(201) 555-0123", "type": "work"}]}
    same = {"phoneNumbers": [{"value": "tel:+1-201-555-0123;ext=45", "type": "work"}]}

    assert statuses(sent, kept)['phoneNumbers[type eq "work"].value'] == "changed"
    assert statuses(sent, same)['phoneNumbers[type eq "work"].value'] == (
        "changed_form"
    )


def test_a_home_email_kept_as_work_is_relabelled_not_reformatted() -> None:
    sent = {"emails": [{"value": "a@example.net", "type": "home"}]}
    kept = {"emails": [{"value": "a@example.net", "type": "work"}]}

    assert statuses(sent, kept)['emails[type eq "home"].type'] == "changed"


def test_user_names_that_differ_in_case_are_equal_in_form() -> None:
    assert statuses(
        {"userName": "Ada@Example.com"}, {"userName": "ada@example.com"}
    ) == {"userName": "changed_form"}


def test_entras_active_false_as_text_is_read_as_the_boolean(
    model: LambdaModel,
) -> None:
    sent = {"schemas": [USER], "userName": "ada", "active": "False"}

    stored = model.predict([sent])[0]

    assert stored["active"] is False
    assert statuses(sent, stored)["active"] == "changed_form"


# -- comparison rules ---------------------------------------------------------------


def test_attribute_names_are_compared_without_case() -> None:
    sent = {"UserName": "ada", "NAME": {"GivenName": "Ada"}}
    kept = {"userName": "ada", "name": {"givenName": "Ada"}}

    assert compare_resources(sent, kept, unchanged=False) == []


def test_multi_valued_attributes_match_by_value_not_position() -> None:
    sent = {
        "emails": [
            {"value": "a@example.com", "type": "work"},
            {"value": "b@example.com", "type": "home"},
        ]
    }
    kept = {"emails": list(reversed(sent["emails"]))}

    assert compare_resources(sent, kept, unchanged=False) == []


def test_a_changed_value_of_the_same_type_is_changed() -> None:
    sent = {"emails": [{"value": "a@example.com", "type": "work"}]}
    kept = {"emails": [{"value": "z@example.com", "type": "work"}]}

    assert statuses(sent, kept)['emails[type eq "work"].value'] == "changed"


def test_a_value_only_on_the_other_side_is_added() -> None:
    assert statuses({}, {"title": "Dr"}) == {"title": "added"}


def test_a_missing_lambda_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.js"):
        LambdaModel.from_files(tmp_path / "nope.js", tmp_path / "nope.js")


def test_an_unknown_resource_is_refused() -> None:
    with pytest.raises(ValueError, match="'Group'"):
        LambdaModel("", "", resource="Group")


def test_importing_mapping_does_not_import_the_sandbox() -> None:
    code = "import sys, scimtools.mapping; print('scimtools.sandbox' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "False"


# -- the bench ---------------------------------------------------------------------


def test_the_bench_shows_where_a_sent_value_is_stored(model: LambdaModel) -> None:
    bench = bench_lambda(model, [{"userName": "ada", "name": {"givenName": "Ada"}}])

    row = bench.set_index("path").loc["name.givenName"]
    assert row["stored"] == "firstName=Ada"
    assert row["status"] == "kept"


def test_the_corrected_lambda_keeps_what_the_default_drops() -> None:
    sent = {
        "schemas": [USER],
        "userName": "ada",
        "displayName": "Ada King",
        "emails": [{"type": "work", "value": "ada@example.com"}],
    }

    with LambdaModel.from_files(
        CORRECTED / "scim-user-request.js", CORRECTED / "scim-user-response.js"
    ) as corrected:
        bench = bench_lambda(corrected, [sent]).set_index("path")

    assert bench.loc["displayName", "status"] == "kept"
    assert bench.loc['emails[type eq "work"].value', "status"] == "kept"


def test_the_bench_names_payloads_that_are_not_objects_and_label_mismatches(
    model: LambdaModel,
) -> None:
    from scimtools.errors import InputError
    from scimtools.mapping import bench_lambda

    with pytest.raises(InputError, match="payload #1 is NoneType"):
        bench_lambda(model, [{"userName": "a"}, None])
    with pytest.raises(InputError, match="1 label.s. for 2 payload.s."):
        bench_lambda(model, [{"userName": "a"}, {"userName": "b"}], labels=["one"])


def test_the_bench_shows_a_payload_the_lambda_fails_on_beside_the_others(
    tmp_path: Path,
) -> None:
    from scimtools.mapping import DEFAULT_LAMBDA_DIR
    from scimtools.sandbox.lambdas import LambdaError

    request = (DEFAULT_LAMBDA_DIR / "scim-user-request.js").read_text()
    head = "function convert(user, options, scimUser) {"
    assert head in request
    check = (
        "\n  if (scimUser.title === 'boom') { throw new Error('no boom'); }"
        "\n  if (scimUser.title === 'loop') { while (true) {} }"
    )
    (tmp_path / "request.js").write_text(request.replace(head, head + check, 1))
    (tmp_path / "response.js").write_text(
        (DEFAULT_LAMBDA_DIR / "scim-user-response.js").read_text()
    )
    payloads = [
        {"userName": "a"},
        {"userName": "b", "title": "boom"},
        {"userName": "c", "title": "loop"},
        {"userName": "d"},
    ]

    with LambdaModel.from_files(
        tmp_path / "request.js", tmp_path / "response.js", timeout=0.2
    ) as model:
        bench = bench_lambda(model, payloads, labels=["a", "b", "c", "d"])
        with pytest.raises(LambdaError, match="no boom"):
            bench_lambda(model, payloads[1:2])

    errors = bench[bench["status"] == "error"].set_index("payload")["returned"]
    assert list(errors.index) == ["b", "c"]
    assert "request.js) threw: Error: no boom" in errors["b"]
    assert "request.js" in errors["c"]
    kept = bench[(bench["path"] == "userName") & (bench["status"] == "kept")]
    assert kept["payload"].tolist() == ["a", "d"]


def test_the_bench_names_the_field_a_path_is_written_to_not_one_with_equal_value(
    model: LambdaModel,
) -> None:
    sent = {
        "userName": "ann",
        "name": {"givenName": "Ann", "familyName": "Ann", "formatted": "Ann"},
        "emails": [{"value": "ann@x.co", "primary": True}],
        "phoneNumbers": [{"value": "+12015550123", "primary": True}],
    }

    stored = bench_lambda(model, [sent]).set_index("path")["stored"]

    assert stored["name.givenName"] == "firstName=Ann"
    assert stored["name.familyName"] == "lastName=Ann"
    assert stored["name.formatted"] == "fullName=Ann"
    assert stored['emails[value eq "ann@x.co"].value'] == "email=ann@x.co"
    assert stored['emails[value eq "ann@x.co"].primary'] is None
    assert stored['phoneNumbers[value eq "+12015550123"].primary'] is None
    assert stored["active"] == "active=True"  # returned, not sent: rendered from


# -- the corrected lambdas -----------------------------------------------------------

IDP_REQUESTS = Path("/work/shared/idp-requests")
SURVIVES = ("kept", "changed_form")


@pytest.fixture(scope="module")
def corrected() -> Iterator[LambdaModel]:
    with load_lambdas(CORRECTED) as lambdas:
        yield lambdas


def idp_exchanges() -> list[dict]:
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for idp in ("entra", "okta", "rfc")
        for path in sorted((IDP_REQUESTS / idp).glob("*.json"))
    ]


def idp_users() -> list[dict]:
    """Every user the fixtures send or show, plus variations on their emails."""
    users = []
    for exchange in idp_exchanges():
        for body in (
            exchange["request"]["body"],
            exchange.get("response", {}).get("body"),
        ):
            if not isinstance(body, dict):
                continue
            for resource in [body, *body.get("Resources", [])]:
                if isinstance(resource, dict) and "userName" in resource:
                    users.append(resource)
    emails = [
        {"value": "ada@example.com", "type": "work", "primary": True},
        {"value": "ada@example.net", "type": "home", "primary": True},
    ]
    users += [
        {"schemas": [USER], "userName": "ada", "emails": emails},
        {"schemas": [USER], "userName": "ada", "emails": emails[::-1]},
        {"schemas": [USER], "userName": "ada", "emails": [emails[1]]},
        {
            "schemas": [USER],
            "userName": "ada",
            "phoneNumbers": [
                {"value": "+12015550123", "type": "work", "primary": True},
                {"value": "+12015550199", "type": "mobile", "primary": True},
            ],
        },
    ]
    return users


def surviving(sent: dict, stored: dict) -> set[str]:
    return {d.path for d in compare_resources(sent, stored) if d.status in SURVIVES}


def test_idp_fixtures_hold_users_and_user_patches() -> None:
    patches = [e for e in idp_exchanges() if user_patch(e)]

    assert len(idp_users()) >= 12
    assert len(patches) >= 5


def test_the_corrected_lambdas_keep_every_path_the_default_keeps(
    model: LambdaModel, corrected: LambdaModel
) -> None:
    users = idp_users()

    before = model.predict(users)
    after = corrected.predict(users)

    for sent, old, new in zip(users, before, after, strict=True):
        lost = surviving(sent, old) - surviving(sent, new)
        assert not lost, (sent.get("userName"), sorted(lost))


def user_patch(exchange: dict) -> bool:
    request = exchange["request"]
    return request["method"] == "PATCH" and "/Users/" in request["path"]


def test_the_corrected_lambdas_keep_what_the_default_keeps_through_a_patch(
    model: LambdaModel, corrected: LambdaModel
) -> None:
    from scimtools.sandbox.patch import apply_patch
    from scimtools.sandbox.store import BadRequestError

    base = idp_users()[:4] + idp_users()[-4:]
    patches = [e["request"]["body"] for e in idp_exchanges() if user_patch(e)]
    checked = 0

    for user in base:
        for body in patches:
            kept = []
            for lambdas in (model, corrected):
                # FusionAuth: render, apply the patch, run the request lambda.
                try:
                    patched = apply_patch("User", lambdas.predict([user])[0], body)
                except BadRequestError:
                    kept.append(None)
                    continue
                sent = apply_patch("User", user, body)
                kept.append(surviving(sent, lambdas.predict([patched])[0]))
            if kept[0] is not None:
                assert kept[1] is not None and kept[0] <= kept[1], (user, body)
                checked += 1

    assert checked >= 20


def test_the_corrected_lambdas_keep_the_home_email_the_default_keeps(
    model: LambdaModel, corrected: LambdaModel
) -> None:
    sent = TWO_PRIMARIES

    default = model.predict([sent])[0]
    fixed = corrected.predict([sent])[0]
    user = corrected.to_fusionauth([sent])[0]

    assert [e["value"] for e in default["emails"]] == ["ada@example.net"]
    assert fixed["emails"] == sent["emails"]
    assert user["email"] == "ada@example.net"  # FusionAuth's login, as by default


def test_the_corrected_lambdas_type_the_kept_items_as_the_default_does(
    model: LambdaModel, corrected: LambdaModel
) -> None:
    # Untyped, a kept email would not match Entra's later PATCH on
    # emails[type eq "work"].value, which FusionAuth then drops.
    sent = {
        "userName": "ada",
        "emails": [{"value": "ada@example.com", "primary": True}, {"value": "b@x.co"}],
        "phoneNumbers": [{"value": "+12015550123", "primary": True}],
    }

    default = model.predict([sent])[0]
    fixed = corrected.predict([sent])[0]

    assert default["emails"][0]["type"] == fixed["emails"][0]["type"] == "work"
    assert default["phoneNumbers"][0]["type"] == "mobile"
    assert fixed["phoneNumbers"][0]["type"] == "mobile"
    assert fixed["emails"][1] == {"value": "b@x.co"}


@pytest.mark.parametrize(
    "manager",
    ["m-7", {"value": "m-7"}, [{"$ref": "../Users/m-7", "value": "m-7"}]],
    ids=["string", "object", "array"],
)
def test_the_corrected_lambdas_keep_a_manager_patched_on_the_bare_path(
    model: LambdaModel, corrected: LambdaModel, manager: object
) -> None:
    from scimtools.sandbox.patch import PATCH_URN, apply_patch

    user = {"schemas": [USER, ENTERPRISE], "userName": "ada", ENTERPRISE: {}}
    body = {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "Add", "path": "manager", "value": manager}],
    }

    served = {}
    for name, lambdas in (("default", model), ("corrected", corrected)):
        patched = apply_patch("User", lambdas.predict([user])[0], body)
        served[name] = lambdas.predict([patched])[0]

    assert "manager" not in served["default"].get(ENTERPRISE, {})
    assert served["corrected"][ENTERPRISE]["manager"]["value"] == "m-7"
    assert "manager" not in served["corrected"]
    assert ENTERPRISE in served["corrected"]["schemas"]


# -- paths and flattening ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "generic"),
    [
        ('emails[value eq "a]b@x.co"].value', "emails.value"),
        ('emails[value eq "a[b@x.co"].value', "emails.value"),
        ('emails[value eq "say \\"]\\" x"].value', "emails.value"),
        ('emails[type eq "work" and value eq "a]b"].display', "emails.display"),
        ('addresses[type eq "work"].streetAddress', "addresses.streetAddress"),
    ],
)
def test_a_bracket_inside_a_quoted_filter_value_does_not_end_the_filter(
    path: str, generic: str
) -> None:
    assert generic_path(path) == generic


def test_flattened_filter_values_with_quotes_and_brackets_read_back() -> None:
    sent = {
        "emails": [{"value": 'a"]b@x.co'}],
        "phoneNumbers": [{"value": "1]2", "type": 'we"ird'}],
    }

    paths = list(flatten_resource(sent))

    assert paths == [
        'emails[value eq "a\\"]b@x.co"].value',
        'phoneNumbers[type eq "we\\"ird"].value',
        'phoneNumbers[type eq "we\\"ird"].type',
    ]
    assert [generic_path(p) for p in paths] == [
        "emails.value",
        "phoneNumbers.value",
        "phoneNumbers.type",
    ]


def test_flatten_keeps_every_value_of_a_type() -> None:
    sent = {
        "emails": [
            {"value": "a@x.co", "type": "work"},
            {"value": "b@x.co", "type": "Work"},
            {"value": "c@x.co", "type": "home"},
        ]
    }

    flat = flatten_resource(sent)

    values = [v for k, v in flat.items() if generic_path(k) == "emails.value"]
    assert values == ["a@x.co", "b@x.co", "c@x.co"]
    assert flat['emails[type eq "work" and value eq "b@x.co"].type'] == "Work"
    assert flat['emails[type eq "home"].value'] == "c@x.co"


@pytest.mark.parametrize(
    "resource",
    [
        {"a.b": {"c": 1}, "a": {"b.c": 2}},
        {"userName": "ada", "UserName": "bob"},
        {"name.givenName": "Ada", "name": {"givenName": "Bob"}},
    ],
    ids=["dotted", "case", "dotted-scim"],
)
def test_flatten_refuses_two_attributes_that_flatten_to_one_path(
    resource: dict,
) -> None:
    with pytest.raises(ValueError, match="two attributes flatten to the path"):
        flatten_resource(resource)


def test_flatten_accepts_one_value_written_two_ways() -> None:
    assert flatten_resource({"a.b": {"c": 1}, "a": {"b.c": 1}}) == {"a.b.c": 1}


def test_a_filter_with_an_unclosed_quote_is_read_by_its_brackets() -> None:
    assert generic_path('emails[value eq "a].value') == "emails.value"


def test_the_bench_tells_apart_items_of_one_type_by_their_value(
    corrected: LambdaModel,
) -> None:
    emails = [
        {"value": "a@e.com", "type": "work"},
        {"value": "b@e.com", "type": "work"},
    ]

    bench = bench_lambda(corrected, [{"userName": "ada", "emails": emails}])
    values = bench[bench["path"] == 'emails[type eq "work"].value']

    assert values[["sent", "stored"]].values.tolist() == [
        ["a@e.com", "data.emails[0].value=a@e.com, email=a@e.com"],
        ["b@e.com", "data.emails[1].value=b@e.com"],
    ]
