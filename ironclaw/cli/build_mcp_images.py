"""``ironclaw-controlplane build-mcp-images``: build and pin the MCP servers' images.

For every ``[[mcp.servers]]`` entry of the config file, the image its ``image`` table
describes (an interpreter, the named distributions from this installation's
environment, the named programs), content-addressed in the image cache and pinned in
the state directory, where every launch of that server re-hashes it. The daemon
builds missing ones at start; this command does it ahead, and ``--force`` rebuilds
(which is also how a damaged image is replaced).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ironclaw.host.config.file import ConfigFileError, load_config_file
from ironclaw.host.isolation.image import ImageError, default_cache_dir
from ironclaw.host.mcp.sandboxed import ensure_images

PROG = "ironclaw-controlplane build-mcp-images"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="the daemon's config file, whose [[mcp.servers]] are built")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory to pin the images in (default: the config "
                             "file's state_dir, else /var/lib/ironclaw)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where built images live (default {default_cache_dir()}; "
                             "env IRONCLAW_IMAGE_CACHE)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if an image for these inputs is cached")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of progress lines")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def progress(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        values = load_config_file(args.config)
        mcp = values.get("mcp")
        entries = [entry.server for entry in mcp.servers] if mcp is not None else []
        state_dir = (args.state_dir or values.get("state_dir")
                     or Path("/var/lib/ironclaw")).resolve()
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        images = ensure_images(state_dir, entries, cache_dir=args.cache_dir,
                               force=args.force, progress=progress)
    except (ConfigFileError, ImageError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    built = {entry.name: image for entry, image in zip(entries, images, strict=True)}
    if args.json:
        print(json.dumps({"state_dir": str(state_dir), "servers": {
            name: image.record() for name, image in built.items()}}, sort_keys=True))
        return 0
    if not built:
        print("the config file lists no MCP server")
    for name, image in built.items():
        print(f"{name:<16} sha256:{image.digest[:16]}...  {image.size_bytes / 1e6:.1f} MB  "
              f"{image.rootfs}")
    return 0
