"""The ``schedules`` table of host.db: scheduled tasks and their lifecycle.

A task belongs to the session that created it; every query that acts for a session is
keyed by that session, so a sandbox can neither see nor touch another session's tasks
(a foreign id is answered exactly like an unknown one). Status moves:
``active <-> paused``; ``active | paused -> cancelled``; a one-shot ``active -> done``
when it fires. ``cancelled`` and ``done`` are terminal and pruned after retention.

Firing is a compare-and-set on ``next_run_at``: of two sweeps racing for one slot, one
advances the task and the other changes nothing.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["Task", "TaskConflict", "TaskLimit", "TaskNotFound", "TaskStatus"]


class TaskStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


LIVE = (TaskStatus.ACTIVE.value, TaskStatus.PAUSED.value)


class TaskNotFound(LookupError):
    """No such task for this session (also when it belongs to another session)."""


class TaskConflict(ValueError):
    """The task's status does not allow this step (resuming a cancelled task, say)."""


class TaskLimit(ValueError):
    """The session already has as many live tasks as it may."""


@attrs.frozen
class Task:
    id: str
    session_id: str
    agent_group_id: str
    prompt: str
    next_run_at: int | None
    recurrence: str | None
    timezone: str
    status: TaskStatus
    series_id: str
    created_at: int
    updated_at: int
    anchor_at: int | None = None
    last_run_at: int | None = None
    fired_count: int = 0


_COLUMNS = ("id, session_id, agent_group_id, prompt, next_run_at, recurrence, timezone, "
            "status, series_id, created_at, updated_at, anchor_at, last_run_at, fired_count")


def _task(row: tuple[Any, ...]) -> Task:
    (id_, sid, group, prompt, next_run, rec, zone, status, series, created, updated,
     anchor, last, fired) = row
    return Task(id_, sid, group, prompt, next_run, rec, zone, TaskStatus(status), series,
                created, updated, anchor, last, fired)


def get(conn: Any, task_id: str, session_id: str | None = None) -> Task:
    if session_id is None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?",
                           (task_id,)).fetchone()
    else:
        row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ? AND session_id = ?",
                           (task_id, session_id)).fetchone()
    if row is None:
        raise TaskNotFound("no such task")
    return _task(row)


def insert(conn: Any, task: Task, max_live: int) -> tuple[Task, bool]:
    """Insert ``task`` unless its id exists (a retried request): (task, created)."""
    existing = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?",
                            (task.id,)).fetchone()
    if existing is not None:
        found = _task(existing)
        if found.session_id != task.session_id:
            raise TaskConflict("task id already in use")
        return found, False
    (live,) = conn.execute(
        "SELECT count(*) FROM schedules WHERE session_id = ? AND status IN (?, ?)",
        (task.session_id, *LIVE)).fetchone()
    if live >= max_live:
        raise TaskLimit(f"a session may have at most {max_live} live tasks")
    conn.execute(
        f"INSERT INTO schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (task.id, task.session_id, task.agent_group_id, task.prompt, task.next_run_at,
         task.recurrence, task.timezone, task.status.value, task.series_id, task.created_at,
         task.updated_at, task.anchor_at, task.last_run_at, task.fired_count))
    return task, True


def for_session(conn: Any, session_id: str, limit: int) -> list[Task]:
    return [_task(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE session_id = ? AND status IN (?, ?) "
        "ORDER BY next_run_at IS NULL, next_run_at, id LIMIT ?", (session_id, *LIVE, limit))]


def listing(conn: Any, status: str | None, session_id: str | None, limit: int
            ) -> list[Task]:
    """Every session's tasks (an operator's view), soonest first; by default only the
    live ones (active or paused)."""
    statuses = LIVE if status is None else (status,)
    marks = ", ".join("?" * len(statuses))
    where, args = f"status IN ({marks})", list(statuses)
    if session_id is not None:
        where, args = where + " AND session_id = ?", [*args, session_id]
    return [_task(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE {where} "
        "ORDER BY next_run_at IS NULL, next_run_at, id LIMIT ?", (*args, limit))]


def due(conn: Any, now: int, limit: int) -> list[Task]:
    return [_task(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE status = 'active' AND next_run_at <= ? "
        "ORDER BY next_run_at, id LIMIT ?", (now, limit))]


def replace(conn: Any, before: Task, after: Task) -> Task:
    """Write ``after`` if the row still equals ``before`` in status and next run."""
    changed = conn.execute(
        "UPDATE schedules SET prompt = ?, next_run_at = ?, recurrence = ?, status = ?, "
        "updated_at = ?, anchor_at = ?, last_run_at = ?, fired_count = ? "
        "WHERE id = ? AND status = ? AND next_run_at IS ?",
        (after.prompt, after.next_run_at, after.recurrence, after.status.value,
         after.updated_at, after.anchor_at, after.last_run_at, after.fired_count,
         before.id, before.status.value, before.next_run_at)).rowcount
    if not changed:
        raise TaskConflict("the task changed meanwhile")
    return after


def prune(conn: Any, finished_before: int) -> int:
    return int(conn.execute(
        "DELETE FROM schedules WHERE status IN ('cancelled', 'done') AND updated_at < ?",
        (finished_before,)).rowcount)
