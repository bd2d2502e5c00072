#!/usr/bin/env bash
# Entry point for a fresh Debian machine: install the few system packages the
# project needs (when missing, and when we may), then hand over to make.
#   ./dev.sh run    set up and start the control plane in dev mode
#   ./dev.sh test   set up and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

# Keep this list in step with what the suite and the daemon use.
# - runsc (gVisor), runc, crun: the sandbox runtimes; `--runtime auto` picks the
#   strongest present, and the suite runs the sandbox tests under each.
# - binutils: PyInstaller needs objdump and strip to freeze the agent image.
# - busybox-static, gcc, libc6-dev: the red-team harness's attacker toolkit (a static
#   busybox and a probe compiled static).
# - ngircd: a real IRC server the IRC channel's tests talk to.
# - prosody: a real XMPP server the XMPP channel's tests talk to (run from a generated
#   configuration on a loopback port; the system service is not started).
# - dovecot-imapd, opensmtpd: real IMAP and SMTP servers the email channel's tests talk
#   to (same: generated configurations, loopback ports, no system service).
# - e2fsprogs, mount, kmod: the sandboxes' disk caps; each workspace and outbound
#   directory is a loop-mounted ext4 image (mkfs.ext4, mount/umount/losetup, and
#   modprobe for the loop driver where it is a module).
# - cmake, g++: llama-cpp-python (the local model server the real-model test and
#   docs/operations.md's air-gapped setup use) builds from source.
# - chromium, chromium-driver: the web console's tests run in a real browser, driven by
#   selenium through this chromedriver (selenium must never download a browser).
# - systemd: systemd-analyze checks deploy/systemd's unit (verify, and its security score).
# - mmdebstrap, podman, buildah: the control-plane image and the installer's test
#   container are built from Debian's packages, never pulled (make deploy-image,
#   make deploy-test).
# - wrk: the api benchmark's external load generator (python -m bench api).
APT_PACKAGES=(make python3 python3-venv binutils runsc runc crun busybox-static gcc
              libc6-dev ngircd prosody dovecot-imapd opensmtpd e2fsprogs mount kmod
              cmake g++ chromium chromium-driver systemd mmdebstrap podman buildah wrk)

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
        # Install packages without starting their services (ngircd would otherwise
        # start a system IRC server): policy-rc.d 101 means "do not start".
        policy=/usr/sbin/policy-rc.d
        ours=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
        fi
        status=0
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
        if [ "$ours" -eq 1 ]; then rm -f "$policy"; fi
        [ "$status" -eq 0 ] || exit "$status"
    else
        echo "dev.sh: missing system packages: ${missing[*]} (run as root, or install them)" >&2
    fi
fi

# The disk caps need loop devices. Kernels that build the driver as a module load it
# on the first mount; a container host may need it loaded up front.
if [ "$(id -u)" -eq 0 ] && [ ! -e /dev/loop-control ] && command -v modprobe >/dev/null 2>&1; then
    modprobe loop || echo "dev.sh: cannot load the loop driver: OCI sandboxes' disk caps" \
        "will fail (set sandbox_disk caps to 0 to run without them)" >&2
fi

target=${1:-run}
shift || true
exec make "$target" "$@"
