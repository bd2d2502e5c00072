"""Opening a snapshot of a queue file the other side wrote: a hardened connection, and
the schema compared with the contract's before any query.

The writer holds the file's key, so it writes the schema too, and a schema can carry
code: a generated column (``printf('%.*c', 300000000, 'x')`` built a 300 MB string on
every host poll), a trigger, a view, or a virtual table under a contract table's name.
So the reader:

1. limits the connection before it reads a page: string and row length, SQL length,
   expression depth, compound selects, function arguments, LIKE patterns, attached
   databases, trigger depth; turns on SQLite's defensive mode; turns off triggers,
   views, extension loading and ``trusted_schema``; checks cell sizes;
2. decrypts one page (a wrong key fails here);
3. compares ``sqlite_master`` (type, name, tbl_name, sql) byte for byte with the rows
   the contract's DDL produces on an in-memory database of the same SQLCipher build,
   and refuses any difference as :class:`QueueSchemaError`;
4. bounds every later query's work with a progress handler.

sqlcipher3 exposes neither ``setlimit`` nor ``setconfig``; the limits and flags are
set through the C API of the very library the module loaded (``sqlite3_limit``,
``sqlite3_db_config``), on the connection's own handle, which is checked to be the
right one (its file name) before anything is set. If that check fails, the reader
refuses to open rather than read unhardened.
"""

from __future__ import annotations

import ctypes
import functools
import os
import urllib.parse
from pathlib import Path
from typing import Any

import sqlcipher3

from ..cipher import CIPHER_COMPATIBILITY, RawKey
from .errors import QueueError, QueueSchemaError, QueueTooLarge, WrongKeyOrCorrupt

Connection = Any  # sqlcipher3 ships no type information
SchemaRows = tuple[tuple[bytes, bytes, bytes, bytes | None], ...]

# sqlite3.h: sqlite3_limit categories, and the limits a reader of a queue file needs.
# Honest values: content <= 256 KiB, a session_state value <= 1 MiB.
READER_LIMITS = {
    0: 4 * 1024 * 1024,  # SQLITE_LIMIT_LENGTH: a string, blob or row
    1: 64 * 1024,  # SQLITE_LIMIT_SQL_LENGTH: also bounds each schema statement
    2: 64,  # SQLITE_LIMIT_COLUMN
    3: 64,  # SQLITE_LIMIT_EXPR_DEPTH
    4: 4,  # SQLITE_LIMIT_COMPOUND_SELECT
    6: 8,  # SQLITE_LIMIT_FUNCTION_ARG
    7: 0,  # SQLITE_LIMIT_ATTACHED
    8: 64,  # SQLITE_LIMIT_LIKE_PATTERN_LENGTH
    9: 1024,  # SQLITE_LIMIT_VARIABLE_NUMBER
    10: 0,  # SQLITE_LIMIT_TRIGGER_DEPTH
}
# sqlite3.h: sqlite3_db_config verbs and the value each is set to.
READER_DB_CONFIG = {
    1010: 1,  # SQLITE_DBCONFIG_DEFENSIVE
    1003: 0,  # SQLITE_DBCONFIG_ENABLE_TRIGGER
    1015: 0,  # SQLITE_DBCONFIG_ENABLE_VIEW
    1005: 0,  # SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION
    1017: 0,  # SQLITE_DBCONFIG_TRUSTED_SCHEMA
    1013: 0,  # SQLITE_DBCONFIG_DQS_DML
    1014: 0,  # SQLITE_DBCONFIG_DQS_DDL
}
# Virtual machine steps one read may take (checked every PROGRESS_STEP steps): far
# above what paging a 64 MiB file with the contract's queries takes.
MAX_VM_STEPS = 400_000_000
PROGRESS_STEP = 100_000
_SCHEMA_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"


class _CApi:
    """The few C functions of the SQLite inside sqlcipher3 that it does not wrap."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(sqlcipher3._sqlite3.__file__)
        self.db_filename = lib.sqlite3_db_filename
        self.db_filename.restype = ctypes.c_char_p
        self.db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.limit = lib.sqlite3_limit
        self.limit.restype = ctypes.c_int
        self.limit.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.db_config = lib.sqlite3_db_config
        self.db_config.restype = ctypes.c_int
        self.db_config.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_void_p]


@functools.cache
def _capi() -> _CApi:
    return _CApi()


def _handle(conn: Connection, path: Path) -> int:
    """The ``sqlite3 *`` of a connection: the first field after the object header of
    the module's connection struct. Trusted only if SQLite names our file for it."""
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    if not handle:
        raise QueueError("cannot reach the SQLite handle to harden a reader")
    named = _capi().db_filename(handle, b"main")
    if named is None or os.fsdecode(named) != os.path.realpath(path):
        raise QueueError("cannot reach the SQLite handle to harden a reader")
    return handle


