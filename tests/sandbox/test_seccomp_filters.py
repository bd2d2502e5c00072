"""The seccomp profile's argument filters and forbidden calls, from inside real
sandboxes: AF_ALG and AF_VSOCK sockets and code run from a memfd fail under runsc,
runc and crun, while the frozen agent still passes its self-check under the very same
profile. With the filters removed (a negative control), memfd exec gets through under
all three and AF_VSOCK under runc and crun, so the test would notice a profile that
stopped filtering."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.host.isolation import SandboxExited
from ironclaw.host.isolation.image import SandboxImage
from ironclaw.host.isolation.oci import OciIsolator, VerifiedImage
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.spec import ExtraBind
from ironclaw.redteam.toolkit import TOOLKIT_MOUNT, ToolkitUnavailable, build_toolkit
from tests.support.sandbox import (
    OCI_KINDS,
    ScriptImage,
    build_busybox_rootfs,
    launch_spec,
    require_runtime,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

PROBES = ("af-alg", "af-vsock", "memfd-exec")
PROBE_NAMES = {"socket.af_alg", "socket.af_vsock", "memfd.exec"}


@pytest.fixture(scope="module")
def toolkit(sandbox_tmp_session: Path) -> Path:
    try:
        return build_toolkit(sandbox_tmp_session / "toolkit")
    except ToolkitUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def rootfs(sandbox_tmp_session: Path) -> Path:
    return build_busybox_rootfs(sandbox_tmp_session / "busybox-seccomp")


def _unfiltered(spec: dict[str, Any]) -> dict[str, Any]:
    """The negative control: socket for every family, memfd_create and execveat."""
    spec = copy.deepcopy(spec)
    rules = spec["linux"]["seccomp"]["syscalls"]
    for rule in rules:
        if rule["names"][0] in ("socket", "socketpair"):
            rule.pop("args")
    rules.append({"names": ["memfd_create", "execveat"], "action": "SCMP_ACT_ALLOW"})
    return spec


async def _probe(kind: RuntimeKind, sandbox_tmp: Path, rootfs: Path, toolkit: Path, *,
                 weakened: bool = False) -> dict[str, dict[str, Any]]:
    state = sandbox_tmp / "state"
    runtime = require_runtime(kind, state)
    spec = launch_spec(state, sandbox_tmp / "keys")
    probe = TOOLKIT_MOUNT / "ironclaw-probe"
    script = "; ".join(f"{probe} {name} >> /queue/outbound/probes" for name in PROBES)
    isolator = OciIsolator(
        runtime, ScriptImage(rootfs, script), state_dir=state,
        extra_binds=(ExtraBind(toolkit, TOOLKIT_MOUNT),),
        spec_hook=_unfiltered if weakened else None, allow_weakened=weakened)
    with trio.fail_after(90), pytest.raises(SandboxExited) as exited:
        await isolator.run(spec)
    assert exited.value.returncode == 0, exited.value.stderr_tail
    lines = (spec.queues.outbound_dir / "probes").read_text().splitlines()
    return {entry["probe"]: entry for entry in map(json.loads, lines)}


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_af_alg_af_vsock_and_memfd_exec_fail_inside(
        kind: RuntimeKind, sandbox_tmp: Path, rootfs: Path, toolkit: Path) -> None:
    seen = await _probe(kind, sandbox_tmp, rootfs, toolkit)
    assert set(seen) == PROBE_NAMES
    assert all(entry["contained"] for entry in seen.values()), seen
    # The kernel's own answer (the host's, or gVisor's Sentry's) would be EAFNOSUPPORT
    # or success: EPERM is the profile's, applied under runsc too (--oci-seccomp).
    for name in ("socket.af_vsock", "socket.af_alg"):
        assert "Operation not permitted" in seen[name]["observed"], seen[name]
    assert "memfd_create refused: Operation not permitted" in seen["memfd.exec"]["observed"]


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_without_the_filters_the_same_probes_get_through(
        kind: RuntimeKind, sandbox_tmp: Path, rootfs: Path, toolkit: Path) -> None:
    seen = await _probe(kind, sandbox_tmp, rootfs, toolkit, weakened=True)
    assert not seen["memfd.exec"]["contained"], seen
    if kind is not RuntimeKind.RUNSC:  # gVisor has no AF_VSOCK to reach
        assert not seen["socket.af_vsock"]["contained"], seen


class _SelfCheck:
    """The sealed image, run with ``--self-check`` instead of its entrypoint's config."""

    def __init__(self, image: SandboxImage) -> None:
        self._image = VerifiedImage(image.rootfs, (image.entrypoint[0], "--self-check"),
                                    image.digest)

    async def verified(self) -> VerifiedImage:
        return self._image


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_the_frozen_agent_passes_its_self_check_under_the_profile(
        kind: RuntimeKind, sandbox_tmp: Path, sandbox_image: SandboxImage) -> None:
    # Trio with a worker thread, the unix-socket transport, SQLCipher: under the
    # production spec, argument filters included.
    state = sandbox_tmp / "state"
    runtime = require_runtime(kind, state)
    isolator = OciIsolator(runtime, _SelfCheck(sandbox_image), state_dir=state)
    with trio.fail_after(120), pytest.raises(SandboxExited) as exited:
        await isolator.run(launch_spec(state, sandbox_tmp / "keys"))
    assert exited.value.returncode == 0, exited.value.stderr_tail
