"""Chat users served by the control plane itself, never by an agent.

* Pairing (:mod:`.notices`): an unknown sender in a ``request_approval`` chat is told,
  once, that access was requested, and later whether it was granted; durable notices
  sent straight through the channel layer.
* Chat approvals (:mod:`.commands`, :mod:`.approvers`): an owner who opted in lists,
  reads and decides pending changes from a direct chat with the bot, through the
  gateway, bound to the digest of the change they were shown.
* Owner alerts (:mod:`.alerts`): owners and the group's admins are told in their direct
  chats that a session was quarantined, through the pairing notices' durable outbox.

``app.py`` wires them: :class:`ChatNotices` is both the router's ``AccessNotices`` and
one of the gateway's notifiers; :class:`ChatCommands` is the router's
``CommandInterceptor``. See ``docs/channels/pairing-and-chat-approvals.md``.
"""

from .approvers import ApproverView as ApproverView
from .approvers import ChatApprovers as ChatApprovers
from .approvers import NotAnOwner as NotAnOwner
from .approvers import UnauthenticatedChannel as UnauthenticatedChannel
from .commands import ChatCommands as ChatCommands
from .commands import CommandPolicy as CommandPolicy
from .commands import parse_command as parse_command
from .notices import ChatNotices as ChatNotices
from .notices import NoticePolicy as NoticePolicy
