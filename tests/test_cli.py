"""The scimtools command: sandbox, lab and demo verbs."""

import subprocess
import sys
from pathlib import Path

import pytest

from scimtools import connect
from scimtools.cli import build_parser, main
from scimtools.sandbox import Sandbox

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


def test_lab_serves_a_copy_of_the_demo_tenant_to_jupyter_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    demo = tmp_path / "demo.sqlite"
    with Sandbox(demo, seed_dir=SEED_DIR) as sandbox:
        sandbox.tenant.ingest_users([{"userName": "kept@example.com"}])
    monkeypatch.setenv("SCIMTOOLS_DEMO_DB", str(demo))
    seen = {}

    def jupyter(command: list[str], env: dict, cwd: str) -> int:
        # What a notebook in the lab would do: connect from the environment, write.
        with connect(env_file=None, environ=env) as client:
            client.create("Users", {"userName": "lab@example.com"})
            seen["total"] = client.list_page("Users").total_results
        seen["command"] = command[1:]
        seen["secret_in_argv"] = any("secret" in part for part in command)
        return 0

    monkeypatch.setattr(subprocess, "call", jupyter)
    code = main(["lab", "--db", str(tmp_path / "lab.sqlite"), "--", "--no-browser"])

    with Sandbox(demo) as sandbox:
        in_demo = sandbox.tenant.counts()["users"]

    assert code == 0
    assert seen["total"] == 2
    assert seen["command"] == ["lab", "--no-browser"]
    assert seen["secret_in_argv"] is False
    assert in_demo == 1


def test_lab_without_a_demo_tenant_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setenv("SCIMTOOLS_DEMO_DB", str(tmp_path / "missing.sqlite"))

    code = main(["lab", "--db", str(tmp_path / "lab.sqlite")])

    assert code == 2
    assert "make demo" in capsys.readouterr().out


def test_sandbox_verb_parses_its_options():
    args = build_parser().parse_args(
        ["sandbox", "--db", "t.sqlite", "--port", "8123", "--latency-ms", "50"]
    )

    assert (args.db, args.port, args.latency_ms) == ("t.sqlite", 8123, 50.0)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--db", "{tmp}/missing/x.sqlite"], ["{tmp}/missing", "create it"]),
        (["--db", "{tmp}"], ["--db {tmp}", "SQLite file"]),
        (["--db", "{tmp}/t.sqlite", "--seed", "{tmp}/nowhere"], ["{tmp}/nowhere"]),
        (["--db", "{tmp}/t.sqlite", "--seed", "{tmp}"], ["no tenant.json"]),
        (["--db", "{tmp}/t.sqlite", "--port", "-1"], ["--port -1", "0 to 65535"]),
        (["--db", "{tmp}/t.sqlite", "--port", "70000"], ["--port 70000"]),
    ],
    ids=["db-folder", "db-is-folder", "seed-missing", "seed-empty", "port-1", "port"],
)
def test_sandbox_verb_mistakes_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    options: list[str],
    names: list[str],
):
    argv = ["sandbox", *(o.replace("{tmp}", str(tmp_path)) for o in options)]

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("scimtools sandbox: ")
    assert "Traceback" not in err
    for name in names:
        assert name.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "t.sqlite").exists()


def test_sandbox_verb_on_a_busy_port_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    with Sandbox(tmp_path / "a.sqlite", seed_dir=SEED_DIR) as running:
        port = running.url.rsplit(":", 1)[1]
        code = main(["sandbox", "--db", str(tmp_path / "b.sqlite"), "--port", port])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"127.0.0.1:{port}" in err
    assert "--port" in err


def test_sandbox_verb_as_a_command_prints_no_traceback(tmp_path: Path):
    missing = tmp_path / "missing" / "x.sqlite"

    done = subprocess.run(
        [sys.executable, "-m", "scimtools.cli", "sandbox", "--db", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"scimtools sandbox: --db {missing}: the folder {missing.parent} does not"
        " exist; create it first (mkdir -p) or choose another path."
    ]


def test_sandbox_api_names_a_missing_database_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        Sandbox(tmp_path / "missing" / "x.sqlite", seed_dir=SEED_DIR)


def test_sandbox_api_refuses_a_port_out_of_range(tmp_path: Path):
    with pytest.raises(ValueError, match="between 0 and 65535.*not -1"):
        Sandbox(tmp_path / "x.sqlite", seed_dir=SEED_DIR, port=-1)
