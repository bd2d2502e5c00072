"""API principals: tokens kept only as keyed hashes, checked in constant time, with
roles; bootstrap of the first owner, minted or from IRONCLAW_API_TOKEN."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.host.api import PrincipalError, PrincipalRevoked, Principals, bootstrap_owner
from ironclaw.host.api import principals as principals_module
from ironclaw.host.api.principals import token_hash
from ironclaw.host.store import HostStore, open_host_store

KEY = secrets.token_bytes(32)
STORE_KEY = secrets.token_bytes(32)


class RecordingAudit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    async def append(self, kind: str, /, **fields: Any) -> int:
        self.entries.append((kind, fields))
        return len(self.entries)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HostStore]:
    async with open_host_store(tmp_path / "host.db", STORE_KEY) as opened:
        yield opened


def rows(conn: Any) -> list[tuple[Any, ...]]:
    return list(conn.execute("SELECT * FROM principals ORDER BY name"))


async def test_tokens_are_kept_only_as_keyed_hashes(store: HostStore) -> None:
    principals = Principals(store, KEY)
    token = await principals.create("alice", {"approver"})
    stored = await store.call(rows)
    assert len(stored) == 1
    assert all(token not in str(value) for value in stored[0])
    assert stored[0][2] == hmac.new(KEY, token.encode(), "sha256").hexdigest()
    who = await principals.authenticate(token)
    assert who is not None and who.name == "alice" and who.roles == {"approver"}
    # The same token under another key (another installation) is nobody.
    assert await Principals(store, secrets.token_bytes(32)).authenticate(token) is None
    assert await principals.authenticate(token + "x") is None


async def test_the_hash_comparison_is_constant_time(store: HostStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    principals = Principals(store, KEY)
    token = await principals.create("alice", {"viewer"})
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(principals_module, "hmac",
                        SimpleNamespace(compare_digest=spy, new=hmac.new))
    assert await principals.authenticate(token) is not None
    assert calls == [(token_hash(KEY, token), token_hash(KEY, token))]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(garbage=st.one_of(st.text(max_size=300), st.none(), st.integers(),
                         st.binary(max_size=40)))
async def test_garbage_never_authenticates_and_never_raises(store: HostStore,
                                                            garbage: Any) -> None:
    principals = Principals(store, KEY)
    assert await principals.authenticate(garbage) is None


async def test_revoking_locks_a_principal_out_at_once(store: HostStore) -> None:
    audit = RecordingAudit()
    principals = Principals(store, KEY, audit=audit)  # type: ignore[arg-type]
    token = await principals.create("bob", {"admin"})
    assert await principals.authenticate(token) is not None
    assert await principals.revoke("bob")
    assert await principals.authenticate(token) is None
    assert not await principals.revoke("bob")
    assert [kind for kind, _ in audit.entries] == ["api.principal_created",
                                                   "api.principal_revoked"]
    assert audit.entries[0][1] == {"principal": "bob", "roles": "admin"}
    listed = await principals.list()
    assert listed[0]["name"] == "bob" and listed[0]["revoked_at"] is not None


async def test_names_and_roles_are_checked(store: HostStore) -> None:
    principals = Principals(store, KEY)
    await principals.create("carol", {"viewer"})
    for name, roles in (("carol", {"viewer"}), ("system", {"owner"}), ("verifier", {"admin"}),
                        ("bad name", {"viewer"}), ("dave", {"superuser"}), ("erin", set())):
        with pytest.raises(PrincipalError):
            await principals.create(name, roles)
    with pytest.raises(PrincipalError):
        await principals.create("frank", {"viewer"}, token="short")
    with pytest.raises(ValueError):
        Principals(store, b"too short")


async def test_bootstrap_mints_one_owner_token_once(store: HostStore) -> None:
    principals = Principals(store, KEY)
    minted = await bootstrap_owner(principals)
    assert minted is not None and minted.startswith("icw_")
    who = await principals.authenticate(minted)
    assert who is not None and (who.name, who.roles) == ("owner", frozenset({"owner"}))
    assert await bootstrap_owner(principals) is None  # never printed twice
    assert await principals.authenticate(minted) is not None


async def test_the_environment_token_becomes_the_owners(store: HostStore) -> None:
    audit = RecordingAudit()
    principals = Principals(store, KEY, audit=audit)  # type: ignore[arg-type]
    minted = await bootstrap_owner(principals)
    assert minted is not None
    chosen = "dev-token-" + secrets.token_hex(8)
    assert await bootstrap_owner(principals, env_token=chosen) is None
    who = await principals.authenticate(chosen)
    assert who is not None and who.name == "owner" and who.roles == {"owner"}
    assert await principals.authenticate(minted) is None  # the old owner token is gone
    count = len(audit.entries)
    assert await bootstrap_owner(principals, env_token=chosen) is None
    assert len(audit.entries) == count  # the same token again changes (and audits) nothing
    with pytest.raises(PrincipalError):
        await bootstrap_owner(principals, env_token="has spaces in it, no")
    # A token that is someone else's cannot be claimed for the owner.
    taken = await principals.create("grace", {"viewer"})
    with pytest.raises(PrincipalError):
        await bootstrap_owner(principals, env_token=taken)


async def test_a_revoked_owner_stays_revoked_whatever_the_environment_says(
        store: HostStore, caplog: pytest.LogCaptureFixture) -> None:
    audit = RecordingAudit()
    principals = Principals(store, KEY, audit=audit)  # type: ignore[arg-type]
    chosen = "env-owner-token-" + secrets.token_hex(8)
    assert await bootstrap_owner(principals, env_token=chosen) is None
    admin = await principals.create("ada", {"admin"})
    assert await principals.revoke("owner")
    # Every restart with the same IRONCLAW_API_TOKEN: the owner is not re-keyed, not
    # re-activated, and the refusal says why, in the log and the audit.
    for _ in range(2):
        assert await bootstrap_owner(principals, env_token=chosen) is None
        assert await principals.authenticate(chosen) is None
        (owner,) = [p for p in await principals.list() if p["name"] == "owner"]
        assert owner["revoked_at"] is not None
    assert "IRONCLAW_API_TOKEN is refused" in caplog.text and "revoked" in caplog.text
    refusals = [f for kind, f in audit.entries if kind == "api.env_token_refused"]
    assert len(refusals) == 2 and refusals[0]["principal"] == "owner"
    assert chosen not in caplog.text and all(chosen not in str(f) for f in refusals)
    assert await principals.authenticate(admin) is not None  # nobody else is touched
    # Neither does create() bring a revoked name back, with or without a token.
    with pytest.raises(PrincipalRevoked):
        await principals.create("owner", {"owner"}, token=chosen, replace=True)
    with pytest.raises(PrincipalRevoked):
        await principals.create("owner", {"viewer"})
    assert await principals.authenticate(chosen) is None


async def test_with_everyone_revoked_the_bootstrap_mints_a_new_owner_name(
        store: HostStore) -> None:
    principals = Principals(store, KEY)
    first = await bootstrap_owner(principals)
    assert first is not None
    assert await principals.revoke("owner")
    minted = await bootstrap_owner(principals, env_token="env-owner-token-" + "x" * 12)
    assert minted is not None  # the env token is refused, so a fresh one is printed
    who = await principals.authenticate(minted)
    assert who is not None and who.name == "owner-2" and who.roles == {"owner"}
    assert await principals.authenticate(first) is None
    assert await principals.revoke("owner-2")
    third = await bootstrap_owner(principals)
    assert third is not None
    assert (await principals.authenticate(third)).name == "owner-3"  # type: ignore[union-attr]
