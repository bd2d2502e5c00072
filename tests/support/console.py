"""What the console's browser tests share: a real control plane with its API, run by
Trio in a thread of its own (so one plane serves a whole module of synchronous
selenium tests), a byte relay in front of it that can drop every connection, and one
headless Debian chromium driven through the system chromedriver (never a downloaded
browser)."""

from __future__ import annotations

import functools
import logging
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from ironclaw.host.api import Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.modelproxy import Credentials
from tests.support.api import TEST_SETTINGS, plane_config, retire_sessions

T = TypeVar("T")
ROLES = (("viewer", {"viewer"}), ("approver", {"approver"}), ("admin", {"admin"}))


class Relay:
    """Forwards bytes between the browser and the API. :meth:`cut` drops every open
    connection and refuses new ones until :meth:`release`: a lost network, as the
    browser sees it."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.held = False
        self._scopes: set[trio.CancelScope] = set()

    def cut(self) -> None:
        self.held = True
        for scope in list(self._scopes):
            scope.cancel()

    def release(self) -> None:
        self.held = False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self.held:
                return
            scope = trio.CancelScope()
            self._scopes.add(scope)
            try:
                with scope:
                    server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, server, scope)
                        nursery.start_soon(_pipe, server, client, scope)
            except OSError:
                pass
            finally:
                self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream,
                scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


class PlaneThread:
    """A control plane in dev mode (process runtime, mock model) with its API on
    loopback and principals of every role, served from a thread running ``trio.run``.
    ``url`` is the relay's address (what the browser uses); ``api_url`` the API's."""

    def __init__(self, tmp: Path, *, relay_port: int = 0,
                 tokens: dict[str, str] | None = None) -> None:
        """``relay_port`` and ``tokens``: a restart on the same state directory, reached
        at the same address with the principals it already has."""
        self.tmp = tmp
        self.relay_port = relay_port
        self.tokens: dict[str, str] = dict(tokens or {})
        self.url = ""
        self.api_url = ""
        self.handles: ControlPlaneHandles | None = None
        self.relay: Relay | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="console-plane", daemon=True)

    def __enter__(self) -> PlaneThread:
        self._thread.start()
        self._ready.wait(120)
        if self._failure is not None or self._token is None:
            raise RuntimeError("the control plane did not start") from self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.run_sync(self._stop.set)
        self._thread.join(60)

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the plane's Trio loop and return its result."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __enter__, or left for the module
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            handles: ControlPlaneHandles = await nursery.start(
                ControlPlane(plane_config(self.tmp), credentials=Credentials()).run)
            if not self.tokens:
                principals = Principals(handles.store, handles.api_token_key,
                                        audit=handles.audit)
                owner = await bootstrap_owner(principals)
                assert owner is not None
                self.tokens["owner"] = owner
                for name, roles in ROLES:
                    self.tokens[name] = await principals.create(name, roles)
            binds = await nursery.start(functools.partial(
                serve_api, handles, TEST_SETTINGS, token_key=handles.api_token_key))
            self.api_url = binds[0]
            self.relay = Relay(int(self.api_url.rsplit(":", 1)[1]), self.relay_port)
            await nursery.start(self.relay.serve)
            self.url = f"http://127.0.0.1:{self.relay.port}"
            self.handles = handles
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            await retire_sessions(handles)
            nursery.cancel_scope.cancel()

    def http(self, method: str, path: str, who: str = "owner", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=30, **kw)


class RecordingHandler(logging.Handler):
    """Every log record of the plane, rendered, to prove a token never reaches one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("needs Debian's chromium and chromium-driver (dev.sh installs them)")
    return browser, driver


def open_browser() -> Any:
    """Headless chromium through the system chromedriver; selenium never fetches one."""
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def wait_for(driver: Any, predicate: Callable[[Any], T], within: float = 30,
             what: str = "the console") -> T:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # A view re-rendered while the predicate looked at it: look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    result: T = WebDriverWait(driver, within, poll_frequency=0.05,
                              ignored_exceptions=ignored).until(
        predicate, message=f"timed out waiting for {what}")
    return result


# Driving the console

def by_id(driver: Any, element_id: str) -> Any:
    return driver.find_element("id", element_id)


def sign_in(driver: Any, plane: PlaneThread, who: str) -> None:
    driver.get(plane.url + "/ui/")
    wait_for(driver, lambda d: by_id(d, "sign-in").is_displayed()
             or by_id(d, "console").is_displayed(), what="the page")
    if by_id(driver, "sign-out").is_displayed():
        by_id(driver, "sign-out").click()
    field = wait_for(driver, lambda d: by_id(d, "token").is_displayed() and by_id(d, "token"))
    field.send_keys(plane.tokens[who])
    field.send_keys("\n")  # Enter submits the form: the keyboard path
    wait_for(driver, lambda d: by_id(d, "console").get_attribute("aria-busy") == "false",
             what="sign-in and the first load")
    wait_for(driver, lambda d: by_id(d, "stream-state").get_attribute("data-state") == "live",
             what="the live stream")


def show(driver: Any, view: str) -> None:
    driver.find_element("css selector", f'nav button[data-view="{view}"]').click()


def rendered_seqs(driver: Any, event_type: str | None = None) -> list[int]:
    selector = "#events-body tr[data-seq]" + (
        f'[data-type="{event_type}"]' if event_type else "")
    return [int(s) for s in driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset.seq)",
        selector)]


def post_message(plane: PlaneThread, text: str) -> str:
    response = plane.http("POST", "/v1/channels/local/messages", json={
        "agent_group": DEMO_GROUP, "sender": "operator", "text": text})
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


def submit_persona(plane: PlaneThread, soul: str, reason: str, who: str = "admin") -> str:
    response = plane.http("POST", "/v1/changes", who, json={
        "kind": "persona", "agent_group": DEMO_GROUP, "payload": {"soul": soul},
        "reason": reason})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def change_status(plane: PlaneThread, change_id: str) -> str:
    return str(plane.http("GET", f"/v1/changes/{change_id}").json()["status"])


def last_seq(plane: PlaneThread) -> int:
    assert plane.handles is not None
    return plane.handles.events.last_seq
