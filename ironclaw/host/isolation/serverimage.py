"""MCP server images: content-addressed, cached, pinned per server, re-hashed at launch.

The same discipline as the agent's image (``imagebuild``, ``image``), one image per
catalogue entry. A :class:`ServerRecipe` says what the entry's image holds (its
``image`` table: ``distributions`` and ``programs``); ``build_server_image`` assembles
it (``serverrootfs``), checks the seal (one interpreter allowed, nothing else), and
installs it in the shared cache under its digest:

    <cache>/sha256/<digest>/rootfs/  manifest.json  image.json
    <cache>/inputs/<inputs key>.json     which digest these inputs built

The inputs key hashes the recipe, the Python build, the installed versions of every
distribution copied, the programs' bytes and this builder's sources. The pin lives in
the state directory (``<state>/mcp-images/<server>.json``): ``ensure_server_image``
builds what is not pinned yet (or pinned from other inputs: the operator changed the
recipe or upgraded a package), and ``verified_server_image`` re-hashes the pinned
rootfs before every launch. A pinned rootfs that no longer matches is evidence, never
rebuilt quietly: the launch fails closed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from packaging.utils import canonicalize_name

from .imagebuild import (
    IMAGE_EPOCH,
    Progress,
    cache_lock,
    default_cache_dir,
    install_image,
    sha256_file,
    write_atomic,
)
from .manifest import (
    MANIFEST_FILE,
    ImageDigestMismatch,
    ImageError,
    canonical_manifest,
    manifest_digest,
    scan_rootfs,
    seal_violations,
    total_size,
    verify_image,
)
from .rootfs import ImageBuildError, remove_tree
from .serverrootfs import INTERPRETER, assemble_server_rootfs, distribution_closure

__all__ = ["ServerImage", "ServerRecipe", "build_server_image", "ensure_server_image",
           "verified_server_image"]

PIN_DIR = "mcp-images"
IMAGE_FILE = "image.json"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(==[A-Za-z0-9.+!_-]{1,40})?")
PROGRAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
MAX_ITEMS = 32
RECIPE_MODULES = ("serverimage.py", "serverrootfs.py", "server_boot.py", "rootfs.py",
                  "elf.py", "manifest.py")


@attrs.frozen
class ServerRecipe:
    """What one server's image holds: a catalogue entry's ``image`` table,
    ``python = ["mcp-server-git==2026.10.19"]`` (distributions, by name, optionally
    pinned to the version the build must find installed) and ``programs = ["git"]``."""

    name: str
    python: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> ServerRecipe:
        unknown = set(table) - {"python", "programs"}
        if unknown:
            raise ValueError(f"MCP server {name!r}: unknown image keys {sorted(unknown)}")
        return cls(name, _names(table.get("python", ()), REQUIREMENT, name),
                   _names(table.get("programs", ()), PROGRAM, name))

    def __attrs_post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"not a server name for an image: {self.name!r:.80}")
        if not self.python:
            raise ValueError(f"MCP server {self.name!r}: its image names no distribution")

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(entry.partition("==")[0] for entry in self.python)

    @property
    def pins(self) -> dict[str, str]:
        """Distribution (canonical name) -> the version the recipe pins."""
        return {canonicalize_name(name): version for name, _, version in
                (entry.partition("==") for entry in self.python) if version}


def _names(value: object, pattern: re.Pattern[str], server: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_ITEMS or not all(
            isinstance(item, str) and pattern.fullmatch(item) for item in value):
        raise ValueError(f"MCP server {server!r}: image lists must hold at most "
                         f"{MAX_ITEMS} plain names (python: name or name==version)")
    return tuple(sorted(set(value)))


@attrs.frozen
class ServerImage:
    digest: str
    rootfs: Path
    size_bytes: int
    console_scripts: Mapping[str, str]  # command -> "module:attr"
    programs: tuple[str, ...]  # absolute paths inside the image
    inputs_key: str = ""

    def record(self) -> dict[str, Any]:
        return {"digest": self.digest, "rootfs": str(self.rootfs),
                "size_bytes": self.size_bytes, "console_scripts": dict(self.console_scripts),
                "programs": list(self.programs), "inputs_key": self.inputs_key}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> ServerImage:
        digest = str(raw["digest"])
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("digest is not 64 hex digits")
        return cls(digest, Path(str(raw["rootfs"])), int(raw["size_bytes"]),
                   {str(k): str(v) for k, v in dict(raw["console_scripts"]).items()},
                   tuple(str(p) for p in raw["programs"]), str(raw.get("inputs_key", "")))


def recipe_inputs(recipe: ServerRecipe) -> tuple[str, dict[str, Any]]:
    """The inputs key and the record it hashes."""
    here = Path(__file__).resolve().parent
    record = {
        "format": 1,
        # What goes in, not whose it is: two servers with one recipe share an image.
        "recipe": {"python": recipe.python, "programs": recipe.programs},
        "python": {"version": sys.version, "executable": sha256_file(
            Path(sys.executable).resolve())},
        "distributions": {name: dist.version for name, dist in
                          distribution_closure(recipe.distributions).items()},
        "programs": {name: sha256_file(Path(found).resolve()) for name in recipe.programs
                     if (found := shutil.which(name))},
        "builder": {name: sha256_file(here / name) for name in RECIPE_MODULES},
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return key, record


def build_server_image(recipe: ServerRecipe, *, cache_dir: Path | None = None,
                       force: bool = False, progress: Progress | None = None) -> ServerImage:
    """The image for ``recipe`` as installed now: from the cache when it is there and
    verifies, built otherwise (always with ``force``). Blocking."""
    say = progress or (lambda _line: None)
    key, record = recipe_inputs(recipe)
    _check_pins(recipe, record["distributions"])
    cache = (cache_dir or default_cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache):
        if not force and (hit := _lookup(cache, key)) is not None:
            say(f"{recipe.name}: cached image sha256:{hit.digest[:16]}...; verifying")
            verify_image(hit.rootfs, hit.digest)
            return hit
        return _build_into(cache, recipe, key, record, say)


def _check_pins(recipe: ServerRecipe, installed: Mapping[str, str]) -> None:
    """The image copies what is installed: a pinned version must be that one."""
    for name, version in recipe.pins.items():
        if installed.get(name) != version:
            raise ImageBuildError(
                f"MCP server {recipe.name!r} pins {name}=={version}, but the control "
                f"plane's environment has {installed.get(name, 'none')}: install the "
                "pinned version there, or change the pin")


def _lookup(cache: Path, key: str) -> ServerImage | None:
    try:
        digest = json.loads((cache / "inputs" / f"{key}.json").read_text())["digest"]
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        meta = json.loads((cache / "sha256" / digest / IMAGE_FILE).read_text())
        return attrs.evolve(ServerImage.from_record(meta["image"]),
                            rootfs=cache / "sha256" / digest / "rootfs", inputs_key=key)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build_into(cache: Path, recipe: ServerRecipe, key: str, record: dict[str, Any],
                say: Progress) -> ServerImage:
    staging = Path(tempfile.mkdtemp(prefix=".tmp-mcp-", dir=cache))
    try:
        started = time.monotonic()
        say(f"{recipe.name}: assembling the rootfs (interpreter, "
            f"{', '.join(recipe.distributions)}{', ' if recipe.programs else ''}"
            f"{', '.join(recipe.programs)})...")
        image_dir = staging / "image"
        image_dir.mkdir()
        built = assemble_server_rootfs(image_dir / "rootfs", distributions=recipe.distributions,
                                       programs=recipe.programs, epoch=IMAGE_EPOCH)
        say(f"{recipe.name}: hashing...")
        entries = scan_rootfs(image_dir / "rootfs")
        problems = seal_violations(entries, built.executables, interpreter=INTERPRETER)
        if problems:
            raise ImageBuildError("the server image is not sealed: " + "; ".join(problems[:10]))
        manifest = canonical_manifest(entries)
        digest = manifest_digest(manifest)
        (image_dir / MANIFEST_FILE).write_bytes(manifest)
        (image_dir / MANIFEST_FILE).chmod(0o444)
        programs = tuple(sorted(p for p in built.executables if p.startswith("/usr/bin/")
                                and p != INTERPRETER))
        image = ServerImage(digest, Path(), total_size(entries), built.console_scripts,
                            programs, key)
        meta = {"image": image.record(), "distributions": built.distributions,
                "built_at": _now(), "build_seconds": round(time.monotonic() - started, 2),
                "inputs": {"key": key, **record}}
        (image_dir / IMAGE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        final = install_image(cache, staging, image_dir, digest)
        write_atomic(cache / "inputs" / f"{key}.json",
                     json.dumps({"digest": digest}).encode() + b"\n", mode=0o644)
        say(f"{recipe.name}: image sha256:{digest} ({image.size_bytes / 1e6:.1f} MB) "
            f"in {time.monotonic() - started:.1f} s")
        return attrs.evolve(image, rootfs=final / "rootfs")
    finally:
        remove_tree(staging)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- pins -----------------------------------------------------------------------------

def _pin_path(state_dir: Path, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise ImageError(f"not a server name for an image: {name!r:.80}")
    return state_dir / PIN_DIR / f"{name}.json"


def load_server_pin(state_dir: Path, name: str) -> ServerImage | None:
    """The pinned image of server ``name``, or None. An unreadable pin is an error."""
    path = _pin_path(state_dir, name)
    try:
        return ServerImage.from_record(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"the MCP server image pin {path} is unreadable: {exc}") from None


def ensure_server_image(state_dir: Path, recipe: ServerRecipe, *,
                        cache_dir: Path | None = None, progress: Progress | None = None,
                        force: bool = False) -> ServerImage:
    """The image server ``recipe.name`` runs, built and pinned if needed. Blocking."""
    pinned = load_server_pin(state_dir, recipe.name)
    if pinned is not None and not force and pinned.rootfs.exists() and \
            pinned.inputs_key == recipe_inputs(recipe)[0]:
        verify_image(pinned.rootfs, pinned.digest)
        return pinned
    image = build_server_image(recipe, cache_dir=cache_dir, force=force, progress=progress)
    path = _pin_path(state_dir, recipe.name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(image.record(), indent=1, sort_keys=True).encode() + b"\n",
                 mode=0o600)
    return image


def verified_server_image(state_dir: Path, name: str) -> ServerImage:
    """The pinned image of server ``name``, re-hashed just now (blocking): a launch
    fails closed on a missing pin or a rootfs that changed."""
    pinned = load_server_pin(state_dir, name)
    if pinned is None:
        raise ImageError(f"no image is pinned for MCP server {name!r}; run "
                         "`ironclaw-controlplane build-mcp-images`")
    try:
        verify_image(pinned.rootfs, pinned.digest)
    except ImageDigestMismatch as exc:
        raise ImageDigestMismatch(f"MCP server {name!r}: {exc}; rebuild with "
                                  "`ironclaw-controlplane build-mcp-images --force`") from None
    return pinned
