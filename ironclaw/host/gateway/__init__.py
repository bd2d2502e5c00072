"""The gateway: every change to what an agent is or may do is a ChangeRequest held
here until deterministic verifiers and an authenticated human (or, for a few low-risk
kinds, an opt-in policy) approve it; then it is applied once, transactionally.

Construct :class:`Gateway` with the host store and an :class:`AuditSink`, start it
with ``await nursery.start(gateway.run)``. It implements
:class:`ironclaw.host.mailboxes.CapabilityGate`.
"""

from .config import NEVER_AUTO_APPROVE as NEVER_AUTO_APPROVE
from .config import RESPAWN_KINDS as RESPAWN_KINDS
from .config import GatewayConfig as GatewayConfig
from .config import MountRoot as MountRoot
from .gateway import Gateway as Gateway
from .grants import Grants as Grants
from .kinds import ApplyError as ApplyError
from .kinds import ChangeKinds as ChangeKinds
from .kinds import ChangeKindSpec as ChangeKindSpec
from .messages import change_id_for as change_id_for
from .protocols import AuditSink as AuditSink
from .protocols import ChangeApplied as ChangeApplied
from .protocols import ChangeApplyFailed as ChangeApplyFailed
from .protocols import ChangeDecided as ChangeDecided
from .protocols import ChangeExpired as ChangeExpired
from .protocols import ChangeSubmitted as ChangeSubmitted
from .protocols import Notifier as Notifier
from .protocols import Respawner as Respawner
from .rbac import ChatOrigin as ChatOrigin
from .rbac import Conflict as Conflict
from .rbac import Forbidden as Forbidden
from .rbac import GatewayError as GatewayError
from .rbac import GatewayUnavailable as GatewayUnavailable
from .rbac import InvalidChange as InvalidChange
from .rbac import NoSuchChange as NoSuchChange
from .rbac import Principal as Principal
from .rbac import StaleChange as StaleChange
from .rbac import TooManyPending as TooManyPending
from .rbac import chat_principal_name as chat_principal_name
