"""Security: no secret in notebooks, TLS and plain http rules, the sandbox's checks.

The notebook test runs the notebooks under notebooks/ (see DEFAULT_NOTEBOOKS)
against a sandbox on a copy of the demo tenant whose client secrets were
replaced by known ones, and fails if the secret or any token minted during the
run appears in a cell output, a log record (DEBUG, captured inside the kernel)
or the repr / text of any object or exception the notebook left behind.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from scimtools.auth import check_transport
from scimtools.client import SCIMClient
from scimtools.errors import ConfigError, InsecureTLSWarning, InsecureTransportError
from scimtools.sandbox import Sandbox
from scimtools.sandbox.tokens import PERMISSIONS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
DEMO_DB = Path(
    os.environ.get("SCIMTOOLS_DEMO_DB") or ROOT / "out" / "demo" / "tenant.sqlite"
)
# All five notebooks take 7-8 minutes (04 alone about 4): the default run checks
# 01 (export: the grant, token renewal, the client's repr) and 03 (conflicts:
# IdP views, DataFrames of users), about 45 s; SCIMTOOLS_LEAK_ALL_NOTEBOOKS=1
# runs every notebook.
DEFAULT_NOTEBOOKS = ("01-export-tenant", "03-client-conflicts")
ALL_NOTEBOOKS = os.environ.get("SCIMTOOLS_LEAK_ALL_NOTEBOOKS") == "1"
NOTEBOOK_PARAMS = [
    pytest.param(
        path,
        id=path.stem,
        marks=pytest.mark.skipif(
            not ALL_NOTEBOOKS and path.stem not in DEFAULT_NOTEBOOKS,
            reason="set SCIMTOOLS_LEAK_ALL_NOTEBOOKS=1 to run every notebook",
        ),
    )
    for path in NOTEBOOKS
]
KNOWN_SECRET = "leak-canary-secret-5f0c2b9e8d7a4136"
CLIENT_NAME = "leakcheck"
CLIENT_ID = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


# -- the notebooks -------------------------------------------------------------------


def _known_seed(tmp: Path) -> Path:
    """The demo seed with every secret replaced, plus an all-permission client."""
    seed = json.loads((ROOT / "data" / "demo" / "tenant.json").read_text())
    seed["signing_key"] = "leak-canary-signing-key-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    for n, client in enumerate(seed["clients"]):
        client["secret"] = f"replaced-secret-{n}-7d1e9a"
    seed["clients"].append(
        {
            "name": CLIENT_NAME,
            "id": CLIENT_ID,
            "secret": KNOWN_SECRET,
            "permissions": list(PERMISSIONS),
        }
    )
    folder = tmp / "seed"
    folder.mkdir()
    (folder / "tenant.json").write_text(json.dumps(seed))
    return folder


def _copy_db(target: Path) -> Path:
    with sqlite3.connect(DEMO_DB) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


_PROLOGUE = """
import logging, os
_leak_log = logging.FileHandler(os.environ["LEAK_LOG"], encoding="utf-8")
_leak_log.setLevel(logging.DEBUG)
_leak_log.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(_leak_log)
logging.getLogger().setLevel(logging.DEBUG)
"""

_EPILOGUE = """
import sys as _sys, traceback as _tb
_texts = []
for _name, _value in list(globals().items()):
    if _name.startswith("_") or _name in ("In", "Out", "get_ipython", "exit", "quit"):
        continue
    for _show in (repr, str):
        try:
            _texts.append(f"{_name}: {_show(_value)[:200_000]}")
        except Exception as _exc:
            _texts.append(f"{_name}: {type(_exc).__name__}: {_exc}")
    if isinstance(_value, BaseException):
        _texts.append("".join(_tb.format_exception(_value)))
if getattr(_sys, "last_value", None) is not None:
    _texts.append("".join(_tb.format_exception(_sys.last_value)))
for _handler in logging.getLogger().handlers:
    _handler.flush()
with open(os.environ["LEAK_REPRS"], "w", encoding="utf-8") as _out:
    _out.write("\\n".join(_texts))
