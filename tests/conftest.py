from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import QueuePaths, SessionLayout

# Fixtures for every test: the sealed sandbox image, built once per session on first use.
from tests.support.image import sandbox_image, sandbox_image_cache  # noqa: F401

WORKER = Path(__file__).with_name("queue_worker.py")


@pytest.fixture
def keys() -> SessionKeys:
    return SessionKeys.generate()


@pytest.fixture
def queues(tmp_path: Path) -> QueuePaths:
    return SessionLayout.under(tmp_path / "state", new_session_id()).create()


class Worker:
    """A queue worker in its own OS process, speaking JSON lines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def next_event(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"worker exited early: {err[-2000:]}")
        return json.loads(line)

    def wait_for(self, key: str) -> dict[str, object]:
        while True:
            event = self.next_event()
            if key in event:
                return event
            if "rejected" in event:
                raise AssertionError(f"reader rejected rows: {event['rejected']}")

    def finish(self, timeout: float = 120) -> None:
        rc = self.proc.wait(timeout=timeout)
        if rc != 0:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"worker failed ({rc}): {err[-2000:]}")


@pytest.fixture
def spawn() -> Iterator[type[Worker]]:
    started: list[Worker] = []

    class Tracked(Worker):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait()
        for stream in (worker.proc.stdout, worker.proc.stderr):
            if stream:
                stream.close()



@pytest.fixture
def sandbox_tmp() -> Iterator[Path]:
    """A temp directory an OCI sandbox can reach. Runtimes mount a sandbox's rootfs
    and binds from inside its user namespace as an unprivileged host uid, so every
    parent needs search permission for others; pytest's own temp root is 0700 (and
    every pytest run resets it), so sandbox tests live under /var/tmp instead."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ironclaw-test-", dir="/var/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_tmp_session() -> Iterator[Path]:
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ironclaw-test-", dir="/var/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
