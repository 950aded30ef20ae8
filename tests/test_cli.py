"""The scimtools command: sandbox, lab and demo verbs."""

import subprocess
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
