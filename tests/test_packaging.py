"""The project's set-up files agree with each other."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements_of_pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(_split(requirement) for requirement in listed)


def _requirements_of_environment() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}

    for entry in environment["dependencies"]:
        entries = entry["pip"] if isinstance(entry, dict) else [entry]
        for requirement in entries:
            if requirement.startswith(("-e", "python=", "pip")) and not (
                requirement.startswith("pip:")
            ):
                continue
            name, spec = _split(requirement)
            found[name] = spec

    return found


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", requirement.strip())
    assert match, f"cannot read requirement {requirement!r}"
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def test_environment_yml_lists_every_pyproject_dependency_with_its_version():
    in_pyproject = _requirements_of_pyproject()
    in_environment = _requirements_of_environment()

    assert in_environment == in_pyproject


def test_the_sandbox_core_libraries_are_pinned_exactly():
    pins = _requirements_of_pyproject()

    for name in ("scim2-server", "scim2-models", "scim2-tester", "mini-racer"):
        assert pins[name].startswith("=="), f"{name} must be pinned exactly"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()

    assert "make test" in readme
    assert "make demo" in readme
    assert "\nmake test\n" in ci
