"""The registry: agent groups, messaging groups, wirings, people, access, sessions."""

from .api import Registry as Registry
from .model import AccessLevel as AccessLevel
from .model import AccessRequest as AccessRequest
from .model import AccessRequestStatus as AccessRequestStatus
from .model import AgentGroup as AgentGroup
from .model import ContainerStatus as ContainerStatus
from .model import MessagingGroup as MessagingGroup
from .model import NotFound as NotFound
from .model import Persona as Persona
from .model import RegistryDestination as RegistryDestination
from .model import RegistryError as RegistryError
from .model import Role as Role
from .model import RoleGrant as RoleGrant
from .model import Session as Session
from .model import SessionStatus as SessionStatus
from .model import User as User
from .model import Wiring as Wiring
from .model import namespace_user as namespace_user
from .origins import InboundOrigin as InboundOrigin
