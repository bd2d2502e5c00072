"""Assembling an MCP server's rootfs: an interpreter, the declared packages, nothing more.

An MCP server from PyPI is Python source: unlike the agent it cannot be frozen into
one binary without rewriting its packaging, so its image carries an interpreter (the
trade-off is in docs/threat-model.md). What goes in:

- ``/usr/bin/python3``: the control plane's own CPython, and ``/usr/lib/python3.X``:
  its standard library without the test suite, the GUI and the installers;
- in that library's ``site-packages``: the distributions the catalogue entry's
  ``image.python`` names and everything they require (not their extras),
  copied file by file from the installed copies the control plane's environment
  holds (their RECORDs), so the image runs exactly the versions the host has;
- ``image.programs`` (``git`` for mcp-server-git), copied from the host's ``PATH``;
- the shared libraries all those ELF files need (``rootfs.LibraryCollector``);
- ``/opt/ironclaw/boot.py`` (``server_boot``), the sandbox's first program;
- every Python file compiled to bytecode checked by hash, never by time, so the
  read-only image starts without recompiling and two builds give the same bytes;
- ``/etc`` (the agent uid's passwd and group) and the mount points of
  :data:`SERVER_MOUNT_POINTS`. No shell, no package manager, no pip.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import attrs
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .elf import is_elf
from .mountpoints import TMP_DIR
from .rootfs import ImageBuildError, LibraryCollector, seal_permissions, write_etc

__all__ = ["BOOT_SCRIPT", "INTERPRETER", "SERVER_CA_FILE", "SERVER_EGRESS_DIR",
           "SERVER_SESSION_WORKSPACE", "SERVER_WORKDIR", "AssembledServer",
           "assemble_server_rootfs", "distribution_closure"]

INTERPRETER = "/usr/bin/python3"
STDLIB = f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"
SITE_PACKAGES = f"{STDLIB}/site-packages"
BOOT_SCRIPT = "/opt/ironclaw/boot.py"
PROGRAM_DIR = "/usr/bin"

# Where the server's sandbox sees its host paths (the spec binds them here).
SERVER_WORKDIR = "/work"  # its own writable workspace, also its HOME
SERVER_SESSION_WORKSPACE = "/workspace"  # the session's workspace, read-only, if asked
SERVER_EGRESS_DIR = "/run/ironclaw/egress"  # holds the broker's CONNECT socket
SERVER_CA_FILE = "/etc/ironclaw/ca.pem"  # extra trust anchors the operator configured
SERVER_MOUNT_POINTS = ("/proc", "/dev", "/sys", TMP_DIR, SERVER_WORKDIR,
                       SERVER_SESSION_WORKSPACE, SERVER_EGRESS_DIR)
SERVER_MOUNT_FILES = (SERVER_CA_FILE,)

# Parts of the standard library no server runs: the test suite, the GUI toolkit and
# its IDE, the installers, the static library and build configuration.
STDLIB_EXCLUDED = re.compile(
    r"(test|idlelib|tkinter|_tkinter\..*|turtledemo|ensurepip|lib2to3|venv|site-packages|"
    r"__pycache__|config-.*)")


@attrs.frozen
class AssembledServer:
    executables: frozenset[str]
    console_scripts: dict[str, str]  # command -> "module:attr"
    distributions: dict[str, str]  # name -> version, what site-packages holds


def distribution_closure(roots: tuple[str, ...]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions ``roots`` name and everything they require, with the
    extras a requirement asks for (``pyjwt[crypto]``) and markers judged for this
    Python, as pip resolved them. A root that is not installed is an error."""
    found: dict[str, importlib.metadata.Distribution] = {}
    extras_seen: set[tuple[str, str]] = set()
    pending: list[tuple[str, frozenset[str], bool]] = [(n, frozenset(), True) for n in roots]
    while pending:
        raw, extras, is_root = pending.pop()
        name = canonicalize_name(raw)
        if name in found and all((name, e) in extras_seen for e in extras):
            continue
        try:
            dist = found.get(name) or importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if is_root:
                raise ImageBuildError(f"{raw} is not installed in the control plane's "
                                      "environment: pip install it there first") from None
            continue  # a requirement for another platform or Python
        found[name] = dist
        extras_seen.update((name, e) for e in extras)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                    requirement.marker.evaluate({"extra": extra})
                    for extra in ("", *extras)):
                pending.append((requirement.name, frozenset(requirement.extras), False))
    return dict(sorted(found.items()))


