"""Settings from the environment or a .env file, and `connect`.

Two ways to reach a SCIM server:

* the client-credentials grant: ``FUSIONAUTH_URL``, ``SCIM_CLIENT_ID``,
  ``SCIM_CLIENT_SECRET`` and ``SCIM_SERVER_ENTITY_ID`` (and ``SCIM_BASE_URL``
  when the SCIM base is not ``{FUSIONAUTH_URL}/api/scim/resource/v2``);
* a static token: ``SCIM_BASE_URL`` (or ``FUSIONAUTH_URL``) with ``SCIM_TOKEN``.

With none of them set, `connect` starts the local sandbox with the demo tenant.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values

from scimtools.auth import ClientCredentialsAuth, StaticTokenAuth, check_no_userinfo
from scimtools.client import SCIMClient
from scimtools.errors import ConfigError

__all__ = ["Settings", "connect", "demo_idp_views", "load_settings"]

logger = logging.getLogger(__name__)

GRANT_VARIABLES = (
    "FUSIONAUTH_URL",
    "SCIM_CLIENT_ID",
    "SCIM_CLIENT_SECRET",
    "SCIM_SERVER_ENTITY_ID",
)
STATIC_VARIABLES = ("SCIM_BASE_URL", "SCIM_TOKEN")
SCIM_PATH = "/api/scim/resource/v2"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where the SCIM server is and how to authenticate; secrets hidden in repr.

    Attributes
    ----------
    mode : str
        ``"grant"``, ``"static"`` or ``"sandbox"`` (nothing configured).
    """

    mode: str
    fusionauth_url: str | None = None
    base_url: str | None = None
    client_id: str | None = None
    server_entity_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def token_url(self) -> str | None:
        """Return ``{FUSIONAUTH_URL}/oauth2/token``."""
        if not self.fusionauth_url:
            return None
        return self.fusionauth_url.rstrip("/") + "/oauth2/token"


