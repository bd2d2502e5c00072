"""A slot: one sandbox's host-side paths, owned as the isolator prepares a session."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ironclaw.contract.agent_config import (
    MOCK_MODEL_HOST,
    AgentConfig,
    ModelApi,
    ProviderConfig,
)
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import HEARTBEAT_FILE
from ironclaw.host.isolation.spec import UserMapping

from .workdir import Workdir

# Host-side ownership as OciIsolator prepares a session (gVisor 2022 ignores group
# permissions across its user namespace, so sharing goes by owner): outbound and
# workspace are the agent uid's, 0700; inbound is the agent uid's, 0500 (bound
# read-only); the socket directory stays root's, 0711.
HOST_SIDE = ("host-side ownership as OciIsolator prepares a session: outbound and "
             "workspace the agent's 0700, inbound the agent's 0500 (bound read-only), "
             "sockets root's 0711")


@attrs.frozen
class Slot:
    root: Path
    inbound: Path
    outbound: Path
    sockets: Path
    workspace: Path
    scratch: Path  # the bare process's $TMPDIR (the sandbox has its own tmpfs)
    key_file: Path
    config_file: Path  # the sandbox's agent.json (in-sandbox paths)
    host_config_file: Path  # the bare agent's (host paths)

    @property
    def heartbeat(self) -> Path:
        return self.outbound / HEARTBEAT_FILE

    @classmethod
    def make(cls, workdir: Workdir, mapping: UserMapping) -> Slot:
        root = workdir.fresh("slot")
        uid = mapping.agent_host_uid
        paths = {name: root / name for name in ("inbound", "outbound", "sockets",
                                                "workspace", "scratch")}
        for path in paths.values():
            path.mkdir()
        for name in ("outbound", "workspace"):
            os.chown(paths[name], uid, uid)
            paths[name].chmod(0o700)
        os.chown(paths["inbound"], uid, uid)
        paths["inbound"].chmod(0o500)
        paths["sockets"].chmod(0o711)
        paths["scratch"].chmod(0o700)
        keys = SessionKeys.generate()
        sid = new_session_id()
        config = AgentConfig(session_id=sid, agent_group_id="bench", provider=ProviderConfig(
            api=ModelApi.ANTHROPIC_MESSAGES, host=MOCK_MODEL_HOST, model="mock"))
        key_file, config_file = root / "session.key", root / "agent.json"
        host_config = root / "agent-host.json"
        _write(key_file, keys.render_file().encode(), uid, 0o400)
        _write(config_file, config.render().encode(), uid, 0o400)
        host = attrs.evolve(config, inbound_dir=paths["inbound"],
                            outbound_dir=paths["outbound"], key_file=key_file,
                            socket_dir=paths["sockets"], workspace=paths["workspace"],
                            scratch_dir=paths["scratch"])
        _write(host_config, host.render().encode(), None, 0o400)
        return cls(root=root, inbound=paths["inbound"], outbound=paths["outbound"],
                   sockets=paths["sockets"], workspace=paths["workspace"],
                   scratch=paths["scratch"], key_file=key_file, config_file=config_file,
                   host_config_file=host_config)

    def reset(self) -> None:
        """Forget the last run's heartbeat (and nothing else)."""
        self.heartbeat.unlink(missing_ok=True)


def _write(path: Path, data: bytes, owner: int | None, mode: int) -> None:
    path.write_bytes(data)
    if owner is not None:
        os.chown(path, owner, owner)
    path.chmod(mode)

