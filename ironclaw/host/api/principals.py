"""Principals: who a bearer token stands for, and what roles it carries.

A token is never stored. host.db's ``principals`` table keeps
``HMAC-SHA256(api-token-hash sub-key, token)``; authenticating hashes the presented
token, looks the hash up, and compares the stored hash with ``hmac.compare_digest``.
The sub-key is derived from the sealed root secret, so rotating the master key
leaves every token valid.

Active principals are cached in memory (a request must not queue on host.db's one
thread just to be let in). The cache reloads every few seconds, so a principal
revoked by another process loses access within ``REFRESH_S``; one revoked through
this object loses it at once.

Bootstrap (:func:`bootstrap_owner`): a fresh control plane has no principal, so the
first run mints an owner token and returns it for the daemon to print, once. With
``IRONCLAW_API_TOKEN`` set, that value is the owner's token instead (and nothing is
printed, the operator already has it).

Revocation is for good: a revoked principal keeps its row (its past decisions still
name it) and its name is never re-keyed or re-activated, neither by :meth:`create` nor
by the bootstrap. A revoked ``owner`` makes the daemon refuse ``IRONCLAW_API_TOKEN``
(logged and audited with the reason) instead of bringing the owner back; if no active
principal is left, the bootstrap mints a new owner under a fresh name.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import logging
import re
import secrets
from typing import Any

import trio

from ironclaw.contract.clock import now_us
from ironclaw.contract.jsonvalue import canonical_json, parse_json
from ironclaw.host.audit import AuditLog
from ironclaw.host.gateway import Principal
from ironclaw.host.store import HostStore

log = logging.getLogger(__name__)

ENV_TOKEN = "IRONCLAW_API_TOKEN"
BOOTSTRAP_OWNER = "owner"
TOKEN_PREFIX = "icw_"
# Token characters are RFC 7230 ``tchar``s, so a token also fits in a
# ``Sec-WebSocket-Protocol`` value (``bearer.<token>``).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+-]{16,256}")
REFRESH_S = 5.0
MISS_REFRESH_S = 1.0
KEY_BYTES = 32
MAX_AUDITED_SCOPE_CHARS = 256  # one audit field holds an id list up to this long


class PrincipalError(ValueError):
    """A name, role set or token that cannot be used."""


class PrincipalRevoked(PrincipalError):
    """The name belongs to a revoked principal, which stays revoked."""

    def __init__(self, name: str, revoked_at: int) -> None:
        when = datetime.datetime.fromtimestamp(revoked_at / 1e6, datetime.UTC)
        super().__init__(f"principal {name!r} was revoked at {when:%Y-%m-%d %H:%M:%S} UTC "
                         "and stays revoked")
        self.name = name
        self.revoked_at = revoked_at


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_token_shape(token: str) -> str:
    if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
        raise PrincipalError("a token is 16-256 characters of A-Z a-z 0-9 . _ ~ + -")
    return token


def _principal(name: str, roles: object, scope: object = None) -> Principal:
    try:
        return Principal(name, frozenset(roles if isinstance(roles, list) else ()),
                         agent_groups=None if scope is None else
                         frozenset(scope if isinstance(scope, list) else ()))
    except ValueError as exc:
        raise PrincipalError(str(exc)) from None


def _scope_json(principal: Principal) -> str | None:
    groups = principal.agent_groups
    return None if groups is None else canonical_json(sorted(groups))


def _scope_fields(groups: frozenset[str]) -> dict[str, str | int]:
    """For the audit entry: the groups' ids when they fit in one field, and always
    how many there are."""
    names = ",".join(sorted(groups))
    fields: dict[str, str | int] = {"agent_groups_count": len(groups)}
    if len(names) <= MAX_AUDITED_SCOPE_CHARS:
        fields["agent_groups"] = names
    return fields


def _parse_scope(text: str | None) -> object:
    return None if text is None else parse_json(text, max_bytes=8192)


def _by(name: str | None) -> dict[str, str]:
    return {} if name is None else {"by": name}


# Store-thread functions (conn first).

def _active(conn: Any) -> list[tuple[str, str, str, str | None]]:
    return list(conn.execute("SELECT name, roles, token_hash, agent_groups FROM principals "
                             "WHERE revoked_at IS NULL"))


def _listing(conn: Any) -> list[tuple[str, str, int, int | None, str | None]]:
    return list(conn.execute("SELECT name, roles, created_at, revoked_at, agent_groups "
                             "FROM principals ORDER BY name"))


def _put(conn: Any, name: str, roles: str, digest: str, at: int, replace: bool,
         scope: str | None = None) -> bool:
    """Insert (or, with ``replace``, re-key) a principal. A revoked one is refused."""
    row = conn.execute("SELECT revoked_at, roles, token_hash, agent_groups FROM principals "
                       "WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] is not None:
        raise PrincipalRevoked(name, int(row[0]))
    if row is not None and (row[1], row[2], row[3]) == (roles, digest, scope):
        return False  # already exactly so
    clash = conn.execute("SELECT name FROM principals WHERE token_hash = ? AND name != ?",
                         (digest, name)).fetchone()
    if clash is not None:
        raise PrincipalError("that token already belongs to another principal")
    if row is None:
        conn.execute("INSERT INTO principals (name, roles, token_hash, created_at, "
                     "agent_groups) VALUES (?, ?, ?, ?, ?)",
                     (name, roles, digest, at, scope))
        return True
    if not replace:
        raise PrincipalError(f"principal {name!r} already exists")
    conn.execute("UPDATE principals SET roles = ?, token_hash = ?, created_at = ?, "
                 "agent_groups = ? WHERE name = ? AND revoked_at IS NULL",
                 (roles, digest, at, scope, name))
    return True


def _taken_names(conn: Any) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM principals")}


def _revoke(conn: Any, name: str, at: int) -> bool:
    return bool(conn.execute("UPDATE principals SET revoked_at = ? WHERE name = ? "
                             "AND revoked_at IS NULL", (at, name)).rowcount)


def _rekey(conn: Any, name: str, digest: str) -> bool:
    return bool(conn.execute("UPDATE principals SET token_hash = ? "
                             "WHERE name = ? AND revoked_at IS NULL",
                             (digest, name)).rowcount)


def _count_active(conn: Any) -> int:
    return int(conn.execute(
        "SELECT count(*) FROM principals WHERE revoked_at IS NULL").fetchone()[0])


class Principals:
    """Create, revoke and authenticate principals against host.db."""

    def __init__(self, store: HostStore, key: bytes, *, audit: AuditLog | None = None
                 ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the token-hash key is 32 bytes")
        self._store = store
        self._key = key
        self._audit = audit
        self._cache: dict[str, tuple[str, Principal]] = {}
        self._loaded_at: float | None = None
        self._lock = trio.Lock()

    async def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` stands for, or None. Never raises on bad input."""
        if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
            return None
        digest = token_hash(self._key, token)
        now = trio.current_time()
        if self._loaded_at is None or now - self._loaded_at > REFRESH_S:
            await self._reload()
        found = self._cache.get(digest)
        if found is None and self._loaded_at is not None \
                and trio.current_time() - self._loaded_at > MISS_REFRESH_S:
            await self._reload()
            found = self._cache.get(digest)
        if found is None:
            return None
        stored, principal = found
        return principal if hmac.compare_digest(stored, digest) else None

    async def _reload(self) -> None:
        asked_at = trio.current_time()
        async with self._lock:
            if self._loaded_at is not None and self._loaded_at >= asked_at:
                return  # another request reloaded while this one waited
            rows = await self._store.call(_active)
            cache: dict[str, tuple[str, Principal]] = {}
            for name, roles, digest, scope in rows:
                try:
                    principal = _principal(name, parse_json(roles, max_bytes=1024),
                                           _parse_scope(scope))
                except (PrincipalError, ValueError):
                    log.warning("principal %r has unusable roles; ignored", name)
                    continue
                cache[digest] = (digest, principal)
            self._cache = cache
            self._loaded_at = trio.current_time()

    def _invalidate(self) -> None:
        self._loaded_at = None

    async def create(self, name: str, roles: frozenset[str] | set[str], *,
                     token: str | None = None, replace: bool = False,
                     by: str | None = None,
                     agent_groups: frozenset[str] | set[str] | None = None) -> str:
        """Create a principal; returns its token (minted unless given). With
        ``replace``, an existing principal of that name gets the new token and roles.
        ``by`` names the principal who asked (recorded in the audit entry);
        ``agent_groups`` scopes it (None: every group)."""
        principal = _principal(name, sorted(roles),
                               None if agent_groups is None else sorted(agent_groups))
        if not principal.roles:
            raise PrincipalError("a principal needs at least one role")
        secret = new_token() if token is None else check_token_shape(token)
        changed = await self._store.transaction(
            _put, principal.name, canonical_json(sorted(principal.roles)),
            token_hash(self._key, secret), now_us(), replace, _scope_json(principal))
        self._invalidate()
        if changed and self._audit is not None:
            scope = {} if principal.agent_groups is None else _scope_fields(
                principal.agent_groups)
            await self._audit.append("api.principal_created", principal=principal.name,
                                     roles=",".join(sorted(principal.roles)),
                                     **scope, **_by(by))
        return secret

    async def revoke(self, name: str, *, by: str | None = None) -> bool:
        revoked = await self._store.transaction(_revoke, name, now_us())
        self._invalidate()
        if revoked and self._audit is not None:
            await self._audit.append("api.principal_revoked", principal=name, **_by(by))
        return revoked

    async def rotate(self, name: str, *, by: str | None = None) -> str | None:
        """Give an active principal a fresh token (its roles unchanged; the old token
        stops working at once). Returns the new token, or None if there is no active
        principal of that name."""
        secret = new_token()
        rotated = await self._store.transaction(
            _rekey, name, token_hash(self._key, secret))
        self._invalidate()
        if not rotated:
            return None
        if self._audit is not None:
            await self._audit.append("api.principal_rotated", principal=name, **_by(by))
        return secret

    async def get(self, name: str) -> dict[str, object] | None:
        return next((row for row in await self.list() if row["name"] == name), None)

    async def list(self) -> list[dict[str, object]]:
        return [{"name": name, "roles": parse_json(roles, max_bytes=1024),
                 "agent_groups": _parse_scope(scope),
                 "created_at": created, "revoked_at": revoked}
                for name, roles, created, revoked, scope in await self._store.call(_listing)]

    async def active_count(self) -> int:
        return await self._store.call(_count_active)

    async def free_owner_name(self) -> str:
        """``owner``, or when that name is taken (a revoked owner keeps it), the first
        free ``owner-N``."""
        taken = await self._store.call(_taken_names)
        candidates = itertools.chain([BOOTSTRAP_OWNER],
                                     (f"{BOOTSTRAP_OWNER}-{n}" for n in itertools.count(2)))
        return next(name for name in candidates if name not in taken)

    async def record_env_token_refused(self, refusal: PrincipalRevoked) -> None:
        if self._audit is not None:
            await self._audit.append("api.env_token_refused", principal=refusal.name,
                                     reason="revoked", revoked_at=refusal.revoked_at)


async def bootstrap_owner(principals: Principals, *, env_token: str | None = None
                          ) -> str | None:
    """Make sure someone can log in. Returns a freshly minted owner token to print
    once, or None when there is nothing to print.

    * ``env_token`` given (``IRONCLAW_API_TOKEN``): the ``owner`` principal's token is
      that value from now on (created or re-keyed); returns None. If ``owner`` was
      revoked, the token is refused instead (logged and audited with the reason): a
      revoked principal stays revoked.
    * otherwise, if no active principal exists: mints an owner token and returns it,
      for ``owner``, or for the first free ``owner-N`` when ``owner`` was revoked.
    * otherwise: None.
    """
    if env_token:
        try:
            await principals.create(BOOTSTRAP_OWNER, {"owner"}, token=env_token,
                                    replace=True)
            return None
        except PrincipalRevoked as exc:
            log.error("%s is refused: %s. Unset it and log in with another owner's "
                      "token (or, with no active principal left, the new owner token "
                      "printed below)", ENV_TOKEN, exc)
            await principals.record_env_token_refused(exc)
    if await principals.active_count() > 0:
        return None
    name = await principals.free_owner_name()
    return await principals.create(name, {"owner"})
