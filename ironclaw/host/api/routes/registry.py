"""Read-only views: the registry, sessions, questions (and their answers), access
requests. Nothing here writes the registry: every change to what an agent is or may
do goes through ``POST /v1/changes``. Answering a question is not such a change; it
feeds the answer back to the session that asked.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.registry import AccessRequestStatus

from .. import render
from ..context import Access, ApiContext, access, principal
from ..schemas import ANSWER
from ..validate import json_body, query_int, query_str

MAX_LIST = 1000


def register(app: QuartTrio, ctx: ApiContext) -> None:
    handles = ctx.handles
    reg = handles.registry

    @app.get("/v1/registry/agent-groups")
    @access(Access.READ)
    async def list_agent_groups() -> dict[str, object]:
        return {"agent_groups": [render.agent_group(g) for g in await reg.list_agent_groups()]}

    @app.get("/v1/registry/agent-groups/<group_id>")
    @access(Access.READ)
    async def show_agent_group(group_id: str) -> dict[str, object]:
        return render.agent_group(await reg.get_agent_group(group_id))

    @app.get("/v1/registry/agent-groups/<group_id>/destinations")
    @access(Access.READ)
    async def list_destinations(group_id: str) -> dict[str, object]:
        await reg.get_agent_group(group_id)  # 404 for an unknown group
        return {"destinations": [render.destination(d)
                                 for d in await reg.destinations_for(group_id)]}

    @app.get("/v1/registry/messaging-groups")
    @access(Access.READ)
    async def list_messaging_groups() -> dict[str, object]:
        return {"messaging_groups": [render.messaging_group(m)
                                     for m in await reg.list_messaging_groups()]}

    @app.get("/v1/registry/messaging-groups/<group_id>")
    @access(Access.READ)
    async def show_messaging_group(group_id: str) -> dict[str, object]:
        return render.messaging_group(await reg.get_messaging_group(group_id))

    @app.get("/v1/registry/messaging-groups/<group_id>/wirings")
    @access(Access.READ)
    async def list_group_wirings(group_id: str) -> dict[str, object]:
        await reg.get_messaging_group(group_id)
        return {"wirings": [render.wiring(w) for w in await reg.wirings_for(group_id)]}

    @app.get("/v1/registry/wirings")
    @access(Access.READ)
    async def list_wirings() -> dict[str, object]:
        wirings = []
        for group in await reg.list_messaging_groups():
            wirings += [render.wiring(w) for w in await reg.wirings_for(group.id)]
        return {"wirings": wirings}

    @app.get("/v1/sessions")
    @access(Access.READ)
    async def list_sessions() -> dict[str, object]:
        live = set(handles.sessions.live_ids())
        beats = {h.session_id: h.heartbeat_at for h in handles.sessions.health()}
        return {"sessions": [render.session(s, s.id in live, beats.get(s.id))
                             for s in await reg.list_sessions()]}

    @app.get("/v1/sessions/<session_id>")
    @access(Access.READ)
    async def show_session(session_id: str) -> dict[str, object]:
        found = await reg.get_session(session_id)
        beats = {h.session_id: h.heartbeat_at for h in handles.sessions.health()}
        return render.session(found, found.id in set(handles.sessions.live_ids()),
                              beats.get(found.id))

    @app.get("/v1/questions")
    @access(Access.READ)
    async def list_questions() -> dict[str, object]:
        session = query_str("session_id")
        limit = query_int("limit", 100, 1, MAX_LIST)
        found = await handles.questions.pending(session, limit=limit)
        return {"questions": [render.question(q) for q in found]}

    @app.get("/v1/questions/<question_id>")
    @access(Access.READ)
    async def show_question(question_id: str) -> dict[str, object]:
        return render.question(await handles.questions.get(question_id))

    @app.post("/v1/questions/<question_id>/answer")
    @access(Access.WRITE)
    async def answer_question(question_id: str) -> dict[str, object]:
        body = await json_body(ANSWER, ctx.settings.max_body_bytes)
        answered = await handles.questions.answer(question_id, body["answer"],
                                                  principal().name)
        return render.question(answered)

    @app.get("/v1/access-requests")
    @access(Access.READ)
    async def list_access_requests() -> dict[str, object]:
        status = query_str("status", choices=tuple(s.value for s in AccessRequestStatus))
        found = await reg.list_access_requests(
            None if status is None else AccessRequestStatus(status))
        return {"access_requests": [render.access_request(r) for r in found]}
