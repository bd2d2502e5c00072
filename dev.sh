#!/usr/bin/env bash
# Entry point for a fresh Debian machine: install the few system packages the
# project needs (when missing, and when we may), then hand over to make.
#   ./dev.sh run    set up and start the control plane in dev mode
#   ./dev.sh test   set up and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

# Keep this list in step with what the suite and the daemon use. binutils: PyInstaller
# needs objdump and strip to freeze the sandbox agent (make image, and the tests).
APT_PACKAGES=(make python3 python3-venv binutils)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})) && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "dev.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "dev.sh: missing system packages: ${missing[*]} (run as root, or install them)" >&2
    fi
fi

target=${1:-run}
shift || true
exec make "$target" "$@"
