"""The model proxy's pure parts: secrets, endpoints, header policy, bucket, redactor."""

from __future__ import annotations

import itertools
import logging
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironclaw.host.modelproxy import Credentials, ProviderEndpoint, ProviderKind, Secret
from ironclaw.host.modelproxy.providers import (
    normalize_host,
    request_headers_for_upstream,
    response_headers_for_sandbox,
)
from ironclaw.host.modelproxy.redact import MAX_HOLD, Redactor
from ironclaw.runtime.ratelimit import TokenBucket

KEY = "sk-ant-api03-" + "A1b2C3d4" * 6


# -- Secret and Credentials ------------------------------------------------------------

def test_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret)
    assert KEY not in f"{secret} {secret!r} {secret:>80}"
    assert KEY not in repr(ProviderEndpoint.anthropic(secret))
    assert KEY not in repr(Credentials(anthropic=secret))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").warning("key %s", secret)
    assert KEY not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret._value = "x"
    assert secret.reveal() == KEY


@pytest.mark.parametrize("bad", ["", "a b", "line\r\nx-evil: 1", "tab\there", "é" * 10,
                                 "x" * 1025])
def test_secret_refuses_header_breaking_values(bad: str) -> None:
    with pytest.raises(ValueError):
        Secret(bad)


def test_credentials_from_env() -> None:
    creds = Credentials.from_env({
        "ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": " ", "OPENROUTER_API_KEY": "sk-or-v1-x",
        "IRONCLAW_LOCAL_MODEL_URL": "http://127.0.0.1:11434",
    })
    assert creds.anthropic == Secret(KEY)
    assert creds.openai is None
    assert creds.local_url == "http://127.0.0.1:11434" and creds.local_key is None
    assert sorted(s.reveal() for s in creds.secrets()) == sorted([KEY, "sk-or-v1-x"])
    assert Credentials.from_env({}) == Credentials()


# -- endpoints -------------------------------------------------------------------------

def test_default_endpoints() -> None:
    creds = Credentials(anthropic=Secret(KEY), openai=Secret("sk-openai-1"),
                        openrouter=Secret("sk-or-1"), local_url="http://127.0.0.1:11434")
    a = ProviderEndpoint.from_credentials("anthropic", creds)
    assert (a.allowed_hosts, a.upstream_base_url) == (
        frozenset({"api.anthropic.com"}), "https://api.anthropic.com")
    assert a.injected_headers() == [("x-api-key", KEY)]
    o = ProviderEndpoint.from_credentials("openai", creds)
    assert o.allowed_hosts == frozenset({"api.openai.com"})
    assert o.injected_headers() == [("authorization", "Bearer sk-openai-1")]
    r = ProviderEndpoint.from_credentials(ProviderKind.OPENROUTER, creds)
    assert r.upstream_url("/v1/chat/completions", "") == (
        "https://openrouter.ai/api/v1/chat/completions")
    local = ProviderEndpoint.from_credentials("local", creds)
    assert local.allowed_hosts == frozenset({"127.0.0.1"}) and local.injected_headers() == []
    mock = ProviderEndpoint.from_credentials("mock", creds)
    assert mock.allowed_hosts == frozenset({"mock.ironclaw.invalid"})
    assert mock.allows_route("POST", "/v1/messages")
    assert mock.allows_route("POST", "/v1/chat/completions")
    assert not a.allows_route("POST", "/v1/chat/completions")
    assert not o.allows_route("POST", "/v1/messages")
    with pytest.raises(ValueError):
        ProviderEndpoint.from_credentials("local", Credentials())


@pytest.mark.parametrize("url", ["http://api.example.com", "ftp://x", "https://u:p@x.com",
                                 "https://x.com/?q=1", "not a url"])
def test_endpoint_refuses_unsafe_upstreams(url: str) -> None:
    with pytest.raises(ValueError):
        ProviderEndpoint.anthropic(Secret(KEY), base_url=url)


def test_plain_http_is_fine_for_loopback_or_without_a_credential() -> None:
    ProviderEndpoint.anthropic(Secret(KEY), base_url="http://127.0.0.1:9")
    ProviderEndpoint.local("http://192.168.1.5:11434")


