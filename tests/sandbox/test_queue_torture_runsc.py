"""The queue torture test across a real gVisor wall.

The foundation's torture test (``tests/integration/test_queue_torture.py``) again, but
the sandbox side runs inside ``runsc``: its writer commits outbound rows while the
host reads them, and its reader reads inbound rows while the host commits them.
Under gVisor neither side sees the other's file locks (the sandbox writer even uses
SQLite's lock-free ``unix-none`` VFS), so correctness rests on the fence alone.
Zero lost, zero duplicated, zero corrupt rows.

The sandbox side needs Python, which the sealed image deliberately lacks, so this
bundle is the production spec plus read-only binds of the host's interpreter and this
checkout, and without the user namespace (the interpreter may live under /root,
which a mapped uid cannot enter). Those are test-only weakenings; the queue files,
the fence and the wall between them are the production ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import SANDBOX_QUEUES, SessionLayout
from ironclaw.host.isolation.cgroups import (
    leftover_cgroups,
    remove_container_cgroups,
    remove_parent_cgroups,
)
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.spec import AGENT_UID, BundleInputs, build_spec
from ironclaw.host.isolation.standin import MOUNT_DIRS, MOUNT_FILES
from tests.support.sandbox import require_runtime

from ..conftest import Worker

pytestmark = [pytest.mark.slow, pytest.mark.runsc,
              pytest.mark.skipif(os.geteuid() != 0, reason="runsc needs root here")]

COUNT = 2000  # thousands of commits racing the reader across the wall
REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "queue_worker.py"


def _interpreter_roots() -> list[Path]:
    """What the host interpreter and its venv need, bound at identical paths."""
    roots = {Path("/usr"), Path(sys.base_prefix).resolve(), REPO}
    return sorted(root for root in roots if root.exists())


def _rootfs(base: Path) -> Path:
    rootfs = base / "rootfs"
    for name in (*MOUNT_DIRS, "etc"):
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    for name in MOUNT_FILES:
        (rootfs / name).touch()
    (rootfs / "tmp").chmod(0o1777)
    for link in ("bin", "lib", "lib64", "sbin"):  # merged /usr, as on the host
        (rootfs / link).symlink_to(f"usr/{link}")
    for root in _interpreter_roots():
        (rootfs / root.relative_to("/")).mkdir(parents=True, exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("agent:x:65532:65532::/workspace:/nonexistent\n")
    return rootfs


class SandboxedWorker(Worker):
    """``tests/queue_worker.py`` inside a runsc sandbox."""

    def __init__(self, runtime: Any, bundle: Path, cid: str, *args: str) -> None:
        self.runtime, self.cid = runtime, cid
        self.proc = subprocess.Popen(runtime.run_argv(bundle, cid), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=bundle)


def _bundle(base: Path, cid: str, queues: Any, keyfile: Path, args: list[str],
            runtime: Any) -> Path:
    inputs = BundleInputs(
        container_id=cid, rootfs=_rootfs(base), args=tuple(args),
        inbound_dir=queues.inbound_dir, outbound_dir=queues.outbound_dir,
        key_file=keyfile, config_file=keyfile, socket_dir=base / "sock",
        workspace=base / "workspace", cgroups_path=f"/ironclaw-torture/{cid}", gvisor=True)
    (base / "sock").mkdir(exist_ok=True)
    (base / "workspace").mkdir(exist_ok=True)
    spec = build_spec(inputs)
    linux = spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
    del linux["uidMappings"], linux["gidMappings"]
    for root in _interpreter_roots():
        spec["mounts"].append({"destination": str(root), "type": "bind",
                               "source": str(root), "options": ["rbind", "nosuid",
                                                                "nodev", "ro"]})
    spec["process"]["env"] = ["PATH=/usr/bin", "LANG=C.UTF-8", "HOME=/workspace",
                              f"PYTHONPATH={REPO}", "PYTHONDONTWRITEBYTECODE=1"]
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    runtime.root.mkdir(parents=True, exist_ok=True)
    return bundle


def _check(seen: list[list[Any]], direction: str) -> None:
    ids = [row[0] for row in seen]
    assert len(ids) == len(set(ids)), "a row was delivered twice"
    assert set(ids) == {f"t-{i}" for i in range(COUNT)}, "a row was lost"
    for row_id, _seq, content in seen:
        i = int(row_id.split("-")[1])
        assert content == f"payload {i} " + "x" * (i % 300), f"corrupt {row_id}"
    seqs = [row[1] for row in seen]
    assert seqs == sorted(seqs), "rows were read out of commit order"
    parity = 0 if direction == "inbound" else 1
    assert all(s % 2 == parity for s in seqs)


# The inbound direction is a long form: under a loaded machine its sandboxed reader was
# twice left without a stable snapshot for 5 s by the host's fast writer (QueueBusy), a
# starvation that make test-long keeps in view until the reader's retry budget adapts.
@pytest.mark.parametrize("direction", ["outbound",
                                       pytest.param("inbound", marks=pytest.mark.long)])
def test_torture_across_the_gvisor_wall(direction: str, sandbox_tmp: Path, keys: SessionKeys,
                                        spawn: Any) -> None:
    runtime = require_runtime(RuntimeKind.RUNSC, sandbox_tmp / "state")
    queues = SessionLayout.under(sandbox_tmp / "state", new_session_id()).create()
    for directory in (queues.outbound_dir, queues.inbound_dir):
        os.chown(directory, AGENT_UID, AGENT_UID)
    keyfile = sandbox_tmp / "unused.key"
    keyfile.write_text("")
    key = keys.inbound if direction == "inbound" else keys.outbound
    inside = SANDBOX_QUEUES.inbound_db if direction == "inbound" else SANDBOX_QUEUES.outbound_db
    python = str(Path(sys.executable))
    if direction == "outbound":  # the sandbox writes, the host reads
        args = [python, "-I", str(WORKER), "write", "outbound", str(inside), key.hex(),
                str(COUNT), "unix-none", "t-"]
    else:  # the host writes, the sandbox reads
        args = [python, "-I", str(WORKER), "read", "inbound", str(inside), key.hex(),
                str(COUNT), "240"]
    args = [python, "-c", "import sys, runpy; sys.path.insert(0, sys.argv[1]); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')",
            str(REPO), *args[2:]]
    cid = f"torture-{direction}-{new_session_id()[-8:]}"
    bundle = _bundle(sandbox_tmp, cid, queues, keyfile, args, runtime)
    sandboxed = SandboxedWorker(runtime, bundle, cid)
    try:
        if direction == "outbound":
            reader = spawn("read", "outbound", str(queues.outbound_db), key.hex(), str(COUNT),
                           "240")
            reader.wait_for("polling")
            started = time.monotonic()
            sandboxed.wait_for("ready")
            sandboxed.wait_for("done")
            result = reader.wait_for("seen")
        else:
            sandboxed.wait_for("polling")
            writer = spawn("write", "inbound", str(queues.inbound_db), key.hex(), str(COUNT),
                           "", "t-")
            started = time.monotonic()
            writer.wait_for("done")
            result = sandboxed.wait_for("seen")
        assert time.monotonic() - started < 240
        _check(result["seen"], direction)
        # The reader really raced the writer: it polled while rows were landing. Only a
        # few polls are certain, since the writer may finish its 2,000 rows quickly.
        assert result["polls"] > 3
    finally:
        if sandboxed.proc.poll() is None:
            sandboxed.proc.kill()
        sandboxed.proc.wait()
        for stream in (sandboxed.proc.stdout, sandboxed.proc.stderr):
            if stream:
                stream.close()
        runtime.remove(cid)
        remove_container_cgroups("ironclaw-torture", cid)
        remove_parent_cgroups("ironclaw-torture")
        assert not leftover_cgroups("ironclaw-torture")
