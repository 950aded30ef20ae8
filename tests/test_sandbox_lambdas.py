"""Lambdas: a throwing or endless lambda, and custom lambdas, through HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from scimtools.sandbox import LambdaError, LambdaSet, Sandbox, SandboxConfig
from scimtools.sandbox.lambdas import DEFAULT_LAMBDA_DIR, LAMBDA_FILES

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def seed_with_lambda(tmp_path: Path, seed_dir: Path, slot: str, source: str) -> Path:
    """Copy the demo seed and lambdas, replacing the converter of ``slot``."""
    seed = tmp_path / "seed"
    lambdas = seed / "lambdas"
    shutil.copytree(DEFAULT_LAMBDA_DIR, lambdas)
    (lambdas / LAMBDA_FILES[slot]).write_text(source, encoding="utf-8")
    text = (seed_dir / "tenant.json").read_text(encoding="utf-8")
    (seed / "tenant.json").write_text(
        text.replace('"lambdas": {', '"lambda_dir": "lambdas",\n "lambdas": {', 1),
        encoding="utf-8",
    )
    return seed


def test_a_throwing_lambda_gives_500_naming_the_lambda(
    tmp_path: Path, seed_dir: Path
) -> None:
    source = 'function convert(user, options, scimUser) { throw new Error("nope"); }'
    seed = seed_with_lambda(tmp_path, seed_dir, "userRequest", source)

    with Sandbox(tmp_path / "t.sqlite", seed_dir=seed) as sb:
        response = httpx.post(
            f"{sb.base_url}/Users",
            json={"schemas": [USER], "userName": "x"},
            headers={"Authorization": f"Bearer {sb.mint_token('okta')}"},
        )

    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "SCIM User request converter" in detail
    assert "scim-user-request.js" in detail
    assert "nope" in detail


def test_an_endless_lambda_is_stopped() -> None:
    sources = {slot: "function convert() {}" for slot in LAMBDA_FILES}
    sources["groupRequest"] = "function convert() { while (true) {} }"
    lambdas = LambdaSet(sources, timeout=0.2)

    with pytest.raises(LambdaError, match="ran longer than 0.2 s"):
        lambdas.run("groupRequest", [({"displayName": "x"},)])

    assert lambdas.run("groupResponse", [({"id": "g"}, {}, [])]) == [{"id": "g"}]
    lambdas.close()


def test_a_custom_response_lambda_changes_what_is_served(
    tmp_path: Path, seed_dir: Path
) -> None:
    source = "function convert(scimUser, user) { scimUser.userName = 'fixed'; }"
    seed = seed_with_lambda(tmp_path, seed_dir, "userResponse", source)
    config = SandboxConfig()

    with Sandbox(tmp_path / "t.sqlite", seed_dir=seed, config=config) as sb:
        (user_id,) = sb.tenant.ingest_users([{"schemas": [USER], "userName": "a"}])
        assert sb.tenant.get("User", user_id)["userName"] == "fixed"

    with Sandbox(tmp_path / "t.sqlite", seed_dir=seed_dir) as sb:
        assert sb.tenant.get("User", user_id)["userName"] == "a"


def lambda_set(source: str, **names: str) -> LambdaSet:
    sources = {slot: "function convert() {}" for slot in LAMBDA_FILES}
    sources["userRequest"] = source
    return LambdaSet(sources, names={**LAMBDA_FILES, **names}, timeout=0.5)


def test_a_syntax_error_names_the_file_and_its_line() -> None:
    source = (
        "function convert(user, options, scimUser) {\n  var a = 1;\n  var b = ;\n}\n"
    )
    lambdas = lambda_set(source, userRequest="mine.js")

    with pytest.raises(LambdaError) as caught:
        lambdas.run("userRequest", [({"userName": "x"},)])

    assert "SyntaxError: Unexpected token ';', in mine.js line 3:" in str(caught.value)
    assert "anonymous" not in str(caught.value)
    lambdas.close()


def test_an_unclosed_block_is_reported_at_the_end_of_the_file() -> None:
    lambdas = lambda_set("function convert(user) {\n  user.a = 1;\n")

    with pytest.raises(LambdaError, match="at the end of scim-user-request.js"):
        lambdas.run("userRequest", [({"userName": "x"},)])
    lambdas.close()


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("function transform(user) {}", "does not define convert"),
        ("var convert = 42;", "defines convert as a number, not a function"),
    ],
)
def test_a_lambda_without_function_convert_is_told_to_define_it(
    source: str, found: str
) -> None:
    lambdas = lambda_set(source)

    with pytest.raises(LambdaError) as caught:
        lambdas.run("userRequest", [({"userName": "x"},)])

    message = str(caught.value)
    assert found in message
    assert "define function convert(user, options, scimUser) in" in message
    assert "return convert" not in message
    lambdas.close()


def test_a_throwing_lambda_names_the_line_it_threw_on() -> None:
    source = "// mapping\nfunction convert(user, options, scimUser) {\n  x.y = 1;\n}\n"
    lambdas = lambda_set(source, userRequest="mine.js")

    with pytest.raises(LambdaError, match=r"x is not defined \(line 3 of mine.js\)"):
        lambdas.run("userRequest", [({"userName": "x"},)])
    lambdas.close()


def test_a_lambda_file_that_is_not_utf8_gets_advice_for_javascript(
    tmp_path: Path,
) -> None:
    from scimtools.errors import InputError
    from scimtools.mapping import LambdaModel

    request = tmp_path / "request.js"
    request.write_bytes("// Zoë\nfunction convert() {}\n".encode("latin-1"))
    shutil.copytree(DEFAULT_LAMBDA_DIR, tmp_path / "all")
    (tmp_path / "all" / LAMBDA_FILES["userRequest"]).write_bytes(request.read_bytes())

    with pytest.raises(InputError, match="request.js is not UTF-8") as caught:
        LambdaModel.from_files(request, request)
    with pytest.raises(LambdaError, match="not UTF-8: byte 0xeb on line 1") as raw:
        LambdaSet.from_directory(tmp_path / "all")

    for message in (str(caught.value), str(raw.value)):
        assert "CSV" not in message
        assert "Excel" not in message
        assert "iconv -f latin1 -t utf-8" in message
