"""ironctl end to end, against a live control plane (dev mode, mock model, no provider
keys) with the real API served by hypercorn on a free loopback port:
``chat`` -> ``events`` -> ``change pending`` / ``show`` / ``approve``."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_TOOLS
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from tests.support.ironctl import Result, ironctl
from tests.support.plane import dev_plane_config

TOKEN = "icw_e2e_owner_token_" + "k" * 24
GRANTED = (*DEMO_TOOLS, "read_file")
REQUEST = json.dumps({"kind": "enabled_tools", "payload": {"tools": list(GRANTED)},
                      "reason": "to read notes"})


@attrs.frozen
class Live:
    handles: ControlPlaneHandles
    addr: str

    async def ironctl(self, *argv: str, stdin: str = "", token: str | None = TOKEN
                      ) -> Result:
        return await ironctl(None, "--addr", self.addr, "--timeout", "30", *argv,
                             stdin=stdin, token=token)


def token_key_for(state_dir: Path) -> bytes:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with KeyStore.open(state_dir, FileMasterKeySource.in_state_dir(state_dir)) as keys:
        return keys.subkey(Purpose.API_TOKEN_HASH)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    config = dev_plane_config(tmp_path / "state", tmp_path / "keys")
    token_key = token_key_for(config.state_dir)
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(config, credentials=Credentials()).run)
        principals = Principals(handles.store, token_key, audit=handles.audit)
        assert await bootstrap_owner(principals, env_token=TOKEN) is None
        binds = await nursery.start(functools.partial(
            serve_api, handles, ApiSettings(host="127.0.0.1", port=0), token_key=token_key))
        yield Live(handles, binds[0])
        with trio.move_on_after(30):  # retire sessions before tearing the tree down
            for session_id in handles.sessions.live_ids():
                await handles.sessions.mailbox.send(StopSession(session_id, "test over"))
                await handles.sessions.wait_retired(session_id)
        nursery.cancel_scope.cancel()


async def test_chat_events_then_pending_show_approve(live: Live) -> None:
    with trio.fail_after(240):
        chat = await live.ironctl(
            "chat", "--reply-timeout", "90",
            stdin=f"hello\ntool:request_capability_change {REQUEST}\n")
        assert chat.code == 0, chat
        lines = chat.out.splitlines()
        assert any(line.endswith("> echo: hello") for line in lines), chat.out
        assert len(lines) >= 2
        assert TOKEN not in chat.out + chat.err

        # The agent's request reached the gateway: the event stream shows it.
        events = await live.ironctl("--json", "events", "--since", "0", "--type",
                                    "change.*", "--type", "message.*", "--no-follow")
        assert events.code == 0, events
        frames = events.lines()
        assert frames[0]["type"] == "stream.ready"
        submitted = [f for f in frames if f["type"] == "change.submitted"]
        assert len(submitted) == 1
        change_id = submitted[0]["event"]["change_id"]
        assert submitted[0]["event"]["kind"] == "enabled_tools"
        seqs = [f["seq"] for f in frames if f["seq"] is not None]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        human = await live.ironctl("events", "--since", "0", "--type", "change.submitted",
                                   "--no-follow")
        assert human.code == 0 and f"change_id={change_id}" in human.out

        pending = await live.ironctl("--json", "change", "pending")
        assert pending.code == 0
        (found,) = pending.json()["changes"]
        assert found["id"] == change_id and found["status"] == "pending"
        assert found["requested_by"].startswith("session:")
        table = await live.ironctl("change", "pending")
        assert change_id in table.out and "enabled_tools" in table.out

        shown = await live.ironctl("change", "show", change_id)
        assert shown.code == 0
        diff = shown.out.split("diff:")[1]
        assert f'+ /tools/{len(DEMO_TOOLS)}: "read_file"' in diff
        assert all(line.strip()[:1] in "+-~" for line in diff.splitlines() if line.strip())

        # Watch live while approving: the decision and the apply arrive in order.
        # (Subscribing from the head as it is now means no race with the approval.)
        head = live.handles.events.last_seq
        async with trio.open_nursery() as nursery:
            watched: list[Result] = []

            async def watch() -> None:
                watched.append(await live.ironctl("--json", "events", "--since", str(head),
                                                  "--type", "change.decided,change.applied",
                                                  "--count", "2"))

            nursery.start_soon(watch)
            approved = await live.ironctl("change", "approve", change_id, "--reason", "ok")
            assert approved.code == 0, approved
            assert approved.out.strip() == f"change {change_id} approved by owner: now applied"
        (stream,) = watched
        assert stream.code == 0, stream
        assert [f["type"] for f in stream.lines() if f["seq"] is not None] == [
            "change.decided", "change.applied"]

        again = await live.ironctl("change", "approve", change_id)
        assert again.code == 5 and "409" in again.err
        assert (await live.ironctl("change", "show", "chg_nope")).code == 4
        assert (await live.ironctl("change", "pending", token="icw_wrong_token_00000000"
                                   )).code == 3
        group = await live.handles.registry.get_agent_group("demo")
        assert group.enabled_tools == GRANTED

        verify = await live.ironctl("audit", "verify")
        assert verify.code == 0, verify
        status = await live.ironctl("--json", "status")
        assert status.code == 0, status
        assert status.json()["pending_changes"] == 0


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate"])
async def test_audit_tampering_makes_ironctl_audit_verify_fail(live: Live, tamper: str
                                                               ) -> None:
    """Edit, delete, reorder or truncate entries in the live audit file: each is caught
    by ``ironctl audit verify`` exiting non-zero (and an untouched log passes)."""
    for i in range(3):
        await live.ironctl("change", "submit", "--kind", "persona", "--group", "demo",
                           "--payload", json.dumps({"soul": f"calm {i}"}))
    assert (await live.ironctl("audit", "verify")).code == 0
    log = live.handles.config.state_dir / "audit" / "audit.log"
    lines = (await trio.to_thread.run_sync(log.read_bytes)).splitlines(keepends=True)
    assert len(lines) >= 6
    if tamper == "edit":  # rewrite history: a persona change becomes a wiring change
        index = next(i for i, line in enumerate(lines) if b'"persona"' in line)
        lines[index] = lines[index].replace(b'"persona"', b'"wiring"', 1)
    elif tamper == "delete":
        del lines[2]
    elif tamper == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines = lines[:-1]
    await trio.to_thread.run_sync(log.write_bytes, b"".join(lines))
    result = await live.ironctl("audit", "verify")
    assert result.code == 1, result
