"""The web console in a real browser: Debian's chromium, driven by selenium through the
system chromedriver, against a real control plane (dev mode, process runtime, mock
model) served by hypercorn on loopback. One plane and one browser serve the module."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import attrs
import pytest
import trio

from ironclaw.host.api.console import ASSET_NAMES, ASSETS
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.events import MessageReceived
from tests.support.console import (
    PlaneThread,
    RecordingHandler,
    by_id,
    change_status,
    last_seq,
    open_browser,
    post_message,
    rendered_seqs,
    show,
    sign_in,
    submit_persona,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)

HOSTILE = ('<img src=x onerror="window.__pwned=1">',
           '<a href="javascript:window.__pwned=2">open me</a>',
           "javascript:window.__pwned=3",
           "\u202egnp.exe",
           "<script>window.__pwned=4</script>")


@attrs.frozen
class ConsoleProbe:
    """An event published straight onto the bus to measure the console's lag."""

    type: ClassVar[str] = "test.console_probe"
    n: int


@pytest.fixture(scope="module")
def plane_logs() -> Iterator[RecordingHandler]:
    handler = RecordingHandler()
    logger = logging.getLogger("ironclaw")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, plane_logs: RecordingHandler
          ) -> Iterator[PlaneThread]:
    with PlaneThread(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(plane: PlaneThread) -> Iterator[Any]:
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


# What the server sends

def test_the_console_is_served_locked_down_and_self_contained(plane: PlaneThread) -> None:
    import httpx

    page = httpx.get(plane.api_url + "/ui/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ASSET_NAMES:
        response = httpx.get(plane.api_url + "/ui/" + name, timeout=30)
        assert response.status_code == 200, name
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
    for bad in ("nope.js", "index.html%00", "main.js.map", "assets"):
        missing = httpx.get(plane.api_url + "/ui/" + bad, timeout=30)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", bad
    # A path that climbs out of /ui/ is no console file: it meets the API's token check.
    for climbing in ("..%2fapp.py", "%2e%2e/v1/status"):
        assert httpx.get(plane.api_url + "/ui/" + climbing, timeout=30).status_code == 401
    total = sum(len(body) for body, _ in ASSETS.values())
    print(f"\nconsole transfer size: {total} bytes in {len(ASSETS)} files (uncompressed)")


# Signing in and out

def test_sign_in_and_out_keep_the_token_out_of_urls_logs_and_the_page(
        browser: Any, plane: PlaneThread, plane_logs: RecordingHandler) -> None:
    browser.get(plane.url + "/ui/")
    field = wait_for(browser, lambda d: by_id(d, "token").is_displayed() and by_id(d, "token"))
    field.send_keys("not-a-token\n")
    error = wait_for(browser, lambda d: by_id(d, "sign-in-error").text)
    assert error.startswith("The token was not accepted.")
    assert not by_id(browser, "console").is_displayed()

    sign_in(browser, plane, "owner")
    token = plane.tokens["owner"]
    assert by_id(browser, "who").text == "Signed in as owner (owner)"
    assert browser.execute_script(
        "return sessionStorage.getItem('ironclaw.console.token')") == token
    page = browser.execute_script(
        "return document.documentElement.outerHTML + [...document.querySelectorAll('input')]"
        ".map(i => i.value).join(' ')")
    assert token not in page and token not in browser.current_url

    # Reloading keeps the session (sessionStorage); signing out forgets the token.
    browser.refresh()
    wait_for(browser, lambda d: by_id(d, "console").is_displayed(), what="a restored sign-in")
    by_id(browser, "sign-out").click()
    wait_for(browser, lambda d: by_id(d, "sign-in").is_displayed(), what="sign-out")
    assert browser.execute_script("return sessionStorage.length") == 0
    assert by_id(browser, "notice").text == "You are signed out."
    assert by_id(browser, "events-body").text == ""

    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(params["url"])
    assert any("/v1/events" in u for u in urls) and any("/v1/whoami" in u for u in urls)
    assert not [u for u in urls if token in u]
    console_log = browser.get_log("browser")
    assert not [e for e in console_log if token in e["message"]]
    assert not [e for e in console_log if "Content Security Policy" in e["message"]]
    assert plane_logs.lines and not [line for line in plane_logs.lines if token in line]


# Live events

def test_a_conversations_events_arrive_live(browser: Any, plane: PlaneThread) -> None:
    sign_in(browser, plane, "owner")
    post_message(plane, "hello console")
    wait_for(browser, lambda d: rendered_seqs(d, "delivery.delivered"),
             what="the reply's delivery")
    for kind in ("message.received", "message.routed"):
        assert rendered_seqs(browser, kind), kind
    row = browser.find_element("css selector", '#events-body tr[data-type="message.routed"]')
    session_id = row.find_elements("css selector", "td")[3].text
    assert session_id
    wait_for(browser, lambda d: "median" in by_id(d, "chart-latency-text").text,
             what="the latency chart")
    assert "1 in the last 30 minutes" in by_id(browser, "chart-messages-text").text

    # Filters: by type, then by session.
    by_id(browser, "filter-type").send_keys("delivery.*")
    types = {r.get_attribute("data-type") for r in browser.find_elements(
        "css selector", "#events-body tr[data-seq]")}
    assert types == {"delivery.delivered"}
    by_id(browser, "filter-type").clear()
    by_id(browser, "filter-session").send_keys("sess_nobody")
    assert rendered_seqs(browser) == []
    by_id(browser, "filter-session").clear()
    by_id(browser, "filter-session").send_keys(session_id)
    assert rendered_seqs(browser, "message.routed")
    by_id(browser, "filter-session").clear()

    # Paused, the view holds still and counts; resumed, it shows what came meanwhile.
    by_id(browser, "pause").click()
    shown = len(rendered_seqs(browser, "delivery.delivered"))
    post_message(plane, "while paused")
    wait_for(browser, lambda d: "new)" in by_id(d, "pause").text, what="the unseen count")
    assert len(rendered_seqs(browser, "delivery.delivered")) == shown
    by_id(browser, "pause").click()
    wait_for(browser, lambda d: len(rendered_seqs(d, "delivery.delivered")) > shown,
             what="the held events")

    # The sessions view shows the conversation's session live, with its heartbeat.
    show(browser, "sessions")
    cells = wait_for(browser, lambda d: [c.text for c in d.find_elements(
        "css selector", f'tr[data-session-id="{session_id}"] td')], what="the session row")
    assert cells[1] == DEMO_GROUP and cells[2] == "live" and cells[3] == "process"
    assert cells[4].endswith("ago")
    show(browser, "channels")
    assert "local" in by_id(browser, "channels-body").text


def test_the_stream_resumes_after_a_lost_connection_with_no_gap_or_duplicate(
        browser: Any, plane: PlaneThread) -> None:
    sign_in(browser, plane, "owner")
    before = last_seq(plane)
    plane.run_sync(plane.handles.events.publish, ConsoleProbe(-1))  # type: ignore[union-attr]
    wait_for(browser, lambda d: rendered_seqs(d, ConsoleProbe.type), what="the first probe")
    assert plane.relay is not None
    plane.run_sync(plane.relay.cut)
    wait_for(browser, lambda d: by_id(d, "stream-state").get_attribute("data-state")
             == "reconnecting", what="the lost stream")
    post_message(plane, "during the outage")  # straight to the API, not through the relay
    for n in range(20):
        plane.run_sync(plane.handles.events.publish, ConsoleProbe(n))  # type: ignore[union-attr]
    time.sleep(1.0)  # a few refused reconnects
    plane.run_sync(plane.relay.release)
    wait_for(browser, lambda d: by_id(d, "stream-state").text.startswith("Live again"),
             what="the resumed stream")
    target = last_seq(plane)
    wait_for(browser, lambda d: max(rendered_seqs(d)) >= target, what="the replayed events")
    seqs = rendered_seqs(browser)
    assert len(seqs) == len(set(seqs)), "an event shown twice"
    assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)), "a gap"
    assert min(seqs) == before + 1
    assert len(rendered_seqs(browser, ConsoleProbe.type)) == 21


