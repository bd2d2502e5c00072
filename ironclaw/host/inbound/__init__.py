"""The road into a session: what the host writes into a session's inbound queue, and
the wake that follows.

* :mod:`.router`: one chat event in, rows for the wired sessions and wakes out;
* :mod:`.inbox`: one host-minted row (a task's run, an answer, another agent's
  message, a change's outcome) written exactly once, then a wake;
* :mod:`.queues`: the one writer object per session inbound file, with its byte cap;
* :mod:`.wakes`: waking a session through the sessions mailbox.

The sandbox reads what arrives here; the rows it writes back take the outbound road
(``sessions/tail.py`` to delivery).
"""

from .inbox import InboundQueues as InboundQueues
from .inbox import SessionInbox as SessionInbox
from .inbox import cap_content as cap_content
from .queues import InboundSink as InboundSink
from .queues import SessionGone as SessionGone
from .queues import SessionQueues as SessionQueues
from .wakes import Waker as Waker
from .wakes import WakeSink as WakeSink
