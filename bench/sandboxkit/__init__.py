"""One hardened bundle, run by every runtime, and the bare process as the floor.

Used by the ``sandbox`` and ``scale`` suites. A bundle's ``config.json`` is the
production spec, ``ironclaw.host.isolation.spec.build_spec``, with the session binds
(inbound, outbound, key, config, sockets, workspace) of a bench "slot"; only
``process.args`` (and the container id with its cgroup path) differs between runs.
The runtimes are run with the production command lines (``OciRuntime.run_argv``,
including runsc's flags and crun's hybrid-cgroup wrapper), in the foreground, timed
around that command alone.

The image is the sealed image (the frozen agent, which carries the benchmark
workloads behind a hidden ``--workload``) when one can be had, otherwise a busybox
rootfs with the same mount points, running shell loops (a stand-in, and every report
says which it was). The bare floor runs the same program on the host, from the same
rootfs, with the same arguments.

Everything lives in a work directory under ``/var/tmp`` (every parent must be
searchable by the sandbox's unprivileged host uid, see ``oci._require_traversable``),
with its own runtime state root, so cleaning up is ``reconcile_runtime_state`` on it.

The package's modules: ``workdir`` (the work directory), ``images`` (the image and
the workloads), ``slots`` (one sandbox's host-side paths), ``targets`` (a runtime or
the bare process, run or left live), ``memory`` (process trees and what they use)
and ``cpu`` (what they burn while idle).
"""

from .cpu import idle_cpu as idle_cpu
from .images import BenchImage as BenchImage
from .images import Workload as Workload
from .images import drop_caches as drop_caches
from .images import find_image as find_image
from .images import fresh_rootfs as fresh_rootfs
from .images import image_cache_dir as image_cache_dir
from .memory import ROLE_STUBS as ROLE_STUBS
from .memory import ROLES as ROLES
from .memory import cgroup_memory_mib as cgroup_memory_mib
from .memory import tree_memory as tree_memory
from .slots import HOST_SIDE as HOST_SIDE
from .slots import Slot as Slot
from .targets import BARE as BARE
from .targets import VARIANTS as VARIANTS
from .targets import BareTarget as BareTarget
from .targets import Live as Live
from .targets import OciTarget as OciTarget
from .targets import RunResult as RunResult
from .targets import Target as Target
from .targets import live_set as live_set
from .targets import make_targets as make_targets
from .targets import wait_ready as wait_ready
from .workdir import Workdir as Workdir
from .workdir import clean_state as clean_state
