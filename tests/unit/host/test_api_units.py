"""The API's small parts: binding rules, the rate limiter, input checking against the
published schemas, the OpenAPI document (kept in the repo, covering every route), and
how events are rendered for the stream."""

from __future__ import annotations

import enum
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.host.api import ApiSettings, BindRefused, eventtable, exposure_warning, is_loopback
from ironclaw.host.api import openapi as openapi_module
from ironclaw.host.api.app import create_app
from ironclaw.host.api.context import ApiContext
from ironclaw.host.api.metrics import ApiMetrics
from ironclaw.host.api.render import envelope
from ironclaw.host.api.schemas import ANSWER, CHANGE_SUBMIT, DECISION, LOCAL_MESSAGE
from ironclaw.host.api.validate import assert_supported, problems
from ironclaw.runtime import Envelope, EventBus
from ironclaw.runtime.ratelimit import KeyedRateLimiter

KEPT = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


# Binding

def test_the_api_binds_loopback_unless_told_otherwise() -> None:
    default = ApiSettings()
    assert (default.host, default.port, default.allow_public) == ("127.0.0.1", 8787, False)
    default.check_bind()
    for host in ("127.0.0.1", "127.0.0.9", "::1", "localhost"):
        assert is_loopback(host)
        ApiSettings(host=host).check_bind()
    for host in ("0.0.0.0", "::", "10.0.0.5", "100.64.1.2", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(BindRefused):
            ApiSettings(host=host).check_bind()
        public = ApiSettings(host=host, allow_public=True)
        public.check_bind()
        warning = exposure_warning(public)
        assert public.bind in warning and "NOT LOOPBACK" in warning
    assert ApiSettings(host="::1").bind == "[::1]:8787"


def test_api_addr_parses_host_and_port() -> None:
    assert ApiSettings.parse_addr("127.0.0.1:9000").bind == "127.0.0.1:9000"
    assert ApiSettings.parse_addr("[::1]:9000").host == "::1"
    assert ApiSettings.parse_addr("100.64.0.1:80", allow_public=True).allow_public
    for bad in ("127.0.0.1", ":80", "host:port", "1.2.3.4:99999", "a b:1"):
        with pytest.raises(ValueError):
            ApiSettings.parse_addr(bad)


# Rate limiting

async def test_a_bucket_allows_its_burst_then_refills(
        autojump_clock: trio.testing.MockClock) -> None:
    limiter = KeyedRateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # keys are independent
    await trio.sleep(0.5)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    await trio.sleep(60)
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]


async def test_the_limiter_forgets_the_least_recent_keys(
        autojump_clock: trio.testing.MockClock) -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # evicts "a"
    assert limiter.take("a") == 0.0
    assert limiter.take("c") > 0


# Input checking

def test_request_schemas_use_only_what_the_checker_enforces() -> None:
    for schema in (CHANGE_SUBMIT, DECISION, LOCAL_MESSAGE, ANSWER):
        assert_supported(schema)
        assert schema["additionalProperties"] is False


def test_the_change_body_is_checked_as_documented() -> None:
    good = {"kind": "persona", "agent_group": "demo", "payload": {"soul": "x"}}
    assert problems(good, CHANGE_SUBMIT) is None
    assert problems({**good, "payload": None, "reason": None, "ttl_seconds": 1.5},
                    CHANGE_SUBMIT) is None
    for bad, why in (
            ({**good, "decided_by": "x"}, "unknown field"),
            ({"kind": "persona", "agent_group": "demo"}, "payload is required"),
            ({**good, "kind": "teleport"}, "kind must be one of"),
            ({**good, "agent_group": "demo\n"}, "not of the expected form"),
            ({**good, "agent_group": "a" * 65}, "not of the expected form"),
            ({**good, "ttl_seconds": True}, "must be number or null"),
            ({**good, "ttl_seconds": 0}, "more than 0"),
            ({**good, "ttl_seconds": 10**9}, "at most"),
            ({**good, "reason": "r" * 2001}, "longer than 2000"),
            ([good], "must be object")):
        found = problems(bad, CHANGE_SUBMIT)
        assert found is not None and why in found, (bad, found)


@given(value=JSON_VALUES)
def test_checking_any_json_never_raises(value: Any) -> None:
    for schema in (CHANGE_SUBMIT, DECISION, LOCAL_MESSAGE, ANSWER):
        found = problems(value, schema)
        assert found is None or isinstance(found, str)


# The OpenAPI document

def test_the_document_in_the_repo_is_current() -> None:
    assert KEPT.read_text(encoding="utf-8") == openapi_module.document_text(), (
        "regenerate: python -c 'from ironclaw.host.api import openapi; openapi.main()' "
        "> docs/openapi.json")


API_MD = KEPT.with_name("api.md")


def _route_table_entries() -> set[str]:
    """Each ``METHOD /path`` the routes table of docs/api.md names, parameters blanked."""
    text = API_MD.read_text(encoding="utf-8")
    table = text[text.index("## Routes"):text.index("## Metrics")]
    found = re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", table)
    return {f"{method} {re.sub(r'{[^}]*}', '{}', path.partition('?')[0])}"
            for method, path in found}


def test_the_routes_table_in_api_md_names_every_route_and_no_other() -> None:
    served = {f"{method.upper()} {re.sub(r'{[^}]*}', '{}', path)}"
              for path, item in openapi_module.document()["paths"].items() for method in item}
    assert _route_table_entries() == served


def test_the_event_table_in_api_md_is_current() -> None:
    text = API_MD.read_text(encoding="utf-8")
    begin, end = text.index(eventtable.BEGIN), text.index(eventtable.END) + len(eventtable.END)
    assert text[begin:end] + "\n" == eventtable.table_text(), (
        "regenerate: python -m ironclaw.host.api.eventtable, and paste it into docs/api.md")


def _app_rules() -> list[Any]:
    handles = SimpleNamespace(gateway=None, audit=None, local=None, registry=None,
                              events=EventBus(), questions=None, sessions=None)
    ctx = ApiContext(handles=cast(Any, handles), settings=ApiSettings(),
                     principals=cast(Any, SimpleNamespace()),
                     limiter=KeyedRateLimiter(1.0, 1), metrics=ApiMetrics())
    return list(create_app(ctx).url_map.iter_rules())


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    document = openapi_module.document()
    served = set()
    sockets = set()
    for rule in _app_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        if rule.websocket:
            sockets.add(path)
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method.lower(), path))
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item}
    assert served == documented
    assert sockets == set(document["x-websockets"])
    for path, item in document["paths"].items():
        for operation in item.values():
            codes = set(operation["responses"])
            if path in ("/healthz", "/readyz", "/ui/", "/ui/{asset}"):
                assert operation["security"] == []
            else:
                assert {"401", "429"} <= codes, path
            if "requestBody" in operation:
                assert {"400", "413"} <= codes, path


# Rendering events for the stream

class Colour(enum.Enum):
    RED = "red"


@attrs.frozen
class Odd:
    type: ClassVar[str] = "test.odd"
    colour: Colour
    items: tuple[int, ...]
    nested: dict[str, Any]
    session_id: str = "sess_1"


def test_events_render_as_plain_json() -> None:
    event = Odd(Colour.RED, (1, 2), {"k": frozenset({3})})
    frame = envelope(Envelope(seq=7, timestamp=1.5, event=event))
    assert frame == {"seq": 7, "type": "test.odd", "at": 1_500_000, "event": {
        "colour": "red", "items": [1, 2], "nested": {"k": [3]}, "session_id": "sess_1"}}
    json.dumps(frame)

