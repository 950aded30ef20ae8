"""The tenant's data: a SQLite store of FusionAuth users and groups, and the lambdas.

The store keeps FusionAuth's model, not SCIM's: a user row holds the FusionAuth
user JSON that the request lambda produced, with ``externalId`` beside it (FusionAuth
keeps it outside the user object); a group row holds the group, and memberships
hold ``userId`` and ``data.$ref``. SCIM JSON is what the response lambda renders
from them; each row caches its rendering until the row or the lambdas change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scim2_models import (
    Context,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import load_default_provider

from .config import SandboxConfig
from .filters import Query
from .lambdas import LambdaSet

__all__ = [
    "BASE_MARK",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "SandboxError",
    "Store",
    "Tenant",
    "TenantStorage",
]

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"

BASE_MARK = "@@SCIM_BASE@@"
"""Stands for the SCIM base URL in cached JSON; the app replaces it when serving."""

_ENDPOINTS = {"User": "Users", "EnterpriseUser": "EnterpriseUsers", "Group": "Groups"}
_CACHE_COLUMNS = {
    "User": "scim_user",
    "EnterpriseUser": "scim_enterprise",
    "Group": "scim_group",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT,
    username_lower TEXT,
    email_lower TEXT,
    active INTEGER NOT NULL,
    external_id TEXT,
    user_json TEXT NOT NULL,
    password_hash TEXT,
    insert_instant INTEGER NOT NULL,
    update_instant INTEGER NOT NULL,
    version INTEGER NOT NULL,
    scim_user TEXT,
    scim_enterprise TEXT
);
CREATE INDEX IF NOT EXISTS users_username ON users (username_lower);
CREATE INDEX IF NOT EXISTS users_email ON users (email_lower);
CREATE INDEX IF NOT EXISTS users_external_id ON users (external_id);
CREATE INDEX IF NOT EXISTS users_order ON users (insert_instant, id);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT,
    name_lower TEXT,
    external_id TEXT,
    group_json TEXT NOT NULL,
    insert_instant INTEGER NOT NULL,
    update_instant INTEGER NOT NULL,
    version INTEGER NOT NULL,
    scim_group TEXT
);
CREATE INDEX IF NOT EXISTS groups_name ON groups (name_lower);
CREATE INDEX IF NOT EXISTS groups_order ON groups (insert_instant, id);
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    data TEXT NOT NULL,
    insert_instant INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_user ON memberships (user_id);
"""


