#!/usr/bin/env bash
# Build the control-plane OCI image from Debian's packages and this checkout's wheel,
# with no base image pulled from anywhere:
#   1. pip builds the wheelhouse (this checkout + its dependencies + PyInstaller);
#   2. mmdebstrap makes a bookworm root filesystem with the runtimes, Python, and the
#      wheels installed offline into /opt/ironclaw/venv;
#   3. buildah commits it as one layer, with the entry point and volumes set.
# Usage: deploy/image/build.sh [TAG]   (default localhost/ironclaw-controlplane:VERSION)
# Prints the image digest; pin it in deploy/compose.yaml's image (name@sha256:...).
#
# Reproducible: SOURCE_DATE_EPOCH is the last commit's time, so mmdebstrap sets every
# mtime to it, and no .pyc is written (Python compiles at first import instead). Two
# builds from the same checkout and the same Debian mirror state give the same digest.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VERSION=$(python3 -c "import re,sys; print(re.search(r'__version__ = \"(.+)\"', open('$ROOT/ironclaw/__init__.py').read())[1])")
TAG=${1:-localhost/ironclaw-controlplane:$VERSION}
WORK=${IRONCLAW_IMAGE_WORK:-/var/tmp/ironclaw-image}
PYTHON=${PYTHON:-python3}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$WORK"
rm -rf "$WORK/wheels"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$WORK/wheels" "$ROOT[sandbox]"

# libpython3.11: PyInstaller freezes the agent against it (bookworm's Python).
PACKAGES=python3,python3-venv,libpython3.11,runsc,runc,e2fsprogs,mount,kmod,binutils,ca-certificates
# The hooks run outside the new root with it as $1: copy the wheels in, install them
# with the image's own Python, remove the copies. The state and cache directories get
# their modes here: a new volume takes the mode of the image's directory (init refuses a
# state directory others can read), and sandboxes must enter the cache. The cache is no
# volume: it stays in the container's own file system (docs/deploy.md says why).
mmdebstrap --variant=minbase --include="$PACKAGES" \
    --customize-hook='mkdir -p "$1/tmp/wheels"' \
    --customize-hook="sync-in $WORK/wheels /tmp/wheels" \
    --customize-hook='chroot "$1" python3 -m venv /opt/ironclaw/venv' \
    --customize-hook='chroot "$1" env PYTHONDONTWRITEBYTECODE=1 /opt/ironclaw/venv/bin/pip install --quiet --no-compile --no-index --find-links /tmp/wheels "ironclaw[sandbox]"' \
    --customize-hook='rm -rf "$1/tmp/wheels" "$1/root/.cache" "$1/var/cache/apt"/*.bin "$1/var/lib/apt/lists"/*' \
    --customize-hook='mkdir -m 0700 "$1/var/lib/ironclaw"; mkdir -m 0711 "$1/var/cache/ironclaw"' \
    --customize-hook='ln -sf /opt/ironclaw/venv/bin/ironclaw-controlplane /opt/ironclaw/venv/bin/ironctl "$1/usr/local/bin/"' \
    bookworm "$WORK/rootfs.tar" http://deb.debian.org/debian

# buildah commits with every time in the image (files and the config's "created") set
# to SOURCE_DATE_EPOCH, so the digest depends on the contents alone.
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" > /dev/null 2>&1 || true' EXIT
buildah add --quiet "$ctr" "$WORK/rootfs.tar" /
buildah config \
    --entrypoint '["/usr/local/bin/ironclaw-controlplane"]' \
    --cmd '["--config", "/etc/ironclaw/config.toml"]' \
    --volume /var/lib/ironclaw --port 8787 \
    --label "org.opencontainers.image.version=$VERSION" "$ctr"
buildah commit --quiet --timestamp "$SOURCE_DATE_EPOCH" "$ctr" "$TAG" > /dev/null
podman image inspect --format '{{.Digest}}' "$TAG"
