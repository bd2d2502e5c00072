"""Opening host.db and migrating its schema.

host.db never crosses the wall, so unlike the queue files it can use WAL: one process
(the control plane) owns it and ordinary SQLite locking works. It is still
SQLCipher, under a purpose sub-key of the master, because it holds the registry,
the change history and delivery records of every conversation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

import sqlcipher3

from .schema import MIGRATIONS

Connection: TypeAlias = Any  # sqlcipher3 ships no type information


class StoreError(Exception):
    """host.db cannot be opened or migrated."""


def open_database(path: Path, key: bytes) -> Connection:
    if len(key) != 32:
        raise StoreError("host.db needs a 32-byte key")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA cipher_compatibility = 4")
        conn.execute("PRAGMA cipher_log_level = NONE")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher3.DatabaseError as exc:
            raise StoreError(f"host.db does not open with this key: {exc}") from None
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")  # an acknowledged write survives a crash
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    path.chmod(0o600)
    return conn


def migrate(conn: Connection) -> int:
    """Apply every migration not yet applied, each in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > len(MIGRATIONS):
        raise StoreError(f"host.db is at schema {current}, newer than this build knows")
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in (s.strip() for s in script.split(";")):
                if statement:
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
