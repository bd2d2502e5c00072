"""Scheduled tasks from the human side, over real HTTP and ironctl: every session's
tasks are listed, an owner or admin pauses, resumes and cancels one (each audited with
who did it), and anyone else is refused."""

from __future__ import annotations

from typing import Any

from ironclaw.contract.actions import ScheduleTask
from ironclaw.contract.clock import now_us
from tests.support.api import Api, default_settings, running_api  # noqa: F401

HOUR_US = 3600 * 1_000_000


async def test_tasks_are_listed_and_steered_through_ironctl(api: Api) -> None:
    from tests.support.ironctl import ironctl

    async def run(*argv: str, who: str = "owner") -> Any:
        return await ironctl(None, "--addr", api.url, "--timeout", "30", *argv,
                             token=api.tokens[who])

    scheduler = api.handles.scheduler
    daily = await scheduler.schedule(
        session_id="ses_one", agent_group_id="demo",
        request=ScheduleTask("water the plants", now_us() + HOUR_US, "daily", "UTC", None))
    once = await scheduler.schedule(
        session_id="ses_two", agent_group_id="demo",
        request=ScheduleTask("call mum", now_us() + 2 * HOUR_US, None, "UTC", None))

    listed = await run("tasks", "list", "--json", who="viewer")
    assert listed.code == 0, listed.err
    assert [(t["id"], t["session_id"], t["status"], t["recurrence"])
            for t in listed.json()["tasks"]] == [(daily.id, "ses_one", "active", "daily"),
                                                 (once.id, "ses_two", "active", None)]
    table = await run("tasks", "list", "--session", "ses_two")
    assert once.id in table.out and daily.id not in table.out and "call mum" in table.out

    for who in ("viewer", "approver"):
        refused = await run("tasks", "pause", daily.id, who=who)
        assert refused.code == 3 and "403" in refused.err, who
    paused = await run("tasks", "pause", daily.id, who="admin")
    assert paused.code == 0 and "paused" in paused.out, paused.err
    again = await run("tasks", "pause", daily.id)
    assert again.code == 0 and "already paused" in again.out
    assert (await scheduler.get(daily.id)).status.value == "paused"

    assert (await run("tasks", "resume", daily.id)).code == 0
    cancelled = await run("tasks", "cancel", once.id, "--json")
    assert cancelled.code == 0
    assert cancelled.json()["task"]["status"] == "cancelled"
    assert cancelled.json()["changed"] is True
    assert (await run("tasks", "resume", once.id)).code == 5  # cancelled is final
    assert (await run("tasks", "cancel", "task_nothing")).code == 4
    assert (await run("tasks", "list", "--status", "nonsense")).code == 2
    shown = (await run("tasks", "list", "--status", "cancelled", "--json")).json()
    assert [t["id"] for t in shown["tasks"]] == [once.id]

    entries = (await api.get("/v1/audit", params={"limit": 200})).json()["entries"]
    assert [(e["kind"], e["fields"]) for e in entries if e["kind"].startswith("task.")] == [
        ("task.paused", {"task_id": daily.id, "session_id": "ses_one", "by": "admin"}),
        ("task.resumed", {"task_id": daily.id, "session_id": "ses_one", "by": "owner"}),
        ("task.cancelled", {"task_id": once.id, "session_id": "ses_two", "by": "owner"})]


async def test_bad_queries_are_refused(api: Api) -> None:
    assert (await api.get("/v1/tasks", params={"status": "gone"})).status_code == 400
    assert (await api.get("/v1/tasks", params={"limit": "0"})).status_code == 400
    assert (await api.get("/v1/tasks", params={"sort": "x"})).status_code == 400
    assert (await api.get("/v1/tasks")).json() == {"tasks": []}
