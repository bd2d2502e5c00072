"""The launch gate: a runtime invocation runs only while the control plane that
spawned it holds its gate open. A plane killed between its fork and the child's
``execve`` (when the child still carries the plane's command line, which no reconcile
scan looks for) leaves a child that can never run the runtime."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ironclaw.host.isolation.oci import _open_gate
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind

# A "runtime" that only says it ran: the gate's shell executes it with the run argv.
SAYS_IT_RAN = OciRuntime(RuntimeKind.RUNC, "/bin/echo", Path("/nonexistent/root"))


def _run_gated(gate: Path) -> subprocess.CompletedProcess[bytes]:
    argv = SAYS_IT_RAN.gated_run_argv(gate.parent, "ic-ses_0123", gate)
    return subprocess.run(argv, capture_output=True, timeout=30, check=False,
                          stdin=subprocess.DEVNULL)


def test_a_live_plane_opens_its_gate(tmp_path: Path) -> None:
    gate = tmp_path / "launch.gate"
    held = _open_gate(gate)
    try:
        done = _run_gated(gate)
    finally:
        os.close(held)
    assert done.returncode == 0
    assert done.stdout.split()[-3:] == [b"--bundle", os.fsencode(tmp_path), b"ic-ses_0123"]


def test_the_word_dies_with_the_plane_that_wrote_it(tmp_path: Path) -> None:
    """The plane wrote ``go`` and died before its child opened the gate: the word is
    gone with the FIFO's last holder. The child waits for a writer; the only one that
    comes (here: a test that opens and closes it, as nothing else can reach a gate
    whose bundle is removed) brings no word, and the runtime never runs."""
    gate = tmp_path / "launch.gate"
    os.close(_open_gate(gate))  # the plane dies
    argv = SAYS_IT_RAN.gated_run_argv(tmp_path, "ic-ses_0123", gate)
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(os.open(gate, os.O_WRONLY))  # blocks until the child has opened it
    out, _ = child.communicate(timeout=30)
    assert child.returncode != 0
    assert out == b""


def test_a_removed_gate_runs_nothing(tmp_path: Path) -> None:
    done = _run_gated(tmp_path / "gone.gate")
    assert done.returncode != 0
    assert done.stdout == b""
