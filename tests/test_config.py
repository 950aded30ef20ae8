"""connect() against a real sandbox database: throwaway copies and client choice."""

from pathlib import Path

import pytest

from scimtools import ConfigError, connect
from scimtools.sandbox import Sandbox

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


def _tenant_with_one_user(path: Path) -> Path:
    with Sandbox(path, seed_dir=SEED_DIR) as sandbox:
        sandbox.tenant.ingest_users([{"userName": "first@example.com"}])
    return path


def test_a_sandbox_copy_takes_writes_and_leaves_the_demo_tenant_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    db = _tenant_with_one_user(tmp_path / "demo.sqlite")
    environ = {"SCIMTOOLS_DEMO_DB": str(db)}

    with connect(
        env_file=None, environ=environ, sandbox_client="migrator", sandbox_copy=True
    ) as client:
        client.create("Users", {"userName": "second@example.com"})
        in_copy = client.list_page("Users", count=10).total_results
    out = capsys.readouterr().out

    with connect(env_file=None, environ=environ) as client:
        in_original = client.list_page("Users", count=10).total_results

    assert in_copy == 2
    assert in_original == 1
    assert "a throwaway copy of the demo tenant" in out


def test_an_unknown_sandbox_client_is_named_in_the_error(tmp_path: Path):
    db = _tenant_with_one_user(tmp_path / "demo.sqlite")
    environ = {"SCIMTOOLS_DEMO_DB": str(db)}

    with pytest.raises(ConfigError, match="no SCIM client 'nobody'.*auditor"):
        connect(env_file=None, environ=environ, sandbox_client="nobody")


def test_a_writing_sandbox_client_gets_a_copy_by_default(tmp_path: Path):
    db = _tenant_with_one_user(tmp_path / "demo.sqlite")
    environ = {"SCIMTOOLS_DEMO_DB": str(db)}

    with connect(env_file=None, environ=environ, sandbox_client="okta") as client:
        client.create("Users", {"userName": "second@example.com"})

    with connect(env_file=None, environ=environ) as client:
        assert client.list_page("Users", count=10).total_results == 1


@pytest.mark.parametrize("name", ["SCIM_BASE_URL", "SCIM_TOKEN", "FUSIONAUTH_URL"])
def test_a_blank_setting_is_an_error_not_the_demo_tenant(name: str):
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        connect(env_file=None, environ={name: "  "})


def test_a_blank_setting_in_the_env_file_is_an_error(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("SCIM_BASE_URL=https://auth.example.com\nSCIM_TOKEN=\n")

    with pytest.raises(ConfigError, match="SCIM_TOKEN is set but empty"):
        connect(env_file=env_file, environ={})
