"""Deleting a session over real HTTP and ironctl: a live session with a sandbox, a
task and a key is deleted by an admin, with its queues, key, rows and (on request)
workspace; a viewer or approver is refused, a quarantined session is refused, the
deletion is audited, and the chat's next message starts a new session that answers.
Retention deletes only idle sessions with nothing planned, and a deletion cut short by
a crash is finished at the next start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from ironclaw.contract.actions import ScheduleTask
from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import SessionMode
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from tests.support.api import Api, default_settings, running_api  # noqa: F401

HOUR_US = 3600 * 1_000_000


async def say(api: Api, text: str) -> str:
    """Post to the demo conversation, wait for the reply; returns the session's id."""
    mark = api.handles.local.cursor("demo")
    posted = await api.post("/v1/channels/local/messages",
                            {"agent_group": "demo", "sender": "alice", "text": text})
    assert posted.status_code == 202, posted.text
    with trio.fail_after(60):
        await api.handles.local.wait_for_reply("demo", after_index=mark)
    (session,) = (await api.get("/v1/sessions")).json()["sessions"]
    return str(session["id"])


def session_keys(api: Api) -> frozenset[str]:
    state = api.handles.config.state_dir
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as view:
        return frozenset(view.session_ids())


async def test_an_admin_deletes_a_live_session_and_the_chat_starts_afresh(api: Api) -> None:
    from tests.support.ironctl import ironctl

    async def run(*argv: str, who: str = "admin") -> Any:
        return await ironctl(None, "--addr", api.url, "--timeout", "60", *argv,
                             token=api.tokens[who])

    sid = await say(api, "hello")
    state = api.handles.config.state_dir
    assert sid in api.handles.sessions.live_ids()
    assert (state / "sessions" / sid / "inbound" / "inbound.db").exists()
    assert sid in session_keys(api)
    workspace = state / "workspaces" / "demo"
    (workspace / "notes.txt").write_text("kept by the agent")
    await api.handles.scheduler.schedule(
        session_id=sid, agent_group_id="demo",
        request=ScheduleTask("later", now_us() + HOUR_US, None, "UTC", None))

    for who in ("viewer", "approver"):
        refused = await run("sessions", sid, "--delete", who=who)
        assert refused.code == 3, (who, refused.err)
    assert (await run("sessions", "--delete")).code == 2
    assert (await run("sessions", sid, "--workspace")).code == 2
    api.handles.quarantine.hold(sid, "demo", "symlink at outbound.db")
    held = await run("sessions", sid, "--delete")
    assert held.code == 5 and "quarantined" in held.err
    assert (await api.post(f"/v1/quarantine/{sid}/lift", {})).status_code == 200
    assert sid in session_keys(api)  # nothing went while it was refused

    deleted = await run("sessions", sid, "--delete", "--workspace", "--json")
    assert deleted.code == 0, deleted.err
    assert deleted.json() == {"session_id": sid, "agent_group_id": "demo",
                              "deleted": True, "workspace": True}
    assert sid not in api.handles.sessions.live_ids()
    assert (await api.get(f"/v1/sessions/{sid}")).status_code == 404
    assert not (state / "sessions" / sid).exists()
    assert sid not in session_keys(api)
    assert workspace.is_dir() and list(workspace.iterdir()) == []
    assert (await api.get("/v1/tasks", params={"session_id": sid})).json() == {"tasks": []}
    assert (await run("sessions", sid, "--delete")).code == 4

    with trio.fail_after(10):
        while True:
            entries = (await api.get("/v1/audit", params={"limit": 200})).json()["entries"]
            found = [e["fields"] for e in entries if e["kind"] == "session.deleted"]
            if found:
                break
            await trio.sleep(0.05)
    assert found == [{"session_id": sid, "agent_group_id": "demo", "workspace": True,
                      "by": "admin"}]

    again = await say(api, "are you there?")
    assert again != sid
    conversation = (await api.get("/v1/channels/local/conversations/demo/messages")).json()
    assert conversation["messages"][-1]["text"] == "echo: are you there?"


async def test_retention_deletes_only_idle_sessions_with_nothing_planned(api: Api) -> None:
    registry, deleter = api.handles.registry, api.handles.session_deleter
    made = {name: (await registry.resolve_session("demo", f"mg-{name}", None,
                                                  SessionMode.SHARED)).id
            for name in ("idle", "planned", "held", "recent")}
    day = 86_400 * 1_000_000
    cutoff = now_us() - 30 * day

    def age(conn: Any) -> None:
        for name in ("idle", "planned", "held"):
            conn.execute("UPDATE sessions SET last_active = ? WHERE id = ?",
                         (cutoff - day, made[name]))

    await api.handles.store.transaction(age)
    await api.handles.scheduler.schedule(
        session_id=made["planned"], agent_group_id="demo",
        request=ScheduleTask("weekly report", None, "weekly", "UTC", None))
    api.handles.quarantine.hold(made["held"], "demo", "fifo at outbound.db")

    assert await deleter.delete_idle(cutoff) == 1
    left = {s["id"] for s in (await api.get("/v1/sessions")).json()["sessions"]}
    assert left == {made["planned"], made["held"], made["recent"]}
    assert await deleter.delete_idle(cutoff) == 0


async def test_a_deletion_cut_short_by_a_crash_is_finished_at_the_next_start(
        tmp_path: Path) -> None:
    """The row went, the key and the files did not (the plane died in between): the
    next start removes them before any session runs, and keeps every session that has
    a row."""
    from ironclaw.host.app import ControlPlane
    from ironclaw.host.modelproxy import Credentials
    from tests.support.plane import dev_plane_config

    config = dev_plane_config(tmp_path / "state", tmp_path / "keys")
    state = config.state_dir

    @contextlib.asynccontextmanager
    async def started() -> AsyncIterator[Any]:
        async with trio.open_nursery() as nursery:
            yield await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            nursery.cancel_scope.cancel()

    async with started() as plane:
        kept = await plane.registry.resolve_session("demo", "mg-kept", None,
                                                    SessionMode.SHARED)
        await plane.scheduler.schedule(  # writes nothing to disk; the row is enough
            session_id=kept.id, agent_group_id="demo",
            request=ScheduleTask("later", now_us() + HOUR_US, None, "UTC", None))
    with KeyStore.open(state, FileMasterKeySource.in_state_dir(state)) as keys:
        keys.ensure_session("ses_0123456789abcdef")
        keys.ensure_session(kept.id)
    (state / "sessions" / "ses_0123456789abcdef" / "inbound").mkdir(parents=True)
    (state / "sessions" / "ses_0123456789abcdef" / "inbound" / "inbound.db").write_bytes(
        b"ciphertext")
    (state / "sessions" / "not-a-session-id").mkdir()

    async with started() as plane:
        assert [s.id for s in await plane.registry.list_sessions()] == [kept.id]
    assert not (state / "sessions" / "ses_0123456789abcdef").exists()
    assert (state / "sessions" / "not-a-session-id").is_dir()  # not ours to judge
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as view:
        assert set(view.session_ids()) == {kept.id}
