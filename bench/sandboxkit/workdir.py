"""The benchmark's work directory: ``/var/tmp/ironclaw-bench-*`` with its own runtime
state root, so cleaning up is reconciling that root."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ironclaw.host.isolation.reconcile import clear_runtime_state

WORK_BASE = Path("/var/tmp")


class Workdir:
    """``/var/tmp/ironclaw-bench-*`` (0711) with a private runtime state root. Closing
    it removes every container, bundle and cgroup of ours, then the directory."""

    def __init__(self, *, base: Path = WORK_BASE) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ironclaw-bench-", dir=base))
        self.root.chmod(0o711)
        self.state = self.root / "state"
        self.state.mkdir(mode=0o711)
        self._count = 0

    def fresh(self, name: str) -> Path:
        self._count += 1
        path = self.root / f"{name}-{self._count}"
        path.mkdir(mode=0o711)
        return path

    def close(self) -> None:
        clean_state(self.state)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def clean_state(state: Path) -> None:
    """Remove every container, bundle and cgroup of ``state``'s sandboxes."""
    clear_runtime_state(state)
