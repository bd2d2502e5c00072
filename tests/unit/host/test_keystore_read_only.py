"""KeyStore.open_read_only, the backup's view beside a running daemon: the same
sub-keys, no file written, and a refusal when the master on disk is not the one the
store was sealed under."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironclaw.host.keys import FileMasterKeySource, KeyCustodyError, KeyStore, Purpose


def test_the_view_gives_the_same_subkeys_and_writes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with KeyStore.open(state, FileMasterKeySource.in_state_dir(state)) as keys:
        keys.ensure_session("ses_0123456789abcdef")
        expected = keys.subkey(Purpose.HOST_DB)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (state / "keys").iterdir()}
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as view:
        assert view.subkey(Purpose.HOST_DB) == expected
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (state / "keys").iterdir()}
    assert after == before


def test_a_foreign_master_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    KeyStore.open(state, FileMasterKeySource.in_state_dir(state)).close()
    other = tmp_path / "other.key"
    FileMasterKeySource(other).create()
    os.replace(other, state / "keys" / "master.key")
    with pytest.raises(KeyCustodyError, match="sealed under master"):
        KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state))
