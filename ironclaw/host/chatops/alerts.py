"""Owner alerts: owners and admins hear, in their direct chat with the bot, that a
session of theirs was quarantined.

The alert takes the road the pairing notices take (:mod:`.notices`): a row in host.db's
``chat_notices`` outbox first, then a delivery straight through the channel layer,
retried with backoff until it is sent or too old, and audited if given up. Its id is
derived from the quarantine and the recipient, so each recipient is told once per
quarantine, whatever restarts happen in between.

Who is told: every owner (owners are global), and every admin of the session's agent
group (scoped to it, or global), each in their direct chat with the bot as the router
recorded it: a messaging group on the user's channel whose chat id is the user's own id
(how Telegram, IRC and the local channel key a one-to-one chat). Only on channels that
authenticate their senders (:mod:`ironclaw.host.channels.trust`): an IRC nick is
anyone's to take, and a stranger wearing it must not learn what the agent did.

The text is fixed but for three values: the session id and agent group id (host-made
ids) and the quarantine's reason, which may carry a name the agent chose (a table in its
database, say). The reason goes in as quoted data, JSON-escaped to ASCII (no newline,
control, bidi or markup character of its own survives) and cut to
``ALERT_REASON_CHARS``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ironclaw.host.channels.trust import authenticates_senders

from . import store as q
from .store import Notice, NoticeKind

if TYPE_CHECKING:
    from .notices import ChatNotices

Conn = Any

ALERT_REASON_CHARS = 200


def quarantine_alert_text(session_id: str, agent_group_id: str, reason: str) -> str:
    quoted = json.dumps(reason[:ALERT_REASON_CHARS], ensure_ascii=True)
    return (f"IronClaw quarantined session {session_id} (agent group {agent_group_id}): "
            f"its sandbox proved hostile, reason {quoted}. The session stays stopped, "
            "across restarts, until an owner lifts the hold (ironctl quarantine lift "
            f"{session_id}) after looking at its outbound directory.")


def alert_recipients(conn: Conn, agent_group_id: str) -> list[tuple[str, str, str, str]]:
    """``(user_id, channel, instance, platform_id)`` of each owner's and each of the
    group's admins' direct chat, on channels that authenticate senders."""
    rows = conn.execute(
        "SELECT DISTINCT r.user_id, m.channel, m.instance, m.platform_id FROM roles r "
        "JOIN messaging_groups m ON m.channel || ':' || m.platform_id = r.user_id "
        "WHERE r.role = 'owner' OR (r.role = 'admin' AND r.scope IN ('', ?)) "
        "ORDER BY r.user_id, m.instance", (agent_group_id,)).fetchall()
    return [(user, channel, instance, platform) for user, channel, instance, platform in rows
            if authenticates_senders(channel)]


def alert_id(session_id: str, since_us: int, user_id: str, instance: str) -> str:
    digest = hashlib.sha256(
        f"quarantine:{session_id}:{since_us}:{user_id}:{instance}".encode()).hexdigest()
    return "qal_" + digest[:32]


def raise_quarantine_alerts(conn: Conn, session_id: str, agent_group_id: str, reason: str,
                            since_us: int, now: int) -> int:
    """Queue one alert per recipient chat (in the caller's transaction); how many were
    new."""
    text = quarantine_alert_text(session_id, agent_group_id, reason)
    queued = 0
    for user_id, channel, instance, platform_id in alert_recipients(conn, agent_group_id):
        notice_id = alert_id(session_id, since_us, user_id, instance)
        queued += q.put_notice(conn, Notice(
            id=notice_id, request_id=f"quarantine:{session_id}:{notice_id}",
            kind=NoticeKind.SESSION_QUARANTINED, channel=channel, instance=instance,
            platform_id=platform_id, thread_id=None, text=text), now)
    return queued


class QuarantineAlerts:
    """The quarantine's ``OwnerAlerts``: queued in its transaction, sent by the chat
    notices' outbox."""

    def __init__(self, notices: ChatNotices) -> None:
        self._notices = notices

    def queue(self, conn: Conn, session_id: str, agent_group_id: str, reason: str,
              since_us: int, now: int) -> int:
        return raise_quarantine_alerts(conn, session_id, agent_group_id, reason, since_us,
                                       now)

    def wake(self) -> None:
        self._notices.wake()
