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


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        (
            {
                "FUSIONAUTH_URL": "http://admin:pw-SECRETPW@127.0.0.1:9011",
                "SCIM_CLIENT_ID": "c",
                "SCIM_CLIENT_SECRET": "s",
                "SCIM_SERVER_ENTITY_ID": "e",
            },
            "FUSIONAUTH_URL",
        ),
        (
            {
                "SCIM_BASE_URL": "https://pw-SECRETPW@auth.example.com/api",
                "SCIM_TOKEN": "t",
            },
            "SCIM_BASE_URL",
        ),
    ],
)
def test_a_url_with_a_password_in_it_is_refused_without_showing_it(
    environ: dict[str, str], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=f"{name} holds a user name or pass") as err:
        connect(env_file=None, environ=environ)

    assert "SECRETPW" not in str(err.value)
    assert "SECRETPW" not in caplog.text


def test_a_client_built_by_hand_refuses_a_url_with_a_password_in_it() -> None:
    from scimtools import SCIMClient
    from scimtools.auth import ClientCredentialsAuth

    with pytest.raises(ConfigError, match="base_url holds a user name") as err:
        SCIMClient("https://u:SECRETPW@auth.example.com/api/scim/resource/v2")
    assert "SECRETPW" not in repr(err.value)
    with pytest.raises(ConfigError, match="token_url holds a user name"):
        ClientCredentialsAuth(
            "https://u:SECRETPW@a.example/oauth2/token", "c", "s", "e"
        )


@pytest.mark.parametrize(
    "url",
    [
        "u:SECRETPW@auth.example.com",
        "https:\\\\u:SECRETPW@127.0.0.1:9",
        "https:/u:SECRETPW@127.0.0.1:9",
        "ftp://auth.example.com",
        "auth.example.com",
        "https://auth.example.com/api?token=SECRETPW",
        "https://auth.example.com/#SECRETPW",
    ],
)
def test_a_url_setting_that_is_not_plain_http_s_is_refused_without_showing_it(
    url: str,
) -> None:
    from scimtools.auth import check_no_userinfo

    with pytest.raises(ConfigError, match="FUSIONAUTH_URL") as err:
        check_no_userinfo(url, "FUSIONAUTH_URL")
    assert "SECRETPW" not in str(err.value)
    environ = {"SCIM_BASE_URL": url, "SCIM_TOKEN": "t"}
    with pytest.raises(ConfigError, match="SCIM_BASE_URL") as err:
        connect(env_file=None, environ=environ)
    assert "SECRETPW" not in str(err.value)
