"""The image source OCI isolators launch from: the image pinned in the state directory.

At start the control plane calls :meth:`PinnedImage.prepare` (on a worker thread it
may build the image when none is pinned yet, with progress in the log). Before every
launch :meth:`PinnedImage.verified` re-hashes the rootfs against the pin: a rootfs
changed since it was pinned stops the launch (fails closed) instead of running.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from .image import ImageError, ensure_image, load_pinned, verify_image_async
from .oci import VerifiedImage

__all__ = ["ImageNotPinned", "PinnedImage"]


class ImageNotPinned(ImageError):
    """No image is pinned in this state directory: nothing may launch."""

logger = logging.getLogger(__name__)


class PinnedImage:
    def __init__(self, state_dir: Path, *, cache_dir: Path | None = None,
                 refresh_stale: bool = False) -> None:
        """``refresh_stale``: rebuild and re-pin at start when the installed sources
        differ from the pinned image's (dev mode: an edit shows up on restart)."""
        self._state_dir = state_dir
        self._cache_dir = cache_dir
        self._refresh_stale = refresh_stale

    async def prepare(self) -> VerifiedImage:
        """Verify the pinned image, building and pinning one first if there is none."""
        image = await trio.to_thread.run_sync(
            lambda: ensure_image(self._state_dir, cache_dir=self._cache_dir,
                                 progress=lambda line: logger.info("sandbox image: %s", line),
                                 refresh_stale=self._refresh_stale))
        return VerifiedImage(image.rootfs, tuple(image.entrypoint), image.digest)

    async def verified(self) -> VerifiedImage:
        pinned = await trio.to_thread.run_sync(load_pinned, self._state_dir)
        if pinned is None:
            raise ImageNotPinned(
                f"no sandbox image is pinned in {self._state_dir}; run "
                f"`ironclaw-controlplane build-sandbox --state-dir {self._state_dir}`")
        await verify_image_async(pinned.rootfs, pinned.digest)
        return VerifiedImage(pinned.rootfs, tuple(pinned.entrypoint), pinned.digest)
