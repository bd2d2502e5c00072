"""Where the sandbox's mounts land, and who the agent is inside the sealed image.

The image carries every mount point as an empty directory or file, because one rootfs
is shared read-only by all sessions: an OCI runtime must never need to create anything
in it (with a read-only rootfs it could not, and a runtime that silently does would
be writing into a shared, digest-pinned tree). The OCI spec builder imports these
tuples so that the image and the spec cannot disagree.
"""

from __future__ import annotations

from ironclaw.contract.agent_config import SANDBOX_CONFIG_FILE
from ironclaw.contract.layout import (
    SANDBOX_INBOUND_DIR,
    SANDBOX_KEY_FILE,
    SANDBOX_OUTBOUND_DIR,
    SANDBOX_SOCKET_DIR,
    SANDBOX_WORKSPACE,
)

# The agent's uid and gid inside the sandbox (distroless's "nonroot" number).
AGENT_UID = 65532
AGENT_GID = 65532
AGENT_USER = "agent"

TMP_DIR = "/tmp"
# runc copies the mount point's mode onto the tmpfs it mounts there, so /tmp must be
# 1777 in the image or the agent cannot write its own scratch space.
TMP_MODE = 0o1777

# Empty directories that something is mounted on.
MOUNT_POINTS_DIRS: tuple[str, ...] = (
    "/proc",
    "/dev",
    "/sys",
    TMP_DIR,
    str(SANDBOX_INBOUND_DIR),  # the session's inbound queue directory, read-only
    str(SANDBOX_OUTBOUND_DIR),  # the session's outbound queue directory, read-write
    str(SANDBOX_SOCKET_DIR),  # model.sock, wake.sock, opt-in egress.sock and mcp.sock
    str(SANDBOX_WORKSPACE),  # the agent group's durable workspace
    # A security test harness binds its toolkit here read-only; production binds
    # nothing, so the directory stays empty.
    "/opt/redteam",
)

# Empty files that a single file is bind-mounted on.
MOUNT_POINTS_FILES: tuple[str, ...] = (
    str(SANDBOX_KEY_FILE),  # the session's queue keys, from a host tmpfs
    str(SANDBOX_CONFIG_FILE),  # the agent's config file
)
