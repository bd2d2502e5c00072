"""schemathesis against the live API, driven by the OpenAPI document it serves: every
operation, valid and invalid input, seeded and bounded. No 5xx, no response that
breaks the document (status, content type, headers, body schema), and no invalid
input accepted. Operations on one resource run a second time against resources that
exist (a session, a pending change, a pending question, the demo groups), so their
real answers are checked against the document too, not only their 404s."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ironclaw.host.api import openapi_document
from ironclaw.host.mcp import McpCatalogEntry, McpConfig, McpServerEntry
from tests.support.api import Api, default_settings, running_api  # noqa: F401

# The API's MCP catalogue: one server, never started (no group is granted it).
MCP = McpConfig(servers=(McpCatalogEntry(McpServerEntry(name="time",
                                                         command="mcp-server-time")),))
EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          negative_data_rejection]
POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE


def existing_ids(path: str, known: dict[str, str]) -> dict[str, str] | None:
    """Path parameters naming things that exist, for an operation on one resource."""
    if "{" not in path:
        return None
    if path.startswith("/v1/registry/messaging-groups/"):
        return {"group_id": known["messaging_group"]}
    names = {"group_id": "demo", "conversation": "demo", "name": "time",
             "change_id": known["change"],
             "session_id": known["session"], "question_id": known["question"]}
    return {name: value for name, value in names.items() if "{" + name + "}" in path}


def run_schemathesis(base_url: str, token: str, known: dict[str, str]
                     ) -> tuple[list[str], dict[tuple[str, str, bool], set[int]]]:
    """Returns the failures, and the statuses seen per (operation, mode, fixed ids)."""
    # 413 is a rejection too: an over-long field in a big enough body meets the body cap.
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": [400, 401, 403, 404, 405, 409, 413, 422, 429]}}})
    schema = schemathesis.openapi.from_dict(openapi_document(), config=config)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    seen: dict[tuple[str, str, bool], set[int]] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        # Deleting what exists would take it from every later operation's run (and
        # its own end-to-end test proves it); a DELETE meets only unknown ids here.
        fixed = None if operation.method.upper() == "DELETE" else \
            existing_ids(operation.path, known)
        passes = [(POSITIVE, None), (NEGATIVE, None)] + ([(POSITIVE, fixed)] if fixed else [])
        for mode, ids in passes:
            key = (operation.label, mode.value, ids is not None)

            @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids))
            def check(case: Any) -> None:
                # A query parameter whose value is an empty list is not sent at all, so
                # it cannot make a negative case invalid on the wire.
                assume(mode is not NEGATIVE or [] not in (case.query or {}).values())  # noqa: B023
                response = case.call_and_validate(base_url=base_url, headers=headers,
                                                  checks=CHECKS, timeout=30)
                seen.setdefault(key, set()).add(response.status_code)  # noqa: B023

            try:
                check()
            except Unsatisfiable:
                # Nothing to get wrong: a probe takes no input, not even a token; the
                # console's files take only a name, and any string is a name (404 or
                # the file).
                assert mode is NEGATIVE and operation.path in (
                    "/healthz", "/readyz", "/ui/", "/ui/{asset}")
            except (Exception, BaseExceptionGroup) as exc:  # collect all, report at once
                failures.append(f"{operation.label} {key}: {exc}"[:2000])
    return failures, seen


async def make_things_exist(api: Api) -> dict[str, str]:
    directive = json.dumps({"question": "Which colour?", "options": ["red", "blue"]})
    posted = await api.post("/v1/channels/local/messages", {
        "agent_group": "demo", "sender": "alice",
        "text": f"tool:ask_user_question {directive}"})
    assert posted.status_code == 202
    with trio.fail_after(60):
        while not (questions := (await api.get("/v1/questions")).json()["questions"]):  # noqa: ASYNC110
            await trio.sleep(0.1)
    change = await api.post("/v1/changes", {"kind": "persona", "agent_group": "demo",
                                            "payload": {"soul": "Curious."}})
    messaging = (await api.get("/v1/registry/messaging-groups")).json()["messaging_groups"]
    return {"question": questions[0]["id"], "session": questions[0]["session_id"],
            "change": change.json()["id"], "messaging_group": messaging[0]["id"]}


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(api: Api) -> None:
    known = await make_things_exist(api)
    failures, seen = await trio.to_thread.run_sync(run_schemathesis, api.url,
                                                   api.tokens["owner"], known)
    assert not failures, "\n\n".join(failures)
    operations = [f"{method.upper()} {path}" for path, item in
                  openapi_document()["paths"].items() for method in item]
    for label in operations:
        assert (label, "positive", False) in seen, label  # every operation exercised
    # The runs on existing resources met them: every such GET found its resource.
    for (label, _mode, fixed), statuses in seen.items():
        if fixed and label.startswith("GET "):
            assert 200 in statuses, (label, statuses)
    decided = seen[("POST /v1/changes/{change_id}/decision", "positive", True)]
    assert {200, 409} <= decided
    # Still sound after the fuzzing: the audit chain holds and the plane is ready.
    assert (await api.get("/v1/audit/verify")).json()["ok"] is True
    assert (await api.client.get(api.url + "/readyz")).status_code == 200
