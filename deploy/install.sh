#!/usr/bin/env bash
# Install the IronClaw control plane on Debian (bookworm or later), as root.
#
#   deploy/install.sh [--wheel FILE] [--no-start]     install or update (idempotent)
#   deploy/install.sh --uninstall [--purge]           remove; --purge also deletes data
#
# From a checkout (the default: the checkout this script sits in) or a built wheel
# (--wheel). Python packages come from PyPI, or from a local wheel directory named by
# PIP_FIND_LINKS (add PIP_NO_INDEX=1 for an air-gapped host). docs/deploy.md explains
# every step.
set -euo pipefail

PREFIX=/opt/ironclaw
VENV=$PREFIX/venv
ETC=/etc/ironclaw
STATE=/var/lib/ironclaw
CACHE=/var/cache/ironclaw
UNIT=ironclaw-controlplane.service
UNIT_PATH=/etc/systemd/system/$UNIT
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/.." && pwd)
# The runtimes (runsc first), what the disk caps use (e2fsprogs, mount, kmod), and what
# freezing the sealed sandbox image needs (binutils: PyInstaller's objdump and strip).
APT_PACKAGES=(python3 python3-venv runsc runc e2fsprogs mount kmod binutils ca-certificates)

wheel=""
start=1
uninstall=0
purge=0
while (($#)); do
    case "$1" in
        --wheel) wheel=$(realpath "$2"); shift ;;
        --no-start) start=0 ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "install.sh: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
[ -r /etc/debian_version ] || { echo "install.sh: this installer is for Debian" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ]; }

if ((uninstall)); then
    if have_systemd && systemctl list-unit-files "$UNIT" >/dev/null 2>&1; then
        systemctl disable --now "$UNIT" || true
    fi
    rm -f "$UNIT_PATH" /usr/local/bin/ironclaw-controlplane /usr/local/bin/ironctl \
        /etc/modules-load.d/ironclaw.conf
    have_systemd && systemctl daemon-reload || true
    rm -rf "$PREFIX"
    if ((purge)); then
        rm -rf "$ETC" "$STATE" "$CACHE"
        say "removed, with the configuration and all data (--purge)"
    else
        say "removed; kept $ETC and $STATE (the data; --purge deletes them)"
    fi
    exit 0
fi

# 1. System packages (only those missing, so a second run installs nothing).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
apt_install "${APT_PACKAGES[@]}"
# PyInstaller links the agent against Python's shared library, named by its version.
apt_install "libpython$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# 2. The package, in its own venv, with the sandbox extra (PyInstaller freezes the agent).
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
target=${wheel:-$SOURCE}
say "installing $(basename "$target") into $VENV"
"$VENV/bin/pip" install --quiet --upgrade "${target}[sandbox]"
# The same version number may carry new code (a checkout): replace the package itself.
"$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$target"
ln -sf "$VENV/bin/ironclaw-controlplane" /usr/local/bin/ironclaw-controlplane
ln -sf "$VENV/bin/ironctl" /usr/local/bin/ironctl
mkdir -p "$PREFIX/docs"
cp "$SOURCE"/docs/*.md "$PREFIX/docs/" 2>/dev/null || true

# 3. Configuration: written once from the template, never overwritten.
install -d -m 0700 "$ETC"
if [ ! -e "$ETC/config.toml" ]; then
    install -m 0600 "$HERE/config.toml.example" "$ETC/config.toml"
    say "wrote $ETC/config.toml (edit it, then: systemctl restart $UNIT)"
fi
if [ ! -e "$ETC/environment" ]; then
    install -m 0600 /dev/null "$ETC/environment"
    echo "# Model credentials, e.g. ANTHROPIC_API_KEY=..., one per line (0600)." \
        > "$ETC/environment"
fi

# 4. The loop driver, for the disk caps (a module on some kernels).
install -d -m 0755 /etc/modules-load.d
echo loop > /etc/modules-load.d/ironclaw.conf
modprobe loop 2>/dev/null || true

# 5. init: state directory, master key, owner token (once), sealed image, checks.
# 0711: sandboxes reach their image under it from inside a user namespace (enter only).
install -d -m 0711 "$CACHE"
"$VENV/bin/ironclaw-controlplane" init \
    --config "$ETC/config.toml" --token-file "$ETC/owner.token"

# 6. The unit: installed, enabled and (re)started where systemd runs.
install -m 0644 "$HERE/systemd/$UNIT" "$UNIT_PATH"
if have_systemd; then
    systemctl daemon-reload
    systemctl enable "$UNIT" >/dev/null
    if ((start)); then
        systemctl restart "$UNIT"
        say "started $UNIT (journalctl -u $UNIT)"
    fi
else
    say "no systemd running here: unit installed at $UNIT_PATH, not started"
fi
say "done. The owner token is in $ETC/owner.token (0600): IRONCLAW_API_TOKEN=\$(cat $ETC/owner.token) ironctl status"