@pytest.mark.parametrize(("raw", "norm"), [
    ("API.anthropic.com", "api.anthropic.com"), ("api.anthropic.com:443", "api.anthropic.com"),
    ("api.anthropic.com.", "api.anthropic.com"), ("[::1]:11434", "::1"),
    ("127.0.0.1:11434", "127.0.0.1"), ("a b", None), ("x:y", None), ("[::1", None),
    ("", None), ("évil.com", None), ("a/b", None), ("x" * 254, None), ("h:99999999", None),
])
def test_normalize_host(raw: str, norm: str | None) -> None:
    assert normalize_host(raw) == norm


def test_request_headers_strip_auth_identity_and_hop_by_hop() -> None:
    sandbox = [
        ("authorization", "Bearer s"), ("proxy-authorization", "p"), ("x-api-key", "k"),
        ("api-key", "k"), ("cookie", "c"), ("x-auth-token", "t"), ("my-secret", "s"),
        ("x-ironclaw-session", "ses_x"), ("x-forwarded-for", "1.2.3.4"), ("via", "v"),
        ("connection", "keep-alive, x-drop-me"), ("x-drop-me", "1"), ("keep-alive", "5"),
        ("te", "trailers"), ("upgrade", "h2c"), ("host", "api.anthropic.com"),
        ("content-length", "9"), ("accept-encoding", "br"), ("transfer-encoding", "chunked"),
        ("content-type", "application/json"), ("anthropic-beta", "b"), ("user-agent", "u"),
    ]
    out = request_headers_for_upstream(sandbox, ProviderEndpoint.anthropic(Secret(KEY)))
    assert out == [("content-type", "application/json"), ("anthropic-beta", "b"),
                   ("user-agent", "u"), ("anthropic-version", "2023-06-01"),
                   ("accept-encoding", "identity"), ("x-api-key", KEY)]


# What the official Python SDKs send by default (anthropic and openai, read from their
# _base_client.py and _client.py): none of it names anyone, so all of it passes.
SDK_DEFAULTS = [
    ("accept", "application/json"), ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 1.0"), ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.0"), ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"), ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.12.3"), ("x-stainless-async", "false"),
    ("x-stainless-retry-count", "0"), ("x-stainless-read-timeout", "600"),
]


def test_openai_org_and_project_never_reach_the_provider() -> None:
    # An agent that names another organisation or project would bill it on the
    # operator's key; so would anything naming an account, a workspace or a base URL.
    hostile = [("openai-organization", "org-victim"), ("openai-project", "proj_victim"),
               ("openai-beta", "assistants=v2"), ("x-openai-account", "a"),
               ("x-base-url", "https://evil.example"), ("x-stainless-org", "o"),
               ("idempotency-key", "k"), ("x-request-id", "r")]
    out = request_headers_for_upstream(SDK_DEFAULTS + hostile,
                                       ProviderEndpoint.openai(Secret(KEY)))
    assert out == [*SDK_DEFAULTS, ("openai-beta", "assistants=v2"),
                   ("accept-encoding", "identity"), ("authorization", f"Bearer {KEY}")]
    for kind in ProviderKind:
        names = {name for name, _ in request_headers_for_upstream(hostile, _endpoint(kind))}
        assert not names & {"openai-organization", "openai-project", "x-openai-account",
                            "x-base-url", "x-stainless-org"}, kind


def test_anthropic_workspace_and_organisation_headers_are_dropped() -> None:
    hostile = [("anthropic-workspace-id", "wrkspc_x"), ("anthropic-organization-id", "o"),
               ("anthropic-user-profile-id", "p"), ("openai-beta", "b"),
               ("anthropic-beta", "tools-2024-04-04"), ("anthropic-version", "2023-06-01")]
    out = request_headers_for_upstream(SDK_DEFAULTS + hostile,
                                       ProviderEndpoint.anthropic(Secret(KEY)))
    assert out == [*SDK_DEFAULTS, ("anthropic-beta", "tools-2024-04-04"),
                   ("anthropic-version", "2023-06-01"), ("accept-encoding", "identity"),
                   ("x-api-key", KEY)]