# Changes, per role

def test_an_owner_approves_a_pending_change_and_sees_it_applied(
        browser: Any, plane: PlaneThread) -> None:
    change_id = submit_persona(plane, "Calm and brief.", "tone it down")
    sign_in(browser, plane, "owner")
    show(browser, "pending")
    article = wait_for(browser, lambda d: d.find_element(
        "css selector", f'article[data-change-id="{change_id}"]'), what="the pending change")
    assert "soul" in article.find_element("css selector", "pre.diff").text
    assert "Calm and brief." in article.text and "tone it down" in article.text
    article.find_element("css selector", "button.approve").click()
    result = wait_for(browser, lambda d: (t := by_id(d, "notice").text).startswith(
        f"Change {change_id}") and t, what="the decision's answer")
    assert result in (f"Change {change_id} is now approved.",
                      f"Change {change_id} is now applied.")
    wait_for(browser, lambda d: not d.find_elements(
        "css selector", f'article[data-change-id="{change_id}"]'), what="the pending list")
    show(browser, "history")
    wait_for(browser, lambda d: d.find_element(
        "css selector", f'#history-body tr[data-change-id="{change_id}"]'
    ).get_attribute("data-status") == "applied", what="the applied change in the history")
    assert change_status(plane, change_id) == "applied"


