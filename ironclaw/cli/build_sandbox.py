"""``ironclaw-controlplane build-sandbox``: build the sealed sandbox image and pin it.

Builds the rootfs every sandbox runs from this installation's own code (or reuses the
cached build for the same inputs), then pins its digest in the state directory, where
every launch checks it. ``--force`` rebuilds even when a cached image exists, which is
also how a damaged cached or pinned image is replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ironclaw.host.isolation.image import (
    ImageError,
    build_image,
    default_cache_dir,
    pin_image,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironclaw-controlplane build-sandbox",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true",
                        help="pin in the development state directory (./state), as the "
                             "daemon's --dev uses")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory to pin the image in (default: ./state with "
                             "--dev, /var/lib/ironclaw otherwise)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where built images live (default {default_cache_dir()}; "
                             "env IRONCLAW_IMAGE_CACHE)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if an image for these inputs is cached")
    parser.add_argument("--no-pin", action="store_true",
                        help="build (or check the cache) without pinning")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of progress lines")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # The same default as the daemon's, so that the pin lands where it will look.
    state_dir = (args.state_dir or (Path("state") if args.dev else Path("/var/lib/ironclaw"))
                 ).resolve()

    def progress(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        outcome = build_image(cache_dir=args.cache_dir, force=args.force, progress=progress)
        pinned = None
        if not args.no_pin:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            pinned = pin_image(state_dir, outcome.image)
    except (ImageError, OSError) as exc:
        print(f"ironclaw-controlplane build-sandbox: {exc}", file=sys.stderr)
        return 1
    image = outcome.image
    if args.json:
        print(json.dumps({
            "digest": image.digest, "rootfs": str(image.rootfs),
            "size_bytes": image.size_bytes, "entrypoint": list(image.entrypoint),
            "cached": outcome.cached, "seconds": round(outcome.seconds, 2),
            "inputs_key": image.inputs_key, "built_at": image.built_at,
            "pinned": str(pinned) if pinned else None}, sort_keys=True))
        return 0
    print(f"digest     sha256:{image.digest}")
    print(f"rootfs     {image.rootfs}")
    print(f"size       {image.size_bytes / 1e6:.1f} MB")
    print(f"{'cache hit' if outcome.cached else 'built in'}  {outcome.seconds:.1f} s")
    print(f"entrypoint {' '.join(image.entrypoint)}")
    print(f"pinned in  {pinned}" if pinned else "not pinned (--no-pin)")
    return 0
