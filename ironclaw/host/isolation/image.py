"""The sealed sandbox image, as the rest of the control plane uses it.

One image serves every sandbox: the frozen agent and the few libraries it needs, no
shell, no interpreter, nothing writable (see ``rootfs`` and ``imagebuild`` for how it
is made). Its digest is pinned in the state directory by ``build-sandbox`` or by the
first ``ensure_image``, and an isolator checks the rootfs against the pin before every
launch with ``verify_image_async``; a mismatch stops the launch.

    image = ensure_image(state_dir)                 # at start, on a worker thread
    await verify_image_async(image.rootfs, image.digest)   # before every launch
    argv = image.entrypoint                         # inside the rootfs

A pinned image that fails verification is never rebuilt behind the operator's back: a
changed rootfs is evidence, and ``build-sandbox`` is how a human re-pins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .imagebuild import (
    ENTRYPOINT,
    BuildOutcome,
    Progress,
    SandboxImage,
    build_image,
    compute_inputs,
    default_cache_dir,
    write_atomic,
)
from .manifest import ImageDigestMismatch, ImageError, verify_image, verify_image_async
from .rootfs import ImageBuildError

__all__ = [
    "ENTRYPOINT",
    "PIN_FILE",
    "BuildOutcome",
    "ImageBuildError",
    "ImageDigestMismatch",
    "ImageError",
    "SandboxImage",
    "build_image",
    "default_cache_dir",
    "ensure_image",
    "load_pinned",
    "pin_image",
    "verify_image",
    "verify_image_async",
]

logger = logging.getLogger(__name__)

PIN_FILE = "sandbox-image.json"
REBUILD_HINT = ("run `ironclaw-controlplane build-sandbox --force` to rebuild the image "
                "and pin it again")


def pin_image(state_dir: Path, image: SandboxImage) -> Path:
    """Record ``image`` as the one this state directory's sandboxes run (0600)."""
    pin = {"digest": image.digest, "rootfs": str(image.rootfs),
           "size_bytes": image.size_bytes, "entrypoint": list(image.entrypoint),
           "built_at": image.built_at, "inputs": {"key": image.inputs_key}}
    path = state_dir / PIN_FILE
    write_atomic(path, json.dumps(pin, indent=1, sort_keys=True).encode() + b"\n",
                  mode=0o600)
    return path


def load_pinned(state_dir: Path) -> SandboxImage | None:
    """The pinned image, or None when there is no pin. A pin that cannot be read is
    an error, never taken for "no pin" (that would let a launch start unpinned)."""
    path = state_dir / PIN_FILE
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the image pin {path}: {exc}") from None
    try:
        digest = str(raw["digest"])
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("digest is not 64 hex digits")
        return SandboxImage(digest=digest, rootfs=Path(raw["rootfs"]),
                            size_bytes=int(raw["size_bytes"]),
                            entrypoint=tuple(str(arg) for arg in raw["entrypoint"]),
                            inputs_key=str(raw["inputs"]["key"]),
                            built_at=str(raw["built_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"the image pin {path} is malformed: {exc}") from None


def ensure_image(state_dir: Path, *, cache_dir: Path | None = None,
                 progress: Progress | None = None, refresh_stale: bool = False
                 ) -> SandboxImage:
    """The image this state directory's sandboxes run, verified. Blocking (a first
    build takes tens of seconds): call it on a worker thread from Trio.

    - No pin: build (or reuse the cache) and pin.
    - A pin whose rootfs verifies: use it. If the sources changed since it was built it
      is stale, not unsafe: a warning, or with ``refresh_stale`` a rebuild and re-pin.
    - A pin whose rootfs is gone (a cleared cache): rebuild, and accept the result only
      if it reproduces the pinned digest exactly.
    - A pin whose rootfs does not verify: ``ImageDigestMismatch``, never a rebuild.
    """
    pinned = load_pinned(state_dir)
    if pinned is None:
        image = build_image(cache_dir=cache_dir, progress=progress).image
        pin_image(state_dir, image)
        return image
    if not pinned.rootfs.exists():
        outcome = build_image(cache_dir=cache_dir, progress=progress)
        if outcome.image.digest != pinned.digest:
            raise ImageDigestMismatch(
                f"the pinned sandbox image {pinned.rootfs} is gone, and rebuilding gave "
                f"sha256:{outcome.image.digest[:16]}..., not the pinned "
                f"sha256:{pinned.digest[:16]}...; {REBUILD_HINT}")
        pin_image(state_dir, outcome.image)  # the same digest, maybe in another cache
        return outcome.image
    try:
        verify_image(pinned.rootfs, pinned.digest)
    except ImageDigestMismatch as exc:
        raise ImageDigestMismatch(f"{exc}; {REBUILD_HINT}") from None
    if _is_stale(pinned):
        if refresh_stale:
            image = build_image(cache_dir=cache_dir, progress=progress).image
            pin_image(state_dir, image)
            return image
        logger.warning("the pinned sandbox image was built from other sources than the "
                       "installed ones; run `ironclaw-controlplane build-sandbox` to "
                       "rebuild and pin it")
    return pinned


def _is_stale(pinned: SandboxImage) -> bool:
    try:
        return compute_inputs().key != pinned.inputs_key
    except (ImageError, OSError):
        return False  # the sources are not readable here: nothing to compare against
