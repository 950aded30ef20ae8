"""Fixtures that start the sandbox on 127.0.0.1 with a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scimtools.sandbox import Sandbox, SandboxConfig

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox shared by the tests that only read or create unique names."""
    db = tmp_path_factory.mktemp("sandbox") / "tenant.sqlite"
    with Sandbox(db, seed_dir=SEED_DIR) as sb:
        yield sb


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox with an empty tenant, for tests that mutate or count."""
    with Sandbox(tmp_path / "tenant.sqlite", seed_dir=SEED_DIR) as sb:
        yield sb


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[object]:
    """Start sandboxes with a given SandboxConfig; all stop after the test."""
    started: list[Sandbox] = []

    def make(config: SandboxConfig, name: str = "tenant.sqlite") -> Sandbox:
        sb = Sandbox(tmp_path / name, seed_dir=SEED_DIR, config=config).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


def scim_client(sb: Sandbox, client: str = "okta", **kwargs: object) -> httpx.Client:
    """Return an httpx client on the SCIM base URL with a token of ``client``."""
    token = sb.mint_token(client, **kwargs)  # type: ignore[arg-type]
    return httpx.Client(
        base_url=sb.base_url, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture(scope="session")
def client_for():  # noqa: ANN201
    """Return scim_client, for tests that start their own sandbox."""
    return scim_client


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    """The demo tenant seed directory, data/demo/."""
    return SEED_DIR


@pytest.fixture
def okta(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client of the shared sandbox with okta's full token."""
    with scim_client(sandbox, "okta") as client:
        yield client


@pytest.fixture
def fresh(fresh_sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client of a fresh sandbox with okta's full token."""
    with scim_client(fresh_sandbox, "okta") as client:
        yield client