class SandboxError(Exception):
    """A SCIM request failed; the app turns it into an error response."""

    status = 500

    def __init__(
        self,
        detail: str,
        *,
        general_errors: list[dict[str, Any]] | None = None,
        field_errors: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.general_errors = general_errors
        self.field_errors = field_errors


class NotFoundError(SandboxError):
    """No resource has this id (404)."""

    status = 404


class ConflictError(SandboxError):
    """A username or email is taken (409)."""

    status = 409


class BadRequestError(SandboxError):
    """The request is invalid (400, with FusionAuth's error extension)."""

    status = 400


def _iso(millis: int) -> str:
    """Format epoch milliseconds as FusionAuth's SCIM library does."""
    moment = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _millis(moment: dt.datetime) -> int:
    return int(round(moment.timestamp() * 1000))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _prune(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop unassigned values (null, empty objects and lists) from a rendering."""
    pruned = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key != "meta":
            value = {k: v for k, v in value.items() if v is not None}
            if not value and not key.startswith("urn:"):
                continue
        if value is None or value == []:
            continue
        pruned[key] = value
    return pruned


def _field_error(field: str, code: str, message: str) -> dict[str, Any]:
    return {field: [{"code": code, "message": message}]}


class Store:
    """Open the SQLite file of a tenant, one connection per thread, WAL mode.

    Parameters
    ----------
    path
        The database file; created with its tables when missing.
    """

    def __init__(self, path: str | Path) -> None:
        folder = Path(path).resolve().parent
        if not folder.is_dir():
            raise FileNotFoundError(
                f"The folder {folder} of the database {path} does not exist;"
                " create it first or choose another path."
            )
        self.path = str(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._idle: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.write_lock = threading.RLock()

        with self.write_lock:
            try:
                self.db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                self.close()
                raise type(exc)(
                    f"Cannot open the database {path} ({exc}); check that it is a"
                    " writable SQLite file, or choose another path."
                ) from exc

    @property
    def db(self) -> sqlite3.Connection:
        """Return this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def _connect(self) -> sqlite3.Connection:
        with self._connections_lock:
            if self._idle:
                return self._idle.pop()
        db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        with self._connections_lock:
            self._connections.append(db)
        return db

    @contextmanager
    def session(self) -> Iterator[None]:
        """Lend this thread a pooled connection for one request, then take it back.

        The HTTP server runs each request on a new thread; pooling saves opening
        a connection per request.
        """
        if getattr(self._local, "db", None) is not None:
            yield
            return
        db = self._connect()
        self._local.db = db
        try:
            yield
        finally:
            self._local.db = None
            with self._connections_lock:
                self._idle.append(db)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a write transaction under the store's write lock."""
        with self.write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def get_config(self, key: str) -> Any:
        """Return a stored configuration value, or None."""
        row = self.db.execute("SELECT value FROM config WHERE key = ?", (key,))
        found = row.fetchone()
        return json.loads(found[0]) if found else None

    def set_config(self, key: str, value: Any) -> None:
        """Store a configuration value."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)",
                (key, json.dumps(value)),
            )

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
            self._idle.clear()
        self._local = threading.local()


class Tenant:
    """A FusionAuth tenant's SCIM side: users and groups through the lambdas.

    Every method takes and returns SCIM JSON (dicts) and raises
    :class:`SandboxError` subclasses; the HTTP app and the bulk loaders share it.

    Parameters
    ----------
    store
        The tenant's SQLite store.
    lambdas
        The six converters.
    config
        Clock, id seed and the FusionAuth choices.
    tenant_id
        The FusionAuth tenant id, set on each user.
    """

    def __init__(
        self,
        store: Store,
        lambdas: LambdaSet,
        config: SandboxConfig,
        *,
        tenant_id: str,
    ) -> None:
        self.store = store
        self.lambdas = lambdas
        self.config = config
        self.tenant_id = tenant_id
        self._rng = (
            random.Random(config.id_seed) if config.id_seed is not None else None
        )
        self._id_lock = threading.Lock()

        if store.get_config("lambda_fingerprint") != lambdas.fingerprint:
            self.invalidate_renderings()
            store.set_config("lambda_fingerprint", lambdas.fingerprint)

    # --- small helpers ---------------------------------------------------

    def new_id(self) -> str:
        """Return a new UUID, from the seeded generator when there is one."""
        if self._rng is None:
            return str(uuid.uuid4())
        with self._id_lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def now(self) -> int:
        """Return the clock's time in epoch milliseconds."""
        return _millis(self.config.clock())

    def invalidate_renderings(self) -> None:
        """Forget every cached SCIM rendering (after the lambdas changed)."""
        with self.store.transaction() as db:
            db.execute("UPDATE users SET scim_user = NULL, scim_enterprise = NULL")
            db.execute("UPDATE groups SET scim_group = NULL")

    # --- users: write path -----------------------------------------------

    @staticmethod
    def _normalise_user(scim: Any) -> dict[str, Any]:
        if not isinstance(scim, dict):
            raise BadRequestError(
                "Request failed, see errors for additional details.",
                general_errors=[
                    {"code": "[invalid]", "message": "Your JSON was invalid"}
                ],
            )
        scim = dict(scim)
        active = scim.get("active")
        if isinstance(active, str):
            # Entra sends "False"/"True" as strings. FusionAuth binds the body
            # with Jackson, whose boolean coercion accepts the texts true/false
            # in lower, Title and UPPER case, so the string is read as the
            # boolean (inferred; not documented). Anything else is invalid.
            if active in ("true", "True", "TRUE", "false", "False", "FALSE"):
                scim["active"] = active.lower() == "true"
            else:
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    general_errors=[
                        {
                            "code": "[invalid]",
                            "message": f"Invalid value [{active}] for active.",
                        }
                    ],
                )
        return scim

    def _request_users(
        self, scims: Sequence[dict[str, Any]], resource: str
    ) -> list[dict[str, Any]]:
        slot = (
            "enterpriseUserRequest" if resource == "EnterpriseUser" else "userRequest"
        )
        return [r["user"] for r in self.lambdas.run(slot, [(s,) for s in scims])]

    def _check_user(
        self, db: sqlite3.Connection, user: dict[str, Any], user_id: str
    ) -> None:
        username, email = user.get("username"), user.get("email")
        for field, value in (("username", username), ("email", email)):
            if value is not None and not isinstance(value, str):
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    field_errors=_field_error(
                        f"user.{field}",
                        f"[invalid]user.{field}",
                        f"The [user.{field}] property must be a string.",
                    ),
                )
        limit = self.config.max_field_length
        for field, value in (("username", username), ("email", email)):
            if not isinstance(value, str):
                continue
            if "\x00" in value:
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    field_errors=_field_error(
                        f"user.{field}",
                        f"[invalid]user.{field}",
                        f"The [user.{field}] property must not contain a NUL"
                        " (U+0000) character.",
                    ),
                )
            if len(value) > limit:
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    field_errors=_field_error(
                        f"user.{field}",
                        f"[tooLong]user.{field}",
                        f"The [user.{field}] property is {len(value):,} characters"
                        f" long; the maximum is {limit}.",
                    ),
                )
        if not username and not email:
            raise BadRequestError(
                "Request failed, see errors for additional details.",
                field_errors=_field_error(
                    "user.email",
                    "[blank]user.email",
                    "You must specify either the [user.email] or [user.username]"
                    " property. If you are emailing the user you must specify the"
                    " [user.email].",
                ),
            )

        errors: dict[str, list[dict[str, Any]]] = {}
        for column, value, field in (
            ("username_lower", username, "username"),
            ("email_lower", email, "email"),
        ):
            if not isinstance(value, str) or not value:
                continue
            taken = db.execute(
                f"SELECT 1 FROM users WHERE {column} = ? AND id <> ? LIMIT 1",
                (value.lower(), user_id),
            ).fetchone()
            if taken:
                errors.update(
                    _field_error(
                        f"user.{field}",
                        f"[duplicate]user.{field}",
                        f"A User with {field} = [{value}] already exists.",
                    )
                )
        if errors:
            # 409 whether one or both are taken: #3149 (both taken gave 400) is
            # closed, so the stand-in applies the fix.
            raise ConflictError(
                "Request failed, see errors for additional details.",
                field_errors=errors,
            )

    def _user_row(
        self,
        user_id: str,
        user: dict[str, Any],
        external_id: Any,
        inserted: int,
        updated: int,
        version: int,
    ) -> tuple[Any, ...]:
        user = {k: v for k, v in user.items() if v is not None}
        password = user.pop("password", None)
        if user.get("active") is None:
            user["active"] = True
        user.update(
            id=user_id,
            tenantId=self.tenant_id,
            insertInstant=inserted,
            lastUpdateInstant=updated,
        )
        username, email = user.get("username"), user.get("email")
        digest = (
            hashlib.sha256(str(password).encode()).hexdigest() if password else None
        )
        return (
            user_id,
            username,
            username.lower() if isinstance(username, str) else None,
            email.lower() if isinstance(email, str) else None,
            1 if user["active"] else 0,
            None if external_id is None else str(external_id),
            _dumps(user),
            digest,
            inserted,
            updated,
            version,
        )

    def create_user(
        self, scim: Any, *, resource: str = "User", when: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Create a user from SCIM JSON and return its rendering (POST)."""
        return self.ingest_users([scim], resource=resource, when=when, render=True)[0]

    def ingest_users(
        self,
        scims: Iterable[Any],
        *,
        resource: str = "User",
        external_ids: Sequence[str | None] | None = None,
        when: dt.datetime | None = None,
        render: bool = False,
    ) -> list[Any]:
        """Create users in bulk through the request lambda, without HTTP.

        Parameters
        ----------
        scims
            SCIM User (or EnterpriseUser) JSON documents.
        resource
            ``"User"`` or ``"EnterpriseUser"``: which request lambda runs.
        external_ids
            externalId per user, overriding the documents' ``externalId``.
        when
            Creation time of every user; the clock's time by default.
        render
            Return the SCIM renderings instead of the ids.

        Returns
        -------
        list
            The new ids (or renderings), in input order.

        Raises
        ------
        ConflictError
            When a username or email is taken; nothing of the batch is stored.
        """
        scims = [self._normalise_user(s) for s in scims]
        if external_ids is not None:
            if len(external_ids) != len(scims):
                raise ValueError("external_ids must have one entry per user")
            scims = [
                {**s, "externalId": e} if e is not None else s
                for s, e in zip(scims, external_ids, strict=True)
            ]
        users = self._request_users(scims, resource)
        instant = _millis(when) if when else self.now()

        ids = []
        with self.store.transaction() as db:
            for scim, user in zip(scims, users, strict=True):
                user_id = self.new_id()
                self._check_user(db, user, user_id)
                row = self._user_row(
                    user_id, user, scim.get("externalId"), instant, instant, 1
                )
                db.execute(
                    "INSERT INTO users (id, username, username_lower, email_lower,"
                    " active, external_id, user_json, password_hash, insert_instant,"
                    " update_instant, version) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
                ids.append(user_id)

        # Render now so that the first listing is served from the cache.
        self._fill("User", ids)
        if resource != "User":
            self._fill(resource, ids)
        if render:
            return [self.get(resource, user_id) for user_id in ids]
        return ids

    def replace_user(
        self, user_id: str, scim: Any, *, resource: str = "User"
    ) -> dict[str, Any]:
        """Overwrite a user with the request lambda's result of ``scim`` (PUT)."""
        scim = self._normalise_user(scim)
        (user,) = self._request_users([scim], resource)

        with self.store.transaction() as db:
            found = db.execute(
                "SELECT insert_instant, version, external_id FROM users WHERE id = ?",
                (user_id,),
            ).fetchone()
            if found is None:
                raise NotFoundError(f"No User with id [{user_id}] exists.")
            inserted, version, external_id = found
            self._check_user(db, user, user_id)
            # externalId lives outside the user object; a body without it keeps
            # the stored one (unconfirmed; IdPs send it on every PUT anyway).
            if "externalId" in scim:
                external_id = scim["externalId"]
            row = self._user_row(
                user_id, user, external_id, inserted, self.now(), version + 1
            )
            db.execute(
                "UPDATE users SET username=?, username_lower=?, email_lower=?,"
                " active=?, external_id=?, user_json=?,"
                " password_hash=COALESCE(?, password_hash), insert_instant=?,"
                " update_instant=?, version=?, scim_user=NULL, scim_enterprise=NULL"
                " WHERE id=?",
                (*row[1:], user_id),
            )
            db.execute(
                "UPDATE groups SET scim_group = NULL WHERE id IN"
                " (SELECT group_id FROM memberships WHERE user_id = ?)",
                (user_id,),
            )
        return self.get(resource, user_id)

    def delete(self, resource: str, resource_id: str) -> None:
        """Delete a user or group for good (DELETE, 204)."""
        with self.store.transaction() as db:
            if resource == "Group":
                gone = db.execute("DELETE FROM groups WHERE id = ?", (resource_id,))
                if gone.rowcount == 0:
                    raise NotFoundError(f"No Group with id [{resource_id}] exists.")
                db.execute("DELETE FROM memberships WHERE group_id = ?", (resource_id,))
                return

            gone = db.execute("DELETE FROM users WHERE id = ?", (resource_id,))
            if gone.rowcount == 0:
                raise NotFoundError(f"No User with id [{resource_id}] exists.")
            db.execute(
                "UPDATE groups SET scim_group = NULL WHERE id IN"
                " (SELECT group_id FROM memberships WHERE user_id = ?)",
                (resource_id,),
            )
            db.execute("DELETE FROM memberships WHERE user_id = ?", (resource_id,))

    # --- groups: write path ----------------------------------------------

    def _request_groups(
        self, scims: Sequence[Any]
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        for scim in scims:
            if not isinstance(scim, dict):
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    general_errors=[
                        {"code": "[invalid]", "message": "Your JSON was invalid"}
                    ],
                )
        results = self.lambdas.run("groupRequest", [(s,) for s in scims])
        converted = []
        for result in results:
            group = result["group"]
            if not group.get("name"):
                raise BadRequestError(
                    "Request failed, see errors for additional details.",
                    field_errors=_field_error(
                        "group.name",
                        "[blank]group.name",
                        "You must specify the [group.name] property.",
                    ),
                )
            converted.append((group, result["members"]))
        return converted

    def _check_group(self, db: sqlite3.Connection, name: str, group_id: str) -> None:
        taken = db.execute(
            "SELECT 1 FROM groups WHERE name_lower = ? AND id <> ? LIMIT 1",
            (name.lower(), group_id),
        ).fetchone()
        if taken:
            raise ConflictError(
                "Request failed, see errors for additional details.",
                field_errors=_field_error(
                    "group.name",
                    "[duplicate]group.name",
                    f"A Group with name = [{name}] already exists.",
                ),
            )

    def _save_members(
        self,
        db: sqlite3.Connection,
        group_id: str,
        members: list[dict[str, Any]],
        instant: int,
    ) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        for member in members:
            user_id = member.get("userId")
            if user_id:
                data = {k: v for k, v in (member.get("data") or {}).items() if v}
                wanted[str(user_id)] = data
        present = {
            row[0]
            for row in db.execute(
                "SELECT user_id FROM memberships WHERE group_id = ?", (group_id,)
            )
        }

        db.executemany(
            "DELETE FROM memberships WHERE group_id = ? AND user_id = ?",
            [(group_id, u) for u in present - set(wanted)],
        )
        db.executemany(
            "UPDATE memberships SET data = ? WHERE group_id = ? AND user_id = ?",
            [(_dumps(d), group_id, u) for u, d in wanted.items() if u in present],
        )
        db.executemany(
            "INSERT INTO memberships (group_id, user_id, data, insert_instant)"
            " VALUES (?, ?, ?, ?)",
            [
                (group_id, u, _dumps(d), instant)
                for u, d in wanted.items()
                if u not in present
            ],
        )

    def create_group(
        self, scim: Any, *, when: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Create a group from SCIM JSON and return its rendering (POST)."""
        return self.ingest_groups([scim], when=when, render=True)[0]

    def ingest_groups(
        self,
        scims: Iterable[Any],
        *,
        external_ids: Sequence[str | None] | None = None,
        when: dt.datetime | None = None,
        render: bool = False,
    ) -> list[Any]:
        """Create groups (with members) in bulk through the request lambda.

        Parameters are those of :meth:`ingest_users`; members name user ids.
        """
        scims = list(scims)
        if external_ids is not None:
            if len(external_ids) != len(scims):
                raise ValueError("external_ids must have one entry per group")
            scims = [
                {**s, "externalId": e} if e is not None else s
                for s, e in zip(scims, external_ids, strict=True)
            ]
        converted = self._request_groups(scims)
        instant = _millis(when) if when else self.now()

        ids = []
        with self.store.transaction() as db:
            for scim, (group, members) in zip(scims, converted, strict=True):
                group_id = self.new_id()
                self._check_group(db, group["name"], group_id)
                self._write_group(db, group_id, group, scim, instant, instant, 1)
                self._save_members(db, group_id, members, instant)
                ids.append(group_id)

        self._fill("Group", ids)
        if render:
            return [self.get("Group", group_id) for group_id in ids]
        return ids

    def _write_group(
        self,
        db: sqlite3.Connection,
        group_id: str,
        group: dict[str, Any],
        scim: dict[str, Any],
        inserted: int,
        updated: int,
        version: int,
        *,
        external_id: Any = None,
    ) -> None:
        group = {k: v for k, v in group.items() if v is not None}
        group.update(
            id=group_id,
            tenantId=self.tenant_id,
            insertInstant=inserted,
            lastUpdateInstant=updated,
        )
        if "externalId" in scim:
            external_id = scim["externalId"]
        db.execute(
            "INSERT OR REPLACE INTO groups (id, name, name_lower, external_id,"
            " group_json, insert_instant, update_instant, version)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                group_id,
                group["name"],
                str(group["name"]).lower(),
                None if external_id is None else str(external_id),
                _dumps(group),
                inserted,
                updated,
                version,
            ),
        )

    def replace_group(self, group_id: str, scim: Any) -> dict[str, Any]:
        """Overwrite a group and its members from SCIM JSON (PUT)."""
        ((group, members),) = self._request_groups([scim])

        with self.store.transaction() as db:
            found = db.execute(
                "SELECT insert_instant, version, external_id FROM groups WHERE id = ?",
                (group_id,),
            ).fetchone()
            if found is None:
                raise NotFoundError(f"No Group with id [{group_id}] exists.")
            inserted, version, external_id = found
            self._check_group(db, group["name"], group_id)
            now = self.now()
            self._write_group(
                db,
                group_id,
                group,
                scim,
                inserted,
                now,
                version + 1,
                external_id=external_id,
            )
            self._save_members(db, group_id, members, now)
        return self.get("Group", group_id)

    def replace(self, resource: str, resource_id: str, scim: Any) -> dict[str, Any]:
        """Replace a User, EnterpriseUser or Group (PUT)."""
        if resource == "Group":
            return self.replace_group(resource_id, scim)
        return self.replace_user(resource_id, scim, resource=resource)

    def patch(self, resource: str, resource_id: str, body: Any) -> dict[str, Any]:
        """Apply a PatchOp: render, patch, run the request lambda, save (PATCH)."""
        from .patch import apply_patch  # patch.py imports this module's errors

        current = self.get(resource, resource_id)
        patched = apply_patch(resource, current, body)
        return self.replace(resource, resource_id, patched)

    def create(self, resource: str, scim: Any) -> dict[str, Any]:
        """Create a User, EnterpriseUser or Group (POST)."""
        if resource == "Group":
            return self.create_group(scim)
        return self.create_user(scim, resource=resource)

    # --- read path -------------------------------------------------------

    def _render_users(
        self, rows: Sequence[tuple[Any, ...]], resource: str
    ) -> list[str]:
        """Render (id, external_id, user_json, inserted, updated) rows to JSON."""
        endpoint = _ENDPOINTS[resource]
        schemas = [USER_URN] + (
            [ENTERPRISE_URN] if resource == "EnterpriseUser" else []
        )
        batch = []
        for user_id, external_id, user_json, inserted, updated in rows:
            scim: dict[str, Any] = {"schemas": list(schemas), "id": user_id}
            if external_id is not None:
                scim["externalId"] = external_id
            scim["meta"] = {
                "created": _iso(inserted),
                "lastModified": _iso(updated),
                "location": f"{BASE_MARK}/{endpoint}/{user_id}",
                "resourceType": resource,
            }
            batch.append((scim, json.loads(user_json)))
        slot = (
            "enterpriseUserResponse" if resource == "EnterpriseUser" else "userResponse"
        )
        return [_dumps(_prune(doc)) for doc in self.lambdas.run(slot, batch)]

    def _render_groups(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        batch = []
        for group_id, external_id, group_json, inserted, updated in rows:
            members, users = [], []
            for user_id, data, user_json in self.store.db.execute(
                "SELECT m.user_id, m.data, u.user_json FROM memberships m"
                " JOIN users u ON u.id = m.user_id WHERE m.group_id = ?"
                " ORDER BY m.insert_instant, m.user_id",
                (group_id,),
            ):
                member = {"value": user_id}
                ref = json.loads(data).get("$ref")
                if ref:
                    member["$ref"] = ref
                members.append(member)
                users.append(json.loads(user_json))

            scim: dict[str, Any] = {"schemas": [GROUP_URN], "id": group_id}
            if external_id is not None:
                scim["externalId"] = external_id
            scim["members"] = members
            scim["meta"] = {
                "created": _iso(inserted),
                "lastModified": _iso(updated),
                "location": f"{BASE_MARK}/Groups/{group_id}",
                "resourceType": "Group",
            }
            batch.append((scim, json.loads(group_json), users))
        return [_dumps(_prune(doc)) for doc in self.lambdas.run("groupResponse", batch)]

    def _table(self, resource: str) -> tuple[str, str]:
        if resource == "Group":
            return "groups", "group_json"
        if resource not in ("User", "EnterpriseUser"):
            raise ValueError(f"unknown resource {resource!r}")
        return "users", "user_json"

    def _fill(self, resource: str, ids: Sequence[str]) -> dict[str, str]:
        """Render and cache the resources of ``ids`` that have no cached JSON."""
        table, body = self._table(resource)
        column = _CACHE_COLUMNS[resource]
        rendered: dict[str, str] = {}

        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.store.db.execute(
                f"SELECT id, external_id, {body}, insert_instant, update_instant,"
                f" version FROM {table} WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            if not rows:
                continue
            plain = [row[:5] for row in rows]
            docs = (
                self._render_groups(plain)
                if resource == "Group"
                else self._render_users(plain, resource)
            )
            with self.store.transaction() as db:
                db.executemany(
                    f"UPDATE {table} SET {column} = ? WHERE id = ? AND version = ?",
                    [
                        (doc, row[0], row[5])
                        for doc, row in zip(docs, rows, strict=True)
                    ],
                )
            rendered.update((row[0], doc) for doc, row in zip(docs, rows, strict=True))
        return rendered

    def get_json(self, resource: str, resource_id: str) -> str:
        """Return the cached SCIM JSON text of one resource (with BASE_MARK)."""
        table, _ = self._table(resource)
        column = _CACHE_COLUMNS[resource]
        row = self.store.db.execute(
            f"SELECT {column} FROM {table} WHERE id = ?", (resource_id,)
        ).fetchone()
        if row is None:
            kind = "Group" if resource == "Group" else "User"
            raise NotFoundError(f"No {kind} with id [{resource_id}] exists.")
        if row[0] is not None:
            return row[0]
        rendered = self._fill(resource, [resource_id])
        if resource_id not in rendered:
            raise NotFoundError(f"No {resource} with id [{resource_id}] exists.")
        return rendered[resource_id]

    def get(self, resource: str, resource_id: str) -> dict[str, Any]:
        """Return one resource as its response lambda renders it (GET by id)."""
        return json.loads(self.get_json(resource, resource_id))

    def version(self, resource: str, resource_id: str) -> int:
        """Return the row version of a resource."""
        table, _ = self._table(resource)
        row = self.store.db.execute(
            f"SELECT version FROM {table} WHERE id = ?", (resource_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"No {resource} with id [{resource_id}] exists.")
        return int(row[0])

    def search(
        self,
        resource: str,
        query: Query | None,
        start_index: int,
        count: int | None,
    ) -> tuple[int, list[str]]:
        """Return the number of matches and one page of their JSON texts.

        Resources come in insertion order (insertInstant, then id). ``start_index``
        is 1-based; ``count`` None means every match.
        """
        table, _ = self._table(resource)
        column = _CACHE_COLUMNS[resource]
        db = self.store.db
        offset = max(start_index, 1) - 1
        limit = -1 if count is None else max(count, 0)

        if query is not None and query.sql is None:
            return self._search_by_evaluation(resource, query, offset, limit)

        where, params = "", []
        if query is not None:
            where, params = f" WHERE {query.sql}", list(query.params)
        if query is not None and query.single:
            # FusionAuth answers a bare userName eq with one user at most; the
            # user whose username matches wins over one whose email matches.
            rows = db.execute(
                f"SELECT id, {column} FROM {table}{where} ORDER BY"
                " username_lower = ? DESC, insert_instant, id LIMIT 1",
                [*params, str(query.ast.value).lower()],  # type: ignore[attr-defined]
            ).fetchall()
            total = len(rows)
            rows = rows[offset:] if limit < 0 else rows[offset : offset + limit]
        else:
            total = db.execute(f"SELECT count(*) FROM {table}{where}", params)
            total = total.fetchone()[0]
            rows = db.execute(
                f"SELECT id, {column} FROM {table}{where}"
                " ORDER BY insert_instant, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()

        missing = [row[0] for row in rows if row[1] is None]
        filled = self._fill(resource, missing) if missing else {}
        page = [row[1] if row[1] is not None else filled.get(row[0]) for row in rows]
        return total, [doc for doc in page if doc is not None]

    def _search_by_evaluation(
        self, resource: str, query: Query, offset: int, limit: int
    ) -> tuple[int, list[str]]:
        table, _ = self._table(resource)
        column = _CACHE_COLUMNS[resource]
        rows = self.store.db.execute(
            f"SELECT id, {column} FROM {table} ORDER BY insert_instant, id"
        ).fetchall()
        missing = [row[0] for row in rows if row[1] is None]
        filled = self._fill(resource, missing) if missing else {}

        matches = []
        for row_id, cached in rows:
            text = cached if cached is not None else filled.get(row_id)
            if text is not None and query.matches(json.loads(text)):
                matches.append(text)
        if query.single:
            matches = matches[:1]
        page = matches[offset:] if limit < 0 else matches[offset : offset + limit]
        return len(matches), page

    def counts(self) -> dict[str, int]:
        """Return how many users, groups and memberships the tenant holds."""
        db = self.store.db
        return {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("users", "groups", "memberships")
        }


class TenantStorage(ScimStorage):
    """Expose a :class:`Tenant` as a scim2-server storage (User, EnterpriseUser, Group).

    Writes go through the request lambdas and reads through the response lambdas,
    as over HTTP. Filters and sorting here use scim2-models' evaluator on the
    rendered resources (RFC semantics); FusionAuth's filter subset lives in the
    HTTP app. ``meta.version`` is the row version; ``meta.location`` is left
    to the server, as the storage contract asks.

    Parameters
    ----------
    tenant
        The tenant to expose.
    provider
        Describes the models to return; scim2-server's defaults when None.
    """

    supports_cursors = False

    def __init__(self, tenant: Tenant, provider: ScimProvider | None = None) -> None:
        self.tenant = tenant
        self.provider = provider or load_default_provider()

    @staticmethod
    def _resource(resource_type: ResourceType) -> str:
        name = resource_type.id or resource_type.name
        if name not in ("User", "EnterpriseUser", "Group"):
            raise NotImplementedException(detail=f"No storage for {name}")
        return name

    def _model(self, resource_type: ResourceType, doc: dict[str, Any]) -> Any:
        resource = self._resource(resource_type)
        doc = dict(doc)
        meta = dict(doc.get("meta") or {})
        meta.pop("location", None)
        meta["resourceType"] = resource_type.name
        meta["version"] = f'W/"{self.tenant.version(resource, doc["id"])}"'
        doc["meta"] = meta
        model = self.provider.model_for(resource_type)
        return model.model_validate(doc)  # type: ignore[union-attr]

    @staticmethod
    def _dump(resource: Resource[Any]) -> dict[str, Any]:
        return resource.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except NotFoundError as exc:
            raise NotFoundException(detail=exc.detail) from exc
        except ConflictError as exc:
            raise UniquenessException(detail=exc.detail) from exc

    def _check_version(
        self, resource: str, resource_id: str, expected_version: str | None
    ) -> None:
        if expected_version is None:
            return
        if f'W/"{self.tenant.version(resource, resource_id)}"' != expected_version:
            raise PreconditionFailedException(
                detail=f"{resource} {resource_id} has changed"
            )

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        """Return one resource, rendered by its response lambda."""
        with self._errors():
            doc = self.tenant.get(self._resource(resource_type), resource_id)
            return self._model(resource_type, doc)

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """Filter, sort and page the resources of ``resource_types``."""
        resources: list[Any] = []
        for resource_type in resource_types:
            resource = self._resource(resource_type)
            _, texts = self.tenant.search(resource, None, 1, None)
            resources.extend(self._model(resource_type, json.loads(t)) for t in texts)

        if search_request.filter is not None:
            resources = [r for r in resources if search_request.filter.match(r)]
        if search_request.sort_by is not None:
            resources = search_request.sort(resources)
        start = search_request.start_index_0 or 0
        stop = search_request.stop_index_0
        return SearchPage(total=len(resources), resources=resources[start:stop])

    def create(
        self, resource_type: ResourceType, resource: Resource[Any]
    ) -> Resource[Any]:
        """Create a resource through its request lambda."""
        with self._errors():
            doc = self.tenant.create(
                self._resource(resource_type), self._dump(resource)
            )
            return self._model(resource_type, doc)

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        """Replace a resource through its request lambda."""
        name = self._resource(resource_type)
        with self._errors():
            with self.tenant.store.write_lock:
                self._check_version(name, str(resource.id), expected_version)
                doc = self.tenant.replace(name, str(resource.id), self._dump(resource))
            return self._model(resource_type, doc)

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Delete a resource."""
        name = self._resource(resource_type)
        with self._errors(), self.tenant.store.write_lock:
            self._check_version(name, resource_id, expected_version)
            self.tenant.delete(name, resource_id)
