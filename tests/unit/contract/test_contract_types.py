"""Frozen shapes of the contract: ids, keys, timestamps, layout, gateway types."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.contract import clock
from ironclaw.contract.actions import (
    AskUserQuestion,
    CapabilityRequest,
    MalformedAction,
    ScheduleTask,
    TaskControl,
    UnknownAction,
    parse_system_action,
    render_system_action,
)
from ironclaw.contract.cipher import InvalidKey, RawKey, SessionKeys
from ironclaw.contract.enums import ChangeKind, Verdict
from ironclaw.contract.gateway import ChangeRequest, VerifierResult, chain_verdict
from ironclaw.contract.ids import InvalidId, new_session_id, validate_session_id
from ironclaw.contract.jsonvalue import JSONRejected, canonical_json
from ironclaw.contract.layout import SessionLayout, read_heartbeat, write_heartbeat


@pytest.mark.parametrize("bad", [
    "../ses_0123456789abcdef", "ses_0123456789abcdef/..", "ses_0123456789ABCDEF",
    "ses_0123456789abcde", "ses_0123456789abcdef\x00", "/etc/passwd", "", None, 7,
    "ses_0123456789abcdef\n",
])
def test_session_ids_refuse_path_tricks(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidId):
        validate_session_id(bad)
    with pytest.raises(InvalidId):
        SessionLayout.under(tmp_path, bad)  # type: ignore[arg-type]


def test_session_layout_stays_under_state_dir(tmp_path: Path) -> None:
    sid = new_session_id()
    layout = SessionLayout.under(tmp_path, sid)
    queues = layout.create()
    assert queues.inbound_dir == (tmp_path / "sessions" / sid / "inbound").resolve()
    assert queues.inbound_dir.is_dir() and queues.outbound_dir.is_dir()
    assert queues.inbound_db.name == "inbound.db"


def test_timestamps_sort_as_stored() -> None:
    # The anchor's trimmed RFC3339 text sorted .5Z before .123Z; integers cannot.
    a = clock.from_datetime(dt.datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=dt.UTC))
    b = clock.from_datetime(dt.datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=dt.UTC))
    assert b < a
    assert clock.to_iso(b) < clock.to_iso(a)  # fixed-width text sorts right too
    assert clock.from_datetime(clock.to_datetime(a)) == a
    with pytest.raises(ValueError):
        clock.from_datetime(dt.datetime(2026, 1, 1))


def test_raw_key_forms_and_redaction() -> None:
    key = RawKey.generate()
    assert key.pragma() == f"PRAGMA key = \"x'{key.hex()}'\""
    assert key.hex() not in repr(key)
    for bad in ("00" * 31, "ZZ" * 32, "AB" * 32):
        with pytest.raises(InvalidKey):
            RawKey.from_hex(bad)


def test_session_key_file_round_trip() -> None:
    keys = SessionKeys.generate()
    text = keys.render_file()
    assert SessionKeys.parse_file(text) == keys
    assert keys.inbound != keys.outbound
    for bad in ("", "inbound=" + "0" * 64, text + "inbound=" + "1" * 64 + "\n", "junk"):
        with pytest.raises(InvalidKey):
            SessionKeys.parse_file(bad)


def test_host_key_store_writes_what_the_contract_parses(tmp_path: Path) -> None:
    from ironclaw.host.keys import write_session_key_file
    secret = SessionKeys.generate().secret()
    path = tmp_path / "session.key"
    write_session_key_file(path, secret)
    assert SessionKeys.parse_file(path.read_text()) == SessionKeys.from_secret(secret)


def test_heartbeat_file_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert read_heartbeat(path) is None
    write_heartbeat(path, 1_800_000_000_000_000)
    assert read_heartbeat(path) == 1_800_000_000_000_000
    path.write_bytes(b"\xff garbage")
    assert read_heartbeat(path) is None


def test_canonical_json_is_deterministic() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == \
        '{"a":[1,{"c":3,"d":2}],"b":1}'
    with pytest.raises(JSONRejected):
        canonical_json(float("nan"))


def _change(before: object, after: object) -> ChangeRequest:
    return ChangeRequest.of(id="chg_" + "a" * 32, kind=ChangeKind.ENABLED_TOOLS,
                            agent_group="demo", requested_by="local:alice", before=before,
                            after=after, created_at=1_800_000_000_000_000)


def test_change_digest_and_diff_are_deterministic() -> None:
    one = _change({"tools": ["a"], "x": 1}, {"x": 1, "tools": ["a", "b"]})
    two = ChangeRequest(id=one.id, kind=one.kind, agent_group=one.agent_group,
                        requested_by=one.requested_by, before='{ "x":1, "tools":["a"] }',
                        after='{"tools":["a","b"],"x":1}', created_at=one.created_at)
    assert one.digest() == two.digest()
    assert [d.render() for d in one.diff()] == ['+ /tools/1: "b"']
    assert one.digest() != _change({"tools": ["a"]}, {"tools": ["b"]}).digest()
    with pytest.raises(JSONRejected):
        ChangeRequest(id=one.id, kind=one.kind, agent_group="demo", requested_by="x",
                      before="{", after="{}", created_at=1)


def test_change_expiry() -> None:
    change = ChangeRequest.of(id="chg_" + "b" * 32, kind=ChangeKind.PERSONA,
                              agent_group="demo", requested_by="local:a", before=None,
                              after={"soul": "calm"}, created_at=10, expires_at=20)
    assert not change.is_expired(19) and change.is_expired(20)


def test_chain_verdict_semantics() -> None:
    p = VerifierResult("p", Verdict.PASS, "ok")
    h = VerifierResult("h", Verdict.REQUIRE_HUMAN, "floor")
    r = VerifierResult("r", Verdict.REJECT, "bad package")
    assert chain_verdict([p, p]) == (Verdict.PASS, None)
    assert chain_verdict([p, h, p]) == (Verdict.REQUIRE_HUMAN, h)
    assert chain_verdict([h, r, h]) == (Verdict.REJECT, r)

    def exploding():
        yield r
        raise AssertionError("reject must short-circuit")
    assert chain_verdict(exploding()) == (Verdict.REJECT, r)


def test_known_actions_parse_to_their_types() -> None:
    assert parse_system_action(
        '{"action":"schedule_task","prompt":"water plants","run_at":"2027-01-01T08:00:00+01:00",'
        '"recurrence":"daily","timezone":"Europe/Berlin"}'
    ) == ScheduleTask("water plants", 1798786800000000, "daily", "Europe/Berlin", None)
    assert parse_system_action(
        '{"action":"ask_user_question","question":"Which?","options":["a","b"]}'
    ) == AskUserQuestion("Which?", ("a", "b"), False)
    assert parse_system_action('{"action":"pause_task","task_id":"t1"}') == TaskControl(
        "pause_task", "t1", None, None, None)
    assert parse_system_action(
        '{"action":"packages","payload":{"apt":["ripgrep"]},"reason":"search"}'
    ) == CapabilityRequest(ChangeKind.PACKAGES, '{"apt":["ripgrep"]}', "search")
    assert parse_system_action('{"action":"make_me_root","payload":1}') == UnknownAction(
        "make_me_root", "1", None)


@pytest.mark.parametrize("content", [
    "typing", "", "{not json", "[]", '{"action": 5}', '{"action": "a b"}',
    '{"action":"persona"}', '{"action":"schedule_task"}',
    '{"action":"schedule_task","prompt":"x","run_at":"tomorrow"}',
    '{"action":"schedule_task","prompt":"x","run_at":"2027-01-01T00:00:00"}',
    '{"action":"ask_user_question","question":"q","options":"a"}',
    '{"action":"ask_user_question","question":"q\\u0000"}',
])
def test_malformed_actions_are_typed(content: str) -> None:
    assert isinstance(parse_system_action(content), MalformedAction)


action_values = st.one_of(
    st.builds(ScheduleTask, st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
              st.none() | st.integers(clock.MIN_TIMESTAMP_US, clock.MAX_TIMESTAMP_US),
              st.none() | st.sampled_from(["daily", "15m"]), st.none() | st.just("UTC"),
              st.none() | st.just("why")),
    st.builds(AskUserQuestion, st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
              st.lists(st.text(min_size=1, max_size=5).filter(lambda s: "\x00" not in s),
                       max_size=3).map(tuple), st.booleans()),
    st.builds(CapabilityRequest, st.sampled_from(list(ChangeKind)),
              st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
              .map(lambda d: canonical_json(d)), st.none() | st.just("need it")),
)


@given(action_values)
def test_render_then_parse_round_trips(action: object) -> None:
    wire = render_system_action(action)  # type: ignore[arg-type]
    assert json.loads(wire)["action"]
    assert parse_system_action(wire) == action


def test_agent_config_round_trips_and_refuses_garbage() -> None:
    from ironclaw.contract.agent_config import (
        MOCK_MODEL_HOST,
        AgentConfig,
        InvalidAgentConfig,
        PersonaDocs,
        ProviderConfig,
    )
    config = AgentConfig(session_id="ses_0123456789abcdef", agent_group_id="demo",
                         provider=ProviderConfig("anthropic-messages", MOCK_MODEL_HOST, "mock"),
                         persona=PersonaDocs("I am Demo", "curious", "be brief"),
                         enabled_tools=("read_file",), scratch_dir=Path("/tmp"))
    assert AgentConfig.parse(config.render()) == config
    assert config.model_socket == Path("/run/ironclaw/sock/model.sock")
    for bad in ("[]", "{}", '{"session_id": "../x"}', "not json",
                config.render().replace("anthropic-messages", "telnet")):
        with pytest.raises(InvalidAgentConfig):
            AgentConfig.parse(bad)
