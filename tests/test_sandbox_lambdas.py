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