def _endpoint(kind: ProviderKind) -> ProviderEndpoint:
    if kind is ProviderKind.MOCK:
        return ProviderEndpoint.mock()
    if kind is ProviderKind.LOCAL:
        return ProviderEndpoint.local()
    return ProviderEndpoint.from_credentials(kind, Credentials())


def test_response_headers_drop_cookies_auth_and_framing() -> None:
    upstream = [("set-cookie", "a=b"), ("www-authenticate", "x"), ("content-length", "5"),
                ("content-encoding", "gzip"), ("transfer-encoding", "chunked"),
                ("content-type", "application/json"), ("request-id", "req_1"),
                ("anthropic-ratelimit-tokens-remaining", "5"), ("retry-after", "3")]
    assert response_headers_for_sandbox(upstream) == [
        ("content-type", "application/json"), ("request-id", "req_1"),
        ("anthropic-ratelimit-tokens-remaining", "5"), ("retry-after", "3")]


# -- token bucket ----------------------------------------------------------------------

def test_token_bucket_burst_refill_and_retry_after() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.try_acquire()
    assert wait == pytest.approx(0.5)
    assert TokenBucket.retry_after_header(wait) == "1"
    now[0] += 0.5
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() > 0
    now[0] += 1000
    assert [bucket.try_acquire() for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # capped at burst
    assert TokenBucket.retry_after_header(7.01) == "8"


# -- redactor --------------------------------------------------------------------------

def stream_through(redactor: Redactor, pieces: list[bytes]) -> tuple[bytes, int]:
    scrubber = redactor.stream()
    out = b"".join(scrubber.feed(piece) for piece in pieces) + scrubber.finish()
    return out, scrubber.count


def test_redacts_literal_and_shapes_whole_value() -> None:
    redactor = Redactor([Secret("hunter2-long-enough"), Secret("short")])
    out, count = redactor.redact(
        b"a hunter2-long-enough b sk-proj-" + b"x1Y" * 10 + b" c short sk-tooshort")
    assert out == b"a [REDACTED] b [REDACTED] c short sk-tooshort"
    assert count == 2


SAMPLE = (b'data: {"text":"key=' + KEY.encode() + b'"}\n\nmore ' + KEY.encode()
          + b" and sk-or-v1-" + b"0a" * 32 + b"!\n")


@settings(max_examples=300)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=12))
def test_stream_redaction_is_independent_of_chunk_boundaries(cuts: list[int]) -> None:
    redactor = Redactor([Secret(KEY)])
    points = [0, *sorted(cuts), len(SAMPLE)]
    pieces = [SAMPLE[a:b] for a, b in itertools.pairwise(points)]
    out, count = stream_through(redactor, pieces)
    assert out == redactor.redact(SAMPLE)[0]
    assert count == 3
    assert KEY.encode()[:16] not in out


def test_every_single_split_point_of_a_literal_secret() -> None:
    secret = "Tok.en/with+odd=chars-123456"  # not key-shaped: only the literal catches it
    redactor = Redactor([Secret(secret)])
    text = f"x {secret} y".encode()
    for i in range(len(text) + 1):
        out, count = stream_through(redactor, [text[:i], text[i:]])
        assert out == b"x [REDACTED] y" and count == 1, i
    out, count = stream_through(redactor, [bytes([b]) for b in text])
    assert out == b"x [REDACTED] y" and count == 1


def test_stream_holds_only_what_could_still_be_a_secret() -> None:
    redactor = Redactor([Secret(KEY)])
    scrubber = redactor.stream()
    assert scrubber.feed(b"event: x\ndata: {}\n\n") == b"event: x\ndata: {}\n\n"
    # The byte before a key-shaped run is held too: it decides the token boundary.
    assert scrubber.feed(b"hello sk-ant") == b"hello"
    assert scrubber.feed(b"-api03-" + b"q9Z" * 10 + b" ok\n") == b" [REDACTED] ok\n"


def test_stream_memory_is_bounded_on_huge_key_shaped_runs() -> None:
    scrubber = Redactor([Secret(KEY)]).stream()
    total = 0
    for _ in range(200):
        total += len(scrubber.feed(b"A" * 50_000))
        assert len(scrubber._pending) <= MAX_HOLD
    total += len(scrubber.finish())
    assert total == 200 * 50_000 and scrubber.count == 0
