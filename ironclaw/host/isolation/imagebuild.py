"""Building the sealed sandbox image, content-addressed and cached.

``build_image`` freezes ``sandbox_agent`` with PyInstaller (onedir), assembles the
rootfs around it (``rootfs``), checks the seal, and installs the result in a cache:

    <cache>/sha256/<digest>/rootfs/         the image, read-only
    <cache>/sha256/<digest>/manifest.json   canonical manifest; sha256 of it = digest
    <cache>/sha256/<digest>/image.json      how it was built (inputs, libraries, times)
    <cache>/inputs/<inputs key>.json        which digest these inputs built

The inputs key hashes what decides the image's content: the agent's and the contract's
sources, this builder's own sources, the Python build, and the installed versions of
the agent's and the freezer's distributions. Same inputs, same key: the cached image is
reused after it verifies. The host's glibc, which the image copies, is not in the key
(it is only known after freezing); ``build-sandbox --force`` rebuilds after a host
upgrade. Builds are staged in ``<cache>/.tmp-*`` and renamed into place, so a crash
never leaves half an image where a launch could find it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

import ironclaw
from ironclaw.contract.agent_config import SANDBOX_CONFIG_FILE

from .manifest import (
    MANIFEST_FILE,
    ImageDigestMismatch,
    canonical_manifest,
    manifest_digest,
    scan_rootfs,
    seal_violations,
    total_size,
    verify_image,
)
from .rootfs import AGENT_BINARY, AGENT_NAME, ImageBuildError, assemble_rootfs, remove_tree

ENTRYPOINT: tuple[str, ...] = (AGENT_BINARY, "--config", str(SANDBOX_CONFIG_FILE))
CACHE_ENV = "IRONCLAW_IMAGE_CACHE"
IMAGE_FILE = "image.json"
# Every mtime in the image, and PyInstaller's SOURCE_DATE_EPOCH: 1980-01-01, the
# earliest time a zip archive (base_library.zip) can record.
IMAGE_EPOCH = 315532800

AGENT_DISTRIBUTIONS = ("trio", "httpx", "sqlcipher3", "attrs")
FREEZER_DISTRIBUTIONS = ("pyinstaller", "pyinstaller-hooks-contrib")
SOURCE_PACKAGES = ("sandbox_agent", "ironclaw/contract")
SOURCE_FILES = ("ironclaw/__init__.py",)
RECIPE_MODULES = ("imagebuild.py", "rootfs.py", "elf.py", "manifest.py", "mountpoints.py")
# Modules that optional imports would drag in (trio's hypothesis plugin, httpx's
# command line, trio's cffi fallback for other platforms, test tools) and that the
# agent never runs; the control plane is left out so that an import of it fails
# loudly in the self-check instead of shipping the host's code into the sandbox.
EXCLUDED_MODULES = (
    "ironclaw.host", "ironclaw.cli", "ironclaw.runtime",
    "hypothesis", "_hypothesis_globals", "_hypothesis_pytestplugin", "pytest", "_pytest",
    "pluggy", "click", "pygments", "rich", "setuptools", "pkg_resources",
    "_distutils_hack", "distutils", "cffi", "pycparser", "jinja2", "markupsafe",
    "tkinter", "_tkinter", "readline", "pdb", "IPython",
)
ENTRY_SCRIPT = "import sys\n\nfrom sandbox_agent.__main__ import main\n\nsys.exit(main())\n"

Progress = Callable[[str], None]


@attrs.frozen
class SandboxImage:
    """A built, sealed image. ``entrypoint`` is the argv to run inside it."""

    digest: str  # sha256 hex of the canonical manifest
    rootfs: Path
    size_bytes: int
    entrypoint: tuple[str, ...] = ENTRYPOINT
    inputs_key: str = ""
    built_at: str = ""


@attrs.frozen
class BuildInputs:
    key: str
    record: dict[str, Any] = attrs.field(eq=False, hash=False)


@attrs.frozen
class BuildOutcome:
    image: SandboxImage
    cached: bool  # True when an already built image was reused
    seconds: float


def default_cache_dir() -> Path:
    """``$IRONCLAW_IMAGE_CACHE``; for root, /var/cache/ironclaw/images (an OCI runtime
    reaches the rootfs from inside the sandbox's user namespace as an unprivileged
    uid, and root's own home is 0700); otherwise the user's cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/ironclaw/images")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ironclaw" / "images"


def source_root() -> Path:
    """The directory holding the ``ironclaw`` and ``sandbox_agent`` packages (a
    checkout for an editable install, site-packages otherwise)."""
    root = Path(ironclaw.__file__).resolve().parent.parent
    if not (root / "sandbox_agent" / "__init__.py").is_file():
        raise ImageBuildError(f"sandbox_agent is not installed beside ironclaw in {root}")
    return root


def compute_inputs() -> BuildInputs:
    root = source_root()
    sources: dict[str, str] = {}
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                sources[path.relative_to(root).as_posix()] = sha256_file(path)
    for name in SOURCE_FILES:
        sources[name] = sha256_file(root / name)
    here = Path(__file__).resolve().parent
    record = {
        "format": 1,
        "python": {"version": sys.version, "implementation": sys.implementation.name,
                   "abi": _config_var("SOABI"), "multiarch": _config_var("MULTIARCH")},
        "distributions": _distribution_closure(AGENT_DISTRIBUTIONS + FREEZER_DISTRIBUTIONS),
        "sources": sources,
        "recipe": {name: sha256_file(here / name) for name in RECIPE_MODULES},
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return BuildInputs(key, record)


def build_image(*, cache_dir: Path | None = None, force: bool = False,
                progress: Progress | None = None) -> BuildOutcome:
    """The image for the current inputs: from the cache when it is there and verifies,
    built otherwise (always with ``force``). A cached image that fails verification is
    an error, not a reason to rebuild quietly: ``force`` replaces it."""
    say = progress or (lambda _line: None)
    started = time.monotonic()
    cache = (cache_dir or default_cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    inputs = compute_inputs()
    with cache_lock(cache):
        if not force:
            hit = _lookup(cache, inputs.key)
            if hit is not None:
                say(f"cached image sha256:{hit.digest[:16]}... for these inputs; verifying")
                try:
                    verify_image(hit.rootfs, hit.digest)
                except ImageDigestMismatch as exc:
                    raise ImageDigestMismatch(
                        f"{exc}. Rebuild it with `ironclaw-controlplane build-sandbox "
                        "--force`.") from None
                return BuildOutcome(hit, True, time.monotonic() - started)
        image = _build_into(cache, inputs, say)
    return BuildOutcome(image, False, time.monotonic() - started)


def load_cached(image_dir: Path) -> SandboxImage:
    """The image described by ``<cache>/sha256/<digest>/image.json`` (not verified)."""
    meta = json.loads((image_dir / IMAGE_FILE).read_text())
    return SandboxImage(digest=meta["digest"], rootfs=image_dir / "rootfs",
                        size_bytes=int(meta["size_bytes"]),
                        entrypoint=tuple(meta["entrypoint"]),
                        inputs_key=meta["inputs"]["key"], built_at=meta["built_at"])


def _lookup(cache: Path, key: str) -> SandboxImage | None:
    try:
        digest = json.loads((cache / "inputs" / f"{key}.json").read_text())["digest"]
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        # Other inputs may have built the same bytes first: this image stands for these.
        return attrs.evolve(load_cached(cache / "sha256" / digest), inputs_key=key)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build_into(cache: Path, inputs: BuildInputs, say: Progress) -> SandboxImage:
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        started = time.monotonic()
        with _step(say, "freezing sandbox_agent with PyInstaller"):
            app = freeze_agent(staging / "work")
        with _step(say, "self-check of the frozen agent"):
            _self_check(app)
        image_dir = staging / "image"
        image_dir.mkdir()
        with _step(say, "collecting shared libraries and sealing the rootfs"):
            assembled = assemble_rootfs(app, image_dir / "rootfs", epoch=IMAGE_EPOCH)
        with _step(say, "hashing"):
            entries = scan_rootfs(image_dir / "rootfs")
            problems = seal_violations(entries, assembled.executables)
            if problems:
                raise ImageBuildError("the image is not sealed: " + "; ".join(problems[:10]))
            manifest = canonical_manifest(entries)
            digest = manifest_digest(manifest)
        (image_dir / MANIFEST_FILE).write_bytes(manifest)
        (image_dir / MANIFEST_FILE).chmod(0o444)
        meta = {"digest": digest, "size_bytes": total_size(entries),
                "entrypoint": list(ENTRYPOINT),
                "built_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "build_seconds": round(time.monotonic() - started, 2),
                "executables": sorted(assembled.executables),
                "libraries": [attrs.asdict(lib) for lib in assembled.libraries],
                "inputs": {"key": inputs.key, **inputs.record}}
        (image_dir / IMAGE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        final = install_image(cache, staging, image_dir, digest)
        write_atomic(cache / "inputs" / f"{inputs.key}.json",
                     json.dumps({"digest": digest}).encode() + b"\n", mode=0o644)
        image = attrs.evolve(load_cached(final), inputs_key=inputs.key)
        say(f"image sha256:{digest} ({image.size_bytes / 1e6:.1f} MB) in {image.rootfs}")
        return image
    finally:
        remove_tree(staging)


def install_image(cache: Path, staging: Path, image_dir: Path, digest: str) -> Path:
    """Rename the staged image to its content address. An intact image already there
    is the same bytes and stays (a sandbox may be running from it); a damaged one is
    moved aside into the staging directory, which is then removed."""
    final = cache / "sha256" / digest
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        try:
            verify_image(final / "rootfs", digest)
            return final
        except ImageDigestMismatch:
            final.rename(staging / "replaced")
    image_dir.rename(final)
    return final


def freeze_agent(work: Path) -> Path:
    """Run PyInstaller (onedir) on a one-line entry script; return the onedir (the
    bootloader ``ironclaw-agent`` and ``_internal/``). PyInstaller runs in its own
    process with a small, fixed environment: no PYTHONPATH of the caller's can change
    what gets frozen."""
    if importlib.util.find_spec("PyInstaller") is None:
        raise ImageBuildError("PyInstaller is not installed: pip install 'ironclaw[sandbox]'")
    missing = [tool for tool in ("objdump", "strip") if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"{' and '.join(missing)} not found: install binutils")
    work.mkdir(parents=True)
    entry = work / f"{AGENT_NAME}.py"
    entry.write_text(ENTRY_SCRIPT)
    argv = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--onedir",
            "--strip", "--noupx", "--name", AGENT_NAME, "--paths", str(source_root()),
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), "--log-level", "WARN"]
    for module in EXCLUDED_MODULES:
        argv += ["--exclude-module", module]
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(work),
        "LANG": "C.UTF-8",
        # Its own config and binary cache, so concurrent builds never share one.
        "PYINSTALLER_CONFIG_DIR": str(work / "pyinstaller-config"),
        "SOURCE_DATE_EPOCH": str(IMAGE_EPOCH),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = subprocess.run([*argv, str(entry)], cwd=work, env=env, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise ImageBuildError(f"PyInstaller failed ({result.returncode}): "
                              f"{result.stderr[-3000:]}")
    return work / "dist" / AGENT_NAME


def _self_check(app: Path) -> None:
    """Run the frozen agent's ``--self-check`` on the host: a module PyInstaller missed
    fails the build here rather than an agent's first message."""
    result = subprocess.run([str(app / AGENT_NAME), "--self-check"], cwd="/",
                            env={"LANG": "C.UTF-8"}, capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise ImageBuildError(f"the frozen agent failed its self-check "
                              f"({result.returncode}): {result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report.get("frozen") is not True:
        raise ImageBuildError("the self-check did not run in the frozen agent")


@contextlib.contextmanager
def _step(say: Progress, what: str) -> Iterator[None]:
    say(f"{what}...")
    started = time.monotonic()
    yield
    say(f"  {what}: {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """One builder per cache at a time; a second one waits, then finds a cache hit."""
    with open(cache / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _config_var(name: str) -> str:
    return str(sysconfig.get_config_var(name) or "")


def _distribution_closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``roots`` and everything they require (extras aside)."""
    found: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found[name] = dist.version
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra" in marker:
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
            if match:
                pending.append(match.group(0))
    return dict(sorted(found.items()))