def test_a_viewer_is_refused_and_an_approver_may_reject(browser: Any,
                                                        plane: PlaneThread) -> None:
    change_id = submit_persona(plane, "Loud.", "louder")
    sign_in(browser, plane, "viewer")
    show(browser, "pending")
    article = wait_for(browser, lambda d: d.find_element(
        "css selector", f'article[data-change-id="{change_id}"]'), what="the pending change")
    approve = article.find_element("css selector", "button.approve")
    assert not approve.is_enabled()
    assert "may read changes but not decide them" in article.text
    # A tampered page still gets nowhere: the API refuses, the page says so.
    browser.execute_script("arguments[0].disabled = false", approve)
    approve.click()
    refusal = "Your role does not allow this. It said: “viewer may only read”."
    wait_for(browser, lambda d: by_id(d, "notice").text == refusal, what="the refusal")
    assert article.find_element("css selector", ".decision-result").text == refusal
    assert change_status(plane, change_id) == "pending"

    sign_in(browser, plane, "approver")
    show(browser, "pending")
    article = wait_for(browser, lambda d: d.find_element(
        "css selector", f'article[data-change-id="{change_id}"]'), what="the pending change")
    article.find_element("css selector", ".decision-reason").send_keys("too loud")
    article.find_element("css selector", "button.reject").click()
    wait_for(browser, lambda d: change_status(plane, change_id) == "rejected",
             what="the rejection")
    show(browser, "history")
    wait_for(browser, lambda d: d.find_element(
        "css selector", f'#history-body tr[data-change-id="{change_id}"]'
    ).get_attribute("data-status") == "rejected", what="the rejection in the history")


# Audit, banner, hostile strings, narrow screens

def test_the_audit_tail_and_its_verification(browser: Any, plane: PlaneThread) -> None:
    change_id = submit_persona(plane, "Audited.", "for the audit view")
    sign_in(browser, plane, "viewer")
    audit_tab = browser.find_element("css selector", 'nav button[data-view="audit"]')
    audit_tab.send_keys("\n")  # keyboard: Enter on the focused tab
    assert by_id(browser, "audit-body").is_displayed()
    rows = [r.text for r in browser.find_elements("css selector", "#audit-body tr")]
    assert any("change.submit" in r and f"change_id={change_id}" in r for r in rows)
    by_id(browser, "verify").send_keys("\n")
    verdict = wait_for(browser, lambda d: (t := by_id(d, "audit-verify").text)
                       .startswith("The audit chain") and t, what="the verification")
    assert verdict.startswith("The audit chain is intact:")
    assert by_id(browser, "audit-verify").get_attribute("data-ok") == "yes"


def test_a_banner_says_the_sandbox_is_not_gvisor(browser: Any, plane: PlaneThread) -> None:
    sign_in(browser, plane, "viewer")
    banner = wait_for(browser, lambda d: by_id(d, "banner").is_displayed()
                      and by_id(d, "banner"), what="the banner")
    assert banner.text.startswith("Sandboxes are not gVisor (runtime: process).")
    assert banner.get_attribute("role") == "alert"


