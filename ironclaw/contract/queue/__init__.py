"""Queue access, segregated by side.

Host: ``InboundWriter`` and ``OutboundReader``. Sandbox: ``InboundReader`` and
``OutboundWriter``. No class has a method its side must not have.
"""

from .errors import (
    QueueBusy as QueueBusy,
)
from .errors import (
    QueueError as QueueError,
)
from .errors import (
    QueueFileUnsafe as QueueFileUnsafe,
)
from .errors import (
    QueueNotReady as QueueNotReady,
)
from .errors import (
    QueueSchemaError as QueueSchemaError,
)
from .errors import (
    QueueTooLarge as QueueTooLarge,
)
from .errors import (
    QueueWriteRefused as QueueWriteRefused,
)
from .errors import (
    WrongKeyOrCorrupt as WrongKeyOrCorrupt,
)
from .host import InboundWriter as InboundWriter
from .host import OutboundPoll as OutboundPoll
from .host import OutboundReader as OutboundReader
from .sandbox import InboundPoll as InboundPoll
from .sandbox import InboundReader as InboundReader
from .sandbox import OutboundBatch as OutboundBatch
from .sandbox import OutboundWriter as OutboundWriter
