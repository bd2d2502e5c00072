"""Read-only views: the registry, sessions, questions (and their answers), access
requests. Nothing here writes the registry: every change to what an agent is or may
do goes through ``POST /v1/changes``. Answering a question is not such a change; it
feeds the answer back to the session that asked.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.questions import Question, QuestionNotFound
from ironclaw.host.registry import AccessRequestStatus

from .. import render
from ..context import Access, ApiContext, access, principal
from ..schemas import ANSWER
from ..scope import Scope, Visibility, hidden, scope
from ..validate import json_body, query_int, query_str

MAX_LIST = 1000


def register(app: QuartTrio, ctx: ApiContext) -> None:
    handles = ctx.handles
    reg = handles.registry

    def view() -> Visibility:
        return Visibility.of(principal(), handles)

    async def visible_chat(group_id: str) -> None:
        if not await view().chat(group_id):
            raise hidden(f"no messaging group {group_id!r}")

    async def visible_question(question_id: str) -> Question:
        found = await handles.questions.get(question_id)
        if not await view().session(found.session_id):
            raise QuestionNotFound("no such question")
        return found

    async def visible_session(session_id: str) -> None:
        if not await view().session(session_id):
            raise hidden(f"no session {session_id!r}")

    @app.get("/v1/registry/agent-groups")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_agent_groups() -> dict[str, object]:
        shown = view().only(await reg.list_agent_groups(), lambda g: g.id)
        return {"agent_groups": [render.agent_group(g) for g in shown]}

    @app.get("/v1/registry/agent-groups/<group_id>")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def show_agent_group(group_id: str) -> dict[str, object]:
        if not view().group(group_id):
            raise hidden(f"no agent group {group_id!r}")
        return render.agent_group(await reg.get_agent_group(group_id))

    @app.get("/v1/registry/agent-groups/<group_id>/destinations")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_destinations(group_id: str) -> dict[str, object]:
        if not view().group(group_id):
            raise hidden(f"no agent group {group_id!r}")
        await reg.get_agent_group(group_id)  # 404 for an unknown group
        return {"destinations": [render.destination(d)
                                 for d in await reg.destinations_for(group_id)]}

    @app.get("/v1/registry/messaging-groups")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_messaging_groups() -> dict[str, object]:
        seen = view()
        return {"messaging_groups": [render.messaging_group(m)
                                     for m in await reg.list_messaging_groups()
                                     if await seen.chat(m.id)]}

    @app.get("/v1/registry/messaging-groups/<group_id>")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def show_messaging_group(group_id: str) -> dict[str, object]:
        found = await reg.get_messaging_group(group_id)
        await visible_chat(group_id)
        return render.messaging_group(found)

    @app.get("/v1/registry/messaging-groups/<group_id>/wirings")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_group_wirings(group_id: str) -> dict[str, object]:
        await reg.get_messaging_group(group_id)
        await visible_chat(group_id)
        shown = view().only(await reg.wirings_for(group_id), lambda w: w.agent_group_id)
        return {"wirings": [render.wiring(w) for w in shown]}

    @app.get("/v1/registry/wirings")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_wirings() -> dict[str, object]:
        wirings, seen = [], view()
        for group in await reg.list_messaging_groups():
            wirings += [render.wiring(w) for w in seen.only(await reg.wirings_for(group.id),
                                                            lambda w: w.agent_group_id)]
        return {"wirings": wirings}

    @app.get("/v1/sessions")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_sessions() -> dict[str, object]:
        live = set(handles.sessions.live_ids())
        beats = {h.session_id: h.heartbeat_at for h in handles.sessions.health()}
        shown = view().only(await reg.list_sessions(), lambda s: s.agent_group_id)
        return {"sessions": [render.session(s, s.id in live, beats.get(s.id))
                             for s in shown]}

    @app.get("/v1/sessions/<session_id>")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def show_session(session_id: str) -> dict[str, object]:
        found = await reg.get_session(session_id)
        await visible_session(session_id)
        beats = {h.session_id: h.heartbeat_at for h in handles.sessions.health()}
        return render.session(found, found.id in set(handles.sessions.live_ids()),
                              beats.get(found.id))

    @app.get("/v1/questions")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_questions() -> dict[str, object]:
        session = query_str("session_id")
        limit = query_int("limit", 100, 1, MAX_LIST)
        seen = view()
        found = await handles.questions.pending(
            session, limit=limit if seen.everything else MAX_LIST)
        return {"questions": [render.question(q) for q in found
                              if await seen.session(q.session_id)][:limit]}

    @app.get("/v1/questions/<question_id>")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def show_question(question_id: str) -> dict[str, object]:
        return render.question(await visible_question(question_id))

    @app.post("/v1/questions/<question_id>/answer")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def answer_question(question_id: str) -> dict[str, object]:
        await visible_question(question_id)
        body = await json_body(ANSWER, ctx.settings.max_body_bytes)
        answered = await handles.questions.answer(question_id, body["answer"],
                                                  principal().name)
        return render.question(answered)

    @app.get("/v1/access-requests")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_access_requests() -> dict[str, object]:
        status = query_str("status", choices=tuple(s.value for s in AccessRequestStatus))
        found = await reg.list_access_requests(
            None if status is None else AccessRequestStatus(status))
        seen = view()
        return {"access_requests": [render.access_request(r) for r in found
                                    if await seen.chat(r.messaging_group_id)]}
