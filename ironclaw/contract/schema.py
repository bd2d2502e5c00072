"""The DDL of both queue files. Frozen: a change here is an RFC in docs/contract.md.

Tables are STRICT so an honest writer cannot store a wrong type by accident; the
reader still validates every value, because a hostile writer holds the key and can
rebuild any table it likes. Timestamps are INTEGER microseconds (see clock.py).

``seq_floor`` keeps the highest seq ever pruned, so that minting ``MAX(seq) + 2``
inside the INSERT never reissues a seq after old rows are deleted.
"""

from __future__ import annotations

INBOUND_TABLES = ("messages_in", "destinations", "session_routing", "seq_floor",
                  "host_progress")
OUTBOUND_TABLES = ("messages_out", "processing_ack", "session_state", "container_state",
                   "seq_floor")

INBOUND_DDL = """
CREATE TABLE IF NOT EXISTS messages_in (
    id                TEXT PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE CHECK (seq > 0 AND seq % 2 = 0),
    kind              TEXT NOT NULL,
    timestamp         INTEGER NOT NULL,
    status            TEXT NOT NULL,
    status_changed    INTEGER NOT NULL,
    process_after     INTEGER,
    recurrence        TEXT,
    series_id         TEXT,
    tries             INTEGER NOT NULL DEFAULT 0,
    engages           INTEGER NOT NULL DEFAULT 1 CHECK (engages IN (0, 1)),
    platform_id       TEXT,
    channel_type      TEXT,
    thread_id         TEXT,
    content           TEXT NOT NULL,
    source_session_id TEXT,
    on_wake           INTEGER NOT NULL DEFAULT 0 CHECK (on_wake IN (0, 1))
) STRICT;
CREATE INDEX IF NOT EXISTS messages_in_by_status ON messages_in (status, process_after);
CREATE TABLE IF NOT EXISTS destinations (
    name           TEXT PRIMARY KEY,
    display_name   TEXT,
    type           TEXT NOT NULL,
    channel_type   TEXT,
    platform_id    TEXT,
    agent_group_id TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS session_routing (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    channel_type TEXT,
    platform_id  TEXT,
    thread_id    TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS seq_floor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    floor INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS host_progress (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    outbound_handled_through INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO seq_floor (id, floor) VALUES (1, 0);
INSERT OR IGNORE INTO host_progress (id, outbound_handled_through, updated_at) VALUES (1, 0, 0);
"""

OUTBOUND_DDL = """
CREATE TABLE IF NOT EXISTS messages_out (
    id            TEXT PRIMARY KEY,
    seq           INTEGER NOT NULL UNIQUE CHECK (seq > 0 AND seq % 2 = 1),
    in_reply_to   TEXT,
    timestamp     INTEGER NOT NULL,
    deliver_after INTEGER,
    recurrence    TEXT,
    kind          TEXT NOT NULL,
    platform_id   TEXT,
    channel_type  TEXT,
    thread_id     TEXT,
    destination   TEXT,
    content       TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS processing_ack (
    message_id     TEXT PRIMARY KEY,
    status         TEXT NOT NULL,
    status_changed INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS session_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS container_state (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    current_tool             TEXT,
    tool_declared_timeout_ms INTEGER,
    tool_started_at          INTEGER,
    heartbeat_at             INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS seq_floor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    floor INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO seq_floor (id, floor) VALUES (1, 0);
"""

# Column orders used by readers; the codec indexes rows by these positions.
MESSAGES_IN_COLUMNS = (
    "id", "seq", "kind", "timestamp", "status", "process_after", "recurrence", "series_id",
    "tries", "engages", "platform_id", "channel_type", "thread_id", "content",
    "source_session_id", "on_wake",
)
MESSAGES_OUT_COLUMNS = (
    "id", "seq", "in_reply_to", "timestamp", "deliver_after", "recurrence", "kind",
    "platform_id", "channel_type", "thread_id", "destination", "content",
)
DESTINATION_COLUMNS = (
    "name", "display_name", "type", "channel_type", "platform_id", "agent_group_id",
)

# Seq minting, inside the INSERT. One writer per file, serialised by the fence, so
# MAX + step is race-free; the floor covers pruned rows.
HOST_SEQ_EXPR = (
    "(SELECT max(coalesce((SELECT max(seq) FROM messages_in), 0),"
    " (SELECT floor FROM seq_floor WHERE id = 1)) + 2)"
)
SANDBOX_SEQ_EXPR = (
    "((SELECT max(coalesce((SELECT max(seq) FROM messages_out), 0),"
    " (SELECT floor FROM seq_floor WHERE id = 1)) + 1) | 1)"
)
