"""``/v1/tasks``: every session's scheduled tasks, seen and steered by a human.

Any principal may list them. An owner or admin may pause, resume or cancel one (an
approver or viewer gets 403): the task belongs to an agent, and stopping it is an
operator's act, not a capability decision. Each change is audited before it is
answered (``task.paused``, ``task.resumed``, ``task.cancelled``, with the task, its
session and the principal) and published as a ``task.changed`` event. The prompt is
shown cut to a few hundred characters: it was written by the agent, so it is
untrusted text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart_trio import QuartTrio

from ironclaw.host.scheduling import Task, TaskConflict, TaskNotFound, TaskStatus

from ..context import Access, ApiContext, access, is_operator, principal
from ..errors import ApiError
from ..scope import Scope, Visibility, scope
from ..validate import query_int, query_str

PROMPT_CHARS = 500
# The URL's verb -> (the scheduler's action, the audit entry's kind).
ACTIONS = {"pause": ("pause_task", "task.paused"),
           "resume": ("resume_task", "task.resumed"),
           "cancel": ("cancel_task", "task.cancelled")}


def render_task(task: Task) -> dict[str, object]:
    return {"id": task.id, "session_id": task.session_id,
            "agent_group_id": task.agent_group_id, "status": task.status.value,
            "prompt": task.prompt[:PROMPT_CHARS], "recurrence": task.recurrence,
            "timezone": task.timezone, "next_run_at": task.next_run_at,
            "last_run_at": task.last_run_at, "fired_count": task.fired_count,
            "created_at": task.created_at, "updated_at": task.updated_at}


async def _visible_task(ctx: ApiContext, task_id: str, seen: Visibility) -> bool:
    if seen.everything:
        return True
    try:
        return seen.group((await ctx.handles.scheduler.get(task_id)).agent_group_id)
    except TaskNotFound:
        return False


def register(app: QuartTrio, ctx: ApiContext) -> None:
    handles = ctx.handles

    @app.get("/v1/tasks")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_tasks() -> dict[str, object]:
        status = query_str("status", choices=tuple(s.value for s in TaskStatus))
        session_id = query_str("session_id")
        limit = query_int("limit", 100, 1, 1000)
        seen = Visibility.of(principal(), handles)
        found = await handles.scheduler.all_tasks(
            status=None if status is None else TaskStatus(status), session_id=session_id,
            limit=limit if seen.everything else 1000)
        shown = seen.only(found, lambda task: task.agent_group_id)[:limit]
        return {"tasks": [render_task(task) for task in shown]}

    def steer(verb: str) -> Callable[[str], Awaitable[dict[str, object]]]:
        action, audit_kind = ACTIONS[verb]

        async def view(task_id: str) -> dict[str, object]:
            who = principal()
            if not is_operator(who):
                raise ApiError(403, f"only an owner or admin may {verb} a task; "
                                    f"{who.name} is neither")
            if not await _visible_task(ctx, task_id, Visibility.of(who, handles)):
                raise ApiError(404, f"no task {task_id[:64]!r}")
            try:
                task, changed = await handles.scheduler.operate(task_id, action)
            except TaskNotFound:
                raise ApiError(404, f"no task {task_id[:64]!r}") from None
            except TaskConflict as exc:
                raise ApiError(409, f"cannot {verb} it: {exc}") from None
            if changed:
                await handles.audit.append(audit_kind, task_id=task.id,
                                           session_id=task.session_id, by=who.name)
            return {"task": render_task(task), "changed": changed}

        view.__name__ = f"{verb}_task"
        return access(Access.WRITE)(scope(Scope.FILTERED)(view))

    for verb in ACTIONS:
        app.post(f"/v1/tasks/<task_id>/{verb}")(steer(verb))
