"""The red-team harness, run for real: every probe contained under runsc and runc,
and each negative control (a sandbox weakened on purpose) turns the harness red, so
it can never go quietly blind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ironclaw.host.isolation.image import SandboxImage
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.redteam.harness import WEAKENINGS, RedTeamReport, render_table, run_redteam

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

RUNTIMES = [pytest.param(RuntimeKind.RUNSC, marks=pytest.mark.runsc, id="runsc"),
            pytest.param(RuntimeKind.RUNC, marks=pytest.mark.runc, id="runc")]


def _require(kind: RuntimeKind, where: Path) -> None:
    if OciRuntime.find(kind, where) is None:
        pytest.skip(f"{kind.value} is not installed on this host")


async def _attack(kind: RuntimeKind, sandbox_tmp: Path, cache: Path, *, sessions: int = 1,
                  weakening: str | None = None) -> RedTeamReport:
    _require(kind, sandbox_tmp)
    return await run_redteam(kind, sandbox_tmp, sessions=sessions, weakening=weakening,
                             image_cache=cache)


@pytest.mark.parametrize("kind", RUNTIMES)
async def test_every_probe_is_contained(kind: RuntimeKind, sandbox_tmp: Path,
                                        sandbox_image: SandboxImage,
                                        sandbox_image_cache: Path) -> None:
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache)
    assert report.contained, render_table(report)
    probes = {o.probe for o in report.observations}
    for needed in ("net.interfaces", "net.tcp.outside", "net.dns", "docker.socket",
                   "host.marker", "rootfs.write", "inbound.open_for_write",
                   "keys.master_key", "other_session.key", "syscall.ptrace",
                   "syscall.mount", "syscall.unshare_user", "escalate.setuid_binary",
                   "self_modification.held_at_gateway", "model_proxy.foreign_host",
                   "egress.unapproved_host", "cleanup.no_leftovers",
                   "mount.granted_read", "mount.read_only", "mount.granted_write",
                   "mount.beside", "mount.dotdot_sibling", "mount.dotdot_root",
                   "mount.symlink_out", "mount.symlink_up"):
        assert needed in probes, f"{needed} was not probed"
    assert report.image_digest == sandbox_image.digest
    assert report.runtime == kind.value and report.kernel


CONTROLS = [
    pytest.param(kind, weakening, id=f"{kind.value}-{weakening}",
                 # Suite time: the mount-root control's short form is runc's.
                 marks=[mark, *([pytest.mark.long] if (kind, weakening) == (
                     RuntimeKind.RUNSC, "mount-root") else [])])
    for kind, mark in ((RuntimeKind.RUNC, pytest.mark.runc),
                       (RuntimeKind.RUNSC, pytest.mark.runsc))
    for weakening in WEAKENINGS
    # runsc will not start a sandbox in the host's network namespace under a user
    # namespace; the other two controls cover it.
    if not (kind is RuntimeKind.RUNSC and weakening == "network")]


@pytest.mark.parametrize(("kind", "weakening"), CONTROLS)
async def test_a_weakened_sandbox_turns_the_harness_red(
        kind: RuntimeKind, weakening: str, sandbox_tmp: Path, sandbox_image: SandboxImage,
        sandbox_image_cache: Path) -> None:
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache, weakening=weakening)
    assert not report.contained
    red = {o.probe for o in report.observations if not o.contained}
    assert WEAKENINGS[weakening] in red, render_table(report)


@pytest.mark.slow
@pytest.mark.runsc
async def test_twelve_sandboxes_at_once_all_hold(sandbox_tmp: Path,
                                                 sandbox_image: SandboxImage,
                                                 sandbox_image_cache: Path) -> None:
    report = await _attack(RuntimeKind.RUNSC, sandbox_tmp, sandbox_image_cache, sessions=12)
    assert report.contained, render_table(report)
    assert {o.session for o in report.observations if o.session >= 0} == set(range(12))


@pytest.mark.long
@pytest.mark.runsc
async def test_claimed_warm_sandboxes_hold_as_cold_ones(sandbox_tmp: Path,
                                                        sandbox_image: SandboxImage,
                                                        sandbox_image_cache: Path) -> None:
    _require(RuntimeKind.RUNSC, sandbox_tmp)
    report = await run_redteam(RuntimeKind.RUNSC, sandbox_tmp, image_cache=sandbox_image_cache,
                               pool=True)
    assert report.contained, render_table(report)
    claimed = [o for o in report.observations if o.probe == "pool.sessions_claimed"]
    assert [o.contained for o in claimed] == [True], render_table(report)


@pytest.mark.runsc
def test_ironctl_redteam_exits_zero_and_writes_the_report(
        sandbox_tmp: Path, sandbox_image: SandboxImage, sandbox_image_cache: Path) -> None:
    _require(RuntimeKind.RUNSC, sandbox_tmp)
    report_path = sandbox_tmp / "report.json"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ironctl"), "redteam", "--runtime", "runsc",
         "--json", str(report_path)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "IRONCLAW_IMAGE_CACHE": str(sandbox_image_cache)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every probe contained" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["all_contained"] is True and report["runtime"] == "runsc"
    assert report["image_digest"] == sandbox_image.digest
    assert report["runtime_version"] and report["kernel"]
    assert all(o["contained"] for o in report["observations"])