"""


def _secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s[:12] + "..." for s in secrets if s and s in text]


def _run(nb: Any, tmp_path: Path) -> tuple[list[str], str, str]:
    """Execute ``nb`` with env settings; return minted tokens, log and reprs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    minted: list[str] = []
    with Sandbox(_copy_db(tmp_path / "tenant.sqlite"), _known_seed(tmp_path)) as sb:
        issue = sb.issuer.mint

        def recording_mint(*args: Any, **kwargs: Any) -> str:
            token = issue(*args, **kwargs)
            minted.append(token)
            return token

        sb.issuer.mint = recording_mint  # type: ignore[method-assign]
        log_path, repr_path = tmp_path / "log.txt", tmp_path / "reprs.txt"
        env = {
            **os.environ,
            "FUSIONAUTH_URL": sb.url,
            "SCIM_CLIENT_ID": CLIENT_ID,
            "SCIM_CLIENT_SECRET": KNOWN_SECRET,
            "SCIM_SERVER_ENTITY_ID": sb.server_entity_id,
            "LEAK_LOG": str(log_path),
            "LEAK_REPRS": str(repr_path),
        }
        for name in ("SCIM_TOKEN", "SCIM_BASE_URL"):
            env.pop(name, None)
        nb.cells.insert(0, nbformat.v4.new_code_cell(_PROLOGUE))
        nb.cells.append(nbformat.v4.new_code_cell(_EPILOGUE))
        runner = nbclient.NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        )
        runner.execute(env=env)
    read = lambda p: p.read_text(encoding="utf-8") if p.exists() else ""  # noqa: E731
    return minted, read(log_path), read(repr_path)


def _leaks(nb: Any, minted: list[str], log: str, reprs: str) -> list[str]:
    """Where the secret, a minted token or its signature shows up."""
    secrets = [KNOWN_SECRET, *minted, *(t.rsplit(".", 1)[1] for t in minted)]
    basic = base64.b64encode(f"{CLIENT_ID}:{KNOWN_SECRET}".encode()).decode()
    secrets.append(basic)
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if leaked := _secrets_in(json.dumps(output), secrets):
                found.append(f"output of cell {index}: {leaked}")
    for name, text in (("log records", log), ("reprs", reprs)):
        if leaked := _secrets_in(text, secrets):
            found.append(f"{name}: {leaked}")
    return found


def test_the_leak_check_finds_a_token_that_leaks(tmp_path: Path) -> None:
    if not DEMO_DB.is_file():
        pytest.skip("no demo tenant: run `scimtools demo build` first")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import logging, scimtools\n"
            "client = scimtools.connect()\n"
            "logging.getLogger('careless').debug('token %s', client.current_token())"
        ),
        nbformat.v4.new_code_cell("print(os.environ['SCIM_CLIENT_SECRET'][:40])"),
        nbformat.v4.new_code_cell("careless = {'t': client.current_token()}"),
    ]
    minted, log, reprs = _run(nb, tmp_path)
    found = _leaks(nb, minted, log, reprs)
    assert len(minted) == 1
    assert any(f.startswith("output of cell 2") for f in found), found
    assert any(f.startswith("log records") for f in found), found
    assert any(f.startswith("reprs") for f in found), found


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_no_secret_or_token_leaks_from_a_notebook(
    notebook: Path, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    if not DEMO_DB.is_file():
        pytest.skip("no demo tenant: run `scimtools demo build` first")
    nb = nbformat.read(notebook, as_version=4)
    # As a user of a real tenant must: name the IdP views (here the demo's).
    views = DEMO_DB.parent / "idp-views"
    if "IDP_VIEWS = None" in nb.cells[1].source:
        nb.cells.insert(2, nbformat.v4.new_code_cell(f"IDP_VIEWS = {str(views)!r}"))
    if "VIEWS = {" in nb.cells[1].source:
        named = {name: str(views / f"{name}.jsonl") for name in ("okta", "entra")}
        nb.cells.insert(2, nbformat.v4.new_code_cell(f"VIEWS = {named!r}"))
    minted, log, reprs = _run(nb, tmp_path)

    assert minted, "the notebook never asked the sandbox for a token"
    assert log and reprs, "nothing was captured inside the kernel"
    assert not _leaks(nb, minted, log, reprs)
    errors = [
        f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{notebook.name} failed under env settings: {errors}"


@pytest.mark.parametrize(
    ("notebook", "setting"),
    [
        ("02-audit-mappings", "IDP_VIEWS"),
        ("03-client-conflicts", "VIEWS"),
        ("04-push-corrections", "IDP_VIEWS"),
    ],
)
def test_a_notebook_refuses_the_demo_idp_views_for_a_real_tenant(
    notebook: str, setting: str, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    if not DEMO_DB.is_file():
        pytest.skip("no demo tenant: run `scimtools demo build` first")
    nb = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells[:4] if c.cell_type == "code"]

    minted, _, _ = _run(nb, tmp_path)

    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ConfigError"]
    assert f"{setting} is not set, and a real tenant is configured" in errors[0].evalue
    assert minted == [], "refused only after asking for a token"


# -- TLS and plain http ----------------------------------------------------------------


def test_turning_tls_verification_off_warns() -> None:
    with pytest.warns(InsecureTLSWarning, match="verification is off"):
        SCIMClient("https://scim.example.com/v2", token="t", verify=False).close()


@pytest.mark.parametrize("verify", [True, "/etc/ssl/certs/ca-certificates.crt"])
def test_tls_verification_on_does_not_warn(verify: Any) -> None:
    if isinstance(verify, str) and not Path(verify).is_file():
        pytest.skip("no system CA bundle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SCIMClient("https://scim.example.com/v2", token="t", verify=verify).close()


def test_tls_verification_is_on_by_default() -> None:
    client = SCIMClient("https://scim.example.com/v2", token="t")
    try:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
    finally:
        client.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.evil.com/scim",
        "http://127.0.0.1.nip.io/scim",
        "http://127.0.0.1@evil.example/scim",
        "http://user:pass@evil.example/scim",
        "http://localhost:9011@evil.example/scim",
        "http://evil.example/127.0.0.1/scim",
        "http://evil.example/?host=localhost",
        "http://0.0.0.0:9011/scim",
        "http://10.0.0.1/scim",
        "http://[::ffff:8.8.8.8]/scim",
        "http://[fe80::1]/scim",
        "http://localhost.:9011/scim",
    ],
)
def test_plain_http_to_a_host_that_only_looks_local_is_refused(url: str) -> None:
    with pytest.raises(InsecureTransportError, match="allow_insecure_http"):
        check_transport(url, allow_insecure_http=False)
    # A URL with a user part is refused sooner, as a setting that holds a secret.
    with pytest.raises((InsecureTransportError, ConfigError)):
        SCIMClient(url, token="secret-token").close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9011/scim",
        "http://127.8.9.10/scim",
        "http://[::1]:9011/scim",
        "http://localhost/scim",
        "http://LOCALHOST:9011/scim",
        "http://api.localhost/scim",
        "https://evil.example/scim",
    ],
)
def test_plain_http_to_loopback_and_https_anywhere_are_allowed(url: str) -> None:
    check_transport(url, allow_insecure_http=False)


