"""Audit log format and tamper evidence: what verification catches, on real files."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.contract.jsonvalue import canonical_json
from ironclaw.host.audit import (
    GENESIS_MAC,
    AuditLogCorrupt,
    ChainVerifier,
    open_audit_log,
    verify_file,
)
from ironclaw.host.audit.entry import Head, encode_head
from tests.support.audit import (
    KEY,
    OTHER_KEY,
    Clock,
    build_chain,
    canonical_line,
    entry_json,
    paths,
    problems_text,
    read_lines,
    verify,
    write_lines,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_append_then_verify_ok_and_the_files_are_as_documented(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        first = await log.append("change.submitted", change_id="chg_1", principal="alice")
        second = await log.append("sandbox.launched", session_id="ses_1", pids=64, ok=True,
                                  reason=None)
        report = await log.verify()
    assert (first, second) == (1, 2)
    assert report.ok and report.entries == 2 and report.problems == ()
    assert verify(tmp_path).ok

    where = paths(tmp_path)
    assert mode_of(where.directory) == 0o700
    assert mode_of(where.log) == 0o600 and mode_of(where.head) == 0o600
    lines = read_lines(tmp_path)
    assert len(lines) == 2 and all(line.endswith(b"\n") for line in lines)
    one, two = (entry_json(line) for line in lines)
    assert list(one) == ["at", "fields", "kind", "mac", "prev", "seq"]
    assert one["prev"] == GENESIS_MAC and two["prev"] == one["mac"]
    assert two["fields"] == {"session_id": "ses_1", "pids": 64, "ok": True, "reason": None}
    body = {k: one[k] for k in ("seq", "at", "kind", "fields", "prev")}
    assert one["mac"] == hmac.new(KEY, canonical_json(body).encode(), hashlib.sha256).hexdigest()
    assert lines[0] == canonical_line(one)

    head = json.loads(where.head.read_bytes())
    assert head["seq"] == 2 and head["mac"] == two["mac"]
    expected = hmac.new(KEY, f"head|2|{two['mac']}".encode(), hashlib.sha256).hexdigest()
    assert head["head_mac"] == expected


def test_an_empty_log_with_its_genesis_head_verifies(tmp_path: Path) -> None:
    build_chain(tmp_path, 0)
    report = verify(tmp_path)
    assert report.ok and report.entries == 0 and report.last_seq == 0


def test_editing_a_field_of_a_middle_entry_is_detected(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    lines = read_lines(tmp_path)
    edited = entry_json(lines[4])
    edited["fields"]["bytes"] += 1  # a canonical re-encoding, MAC left as it was
    lines[4] = canonical_line(edited)
    write_lines(tmp_path, lines)

    report = verify(tmp_path)
    assert not report.ok
    assert report.problems == ("seq 5: bad mac (content altered, or the wrong key)",)


def test_editing_an_entry_and_its_mac_breaks_the_next_link(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    lines = read_lines(tmp_path)
    edited = entry_json(lines[4])
    edited["kind"] = "test.other"
    edited["mac"] = hashlib.sha256(b"no key").hexdigest()
    lines[4] = canonical_line(edited)
    write_lines(tmp_path, lines)

    text = problems_text(verify(tmp_path))
    assert "seq 5: bad mac" in text and "seq 6: broken prev link" in text


def test_deleting_a_middle_entry_is_detected(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    lines = read_lines(tmp_path)
    del lines[4]
    write_lines(tmp_path, lines)

    report = verify(tmp_path)
    assert not report.ok and report.entries == 9
    text = problems_text(report)
    assert "seq 6: seq gap, expected seq 5" in text
    assert "seq 6: broken prev link" in text


def test_swapping_two_entries_is_detected(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    lines = read_lines(tmp_path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(tmp_path, lines)

    text = problems_text(verify(tmp_path))
    assert "seq 4: reordered" in text
    assert "seq 5: broken prev link" in text


@pytest.mark.parametrize("cut", [1, 3])
def test_truncating_the_tail_is_detected_through_the_head(tmp_path: Path, cut: int) -> None:
    build_chain(tmp_path, 10)
    write_lines(tmp_path, read_lines(tmp_path)[:-cut])

    report = verify(tmp_path)
    # What is left is a perfectly valid chain: only the signed head can tell.
    assert report.entries == 10 - cut
    assert report.problems == (
        f"truncated tail: the signed head is at seq 10 but the log ends at seq {10 - cut}",)


async def test_opening_a_truncated_log_is_refused(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    write_lines(tmp_path, read_lines(tmp_path)[:-3])
    with pytest.raises(AuditLogCorrupt, match="ends at seq 7 but the signed head is at seq 10"):
        async with open_audit_log(tmp_path, KEY):
            pass


def test_emptying_the_log_is_detected(tmp_path: Path) -> None:
    build_chain(tmp_path, 5)
    write_lines(tmp_path, [])
    assert verify(tmp_path).problems == (
        "truncated tail: the signed head is at seq 5 but the log ends at seq 0",)
    paths(tmp_path).log.unlink()
    assert not verify(tmp_path).ok


def _forge(previous: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    body = {"seq": previous["seq"] + 1, "at": previous["at"] + 1, "kind": "change.applied",
            "fields": {"change_id": "chg_evil"}, "prev": previous["mac"]}
    message = canonical_json(body).encode()
    mac = (hmac.new(key, message, hashlib.sha256) if key else hashlib.sha256(message))
    return {**body, "mac": mac.hexdigest()}


@pytest.mark.parametrize("forger_key", [None, OTHER_KEY], ids=["plain-hash", "other-key"])
async def test_a_forged_entry_appended_without_the_key_is_detected(
        tmp_path: Path, forger_key: bytes | None) -> None:
    build_chain(tmp_path, 5)
    lines = read_lines(tmp_path)
    forged = _forge(entry_json(lines[-1]), forger_key)
    write_lines(tmp_path, [*lines, canonical_line(forged)])

    assert "seq 6: bad mac" in problems_text(verify(tmp_path))
    # Forging the head as well does not help: its MAC needs the key too.
    fake = {"seq": 6, "mac": forged["mac"], "head_mac": hashlib.sha256(b"x").hexdigest()}
    paths(tmp_path).head.write_bytes(canonical_line(fake))
    text = problems_text(verify(tmp_path))
    assert "seq 6: bad mac" in text and "head mismatch: head.json: bad head mac" in text
    with pytest.raises(AuditLogCorrupt):
        async with open_audit_log(tmp_path, KEY):
            pass


async def test_a_forged_entry_past_a_valid_head_is_refused_on_open(tmp_path: Path) -> None:
    build_chain(tmp_path, 5)
    lines = read_lines(tmp_path)
    write_lines(tmp_path, [*lines, canonical_line(_forge(entry_json(lines[-1]), OTHER_KEY))])
    # Well-formed but unsigned: a forgery, not a torn write, so it is not rolled forward.
    with pytest.raises(AuditLogCorrupt,
                       match=r"ends at seq 6 \(bad mac\) but the signed head is at seq 5"):
        async with open_audit_log(tmp_path, KEY):
            pass


def test_a_wrong_key_fails_every_entry(tmp_path: Path) -> None:
    build_chain(tmp_path, 20)
    report = verify(tmp_path, OTHER_KEY)
    assert not report.ok and report.entries == 20
    bad = [p for p in report.problems if "bad mac" in p]
    assert bad == [f"seq {n}: bad mac (content altered, or the wrong key)" for n in range(1, 21)]
    assert report.problems[-1].startswith("head mismatch: head.json: bad head mac")
    assert verify(tmp_path, KEY).ok


async def test_a_wrong_key_cannot_open_the_log(tmp_path: Path) -> None:
    build_chain(tmp_path, 3)
    with pytest.raises(AuditLogCorrupt, match="bad head mac"):
        async with open_audit_log(tmp_path, OTHER_KEY):
            pass


def test_a_respelt_entry_is_refused_even_with_the_same_meaning(tmp_path: Path) -> None:
    build_chain(tmp_path, 4)
    lines = read_lines(tmp_path)
    value = entry_json(lines[1])
    lines[1] = lines[1].replace(value["mac"].encode(), value["mac"].upper().encode())
    write_lines(tmp_path, lines)
    assert "unparsable: prev or mac is not 64 lower-case hex digits" in problems_text(
        verify(tmp_path))
    build_chain(tmp_path, 4)
    lines = read_lines(tmp_path)
    lines[1] = lines[1].replace(b'"kind":', b'"kind": ')
    write_lines(tmp_path, lines)
    assert "line 2 (after seq 1): unparsable: not in canonical form" in problems_text(
        verify(tmp_path))


def test_garbage_and_overlong_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    build_chain(tmp_path, 6)
    lines = read_lines(tmp_path)
    lines[2] = b"not json at all\n"
    lines.insert(4, b"{" * 10 + b"x" * 200_000 + b"\n")
    write_lines(tmp_path, lines)
    report = verify(tmp_path)
    text = problems_text(report)
    assert "line 3 (after seq 2): unparsable: line is not JSON" in text
    assert "longer than 65536 bytes" in text
    assert report.last_seq == 6 and "truncated" not in text


def test_a_missing_or_malformed_head_is_a_problem(tmp_path: Path) -> None:
    build_chain(tmp_path, 3)
    head = paths(tmp_path).head
    head.unlink()
    assert "head.json is missing" in problems_text(verify(tmp_path))
    head.write_bytes(b"{}")
    assert "head mismatch: head.json has the wrong set of keys" in problems_text(
        verify(tmp_path))
    lines = read_lines(tmp_path)
    head.write_bytes(encode_head(KEY, Head(2, entry_json(lines[2])["mac"])))
    assert "runs to seq 3, past the signed head at seq 2" in problems_text(verify(tmp_path))


def test_the_verifier_is_indifferent_to_chunk_boundaries(tmp_path: Path) -> None:
    build_chain(tmp_path, 12)
    lines = read_lines(tmp_path)
    del lines[6]
    data = b"".join(lines)
    head = paths(tmp_path).head.read_bytes()
    whole = ChainVerifier(KEY)
    whole.feed(data)
    expected = whole.finish(head)
    assert not expected.ok
    for size in (1, 7, 64, 333):
        verifier = ChainVerifier(KEY)
        for start in range(0, len(data), size):
            verifier.feed(data[start:start + size])
        assert verifier.finish(head) == expected


def test_problems_are_capped_so_memory_stays_bounded(tmp_path: Path) -> None:
    build_chain(tmp_path, 150)
    report = verify(tmp_path, OTHER_KEY)
    assert len(report.problems) == 101
    assert report.problems[-1] == "... and 51 more problems"


# Hypothesis: random appends, then any single-byte change to either file is caught.

_field_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf")), max_size=40),
)
_appends = st.lists(
    st.tuples(st.from_regex(r"[a-z]{1,8}\.[a-z][a-z_]{0,7}", fullmatch=True),
              st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _field_values,
                              max_size=5)),
    min_size=0, max_size=8)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=_appends, target=st.sampled_from(["log", "head"]),
       where=st.floats(min_value=0, max_value=1, exclude_max=True),
       byte=st.integers(min_value=0, max_value=255))
async def test_any_single_byte_corruption_after_random_appends_is_detected(
        tmp_path: Path, appends: list[tuple[str, dict[str, Any]]], target: str, where: float,
        byte: int) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        state = Path(scratch)
        async with open_audit_log(state, KEY, clock=Clock()) as log:
            for kind, fields in appends:
                await log.append(kind, **fields)
        assert verify(state).ok
        path = paths(state).log if target == "log" else paths(state).head
        data = bytearray(path.read_bytes())
        if not data:
            return  # an empty log has no byte to corrupt; the head case covers it
        offset = int(where * len(data))
        original = data[offset]
        data[offset] = byte
        path.write_bytes(bytes(data))
        report = verify_file(paths(state).log, KEY)
        assert report.ok == (byte == original), (target, offset, original, byte)
