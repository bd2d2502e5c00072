"""Delivery: a session's outbound rows, settled exactly once each.

Chat rows go to the origin chat or a granted destination (a channel, or another agent);
system rows go to the scheduler, the questions store or the capability gate. Per-session
workers keep sessions from delaying each other; host.db's ``delivery_records`` keeps a
restart from repeating anything. See :mod:`.delivery` (the actor and its fairness),
:mod:`.worker` (lanes, retries, watermark), :mod:`.targets` (who may send where),
:mod:`.a2a` (agent-to-agent), :mod:`.actions` (system actions), :mod:`.records`.
"""

from ironclaw.host.delivery.delivery import Delivery as Delivery

from .a2a import AgentRelay as AgentRelay
from .events import ActionHandled as ActionHandled
from .events import AgentMessageSent as AgentMessageSent
from .events import DeadLettered as DeadLettered
from .events import Delivered as Delivered
from .events import DeliveryDenied as DeliveryDenied
from .events import DeliveryHeld as DeliveryHeld
from .events import DeliveryRejected as DeliveryRejected
from .events import DeliveryRetrying as DeliveryRetrying
from .events import WorkerFailed as WorkerFailed
from .handler import ChannelSender as ChannelSender
from .policy import DeliveryPolicy as DeliveryPolicy
from .records import DeliveryRecords as DeliveryRecords
from .records import RecordStatus as RecordStatus
from .records import delivery_key as delivery_key
