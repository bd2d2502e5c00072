"""``ironctl sessions rotate-key`` against a live plane: the live session's sandbox is
stopped, both queue files change key, the conversation goes on, and it is audited."""

from __future__ import annotations

from typing import Any

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.schema import INBOUND_DDL, OUTBOUND_DDL
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.sessions.rekey import opens_under
from tests.e2e.test_api_session_delete import say
from tests.support.api import Api, default_settings, running_api  # noqa: F401
from tests.support.ironctl import ironctl


def secret_of(api: Api, session_id: str) -> SessionKeys:
    state = api.handles.config.state_dir
    with KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state)) as view:
        return SessionKeys.from_secret(view.get_session(session_id))


async def test_an_admin_rotates_a_live_sessions_keys_and_the_chat_goes_on(api: Api) -> None:
    async def run(*argv: str, who: str = "admin") -> Any:
        return await ironctl(None, "--addr", api.url, "--timeout", "60", *argv,
                             token=api.tokens[who])

    sid = await say(api, "hello")
    before = secret_of(api, sid)
    assert (await run("sessions", "rotate-key", sid, who="viewer")).code == 3
    assert (await run("sessions", "rotate-key", "ses_" + "0" * 16)).code == 4
    assert (await run("sessions", "rotate-key")).code == 2

    rotated = await run("sessions", "rotate-key", sid, "--json")
    assert rotated.code == 0, rotated.err
    assert rotated.json() == {"session_id": sid, "agent_group_id": "demo", "rotated": True}
    after = secret_of(api, sid)
    assert after.secret() != before.secret()
    queues = SessionLayout.under(api.handles.config.state_dir, sid).queues
    assert opens_under(queues.inbound_db, after.inbound, INBOUND_DDL)
    assert opens_under(queues.outbound_db, after.outbound, OUTBOUND_DDL)
    assert not opens_under(queues.outbound_db, before.outbound, OUTBOUND_DDL)

    assert await say(api, "still there?") == sid  # the same session, a new sandbox
    entries = (await api.get("/v1/audit", params={"limit": 100})).json()["entries"]
    assert [e["fields"] for e in entries if e["kind"] == "keys.session_rotated"] == [
        {"session_id": sid, "agent_group_id": "demo", "by": "admin"}]
