"""host.db migrations. Append only: a released migration is never edited.

Everything the control plane must not forget lives here: the registry, sessions,
durable delivery records, schedules, pending questions, access requests, and the
gateway's change store. Timestamps are integer microseconds, as on the wire.
"""

from __future__ import annotations

V1 = """
CREATE TABLE agent_groups (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    folder               TEXT NOT NULL UNIQUE,
    persona_identity     TEXT NOT NULL DEFAULT '',
    persona_soul         TEXT NOT NULL DEFAULT '',
    persona_instructions TEXT NOT NULL DEFAULT '',
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    enabled_tools        TEXT NOT NULL DEFAULT '[]',
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;
CREATE TABLE messaging_groups (
    id                    TEXT PRIMARY KEY,
    channel               TEXT NOT NULL,
    platform_id           TEXT NOT NULL,
    instance              TEXT NOT NULL,
    name                  TEXT NOT NULL DEFAULT '',
    unknown_sender_policy TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    UNIQUE (channel, platform_id, instance)
) STRICT;
CREATE TABLE wirings (
    id                 TEXT PRIMARY KEY,
    messaging_group_id TEXT NOT NULL REFERENCES messaging_groups (id) ON DELETE CASCADE,
    agent_group_id     TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    engage_mode        TEXT NOT NULL,
    pattern            TEXT NOT NULL DEFAULT '',
    sender_scope       TEXT NOT NULL,
    ignored_policy     TEXT NOT NULL,
    session_mode       TEXT NOT NULL,
    priority           INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX wirings_by_group ON wirings (messaging_group_id, priority DESC, id);
CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
) STRICT;
CREATE TABLE roles (
    user_id  TEXT NOT NULL,
    role     TEXT NOT NULL,
    scope    TEXT NOT NULL DEFAULT '',
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, role, scope)
) STRICT;
CREATE TABLE members (
    user_id        TEXT NOT NULL,
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    added_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, agent_group_id)
) STRICT;
CREATE TABLE destinations (
    agent_group_id        TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    display_name          TEXT,
    type                  TEXT NOT NULL,
    channel               TEXT,
    instance              TEXT,
    platform_id           TEXT,
    target_agent_group_id TEXT,
    PRIMARY KEY (agent_group_id, name)
) STRICT;
CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    partition_key      TEXT NOT NULL UNIQUE,
    agent_group_id     TEXT NOT NULL,
    messaging_group_id TEXT,
    thread_id          TEXT,
    mode               TEXT NOT NULL,
    status             TEXT NOT NULL,
    container_status   TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    last_active        INTEGER NOT NULL
) STRICT;
CREATE TABLE access_requests (
    id                 TEXT PRIMARY KEY,
    messaging_group_id TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    status             TEXT NOT NULL,
    requested_at       INTEGER NOT NULL,
    decided_by         TEXT,
    decided_at         INTEGER
) STRICT;
CREATE UNIQUE INDEX access_requests_one_pending
    ON access_requests (messaging_group_id, user_id) WHERE status = 'pending';
CREATE TABLE delivery_records (
    outbound_id         TEXT PRIMARY KEY,
    session_id          TEXT,
    status              TEXT NOT NULL,
    platform_message_id TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    updated_at          INTEGER NOT NULL
) STRICT;
CREATE TABLE session_cursors (
    session_id    TEXT PRIMARY KEY,
    outbound_seq  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE TABLE schedules (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL,
    agent_group_id TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    next_run_at    INTEGER,
    recurrence     TEXT,
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    status         TEXT NOT NULL,
    series_id      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX schedules_due ON schedules (status, next_run_at);
CREATE TABLE questions (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL,
    question       TEXT NOT NULL,
    options        TEXT NOT NULL DEFAULT '[]',
    allow_freeform INTEGER NOT NULL,
    status         TEXT NOT NULL,
    answer         TEXT,
    answered_by    TEXT,
    asked_at       INTEGER NOT NULL,
    answered_at    INTEGER
) STRICT;
CREATE TABLE changes (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    agent_group     TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    before          TEXT NOT NULL,
    after           TEXT NOT NULL,
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    status          TEXT NOT NULL,
    digest          TEXT NOT NULL,
    decided_by      TEXT,
    decided_at      INTEGER,
    decision_reason TEXT,
    applied_at      INTEGER
) STRICT;
CREATE INDEX changes_by_status ON changes (status, created_at);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT
"""

# V2 (delivery, scheduling, questions, sweeper): a task keeps the anchor its slots are
# computed from (so a shifted slot never drifts the series), when it last fired and how
# often; a question remembers its agent group and when its answer reached the session
# (so an answer recorded before a crash is still fed back); indexes for retention.
V2 = """
ALTER TABLE schedules ADD COLUMN anchor_at INTEGER;
ALTER TABLE schedules ADD COLUMN last_run_at INTEGER;
ALTER TABLE schedules ADD COLUMN fired_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX schedules_by_session ON schedules (session_id, status);
ALTER TABLE questions ADD COLUMN agent_group_id TEXT;
ALTER TABLE questions ADD COLUMN fed_back_at INTEGER;
CREATE INDEX questions_by_status ON questions (status, answered_at);
CREATE INDEX delivery_records_by_age ON delivery_records (status, updated_at)
"""

