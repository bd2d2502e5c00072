"""Hostile rows: whatever a compromised sandbox writes, delivery settles every row,
never crashes, and never lets one session touch another's traffic."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.contract.enums import MessageKind
from ironclaw.contract.rows import OutboundMessage
from ironclaw.host.delivery import DeliveryPolicy, WorkerFailed
from tests.support.delivery import Harness, open_harness

_groups = itertools.count(1)

_names = st.sampled_from(["ops", "helper", "", "../x", "ops\x00", "schedule_task", "agent"])
_text = st.text(max_size=300)
_actions = st.sampled_from([
    "schedule_task", "list_tasks", "cancel_task", "update_task", "ask_user_question",
    "packages", "persona", "exec", "", "a" * 80])
_envelopes = st.fixed_dictionaries(
    {"action": _actions},
    optional={"payload": st.recursive(st.none() | st.integers() | _text,
                                      lambda inner: st.lists(inner, max_size=3)
                                      | st.dictionaries(_text, inner, max_size=3),
                                      max_leaves=10),
              "prompt": _text, "run_at": st.one_of(_text, st.integers()),
              "recurrence": st.one_of(_text, st.sampled_from(["1s", "0 0 31 2 *", "daily"])),
              "timezone": st.one_of(_text, st.just("../../etc/passwd")),
              "task_id": _text, "question": _text, "options": st.lists(_text, max_size=3),
              "allow_freeform": st.one_of(st.booleans(), _text)})
_system = st.one_of(_text, _envelopes.map(json.dumps))
_rows = st.lists(st.tuples(
    st.sampled_from([MessageKind.CHAT, MessageKind.SYSTEM, MessageKind.TASK]),
    st.one_of(_text, _system),
    st.one_of(st.none(), _names),
    st.one_of(st.none(), st.sampled_from(["local", "agent", "slack", "", "x" * 200])),
    st.one_of(st.none(), _text),
    st.one_of(st.none(), st.sampled_from(["a2a-9999-" + "0" * 24, "a2a-1-" + "f" * 24]))),
    min_size=1, max_size=12)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
async def test_any_rows_settle_and_stay_in_their_session(
        tmp_path: Path, rows: list[tuple[object, ...]]) -> None:
    n = next(_groups)  # pytest-trio runs each example with fresh trio fixtures
    where = tmp_path / f"example-{n}"
    where.mkdir()
    async with open_harness(where) as h:
        await _check(h, n, rows)


async def _check(h: Harness, n: int, rows: list[tuple[object, ...]]) -> None:
    delivery = await h.start_delivery(DeliveryPolicy(max_attempts=1))
    group, bystander_group = f"h{n}", f"b{n}"
    session = await h.session(group, f"chat-{n}")
    bystander = await h.session(bystander_group, f"quiet-{n}")
    await h.grant(group, "helper", type="agent", target_agent_group_id=bystander_group)
    built: list[OutboundMessage] = [
        h.row(str(content), kind=kind, destination=destination, channel_type=channel,
              platform_id=platform, in_reply_to=reply)
        for kind, content, destination, channel, platform, reply in rows]
    chats_before = set(h.local.conversations())
    await delivery.submit(h.batch(session, built))
    calm = h.row("unbothered")
    await delivery.submit(h.batch(bystander, [calm]))
    await h.progress.wait_through(session.id, built[-1].seq)
    await h.progress.wait_through(bystander.id, calm.seq)
    assert h.events.of(WorkerFailed) == []
    # The hostile session reached no chat but its own origin...
    assert set(h.local.conversations()) - chats_before <= {f"chat-{n}", f"quiet-{n}"}
    assert h.local.texts(f"quiet-{n}") == ["unbothered"]
    # ...and the bystander's queue only through the granted agent route.
    for message in h.inbound(bystander.id):
        assert message.source_session_id == session.id