def test_plain_http_elsewhere_only_when_explicitly_allowed() -> None:
    check_transport("http://10.0.0.1/scim", allow_insecure_http=True)
    SCIMClient("http://10.0.0.1/scim", token="t", allow_insecure_http=True).close()


# -- the sandbox ------------------------------------------------------------


def _outside_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_sandbox_listens_on_loopback_only(sandbox: Sandbox) -> None:
    assert sandbox.url.startswith("http://127.0.0.1:")
    port = int(sandbox.url.rsplit(":", 1)[1])
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(OSError), socket.create_connection((address, port), 2):
        pass


def _forge(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    raw = json.dumps(claims, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def _get_users(sb: Sandbox, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{sb.base_url}/Users", headers=headers).status_code


def test_jwt_signature_algorithm_and_expiry_are_checked(make_sandbox: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from scimtools.sandbox import SandboxConfig

    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    sb = make_sandbox(SandboxConfig(clock=lambda: now[0]))
    token = sb.mint_token("okta", ttl=600)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert _get_users(sb, token) == 200

    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    other_key = jwt.encode(claims, "another-key-of-32-bytes-or-more!!", "HS256")
    for bad in (f"{header}.{payload}.{flipped}", f"{header}.{payload}.", unsigned):
        assert _get_users(sb, bad) == 401
    assert _get_users(sb, other_key) == 401

    now[0] += timedelta(seconds=601)
    assert _get_users(sb, token) == 401


def test_a_token_cannot_act_with_another_entitys_permissions(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    reader = sb.mint_token("auditor", ttl=600)
    okta_id = sb.clients["okta"].client_id
    server = sb.server_entity_id
    body = {"schemas": [USER], "userName": "forged"}

    forged = [
        _forge(reader, sub=okta_id),
        _forge(reader, permissions={server: list(PERMISSIONS)}),
        _forge(reader, sub=okta_id, permissions={server: list(PERMISSIONS)}),
        _forge(reader, sub="not-a-client"),
        _forge(reader, aud=["another-server"]),
        _forge(reader, tid="another-tenant"),
    ]
    for token in forged:
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{sb.base_url}/Users", json=body, headers=headers)
        assert created.status_code == 401
        assert _get_users(sb, token) == 401
    headers = {"Authorization": f"Bearer {reader}"}
    assert (
        httpx.post(f"{sb.base_url}/Users", json=body, headers=headers).status_code
        == 401
    )
    okta = sb.mint_token("okta", ttl=600)
    listed = httpx.get(
        f"{sb.base_url}/Users", headers={"Authorization": f"Bearer {okta}"}
    ).json()
    assert listed["totalResults"] == 0


# -- each permission, per endpoint and method ------------------------------

_KINDS = {
    "user": ("Users", {"schemas": [USER], "userName": "{name}"}),
    "enterprise:user": (
        "EnterpriseUsers",
        {
            "schemas": [
                USER,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ],
            "userName": "{name}",
        },
    ),
    "group": (
        "Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "{name}",
        },
    ),
}


def _routes() -> list[tuple[str, str, str, str]]:
    """(permission, method, endpoint, id placeholder) for every endpoint."""
    routes = []
    for kind, (endpoint, _) in _KINDS.items():
        routes += [
            (f"scim:{kind}:read", "GET", endpoint, ""),
            (f"scim:{kind}:read", "GET", endpoint, "{id}"),
            (f"scim:{kind}:create", "POST", endpoint, ""),
            (f"scim:{kind}:update", "PUT", endpoint, "{id}"),
            (f"scim:{kind}:update", "PATCH", endpoint, "{id}"),
            (f"scim:{kind}:delete", "DELETE", endpoint, "{id}"),
        ]
    routes += [
        ("scim:service-provider-config:read", "GET", "ServiceProviderConfig", ""),
        ("scim:resource-types:read", "GET", "ResourceTypes", ""),
        ("scim:resource-types:read", "GET", "ResourceTypes", "User"),
        ("scim:schemas:read", "GET", "Schemas", ""),
        ("scim:schemas:read", "GET", "Schemas", USER),
    ]
    return routes


ROUTES = _routes()


def test_the_route_table_covers_all_fifteen_permissions() -> None:
    assert {r[0] for r in ROUTES} == set(PERMISSIONS)


@pytest.fixture(scope="module")
def permission_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from tests.conftest import SEED_DIR

    db = tmp_path_factory.mktemp("perm") / "tenant.sqlite"
    with Sandbox(db, seed_dir=SEED_DIR) as sb:
        yield sb


def _send(
    sb: Sandbox, token: str, method: str, endpoint: str, rid: str, n: int
) -> httpx.Response:
    kind = next((k for k, v in _KINDS.items() if v[0] == endpoint), None)
    body = None
    if kind is not None:
        template = json.dumps(_KINDS[kind][1]).replace("{name}", f"perm-{n}")
        body = json.loads(template)
    if method == "PATCH":
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "externalId", "value": f"x{n}"}],
        }
    url = f"{sb.base_url}/{endpoint}" + (f"/{rid}" if rid else "")
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, url, headers=headers, json=body)