def load_settings(
    env_file: str | Path | None = ".env",
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings from the environment, falling back to a .env file.

    Parameters
    ----------
    env_file : str or Path or None, default ".env"
        A dotenv file; missing files are ignored. Environment variables win.
    environ : mapping, optional
        Use this instead of ``os.environ`` (for tests).

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        A partial configuration, naming the missing variables, or both a
        client-credentials and a static-token configuration.

    Examples
    --------
    >>> load_settings(None, environ={}).mode
    'sandbox'
    >>> load_settings(None, environ={"FUSIONAUTH_URL": "https://a.example"})
    Traceback (most recent call last):
    ...
    scimtools.errors.ConfigError: FUSIONAUTH_URL is set but SCIM_CLIENT_ID, \
SCIM_CLIENT_SECRET, SCIM_SERVER_ENTITY_ID are missing; set them for the \
client-credentials grant, or set SCIM_TOKEN for a static token
    """
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update(
            {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        )
    source = os.environ if environ is None else environ
    values.update({k: v for k, v in source.items() if v is not None})

    # A variable that is set but blank is a half-filled .env, not "nothing
    # configured": falling back to the demo tenant would audit invented data.
    blank = [
        n
        for n in (*GRANT_VARIABLES, *STATIC_VARIABLES)
        if n in values and not values[n].strip()
    ]
    if blank:
        raise ConfigError(
            f"{', '.join(blank)} {'is' if len(blank) == 1 else 'are'} set but empty;"
            " give each a value, or unset it to use the local sandbox"
        )

    def get(name: str) -> str | None:
        value = values.get(name, "").strip()
        return value or None

    grant = {name: get(name) for name in GRANT_VARIABLES}
    token, base_url = get("SCIM_TOKEN"), get("SCIM_BASE_URL")
    fusionauth_url = grant["FUSIONAUTH_URL"]

    if not any(grant.values()) and not token and not base_url:
        return Settings(mode="sandbox")
    for name, url in (("FUSIONAUTH_URL", fusionauth_url), ("SCIM_BASE_URL", base_url)):
        if url is not None:
            check_no_userinfo(url, name)

    credentials = [n for n in GRANT_VARIABLES[1:] if grant[n]]
    if token and credentials:
        raise ConfigError(
            f"both SCIM_TOKEN and {', '.join(credentials)} are set; keep either the"
            " static token or the client-credentials variables"
        )
    if token:
        if not base_url and not fusionauth_url:
            raise ConfigError(
                "SCIM_TOKEN is set but SCIM_BASE_URL is missing; set it to the SCIM"
                f" base URL, e.g. https://auth.example.com{SCIM_PATH}"
            )
        return Settings(
            mode="static",
            fusionauth_url=fusionauth_url,
            base_url=base_url or fusionauth_url.rstrip("/") + SCIM_PATH,  # type: ignore[union-attr]
            token=token,
        )

    missing = [name for name in GRANT_VARIABLES if not grant[name]]
    if missing:
        present = [n for n in (*GRANT_VARIABLES, "SCIM_BASE_URL") if values.get(n)]
        raise ConfigError(
            f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set but"
            f" {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing;"
            " set them for the client-credentials grant, or set SCIM_TOKEN for a"
            " static token"
        )
    assert fusionauth_url is not None
    return Settings(
        mode="grant",
        fusionauth_url=fusionauth_url,
        base_url=base_url or fusionauth_url.rstrip("/") + SCIM_PATH,
        client_id=grant["SCIM_CLIENT_ID"],
        client_secret=grant["SCIM_CLIENT_SECRET"],
        server_entity_id=grant["SCIM_SERVER_ENTITY_ID"],
    )


def connect(
    *,
    env_file: str | Path | None = ".env",
    environ: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    permissions: list[str] | None = None,
    allow_insecure_http: bool = False,
    sandbox_client: str = "auditor",
    sandbox_copy: bool | None = None,
    **client_options: Any,
) -> SCIMClient:
    """Return a `SCIMClient` for the configured server, or for the local sandbox.

    Reads `load_settings`. With nothing configured it starts the sandbox on
    127.0.0.1 with the demo tenant (building it first if needed; path from
    ``SCIMTOOLS_DEMO_DB``, default ``out/demo/tenant.sqlite``), authenticates as
    its ``auditor`` client, prints one line saying so, and stops it when
    the client closes or the interpreter exits.

    Parameters
    ----------
    env_file : str or Path or None, default ".env"
        A dotenv file to read.
    environ : mapping, optional
        Instead of ``os.environ`` (for tests).
    settings : Settings, optional
        Use these instead of reading the environment.
    permissions : list of str, optional
        Request exactly these permissions in the grant (default: all granted).
    allow_insecure_http : bool, default False
        Allow tokens over plain http to a host other than loopback.
    sandbox_client : str, default "auditor"
        Sandbox only: the SCIM client entity to authenticate as. ``auditor``
        reads; ``migrator`` holds all 15 permissions; ``okta`` and ``entra``
        are the demo's two IdPs.
    sandbox_copy : bool, optional
        Sandbox only: serve a throwaway copy of the demo tenant, so that
        notebooks that write leave the demo tenant as it was. By default a copy
        is served to every client but the read-only ``auditor``; pass False to
        write into the demo tenant itself.
    **client_options
        Passed to `SCIMClient` (``page_size``, ``max_workers``, ``progress``...).

    Returns
    -------
    SCIMClient

    Raises
    ------
    ConfigError
        Partial or clashing settings.
    """
    if settings is None:
        settings = load_settings(env_file, environ=environ)

    if settings.mode == "sandbox":
        if sandbox_copy is None:
            sandbox_copy = sandbox_client != "auditor"
        return _connect_sandbox(
            environ, permissions, client_options, sandbox_client, sandbox_copy
        )

    if settings.mode == "static":
        assert settings.token and settings.base_url
        auth: Any = StaticTokenAuth(
            settings.token, allow_insecure_http=allow_insecure_http
        )
    else:
        assert settings.token_url and settings.client_id and settings.client_secret
        assert settings.server_entity_id and settings.base_url
        auth = ClientCredentialsAuth(
            settings.token_url,
            settings.client_id,
            settings.client_secret,
            settings.server_entity_id,
            permissions=permissions,
            allow_insecure_http=allow_insecure_http,
        )
    return SCIMClient(
        settings.base_url,
        auth=auth,
        allow_insecure_http=allow_insecure_http,
        **client_options,
    )


def demo_db_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the demo tenant database path (``SCIMTOOLS_DEMO_DB`` or the default)."""
    source = os.environ if environ is None else environ
    configured = source.get("SCIMTOOLS_DEMO_DB")
    if configured:
        return Path(configured)
    return REPO_ROOT / "out" / "demo" / "tenant.sqlite"


def demo_idp_views(
    env_file: str | Path | None = ".env",
    *,
    setting: str = "IDP_VIEWS",
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Return the demo tenant's IdP views folder, when the demo is what is audited.

    The demo's IdP views describe the demo tenant only: compared with a real
    tenant they would report every user missing, and plans built from them
    would write nonsense. So with a real tenant configured this refuses.

    Parameters
    ----------
    env_file, environ
        As for `load_settings`.
    setting : str, default "IDP_VIEWS"
        The notebook parameter that names the views, for the message.

    Raises
    ------
    ConfigError
        A real tenant is configured (``FUSIONAUTH_URL`` or ``SCIM_BASE_URL``).

    Examples
    --------
    >>> demo_idp_views(None, environ={}).name
    'idp-views'
    >>> demo_idp_views(None, environ={"SCIM_BASE_URL": "https://auth.example.com/api",
    ...                               "SCIM_TOKEN": "t"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.errors.ConfigError: IDP_VIEWS is not set, and a real tenant is ...
    """
    settings = load_settings(env_file, environ=environ)
    if settings.mode != "sandbox":
        host = httpx.URL(settings.base_url or "").host
        raise ConfigError(
            f"{setting} is not set, and a real tenant is configured ({host}): the"
            " demo's IdP views describe the demo tenant only; set"
            f" {setting} to your IdP export in the IdP-views format (see the"
            " README, 'IdP views')"
        )
    return demo_db_path(environ).parent / "idp-views"


def _connect_sandbox(
    environ: Mapping[str, str] | None,
    permissions: list[str] | None,
    client_options: dict[str, Any],
    client_name: str = "auditor",
    copy: bool = False,
) -> SCIMClient:
    # Imported here: the library never imports the sandbox or demo at module level.
    from scimtools.sandbox import Sandbox

    db_path = demo_db_path(environ)
    if not db_path.exists():
        from scimtools.demo.build import build_demo

        db_path.parent.mkdir(parents=True, exist_ok=True)
        build_demo(db_path)

    scratch = None
    if copy:
        scratch = tempfile.TemporaryDirectory(prefix="scimtools-sandbox-")
        db_path = _copy_database(db_path, Path(scratch.name) / db_path.name)

    sandbox = Sandbox(db_path)
    running = sandbox.__enter__()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            sandbox.__exit__(None, None, None)
            if scratch is not None:
                scratch.cleanup()

    atexit.register(stop)
    try:
        if client_name not in running.clients:
            raise ConfigError(
                f"the sandbox tenant has no SCIM client {client_name!r} (it has"
                f" {', '.join(sorted(running.clients))}); rebuild the demo tenant"
                " with `scimtools demo build` if it predates that client"
            )
        entity = running.clients[client_name]
        auth = ClientCredentialsAuth(
            running.token_url,
            entity.client_id,
            entity.client_secret,
            running.server_entity_id,
            permissions=permissions,
        )
        client = SCIMClient(running.base_url, auth=auth, **client_options)
    except BaseException:
        stop()
        raise
    client.call_on_close(stop)
    # One visible line: the reader must know this is not their own tenant.
    what = "a throwaway copy of the demo tenant" if copy else "the demo tenant"
    print(
        f"No SCIM server configured: using the local sandbox at {running.base_url}"
        f" with {what}."
    )
    return client


def _copy_database(source: Path, target: Path) -> Path:
    """Copy a SQLite database consistently, WAL included, and return the copy."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target
