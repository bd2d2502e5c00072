"""The second red-team family, run for real: a sandbox attacks the host's readers,
sockets and disk while a bystander session is timed, under runsc and runc. The short
form must be contained; each negative control (a defence switched off on purpose)
must turn its probe red, so the family can never go quietly blind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ironclaw.host.isolation.image import SandboxImage
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.redteam.hostattack import (
    HOST_WEAKENINGS,
    HostAttackReport,
    HostObservation,
    render_host_table,
    run_host_attacks,
)
from ironclaw.redteam.hostprobes import host_probe_plan

# A run engages a fresh session per probe; on a loaded 2-core machine the short form
# under runsc has taken up to four minutes, past the suite's default of 300 s.
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here"),
              pytest.mark.timeout(900)]

RUNTIMES = [pytest.param(RuntimeKind.RUNSC, marks=pytest.mark.runsc, id="runsc"),
            pytest.param(RuntimeKind.RUNC, marks=pytest.mark.runc, id="runc")]
# The suite runs the short form under runsc, the production runtime; under runc it is
# a long form (make redteam-full), beside the whole family under both.
SHORT_FORM_RUNTIMES = [RUNTIMES[0], pytest.param(RuntimeKind.RUNC, marks=[
    pytest.mark.runc, pytest.mark.long], id="runc")]
# Probes red for a known reason: they must show red, honestly, until it is fixed (and
# the whole-family test fails when one turns green, so that this list is kept true).
NOT_YET_DEFENDED: dict[str, str] = {}
FLOODS = ("host.connect_flood.model", "host.connect_flood.egress", "host.connect_flood.wake")


async def _attack(kind: RuntimeKind, sandbox_tmp: Path, cache: Path, **options: object
                  ) -> HostAttackReport:
    if OciRuntime.find(kind, sandbox_tmp) is None:
        pytest.skip(f"{kind.value} is not installed on this host")
    return await run_host_attacks(kind, sandbox_tmp, image_cache=cache,
                                  **options)  # type: ignore[arg-type]


# Red for timing alone: the bystander's p99 or the loop's lag, figures a shared
# 2-core machine disturbs by itself (stalls of 250 to 550 ms were seen in windows whose
# probe did nothing to the host, its mknod refused).
TIMING_REASONS = ("bystander p99 ", "the event loop stalled ")


def _timing_only(o: HostObservation) -> bool:
    return not o.contained and all(reason.startswith(TIMING_REASONS)
                                   for reason in o.verdict.split("; "))


@pytest.mark.parametrize("kind", SHORT_FORM_RUNTIMES)
async def test_the_short_form_is_contained(kind: RuntimeKind, sandbox_tmp: Path,
                                           sandbox_image: SandboxImage,
                                           sandbox_image_cache: Path) -> None:
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache, quick=True)
    # A probe red on timing alone runs once more, in a run of its own: a real defect
    # is red again, a noisy moment of the machine is not.
    noisy = tuple(o.probe for o in report.observations if _timing_only(o))
    if noisy:
        again = await _attack(kind, sandbox_tmp / "again", sandbox_image_cache, only=noisy)
        assert again.contained, render_host_table(report) + "\n" + render_host_table(again)
    assert all(o.contained or o.probe in noisy for o in report.observations), \
        render_host_table(report)
    expected = {p.name for p in host_probe_plan(report.hold_s) if p.quick}
    assert {o.probe for o in report.observations} == expected
    assert report.baseline["bystander_replies"] > 0
    for o in report.observations:
        assert o.figures["bystander_replies"] > 0, o
        assert o.figures["rss_growth_mib"] < 100, o
        assert o.probe in noisy or o.figures["loop_lag_max_ms"] <= 250, o
    quarantined = {o.probe for o in report.observations if o.figures["quarantined"]}
    assert "host.schema.generated_column" in quarantined


# Which controls can show anything where: gVisor implements no AF_VSOCK even when
# seccomp allows it, and a FIFO made inside gVisor never reaches the host.
CONTROLS = [
    pytest.param(kind, weakening, marks=[mark, *([] if quick else [pytest.mark.long])],
                 id=f"{kind.value}-{weakening}")
    for kind, mark, weakening, quick in (
        (RuntimeKind.RUNC, pytest.mark.runc, "untrusted-reads", True),
        (RuntimeKind.RUNC, pytest.mark.runc, "schema-check", False),
        (RuntimeKind.RUNC, pytest.mark.runc, "socket-families", False),
        (RuntimeKind.RUNC, pytest.mark.runc, "memfd-exec", False),
        (RuntimeKind.RUNC, pytest.mark.runc, "disk-cap", False),
        (RuntimeKind.RUNC, pytest.mark.runc, "socket-cap", False),
        (RuntimeKind.RUNSC, pytest.mark.runsc, "socket-cap", False),
        (RuntimeKind.RUNSC, pytest.mark.runsc, "schema-check", False),
        (RuntimeKind.RUNSC, pytest.mark.runsc, "memfd-exec", False))]


@pytest.mark.parametrize(("kind", "weakening"), CONTROLS)
async def test_a_weakened_defence_turns_its_probe_red(
        kind: RuntimeKind, weakening: str, sandbox_tmp: Path, sandbox_image: SandboxImage,
        sandbox_image_cache: Path) -> None:
    probe = HOST_WEAKENINGS[weakening]
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache, only=(probe,),
                           weakening=weakening)
    red = {o.probe for o in report.observations if not o.contained}
    assert probe in red, render_host_table(report)


@pytest.mark.long
@pytest.mark.parametrize("kind", RUNTIMES)
async def test_the_whole_family(kind: RuntimeKind, sandbox_tmp: Path,
                                sandbox_image: SandboxImage,
                                sandbox_image_cache: Path) -> None:
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache, quick=False)
    table = render_host_table(report)
    assert {o.probe for o in report.observations} >= {p.name for p in
                                                      host_probe_plan(report.hold_s)}
    known = set(NOT_YET_DEFENDED)
    for o in report.observations:
        if o.probe in known:
            assert not o.contained, f"{o.probe} now holds: update the known reds\n{table}"
    noisy = tuple(o.probe for o in report.observations
                  if o.probe not in known and _timing_only(o))
    if noisy:
        again = await _attack(kind, sandbox_tmp / "again", sandbox_image_cache, only=noisy)
        assert again.contained, table + "\n" + render_host_table(again)
    assert all(o.contained or o.probe in known or o.probe in noisy
               for o in report.observations), table


@pytest.mark.long
@pytest.mark.parametrize("kind", RUNTIMES)
async def test_a_connection_flood_fails_only_itself(kind: RuntimeKind, sandbox_tmp: Path,
                                                    sandbox_image: SandboxImage,
                                                    sandbox_image_cache: Path) -> None:
    """Past the host's per-socket cap the attacker's connects are refused (runc) or hang
    in its own sandbox (runsc); either way its tally says the cap stopped it short, the
    bystander carries on, and the harness ends the attacker without waiting it out."""
    report = await _attack(kind, sandbox_tmp, sandbox_image_cache, only=FLOODS)
    table = render_host_table(report)
    noisy = tuple(o.probe for o in report.observations if _timing_only(o))
    if noisy:
        again = await _attack(kind, sandbox_tmp / "again", sandbox_image_cache, only=noisy)
        assert again.contained, table + "\n" + render_host_table(again)
    assert {o.probe for o in report.observations} == set(FLOODS), table
    assert all(o.contained or o.probe in noisy for o in report.observations), table
    for o in report.observations:
        assert "made and held" in o.observed, table  # the probe's own tally, not silence
        assert o.figures["rss_growth_mib"] < 100, o


@pytest.mark.runsc
def test_ironctl_refuses_a_weakening_of_the_other_family(sandbox_tmp: Path) -> None:
    if OciRuntime.find(RuntimeKind.RUNSC, sandbox_tmp) is None:
        pytest.skip("runsc is not installed on this host")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ironctl"), "redteam", "--runtime", "runsc",
         "--family", "host", "--weaken", "network"], capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 2
    assert "--weaken for the host family must be one of" in done.stdout + done.stderr
    assert "untrusted-reads" in done.stdout + done.stderr
