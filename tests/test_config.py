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
