"""Deleting a session whose agent ran in a real gVisor sandbox on a capped disk
volume: its outbound bind is released and its files go (written by the sandbox's uid),
its key goes, nothing of it stays mounted, and the chat's next message starts a new
sandbox that answers.

``long`` (about 20 s of a plane under runsc): the volume mechanics it relies on are in
the default suite (tests/unit/isolation/test_volumes.py, on a real volume), and the
deletion itself under the process runtime (tests/e2e/test_api_session_delete.py).
Run it with ``pytest -m long tests/sandbox/test_session_delete_oci.py``."""

from __future__ import annotations

import os

import pytest
import trio

from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.isolation.volumes import leftover_volumes
from ironclaw.host.keys import FileMasterKeySource, KeyStore

from .test_oci_plane import RUNTIMES, ask, plane  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")


@pytest.mark.long
@pytest.mark.parametrize("plane", RUNTIMES[:1], indirect=True)
async def test_a_deleted_session_leaves_no_mount_file_or_key(
        plane: ControlPlaneHandles) -> None:  # noqa: F811
    assert await ask(plane, "hello") == "echo: hello"
    (session,) = await plane.registry.list_sessions()
    state = plane.config.state_dir
    outbound = state / "sessions" / session.id / "outbound"
    assert await trio.to_thread.run_sync(os.path.ismount, outbound)
    assert await trio.to_thread.run_sync(lambda: any(outbound.iterdir()))  # its queue

    deleted = await plane.session_deleter.delete(session.id, by="operator", workspace=True)
    assert deleted.workspace
    assert not (state / "sessions" / session.id).exists()
    assert not any(session.id in entry for entry in leftover_volumes(state))
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as keys:
        assert session.id not in keys.session_ids()

    assert await ask(plane, "again") == "echo: again"
    (fresh,) = await plane.registry.list_sessions()
    assert fresh.id != session.id