def harden(conn: Connection, path: Path) -> None:
    """Limits and flags (module docstring, step 1), before the first page is read."""
    api, handle = _capi(), _handle(conn, path)
    for category, value in READER_LIMITS.items():
        api.limit(handle, category, value)
        if api.limit(handle, category, -1) != value:
            raise QueueError(f"SQLite refused limit {category}")
    for verb, value in READER_DB_CONFIG.items():
        if api.db_config(handle, verb, value, None) != 0:
            raise QueueError(f"SQLite refused db_config {verb}")
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA cell_size_check = ON")
    conn.execute("PRAGMA mmap_size = 0")


def uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path))}" + (f"?{query}" if query else "")


def apply_key(conn: Connection, key: RawKey) -> None:
    conn.execute(key.pragma())
    conn.execute(f"PRAGMA cipher_compatibility = {CIPHER_COMPATIBILITY}")
    conn.execute("PRAGMA cipher_log_level = NONE")


def split_ddl(ddl: str) -> list[str]:
    # executescript() would COMMIT an open transaction first; run statements one by one.
    return [s.strip() for s in ddl.split(";") if s.strip()]


def _schema_rows(conn: Connection) -> SchemaRows:
    return tuple(tuple(_as_bytes(v) for v in row)  # type: ignore[misc]
                 for row in conn.execute(_SCHEMA_QUERY))


def _as_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


@functools.cache
def expected_schema(ddl: str) -> SchemaRows:
    """What ``sqlite_master`` holds after the contract's DDL, on this very build."""
    conn = sqlcipher3.connect(":memory:", isolation_level=None)
    try:
        for statement in split_ddl(ddl):
            conn.execute(statement)
        return _schema_rows(conn)
    finally:
        conn.close()


def open_snapshot(path: Path, key: RawKey, ddl: str) -> Connection:
    """A hardened, read-only connection to a private snapshot copy whose schema is the
    contract's. Raises WrongKeyOrCorrupt or QueueSchemaError (and closes) otherwise."""
    conn = sqlcipher3.connect(uri(path, mode="ro", immutable="1"), uri=True,
                              isolation_level=None)
    try:
        conn.text_factory = bytes
        harden(conn, path)
        apply_key(conn, key)
        conn.execute("PRAGMA query_only = ON")
        try:
            found = _schema_rows(conn)
        except sqlcipher3.DatabaseError as exc:
            if "schema" in str(exc):
                raise QueueSchemaError(f"unreadable schema: {exc}") from None
            raise WrongKeyOrCorrupt(f"cannot decrypt: {exc}") from None
        if found != expected_schema(ddl):
            raise QueueSchemaError(_describe(found, expected_schema(ddl)))
        _bound_work(conn)
        return conn
    except BaseException:
        conn.close()
        raise


def _describe(found: SchemaRows, expected: SchemaRows) -> str:
    extra = sorted({row[1] for row in found} - {row[1] for row in expected})
    missing = sorted({row[1] for row in expected} - {row[1] for row in found})
    changed = sorted({row[1] for row in found if row not in expected} - set(extra))
    parts = [f"{label}: {', '.join(n.decode('utf-8', 'replace')[:64] for n in names[:8])}"
             for label, names in (("extra", extra), ("missing", missing),
                                  ("changed", changed)) if names]
    return "schema differs from the contract's (" + "; ".join(parts) + ")"


def _bound_work(conn: Connection) -> None:
    steps = [0]

    def tick() -> int:
        steps[0] += PROGRESS_STEP
        return 1 if steps[0] > MAX_VM_STEPS else 0

    conn.set_progress_handler(tick, PROGRESS_STEP)


def query_failed(exc: BaseException) -> QueueError:
    """The typed error for a query that failed on a clean, schema-checked snapshot."""
    if "interrupted" in str(exc):
        return QueueTooLarge("reading the file took more work than any honest file needs")
    if "too big" in str(exc):
        return QueueTooLarge(f"a value exceeds the reader's limits: {exc}")
    return QueueSchemaError(f"query failed on a clean snapshot: {exc}")
