"""Sandbox runtimes behind one protocol."""

from .base import InsecureRuntimeRefused as InsecureRuntimeRefused
from .base import Isolator as Isolator
from .base import LaunchSpec as LaunchSpec
from .base import SandboxExited as SandboxExited
from .base import Strength as Strength
from .hostmounts import HostMount as HostMount
from .hostmounts import MountRefused as MountRefused
from .process import ProcessIsolator as ProcessIsolator
