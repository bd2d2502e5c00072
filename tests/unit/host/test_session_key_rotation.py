"""A session key rotation re-keys both queue files and is crash-safe: cut short at any
step, the next start finishes it, and every row is still there under the new key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import MessageId, new_session_id
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.queue import InboundWriter, OutboundWriter
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.contract.schema import INBOUND_DDL, OUTBOUND_DDL
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.sessions import rekey
from ironclaw.host.sessions.key_rotation import (
    RotationFailed,
    SessionKeyRotator,
    rekey_session_files,
)

ROW = MessageId("in_kept_across_rotation")


class Crash(Exception):
    pass


def open_keys(state: Path) -> KeyStore:
    return KeyStore.open(state, FileMasterKeySource.in_state_dir(state))


def make_session(state: Path) -> tuple[str, SessionKeys]:
    sid = new_session_id()
    with open_keys(state) as keys:
        secret = keys.ensure_session(sid)
    queues = SessionLayout.under(state, sid).create()
    session_keys = SessionKeys.from_secret(secret)
    with InboundWriter(queues.inbound_db, session_keys.inbound) as writer:
        writer.enqueue_many([NewInboundMessage(ROW, MessageKind.CHAT, "hello")])
    OutboundWriter(queues.outbound_db, session_keys.outbound).close()
    return sid, session_keys


def assert_under(state: Path, sid: str, keys: SessionKeys) -> None:
    queues = SessionLayout.under(state, sid).queues
    assert rekey.opens_under(queues.inbound_db, keys.inbound, INBOUND_DDL)
    assert rekey.opens_under(queues.outbound_db, keys.outbound, OUTBOUND_DDL)
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        assert ROW in writer.statuses([ROW])


def rotator(state: Path, keys: KeyStore, rekey_files: Any = rekey_session_files
            ) -> SessionKeyRotator:
    deps = cast(Any, SimpleNamespace(state_dir=state))
    return SessionKeyRotator(deps=deps, sessions=cast(Any, None), custody=keys,
                             rekey_files=rekey_files)


async def test_a_rotation_re_keys_both_files_and_forgets_the_old_key(tmp_path: Path) -> None:
    sid, before = make_session(tmp_path)
    with open_keys(tmp_path) as keys:
        old, new = keys.stage_session_rotation(sid)
        assert keys.stage_session_rotation(sid) == (old, new)  # staging is idempotent
        await rotator(tmp_path, keys)._settle(sid, old, new)
        after = SessionKeys.from_secret(keys.get_session(sid))
        assert keys.staged_rotations() == {}
    assert after.secret() == new and after.secret() != before.secret()
    assert_under(tmp_path, sid, after)
    queues = SessionLayout.under(tmp_path, sid).queues
    assert not rekey.opens_under(queues.inbound_db, before.inbound, INBOUND_DDL)
    assert not rekey.opens_under(queues.outbound_db, before.outbound, OUTBOUND_DDL)
    assert not list(SessionLayout.under(tmp_path, sid).root.glob(".rekey-*"))


def _inbound_only(deps: Any, sid: str, old: bytes, new: bytes) -> None:
    layout = SessionLayout.under(deps.state_dir, sid)
    was, now = SessionKeys.from_secret(old), SessionKeys.from_secret(new)
    rekey.rekey_queue_file(layout.queues.inbound_db, layout.root, was.inbound, now.inbound,
                           INBOUND_DDL)
    raise Crash("after the inbound file")


def _both_then_crash(deps: Any, sid: str, old: bytes, new: bytes) -> None:
    rekey_session_files(deps, sid, old, new)
    raise Crash("after both files, before the commit")


def _crash_before_any(deps: Any, sid: str, old: bytes, new: bytes) -> None:
    raise Crash("before any file")


def _crash_mid_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> None:
        raise Crash("between the copy and the swap")
    monkeypatch.setattr(rekey, "_take_place_of", fail)


@pytest.mark.parametrize("step", ["before any file", "after inbound", "mid swap",
                                  "after both, before commit"])
async def test_a_rotation_cut_short_at_any_step_is_finished_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    sid, before = make_session(tmp_path)
    rekey_files: Any = {"before any file": _crash_before_any,
                        "after inbound": _inbound_only,
                        "after both, before commit": _both_then_crash,
                        "mid swap": rekey_session_files}[step]
    with monkeypatch.context() as patch:
        if step == "mid swap":
            _crash_mid_swap(patch)
        with open_keys(tmp_path) as keys:
            old, new = keys.stage_session_rotation(sid)
            with pytest.raises(Crash):
                await rotator(tmp_path, keys, rekey_files)._settle(sid, old, new)
    # The next start: a fresh key store from disk, then recovery before any session.
    with open_keys(tmp_path) as keys:
        assert set(keys.staged_rotations()) == {sid}
        assert await rotator(tmp_path, keys).recover() == [sid]
        current = keys.get_session(sid)
        assert keys.staged_rotations() == {}
    assert current == new != before.secret()
    assert_under(tmp_path, sid, SessionKeys.from_secret(current))
    assert not list(SessionLayout.under(tmp_path, sid).root.glob(".rekey-*"))


async def test_a_file_under_neither_key_fails_the_rotation_and_keeps_the_old_key(
        tmp_path: Path) -> None:
    sid, before = make_session(tmp_path)
    outbound = SessionLayout.under(tmp_path, sid).queues.outbound_db
    outbound.write_bytes(b"garbage the agent wrote" * 100)
    with open_keys(tmp_path) as keys:
        old, new = keys.stage_session_rotation(sid)
        with pytest.raises(RotationFailed):
            await rotator(tmp_path, keys)._settle(sid, old, new)
        assert keys.get_session(sid) == before.secret()
        assert keys.staged_rotations() == {}
    queues = SessionLayout.under(tmp_path, sid).queues
    assert rekey.opens_under(queues.inbound_db, before.inbound, INBOUND_DDL)


async def test_a_link_where_the_outbound_file_was_is_refused_not_followed(
        tmp_path: Path) -> None:
    sid, before = make_session(tmp_path)
    outbound = SessionLayout.under(tmp_path, sid).queues.outbound_db
    target = tmp_path / "host-secret.db"
    outbound.rename(target)
    outbound.symlink_to(target)
    original = target.read_bytes()
    with open_keys(tmp_path) as keys:
        old, new = keys.stage_session_rotation(sid)
        with pytest.raises(RotationFailed):
            await rotator(tmp_path, keys)._settle(sid, old, new)
        assert keys.get_session(sid) == before.secret()
    assert target.read_bytes() == original  # never followed, never written
    assert outbound.is_symlink()


async def test_a_swap_the_host_may_not_make_fails_the_rotation_and_rolls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sid, before = make_session(tmp_path)
    real = rekey._take_place_of

    def refuse_outbound(scratch: Path, db_path: Path) -> None:
        if db_path.name == "outbound.db":
            raise PermissionError("chown refused")
        real(scratch, db_path)

    monkeypatch.setattr(rekey, "_take_place_of", refuse_outbound)
    with open_keys(tmp_path) as keys:
        old, new = keys.stage_session_rotation(sid)
        with pytest.raises(RotationFailed, match="chown refused"):
            await rotator(tmp_path, keys)._settle(sid, old, new)
        assert keys.get_session(sid) == before.secret()
        assert keys.staged_rotations() == {}
    monkeypatch.setattr(rekey, "_take_place_of", real)
    assert_under(tmp_path, sid, before)  # the inbound file was put back


async def test_a_folder_the_agent_named_like_a_scratch_copy_does_not_stop_recovery(
        tmp_path: Path) -> None:
    """The outbound folder is the agent's: what it plants under the scratch prefix (a
    folder here) is left, and the rotation a crash cut short is still finished."""
    sid, _before = make_session(tmp_path)
    planted = SessionLayout.under(tmp_path, sid).queues.outbound_dir / ".rekey-planted"
    planted.mkdir()
    (planted / "inside").write_bytes(b"x")
    with open_keys(tmp_path) as keys:
        old, new = keys.stage_session_rotation(sid)
        with pytest.raises(Crash):
            await rotator(tmp_path, keys, _crash_before_any)._settle(sid, old, new)
    with open_keys(tmp_path) as keys:
        assert await rotator(tmp_path, keys).recover() == [sid]
        assert keys.get_session(sid) == new
    assert (planted / "inside").read_bytes() == b"x"


def test_the_connection_that_re_keys_is_hardened_like_a_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent holds its outbound key and can craft a file that passes the schema
    check; the connection that rewrites it runs under the reader's limits and flags."""
    sid, before = make_session(tmp_path)
    hardened: list[Path] = []
    real = rekey.harden

    def spy(conn: Any, path: Path) -> None:
        hardened.append(path)
        real(conn, path)

    monkeypatch.setattr(rekey, "harden", spy)
    layout = SessionLayout.under(tmp_path, sid)
    after = SessionKeys.from_secret(bytes(range(64)))
    assert rekey.rekey_queue_file(layout.queues.outbound_db, layout.root, before.outbound,
                                  after.outbound, OUTBOUND_DDL) is rekey.Rekeyed.NOW
    assert [p.name[:len(rekey.SCRATCH_PREFIX)] for p in hardened] == [rekey.SCRATCH_PREFIX]