# V3 (gateway): approved capabilities the registry has no column for, per agent group,
# as the canonical JSON that was approved (egress_hosts, mounts, packages, mcp_access),
# written only by the gateway's applier; and an index for the per-requester quota.
V3 = """
CREATE TABLE agent_grants (
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    value          TEXT NOT NULL,
    change_id      TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (agent_group_id, kind)
) STRICT;
CREATE INDEX changes_by_requester ON changes (requested_by, status)
"""

# V4 (API): the principals bearer tokens stand for. Only an HMAC-SHA256 of each token
# under the api-token-hash sub-key is kept; a revoked principal keeps its row (and name)
# so its past decisions still name someone.
V4 = """
CREATE TABLE principals (
    name        TEXT PRIMARY KEY,
    roles       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT
"""

# V5 (channels): what each adapter must remember across restarts. A cursor is the
# platform's resume point (Telegram's update offset, Matrix's sync token); the seen set
# holds recent platform event ids, so a redelivered event is dropped, not routed twice.
V5 = """
CREATE TABLE channel_cursors (
    channel     TEXT NOT NULL,
    instance    TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, instance, name)
) STRICT;
CREATE TABLE channel_seen (
    channel     TEXT NOT NULL,
    instance    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,
    PRIMARY KEY (channel, instance, event_id)
) STRICT;
CREATE INDEX channel_seen_by_age ON channel_seen (seen_at)
"""

# V6 (pairing and chat approvals): the owners who opted in to deciding changes from a
# direct chat with the bot (off unless a row says so), and a durable outbox of the fixed
# notices told to senders about their access requests (requested, granted, not granted,
# expired), so a grant made while a channel is down is still told once it is back.
V6 = """
CREATE TABLE chat_approvers (
    user_id     TEXT PRIMARY KEY,
    enabled_by  TEXT NOT NULL,
    enabled_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE chat_notices (
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    instance     TEXT NOT NULL,
    platform_id  TEXT NOT NULL,
    thread_id    TEXT,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (request_id, kind)
) STRICT;
CREATE INDEX chat_notices_due ON chat_notices (status, next_at)
"""

# V7 (the gateway's two-person rule): first approvals of changes whose kind needs two
# distinct approvers. The change stays pending (and its row here says who approved
# first) until a second principal approves; a restart keeps the first approval.
V7 = """
CREATE TABLE change_approvals (
    change_id   TEXT NOT NULL,
    approver    TEXT NOT NULL,
    approved_at INTEGER NOT NULL,
    PRIMARY KEY (change_id, approver)
) STRICT
"""

# V8 (local channel): the local channel's transcript, so a conversation read through
# the API or ``ironctl chat`` survives a restart. ``idx`` counts entries per
# conversation and is never reused; an agent entry keeps the ``outbound_id`` it
# delivered, unique, so a redelivery after a crash finds it instead of adding a second.
V8 = """
CREATE TABLE local_transcript (
    instance     TEXT NOT NULL,
    conversation TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    role         TEXT NOT NULL,
    sender       TEXT NOT NULL,
    text         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    thread_id    TEXT,
    outbound_id  TEXT UNIQUE,
    PRIMARY KEY (instance, conversation, idx)
) STRICT;
CREATE INDEX local_transcript_by_age ON local_transcript (at)
"""

# V9 (quarantine): the sessions held because their sandbox proved hostile, so that a
# restart of the control plane (which a hostile agent may manage to cause) is no fresh
# start for them; a row goes only when an owner lifts the hold. Chat notices gain a
# text of their own: the owners' alert names the session and why it was held.
V9 = """
CREATE TABLE quarantined_sessions (
    session_id     TEXT PRIMARY KEY,
    agent_group_id TEXT NOT NULL,
    reason         TEXT NOT NULL,
    since          INTEGER NOT NULL
) STRICT;
ALTER TABLE chat_notices ADD COLUMN text TEXT
"""

# V10 (teams): a principal may be scoped to agent groups, a JSON list of their ids;
# NULL (every principal before this) is every group.
V10 = """
ALTER TABLE principals ADD COLUMN agent_groups TEXT
"""

# V11 (threads): the host's own record of the chat message each inbound row carries
# (which chat, which thread, the platform's id for it), keyed by session and row. A
# reply names the row it answers; the host threads it and correlates it from this
# record, never from what the agent writes.
V11 = """
CREATE TABLE inbound_origins (
    session_id          TEXT NOT NULL,
    message_id          TEXT NOT NULL,
    channel             TEXT NOT NULL,
    instance            TEXT NOT NULL,
    platform_id         TEXT NOT NULL,
    thread_id           TEXT,
    platform_message_id TEXT,
    at                  INTEGER NOT NULL,
    PRIMARY KEY (session_id, message_id)
) STRICT;
CREATE INDEX inbound_origins_by_age ON inbound_origins (at)
"""

MIGRATIONS: tuple[str, ...] = (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11)
