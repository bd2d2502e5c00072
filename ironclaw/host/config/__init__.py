"""How the control plane is configured: :mod:`.plane` (the configuration and the choice
of sandbox runtime), :mod:`.file` (the daemon's TOML file), :mod:`.devseed` (what
``--dev`` starts with)."""

from .plane import OCI_RUNTIMES as OCI_RUNTIMES
from .plane import RUNTIMES as RUNTIMES
from .plane import SHARED_KERNEL_WARNING as SHARED_KERNEL_WARNING
from .plane import ControlPlaneConfig as ControlPlaneConfig
from .plane import choose_runtime as choose_runtime
from .plane import runtimes_present as runtimes_present
