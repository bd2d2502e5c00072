"""The sealed image's manifest: what the rootfs is, as bytes a digest can pin.

A manifest lists every path in the rootfs, sorted, with its type, its permission
bits (setuid, setgid and sticky included) and its content: a sha256 for a file, the
target for a symlink. Ownership and times are left out on purpose: they say how and
when the tree was built, not what the agent runs, and leaving them out lets two builds
from the same inputs give the same digest. The digest is the sha256 of the manifest's
canonical JSON, which is also what ``manifest.json`` beside the rootfs holds, so
``sha256sum manifest.json`` shows the digest.

``verify_image`` recomputes the manifest from disk before every launch and refuses
any difference; ``seal_violations`` states what a sealed image may never contain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import attrs
import trio

from .mountpoints import TMP_DIR, TMP_MODE

MANIFEST_FORMAT = "ironclaw-sandbox-image/1"
MANIFEST_FILE = "manifest.json"

# File names that would hand a compromised agent a shell, an interpreter or a
# package manager. Matched against every non-directory name in the image.
FORBIDDEN_NAMES = re.compile(
    r"(sh|ash|bash|dash|zsh|ksh|mksh|csh|tcsh|fish|busybox|toybox|env|su|sudo|"
    r"python[0-9.]*|pip[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|lua[0-9.]*|"
    r"apt|apt-.*|dpkg|dpkg-.*|rpm|yum|dnf|apk|ld\.so)")


class ImageError(Exception):
    """Something is wrong with a sandbox image; no sandbox may start from it."""


class ImageDigestMismatch(ImageError):
    """The rootfs on disk is not the image that was pinned."""


@attrs.frozen
class Entry:
    path: str  # absolute inside the rootfs: "/", "/app/ironclaw-agent", ...
    kind: str  # "dir", "file", "symlink", or "other" (never allowed in an image)
    mode: int  # permission bits with setuid/setgid/sticky
    size: int = 0  # files only
    sha256: str = ""  # files only
    target: str = ""  # symlinks only

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "type": self.kind,
                               "mode": f"{self.mode:04o}"}
        if self.kind == "file":
            out.update(size=self.size, sha256=self.sha256)
        elif self.kind == "symlink":
            out["target"] = self.target
        return out


def _entry(root: Path, path: Path, info: os.stat_result) -> Entry:
    inside = "/" + path.relative_to(root).as_posix() if path != root else "/"
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return Entry(inside, "dir", mode)
    if stat.S_ISLNK(info.st_mode):
        # A symlink's own mode is always 0777 on Linux and means nothing: record 0.
        return Entry(inside, "symlink", 0, target=os.readlink(path))
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return Entry(inside, "file", mode, size=info.st_size, sha256=digest)
    return Entry(inside, "other", mode)


def scan_rootfs(root: Path) -> list[Entry]:
    """Every path under ``root`` (itself included), symlinks not followed, sorted by
    the bytes of the path so that the order never depends on locale or walk order."""
    entries = [_entry(root, root, root.lstat())]
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as listing:
            for item in listing:
                path = Path(item.path)
                info = item.stat(follow_symlinks=False)
                entries.append(_entry(root, path, info))
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
    entries.sort(key=lambda entry: os.fsencode(entry.path))
    return entries


def canonical_manifest(entries: list[Entry]) -> bytes:
    document = {"format": MANIFEST_FORMAT, "entries": [e.record() for e in entries]}
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode() + b"\n"


def manifest_digest(manifest: bytes) -> str:
    return hashlib.sha256(manifest).hexdigest()


def total_size(entries: list[Entry]) -> int:
    return sum(entry.size for entry in entries)


def first_difference(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    """A short description of the first path where two manifests disagree."""
    by_path_expected = {record["path"]: record for record in expected}
    by_path_actual = {record["path"]: record for record in actual}
    for path in sorted(by_path_expected.keys() | by_path_actual.keys(), key=os.fsencode):
        want, have = by_path_expected.get(path), by_path_actual.get(path)
        if want == have:
            continue
        if want is None:
            return f"{path} was added"
        if have is None:
            return f"{path} is missing"
        fields = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        return f"{path} differs in {', '.join(fields)}"
    return "no path differs (the manifest format itself changed)"


def verify_image(rootfs: Path, expected_digest: str) -> None:
    """Recompute the rootfs's manifest from disk; raise ``ImageDigestMismatch`` unless
    its digest is ``expected_digest``. Every file is hashed: this fails closed."""
    if not rootfs.is_dir():
        raise ImageDigestMismatch(f"sandbox image rootfs {rootfs} does not exist")
    entries = scan_rootfs(rootfs)
    digest = manifest_digest(canonical_manifest(entries))
    if digest == expected_digest:
        return
    raise ImageDigestMismatch(
        f"sandbox image {rootfs} does not match its pinned digest "
        f"(sha256:{expected_digest[:16]}..., found sha256:{digest[:16]}...): "
        f"{_explain(rootfs, expected_digest, entries)}")


def _explain(rootfs: Path, expected_digest: str, entries: list[Entry]) -> str:
    # The manifest written at build time names the first differing path, but only if
    # it is itself the pinned one; an altered manifest proves nothing.
    try:
        stored = (rootfs.parent / MANIFEST_FILE).read_bytes()
    except OSError:
        return "its build manifest is missing, so the changed path is unknown"
    if manifest_digest(stored) != expected_digest:
        return "its build manifest was altered too, so the changed path is unknown"
    expected = json.loads(stored)["entries"]
    return first_difference(expected, [entry.record() for entry in entries])


async def verify_image_async(rootfs: Path, expected_digest: str) -> None:
    """``verify_image`` on a worker thread: hashing the image takes tens of ms."""
    await trio.to_thread.run_sync(verify_image, rootfs, expected_digest)


def seal_violations(entries: list[Entry], executables: frozenset[str], *,
                    interpreter: str | None = None) -> list[str]:
    """Why these entries are not a sealed image (empty when they are). Only the paths
    in ``executables`` may be executable; nothing but the /tmp mount point may be
    writable by anyone; no setuid, setgid, special file or forbidden name at all, but
    for the one ``interpreter`` path an MCP server's image declares it carries
    (docs/threat-model.md says what that costs)."""
    problems: list[str] = []
    for entry in entries:
        name = entry.path.rsplit("/", 1)[-1]
        if entry.kind == "other":
            problems.append(f"{entry.path}: special file")
        if entry.kind != "dir" and FORBIDDEN_NAMES.fullmatch(name) and \
                entry.path != interpreter:
            problems.append(f"{entry.path}: a shell, interpreter or package manager")
        if entry.mode & (stat.S_ISUID | stat.S_ISGID):
            problems.append(f"{entry.path}: setuid or setgid")
        if entry.path == TMP_DIR:
            if entry.kind != "dir" or entry.mode != TMP_MODE:
                problems.append(f"{TMP_DIR}: must be a directory with mode {TMP_MODE:o}")
        elif entry.mode & 0o222:
            problems.append(f"{entry.path}: writable (mode {entry.mode:04o})")
        if entry.kind == "file" and entry.mode & 0o111 and entry.path not in executables:
            problems.append(f"{entry.path}: executable but not the agent or the loader")
    return problems
