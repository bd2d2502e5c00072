"""The channel layer: platform adapters, their supervised actors, and the local channel.

Inbound: adapter ``serve`` -> :class:`ChannelActor` (supervised, stamps provenance,
back-pressure instead of drops) -> the router mailbox. Outbound: ``OutboundDelivery`` ->
:class:`Channels` (routes by ``(channel, instance)``) -> the actor's mailbox -> adapter
``deliver`` (idempotent by ``outbound_id``).
"""

from ironclaw.host.channels.base import ChannelAdapter as ChannelAdapter
from ironclaw.host.channels.base import ChannelError as ChannelError
from ironclaw.host.channels.base import ChannelKey as ChannelKey
from ironclaw.host.channels.base import ChannelUnavailable as ChannelUnavailable
from ironclaw.host.channels.base import Deliver as Deliver
from ironclaw.host.channels.base import DeliveryFailed as DeliveryFailed
from ironclaw.host.channels.base import DeliveryReceipt as DeliveryReceipt
from ironclaw.host.channels.base import InboundEvent as InboundEvent
from ironclaw.host.channels.base import InboundRefused as InboundRefused
from ironclaw.host.channels.base import OutboundDelivery as OutboundDelivery
from ironclaw.host.channels.base import safe_reason as safe_reason
from ironclaw.host.channels.channel_actor import ChannelActor as ChannelActor
from ironclaw.host.channels.channel_actor import ChannelStatus as ChannelStatus
from ironclaw.host.channels.channels import Channels as Channels
from ironclaw.host.channels.events import ChannelDown as ChannelDown
from ironclaw.host.channels.events import ChannelParked as ChannelParked
from ironclaw.host.channels.events import ChannelResumed as ChannelResumed
from ironclaw.host.channels.events import ChannelUp as ChannelUp
from ironclaw.host.channels.ledger import DeliveryLedger as DeliveryLedger
from ironclaw.host.channels.ledger import IdempotentDelivery as IdempotentDelivery
from ironclaw.host.channels.ledger import MemoryDeliveryLedger as MemoryDeliveryLedger
from ironclaw.host.channels.local import ConversationEvicted as ConversationEvicted
from ironclaw.host.channels.local import LocalChannel as LocalChannel
from ironclaw.host.channels.local import TranscriptEntry as TranscriptEntry
