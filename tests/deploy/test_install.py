"""deploy/install.sh in a fresh Debian bookworm container (built by mmdebstrap, never
pulled): it installs the runtimes and the built wheel, writes the config, runs init;
a second run changes nothing; a message then makes the round trip through the API; and
--uninstall keeps the data unless --purge. Long: minutes and the network (Debian's
packages, and PyPI for the wheelhouse). ``make deploy-test`` runs it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .debian import base_image, podman, require_tools

pytestmark = [pytest.mark.long, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
set -euo pipefail
export PIP_FIND_LINKS=/wheels PIP_NO_INDEX=1
wheel=$(ls /wheels/ironclaw-*.whl)
SECONDS=0
/src/deploy/install.sh --wheel "$wheel"
echo "INSTALL_SECONDS $SECONDS"
/src/deploy/install.sh --wheel "$wheel" > /tmp/second.log
# A second run installs no Debian package (its only "installing" line is the wheel's).
if grep "^install.sh: installing" /tmp/second.log | grep -qv " into "; then
    echo "the second run installed packages again"; exit 1
fi
test "$(stat -c %a /etc/ironclaw/owner.token)" = 600
test "$(stat -c %a /var/lib/ironclaw)" = 700 -o "$(stat -c %a /var/lib/ironclaw)" = 711
export IRONCLAW_API_TOKEN=$(cat /etc/ironclaw/owner.token)
# The test's agent talks to the offline mock model, which production serves only on request.
sed -i 's/^mock_model = false$/mock_model = true/' /etc/ironclaw/config.toml
grep -qx "mock_model = true" /etc/ironclaw/config.toml
ironclaw-controlplane --config /etc/ironclaw/config.toml > /tmp/daemon.log 2>&1 &
daemon=$!
/src/tests/deploy/round_trip.sh || { tail -20 /tmp/daemon.log; exit 1; }
kill -TERM "$daemon"; wait "$daemon" || true
/src/deploy/install.sh --uninstall
test -d /var/lib/ironclaw -a -f /etc/ironclaw/config.toml
test ! -e /opt/ironclaw -a ! -e /etc/systemd/system/ironclaw-controlplane.service
/src/deploy/install.sh --uninstall --purge
test ! -e /var/lib/ironclaw -a ! -e /etc/ironclaw
echo ROUND_TRIP_OK
"""


def _wheelhouse(tmp_path: Path) -> Path:
    """The wheel of this checkout and every dependency's, for an offline install."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                    str(wheels), f"{ROOT}[sandbox]"], check=True, timeout=1800)
    return wheels


def test_install_round_trip_uninstall_in_fresh_bookworm(tmp_path: Path) -> None:
    require_tools()
    image = base_image()
    wheels = _wheelhouse(tmp_path)
    started = time.monotonic()
    result = podman("run", "--rm", "--privileged", "-v", f"{ROOT}:/src:ro",
                    "-v", f"{wheels}:/wheels:ro", image, "bash", "-c", SCRIPT, check=False)
    seconds = time.monotonic() - started
    print(result.stdout[-4000:])
    assert result.returncode == 0 and "ROUND_TRIP_OK" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-3000:])
    print(f"install, round trip and uninstall in {seconds:.0f} s")
