"""Generic Trio actor toolkit: supervision, child processes, an event bus, mailboxes
with replies, the wall clock, and the loop-lag instrument.

Knows nothing of agents, sessions or chats; the host builds on it.
"""

from ironclaw.runtime.clock import SystemClock as SystemClock
from ironclaw.runtime.clock import TrioClock as TrioClock
from ironclaw.runtime.clock import WallClock as WallClock
from ironclaw.runtime.eventbus import Envelope as Envelope
from ironclaw.runtime.eventbus import EventBus as EventBus
from ironclaw.runtime.eventbus import Lagged as Lagged
from ironclaw.runtime.eventbus import Subscription as Subscription
from ironclaw.runtime.eventbus import TypeFilter as TypeFilter
from ironclaw.runtime.events import DiscardEvents as DiscardEvents
from ironclaw.runtime.events import Event as Event
from ironclaw.runtime.events import EventSink as EventSink
from ironclaw.runtime.looplag import LoopLagMonitor as LoopLagMonitor
from ironclaw.runtime.looplag import LoopLagSnapshot as LoopLagSnapshot
from ironclaw.runtime.mailbox import Mailbox as Mailbox
from ironclaw.runtime.mailbox import MailboxClosed as MailboxClosed
from ironclaw.runtime.mailbox import Reply as Reply
from ironclaw.runtime.mailbox import drain as drain
from ironclaw.runtime.process import ChildProcess as ChildProcess
from ironclaw.runtime.process import ProcessFailed as ProcessFailed
from ironclaw.runtime.process import TailBuffer as TailBuffer
from ironclaw.runtime.process import open_child_process as open_child_process
from ironclaw.runtime.process import run_child_process as run_child_process
from ironclaw.runtime.supervisor import BackoffPolicy as BackoffPolicy
from ironclaw.runtime.supervisor import Child as Child
from ironclaw.runtime.supervisor import ChildExited as ChildExited
from ironclaw.runtime.supervisor import ChildFailed as ChildFailed
from ironclaw.runtime.supervisor import ChildParked as ChildParked
from ironclaw.runtime.supervisor import ChildRestarting as ChildRestarting
from ironclaw.runtime.supervisor import ChildResumed as ChildResumed
from ironclaw.runtime.supervisor import ChildStarted as ChildStarted
from ironclaw.runtime.supervisor import FailuresReset as FailuresReset
from ironclaw.runtime.supervisor import Supervisor as Supervisor
from ironclaw.runtime.supervisor import SupervisorState as SupervisorState
