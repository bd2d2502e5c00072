"""Pairing, end to end through the real control plane and the local channel: an unknown
sender in a ``request_approval`` chat is told once that access was requested, an owner
approves the ``access`` change, the sender is told, and their next message reaches the
agent. A rejection is told too; and a notice survives a restart."""

from __future__ import annotations

from pathlib import Path

import trio

from ironclaw.contract.enums import ChangeKind, ChangeStatus, DecisionOutcome, UnknownSenderPolicy
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.chatops.notices import TEXTS
from ironclaw.host.chatops.store import NoticeKind
from ironclaw.host.gateway import Principal
from ironclaw.host.registry import AccessRequestStatus
from tests.support.channels import ChatWiring, open_channel_plane

LOBBY = "lobby"
OPERATOR = Principal("operator", frozenset({"owner"}))
WIRING = ChatWiring("local", LOBBY, unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL)


def agent_lines(plane: ControlPlaneHandles, conversation: str = LOBBY) -> list[str]:
    return [e.text for e in plane.local.transcript(conversation) if e.role == "agent"]


async def next_reply(plane: ControlPlaneHandles, mark: int, conversation: str = LOBBY) -> str:
    with trio.fail_after(30):
        return (await plane.local.wait_for_reply(conversation, after_index=mark)).text


async def pending_access(plane: ControlPlaneHandles) -> str:
    (change,) = [c for c in await plane.gateway.pending()
                 if c.change.kind is ChangeKind.ACCESS]
    return change.change.id


async def notice_rows(plane: ControlPlaneHandles, sent: int) -> list[tuple[str, str]]:
    """The notice rows, once ``sent`` notices were reported sent (since the start)."""
    async with plane.events.subscribe("chat.notice_sent", since=0) as events:
        for _ in range(sent):
            await events.receive()
    return await plane.store.call(lambda conn: conn.execute(
        "SELECT kind, status FROM chat_notices ORDER BY rowid").fetchall())


async def test_a_stranger_is_told_once_then_granted_then_heard(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_channel_plane(tmp_path, [], [WIRING]) as plane:
            mark = plane.local.cursor(LOBBY)
            await plane.local.post(LOBBY, "stranger", "hello, let me in")
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.REQUESTED]
            change_id = await pending_access(plane)

            # Writing again while the request is pending raises nothing new.
            await plane.local.post(LOBBY, "stranger", "hello?")
            await plane.local.post(LOBBY, "stranger", "anyone?")
            assert [c.change.id for c in await plane.gateway.pending()] == [change_id]

            mark = plane.local.cursor(LOBBY)
            decided = await plane.gateway.decide(change_id, DecisionOutcome.APPROVE, OPERATOR)
            assert decided.status is ChangeStatus.APPLIED
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.GRANTED]
            # One "requested" notice for three messages, then the grant; never an echo of
            # what the stranger wrote, and no agent ever saw those messages.
            assert agent_lines(plane) == [TEXTS[NoticeKind.REQUESTED],
                                          TEXTS[NoticeKind.GRANTED]]
            assert await notice_rows(plane, 2) == [("access_requested", "sent"),
                                                   ("access_granted", "sent")]

            mark = plane.local.cursor(LOBBY)
            await plane.local.post(LOBBY, "stranger", "hello")
            assert await next_reply(plane, mark) == "echo: hello"
            (request,) = await plane.registry.list_access_requests()
            assert request.status is AccessRequestStatus.GRANTED
            assert request.decided_by == "operator"


async def test_a_rejected_stranger_is_told_and_stays_out(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_channel_plane(tmp_path, [], [WIRING]) as plane:
            mark = plane.local.cursor(LOBBY)
            await plane.local.post(LOBBY, "stranger", "hello")
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.REQUESTED]
            mark = plane.local.cursor(LOBBY)
            await plane.gateway.decide(await pending_access(plane), DecisionOutcome.REJECT,
                                       OPERATOR, "no")
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.DENIED]
            (request,) = await plane.registry.list_access_requests()
            assert request.status is AccessRequestStatus.DENIED


async def test_a_grant_made_while_the_plane_was_down_is_told_after_restart(
        tmp_path: Path) -> None:
    """The decision lands in host.db, the control plane stops before any notice is
    queued (here: the request is decided straight in the registry, which tells nobody);
    on the next start the outcome is found and told."""
    with trio.fail_after(180):
        async with open_channel_plane(tmp_path, [], [WIRING]) as plane:
            mark = plane.local.cursor(LOBBY)
            await plane.local.post(LOBBY, "stranger", "hello")
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.REQUESTED]
            told = plane.local.cursor(LOBBY)
            (request,) = await plane.registry.list_access_requests()
            await plane.registry.decide_access_request(request.id, grant=True,
                                                       decided_by="operator")
            assert await notice_rows(plane, 1) == [("access_requested", "sent")]
        async with open_channel_plane(tmp_path, [], [WIRING]) as plane:
            # The local channel's transcript is durable: the restarted one goes on
            # after what the first one told.
            assert await next_reply(plane, mark) == TEXTS[NoticeKind.REQUESTED]
            assert await next_reply(plane, told) == TEXTS[NoticeKind.GRANTED]
            assert await notice_rows(plane, 1) == [("access_requested", "sent"),
                                                   ("access_granted", "sent")]


async def test_a_flood_of_strangers_in_one_chat_does_not_stop_pairing_elsewhere(
        tmp_path: Path) -> None:
    # The attack: one person rotating names (IRC nicks, say) raises request after
    # request in one chat. With one shared quota, 32 of them blocked pairing everywhere.
    hall = ChatWiring("local", "hall",
                      unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL)
    with trio.fail_after(180):
        async with open_channel_plane(tmp_path, [], [WIRING, hall]) as plane:
            per_chat = plane.config.gateway.access_max_pending_per_chat
            for n in range(40):
                await plane.local.post(LOBBY, f"nick{n}", "let me in")
            lobby = [r for r in await plane.registry.list_access_requests(
                AccessRequestStatus.PENDING)]
            assert len(lobby) == per_chat
            mark = plane.local.cursor("hall")
            await plane.local.post("hall", "newcomer", "hello")
            assert await next_reply(plane, mark, "hall") == TEXTS[NoticeKind.REQUESTED]
            pending = [c for c in await plane.gateway.pending()
                       if c.change.kind is ChangeKind.ACCESS]
            assert len(pending) == per_chat + 1
            assert any("local:newcomer" in c.change.after for c in pending)
