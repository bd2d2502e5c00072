"""ironctl against a fake API: argument parsing, output, exit codes, the change diff,
and the token staying out of URLs and output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ironclaw.changediff import change_diff, diff_lines
from ironclaw.cli.ironctl.changes import decision_line
from tests.support.ironctl import APPROVER, TOKEN, VIEWER, FakeApi, change, ironctl


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


def no_token_in_urls(fake: FakeApi) -> None:
    for request in fake.requests:
        assert TOKEN not in str(request.url) and VIEWER not in str(request.url)


# Parsing and usage.

@pytest.mark.parametrize("argv", [
    [], ["change"], ["change", "pending", "--limit", "0"],
    ["change", "submit", "--kind", "nope", "--group", "demo", "--payload", "{}"],
    ["change", "submit", "--kind", "packages", "--group", "demo", "--payload", "{oops"],
    ["audit", "tail", "--limit", "x"], ["events", "--since", "-1"],
    ["--addr", "http://user:pw@127.0.0.1:1", "status"],
    ["--addr", "ftp://127.0.0.1", "status"],
    ["--token", "a b c", "status"],
    ["agent", "create", "x", "--folder", "x", "--identity", "@/nonexistent/file"],
])
async def test_usage_errors_exit_2(fake: FakeApi, argv: list[str]) -> None:
    result = await ironctl(fake, *argv)
    assert result.code == 2, result
    assert result.err
    assert not [r for r in fake.requests if r.method == "POST"]


async def test_help_exits_0(fake: FakeApi) -> None:
    result = await ironctl(fake, "--help")
    assert result.code == 0 and "exit codes" in result.out


async def test_global_options_work_after_the_command(fake: FakeApi) -> None:
    result = await ironctl(fake, "change", "pending", "--json", "--timeout", "5")
    assert result.code == 0
    assert [c["id"] for c in result.json()["changes"]] == ["chg_1"]


async def test_a_missing_or_wrong_token_exits_3(fake: FakeApi) -> None:
    missing = await ironctl(fake, "change", "pending", token=None)
    assert missing.code == 3
    assert "401 unauthorized: a valid bearer token is required" in missing.err
    wrong = await ironctl(fake, "--token", "icw_wrong_token_123456", "sessions")
    assert wrong.code == 3


async def test_token_from_file_and_flag_override_env(fake: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    result = await ironctl(fake, "--token-file", str(path), "sessions",
                           env={"IRONCLAW_API_TOKEN": "icw_stale_token_0000000"}, token=None)
    assert result.code == 0
    assert fake.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


async def test_the_token_is_never_in_urls_or_output(fake: FakeApi) -> None:
    fake.echo_token_in_errors = True
    result = await ironctl(fake, "--token", "icw_not_the_right_one_42", "change", "pending")
    assert result.code == 3
    assert "icw_not_the_right_one_42" not in result.out + result.err
    assert "***" in result.err
    for argv in (["change", "pending"], ["change", "show", "chg_1"], ["status"],
                 ["audit", "export"], ["doctor"]):
        result = await ironctl(fake, *argv)
        assert TOKEN not in result.out + result.err
    no_token_in_urls(fake)


async def test_an_unreachable_api_exits_1_with_a_clear_line() -> None:
    result = await ironctl(None, "--addr", "http://127.0.0.1:9", "--timeout", "2", "status")
    assert result.code == 1
    assert "cannot reach the API at http://127.0.0.1:9" in result.err


# Changes.

async def test_submit_sends_the_documented_body(fake: FakeApi, tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"pip": ["requests"]}))
    result = await ironctl(fake, "change", "submit", "--kind", "packages", "--group", "demo",
                           "--payload", f"@{payload}", "--reason", "need it", "--ttl", "60")
    assert result.code == 0, result
    assert "submitted packages change chg_n1 for demo (pending)" in result.out
    (body,) = fake.posted("/v1/changes")
    assert body == {"kind": "packages", "agent_group": "demo", "payload": {"pip": ["requests"]},
                    "reason": "need it", "ttl_seconds": 60.0}


async def test_payload_from_stdin(fake: FakeApi) -> None:
    result = await ironctl(fake, "--json", "change", "submit", "--kind", "persona",
                           "--group", "demo", "--payload", "@-", stdin='{"soul": "calm"}')
    assert result.code == 0
    assert result.json() == {"id": "chg_n1", "status": "pending"}
    assert fake.posted("/v1/changes")[0]["payload"] == {"soul": "calm"}


async def test_a_submission_rejected_by_a_verifier_exits_1(fake: FakeApi) -> None:
    fake.reject_kinds.add("packages")
    result = await ironctl(fake, "change", "submit", "--kind", "packages", "--group", "demo",
                           "--payload", '{"pip": ["evil"]}')
    assert result.code == 1
    assert "verifier:packages: package 'evil' is denied" in result.err


async def test_pending_and_history_tables(fake: FakeApi) -> None:
    result = await ironctl(fake, "change", "pending")
    header, row = result.out.splitlines()
    assert header.split() == ["ID", "KIND", "GROUP", "STATUS", "REQUESTED", "BY", "CREATED",
                              "REASON"]
    assert row.startswith("chg_1") and "enabled_tools" in row and "2023-11-14 22:13:20Z" in row
    fake.changes.clear()
    assert (await ironctl(fake, "change", "pending")).out.strip() == "(no pending changes)"
    history = await ironctl(fake, "change", "history", "--status", "applied", "--json")
    assert history.code == 0 and history.json() == {"changes": []}
    assert "status=applied" in str(fake.requests[-1].url)


async def test_show_renders_a_readable_diff(fake: FakeApi) -> None:
    fake.changes["chg_2"] = change("chg_2", "persona", before={
        "identity": "old", "soul": "kind", "gone": 1}, after={
        "identity": "new", "soul": "kind", "added": [1, 2]})
    result = await ironctl(fake, "change", "show", "chg_2")
    assert result.code == 0
    assert "kind          persona" in result.out
    lines = [line.strip() for line in result.out.split("diff:")[1].splitlines() if line]
    assert lines == ['+ /added: [1,2]', '- /gone: 1', '~ /identity: "old" -> "new"']


async def test_a_created_thing_shows_its_fields_and_long_values_are_cut(
        fake: FakeApi) -> None:
    after = {"name": "Ada", "folder": "ada", "persona": {"identity": "x" * 500}}
    fake.changes["chg_3"] = change("chg_3", "create_agent", "ada", before=None, after=after)
    short = await ironctl(fake, "change", "show", "chg_3")
    assert '+ /name: "Ada"' in short.out and '+ /folder: "ada"' in short.out
    assert "+ /persona/identity: \"xxx" in short.out and "(502 chars)" in short.out
    full = await ironctl(fake, "change", "show", "chg_3", "--full")
    assert '"' + "x" * 500 + '"' in full.out


def test_diff_rendering_of_lists_and_nested_values() -> None:
    lines = diff_lines(change_diff({"a": [1, 2, 3], "b": {"c": True}},
                                   {"a": [1, 5], "b": {"c": False, "d": None}}))
    assert lines == ["~ /a/1: 2 -> 5", "- /a/2: 3", "~ /b/c: true -> false", "+ /b/d: null"]
    assert diff_lines(change_diff(None, "x")) == ['~ /: null -> "x"']
    assert diff_lines(change_diff({"k": 1}, {"k": 1})) == []


async def test_approve_then_conflict_then_not_found(fake: FakeApi) -> None:
    approved = await ironctl(fake, "change", "approve", "chg_1", "--reason", "fine")
    assert approved.code == 0
    assert approved.out.strip() == "change chg_1 approved by owner: now applied"
    assert fake.posted("/v1/changes/chg_1/decision") == [{"outcome": "approve",
                                                          "reason": "fine"}]
    again = await ironctl(fake, "change", "reject", "chg_1")
    assert again.code == 5
    assert "HTTP 409 conflict: change chg_1 is already applied" in again.err
    missing = await ironctl(fake, "--json", "change", "approve", "chg_nope")
    assert missing.code == 4
    assert json.loads(missing.err) == {"status": 404, "error": "not_found",
                                       "detail": "no change 'chg_nope'"}


async def test_a_viewer_cannot_decide(fake: FakeApi) -> None:
    result = await ironctl(fake, "--token", VIEWER, "change", "approve", "chg_1")
    assert result.code == 3 and "403 forbidden" in result.err


async def test_ids_are_percent_encoded_into_paths(fake: FakeApi) -> None:
    result = await ironctl(fake, "change", "show", "../audit/verify")
    assert result.code == 4
    assert fake.requests[-1].url.raw_path == b"/v1/changes/..%2Faudit%2Fverify"


# Audit.

async def test_audit_tail_and_verify(fake: FakeApi) -> None:
    tail = await ironctl(fake, "audit", "tail", "--limit", "2")
    assert tail.code == 0
    assert [line.split()[0] for line in tail.out.splitlines()] == ["SEQ", "2", "3"]
    assert "change_id=chg_1" in tail.out
    ok = await ironctl(fake, "audit", "verify")
    assert ok.code == 0 and "audit log OK: 3 entries, last seq 3" in ok.out
    fake.verify = {"ok": False, "entries": 3, "last_seq": 2,
                   "problems": ["entry 2: mac mismatch", "the signed head is ahead"]}
    bad = await ironctl(fake, "audit", "verify")
    assert bad.code == 1
    assert "  - entry 2: mac mismatch\n  - the signed head is ahead" in bad.out
    assert (await ironctl(fake, "--json", "audit", "verify")).code == 1


async def test_audit_export_streams_ndjson(fake: FakeApi) -> None:
    result = await ironctl(fake, "audit", "export", "--after", "1")
    assert result.code == 0
    assert [e["seq"] for e in result.lines()] == [2, 3]
    assert "after_seq=1" in str(fake.requests[-1].url)


# Agents.

async def test_agent_create_with_a_template_and_approve_is_two_acts(fake: FakeApi,
                                                                    tmp_path: Path) -> None:
    soul = tmp_path / "soul.md"
    soul.write_text("Patient.")
    result = await ironctl(fake, "agent", "create", "Ada", "--folder", "ada",
                           "--template", "researcher", "--soul", f"@{soul}",
                           "--provider", "anthropic", "--model", "claude-x",
                           "--tool", "read_file", "--tool", "web_fetch", "--tool",
                           "read_file", "--approve")
    assert result.code == 0, result
    (body,) = fake.posted("/v1/changes")
    assert body["kind"] == "create_agent" and body["agent_group"] == "ada"
    payload = body["payload"]
    assert payload["name"] == "Ada" and payload["folder"] == "ada"
    assert payload["provider"] == "anthropic" and payload["model"] == "claude-x"
    assert payload["tools"] == ["read_file", "web_fetch"]
    assert payload["persona"]["soul"] == "Patient."
    assert payload["persona"]["identity"].startswith("You are Ada, a careful research")
    assert fake.posted("/v1/changes/chg_n1/decision") == [{"outcome": "approve"}]
    assert "approved by owner: now applied" in result.out


async def test_agent_create_without_approve_leaves_it_pending(fake: FakeApi) -> None:
    result = await ironctl(fake, "--json", "agent", "create", "Bo", "--folder", "bo")
    assert result.code == 0
    assert result.json() == {"submitted": {"id": "chg_n1", "status": "pending"}}
    assert fake.posted("/v1/changes")[0]["payload"] == {"name": "Bo", "folder": "bo"}
    assert not fake.posted("/v1/changes/chg_n1/decision")


async def test_agent_create_approve_refused_keeps_the_change(fake: FakeApi) -> None:
    result = await ironctl(fake, "--token", APPROVER, "agent", "create", "Bo", "--folder",
                           "bo", "--approve")
    assert result.code == 3
    assert "submitted create_agent change chg_n1" in result.out
    assert "stays pending for another approver" in result.err
    assert "403 forbidden: approver may not approve create_agent" in result.err
    assert fake.changes["chg_n1"]["status"] == "pending"
    viewer = await ironctl(fake, "--token", VIEWER, "agent", "create", "Cy", "--folder", "cy")
    assert viewer.code == 3 and "chg_n2" not in fake.changes


async def test_agent_templates_list_show(fake: FakeApi) -> None:
    listing = await ironctl(fake, "agent", "templates")
    assert {"assistant", "researcher", "coder"} <= {
        line.split()[0] for line in listing.out.splitlines()[1:]}
    one = await ironctl(fake, "--json", "agent", "templates", "coder")
    assert set(one.json()["persona"]) == {"identity", "soul", "instructions"}
    assert (await ironctl(fake, "agent", "templates", "nope")).code == 2
    agents = await ironctl(fake, "agent", "list")
    assert agents.out.splitlines()[1].split() == ["demo", "Demo", "demo", "mock", "mock",
                                                  "read_file"]
    shown = await ironctl(fake, "agent", "show", "demo")
    assert "[identity]\nYou are Demo." in shown.out and "[soul]\n(empty)" in shown.out
    assert (await ironctl(fake, "agent", "show", "ghost")).code == 4


# Views.

async def test_registry_sessions_questions_access(fake: FakeApi) -> None:
    for resource, first in (("agent-groups", "demo"), ("messaging-groups", "mg1"),
                            ("wirings", "w1")):
        result = await ironctl(fake, "registry", resource)
        assert result.code == 0 and result.out.splitlines()[1].split()[0] == first
    assert (await ironctl(fake, "registry", "destinations")).code == 2
    assert "(no destinations)" in (await ironctl(fake, "registry", "destinations",
                                                 "demo")).out
    sessions = await ironctl(fake, "sessions", "--live")
    assert [line.split()[0] for line in sessions.out.splitlines()] == ["ID", "s1"]
    one = await ironctl(fake, "sessions", "s1")
    assert "container_status    running" in one.out
    questions = await ironctl(fake, "questions")
    assert "Which colour?" in questions.out and "red | blue" in questions.out
    answered = await ironctl(fake, "questions", "answer", "q1", "red")
    assert answered.code == 0 and "answered by owner: red" in answered.out
    assert fake.posted("/v1/questions/q1/answer") == [{"answer": "red"}]
    access = await ironctl(fake, "access", "--status", "pending")
    assert "telegram:42" in access.out and "chg_access_ar1" in access.out
    assert "ironctl change approve" in access.err


# Status and doctor.

async def test_status(fake: FakeApi) -> None:
    result = await ironctl(fake, "status")
    assert result.code == 0
    assert "sessions   2 (1 live)" in result.out and "pending    1 change(s)" in result.out
    assert "sandbox    runc (shared-kernel)" in result.out
    assert "WARNING: runc shares the host kernel" in result.out
    assert "channel    local/default: up" in result.out
    fake.ready = False
    result = await ironctl(fake, "--json", "status")
    assert result.code == 1
    assert result.json()["ready"]["status"] == "not ready"


async def test_doctor(fake: FakeApi, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runsc = bin_dir / "runsc"
    runsc.write_text("#!/bin/sh\n")
    runsc.chmod(0o755)
    env = {"PATH": str(bin_dir), "ANTHROPIC_API_KEY": "sk-secret-value"}
    good = await ironctl(fake, "doctor", "--state-dir", str(state), env=env)
    assert good.code == 0, good.out
    assert "PASS  runtime" in good.out and "PASS  state dir" in good.out
    assert "WARN  sandbox" in good.out and "PASS  channel local/default" in good.out
    assert "ANTHROPIC_API_KEY" in good.out and "sk-secret-value" not in good.out
    os.chmod(state, 0o755)
    (state / "loose").write_text("")
    os.chmod(state / "loose", 0o666)
    bad = await ironctl(fake, "--json", "doctor", "--state-dir", str(state),
                        env={"PATH": ""}, token=None)
    assert bad.code == 1
    checks = {c["name"]: c for c in bad.json()["checks"]}
    assert checks["token"]["status"] == "FAIL"
    assert checks["state dir"]["status"] == "FAIL"
    assert "0755" in checks["state dir"]["detail"] and "loose" in checks["state dir"]["detail"]
    assert checks["runtime"]["status"] == "WARN"
    assert checks["model credentials"]["status"] == "WARN"
    fake.ready = False
    assert (await ironctl(fake, "doctor")).code == 1


async def test_doctor_says_why_the_daemon_may_refuse_the_environment_token(
        fake: FakeApi) -> None:
    stale = "icw_" + "r" * 40  # the env token of an owner that has been revoked
    result = await ironctl(fake, "--json", "doctor", env={"PATH": ""}, token=stale)
    token = {c["name"]: c for c in result.json()["checks"]}["token"]
    assert token["status"] == "FAIL" and "HTTP 401" in token["detail"]
    assert "'owner' principal has been revoked" in token["detail"]
    assert "api.env_token_refused" in token["detail"] and stale not in token["detail"]
    # A token given on the command line is not the daemon's: no such hint.
    result = await ironctl(fake, "--json", "--token", stale, "doctor", env={"PATH": ""},
                           token=None)
    token = {c["name"]: c for c in result.json()["checks"]}["token"]
    assert token["status"] == "FAIL" and "revoked" not in token["detail"]


async def test_doctor_reports_an_unreachable_api() -> None:
    result = await ironctl(None, "--addr", "http://127.0.0.1:9", "--timeout", "2", "doctor")
    assert result.code == 1
    assert "FAIL  api" in result.out and "FAIL  token" in result.out


def test_main_runs_its_own_trio_loop(capsys: pytest.CaptureFixture[str]) -> None:
    from ironclaw.cli.ironctl import main

    assert main(["--json", "agent", "templates"]) == 0
    names = [t["name"] for t in json.loads(capsys.readouterr().out)["templates"]]
    assert names == ["assistant", "researcher", "coder"]
    assert main(["change", "show"]) == 2
    assert "the following arguments are required: id" in capsys.readouterr().err


async def test_usage_messages_redact_a_token_given_by_mistake(fake: FakeApi) -> None:
    result = await ironctl(fake, "--token", TOKEN, TOKEN)  # the token where a command goes
    assert result.code == 2
    assert TOKEN not in result.err and "***" in result.err


async def test_doctor_checks_the_channel_config_locally(fake: FakeApi, tmp_path: Path) -> None:
    config = tmp_path / "ironclaw.toml"
    config.write_text('[[channels]]\ntype = "telegram"\n\n[[channels]]\ntype = "fax"\n')
    result = await ironctl(fake, "doctor", "--config", str(config), env={"PATH": ""})
    assert result.code == 1
    assert "FAIL  config telegram/default" in result.out
    assert "IRONCLAW_TELEGRAM_TOKEN" in result.out  # says how to fix it
    assert "unknown channel type 'fax'" in result.out
    config.write_text("[[channels]\n")
    broken = await ironctl(fake, "doctor", "--config", str(config), env={"PATH": ""})
    assert broken.code == 1 and "FAIL  config" in broken.out


def test_a_first_of_two_approvals_says_it_is_still_pending() -> None:
    first = decision_line({"id": "chg_1", "status": "pending", "decision": None}, "approve")
    assert "needs a second, different approver" in first and "still pending" in first
    done = decision_line({"id": "chg_1", "status": "applied",
                          "decision": {"decided_by": "ada"}}, "approve")
    assert done == "change chg_1 approved by ada: now applied"
