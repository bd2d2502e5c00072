"""A session key rotation under real OCI sandboxes: the agent's outbound file, written
inside the sandbox under the runtime's user mapping, is re-keyed and swapped in with
its owner kept, and the agent that starts again writes to it under the new key."""

from __future__ import annotations

import os

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.schema import OUTBOUND_DDL
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.sessions.rekey import opens_under

from .test_oci_plane import RUNTIMES, ask, plane  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")


def keys_of(handles: ControlPlaneHandles, session_id: str) -> SessionKeys:
    state = handles.config.state_dir
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as view:
        return SessionKeys.from_secret(view.get_session(session_id))


# runsc in the default suite (production's runtime, and the one whose volumes made
# the swap cross file systems); runc in the long form.
@pytest.mark.parametrize("plane", [RUNTIMES[0], pytest.param(
    RuntimeKind.RUNC, marks=(pytest.mark.runc, pytest.mark.long), id="runc")],
    indirect=True)
async def test_a_live_sandboxed_session_gets_new_keys_and_talks_on(
        plane: ControlPlaneHandles) -> None:  # noqa: F811 (the imported fixture)
    assert await ask(plane, "hello") == "echo: hello"
    (session,) = await plane.registry.list_sessions()
    outbound = SessionLayout.under(plane.config.state_dir, session.id).queues.outbound_db
    owner = os.lstat(outbound).st_uid, os.lstat(outbound).st_mode
    before = keys_of(plane, session.id)
    await plane.session_keys.rotate(session.id, by="test")
    after = keys_of(plane, session.id)
    assert (os.lstat(outbound).st_uid, os.lstat(outbound).st_mode) == owner
    assert opens_under(outbound, after.outbound, OUTBOUND_DDL)
    assert not opens_under(outbound, before.outbound, OUTBOUND_DDL)
    assert await ask(plane, "again") == "echo: again"  # the new agent writes under it
    assert opens_under(outbound, after.outbound, OUTBOUND_DDL)
