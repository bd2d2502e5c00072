"""``--self-check``: prove that this build of the agent has everything it needs.

The frozen agent (PyInstaller onedir in the sealed image) can only import what the
freezer found; a module or shared library it missed fails at the first message, not
at build time. So the image build and its tests run this: it imports the whole agent,
runs Trio (with a worker thread, as the queue code does), builds the UDS transport the
model client uses, keys a real SQLCipher database, and reads a queue file back through
the hardened snapshot reader (which reaches SQLite's C API through ctypes). It prints
one JSON line of versions and returns 0, or raises.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import httpx
import sqlcipher3
import trio

from ironclaw import __version__ as ironclaw_version
from ironclaw.contract.cipher import CIPHER_COMPATIBILITY, RawKey
from ironclaw.contract.queue import OutboundReader, OutboundWriter

from . import agent  # noqa: F401  (imported for its side effect: every agent module loads)


def _check_sqlcipher() -> dict[str, str]:
    conn = sqlcipher3.connect(":memory:")
    try:
        conn.execute(RawKey.generate().pragma())
        conn.execute(f"PRAGMA cipher_compatibility = {CIPHER_COMPATIBILITY}")
        (cipher_version,) = conn.execute("PRAGMA cipher_version").fetchone()
        if not cipher_version:
            # Plain SQLite answers an unknown PRAGMA with nothing: keys would be ignored.
            raise RuntimeError("sqlcipher3 is linked against SQLite without SQLCipher")
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('ok')")
        (value,) = conn.execute("SELECT v FROM t").fetchone()
        if value != "ok":
            raise RuntimeError("SQLCipher round trip returned the wrong value")
        (sqlite_version,) = conn.execute("SELECT sqlite_version()").fetchone()
    finally:
        conn.close()
    return {"sqlcipher": str(cipher_version), "sqlite": str(sqlite_version)}


def _check_snapshot_reader() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db, key = Path(scratch) / "outbound.db", RawKey.generate()
        OutboundWriter(db, key).close()
        OutboundReader(db, key, scratch_dir=Path(scratch)).verify()


async def _check_trio() -> None:
    # The queue handles run on a worker thread; make sure threads start in this build.
    answer = await trio.to_thread.run_sync(lambda: 6 * 7)
    if answer != 42:
        raise RuntimeError("trio worker thread returned the wrong value")
    # The model client's transport; building it loads httpcore, h11 and the TLS
    # defaults httpx sets up even for a unix socket.
    transport = httpx.AsyncHTTPTransport(uds="/nonexistent/model.sock", retries=0)
    await transport.aclose()


def run_self_check() -> dict[str, Any]:
    trio.run(_check_trio)
    report: dict[str, Any] = {
        "ironclaw": ironclaw_version,
        "python": platform.python_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "trio": trio.__version__,
        "httpx": httpx.__version__,
        "attrs": attrs.__version__,
    }
    report.update(_check_sqlcipher())
    _check_snapshot_reader()
    return report


def main() -> int:
    print(json.dumps(run_self_check(), sort_keys=True), flush=True)
    return 0