def assemble_server_rootfs(rootfs: Path, *, distributions: tuple[str, ...],
                           programs: tuple[str, ...], epoch: int) -> AssembledServer:
    """Build the rootfs at ``rootfs`` (which must not exist)."""
    rootfs.mkdir(mode=0o755)
    inside = _Inside(rootfs)
    shutil.copyfile(Path(sys.executable).resolve(), inside(INTERPRETER))
    _copy_stdlib(inside(STDLIB))
    closure = distribution_closure(distributions)
    for dist in closure.values():
        _copy_distribution(dist, inside(SITE_PACKAGES))
    program_paths = [_copy_program(name, inside) for name in programs]
    boot = inside(BOOT_SCRIPT)
    shutil.copyfile(Path(__file__).with_name("server_boot.py"), boot)
    write_etc(rootfs)
    for directory in SERVER_MOUNT_POINTS:
        inside(directory).mkdir(parents=True, exist_ok=True)
    for file in SERVER_MOUNT_FILES:
        inside(file).write_bytes(b"")
    _compile(rootfs)
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    collector = LibraryCollector(rootfs, reference=INTERPRETER,
                                 extra_host_dirs=(libdir,) if libdir else ())
    extensions = sorted("/" + path.relative_to(rootfs).as_posix()
                        for path in inside(STDLIB).rglob("*.so*")
                        if path.is_file() and not path.is_symlink() and is_elf(path))
    collector.collect_from([INTERPRETER, *program_paths, *extensions])
    executables = frozenset({INTERPRETER, *program_paths, *collector.loaders})
    seal_permissions(rootfs, executables, epoch=epoch)
    scripts = {ep.name: ep.value for root in distributions
               for ep in importlib.metadata.distribution(root).entry_points
               if ep.group == "console_scripts"}
    return AssembledServer(executables, dict(sorted(scripts.items())),
                           {name: dist.version for name, dist in closure.items()})


class _Inside:
    """Host path of a path inside the rootfs, its parent directory made."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs

    def __call__(self, path: str) -> Path:
        host = self.rootfs / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        return host


def _copy_stdlib(target: Path) -> None:
    source = Path(sysconfig.get_path("stdlib"))
    shutil.copytree(source, target, symlinks=True,
                    ignore=lambda _dir, names: [n for n in names
                                                if STDLIB_EXCLUDED.fullmatch(n)
                                                or n.endswith((".pyc", ".a", ".exe"))])


def _copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    """Copy what the distribution's RECORD lists under its site-packages (scripts,
    headers and data installed elsewhere are left out, and so is old bytecode)."""
    base = Path(str(dist.locate_file(""))).resolve()
    for record in dist.files or ():
        source = Path(str(dist.locate_file(record))).resolve()
        if base not in source.parents or "__pycache__" in source.parts \
                or source.suffix == ".pyc" or not source.is_file():
            continue
        target = site / source.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _copy_program(name: str, inside: _Inside) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageBuildError(f"the program {name!r} is not on this host's PATH")
    path = f"{PROGRAM_DIR}/{name}"
    shutil.copyfile(Path(found).resolve(), inside(path))
    return path


def _compile(rootfs: Path) -> None:
    """Bytecode for everything, checked against the source's hash (an image's times are
    all one epoch), under the paths the sandbox sees. Files that do not compile on this
    Python are skipped here and fail only if imported."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
           "LANG": "C.UTF-8"}
    targets = [str(rootfs / STDLIB.lstrip("/")), str(rootfs / BOOT_SCRIPT.lstrip("/"))]
    subprocess.run([sys.executable, "-I", "-m", "compileall", "-q", "-j", "0",
                    "--invalidation-mode", "unchecked-hash", "-s", str(rootfs), "-p", "/",
                    *targets], env=env, capture_output=True, check=False, timeout=600)
