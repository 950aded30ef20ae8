"""Start the sandbox: load the seed, open the store, serve HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import SCIM_PREFIX, SandboxApp
from .config import SandboxConfig
from .faults import FaultInjector, FaultPlan
from .lambdas import DEFAULT_LAMBDA_DIR, LambdaSet
from .store import Store, Tenant
from .tokens import SandboxClient, TokenIssuer

__all__ = ["DEFAULT_SEED_DIR", "Sandbox", "load_seed"]

logger = logging.getLogger(__name__)

DEFAULT_SEED_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"


def load_seed(seed_dir: str | Path | None = None) -> dict[str, Any]:
    """Read ``tenant.json`` from ``seed_dir`` (``data/demo/`` by default)."""
    directory = Path(seed_dir) if seed_dir else DEFAULT_SEED_DIR
    path = directory / "tenant.json"
    try:
        seed = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist; pass seed_dir= a directory holding tenant.json"
        ) from None
    seed["_dir"] = str(directory)
    return seed


class _QuietHandler(WSGIRequestHandler):
    """Keep connections alive and log requests at DEBUG (never headers)."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s", self.requestline.split(" ?")[0], code)


class Sandbox:
    """A FusionAuth-compatible SCIM server on 127.0.0.1, used as a context manager.

    Parameters
    ----------
    db_path
        The SQLite file holding the tenant; created when missing, reused after.
    seed_dir
        Directory of ``tenant.json`` (tenant, key, entities, lambda files). The
        first start stores the seed in the database; later starts without a
        seed use the stored one.
    port
        TCP port; 0 picks a free one.
    config
        The FusionAuth choices, latency, clock and id seed.
    faults
        Faults to inject (see `scimtools.sandbox.faults`); overrides
        ``config.faults``. The injector is ``self.faults`` (its counts of
        faults injected), None without faults.

    Examples
    --------
    >>> import tempfile, httpx
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with Sandbox(f"{tmp}/t.sqlite") as sb:
    ...         token = sb.mint_token("auditor")
    ...         r = httpx.get(f"{sb.base_url}/Users",
    ...                       headers={"Authorization": f"Bearer {token}"})
    >>> r.json()["totalResults"]
    0
    """

    def __init__(
        self,
        db_path: str | Path,
        seed_dir: str | Path | None = None,
        port: int = 0,
        config: SandboxConfig | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(
                f"port must be between 0 and 65535 (0 picks a free one), not {port}"
            )
        self.config = config or SandboxConfig()
        # Read a given seed before opening the database, so that a wrong
        # seed_dir leaves no new database file behind.
        given = load_seed(seed_dir) if seed_dir is not None else None
        self.store = Store(db_path)
        seed = given or self.store.get_config("seed")
        if seed is None or given is not None:
            seed = given or load_seed(None)
            self.store.set_config("seed", seed)

        plan = faults if faults is not None else self.config.faults
        self.tenant_id: str = seed["tenant"]["id"]
        self.server_entity_id: str = seed["server_entity"]["id"]
        self.clients = {
            c["name"]: SandboxClient(
                c["name"], c["id"], c["secret"], tuple(sorted(c["permissions"]))
            )
            for c in seed["clients"]
        }
        lambda_dir = Path(seed["_dir"]) / seed.get("lambda_dir", DEFAULT_LAMBDA_DIR)
        self.lambdas = LambdaSet.from_directory(
            lambda_dir, files=seed.get("lambdas"), timeout=self.config.lambda_timeout
        )
        self.tenant = Tenant(
            self.store, self.lambdas, self.config, tenant_id=self.tenant_id
        )
        self.issuer = TokenIssuer(
            tenant_id=self.tenant_id,
            issuer=seed["tenant"].get("issuer", "acme.com"),
            key=seed["signing_key"].encode(),
            key_id=seed.get("key_id", "sandbox"),
            server_entity_id=self.server_entity_id,
            clients=self.clients,
            ttl=(plan.token_ttl if plan is not None else None)
            or self.config.token_ttl
            or int(seed.get("token_ttl", 3600)),
            clock=self.config.clock,
            aud_as_array=self.config.aud_as_array,
        )
        self.app: Any = SandboxApp(self.tenant, self.issuer, self.config)
        self.faults = FaultInjector(self.app, plan) if plan is not None else None
        if self.faults is not None:
            self.app = self.faults
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __repr__(self) -> str:
        return f"Sandbox(url={self.url!r}, clients={sorted(self.clients)})"

    @property
    def base_url(self) -> str:
        """The SCIM base URL (``{url}/api/scim/resource/v2``)."""
        return self.url + SCIM_PREFIX

    @property
    def token_url(self) -> str:
        """The token endpoint (``{url}/oauth2/token``)."""
        return self.url + "/oauth2/token"

    def mint_token(
        self,
        client: str = "auditor",
        permissions: list[str] | None = None,
        ttl: int | None = None,
    ) -> str:
        """Return a signed access token for a named client, without HTTP.

        ``permissions`` defaults to every permission the client holds.
        """
        return self.issuer.mint(self.clients[client], permissions, ttl=ttl)

    def start(self) -> Sandbox:
        """Serve in a background thread; return self.

        Raises
        ------
        OSError
            When the port cannot be bound (in use, or not allowed).
        """
        port = self._requested_port
        # Bind here rather than in werkzeug, which prints and calls sys.exit(1)
        # when the port is taken.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pass another"
                " port, or 0 for a free one",
            ) from None
        try:
            self._server = make_server(
                "127.0.0.1",
                port,
                self.app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=sock.fileno(),
            )
        finally:
            sock.close()
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scimtools-sandbox", daemon=True
        )
        self._thread.start()
        logger.info("Sandbox serving %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the database and the V8 isolate."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.lambdas.close()
        self.store.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