@pytest.mark.parametrize(
    ("permission", "method", "endpoint", "rid"),
    ROUTES,
    ids=[f"{m}-{e}{'-id' if r else ''}" for _, m, e, r in ROUTES],
)
def test_each_permission_is_enforced_per_endpoint(
    permission_sandbox: Sandbox, permission: str, method: str, endpoint: str, rid: str
) -> None:
    sb = permission_sandbox
    n = ROUTES.index((permission, method, endpoint, rid))
    full = sb.mint_token("okta", permissions=list(PERMISSIONS), ttl=600)
    if rid == "{id}":
        made = _send(sb, full, "POST", endpoint, "", 1000 + n)
        assert made.status_code == 201, made.text
        rid = made.json()["id"]
    count_before = _count(sb, full, endpoint)

    others = [p for p in PERMISSIONS if p != permission]
    without = sb.mint_token("okta", permissions=others, ttl=600)
    refused = _send(sb, without, method, endpoint, rid, n)
    assert refused.status_code == 401, (permission, refused.status_code)
    assert _count(sb, full, endpoint) == count_before

    only = sb.mint_token("okta", permissions=[permission], ttl=600)
    allowed = _send(sb, only, method, endpoint, rid, n)
    assert allowed.status_code in (200, 201, 204), (permission, allowed.text[:300])


def _count(sb: Sandbox, token: str, endpoint: str) -> int | None:
    if endpoint not in ("Users", "EnterpriseUsers", "Groups"):
        return None
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{sb.base_url}/{endpoint}?count=1", headers=headers)
    return answer.json()["totalResults"]
