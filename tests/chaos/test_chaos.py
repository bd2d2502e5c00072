"""The chaos harness's short form: under process and runsc (the production runtime),
webhook chats go on while the control plane is killed (SIGKILL) mid-turn, mid-delivery
and during a sandbox start and restarted, agents are killed, and one is frozen
(SIGSTOP) until the sweeper acts. Every accepted event must be answered exactly once
(one idempotency key each), with no stray reply, nothing left behind and inbound pruned.

Per runtime that is at least 7 control-plane kills (5 plane faults, two of which kill
twice) and 10 agent kills. The same run under runc is a long form (``make chaos`` runs
it, and the full harness, with over 100 control-plane kills under runsc and the recovery
times: bench/chaos.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.chaos_scenario import ChaosPlan, run_scenario
from ironclaw.host.isolation.image import SandboxImage
from ironclaw.host.isolation.reconcile import clear_runtime_state

PLANE_FAULTS, AGENT_KILLS, STOPS = 5, 10, 1
RUNTIMES = [pytest.param("process", id="process"),
            pytest.param("runc", marks=[pytest.mark.runc, pytest.mark.long], id="runc"),
            pytest.param("runsc", marks=pytest.mark.runsc, id="runsc")]


@pytest.fixture
def image_cache(request: pytest.FixtureRequest) -> Path | None:
    runtime = request.node.callspec.params["runtime"]
    if runtime == "process":
        return None
    if os.geteuid() != 0:
        pytest.skip("OCI runtimes need root here")
    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed on this host")
    image: SandboxImage = request.getfixturevalue("sandbox_image")  # built once
    cache: Path = request.getfixturevalue("sandbox_image_cache")
    assert image.rootfs.is_relative_to(cache)
    return cache


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_nothing_accepted_is_lost_or_doubled_through_kills(
        runtime: str, image_cache: Path | None, sandbox_tmp: Path) -> None:
    plan = ChaosPlan(runtime, PLANE_FAULTS, AGENT_KILLS, STOPS, chats=3, seed=13,
                     drain_timeout_s=90.0)
    try:
        outcome = await run_scenario(plan, sandbox_tmp, image_cache=image_cache,
                                     log=lambda _: None)
    finally:
        clear_runtime_state(sandbox_tmp / "state")  # a failed run must not leave sandboxes
    summary = json.dumps(outcome.summary(), indent=1)
    assert outcome.problems() == [], summary
    assert outcome.stalls == [], summary
    # The faults were really made.
    assert sum(outcome.plane_kills.values()) >= PLANE_FAULTS + 2, summary
    assert {"turn", "delivery", "start"} <= set(outcome.plane_kills), summary
    assert outcome.agent_kills == AGENT_KILLS, summary
    assert len(outcome.stops) == STOPS, summary
    assert outcome.events > 0 and outcome.recovery_s, summary
