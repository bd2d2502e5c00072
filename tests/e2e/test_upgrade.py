"""Upgrades: a state directory written by an earlier version (the archives in
tests/fixtures/upgrade/, made by its make_state_fixture.py) opens with this version.
host.db is migrated forward, the queue files still match the contract, the pending
change is still pending, the conversation goes on, and the audit chain verifies.
Migrations only go forward: a host.db from a newer version is refused."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import trio

from ironclaw.cli.backup import main_restore
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.store.database import StoreError, open_database
from ironclaw.host.store.schema import MIGRATIONS
from tests.support.api import plane_config, retire_sessions

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "upgrade").glob(
    "state-*.tar.gz"))


def _restore(archive: Path, state: Path) -> None:
    assert main_restore(["--from", str(archive), "--state-dir", str(state)]) == 0


def _schema_version(state: Path) -> int:
    with KeyStore.open(state, FileMasterKeySource.in_state_dir(state)) as keys:
        conn = open_database(state / "host.db", keys.subkey(Purpose.HOST_DB))
    try:
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def test_there_is_a_fixture_for_this_version() -> None:
    from ironclaw import __version__

    assert any(path.name == f"state-{__version__}.tar.gz" for path in FIXTURES), (
        "run python -m tests.fixtures.upgrade.make_state_fixture for this version")


@pytest.mark.parametrize("archive", FIXTURES, ids=lambda path: path.name)
async def test_an_earlier_state_directory_opens_and_carries_on(
        archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = plane_config(tmp_path)
    await trio.to_thread.run_sync(_restore, archive, config.state_dir)
    capsys.readouterr()
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(config, credentials=Credentials()).run)
        (pending,) = await handles.gateway.pending()
        assert pending.change.kind.value == "enabled_tools"
        (session,) = await handles.registry.list_sessions()
        mark = handles.local.cursor(DEMO_CONVERSATION)
        assert mark >= 3  # two exchanges came with the fixture
        await handles.local.post(DEMO_CONVERSATION, "alice", "after the upgrade")
        with trio.fail_after(60):
            reply = await handles.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
        assert (reply.text, reply.index) == ("echo: after the upgrade", mark + 2)
        assert [s.id for s in await handles.registry.list_sessions()] == [session.id]
        report = await handles.audit.verify()
        assert report.ok, report.problems
        await retire_sessions(handles)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(_schema_version, config.state_dir) == len(
        MIGRATIONS)


def test_a_host_db_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _restore(FIXTURES[-1], state)
    with KeyStore.open(state, FileMasterKeySource.in_state_dir(state)) as keys:
        key = keys.subkey(Purpose.HOST_DB)
    conn = open_database(state / "host.db", key)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this build knows"):
        open_database(state / "host.db", key)


def test_the_fixtures_hold_their_manifest() -> None:
    for archive in FIXTURES:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("MANIFEST.json")
            assert member is not None
            manifest = json.loads(member.read())
        assert archive.name == f"state-{manifest['ironclaw_version']}.tar.gz"
        assert manifest["includes_master_key"] is True