def test_hostile_strings_are_shown_as_text(browser: Any, plane: PlaneThread) -> None:
    soul = " ".join(HOSTILE)
    change_id = submit_persona(plane, soul, " | ".join(HOSTILE))
    sign_in(browser, plane, "owner")
    for hostile in HOSTILE:
        plane.run_sync(plane.handles.events.publish, MessageReceived(  # type: ignore[union-attr]
            "local", "mg_hostile", hostile, 1))
    wait_for(browser, lambda d: len(rendered_seqs(d, "message.received")) >= len(HOSTILE),
             what="the hostile events")
    show(browser, "pending")
    article = wait_for(browser, lambda d: d.find_element(
        "css selector", f'article[data-change-id="{change_id}"]'), what="the hostile change")
    reason = article.find_element("css selector", "dd.reason").text
    assert reason == " | ".join(HOSTILE).replace("\u202e", "[U+202E]")
    assert "[U+202E]gnp.exe" in article.find_element("css selector", "pre.diff").text
    show(browser, "events")
    events_text = by_id(browser, "events-body").text
    assert '<img src=x onerror="window.__pwned=1">' in events_text
    assert browser.execute_script(
        "return document.querySelectorAll('img, a, iframe, object, embed, script:not([src])')"
        ".length") == 0
    assert browser.execute_script("return window.__pwned") is None
    assert "\u202e" not in browser.execute_script("return document.body.innerText")

    browser.set_window_size(360, 740)
    try:
        for view in ("events", "pending", "sessions", "audit"):
            show(browser, view)
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"), view
    finally:
        browser.set_window_size(1280, 900)
    plane.http("POST", f"/v1/changes/{change_id}/decision", json={"outcome": "reject"})


# What it costs

def test_lag_from_publish_to_render_at_100_events_per_second(
        browser: Any, plane: PlaneThread) -> None:
    count, rate = 300, 100.0
    sign_in(browser, plane, "owner")
    browser.execute_script("performance.clearMarks('ironclaw.event.rendered')")
    first = last_seq(plane) + 1
    bus = plane.handles.events  # type: ignore[union-attr]

    async def publish() -> None:
        start = trio.current_time()
        for n in range(count):
            await trio.sleep_until(start + n / rate)
            bus.publish(ConsoleProbe(n))

    plane.run(publish)
    wait_for(browser, lambda d: len(rendered_seqs(d, ConsoleProbe.type)) >= count,
             what="every probe")
    marks = browser.execute_script(
        "return performance.getEntriesByName('ironclaw.event.rendered')"
        ".map(m => [m.detail.seq, m.detail.lagMs])")
    lags = {int(seq): float(lag) for seq, lag in marks if int(seq) >= first}
    probe_seqs = sorted(rendered_seqs(browser, ConsoleProbe.type))
    assert len(probe_seqs) == count == len(set(probe_seqs))
    measured = sorted(lags[s] for s in probe_seqs)
    p50 = statistics.median(measured)
    p99 = measured[min(len(measured) - 1, round(0.99 * len(measured)))]
    transfer = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat("
        "performance.getEntriesByType('resource')).filter(e => e.name.includes('/ui/'))"
        ".reduce((sum, e) => sum + e.transferSize, 0)")
    print(f"\nconsole lag publish->render at {rate:.0f} events/s over {count} events: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; page transfer {transfer} bytes")


def test_after_a_control_plane_restart_the_console_says_there_may_be_a_gap(
        browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("restarted")
    with PlaneThread(state) as first:
        sign_in(browser, first, "owner")
        for n in range(30):  # the browser's last seq is now past where a new bus starts
            first.run_sync(first.handles.events.publish, ConsoleProbe(n))  # type: ignore[union-attr]
        wait_for(browser, lambda d: len(rendered_seqs(d, ConsoleProbe.type)) == 30,
                 what="the probes")
        address, tokens = first.relay.port, first.tokens  # type: ignore[union-attr]
    with PlaneThread(state, relay_port=address, tokens=tokens) as second:
        assert last_seq(second) < 30
        notice = wait_for(browser, lambda d: (t := by_id(d, "notice").text).startswith(
            "The event stream could not resume") and t, what="the gap notice")
        assert "events from the gap are not shown" in notice
        wait_for(browser, lambda d: by_id(d, "stream-state").text == "Live.",
                 what="a fresh stream")
        second.run_sync(second.handles.events.publish, ConsoleProbe(99))  # type: ignore[union-attr]
        wait_for(browser, lambda d: len(rendered_seqs(d, ConsoleProbe.type)) == 31,
                 what="an event of the restarted plane")
